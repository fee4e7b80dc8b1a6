//! Legacy tc attach (`--attach tc`, what kernels before 6.6 get): our filters go first on
//! each hook and carry our identity; a SIGKILL leaves them (legacy filters outlive the
//! process), and the next start or `inspector cleanup` removes exactly them - never a live
//! inspector's, never a foreign filter or qdisc. The oracle is `tc` itself.
mod support;

use support::{BridgeLab, Inspector, Netns, run_inspector};

/// `tc filter show` of one hook, as (handle, name) in the kernel's order; the
/// priority's head line (no handle) left out.
fn filters(ns: &Netns, dev: &str, hook: &str) -> Vec<(String, String)> {
    let out = ns.exec(&["tc", "filter", "show", "dev", dev, hook]);
    out.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let h = w.iter().position(|x| *x == "handle")?;
            let handle = w.get(h + 1)?.to_string();
            let name = w
                .iter()
                .position(|x| *x == "name")
                .and_then(|i| w.get(i + 1))
                .map_or_else(
                    || w.get(h + 2).unwrap_or(&"").to_string(),
                    |n| (*n).to_owned(),
                );
            Some((handle, name))
        })
        .collect()
}

fn ours(f: &[(String, String)]) -> Vec<&(String, String)> {
    f.iter()
        .filter(|(h, n)| h.starts_with("0x1e5f") && n.starts_with("insp_"))
        .collect()
}

fn qdiscs(ns: &Netns, dev: &str) -> String {
    ns.exec(&["tc", "qdisc", "show", "dev", dev])
}

/// `head` then `--netns N` for each namespace.
fn argv(head: &[&str], nss: &[&Netns]) -> Vec<String> {
    head.iter()
        .map(|s| (*s).to_owned())
        .chain(
            nss.iter()
                .flat_map(|n| ["--netns".to_owned(), n.name.clone()]),
        )
        .collect()
}

