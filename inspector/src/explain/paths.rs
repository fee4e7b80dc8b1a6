//! The paths a packet of the workload takes, hop by hop as the inspector observes them: to
//! a neighbour on the same bridge, out of the node, into each published port (and, in none
//! mode, over loopback).
use super::{Bridged, PathView, hop, rules};
use crate::{
    identity::{Identity, PublishedPort, map},
    topology::{LinkKind, Topology},
};

/// A connection to itself in none mode.
pub(super) fn loopback(ns_name: &str) -> PathView {
    PathView {
        name: "over loopback".into(),
        summary: "a connection to itself: out of lo and back into lo".into(),
        hops: vec![
            hop(ns_name, "lo", 1, "egress", "sent"),
            hop(ns_name, "lo", 1, "ingress", "received"),
        ],
        rules: Vec::new(),
    }
}

/// To another workload with a port on the same bridge (one in another namespace, not a
/// container-mode guest, with an address), if there is one.
pub(super) fn to_neighbour(
    b: &Bridged<'_>,
    identity: &Identity,
    topo: &Topology,
) -> Option<PathView> {
    let (other, oi) = identity
        .live()
        .iter()
        .filter(|o| {
            o.netns != b.w.netns
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
                    p.netns == b.peer.netns && p.bridge.as_deref() == Some(b.bridge.as_str())
                })
            })?;
            Some((o, i))
        })?;
    let op = oi.peer.as_ref()?;
    let ons = other
        .netns
        .and_then(|n| topo.ns(n))
        .map_or_else(|| "?".into(), |n| n.netns.name.clone());
    let [me_out, port_in] = b.first_hops();
    Some(PathView {
        name: "to another workload on the bridge".into(),
        summary: format!(
            "to {} ({}): switched by {} at layer 2 - no routing, no NAT; iptables sees it only \
             if br_netfilter is on",
            other.name,
            other
                .ips
                .first()
                .map(ToString::to_string)
                .unwrap_or_default(),
            b.bridge
        ),
        hops: vec![
            me_out,
            port_in,
            hop(
                &op.netns_name,
                &op.ifname,
                op.ifindex,
                "egress",
                format!("{} forwards it to the port of {}", b.bridge, other.name),
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
    })
}

/// Where packets leave the node: (namespace name, interface, ifindex, its address).
pub(super) struct Uplink {
    netns_name: String,
    ifname: String,
    ifindex: u32,
    addr: String,
}

/// The default route's device; a node without one (a lab's) leaves by any other addressed
/// link that is neither the bridge nor one of its ports.
pub(super) fn uplink(b: &Bridged<'_>) -> Option<Uplink> {
    let n = b.node?;
    let routes = crate::sys::netns::run_in(&n.netns.path, crate::topology::links::routes)
        .ok()?
        .ok()?;
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
    Some(Uplink {
        netns_name: n.netns.name.clone(),
        ifname: l.name.clone(),
        ifindex: l.ifindex,
        addr: l.addrs.first().map(ToString::to_string).unwrap_or_default(),
    })
}

/// The bridge device's ifindex in the node.
fn bridge_ifindex(b: &Bridged<'_>) -> Option<u32> {
    b.node?
        .links
        .iter()
        .find(|l| l.name == b.bridge && l.kind == LinkKind::Bridge)
        .map(|l| l.ifindex)
}

/// Out of the node: routed by the node, masqueraded on the way out.
pub(super) fn out_of_node(b: &Bridged<'_>, up: Option<&Uplink>) -> Option<PathView> {
    let (up, br) = (up?, bridge_ifindex(b)?);
    let masq = rules::masquerading(b);
    let [me_out, port_in] = b.first_hops();
    Some(PathView {
        name: "out of the node".into(),
        summary: format!(
            "to any address beyond {}: up through {} into {}'s routing, FORWARD, then nat \
             POSTROUTING {} - the source becomes {}'s address ({})",
            up.ifname,
            b.bridge,
            b.peer.netns_name,
            if masq.is_empty() {
                "(no MASQUERADE rule found: the source is kept)"
            } else {
                "MASQUERADE"
            },
            up.ifname,
            up.addr
        ),
        hops: vec![
            me_out,
            port_in,
            hop(
                &b.peer.netns_name,
                &b.bridge,
                br,
                "ingress",
                "the bridge device hands it to the node's IP stack (routed)",
            ),
            hop(
                &up.netns_name,
                &up.ifname,
                up.ifindex,
                "egress",
                if masq.is_empty() {
                    "leaves the node"
                } else {
                    "leaves the node, masqueraded"
                },
            ),
        ],
        rules: masq,
    })
}

/// Into each published port: DNAT in the node, then the bridge to the workload.
pub(super) fn published(b: &Bridged<'_>, up: Option<&Uplink>) -> Vec<PathView> {
    b.view.ports.iter().map(|p| into_port(b, up, p)).collect()
}

fn into_port(b: &Bridged<'_>, up: Option<&Uplink>, p: &PublishedPort) -> PathView {
    let mut hops = Vec::new();
    if let Some(up) = up {
        hops.push(hop(
            &up.netns_name,
            &up.ifname,
            up.ifindex,
            "ingress",
            format!("arrives for port {}", p.host_port),
        ));
    }
    if let Some(br) = bridge_ifindex(b) {
        hops.push(hop(
            &b.peer.netns_name,
            &b.bridge,
            br,
            "egress",
            "DNATed in nat PREROUTING, routed to the bridge",
        ));
    }
    hops.push(hop(
        &b.peer.netns_name,
        &b.peer.ifname,
        b.peer.ifindex,
        "egress",
        "the bridge forwards it to the workload's port",
    ));
    hops.push(hop(
        b.ns_name,
        &b.eth.name,
        b.eth.ifindex,
        "ingress",
        format!("arrives at port {}", p.container_port),
    ));
    PathView {
        name: "into a published port".into(),
        summary: format!(
            "{}:{}/{} on the node -> {}:{}: nat PREROUTING jumps to DOCKER, whose DNAT rewrites \
             the destination; the filter DOCKER chain's per-port ACCEPT lets it through \
             FORWARD; the client's address is kept",
            p.host_ip.map_or_else(|| "*".to_owned(), |i| i.to_string()),
            p.host_port,
            p.proto,
            b.ip.map(|i| i.to_string()).unwrap_or_default(),
            p.container_port
        ),
        hops,
        rules: rules::dnat(b, p.host_port, p.container_port),
    }
}
