//! The report of `bench`: per mode and workload the medians over repetitions with their
//! spreads, ratios to host mode, the mode's per-hop in-kernel times, and the orderings
//! published results lead one to expect, as measured.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    Options,
    target::{Runtime, Target},
};
use crate::bench::{
    LoadKind, Spread,
    loadgen::{self, Run},
};

/// What a lab setup cost.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModeSetup {
    pub lab: String,
    pub what: String,
    pub ms: f64,
}

/// One measured run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSample {
    pub repetition: usize,
    pub mode: String,
    pub workload: LoadKind,
    #[serde(flatten)]
    pub run: Run,
}

/// The in-kernel time between two consecutive hops of one direction (median and p99 over
/// the traced run's packets).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HopTime {
    pub pair: String,
    pub from: String,
    pub to: String,
    pub packets: u64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// One mode x workload: medians over repetitions, spreads, and the mode's hop breakdown.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    pub mode: String,
    pub workload: LoadKind,
    pub what: String,
    /// Who built the path: the lab, a real runtime, or `--between`.
    #[serde(default)]
    pub runtime: Runtime,
    /// A real mode's lab twin (the lab mode it is compared with).
    #[serde(default)]
    pub twin: Option<String>,
    pub runs: usize,
    pub unit: String,
    pub rate: f64,
    pub rate_spread: Option<Spread>,
    pub p50_us: Option<f64>,
    pub p50_spread: Option<Spread>,
    pub p99_us: Option<f64>,
    pub p99_spread: Option<Spread>,
    pub connect_p50_us: Option<f64>,
    pub connect_p50_spread: Option<Spread>,
    pub connect_p99_us: Option<f64>,
    pub cpu_us_per_op: f64,
    pub op: String,
    pub errors: u64,
    /// rate / host mode's rate for this workload (when host was measured).
    pub rate_vs_host: Option<f64>,
    /// p50 / host mode's p50.
    pub p50_vs_host: Option<f64>,
    pub kube_proxy: Option<String>,
    pub services: Option<u32>,
    /// The mode's per-hop in-kernel times, from its traced TCP rr run.
    pub hops: Vec<HopTime>,
}

/// The whole report (`-o json`: this one document).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub generator: String,
    /// Seconds of each measured run.
    #[serde(alias = "duration_s")]
    pub run_secs: f64,
    pub repeat: usize,
    pub cpus: usize,
    /// Where the client and server threads ran.
    pub pinned: loadgen::Cpus,
    pub kernel: String,
    pub modes: Vec<String>,
    pub setup: Vec<ModeSetup>,
    pub results: Vec<Entry>,
    /// Each real mode beside its lab twin (when both ran).
    #[serde(default)]
    pub vs_lab: Vec<VsLab>,
    pub samples: Vec<RunSample>,
    /// The orderings published results lead one to expect, as measured (not asserted).
    pub ordering: Vec<Expectation>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Expectation {
    pub expectation: String,
    pub measured: String,
    pub holds: Option<bool>,
}

/// One workload over a real mode and over its lab twin.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VsLab {
    pub workload: LoadKind,
    pub real: String,
    pub lab: String,
    pub unit: String,
    pub real_rate: f64,
    pub lab_rate: f64,
    /// real / lab.
    pub rate_ratio: Option<f64>,
    pub real_p50_us: Option<f64>,
    pub lab_p50_us: Option<f64>,
    pub p50_ratio: Option<f64>,
    /// The two ranges over repetitions do not overlap (the headline value: p50 for the
    /// transactional workloads, the rate for stream): a difference beyond the spread.
    pub beyond_spread: bool,
}

pub const GENERATOR: &str = "built-in, netperf-style (TCP_RR, TCP_CRR, TCP_STREAM, UDP_RR), client and server threads pinned (see pinned), every transaction timed";

