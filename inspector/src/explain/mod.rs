//! `inspector explain`: a workload's network mode explained with the live kernel objects
//! that make it (namespace, veth pair, bridge, routes, the iptables rules that mention it)
//! and the hops a packet takes - to another workload on the bridge, out of the node
//! (MASQUERADE), into a published port (DNAT) - named as the inspector observes them.
//! `mode` writes the paragraph, `rules` picks the rules, `paths` draws each path.
mod mode;
mod paths;
mod rules;

use std::net::IpAddr;

use serde::Serialize;

use crate::{
    identity::{
        Identity, Workload,
        map::{self, InterfaceView, PeerView, WorkloadView},
    },
    net::Cidr,
    topology::{NsView, Topology},
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

/// A workload with a veth into a bridge (bridge or container mode), and the node side.
struct Bridged<'a> {
    w: &'a Workload,
    view: &'a WorkloadView,
    ns_name: &'a str,
    /// Its end of the veth pair, and the other end (a port of `bridge`).
    eth: &'a InterfaceView,
    peer: &'a PeerView,
    ip: Option<IpAddr>,
    bridge: String,
    /// The bridge's IPv4 address (the workload's gateway), and its network.
    gw: String,
    subnet: Option<Cidr>,
    /// The namespace that holds the bridge, and every iptables rule there.
    node: Option<&'a NsView>,
    all_rules: Vec<String>,
}

impl Bridged<'_> {
    /// Leaving the workload, and entering the bridge through its port: every path's start.
    fn first_hops(&self) -> [ExplainedHop; 2] {
        [
            hop(
                self.ns_name,
                &self.eth.name,
                self.eth.ifindex,
                "egress",
                "leaves the workload",
            ),
            hop(
                &self.peer.netns_name,
                &self.peer.ifname,
                self.peer.ifindex,
                "ingress",
                format!("enters {} through its port", self.bridge),
            ),
        ]
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
    let mut ex = Explanation {
        mode: String::new(),
        rules: Vec::new(),
        paths: Vec::new(),
        workload: view.clone(),
    };
    let eth = view.interfaces.iter().find(|i| i.peer.is_some());
    if mode == "host" {
        ex.mode = mode::host(&view, &ns_name);
        return ex;
    }
    if mode == "none" || (eth.is_none() && view.interfaces.iter().all(|i| i.kind == "loopback")) {
        ex.mode = mode::none(&view, &ns_name);
        ex.paths.push(paths::loopback(&ns_name));
        return ex;
    }
    let Some((eth, peer)) = eth.and_then(|e| Some((e, e.peer.as_ref()?))) else {
        ex.mode = format!("{mode}: namespace {ns_name}; no veth pair is visible from here");
        return ex;
    };
    let gw = peer
        .bridge_addrs
        .iter()
        .find(|a| !a.contains(':'))
        .cloned()
        .unwrap_or_default();
    let node = topo.ns(peer.netns);
    let b = Bridged {
        w,
        view: &view,
        ns_name: &ns_name,
        eth,
        peer,
        ip: view.ips.iter().copied().find(IpAddr::is_ipv4),
        bridge: peer.bridge.clone().unwrap_or_default(),
        subnet: Cidr::parse(&gw).ok().map(|c| Cidr {
            addr: c.network(),
            prefix: c.prefix,
        }),
        gw,
        node,
        all_rules: node
            .map(|n| rules::iptables_in(&n.netns.path))
            .unwrap_or_default(),
    };
    ex.mode = mode::bridged(&b);
    ex.rules = rules::naming(&b);
    ex.paths.extend(paths::to_neighbour(&b, identity, topo));
    let uplink = paths::uplink(&b);
    ex.paths.extend(paths::out_of_node(&b, uplink.as_ref()));
    ex.paths.extend(paths::published(&b, uplink.as_ref()));
    ex
}
