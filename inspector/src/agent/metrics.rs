//! The agent's Prometheus metrics (`prometheus-client`): counters kept monotone across the
//! flow table's churn. Each round adds, per flow, what it grew by since the last round (a flow
//! seen again smaller was evicted and re-created: all of it is new), so a flow that leaves the
//! table takes nothing away. Labels are workload-level - never a 5-tuple - and at most
//! `max_series` label sets per family; the rest fold into `other`, counted.
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use super::histogram::{self, KernelHistogram};
use inspector_common::FlowKey;

use crate::{
    flows::Header,
    identity::{Workload, lifecycle::Event},
    probe::Counts,
    session::{Change, Drop, Flow, ServiceOf, Stats, latency::HopHistogram},
};

/// Labels of `inspector_packets_total` and `inspector_bytes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrafficLabels {
    pub src_workload: String,
    pub dst_workload: String,
    /// The hook's interface: `NAMESPACE/IFNAME`.
    pub hop: String,
    pub direction: String,
}

/// Labels of `inspector_drops_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub reason: String,
    pub workload: String,
    pub hop: String,
    /// The netfilter rule behind a netfilter drop, when known ("" otherwise).
    pub rule: String,
}

/// Labels of `inspector_service_connections_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
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
    pub src_workload: String,
    pub dst_workload: String,
    /// The hop the time runs from, and to: `NAMESPACE/IFNAME(out|in)` (or a stack hook).
    pub from_hop: String,
    pub to_hop: String,
}

/// Labels of `inspector_lifecycle_events_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LifecycleLabels {
    /// netns, link or container.
    pub object: String,
    /// appeared, disappeared, or the runtime's action.
    pub action: String,
}

/// Labels of `inspector_workload_info`: what a workload name stands for.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkloadLabels {
    /// The name the other metrics use (`src_workload`, `dst_workload`, `workload`).
    pub workload: String,
    /// container, pod or lab.
    pub kind: String,
    /// The Kubernetes namespace and pod (pods), "" otherwise.
    pub namespace: String,
    pub pod: String,
    /// The container's name (containers), or the pod's containers, comma-separated.
    pub container: String,
    pub network_mode: String,
    pub runtime: String,
}

/// A drop row: namespace, interface, reason, header.
type DropId = (u64, u32, String, Header);

/// What the agent keeps per flow record: its counts at the last round and the counters it
/// adds to.
struct FlowState {
    packets: u64,
    bytes: u64,
    counters: (Counter, Counter),
    round: u64,
}

/// How often every flow record is named again (workloads that appeared since).
const RELABEL_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Connections already counted (conntrack id and original tuple) -> when last seen.
const CONN_MEMORY: std::time::Duration = std::time::Duration::from_mins(5);

