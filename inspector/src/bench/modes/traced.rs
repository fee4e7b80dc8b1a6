//! The traced run of one mode: a session timing every packet per hop in the kernel,
//! attached to the mode's namespaces, while TCP rr runs; then each direction's hops in path
//! order. Kept apart from the measured runs, so tracing never touches their numbers.
use std::sync::atomic::AtomicBool;

use super::{report::HopTime, target::Reach};
use crate::{
    bench::{
        BenchError, LoadKind,
        loadgen::{self, Cpus},
    },
    flows::{
        filter::{Filter, ProtoFilter},
        hops::{LatencyRow, path_order},
    },
    session::{Measure, Options, Sampling, Session},
};

/// The hops of `reach`'s path during `secs` of TCP rr.
pub(super) fn hops(
    r: &Reach,
    secs: f64,
    cpus: Cpus,
    stop: &AtomicBool,
) -> Result<Vec<HopTime>, BenchError> {
    let (mut s, _) = Session::start(&Options {
        // Only the benchmark's own TCP runs in these namespaces (no port filter: the
        // published-port mode's client side uses another port than the server's).
        filter: Filter {
            proto: Some(ProtoFilter::Ip { proto: 6, v: None }),
            ..Filter::default()
        },
        netns: r.trace_ns.clone(),
        lo: r.lo,
        services: false,
        drops: false,
        identity: r.identity.clone(),
        // Every packet: this run is not measured, and full counts keep a connection's first
        // packets (routed differently, see docs) from passing for the main path.
        measure: Measure::HopTiming {
            sample: Sampling::Shift(0),
            stack: false,
        },
        ..Options::default()
    })?;
    loadgen::run(LoadKind::Rr, &r.ends, secs, cpus, stop)
        .map_err(BenchError::io("the traced rr run"))?;
    let rows = s.latency_rows()?.unwrap_or_default();
    Ok(main_paths(&rows))
}

/// Each pair's hops in path order (each hop's `to` is the next one's `from`), busiest pair
/// first; hops seen by fewer than 1% of the pair's packets (stray stitches) left out.
fn main_paths(rows: &[LatencyRow]) -> Vec<HopTime> {
    let most = |pair: &str, rows: &[LatencyRow]| {
        rows.iter()
            .filter(|r| r.pair == pair)
            .map(|r| r.packets)
            .max()
            .unwrap_or(0)
    };
    let kept: Vec<LatencyRow> = rows
        .iter()
        .filter(|r| r.packets * 100 >= most(&r.pair, rows))
        .cloned()
        .collect();
    let mut ordered = kept.clone();
    path_order(&mut ordered);
    // Pairs by their busiest hop, most first (stable: path order within a pair stays).
    ordered.sort_by_key(|r| std::cmp::Reverse(most(&r.pair, &kept)));
    #[expect(clippy::cast_precision_loss, reason = "microseconds")]
    let us = |ns: u64| ns as f64 / 1e3;
    ordered
        .into_iter()
        .map(|r| HopTime {
            p50_us: us(r.p50_ns),
            p99_us: us(r.p99_ns),
            pair: r.pair,
            from: r.from,
            to: r.to,
            packets: r.packets,
        })
        .collect()
}

#[cfg(test)]
#[allow(
    clippy::float_cmp,
    reason = "the expected values are exact by construction"
)]
mod tests {
    use super::*;

    #[test]
    fn hops_are_put_in_path_order_and_strays_dropped() {
        let h = |pair: &str, from: &str, to: &str, packets: u64| LatencyRow {
            pair: pair.into(),
            from: from.into(),
            to: to.into(),
            packets,
            p50_ns: 1000,
            p90_ns: 1500,
            p99_ns: 2000,
            max_ns: 3000,
            mean_ns: 1100,
        };
        let out = main_paths(&[
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
        assert_eq!(out[0].p50_us, 1.0);
    }
}
