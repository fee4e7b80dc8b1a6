//! The other benchmarks' reports: `bench overhead` (samples, summaries, targets, per-hop
//! timing's cost), `bench scale`, `bench services`, `bench pipeline`.
use std::io::Write;

use super::{Printer, Table};
use crate::bench::{
    agent::AgentPhase,
    capture::{CaptureSummary, Writer},
    overhead::{Observer, PerHopCheck, Summary, TargetCheck},
    pipeline::{self, Paced, ThroughputSummary},
    scale::{ScaleSample, StepSummary},
    services::{ParseSample, ParseSummary, ServicesSetup},
};

/// Numbers as "1, 2, 3".
fn list(v: &[u64]) -> String {
    v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// `bench overhead`: summaries, then (table) the per-hop and target verdicts.
pub fn overhead<W: Write>(
    p: &mut Printer<W>,
    summary: &[Summary],
    per_hop: &[PerHopCheck],
    targets: &[TargetCheck],
) -> std::io::Result<()> {
    if p.json() {
        for s in summary {
            p.record("overhead_summary", s)?;
        }
        for c in per_hop {
            p.record("overhead_per_hop", c)?;
        }
        for t in targets {
            p.record("overhead_target", t)?;
        }
        return Ok(());
    }
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
    let opt = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.0}"));
    for s in summary {
        t.row(vec![
            s.workload.name().into(),
            s.observer.name().into(),
            format!("{:.2}", s.median),
            format!("{:.2}", s.min),
            format!("{:.2}", s.max),
            s.unit.into(),
            format!("{:.4}", s.ratio),
            format!("{:+.2}%", s.overhead_pct),
            opt(s.added_ns_per_hop.filter(|_| s.observer != Observer::None)),
            opt(s.prog_ns_per_run),
        ]);
    }
    p.text(&t.render())?;
    if !per_hop.is_empty() {
        p.line("")?;
    }
    for c in per_hop {
        let how = match c.prog_ns {
            Some((before, after)) => format!(
                "tc program run {before:.0} -> {after:.0} ns: {:+.0} ns per hop (bpf_stats)",
                after - before
            ),
            None => format!(
                "{:+.0} ns per hop from throughput (add --bpf-stats for the programs' own time)",
                c.added_ns
            ),
        };
        let what = if c.observer == Observer::InspectorHops {
            "per-hop timing in the kernel"
        } else {
            "per-hop timing from events"
        };
        p.line(&format!(
            "{:<9} {what} ({}): {how}; target <= {:.0} ns: {} (throughput: {:+.0} ns per packet per hop over counting alone, {:.0} ns against no observer)",
            c.workload.name(),
            c.observer.name(),
            c.target_ns,
            met(c.met),
            c.added_ns,
            c.timing_ns,
        ))?;
    }
    p.line("")?;
    for c in targets {
        let prog = c.prog_ns_above_empty.map_or_else(String::new, |a| {
            format!(
                "  program {a:+.0} ns per run above an empty one (target <= {}: {})",
                crate::bench::overhead::ABOVE_EMPTY_TARGET_NS,
                met(c.prog_met == Some(true)),
            )
        });
        p.line(&format!(
            "{:<9} inspector {:+.2}% (target <= {}%: {})  tcpdump {:+.2}%  inspector/tcpdump overhead {:.2} (target <= {}: {}){prog}",
            c.workload.name(),
            c.inspector_pct,
            c.target_pct,
            met(c.met),
            c.tcpdump_pct,
            c.share_of_tcpdump,
            crate::bench::overhead::SHARE_OF_TCPDUMP,
            met(c.share_met),
        ))?;
    }
    Ok(())
}

/// `bench scale`: every repetition (JSON) and each step's median and spread.
pub fn scale<W: Write>(
    p: &mut Printer<W>,
    samples: &[ScaleSample],
    summary: &[StepSummary],
) -> std::io::Result<()> {
    if p.json() {
        for s in samples {
            p.record("scale_sample", s)?;
        }
        for s in summary {
            p.record("scale_summary", s)?;
        }
        return Ok(());
    }
    let mut t = Table::new(&["STEP", "MEDIAN MS", "MIN", "MAX", "TARGET"]);
    for s in summary {
        t.row(vec![
            s.what.into(),
            format!("{:.1}", s.median_ms),
            format!("{:.1}", s.min_ms),
            format!("{:.1}", s.max_ms),
            s.target.into(),
        ]);
    }
    let last = samples.last();
    p.line(&format!(
        "{} workloads, {} repetitions; {} of {} ends resolved, {} interfaces attached",
        last.map_or(0, |s| s.workloads),
        samples.len(),
        last.map_or(0, |s| s.resolved),
        last.map_or(0, |s| s.workloads),
        last.map_or(0, |s| s.attached)
    ))?;
    p.text(&t.render())
}

