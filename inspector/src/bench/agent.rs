//! `inspector bench agent`: what `inspector agent` itself costs on a node. A lab of N
//! bridge-mode workloads; the agent (this binary, a separate process, as a `DaemonSet` runs it)
//! follows all of them. Three phases, each measured over the same window:
//! - rest: the workloads exist, no traffic;
//! - flows: every workload has sent to up to 25 others on several ports (F distinct UDP
//!   5-tuples, each counted at the 4 hooks it crosses: ~4F flow records in the kernel's
//!   table), and the metrics carry one series per workload pair and hop;
//! - flood: the small-packet UDP flood of `bench overhead` between two workloads.
//!
//! Each phase is measured two ways. Ours: the agent's CPU time over the window from
//! `/proc/PID/stat`, its RSS, and scrapes timed in-process. A user's: `ps -o %cpu,rss` (whose
//! %CPU is the average since the process started) and `curl -w %{time_total}` on /metrics.
use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    path::PathBuf,
    process::{Command, Stdio},
    sync::atomic::AtomicBool,
    time::{Duration, Instant},
};

use serde::Serialize;

use super::{BenchError, LoadKind, loadgen, overhead::observer};
use crate::{
    lab::{LabGuard, LabSpec},
    sys::netns,
};

/// What to run.
#[derive(Clone, Debug)]
pub struct AgentBench {
    pub workloads: usize,
    /// Distinct UDP 5-tuples sent in the flows phase.
    pub flows: usize,
    /// Each phase's measured window.
    pub secs: f64,
    /// The agent's `--interval`.
    pub interval: f64,
    /// Scrapes timed per phase.
    pub scrapes: usize,
    /// More flags for the agent.
    pub agent_args: Vec<String>,
}

/// One phase's figures (`type: "agent_phase"`).
#[derive(Clone, Debug, Serialize)]
pub struct AgentPhase {
    pub phase: &'static str,
    pub workloads: usize,
    /// Flow records in the kernel's table at the agent's last round.
    pub flow_records: u64,
    /// Samples in the exposition (lines that are not comments) and its size.
    pub series: usize,
    pub exposition_bytes: usize,
    /// Ours: the agent's CPU time over the window, in % of one core.
    pub cpu_percent: f64,
    /// A user's: `ps -o %cpu` (average since the agent started).
    pub ps_cpu_percent: f64,
    /// `VmRSS` at the end of the window (ours), and `ps -o rss` (a user's).
    pub rss_mib: f64,
    pub ps_rss_mib: f64,
    /// The agent's last round (read the kernel, resolve, fold into metrics), as it reports
    /// it (`inspector_scan_duration_seconds`).
    pub round_ms: f64,
    /// Ours: scrapes of /metrics timed in-process (median, max).
    pub scrape_p50_ms: f64,
    pub scrape_max_ms: f64,
    /// A user's: `curl -w %{time_total}` (median).
    pub curl_p50_ms: f64,
    /// The flood's rate while the agent ran (flood phase only).
    pub flood_pps: Option<f64>,
}

fn lab_spec(n: usize) -> LabSpec {
    use std::fmt::Write as _;
    let mut text = String::from("name = \"insp-bagent\"\nsubnet = \"198.18.80.0/21\"\n");
    for i in 0..n {
        let _ = writeln!(text, "[[workload]]\nname = \"a{i}\"\nmode = \"bridge\"");
    }
    LabSpec::from_toml(&text).unwrap_or_else(|e| unreachable!("a generated spec parses: {e}"))
}

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let after = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    #[expect(clippy::cast_precision_loss, reason = "clock ticks")]
    let ticks = (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64;
    #[expect(clippy::cast_precision_loss, reason = "a tick rate")]
    let hz = crate::sys::time::clock_ticks_per_sec() as f64;
    ticks / hz
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// `ps -o %cpu=,rss= -p PID`: (%CPU, RSS in MiB).
fn ps(pid: u32) -> (f64, f64) {
    let out = Command::new("ps")
        .args(["-o", "%cpu=,rss=", "-p", &pid.to_string()])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut it = out
        .split_whitespace()
        .map(|v| v.parse::<f64>().unwrap_or(0.0));
    (it.next().unwrap_or(0.0), it.next().unwrap_or(0.0) / 1024.0)
}

/// One scrape of /metrics: (milliseconds, body).
fn scrape(addr: SocketAddr) -> Result<(f64, String), BenchError> {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).map_err(BenchError::io("connecting to the agent"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(BenchError::io("a socket timeout"))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")
        .map_err(BenchError::io("asking the agent"))?;
    let mut body = String::new();
    s.read_to_string(&mut body)
        .map_err(BenchError::io("reading the agent"))?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let body = body
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((ms, body))
}

fn curl_ms(addr: SocketAddr) -> f64 {
    Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{time_total}"])
        .arg(format!("http://{addr}/metrics"))
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(f64::NAN, |s| s * 1e3)
}

/// The sum of a metric's samples in an exposition.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Measures the agent `pid` over `secs` while `during` runs (it returns the flood's rate).
fn measure(
    phase: &'static str,
    o: &AgentBench,
    pid: u32,
    addr: SocketAddr,
    during: impl FnOnce() -> Result<Option<f64>, BenchError>,
) -> Result<AgentPhase, BenchError> {
    let (c0, t0) = (cpu_secs(pid), Instant::now());
    let flood_pps = during()?;
    let rest = Duration::from_secs_f64(o.secs).saturating_sub(t0.elapsed());
    std::thread::sleep(rest);
    let cpu_percent = (cpu_secs(pid) - c0) / t0.elapsed().as_secs_f64() * 100.0;
    let rss = rss_mib(pid);
    let (ps_cpu, ps_rss) = ps(pid);
    let mut times = Vec::new();
    let mut last = String::new();
    for _ in 0..o.scrapes.max(1) {
        let (ms, body) = scrape(addr)?;
        times.push(ms);
        last = body;
    }
    let mut curl: Vec<f64> = (0..o.scrapes.clamp(1, 5)).map(|_| curl_ms(addr)).collect();
    let max = times.iter().copied().fold(0.0, f64::max);
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a count"
    )]
    let flow_records = metric(&last, "inspector_flow_records") as u64;
    Ok(AgentPhase {
        phase,
        workloads: o.workloads,
        flow_records,
        series: last
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count(),
        exposition_bytes: last.len(),
        cpu_percent,
        ps_cpu_percent: ps_cpu,
        rss_mib: rss,
        ps_rss_mib: ps_rss,
        round_ms: metric(&last, "inspector_scan_duration_seconds") * 1e3,
        scrape_p50_ms: median(&mut times),
        scrape_max_ms: max,
        curl_p50_ms: median(&mut curl),
        flood_pps,
    })
}

