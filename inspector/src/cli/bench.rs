//! `inspector bench`: the same workloads over every network mode, side by side; and
//! `bench overhead` (what attaching the inspector to every hop costs, next to tcpdump),
//! `bench scale`, `bench services`. See docs/benchmarks.md.
use crate::{
    bench::{self, Observer, Workload},
    output::{self, Format, Table},
    probe::preflight,
};

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub what: Option<What>,
    /// Without a subcommand: `bench modes`.
    #[command(flatten)]
    pub modes: ModesArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum What {
    /// The same workloads over each network mode (host, bridge, container, none, published
    /// port, a Service's cluster IP through kube-proxy iptables and nftables at 1/1,000/10,000 Services),
    /// interleaved over repetitions; medians, spread, per-hop in-kernel time. The default.
    Modes(ModesArgs),
    /// Small-packet UDP, TCP request/response and bulk TCP with no observer, with the
    /// inspector and with tcpdump, interleaved; medians and ratios.
    Overhead(OverheadArgs),
    /// Identity resolution and attach time for N workloads (a lab of N bridge-mode
    /// namespaces with veth pairs and cgroups); medians over rounds.
    Scale(ScaleArgs),
    /// The userspace event pipeline (decode, filter, stitch, per-hop histograms) fed by a
    /// synthetic producer: events/s on one core, and loss at a paced rate through a ring of
    /// the kernel ring's size.
    Pipeline(PipelineArgs),
    /// Parse time of kube-proxy's rules for N Services x M endpoints (iptables-save text and
    /// nft JSON, programmed into a scratch namespace and dumped back); medians over rounds.
    Services(ServicesArgs),
}

pub use super::bench_modes::ModesArgs;

#[derive(clap::Args, Debug)]
pub struct PipelineArgs {
    /// Events for the throughput run (decoded and aggregated as fast as one core goes).
    #[arg(long, default_value_t = 50_000_000, value_parser = clap::value_parser!(u64).range(1000..=10_000_000_000))]
    pub events: u64,
    /// Events per second of the paced run.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1000..=100_000_000))]
    pub rate: u64,
    /// Seconds of the paced run (0: skip it).
    #[arg(long, default_value_t = 60.0, value_parser = super::common::parse_secs_or_zero)]
    pub secs: f64,
    /// Hooks each synthetic packet crosses.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(2..=8))]
    pub hops: u8,
    /// Endpoint pairs the synthetic packets go between (a histogram per pair and hop).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub pairs: u32,
    /// Throughput rounds (median, min and max are reported).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub rounds: u16,
}

/// Targets from the per-hop issue.
const PIPELINE_TARGET_EPS: f64 = 10e6;

