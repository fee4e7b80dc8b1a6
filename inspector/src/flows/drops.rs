//! Drops: packets the kernel freed with a drop reason, decoded and named like flows.
use std::net::IpAddr;

use inspector_common::{DropKey, FlowKey};
use serde::Serialize;

use super::{addrs, hook_names};
use crate::{net::Proto, probe::Counts, sys::time::WallClock, topology::names::Names};

/// One (flow, device, reason) of dropped packets.
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
    pub proto: Proto,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub packets: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    /// First and last drop, Unix time in ns.
    pub time_unix_ns: u64,
    pub last_unix_ns: u64,
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
    pub fn new(k: &DropKey, s: &Counts, reason: String, names: &Names, clock: WallClock) -> Self {
        let (src, dst) = addrs(&flow_key(k));
        let proto = Proto::from_key(k.ethertype, k.proto);
        let ports = proto.has_ports();
        let inode = u64::from(k.netns);
        let (netns_name, ifname) = hook_names(names, inode, k.ifindex);
        Self {
            netns: inode,
            netns_name,
            ifindex: k.ifindex,
            ifname,
            reason,
            location: crate::sys::kallsyms::location(k.location),
            proto,
            src,
            dst,
            sport: ports.then_some(k.sport),
            dport: ports.then_some(k.dport),
            packets: s.packets,
            first_ns: s.first_ns,
            last_ns: s.last_ns,
            time_unix_ns: clock.unix_ns(s.first_ns),
            last_unix_ns: clock.unix_ns(s.last_ns),
        }
    }

    /// The IP protocol number (0 for non-IP), for lookups by socket.
    #[must_use]
    pub fn ip_proto(&self) -> u8 {
        self.proto.number().unwrap_or(0)
    }

    #[must_use]
    pub fn src_str(&self) -> String {
        crate::net::endpoint(self.src, self.sport)
    }

    #[must_use]
    pub fn dst_str(&self) -> String {
        crate::net::endpoint(self.dst, self.dport)
    }
}
