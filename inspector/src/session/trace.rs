//! Per-packet tracing (`trace`): events read from the ring in batches, filtered (in the
//! kernel, and here for what the kernel cannot express: non-IP protocols, `--service`),
//! each annotated with who is at each end and the Service its connection went to; or, with
//! hops, each packet's events stitched into one record once it has been quiet.
//!
//! `count` counts packets, as tcpdump's `-c` does: per hook, every hook a counted packet
//! crosses is still shown (a packet is recognised at each hook by its fingerprint), and
//! the trace ends once the last counted packet has been quiet for a moment.
use std::{
    collections::{HashSet, VecDeque},
    os::fd::BorrowedFd,
    rc::Rc,
};

use inspector_common::{Direction, FlowKey, PacketEvent, flow::hook_name};
use rustc_hash::FxHashMap;

use super::{
    Session, SessionError,
    annotate::{ends, service_of},
    records::{HopAt, Packet, PacketHops, ServiceOf},
};
use crate::{
    flows::{
        FlowRecord,
        hops::{Fingerprint, Stitcher, fingerprint},
    },
    probe::{Event, EventReader},
    services::attrib::Services,
    sys::time::mono_now_ns,
};

/// A packet is complete once no hook has seen it for this long.
const QUIET_NS: u64 = 200_000_000;
/// Events decoded per batch (one resolver and one socket-owner read per batch).
const BATCH: usize = 4096;
/// An event on a device the session has not named yet (a veth that appeared a moment ago:
/// the global hooks see its first packet before any scan), or in a namespace whose container
/// its runtime has not described yet, waits for the rescan its appearance (or the runtime's
/// `start` event) triggers - tens of ms - at most this long, so it is shown with its names;
/// events after it wait behind it, so the order is kept.
const HOLD_NS: u64 = 250_000_000;
/// How long a packet of a new namespace waits for the workload selectors' verdict (as
/// long as the session waits for the namespace's owner).
const HOLD_SELECT_NS: u64 = super::workloads::YOUNG.as_nanos() as u64;
/// At most this many events wait (beyond, the oldest are shown as they are).
const HOLD_MAX: usize = 1 << 16;

/// What a trace shows.
#[derive(Clone, Debug)]
pub enum TraceItem {
    Packet(Box<Packet>),
    Hops(Box<PacketHops>),
    /// Another packet of a flow already described at this hook (when writing a capture:
    /// see [`Tracer::reuse`]): the first packet's record, and what differs.
    Again(std::rc::Rc<Packet>, Again),
}

/// What differs between packets of one flow at one hook.
#[derive(Clone, Debug)]
pub struct Again {
    pub ts_ns: u64,
    pub time_unix_ns: u64,
    pub len: u32,
    pub tcp_flags: u8,
    pub bytes: Vec<u8>,
}

impl Again {
    /// The whole record: the first packet's, with this one's own fields.
    #[must_use]
    pub fn packet(&self, first: &Packet) -> Packet {
        let mut p = first.clone();
        p.ts_ns = self.ts_ns;
        p.time_unix_ns = self.time_unix_ns;
        p.len = self.len;
        p.tcp_flags = crate::flows::tcp_flags(self.tcp_flags);
        p.bytes.clone_from(&self.bytes);
        p
    }
}

/// Counting packets for `count` in per-hook mode.
#[derive(Default)]
struct Counted {
    /// Fingerprints of the packets counted so far.
    seen: HashSet<Fingerprint>,
    /// Packets without a fingerprint (not IP) counted so far.
    unprinted: u64,
    /// When the last counted packet was last seen (its hooks may follow).
    last_ns: u64,
}

/// A running trace over a session started with `Measure::Events`.
pub struct Tracer {
    ring: EventReader,
    batch: Vec<Event>,
    stitcher: Option<Stitcher>,
    count: Option<u64>,
    counted: Counted,
    shown: u64,
    /// Events waiting for their device to be named (see `HOLD_NS`), in ring order.
    held: VecDeque<Event>,
    /// Describe each (flow, hook) once per poll and send its other packets as `Again`.
    reuse: bool,
}

