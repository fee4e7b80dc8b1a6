//! Kernel-side debug logging (aya-log): parse anomalies, attach decisions seen by the
//! programs, sampling changes. Off by default: the level is a load-time constant
//! (`AYA_LOG_LEVEL` in `.rodata`), so with logging off the verifier removes every log
//! statement and the programs run exactly as without it. On, the records go to stderr as
//! `inspector: kernel: LEVEL message`.
use std::os::fd::{AsFd as _, BorrowedFd};

pub use aya_log::Level;

/// Writes kernel log records to stderr.
struct Stderr;

impl ::log::Log for Stderr {
    fn enabled(&self, _: &::log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, r: &::log::Record<'_>) {
        eprintln!("inspector: kernel: {} {}", r.level(), r.args());
    }

    fn flush(&self) {}
}

/// The log ring of the loaded object, forwarded to stderr.
pub struct KernelLogger(aya_log::EbpfLogger<Stderr>);

impl KernelLogger {
    pub(super) fn new(ebpf: &mut aya::Ebpf) -> Result<Self, super::ProbeError> {
        Ok(Self(aya_log::EbpfLogger::init_with_logger(ebpf, Stderr)?))
    }

    /// Forwards every waiting record.
    pub fn flush(&mut self) {
        self.0.flush();
    }

    #[must_use]
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A `--kernel-log` value that is no level.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a log level: use error, warn, info, debug or trace")]
pub struct BadLevel(String);

/// Parses a `--kernel-log` level: error, warn, info, debug, trace (any case).
pub fn parse_level(s: &str) -> Result<Level, BadLevel> {
    match s.to_ascii_lowercase().as_str() {
        "error" => Ok(Level::Error),
        "warn" | "warning" => Ok(Level::Warn),
        "info" => Ok(Level::Info),
        "debug" => Ok(Level::Debug),
        "trace" => Ok(Level::Trace),
        _ => Err(BadLevel(s.to_owned())),
    }
}
