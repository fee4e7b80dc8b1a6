//! The published JSON Schemas (docs/schema/): one per record kind the renderers write, and
//! records of the kinds no end-to-end test produces (the benchmarks' own) rendered through
//! the same renderers and checked against theirs. Unprivileged.
mod support;

use inspector::{
    bench::{
        LoadKind,
        overhead::{self, Observer, OverheadSample, Summary},
        pipeline,
        scale::{self, ScaleSample},
        services::{self, ParseSample, ServicesSetup},
    },
    output::{self, Format, Printer},
};

/// Renders with `f` to JSON lines and checks each against its schema; returns the kinds.
fn rendered(f: impl FnOnce(&mut Printer<Vec<u8>>) -> std::io::Result<()>) -> Vec<String> {
    let mut p = Printer::new(Format::Json, Vec::new());
    f(&mut p).expect("render");
    let out = p.into_inner();
    let mut kinds = Vec::new();
    for l in String::from_utf8_lossy(&out).lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect("JSON");
        support::schema::check(&v);
        kinds.push(v["type"].as_str().unwrap_or_default().to_owned());
    }
    kinds
}

#[test]
fn every_record_kind_has_a_schema_and_every_schema_a_kind() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schema");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("docs/schema")
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".json")
                .map(String::from)
        })
        .filter(|n| n != "defs")
        .collect();
    files.sort();
    let mut kinds: Vec<String> = output::KINDS.iter().map(|k| (*k).to_owned()).collect();
    kinds.sort();
    assert_eq!(files, kinds, "docs/schema/*.json against output::KINDS");
}

/// A schema that cannot fail is no check: a record missing a field, with a field of the
/// wrong type, or with a field no schema names is refused.
#[test]
fn schemas_refuse_what_they_do_not_describe() {
    let good = serde_json::json!({"type": "snapshot", "seq": 1, "time_unix_ns": 5,
        "final": false, "records": 0});
    support::schema::check(&good);
    for bad in [
        serde_json::json!({"type": "snapshot", "seq": 1, "final": false, "records": 0}),
        serde_json::json!({"type": "snapshot", "seq": "1", "time_unix_ns": 5, "final": false,
            "records": 0}),
        serde_json::json!({"type": "snapshot", "seq": 1, "time_unix_ns": 5, "final": false,
            "records": 0, "extra": true}),
        serde_json::json!({"type": "flow", "src": "not an address"}),
    ] {
        let r = std::panic::catch_unwind(|| support::schema::check(&bad));
        assert!(r.is_err(), "accepted: {bad}");
    }
}

#[test]
fn benchmark_records_match_their_schemas() {
    let sample = OverheadSample {
        repetition: 0,
        workload: LoadKind::Rr,
        observer: Observer::Inspector,
        value: 1000.0,
        unit: LoadKind::Rr.unit(),
        prog_ns_per_run: Some(150.0),
        prog_runs: Some(10),
    };
    let summary: Vec<Summary> = [
        (Observer::None, 1000.0),
        (Observer::Inspector, 990.0),
        (Observer::InspectorHops, 980.0),
        (Observer::InspectorTcx, 985.0),
        (Observer::EmptyGlobal, 996.0),
        (Observer::EmptyTc, 995.0),
        (Observer::Tcpdump, 900.0),
    ]
    .iter()
    .flat_map(|&(o, v)| {
        [LoadKind::Rr, LoadKind::UdpFlood].map(|w| Summary {
            workload: w,
            observer: o,
            unit: w.unit(),
            runs: 1,
            median: v,
            min: v,
            max: v,
            ratio: v / 1000.0,
            overhead_pct: (1.0 - v / 1000.0) * 100.0,
            added_ns_per_hop: Some(10.0),
            // The programs' own time where there are programs (the check above empty too).
            prog_ns_per_run: (o != Observer::None && o != Observer::Tcpdump).then_some(1e3 - v),
        })
    })
    .collect();
    let per_hop = overhead::per_hop(&summary);
    let targets = overhead::targets(&summary);
    assert!(!per_hop.is_empty() && !targets.is_empty());
    let kinds = rendered(|p| {
        p.record("overhead_sample", &sample)?;
        output::bench::overhead(p, &summary, &per_hop, &targets)
    });
    for k in [
        "overhead_sample",
        "overhead_summary",
        "overhead_per_hop",
        "overhead_target",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
    }
    let scale = ScaleSample {
        repetition: 0,
        lab_ms: 1.0,
        workloads: 3,
        identity_ms: 1.0,
        resolve_ms: 0.1,
        resolved: 3,
        scan_ms: 2.0,
        load_ms: 3.0,
        attach_ms: 4.0,
        attach_fast_ms: 1.0,
        attach_global_ms: 0.5,
        attached: 7,
    };
    let summary = scale::summarize(std::slice::from_ref(&scale));
    rendered(|p| output::bench::scale(p, &[scale], &summary));
    let setup = ServicesSetup {
        services: 10,
        endpoints_per_service: 3,
        iptables_restore_ms: 1.0,
        nft_load_ms: 1.0,
        iptables_save_ms: 1.0,
        iptables_save_bytes: 100,
        iptables_rules: 40,
        nft_json_ms: 1.0,
        nft_json_bytes: 200,
    };
    let parse = ParseSample {
        repetition: 0,
        iptables_ms: 1.0,
        nft_ms: 2.0,
        iptables_end_to_end_ms: 3.0,
        nft_end_to_end_ms: 4.0,
        stamp_ms: 0.1,
        iptables_services: 10,
        nft_services: 10,
    };
    let summary = services::summarize(&setup, std::slice::from_ref(&parse));
    rendered(|p| output::bench::services(p, &setup, &[parse], &summary));
    let runs = vec![pipeline::throughput(20_000, 3, 16, 1_000_000, 0)];
    let t = pipeline::summarize(runs).expect("one repetition");
    let paced = pipeline::paced(
        20_000,
        0.05,
        3,
        0,
        0,
        &std::sync::atomic::AtomicBool::new(false),
    );
    let kinds = rendered(|p| output::bench::pipeline(p, &t, Some(&paced)));
    assert_eq!(kinds, ["pipeline_throughput", "pipeline_paced"]);
}
