//! Drops: packets the kernel freed with a drop reason, decoded and named like flows.
use std::net::IpAddr;

use inspector_common::{
    DropKey, FlowKey, FlowStats,
    parse::{ETH_P_IP, ETH_P_IPV6},
};
use serde::Serialize;

use super::{addrs, endpoint, proto_name};
use crate::topology::names::Names;

/// One (flow, device, reason) of dropped packets (`type: "drop"` JSON line).
#[derive(Clone, Debug, Serialize)]
pub struct DropRecord {
    /// Namespace inode and ifindex of the device the packet was on (0 if none).
    pub netns: u64,
    pub netns_name: String,
    pub ifindex: u32,
    pub ifname: String,
    /// Kernel drop reason (`enum skb_drop_reason`), e.g. "NO_SOCKET", "NETFILTER_DROP".
    pub reason: String,
    pub proto: String,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub packets: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    #[serde(skip)]
    pub key: DropKey,
}

impl DropRecord {
    #[must_use]
    pub fn new(k: &DropKey, s: &FlowStats, reason: String, names: &Names) -> Self {
        // Reuse the flow decoding through an equivalent flow key.
        let mut fk = FlowKey::zeroed();
        fk.src = k.src;
        fk.dst = k.dst;
        fk.ethertype = k.ethertype;
        fk.proto = k.proto;
        let (src, dst) = addrs(&fk);
        let is_ip = matches!(k.ethertype, ETH_P_IP | ETH_P_IPV6);
        let ports = is_ip && matches!(k.proto, 6 | 17 | 33 | 132 | 136);
        let inode = u64::from(k.netns);
        Self {
            netns: inode,
            netns_name: if inode == 0 {
                "-".into()
            } else {
                names.netns_name(inode).map_or_else(|| format!("netns:{inode}"), str::to_owned)
            },
            ifindex: k.ifindex,
            ifname: if k.ifindex == 0 {
                "-".into()
            } else {
                names.ifname((inode, k.ifindex)).map_or_else(|| format!("if{}", k.ifindex), str::to_owned)
            },
            reason,
            proto: proto_name(k.ethertype, k.proto),
            src,
            dst,
            sport: ports.then_some(k.sport),
            dport: ports.then_some(k.dport),
            packets: s.packets,
            first_ns: s.first_ns,
            last_ns: s.last_ns,
            key: *k,
        }
    }

    #[must_use]
    pub fn src_str(&self) -> String {
        endpoint(self.src, self.sport)
    }

    #[must_use]
    pub fn dst_str(&self) -> String {
        endpoint(self.dst, self.dport)
    }
}
