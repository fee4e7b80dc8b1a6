//! One packet's hops: the per-hook events of the same packet stitched together by a
//! fingerprint that survives NAT and veth/bridge crossings - IPv4 id, total length and
//! protocol, plus TCP sequence and acknowledgement numbers (or ICMP id/sequence, or the UDP
//! length) - read from the headers each event carries. Addresses and ports are left out on
//! purpose: DNAT and masquerade rewrite them between hops.
use std::collections::HashMap;

use inspector_common::{
    PacketEvent,
    flow::hook_code,
    hop::{HopHist, hop_bucket_value},
    parse::{ETH_P_IP, ETH_P_IPV6},
};

/// What identifies one packet at every hook it crosses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    pub proto: u8,
    pub ip_id: u32,
    pub len: u16,
    pub a: u32,
    pub b: u32,
}

impl Fingerprint {
    /// The fingerprint folded into 64 bits (the per-hop aggregator's key: two packets in
    /// flight at once colliding here is a 1-in-10^10 event at 32,768 packets).
    #[must_use]
    pub fn key(&self) -> u64 {
        let x = (u64::from(self.a) << 32 | u64::from(self.b))
            ^ (u64::from(self.ip_id) << 24 | u64::from(self.len) << 8 | u64::from(self.proto))
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9)
    }
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// The fingerprint of the packet an event carries (None for non-IP packets or headers cut
/// short).
#[must_use]
pub fn fingerprint(ev: &PacketEvent) -> Option<Fingerprint> {
    let snap = &ev.snap[..usize::from(ev.snap_len).min(ev.snap.len())];
    // Fast path: untagged IPv4 without options carrying TCP, the common case.
    if let Some(h) = snap.get(..54)
        && h[12..14] == [0x08, 0x00]
        && h[14] == 0x45
        && h[23] == 6
    {
        let w32 = |o: usize| u32::from_be_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        return Some(Fingerprint {
            proto: 6,
            ip_id: u32::from(u16::from_be_bytes([h[18], h[19]])),
            len: u16::from_be_bytes([h[16], h[17]]),
            a: w32(38),
            b: w32(42),
        });
    }
    // The snapshot starts at the MAC header on Ethernet-like devices; skip VLAN tags.
    let mut off = 12;
    let mut ethertype = be16(snap, off)?;
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        off += 4;
        ethertype = be16(snap, off)?;
    }
    off += 2;
    match ethertype {
        ETH_P_IP => {
            let ihl = usize::from(snap.get(off)? & 0x0f) * 4;
            let len = be16(snap, off + 2)?;
            let ip_id = u32::from(be16(snap, off + 4)?);
            let proto = *snap.get(off + 9)?;
            let l4 = off + ihl;
            let (a, b) = l4_words(snap, proto, l4)?;
            Some(Fingerprint {
                proto,
                ip_id,
                len,
                a,
                b,
            })
        }
        ETH_P_IPV6 => {
            // No id in IPv6: the flow label stands in (constant per flow), with the L4 words.
            let flow = be32(snap, off)? & 0x000f_ffff;
            let len = be16(snap, off + 4)?;
            let proto = *snap.get(off + 6)?;
            let (a, b) = l4_words(snap, proto, off + 40)?;
            Some(Fingerprint {
                proto,
                ip_id: flow,
                len,
                a,
                b,
            })
        }
        _ => None,
    }
}

/// Two words of the L4 header that NAT leaves alone.
fn l4_words(snap: &[u8], proto: u8, l4: usize) -> Option<(u32, u32)> {
    match proto {
        // TCP: sequence and acknowledgement numbers.
        6 => Some((be32(snap, l4 + 4)?, be32(snap, l4 + 8)?)),
        // ICMP/ICMPv6: type/code and the echo sequence (the id may be rewritten by NAT).
        1 | 58 => Some((
            u32::from(be16(snap, l4)?),
            u32::from(be16(snap, l4 + 6).unwrap_or(0)),
        )),
        // UDP: its length and a hash of the payload bytes the snapshot holds (ports change
        // under NAT; unconnected sockets send every datagram with IP id 0).
        17 => Some((
            u32::from(be16(snap, l4 + 4)?),
            snap.get(l4 + 8..).map_or(0, |p| {
                p.iter().fold(0x811c_9dc5u32, |h, b| {
                    (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
                })
            }),
        )),
        _ => Some((0, 0)),
    }
}

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
                v.sort_by_key(|e| (e.ts_ns, super::path::hook_rank(e.key.hook, e.key.direction)));
                done.push(v);
            }
        }
        done.sort_by_key(|v| v.first().map_or(0, |e| e.ts_ns));
        done
    }
}