pub(super) fn summarize(
    opts: &Options,
    targets: &[Target],
    samples: &[RunSample],
    hops: &BTreeMap<String, Vec<HopTime>>,
) -> Vec<Entry> {
    let mut out = Vec::new();
    for m in targets {
        for &t in &opts.workloads {
            let runs: Vec<&Run> = samples
                .iter()
                .filter(|s| s.mode == m.name && s.workload == t)
                .map(|s| &s.run)
                .collect();
            let col = |f: fn(&Run) -> Option<f64>| -> Vec<f64> {
                runs.iter().filter_map(|r| f(r)).collect()
            };
            let rate = Spread::of(&col(|r| Some(r.rate)));
            let p50 = Spread::of(&col(|r| r.p50_us));
            let p99 = Spread::of(&col(|r| r.p99_us));
            let con = Spread::of(&col(|r| r.connect_p50_us));
            let con99 = Spread::of(&col(|r| r.connect_p99_us));
            let cpu = Spread::of(&col(|r| Some(r.cpu_us_per_op)));
            out.push(Entry {
                mode: m.name.clone(),
                workload: t,
                what: m.what.clone(),
                runtime: m.runtime,
                twin: m.twin.clone(),
                runs: runs.len(),
                unit: t.unit().into(),
                rate: rate.map_or(0.0, |s| s.median),
                rate_spread: rate,
                p50_us: p50.map(|s| s.median),
                p50_spread: p50,
                p99_us: p99.map(|s| s.median),
                p99_spread: p99,
                connect_p50_us: con.map(|s| s.median),
                connect_p50_spread: con,
                connect_p99_us: con99.map(|s| s.median),
                cpu_us_per_op: cpu.map_or(0.0, |s| s.median),
                op: t.op().into(),
                errors: runs.iter().map(|r| r.errors).sum(),
                rate_vs_host: None,
                p50_vs_host: None,
                kube_proxy: m
                    .kube
                    .map(|(nft, _)| if nft { "nftables" } else { "iptables" }.to_owned()),
                services: m.kube.map(|(_, n)| n),
                hops: hops.get(&m.name).cloned().unwrap_or_default(),
            });
        }
    }
    // Each runtime's modes against its own host mode (a lab mode against the lab's); CRI
    // and --between have none.
    let host_of = |r: Runtime| match r {
        Runtime::Lab => Some("host"),
        Runtime::Docker => Some("docker-host"),
        Runtime::Cri | Runtime::Between => None,
    };
    let host: Vec<(&'static str, LoadKind, f64, Option<f64>)> = out
        .iter()
        .filter_map(|e| {
            let h = host_of(e.runtime)?;
            (h == e.mode).then_some((h, e.workload, e.rate, e.p50_us))
        })
        .collect();
    for e in &mut out {
        let Some(mine) = host_of(e.runtime) else {
            continue;
        };
        if let Some(&(_, _, rate, p50)) = host.iter().find(|h| h.0 == mine && h.1 == e.workload) {
            e.rate_vs_host = (rate > 0.0).then(|| e.rate / rate);
            e.p50_vs_host = p50.zip(e.p50_us).map(|(h, v)| v / h);
        }
    }
    out
}

/// Whether two ranges over repetitions do not overlap.
fn apart(a: Option<Spread>, b: Option<Spread>) -> bool {
    a.zip(b)
        .is_some_and(|(a, b)| a.max < b.min || b.max < a.min)
}

/// Each real mode's entries beside its lab twin's.
#[must_use]
pub fn vs_lab(results: &[Entry]) -> Vec<VsLab> {
    results
        .iter()
        .filter_map(|real| {
            let twin = real.twin.as_deref()?;
            let lab = results.iter().find(|e| {
                e.runtime == Runtime::Lab && e.mode == twin && e.workload == real.workload
            })?;
            let ratio = |a: Option<f64>, b: Option<f64>| {
                a.zip(b).filter(|(_, b)| *b > 0.0).map(|(a, b)| a / b)
            };
            Some(VsLab {
                workload: real.workload,
                real: real.mode.clone(),
                lab: lab.mode.clone(),
                unit: real.unit.clone(),
                real_rate: real.rate,
                lab_rate: lab.rate,
                rate_ratio: ratio(Some(real.rate), Some(lab.rate)),
                real_p50_us: real.p50_us,
                lab_p50_us: lab.p50_us,
                p50_ratio: ratio(real.p50_us, lab.p50_us),
                beyond_spread: if real.p50_us.is_some() {
                    apart(real.p50_spread, lab.p50_spread)
                } else {
                    apart(real.rate_spread, lab.rate_spread)
                },
            })
        })
        .collect()
}

pub(super) fn orderings(results: &[Entry]) -> Vec<Expectation> {
    let mut out = Vec::new();
    let get = |mode: &str, t: LoadKind| results.iter().find(|e| e.mode == mode && e.workload == t);
    if let (Some(hp), Some(bp)) = (
        get("host", LoadKind::Rr).and_then(|e| e.p50_us),
        get("bridge", LoadKind::Rr).and_then(|e| e.p50_us),
    ) {
        out.push(Expectation {
            expectation: "host rr latency <= bridge rr latency (published: bridge about +14%)"
                .into(),
            measured: format!(
                "host p50 {hp:.1} us, bridge p50 {bp:.1} us ({:+.0}%)",
                (bp / hp - 1.0) * 100.0
            ),
            holds: Some(hp <= bp),
        });
    }
    if let (Some(h), Some(b)) = (
        get("host", LoadKind::Stream),
        get("bridge", LoadKind::Stream),
    ) {
        out.push(Expectation {
            expectation: "bridge stream throughput below host (published: about -13%)".into(),
            measured: format!(
                "host {:.2} Gbit/s, bridge {:.2} Gbit/s ({:+.0}%)",
                h.rate,
                b.rate,
                (b.rate / h.rate - 1.0) * 100.0
            ),
            holds: Some(b.rate <= h.rate),
        });
    }
    for (nft, name) in [(false, "iptables"), (true, "nftables")] {
        let mut pts: Vec<(u32, f64)> = results
            .iter()
            .filter(|e| e.workload == LoadKind::Crr && e.kube_proxy.as_deref() == Some(name))
            .filter_map(|e| Some((e.services?, e.connect_p50_us?)))
            .collect();
        pts.sort_by_key(|p| p.0);
        if let (Some(lo), Some(hi)) = (pts.first(), pts.last()) {
            if lo.0 == hi.0 {
                continue;
            }
            let grows = hi.1 - lo.1;
            out.push(Expectation {
                expectation: if nft {
                    "nftables connection setup about flat in the number of Services".into()
                } else {
                    "iptables connection setup grows with the number of Services".into()
                },
                measured: format!(
                    "connect p50 {:.1} us at {} Services, {:.1} us at {} ({:+.1} us)",
                    lo.1, lo.0, hi.1, hi.0, grows
                ),
                holds: Some(if nft {
                    grows.abs() <= lo.1 * 0.25
                } else {
                    grows > 0.0
                }),
            });
        }
    }
    out
}
