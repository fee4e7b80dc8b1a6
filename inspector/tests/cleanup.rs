//! Observe, never interfere: after SIGINT, SIGTERM and even SIGKILL, no program, link or map
//! the inspector held remains in the kernel. Checked against /proc/PID/fdinfo (what it held)
//! and bpftool (what the kernel still has).
mod support;

use std::time::Duration;

use support::{BridgeLab, Inspector, bpf_objects, eventually, held_objects};

/// `tcx`: per-device TCX links; else the default, the global hooks.
fn check_nothing_left(sig: i32, tcx: bool) {
    let lab = BridgeLab::new("cl");
    let mut args = vec!["flows", "--duration", "300"];
    for ns in lab.all() {
        args.extend(["--netns", ns.name.as_str()]);
    }
    if tcx {
        args.extend(["--attach", "tcx"]);
    }
    let insp = Inspector::start(&args);
    let held = held_objects(insp.pid());
    // Two observing programs (tc, or the global hooks'), the drop tracepoint and the two
    // socket-owner cgroup_skb programs (loaded; attached only to cgroups of workloads
    // sharing a namespace, none here), their maps, and links: with TCX ingress+egress on 7
    // interfaces, with the global hooks one per tracepoint; and the drop tracepoint's.
    assert_eq!(held.progs.len(), 5, "programs held: {held:?}");
    assert_eq!(
        held.links.len(),
        if tcx { 15 } else { 3 },
        "links held: {held:?}"
    );
    assert!(held.maps.len() >= 3, "maps held: {held:?}");
    let now = bpf_objects();
    for id in &held.links {
        assert!(
            now.links.contains_key(id),
            "bpftool does not list link {id}: oracle broken"
        );
    }
    let _ = insp.signal(sig);
    let gone = eventually(Duration::from_secs(10), || {
        let o = bpf_objects();
        held.progs.iter().all(|id| !o.progs.contains_key(id))
            && held.links.iter().all(|id| !o.links.contains_key(id))
            && held.maps.iter().all(|id| !o.maps.contains_key(id))
    });
    let o = bpf_objects();
    assert!(
        gone,
        "after signal {sig}: left behind progs {:?} links {:?} maps {:?}",
        held.progs
            .iter()
            .filter(|i| o.progs.contains_key(i))
            .collect::<Vec<_>>(),
        held.links
            .iter()
            .filter(|i| o.links.contains_key(i))
            .collect::<Vec<_>>(),
        held.maps
            .iter()
            .filter(|i| o.maps.contains_key(i))
            .collect::<Vec<_>>()
    );
    // And the datapath still works untouched.
    support::in_ns(&lab.a.name, &["ping", "-c", "1", "-W", "2", "198.18.0.3"]);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn sigint_leaves_nothing_attached() {
    check_nothing_left(libc::SIGINT, false);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn sigterm_leaves_nothing_attached() {
    check_nothing_left(libc::SIGTERM, true);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn sigkill_leaves_nothing_attached() {
    check_nothing_left(libc::SIGKILL, false);
    check_nothing_left(libc::SIGKILL, true);
}
