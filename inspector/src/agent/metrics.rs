//! The agent's Prometheus metrics (`prometheus-client`): counters kept monotone across the
//! flow table's churn. Each round adds, per flow, what it grew by since the last round (a flow
//! seen again smaller was evicted and re-created: all of it is new), so a flow that leaves the
//! table takes nothing away. Labels are workload-level - never a 5-tuple - and at most
//! `max_series` label sets per family; the rest fold into `other`, counted.
use std::collections::{HashMap, HashSet};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use super::histogram::{Counts, KernelHistogram};
use crate::{
    identity::lifecycle::Event,
    session::{Change, Drop, Flow, Stats, latency::HopHistogram},
};

/// Labels of `inspector_packets_total` and `inspector_bytes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrafficLabels {
    pub node: String,
    pub src_workload: String,
    pub dst_workload: String,
    /// The hook's interface: `NAMESPACE/IFNAME`.
    pub hop: String,
    pub direction: String,
}

/// Labels of `inspector_drops_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub node: String,
    pub reason: String,
    pub workload: String,
    pub hop: String,
    /// The netfilter rule behind a netfilter drop, when known ("" otherwise).
    pub rule: String,
}

/// Labels of `inspector_service_connections_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub node: String,
    /// `namespace/name:port`.
    pub service: String,
    /// The backend's `ip:port`, and its pod when known.
    pub backend: String,
    pub backend_workload: String,
    /// `ClusterIP` or `NodePort`.
    pub via: String,
    /// kube-proxy's mode: iptables, nftables or ipvs.
    pub mode: String,
}

/// Labels of `inspector_hop_latency_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HopLabels {
    pub node: String,
    pub src_workload: String,
    pub dst_workload: String,
    /// The hop the time runs from, and to: `NAMESPACE/IFNAME(out|in)` (or a stack hook).
    pub from_hop: String,
    pub to_hop: String,
}

/// Labels of `inspector_lifecycle_events_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LifecycleLabels {
    pub node: String,
    /// netns, link or container.
    pub object: String,
    /// appeared, disappeared, or the runtime's action.
    pub action: String,
}

/// Labels of the agent's own counters that only carry the node.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub node: String,
}

