//! `inspector bench [modes]`: flags, progress bar, table / JSON report and SVG charts.
use std::{io::IsTerminal as _, path::PathBuf, time::Instant};

use anyhow::Context as _;

use crate::{
    bench::{
        loadgen::Test,
        modes::{self, Entry, Report},
        svg,
    },
    output::{self, Format, Table},
};

#[derive(clap::Args, Debug, Clone)]
pub struct ModesArgs {
    /// Modes, comma-separated: host, bridge, container, none, dnat (bridge + published
    /// port), iptables, nftables (cluster IP at each --services count), iptables-N,
    /// nftables-N, clusterip (both), all.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    pub modes: Vec<String>,
    /// Service counts for the iptables / nftables modes (the target Service is the last).
    #[arg(long, value_delimiter = ',', default_value = "1,1000,10000")]
    pub services: Vec<u32>,
    /// Workloads, comma-separated: rr, crr, stream, udp-rr.
    #[arg(long, value_delimiter = ',', default_value = "rr,crr,stream,udp-rr")]
    pub workloads: Vec<String>,
    /// Seconds per run (after a 0.3 s warm-up).
    #[arg(long, default_value_t = 3.0, value_parser = super::common::parse_secs)]
    pub duration: f64,
    /// Repetitions; every repetition runs every workload over every mode.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub repeat: u16,
    /// Seconds of the traced rr run per mode that gives the per-hop times (0: skip it).
    #[arg(long, default_value_t = 1.0, value_parser = super::common::parse_secs_or_zero)]
    pub hops_secs: f64,
    /// CPUs of the client and the server threads, CLIENT,SERVER. The default puts both on
    /// CPU 0: the path's own cost, not the cost of waking a thread on another CPU (an IPI,
    /// ~90 us per transaction in this kind of VM, which drowns the differences between
    /// modes). `0,1` measures with that wake-up included.
    #[arg(long, default_value = "0,0", value_parser = parse_cpus)]
    pub cpus: crate::bench::loadgen::Cpus,
    /// Do not run anything: show a report saved with `-o json` (as a table, or as charts
    /// with --svg).
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// Write SVG charts into this directory (latency by mode, throughput by mode,
    /// connection setup vs Services).
    #[arg(long, value_name = "DIR")]
    pub svg: Option<PathBuf>,
}

fn parse_cpus(s: &str) -> Result<crate::bench::loadgen::Cpus, String> {
    let n = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
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
    Ok(crate::bench::loadgen::Cpus {
        client: cpu(c)?,
        server: cpu(v)?,
    })
}

/// A progress bar on stderr: redrawn in place on a terminal, a line per step otherwise.
struct Progress {
    start: Instant,
    tty: bool,
    last: Option<Instant>,
}

impl Progress {
    fn show(&mut self, done: usize, total: usize, what: &str) {
        let el = self.start.elapsed().as_secs_f64();
        let left = if done > 0 && done < total {
            let s = el / done as f64 * (total - done) as f64;
            format!(
                ", about {}:{:02} left",
                (s / 60.0) as u64,
                (s % 60.0) as u64
            )
        } else {
            String::new()
        };
        if self.tty {
            let width = 30;
            let fill = (done * width).checked_div(total).unwrap_or(width);
            eprint!(
                "\r\x1b[2K[{}{}] {done}/{total} {what}{left}",
                "#".repeat(fill),
                "-".repeat(width - fill)
            );
            if done == total {
                eprintln!();
            }
        } else if self.last.is_none_or(|t| t.elapsed().as_secs_f64() >= 2.0) || done == total {
            // Not a terminal (a log): a line at most every 2 s.
            eprintln!("inspector: bench [{done}/{total}] {what}{left}");
            self.last = Some(Instant::now());
        }
    }
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
    let mode_list = modes::parse_modes(&a.modes, &a.services).map_err(anyhow::Error::msg)?;
    let mut tests = a
        .workloads
        .iter()
        .map(|w| Test::parse(w))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    tests.dedup();
    if let Some(dir) = &a.svg {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--svg: cannot create {}", dir.display()))?;
    }
    let opts = modes::Options {
        modes: mode_list,
        tests,
        secs: a.duration,
        repeat: usize::from(a.repeat),
        hops_secs: a.hops_secs,
        cpus: a.cpus,
        stop: super::common::stop_flag()?,
    };
    let mut bar = Progress {
        start: Instant::now(),
        tty: std::io::stderr().is_terminal(),
        last: None,
    };
    let report = modes::run(&opts, |d, t, w| bar.show(d, t, w))?;
    show(&report, a, fmt)
}

fn show(report: &Report, a: &ModesArgs, fmt: Format) -> anyhow::Result<()> {
    if let Some(dir) = &a.svg {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--svg: cannot create {}", dir.display()))?;
        let files = write_charts(report, dir)?;
        eprintln!("inspector: charts: {}", files.join(", "));
    }
    match fmt {
        Format::Json => output::json_line(report)?,
        Format::Table | Format::Dot => print_table(report),
    }
    Ok(())
}

