//! The loop every long-running front-end runs: until `--duration` passes or a stop signal
//! arrives, sleep until there is something to do (a rescan, a refresh, an event, a signal),
//! not on a short fixed tick: an observer that wakes up every few milliseconds changes the
//! machine it observes (CPU idle states, wake-up latency).
use std::{
    os::fd::BorrowedFd,
    time::{Duration, Instant},
};

use super::SessionError;
use crate::sys::signals::{StopFlag, Waker};

/// An announced change is rescanned after this (a container's veth, its move, its address
/// and its up come in a burst of a few ms: one rescan catches them together) ...
const SOON: Duration = Duration::from_millis(10);
/// ... and never sooner than this after the last rescan (bounded work under churn).
const MIN_GAP: Duration = Duration::from_millis(50);

pub struct Ticker {
    deadline: Option<Instant>,
    next_rescan: Instant,
    last_rescan: Instant,
    rescan: Duration,
    stop: StopFlag,
    waker: Waker,
}

impl Ticker {
    /// A loop of `duration` (None: until stopped), rescanning every `rescan` (at least
    /// 50 ms). Registers the stop signals.
    pub fn new(duration: Option<Duration>, rescan: Duration) -> Result<Self, SessionError> {
        let now = Instant::now();
        let rescan = rescan.max(Duration::from_millis(50));
        Ok(Self {
            deadline: duration.map(|d| now + d),
            next_rescan: now + rescan,
            last_rescan: now,
            rescan,
            stop: StopFlag::register().map_err(SessionError::Signals)?,
            waker: Waker::register().map_err(SessionError::Signals)?,
        })
    }

    /// Sleeps until `until`, the next rescan, the deadline, a signal, or one of `fds`
    /// becoming readable, whichever comes first.
    pub fn wait(&self, fds: &[BorrowedFd<'_>], until: Option<Instant>) {
        let mut end = self.next_rescan;
        for t in [until, self.deadline].into_iter().flatten() {
            end = end.min(t);
        }
        self.waker.wait(fds, end);
    }

    /// Whether the loop should end (a stop signal, or the deadline passed).
    #[must_use]
    pub fn stopped(&self) -> bool {
        self.stop.raised() || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Whether a stop signal arrived.
    #[must_use]
    pub fn interrupted(&self) -> bool {
        self.stop.raised()
    }

    /// Brings the next rescan forward to soon (a change was announced).
    pub fn rescan_soon(&mut self) {
        let soon = (Instant::now() + SOON).max(self.last_rescan + MIN_GAP);
        self.next_rescan = self.next_rescan.min(soon);
    }

    /// Whether a rescan is due (and schedules the next).
    pub fn rescan_due(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.next_rescan {
            self.last_rescan = now;
            self.next_rescan = now + self.rescan;
            true
        } else {
            false
        }
    }
}
