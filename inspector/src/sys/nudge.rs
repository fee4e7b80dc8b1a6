//! A wake-up one thread sends another's waiting loop: the read end of a socket pair is
//! polled with the loop's other descriptors, and any thread holding a [`Nudger`] writes a
//! byte to it. Both ends are non-blocking: a nudge never blocks its sender, and nudges that
//! pile up while the loop is busy count as one. Once every sender is gone the read end is
//! readable for ever (end of file): [`Nudge::closed`] tells the loop to stop polling it, or it
//! would spin.
use std::{
    io::{Read as _, Write as _},
    os::{
        fd::{AsFd, BorrowedFd},
        unix::net::UnixStream,
    },
    sync::Arc,
};

/// The receiving end.
pub struct Nudge {
    read: UnixStream,
    /// Every sender is gone (end of file was read).
    closed: std::cell::Cell<bool>,
}

/// The sending end (cheap to clone, for any thread).
#[derive(Clone)]
pub struct Nudger(Arc<UnixStream>);

impl Nudge {
    /// A fresh pair of ends.
    ///
    /// # Errors
    /// The socket pair cannot be made.
    pub fn new() -> std::io::Result<(Self, Nudger)> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        Ok((
            Self {
                read,
                closed: std::cell::Cell::new(false),
            },
            Nudger(Arc::new(write)),
        ))
    }

    /// Whether anything was sent since the last call (reads it all).
    #[must_use]
    pub fn take(&self) -> bool {
        let mut buf = [0u8; 256];
        let mut any = false;
        while let Ok(n) = (&self.read).read(&mut buf) {
            if n == 0 {
                self.closed.set(true);
                break;
            }
            any = true;
        }
        any
    }

    /// Whether every sender is gone (seen by [`Nudge::take`]): nothing can come any more.
    #[must_use]
    pub fn closed(&self) -> bool {
        self.closed.get()
    }
}

impl AsFd for Nudge {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }
}

impl Nudger {
    /// Wakes the loop (a full buffer means it is already woken).
    pub fn nudge(&self) {
        let _ = (&*self.0).write(&[1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nudge_is_taken_once() {
        let (n, tx) = Nudge::new().expect("socket pair");
        assert!(!n.take());
        tx.nudge();
        tx.clone().nudge();
        assert!(n.take());
        assert!(!n.take());
    }

    /// Regression: with no sender left (no Docker daemon to hear from), the read end
    /// polled readable for ever and an idle `flows` spun a whole core.
    #[test]
    fn with_every_sender_gone_it_is_closed() {
        let (n, tx) = Nudge::new().expect("socket pair");
        tx.nudge();
        drop(tx);
        assert!(!n.closed());
        assert!(n.take());
        assert!(n.closed());
        assert!(!n.take());
    }

    #[test]
    fn many_nudges_never_block_the_sender() {
        let (n, tx) = Nudge::new().expect("socket pair");
        for _ in 0..1_000_000 {
            tx.nudge();
        }
        assert!(n.take());
    }
}
