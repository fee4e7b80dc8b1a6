//! The node's map grouped by workload: each container or pod with its network mode,
//! namespace, interfaces (veth pairs followed to the other side and its bridge), addresses,
//! routes and published ports. Built from one identity snapshot and one topology scan.
use std::net::IpAddr;

use serde::Serialize;

use super::{Identity, PublishedPort, Workload};
use crate::topology::{Link, LinkKind, NetnsKind, Route, Topology};

/// The other end of a veth, and the bridge it is a port of.
#[derive(Clone, Debug, Serialize)]
pub struct PeerView {
    pub netns: u64,
    pub netns_name: String,
    pub ifindex: u32,
    pub ifname: String,
    pub bridge: Option<String>,
    /// The bridge's addresses (the workload's gateway, usually).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bridge_addrs: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct InterfaceView {
    pub name: String,
    pub ifindex: u32,
    pub kind: String,
    pub mac: Option<String>,
    pub addrs: Vec<String>,
    pub peer: Option<PeerView>,
}

/// One workload on the map (`inspector topology -o json`, `"type": "workload"`).
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadView {
    pub name: String,
    pub id: String,
    pub kind: Option<super::Kind>,
    pub runtime: String,
    pub network_mode: Option<String>,
    /// The workload that owns the namespace, for `container:<id>` mode (its name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shares_netns_with: Option<String>,
    pub netns: Option<u64>,
    pub netns_name: Option<String>,
    pub interfaces: Vec<InterfaceView>,
    pub ips: Vec<IpAddr>,
    pub routes: Vec<RouteView>,
    pub ports: Vec<PublishedPort>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pids: Vec<u32>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RouteView {
    pub dst: String,
    pub gateway: Option<IpAddr>,
    pub dev: Option<String>,
}

/// The interface view of one link, with its veth peer followed across namespaces.
#[must_use]
pub fn interface(topo: &Topology, netns: u64, l: &Link) -> InterfaceView {
    let peer = topo.peers.get(&(netns, l.ifindex)).and_then(|id| {
        let (pns, pl) = topo.link(*id)?;
        let bridge = pl
            .master
            .and_then(|m| pns.links.iter().find(|b| b.ifindex == m));
        Some(PeerView {
            netns: pns.netns.inode,
            netns_name: pns.netns.name.clone(),
            ifindex: pl.ifindex,
            ifname: pl.name.clone(),
            bridge: bridge.map(|b| b.name.clone()),
            bridge_addrs: bridge
                .map(|b| b.addrs.iter().map(ToString::to_string).collect())
                .unwrap_or_default(),
        })
    });
    InterfaceView {
        name: l.name.clone(),
        ifindex: l.ifindex,
        kind: l.kind.to_string(),
        mac: l.mac.clone(),
        addrs: l.addrs.iter().map(ToString::to_string).collect(),
        peer,
    }
}

/// Builds the view of every workload. Routes are read from each workload namespace (host
/// mode: the host's), once per namespace.
#[must_use]
pub fn build(identity: &Identity, topo: &Topology) -> Vec<WorkloadView> {
    let mut routes: std::collections::HashMap<u64, Vec<Route>> = std::collections::HashMap::new();
    identity
        .live()
        .iter()
        .map(|w| view(identity, topo, w, &mut routes))
        .collect()
}

fn view(
    identity: &Identity,
    topo: &Topology,
    w: &Workload,
    routes: &mut std::collections::HashMap<u64, Vec<Route>>,
) -> WorkloadView {
    let ns = w.netns.and_then(|n| topo.ns(n));
    let host_like = w.is_host_mode() || ns.is_some_and(|n| n.netns.kind == NetnsKind::Host);
    let interfaces: Vec<InterfaceView> = ns
        .map(|n| {
            n.links
                .iter()
                // In the host namespace, the links that are the host's own (with addresses),
                // not every other container's veth end.
                .filter(|l| !host_like || (l.kind != LinkKind::Veth && !l.addrs.is_empty()))
                .map(|l| interface(topo, n.netns.inode, l))
                .collect()
        })
        .unwrap_or_default();
    let mut ips = w.ips.clone();
    for x in interfaces
        .iter()
        .filter(|i| i.kind != "loopback")
        .flat_map(|i| &i.addrs)
        .filter_map(|a| a.split('/').next()?.parse::<IpAddr>().ok())
    {
        let link_local = matches!(x, IpAddr::V6(v6) if v6.is_unicast_link_local());
        if !ips.contains(&x) && !link_local {
            ips.push(x);
        }
    }
    let rv = ns
        .map(|n| {
            routes
                .entry(n.netns.inode)
                .or_insert_with(|| {
                    crate::sys::netns::run_in(&n.netns.path, crate::topology::links::routes)
                        .ok()
                        .and_then(Result::ok)
                        .unwrap_or_default()
                })
                .iter()
                .map(|r| RouteView {
                    dst: r.dst.clone(),
                    gateway: r.gateway,
                    dev: r.oif.and_then(|i| {
                        n.links
                            .iter()
                            .find(|l| l.ifindex == i)
                            .map(|l| l.name.clone())
                    }),
                })
                .collect()
        })
        .unwrap_or_default();
    let shares = w
        .network_mode
        .as_deref()
        .and_then(|m| m.strip_prefix("container:"))
        .map(|target| {
            identity
                .find(target)
                .map_or_else(|| target.to_owned(), |t| t.name.clone())
        });
    WorkloadView {
        name: w.name.clone(),
        id: w.id.clone(),
        kind: w.kind,
        runtime: w.runtime.clone(),
        network_mode: w.network_mode.clone(),
        shares_netns_with: shares,
        netns: w.netns,
        netns_name: ns.map(|n| n.netns.name.clone()),
        interfaces,
        ips,
        routes: rv,
        ports: w.ports.clone(),
        image: w.image.clone(),
        pids: w.pids.clone(),
        labels: w.labels.clone(),
        containers: w.containers.clone(),
    }
}
