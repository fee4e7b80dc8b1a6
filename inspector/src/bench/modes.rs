//! `inspector bench`: the same workloads over each network mode, side by side in one run.
//!
//! Modes are built as labs (see `crate::lab`): one Docker-style lab gives host, bridge,
//! container, none and bridge + published port (DNAT); one Kubernetes-node lab per
//! (kube-proxy mode, Service count) gives `ClusterIP` through kube-proxy's exact rules, with
//! the target Service last in `KUBE-SERVICES` (generated Services come first: the worst case
//! for iptables' linear match). Runs are interleaved: every repetition runs every workload
//! over every mode, the mode order rotating, so slow drifts of the machine spread evenly.
//! After the measured runs, one short traced run per mode (`inspector flows --latency` as
//! a child, attached to that mode's hops) gives the in-kernel time between hops; it is kept
//! apart so tracing never touches the measured numbers.
use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader},
    net::{IpAddr, Ipv4Addr},
    process::Stdio,
    sync::{Arc, atomic::AtomicBool},
    time::Instant,
};

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::loadgen::{self, Ends, Run, Test};
use crate::{
    identity::lab::LabRecord,
    lab::{
        modes as labmodes,
        spec::{LabSpec, Plan},
    },
    sys::netns,
};

/// One network mode of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    Host,
    Bridge,
    Container,
    None,
    Dnat,
    /// `ClusterIP` through kube-proxy (nftables when true) with this many Services.
    ClusterIp {
        nft: bool,
        services: u32,
    },
}

impl Mode {
    #[must_use]
    pub fn name(self) -> String {
        match self {
            Self::Host => "host".into(),
            Self::Bridge => "bridge".into(),
            Self::Container => "container".into(),
            Self::None => "none".into(),
            Self::Dnat => "bridge-dnat".into(),
            Self::ClusterIp { nft, services } => {
                format!("{}-{services}", if nft { "nftables" } else { "iptables" })
            }
        }
    }

    /// What the mode is, in a few words.
    #[must_use]
    pub fn what(self) -> String {
        match self {
            Self::Host => "client and server in the node's namespace (host networking): lo".into(),
            Self::Bridge => "container to container: veth, bridge, veth".into(),
            Self::Container => "client shares the server's namespace: lo".into(),
            Self::None => "client and server in a namespace with only lo: 127.0.0.1".into(),
            Self::Dnat => {
                "outside client to a published host port: routed veth, DNAT, bridge, veth".into()
            }
            Self::ClusterIp { nft, services } => format!(
                "pod to ClusterIP, kube-proxy {} mode, {services} Services (target last): veth, DNAT, bridge, veth",
                if nft { "nftables" } else { "iptables" }
            ),
        }
    }

    fn kube_lab(self) -> Option<(bool, u32)> {
        match self {
            Self::ClusterIp { nft, services } => Some((nft, services)),
            _ => None,
        }
    }
}

