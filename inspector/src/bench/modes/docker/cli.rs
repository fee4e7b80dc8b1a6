//! The docker CLI against one daemon's socket. The bench drives dockerd through the CLI that
//! comes with it (create, start, inspect, remove, import); the identity layer's API client
//! stays read-only. A failure is one line: the command and the first line docker printed.
use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use crate::bench::BenchError;

/// `docker -H unix://SOCKET ...`.
#[derive(Clone, Debug)]
pub(super) struct Cli {
    socket: PathBuf,
}

impl Cli {
    pub(super) fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_owned(),
        }
    }

    pub(super) fn socket(&self) -> &Path {
        &self.socket
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args);
        c
    }

    /// Runs `docker ARGS` (with `input` on its stdin); its stdout, trimmed.
    pub(super) fn run_with(
        &self,
        args: &[&str],
        input: Option<&[u8]>,
    ) -> Result<String, BenchError> {
        let what = format!(
            "docker {}",
            args.iter().take(2).copied().collect::<Vec<_>>().join(" ")
        );
        let mut child = self
            .command(args)
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                BenchError::Input(if e.kind() == std::io::ErrorKind::NotFound {
                    "the docker CLI is not installed (bench --runtime docker drives dockerd through it)".into()
                } else {
                    format!("{what}: {e}")
                })
            })?;
        if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin
                .write_all(data)
                .map_err(BenchError::io(what.clone()))?;
        }
        let out = child
            .wait_with_output()
            .map_err(BenchError::io(what.clone()))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let line = err
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("failed");
            return Err(BenchError::Input(format!("{what}: {line}")));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    pub(super) fn run(&self, args: &[&str]) -> Result<String, BenchError> {
        self.run_with(args, None)
    }

    /// Whether `docker ARGS` succeeds (output dropped).
    pub(super) fn ok(&self, args: &[&str]) -> bool {
        self.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}
