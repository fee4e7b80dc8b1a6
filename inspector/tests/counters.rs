//! The inspector's per-interface packet and byte totals equal the kernel's own interface
//! counters over the same window, exactly, on a real bridge topology with ICMP, TCP and UDP.
mod support;

use std::time::Duration;

use support::{BridgeLab, Inspector};

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn totals_equal_kernel_interface_counters() {
    support::totals::check_totals("ct", &[]);
}

/// The same with legacy tc filters (`--attach tc`, what kernels before 6.6 get).
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn totals_equal_kernel_interface_counters_with_legacy_tc() {
    support::totals::check_totals("cg", &["--attach", "tc"]);
}

/// The same with the global hooks (`--attach global`: the stack's tracepoints for the whole
/// node, devices selected by map, no per-interface attach).
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn totals_equal_kernel_interface_counters_with_global_hooks() {
    support::totals::check_totals("cgl", &["--attach", "global"]);
}

/// Refreshing `flows -o json` marks each snapshot: a `snapshot` line (sequence, wall-clock
/// time, record count, final or not) before the records it counts; the one printed at
/// Ctrl-C is final.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn flows_refresh_marks_each_snapshot() {
    let lab = BridgeLab::new("sn");
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let insp = Inspector::start(&[
        "flows",
        "-o",
        "json",
        "-q",
        "--interval",
        "0.2",
        "--netns",
        &lab.a.name,
    ]);
    lab.a
        .exec(&["ping", "-c", "2", "-i", "0.2", "-W", "2", "198.18.0.3"]);
    // At least three refreshes, then Ctrl-C prints the final one.
    insp.wait_json(Duration::from_secs(20), |recs| {
        recs.iter().filter(|r| r["type"] == "snapshot").count() >= 3
    });
    let out = insp.interrupt_ok();
    let ended = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let lines = support::json_lines_all(&out.stdout);
    let marks: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i]["type"] == "snapshot")
        .collect();
    assert!(marks.len() >= 4, "{lines:#?}");
    assert_eq!(marks[0], 0, "a snapshot line comes first");
    let mut last_time = started;
    for (n, &i) in marks.iter().enumerate() {
        let m = &lines[i];
        assert_eq!(m["seq"].as_u64(), Some(n as u64 + 1), "{m}");
        let t = m["time_unix_ns"].as_u64().unwrap();
        assert!(t >= last_time && t <= ended, "{m}: {last_time}..{ended}");
        last_time = t;
        let end = marks.get(n + 1).copied().unwrap_or(lines.len());
        // The records it counts, up to the next mark (the final one is followed by stats).
        let flows = lines[i + 1..end]
            .iter()
            .filter(|r| r["type"] == "flow")
            .count();
        assert_eq!(m["records"].as_u64(), Some(flows as u64), "{m}");
        assert_eq!(m["final"], n + 1 == marks.len(), "{m}");
    }
    // The pings were counted: the last snapshot has a's echo requests.
    let last = &lines[*marks.last().unwrap()..];
    assert!(
        last.iter()
            .any(|r| r["type"] == "flow" && r["icmp_type"] == 8 && r["packets"] == 2),
        "{last:#?}"
    );
}