/// A log-linear histogram of nanoseconds: exact below 32 ns, then 32 buckets per power of
/// two (a value is reported as its bucket's middle: within 1.6%); the maximum is exact.
#[derive(Clone, Default)]
pub struct Histogram {
    /// Bucket of `counts[0]`.
    base: usize,
    counts: Vec<u32>,
    n: u64,
    sum: u64,
    max: u64,
}

const SUB: u32 = 32;

fn bucket(v: u64) -> usize {
    if v < u64::from(SUB) {
        return v as usize;
    }
    let e = v.ilog2();
    let sub = (v >> (e - 5)) & u64::from(SUB - 1);
    ((e - 4) * SUB) as usize + sub as usize
}

fn bucket_value(b: usize) -> u64 {
    let sub = SUB as usize;
    if b < sub {
        return b as u64;
    }
    let e = (b / sub) as u32 + 4;
    let lo = ((sub + b % sub) as u64) << (e - 5);
    lo + (1u64 << (e - 5)) / 2
}

impl Histogram {
    pub fn add(&mut self, v: u64) {
        // Counts are kept from the lowest bucket seen (`base`) up: one hop's times cluster,
        // so a histogram stays a few hundred bytes and thousands of them stay in cache.
        let b = bucket(v);
        if self.counts.is_empty() {
            self.base = b;
        } else if b < self.base {
            let grow = self.base - b;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.base = b;
        }
        let i = b - self.base;
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] = self.counts[i].saturating_add(1);
        self.n += 1;
        self.sum = self.sum.saturating_add(v);
        self.max = self.max.max(v);
    }

    #[must_use]
    pub fn count(&self) -> u64 {
        self.n
    }

    /// The exact mean (0 when empty).
    #[must_use]
    pub fn mean(&self) -> u64 {
        self.sum.checked_div(self.n).unwrap_or(0)
    }

    #[must_use]
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at percentile `p` (0-100].
    #[must_use]
    pub fn percentile(&self, p: u64) -> u64 {
        let rank = (self.n * p).div_ceil(100).clamp(1, self.n.max(1));
        let mut seen = 0u64;
        for (b, c) in self.counts.iter().enumerate() {
            seen += u64::from(*c);
            if seen >= rank {
                return bucket_value(self.base + b).min(self.max);
            }
        }
        self.max
    }
}

/// One row of the latency table (`type: "latency"` JSON).
#[derive(Debug, serde::Serialize)]
pub struct LatencyRow {
    /// `src -> dst`, named when the ends are known.
    pub pair: String,
    /// `netns/ifname(out|in)` of the hop the time is measured from, and to.
    pub from: String,
    pub to: String,
    pub packets: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
    /// Exact mean: unlike percentiles, means of consecutive hops add up to the path's.
    pub mean_ns: u64,
}

/// A packet being followed (80 bytes, so a table of them stays in cache): when it was first
/// seen, and each hook it crossed (hop id, ns since first seen).
#[derive(Clone, Copy, Default)]
struct Open {
    /// `Fingerprint::key`; 0 = free.
    key: u64,
    first_ts: u64,
    generation: u32,
    pair: u32,
    n: u8,
    hop: [u16; MAX_HOPS],
    delta: [u32; MAX_HOPS],
}

/// Most hooks one packet is followed across.
const MAX_HOPS: usize = 8;

