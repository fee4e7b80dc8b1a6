//! `inspector`: an eBPF container network inspector. The CLI lives in `inspector::cli`; this
//! entry point only turns a failure into one line on stderr and a non-zero exit code.
fn main() {
    let code = match inspector::cli::run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("inspector: error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}
