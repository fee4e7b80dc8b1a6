//! Stop signals: SIGINT, SIGTERM and SIGHUP set a flag that long-running loops poll, and
//! write to a pipe a waiting loop can poll, so a signal ends a wait at once.
use std::{
    os::fd::{AsFd as _, BorrowedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

const STOP: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// The flag the stop signals set (registered once per call; cheap to clone).
#[derive(Clone)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// Registers the stop signals.
    pub fn register() -> std::io::Result<Self> {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in STOP {
            signal_hook::flag::register(sig, Arc::clone(&flag))?;
        }
        Ok(Self(flag))
    }

    /// A flag no signal sets (for library callers that stop by other means).
    #[must_use]
    pub fn never() -> Self {
        Self(Arc::new(AtomicBool::new(false)))
    }

    #[must_use]
    pub fn raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// The flag itself, for loops that take an `AtomicBool`.
    #[must_use]
    pub fn flag(&self) -> &AtomicBool {
        &self.0
    }
}

/// A wait that a stop signal (or one of some file descriptors becoming readable) ends early.
pub struct Waker {
    read: std::os::unix::net::UnixStream,
}

impl Waker {
    /// Registers the stop signals to write to a fresh pipe.
    pub fn register() -> std::io::Result<Self> {
        let (read, write) = std::os::unix::net::UnixStream::pair()?;
        read.set_nonblocking(true)?;
        for sig in STOP {
            signal_hook::low_level::pipe::register(sig, write.try_clone()?)?;
        }
        Ok(Self { read })
    }

    /// Sleeps until `until`, a stop signal, or one of `fds` becoming readable.
    pub fn wait(&self, fds: &[BorrowedFd<'_>], until: Instant) {
        use nix::poll::{PollFd, PollFlags, PollTimeout};
        let ms = until
            .saturating_duration_since(Instant::now())
            .min(Duration::from_mins(1))
            .as_millis();
        let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
        let mut pfds: Vec<PollFd<'_>> = std::iter::once(self.read.as_fd())
            .chain(fds.iter().copied())
            .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
            .collect();
        let _ = nix::poll::poll(&mut pfds, timeout);
    }
}
