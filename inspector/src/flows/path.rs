//! Stitching: the same packets seen at several hooks (a veth end, its peer, a bridge port, ...)
//! share one 5-tuple; grouping records by it and ordering the hooks by when each first saw the
//! flow gives the path the flow took through the node.
use std::{collections::BTreeMap, net::IpAddr};

use serde::Serialize;

use super::FlowRecord;
use crate::{
    net::Proto,
    topology::{LinkKind, Topology},
};

/// One hook on a flow's path.
#[derive(Clone, Debug, Serialize)]
pub struct PathHop {
    pub netns: u64,
    pub netns_name: String,
    pub ifname: String,
    pub ifindex: u32,
    pub direction: &'static str,
    /// What the interface is on the path: veth (and its peer), bridge, bridge port.
    pub role: String,
    pub packets: u64,
    pub bytes: u64,
    pub first_ns: u64,
    pub time_unix_ns: u64,
}

/// One direction of one flow, with every hook it crossed in order.
#[derive(Clone, Debug, Serialize)]
pub struct FlowPath {
    pub proto: Proto,
    pub src: Option<IpAddr>,
    pub sport: Option<u16>,
    pub dst: Option<IpAddr>,
    pub dport: Option<u16>,
    /// When the first hop first saw it, Unix time in ns.
    pub time_unix_ns: u64,
    pub hops: Vec<PathHop>,
    /// The records the hops came from (indices into the stitched slice), in hop order.
    #[serde(skip)]
    pub members: Vec<usize>,
}

impl FlowPath {
    /// `a/eth0(out) -> host/veth-a(in) -> ...`.
    #[must_use]
    pub fn render(&self) -> String {
        self.hops
            .iter()
            .map(|h| hop_label(&h.netns_name, &h.ifname, h.direction))
            .collect::<Vec<_>>()
            .join(" -> ")
    }
}

/// `netns/ifname(in|out)`.
#[must_use]
pub fn hop_label(netns_name: &str, ifname: &str, direction: &str) -> String {
    let dir = if direction == "ingress" { "in" } else { "out" };
    format!("{netns_name}/{ifname}({dir})")
}

/// [`hop_label`] for any hook: the stack's tracepoints are `ns/if(queue)` (`net_dev_queue`),
/// `(xmit)` (`net_dev_start_xmit`) and `(rx)` (`netif_receive_skb`).
#[must_use]
pub fn hook_label(netns_name: &str, ifname: &str, hook: u8, direction: &str) -> String {
    use inspector_common::flow::{HOOK_DEV_QUEUE, HOOK_RECEIVE, HOOK_START_XMIT};
    let at = match hook {
        HOOK_DEV_QUEUE => "queue",
        HOOK_START_XMIT => "xmit",
        HOOK_RECEIVE => "rx",
        _ => return hop_label(netns_name, ifname, direction),
    };
    format!("{netns_name}/{ifname}({at})")
}

/// Where a hook comes along a packet's way through one device, for ordering events with
/// equal timestamps: tc egress, qdisc in, qdisc out, (the peer's) receive, tc ingress.
#[must_use]
pub fn hook_rank(hook: u8, direction: u8) -> u8 {
    use inspector_common::flow::{HOOK_DEV_QUEUE, HOOK_RECEIVE, HOOK_START_XMIT};
    match hook {
        HOOK_DEV_QUEUE => 1,
        HOOK_START_XMIT => 2,
        HOOK_RECEIVE => 3,
        _ if direction == inspector_common::Direction::Egress as u8 => 0,
        _ => 4,
    }
}

/// Groups per-hook records into paths, ordered by when each flow was first seen; ARP is
/// left out (it has no path). `topo` names what each hop is.
#[must_use]
pub fn stitch(records: &[&FlowRecord], topo: &Topology) -> Vec<FlowPath> {
    type Key = (
        Proto,
        Option<IpAddr>,
        Option<u16>,
        Option<IpAddr>,
        Option<u16>,
    );
    let mut groups: BTreeMap<Key, Vec<usize>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        if r.hdr.proto == Proto::Arp {
            continue;
        }
        groups
            .entry((r.hdr.proto, r.hdr.src, r.hdr.sport, r.hdr.dst, r.hdr.dport))
            .or_default()
            .push(i);
    }
    let mut paths: Vec<FlowPath> = groups
        .into_iter()
        .map(|((proto, src, sport, dst, dport), mut members)| {
            // Same first-seen time (one clock read per hook, so ties are rare): egress before
            // ingress, which is the order a packet crosses a veth pair.
            members.sort_by_key(|&i| (records[i].first_ns, records[i].direction == "ingress"));
            let hops: Vec<PathHop> = members
                .iter()
                .map(|&i| {
                    let r = records[i];
                    PathHop {
                        netns: r.netns,
                        netns_name: r.netns_name.clone(),
                        ifname: r.ifname.clone(),
                        ifindex: r.ifindex,
                        direction: r.direction,
                        role: role(topo, r.netns, r.ifindex),
                        packets: r.packets,
                        bytes: r.bytes,
                        first_ns: r.first_ns,
                        time_unix_ns: r.time_unix_ns,
                    }
                })
                .collect();
            FlowPath {
                proto,
                src,
                sport,
                dst,
                dport,
                time_unix_ns: hops.first().map_or(0, |h| h.time_unix_ns),
                hops,
                members,
            }
        })
        .collect();
    paths.sort_by_key(|p| p.hops.first().map_or(0, |h| h.first_ns));
    paths
}

/// What an interface is on the path: veth (and its peer), bridge, bridge port.
#[must_use]
pub fn role(topo: &Topology, inode: u64, ifindex: u32) -> String {
    let Some((ns, l)) = topo.link((inode, ifindex)) else {
        return String::new();
    };
    let mut parts = Vec::new();
    match &l.kind {
        LinkKind::Veth => {
            let peer = topo
                .peers
                .get(&(inode, ifindex))
                .and_then(|p| topo.link(*p));
            parts.push(match peer {
                Some((pns, pl)) => format!("veth, peer {}/{}", pns.netns.name, pl.name),
                None => "veth".into(),
            });
        }
        LinkKind::Bridge => parts.push("bridge (routed via the node's stack)".into()),
        other => parts.push(other.to_string()),
    }
    if let Some(m) = l
        .master
        .and_then(|m| ns.links.iter().find(|b| b.ifindex == m))
    {
        parts.push(format!("port of {m}", m = m.name));
    }
    parts.join(", ")
}
