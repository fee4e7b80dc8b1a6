//! The per-packet event ring: the one place its records are decoded. Readers drain it in
//! batches; the kernel wakes them only once every 1/16 of the ring per CPU (see
//! `ring_wake_events`), so they also drain on a timer ([`EventReader::POLL`]).
use std::os::fd::{AsFd as _, BorrowedFd};

use aya::maps::{MapData, RingBuf};
use inspector_common::{
    PacketEvent,
    flow::{SNAP_LEN, SNAP_OFFSET},
};

use super::{MAP_EVENTS, Probe, ProbeError, error::map_err};

/// The ring of per-packet events, taken from the probe.
pub struct EventReader(RingBuf<MapData>);

impl EventReader {
    /// How long readers sleep at most before draining the ring anyway.
    pub const POLL: std::time::Duration = std::time::Duration::from_millis(10);

    /// Appends up to `max` waiting events to `out`; returns how many were appended. Bytes
    /// past the first `SNAP_LEN` of whole-packet events are left out.
    pub fn drain_into(&mut self, out: &mut Vec<PacketEvent>, max: usize) -> usize {
        let mut n = 0;
        while n < max
            && let Some(item) = self.0.next()
        {
            if let Some((ev, _)) = decode(&item, false) {
                out.push(ev);
                n += 1;
            }
        }
        n
    }

    /// The same, with the bytes of whole-packet events (`-s` beyond `SNAP_LEN`).
    pub fn drain_events(&mut self, out: &mut Vec<Event>, max: usize) -> usize {
        let mut n = 0;
        while n < max
            && let Some(item) = self.0.next()
        {
            if let Some((ev, whole)) = decode(&item, true) {
                out.push(Event { ev, whole });
                n += 1;
            }
        }
        n
    }

    /// The ring's descriptor, readable when the kernel woke readers.
    #[must_use]
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// An event with, for a whole-packet event, all its bytes.
#[derive(Clone, Debug)]
pub struct Event {
    pub ev: PacketEvent,
    /// `snap_len` bytes of the frame when they are more than `snap` holds.
    pub whole: Option<Box<[u8]>>,
}

impl std::ops::Deref for Event {
    type Target = PacketEvent;
    fn deref(&self) -> &PacketEvent {
        &self.ev
    }
}

impl Event {
    /// The bytes the kernel copied.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        self.whole.as_deref().unwrap_or_else(|| {
            &self.ev.snap[..usize::from(self.ev.snap_len).min(self.ev.snap.len())]
        })
    }
}

/// A ring record: a `PacketEvent`, or (whole-packet events) its head and `snap_len` bytes,
/// a record of its own length (`inspector_common::flow::WholeEvent`).
fn decode(item: &[u8], whole: bool) -> Option<(PacketEvent, Option<Box<[u8]>>)> {
    const SIZE: usize = std::mem::size_of::<PacketEvent>();
    if item.len() < SNAP_OFFSET {
        return None;
    }
    let mut ev: PacketEvent = if item.len() >= SIZE {
        // SAFETY: a PacketEvent is plain data (every byte pattern is valid), and the record
        // holds at least one: read unaligned, in place (the common, fixed-size record).
        unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) }
    } else {
        let mut buf = [0u8; SIZE];
        buf[..item.len()].copy_from_slice(item);
        // SAFETY: as above, from a zero-padded copy.
        unsafe { std::ptr::read_unaligned(buf.as_ptr().cast()) }
    };
    let bytes = &item[SNAP_OFFSET..];
    let len = usize::from(ev.snap_len).min(bytes.len());
    ev.snap_len = u16::try_from(len).unwrap_or(u16::MAX);
    let more = (whole && len > SNAP_LEN).then(|| bytes[..len].into());
    Some((ev, more))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as the kernel writes it: the head, then `n` bytes.
    fn record(n: usize, fixed: bool) -> Vec<u8> {
        let mut ev = PacketEvent::zeroed();
        ev.snap_len = u16::try_from(n).unwrap();
        ev.len = 9000;
        let size = if fixed {
            std::mem::size_of::<PacketEvent>()
        } else {
            SNAP_OFFSET + n
        };
        let mut r = vec![0u8; size.max(std::mem::size_of::<PacketEvent>())];
        // SAFETY: writing a plain struct's bytes into a buffer at least its size.
        unsafe { std::ptr::write_unaligned(r.as_mut_ptr().cast::<PacketEvent>(), ev) };
        for (i, b) in r[SNAP_OFFSET..].iter_mut().enumerate() {
            *b = i as u8;
        }
        r.truncate(size);
        r
    }

    #[test]
    fn records_of_any_length_decode() {
        let (ev, whole) = decode(&record(60, true), true).unwrap();
        assert_eq!((ev.snap_len, ev.len, whole), (60, 9000, None));
        let (ev, whole) = decode(&record(60, false), true).unwrap();
        assert_eq!((ev.snap_len, whole), (60, None));
        assert_eq!(ev.snap[59], 59);
        let (ev, whole) = decode(&record(3000, false), true).unwrap();
        let whole = whole.unwrap();
        assert_eq!((ev.snap_len, whole.len()), (3000, 3000));
        assert_eq!((whole[0], whole[2999]), (0, (2999 % 256) as u8));
        assert_eq!(ev.snap[127], 127);
        // A record shorter than its snap_len says: what is there.
        let mut short = record(3000, false);
        short.truncate(SNAP_OFFSET + 200);
        let (ev, whole) = decode(&short, true).unwrap();
        assert_eq!((ev.snap_len, whole.unwrap().len()), (200, 200));
        assert!(decode(&record(0, false)[..40], true).is_none());
    }
}
