//! Drops: packets the kernel frees with a drop reason are counted per flow, device and reason
//! (tracepoint `skb:kfree_skb`), checked against the kernel's own counters for the same drops.
mod support;

use std::time::Duration;

use support::{BridgeLab, Inspector, json_lines};

/// Packet counter of the first rule of a chain (`iptables -L -v -x`).
fn rule_packets(ns: &support::Netns, chain: &str) -> u64 {
    let out = ns.exec(&["iptables", "-L", chain, "-v", "-x", "-n"]);
    out.lines()
        .nth(2)
        .and_then(|l| l.split_whitespace().next())
        .expect("rule line")
        .parse()
        .unwrap()
}

/// Drops from `tp_btf/kfree_skb` (where the kernel's BTF has it: here, and on 6.1).
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn drops_are_counted_per_flow_with_their_reason() {
    check_drops("dr", &[]);
}

/// The same from the classic `skb:kfree_skb` tracepoint (kernels without BTF).
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn drops_are_counted_per_flow_with_their_reason_classic_tracepoint() {
    check_drops("dk", &["--classic-drops"]);
}

/// c drops UDP to port 9999 by an iptables rule; 7 datagrams go from a to c's closed port 9
/// and 4 from b to 9999, under `inspector flows` with `extra` (`during` sees it running).
/// Returns its drop records and how much c's `Udp NoPorts` grew meanwhile.
fn drop_traffic(
    lab: &BridgeLab,
    extra: &[&str],
    during: impl FnOnce(&Inspector),
) -> (Vec<serde_json::Value>, u64) {
    lab.c.exec(&[
        "iptables", "-A", "INPUT", "-p", "udp", "--dport", "9999", "-j", "DROP",
    ]);
    let noports0 = support::udp_noports(&lab.c);
    let mut args = vec!["flows", "-o", "json", "--duration", "300"];
    for ns in lab.all() {
        args.extend(["--netns", ns.name.as_str()]);
    }
    args.extend(extra);
    let insp = Inspector::start(&args);
    during(&insp);
    inspector::traffic::udp_send(&lab.a.path(), "198.18.0.4:9".parse().unwrap(), 7, 32).unwrap();
    inspector::traffic::udp_send(&lab.b.path(), "198.18.0.4:9999".parse().unwrap(), 4, 32).unwrap();
    support::wait_quiet(&lab.all(), Duration::from_millis(300));
    let out = insp.interrupt_ok();
    (
        json_lines(&out.stdout, "drop"),
        support::udp_noports(&lab.c) - noports0,
    )
}

fn check_drops(tag: &str, extra: &[&str]) {
    let lab = BridgeLab::new(tag);
    let want = if extra.is_empty() {
        "insp_kfree_btf"
    } else {
        "insp_kfree_skb"
    };
    let (drops, noports) = drop_traffic(&lab, extra, |insp| {
        let held = support::held_objects(insp.pid());
        let progs = support::bpf_objects().progs;
        let names: Vec<&String> = held.progs.iter().filter_map(|id| progs.get(id)).collect();
        assert!(
            names.iter().any(|n| *n == want),
            "{want} not held: {names:?}"
        );
    });
    let find = |reason: &str, src: &str, dport: u64| -> u64 {
        drops
            .iter()
            .filter(|d| {
                d["reason"] == reason
                    && d["src"] == src
                    && d["dport"].as_u64() == Some(dport)
                    && d["proto"] == "udp"
            })
            .inspect(|d| {
                assert_eq!(
                    d["netns"].as_u64(),
                    Some(lab.c.inode()),
                    "dropped in c: {d}"
                );
                assert_eq!(d["ifname"], "eth0", "on c's eth0: {d}");
            })
            .map(|d| d["packets"].as_u64().unwrap())
            .sum()
    };
    let closed = find("NO_SOCKET", "198.18.0.2", 9);
    let firewalled = find("NETFILTER_DROP", "198.18.0.3", 9999);
    assert_eq!(
        closed, noports,
        "NO_SOCKET drops vs the kernel's Udp NoPorts: {drops:#?}"
    );
    assert_eq!(closed, 7);
    assert_eq!(
        firewalled,
        rule_packets(&lab.c, "INPUT"),
        "NETFILTER_DROP vs the DROP rule's counter"
    );
    assert_eq!(firewalled, 4);
}

/// With a pcap-filter expression, only the drops it matches are counted: the frames a rule
/// drops on input, against the rule's counter; the drops to the closed port, which it does
/// not match, are not counted (the kernel's `NoPorts` still counts them).
#[test]
#[ignore = "privileged: run with `cargo xtask test`"]
fn drops_follow_the_expression() {
    for (tag, extra) in [("dx", None), ("dy", Some("--classic-drops"))] {
        let lab = BridgeLab::new(tag);
        let mut args: Vec<&str> = extra.into_iter().collect();
        args.push("udp dst port 9999");
        let (drops, noports) = drop_traffic(&lab, &args, |_| {});
        let sum = |dport: u64| -> u64 {
            drops
                .iter()
                .filter(|d| d["dport"].as_u64() == Some(dport) && d["proto"] == "udp")
                .map(|d| d["packets"].as_u64().unwrap())
                .sum()
        };
        assert_eq!(noports, 7, "{extra:?}");
        assert_eq!(
            sum(9),
            0,
            "{extra:?}: drops the expression does not match: {drops:#?}"
        );
        assert_eq!(
            sum(9999),
            rule_packets(&lab.c, "INPUT"),
            "{extra:?}: {drops:#?}"
        );
        assert_eq!(sum(9999), 4, "{extra:?}");
    }
}
