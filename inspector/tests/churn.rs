//! Churn: "containers" (a namespace with a veth on a bridge) made, each sending one
//! datagram, and deleted, in rounds, while `flows` (per-device TCX links, attached and let
//! go as the veths come and go) and `trace` (the global hooks) run. Addresses, interface
//! names and namespace inodes are reused from round to round, as on a busy node.
//!
//! - Every container's datagram is named after its own namespace, in `flows`' records and
//!   in `trace`'s packets, though the namespace was gone long before they were printed and
//!   a later one had its address (and often its inode).
//! - Open descriptors, threads and BPF links of both processes come back to where they were
//!   after each round; resident memory stays within 5% after the warm-up rounds.
//! - Nothing of ours remains in the kernel after they exit (bpftool's view).
//!
//! Measured on the release build (`support::release_bin`). `INSPECTOR_CHURN` sets the
//! number of containers (default 1,000, in rounds of 50).
mod support;

use std::{
    collections::HashMap,
    net::UdpSocket,
    time::{Duration, Instant},
};

use support::{
    Inspector, Netns, bpf_objects, eventually,
    usage::{Usage, back_after_round, usage},
};

/// Containers alive at once.
const ROUND: usize = 50;
/// Rounds before resources are expected to be flat.
const WARM: usize = 4;
/// The first source port: container `g` sends from `PORT0 + g`.
const PORT0: u16 = 20_000;

/// One container: its namespace (deleted on drop), name and inode.
struct Container {
    ns: Netns,
    inode: u64,
}

/// Makes container `g` in slot `slot` of the bridge in `hub`: `eth0` at 198.18.44.(10 +
/// slot), its peer `<prefix>v<slot>` a port of br0.
fn container(prefix: &str, hub: &Netns, g: usize, slot: usize) -> Container {
    let ns = Netns::new(&format!("{prefix}k{g}"));
    let host = format!("{prefix}v{slot}");
    hub.exec(&[
        "ip", "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
    ]);
    hub.exec(&["ip", "link", "set", &host, "master", "br0", "up"]);
    ns.exec(&[
        "ip",
        "addr",
        "add",
        &format!("198.18.44.{}/24", 10 + slot),
        "dev",
        "eth0",
    ]);
    ns.exec(&["ip", "link", "set", "eth0", "up"]);
    let inode = ns.inode();
    Container { ns, inode }
}

/// One datagram from container `g` to the hub (198.18.44.1:7).
fn send(c: &Container, g: usize) {
    let port = PORT0 + u16::try_from(g).unwrap();
    inspector::sys::netns::run_in(&c.ns.path(), move || {
        let s = UdpSocket::bind(("0.0.0.0", port)).unwrap();
        s.send_to(b"churn", "198.18.44.1:7").unwrap();
    })
    .unwrap();
}

