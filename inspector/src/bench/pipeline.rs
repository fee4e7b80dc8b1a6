//! `inspector bench pipeline`: the userspace half of the per-packet event pipeline (the
//! records `flows --latency` and `trace --hops` read from the kernel's ring buffer), fed by
//! a synthetic producer so it can be pushed past what this machine's network can generate.
//!
//! 1. Throughput: ring-format records (an 8-byte header and a `PacketEvent`, as the BPF ring
//!    buffer lays them out) of TCP packets crossing `hops` hooks, interleaved in batches of
//!    64 packets per hook as NAPI delivers them, are decoded, filtered and aggregated into
//!    per-hop histograms on one pinned core, as fast as it goes.
//! 2. Paced: a producer thread writes the same records at a fixed rate into a bounded ring
//!    of the size `flows --latency` gives the kernel's (8 MiB) while a consumer thread on
//!    its own core drains it, waking every millisecond as the real loop does; a record that
//!    finds the ring full is lost and counted.
//!
//! The aggregates are checked against what was produced: every packet counted at every hop,
//! and the hop-to-hop time the histograms report equals the synthetic one.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use inspector_common::PacketEvent;
use serde::Serialize;

use crate::flows::{filter::Filter, hops::Aggregator};

/// Time between consecutive hooks of one synthetic packet.
pub const HOP_NS: u64 = 1_500;
/// Packets per batch (all cross hook 0, then all hook 1, ...).
const BATCH: usize = 64;
/// Bytes of a ring record: an 8-byte header, then the event, rounded up to 8.
pub const RECORD: usize = (8 + std::mem::size_of::<PacketEvent>()).div_ceil(8) * 8;
/// The kernel ring's size under `flows --latency`.
pub const RING_BYTES: usize = 8 << 20;

/// An Ethernet + IPv4 + TCP packet event at one hook.
fn event(packet: u32, flow: u32, hop: usize) -> PacketEvent {
    let mut ev = PacketEvent::zeroed();
    let src = [198, 18, 200 + (flow >> 16) as u8, (flow >> 8) as u8];
    let dst = [198, 19, (flow >> 8) as u8, flow as u8];
    let f = &mut ev.snap;
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&92u16.to_be_bytes());
    f[18..20].copy_from_slice(&(packet as u16).to_be_bytes());
    f[22] = 64;
    f[23] = 6;
    f[26..30].copy_from_slice(&src);
    f[30..34].copy_from_slice(&dst);
    f[34..36].copy_from_slice(&40000u16.to_be_bytes());
    f[36..38].copy_from_slice(&80u16.to_be_bytes());
    f[38..42].copy_from_slice(&packet.to_be_bytes());
    f[42..46].copy_from_slice(&(!packet).to_be_bytes());
    f[46] = 0x50;
    ev.snap_len = 14 + 92;
    ev.len = 14 + 92;
    ev.key.src[..4].copy_from_slice(&src);
    ev.key.dst[..4].copy_from_slice(&dst);
    ev.key.sport = 40000;
    ev.key.dport = 80;
    ev.key.proto = 6;
    ev.key.ethertype = 0x0800;
    // Hooks alternate egress / ingress along veth pairs, each in its own "namespace".
    ev.key.netns = 4_026_531_000 + (hop / 2) as u32;
    ev.key.ifindex = 2 + hop as u32;
    ev.key.direction = u8::from(hop % 2 == 1);
    ev.ts_ns = hop as u64 * HOP_NS;
    ev
}