/// Parses `--modes` against the Service counts of `--services`.
///
/// # Errors
/// An unknown mode, in one line.
pub fn parse_modes(list: &[String], counts: &[u32]) -> Result<Vec<Mode>, String> {
    let mut out = Vec::new();
    for item in list {
        let kube = |nft: bool| {
            counts
                .iter()
                .map(move |&s| Mode::ClusterIp { nft, services: s })
        };
        match item.as_str() {
            "all" => {
                out.extend([
                    Mode::Host,
                    Mode::Bridge,
                    Mode::Container,
                    Mode::None,
                    Mode::Dnat,
                ]);
                out.extend(kube(false));
                out.extend(kube(true));
            }
            "host" => out.push(Mode::Host),
            "bridge" => out.push(Mode::Bridge),
            "container" => out.push(Mode::Container),
            "none" => out.push(Mode::None),
            "dnat" | "bridge-dnat" => out.push(Mode::Dnat),
            "iptables" => out.extend(kube(false)),
            "nftables" => out.extend(kube(true)),
            "clusterip" => {
                out.extend(kube(false));
                out.extend(kube(true));
            }
            other => {
                let parsed = other.split_once('-').and_then(|(m, n)| {
                    let nft = match m {
                        "iptables" => false,
                        "nftables" => true,
                        _ => return None,
                    };
                    let services = n.parse::<u32>().ok()?;
                    Some(Mode::ClusterIp { nft, services })
                });
                match parsed {
                    Some(m @ Mode::ClusterIp { services, .. })
                        if (1..=MAX_SERVICES).contains(&services) =>
                    {
                        out.push(m);
                    }
                    _ => {
                        return Err(format!(
                            "unknown mode '{other}': use host, bridge, container, none, dnat, iptables, nftables, iptables-N, nftables-N (N Services, 1..{MAX_SERVICES}), clusterip or all"
                        ));
                    }
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|m| seen.insert(*m));
    if out.is_empty() {
        return Err("--modes names no mode".into());
    }
    Ok(out)
}

/// Most Services a `ClusterIP` mode may program (the lab's limit plus the target).
pub const MAX_SERVICES: u32 = 30_001;

/// Published host port = container port + this (so host-mode traffic to the node's own
/// address is not caught by the published ports' DNAT).
const PUBLISH_OFFSET: u16 = 10_000;

/// Where the benchmark's Docker-style lab lives.
const DOCKER_LAB: &str = "insp-bm";
/// The published ports / Service ports: every test's own.
fn ports_toml(service: bool) -> String {
    Test::ALL
        .iter()
        .map(|t| {
            if service {
                format!(
                    "[[service.port]]\nname = \"{}\"\nport = {}\nprotocol = \"{}\"\n",
                    t.name(),
                    t.port(),
                    t.proto()
                )
            } else {
                format!(
                    "\"{}:{}/{}\"",
                    t.port() + PUBLISH_OFFSET,
                    t.port(),
                    t.proto()
                )
            }
        })
        .collect::<Vec<_>>()
        .join(if service { "" } else { ", " })
}

fn docker_spec() -> String {
    format!(
        r#"name = "{DOCKER_LAB}"
bridge = "br-bm"
subnet = "198.18.40.0/24"

[[workload]]
name = "srv"
mode = "bridge"
publish = [{}]

[[workload]]
name = "cli"
mode = "bridge"

[[workload]]
name = "side"
mode = "container:srv"

[[workload]]
name = "hostw"
mode = "host"

[[workload]]
name = "iso"
mode = "none"

[external]
name = "ext"
subnet = "198.18.41.0/24"
"#,
        ports_toml(false)
    )
}

/// The target Service's `ClusterIP`.
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 128, 10);

fn kube_name(nft: bool, services: u32) -> String {
    format!("insp-b{}{services}", if nft { 'n' } else { 'i' })
}

fn kube_spec(nft: bool, services: u32, index: usize) -> String {
    format!(
        r#"name = "{}"
bridge = "cni0"
subnet = "198.18.{}.0/24"
docker_rules = false
kube_proxy = "{}"
service_cidr = "198.18.128.0/17"
extra_services = {}

[[workload]]
name = "srv"
mode = "bridge"

[[workload]]
name = "cli"
mode = "bridge"

[[service]]
namespace = "bench"
name = "target"
cluster_ip = "{VIP}"
endpoints = ["srv"]
{}"#,
        kube_name(nft, services),
        42 + index,
        if nft { "nftables" } else { "iptables" },
        services - 1,
        ports_toml(true)
    )
}

/// The labs of one benchmark; all removed on drop (also on panic or interrupt).
struct Labs(Vec<LabRecord>);

impl Drop for Labs {
    fn drop(&mut self) {
        for r in self.0.iter().rev() {
            labmodes::down(r);
        }
    }
}

/// Removes a lab of this name left by an earlier, killed run.
fn remove_stale(name: &str) {
    if let Ok(rec) = LabRecord::load(name) {
        labmodes::down(&rec);
    }
    for ns in netns::list_with_prefix(&format!("{name}-")) {
        let _ = netns::delete(&ns);
    }
}

/// What a lab setup cost.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Setup {
    pub lab: String,
    pub what: String,
    pub ms: f64,
}

/// How each mode is reached, once its lab is up.
#[derive(Clone, Debug)]
struct Reach {
    ends: Ends,
    /// Namespaces the traced pass attaches to, and whether lo is on the path.
    trace_ns: Vec<String>,
    lo: bool,
}

fn plan_of(text: &str) -> anyhow::Result<Plan> {
    LabSpec::from_toml(text)
        .map_err(anyhow::Error::msg)?
        .plan()
        .map_err(|e| anyhow::anyhow!("bench lab spec: {e}"))
}

fn ns_of<'a>(plan: &'a Plan, workload: &str) -> anyhow::Result<&'a str> {
    plan.workloads
        .iter()
        .find(|w| w.name == workload)
        .map(|w| w.netns.as_str())
        .with_context(|| format!("no workload {workload} in the bench lab"))
}