type FlowId = (u64, u32, &'static str, String);

/// Connections already counted (conntrack id and original tuple) -> when last seen.
const CONN_MEMORY: std::time::Duration = std::time::Duration::from_mins(5);

/// Everything exposed on `/metrics`.
pub struct Metrics {
    registry: Registry,
    packets: Family<TrafficLabels, Counter>,
    bytes: Family<TrafficLabels, Counter>,
    drops: Family<DropLabels, Counter>,
    connections: Family<ServiceLabels, Counter>,
    counted: HashMap<(u32, String), std::time::Instant>,
    hop_latency: Family<HopLabels, KernelHistogram>,
    hop_sets: HashSet<HopLabels>,
    /// Each kernel histogram slot's counts as last read.
    last_hop: HashMap<u32, Counts>,
    lifecycle: Family<LifecycleLabels, Counter>,
    attach_failures: Family<NodeLabels, Counter>,
    service_sets: HashSet<ServiceLabels>,
    folded: Counter,
    events_lost: Counter,
    attached: Gauge,
    scan_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    rss: Gauge,
    node: String,
    max_series: usize,
    last_flow: HashMap<FlowId, (u64, u64)>,
    last_drop: HashMap<FlowId, u64>,
    last_lost: u64,
    traffic_sets: HashSet<TrafficLabels>,
    drop_sets: HashSet<DropLabels>,
}

fn workload(e: Option<&crate::identity::Endpoint>) -> String {
    e.and_then(|e| e.name.clone())
        .unwrap_or_else(|| "unknown".into())
}

impl Metrics {
    #[must_use]
    pub fn new(node: &str, max_series: usize) -> Self {
        let mut registry = Registry::with_prefix("inspector");
        let (packets, bytes, drops) = (Family::default(), Family::default(), Family::default());
        registry.register(
            "packets",
            "Packets seen at a hook, by workload pair",
            packets.clone(),
        );
        registry.register(
            "bytes",
            "Bytes (whole frames) seen at a hook, by workload pair",
            bytes.clone(),
        );
        registry.register(
            "drops",
            "Packets the kernel dropped, by reason, workload and hop",
            drops.clone(),
        );
        let connections = Family::default();
        registry.register(
            "service_connections",
            "Connections to a Kubernetes Service, by the backend kube-proxy sent them to (from conntrack)",
            connections.clone(),
        );
        let hop_latency = Family::default();
        registry.register_with_unit(
            "hop_latency",
            "Time from one hop of a packet to its next, by workload pair (the kernel's per-hop histograms)",
            prometheus_client::registry::Unit::Seconds,
            hop_latency.clone(),
        );
        let lifecycle = Family::default();
        registry.register(
            "lifecycle_events",
            "Namespaces, links and containers that appeared or went away (or a runtime's action)",
            lifecycle.clone(),
        );
        let attach_failures = Family::default();
        registry.register(
            "attach_failures",
            "Interfaces the programs could not be attached to (each failure once)",
            attach_failures.clone(),
        );
        let folded = Counter::default();
        registry.register(
            "series_folded",
            "Samples counted under `other` because a family reached --max-series label sets",
            folded.clone(),
        );
        let events_lost = Counter::default();
        registry.register(
            "events_lost",
            "Kernel events lost (ring buffer full)",
            events_lost.clone(),
        );
        let attached = Gauge::default();
        registry.register(
            "interfaces_attached",
            "Interfaces the programs are attached to",
            attached.clone(),
        );
        let scan_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "scan_duration_seconds",
            "Duration of the last round (rescan and read)",
            scan_seconds.clone(),
        );
        let rss = Gauge::default();
        registry.register(
            "resident_memory_bytes",
            "The agent's resident set size",
            rss.clone(),
        );
        Self {
            registry,
            packets,
            bytes,
            drops,
            connections,
            counted: HashMap::new(),
            hop_latency,
            hop_sets: HashSet::new(),
            last_hop: HashMap::new(),
            lifecycle,
            attach_failures,
            service_sets: HashSet::new(),
            folded,
            events_lost,
            attached,
            scan_seconds,
            rss,
            node: node.to_owned(),
            max_series,
            last_flow: HashMap::new(),
            last_drop: HashMap::new(),
            last_lost: 0,
            traffic_sets: HashSet::new(),
            drop_sets: HashSet::new(),
        }
    }

    /// The label set to count under: itself, or `other` once the family is full.
    fn cap<L: Clone + Eq + std::hash::Hash>(
        sets: &mut HashSet<L>,
        max: usize,
        folded: &Counter,
        l: L,
        other: impl FnOnce() -> L,
    ) -> L {
        if sets.contains(&l) || sets.len() < max {
            sets.insert(l.clone());
            l
        } else {
            folded.inc();
            other()
        }
    }

    /// Adds what each flow grew by since the last call. Records that print alike (an ARP
    /// request and its reply share a header) are summed under one identity first.
    pub fn update_flows(&mut self, flows: &[Flow]) {
        let mut cur: HashMap<FlowId, (u64, u64, TrafficLabels)> =
            HashMap::with_capacity(flows.len());
        for f in flows {
            let r = &f.rec;
            let id: FlowId = (r.netns, r.ifindex, r.direction, format!("{:?}", r.hdr));
            let e = cur.entry(id).or_insert_with(|| {
                (
                    0,
                    0,
                    TrafficLabels {
                        node: self.node.clone(),
                        src_workload: workload(f.src_endpoint.as_ref()),
                        dst_workload: workload(f.dst_endpoint.as_ref()),
                        hop: format!("{}/{}", r.netns_name, r.ifname),
                        direction: r.direction.to_owned(),
                    },
                )
            });
            e.0 += r.packets;
            e.1 += r.bytes;
        }
        let mut seen = HashMap::with_capacity(cur.len());
        for (id, (p, b, l)) in cur {
            let (p0, b0) = self.last_flow.get(&id).copied().unwrap_or((0, 0));
            // Smaller than last time: evicted and re-created, all of it is new.
            let (dp, db) = if p >= p0 {
                (p - p0, b.saturating_sub(b0))
            } else {
                (p, b)
            };
            seen.insert(id, (p, b));
            if dp == 0 && db == 0 {
                continue;
            }
            let node = self.node.clone();
            let dir = l.direction.clone();
            let l = Self::cap(
                &mut self.traffic_sets,
                self.max_series,
                &self.folded,
                l,
                || TrafficLabels {
                    node,
                    src_workload: "other".into(),
                    dst_workload: "other".into(),
                    hop: "other".into(),
                    direction: dir,
                },
            );
            self.packets.get_or_create(&l).inc_by(dp);
            self.bytes.get_or_create(&l).inc_by(db);
        }
        self.last_flow = seen;
    }

    /// Counts each Service connection once (by its conntrack entry), whichever hops saw it.
    pub fn update_services(&mut self, flows: &[Flow]) {
        let now = std::time::Instant::now();
        for f in flows {
            let Some(s) = &f.service else { continue };
            let id = (s.nat.conntrack_id, s.nat.original.clone());
            if self.counted.insert(id, now).is_some() {
                continue;
            }
            let l = ServiceLabels {
                node: self.node.clone(),
                service: crate::services::spn(
                    &s.service.namespace,
                    &s.service.name,
                    &s.service.port_name,
                ),
                backend: s.backend.endpoint.clone(),
                backend_workload: s
                    .backend
                    .workload
                    .clone()
                    .unwrap_or_else(|| "unknown".into()),
                via: s.service.via.to_owned(),
                mode: s.service.mode.to_owned(),
            };
            let (node, service, via, mode) = (
                l.node.clone(),
                l.service.clone(),
                l.via.clone(),
                l.mode.clone(),
            );
            let l = Self::cap(
                &mut self.service_sets,
                self.max_series,
                &self.folded,
                l,
                || ServiceLabels {
                    node,
                    service,
                    backend: "other".into(),
                    backend_workload: "other".into(),
                    via,
                    mode,
                },
            );
            self.connections.get_or_create(&l).inc();
        }
        self.counted
            .retain(|_, t| now.duration_since(*t) < CONN_MEMORY);
    }

    /// Adds what each drop row grew by since the last call (rows that print alike summed).
    pub fn update_drops(&mut self, drops: &[Drop]) {
        let mut cur: HashMap<FlowId, (u64, DropLabels)> = HashMap::with_capacity(drops.len());
        for d in drops {
            let r = &d.rec;
            let id: FlowId = (
                r.netns,
                r.ifindex,
                "drop",
                format!("{} {:?}", r.reason, r.hdr),
            );
            let e = cur.entry(id).or_insert_with(|| {
                (
                    0,
                    DropLabels {
                        node: self.node.clone(),
                        reason: r.reason.clone(),
                        workload: workload(d.dst_endpoint.as_ref().or(d.src_endpoint.as_ref())),
                        hop: format!("{}/{}", r.netns_name, r.ifname),
                        rule: d.rule.clone().unwrap_or_default(),
                    },
                )
            });
            e.0 += r.packets;
        }
        let mut seen = HashMap::with_capacity(cur.len());
        for (id, (p, l)) in cur {
            let p0 = self.last_drop.get(&id).copied().unwrap_or(0);
            let dp = if p >= p0 { p - p0 } else { p };
            seen.insert(id, p);
            if dp == 0 {
                continue;
            }
            let (node, reason) = (self.node.clone(), l.reason.clone());
            let l = Self::cap(
                &mut self.drop_sets,
                self.max_series,
                &self.folded,
                l,
                || DropLabels {
                    node,
                    reason,
                    workload: "other".into(),
                    hop: "other".into(),
                    rule: String::new(),
                },
            );
            self.drops.get_or_create(&l).inc_by(dp);
        }
        self.last_drop = seen;
    }

    /// Adds what each kernel histogram slot grew by to its transition's histogram.
    pub fn update_latency(&mut self, hists: &[HopHistogram]) {
        for h in hists {
            let now = Counts::of(&h.hist);
            let d = self
                .last_hop
                .get(&h.slot)
                .map_or(now, |before| now.since(before));
            self.last_hop.insert(h.slot, now);
            if d.count == 0 {
                continue;
            }
            let l = HopLabels {
                node: self.node.clone(),
                src_workload: h.src.clone(),
                dst_workload: h.dst.clone(),
                from_hop: h.from.clone(),
                to_hop: h.to.clone(),
            };
            let node = self.node.clone();
            let l = Self::cap(&mut self.hop_sets, self.max_series, &self.folded, l, || {
                HopLabels {
                    node,
                    src_workload: "other".into(),
                    dst_workload: "other".into(),
                    from_hop: "other".into(),
                    to_hop: "other".into(),
                }
            });
            self.hop_latency.get_or_create(&l).add(&d);
        }
    }

    /// Counts lifecycle events and attach failures of the last rescan.
    pub fn update_changes(&mut self, events: &[Event], changes: &[Change]) {
        for e in events {
            self.lifecycle
                .get_or_create(&LifecycleLabels {
                    node: self.node.clone(),
                    object: e.object.to_owned(),
                    action: e.action.clone(),
                })
                .inc();
        }
        let failed = changes
            .iter()
            .filter(|c| matches!(c, Change::Failed(_)))
            .count();
        let f = self.attach_failures.get_or_create(&NodeLabels {
            node: self.node.clone(),
        });
        f.inc_by(failed as u64);
    }

    /// The agent's own health.
    pub fn update_health(&mut self, stats: &Stats, scan: std::time::Duration) {
        let lost = stats.counters.get("events_lost").copied().unwrap_or(0);
        self.events_lost.inc_by(lost.saturating_sub(self.last_lost));
        self.last_lost = self.last_lost.max(lost);
        self.attached
            .set(i64::try_from(stats.attached_interfaces).unwrap_or(i64::MAX));
        self.scan_seconds.set(scan.as_secs_f64());
        let pages = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| {
                s.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<i64>().ok())
            })
            .unwrap_or(0);
        self.rss.set(pages * 4096);
    }

    /// The exposition: Prometheus text (0.0.4) or, with `openmetrics`, `OpenMetrics` 1.0.
    #[must_use]
    pub fn encode(&self, openmetrics: bool) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        if openmetrics {
            return out;
        }
        // Prometheus text 0.0.4: no `# EOF` or `# UNIT`, and a counter family is named as its
        // samples are (`X_total`), where OpenMetrics names it `X`.
        let counters: HashSet<String> = out
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
            .map(str::to_owned)
            .collect();
        let mut text = String::with_capacity(out.len());
        for l in out.lines() {
            if l == "# EOF" || l.starts_with("# UNIT ") {
                continue;
            }
            let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
                let rest = l.strip_prefix(p)?;
                let (name, tail) = rest.split_once(' ')?;
                counters
                    .contains(name)
                    .then(|| format!("{p}{name}_total {tail}"))
            });
            text.push_str(renamed.as_deref().unwrap_or(l));
            text.push('\n');
        }
        text
    }
}
