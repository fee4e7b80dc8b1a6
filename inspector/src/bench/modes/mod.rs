//! `bench`: the same workloads over each network mode, side by side in one run.
//!
//! Modes are built as labs (see `labs`): one Docker-style lab gives host, bridge, container,
//! none and bridge + published port (DNAT); one Kubernetes-node lab per (kube-proxy mode,
//! Service count) gives `ClusterIP` through kube-proxy's exact rules, with the target Service
//! last in `KUBE-SERVICES` (generated Services come first: the worst case for iptables'
//! linear match). Runs are interleaved: every repetition runs every workload over every
//! mode, the mode order rotating, so slow drifts of the machine spread evenly. After the
//! measured runs, one short traced run per mode (`traced`) gives the in-kernel time between
//! hops.
pub mod catalogue;
mod labs;
pub mod report;
mod traced;

use std::{collections::BTreeMap, time::Instant};

pub use catalogue::{BenchMode, MAX_SERVICES, parse_modes};
pub use report::{Entry, Expectation, HopTime, ModeSetup, Report, RunSample};

use super::{BenchError, LoadKind, loadgen};
use crate::{
    lab::{LabGuard, LabSpec, Plan},
    sys::signals::StopFlag,
};

/// Options of `inspector bench`.
#[derive(Clone)]
pub struct Options {
    pub modes: Vec<BenchMode>,
    pub workloads: Vec<LoadKind>,
    /// Seconds of each measured run.
    pub run_secs: f64,
    pub repeat: usize,
    /// Seconds of the traced run per mode (0: no per-hop breakdown).
    pub hops_secs: f64,
    pub cpus: loadgen::Cpus,
    pub stop: StopFlag,
}

/// Which lab a mode runs on: the Docker-style one (None) or a Kubernetes node.
type LabKey = Option<(bool, u32)>;

/// Builds every lab the modes need (into `labs`); reports each as a step.
fn build_labs(
    opts: &Options,
    labs: &mut LabGuard,
    progress: &mut dyn FnMut(&str),
) -> Result<(BTreeMap<LabKey, Plan>, Vec<ModeSetup>), BenchError> {
    let mut wanted: Vec<(LabKey, LabSpec)> = Vec::new();
    if opts.modes.iter().any(|m| m.kube_lab().is_none()) {
        wanted.push((None, labs::docker_spec()));
    }
    let mut kube: Vec<(bool, u32)> = opts.modes.iter().filter_map(|m| m.kube_lab()).collect();
    kube.sort_unstable();
    kube.dedup();
    for (i, &(nft, n)) in kube.iter().enumerate() {
        wanted.push((Some((nft, n)), labs::kube_spec(nft, n, i)));
    }
    let mut plans = BTreeMap::new();
    let mut setup = Vec::new();
    for (key, spec) in wanted {
        let plan = spec.plan()?;
        let what = match key {
            None => "Docker modes lab (host, bridge, container, none, published ports)".into(),
            Some((nft, n)) => format!(
                "Kubernetes node, kube-proxy {} mode, {n} Services x 3 endpoints",
                if nft { "nftables" } else { "iptables" }
            ),
        };
        progress(&format!("building {} ({what})", plan.name));
        crate::lab::remove_stale(&plan.name);
        let t0 = Instant::now();
        labs.0.push(crate::lab::up(&plan)?);
        setup.push(ModeSetup {
            lab: plan.name.clone(),
            what,
            ms: t0.elapsed().as_secs_f64() * 1e3,
        });
        plans.insert(key, plan);
        if opts.stop.raised() {
            return Err(BenchError::Interrupted);
        }
    }
    Ok((plans, setup))
}

/// The steps a run takes (for the progress bar): labs, measured runs, traced runs.
fn steps(opts: &Options) -> usize {
    let mut labs: Vec<LabKey> = opts.modes.iter().map(|m| m.kube_lab()).collect();
    labs.sort_unstable();
    labs.dedup();
    labs.len()
        + opts.repeat * opts.workloads.len() * opts.modes.len()
        + if opts.hops_secs > 0.0 {
            opts.modes.len()
        } else {
            0
        }
}

