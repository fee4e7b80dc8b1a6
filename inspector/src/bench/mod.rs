//! The overhead benchmark: the same workloads on the bridge lab with no observer, with
//! `inspector flows` attached to every hop, and with `tcpdump -w /dev/null` on the same
//! interfaces, interleaved round by round (the observer order rotates each round), reported
//! as medians with min/max and ratios to the no-observer median.
pub mod loadgen;
pub mod modes;
pub mod pipeline;
pub mod scale;
pub mod services;
pub mod svg;
pub mod workload;

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::lab::{BridgeLabSpec, Lab, Workload as LabWorkload};
pub use workload::Workload;

/// Who watches the traffic during a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Observer {
    None,
    Inspector,
    /// `inspector flows --latency`: the programs time each packet from hook to hook.
    InspectorHops,
    /// `inspector flows --latency --latency-from events`: an event per packet per hook,
    /// stitched into per-hop times in userspace.
    InspectorHopEvents,
    Tcpdump,
}

impl Observer {
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Inspector => "inspector",
            Self::InspectorHops => "inspector-hops",
            Self::InspectorHopEvents => "inspector-hop-events",
            Self::Tcpdump => "tcpdump",
        }
    }
}

/// The lab the benchmark runs on: a client and a server on a bridge in a node namespace.
#[must_use]
pub fn lab_spec() -> BridgeLabSpec {
    BridgeLabSpec {
        prefix: "insp-bench".into(),
        bridge: "br-bench".into(),
        bridge_addr: "198.18.10.1/24".into(),
        workloads: vec![
            LabWorkload {
                name: "cli".into(),
                addr: "198.18.10.2/24".into(),
            },
            LabWorkload {
                name: "srv".into(),
                addr: "198.18.10.3/24".into(),
            },
        ],
        external: None,
        disable_ipv6: true,
    }
}

/// Every hop of the path: (namespace path, interface name).
fn hops(spec: &BridgeLabSpec) -> Vec<(PathBuf, String)> {
    let node = crate::sys::netns::named(&spec.node_ns());
    vec![
        (crate::sys::netns::named(&spec.ns_of("cli")), "eth0".into()),
        (node.clone(), "v-cli".into()),
        (node.clone(), spec.bridge.clone()),
        (node, "v-srv".into()),
        (crate::sys::netns::named(&spec.ns_of("srv")), "eth0".into()),
    ]
}

/// Running child processes; stopped (SIGINT, bounded wait, then SIGKILL) on drop.
pub(crate) struct Running(pub(crate) Vec<Child>);

impl Running {
    /// Interrupts the children still running (SIGINT: an inspector detaches and prints).
    pub(crate) fn interrupt(&mut self) {
        for c in &mut self.0 {
            if c.try_wait().ok().flatten().is_none() {
                // SAFETY: kill(2) on our own, not yet reaped, child.
                unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
            }
        }
    }
}

