//! `inspector bench scale`: how long the identity of N workloads takes to resolve, and how
//! long attaching to their veths takes, on a lab of N bridge-mode workloads (N namespaces,
//! N veth pairs, N cgroups). Each round times, separately:
//! - identity refresh: every provider asked, procfs/cgroups scanned, indexes rebuilt;
//! - resolve: one flow end per workload resolved to its owner (through a socket-owner map);
//! - scan: the topology of every namespace read over rtnetlink (what a rescan costs);
//! - load: the eBPF object loaded and verified;
//! - attach: ingress+egress TCX links on every veth and the bridge (the reconcile after load),
//!   plainly and with `--fast-attach` (expedited RCU), each on a fresh probe; and the same
//!   selection with the global hooks (`--attach global`: no link per interface).
use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use serde::Serialize;

use super::BenchError;
use crate::{
    identity::{self, Resolver, SocketOwners},
    lab::{LabGuard, LabSpec},
    probe::{Probe, ProbeOptions},
    session::Session,
    topology::{self, NsidCache},
};

#[derive(Clone, Debug, Serialize)]
pub struct ScaleSample {
    pub repetition: usize,
    /// How long building the lab took (once, before the repetitions).
    pub lab_ms: f64,
    pub workloads: usize,
    pub identity_ms: f64,
    pub resolve_ms: f64,
    pub resolved: usize,
    pub scan_ms: f64,
    pub load_ms: f64,
    pub attach_ms: f64,
    /// The same with `--fast-attach` (expedited RCU), on a fresh probe.
    pub attach_fast_ms: f64,
    /// The same with the global hooks (`--attach global`: map entries, two tracepoint
    /// programs), on a fresh probe.
    pub attach_global_ms: f64,
    pub attached: usize,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The lab spec for `n` bridge workloads on one /21 (room for 2000).
fn spec(n: usize) -> LabSpec {
    let mut text = String::from("name = \"insp-scale\"\nsubnet = \"198.18.64.0/21\"\n");
    for i in 0..n {
        let _ = writeln!(text, "[[workload]]\nname = \"w{i}\"\nmode = \"bridge\"");
    }
    LabSpec::from_toml(&text).unwrap_or_else(|e| unreachable!("a generated spec parses: {e}"))
}

/// Builds the lab, measures `rounds` times (repetitions), removes the lab.
///
/// # Errors
/// When the lab cannot be built or the probe cannot load.
pub fn run(
    n: usize,
    rounds: usize,
    mut progress: impl FnMut(&ScaleSample),
) -> Result<Vec<ScaleSample>, BenchError> {
    crate::lab::remove_stale("insp-scale");
    let plan = spec(n).plan()?;
    let t = Instant::now();
    let guard = LabGuard(vec![crate::lab::up(&plan)?]);
    let built_ms = ms(t.elapsed());
    let all = topology::netns::discover();
    let wanted: Vec<u64> = all
        .iter()
        .filter(|ns| guard.0[0].namespaces.contains(&ns.name))
        .map(|ns| ns.inode)
        .collect();
    let mut out = Vec::new();
    for round in 0..rounds {
        let t = Instant::now();
        let (mut tracker, _) = identity::Tracker::new(&identity::tracker::Options::default());
        tracker.refresh();
        let identity_ms = ms(t.elapsed());

        let t = Instant::now();
        let topo = topology::scan_where(&mut NsidCache::default(), |i| wanted.contains(&i));
        let scan_ms = ms(t.elapsed());

        // One owner record per workload, as the kernel would have made for a listener.
        let mut owners = SocketOwners::default();
        for w in &tracker.identity.workloads {
            if let (Some(ns), Some(cg), Some(ip)) = (w.netns, w.cgroups.first(), w.ips.first()) {
                owners.insert(u32::try_from(ns).unwrap_or(0), 6, *ip, 80, *cg);
            }
        }
        let t = Instant::now();
        let r = Resolver::new(&tracker.identity, &owners, &topo);
        let resolved = tracker
            .identity
            .workloads
            .iter()
            .filter_map(|w| Some((w.netns?, *w.ips.first()?, w)))
            .filter(|(ns, ip, w)| {
                r.endpoint(*ip, Some(80), 6, *ns)
                    .is_some_and(|e| e.id.as_deref() == Some(w.id.as_str()))
            })
            .count();
        let resolve_ms = ms(t.elapsed());

        let mut load_ms = 0.0;
        let mut attach = [0.0; 2];
        let mut attached = 0;
        // Alternate which goes first, so neither always runs on a warmer kernel.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for fast in order {
            let t = Instant::now();
            let probe = Probe::load(&ProbeOptions {
                drops: false,
                sockets: false,
                fast_attach: fast,
                ..ProbeOptions::default()
            })?;
            load_ms = ms(t.elapsed());
            let mut s = Session::with_probe(probe, wanted.clone());
            let t = Instant::now();
            let _ = s.reconcile();
            attach[usize::from(fast)] = ms(t.elapsed());
            attached = s.attached();
            drop(s);
        }
        let [attach_ms, attach_fast_ms] = attach;
        let probe = Probe::load(&ProbeOptions {
            drops: false,
            sockets: false,
            attach: Some(crate::probe::AttachMode::Global),
            ..ProbeOptions::default()
        })?;
        let mut s = Session::with_probe(probe, wanted.clone());
        let t = Instant::now();
        let _ = s.reconcile();
        let attach_global_ms = ms(t.elapsed());
        drop(s);
        let s = ScaleSample {
            repetition: round,
            lab_ms: built_ms,
            workloads: n,
            identity_ms,
            resolve_ms,
            resolved,
            scan_ms,
            load_ms,
            attach_ms,
            attach_fast_ms,
            attach_global_ms,
            attached,
        };
        progress(&s);
        out.push(s);
    }
    drop(guard);
    Ok(out)
}

/// One step's times over the repetitions (`type: "scale_summary"`).
#[derive(Clone, Debug, Serialize)]
pub struct StepSummary {
    pub what: &'static str,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub target: &'static str,
    pub workloads: usize,
}

/// Medians and spreads of each step.
#[must_use]
pub fn summarize(samples: &[ScaleSample]) -> Vec<StepSummary> {
    /// (step, its time in a sample, the target).
    type Step = (&'static str, fn(&ScaleSample) -> f64, &'static str);
    let steps: [Step; 7] = [
        (
            "identity refresh",
            |s| s.identity_ms,
            "200 ms (with resolve)",
        ),
        ("resolve all ends", |s| s.resolve_ms, ""),
        ("topology scan", |s| s.scan_ms, ""),
        ("eBPF load", |s| s.load_ms, ""),
        ("attach (scan + links)", |s| s.attach_ms, "1000 ms"),
        ("attach --fast-attach", |s| s.attach_fast_ms, "1000 ms"),
        ("attach --attach global", |s| s.attach_global_ms, "1000 ms"),
    ];
    steps
        .into_iter()
        .filter_map(|(what, f, target)| {
            let s = super::Spread::over(samples, f)?;
            Some(StepSummary {
                what,
                median_ms: s.median,
                min_ms: s.min,
                max_ms: s.max,
                target,
                workloads: samples.first().map_or(0, |s| s.workloads),
            })
        })
        .collect()
}
