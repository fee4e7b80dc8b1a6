//! `inspector`: an eBPF container network inspector. The CLI lives in `inspector::cli`; this
//! entry point only turns a failure into one line on stderr and a non-zero exit code.
//!
//! SIGPIPE: like other Unix tools the inspector ends quietly when the reader of its output
//! goes away (`inspector ... | head`, also `2>&1 | head`), with status 141 (128 + SIGPIPE).
//! But SIGPIPE's default action also killed the whole process when a runtime socket closed
//! while it wrote (a CRI or Docker socket answering garbage). So a handler decides: when
//! stdout or stderr is a pipe whose reader is gone it ends the process, else the write
//! that raised it fails with `EPIPE` and its caller says so. Attachments are file
//! descriptors: they go with the process however it ends.
fn main() {
    inspector::sys::heap::limit_arenas();
    let handler = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(on_sigpipe),
        nix::sys::signal::SaFlags::SA_RESTART,
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: installed before any thread exists; the handler calls only poll(2) and
    // _exit(2), both async-signal-safe.
    let _ = unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGPIPE, &handler) };
    let code = match inspector::cli::run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("inspector: error: {}", inspector::cli::error_line(&e));
            1
        }
    };
    std::process::exit(code);
}

/// SIGPIPE: ends the process (141) when stdout or stderr has lost its reader.
extern "C" fn on_sigpipe(_: libc::c_int) {
    for fd in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        let mut p = libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        };
        // SAFETY: one pollfd on the stack, no wait.
        if unsafe { libc::poll(&raw mut p, 1, 0) } == 1
            && p.revents & (libc::POLLERR | libc::POLLHUP) != 0
        {
            // SAFETY: ends the process without running anything else.
            unsafe { libc::_exit(141) };
        }
    }
}