fn pipeline(a: &PipelineArgs, fmt: Format) -> anyhow::Result<()> {
    let hops = usize::from(a.hops);
    eprintln!(
        "inspector: bench pipeline: {} events through decode + filter + stitch + histograms on CPU 0",
        a.events
    );
    let runs: Vec<bench::pipeline::Throughput> = (0..a.rounds)
        .map(|r| {
            let t = bench::pipeline::throughput(a.events, hops, a.pairs, 10_000_000, 0);
            eprintln!(
                "inspector: round {}: {:.2} M events/s",
                r + 1,
                t.events_per_sec / 1e6
            );
            t
        })
        .collect();
    let eps: Vec<f64> = runs.iter().map(|t| t.events_per_sec).collect();
    let med = bench::median(&eps);
    let (min, max) = (
        eps.iter().copied().fold(f64::INFINITY, f64::min),
        eps.iter().copied().fold(0.0, f64::max),
    );
    let Some(t) = runs.iter().min_by(|a, b| {
        (a.events_per_sec - med)
            .abs()
            .total_cmp(&(b.events_per_sec - med).abs())
    }) else {
        anyhow::bail!("no throughput round ran");
    };
    let stop = super::common::stop_flag()?;
    let p = (a.secs > 0.0).then(|| {
        eprintln!(
            "inspector: bench pipeline: {} events/s for {:.0} s through an {} MiB ring (producer on CPU 1, consumer on CPU 0)",
            a.rate,
            a.secs,
            bench::pipeline::RING_BYTES >> 20
        );
        bench::pipeline::paced(a.rate, a.secs, hops, 1, 0, &stop)
    });
    match fmt {
        Format::Json => {
            output::json_line(&serde_json::json!({"type": "pipeline_throughput",
                "target_events_per_sec": PIPELINE_TARGET_EPS,
                "median_events_per_sec": med, "min_events_per_sec": min,
                "max_events_per_sec": max,
                "met": med >= PIPELINE_TARGET_EPS, "median_run": t, "runs": runs}))?;
            if let Some(p) = &p {
                output::json_line(&serde_json::json!({"type": "pipeline_paced",
                    "met": p.lost == 0 && p.consumed == p.produced, "result": p}))?;
            }
        }
        Format::Table | Format::Dot => {
            println!(
                "throughput: {} rounds of {} events, {} endpoint pairs, on one core: median {:.2} M events/s (min {:.2}, max {:.2}; {:.1} ns per event; target >= 10 M/s: {}); median round: {} packets, {} closed early for room, packets per hop {:?}, p50 per hop {:?} ns (produced: {} ns)",
                runs.len(),
                t.events,
                t.pairs,
                med / 1e6,
                min / 1e6,
                max / 1e6,
                1e9 / med,
                if med >= PIPELINE_TARGET_EPS {
                    "met"
                } else {
                    "MISSED"
                },
                t.packets,
                t.closed_early,
                t.counted_per_hop,
                t.p50_ns,
                bench::pipeline::HOP_NS
            );
            if let Some(p) = &p {
                println!(
                    "paced: {} events/s for {:.1} s: produced {}, consumed {}, lost {} ({}); most waiting at one wake-up {} ({:.1}% of the ring); consumer CPU {:.1}%; packets per hop {:?}",
                    p.rate,
                    p.seconds,
                    p.produced,
                    p.consumed,
                    p.lost,
                    if p.lost == 0 && p.consumed == p.produced {
                        "zero loss: met"
                    } else {
                        "MISSED"
                    },
                    p.max_backlog,
                    p.max_backlog_pct,
                    p.consumer_cpu_pct,
                    p.counted_per_hop
                );
            }
        }
    }
    Ok(())
}

