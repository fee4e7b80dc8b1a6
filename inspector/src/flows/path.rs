//! Stitching: the same packets seen at several hooks (a veth end, its peer, a bridge port, ...)
//! share one 5-tuple; grouping records by it and ordering the hooks by when each first saw the
//! flow gives the path the flow took through the node.
use std::collections::BTreeMap;

use serde::Serialize;

use super::FlowRecord;
use crate::topology::{LinkKind, Topology};

/// One hook on a flow's path.
#[derive(Clone, Debug, Serialize)]
pub struct Hop {
    pub netns: u64,
    pub netns_name: String,
    pub ifname: String,
    pub ifindex: u32,
    pub direction: &'static str,
    pub packets: u64,
    pub bytes: u64,
    pub first_ns: u64,
}

/// One direction of one flow, with every hook it crossed in order.
#[derive(Clone, Debug, Serialize)]
pub struct FlowPath {
    pub proto: String,
    pub src: String,
    pub dst: String,
    /// Who sent it and who receives it, as attributed at the hops (first answer wins).
    pub src_endpoint: Option<crate::identity::Endpoint>,
    pub dst_endpoint: Option<crate::identity::Endpoint>,
    pub hops: Vec<Hop>,
}

impl FlowPath {
    /// `a/eth0 > host/veth-a > ...` with `>` for egress-then-ingress hand-offs.
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

/// Groups per-hook records into paths, ordered by when each flow was first seen.
#[must_use]
pub fn stitch(records: &[FlowRecord]) -> Vec<FlowPath> {
    let mut groups: BTreeMap<(String, String, String), Vec<&FlowRecord>> = BTreeMap::new();
    for r in records {
        groups
            .entry((r.proto.clone(), r.src_str(), r.dst_str()))
            .or_default()
            .push(r);
    }
    let mut paths: Vec<FlowPath> = groups
        .into_iter()
        .map(|((proto, src, dst), mut rs)| {
            // Same first-seen time (one clock read per hook, so ties are rare): egress before
            // ingress, which is the order a packet crosses a veth pair.
            rs.sort_by_key(|r| (r.first_ns, r.direction == "ingress"));
            FlowPath {
                proto,
                src,
                dst,
                src_endpoint: rs.iter().find_map(|r| r.src_endpoint.clone()),
                dst_endpoint: rs.iter().find_map(|r| r.dst_endpoint.clone()),
                hops: rs
                    .iter()
                    .map(|r| Hop {
                        netns: r.netns,
                        netns_name: r.netns_name.clone(),
                        ifname: r.ifname.clone(),
                        ifindex: r.ifindex,
                        direction: r.direction,
                        packets: r.packets,
                        bytes: r.bytes,
                        first_ns: r.first_ns,
                    })
                    .collect(),
            }
        })
        .collect();
    paths.sort_by_key(|p| p.hops.first().map_or(0, |h| h.first_ns));
    paths
}

/// What an interface is on the path: veth (and its peer), bridge, bridge port.
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
        other => parts.push(format!("{other:?}").to_lowercase()),
    }
    if let Some(m) = l
        .master
        .and_then(|m| ns.links.iter().find(|b| b.ifindex == m))
    {
        parts.push(format!("port of {}", m.name));
    }
    parts.join(", ")
}