/// Buckets of the table of packets being followed; `WAYS` packets per bucket (the oldest
/// makes room for a new one). 16,384 packets: at low rates a packet is followed for the
/// whole idle window, at millions of events per second the window shrinks to what the table
/// spans (6.5 ms at 10 M events/s over 4 hooks) - a packet crosses a node in microseconds -
/// and the 1.3 MB table stays in cache.
const BUCKETS: usize = 4_096;
/// Packets per bucket: with four, a packet still in flight is closed early only if four
/// packets in flight share its bucket.
const WAYS: usize = 4;

/// The per-hop latency pipeline of `flows --latency`, built for millions of events per
/// second on one core: each event is fingerprinted, its hop (namespace, interface,
/// direction) and endpoint pair interned to small numbers, and appended to its packet in a
/// two-way set-associative table; a packet is closed once `idle` has passed since its first
/// event (or when its bucket needs room) and its hop-to-hop times go into one histogram per
/// (pair, from hop, to hop). Names are looked up only when printing.
pub struct Aggregator {
    table: Vec<[Open; WAYS]>,
    queue: std::collections::VecDeque<(u64, u64, u32)>,
    generation: u32,
    /// The last hop looked up, and its id (events come in bursts per hook).
    last_hop: Option<((u32, u32, u8), u16)>,
    hop_ids: rustc_hash::FxHashMap<(u32, u32, u8), u16>,
    /// One event per hop and per pair, to name them.
    hop_events: Vec<PacketEvent>,
    /// Whether each hop is an ingress one (egress sorts first at equal times).
    hop_ingress: Vec<bool>,
    pair_ids: rustc_hash::FxHashMap<([u8; 16], [u8; 16], u8), u32>,
    pair_events: Vec<PacketEvent>,
    /// Per pair: the last hop sequence closed and its rows (most packets of a pair take
    /// the same path).
    pair_paths: Vec<PairPath>,
    row_ids: rustc_hash::FxHashMap<(u32, u16, u16), usize>,
    rows: Vec<((u32, u16, u16), Histogram)>,
    /// Events taken, packets closed, packets closed early for room.
    pub events: u64,
    pub packets: u64,
    pub closed_early: u64,
}

impl Default for Aggregator {
    fn default() -> Self {
        Self {
            table: vec![[Open::default(); WAYS]; BUCKETS],
            queue: std::collections::VecDeque::with_capacity(BUCKETS * WAYS),
            generation: 0,
            last_hop: None,
            hop_ids: rustc_hash::FxHashMap::default(),
            hop_events: Vec::new(),
            hop_ingress: Vec::new(),
            pair_ids: rustc_hash::FxHashMap::default(),
            pair_events: Vec::new(),
            pair_paths: Vec::new(),
            row_ids: rustc_hash::FxHashMap::default(),
            rows: Vec::new(),
            events: 0,
            packets: 0,
            closed_early: 0,
        }
    }
}

/// The last hop sequence of a pair and the rows of its hop transitions.
#[derive(Clone, Copy, Default)]
struct PairPath {
    n: u8,
    hops: [u16; MAX_HOPS],
    rows: [u32; MAX_HOPS],
}

/// Most distinct hops (namespace, interface, direction) kept apart; later ones share the last.
const MAX_HOP_IDS: usize = 65_535;

fn bucket_of(key: u64) -> usize {
    (key >> 40) as usize % BUCKETS
}

impl Aggregator {
    pub fn push(&mut self, ev: &PacketEvent) {
        self.push_at(ev, ev.ts_ns);
    }

