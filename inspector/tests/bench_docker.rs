//! `inspector bench --runtime docker` and `--between` on a real dockerd: every Docker mode
//! runs every workload and reports a rate and percentiles; the hops of bridge mode are the
//! containers' own veths on docker0 (names checked against `docker inspect` and iproute2
//! while the run is going); `--between` two real containers; a run interrupted with Ctrl-C
//! and runs refused for bad input leave no container, network, image, namespace or program.
//! Short runs: the numbers belong to `cargo xtask bench`, not to a test.
mod support;

use std::time::Duration;

use serde_json::Value;
use support::{
    bench::{Bench, entry, report},
    docker::{Dockerd, SOCKET, docker},
};

const WORKLOADS: [&str; 4] = ["rr", "crr", "stream", "udp-rr"];
const MODES: [&str; 6] = [
    "docker-host",
    "docker-bridge",
    "docker-container",
    "docker-none",
    "docker-dnat",
    "docker-user-bridge",
];

/// Every workload over `mode` has a rate, and the transactional ones their percentiles.
fn check_numbers(r: &Value, mode: &str) {
    for w in WORKLOADS {
        let e = entry(r, mode, w);
        assert!(
            e["rate"].as_f64().unwrap_or(0.0) > 0.0,
            "{w} over {mode}: {e}"
        );
        assert_eq!(e["runs"], 1, "{e}");
        if w != "stream" {
            let (p50, p99) = (e["p50_us"].as_f64(), e["p99_us"].as_f64());
            assert!(
                p50.is_some_and(|p| p > 0.0) && p99 >= p50,
                "{w} over {mode}: percentiles {p50:?} {p99:?}"
            );
        }
        if w == "crr" {
            assert!(e["connect_p50_us"].as_f64().is_some(), "{e}");
        }
    }
}

/// What the bench leaves behind with its label or names: containers, networks, images,
/// namespaces, links, private daemons' directories.
fn leftovers(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    let label = format!("label=inspector.bench={pid}");
    for kind in [["ps", "-aq"], ["network", "ls"]] {
        let mut args = vec![kind[0], kind[1], "-q", "--filter", &label];
        args.dedup();
        let got = docker(&args);
        if !got.is_empty() {
            out.push(format!("docker {}: {got}", kind[0]));
        }
    }
    let images = docker(&["images", "-q", "inspector-bench/hold"]);
    if !images.is_empty() {
        out.push(format!("image inspector-bench/hold: {images}"));
    }
    if std::path::Path::new(&format!("/run/netns/insp-bo{pid}")).exists() {
        out.push(format!("namespace insp-bo{pid}"));
    }
    if std::path::Path::new(&format!("/sys/class/net/ibo{pid}")).exists() {
        out.push(format!("link ibo{pid}"));
    }
    if std::path::Path::new(&format!("/tmp/insp-bench-dockerd-{pid}")).exists() {
        out.push(format!("/tmp/insp-bench-dockerd-{pid}"));
    }
    out
}