impl Tracer {
    /// Takes the session's event ring. `hops`: one record per packet with its hops;
    /// `count`: stop after this many packets.
    pub fn new(
        session: &mut Session,
        hops: bool,
        count: Option<u64>,
    ) -> Result<Self, SessionError> {
        Ok(Self {
            ring: session.probe.take_events()?,
            batch: Vec::with_capacity(BATCH),
            stitcher: hops.then(Stitcher::default),
            count,
            counted: Counted::default(),
            shown: 0,
            held: VecDeque::new(),
            reuse: false,
        })
    }

    /// Describes each flow at each hook once per poll (names, workloads, Service), and its
    /// other packets in that poll as [`TraceItem::Again`]: what a capture file needs at a
    /// million events per second, where describing every packet afresh costs microseconds.
    pub fn reuse(&mut self) {
        self.reuse = true;
    }

    /// The ring's descriptor (readable when the kernel woke readers).
    #[must_use]
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.ring.fd()
    }

    /// Whether `count` packets have been shown (with every hook of the last one).
    #[must_use]
    pub fn done(&self) -> bool {
        let Some(c) = self.count else { return false };
        if self.stitcher.is_some() {
            return self.shown >= c;
        }
        let counted = self.counted.seen.len() as u64 + self.counted.unprinted;
        counted >= c && mono_now_ns() >= self.counted.last_ns.saturating_add(QUIET_NS)
    }

    /// What the ring holds now, ready to show in order.
    pub fn poll(&mut self, s: &Session) -> Result<Vec<TraceItem>, SessionError> {
        self.show(s, false)
    }

    /// Moves what the ring holds behind the waiting events, then takes from the front what
    /// may be shown (everything when `all`) into `batch`, at most `BATCH`.
    fn next_batch(&mut self, s: &Session, all: bool) {
        self.batch.clear();
        self.ring.drain_events(&mut self.batch, BATCH);
        self.held.extend(
            self.batch
                .drain(..)
                .filter(|ev| s.filter.matches(&ev.key) && s.selected(&ev.key) != Some(false)),
        );
        let now = mono_now_ns();
        while self.batch.len() < BATCH
            && let Some(ev) = self.held.front()
        {
            let netns = u64::from(ev.key.netns);
            let named = s.names.ifname((netns, ev.key.ifindex)).is_some()
                && !s.identity.pending(netns)
                && s.owners_cover(ev.ts_ns);
            let waited = now >= ev.ts_ns.saturating_add(HOLD_NS);
            // A packet of a new namespace waits (longer) for the selectors' verdict on it.
            let verdict = s.selected(&ev.key);
            let decided = verdict.is_some() || now >= ev.ts_ns.saturating_add(HOLD_SELECT_NS);
            let full = self.held.len() > HOLD_MAX;
            if !(all || full || ((named || waited) && decided)) {
                break;
            }
            if let Some(ev) = self.held.pop_front()
                && verdict == Some(true)
            {
                self.batch.push(ev);
            }
        }
    }

    fn show(&mut self, s: &Session, all: bool) -> Result<Vec<TraceItem>, SessionError> {
        let mut out = Vec::new();
        loop {
            self.next_batch(s, all);
            if self.batch.is_empty() {
                break;
            }
            let svc = s.services_now();
            // Conntrack is re-read when a packet's connection is not in the last dump (its
            // entry appears as the first packet crosses the node).
            if let Some(mut sv) = svc
                && let Some(newest) = self
                    .batch
                    .iter()
                    .filter(|ev| needs_conntrack(&sv, ev))
                    .map(|ev| ev.ts_ns)
                    .max()
            {
                sv.refresh_conntrack_for(newest, Some(&s.identity.identity));
            }
            let svc = s.services.as_ref().map(|c| c.borrow());
            let want = s.filter.service.as_deref();
            let of = |ev: &PacketEvent| -> Option<ServiceOf> {
                let rec = FlowRecord::of_event(ev, &s.names, s.clock);
                svc.as_ref().and_then(|sv| service_of(sv, &rec))
            };
            let batch = std::mem::take(&mut self.batch);
            if let Some(st) = self.stitcher.as_mut() {
                for ev in &batch {
                    if want.is_none_or(|w| of(ev).is_some_and(|a| a.ns_name() == w)) {
                        st.push(ev);
                    }
                }
            } else {
                let mut memo: FxHashMap<FlowKey, Option<Rc<Packet>>> = FxHashMap::default();
                s.with_resolver(|r| {
                    for ev in &batch {
                        if self.reuse {
                            let first = memo.entry(ev.key).or_insert_with(|| {
                                let at = of(ev);
                                let wanted = want
                                    .is_none_or(|w| at.as_ref().is_some_and(|a| a.ns_name() == w));
                                wanted.then(|| Rc::new(packet(s, r, ev, at, true)))
                            });
                            let Some(first) = first.clone() else {
                                continue;
                            };
                            if !self.counts(ev) {
                                continue;
                            }
                            let again = Again {
                                ts_ns: ev.ts_ns,
                                time_unix_ns: s.clock.unix_ns(ev.ts_ns),
                                len: ev.len + if ev.vlan_tpid == 0 { 0 } else { 4 },
                                tcp_flags: ev.tcp_flags,
                                bytes: frame(ev),
                            };
                            out.push(TraceItem::Again(first, again));
                            continue;
                        }
                        let at = of(ev);
                        if want.is_some_and(|w| at.as_ref().is_none_or(|a| a.ns_name() != w)) {
                            continue;
                        }
                        if !self.counts(ev) {
                            continue;
                        }
                        // No bytes: they are for capture files, which `reuse` writes.
                        out.push(TraceItem::Packet(Box::new(packet(s, r, ev, at, false))));
                    }
                })?;
            }
            self.batch = batch;
        }
        if self.stitcher.is_some() {
            out.extend(self.stitched(s, false)?);
        }
        Ok(out)
    }

    /// What is still open at the end (packets not yet quiet, with hops).
    pub fn finish(&mut self, s: &Session) -> Result<Vec<TraceItem>, SessionError> {
        let mut out = self.show(s, true)?;
        if self.stitcher.is_some() {
            out.extend(self.stitched(s, true)?);
        }
        Ok(out)
    }

    /// Whether an event is shown under `count` (and counts it).
    fn counts(&mut self, ev: &PacketEvent) -> bool {
        let Some(limit) = self.count else {
            return true;
        };
        let c = &mut self.counted;
        let n = c.seen.len() as u64 + c.unprinted;
        let shown = match fingerprint(ev) {
            Some(fp) if c.seen.contains(&fp) => true,
            Some(fp) if n < limit => c.seen.insert(fp),
            None if n < limit => {
                c.unprinted += 1;
                true
            }
            _ => false,
        };
        if shown {
            c.last_ns = c.last_ns.max(ev.ts_ns);
        }
        shown
    }

    /// Stitched packets that are complete (all when `all`), at most what `count` leaves.
    fn stitched(&mut self, s: &Session, all: bool) -> Result<Vec<TraceItem>, SessionError> {
        let Some(st) = self.stitcher.as_mut() else {
            return Ok(Vec::new());
        };
        let quiet = if all {
            st.take_quiet(0, 0)
        } else {
            st.take_quiet(mono_now_ns(), QUIET_NS)
        };
        let left = self.count.map(|c| c.saturating_sub(self.shown));
        let items: Vec<TraceItem> = s.with_resolver(|r| {
            quiet
                .iter()
                .filter(|evs| !evs.is_empty())
                .take(left.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX)))
                .map(|evs| TraceItem::Hops(Box::new(packet_hops(s, r, evs))))
                .collect()
        })?;
        self.shown += items.len() as u64;
        Ok(items)
    }
}