    /// Like `push`, with the event's time given (for replayed or synthetic events).
    pub fn push_at(&mut self, ev: &PacketEvent, ts: u64) {
        self.events += 1;
        let Some(fp) = fingerprint(ev) else {
            return;
        };
        let key = fp.key() | 1;
        let k = &ev.key;
        let hk = (k.netns, k.ifindex, hook_code(k.direction, k.hook));
        let hop = match self.last_hop {
            Some((lk, id)) if lk == hk => id,
            _ => {
                let id = match self.hop_ids.get(&hk) {
                    Some(&h) => h,
                    None => self.new_hop(ev),
                };
                self.last_hop = Some((hk, id));
                id
            }
        };
        let b = bucket_of(key);
        let way = self.table[b].iter().position(|o| o.key == key);
        if let Some(w) = way {
            let o = &mut self.table[b][w];
            let n = usize::from(o.n);
            if n < MAX_HOPS && !o.hop[..n].contains(&hop) {
                // Events of one packet can reach the ring slightly out of order (different
                // CPUs): an earlier one moves the packet's start back.
                if ts < o.first_ts {
                    let back = u32::try_from(o.first_ts - ts).unwrap_or(u32::MAX);
                    for d in &mut o.delta[..n] {
                        *d = d.saturating_add(back);
                    }
                    o.first_ts = ts;
                }
                o.hop[n] = hop;
                o.delta[n] = u32::try_from(ts - o.first_ts).unwrap_or(u32::MAX);
                o.n += 1;
                return;
            }
            // The same hook twice: a new packet that looks the same (a retransmission).
            let old = std::mem::take(&mut self.table[b][w]);
            self.finish(&old);
        }
        // A free way, else the older packet of the bucket makes room.
        let w = if let Some(w) = self.table[b].iter().position(|o| o.key == 0) {
            w
        } else {
            let w = (0..WAYS)
                .min_by_key(|&w| self.table[b][w].first_ts)
                .unwrap_or(0);
            let old = std::mem::take(&mut self.table[b][w]);
            self.finish(&old);
            self.closed_early += 1;
            w
        };
        let pk = (k.src, k.dst, k.proto);
        let pair = match self.pair_ids.get(&pk) {
            Some(&p) => p,
            None => self.new_pair(ev, pk),
        };
        self.generation = self.generation.wrapping_add(1);
        let mut o = Open {
            key,
            first_ts: ts,
            generation: self.generation,
            pair,
            n: 1,
            ..Open::default()
        };
        o.hop[0] = hop;
        self.table[b][w] = o;
        if self.queue.len() >= BUCKETS * WAYS * 4 {
            // Entries of packets long closed early; keep the queue bounded.
            self.queue.pop_front();
        }
        self.queue.push_back((ts, key, self.generation));
    }

    #[cold]
    fn new_hop(&mut self, ev: &PacketEvent) -> u16 {
        let k = &ev.key;
        let id = u16::try_from(self.hop_events.len().min(MAX_HOP_IDS)).unwrap_or(u16::MAX);
        if self.hop_events.len() < MAX_HOP_IDS {
            self.hop_events.push(*ev);
            self.hop_ingress
                .push(k.direction != inspector_common::Direction::Egress as u8);
        }
        self.hop_ids
            .insert((k.netns, k.ifindex, hook_code(k.direction, k.hook)), id);
        id
    }

    #[cold]
    fn new_pair(&mut self, ev: &PacketEvent, pk: ([u8; 16], [u8; 16], u8)) -> u32 {
        let p = u32::try_from(self.pair_events.len()).unwrap_or(u32::MAX);
        self.pair_ids.insert(pk, p);
        self.pair_events.push(*ev);
        self.pair_paths.push(PairPath::default());
        p
    }

    /// Closes the packets first seen before `now_ns - idle_ns` (all when `idle_ns` is 0).
    pub fn close_quiet(&mut self, now_ns: u64, idle_ns: u64) {
        while let Some(&(ts, key, g)) = self.queue.front() {
            if idle_ns != 0 && ts.saturating_add(idle_ns) > now_ns {
                break;
            }
            self.queue.pop_front();
            let b = bucket_of(key);
            if let Some(w) = self.table[b]
                .iter()
                .position(|o| o.key == key && o.generation == g)
            {
                let old = std::mem::take(&mut self.table[b][w]);
                self.finish(&old);
            }
        }
        if idle_ns == 0 {
            for b in 0..BUCKETS {
                for w in 0..WAYS {
                    if self.table[b][w].key != 0 {
                        let old = std::mem::take(&mut self.table[b][w]);
                        self.finish(&old);
                    }
                }
            }
        }
    }

