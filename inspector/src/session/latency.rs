//! Per-hop latency as a session measures it: from the kernel's own histograms (with the
//! auto sampling controller that keeps timing cheap under load), or from per-packet events
//! stitched and aggregated here (`--latency-from events`).
use std::{
    os::fd::BorrowedFd,
    time::{Duration, Instant},
};

use inspector_common::{PacketEvent, Stat, hop::HopHist};
use serde::Serialize;

use super::{Measure, Sampling, Session, SessionError};
use crate::{
    flows::{
        FlowRecord,
        filter::Filter,
        hops::{self, Aggregator, LatencyRow},
        path::hook_label,
    },
    probe::{EventReader, Probe},
};

/// How often auto sampling looks at the timed rate.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// Packets seen by the event aggregator are closed once first seen this long ago.
const EVENTS_IDLE_NS: u64 = 200_000_000;

/// Which sampling rates per-hop timing used (`type: "latency_sampling"`).
#[derive(Clone, Debug, Serialize)]
pub struct SamplingReport {
    pub auto: bool,
    /// Each rate used, as "1 in N".
    pub timed_one_in: Vec<u32>,
}

/// One transition's histogram as the kernel keeps it (one CPU's), with its names.
#[derive(Clone, Debug)]
pub struct HopHistogram {
    /// Its slot in the kernel's table (stable for the session's life).
    pub slot: u32,
    /// The packets' ends: workload names where known, else addresses.
    pub src: String,
    pub dst: String,
    /// The hop the time runs from, and to (`netns/ifname(out|in)`).
    pub from: String,
    pub to: String,
    pub hist: HopHist,
}

/// A change of the auto sampling rate, for the log.
#[derive(Clone, Copy, Debug)]
pub struct RateChange {
    pub one_in: u32,
    pub timed_per_sec: f64,
}

impl std::fmt::Display for RateChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "per-hop timing (auto): 1 packet in {} from now ({:.0} timed hops/s, budget {:.0})",
            self.one_in,
            self.timed_per_sec,
            hops::TIMED_PER_SEC
        )
    }
}

/// The auto sampling controller.
pub(super) struct Auto {
    shift: u32,
    /// When the timed count was last read, and its value then.
    last: (Instant, u64),
}

pub(super) enum Latency {
    Kernel {
        auto: Option<Auto>,
        shifts: Vec<u32>,
    },
    Events {
        ring: EventReader,
        agg: Box<Aggregator>,
        batch: Vec<PacketEvent>,
    },
}

impl Latency {
    pub(super) fn start(probe: &mut Probe, m: Measure) -> Result<Option<Self>, SessionError> {
        Ok(match m {
            Measure::HopTiming {
                sample: Sampling::Auto,
                ..
            } => {
                probe.set_hop_shift(0)?;
                Some(Self::Kernel {
                    auto: Some(Auto {
                        shift: 0,
                        last: (Instant::now(), 0),
                    }),
                    shifts: vec![0],
                })
            }
            Measure::HopTiming {
                sample: Sampling::Shift(s),
                ..
            } => Some(Self::Kernel {
                auto: None,
                shifts: vec![s],
            }),
            Measure::LatencyFromEvents { .. } => Some(Self::Events {
                ring: probe.take_events()?,
                agg: Box::default(),
                batch: Vec::with_capacity(4096),
            }),
            Measure::Flows | Measure::Events { .. } => None,
        })
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Self::Events { ring, .. } => Some(ring.fd()),
            Self::Kernel { .. } => None,
        }
    }

    fn next_due(&self) -> Option<Instant> {
        match self {
            Self::Events { .. } => Some(Instant::now() + EventReader::POLL),
            Self::Kernel { auto: Some(a), .. } => Some(a.last.0 + SAMPLE_EVERY),
            Self::Kernel { auto: None, .. } => None,
        }
    }

    /// Drains events into the aggregator (closing packets first seen 200 ms ago; all of
    /// them when `all`), or runs the auto sampling controller when due.
    fn tick(
        &mut self,
        probe: &mut Probe,
        filter: &Filter,
        all: bool,
    ) -> Result<Option<RateChange>, SessionError> {
        match self {
            Self::Events { ring, agg, batch } => {
                loop {
                    batch.clear();
                    if ring.drain_into(batch, 4096) == 0 {
                        break;
                    }
                    for ev in batch.iter().filter(|ev| filter.matches(&ev.key)) {
                        agg.push(ev);
                    }
                }
                if all {
                    agg.close_quiet(0, 0);
                } else {
                    agg.close_quiet(crate::sys::time::mono_now_ns(), EVENTS_IDLE_NS);
                }
                Ok(None)
            }
            Self::Kernel {
                auto: Some(a),
                shifts,
            } if a.last.0.elapsed() >= SAMPLE_EVERY => {
                let timed = probe.stats()?[Stat::HopTimed as usize];
                let secs = a.last.0.elapsed().as_secs_f64();
                #[expect(clippy::cast_precision_loss, reason = "a rate")]
                let per_sec = timed.saturating_sub(a.last.1) as f64 / secs;
                a.last = (Instant::now(), timed);
                let next = hops::auto_shift(a.shift, per_sec, hops::TIMED_PER_SEC);
                if next == a.shift {
                    return Ok(None);
                }
                a.shift = next;
                probe.set_hop_shift(next)?;
                if !shifts.contains(&next) {
                    shifts.push(next);
                }
                Ok(Some(RateChange {
                    one_in: 1 << next,
                    timed_per_sec: per_sec,
                }))
            }
            Self::Kernel { .. } => Ok(None),
        }
    }
}