/// `packets` packets x `hops` hooks as ring records, in delivery order; packet `p` goes
/// between the endpoint pair `p % flows`.
#[must_use]
pub fn arena(packets: usize, hops: usize, flows: u32) -> Vec<u8> {
    let mut out = vec![0u8; packets * hops * RECORD];
    let mut at = 0;
    for batch in (0..packets).collect::<Vec<_>>().chunks(BATCH) {
        for hop in 0..hops {
            for &p in batch {
                let ev = event(p as u32, p as u32 % flows.max(1), hop);
                out[at..at + 4]
                    .copy_from_slice(&(std::mem::size_of::<PacketEvent>() as u32).to_ne_bytes());
                // SAFETY: the record has room for the event after its header.
                unsafe { std::ptr::write_unaligned(out[at + 8..].as_mut_ptr().cast(), ev) };
                at += RECORD;
            }
        }
    }
    out
}

/// Decodes one record (None if too short), as `drain_latency` does.
#[inline]
fn decode(rec: &[u8]) -> Option<PacketEvent> {
    let len = u32::from_ne_bytes(rec.get(..4)?.try_into().ok()?) as usize;
    if len < std::mem::size_of::<PacketEvent>() || rec.len() < 8 + len {
        return None;
    }
    // SAFETY: checked length; read unaligned.
    Some(unsafe { std::ptr::read_unaligned(rec[8..].as_ptr().cast()) })
}

/// Decodes one record in place when it is aligned (ring records are, at 8 bytes).
#[inline]
fn decode_ref(rec: &[u8]) -> Option<&PacketEvent> {
    let len = u32::from_ne_bytes(rec.get(..4)?.try_into().ok()?) as usize;
    let body = rec.get(8..8 + len)?;
    if len < std::mem::size_of::<PacketEvent>()
        || !body
            .as_ptr()
            .addr()
            .is_multiple_of(std::mem::align_of::<PacketEvent>())
    {
        return None;
    }
    // SAFETY: long enough and aligned for a PacketEvent (checked above), plain old data.
    #[expect(clippy::cast_ptr_alignment, reason = "alignment checked above")]
    Some(unsafe { &*body.as_ptr().cast::<PacketEvent>() })
}

/// Result of the throughput run.
#[derive(Clone, Debug, Serialize)]
pub struct Throughput {
    /// Endpoint pairs the packets go between (a histogram per pair and hop).
    pub pairs: u32,
    pub events: u64,
    pub seconds: f64,
    pub events_per_sec: f64,
    pub ns_per_event: f64,
    pub packets: u64,
    pub closed_early: u64,
    /// Packets counted at every hop transition / packets produced.
    pub counted_per_hop: Vec<u64>,
    /// p50 of each hop transition (the producer's is `HOP_NS`).
    pub p50_ns: Vec<u64>,
}

/// Per hop transition over all pairs: packets counted, and the median of the pairs' p50s.
fn check(agg: &Aggregator) -> (Vec<u64>, Vec<u64>) {
    let rows = agg.rows(|e| format!("{:03}", e.key.ifindex), |_| String::new());
    let mut by: std::collections::BTreeMap<(String, String), (u64, Vec<f64>)> =
        std::collections::BTreeMap::new();
    for r in rows {
        let e = by.entry((r.from, r.to)).or_default();
        e.0 += r.packets;
        e.1.push(r.p50_ns as f64);
    }
    (
        by.values().map(|v| v.0).collect(),
        by.values()
            .map(|v| super::stats::median(&v.1) as u64)
            .collect(),
    )
}