/// Sends `ports` datagrams from each workload to each of up to 25 others (one per port):
/// distinct 5-tuples. Returns the receivers (kept open so nothing is refused).
fn make_flows(addrs: &[(PathBuf, Ipv4Addr)], ports: u16) -> Result<Vec<UdpSocket>, BenchError> {
    const BASE: u16 = 30_000;
    let mut receivers = Vec::new();
    for (ns, _) in addrs {
        let socks = netns::run_in(ns, move || {
            (0..ports)
                .map(|j| UdpSocket::bind(("0.0.0.0", BASE + j)))
                .collect::<std::io::Result<Vec<_>>>()
        })
        .map_err(BenchError::io("entering a workload"))?
        .map_err(BenchError::io("binding a receiver"))?;
        receivers.extend(socks);
    }
    let n = addrs.len();
    let peers = n.saturating_sub(1).min(25);
    for (i, (ns, _)) in addrs.iter().enumerate() {
        let dsts: Vec<Ipv4Addr> = (1..=peers).map(|k| addrs[(i + k) % n].1).collect();
        netns::run_in(ns, move || -> std::io::Result<()> {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            for d in &dsts {
                for j in 0..ports {
                    s.send_to(b"inspector bench agent", (*d, BASE + j))?;
                }
            }
            Ok(())
        })
        .map_err(BenchError::io("entering a workload"))?
        .map_err(BenchError::io("sending a flow"))?;
    }
    Ok(receivers)
}

/// Runs the three phases.
///
/// # Errors
/// The lab or the agent cannot start; the agent stops answering.
pub fn run(
    o: &AgentBench,
    stop: &AtomicBool,
    mut progress: impl FnMut(&AgentPhase),
) -> Result<Vec<AgentPhase>, BenchError> {
    if o.workloads < 2 {
        return Err(BenchError::Input("--workloads: at least 2".into()));
    }
    crate::lab::remove_stale("insp-bagent");
    let plan = lab_spec(o.workloads).plan()?;
    let guard = LabGuard(vec![crate::lab::up(&plan)?]);
    let addrs: Vec<(PathBuf, Ipv4Addr)> = plan
        .workloads
        .iter()
        .filter_map(|w| Some((netns::named(&w.netns), w.addr?)))
        .collect();
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(BenchError::io("finding a free port"))?;
    let peers = o.workloads.saturating_sub(1).min(25);
    let ports = u16::try_from(o.flows.div_ceil(o.workloads * peers).max(1)).unwrap_or(u16::MAX);
    let mut args: Vec<String> = vec![
        "agent".into(),
        "-q".into(),
        "--listen".into(),
        listen.to_string(),
        "--interval".into(),
        o.interval.to_string(),
        "--max-flows".into(),
        (o.flows * 4 * 2).max(65_536).to_string(),
    ];
    for ns in &guard.0[0].namespaces {
        args.extend(["--netns".to_owned(), ns.clone()]);
    }
    args.extend(o.agent_args.iter().cloned());
    let agent = observer::start_inspector(&args, Stdio::null(), Stdio::null())?;
    let pid = agent.0[0].id();
    // Two rounds to settle after the start.
    std::thread::sleep(Duration::from_secs_f64(o.interval * 2.0 + 1.0));
    let mut out = Vec::new();
    let mut done = |p: AgentPhase, out: &mut Vec<AgentPhase>| {
        progress(&p);
        out.push(p);
    };
    done(measure("rest", o, pid, listen, || Ok(None))?, &mut out);
    if stop.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(BenchError::Interrupted);
    }
    let _receivers = make_flows(&addrs, ports)?;
    std::thread::sleep(Duration::from_secs_f64(o.interval * 2.0 + 0.5));
    done(measure("flows", o, pid, listen, || Ok(None))?, &mut out);
    if stop.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(BenchError::Interrupted);
    }
    let ends = loadgen::Ends {
        client_ns: addrs[0].0.clone(),
        server_ns: addrs[1].0.clone(),
        bind: addrs[1].1.into(),
        target: addrs[1].1.into(),
        port_offset: 0,
        shift: 0,
        user_port: None,
    };
    let flood = measure("flood", o, pid, listen, || {
        let r = loadgen::run(
            LoadKind::UdpFlood,
            &ends,
            o.secs,
            loadgen::Cpus {
                client: 0,
                server: 1,
            },
            stop,
        )
        .map_err(BenchError::io("the flood"))?;
        Ok(Some(r.rate))
    })?;
    done(flood, &mut out);
    drop(agent);
    drop(guard);
    Ok(out)
}