/// `bench services`: the setup, every repetition (JSON), each format's parse time.
pub fn services<W: Write>(
    p: &mut Printer<W>,
    setup: &ServicesSetup,
    samples: &[ParseSample],
    summary: &[ParseSummary],
) -> std::io::Result<()> {
    if p.json() {
        p.record("services_setup", setup)?;
        for s in samples {
            p.record("services_sample", s)?;
        }
        for s in summary {
            p.record("services_summary", s)?;
        }
        return Ok(());
    }
    p.line(&format!(
        "{} Services x {} endpoints, {} repetitions; programmed in {:.0} ms (iptables-restore, {} rules) and {:.0} ms (nft -f); dumped in {:.0} ms (iptables-save) and {:.0} ms (nft -j)",
        setup.services,
        setup.endpoints_per_service,
        samples.len(),
        setup.iptables_restore_ms,
        setup.iptables_rules,
        setup.nft_load_ms,
        setup.iptables_save_ms,
        setup.nft_json_ms
    ))?;
    let mut t = Table::new(&["STEP", "MEDIAN MS", "MIN", "MAX", "INPUT MB", "TARGET"]);
    for s in summary {
        #[expect(clippy::cast_precision_loss, reason = "sizes are small")]
        let mb = s.bytes as f64 / 1e6;
        t.row(vec![
            s.what.into(),
            format!("{:.1}", s.median_ms),
            format!("{:.1}", s.min_ms),
            format!("{:.1}", s.max_ms),
            format!("{mb:.1}"),
            match (s.target_ms, s.met) {
                (Some(t), Some(m)) => format!("<{t:.0} ms: {}", met(m)),
                _ => "-".into(),
            },
        ]);
    }
    p.text(&t.render())
}

/// `bench agent`: one row per phase, our measure next to a user's.
pub fn agent<W: Write>(p: &mut Printer<W>, phases: &[AgentPhase]) -> std::io::Result<()> {
    if p.json() {
        for ph in phases {
            p.record("agent_phase", ph)?;
        }
        return Ok(());
    }
    let mut t = Table::new(&[
        "PHASE",
        "FLOW RECORDS",
        "SERIES",
        "CPU % (ps)",
        "RSS MiB (ps)",
        "ROUND MS",
        "SCRAPE MS p50/max (curl)",
        "FLOOD PPS",
    ]);
    for ph in phases {
        t.row(vec![
            ph.phase.into(),
            ph.flow_records.to_string(),
            ph.series.to_string(),
            format!("{:.2} ({:.1})", ph.cpu_percent, ph.ps_cpu_percent),
            format!("{:.1} ({:.1})", ph.rss_mib, ph.ps_rss_mib),
            format!("{:.1}", ph.round_ms),
            format!(
                "{:.1}/{:.1} ({:.1})",
                ph.scrape_p50_ms, ph.scrape_max_ms, ph.curl_p50_ms
            ),
            ph.flood_pps
                .map_or_else(|| "-".into(), |r| format!("{r:.0}")),
        ]);
    }
    p.text(&t.render())?;
    p.line(
        "CPU %: the agent's CPU time over the window (ps: its average since it started). \
         Targets: < 1% of a core at rest, < 128 MiB RSS with 100 workloads and 100,000 flow \
         records, a scrape < 100 ms.",
    )
}

/// `bench pipeline`: the throughput repetitions and the paced run.
pub fn pipeline<W: Write>(
    p: &mut Printer<W>,
    t: &ThroughputSummary,
    paced: Option<&Paced>,
) -> std::io::Result<()> {
    if p.json() {
        p.record("pipeline_throughput", t)?;
        if let Some(x) = paced {
            p.record(
                "pipeline_paced",
                &PacedLine {
                    met: x.met(),
                    result: x,
                },
            )?;
        }
        return Ok(());
    }
    let r = &t.median_run;
    p.line(&format!(
        "throughput: {} repetitions of {} events, {} endpoint pairs, on one core: median {:.2} M events/s (min {:.2}, max {:.2}; {:.1} ns per event; target >= 10 M/s: {}); median repetition: {} packets, {} closed early for room, packets per hop [{}], p50 per hop [{}] ns (produced: {} ns)",
        t.runs.len(),
        r.events,
        r.pairs,
        t.median_events_per_sec / 1e6,
        t.min_events_per_sec / 1e6,
        t.max_events_per_sec / 1e6,
        1e9 / t.median_events_per_sec,
        met(t.met),
        r.packets,
        r.closed_early,
        list(&r.counted_per_hop),
        list(&r.p50_ns),
        pipeline::HOP_NS
    ))?;
    if let Some(x) = paced {
        p.line(&format!(
            "paced: {} events/s for {:.1} s: produced {}, consumed {}, lost {} ({}); most waiting at one wake-up {} ({:.1}% of the ring); consumer CPU {:.1}%; packets per hop [{}]",
            x.rate,
            x.seconds,
            x.produced,
            x.consumed,
            x.lost,
            if x.met() { "zero loss: met" } else { "MISSED" },
            x.max_backlog,
            x.max_backlog_pct,
            x.consumer_cpu_pct,
            list(&x.counted_per_hop)
        ))?;
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct PacedLine<'a> {
    met: bool,
    result: &'a Paced,
}

/// `bench capture`: per writer, the rate kept, what it wrote, and what it lost.
pub fn capture<W: Write>(p: &mut Printer<W>, summary: &[CaptureSummary]) -> std::io::Result<()> {
    if p.json() {
        for s in summary {
            p.record("capture_summary", s)?;
        }
        return Ok(());
    }
    let mut t = Table::new(&[
        "WRITER",
        "RATE PKT/S",
        "MIN",
        "MAX",
        "RATIO",
        "EVENTS/S",
        "MB/S",
        "LOST",
        "LOST %",
    ]);
    for s in summary {
        let none = s.writer == Writer::None;
        let dash = |v: String| if none { "-".to_owned() } else { v };
        t.row(vec![
            s.writer.name().into(),
            format!("{:.0}", s.rate),
            format!("{:.0}", s.rate_min),
            format!("{:.0}", s.rate_max),
            format!("{:.4}", s.ratio),
            dash(format!("{:.0}", s.events_per_sec)),
            dash(format!("{:.1}", s.bytes_per_sec / 1e6)),
            dash(s.lost.to_string()),
            dash(format!("{:.3}%", s.lost_share * 100.0)),
        ]);
    }
    p.text(&t.render())
}
