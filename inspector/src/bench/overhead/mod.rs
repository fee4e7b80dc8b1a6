//! `bench overhead`: the same workloads on a bridge lab (a client and a server, nothing else
//! on the path) with no observer, with `inspector flows` attached to every hop, and with
//! `tcpdump -w /dev/null` on the same interfaces, interleaved round by round (the observer
//! order rotates), reported as medians with min/max and ratios to the no-observer median.
pub mod observer;

use std::path::PathBuf;

use serde::Serialize;

pub use observer::Observer;

use super::{
    BenchError, LoadKind, Spread,
    loadgen::{self, Cpus, Ends},
};
use crate::{
    lab::{LabSpec, Plan, spec::BENCH_OVERHEAD_SPEC},
    sys::{netns::named, signals::StopFlag},
};

/// Hooks a packet crosses on the lab's path (client eth0 out, its host veth in, the
/// server's host veth out, server eth0 in; bridged packets do not pass the bridge's own tc).
const HOOKS_PER_PACKET: f64 = 4.0;

/// Client on CPU 0, server on CPU 1: the sender's CPU carries the whole veth/bridge path.
pub(crate) const CPUS: Cpus = Cpus {
    client: 0,
    server: 1,
};

/// Options of `bench overhead`.
#[derive(Clone)]
pub struct Options {
    pub repeat: usize,
    pub run_secs: f64,
    pub workloads: Vec<LoadKind>,
    /// Extra arguments for the `inspector flows` observer (e.g. `--no-drops`).
    pub inspector_args: Vec<String>,
    /// The flood's receiver spins instead of sleeping.
    pub busy_poll: bool,
    /// Also observe with per-hop timing (in the kernel, and from events).
    pub per_hop: bool,
    /// Also observe with `inspector flows --attach tc` (legacy tc filters), next to TCX.
    pub legacy_tc: bool,
    /// Also observe with the global hooks selecting only the host's namespace.
    pub unselected: bool,
    /// Turn `bpf_stats` on and report the tc programs' run time per run.
    pub bpf_stats: bool,
    pub stop: StopFlag,
}

impl Options {
    /// The observers of this run: none, the empty programs of both kinds, inspector (as a
    /// user runs it: the global hooks where the kernel has them), inspector-tcx (where it has
    /// TCX), (inspector-tc, inspector-global-unselected, inspector-hops,
    /// inspector-hop-events,) tcpdump.
    #[must_use]
    pub fn observers(&self) -> Vec<Observer> {
        let mut v = vec![Observer::None, Observer::EmptyTc];
        if crate::probe::preflight::global_hooks() {
            v.push(Observer::EmptyGlobal);
        }
        v.push(Observer::Inspector);
        if crate::probe::preflight::attach_mode(None).ok() == Some(crate::probe::AttachMode::Tcx) {
            v.push(Observer::InspectorTcx);
        }
        if self.legacy_tc {
            v.push(Observer::InspectorTc);
        }
        if self.unselected {
            v.push(Observer::InspectorGlobalUnselected);
        }
        if self.workloads.contains(&LoadKind::UdpDrops) {
            v.push(Observer::InspectorClassicDrops);
        }
        if self.per_hop {
            v.push(Observer::InspectorHops);
            v.push(Observer::InspectorHopEvents);
        }
        v.push(Observer::Tcpdump);
        v
    }
}

/// One measured value.
#[derive(Clone, Debug, Serialize)]
pub struct OverheadSample {
    pub repetition: usize,
    pub workload: LoadKind,
    pub observer: Observer,
    pub value: f64,
    pub unit: &'static str,
    /// With `--bpf-stats`: average run time of the inspector's tc programs (ns) and runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prog_ns_per_run: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prog_runs: Option<u64>,
}

/// Median, spread and ratio to the no-observer median, per (workload, observer).
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub workload: LoadKind,
    pub observer: Observer,
    pub unit: &'static str,
    pub runs: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// median / no-observer median.
    pub ratio: f64,
    /// 1 - ratio, in percent.
    pub overhead_pct: f64,
    /// The time this observer adds per packet per hook crossing (from the medians: the
    /// per-packet time 1/rate against the no-observer one, over the hooks a packet crosses).
    pub added_ns_per_hop: Option<f64>,
    /// With `--bpf-stats`: median run time of the tc programs per run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prog_ns_per_run: Option<f64>,
}

