//! `inspector explain`: a workload's network mode explained with the live kernel objects
//! that make it (namespace, veth pair, bridge, routes, the iptables rules that mention it)
//! and the hops a packet takes - to another workload on the bridge, out of the node
//! (MASQUERADE), into a published port (DNAT) - named as the inspector observes them.
use std::net::IpAddr;

use serde::Serialize;

use crate::{
    identity::{
        Identity, Workload,
        map::{self, InterfaceView, WorkloadView},
    },
    topology::{LinkKind, Topology},
};

/// One hook on the way, as `inspector flows --paths` would show it.
#[derive(Clone, Debug, Serialize)]
pub struct ExplainedHop {
    pub netns_name: String,
    pub ifname: String,
    pub ifindex: u32,
    pub direction: &'static str,
    /// What happens there, for people.
    pub note: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct PathView {
    /// "to another workload on the bridge", "out of the node", "into a published port",
    /// "over loopback".
    pub name: String,
    pub summary: String,
    pub hops: Vec<ExplainedHop>,
    /// The rules that decide this path (table, rule), as iptables-save prints them.
    pub rules: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    pub workload: WorkloadView,
    /// What the mode is, in one paragraph, with this workload's objects filled in.
    pub mode: String,
    /// Every iptables rule in the bridge's namespace that names the workload's address,
    /// subnet or bridge.
    pub rules: Vec<String>,
    pub paths: Vec<PathView>,
}

fn hop(
    netns: &str,
    i: &str,
    ifindex: u32,
    dir: &'static str,
    note: impl Into<String>,
) -> ExplainedHop {
    ExplainedHop {
        netns_name: netns.to_owned(),
        ifname: i.to_owned(),
        ifindex,
        direction: dir,
        note: note.into(),
    }
}

/// `iptables-save` of a namespace, each rule prefixed with its table ("nat: -A ...").
fn rules_in(ns_path: &std::path::Path) -> Vec<String> {
    let Ok(out) =
        crate::sys::netns::command_in(ns_path, "iptables-save").and_then(|mut c| c.output())
    else {
        return Vec::new();
    };
    let mut table = String::new();
    let mut v = Vec::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(t) = l.strip_prefix('*') {
            t.clone_into(&mut table);
        } else if l.starts_with("-A ") {
            v.push(format!("{table}: {l}"));
        }
    }
    v
}

fn in_subnet(ip: IpAddr, cidr: &str) -> bool {
    let Some((net, len)) = cidr.split_once('/') else {
        return false;
    };
    match (ip, net.parse::<IpAddr>(), len.parse::<u32>()) {
        (IpAddr::V4(a), Ok(IpAddr::V4(n)), Ok(l)) if l <= 32 => {
            let m = if l == 0 { 0 } else { u32::MAX << (32 - l) };
            u32::from(a) & m == u32::from(n) & m
        }
        _ => false,
    }
}

