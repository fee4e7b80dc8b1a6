//! The kernel matrix's smoke suite (`cargo xtask vmtest`): the same checks on the host kernel
//! (TCX), on the host kernel forced to legacy tc (`INSPECTOR_SMOKE_ATTACH=tc`), and inside
//! qemu on Debian 12's Linux 6.1 (no TCX: legacy tc picked by itself), against the release
//! binary (`INSPECTOR_BIN`). Oracles: the kernel's interface counters, `Udp: NoPorts`,
//! bpftool, `tc`, /proc/PID/fdinfo.
mod support;

use std::time::Duration;

use support::{BridgeLab, Inspector, Netns, bpf_objects, eventually, held_objects, json_lines};

/// `--attach` as the matrix cell asks (nothing: the inspector picks).
fn attach_args() -> Vec<&'static str> {
    match std::env::var("INSPECTOR_SMOKE_ATTACH").as_deref() {
        Ok("tc") => vec!["--attach", "tc"],
        Ok("tcx") => vec!["--attach", "tcx"],
        _ => Vec::new(),
    }
}

fn status() -> serde_json::Value {
    let out = support::run_inspector(&["status", "-o", "json"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_lines(&out.stdout, "status")
        .pop()
        .expect("a status record")
}

fn feature(s: &serde_json::Value, name: &str) -> bool {
    s["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no feature {name}: {s}"))["ok"]
        == true
}

/// `head`, `--netns N` per namespace, and the cell's `--attach`.
fn argv(head: &[&str], nss: &[&Netns]) -> Vec<String> {
    head.iter()
        .chain(attach_args().iter())
        .map(|s| (*s).to_owned())
        .chain(
            nss.iter()
                .flat_map(|n| ["--netns".to_owned(), n.name.clone()]),
        )
        .collect()
}

fn start(head: &[&str], nss: &[&Netns]) -> Inspector {
    let args = argv(head, nss);
    Inspector::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn smoke_status_says_what_this_kernel_gives() {
    let s = status();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(s["kernel"], release.trim());
    assert_eq!(s["privileges"], "ok");
    let per_device = if feature(&s, "tcx") { "tcx" } else { "tc" };
    // Flows and trace count with the global hooks; per-hop timing attaches per device.
    assert_eq!(
        s["attach"],
        format!("global (per-hop timing: {per_device})"),
        "{s}"
    );
    for f in [
        "btf",
        "global-hooks",
        "btf-offsets",
        "tc-legacy",
        "ringbuf",
        "tracefs",
        "no-kprobe-fentry",
    ] {
        assert!(feature(&s, f), "{f} missing: {s}");
    }
    // The table, for the matrix's log.
    let out = support::run_inspector(&["status"], &[]);
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn smoke_flows_equal_interface_counters() {
    support::totals::check_totals("sm", &attach_args());
}

/// The filter tests' traffic from a to c: 3 pings, 5 datagrams to port 7102, 10 to 7100;
/// then `insp`'s output once the lab is quiet.
fn filter_traffic(lab: &BridgeLab, insp: Inspector) -> std::process::Output {
    support::in_ns(
        &lab.a.name,
        &["ping", "-c", "3", "-i", "0.1", "-W", "2", "198.18.0.4"],
    );
    let dst = |p: u16| std::net::SocketAddr::from(([198, 18, 0, 4], p));
    inspector::traffic::udp_burst(&lab.c.path(), &lab.a.path(), dst(7102), 5, 64).unwrap();
    let n = inspector::traffic::udp_burst(&lab.c.path(), &lab.a.path(), dst(7100), 10, 64).unwrap();
    assert_eq!(n, 10);
    support::wait_quiet(&lab.all(), Duration::from_millis(300));
    insp.interrupt_ok()
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn smoke_trace_filters_in_the_kernel() {
    let lab = BridgeLab::new("st");
    let insp = start(
        &["trace", "-o", "json", "--proto", "udp", "--port", "7100"],
        &[&lab.a, &lab.br],
    );
    // Noise the filter must drop in the kernel: ICMP, and UDP to another port.
    let out = filter_traffic(&lab, insp);
    let pkts = json_lines(&out.stdout, "packet");
    // 10 datagrams at three hooks: a/eth0 out, br/va in, br/vc out.
    assert_eq!(pkts.len(), 30, "{pkts:#?}");
    assert!(
        pkts.iter()
            .all(|p| p["proto"] == "udp" && p["dport"] == 7100)
    );
}

/// A pcap-filter expression, translated into the kernel's programs (this kernel's verifier
/// must take it): only what it matches becomes an event, and `events_sent` says so.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn smoke_expression_filters_in_the_kernel() {
    let lab = BridgeLab::new("sx");
    let insp = start(
        &[
            "trace",
            "-o",
            "json",
            "udp dst port 7100 or (icmp and icmp[icmptype] = icmp-echo and len > 90)",
        ],
        &[&lab.a, &lab.br],
    );
    let out = filter_traffic(&lab, insp);
    let pkts = json_lines(&out.stdout, "packet");
    // 10 datagrams and 3 echo requests (98-byte frames), each at three hooks; no replies,
    // no ARP, no datagram to 7102.
    let udp = pkts
        .iter()
        .filter(|p| p["proto"] == "udp" && p["dport"] == 7100)
        .count();
    let echo = pkts.iter().filter(|p| p["proto"] == "icmp").count();
    assert_eq!((udp, echo, pkts.len()), (30, 9, 39), "{pkts:#?}");
    let stats = json_lines(&out.stdout, "stats");
    assert_eq!(stats[0]["events_sent"].as_u64(), Some(39), "{stats:?}");
}

/// The Internet checksum of `b` (0 when `b` holds its own, correct, checksum).
fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// `trace -w` keeps whole packets (this kernel's verifier must take the whole-packet path):
/// 1442-byte pings are in the file whole, their IPv4 and ICMP checksums (computed by the
/// sender's stack over every byte) correct.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn smoke_capture_keeps_whole_packets() {
    let lab = BridgeLab::new("sw");
    let file = std::env::temp_dir().join(format!("{}.pcapng", support::unique("sw")));
    let f = file.to_str().unwrap();
    let insp = start(&["trace", "-q", "-w", f, "icmp"], &[&lab.a]);
    support::in_ns(
        &lab.a.name,
        &[
            "ping",
            "-c",
            "3",
            "-i",
            "0.1",
            "-s",
            "1400",
            "-W",
            "2",
            "198.18.0.4",
        ],
    );
    support::wait_quiet(&lab.all(), Duration::from_millis(300));
    let out = insp.interrupt_ok();
    let pkts = support::pcap::pcapng_packets(&std::fs::read(&file).unwrap());
    let _ = std::fs::remove_file(&file);
    // 3 requests out of a/eth0, 3 replies in.
    assert_eq!(pkts.len(), 6, "{}", String::from_utf8_lossy(&out.stderr));
    for p in &pkts {
        let d = &p.frame.data;
        assert_eq!((d.len(), p.frame.len), (1442, 1442), "whole frame");
        assert_eq!(checksum(&d[14..34]), 0, "IPv4 header checksum");
        assert_eq!(checksum(&d[34..]), 0, "ICMP checksum over all 1408 bytes");
    }
}

/// A workload selector (this kernel's verifier must take the selection code): a pod that
/// does not exist selects nothing, so the kernel sends no event, while flows still count.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn smoke_selector_sends_nothing_unselected() {
    let lab = BridgeLab::new("sp");
    let insp = start(
        &["trace", "-o", "json", "--pod", "nowhere/nobody-0"],
        &[&lab.a, &lab.br],
    );
    let out = filter_traffic(&lab, insp);
    assert!(json_lines(&out.stdout, "packet").is_empty());
    let stats = json_lines(&out.stdout, "stats");
    assert_eq!(stats[0]["events_sent"].as_u64(), Some(0), "{stats:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no workload matches the selectors yet"),
        "{err}"
    );
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn smoke_drops_have_their_reason() {
    let lab = BridgeLab::new("sd");
    let noports = support::udp_noports(&lab.c);
    let insp = start(&["flows", "-o", "json", "--duration", "300"], &lab.all());
    inspector::traffic::udp_send(&lab.a.path(), "198.18.0.4:9".parse().unwrap(), 7, 32).unwrap();
    support::wait_quiet(&lab.all(), Duration::from_millis(300));
    let out = insp.interrupt_ok();
    let closed: u64 = json_lines(&out.stdout, "drop")
        .iter()
        .filter(|d| d["reason"] == "NO_SOCKET" && d["dport"] == 9 && d["ifname"] == "eth0")
        .map(|d| d["packets"].as_u64().unwrap())
        .sum();
    assert_eq!(closed, 7);
    assert_eq!(
        closed,
        support::udp_noports(&lab.c) - noports,
        "vs Udp NoPorts"
    );
}

/// The stack's tracepoints (`tp_btf`) load and time their hops: `trace --hops` names
/// `net_dev_queue`, `net_dev_start_xmit` and `netif_receive_skb` on the path.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn smoke_stack_tracepoints_time_their_hops() {
    let lab = BridgeLab::new("sh");
    let insp = start(
        &["trace", "--hops", "-o", "json", "--proto", "icmp"],
        &[&lab.a, &lab.br],
    );
    support::in_ns(
        &lab.a.name,
        &["ping", "-c", "2", "-i", "0.2", "-W", "2", "198.18.0.3"],
    );
    let ok = insp.wait_json(Duration::from_secs(30), |r| {
        r.iter().filter(|p| p["type"] == "packet_hops").count() >= 4
    });
    let said = insp.stderr_text();
    let out = insp.interrupt_ok();
    assert!(ok, "{said}");
    assert!(!said.contains("is not traced"), "{said}");
    let hooks: std::collections::BTreeSet<String> = json_lines(&out.stdout, "packet_hops")
        .iter()
        .flat_map(|p| support::hop_names(p, "hook"))
        .filter_map(|h| h.rsplit('/').next().map(str::to_owned))
        .collect();
    for h in [
        "net_dev_queue",
        "net_dev_start_xmit",
        "netif_receive_skb",
        "tc-egress",
    ] {
        assert!(hooks.contains(h), "no {h} hop: {hooks:?}");
    }
}