/// Starts `inspector` (this binary) with `args` and `--ready-file`, and waits until it has
/// attached everything.
pub(crate) fn start_inspector(args: &[String], stdout: Stdio) -> anyhow::Result<Running> {
    let ready = std::env::temp_dir().join(format!("inspector-bench-{}.ready", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let child = std::process::Command::new(std::env::current_exe()?)
        .args(args)
        .arg("--ready-file")
        .arg(&ready)
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()?;
    let mut running = Running(vec![child]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready.exists() {
        if running.0[0].try_wait()?.is_some() || Instant::now() > deadline {
            bail!("inspector did not become ready");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(&ready);
    Ok(running)
}

impl Drop for Running {
    fn drop(&mut self) {
        self.interrupt();
        for c in &mut self.0 {
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn start(obs: Observer, lab: &Lab, extra: &[String]) -> anyhow::Result<Running> {
    match obs {
        Observer::None => Ok(Running(Vec::new())),
        Observer::Inspector | Observer::InspectorHops | Observer::InspectorHopEvents => {
            let mut args: Vec<String> = ["flows", "--duration", "86400", "-q"]
                .map(String::from)
                .to_vec();
            for n in lab.ns_names() {
                args.extend(["--netns".to_owned(), n.clone()]);
            }
            args.extend(extra.iter().cloned());
            if obs == Observer::InspectorHops {
                args.push("--latency".into());
            }
            if obs == Observer::InspectorHopEvents {
                args.extend(["--latency", "--latency-from", "events"].map(String::from));
            }
            start_inspector(&args, Stdio::null())
        }
        Observer::Tcpdump => {
            let mut children = Running(Vec::new());
            for (ns, ifname) in hops(&lab.spec) {
                let mut child = workload::command_in(&ns, "tcpdump")?
                    .args(["-i", &ifname, "-n", "-w", "/dev/null"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .context("starting tcpdump (run `cargo xtask setup`)")?;
                // tcpdump says "listening on IF" once its capture is open.
                let err = child.stderr.take().context("tcpdump stderr")?;
                children.0.push(child);
                let mut line = String::new();
                let mut r = BufReader::new(err);
                let deadline = Instant::now() + Duration::from_secs(10);
                while !line.contains("listening on") {
                    line.clear();
                    if r.read_line(&mut line)? == 0 || Instant::now() > deadline {
                        bail!("tcpdump on {ifname} did not start");
                    }
                }
                // Keep draining its stderr so it never blocks on a full pipe.
                std::thread::spawn(move || for _ in r.lines() {});
            }
            Ok(children)
        }
    }
}

/// One measured value.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub round: usize,
    pub workload: Workload,
    pub observer: Observer,
    pub value: f64,
    /// With `--bpf-stats`: average run time of the inspector's tc programs (ns) and runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prog_ns_per_run: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prog_runs: Option<u64>,
}

/// Run time and run count of the inspector's tc programs, summed (`bpf_stats` must be on).
fn tc_prog_stats() -> Option<(u64, u64)> {
    let out = std::process::Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let (mut ns, mut runs) = (0u64, 0u64);
    for p in v.as_array()? {
        if matches!(
            p["name"].as_str(),
            Some("insp_tc_egress" | "insp_tc_ingress")
        ) {
            ns += p["run_time_ns"].as_u64().unwrap_or(0);
            runs += p["run_cnt"].as_u64().unwrap_or(0);
        }
    }
    (runs > 0).then_some((ns, runs))
}

/// Turns `kernel.bpf_stats_enabled` on while it lives (it adds ~50 ns of accounting to
/// every program run, the same for both inspector observers).
struct BpfStats(Option<String>);

impl BpfStats {
    fn on(want: bool) -> anyhow::Result<Self> {
        const P: &str = "/proc/sys/kernel/bpf_stats_enabled";
        if !want {
            return Ok(Self(None));
        }
        let old = std::fs::read_to_string(P).context("reading kernel.bpf_stats_enabled")?;
        std::fs::write(P, "1").context("turning kernel.bpf_stats_enabled on")?;
        Ok(Self(Some(old.trim().to_owned())))
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", old);
        }
    }
}

/// Median, spread and ratio to the no-observer median, per (workload, observer).
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub workload: Workload,
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

#[must_use]
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => f64::midpoint(s[n / 2 - 1], s[n / 2]),
    }
}

/// Hooks a packet crosses on the bench lab's path (client eth0 out, its host veth in, the
/// server's host veth out, server eth0 in; bridged packets do not pass the bridge's own tc).
const HOOKS_PER_PACKET: f64 = 4.0;

impl Options {
    /// The observers of this run: none, inspector, (inspector-hops, inspector-hop-events,)
    /// tcpdump.
    #[must_use]
    pub fn observers(&self) -> Vec<Observer> {
        let mut v = vec![Observer::None, Observer::Inspector];
        if self.per_hop {
            v.push(Observer::InspectorHops);
            v.push(Observer::InspectorHopEvents);
        }
        v.push(Observer::Tcpdump);
        v
    }
}

/// Options of `bench overhead`.
#[derive(Clone, Debug)]
pub struct Options {
    pub rounds: usize,
    pub secs: f64,
    pub workloads: Vec<Workload>,
    /// Extra arguments for the `inspector flows` observer (e.g. `--no-drops`).
    pub inspector_args: Vec<String>,
    /// The small-packet receiver spins instead of sleeping.
    pub busy_poll: bool,
    /// Also run `inspector flows --latency` (an event per packet per hop) as an observer.
    pub per_hop: bool,
    /// Turn `bpf_stats` on and report the tc programs' run time per run.
    pub bpf_stats: bool,
    /// Set by SIGINT/SIGTERM: stop after the current measurement and clean up.
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Runs the benchmark; `progress` gets one line per measurement.
pub fn overhead(
    opts: &Options,
    mut progress: impl FnMut(&Sample),
) -> anyhow::Result<(Vec<Sample>, Vec<Summary>)> {
    let spec = lab_spec();
    for stale in crate::sys::netns::list_with_prefix(&format!("{}-", spec.prefix)) {
        crate::sys::netns::delete(&stale)?;
    }
    let lab = Lab::up(&spec)?;
    let pair = workload::Pair {
        client: crate::sys::netns::named(&spec.ns_of("cli")),
        server: crate::sys::netns::named(&spec.ns_of("srv")),
        server_ip: "198.18.10.3".parse()?,
    };
    // Prime ARP and caches once so the first measured run is not special.
    crate::traffic::ping(
        &pair.client,
        "198.18.10.3".parse()?,
        2,
        Duration::from_secs(2),
    )?;
    let observers = opts.observers();
    let _stats = BpfStats::on(opts.bpf_stats)?;
    let mut samples = Vec::new();
    for round in 0..opts.rounds {
        for (wi, &w) in opts.workloads.iter().enumerate() {
            // Each measurement gets a freshly started observer, and the observer order rotates
            // with the round and the workload, so none always runs first, last, or right
            // after another workload's after-effects (a flood's queued packets, say).
            let mut order = observers.clone();
            order.rotate_left((round + wi) % observers.len());
            for obs in order {
                if opts.stop.load(std::sync::atomic::Ordering::Relaxed) {
                    bail!("interrupted; the lab and every observer were removed");
                }
                let running = start(obs, &lab, &opts.inspector_args)?;
                let value = workload::run(w, &pair, opts.secs, opts.busy_poll)
                    .with_context(|| format!("{} with {}", w.name(), obs.name()))?;
                let prog = if opts.bpf_stats && running.0.len() == 1 {
                    tc_prog_stats()
                } else {
                    None
                };
                drop(running);
                let s = Sample {
                    round,
                    workload: w,
                    observer: obs,
                    value,
                    prog_ns_per_run: prog.map(|(ns, n)| ns as f64 / n as f64),
                    prog_runs: prog.map(|p| p.1),
                };
                progress(&s);
                samples.push(s);
            }
        }
    }
    drop(lab);
    let mut out = Vec::new();
    for &w in &opts.workloads {
        let vals = |o: Observer| {
            samples
                .iter()
                .filter(|s| s.workload == w && s.observer == o)
                .map(|s| s.value)
                .collect::<Vec<_>>()
        };
        let base = median(&vals(Observer::None));
        for &o in &observers {
            let v = vals(o);
            let m = median(&v);
            let progs: Vec<f64> = samples
                .iter()
                .filter(|s| s.workload == w && s.observer == o)
                .filter_map(|s| s.prog_ns_per_run)
                .collect();
            out.push(Summary {
                kind: "summary",
                workload: w,
                observer: o,
                unit: w.unit(),
                runs: v.len(),
                median: m,
                min: v.iter().copied().fold(f64::INFINITY, f64::min),
                max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                ratio: m / base,
                overhead_pct: (1.0 - m / base) * 100.0,
                added_ns_per_hop: w
                    .per_packet()
                    .map(|per| (1.0 / m - 1.0 / base) * 1e9 / per / HOOKS_PER_PACKET),
                prog_ns_per_run: (!progs.is_empty()).then(|| median(&progs)),
            });
        }
    }
    Ok((samples, out))
}
