//! `inspector bench [modes]`: flags, progress bar, report (table / JSON) and SVG charts.
use std::path::PathBuf;

use anyhow::Context as _;

use crate::{
    bench::{
        LoadKind,
        loadgen::Cpus,
        modes::{self, Report},
    },
    cli::args::{parse_secs, parse_secs_or_zero},
    output::{self, Format, Printer, progress::Progress},
    sys::signals::StopFlag,
};

#[derive(clap::Args, Debug, Clone)]
pub struct ModesArgs {
    /// Modes, comma-separated: host, bridge, container, none, dnat (bridge + published
    /// port), iptables, nftables (cluster IP at each --services count), iptables-N,
    /// nftables-N, clusterip (both), all; with --runtime docker also user-bridge (a
    /// user-defined bridge network; Docker only).
    #[arg(long, value_delimiter = ',', default_value = "all")]
    pub modes: Vec<String>,
    /// What the modes run on, comma-separated: lab (the project's own labs), docker (real
    /// containers of a real dockerd), cri (real pods of a CRI runtime, and kube-proxy rules
    /// for their Service); a real mode is set beside its lab twin when lab is given too.
    /// Default: lab, or nothing but --between when that is given.
    #[arg(long, value_delimiter = ',', value_name = "RUNTIME")]
    pub runtime: Vec<String>,
    /// With --runtime docker: start a dockerd of the run's own (data root in a temporary
    /// directory, bridge 198.19.64.1/24) and stop it at the end.
    #[arg(long)]
    pub private_dockerd: bool,
    /// With --runtime cri: start a containerd of the run's own (CRI plugin, CNI bridge
    /// 198.19.72.0/24, state in a temporary directory) and stop it at the end.
    #[arg(long)]
    pub private_containerd: bool,
    /// The workloads between two workloads that already exist: containers (name or id),
    /// pods (NS/NAME), lab workloads (LAB/NAME) or host. DST:PORT: your own server answers
    /// rr and crr there (64 bytes back for each 64-byte request, as an echo server does).
    #[arg(long, num_args = 2, value_names = ["SRC", "DST[:PORT]"])]
    pub between: Vec<String>,
    #[command(flatten)]
    pub identity: crate::cli::args::IdentityArgs,
    /// Service counts for the iptables / nftables modes (the target Service is the last).
    #[arg(long, value_delimiter = ',', default_value = "1,1000,10000")]
    pub services: Vec<u32>,
    /// Workloads, comma-separated: rr, crr, stream, udp-rr.
    #[arg(long, value_delimiter = ',', default_value = "rr,crr,stream,udp-rr")]
    pub workloads: Vec<String>,
    /// Seconds of each measured run (after a 0.3 s warm-up).
    #[arg(long, value_parser = parse_secs)]
    pub run_secs: Option<f64>,
    /// The old spelling of --run-secs.
    #[arg(long, hide = true, value_parser = parse_secs)]
    pub duration: Option<f64>,
    /// Repetitions; every repetition runs every workload over every mode.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub repeat: u16,
    /// Seconds of the traced rr run per mode that gives the per-hop times (0: skip it).
    #[arg(long, default_value_t = 1.0, value_parser = parse_secs_or_zero)]
    pub hops_secs: f64,
    /// CPUs of the client and the server threads, CLIENT,SERVER. The default puts both on
    /// CPU 0: the path's own cost, not the cost of waking a thread on another CPU (an IPI,
    /// ~90 us per transaction in this kind of VM, which drowns the differences between
    /// modes). `0,1` measures with that wake-up included.
    #[arg(long, default_value = "0,0", value_parser = parse_cpus)]
    pub cpus: Cpus,
    /// Do not run anything: show a report saved with `-o json` (as a table, or as charts
    /// with --svg).
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// Write SVG charts into this directory (latency by mode, throughput by mode,
    /// connection setup vs Services).
    #[arg(long, value_name = "DIR")]
    pub svg: Option<PathBuf>,
}

fn parse_cpus(s: &str) -> Result<Cpus, String> {
    let n = crate::sys::cpu::count();
    let cpu = |x: &str| {
        x.trim()
            .parse::<usize>()
            .ok()
            .filter(|c| *c < n)
            .ok_or_else(|| {
                format!(
                    "--cpus '{s}': '{x}' is not a CPU of this machine (0..{})",
                    n - 1
                )
            })
    };
    let (c, v) = s
        .split_once(',')
        .ok_or_else(|| format!("--cpus '{s}' must be CLIENT,SERVER (e.g. 0,0 or 0,1)"))?;
    Ok(Cpus {
        client: cpu(c)?,
        server: cpu(v)?,
    })
}