/// What per-hop timing adds per hop: `inspector-hops` (timed in the kernel) and
/// `inspector-hop-events` (an event per packet per hook) against `inspector` (the same
/// programs counting only), from throughput and, with --bpf-stats, from the programs' own
/// run time.
fn per_hop_lines(summary: &[bench::Summary]) {
    for w in [Workload::UdpSmall, Workload::TcpRr] {
        let get = |o: Observer| summary.iter().find(|s| s.workload == w && s.observer == o);
        let Some(plain) = get(Observer::Inspector) else {
            continue;
        };
        for (obs, what) in [
            (Observer::InspectorHops, "per-hop timing in the kernel"),
            (Observer::InspectorHopEvents, "per-hop timing from events"),
        ] {
            let Some(hops) = get(obs) else {
                continue;
            };
            let (Some(counting), Some(timing)) = (plain.added_ns_per_hop, hops.added_ns_per_hop)
            else {
                continue;
            };
            let added = timing - counting;
            // The programs' own run time (bpf_stats) is stable to a few ns; the throughput
            // estimate moves by hundreds of ns between runs on a noisy machine. Judge by the
            // first when there is one.
            let (judged, how) = match (plain.prog_ns_per_run, hops.prog_ns_per_run) {
                (Some(before), Some(after)) => (
                    after - before,
                    format!(
                        "tc program run {before:.0} -> {after:.0} ns: {:+.0} ns per hop (bpf_stats)",
                        after - before
                    ),
                ),
                _ => (
                    added,
                    format!(
                        "{added:+.0} ns per hop from throughput (add --bpf-stats for the programs' own time)"
                    ),
                ),
            };
            println!(
                "{:<9} {what} ({}): {how}; target <= {PER_HOP_TARGET_NS:.0} ns: {} (throughput: {added:+.0} ns per packet per hop over counting alone, {timing:.0} ns against no observer)",
                w.name(),
                obs.name(),
                if judged <= PER_HOP_TARGET_NS {
                    "met"
                } else {
                    "MISSED"
                },
            );
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct ServicesArgs {
    /// Services, 1..30000.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u16).range(1..=30_000))]
    pub count: u16,
    /// Endpoints per Service, 1..100.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub endpoints: u16,
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub rounds: u16,
}

/// Target from the service-routing issue: each format parsed in under this.
const PARSE_TARGET_MS: f64 = 150.0;

fn services(a: &ServicesArgs, fmt: Format) -> anyhow::Result<()> {
    let (setup, samples) = bench::services::run(
        usize::from(a.count),
        usize::from(a.endpoints),
        usize::from(a.rounds),
        |s| {
            eprintln!(
                "inspector: round {}: iptables-save parse {:.1} ms, nft JSON parse {:.1} ms",
                s.round + 1,
                s.iptables_ms,
                s.nft_ms
            );
        },
    )?;
    let stat = |f: fn(&bench::services::ParseSample) -> f64| -> (f64, f64, f64) {
        let v: Vec<f64> = samples.iter().map(f).collect();
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(0.0, f64::max);
        (bench::median(&v), min, max)
    };
    let rows = [
        (
            "iptables-save text",
            stat(|s| s.iptables_ms),
            setup.iptables_save_bytes,
        ),
        ("nft JSON", stat(|s| s.nft_ms), setup.nft_json_bytes),
    ];
    match fmt {
        Format::Json => {
            output::json_line(&serde_json::json!({"type": "services_setup", "setup": setup}))?;
            for s in &samples {
                output::json_line(&serde_json::json!({"type": "services_sample", "sample": s}))?;
            }
            for (what, (med, min, max), bytes) in rows {
                output::json_line(
                    &serde_json::json!({"type": "services_summary", "what": what,
                    "median_ms": med, "min_ms": min, "max_ms": max, "bytes": bytes,
                    "target_ms": PARSE_TARGET_MS, "met": med < PARSE_TARGET_MS,
                    "services": a.count, "endpoints": a.endpoints}),
                )?;
            }
        }
        Format::Table | Format::Dot => {
            println!(
                "{} Services x {} endpoints, {} rounds; programmed in {:.0} ms (iptables-restore, {} rules) and {:.0} ms (nft -f); dumped in {:.0} ms (iptables-save) and {:.0} ms (nft -j)",
                setup.services,
                setup.endpoints_per_service,
                samples.len(),
                setup.iptables_restore_ms,
                setup.iptables_rules,
                setup.nft_load_ms,
                setup.iptables_save_ms,
                setup.nft_json_ms
            );
            let mut t = Table::new(&["PARSE", "MEDIAN MS", "MIN", "MAX", "INPUT MB", "TARGET"]);
            for (what, (med, min, max), bytes) in rows {
                #[expect(clippy::cast_precision_loss, reason = "sizes are small")]
                let mb = bytes as f64 / 1e6;
                t.row(vec![
                    what.into(),
                    format!("{med:.1}"),
                    format!("{min:.1}"),
                    format!("{max:.1}"),
                    format!("{mb:.1}"),
                    format!(
                        "<{PARSE_TARGET_MS:.0} ms: {}",
                        if med < PARSE_TARGET_MS {
                            "met"
                        } else {
                            "MISSED"
                        }
                    ),
                ]);
            }
            print!("{}", t.render());
        }
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct ScaleArgs {
    /// Workloads (namespaces with a veth pair each), 1..2000.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..=2000))]
    pub count: u16,
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub rounds: u16,
}

fn scale(a: &ScaleArgs, fmt: Format) -> anyhow::Result<()> {
    let samples = bench::scale::run(usize::from(a.count), usize::from(a.rounds), |s| {
        eprintln!(
            "inspector: round {}: identity {:.1} ms, resolve {:.2} ms ({} of {}), scan {:.0} ms, load {:.0} ms, attach {:.0} ms, --fast-attach {:.0} ms ({} interfaces)",
            s.round + 1,
            s.identity_ms,
            s.resolve_ms,
            s.resolved,
            s.workloads,
            s.scan_ms,
            s.load_ms,
            s.attach_ms,
            s.attach_fast_ms,
            s.attached
        );
    })?;
    let col = |f: fn(&bench::scale::ScaleSample) -> f64| -> (f64, f64, f64) {
        let v: Vec<f64> = samples.iter().map(f).collect();
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(0.0, f64::max);
        (bench::median(&v), min, max)
    };
    let rows = [
        (
            "identity refresh",
            col(|s| s.identity_ms),
            "200 ms (with resolve)",
        ),
        ("resolve all ends", col(|s| s.resolve_ms), ""),
        ("topology scan", col(|s| s.scan_ms), ""),
        ("eBPF load", col(|s| s.load_ms), ""),
        ("attach (scan + links)", col(|s| s.attach_ms), "1000 ms"),
        ("attach --fast-attach", col(|s| s.attach_fast_ms), "1000 ms"),
    ];
    match fmt {
        Format::Json => {
            for s in &samples {
                output::json_line(&serde_json::json!({"type": "scale_sample", "sample": s}))?;
            }
            for (what, (med, min, max), target) in rows {
                output::json_line(&serde_json::json!({"type": "scale_summary", "what": what,
                    "median_ms": med, "min_ms": min, "max_ms": max, "target": target,
                    "workloads": a.count}))?;
            }
        }
        Format::Table | Format::Dot => {
            let mut t = Table::new(&["STEP", "MEDIAN MS", "MIN", "MAX", "TARGET"]);
            for (what, (med, min, max), target) in rows {
                t.row(vec![
                    what.into(),
                    format!("{med:.1}"),
                    format!("{min:.1}"),
                    format!("{max:.1}"),
                    target.into(),
                ]);
            }
            println!(
                "{} workloads, {} rounds; {} of {} ends resolved, {} interfaces attached",
                a.count,
                samples.len(),
                samples.last().map_or(0, |s| s.resolved),
                a.count,
                samples.last().map_or(0, |s| s.attached)
            );
            print!("{}", t.render());
        }
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct OverheadArgs {
    /// Rounds (each runs every observer once); medians are over rounds.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0, value_parser = super::common::parse_secs)]
    pub secs: f64,
    /// Workloads to run: udp, rr, bulk (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "udp,rr,bulk")]
    pub workloads: Vec<String>,
    /// Extra argument for the observed `inspector flows` (repeatable), e.g.
    /// `--inspector-arg=--no-drops`.
    #[arg(long = "inspector-arg", allow_hyphen_values = true)]
    pub inspector_args: Vec<String>,
    /// Small-packet receiver busy-polls instead of sleeping between batches: removes the
    /// wake-up IPIs that make the sender's rate swing, and shows per-packet cost more plainly.
    #[arg(long)]
    pub busy_poll: bool,
    /// Also observe with `inspector flows --latency` (per-hop times kept in the kernel) and
    /// with `--latency-from events` (an event per packet per hop, stitched in userspace), and
    /// report what each adds per hop.
    #[arg(long)]
    pub per_hop: bool,
    /// Turn the kernel's BPF run-time statistics on for the run (restored after) and report
    /// the tc programs' own run time per run (they add ~50 ns of accounting to each).
    #[arg(long)]
    pub bpf_stats: bool,
}

/// Target from the per-hop issue: what per-hop timestamping may add per hop, on average.
const PER_HOP_TARGET_NS: f64 = 60.0;

/// Targets from the foundation issue: (workload, max overhead %).
const TARGETS: [(Workload, f64); 3] = [
    (Workload::UdpSmall, 3.0),
    (Workload::TcpRr, 2.0),
    (Workload::TcpBulk, 1.0),
];

pub fn run(a: &Args, fmt: Format) -> anyhow::Result<()> {
    preflight::privileges()?;
    let o = match &a.what {
        Some(What::Overhead(o)) => o,
        Some(What::Scale(s)) => return scale(s, fmt),
        Some(What::Services(s)) => return services(s, fmt),
        Some(What::Modes(m)) => return super::bench_modes::run(m, fmt),
        Some(What::Pipeline(p)) => return pipeline(p, fmt),
        None => return super::bench_modes::run(&a.modes, fmt),
    };
    if o.rounds == 0 {
        anyhow::bail!("--rounds must be at least 1");
    }
    let workloads = o
        .workloads
        .iter()
        .map(|w| match w.as_str() {
            "udp" => Ok(Workload::UdpSmall),
            "rr" => Ok(Workload::TcpRr),
            "bulk" => Ok(Workload::TcpBulk),
            other => Err(anyhow::anyhow!(
                "unknown workload '{other}': use udp, rr or bulk"
            )),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let stop = super::common::stop_flag()?;
    let opts = bench::Options {
        rounds: o.rounds,
        secs: o.secs,
        workloads,
        stop,
        inspector_args: o.inspector_args.clone(),
        busy_poll: o.busy_poll,
        per_hop: o.per_hop,
        bpf_stats: o.bpf_stats,
    };
    eprintln!(
        "inspector: bench overhead: {} rounds x {} observers x {} workloads x {:.1} s",
        opts.rounds,
        opts.observers().len(),
        opts.workloads.len(),
        opts.secs
    );
    let (_samples, summary) = bench::overhead(&opts, |s| {
        if fmt == Format::Json {
            let mut v = serde_json::to_value(s).unwrap_or_default();
            v["type"] = "sample".into();
            let _ = output::json_line(&v);
        } else {
            eprintln!(
                "  round {} {:<9} {:<9} {:>14.2} {}",
                s.round + 1,
                s.workload.name(),
                s.observer.name(),
                s.value,
                s.workload.unit()
            );
        }
    })?;
    match fmt {
        Format::Json => {
            for s in &summary {
                output::json_line(s)?;
            }
        }
        Format::Table | Format::Dot => {
            let mut t = Table::new(&[
                "WORKLOAD",
                "OBSERVER",
                "MEDIAN",
                "MIN",
                "MAX",
                "UNIT",
                "RATIO",
                "OVERHEAD",
                "ADDED NS/HOP",
                "PROG NS/RUN",
            ]);
            for s in &summary {
                t.row(vec![
                    s.workload.name().into(),
                    s.observer.name().into(),
                    format!("{:.2}", s.median),
                    format!("{:.2}", s.min),
                    format!("{:.2}", s.max),
                    s.unit.into(),
                    format!("{:.4}", s.ratio),
                    format!("{:+.2}%", s.overhead_pct),
                    s.added_ns_per_hop
                        .filter(|_| s.observer != Observer::None)
                        .map_or_else(|| "-".into(), |v| format!("{v:.0}")),
                    s.prog_ns_per_run
                        .map_or_else(|| "-".into(), |v| format!("{v:.0}")),
                ]);
            }
            print!("{}", t.render());
            if o.per_hop {
                println!();
                per_hop_lines(&summary);
            }
            println!();
            for (w, target) in TARGETS {
                let get = |o: Observer| summary.iter().find(|s| s.workload == w && s.observer == o);
                let (Some(i), Some(t)) = (get(Observer::Inspector), get(Observer::Tcpdump)) else {
                    continue;
                };
                let share = if t.overhead_pct > 0.0 {
                    i.overhead_pct / t.overhead_pct
                } else {
                    f64::NAN
                };
                println!(
                    "{:<9} inspector {:+.2}% (target <= {target}%: {})  tcpdump {:+.2}%  inspector/tcpdump overhead {:.2} (target <= 0.25: {})",
                    w.name(),
                    i.overhead_pct,
                    if i.overhead_pct <= target {
                        "met"
                    } else {
                        "MISSED"
                    },
                    t.overhead_pct,
                    share,
                    if share <= 0.25 { "met" } else { "MISSED" },
                );
            }
        }
    }
    Ok(())
}