    fn finish(&mut self, o: &Open) {
        self.packets += 1;
        let n = usize::from(o.n);
        if n < 2 {
            return;
        }
        // Path order: time, then egress before ingress at equal time.
        let mut order = [(0u32, false, 0u16); MAX_HOPS];
        for (slot, (&h, &d)) in order.iter_mut().zip(o.hop.iter().zip(&o.delta)).take(n) {
            let ingress = self
                .hop_ingress
                .get(usize::from(h))
                .copied()
                .unwrap_or(false);
            *slot = (d, ingress, h);
        }
        let order = &mut order[..n];
        if !order.is_sorted() {
            order.sort_unstable();
        }
        let pair = o.pair as usize;
        let Some(&path) = self.pair_paths.get(pair) else {
            return;
        };
        let same = usize::from(path.n) == n
            && path.hops[..n]
                .iter()
                .zip(order.iter())
                .all(|(a, b)| *a == b.2);
        let path = if same {
            path
        } else {
            let mut p = PairPath {
                n: o.n,
                ..PairPath::default()
            };
            for (i, w) in order.windows(2).enumerate() {
                let key = (o.pair, w[0].2, w[1].2);
                let r = *self.row_ids.entry(key).or_insert_with(|| {
                    self.rows.push((key, Histogram::default()));
                    self.rows.len() - 1
                });
                p.rows[i] = u32::try_from(r).unwrap_or(u32::MAX);
            }
            for (i, x) in order.iter().enumerate() {
                p.hops[i] = x.2;
            }
            self.pair_paths[pair] = p;
            p
        };
        for (w, &r) in order.windows(2).zip(&path.rows) {
            if let Some(row) = self.rows.get_mut(r as usize) {
                row.1.add(u64::from(w[1].0.saturating_sub(w[0].0)));
            }
        }
    }

    /// Percentiles per (pair, hop), named by `hop_name` and `pair_name` from an event of
    /// that hop / the first event of that pair; in a stable order.
    pub fn rows(
        &self,
        mut hop_name: impl FnMut(&PacketEvent) -> String,
        mut pair_name: impl FnMut(&PacketEvent) -> String,
    ) -> Vec<LatencyRow> {
        let hops: Vec<String> = self.hop_events.iter().map(&mut hop_name).collect();
        let pairs: Vec<String> = self.pair_events.iter().map(&mut pair_name).collect();
        let mut out: Vec<LatencyRow> = self
            .rows
            .iter()
            .map(|&((p, a, b), ref h)| LatencyRow {
                pair: pairs[p as usize].clone(),
                from: hops
                    .get(usize::from(a))
                    .cloned()
                    .unwrap_or_else(|| "(other hops)".into()),
                to: hops
                    .get(usize::from(b))
                    .cloned()
                    .unwrap_or_else(|| "(other hops)".into()),
                packets: h.count(),
                p50_ns: h.percentile(50),
                p90_ns: h.percentile(90),
                p99_ns: h.percentile(99),
                max_ns: h.max(),
                mean_ns: h.mean(),
            })
            .collect();
        path_order(&mut out);
        out
    }
}

/// Puts each pair's rows in path order: from the hop no row of the pair leads to, along
/// `from -> to`; rows off that chain (a second path of the pair) follow in name order.
pub fn path_order(rows: &mut Vec<LatencyRow>) {
    rows.sort_by(|x, y| (&x.pair, &x.from, &x.to).cmp(&(&y.pair, &y.from, &y.to)));
    let mut out = Vec::with_capacity(rows.len());
    let mut rest: std::collections::VecDeque<LatencyRow> = rows.drain(..).collect();
    while let Some(first) = rest.front() {
        let pair = first.pair.clone();
        let mut group: Vec<LatencyRow> = Vec::new();
        while rest.front().is_some_and(|r| r.pair == pair) {
            group.extend(rest.pop_front());
        }
        while !group.is_empty() {
            // A start: a row whose `from` no other row of the group leads to.
            let start = (0..group.len())
                .find(|&i| !group.iter().any(|r| r.to == group[i].from))
                .unwrap_or(0);
            let mut at = group.remove(start);
            loop {
                let next = group.iter().position(|r| r.from == at.to);
                out.push(at);
                match next {
                    Some(i) => at = group.remove(i),
                    None => break,
                }
            }
        }
    }
    *rows = out;
}