/// Everything exposed on `/metrics`.
pub struct Metrics {
    registry: Exposition,
    packets: Family<TrafficLabels, Counter>,
    bytes: Family<TrafficLabels, Counter>,
    drops: Family<DropLabels, Counter>,
    connections: Family<ServiceLabels, Counter>,
    counted: HashMap<(u32, String), std::time::Instant>,
    hop_latency: Family<HopLabels, KernelHistogram>,
    hop_sets: HashSet<HopLabels>,
    /// Each kernel histogram slot's counts as last read.
    last_hop: HashMap<u32, histogram::Counts>,
    lifecycle: Family<LifecycleLabels, Counter>,
    attach_failures: Counter,
    workloads: Family<WorkloadLabels, Gauge>,
    workload_sets: HashSet<WorkloadLabels>,
    service_sets: HashSet<ServiceLabels>,
    folded: Counter,
    events_lost: Counter,
    flows_evicted: Counter,
    attached: Gauge,
    scan_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    rss: Gauge,
    rounds: Counter,
    flow_records: Gauge,
    drop_records: Gauge,
    max_series: usize,
    last_flow: rustc_hash::FxHashMap<FlowKey, FlowState>,
    round: u64,
    labelled_at: std::time::Instant,
    last_drop: HashMap<DropId, u64>,
    last_lost: u64,
    last_evicted: u64,
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
        // `node` on every sample, as a constant label of the registry.
        let mut registry = Registry::with_prefix_and_labels(
            "inspector",
            std::iter::once((
                std::borrow::Cow::Borrowed("node"),
                std::borrow::Cow::Owned(node.to_owned()),
            )),
        );
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
        let workloads = Family::default();
        registry.register(
            "workload_info",
            "The workloads on the node (1 each): what a workload label stands for - join on `workload`",
            workloads.clone(),
        );
        let attach_failures = Counter::default();
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
        let flows_evicted = Counter::default();
        registry.register(
            "flows_evicted",
            "Flow records the kernel's full flow tables evicted (least recently seen first; see --max-flows)",
            flows_evicted.clone(),
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
        let rounds = Counter::default();
        registry.register(
            "rounds",
            "Rounds completed (each folds the kernel's counters into these metrics)",
            rounds.clone(),
        );
        let (flow_records, drop_records) = (Gauge::default(), Gauge::default());
        registry.register(
            "flow_records",
            "Flow records (flow, hook) in the kernel's tables at the last round",
            flow_records.clone(),
        );
        registry.register(
            "drop_records",
            "Drop records (flow, hook, reason) in the kernel's table at the last round",
            drop_records.clone(),
        );
        Self {
            registry: Exposition(Arc::new(Mutex::new(registry))),
            flow_records,
            drop_records,
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
            workloads,
            workload_sets: HashSet::new(),
            service_sets: HashSet::new(),
            folded,
            events_lost,
            flows_evicted,
            attached,
            scan_seconds,
            rss,
            rounds,
            max_series,
            last_flow: rustc_hash::FxHashMap::default(),
            round: 0,
            labelled_at: std::time::Instant::now(),
            last_drop: HashMap::new(),
            last_lost: 0,
            last_evicted: 0,
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

    /// Adds what each flow record grew by since the last round. Only records new to the
    /// agent are named (their workloads and hop resolved); every [`RELABEL_EVERY`] all are
    /// named again, so a workload that appeared later gets its flows from then on. A record
    /// seen again smaller was evicted and re-created: all of it is new.
    pub fn update_flows(
        &mut self,
        raw: &[(FlowKey, Counts)],
        name: &dyn Fn(&FlowKey, &Counts) -> Flow,
    ) {
        self.round += 1;
        let relabel = self.labelled_at.elapsed() >= RELABEL_EVERY;
        if relabel {
            self.labelled_at = std::time::Instant::now();
        }
        for (k, c) in raw {
            let known = self.last_flow.get(k).map(|st| (st.packets, st.bytes));
            let (dp, db) = match known {
                Some((p0, b0)) if c.packets >= p0 => (c.packets - p0, c.bytes.saturating_sub(b0)),
                _ => (c.packets, c.bytes),
            };
            let fresh = known.is_none() || relabel;
            let counters = if fresh {
                let f = name(k, c);
                let l = TrafficLabels {
                    src_workload: workload(f.src_endpoint.as_ref()),
                    dst_workload: workload(f.dst_endpoint.as_ref()),
                    hop: format!("{}/{}", f.rec.netns_name, f.rec.ifname),
                    direction: f.rec.direction.to_owned(),
                };
                let dir = l.direction.clone();
                let l = Self::cap(
                    &mut self.traffic_sets,
                    self.max_series,
                    &self.folded,
                    l,
                    || TrafficLabels {
                        src_workload: "other".into(),
                        dst_workload: "other".into(),
                        hop: "other".into(),
                        direction: dir,
                    },
                );
                Some((
                    self.packets.get_or_create(&l).clone(),
                    self.bytes.get_or_create(&l).clone(),
                ))
            } else {
                None
            };
            let st = self.last_flow.entry(*k).or_insert_with(|| FlowState {
                packets: 0,
                bytes: 0,
                counters: counters.clone().unwrap_or_default(),
                round: 0,
            });
            if let Some(cs) = counters {
                st.counters = cs;
            }
            st.packets = c.packets;
            st.bytes = c.bytes;
            st.round = self.round;
            if dp > 0 || db > 0 {
                st.counters.0.inc_by(dp);
                st.counters.1.inc_by(db);
            }
        }
        let round = self.round;
        self.last_flow.retain(|_, st| st.round == round);
    }

    /// Counts each Service connection once (by its conntrack entry).
    pub fn update_services(&mut self, conns: &[ServiceOf]) {
        let now = std::time::Instant::now();
        for s in conns {
            let id = (s.nat.conntrack_id, s.nat.original.clone());
            if self.counted.insert(id, now).is_some() {
                continue;
            }
            let l = ServiceLabels {
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
            let (service, via, mode) = (l.service.clone(), l.via.clone(), l.mode.clone());
            let l = Self::cap(
                &mut self.service_sets,
                self.max_series,
                &self.folded,
                l,
                || ServiceLabels {
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

    /// Adds what each drop row grew by since the last call.
    pub fn update_drops(&mut self, drops: &[Drop]) {
        let mut seen = HashMap::with_capacity(drops.len());
        for d in drops {
            let r = &d.rec;
            let id: DropId = (r.netns, r.ifindex, r.reason.clone(), r.hdr.clone());
            let p0 = self.last_drop.get(&id).copied().unwrap_or(0);
            let dp = if r.packets >= p0 {
                r.packets - p0
            } else {
                r.packets
            };
            seen.insert(id, r.packets);
            if dp == 0 {
                continue;
            }
            let l = DropLabels {
                reason: r.reason.clone(),
                workload: workload(d.dst_endpoint.as_ref().or(d.src_endpoint.as_ref())),
                hop: format!("{}/{}", r.netns_name, r.ifname),
                rule: d.rule.clone().unwrap_or_default(),
            };
            let reason = l.reason.clone();
            let l = Self::cap(
                &mut self.drop_sets,
                self.max_series,
                &self.folded,
                l,
                || DropLabels {
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
            let now = histogram::Counts::of(&h.hist);
            let d = self
                .last_hop
                .get(&h.slot)
                .map_or(now, |before| now.since(before));
            self.last_hop.insert(h.slot, now);
            if d.count == 0 {
                continue;
            }
            let l = HopLabels {
                src_workload: h.src.clone(),
                dst_workload: h.dst.clone(),
                from_hop: h.from.clone(),
                to_hop: h.to.clone(),
            };
            let l = Self::cap(&mut self.hop_sets, self.max_series, &self.folded, l, || {
                HopLabels {
                    src_workload: "other".into(),
                    dst_workload: "other".into(),
                    from_hop: "other".into(),
                    to_hop: "other".into(),
                }
            });
            self.hop_latency.get_or_create(&l).add(&d);
        }
    }

    /// `inspector_workload_info`: one series per live workload (capped like the others); a
    /// workload that went away is removed.
    pub fn update_workloads(&mut self, live: &[Workload]) {
        let mut now = HashSet::new();
        for w in live.iter().take(self.max_series) {
            let kind = w.kind.map_or("", |k| k.as_str());
            let (namespace, pod) = match (w.kind, w.name.split_once('/')) {
                (Some(crate::identity::Kind::Pod), Some((ns, p))) => (ns.to_owned(), p.to_owned()),
                _ => (String::new(), String::new()),
            };
            let container = if w.kind == Some(crate::identity::Kind::Pod) {
                w.containers.join(",")
            } else {
                w.name.clone()
            };
            now.insert(WorkloadLabels {
                workload: w.name.clone(),
                kind: kind.to_owned(),
                namespace,
                pod,
                container,
                network_mode: w.network_mode.clone().unwrap_or_default(),
                runtime: w.runtime.clone(),
            });
        }
        for gone in self.workload_sets.difference(&now) {
            self.workloads.remove(gone);
        }
        for l in &now {
            self.workloads.get_or_create(l).set(1);
        }
        self.workload_sets = now;
    }

    /// Counts lifecycle events and attach failures of the last rescan.
    pub fn update_changes(&mut self, events: &[Event], changes: &[Change]) {
        for e in events {
            self.lifecycle
                .get_or_create(&LifecycleLabels {
                    object: e.object.to_owned(),
                    action: e.action.clone(),
                })
                .inc();
        }
        let failed = changes
            .iter()
            .filter(|c| matches!(c, Change::Failed(_)))
            .count();
        self.attach_failures.inc_by(failed as u64);
    }

    /// The agent's own health; `records`: the flow and drop records read this round.
    pub fn update_health(
        &mut self,
        stats: &Stats,
        scan: std::time::Duration,
        records: (usize, usize),
    ) {
        self.flow_records
            .set(i64::try_from(records.0).unwrap_or(i64::MAX));
        self.drop_records
            .set(i64::try_from(records.1).unwrap_or(i64::MAX));
        catch_up(&self.events_lost, &mut self.last_lost, stats, "events_lost");
        catch_up(
            &self.flows_evicted,
            &mut self.last_evicted,
            stats,
            "flows_evicted",
        );
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
        self.rounds.inc();
    }

    /// The exposition, for the HTTP side to encode on each scrape.
    #[must_use]
    pub fn exposition(&self) -> Exposition {
        self.registry.clone()
    }
}

/// The registry, shared: the families it holds are updated in place by the session thread
/// (their samples are atomics), and a scrape encodes it then.
#[derive(Clone)]
pub struct Exposition(Arc<Mutex<Registry>>);

impl Exposition {
    /// Prometheus text (0.0.4) or, with `openmetrics`, `OpenMetrics` 1.0.
    #[must_use]
    pub fn encode(&self, openmetrics: bool) -> String {
        let mut out = String::new();
        if let Ok(r) = self.0.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        }
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

/// Brings a counter up to the kernel's total of the stat `name` (last seen: `last`).
fn catch_up(c: &Counter, last: &mut u64, stats: &Stats, name: &str) {
    let now = stats.counters.get(name).copied().unwrap_or(0);
    c.inc_by(now.saturating_sub(*last));
    *last = (*last).max(now);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sample carries the node, once; counter families are named `_total` in the
    /// Prometheus text format and not in `OpenMetrics`.
    #[test]
    fn every_sample_names_the_node_once() {
        let mut m = Metrics::new("node-1", 10);
        m.update_changes(&[], &[]);
        let text = m.exposition().encode(false);
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(samples.len() >= 5, "{text}");
        for l in &samples {
            assert_eq!(l.matches("node=\"node-1\"").count(), 1, "{l}");
        }
        assert!(
            text.contains("# TYPE inspector_attach_failures_total counter"),
            "{text}"
        );
        let open = m.exposition().encode(true);
        assert!(
            open.contains("# TYPE inspector_attach_failures counter"),
            "{open}"
        );
        assert!(open.ends_with("# EOF\n"), "{open}");
    }
}
