//! Per-packet stitching for `trace --hops`: the events of one packet grouped by its
//! fingerprint, and handed over in path order once the packet has been quiet.
use std::collections::HashMap;

use inspector_common::PacketEvent;

use super::fingerprint::{Fingerprint, fingerprint};

/// Groups events per packet and hands a packet's events over once it has been quiet.
#[derive(Default)]
pub struct Stitcher {
    open: HashMap<Fingerprint, Vec<PacketEvent>>,
    /// Events that had no fingerprint (non-IP): passed through as one-hop packets.
    single: Vec<PacketEvent>,
}

/// At most this many open packets; the oldest are closed first when full.
const MAX_OPEN: usize = 65_536;

impl Stitcher {
    pub fn push(&mut self, ev: &PacketEvent) {
        match fingerprint(ev) {
            Some(fp) => {
                if self.open.len() >= MAX_OPEN && !self.open.contains_key(&fp) {
                    return;
                }
                self.open.entry(fp).or_default().push(*ev);
            }
            None => self.single.push(*ev),
        }
    }

    /// Packets whose last event is older than `now_ns - idle_ns` (all when `idle_ns` is 0),
    /// each with its events in path order (time, then the order of hooks along a device).
    pub fn take_quiet(&mut self, now_ns: u64, idle_ns: u64) -> Vec<Vec<PacketEvent>> {
        let mut done: Vec<Vec<PacketEvent>> = self.single.drain(..).map(|e| vec![e]).collect();
        let quiet: Vec<Fingerprint> = self
            .open
            .iter()
            .filter(|(_, v)| {
                idle_ns == 0 || v.iter().map(|e| e.ts_ns).max().unwrap_or(0) + idle_ns <= now_ns
            })
            .map(|(k, _)| *k)
            .collect();
        for k in quiet {
            if let Some(mut v) = self.open.remove(&k) {
                v.sort_by_key(|e| {
                    (
                        e.ts_ns,
                        crate::flows::path::hook_rank(e.key.hook, e.key.direction),
                    )
                });
                done.push(v);
            }
        }
        done.sort_by_key(|v| v.first().map_or(0, |e| e.ts_ns));
        done
    }
}
