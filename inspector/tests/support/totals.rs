//! The exact-counter check shared by the counters test and the kernel matrix's smoke suite:
//! the inspector's per-interface packet and byte totals equal the kernel's own interface
//! counters over the same window, on a bridge lab with ICMP, TCP and UDP.
use std::{collections::HashMap, net::SocketAddr, time::Duration};

use super::{BridgeLab, Counters, Inspector, counters, json_lines, wait_quiet};

/// Per (netns inode, ifname): (ingress packets, ingress bytes, egress packets, egress bytes).
fn totals(flows: &[serde_json::Value]) -> HashMap<(u64, String), [u64; 4]> {
    let mut m: HashMap<(u64, String), [u64; 4]> = HashMap::new();
    for f in flows {
        let key = (
            f["netns"].as_u64().unwrap(),
            f["ifname"].as_str().unwrap().to_owned(),
        );
        let e = m.entry(key).or_default();
        let (pkts, bytes) = (f["packets"].as_u64().unwrap(), f["bytes"].as_u64().unwrap());
        match f["direction"].as_str().unwrap() {
            "ingress" => {
                e[0] += pkts;
                e[1] += bytes;
            }
            "egress" => {
                e[2] += pkts;
                e[3] += bytes;
            }
            d => panic!("unknown direction {d}"),
        }
    }
    m
}

/// The ports of the many-flows part of the traffic.
const SPREAD: std::ops::Range<u16> = 20_000..22_000;

/// Runs `flows` (with `extra` flags) over a fresh bridge lab named after `tag` and checks
/// the totals of all seven interfaces against the kernel's counters.
pub fn check_totals(tag: &str, extra: &[&str]) {
    let lab = BridgeLab::new(tag);
    let nss = lab.all();
    // Every eth0 here is created straight in its namespace, so all get the same ifindex: the
    // programs cannot use their ifindex -> namespace shortcut and must read the namespace from
    // the device (the BTF path). The demo test covers the shortcut.
    let idx = |ns: &super::Netns| {
        ns.exec(&["ip", "-o", "link", "show", "dev", "eth0"])
            .split(':')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(idx(&lab.a), idx(&lab.b), "test premise: shared ifindex");
    let args: Vec<String> = ["flows", "-o", "json", "--duration", "300"]
        .iter()
        .map(|s| (*s).to_owned())
        .chain(
            nss.iter()
                .flat_map(|n| ["--netns".to_owned(), n.name.clone()]),
        )
        .chain(extra.iter().map(|s| (*s).to_owned()))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The window opens when the inspector is attached. Should anything (the kernel's own
    // chatter) slip between our baseline and the attach, the window is not clean: start again
    // (bounded).
    let mut attempt = 0;
    let (before, insp) = loop {
        attempt += 1;
        let c0 = wait_quiet(&nss, Duration::from_millis(300));
        let insp = Inspector::start(&args);
        let c1: Vec<_> = nss.iter().map(|n| counters(n)).collect();
        if c0 == c1 {
            break (c0, insp);
        }
        assert!(
            attempt < 10,
            "background traffic never stopped around the attach"
        );
        drop(insp);
    };

    // Bounded traffic: ICMP bridged and to the bridge's own address, TCP and UDP between pods.
    super::in_ns(
        &lab.a.name,
        &["ping", "-c", "5", "-i", "0.05", "-W", "2", "198.18.0.3"],
    );
    super::in_ns(
        &lab.c.name,
        &["ping", "-c", "3", "-i", "0.05", "-W", "2", "198.18.0.1"],
    );
    let got = inspector::traffic::tcp_transfer(
        &lab.c.path(),
        &lab.a.path(),
        "198.18.0.4:7001".parse::<SocketAddr>().unwrap(),
        300_000,
    )
    .expect("tcp transfer");
    assert_eq!(got, 300_000);
    let n = inspector::traffic::udp_burst(
        &lab.c.path(),
        &lab.b.path(),
        "198.18.0.4:7002".parse().unwrap(),
        200,
        64,
    )
    .expect("udp burst");
    assert_eq!(n, 200, "every datagram arrived");
    // Many flows at once: 2,000 ports, one datagram each, so that flows meet in the
    // kernel's per-CPU flow cache (1,024 slots) and move its counts into the table.
    inspector::traffic::udp_ports(&lab.a.path(), "198.18.0.4".parse().unwrap(), SPREAD, 32)
        .expect("udp to many ports");

    let after = wait_quiet(&nss, Duration::from_millis(500));
    let out = insp.interrupt();
    assert!(
        out.status.success(),
        "inspector failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let still = nss.iter().map(|n| counters(n)).collect::<Vec<_>>();
    assert_eq!(
        after, still,
        "traffic happened while the inspector was stopping; the window is not closed"
    );

    let flows = json_lines(&out.stdout, "flow");
    assert!(!flows.is_empty(), "no flows reported");
    let spread: std::collections::BTreeSet<u64> = flows
        .iter()
        .filter(|f| f["proto"] == "udp" && f["src"] == "198.18.0.2")
        .filter_map(|f| f["dport"].as_u64())
        .filter(|p| SPREAD.contains(&(*p as u16)))
        .collect();
    assert_eq!(spread.len(), SPREAD.len(), "a flow per port sent to");
    let got = totals(&flows);
    let mut checked = 0;
    for (i, ns) in nss.iter().enumerate() {
        for (ifname, a) in &after[i] {
            if ifname == "lo" {
                continue; // not attached by default
            }
            let b = before[i].get(ifname).copied().unwrap_or_default();
            let delta = Counters {
                rx_packets: a.rx_packets - b.rx_packets,
                rx_bytes: a.rx_bytes - b.rx_bytes,
                tx_packets: a.tx_packets - b.tx_packets,
                tx_bytes: a.tx_bytes - b.tx_bytes,
            };
            let seen = got
                .get(&(ns.inode(), ifname.clone()))
                .copied()
                .unwrap_or_default();
            // The bridge device counts received bytes after its Ethernet header was pulled;
            // tc sees whole frames. Every other device (veth here) counts whole frames.
            let rx_hdr = if ifname == "br0" { 14 * seen[0] } else { 0 };
            assert_eq!(
                (seen[0], seen[1] - rx_hdr, seen[2], seen[3]),
                (
                    delta.rx_packets,
                    delta.rx_bytes,
                    delta.tx_packets,
                    delta.tx_bytes
                ),
                "{}/{ifname}: inspector (rx pkts, rx bytes, tx pkts, tx bytes) != kernel counters",
                ns.name
            );
            assert!(
                delta.rx_packets + delta.tx_packets > 0,
                "{}/{ifname} saw no traffic: test is vacuous",
                ns.name
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 7, "three eth0, three bridge ports and the bridge");
}