impl Session {
    /// Descriptors a front-end's wait should include (the event ring of latency from events,
    /// the kernel log, the kernel's link announcements, the runtimes' events).
    #[must_use]
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        use std::os::fd::AsFd as _;
        self.latency
            .as_ref()
            .and_then(Latency::fd)
            .into_iter()
            .chain(self.probe.kernel_log_fd())
            .chain(self.watch.as_ref().map(|w| w.as_fd()))
            .chain(self.identity.events_fd())
            .collect()
    }

    /// When the session next wants [`Session::tick`] called (None: only on its descriptors).
    #[must_use]
    pub fn next_due(&self) -> Option<Instant> {
        self.latency.as_ref().and_then(Latency::next_due)
    }

    /// Does the session's periodic work: forwards the kernel log, drains per-packet events
    /// into the latency aggregator, runs auto sampling. Returns a sampling change, if any.
    pub fn tick(&mut self) -> Result<Option<RateChange>, SessionError> {
        self.probe.flush_kernel_log();
        match self.latency.as_mut() {
            Some(l) => l.tick(&mut self.probe, &self.filter, false),
            None => Ok(None),
        }
    }

    /// The per-hop latency rows (None when latency is not measured): each endpoint pair's
    /// hops in path order. Events still open are closed first.
    pub fn latency_rows(&mut self) -> Result<Option<Vec<LatencyRow>>, SessionError> {
        let Some(l) = self.latency.as_mut() else {
            return Ok(None);
        };
        l.tick(&mut self.probe, &self.filter, true)?;
        let hists: Option<Vec<HopHist>> = match self.latency.as_ref() {
            Some(Latency::Kernel { .. }) => Some(
                self.probe
                    .hop_hists()?
                    .into_iter()
                    .map(|(_, h)| h)
                    .collect(),
            ),
            _ => None,
        };
        let rows = self.with_resolver(|r| {
            let hop_name = |ev: &PacketEvent| self.hop_name(ev);
            let pair_name = |ev: &PacketEvent| {
                let (src, dst, proto) = self.pair_names(r, ev);
                format!("{src} -> {dst} {proto}")
            };
            match (&self.latency, &hists) {
                (Some(Latency::Events { agg, .. }), _) => agg.rows(hop_name, pair_name),
                (_, Some(h)) => hops::kernel_rows(h, hop_name, pair_name),
                _ => Vec::new(),
            }
        })?;
        Ok(Some(rows))
    }

    /// The kernel's per-hop histograms, one per transition per CPU, named (None unless
    /// per-hop timing runs in the kernel). A slot keeps its transition for the session's
    /// life, so its counts only grow: a front-end can add up what each grew by.
    pub fn hop_histograms(&self) -> Result<Option<Vec<HopHistogram>>, SessionError> {
        if !matches!(self.latency, Some(Latency::Kernel { .. })) {
            return Ok(None);
        }
        let raw = self.probe.hop_hists()?;
        let v = self.with_resolver(|r| {
            raw.into_iter()
                .map(|(slot, hist)| {
                    let [pair, from, to] = hops::transition_events(&hist.tag);
                    let (src, dst, _) = self.pair_names(r, &pair);
                    HopHistogram {
                        slot,
                        src,
                        dst,
                        from: self.hop_name(&from),
                        to: self.hop_name(&to),
                        hist,
                    }
                })
                .collect()
        })?;
        Ok(Some(v))
    }

    /// The events the latency rows are named by: each hop's and each pair's (for keeping
    /// their names when something changes hands, `kept.rs`).
    pub(super) fn latency_events(&self) -> (Vec<PacketEvent>, Vec<PacketEvent>) {
        match &self.latency {
            Some(Latency::Events { agg, .. }) => {
                (agg.hop_events().to_vec(), agg.pair_events().to_vec())
            }
            Some(Latency::Kernel { .. }) => {
                let (mut hops, mut pairs) = (Vec::new(), Vec::new());
                for (_, h) in self.probe.hop_hists().unwrap_or_default() {
                    let [pair, from, to] = hops::transition_events(&h.tag);
                    hops.extend([from, to]);
                    pairs.push(pair);
                }
                (hops, pairs)
            }
            None => (Vec::new(), Vec::new()),
        }
    }

    /// `netns/ifname(out|in)` (or the stack hook's name) of an event's hop: as kept when
    /// its namespace changed hands, else as named now.
    fn hop_name(&self, ev: &PacketEvent) -> String {
        if let Some(n) = self.kept.borrow().hops.get(&super::kept::hop_id(ev)) {
            return n.clone();
        }
        self.hop_name_now(ev)
    }

    /// [`Self::hop_name`] under the names the session has now.
    pub(super) fn hop_name_now(&self, ev: &PacketEvent) -> String {
        let rec = FlowRecord::of_event(ev, &self.names, self.clock);
        hook_label(&rec.netns_name, &rec.ifname, ev.key.hook, rec.direction)
    }

    /// An event's two ends, by workload name where known (else the address), and protocol:
    /// as kept when an end changed hands, else as named now.
    fn pair_names(
        &self,
        r: &crate::identity::Resolver<'_>,
        ev: &PacketEvent,
    ) -> (String, String, crate::net::Proto) {
        if let Some(p) = self.kept.borrow().pairs.get(&ev.key) {
            return p.clone();
        }
        self.pair_names_now(r, ev)
    }

    /// [`Self::pair_names`] under resolver `r`.
    pub(super) fn pair_names_now(
        &self,
        r: &crate::identity::Resolver<'_>,
        ev: &PacketEvent,
    ) -> (String, String, crate::net::Proto) {
        let rec = FlowRecord::of_event(ev, &self.names, self.clock);
        let (src, dst) = super::annotate::ends(r, &rec);
        let end = |ip: Option<std::net::IpAddr>, e: Option<crate::identity::Endpoint>| {
            e.and_then(|e| e.name)
                .unwrap_or_else(|| ip.map_or_else(|| "-".into(), |i| i.to_string()))
        };
        (end(rec.hdr.src, src), end(rec.hdr.dst, dst), rec.hdr.proto)
    }

    /// The sampling rates per-hop timing in the kernel used (None unless it is on).
    #[must_use]
    pub fn latency_sampling(&self) -> Option<SamplingReport> {
        match &self.latency {
            Some(Latency::Kernel { auto, shifts }) => {
                let mut s = shifts.clone();
                s.sort_unstable();
                Some(SamplingReport {
                    auto: auto.is_some(),
                    timed_one_in: s.iter().map(|s| 1u32 << s).collect(),
                })
            }
            _ => None,
        }
    }
}