/// Decodes and aggregates `events` events on the calling thread (pinned to `cpu`); event
/// times advance as if they came at `rate` per second.
#[must_use]
pub fn throughput(events: u64, hops: usize, pairs: u32, rate: u64, cpu: usize) -> Throughput {
    crate::sys::cpu::pin(cpu);
    let packets = ((events as usize / hops.max(1)).min(65_536)).next_multiple_of(BATCH);
    let bytes = arena(packets, hops, pairs);
    // Copied into 8-byte-aligned storage, as the kernel's ring is.
    let mut words = vec![0u64; bytes.len() / 8];
    for (w, b) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        *w = u64::from_ne_bytes(b.try_into().unwrap_or([0; 8]));
    }
    drop(bytes);
    // SAFETY: the u64 storage is viewed as its own bytes.
    let arena: &[u8] =
        unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 8) };
    let filter = Filter::default();
    let mut agg = Aggregator::default();
    let per_packet_ns = 1e9 / rate.max(1) as f64 * hops as f64;
    let round_ns = (packets as f64 * per_packet_ns) as u64;
    let mut n = 0u64;
    let mut round = 0u64;
    let t0 = Instant::now();
    'all: loop {
        for (i, rec) in arena.chunks_exact(RECORD).enumerate() {
            let Some(ev) = decode_ref(rec) else { continue };
            // This round's time: its packets come after the last round's.
            let p = (i / (BATCH * hops)) * BATCH + i % BATCH;
            let ts = ev.ts_ns + round * round_ns + (p as f64 * per_packet_ns) as u64;
            if filter.matches(&ev.key) {
                agg.push_at(ev, ts);
            }
            n += 1;
            if n.is_multiple_of(4096) {
                agg.close_quiet(ev.ts_ns, 200_000_000);
            }
            if n >= events {
                break 'all;
            }
        }
        round += 1;
    }
    agg.close_quiet(0, 0);
    let secs = t0.elapsed().as_secs_f64();
    let (counted_per_hop, p50_ns) = check(&agg);
    Throughput {
        pairs,
        events: n,
        seconds: secs,
        events_per_sec: n as f64 / secs,
        ns_per_event: secs * 1e9 / n as f64,
        packets: agg.packets,
        closed_early: agg.closed_early,
        counted_per_hop,
        p50_ns,
    }
}

/// A single-producer, single-consumer ring of fixed-size records.
struct Ring {
    buf: Box<[AtomicU64]>,
    /// Records it holds.
    cap: usize,
    /// Records written and read so far.
    tail: AtomicUsize,
    head: AtomicUsize,
}

const WORDS: usize = RECORD / 8;

impl Ring {
    fn new(bytes: usize) -> Self {
        let cap = bytes / RECORD;
        Self {
            buf: (0..cap * WORDS).map(|_| AtomicU64::new(0)).collect(),
            cap,
            tail: AtomicUsize::new(0),
            head: AtomicUsize::new(0),
        }
    }

    /// Writes one record; false if the ring is full.
    fn push(&self, rec: &[u8]) -> bool {
        let t = self.tail.load(Ordering::Relaxed);
        if t - self.head.load(Ordering::Acquire) >= self.cap {
            return false;
        }
        let base = (t % self.cap) * WORDS;
        for (i, w) in rec.chunks_exact(8).enumerate() {
            self.buf[base + i].store(
                u64::from_ne_bytes(w.try_into().unwrap_or([0; 8])),
                Ordering::Relaxed,
            );
        }
        self.tail.store(t + 1, Ordering::Release);
        true
    }

    /// Hands every waiting record to `f`; returns how many.
    fn drain(&self, scratch: &mut [u8; RECORD], mut f: impl FnMut(&[u8])) -> usize {
        let h = self.head.load(Ordering::Relaxed);
        let t = self.tail.load(Ordering::Acquire);
        for r in h..t {
            let base = (r % self.cap) * WORDS;
            for (i, w) in scratch.chunks_exact_mut(8).enumerate() {
                w.copy_from_slice(&self.buf[base + i].load(Ordering::Relaxed).to_ne_bytes());
            }
            f(scratch);
        }
        self.head.store(t, Ordering::Release);
        t - h
    }
}

/// Result of the paced run.
#[derive(Clone, Debug, Serialize)]
pub struct Paced {
    pub rate: u64,
    pub seconds: f64,
    pub ring_bytes: usize,
    pub produced: u64,
    pub consumed: u64,
    pub lost: u64,
    /// Most records waiting at one wake-up, and that as a share of the ring.
    pub max_backlog: u64,
    pub max_backlog_pct: f64,
    /// The consumer thread's CPU time / wall time.
    pub consumer_cpu_pct: f64,
    pub packets: u64,
    pub counted_per_hop: Vec<u64>,
    pub p50_ns: Vec<u64>,
}

