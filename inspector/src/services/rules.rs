//! The rules kube-proxy writes for a set of Services, in its own structure: chain names from
//! its hashes, its comments, its rule order, its masquerade mark (0x4000), probabilities
//! formatted `%0.10f`, `recent` affinity lists / nft affinity sets, REJECT for services
//! without endpoints. (DATAPATHS.md §2-3 documents each rule and where it comes from.)
//! iptables mode produces `iptables-restore` input (built-in chains' jumps inserted first); nftables mode an `nft -f` script
//! for the table `ip kube-proxy`.
use std::{fmt::Write as _, net::Ipv4Addr};

use super::{nft_endpoint_base, nft_service_base, port_proto_hash, sep_chain, spn as spn_of};

/// One port of a Service.
#[derive(Clone, Debug)]
pub struct Port {
    /// Empty for an unnamed port.
    pub name: String,
    pub port: u16,
    pub target_port: u16,
    /// "tcp" or "udp".
    pub protocol: String,
    pub node_port: Option<u16>,
}

/// A Service with its ready endpoints (pod addresses).
#[derive(Clone, Debug)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub cluster_ip: Ipv4Addr,
    pub ports: Vec<Port>,
    /// `ClientIP` affinity timeout in seconds (None: no affinity).
    pub affinity: Option<u32>,
    pub endpoints: Vec<Ipv4Addr>,
}

/// Node-wide settings kube-proxy takes from its flags.
#[derive(Clone, Debug)]
pub struct Config {
    /// `--cluster-cidr` (local-traffic detector): `ClusterIP` traffic from outside it is
    /// masqueraded. None: no such rule.
    pub cluster_cidr: Option<String>,
    /// The `ServiceCIDR` (nftables mode drops traffic to unallocated `ClusterIPs` in it).
    pub service_cidr: Option<String>,
}

/// Above this many endpoints in total, kube-proxy leaves out the per-endpoint comments.
pub const LARGE_CLUSTER_ENDPOINTS: usize = 1000;

fn quote(c: &str) -> String {
    format!("\"{c}\"")
}

/// kube-proxy's probability string for rule `i` of `n`.
fn probability(i: usize, n: usize) -> String {
    #[expect(clippy::cast_precision_loss, reason = "endpoint counts are small")]
    let p = 1.0 / (n - i) as f64;
    format!("{p:0.10}")
}

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

/// `count` generated Services named `scale/svc-N`, tcp port 80, `ClusterIPs` from
/// `vip_base` and `per` endpoints each from `ep_base` (nothing listens there: they exist to
/// make the rule set as large as a big cluster's).
#[must_use]
pub fn generated(count: usize, per: usize, vip_base: Ipv4Addr, ep_base: Ipv4Addr) -> Vec<Service> {
    (0..count)
        .map(|i| {
            let vip = Ipv4Addr::from(u32::from(vip_base) + u32::try_from(i).unwrap_or(0));
            Service {
                namespace: "scale".into(),
                name: format!("svc-{i}"),
                cluster_ip: vip,
                ports: vec![Port {
                    name: "http".into(),
                    port: 80,
                    target_port: 8080,
                    protocol: "tcp".into(),
                    node_port: None,
                }],
                affinity: None,
                // Endpoints cycle through a /17 from `ep_base` (Services may share pods).
                endpoints: (0..per)
                    .map(|j| {
                        Ipv4Addr::from(
                            u32::from(ep_base) + u32::try_from((i * per + j) % 32_768).unwrap_or(0),
                        )
                    })
                    .collect(),
            }
        })
        .collect()
}