/// The lab's ends and every interface on its path (for tcpdump).
pub(crate) fn ends_and_hops(plan: &Plan) -> Result<(Ends, Vec<(PathBuf, String)>), BenchError> {
    let cli = plan.workload("cli")?;
    let srv = plan.workload("srv")?;
    let ip = srv
        .addr
        .ok_or_else(|| BenchError::Input("the overhead lab's server has no address".into()))?;
    let veth = |w: &crate::lab::PlannedWorkload| w.host_veth.clone().unwrap_or_default();
    let node = named(&plan.node_ns);
    let ends = Ends {
        client_ns: named(&cli.netns),
        server_ns: named(&srv.netns),
        bind: ip.into(),
        target: ip.into(),
        port_offset: 0,
        shift: 0,
        user_port: None,
    };
    let hops = vec![
        (named(&cli.netns), "eth0".into()),
        (node.clone(), veth(cli)),
        (node.clone(), plan.bridge.clone()),
        (node, veth(srv)),
        (named(&srv.netns), "eth0".into()),
    ];
    Ok((ends, hops))
}

/// Runs the benchmark; `progress` gets every measurement.
pub fn run(
    opts: &Options,
    mut progress: impl FnMut(&OverheadSample),
) -> Result<(Vec<OverheadSample>, Vec<Summary>), BenchError> {
    let plan = LabSpec::embedded(BENCH_OVERHEAD_SPEC).plan()?;
    crate::lab::remove_stale(&plan.name);
    let lab = crate::lab::LabGuard(vec![crate::lab::up(&plan)?]);
    let (ends, hops) = ends_and_hops(&plan)?;
    let netns = lab.0[0].namespaces.clone();
    // Prime ARP and caches once so the first measured run is not special.
    crate::traffic::ping(
        &ends.client_ns,
        plan.workload("srv")?.addr.unwrap_or(plan.gateway),
        2,
        std::time::Duration::from_secs(2),
    )
    .map_err(BenchError::io("priming the lab"))?;
    let observers = opts.observers();
    let _stats = observer::BpfStats::on(opts.bpf_stats)?;
    let mut samples = Vec::new();
    let stop = opts.stop.flag();
    for rep in 0..opts.repeat {
        for (wi, &w) in opts.workloads.iter().enumerate() {
            // Each measurement gets a freshly started observer, and the observer order
            // rotates with the repetition and the workload, so none always runs first, last,
            // or right after another workload's after-effects (a flood's queued packets).
            let mut order = observers.clone();
            order.rotate_left((rep + wi) % observers.len());
            for obs in order {
                if opts.stop.raised() {
                    return Err(BenchError::Interrupted);
                }
                let running = observer::start(obs, &netns, &hops, &opts.inspector_args)?;
                let r = loadgen::run_with(w, &ends, opts.run_secs, CPUS, stop, opts.busy_poll)
                    .map_err(BenchError::io(format!("{} with {}", w.name(), obs.name())))?;
                let prog = match (opts.bpf_stats && running.0.len() == 1, w) {
                    (false, _) => None,
                    // A drop storm: what each drop costs the drop program.
                    (true, LoadKind::UdpDrops) => observer::drop_prog_stats(),
                    (true, _) => observer::tc_prog_stats(obs),
                };
                drop(running);
                #[expect(clippy::cast_precision_loss, reason = "ns and run counts")]
                let s = OverheadSample {
                    repetition: rep,
                    workload: w,
                    observer: obs,
                    value: r.rate,
                    unit: w.unit(),
                    prog_ns_per_run: prog.map(|(ns, n)| ns as f64 / n as f64),
                    prog_runs: prog.map(|p| p.1),
                };
                progress(&s);
                samples.push(s);
            }
        }
    }
    drop(lab);
    Ok((samples.clone(), summarize(opts, &observers, &samples)))
}

fn summarize(opts: &Options, observers: &[Observer], samples: &[OverheadSample]) -> Vec<Summary> {
    let mut out = Vec::new();
    for &w in &opts.workloads {
        let of = |o: Observer| -> Vec<&OverheadSample> {
            samples
                .iter()
                .filter(|s| s.workload == w && s.observer == o)
                .collect()
        };
        let Some(base) = Spread::over(&of(Observer::None), |s| s.value) else {
            continue;
        };
        for &o in observers {
            let v = of(o);
            let Some(sp) = Spread::over(&v, |s| s.value) else {
                continue;
            };
            let progs: Vec<f64> = v.iter().filter_map(|s| s.prog_ns_per_run).collect();
            let m = sp.median;
            out.push(Summary {
                workload: w,
                observer: o,
                unit: w.unit(),
                runs: v.len(),
                median: m,
                min: sp.min,
                max: sp.max,
                ratio: m / base.median,
                overhead_pct: (1.0 - m / base.median) * 100.0,
                added_ns_per_hop: w
                    .packets_per_op()
                    .map(|per| (1.0 / m - 1.0 / base.median) * 1e9 / per / HOOKS_PER_PACKET),
                prog_ns_per_run: Spread::of(&progs).map(|s| s.median),
            });
        }
    }
    out
}