fn needs_conntrack(s: &Services, ev: &PacketEvent) -> bool {
    crate::flows::Header::decode_key(&ev.key).is_some_and(|k| {
        s.lookup(k.0, k.1, k.2, k.3, k.4).is_none() && s.is_frontend(k.0, k.1, k.2, k.3, k.4)
    })
}

fn packet(
    s: &Session,
    r: &crate::identity::Resolver<'_>,
    ev: &Event,
    service: Option<ServiceOf>,
    with_bytes: bool,
) -> Packet {
    let rec = FlowRecord::of_event(ev, &s.names, s.clock);
    let (src_endpoint, dst_endpoint) = ends(r, &rec);
    Packet {
        ts_ns: ev.ts_ns,
        time_unix_ns: s.clock.unix_ns(ev.ts_ns),
        hook: hook_name(ev.key.hook, ev.key.direction),
        direction: Direction::from_u8(ev.key.direction).as_str(),
        len: ev.len + if ev.vlan_tpid == 0 { 0 } else { 4 },
        mark: ev.mark,
        netns: rec.netns,
        netns_name: rec.netns_name,
        ifindex: rec.ifindex,
        ifname: rec.ifname,
        hdr: rec.hdr,
        tcp_flags: rec.tcp_flags,
        anomalies: rec.anomalies,
        src_endpoint,
        dst_endpoint,
        service,
        bytes: if with_bytes { frame(ev) } else { Vec::new() },
        file_comment: None,
    }
}