fn addr_of(plan: &Plan, workload: &str) -> anyhow::Result<IpAddr> {
    plan.workloads
        .iter()
        .find(|w| w.name == workload)
        .and_then(|w| w.addr)
        .map(IpAddr::V4)
        .with_context(|| format!("no address for {workload} in the bench lab"))
}

fn reach(mode: Mode, plan: &Plan) -> anyhow::Result<Reach> {
    let p = |n: &str| netns::named(n);
    let srv = addr_of(plan, "srv")?;
    let srv_ns = ns_of(plan, "srv")?.to_owned();
    let r = match mode {
        Mode::Host => {
            let gw = IpAddr::V4(plan.gateway);
            Reach {
                ends: Ends {
                    client_ns: p(&plan.node_ns),
                    server_ns: p(&plan.node_ns),
                    bind: gw,
                    target: gw,
                    port_offset: 0,
                },
                trace_ns: vec![plan.node_ns.clone()],
                lo: true,
            }
        }
        Mode::Bridge | Mode::ClusterIp { .. } => {
            let cli = ns_of(plan, "cli")?.to_owned();
            Reach {
                ends: Ends {
                    client_ns: p(&cli),
                    server_ns: p(&srv_ns),
                    bind: srv,
                    target: if mode == Mode::Bridge {
                        srv
                    } else {
                        IpAddr::V4(VIP)
                    },
                    port_offset: 0,
                },
                trace_ns: vec![cli, plan.node_ns.clone(), srv_ns],
                lo: false,
            }
        }
        Mode::Container => Reach {
            ends: Ends {
                client_ns: p(ns_of(plan, "side")?),
                server_ns: p(&srv_ns),
                bind: srv,
                target: srv,
                port_offset: 0,
            },
            trace_ns: vec![srv_ns],
            lo: true,
        },
        Mode::None => {
            let iso = ns_of(plan, "iso")?.to_owned();
            let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
            Reach {
                ends: Ends {
                    client_ns: p(&iso),
                    server_ns: p(&iso),
                    bind: lo,
                    target: lo,
                    port_offset: 0,
                },
                trace_ns: vec![iso],
                lo: true,
            }
        }
        Mode::Dnat => {
            let (ext_ns, _, node_ip, _, _) = plan
                .external
                .clone()
                .context("the bench lab has no outside client")?;
            Reach {
                ends: Ends {
                    client_ns: p(&ext_ns),
                    server_ns: p(&srv_ns),
                    bind: srv,
                    target: IpAddr::V4(node_ip),
                    port_offset: PUBLISH_OFFSET,
                },
                trace_ns: vec![ext_ns, plan.node_ns.clone(), srv_ns],
                lo: false,
            }
        }
    };
    Ok(r)
}

/// Options of `inspector bench`.
#[derive(Clone, Debug)]
pub struct Options {
    pub modes: Vec<Mode>,
    pub tests: Vec<Test>,
    pub secs: f64,
    pub repeat: usize,
    /// Seconds of the traced run per mode (0: no per-hop breakdown).
    pub hops_secs: f64,
    pub cpus: loadgen::Cpus,
    pub stop: Arc<AtomicBool>,
}

/// One measured run.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Sample {
    pub repetition: usize,
    pub mode: String,
    pub workload: Test,
    #[serde(flatten)]
    pub run: Run,
}

/// The in-kernel time between two consecutive hops of one direction (median and p99 over
/// the traced run's packets).
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Hop {
    pub pair: String,
    pub from: String,
    pub to: String,
    pub packets: u64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// Median and spread (min, max) of one value over repetitions.
#[derive(Clone, Copy, Debug, Serialize, serde::Deserialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    fn of(v: &[f64]) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        Some(Self {
            median: super::median(v),
            min: v.iter().copied().fold(f64::INFINITY, f64::min),
            max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

/// One mode x workload: medians over repetitions, spreads, and the mode's hop breakdown.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Entry {
    pub mode: String,
    pub workload: Test,
    pub what: String,
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
    pub hops: Vec<Hop>,
}