/// Producer at `rate` events/s for `secs` (pinned to `producer_cpu`), consumer on
/// `consumer_cpu`.
pub fn paced(
    rate: u64,
    secs: f64,
    hops: usize,
    producer_cpu: usize,
    consumer_cpu: usize,
    stop: &AtomicBool,
) -> Paced {
    let ring = Arc::new(Ring::new(RING_BYTES));
    let done = Arc::new(AtomicBool::new(false));
    let (r2, d2) = (Arc::clone(&ring), Arc::clone(&done));
    let consumer = std::thread::spawn(move || {
        crate::sys::cpu::pin(consumer_cpu);
        let filter = Filter::default();
        let mut agg = Aggregator::default();
        let mut scratch = [0u8; RECORD];
        let (c0, t0) = (crate::sys::time::thread_cpu_ns(), Instant::now());
        let mut consumed = 0u64;
        let mut max_backlog = 0usize;
        // Packets close 200 ms after their first event by the events' own clock, not the
        // wall clock: the synthetic producer can be descheduled between two hooks of one
        // packet for longer than that on a busy machine, which a kernel hook never is.
        let mut newest = 0u64;
        loop {
            let finished = d2.load(Ordering::Acquire);
            let n = r2.drain(&mut scratch, |rec| {
                if let Some(ev) = decode(rec)
                    && filter.matches(&ev.key)
                {
                    newest = newest.max(ev.ts_ns);
                    agg.push(&ev);
                }
            });
            consumed += n as u64;
            max_backlog = max_backlog.max(n);
            agg.close_quiet(newest, 200_000_000);
            if finished && n == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        agg.close_quiet(0, 0);
        let cpu = (crate::sys::time::thread_cpu_ns() - c0) as f64 / t0.elapsed().as_nanos() as f64
            * 100.0;
        (consumed, max_backlog, cpu, agg)
    });
    crate::sys::cpu::pin(producer_cpu);
    let packets = 65_536;
    let arena = arena(packets, hops, 4096);
    let records: Vec<&[u8]> = arena.chunks_exact(RECORD).collect();
    let (mut produced, mut lost) = (0u64, 0u64);
    let t0 = Instant::now();
    // Whole batches, so every packet crosses every hook.
    let total = ((rate as f64 * secs) as u64).next_multiple_of((BATCH * hops) as u64);
    let mut rec = vec![0u8; RECORD];
    let mut round = 0u32;
    let mono0 = crate::sys::time::mono_now_ns();
    while produced + lost < total && !stop.load(Ordering::Relaxed) {
        // Events due by now.
        let due = ((t0.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
        while produced + lost < due {
            let i = ((produced + lost) % records.len() as u64) as usize;
            if i == 0 && produced + lost > 0 {
                round = round.wrapping_add(1);
            }
            rec.copy_from_slice(records[i]);
            // Stamp it with its packet's due time (distinct per packet, as a kernel's clock
            // would be: a burst after the producer was descheduled must not give thousands
            // of packets one first-seen time, or the aggregator's eviction of the oldest in
            // a full bucket could pick one still in flight) plus its hop's offset, and make
            // this round's packets new ones (another TCP ack word).
            let j = produced + lost;
            let hop = (i / BATCH) % hops;
            let packet = (j / (BATCH * hops) as u64) * BATCH as u64 + (j % BATCH as u64);
            let due_ns = (packet as f64 * hops as f64 * 1e9 / rate as f64) as u64;
            rec[8..16].copy_from_slice(&(mono0 + due_ns + hop as u64 * HOP_NS).to_ne_bytes());
            let ack = 8 + std::mem::offset_of!(PacketEvent, snap) + 42;
            rec[ack..ack + 4].copy_from_slice(&round.to_be_bytes());
            if ring.push(&rec) {
                produced += 1;
            } else {
                lost += 1;
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let seconds = t0.elapsed().as_secs_f64();
    done.store(true, Ordering::Release);
    let (consumed, max_backlog, consumer_cpu_pct, agg) = consumer.join().unwrap_or_default();
    let (counted_per_hop, p50_ns) = check(&agg);
    Paced {
        rate,
        seconds,
        ring_bytes: RING_BYTES,
        produced,
        consumed,
        lost,
        max_backlog: max_backlog as u64,
        max_backlog_pct: max_backlog as f64 / ring.cap as f64 * 100.0,
        consumer_cpu_pct,
        packets: agg.packets,
        counted_per_hop,
        p50_ns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_records_decode_and_aggregate_to_what_was_made() {
        let a = arena(1000, 4, 10);
        assert_eq!(a.len(), 4000 * RECORD);
        let ev = decode(&a[RECORD * 64..]).unwrap();
        assert_eq!(
            (ev.key.ifindex, ev.ts_ns),
            (3, HOP_NS),
            "batch of 64 per hook"
        );
        // Whole batches: 160 x 64 packets x 4 hooks.
        let t = throughput(40_960, 4, 4096, 1_000_000, 0);
        assert_eq!(t.events, 40_960);
        assert_eq!(t.counted_per_hop, vec![10_240; 3]);
        // More packets than the table holds within the idle window: complete ones are closed
        // early for room, and no hop of any packet is lost by it.
        assert_eq!(t.packets, 10_240);
        assert!(t.closed_early > 0 && t.closed_early < t.packets, "{t:?}");
        for p in &t.p50_ns {
            assert!(p.abs_diff(HOP_NS) * 100 <= HOP_NS * 2, "{p}");
        }
    }

    #[test]
    fn paced_ring_loses_nothing_at_a_modest_rate_and_counts_what_it_loses() {
        let stop = AtomicBool::new(false);
        let p = paced(200_000, 0.3, 4, 0, 0, &stop);
        assert_eq!((p.lost, p.consumed), (0, p.produced), "{p:?}");
        assert_eq!(p.counted_per_hop, vec![p.produced / 4; 3], "{p:?}");
        let r = Ring::new(RECORD * 4);
        let rec = vec![1u8; RECORD];
        assert_eq!((0..6).filter(|_| r.push(&rec)).count(), 4);
    }
}

/// Target from the per-hop issue: events per second on one core.
pub const TARGET_EPS: f64 = 10e6;

/// The throughput repetitions summed up (`type: "pipeline_throughput"`).
#[derive(Clone, Debug, Serialize)]
pub struct ThroughputSummary {
    pub target_events_per_sec: f64,
    pub median_events_per_sec: f64,
    pub min_events_per_sec: f64,
    pub max_events_per_sec: f64,
    pub met: bool,
    /// The repetition closest to the median.
    pub median_run: Throughput,
    pub runs: Vec<Throughput>,
}

/// Median and spread of the repetitions (None when there are none).
#[must_use]
pub fn summarize(runs: Vec<Throughput>) -> Option<ThroughputSummary> {
    let s = super::Spread::over(&runs, |t| t.events_per_sec)?;
    let median_run = runs
        .iter()
        .min_by(|a, b| {
            (a.events_per_sec - s.median)
                .abs()
                .total_cmp(&(b.events_per_sec - s.median).abs())
        })?
        .clone();
    Some(ThroughputSummary {
        target_events_per_sec: TARGET_EPS,
        median_events_per_sec: s.median,
        min_events_per_sec: s.min,
        max_events_per_sec: s.max,
        met: s.median >= TARGET_EPS,
        median_run,
        runs,
    })
}

impl Paced {
    /// Zero loss: every produced event consumed.
    #[must_use]
    pub fn met(&self) -> bool {
        self.lost == 0 && self.consumed == self.produced
    }
}
