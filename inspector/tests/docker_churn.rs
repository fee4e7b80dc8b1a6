//! Churn with real Docker: 100 containers in groups of four, while `flows` (per-device TCX
//! links, attached and let go as the veths come and go) and `trace` (the global hooks) run.
//! Each group is a parent on Docker's bridge and three children in its namespace
//! (`--network container:PARENT`). The first two children start before the parent is
//! restarted, so they stay behind in its old namespace (as Docker does), and the third
//! starts after, in the new one. Every container connects once to the bridge's gateway, on a
//! port of its own (the parent once per start; busybox's `nc` cannot choose its source
//! port), and every container is removed when its round is done.
//!
//! - Every connection is named after the container that made it, as `docker inspect` names
//!   it (name and id), in `flows`' records and `trace`'s packets: the children by the socket
//!   owner (they share a namespace), the parent in both its namespaces.
//! - Descriptors, threads and BPF links of both come back to where they were after each
//!   round; `trace`'s resident memory stays within 5% after the warm-up round; nothing of
//!   ours is left in the kernel after they exit.
//!
//! `INSPECTOR_DOCKER_CHURN` sets the number of containers (default 100, a multiple of 4).
mod support;

use std::{
    collections::{BTreeSet, HashMap},
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{
    Inspector, bpf_objects,
    docker::{Dockerd, IMAGE, SOCKET, docker},
    eventually,
    usage::{back_after_round, usage},
};

/// Groups alive at once (each of four containers).
const ROUND: usize = 5;
/// The first port: container `k` connects to the gateway's `PORT0 + k`.
const PORT0: u16 = 21_000;

/// The containers made, removed on drop (also on a panic).
struct Made(Vec<String>);

impl Drop for Made {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let mut args = vec!["rm", "-f"];
        args.extend(self.0.iter().map(String::as_str));
        let _ = std::process::Command::new("docker")
            .args(["-H", &format!("unix://{SOCKET}")])
            .args(&args)
            .output();
        self.0.clear();
    }
}

/// What a container runs: one connection to `gw`:`port` 3 s after it starts (the host
/// answers with a reset), then sleep. Not at once: a container that joins a namespace is
/// told apart from the others there by its sockets' owner, which the kernel records only
/// once a rescan has attached the socket-owner programs to its cgroup. `flows`, busy
/// attaching to the new veths of 20 containers, has been seen to take over a second
/// (docs/robustness.md, "Churn with real Docker").
fn connects(gw: &str, port: u16) -> String {
    format!("sleep 3; nc -w 1 {gw} {port} </dev/null; exec sleep 3600")
}

/// `docker run -d --name NAME OPTS IMAGE sh -c SCRIPT`.
fn run(name: &str, opts: &[&str], script: &str) {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(opts);
    args.extend_from_slice(&[IMAGE, "sh", "-c", script]);
    docker(&args);
}

/// One group: `P` (parent), `A`, `B` (children before the restart), `C` (after). Returns
/// the containers, with their ports.
fn group(tag: &str, gw: &str, g: usize) -> Vec<(String, u16)> {
    let port = |i: usize| PORT0 + u16::try_from(4 * g + i).unwrap();
    let name = |s: &str| format!("{tag}g{g}{s}");
    let parent = name("p");
    run(&parent, &[], &connects(gw, port(0)));
    let mode = format!("container:{parent}");
    for (i, s) in [(1, "a"), (2, "b")] {
        run(&name(s), &["--network", &mode], &connects(gw, port(i)));
    }
    vec![
        (parent, port(0)),
        (name("a"), port(1)),
        (name("b"), port(2)),
    ]
}

/// By destination port: the (name, id) pairs of the source ends, and the namespaces seen at eth0.
type Ends = HashMap<u16, (BTreeSet<(String, String)>, BTreeSet<u64>)>;