/// The host end of a container's eth0 (iproute2 in its namespace gives the peer's index),
/// and that end's bridge.
fn host_veth(container: &str) -> (String, String) {
    let (_, peer) = Dockerd::eth0_of(container);
    let host: Value =
        serde_json::from_str(&support::sh(&["ip", "-j", "link", "show"])).expect("ip -j");
    let l = host
        .as_array()
        .expect("links")
        .iter()
        .find(|l| l["ifindex"].as_u64() == Some(peer))
        .unwrap_or_else(|| panic!("no host link {peer} for {container}"));
    (
        l["ifname"].as_str().unwrap_or_default().to_owned(),
        l["master"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn every_docker_mode_runs_every_workload_and_bridge_hops_are_the_containers_veths() {
    let _d = Dockerd::start();
    let before = support::bpf_objects();
    let b = Bench::start(&[
        "--runtime",
        "docker",
        "--docker-socket",
        SOCKET,
        "--workloads",
        "rr,crr,stream,udp-rr",
        "--run-secs",
        "0.2",
        "--repeat",
        "1",
        "--hops-secs",
        "0.5",
        "-o",
        "json",
    ]);
    let pid = b.pid();
    let (cli, srv) = (
        format!("insp-bench-{pid}-cli"),
        format!("insp-bench-{pid}-srv"),
    );
    // While the run goes: the containers' veths, from docker inspect and iproute2.
    let mut veths = None;
    assert!(
        support::eventually(Duration::from_mins(2), || {
            if b.said("over docker-") {
                veths = Some((host_veth(&cli), host_veth(&srv)));
                true
            } else {
                false
            }
        }),
        "the measured runs never started: {:?}",
        b.stderr_text()
    );
    let ((cli_veth, cli_br), (srv_veth, srv_br)) = veths.expect("veths");
    assert_eq!((cli_br.as_str(), srv_br.as_str()), ("docker0", "docker0"));
    let out = b.finish(Duration::from_mins(3));
    let r = report(&out);
    for m in MODES {
        check_numbers(&r, m);
        assert_eq!(entry(&r, m, "rr")["runtime"], "docker");
    }
    // Bridge mode's path: cli's eth0, its veth, the server's veth, the server's eth0.
    let hops: Vec<(String, String)> = entry(&r, "docker-bridge", "rr")["hops"]
        .as_array()
        .expect("hops")
        .iter()
        .map(|h| {
            (
                h["from"].as_str().unwrap().to_owned(),
                h["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let has = |from: &str, to: &str| hops.iter().any(|h| h.0 == from && h.1 == to);
    assert!(
        has(&format!("{cli}/eth0(out)"), &format!("host/{cli_veth}(in)")),
        "{hops:?}"
    );
    assert!(
        has(
            &format!("host/{cli_veth}(in)"),
            &format!("host/{srv_veth}(out)")
        ),
        "{hops:?}"
    );
    // The server's namespace is shared with the container:X client: named by either.
    let side = format!("insp-bench-{pid}-side");
    assert!(
        hops.iter().any(|h| h.0 == format!("host/{srv_veth}(out)")
            && h.1.ends_with("/eth0(in)")
            && (h.1.starts_with(&srv) || h.1.starts_with(&side))),
        "{hops:?}"
    );
    // The published port's path crosses docker0 itself.
    let dnat = entry(&r, "docker-dnat", "rr")["hops"].to_string();
    assert!(dnat.contains("host/docker0("), "{dnat}");
    assert!(dnat.contains(&format!("host/{srv_veth}(")), "{dnat}");
    // Lab twins were not run: no lab-vs-real rows.
    assert_eq!(r["vs_lab"].as_array().map(Vec::len), Some(0));
    assert_eq!(leftovers(pid), Vec::<String>::new());
    support::assert_no_links_of_ours_since(&before, "bench --runtime docker");
}

/// Listening and connected sockets in a container's namespace (`ss`, run there; a closed
/// connection's TIME-WAIT is the kernel's, not a socket anyone holds).
fn sockets_in(container: &str) -> String {
    let pid = Dockerd::inspect(container, "{{.State.Pid}}");
    let ss = |args: &[&str]| {
        let mut v = vec!["nsenter", "--net=/proc/PID/ns/net", "ss", "-H"];
        let ns = format!("--net=/proc/{pid}/ns/net");
        v[1] = &ns;
        v.extend_from_slice(args);
        support::sh(&v).trim().to_owned()
    };
    format!(
        "{}{}",
        ss(&["-tuln"]),
        ss(&["-tun", "state", "established"])
    )
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn between_two_real_containers_reports_numbers_and_the_path_and_leaves_nothing() {
    let mut dockerd = Dockerd::start();
    let (one, two) = (support::unique("bw-a"), support::unique("bw-b"));
    dockerd.run(&one, &[], &["sleep", "600"]);
    dockerd.run(&two, &[], &["sleep", "600"]);
    let none = support::unique("bw-none");
    dockerd.run(&none, &["--network", "none"], &["sleep", "600"]);
    let before = support::bpf_objects();
    let two_ip = Dockerd::inspect(&two, "{{.NetworkSettings.IPAddress}}");
    let out = Bench::start(&[
        "--between",
        &one,
        &two,
        "--docker-socket",
        SOCKET,
        "--run-secs",
        "0.2",
        "--repeat",
        "2",
        "--hops-secs",
        "0.5",
        "-o",
        "json",
    ])
    .finish(Duration::from_mins(2));
    let r = report(&out);
    assert_eq!(r["modes"], serde_json::json!(["between"]));
    for w in WORKLOADS {
        let e = entry(&r, "between", w);
        assert!(e["rate"].as_f64().unwrap_or(0.0) > 0.0, "{e}");
        assert_eq!(e["runs"], 2, "{e}");
        assert_eq!(e["runtime"], "between");
    }
    // The path: a's eth0 to b's eth0 through the node, each container by its name.
    let hops = entry(&r, "between", "rr")["hops"].to_string();
    let (_, a_peer) = Dockerd::eth0_of(&one);
    let a_veth = support::sh(&["ip", "-j", "link", "show"]);
    let links: Value = serde_json::from_str(&a_veth).expect("ip -j");
    let a_veth = links
        .as_array()
        .expect("links")
        .iter()
        .find(|l| l["ifindex"].as_u64() == Some(a_peer))
        .and_then(|l| l["ifname"].as_str())
        .expect("a's veth")
        .to_owned();
    assert!(hops.contains(&format!("{one}/eth0(out)")), "{hops}");
    assert!(hops.contains(&format!("host/{a_veth}(in)")), "{hops}");
    assert!(hops.contains(&format!("{two}/eth0(in)")), "{hops}");
    assert!(
        entry(&r, "between", "rr")["what"]
            .as_str()
            .is_some_and(|w| w.contains(&one) && w.contains(&two)),
        "{r}"
    );
    // Nothing stays in either container, nor attached.
    assert_eq!(sockets_in(&two), "", "sockets left in {two} ({two_ip})");
    assert_eq!(sockets_in(&one), "", "sockets left in {one}");
    support::assert_no_links_of_ours_since(&before, "bench --between");

    // The user's own server on DST:PORT (busybox `nc -ll -e cat`: an echo server) answers rr
    // and crr; nothing of ours listens beside it.
    let echo = support::unique("bw-echo");
    dockerd.run(&echo, &[], &["nc", "-ll", "-p", "7", "-e", "cat"]);
    let out = Bench::start(&[
        "--between",
        &one,
        &format!("{echo}:7"),
        "--docker-socket",
        SOCKET,
        "--workloads",
        "rr,crr",
        "--run-secs",
        "0.2",
        "--repeat",
        "1",
        "--hops-secs",
        "0",
        "-o",
        "json",
    ])
    .finish(Duration::from_mins(1));
    let e = entry(&report(&out), "between", "rr").clone();
    assert!(
        e["rate"].as_f64() > Some(0.0) && e["p50_us"].as_f64() > Some(0.0),
        "{e}"
    );
    assert!(
        e["what"]
            .as_str()
            .is_some_and(|w| w.contains(":7 (its own server)")),
        "{e}"
    );
    let left = sockets_in(&echo);
    assert!(
        left.lines()
            .all(|l| l.contains(":7 ") || l.contains(":7\t")),
        "sockets in {echo} besides the echo server's: {left}"
    );

    // A none-mode container as the far end: one line, nothing run.
    let out = Bench::start(&["--between", &one, &none, "--docker-socket", SOCKET])
        .finish(Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.trim().lines().count() == 1 && err.contains("has no network (none mode)"),
        "{err}"
    );
    // Its own loopback, though, it can measure.
    let out = Bench::start(&[
        "--between",
        &none,
        &none,
        "--docker-socket",
        SOCKET,
        "--workloads",
        "rr",
        "--run-secs",
        "0.2",
        "--repeat",
        "1",
        "--hops-secs",
        "0",
        "-o",
        "json",
    ])
    .finish(Duration::from_mins(1));
    assert!(entry(&report(&out), "between", "rr")["rate"].as_f64() > Some(0.0));
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn interrupting_a_lab_and_docker_run_leaves_no_container_network_lab_or_program() {
    let _d = Dockerd::start();
    let before = support::bpf_objects();
    let b = Bench::start(&[
        "--runtime",
        "lab,docker",
        "--docker-socket",
        SOCKET,
        "--modes",
        "bridge,dnat,user-bridge",
        "--workloads",
        "rr",
        "--run-secs",
        "1",
        "--repeat",
        "20",
    ]);
    let pid = b.pid();
    b.wait_said("over docker-");
    b.interrupt(&leftovers(pid));
    assert_eq!(leftovers(pid), Vec::<String>::new());
    let labs: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("insp-bm-"))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(labs, Vec::<String>::new(), "the lab stayed");
    support::assert_no_links_of_ours_since(&before, "interrupted bench");
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn bad_input_is_one_line_and_creates_nothing() {
    let _d = Dockerd::start();
    let containers = || docker(&["ps", "-aq", "--filter", "label=inspector.bench"]);
    let one_line = |args: &[&str], want: &str| {
        let b = Bench::start(args);
        let pid = b.pid();
        let out = b.finish(Duration::from_mins(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(leftovers(pid), Vec::<String>::new(), "{args:?}");
        assert_eq!(containers(), "", "{args:?}");
    };
    let docker_args = ["--runtime", "docker", "--docker-socket", SOCKET];
    let with = |extra: &[&'static str]| -> Vec<&str> {
        let mut v: Vec<&str> = docker_args.to_vec();
        v.extend_from_slice(extra);
        v
    };
    one_line(&with(&["--workloads", "rr,fast"]), "fast");
    one_line(
        &with(&["--modes", "bridge,macvlan"]),
        "unknown Docker mode 'macvlan'",
    );
    one_line(&["--runtime", "podman"], "unknown runtime 'podman'");
    one_line(
        &["--between", "no-such-container", "host"],
        "no-such-container",
    );
    // A published port the node already holds.
    let held = std::net::TcpListener::bind("0.0.0.0:19101").expect("hold 19101");
    one_line(&with(&["--modes", "dnat"]), "port 19101/tcp is in use");
    drop(held);
    // A socket nothing answers on.
    one_line(
        &[
            "--runtime",
            "docker",
            "--docker-socket",
            "/run/insp-no-such.sock",
        ],
        "no dockerd answers on /run/insp-no-such.sock",
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_private_dockerd_runs_the_modes_and_leaves_the_node_as_it_was() {
    let _turn = support::docker::turn();
    if support::docker::answers() || std::path::Path::new("/sys/class/net/docker0").exists() {
        eprintln!(
            "skipped: a dockerd already runs here; --private-dockerd refuses to start beside it"
        );
        return;
    }
    let iptables = || {
        support::sh(&["iptables-save"])
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(" [").next().unwrap_or(l).to_owned())
            .collect::<Vec<_>>()
    };
    let node = || {
        (
            iptables(),
            support::docker::nft_tables(),
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default(),
            std::fs::read_dir("/sys/class/net").map_or(0, |d| d.filter_map(Result::ok).count()),
        )
    };
    let before = node();
    let b = Bench::start(&[
        "--runtime",
        "docker",
        "--private-dockerd",
        "--modes",
        "bridge,none,dnat",
        "--workloads",
        "rr,udp-rr",
        "--run-secs",
        "0.2",
        "--repeat",
        "1",
        "--hops-secs",
        "0",
        "-o",
        "json",
    ]);
    let pid = b.pid();
    let r = report(&b.finish(Duration::from_mins(3)));
    for m in ["docker-bridge", "docker-none", "docker-dnat"] {
        for w in ["rr", "udp-rr"] {
            assert!(entry(&r, m, w)["p50_us"].as_f64() > Some(0.0), "{m} {w}");
        }
    }
    // The private daemon's bridge was inside 198.18.0.0/15.
    assert!(
        r["setup"].to_string().contains("(private)"),
        "{}",
        r["setup"]
    );
    assert!(!std::path::Path::new(&format!("/tmp/insp-bench-dockerd-{pid}")).exists());
    assert!(!std::path::Path::new("/sys/class/net/docker0").exists());
    assert_eq!(node(), before, "the node changed");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    assert!(!mounts.contains("insp-bench-dockerd"), "{mounts}");
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn a_killed_runs_containers_and_namespace_are_removed_by_the_next_run() {
    let _d = Dockerd::start();
    let b = Bench::start(&[
        "--runtime",
        "docker",
        "--docker-socket",
        SOCKET,
        "--modes",
        "bridge,dnat",
        "--workloads",
        "rr",
        "--run-secs",
        "1",
        "--repeat",
        "30",
    ]);
    let pid = b.pid();
    b.wait_said("over docker-");
    // SAFETY: kill(2) on our own child; SIGKILL: nothing of it runs after this.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let _ = b.finish(Duration::from_secs(30));
    let left = leftovers(pid);
    assert!(
        left.iter().any(|l| l.starts_with("docker ps"))
            && left.iter().any(|l| l.starts_with("namespace")),
        "a killed run leaves its containers and namespace: {left:?}"
    );
    let out = Bench::start(&[
        "--runtime",
        "docker",
        "--docker-socket",
        SOCKET,
        "--modes",
        "none",
        "--workloads",
        "rr",
        "--run-secs",
        "0.1",
        "--repeat",
        "1",
        "--hops-secs",
        "0",
        "-o",
        "json",
    ])
    .finish(Duration::from_mins(2));
    report(&out);
    assert_eq!(
        leftovers(pid),
        Vec::<String>::new(),
        "the next run removed what the killed one left"
    );
}