/// `flows --attach tc` on every namespace of the lab (the run the tests kill).
fn legacy_run(nss: &[&Netns]) -> Inspector {
    let args = argv(&["flows", "--attach", "tc", "--duration", "300", "-q"], nss);
    Inspector::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A foreign setup on `a`'s eth0 (a clsact qdisc, a classic-BPF filter at our priority and a
/// `bpf` filter at priority 10), none on `b`'s: after everything, `a`'s is intact and `b`'s
/// eth0 has no qdisc of ours left.
fn foreign(lab: &BridgeLab) {
    lab.a.exec(&["tc", "qdisc", "add", "dev", "eth0", "clsact"]);
    for (hook, prio) in [("ingress", "1"), ("egress", "10")] {
        support::foreign_bpf_filter(&lab.a, "eth0", hook, prio);
    }
}

fn check_foreign_intact(lab: &BridgeLab) {
    assert!(
        qdiscs(&lab.a, "eth0").contains("clsact"),
        "the foreign qdisc went"
    );
    for hook in ["ingress", "egress"] {
        let f = filters(&lab.a, "eth0", hook);
        assert!(
            f.iter().any(|(h, _)| h == "0x7"),
            "foreign {hook} filter gone: {f:?}"
        );
        assert!(ours(&f).is_empty(), "filters of ours left on {hook}: {f:?}");
    }
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn sigkill_leaves_filters_that_cleanup_removes_and_nothing_else() {
    let lab = BridgeLab::new("lk");
    foreign(&lab);
    let nss = lab.all();
    // A live inspector on b first: neither the killed run's start nor cleanup may touch it.
    let b_args = [
        "flows",
        "--attach",
        "tc",
        "--duration",
        "300",
        "-q",
        "--netns",
        &lab.b.name,
    ];
    let live = Inspector::start(&b_args);
    let dead = legacy_run(&nss);
    // Ours first on each hook of a's eth0, ahead of the foreign filter of the same priority.
    for hook in ["ingress", "egress"] {
        let f = filters(&lab.a, "eth0", hook);
        assert!(
            f.first()
                .is_some_and(|(h, n)| h.starts_with("0x1e5f") && n.starts_with("insp_tc_")),
            "ours is not first on {hook}: {f:?}"
        );
    }
    // Two inspectors on b: two handles of ours.
    assert_eq!(ours(&filters(&lab.b, "eth0", "ingress")).len(), 2);
    let _ = dead.signal(libc::SIGKILL);
    // Legacy filters outlive the process: that is why cleanup exists.
    assert_eq!(ours(&filters(&lab.c, "eth0", "ingress")).len(), 1);
    // Only this lab's namespaces: the other test of this file kills its own run meanwhile.
    let clean = argv(&["cleanup", "-o", "json"], &nss);
    let clean: Vec<&str> = clean.iter().map(String::as_str).collect();
    let out = run_inspector(&clean, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let removed = support::json_lines(&out.stdout, "cleanup");
    // The dead run's: 2 filters on each of 7 interfaces, and the 5 qdiscs it created (all
    // but a's eth0, whose qdisc was there before, and b's, which the live one made).
    let n = |what: &str| removed.iter().filter(|r| r["what"] == what).count();
    assert_eq!(n("filter"), 14, "{removed:#?}");
    assert_eq!(n("qdisc"), 5, "{removed:#?}");
    assert_eq!(
        ours(&filters(&lab.b, "eth0", "ingress")).len(),
        1,
        "the live one's stays"
    );
    check_foreign_intact(&lab);
    // The datapath works, through the live inspector's filter, which still counts.
    support::in_ns(
        &lab.b.name,
        &["ping", "-c", "2", "-i", "0.1", "-W", "2", "198.18.0.2"],
    );
    drop(live.interrupt_ok());
    // The live one created b's qdisc and removes it when it stops.
    assert!(
        !qdiscs(&lab.b, "eth0").contains("clsact"),
        "b's clsact left: {}",
        qdiscs(&lab.b, "eth0")
    );
    let mut dry = clean.clone();
    dry.push("--dry-run");
    let out = run_inspector(&dry, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(support::json_lines(&out.stdout, "cleanup").is_empty());
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn the_next_start_removes_what_a_killed_run_left() {
    let lab = BridgeLab::new("ln");
    foreign(&lab);
    let nss = lab.all();
    let dead = legacy_run(&nss);
    let _ = dead.signal(libc::SIGKILL);
    assert_eq!(ours(&filters(&lab.c, "eth0", "egress")).len(), 1);
    // The next start on these namespaces (TCX this time, as the kernel has it) sweeps them
    // first, and says so.
    let again = argv(&["flows", "--duration", "300"], &nss);
    let again: Vec<&str> = again.iter().map(String::as_str).collect();
    let next = Inspector::start(&again);
    // Said before it was ready; read from its pipe by the test's own thread, which may come
    // a moment later (CI once read none of the 14 lines right at ready).
    let lines = || {
        next.stderr_text()
            .lines()
            .filter(|l| l.contains("removed a filter an inspector that died left"))
            .count()
    };
    support::eventually(std::time::Duration::from_secs(5), || lines() >= 14);
    assert_eq!(lines(), 14, "{}", next.stderr_text());
    for ns in [&lab.b, &lab.c] {
        assert!(ours(&filters(ns, "eth0", "ingress")).is_empty());
        assert!(
            !qdiscs(ns, "eth0").contains("clsact"),
            "{}",
            qdiscs(ns, "eth0")
        );
    }
    check_foreign_intact(&lab);
    drop(next.interrupt_ok());
}

/// `--attach` takes tcx, tc or global; anything else is a one-line error and nothing is attached.
#[test]
fn attach_mode_is_checked() {
    let out = run_inspector(&["flows", "--attach", "xdp", "--duration", "1"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("'xdp' is not an attach mode: tcx, tc or global"),
        "{err}"
    );
}
