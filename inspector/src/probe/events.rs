//! The per-packet event ring: the one place its records are decoded. Readers drain it in
//! batches; the kernel wakes them only once every 1/16 of the ring per CPU (see
//! `ring_wake_events`), so they also drain on a timer ([`EventReader::POLL`]).
use std::os::fd::{AsFd as _, BorrowedFd};

use aya::maps::{MapData, RingBuf};
use inspector_common::PacketEvent;

use super::{MAP_EVENTS, Probe, ProbeError, error::map_err};

/// The ring of per-packet events, taken from the probe.
pub struct EventReader(RingBuf<MapData>);

impl EventReader {
    /// How long readers sleep at most before draining the ring anyway.
    pub const POLL: std::time::Duration = std::time::Duration::from_millis(10);

    /// Appends up to `max` waiting events to `out`; returns how many were appended.
    pub fn drain_into(&mut self, out: &mut Vec<PacketEvent>, max: usize) -> usize {
        let mut n = 0;
        while n < max
            && let Some(item) = self.0.next()
        {
            if item.len() < std::mem::size_of::<PacketEvent>() {
                continue;
            }
            // SAFETY: the kernel wrote a whole PacketEvent (checked length); read unaligned.
            let ev: PacketEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            drop(item);
            out.push(ev);
            n += 1;
        }
        n
    }

    /// The ring's descriptor, readable when the kernel woke readers.
    #[must_use]
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Probe {
    /// Takes the ring buffer of per-packet events (present only once).
    pub fn take_events(&mut self) -> Result<EventReader, ProbeError> {
        let map = self.ebpf.take_map(MAP_EVENTS).ok_or_else(|| {
            map_err(MAP_EVENTS)(aya::maps::MapError::InvalidName {
                name: MAP_EVENTS.into(),
            })
        })?;
        RingBuf::try_from(map)
            .map(EventReader)
            .map_err(map_err(MAP_EVENTS))
    }
}
