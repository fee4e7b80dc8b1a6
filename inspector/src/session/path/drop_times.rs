//! When each drop happened. The drop table keeps one record per (flow, place, reason) with
//! only its first and last drop, so two records whose drops interleave (SYNs sent by DNAT now to
//! one dropping backend, now to another) cannot say which of their middle drops came when.
//! Read while the connection is tried - every 100 ms, where the client's kernel sends a SYN
//! again after a second at the soonest - each record's last drop is a drop time seen, and
//! together they place every drop in its attempt. A read that came late (two drops of one
//! record between reads) leaves that drop unplaced: the attempt then falls back to the
//! record's span (`attempts`).
use std::{
    collections::{BTreeSet, HashMap},
    time::{Duration, Instant},
};

use crate::session::{Drop, Session, SessionError};

/// How often the drop table is read while the connection is tried.
const EVERY: Duration = Duration::from_millis(100);

/// One drop record: its namespace, device and first drop (ns), which the record keeps.
type Id = (u64, u32, u64);

/// The drop times seen, per drop record.
#[derive(Default)]
pub(super) struct DropTimes {
    seen: HashMap<Id, BTreeSet<u64>>,
    read_at: Option<Instant>,
}

impl DropTimes {
    /// Reads the drop table when the last read is [`EVERY`] old: notes each record's first
    /// and last drop.
    pub fn sample(&mut self, s: &Session) -> Result<(), SessionError> {
        if self.read_at.is_some_and(|t| t.elapsed() < EVERY) {
            return Ok(());
        }
        self.read_at = Some(Instant::now());
        for (k, c) in s.probe.drops()? {
            let id = (u64::from(k.netns), k.ifindex, c.first_ns);
            self.note(id, c.first_ns);
            self.note(id, c.last_ns);
        }
        Ok(())
    }

    /// Notes one drop time of a record.
    pub fn note(&mut self, id: Id, t: u64) {
        self.seen.entry(id).or_default().insert(t);
    }

    /// The drop times known of one record (`CLOCK_MONOTONIC` ns): those seen, and its
    /// first and last drop now.
    pub fn of(&self, d: &Drop) -> impl Iterator<Item = u64> + '_ {
        self.seen
            .get(&(d.rec.netns, d.rec.ifindex, d.rec.first_ns))
            .into_iter()
            .flatten()
            .copied()
            .chain([d.rec.first_ns, d.rec.last_ns])
    }
}
