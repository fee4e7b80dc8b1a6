//! Drops: packets the kernel freed with a drop reason, decoded and named like flows.
use std::net::IpAddr;

use inspector_common::{DropKey, FlowKey};
use serde::Serialize;

use super::{addrs, carries_ports, endpoint, hook_names, proto_name};
use crate::{probe::Counts, topology::names::Names};

/// One (flow, device, reason) of dropped packets (`type: "drop"` JSON line).
#[derive(Clone, Debug, Serialize)]
pub struct DropRecord {
    /// Namespace inode and ifindex of the device the packet was on (0 if none).
    pub netns: u64,
    pub netns_name: String,
    pub ifindex: u32,
    pub ifname: String,
    /// Kernel drop reason (`enum skb_drop_reason`), e.g. "`NO_SOCKET`", "`NETFILTER_DROP`".
    pub reason: String,
    /// The kernel function that freed it ("`nf_hook_slow+0x9a`"; "" if unknown).
    pub location: String,
    pub proto: String,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub packets: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    /// For netfilter drops: the DROP/REJECT rule whose counter grew since the inspector
    /// started, in the namespace of the drop (`table CHAIN: rule`), when iptables has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Who sent it and who it was for (`null` when unknown), as for flows.
    pub src_endpoint: Option<crate::identity::Endpoint>,
    pub dst_endpoint: Option<crate::identity::Endpoint>,
    /// IP protocol number (for attribution by socket).
    #[serde(skip)]
    pub ip_proto: u8,
}

/// The flow key with the same addresses, ports and protocol (for decoding and filtering).
#[must_use]
pub fn flow_key(k: &DropKey) -> FlowKey {
    let mut fk = FlowKey::zeroed();
    fk.src = k.src;
    fk.dst = k.dst;
    fk.sport = k.sport;
    fk.dport = k.dport;
    fk.ethertype = k.ethertype;
    fk.proto = k.proto;
    fk
}

impl DropRecord {
    #[must_use]
    pub fn new(k: &DropKey, s: &Counts, reason: String, names: &Names) -> Self {
        let (src, dst) = addrs(&flow_key(k));
        let ports = carries_ports(k.ethertype, k.proto);
        let inode = u64::from(k.netns);
        let (netns_name, ifname) = hook_names(names, inode, k.ifindex);
        Self {
            netns: inode,
            netns_name,
            ifindex: k.ifindex,
            ifname,
            reason,
            location: crate::probe::kallsyms::location(k.location),
            proto: proto_name(k.ethertype, k.proto),
            src,
            dst,
            sport: ports.then_some(k.sport),
            dport: ports.then_some(k.dport),
            packets: s.packets,
            first_ns: s.first_ns,
            last_ns: s.last_ns,
            rule: None,
            src_endpoint: None,
            dst_endpoint: None,
            ip_proto: k.proto,
        }
    }

    /// Names the ends, like [`crate::flows::FlowRecord::attribute`].
    pub fn attribute(&mut self, r: &crate::identity::Resolver<'_>) {
        (self.src_endpoint, self.dst_endpoint) = super::ends(
            r,
            (self.src, self.sport),
            (self.dst, self.dport),
            self.ip_proto,
            self.netns,
        );
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