/// Per-hop timing's sampling in auto mode: at most this many timed hop transitions per
/// second on the node. A timed hop costs 120-300 ns here (more when the packet rate is low
/// and the tables have gone cold), so timing stays under ~0.15% of one CPU.
pub const TIMED_PER_SEC: f64 = 5_000.0;

/// The sampling shift (time 1 packet in 2^shift) for the next interval, given the current
/// one and the timed transitions per second seen under it: every packet while the traffic
/// is light, and no more than `budget` timed transitions per second when it is not. Goes up
/// at once; comes down one step at a time, only when the step would stay under half the
/// budget (so it does not flap).
#[must_use]
pub fn auto_shift(shift: u32, timed_per_sec: f64, budget: f64) -> u32 {
    let max = inspector_common::hop::HOP_MAX_SHIFT;
    let offered = timed_per_sec * f64::from(1u32 << shift.min(max));
    let mut want = 0;
    while want < max && offered / f64::from(1u32 << want) > budget {
        want += 1;
    }
    if want > shift {
        want
    } else if shift > 0 && offered / f64::from(1u32 << (shift - 1)) <= budget / 2.0 {
        shift - 1
    } else {
        shift.min(max)
    }
}

/// The latency rows of the kernel's per-hop histograms (`inspector_common::hop`), named
/// like [`Aggregator::rows`] (through an event carrying the hop's or the pair's fields);
/// transitions that get the same names are merged.
pub fn kernel_rows(
    hists: &[HopHist],
    mut hop_name: impl FnMut(&PacketEvent) -> String,
    mut pair_name: impl FnMut(&PacketEvent) -> String,
) -> Vec<LatencyRow> {
    let mut merged: std::collections::BTreeMap<(String, String, String), HopHist> =
        std::collections::BTreeMap::new();
    for h in hists {
        let t = &h.tag;
        // A hook's code (`hook_code`) is its direction, plus the stack hook's number << 1.
        let hop = |netns: u32, ifindex: u32, code: u8| {
            let mut ev = PacketEvent::zeroed();
            ev.key.netns = netns;
            ev.key.ifindex = ifindex;
            ev.key.direction = code & 1;
            ev.key.hook = code >> 1;
            ev.key.ethertype = ETH_P_IP;
            ev
        };
        let mut pair = hop(t.to_netns, t.to_ifindex, t.to_direction);
        pair.key.src[..4].copy_from_slice(&t.src);
        pair.key.dst[..4].copy_from_slice(&t.dst);
        pair.key.proto = t.proto;
        let key = (
            pair_name(&pair),
            hop_name(&hop(t.from_netns, t.from_ifindex, t.from_direction)),
            hop_name(&hop(t.to_netns, t.to_ifindex, t.to_direction)),
        );
        match merged.entry(key) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(*h);
            }
            std::collections::btree_map::Entry::Occupied(mut o) => o.get_mut().merge(h),
        }
    }
    let mut rows: Vec<LatencyRow> = merged
        .into_iter()
        .map(|((pair, from, to), h)| {
            let pct = |p: u64| {
                let n: u64 = h.buckets.iter().map(|&c| u64::from(c)).sum();
                let rank = (n * p).div_ceil(100).clamp(1, n.max(1));
                let mut seen = 0u64;
                for (b, &c) in h.buckets.iter().enumerate() {
                    seen += u64::from(c);
                    if seen >= rank {
                        return hop_bucket_value(b).min(h.max_ns);
                    }
                }
                h.max_ns
            };
            LatencyRow {
                pair,
                from,
                to,
                packets: h.packets,
                p50_ns: pct(50),
                p90_ns: pct(90),
                p99_ns: pct(99),
                max_ns: h.max_ns,
                mean_ns: h.sum_ns.checked_div(h.packets).unwrap_or(0),
            }
        })
        .collect();
    path_order(&mut rows);
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ts: u64, dir: u8, ifindex: u32, frame: &[u8]) -> PacketEvent {
        let mut ev = PacketEvent::zeroed();
        ev.ts_ns = ts;
        ev.key.direction = dir;
        ev.key.ifindex = ifindex;
        ev.snap[..frame.len()].copy_from_slice(frame);
        ev.snap_len = u16::try_from(frame.len()).unwrap();
        ev
    }

    /// An Ethernet + IPv4 + TCP header with the given addresses, id and sequence number.
    fn tcp_frame(src: [u8; 4], dst: [u8; 4], sport: u16, id: u16, seq: u32) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[16..18].copy_from_slice(&60u16.to_be_bytes());
        f[18..20].copy_from_slice(&id.to_be_bytes());
        f[23] = 6;
        f[26..30].copy_from_slice(&src);
        f[30..34].copy_from_slice(&dst);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[38..42].copy_from_slice(&seq.to_be_bytes());
        f
    }

    #[test]
    fn a_packet_is_one_packet_across_dnat_and_masquerade() {
        let before = tcp_frame([198, 18, 30, 5], [198, 18, 32, 10], 40000, 7, 1000);
        let after = tcp_frame([198, 18, 30, 1], [198, 18, 30, 2], 51234, 7, 1000);
        let other = tcp_frame([198, 18, 30, 5], [198, 18, 32, 10], 40000, 8, 1000);
        let mut s = Stitcher::default();
        s.push(&event(100, 1, 9, &before));
        s.push(&event(130, 0, 10, &before));
        s.push(&event(190, 1, 11, &after));
        s.push(&event(195, 0, 2, &after));
        s.push(&event(150, 1, 9, &other));
        assert!(
            s.take_quiet(200, 1000).is_empty(),
            "still within the idle window"
        );
        let done = s.take_quiet(10_000, 1000);
        assert_eq!(done.len(), 2);
        let hops: Vec<(u64, u32)> = done[0].iter().map(|e| (e.ts_ns, e.key.ifindex)).collect();
        assert_eq!(hops, [(100, 9), (130, 10), (190, 11), (195, 2)]);
        assert_eq!(done[1].len(), 1);
    }

    #[test]
    fn histogram_is_within_two_percent_and_max_is_exact() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.add(v * 10);
        }
        for (p, exact) in [(50, 500_000u64), (90, 900_000), (99, 990_000)] {
            let got = h.percentile(p);
            assert!(
                got.abs_diff(exact) * 1000 <= exact * 16,
                "p{p}: {got} vs {exact}"
            );
        }
        assert_eq!(
            (h.count(), h.max(), h.mean()),
            (100_000, 1_000_000, 500_005)
        );
        for v in [0u64, 1, 31, 32, 33, 63, 64, 1000, 1 << 40, u64::MAX / 3] {
            let b = bucket_value(bucket(v));
            assert!(b.abs_diff(v) as f64 <= v as f64 * 0.016 + 0.5, "{v} -> {b}");
        }
    }

    #[test]
    fn aggregator_follows_packets_across_nat_and_closes_them() {
        let mut a = Aggregator::default();
        for i in 0..100u32 {
            let ts = u64::from(i) * 1_000_000;
            let before = tcp_frame([198, 18, 30, 5], [198, 18, 32, 10], 40000, 7, i);
            let after = tcp_frame([198, 18, 30, 1], [198, 18, 30, 2], 51234, 7, i);
            a.push(&event(ts, 1, 9, &before));
            a.push(&event(ts + 30 + u64::from(i), 0, 10, &before));
            a.push(&event(ts + 500, 1, 11, &after));
            a.push(&event(ts + 505, 0, 2, &after));
        }
        a.close_quiet(99_000_000, 10_000_000);
        assert_eq!(
            a.packets, 90,
            "packets first seen 10 ms before 'now' are closed"
        );
        a.close_quiet(0, 0);
        assert_eq!((a.events, a.packets, a.closed_early), (400, 100, 0));
        let rows = a.rows(|e| format!("if{}", e.key.ifindex), |_| "p".into());
        let got: Vec<(&str, &str, u64)> = rows
            .iter()
            .map(|r| (r.from.as_str(), r.to.as_str(), r.packets))
            .collect();
        assert_eq!(
            got,
            [
                ("if9", "if10", 100),
                ("if10", "if11", 100),
                ("if11", "if2", 100)
            ],
            "in path order"
        );
        let first = rows.iter().find(|r| r.from == "if9").unwrap();
        assert_eq!(first.max_ns, 129);
        assert!(first.p50_ns.abs_diff(80) <= 1, "{}", first.p50_ns);
        assert_eq!(rows.iter().find(|r| r.from == "if11").unwrap().p99_ns, 5);
    }

    #[test]
    fn kernel_rows_merge_cpus_and_read_percentiles_from_the_kernels_buckets() {
        use inspector_common::hop::{HOP_BUCKETS, HopTag, hop_bucket};
        let tag = HopTag {
            from_ifindex: 9,
            to_ifindex: 10,
            src: [198, 18, 0, 2],
            dst: [198, 18, 0, 3],
            proto: 17,
            from_direction: 1,
            used: 1,
            ..HopTag::default()
        };
        // Two CPUs' histograms of the same transition: 1..=1000 us, odd values on one CPU,
        // even on the other, bucketed as the kernel does.
        let mut per_cpu = [HopHist {
            tag,
            packets: 0,
            sum_ns: 0,
            max_ns: 0,
            buckets: [0; HOP_BUCKETS],
        }; 2];
        for us in 1..=1000u64 {
            let h = &mut per_cpu[(us % 2) as usize];
            let ns = us * 1000;
            h.packets += 1;
            h.sum_ns += ns;
            h.max_ns = h.max_ns.max(ns);
            h.buckets[hop_bucket(ns)] += 1;
        }
        let rows = kernel_rows(
            &per_cpu,
            |e| format!("if{}", e.key.ifindex),
            |e| format!("{:?}", &e.key.src[..4]),
        );
        assert_eq!(rows.len(), 1, "the same names merge");
        let r = &rows[0];
        assert_eq!((r.from.as_str(), r.to.as_str()), ("if9", "if10"));
        assert_eq!((r.packets, r.max_ns, r.mean_ns), (1000, 1_000_000, 500_500));
        for (got, exact) in [
            (r.p50_ns, 500_000u64),
            (r.p90_ns, 900_000),
            (r.p99_ns, 990_000),
        ] {
            assert!(
                got.abs_diff(exact) * 100 <= exact * 7,
                "{got} vs {exact} (buckets are 1/8 of a power of two wide)"
            );
        }
    }

    #[test]
    fn auto_sampling_times_light_traffic_fully_and_caps_heavy_traffic() {
        let b = 50_000.0;
        assert_eq!(auto_shift(0, 1000.0, b), 0, "light: every packet");
        // 1 M transitions/s offered: 1 in 32 keeps it under the budget (31,250/s).
        let s = auto_shift(0, 1_000_000.0, b);
        assert_eq!(s, 5);
        let timed = 1_000_000.0 / 32.0;
        assert_eq!(auto_shift(s, timed, b), 5, "steady");
        // The traffic halves: 15,625/s timed; one step down would be 31,250/s > half the budget.
        assert_eq!(auto_shift(5, timed / 2.0, b), 5);
        // It drops to a tenth: step down by one.
        assert_eq!(auto_shift(5, timed / 10.0, b), 4);
        assert_eq!(auto_shift(10, 1e9, b), 10, "never above the maximum");
    }

    #[test]
    fn non_ip_events_pass_through_alone() {
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        let mut s = Stitcher::default();
        s.push(&event(1, 1, 3, &arp));
        assert_eq!(s.take_quiet(2, 1_000_000).len(), 1);
    }
}