/// The whole report (`-o json`: this one document).
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Report {
    #[serde(rename = "type")]
    pub kind: String,
    pub generator: String,
    pub duration_s: f64,
    pub repeat: usize,
    pub cpus: usize,
    /// Where the client and server threads ran.
    pub pinned: loadgen::Cpus,
    pub kernel: String,
    pub modes: Vec<String>,
    pub setup: Vec<Setup>,
    pub results: Vec<Entry>,
    pub samples: Vec<Sample>,
    /// The orderings published results lead one to expect, as measured (not asserted).
    pub ordering: Vec<Expectation>,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Expectation {
    pub expectation: String,
    pub measured: String,
    pub holds: Option<bool>,
}

pub const GENERATOR: &str = "built-in, netperf-style (TCP_RR, TCP_CRR, TCP_STREAM, UDP_RR), client and server threads pinned (see pinned), every transaction timed";

/// Runs the benchmark; `progress` gets (done, total, what) after every step.
pub fn run(opts: &Options, mut progress: impl FnMut(usize, usize, &str)) -> anyhow::Result<Report> {
    if opts.repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    let need_docker = opts.modes.iter().any(|m| m.kube_lab().is_none());
    let mut kube: Vec<(bool, u32)> = opts.modes.iter().filter_map(|m| m.kube_lab()).collect();
    kube.sort_unstable();
    kube.dedup();
    let total = opts.repeat * opts.tests.len() * opts.modes.len()
        + usize::from(need_docker)
        + kube.len()
        + if opts.hops_secs > 0.0 {
            opts.modes.len()
        } else {
            0
        };
    let mut done = 0;
    let mut labs = Labs(Vec::new());
    let mut plans: BTreeMap<Option<(bool, u32)>, Plan> = BTreeMap::new();
    let mut setup = Vec::new();
    let mut wanted: Vec<(Option<(bool, u32)>, String)> = Vec::new();
    if need_docker {
        wanted.push((None, docker_spec()));
    }
    for (i, &(nft, n)) in kube.iter().enumerate() {
        wanted.push((Some((nft, n)), kube_spec(nft, n, i)));
    }
    for (key, text) in wanted {
        let plan = plan_of(&text)?;
        let what = match key {
            None => "Docker modes lab (host, bridge, container, none, published ports)".into(),
            Some((nft, n)) => format!(
                "Kubernetes node, kube-proxy {} mode, {n} Services x 3 endpoints",
                if nft { "nftables" } else { "iptables" }
            ),
        };
        progress(done, total, &format!("building {} ({what})", plan.name));
        remove_stale(&plan.name);
        let t0 = Instant::now();
        let rec =
            labmodes::up(&plan).with_context(|| format!("building bench lab {}", plan.name))?;
        labs.0.push(rec);
        setup.push(Setup {
            lab: plan.name.clone(),
            what,
            ms: t0.elapsed().as_secs_f64() * 1e3,
        });
        plans.insert(key, plan);
        done += 1;
        if opts.stop.load(std::sync::atomic::Ordering::Relaxed) {
            bail!("interrupted; the bench labs were removed");
        }
    }
    let reaches: Vec<(Mode, Reach)> = opts
        .modes
        .iter()
        .map(|&m| {
            let plan = &plans[&m.kube_lab()];
            reach(m, plan).map(|r| (m, r))
        })
        .collect::<anyhow::Result<_>>()?;
    // Prime ARP, routes and conntrack once per mode so no first run is special.
    for (m, r) in &reaches {
        loadgen::run(Test::UdpRr, &r.ends, 0.05, opts.cpus, &opts.stop)
            .with_context(|| format!("priming {}", m.name()))?;
    }
    let mut samples = Vec::new();
    for rep in 0..opts.repeat {
        for (ti, &t) in opts.tests.iter().enumerate() {
            let mut order: Vec<&(Mode, Reach)> = reaches.iter().collect();
            let n = order.len();
            order.rotate_left((rep + ti) % n);
            for (m, r) in order {
                if opts.stop.load(std::sync::atomic::Ordering::Relaxed) {
                    bail!("interrupted; the bench labs were removed");
                }
                let label = format!(
                    "{} over {} (repetition {}/{})",
                    t.name(),
                    m.name(),
                    rep + 1,
                    opts.repeat
                );
                progress(done, total, &label);
                let run = loadgen::run(t, &r.ends, opts.secs, opts.cpus, &opts.stop)
                    .with_context(|| format!("{} over {}", t.name(), m.name()))?;
                samples.push(Sample {
                    repetition: rep,
                    mode: m.name(),
                    workload: t,
                    run,
                });
                done += 1;
            }
        }
    }
    let mut hops: BTreeMap<Mode, Vec<Hop>> = BTreeMap::new();
    if opts.hops_secs > 0.0 {
        for (m, r) in &reaches {
            if opts.stop.load(std::sync::atomic::Ordering::Relaxed) {
                bail!("interrupted; the bench labs were removed");
            }
            progress(
                done,
                total,
                &format!("per-hop times of {} (traced rr)", m.name()),
            );
            hops.insert(*m, traced_hops(r, opts.hops_secs, opts.cpus, &opts.stop)?);
            done += 1;
        }
    }
    progress(total, total, "done");
    drop(labs);
    let results = summarize(opts, &samples, &hops);
    let ordering = orderings(&results);
    Ok(Report {
        kind: "bench".into(),
        generator: GENERATOR.into(),
        duration_s: opts.secs,
        repeat: opts.repeat,
        cpus: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
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

fn summarize(opts: &Options, samples: &[Sample], hops: &BTreeMap<Mode, Vec<Hop>>) -> Vec<Entry> {
    let mut out = Vec::new();
    for &m in &opts.modes {
        for &t in &opts.tests {
            let runs: Vec<&Run> = samples
                .iter()
                .filter(|s| s.mode == m.name() && s.workload == t)
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
                mode: m.name(),
                workload: t,
                what: m.what(),
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
                    .kube_lab()
                    .map(|(nft, _)| if nft { "nftables" } else { "iptables" }.to_owned()),
                services: m.kube_lab().map(|(_, n)| n),
                hops: hops.get(&m).cloned().unwrap_or_default(),
            });
        }
    }
    let host: Vec<(Test, f64, Option<f64>)> = out
        .iter()
        .filter(|e| e.mode == "host")
        .map(|e| (e.workload, e.rate, e.p50_us))
        .collect();
    for e in &mut out {
        if let Some(&(_, rate, p50)) = host.iter().find(|h| h.0 == e.workload) {
            e.rate_vs_host = (rate > 0.0).then(|| e.rate / rate);
            e.p50_vs_host = p50.zip(e.p50_us).map(|(h, v)| v / h);
        }
    }
    out
}

fn orderings(results: &[Entry]) -> Vec<Expectation> {
    let mut out = Vec::new();
    let get = |mode: &str, t: Test| results.iter().find(|e| e.mode == mode && e.workload == t);
    if let (Some(hp), Some(bp)) = (
        get("host", Test::Rr).and_then(|e| e.p50_us),
        get("bridge", Test::Rr).and_then(|e| e.p50_us),
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
    if let (Some(h), Some(b)) = (get("host", Test::Stream), get("bridge", Test::Stream)) {
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
            .filter(|e| e.workload == Test::Crr && e.kube_proxy.as_deref() == Some(name))
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

/// A traced run of one mode: `inspector flows --latency` attached to the mode's
/// namespaces, TCP rr for `secs`, then the latency table it prints on SIGINT.
fn traced_hops(
    r: &Reach,
    secs: f64,
    cpus: loadgen::Cpus,
    stop: &AtomicBool,
) -> anyhow::Result<Vec<Hop>> {
    let mut args: Vec<String> = [
        "-o",
        "json",
        "flows",
        "--latency",
        // Every packet: this run is not measured, and full counts keep a connection's
        // first packets (routed differently, see docs) from passing for the main path.
        "--latency-sample",
        "1",
        "--no-services",
        "--no-drops",
        "-q",
        "--duration",
        "3600",
        // Only the benchmark's own TCP runs in these namespaces (no port filter: the
        // published-port mode's client side uses another port than the server's).
        "--proto",
        "tcp",
    ]
    .map(String::from)
    .to_vec();
    for n in &r.trace_ns {
        args.extend(["--netns".to_owned(), n.clone()]);
    }
    if r.lo {
        args.push("--lo".into());
    }
    let mut child = super::start_inspector(&args, Stdio::piped())?;
    loadgen::run(Test::Rr, &r.ends, secs, cpus, stop)?;
    child.interrupt();
    let out = child.0[0].stdout.take().context("inspector stdout")?;
    let mut hops = Vec::new();
    for line in BufReader::new(out).lines().map_while(Result::ok) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["type"] != "latency" {
            continue;
        }
        let us = |k: &str| v[k].as_f64().unwrap_or(0.0) / 1e3;
        hops.push(Hop {
            pair: v["pair"].as_str().unwrap_or("").to_owned(),
            from: v["from"].as_str().unwrap_or("").to_owned(),
            to: v["to"].as_str().unwrap_or("").to_owned(),
            packets: v["packets"].as_u64().unwrap_or(0),
            p50_us: us("p50_ns"),
            p99_us: us("p99_ns"),
        });
    }
    // Its output ended: it is exiting (reaped here, so the drop does not signal it again).
    let _ = child.0[0].wait();
    Ok(path_order(hops))
}

/// Hops of each pair in path order (each hop's `to` is the next one's `from`), busiest
/// pair first; hops seen by fewer than 1% of the pair's packets (stray stitches) dropped.
fn path_order(hops: Vec<Hop>) -> Vec<Hop> {
    let mut pairs: BTreeMap<String, Vec<Hop>> = BTreeMap::new();
    for h in hops {
        pairs.entry(h.pair.clone()).or_default().push(h);
    }
    let mut out: Vec<(u64, Vec<Hop>)> = Vec::new();
    for (_, mut hs) in pairs {
        let most = hs.iter().map(|h| h.packets).max().unwrap_or(0);
        hs.retain(|h| h.packets * 100 >= most);
        let mut ordered = Vec::new();
        // Start at a hop whose `from` is nobody's `to`.
        while !hs.is_empty() {
            let start = hs
                .iter()
                .position(|h| !hs.iter().any(|o| o.to == h.from))
                .unwrap_or(0);
            let mut cur = hs.remove(start);
            loop {
                let next = hs.iter().position(|h| h.from == cur.to);
                ordered.push(cur);
                match next {
                    Some(i) => cur = hs.remove(i),
                    None => break,
                }
            }
        }
        out.push((most, ordered));
    }
    out.sort_by_key(|b| std::cmp::Reverse(b.0));
    out.into_iter().flat_map(|(_, h)| h).collect()
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
                .contains("unknown mode 'ipvs'")
        );
    }

    #[test]
    fn hops_are_put_in_path_order_and_strays_dropped() {
        let h = |pair: &str, from: &str, to: &str, packets: u64| Hop {
            pair: pair.into(),
            from: from.into(),
            to: to.into(),
            packets,
            p50_us: 1.0,
            p99_us: 2.0,
        };
        let out = path_order(vec![
            h("a -> b", "v2(out)", "b(in)", 1000),
            h("a -> b", "a(out)", "v1(in)", 1000),
            h("a -> b", "v1(in)", "v2(out)", 1000),
            h("a -> b", "a(out)", "b(in)", 3),
            h("b -> a", "b(out)", "a(in)", 500),
        ]);
        let got: Vec<(&str, &str)> = out
            .iter()
            .map(|h| (h.from.as_str(), h.to.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("a(out)", "v1(in)"),
                ("v1(in)", "v2(out)"),
                ("v2(out)", "b(in)"),
                ("b(out)", "a(in)")
            ]
        );
    }

    #[test]
    fn lab_specs_plan_and_name_every_mode_end() {
        let d = plan_of(&docker_spec()).unwrap();
        for m in [
            Mode::Host,
            Mode::Bridge,
            Mode::Container,
            Mode::None,
            Mode::Dnat,
        ] {
            let r = reach(m, &d).unwrap();
            crate::traffic::check_addr(r.ends.target).unwrap();
        }
        assert_eq!(
            reach(Mode::Dnat, &d).unwrap().ends.port_offset,
            PUBLISH_OFFSET
        );
        let k = plan_of(&kube_spec(true, 10_000, 2)).unwrap();
        // The target is the last Service (generated ones first), with every test's port.
        let last = k.services.last().unwrap();
        assert_eq!((last.name.as_str(), last.cluster_ip), ("target", VIP));
        assert_eq!(last.ports.len(), Test::ALL.len());
        assert_eq!(k.services.len(), 10_000);
        assert_eq!(kube_name(true, 10_000).len(), 12);
    }
}