pub fn run(a: &ModesArgs, fmt: Format) -> anyhow::Result<()> {
    if let Some(f) = &a.from {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("--from: cannot read {}", f.display()))?;
        let report: Report = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("--from: {} is not a bench report: {e}", f.display()))?;
        return show(&report, a, fmt);
    }
    crate::probe::preflight::privileges()?;
    if a.services
        .iter()
        .any(|&n| !(1..=modes::MAX_SERVICES).contains(&n))
    {
        anyhow::bail!("--services: each count must be 1..{}", modes::MAX_SERVICES);
    }
    let runtimes = runtimes(a)?;
    let has = |r: &str| runtimes.contains(&r);
    let others = |me: &str| runtimes.iter().any(|r| *r != me);
    let mode_list = if has("lab") {
        // Modes only a real runtime has (user-bridge: Docker's; pod: CRI's) are theirs.
        let lab: Vec<String> = a
            .modes
            .iter()
            .filter(|m| !(has("docker") && m.as_str() == "user-bridge"))
            .filter(|m| !(has("cri") && m.as_str() == "pod"))
            .cloned()
            .collect();
        modes::parse_modes(&lab, &a.services)?
    } else {
        Vec::new()
    };
    let docker = has("docker")
        .then(|| -> anyhow::Result<modes::docker::DockerOptions> {
            Ok(modes::docker::DockerOptions {
                socket: a.identity.docker_socket.clone(),
                private: a.private_dockerd,
                modes: modes::docker::parse_modes(&a.modes, others("docker"))?,
            })
        })
        .transpose()?;
    let cri = has("cri")
        .then(|| -> anyhow::Result<modes::cri::CriOptions> {
            Ok(modes::cri::CriOptions {
                socket: a.identity.cri_socket.clone(),
                private: a.private_containerd,
                modes: modes::cri::parse_modes(&a.modes, others("cri"))?,
            })
        })
        .transpose()?;
    if a.private_dockerd && docker.is_none() {
        anyhow::bail!("--private-dockerd is for --runtime docker");
    }
    if a.private_containerd && cri.is_none() {
        anyhow::bail!("--private-containerd is for --runtime cri");
    }
    let between = match a.between.as_slice() {
        [] => None,
        [src, dst] => {
            let (dst, port) = modes::between::split_dst(dst)?;
            Some(modes::between::Between {
                src: src.clone(),
                dst,
                port,
                identity: a.identity.options(),
            })
        }
        _ => anyhow::bail!("--between takes two workloads: SRC DST[:PORT]"),
    };
    let mut workloads = Vec::new();
    for w in &a.workloads {
        match LoadKind::parse(w)? {
            (w @ (LoadKind::UdpFlood | LoadKind::Iperf3Udp | LoadKind::UdpDrops), _) => {
                anyhow::bail!(
                    "workload '{}' is for `bench overhead`: over the modes use rr, crr, stream or udp-rr",
                    w.name()
                )
            }
            (w, note) => {
                if let Some(n) = note {
                    eprintln!("inspector: note: {n}");
                }
                if !workloads.contains(&w) {
                    workloads.push(w);
                }
            }
        }
    }
    if let Some(dir) = &a.svg {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--svg: cannot create {}", dir.display()))?;
    }
    let opts = modes::Options {
        modes: mode_list,
        docker,
        cri,
        between,
        workloads,
        run_secs: crate::cli::compat::renamed(
            a.run_secs,
            a.duration,
            ("--duration", "--run-secs"),
            3.0,
        ),
        repeat: usize::from(a.repeat),
        hops_secs: a.hops_secs,
        cpus: a.cpus,
        stop: StopFlag::register()?,
    };
    let mut bar = Progress::default();
    let report = modes::run(&opts, |d, t, w| bar.show(d, t, w))?;
    show(&report, a, fmt)
}

/// `--runtime`, checked; the default is the lab, or nothing but `--between` when given.
fn runtimes(a: &ModesArgs) -> anyhow::Result<Vec<&'static str>> {
    if a.runtime.is_empty() {
        return Ok(if a.between.is_empty() {
            vec!["lab"]
        } else {
            Vec::new()
        });
    }
    let mut out = Vec::new();
    for r in &a.runtime {
        let r = match r.as_str() {
            "lab" => "lab",
            "docker" => "docker",
            "cri" => "cri",
            other => anyhow::bail!(
                "unknown runtime '{other}': use lab, docker, cri, or several (lab,docker,cri)"
            ),
        };
        if !out.contains(&r) {
            out.push(r);
        }
    }
    Ok(out)
}

fn show(report: &Report, a: &ModesArgs, fmt: Format) -> anyhow::Result<()> {
    if let Some(dir) = &a.svg {
        let files = output::charts::write(report, dir)?;
        eprintln!("inspector: charts: {}", files.join(", "));
    }
    output::bench_modes::render(&mut Printer::stdout(fmt), report)?;
    Ok(())
}