/// The event's bytes as the wire carried them: a VLAN tag the skb held out of band goes
/// back after the MAC addresses (as `AF_PACKET` shows it to tcpdump).
fn frame(ev: &Event) -> Vec<u8> {
    let snap = ev.bytes();
    if ev.vlan_tpid == 0 || snap.len() < 12 {
        return snap.to_vec();
    }
    let mut f = Vec::with_capacity(snap.len() + 4);
    f.extend_from_slice(&snap[..12]);
    f.extend_from_slice(&ev.vlan_tpid.to_ne_bytes());
    f.extend_from_slice(&ev.vlan_tci.to_be_bytes());
    f.extend_from_slice(&snap[12..]);
    f
}

fn packet_hops(s: &Session, r: &crate::identity::Resolver<'_>, evs: &[PacketEvent]) -> PacketHops {
    let first = &evs[0];
    let head = FlowRecord::of_event(first, &s.names, s.clock);
    let (src_endpoint, dst_endpoint) = ends(r, &head);
    let mut prev = first.ts_ns;
    let hops = evs
        .iter()
        .map(|ev| {
            let h = FlowRecord::of_event(ev, &s.names, s.clock);
            let at = HopAt {
                netns: h.netns,
                netns_name: h.netns_name,
                ifindex: h.ifindex,
                ifname: h.ifname,
                hook: hook_name(ev.key.hook, ev.key.direction),
                direction: Direction::from_u8(ev.key.direction).as_str(),
                hook_id: ev.key.hook,
                ts_ns: ev.ts_ns,
                time_unix_ns: s.clock.unix_ns(ev.ts_ns),
                delta_ns: ev.ts_ns.saturating_sub(prev),
                src: h.hdr.src,
                sport: h.hdr.sport,
                dst: h.hdr.dst,
                dport: h.hdr.dport,
            };
            prev = ev.ts_ns;
            at
        })
        .collect();
    PacketHops {
        ts_ns: first.ts_ns,
        time_unix_ns: s.clock.unix_ns(first.ts_ns),
        hdr: head.hdr,
        src_endpoint,
        dst_endpoint,
        len: first.len,
        tcp_flags: head.tcp_flags,
        total_ns: evs
            .last()
            .map_or(0, |l| l.ts_ns.saturating_sub(first.ts_ns)),
        hops,
    }
}
