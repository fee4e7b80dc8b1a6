//! `bench`: the same workloads over each network mode, side by side in one run.
//!
//! Paths come from four places (`target`): the project's labs (see `labs`: one
//! Docker-style lab gives host, bridge, container, none and bridge + published port (DNAT);
//! one Kubernetes-node lab per (kube-proxy mode, Service count) gives `ClusterIP` through
//! kube-proxy's exact rules, with the target Service last in `KUBE-SERVICES`); real
//! containers of a real dockerd in each Docker mode (`docker`); real CRI pods, pod to pod and
//! to a `ClusterIP` through kube-proxy's rules (`cri`); and two workloads that already exist
//! (`between`). Runs are interleaved: every repetition runs every workload over
//! every path, the order rotating, so slow drifts of the machine spread evenly. After the
//! measured runs, one short traced run per path (`traced`) gives the in-kernel time between
//! hops. A real mode is set beside its lab twin in the report (`report::vs_lab`).
pub mod between;
pub mod catalogue;
pub mod cri;
mod daemon;
pub mod docker;
mod labs;
pub mod report;
mod target;
mod traced;

use std::{collections::BTreeMap, time::Instant};

pub use catalogue::{BenchMode, MAX_SERVICES, parse_modes};
pub use report::{Entry, Expectation, HopTime, ModeSetup, Report, RunSample, VsLab};
pub use target::Runtime;
use target::Target;

use super::{BenchError, LoadKind, loadgen};
use crate::{
    lab::{LabGuard, LabSpec, Plan},
    sys::signals::StopFlag,
};