/// The records of `kind` (with a `netns_name`) whose source port is a container's, by
/// port: the namespace names they carry at the container's own interface (`eth0`).
fn names_by_port(
    out: &[u8],
    kind: &str,
    n: usize,
) -> HashMap<u16, std::collections::BTreeSet<String>> {
    let mut by: HashMap<u16, std::collections::BTreeSet<String>> = HashMap::new();
    for r in support::json_lines(out, kind) {
        let Some(sport) = r["sport"].as_u64().and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        if !(PORT0..PORT0 + u16::try_from(n).unwrap()).contains(&sport)
            || r["dport"] != 7
            || r["ifname"] != "eth0"
        {
            continue;
        }
        by.entry(sport)
            .or_default()
            .insert(r["netns_name"].as_str().unwrap_or("").to_owned());
    }
    by
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn churn_keeps_names_and_resources_flat_and_leaves_nothing() {
    let n: usize = support::env_count("INSPECTOR_CHURN", 1000);
    let rounds = n.div_ceil(ROUND);
    assert!(rounds > WARM, "INSPECTOR_CHURN too small: {n}");
    let prefix = support::unique("ch");
    let hub = Netns::new(&format!("{prefix}hub"));
    support::bridge_in(&hub, "198.18.44.1/24");
    let bin = support::release_bin();
    let flows = Inspector::start_bin(
        &bin,
        &[
            "flows",
            "-o",
            "json",
            "--attach",
            "tcx",
            "--duration",
            "900",
        ],
    );
    let trace = Inspector::start_bin(
        &bin,
        &[
            "trace",
            "-o",
            "json",
            "--duration",
            "900",
            "udp and dst port 7",
        ],
    );
    let started = Instant::now();
    // flows' TCX links with only the hub's devices (and the node's).
    let base_links = usage(flows.pid()).links;
    let mut series: Vec<(Usage, Usage)> = Vec::new();
    let mut held_base = None;
    let mut inodes: HashMap<u64, usize> = HashMap::new();
    let mut g = 0;
    for round in 0..rounds {
        let live: Vec<(usize, Container)> = (0..ROUND.min(n - g))
            .map(|slot| {
                let c = container(&prefix, &hub, g + slot, slot);
                (g + slot, c)
            })
            .collect();
        // flows has attached to both ends of every new veth (ingress and egress), and a
        // rescan of each has seen the new namespaces; then the traffic.
        let want = base_links + 4 * live.len();
        assert!(
            eventually(Duration::from_secs(30), || usage(flows.pid()).links >= want),
            "round {round}: flows holds {} links, not {want}",
            usage(flows.pid()).links
        );
        std::thread::sleep(Duration::from_millis(1100));
        for (id, c) in &live {
            send(c, *id);
            *inodes.entry(c.inode).or_default() += 1;
        }
        std::thread::sleep(Duration::from_millis(600));
        g += live.len();
        drop(live);
        // flows lets go of the links of the veths that went.
        assert!(
            eventually(Duration::from_secs(30), || usage(flows.pid()).links
                == base_links),
            "round {round}: flows still holds {} links of gone devices ({base_links} before)",
            usage(flows.pid()).links - base_links
        );
        // Descriptors, threads and links back where they were after the first round (a
        // rescan in flight holds a namespace's descriptor for a moment).
        let now = || (usage(flows.pid()), usage(trace.pid()));
        let u = back_after_round(&mut held_base, round, now);
        eprintln!(
            "churn: round {round}: {g} made; flows {:?}; trace {:?}",
            u.0, u.1
        );
        series.push(u);
    }
    let reused = inodes.values().filter(|&&k| k > 1).count();
    eprintln!(
        "churn: {n} containers in {:.0} s; {reused} namespace inodes reused",
        started.elapsed().as_secs_f64()
    );
    let (fo, to) = (flows.interrupt_ok(), trace.interrupt_ok());
    drop(hub);

    // Names, as they were when seen: every container's datagram, in both.
    for (what, out, kind) in [
        ("flows", &fo.stdout, "flow"),
        ("trace", &to.stdout, "packet"),
    ] {
        let by = names_by_port(out, kind, n);
        let (mut missing, mut wrong) = (Vec::new(), Vec::new());
        for g in 0..n {
            let want = format!("{prefix}k{g}");
            match by.get(&(PORT0 + u16::try_from(g).unwrap())) {
                Some(got) if got.len() == 1 && got.contains(&want) => {}
                Some(got) => wrong.push(format!("{want}: {got:?}")),
                None => missing.push(g),
            }
        }
        assert!(
            wrong.is_empty(),
            "{what}: {} of {n} containers not named as they were: {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(10)]
        );
        assert!(
            missing.is_empty(),
            "{what}: no record of {} containers: {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
    }

    // Resident memory: trace's within 5% of its level after the warm-up; flows' grows with
    // the records its table holds (every ARP exchange between 50 containers on one bridge is
    // a record at each port: ~50 per container, 50,000 here, all kept to be printed), and
    // stays under the 64 MiB bound of docs/robustness.md.
    for (who, pick) in [("flows", 0), ("trace", 1)] {
        let s: Vec<Usage> = series
            .iter()
            .map(|u| if pick == 0 { u.0 } else { u.1 })
            .collect();
        let warm = s[WARM - 1];
        let top = s[WARM..].iter().map(|u| u.rss_kib).max().unwrap();
        let kib = |f: fn(&Usage) -> u64| s.iter().map(f).collect::<Vec<u64>>();
        eprintln!(
            "churn: {who}: resident {} KiB after warm-up, at most {top} KiB later; anon {:?}",
            warm.rss_kib,
            kib(|u| u.anon_kib)
        );
        let (bound, what) = if who == "trace" {
            (warm.rss_kib * 105 / 100, "5% over its level after warm-up")
        } else {
            (64 * 1024, "64 MiB")
        };
        assert!(
            top <= bound,
            "{who}: resident memory up to {top} KiB, over {what}; anon {:?}, file {:?}",
            kib(|u| u.anon_kib),
            kib(|u| u.file_kib)
        );
    }

    // Nothing of ours left in the kernel.
    assert!(
        eventually(Duration::from_secs(10), || bpf_objects()
            .progs
            .values()
            .all(|p| !p.starts_with("insp_"))),
        "programs of ours left after both exited"
    );
}
