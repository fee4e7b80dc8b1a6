//! kube-proxy's iptables mode: the filter and nat tables as `iptables-restore` input.
use std::fmt::Write as _;

use super::{Config, LARGE_CLUSTER_ENDPOINTS, Service, probability, quote};
use crate::services::{port_proto_hash, sep_chain, spn as spn_of};

/// `iptables-restore` input: kube-proxy's filter and nat tables for `services`,
/// with the jumps from the built-in chains inserted first (as kube-proxy's `EnsureRule`
/// prepends them).
#[must_use]
pub fn iptables(services: &[Service], cfg: &Config) -> String {
    let total: usize = services
        .iter()
        .map(|s| s.endpoints.len() * s.ports.len())
        .sum();
    let comments = total <= LARGE_CLUSTER_ENDPOINTS;
    let mut filter = String::new();
    let mut nat_chains = String::new();
    let mut nat = String::new();
    let mut tail = String::new();
    for svc in services {
        for p in &svc.ports {
            let spn = spn_of(&svc.namespace, &svc.name, &p.name);
            let proto = p.protocol.as_str();
            let hash = port_proto_hash(&spn, proto);
            let (svc_chain, ext_chain) = (format!("KUBE-SVC-{hash}"), format!("KUBE-EXT-{hash}"));
            let vip = svc.cluster_ip;
            if svc.endpoints.is_empty() {
                let _ = writeln!(
                    filter,
                    "-A KUBE-SERVICES -m comment --comment {} -m {proto} -p {proto} -d {vip} --dport {} -j REJECT",
                    quote(&format!("{spn} has no endpoints")),
                    p.port
                );
                if let Some(np) = p.node_port {
                    let _ = writeln!(
                        filter,
                        "-A KUBE-EXTERNAL-SERVICES -m comment --comment {} -m addrtype --dst-type LOCAL -m {proto} -p {proto} --dport {np} -j REJECT",
                        quote(&format!("{spn} has no endpoints"))
                    );
                }
                continue;
            }
            let _ = writeln!(nat_chains, ":{svc_chain} - [0:0]");
            let _ = writeln!(
                nat,
                "-A KUBE-SERVICES -m comment --comment {} -m {proto} -p {proto} -d {vip} --dport {} -j {svc_chain}",
                quote(&format!("{spn} cluster IP")),
                p.port
            );
            if let Some(np) = p.node_port {
                let _ = writeln!(nat_chains, ":{ext_chain} - [0:0]");
                let _ = writeln!(
                    nat,
                    "-A KUBE-NODEPORTS -m comment --comment {spn} -m {proto} -p {proto} --dport {np} -j {ext_chain}"
                );
                let _ = writeln!(
                    nat,
                    "-A {ext_chain} -m comment --comment {} -j KUBE-MARK-MASQ",
                    quote(&format!(
                        "masquerade traffic for {spn} external destinations"
                    ))
                );
                let _ = writeln!(nat, "-A {ext_chain} -j {svc_chain}");
            }
            if let Some(cidr) = &cfg.cluster_cidr {
                let _ = writeln!(
                    nat,
                    "-A {svc_chain} -m comment --comment {} -m {proto} -p {proto} -d {vip} --dport {} ! -s {cidr} -j KUBE-MARK-MASQ",
                    quote(&format!("{spn} cluster IP")),
                    p.port
                );
            }
            let eps: Vec<(String, String)> = svc
                .endpoints
                .iter()
                .map(|ip| {
                    let ep = format!("{ip}:{}", p.target_port);
                    (sep_chain(&spn, proto, &ep), ep)
                })
                .collect();
            let ep_comment = |ep: &str| {
                if comments {
                    format!(" -m comment --comment {}", quote(&format!("{spn} -> {ep}")))
                } else {
                    String::new()
                }
            };
            if let Some(secs) = svc.affinity {
                for (sep, ep) in &eps {
                    let _ = writeln!(
                        nat,
                        "-A {svc_chain}{} -m recent --name {sep} --rcheck --seconds {secs} --reap -j {sep}",
                        ep_comment(ep)
                    );
                }
            }
            let n = eps.len();
            for (i, (sep, ep)) in eps.iter().enumerate() {
                if i + 1 < n {
                    let _ = writeln!(
                        nat,
                        "-A {svc_chain}{} -m statistic --mode random --probability {} -j {sep}",
                        ep_comment(ep),
                        probability(i, n)
                    );
                } else {
                    let _ = writeln!(nat, "-A {svc_chain}{} -j {sep}", ep_comment(ep));
                }
            }
            let sep_comment = if comments {
                format!(" -m comment --comment {}", quote(&spn))
            } else {
                String::new()
            };
            for ((sep, ep), ip) in eps.iter().zip(&svc.endpoints) {
                let _ = writeln!(nat_chains, ":{sep} - [0:0]");
                let _ = writeln!(nat, "-A {sep}{sep_comment} -s {ip} -j KUBE-MARK-MASQ");
                let recent = if svc.affinity.is_some() {
                    format!(" -m recent --name {sep} --set")
                } else {
                    String::new()
                };
                let _ = writeln!(
                    nat,
                    "-A {sep}{sep_comment}{recent} -m {proto} -p {proto} -j DNAT --to-destination {ep}"
                );
            }
        }
    }
    let _ = writeln!(
        tail,
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"
    );
    let mut out = String::new();
    out.push_str("*filter\n");
    for c in [
        "KUBE-NODEPORTS",
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-FIREWALL",
        "KUBE-FORWARD",
        "KUBE-PROXY-FIREWALL",
        "KUBE-PROXY-CANARY",
    ] {
        let _ = writeln!(out, ":{c} - [0:0]");
    }
    // Jumps from the built-in chains, prepended in reverse so they end up in kube-proxy's order.
    for (chain, rules) in [
        (
            "INPUT",
            &[
                "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL",
                "-m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS",
                "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES",
                "-j KUBE-FIREWALL",
            ][..],
        ),
        (
            "FORWARD",
            &[
                "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL",
                "-m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD",
                "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
                "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES",
            ][..],
        ),
        (
            "OUTPUT",
            &[
                "-m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL",
                "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
                "-j KUBE-FIREWALL",
            ][..],
        ),
    ] {
        for r in rules.iter().rev() {
            let _ = writeln!(out, "-I {chain} 1 {r}");
        }
    }
    out.push_str(&filter);
    out.push_str("-A KUBE-FIREWALL -m comment --comment \"block incoming localnet connections\" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP\n");
    out.push_str("-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n");
    out.push_str("-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT\n");
    out.push_str("-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n");
    out.push_str("COMMIT\n*nat\n");
    for c in [
        "KUBE-NODEPORTS",
        "KUBE-SERVICES",
        "KUBE-MARK-MASQ",
        "KUBE-POSTROUTING",
        "KUBE-PROXY-CANARY",
    ] {
        let _ = writeln!(out, ":{c} - [0:0]");
    }
    out.push_str(&nat_chains);
    out.push_str(
        "-I PREROUTING 1 -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n",
    );
    out.push_str(
        "-I OUTPUT 1 -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n",
    );
    out.push_str("-I POSTROUTING 1 -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n");
    out.push_str("-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n");
    out.push_str("-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n");
    out.push_str("-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n");
    out.push_str("-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n");
    out.push_str(&nat);
    out.push_str(&tail);
    out.push_str("COMMIT\n");
    out
}