/// A foreign `clsact` and classic-BPF filter (handle 7, our priority) on a's eth0.
fn foreign(lab: &BridgeLab) {
    lab.a.exec(&["tc", "qdisc", "add", "dev", "eth0", "clsact"]);
    support::foreign_bpf_filter(&lab.a, "eth0", "ingress", "1");
}

/// Nothing of ours on any interface of the lab; the foreign qdisc and filter intact.
fn nothing_of_ours(lab: &BridgeLab) {
    for (ns, dev) in [
        (&lab.a, "eth0"),
        (&lab.b, "eth0"),
        (&lab.c, "eth0"),
        (&lab.br, "br0"),
        (&lab.br, "va"),
    ] {
        for hook in ["ingress", "egress"] {
            let f = ns.exec(&["tc", "filter", "show", "dev", dev, hook]);
            assert!(!f.contains("insp_"), "{}/{dev} {hook}: {f}", ns.name);
        }
        let q = ns.exec(&["tc", "qdisc", "show", "dev", dev]);
        assert_eq!(
            q.contains("clsact"),
            dev == "eth0" && ns.name == lab.a.name,
            "{q}"
        );
    }
    let f = lab
        .a
        .exec(&["tc", "filter", "show", "dev", "eth0", "ingress"]);
    assert!(f.contains("handle 0x7"), "the foreign filter went: {f}");
}