/// Targets from the foundation issue: (workload, max overhead %); the inspector's overhead
/// may be at most this share of tcpdump's.
pub const TARGETS: [(LoadKind, f64); 4] = [
    (LoadKind::UdpFlood, 3.0),
    (LoadKind::Iperf3Udp, 3.0),
    (LoadKind::Rr, 2.0),
    (LoadKind::Stream, 1.0),
];
pub const SHARE_OF_TCPDUMP: f64 = 0.25;
/// Target from the hot-path issue: what the observing tc program may cost per run above a
/// tc program that does nothing, measured in the same run (`bpf_stats`).
pub const ABOVE_EMPTY_TARGET_NS: f64 = 35.0;
/// Target from the per-hop issue: what per-hop timestamping may add per hop, on average.
pub const PER_HOP_TARGET_NS: f64 = 60.0;

/// A workload's overhead against its targets (`type: "overhead_target"`).
#[derive(Clone, Debug, Serialize)]
pub struct TargetCheck {
    pub workload: LoadKind,
    pub inspector_pct: f64,
    pub target_pct: f64,
    pub tcpdump_pct: f64,
    /// inspector's overhead / tcpdump's (NaN when tcpdump costs nothing measurable).
    pub share_of_tcpdump: f64,
    pub met: bool,
    pub share_met: bool,
    /// With `--bpf-stats`: the observing programs' run time per run minus the empty
    /// program's, medians of the same run, against `ABOVE_EMPTY_TARGET_NS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prog_ns_above_empty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prog_met: Option<bool>,
}

/// Each workload's overhead checked against its target.
#[must_use]
pub fn targets(summary: &[Summary]) -> Vec<TargetCheck> {
    TARGETS
        .iter()
        .filter_map(|&(w, target)| {
            let get = |o: Observer| summary.iter().find(|s| s.workload == w && s.observer == o);
            let (i, t) = (get(Observer::Inspector)?, get(Observer::Tcpdump)?);
            let above = i
                .prog_ns_per_run
                .zip(
                    get(Observer::EmptyGlobal)
                        .or_else(|| get(Observer::EmptyTc))
                        .and_then(|e| e.prog_ns_per_run),
                )
                .map(|(ours, empty)| ours - empty);
            let share = if t.overhead_pct > 0.0 {
                i.overhead_pct / t.overhead_pct
            } else {
                f64::NAN
            };
            Some(TargetCheck {
                workload: w,
                inspector_pct: i.overhead_pct,
                target_pct: target,
                tcpdump_pct: t.overhead_pct,
                share_of_tcpdump: share,
                met: i.overhead_pct <= target,
                share_met: share <= SHARE_OF_TCPDUMP,
                prog_ns_above_empty: above,
                prog_met: above.map(|a| a <= ABOVE_EMPTY_TARGET_NS),
            })
        })
        .collect()
}

/// What per-hop timing adds per hop (`type: "overhead_per_hop"`): timing observer against
/// the inspector counting only.
#[derive(Clone, Debug, Serialize)]
pub struct PerHopCheck {
    pub workload: LoadKind,
    pub observer: Observer,
    /// From throughput: ns per packet per hop over counting alone, and against no observer.
    pub added_ns: f64,
    pub timing_ns: f64,
    /// From the programs' own run time (`bpf_stats`), when measured: before and after.
    pub prog_ns: Option<(f64, f64)>,
    /// What the verdict is judged by: the programs' run time when there is one (stable to
    /// a few ns), the throughput estimate otherwise (it moves by hundreds of ns).
    pub judged_ns: f64,
    pub target_ns: f64,
    pub met: bool,
}

/// The per-hop timing observers against counting alone.
#[must_use]
pub fn per_hop(summary: &[Summary]) -> Vec<PerHopCheck> {
    let mut out = Vec::new();
    for w in [LoadKind::UdpFlood, LoadKind::Rr] {
        let get = |o: Observer| summary.iter().find(|s| s.workload == w && s.observer == o);
        let Some(plain) = get(Observer::Inspector) else {
            continue;
        };
        for obs in [Observer::InspectorHops, Observer::InspectorHopEvents] {
            let Some(hops) = get(obs) else { continue };
            let (Some(counting), Some(timing)) = (plain.added_ns_per_hop, hops.added_ns_per_hop)
            else {
                continue;
            };
            let prog_ns = plain.prog_ns_per_run.zip(hops.prog_ns_per_run);
            let added = timing - counting;
            let judged = prog_ns.map_or(added, |(before, after)| after - before);
            out.push(PerHopCheck {
                workload: w,
                observer: obs,
                added_ns: added,
                timing_ns: timing,
                prog_ns,
                judged_ns: judged,
                target_ns: PER_HOP_TARGET_NS,
                met: judged <= PER_HOP_TARGET_NS,
            });
        }
    }
    out
}