/// Runs the benchmark; `progress` gets (done, total, what) before every step.
pub fn run(
    opts: &Options,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<Report, BenchError> {
    if opts.repeat == 0 {
        return Err(BenchError::Input("--repeat must be at least 1".into()));
    }
    let total = steps(opts);
    let mut done = 0;
    let mut labs = LabGuard::default();
    let (plans, setup) = build_labs(opts, &mut labs, &mut |what| {
        progress(done, total, what);
        done += 1;
    })?;
    let reaches: Vec<(BenchMode, labs::Reach)> = opts
        .modes
        .iter()
        .map(|&m| labs::reach(m, &plans[&m.kube_lab()]).map(|r| (m, r)))
        .collect::<Result<_, _>>()?;
    let stop = opts.stop.flag();
    // Prime ARP, routes and conntrack once per mode so no first run is special.
    for (m, r) in &reaches {
        loadgen::run(LoadKind::UdpRr, &r.ends, 0.05, opts.cpus, stop)
            .map_err(BenchError::io(format!("priming {}", m.name())))?;
    }
    let mut samples = Vec::new();
    for rep in 0..opts.repeat {
        for (ti, &t) in opts.workloads.iter().enumerate() {
            let mut order: Vec<&(BenchMode, labs::Reach)> = reaches.iter().collect();
            let n = order.len();
            order.rotate_left((rep + ti) % n);
            for (m, r) in order {
                if opts.stop.raised() {
                    return Err(BenchError::Interrupted);
                }
                let label = format!(
                    "{} over {} (repetition {}/{})",
                    t.name(),
                    m.name(),
                    rep + 1,
                    opts.repeat
                );
                progress(done, total, &label);
                let run = loadgen::run(t, &r.ends, opts.run_secs, opts.cpus, stop)
                    .map_err(BenchError::io(format!("{} over {}", t.name(), m.name())))?;
                samples.push(RunSample {
                    repetition: rep,
                    mode: m.name(),
                    workload: t,
                    run,
                });
                done += 1;
            }
        }
    }
    let mut hops: BTreeMap<BenchMode, Vec<HopTime>> = BTreeMap::new();
    if opts.hops_secs > 0.0 {
        for (m, r) in &reaches {
            if opts.stop.raised() {
                return Err(BenchError::Interrupted);
            }
            progress(
                done,
                total,
                &format!("per-hop times of {} (traced rr)", m.name()),
            );
            hops.insert(*m, traced::hops(r, opts.hops_secs, opts.cpus, stop)?);
            done += 1;
        }
    }
    progress(total, total, "done");
    drop(labs);
    let results = report::summarize(opts, &samples, &hops);
    let ordering = report::orderings(&results);
    Ok(Report {
        generator: report::GENERATOR.into(),
        run_secs: opts.run_secs,
        repeat: opts.repeat,
        cpus: crate::sys::cpu::count(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        pinned: opts.cpus,
        modes: opts.modes.iter().map(|m| m.name()).collect(),
        setup,
        results,
        samples,
        ordering,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_expand_over_service_counts_without_repeats() {
        let m = parse_modes(
            &["bridge".into(), "iptables".into(), "iptables-1".into()],
            &[1, 1000],
        )
        .unwrap();
        let names: Vec<String> = m.iter().map(|m| m.name()).collect();
        assert_eq!(names, ["bridge", "iptables-1", "iptables-1000"]);
        assert_eq!(
            parse_modes(&["all".into()], &[1, 1000, 10_000])
                .unwrap()
                .len(),
            11
        );
        assert!(parse_modes(&["nftables-0".into()], &[1]).is_err());
        assert!(
            parse_modes(&["ipvs".into()], &[1])
                .unwrap_err()
                .to_string()
                .contains("unknown mode 'ipvs'")
        );
    }

    #[test]
    fn lab_specs_plan_and_name_every_mode_end() {
        let d = labs::docker_spec().plan().unwrap();
        for m in [
            BenchMode::Host,
            BenchMode::Bridge,
            BenchMode::Container,
            BenchMode::None,
            BenchMode::Dnat,
        ] {
            let r = labs::reach(m, &d).unwrap();
            crate::net::check_traffic_addr(r.ends.target).unwrap();
        }
        assert_eq!(
            labs::reach(BenchMode::Dnat, &d).unwrap().ends.port_offset,
            labs::PUBLISH_OFFSET
        );
        let k = labs::kube_spec(true, 10_000, 2).plan().unwrap();
        // The target is the last Service (generated ones first), with every test's port.
        let last = k.services.last().unwrap();
        assert_eq!((last.name.as_str(), last.cluster_ip), ("target", labs::VIP));
        assert_eq!(last.ports.len(), LoadKind::TESTS.len());
        assert_eq!(k.services.len(), 10_000);
        assert_eq!(labs::kube_name(true, 10_000).len(), 12);
    }
}
