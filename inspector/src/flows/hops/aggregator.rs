//! The per-hop latency aggregator of `flows --latency --latency-from events`: per-packet
//! events in, one histogram per (endpoint pair, hop, next hop) out.
use inspector_common::{PacketEvent, flow::hook_code};

use super::{LatencyRow, fingerprint::fingerprint, histogram::Histogram, order::path_order};

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

    /// The events its hops are named by (one per hop).
    #[must_use]
    pub fn hop_events(&self) -> &[PacketEvent] {
        &self.hop_events
    }

    /// The events its pairs are named by (the first of each pair).
    #[must_use]
    pub fn pair_events(&self) -> &[PacketEvent] {
        &self.pair_events
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
