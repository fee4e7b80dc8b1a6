//! The `bench` report (modes side by side): one JSON document (`type: "bench"`), or a
//! table with the per-hop times and the expected orderings as measured.
use std::{fmt::Write as _, io::Write};

use super::{Printer, Table};
use crate::bench::{
    LoadKind,
    modes::{Entry, HopTime, Report, Runtime},
};

pub fn render<W: Write>(p: &mut Printer<W>, r: &Report) -> std::io::Result<()> {
    if p.json() {
        return p.record("bench", r);
    }
    p.text(&table(r))
}

fn f1(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

fn spread_pct(e: &Entry) -> String {
    e.rate_spread
        .and_then(|s| s.range_pct())
        .map_or_else(|| "-".into(), |p| format!("{p:.1}%"))
}

/// The report for people.
#[must_use]
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} modes x {} workloads, {} repetitions x {:.1} s, interleaved; client on CPU {}, server on CPU {} ({} CPUs), kernel {}",
        r.modes.len(),
        r.results
            .iter()
            .map(|e| e.workload)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        r.repeat,
        r.run_secs,
        r.pinned.client,
        r.pinned.server,
        r.cpus,
        r.kernel
    );
    let _ = writeln!(out, "load generator: {}", r.generator);
    for s in &r.setup {
        let _ = writeln!(out, "lab {}: {} (built in {:.0} ms)", s.lab, s.what, s.ms);
    }
    if let Some(e) = r.results.iter().find(|e| e.runtime == Runtime::Between) {
        let _ = writeln!(out, "between: {}", e.what);
    }
    out.push('\n');
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
            if e.workload == LoadKind::Stream {
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
    out.push_str(&t.render());
    // Per-hop in-kernel time, one line per mode and direction.
    let mut seen = std::collections::HashSet::new();
    let mut printed = false;
    for e in &r.results {
        if e.hops.is_empty() || !seen.insert(e.mode.clone()) {
            continue;
        }
        if !printed {
            out.push('\n');
            let _ = writeln!(
                out,
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
            let hs: Vec<&HopTime> = e.hops.iter().filter(|h| h.pair == p).collect();
            let total: f64 = hs.iter().map(|h| h.p50_us).sum();
            let chain: Vec<String> = hs
                .iter()
                .map(|h| format!("{} -[{:.1}]-> {}", h.from, h.p50_us, h.to))
                .collect();
            let _ = writeln!(
                out,
                "  {:<18} {p}: {} (sum {total:.1})",
                e.mode,
                chain.join(" | ")
            );
        }
    }
    vs_lab(&mut out, r);
    if !r.ordering.is_empty() {
        out.push('\n');
        for o in &r.ordering {
            let _ = writeln!(
                out,
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
    out
}

/// Each real mode beside its lab twin: values, ratio, and whether the difference is beyond
/// the spread over repetitions.
fn vs_lab(out: &mut String, r: &Report) {
    if r.vs_lab.is_empty() {
        return;
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "lab vs real (ratio real/lab; BEYOND SPREAD: the ranges over repetitions do not overlap):"
    );
    let mut t = Table::new(&[
        "WORKLOAD",
        "REAL",
        "LAB",
        "REAL RATE",
        "LAB RATE",
        "RATIO",
        "REAL P50",
        "LAB P50",
        "RATIO",
        "DIFFERS",
    ]);
    let ratio = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.2}"));
    let rate = |e: LoadKind, v: f64| {
        if e == LoadKind::Stream {
            format!("{v:.2}")
        } else {
            format!("{v:.0}")
        }
    };
    for v in &r.vs_lab {
        t.row(vec![
            v.workload.name().into(),
            v.real.clone(),
            v.lab.clone(),
            rate(v.workload, v.real_rate),
            rate(v.workload, v.lab_rate),
            ratio(v.rate_ratio),
            f1(v.real_p50_us),
            f1(v.lab_p50_us),
            ratio(v.p50_ratio),
            if v.beyond_spread {
                "BEYOND SPREAD"
            } else {
                "within spread"
            }
            .into(),
        ]);
    }
    out.push_str(&t.render());
}
