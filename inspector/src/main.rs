//! `inspector`: an eBPF container network inspector. The CLI lives in `inspector::cli`; this
//! entry point only turns a failure into one line on stderr and a non-zero exit code.
fn main() {
    // Like other Unix tools, end quietly when the reader goes away (`inspector ... | head`)
    // instead of panicking on the next write. Attachments are file descriptors: they go
    // with the process however it ends.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread exists.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
    let code = match inspector::cli::run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("inspector: error: {}", inspector::cli::error_line(&e));
            1
        }
    };
    std::process::exit(code);
}
