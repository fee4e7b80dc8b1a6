//! `--kernel-log LEVEL`: the kernel programs' own aya-log statements on stderr, checked
//! against the kernel's counters and the namespaces' inodes; and, off (the default), the
//! observing programs carry no logging at all (bpftool's view of what is loaded).
mod support;

use std::time::Duration;

use serde_json::Value;
use support::{Inspector, Netns, bad_frames, held_objects, inject, json_lines, unique};

/// Two namespaces joined by a veth (vx in x, 198.18.251.1; vy in y, 198.18.251.2): fresh
/// namespaces, so both ends get ifindex 2 and the programs must read each packet's namespace
/// from its device.
fn pair() -> (Netns, Netns) {
    let x = Netns::new(&unique("kx"));
    let y = Netns::new(&unique("ky"));
    x.exec(&[
        "ip", "link", "add", "vx", "type", "veth", "peer", "name", "vy", "netns", &y.name,
    ]);
    x.exec(&["ip", "addr", "add", "198.18.251.1/30", "dev", "vx"]);
    y.exec(&["ip", "addr", "add", "198.18.251.2/30", "dev", "vy"]);
    x.exec(&["ip", "link", "set", "vx", "up"]);
    y.exec(&["ip", "link", "set", "vy", "up"]);
    (x, y)
}

fn ifindex(ns: &Netns, dev: &str) -> u64 {
    let v: Value = serde_json::from_str(&ns.exec(&["ip", "-j", "link", "show", dev])).unwrap();
    v[0]["ifindex"].as_u64().unwrap()
}

fn kernel_lines(insp: &Inspector, what: &str) -> Vec<String> {
    insp.stderr_text()
        .lines()
        .filter(|l| l.starts_with("inspector: kernel:") && l.contains(what))
        .map(str::to_owned)
        .collect()
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn kernel_log_says_anomalies_namespace_decisions_and_sampling() {
    let (x, y) = pair();
    let (ix, iy) = (ifindex(&x, "vx"), ifindex(&y, "vy"));
    assert_eq!(ix, iy, "fresh namespaces give both ends the same ifindex");
    let insp = Inspector::start(&[
        "flows",
        "-o",
        "json",
        "--latency",
        "--duration",
        "300",
        "--netns",
        &x.name,
        "--netns",
        &y.name,
        "--kernel-log",
        "trace",
    ]);
    inject(&x, "vx", bad_frames());
    x.exec(&["ping", "-c", "2", "-i", "0.2", "-W", "1", "198.18.251.2"]);
    support::wait_quiet(&[&x, &y], Duration::from_millis(300));
    // Each broken frame is said twice (leaving vx, arriving on vy): 12 lines, as many as the
    // kernel's own anomaly counters count.
    assert!(
        support::eventually(Duration::from_secs(10), || kernel_lines(
            &insp,
            "parse anomaly"
        )
        .len()
            >= 12),
        "{}",
        insp.stderr_text()
    );
    let out = insp.interrupt_ok();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let said = |what: &str| -> Vec<&str> {
        stderr
            .lines()
            .filter(|l| l.starts_with("inspector: kernel:") && l.contains(what))
            .collect()
    };
    let stats = &json_lines(&out.stdout, "stats")[0];
    let counted = stats["truncated"].as_u64().unwrap() + stats["malformed"].as_u64().unwrap();
    let anomalies = said("parse anomaly");
    assert_eq!(anomalies.len() as u64, counted, "{stderr}");
    assert_eq!(anomalies.len(), 12, "{stderr}");
    for (dir, ifx) in [("egress", ix), ("ingress", iy)] {
        let n = anomalies
            .iter()
            .filter(|l| l.contains(&format!("on ifindex {ifx} ({dir})")))
            .count();
        assert_eq!(n, 6, "{dir}: {anomalies:#?}");
    }
    assert!(
        anomalies.iter().all(|l| l.contains("DEBUG")),
        "{anomalies:#?}"
    );
    // The namespace decision for ifindex 2 names both namespaces, by their real inodes.
    let decisions = said("not one attached namespace");
    for ns in [&x, &y] {
        let want = format!(
            "ifindex {ix}: not one attached namespace, its device says namespace {}",
            ns.inode()
        );
        assert!(
            decisions.iter().any(|l| l.ends_with(&want)),
            "{want}: {decisions:#?}"
        );
    }
    // Sampling: the ping was timed at every packet (auto, a quiet node), said once per CPU.
    let sampling = said("per-hop timing on cpu");
    let rec = &json_lines(&out.stdout, "latency_sampling")[0];
    assert_eq!(rec["auto"], true, "{rec}");
    assert!(!sampling.is_empty(), "{stderr}");
    assert!(
        sampling
            .iter()
            .all(|l| l.contains("INFO") && l.ends_with("1 packet in 1 timed from now")),
        "{sampling:#?}"
    );
}

/// The programs a running inspector holds, by name, with their translated size in bytes.
fn programs(pid: i32) -> Vec<(String, u64)> {
    held_objects(pid)
        .progs
        .iter()
        .map(|id| {
            let v: Value = serde_json::from_str(&support::sh(&[
                "bpftool",
                "-j",
                "prog",
                "show",
                "id",
                &id.to_string(),
            ]))
            .unwrap();
            (
                v["name"].as_str().unwrap_or_default().to_owned(),
                v["bytes_xlated"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn size_of(progs: &[(String, u64)], name: &str) -> u64 {
    progs
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} not loaded: {progs:?}"))
        .1
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn kernel_log_off_leaves_nothing_in_the_programs() {
    let (x, y) = pair();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "flows",
            "-o",
            "json",
            "--latency",
            "--stack",
            "--duration",
            "300",
            "--netns",
            &x.name,
            "--netns",
            &y.name,
        ];
        args.extend_from_slice(extra);
        let insp = Inspector::start(&args);
        let progs = programs(insp.pid());
        let links = held_objects(insp.pid()).links.len();
        insp.interrupt_ok();
        (progs, links)
    };
    let (off, off_links) = run(&[]);
    let (on, on_links) = run(&["--kernel-log", "trace"]);
    // Off: no log program is loaded, and the tc programs are the very ones that run with
    // logging on (the same translated program, byte for byte in size): no statement in them.
    for name in ["insp_log_ingress", "insp_log_egress"] {
        assert!(off.iter().all(|(n, _)| n != name), "{off:?}");
        assert!(on.iter().any(|(n, _)| n == name), "{on:?}");
    }
    for name in ["insp_tc_ingress", "insp_tc_egress"] {
        assert_eq!(size_of(&off, name), size_of(&on, name), "{name}");
    }
    // Two interfaces: the log programs' links (ingress and egress on each) only when on.
    assert_eq!(on_links, off_links + 4);
    // The stack's tracepoints keep their one statement, behind the load-time level: off,
    // the verifier removed it.
    assert!(
        size_of(&off, "insp_receive") < size_of(&on, "insp_receive"),
        "{off:?} {on:?}"
    );
}