fn signal_leaves_nothing(tag: &str, sig: i32) {
    let lab = BridgeLab::new(tag);
    foreign(&lab);
    let insp = start(&["flows", "--duration", "300", "-q"], &lab.all());
    let held = held_objects(insp.pid());
    assert!(held.progs.len() >= 3, "{held:?}");
    let _ = insp.signal(sig);
    if sig == libc::SIGKILL {
        let mut clean = vec!["cleanup"];
        for n in lab.all() {
            clean.extend(["--netns", n.name.as_str()]);
        }
        let out = support::run_inspector(&clean, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let gone = eventually(Duration::from_secs(20), || {
        let o = bpf_objects();
        held.progs.iter().all(|id| !o.progs.contains_key(id))
            && held.maps.iter().all(|id| !o.maps.contains_key(id))
            && held.links.iter().all(|id| !o.links.contains_key(id))
    });
    assert!(
        gone,
        "after signal {sig}: programs, maps or links of ours remain"
    );
    nothing_of_ours(&lab);
    support::in_ns(&lab.a.name, &["ping", "-c", "1", "-W", "2", "198.18.0.3"]);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn smoke_sigint_leaves_nothing() {
    signal_leaves_nothing("si", libc::SIGINT);
}

#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn smoke_sigkill_then_cleanup_leaves_nothing() {
    signal_leaves_nothing("sk", libc::SIGKILL);
}

/// `--attach tcx` runs where the kernel has TCX, and is a one-line error naming the kernel
/// and the alternative where it has not, attaching nothing.
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn smoke_attach_tcx_only_where_the_kernel_has_it() {
    let lab = BridgeLab::new("sx");
    let out = support::run_inspector(
        &[
            "flows",
            "--attach",
            "tcx",
            "--duration",
            "1",
            "--netns",
            &lab.a.name,
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    if feature(&status(), "tcx") {
        assert!(out.status.success(), "{err}");
    } else {
        assert!(!out.status.success());
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains("has no TCX") && err.contains("--attach tc"),
            "{err}"
        );
        let q = lab.a.exec(&["tc", "qdisc", "show", "dev", "eth0"]);
        assert!(!q.contains("clsact"), "{q}");
    }
}