/// Explains `w` with the node as `topo` shows it.
#[must_use]
pub fn explain(identity: &Identity, topo: &Topology, w: &Workload) -> Explanation {
    let view = map::build(identity, topo)
        .into_iter()
        .find(|v| v.id == w.id)
        .unwrap_or_else(|| {
            map::build(&Identity::new(vec![w.clone()]), topo)
                .pop()
                .expect("one workload, one view")
        });
    let mode = w.network_mode.clone().unwrap_or_default();
    let ns_name = view.netns_name.clone().unwrap_or_else(|| "?".into());
    let eth: Option<&InterfaceView> = view.interfaces.iter().find(|i| i.peer.is_some());
    let mut ex = Explanation {
        mode: String::new(),
        rules: Vec::new(),
        paths: Vec::new(),
        workload: view.clone(),
    };
    if mode == "host" {
        ex.mode = format!(
            "host mode: no network namespace of its own - it shares {ns_name} (inode {}): its \
             interfaces, routes and port space. No veth, no bridge, no rules are made for it; \
             its packets take the node's own path (NIC -> PREROUTING -> INPUT -> socket). The \
             inspector tells its traffic from the node's by the socket's owner (its cgroup).",
            view.netns.unwrap_or_default()
        );
        return ex;
    }
    if mode == "none" || (eth.is_none() && view.interfaces.iter().all(|i| i.kind == "loopback")) {
        ex.mode = format!(
            "none mode: a network namespace of its own ({ns_name}, inode {}) with only the \
             loopback device{}: no links, no routes, no rules. No packet can leave it; its \
             traffic is on lo only.",
            view.netns.unwrap_or_default(),
            view.interfaces
                .first()
                .map(|l| format!(" ({})", l.addrs.join(" ")))
                .unwrap_or_default()
        );
        ex.paths.push(PathView {
            name: "over loopback".into(),
            summary: "a connection to itself: out of lo and back into lo".into(),
            hops: vec![
                hop(&ns_name, "lo", 1, "egress", "sent"),
                hop(&ns_name, "lo", 1, "ingress", "received"),
            ],
            rules: Vec::new(),
        });
        return ex;
    }
    let Some(eth) = eth else {
        ex.mode = format!("{mode}: namespace {ns_name}; no veth pair is visible from here");
        return ex;
    };
    let peer = eth.peer.clone().expect("found by peer");
    let ip = view.ips.iter().copied().find(IpAddr::is_ipv4);
    let bridge = peer.bridge.clone().unwrap_or_default();
    let gw = peer
        .bridge_addrs
        .iter()
        .find(|a| !a.contains(':'))
        .cloned()
        .unwrap_or_default();
    let subnet = gw
        .split_once('/')
        .and_then(|(a, l)| {
            let a: std::net::Ipv4Addr = a.parse().ok()?;
            let l: u32 = l.parse().ok()?;
            let m = if l == 0 { 0 } else { u32::MAX << (32 - l) };
            Some(format!(
                "{}/{l}",
                std::net::Ipv4Addr::from(u32::from(a) & m)
            ))
        })
        .unwrap_or_default();
    let shares = view.shares_netns_with.clone();
    ex.mode = match &shares {
        Some(t) => format!(
            "container mode: no namespace of its own - it joined {t}'s ({ns_name}, inode {}), \
             so it has {t}'s interfaces ({} {}), routes and port space. No link or rule was \
             made for it. Traffic between it and {t} goes over lo; everything else follows \
             {t}'s bridge path below. The inspector tells the two apart by socket owner.",
            view.netns.unwrap_or_default(),
            eth.name,
            eth.addrs.join(" ")
        ),
        None => format!(
            "bridge mode: a namespace of its own ({ns_name}, inode {}) whose {} ({}, ifindex {}) \
             is one end of a veth pair; the other end, {} (ifindex {}) in {}, is a port of the \
             bridge {bridge} ({gw}). Default route via the bridge's address. Docker's rules in \
             {} decide what may cross: see the rules below.",
            view.netns.unwrap_or_default(),
            eth.name,
            eth.addrs.join(" "),
            eth.ifindex,
            peer.ifname,
            peer.ifindex,
            peer.netns_name,
            peer.netns_name
        ),
    };
    let node = topo.ns(peer.netns);
    let all_rules = node.map(|n| rules_in(&n.netns.path)).unwrap_or_default();
    // Rules naming its address; else rules naming its subnet or bridge but no other
    // workload's address.
    ex.rules = all_rules
        .iter()
        .filter(|r| {
            let mine = ip
                .is_some_and(|ip| r.contains(&format!("{ip}/32")) || r.contains(&format!("{ip}:")));
            mine || (!r.contains("/32 ")
                && !r.contains("--to-destination")
                && ((!subnet.is_empty() && r.contains(&subnet))
                    || (!bridge.is_empty() && r.contains(&format!(" {bridge} ")))))
        })
        .cloned()
        .collect();
    let me_out = hop(
        &ns_name,
        &eth.name,
        eth.ifindex,
        "egress",
        "leaves the workload",
    );
    let port_in = hop(
        &peer.netns_name,
        &peer.ifname,
        peer.ifindex,
        "ingress",
        format!("enters {bridge} through its port"),
    );
    // (a) Another workload on the same bridge.
    if let Some((other, oi)) = identity
        .live()
        .iter()
        // Another namespace's owner (not a container-mode guest), with an address.
        .filter(|o| {
            o.netns != w.netns
                && !o.ips.is_empty()
                && !o
                    .network_mode
                    .as_deref()
                    .is_some_and(|m| m.starts_with("container:"))
        })
        .find_map(|o| {
            let v = map::build(&Identity::new(vec![o.clone()]), topo).pop()?;
            let i = v.interfaces.into_iter().find(|i| {
                i.peer.as_ref().is_some_and(|p| {
                    p.netns == peer.netns && p.bridge.as_deref() == Some(bridge.as_str())
                })
            })?;
            Some((o.clone(), i))
        })
    {
        let op = oi.peer.clone().expect("filtered on peer");
        let ons = other
            .netns
            .and_then(|n| topo.ns(n))
            .map_or_else(|| "?".into(), |n| n.netns.name.clone());
        ex.paths.push(PathView {
            name: "to another workload on the bridge".into(),
            summary: format!(
                "to {} ({}): switched by {bridge} at layer 2 - no routing, no NAT; iptables \
                 sees it only if br_netfilter is on",
                other.name,
                other
                    .ips
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ),
            hops: vec![
                me_out.clone(),
                port_in.clone(),
                hop(
                    &op.netns_name,
                    &op.ifname,
                    op.ifindex,
                    "egress",
                    format!("{bridge} forwards it to the port of {}", other.name),
                ),
                hop(
                    &ons,
                    &oi.name,
                    oi.ifindex,
                    "ingress",
                    format!("arrives at {}", other.name),
                ),
            ],
            rules: Vec::new(),
        });
    }
    // (b) Out of the node: routed by the node, masqueraded on the way out.
    let uplink = node.and_then(|n| {
        let routes = crate::sys::netns::run_in(&n.netns.path, crate::topology::links::routes)
            .ok()?
            .ok()?;
        // The default route's device; a node without one (a lab's) leaves by any other
        // addressed link that is neither the bridge nor one of its ports.
        let oif = routes
            .iter()
            .find(|r| r.dst == "default" && r.gateway.is_some_and(|g| g.is_ipv4()))
            .and_then(|r| r.oif)
            .or_else(|| {
                n.links
                    .iter()
                    .find(|l| {
                        !matches!(l.kind, LinkKind::Bridge | LinkKind::Loopback)
                            && l.master.is_none()
                            && l.addrs.iter().any(|a| a.addr.is_ipv4())
                    })
                    .map(|l| l.ifindex)
            })?;
        let l = n.links.iter().find(|l| l.ifindex == oif)?;
        Some((
            n.netns.name.clone(),
            l.name.clone(),
            l.ifindex,
            l.addrs.first().map(ToString::to_string).unwrap_or_default(),
        ))
    });
    let br_link = node.and_then(|n| {
        n.links
            .iter()
            .find(|l| l.name == bridge && l.kind == LinkKind::Bridge)
    });
    let masq: Vec<String> = all_rules
        .iter()
        .filter(|r| {
            r.contains("MASQUERADE")
                && ip.is_some_and(|ip| {
                    r.split_whitespace()
                        .skip_while(|t| *t != "-s")
                        .nth(1)
                        .is_some_and(|s| in_subnet(ip, s))
                })
        })
        .cloned()
        .collect();
    if let (Some((uns, uif, uidx, uaddr)), Some(bl)) = (&uplink, br_link) {
        ex.paths.push(PathView {
            name: "out of the node".into(),
            summary: format!(
                "to any address beyond {uif}: up through {bridge} into {}'s routing, FORWARD, \
                 then nat POSTROUTING {} - the source becomes {uif}'s address ({uaddr})",
                peer.netns_name,
                if masq.is_empty() {
                    "(no MASQUERADE rule found: the source is kept)"
                } else {
                    "MASQUERADE"
                }
            ),
            hops: vec![
                me_out.clone(),
                port_in.clone(),
                hop(
                    &peer.netns_name,
                    &bridge,
                    bl.ifindex,
                    "ingress",
                    "the bridge device hands it to the node's IP stack (routed)",
                ),
                hop(
                    uns,
                    uif,
                    *uidx,
                    "egress",
                    if masq.is_empty() {
                        "leaves the node".to_owned()
                    } else {
                        "leaves the node, masqueraded".to_owned()
                    },
                ),
            ],
            rules: masq,
        });
    }
    // (c) Into each published port.
    for p in &view.ports {
        let dnat: Vec<String> = all_rules
            .iter()
            .filter(|r| {
                r.contains("DNAT")
                    && r.contains(&format!("--dport {} ", p.host_port))
                    && ip.is_some_and(|ip| r.contains(&format!("{ip}:{}", p.container_port)))
            })
            .cloned()
            .collect();
        let mut hops = Vec::new();
        if let Some((uns, uif, uidx, _)) = &uplink {
            hops.push(hop(
                uns,
                uif,
                *uidx,
                "ingress",
                format!("arrives for port {}", p.host_port),
            ));
        }
        if let Some(bl) = br_link {
            hops.push(hop(
                &peer.netns_name,
                &bridge,
                bl.ifindex,
                "egress",
                "DNATed in nat PREROUTING, routed to the bridge",
            ));
        }
        hops.push(hop(
            &peer.netns_name,
            &peer.ifname,
            peer.ifindex,
            "egress",
            "the bridge forwards it to the workload's port",
        ));
        hops.push(hop(
            &ns_name,
            &eth.name,
            eth.ifindex,
            "ingress",
            format!("arrives at port {}", p.container_port),
        ));
        ex.paths.push(PathView {
            name: "into a published port".into(),
            summary: format!(
                "{}:{}/{} on the node -> {}:{}: nat PREROUTING jumps to DOCKER, whose DNAT \
                 rewrites the destination; the filter DOCKER chain's per-port ACCEPT lets it \
                 through FORWARD; the client's address is kept",
                p.host_ip.map_or_else(|| "*".to_owned(), |i| i.to_string()),
                p.host_port,
                p.proto,
                ip.map(|i| i.to_string()).unwrap_or_default(),
                p.container_port
            ),
            hops,
            rules: dnat,
        });
    }
    ex
}
