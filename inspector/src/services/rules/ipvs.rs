//! What kube-proxy's IPVS proxier (`pkg/proxy/ipvs`) puts on a node for a set of Services:
//! one virtual server per Service port on its `ClusterIP` and, for a `NodePort`, on each node
//! address (scheduler `rr`, `ClientIP` affinity as persistence with its timeout), each
//! endpoint a masquerading real server of weight 1; the `ClusterIPs` bound to the dummy
//! `kube-ipvs0` (so they are local and IPVS, at `LOCAL_IN`, sees them); the ipsets
//! `KUBE-CLUSTER-IP`, `KUBE-NODE-PORT-TCP`/`-UDP` and `KUBE-LOOP-BACK`; and the few iptables
//! rules IPVS mode keeps (mark for masquerade what comes from outside the cluster CIDR or
//! to a `NodePort`, masquerade the marked and hairpin traffic, accept `ClusterIP` traffic
//! in FORWARD). Three inputs: `ipvsadm-restore`, `ipset restore`, `iptables-restore`.
use std::{collections::BTreeSet, fmt::Write as _, net::Ipv4Addr};

use super::{Config, Service};

/// The inputs for `ipvsadm-restore`, `ipset restore` and `iptables-restore`.
pub struct IpvsRules {
    pub ipvsadm: String,
    pub ipset: String,
    pub iptables: String,
}

fn flag(protocol: &str) -> &'static str {
    match protocol {
        "udp" => "-u",
        "sctp" => "--sctp-service",
        _ => "-t",
    }
}

/// The `ClusterIPs` to bind to `kube-ipvs0`.
#[must_use]
pub fn cluster_ips(services: &[Service]) -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = services.iter().map(|s| s.cluster_ip).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// kube-proxy's IPVS state for `services`, with `NodePorts` on `node_ips`.
#[must_use]
pub fn ipvs(services: &[Service], cfg: &Config, node_ips: &[Ipv4Addr]) -> IpvsRules {
    let mut adm = String::new();
    // Set members once each (Services sharing endpoints and ports share members).
    let mut members: BTreeSet<String> = BTreeSet::new();
    for s in services {
        for p in &s.ports {
            let mut frontends = vec![(s.cluster_ip, p.port)];
            if let Some(np) = p.node_port {
                frontends.extend(node_ips.iter().map(|ip| (*ip, np)));
                members.insert(format!(
                    "add KUBE-NODE-PORT-{} {np}\n",
                    p.protocol.to_uppercase()
                ));
            }
            members.insert(format!(
                "add KUBE-CLUSTER-IP {},{}:{}\n",
                s.cluster_ip, p.protocol, p.port
            ));
            for (ip, port) in frontends {
                let persist = s.affinity.map(|t| format!(" -p {t}")).unwrap_or_default();
                let _ = writeln!(adm, "-A {} {ip}:{port} -s rr{persist}", flag(&p.protocol));
                for ep in &s.endpoints {
                    let _ = writeln!(
                        adm,
                        "-a {} {ip}:{port} -r {ep}:{} -m -w 1",
                        flag(&p.protocol),
                        p.target_port
                    );
                }
            }
            for ep in &s.endpoints {
                members.insert(format!(
                    "add KUBE-LOOP-BACK {ep},{}:{},{ep}\n",
                    p.protocol, p.target_port
                ));
            }
        }
    }
    let ipset = format!(
        "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536\n\
         create KUBE-LOOP-BACK hash:ip,port,ip family inet hashsize 1024 maxelem 65536\n\
         create KUBE-NODE-PORT-TCP bitmap:port range 0-65535\n\
         create KUBE-NODE-PORT-UDP bitmap:port range 0-65535\n\
         {}",
        members.into_iter().collect::<String>()
    );
    let from_outside = cfg
        .cluster_cidr
        .as_ref()
        .map(|c| {
            format!(
                "-A KUBE-SERVICES ! -s {c} -m comment --comment \"Kubernetes service cluster ip + \
                 port for masquerade purpose\" -m set --match-set KUBE-CLUSTER-IP dst,dst -j \
                 KUBE-MARK-MASQ\n"
            )
        })
        .unwrap_or_default();
    let iptables = format!(
        "*nat\n\
         :KUBE-SERVICES - [0:0]\n\
         :KUBE-POSTROUTING - [0:0]\n\
         :KUBE-NODE-PORT - [0:0]\n\
         :KUBE-LOAD-BALANCER - [0:0]\n\
         :KUBE-MARK-MASQ - [0:0]\n\
         -I PREROUTING 1 -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -I OUTPUT 1 -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -I POSTROUTING 1 -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
         -A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n\
         -A KUBE-POSTROUTING -m comment --comment \"Kubernetes endpoints dst ip:port, source ip for \
         solving hairpin purpose\" -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE\n\
         -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n\
         -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j \
         MASQUERADE\n\
         -A KUBE-NODE-PORT -p tcp -m comment --comment \"Kubernetes nodeport TCP port for \
         masquerade purpose\" -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ\n\
         -A KUBE-NODE-PORT -p udp -m comment --comment \"Kubernetes nodeport UDP port for \
         masquerade purpose\" -m set --match-set KUBE-NODE-PORT-UDP dst -j KUBE-MARK-MASQ\n\
         {from_outside}\
         -A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT\n\
         -A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT\n\
         COMMIT\n\
         *filter\n\
         :KUBE-FORWARD - [0:0]\n\
         -I FORWARD 1 -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n\
         -A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark \
         0x4000/0x4000 -j ACCEPT\n\
         -A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m \
         conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         COMMIT\n"
    );
    IpvsRules {
        ipvsadm: adm,
        ipset,
        iptables,
    }
}
