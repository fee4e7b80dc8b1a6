//! Child processes: feeding a program its input on stdin, and children stopped on drop.
use std::{
    io::{self, Write as _},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};

/// Runs `cmd` with `input` on its stdin and returns its output (stdout and stderr captured).
pub fn feed(mut cmd: Command, input: &str) -> io::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("no stdin pipe"))?;
    // Write on another thread: a program that answers while reading would otherwise fill
    // its stdout pipe and block while we block on its stdin.
    let input = input.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output()?;
    writer
        .join()
        .map_err(|_| io::Error::other("stdin writer panicked"))??;
    Ok(out)
}

/// Sends `sig` to a child that has not been reaped yet.
pub fn signal(child: &Child, sig: Signal) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
    }
}

/// Running child processes; stopped on drop (SIGINT, a bounded wait, then SIGKILL), so a
/// failure or a panic never leaves one behind.
#[derive(Default)]
pub struct Children(pub Vec<Child>);

impl Children {
    /// Interrupts the children still running (SIGINT: an inspector detaches and prints).
    pub fn interrupt(&mut self) {
        for c in &mut self.0 {
            if c.try_wait().ok().flatten().is_none() {
                signal(c, Signal::SIGINT);
            }
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.interrupt();
        for c in &mut self.0 {
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
