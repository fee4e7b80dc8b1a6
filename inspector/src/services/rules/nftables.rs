//! kube-proxy's nftables mode: the table `ip kube-proxy` as an `nft -f` script.
use std::{fmt::Write as _, net::Ipv4Addr};

use super::{Config, Service};
use crate::services::{nft_endpoint_base, nft_service_base, spn as spn_of};

/// `nft -f` input: kube-proxy's table `ip kube-proxy` for `services` (created fresh).
#[must_use]
pub fn nftables(services: &[Service], cfg: &Config) -> String {
    const T: &str = "ip kube-proxy";
    let mut o = String::new();
    let _ = writeln!(o, "add table {T} {{ comment \"rules for kube-proxy\" ; }}");
    for c in [
        "mark-for-masquerade",
        "masquerading",
        "services",
        "service-endpoints-check",
        "nodeport-endpoints-check",
        "firewall-check",
        "cluster-ips-check",
    ] {
        let _ = writeln!(o, "add chain {T} {c}");
    }
    let _ = writeln!(
        o,
        "add chain {T} reject-chain {{ comment \"helper for @no-endpoint-services / @no-endpoint-nodeports\" ; }}"
    );
    let _ = writeln!(o, "add rule {T} reject-chain reject");
    for (name, ty, hook, prio) in [
        ("filter-prerouting", "filter", "prerouting", -110),
        ("filter-input", "filter", "input", -110),
        ("filter-forward", "filter", "forward", -110),
        ("filter-output", "filter", "output", -110),
        ("filter-output-post-dnat", "filter", "output", -90),
        ("nat-prerouting", "nat", "prerouting", -100),
        ("nat-output", "nat", "output", -100),
        ("nat-postrouting", "nat", "postrouting", 100),
    ] {
        let _ = writeln!(
            o,
            "add chain {T} {name} {{ type {ty} hook {hook} priority {prio} ; }}"
        );
    }
    let _ = writeln!(
        o,
        "add set {T} cluster-ips {{ type ipv4_addr ; comment \"Active ClusterIPs\" ; }}"
    );
    for (name, key, comment) in [
        (
            "service-ips",
            "ipv4_addr . inet_proto . inet_service",
            "ClusterIP, ExternalIP and LoadBalancer IP traffic",
        ),
        (
            "service-nodeports",
            "inet_proto . inet_service",
            "NodePort traffic",
        ),
        (
            "no-endpoint-services",
            "ipv4_addr . inet_proto . inet_service",
            "vmap to drop or reject packets to services with no endpoints",
        ),
        (
            "no-endpoint-nodeports",
            "inet_proto . inet_service",
            "vmap to drop or reject packets to service nodeports with no endpoints",
        ),
        (
            "firewall-ips",
            "ipv4_addr . inet_proto . inet_service",
            "destinations that are subject to LoadBalancerSourceRanges",
        ),
    ] {
        let _ = writeln!(
            o,
            "add map {T} {name} {{ type {key} : verdict ; comment \"{comment}\" ; }}"
        );
    }
    for r in [
        "filter-prerouting ct state new jump firewall-check",
        "filter-input ct state new jump nodeport-endpoints-check",
        "filter-input ct state new jump service-endpoints-check",
        "filter-forward ct state new jump service-endpoints-check",
        "filter-forward ct state new jump cluster-ips-check",
        "filter-output ct state new jump service-endpoints-check",
        "filter-output ct state new jump firewall-check",
        "filter-output-post-dnat ct state new jump cluster-ips-check",
        "nat-output jump services",
        "nat-postrouting jump masquerading",
        "nat-prerouting jump services",
        "mark-for-masquerade mark set mark or 0x4000",
        "masquerading mark and 0x4000 == 0 return",
        "masquerading mark set mark xor 0x4000",
        "masquerading masquerade fully-random",
        "services ip daddr . meta l4proto . th dport vmap @service-ips",
        "services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports",
        "service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
        "nodeport-endpoints-check ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports",
        "firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips",
        "cluster-ips-check ip daddr @cluster-ips reject comment \"Reject traffic to invalid ports of ClusterIPs\"",
    ] {
        let _ = writeln!(o, "add rule {T} {r}");
    }
    if let Some(cidr) = &cfg.service_cidr {
        let _ = writeln!(
            o,
            "add rule {T} cluster-ips-check ip daddr {{ {cidr} }} drop comment \"Drop traffic to unallocated ClusterIPs\""
        );
    }
    for svc in services {
        let _ = writeln!(o, "add element {T} cluster-ips {{ {} }}", svc.cluster_ip);
        for p in &svc.ports {
            let proto = p.protocol.as_str();
            let spn = spn_of(&svc.namespace, &svc.name, &p.name);
            let vip = svc.cluster_ip;
            if svc.endpoints.is_empty() {
                let _ = writeln!(
                    o,
                    "add element {T} no-endpoint-services {{ {vip} . {proto} . {} comment \"{spn}\" : goto reject-chain }}",
                    p.port
                );
                if let Some(np) = p.node_port {
                    let _ = writeln!(
                        o,
                        "add element {T} no-endpoint-nodeports {{ {proto} . {np} comment \"{spn}\" : goto reject-chain }}"
                    );
                }
                continue;
            }
            let base = nft_service_base(&svc.namespace, &svc.name, proto, &p.name);
            let svc_chain = format!("service-{base}");
            let _ = writeln!(o, "add chain {T} {svc_chain}");
            if let Some(cidr) = &cfg.cluster_cidr {
                let _ = writeln!(
                    o,
                    "add rule {T} {svc_chain} ip daddr {vip} {proto} dport {} ip saddr != {cidr} jump mark-for-masquerade",
                    p.port
                );
            }
            let eps: Vec<(String, Ipv4Addr)> = svc
                .endpoints
                .iter()
                .map(|ip| {
                    (
                        nft_endpoint_base(
                            &svc.namespace,
                            &svc.name,
                            proto,
                            &p.name,
                            *ip,
                            p.target_port,
                        ),
                        *ip,
                    )
                })
                .collect();
            for (eb, ip) in &eps {
                let _ = writeln!(o, "add chain {T} endpoint-{eb}");
                let _ = writeln!(
                    o,
                    "add rule {T} endpoint-{eb} ip saddr {ip} jump mark-for-masquerade"
                );
                if let Some(secs) = svc.affinity {
                    let _ = writeln!(
                        o,
                        "add set {T} affinity-{eb} {{ type ipv4_addr ; flags dynamic,timeout ; timeout {secs}s ; }}"
                    );
                    let _ = writeln!(
                        o,
                        "add rule {T} endpoint-{eb} update @affinity-{eb} {{ ip saddr }}"
                    );
                }
                let _ = writeln!(
                    o,
                    "add rule {T} endpoint-{eb} meta l4proto {proto} dnat to {ip}:{}",
                    p.target_port
                );
            }
            if svc.affinity.is_some() {
                for (eb, _) in &eps {
                    let _ = writeln!(
                        o,
                        "add rule {T} {svc_chain} ip saddr @affinity-{eb} goto endpoint-{eb}"
                    );
                }
            }
            let slots = eps
                .iter()
                .enumerate()
                .map(|(i, (eb, _))| format!("{i} : goto endpoint-{eb}"))
                .collect::<Vec<_>>()
                .join(" , ");
            let _ = writeln!(
                o,
                "add rule {T} {svc_chain} numgen random mod {} vmap {{ {slots} }}",
                eps.len()
            );
            let _ = writeln!(
                o,
                "add element {T} service-ips {{ {vip} . {proto} . {} : goto {svc_chain} }}",
                p.port
            );
            if let Some(np) = p.node_port {
                let ext = format!("external-{base}");
                let _ = writeln!(o, "add chain {T} {ext}");
                let _ = writeln!(o, "add rule {T} {ext} jump mark-for-masquerade");
                let _ = writeln!(o, "add rule {T} {ext} goto {svc_chain}");
                let _ = writeln!(
                    o,
                    "add element {T} service-nodeports {{ {proto} . {np} : goto {ext} }}"
                );
            }
        }
    }
    o
}
