//! Old spellings keep working for one release: each renamed flag, run for real under both
//! spellings, gives the same run (checked in its JSON records) and the old one a single
//! deprecation note on stderr.
mod support;

use std::process::Output;

use serde_json::Value;
use support::{json_lines, json_lines_all, run_inspector};

/// Runs `old` and `new`; both succeed, the old one says one note per renamed flag and the
/// new one none. Returns both outputs.
fn both(old: &[&str], new: &[&str], notes: usize) -> (Output, Output) {
    let (o, n) = (run_inspector(old, &[]), run_inspector(new, &[]));
    let (oe, ne) = (
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&n.stderr),
    );
    assert!(o.status.success(), "{old:?}: {oe}");
    assert!(n.status.success(), "{new:?}: {ne}");
    let said = |e: &str| {
        e.lines()
            .filter(|l| l.starts_with("inspector: note:") && l.contains("is now spelled"))
            .count()
    };
    assert_eq!(said(&oe), notes, "{old:?}: {oe}");
    assert_eq!(said(&ne), 0, "{new:?}: {ne}");
    (o, n)
}

/// The `type`s of the JSON lines, in order.
fn kinds(out: &Output) -> Vec<String> {
    json_lines_all(&out.stdout)
        .iter()
        .map(|v| v["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn lab_spec_kube_mode_under_both_spellings() {
    let (o, n) = both(
        &["lab", "spec", "--kube", "nftables"],
        &["lab", "spec", "--kube", "--kube-proxy", "nftables"],
        1,
    );
    assert_eq!(o.stdout, n.stdout);
    let spec = String::from_utf8_lossy(&n.stdout);
    assert!(spec.contains("kube_proxy = \"nftables\""), "{spec}");
}

#[test]
fn bench_pipeline_rounds_and_secs_under_both_spellings() {
    let args = ["-o", "json", "bench", "pipeline", "--events", "20000"];
    let old: Vec<&str> = args
        .iter()
        .copied()
        .chain(["--rounds", "2", "--secs", "0"])
        .collect();
    let new: Vec<&str> = args
        .iter()
        .copied()
        .chain(["--repeat", "2", "--run-secs", "0"])
        .collect();
    let (o, n) = both(&old, &new, 2);
    for out in [&o, &n] {
        // Two throughput repetitions, no paced run.
        assert_eq!(kinds(out), ["pipeline_throughput"], "{out:?}");
        let t = &json_lines(&out.stdout, "pipeline_throughput")[0];
        assert_eq!(t["runs"].as_array().map(Vec::len), Some(2), "{t}");
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn bench_services_count_and_rounds_under_both_spellings() {
    let args = ["-o", "json", "bench", "services", "--endpoints", "2"];
    let old: Vec<&str> = args
        .iter()
        .copied()
        .chain(["--count", "20", "--rounds", "2"])
        .collect();
    let new: Vec<&str> = args
        .iter()
        .copied()
        .chain(["--services", "20", "--repeat", "2"])
        .collect();
    let (o, n) = both(&old, &new, 2);
    for out in [&o, &n] {
        let setup = &json_lines(&out.stdout, "services_setup")[0];
        assert_eq!(setup["services"], 20, "{setup}");
        assert_eq!(json_lines(&out.stdout, "services_sample").len(), 2);
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn bench_scale_count_and_rounds_under_both_spellings() {
    let args = ["-o", "json", "bench", "scale"];
    let old: Vec<&str> = args
        .iter()
        .copied()
        .chain(["--count", "3", "--rounds", "1"])
        .collect();
    let new: Vec<&str> = args
        .iter()
        .copied()
        .chain(["--workloads", "3", "--repeat", "1"])
        .collect();
    let (o, n) = both(&old, &new, 2);
    for out in [&o, &n] {
        let samples = json_lines(&out.stdout, "scale_sample");
        assert_eq!(samples.len(), 1, "{samples:?}");
        let steps = json_lines(&out.stdout, "scale_summary");
        assert!(!steps.is_empty());
        assert!(steps.iter().all(|s| s["workloads"] == 3), "{steps:?}");
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn bench_overhead_rounds_secs_and_workload_names_under_both_spellings() {
    let args = ["-o", "json", "bench", "overhead"];
    let old: Vec<&str> = args
        .iter()
        .copied()
        .chain(["--rounds", "1", "--secs", "0.3", "--workloads", "bulk"])
        .collect();
    let new: Vec<&str> = args
        .iter()
        .copied()
        .chain([
            "--repeat",
            "1",
            "--run-secs",
            "0.3",
            "--workloads",
            "stream",
        ])
        .collect();
    // `bulk` is an old name too: its note is of another kind.
    let (o, n) = both(&old, &new, 2);
    let oe = String::from_utf8_lossy(&o.stderr);
    assert!(
        oe.contains("note: workload 'bulk' is now called 'stream'"),
        "{oe}"
    );
    for out in [&o, &n] {
        let sums: Vec<Value> = json_lines(&out.stdout, "overhead_summary");
        // none, empty-tc, empty-global, inspector (global hooks), inspector-tcx, tcpdump:
        // one run each, of the stream workload.
        assert_eq!(sums.len(), 6, "{sums:?}");
        for s in &sums {
            assert_eq!(s["workload"], "stream", "{s}");
            assert_eq!(s["runs"], 1, "{s}");
        }
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn bench_modes_duration_under_both_spellings() {
    let args = [
        "-o",
        "json",
        "bench",
        "--modes",
        "host",
        "--workloads",
        "udp-rr",
        "--repeat",
        "1",
        "--hops-secs",
        "0",
    ];
    let old: Vec<&str> = args.iter().copied().chain(["--duration", "0.3"]).collect();
    let new: Vec<&str> = args.iter().copied().chain(["--run-secs", "0.3"]).collect();
    let (o, n) = both(&old, &new, 1);
    for out in [&o, &n] {
        let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
        support::schema::check(&report);
        assert_eq!(report["run_secs"], 0.3, "{report}");
        let results = report["results"].as_array().unwrap();
        assert_eq!(results.len(), 1, "{results:?}");
        assert_eq!(results[0]["workload"], "udp-rr");
    }
}