/// The records of `kind` to the containers' ports: by port, the (name, id) of their source
/// ends and the namespaces they were seen in (at `eth0`).
fn ends_by_port(out: &[u8], kind: &str, n: usize) -> Ends {
    let mut by = Ends::new();
    for r in support::json_lines(out, kind) {
        let Some(port) = r["dport"].as_u64().and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        if !(PORT0..PORT0 + u16::try_from(n).unwrap()).contains(&port) {
            continue;
        }
        let e = by.entry(port).or_default();
        let end = &r["src_endpoint"];
        let s = |v: &Value| v.as_str().unwrap_or("-").to_owned();
        e.0.insert((s(&end["name"]), s(&end["id"])));
        if r["ifname"] == "eth0" {
            e.1.insert(r["netns"].as_u64().unwrap_or(0));
        }
    }
    by
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn docker_churn_keeps_names_and_resources_flat_and_leaves_nothing() {
    let n: usize = support::env_count("INSPECTOR_DOCKER_CHURN", 100);
    assert!(
        n.is_multiple_of(4) && n >= 4 * ROUND * 2,
        "INSPECTOR_DOCKER_CHURN: {n}"
    );
    let groups = n / 4;
    let d = Dockerd::start();
    let gw = docker(&[
        "network",
        "inspect",
        "bridge",
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
    ]);
    let tag = support::unique("dc");
    let bin = support::release_bin();
    let common = ["--docker-socket", SOCKET, "--duration", "900"];
    let flows = Inspector::start_bin(
        &bin,
        &[&["flows", "-o", "json", "--attach", "tcx"][..], &common].concat(),
    );
    let trace = Inspector::start_bin(
        &bin,
        &[
            &["trace", "-o", "json"][..],
            &common,
            &[format!("tcp and dst host {gw}").as_str()],
        ]
        .concat(),
    );
    let started = Instant::now();
    // (name, id, port) of every container; the parents' (name, namespaces before and after).
    let mut made: Vec<(String, String, u16)> = Vec::new();
    let mut parents: Vec<(String, u64, u64)> = Vec::new();
    let mut series = Vec::new();
    let mut held_base = None;
    let now = || (usage(flows.pid()), usage(trace.pid()));
    let netns = |name: &str| -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        let pid = Dockerd::inspect(name, "{{.State.Pid}}");
        std::fs::metadata(format!("/proc/{pid}/ns/net")).map_or(0, |m| m.ino())
    };
    // Waits until trace printed, for each (port, namespace), a packet from that port on
    // eth0 in that namespace.
    let sent = |want: &[(u16, u64)]| {
        trace.wait_json(Duration::from_secs(30), |evs| {
            let seen: BTreeSet<(u64, u64)> = evs
                .iter()
                .filter(|p| p["type"] == "packet" && p["ifname"] == "eth0")
                .filter_map(|p| Some((p["dport"].as_u64()?, p["netns"].as_u64()?)))
                .collect();
            want.iter()
                .all(|(port, ns)| seen.contains(&(u64::from(*port), *ns)))
        })
    };
    for round in 0..groups.div_ceil(ROUND) {
        let mut live = Made(Vec::new());
        let gs: Vec<usize> = (round * ROUND..((round + 1) * ROUND).min(groups)).collect();
        let mut want = Vec::new();
        for &g in &gs {
            let cs = group(&tag, &gw, g);
            live.0.extend(cs.iter().map(|(c, _)| c.clone()));
            let ns = netns(&cs[0].0);
            for (c, port) in cs {
                made.push((c.clone(), Dockerd::inspect(&c, "{{.Id}}"), port));
                want.push((port, ns));
            }
        }
        assert!(
            sent(&want),
            "round {round}: not every container's connection was traced: {}",
            trace.stderr_text()
        );
        // Each parent restarted (a new namespace; its children stay in the old one), and
        // connecting again from it; a third child joins it there.
        let mut want = Vec::new();
        for &g in &gs {
            let parent = format!("{tag}g{g}p");
            let old = netns(&parent);
            docker(&["restart", "-t", "0", &parent]);
            let new = netns(&parent);
            assert_ne!(old, new, "{parent}: a restart gives a new namespace");
            parents.push((parent.clone(), old, new));
            want.push((PORT0 + u16::try_from(4 * g).unwrap(), new));
            let c = format!("{tag}g{g}c");
            let port = PORT0 + u16::try_from(4 * g + 3).unwrap();
            run(
                &c,
                &["--network", &format!("container:{parent}")],
                &connects(&gw, port),
            );
            live.0.push(c.clone());
            made.push((c.clone(), Dockerd::inspect(&c, "{{.Id}}"), port));
            want.push((port, new));
        }
        assert!(
            sent(&want),
            "round {round}: the connections after the restarts were not traced: {}",
            trace.stderr_text()
        );
        drop(live);
        // Descriptors, threads and links back where they were after the first round.
        let u = back_after_round(&mut held_base, round, now);
        eprintln!(
            "docker churn: round {round}: {} made; flows {:?}; trace {:?}",
            made.len(),
            u.0,
            u.1
        );
        series.push(u);
    }
    eprintln!(
        "docker churn: {} containers, {} restarts in {:.0} s",
        made.len(),
        parents.len(),
        started.elapsed().as_secs_f64()
    );
    let (fo, to) = (flows.interrupt_ok(), trace.interrupt_ok());
    // Docker moves each container's veth end in after making it: flows keeps the links it
    // attached before the move (not "File exists"), and a device gone between a scan and its
    // attach is no warning ("No such device").
    for (who, o) in [("flows", &fo), ("trace", &to)] {
        let err = String::from_utf8_lossy(&o.stderr);
        for l in err.lines().filter(|l| l.contains("warning")) {
            eprintln!("docker churn: {who}: {l}");
        }
        assert!(
            !err.contains("File exists") && !err.contains("No such device"),
            "{who}: {err}"
        );
    }
    drop(d);

    let mut failures = Vec::new();
    for (what, out, kind) in [
        ("flows", &fo.stdout, "flow"),
        ("trace", &to.stdout, "packet"),
    ] {
        let by = ends_by_port(out, kind, n);
        let mut wrong = Vec::new();
        for (name, id, port) in &made {
            match by.get(port) {
                Some((ends, _))
                    if ends.len() == 1 && ends.contains(&(name.clone(), id.clone())) => {}
                got => {
                    // The records themselves, where and when seen.
                    let recs: Vec<String> = support::json_lines(out, kind)
                        .iter()
                        .filter(|r| r["dport"].as_u64() == Some(u64::from(*port)))
                        .map(|r| {
                            format!(
                                "{} {}/{} {} {} -> {}",
                                r["ts_ns"].as_u64().or(r["first_ns"].as_u64()).unwrap_or(0),
                                r["netns_name"],
                                r["ifname"],
                                r["src"],
                                r["src_endpoint"]["name"],
                                r["dst"]
                            )
                        })
                        .collect();
                    wrong.push(format!("{name} (port {port}): {got:?}; records: {recs:#?}"));
                }
            }
        }
        eprintln!(
            "docker churn: {what}: {} of {} containers not named as docker inspect named them",
            wrong.len(),
            made.len()
        );
        if !wrong.is_empty() {
            failures.push(format!("{what}: {:#?}", &wrong[..wrong.len().min(10)]));
        }
        // The parents, in both their namespaces.
        for (name, old, new) in &parents {
            let port = made.iter().find(|m| &m.0 == name).unwrap().2;
            let seen = &by[&port].1;
            if !(seen.contains(old) && seen.contains(new)) {
                failures.push(format!(
                    "{what}: {name}'s connections not seen in both its namespaces ({old}, \
                     {new}): {seen:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");

    // trace's resident memory within 5% of its level after the first round; flows' under
    // the 64 MiB bound of docs/robustness.md.
    let warm = series[0].1.rss_kib;
    let top = |pick: fn(&(support::usage::Usage, support::usage::Usage)) -> u64| {
        series[1..].iter().map(pick).max().unwrap()
    };
    let (ft, tt) = (top(|u| u.0.rss_kib), top(|u| u.1.rss_kib));
    eprintln!(
        "docker churn: trace resident {warm} KiB after round 0, at most {tt} KiB later; flows at most {ft} KiB"
    );
    assert!(
        tt <= warm * 105 / 100,
        "trace: resident memory up to {tt} KiB, over 5% above {warm} KiB"
    );
    assert!(
        ft <= 64 * 1024,
        "flows: resident memory up to {ft} KiB, over 64 MiB"
    );

    assert!(
        eventually(Duration::from_secs(10), || bpf_objects()
            .progs
            .values()
            .all(|p| !p.starts_with("insp_"))),
        "programs of ours left after both exited"
    );
}