/// Options of `inspector bench`.
#[derive(Clone)]
pub struct Options {
    /// Lab modes (empty: no lab runs).
    pub modes: Vec<BenchMode>,
    /// Real dockerd containers (`--runtime docker`).
    pub docker: Option<docker::DockerOptions>,
    /// Real CRI pods (`--runtime cri`).
    pub cri: Option<cri::CriOptions>,
    /// Two existing workloads (`--between`).
    pub between: Option<between::Between>,
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

fn lab_keys(modes: &[BenchMode]) -> Vec<LabKey> {
    let mut labs: Vec<LabKey> = modes.iter().map(|m| m.kube_lab()).collect();
    labs.sort_unstable();
    labs.dedup();
    labs
}

/// Builds every lab the modes need (into `labs`); reports each as a step.
fn build_labs(
    opts: &Options,
    labs: &mut LabGuard,
    progress: &mut dyn FnMut(&str),
) -> Result<(BTreeMap<LabKey, Plan>, Vec<ModeSetup>), BenchError> {
    let mut wanted: Vec<(LabKey, LabSpec)> = Vec::new();
    let mut kube = 0;
    for key in lab_keys(&opts.modes) {
        let spec = match key {
            None => labs::docker_spec(),
            Some((nft, n)) => {
                kube += 1;
                labs::kube_spec(nft, n, kube - 1)
            }
        };
        wanted.push((key, spec));
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

/// The lab modes as targets, once their labs are up.
fn lab_targets(opts: &Options, plans: &BTreeMap<LabKey, Plan>) -> Result<Vec<Target>, BenchError> {
    opts.modes
        .iter()
        .map(|&m| {
            Ok(Target {
                name: m.name(),
                what: m.what(),
                runtime: Runtime::Lab,
                twin: None,
                kube: m.kube_lab(),
                around: None,
                reach: labs::reach(m, &plans[&m.kube_lab()])?,
            })
        })
        .collect()
}

/// The paths a run measures (for the progress bar's count).
fn path_count(opts: &Options) -> usize {
    opts.modes.len()
        + opts.docker.as_ref().map_or(0, |d| d.modes.len())
        + opts.cri.as_ref().map_or(0, |c| c.modes.len())
        + usize::from(opts.between.is_some())
}

/// The steps a run takes (for the progress bar): labs and runtimes set up, measured runs,
/// traced runs.
fn steps(opts: &Options) -> usize {
    let paths = path_count(opts);
    lab_keys(&opts.modes).len()
        + usize::from(opts.docker.is_some())
        + usize::from(opts.cri.is_some())
        + opts.repeat * opts.workloads.len() * paths
        + if opts.hops_secs > 0.0 { paths } else { 0 }
}

/// Runs the benchmark; `progress` gets (done, total, what) before every step.
pub fn run(
    opts: &Options,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<Report, BenchError> {
    if opts.repeat == 0 {
        return Err(BenchError::Input("--repeat must be at least 1".into()));
    }
    if path_count(opts) == 0 {
        return Err(BenchError::Input(
            "nothing to measure: no mode of the runtimes given".into(),
        ));
    }
    let total = steps(opts);
    let mut done = 0;
    // Checked before anything is made: a bad --between names no workload, or one that
    // cannot be reached; a published port in use; a dockerd that does not answer.
    let between = opts
        .between
        .as_ref()
        .map(|b| b.resolve(&opts.workloads))
        .transpose()?;
    if let Some(d) = &opts.docker {
        docker::preflight(d)?;
    }
    if let Some(c) = &opts.cri {
        cri::preflight(c)?;
    }
    let mut labs = LabGuard::default();
    let (plans, mut setup) = build_labs(opts, &mut labs, &mut |what| {
        progress(done, total, what);
        done += 1;
    })?;
    let mut targets = lab_targets(opts, &plans)?;
    let mut containers = None;
    if let Some(d) = &opts.docker {
        progress(done, total, "starting the Docker containers");
        let t0 = Instant::now();
        let (c, t) = docker::up(d, &opts.stop)?;
        setup.push(ModeSetup {
            lab: c.describe(),
            what: "real Docker containers, one per mode end".into(),
            ms: t0.elapsed().as_secs_f64() * 1e3,
        });
        containers = Some(c);
        targets.extend(t);
        done += 1;
    }
    let mut pods = None;
    if let Some(c) = &opts.cri {
        progress(done, total, "starting the CRI pods");
        let t0 = Instant::now();
        let (p, t) = cri::up(c, &opts.stop)?;
        setup.push(ModeSetup {
            lab: p.describe(),
            what: "real CRI pod sandboxes on the CNI bridge, kube-proxy rules for their Service"
                .into(),
            ms: t0.elapsed().as_secs_f64() * 1e3,
        });
        pods = Some(p);
        targets.extend(t);
        done += 1;
    }
    targets.extend(between);
    let result = measure(opts, &targets, &mut done, total, &mut progress);
    // Removed before the report is made, also when a run failed or was interrupted.
    drop(pods);
    drop(containers);
    drop(labs);
    let (samples, hops) = result?;
    progress(total, total, "done");
    let results = report::summarize(opts, &targets, &samples, &hops);
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
        modes: targets.iter().map(|t| t.name.clone()).collect(),
        setup,
        vs_lab: report::vs_lab(&results),
        results,
        samples,
        ordering,
    })
}

/// `f` with what the path needs only while it runs in place around it.
fn around<T>(t: &Target, f: impl FnOnce() -> Result<T, BenchError>) -> Result<T, BenchError> {
    let Some(a) = &t.around else {
        return f();
    };
    a.before()?;
    let r = f();
    a.after();
    r
}

type Measured = (Vec<RunSample>, BTreeMap<String, Vec<HopTime>>);

/// The measured runs, interleaved, then one traced run per path.
fn measure(
    opts: &Options,
    targets: &[Target],
    done: &mut usize,
    total: usize,
    progress: &mut impl FnMut(usize, usize, &str),
) -> Result<Measured, BenchError> {
    let stop = opts.stop.flag();
    // Prime ARP, routes and conntrack once per path so no first run is special.
    for t in targets {
        // With the user's own server (`--between DST:PORT`), through it.
        let prime = if t.reach.ends.user_port.is_some() {
            LoadKind::Rr
        } else {
            LoadKind::UdpRr
        };
        around(t, || {
            loadgen::run(prime, &t.reach.ends, 0.05, opts.cpus, stop)
                .map_err(BenchError::io(format!("priming {}", t.name)))
        })?;
    }
    let mut samples = Vec::new();
    for rep in 0..opts.repeat {
        for (ti, &w) in opts.workloads.iter().enumerate() {
            let mut order: Vec<&Target> = targets.iter().collect();
            let n = order.len();
            order.rotate_left((rep + ti) % n);
            for t in order {
                if opts.stop.raised() {
                    return Err(BenchError::Interrupted);
                }
                let label = format!(
                    "{} over {} (repetition {}/{})",
                    w.name(),
                    t.name,
                    rep + 1,
                    opts.repeat
                );
                progress(*done, total, &label);
                let run = around(t, || {
                    loadgen::run(w, &t.reach.ends, opts.run_secs, opts.cpus, stop)
                        .map_err(BenchError::io(format!("{} over {}", w.name(), t.name)))
                })?;
                samples.push(RunSample {
                    repetition: rep,
                    mode: t.name.clone(),
                    workload: w,
                    run,
                });
                *done += 1;
            }
        }
    }
    let mut hops = BTreeMap::new();
    if opts.hops_secs > 0.0 {
        for t in targets {
            if opts.stop.raised() {
                return Err(BenchError::Interrupted);
            }
            progress(
                *done,
                total,
                &format!("per-hop times of {} (traced rr)", t.name),
            );
            hops.insert(
                t.name.clone(),
                around(t, || {
                    traced::hops(&t.reach, opts.hops_secs, opts.cpus, stop)
                })?,
            );
            *done += 1;
        }
    }
    Ok((samples, hops))
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