fn f1(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

fn spread_pct(e: &Entry) -> String {
    e.rate_spread.filter(|s| s.median > 0.0).map_or_else(
        || "-".into(),
        |s| format!("{:.1}%", (s.max - s.min) / s.median * 100.0),
    )
}

fn print_table(r: &Report) {
    println!(
        "{} modes x {} workloads, {} repetitions x {:.1} s, interleaved; client on CPU {}, server on CPU {} ({} CPUs), kernel {}",
        r.modes.len(),
        r.results
            .iter()
            .map(|e| e.workload)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        r.repeat,
        r.duration_s,
        r.pinned.client,
        r.pinned.server,
        r.cpus,
        r.kernel
    );
    println!("load generator: {}", r.generator);
    for s in &r.setup {
        println!("lab {}: {} (built in {:.0} ms)", s.lab, s.what, s.ms);
    }
    println!();
    let mut t = Table::new(&[
        "WORKLOAD",
        "MODE",
        "RATE",
        "UNIT",
        "SPREAD",
        "P50 US",
        "P99 US",
        "CONNECT P50",
        "CPU US/OP",
        "VS HOST",
    ]);
    let mut by_test: Vec<&Entry> = r.results.iter().collect();
    by_test.sort_by_key(|e| e.workload);
    for e in by_test {
        t.row(vec![
            e.workload.name().into(),
            e.mode.clone(),
            if e.workload == Test::Stream {
                format!("{:.2}", e.rate)
            } else {
                format!("{:.0}", e.rate)
            },
            e.unit.clone(),
            spread_pct(e),
            f1(e.p50_us),
            f1(e.p99_us),
            f1(e.connect_p50_us),
            format!("{:.1}/{}", e.cpu_us_per_op, e.op),
            e.rate_vs_host
                .map_or_else(|| "-".into(), |v| format!("{:+.0}%", (v - 1.0) * 100.0)),
        ]);
    }
    print!("{}", t.render());
    // Per-hop in-kernel time, one line per mode and direction.
    let mut seen = std::collections::HashSet::new();
    let mut printed = false;
    for e in &r.results {
        if e.hops.is_empty() || !seen.insert(e.mode.clone()) {
            continue;
        }
        if !printed {
            println!();
            println!(
                "per-hop in-kernel time (p50 us, traced tcp rr run; from each hop to the next):"
            );
            printed = true;
        }
        let mut pairs: Vec<&str> = Vec::new();
        for h in &e.hops {
            if !pairs.contains(&h.pair.as_str()) {
                pairs.push(&h.pair);
            }
        }
        for p in pairs {
            let hs: Vec<&modes::Hop> = e.hops.iter().filter(|h| h.pair == p).collect();
            let total: f64 = hs.iter().map(|h| h.p50_us).sum();
            let chain: Vec<String> = hs
                .iter()
                .map(|h| format!("{} -[{:.1}]-> {}", h.from, h.p50_us, h.to))
                .collect();
            println!(
                "  {:<14} {p}: {} (sum {total:.1})",
                e.mode,
                chain.join(" | ")
            );
        }
    }
    if !r.ordering.is_empty() {
        println!();
        for o in &r.ordering {
            println!(
                "{}: {} - {}",
                o.expectation,
                o.measured,
                match o.holds {
                    Some(true) => "as expected",
                    Some(false) => "NOT as expected",
                    None => "n/a",
                }
            );
        }
    }
}

/// Writes the charts; returns their paths.
fn write_charts(r: &Report, dir: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let mut files = Vec::new();
    let mut write = |name: &str, text: String| -> anyhow::Result<()> {
        let p = dir.join(name);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
        files.push(p.display().to_string());
        Ok(())
    };
    let lat_tests: Vec<Test> = [Test::Rr, Test::UdpRr, Test::Crr]
        .into_iter()
        .filter(|t| {
            r.results
                .iter()
                .any(|e| e.workload == *t && e.p50_us.is_some())
        })
        .collect();
    if !lat_tests.is_empty() {
        let vals: Vec<Vec<svg::Bar>> = r
            .modes
            .iter()
            .map(|m| {
                lat_tests
                    .iter()
                    .map(|t| {
                        let e = r
                            .results
                            .iter()
                            .find(|e| &e.mode == m && e.workload == *t)?;
                        Some((e.p50_us?, e.p99_us))
                    })
                    .collect()
            })
            .collect();
        let names: Vec<String> = lat_tests
            .iter()
            .map(|t| format!("{} p50 (whisker: p99)", t.name()))
            .collect();
        write(
            "latency-by-mode.svg",
            svg::bars(
                "Transaction latency by network mode",
                "microseconds",
                &r.modes,
                &names,
                &vals,
            ),
        )?;
    }
    if r.results.iter().any(|e| e.workload == Test::Stream) {
        let vals: Vec<Vec<svg::Bar>> = r
            .modes
            .iter()
            .map(|m| {
                vec![
                    r.results
                        .iter()
                        .find(|e| &e.mode == m && e.workload == Test::Stream)
                        .map(|e| (e.rate, e.rate_spread.map(|s| s.max))),
                ]
            })
            .collect();
        write(
            "throughput-by-mode.svg",
            svg::bars(
                "TCP stream throughput by network mode",
                "Gbit/s (whisker: best run)",
                &r.modes,
                &["stream".into()],
                &vals,
            ),
        )?;
    }
    let lines: Vec<svg::Line> = ["iptables", "nftables"]
        .iter()
        .filter_map(|k| {
            let mut pts: Vec<(f64, f64, f64, f64)> = r
                .results
                .iter()
                .filter(|e| e.workload == Test::Crr && e.kube_proxy.as_deref() == Some(*k))
                .filter_map(|e| {
                    let s = e.connect_p50_spread?;
                    Some((f64::from(e.services?), s.median, s.min, s.max))
                })
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            (!pts.is_empty()).then(|| svg::Line {
                name: format!("kube-proxy {k}"),
                points: pts,
            })
        })
        .collect();
    if !lines.is_empty() {
        write(
            "connect-vs-services.svg",
            svg::lines(
                "ClusterIP connection setup (connect p50) vs number of Services",
                "Services (target last)",
                "microseconds",
                &lines,
            ),
        )?;
    }
    Ok(files)
}
