//! Drops: packets the kernel freed with a drop reason, decoded and named like flows.

use inspector_common::{DropKey, FlowKey};
use serde::Serialize;

use super::{Header, hook_names};
use crate::{probe::Counts, sys::time::WallClock, topology::names::Names};

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
    #[serde(flatten)]
    pub hdr: Header,
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
        let inode = u64::from(k.netns);
        let (netns_name, ifname) = hook_names(names, inode, k.ifindex);
        Self {
            netns: inode,
            netns_name,
            ifindex: k.ifindex,
            ifname,
            reason,
            location: crate::sys::kallsyms::location(k.location),
            hdr: Header::of_key(&flow_key(k)),
            packets: s.packets,
            first_ns: s.first_ns,
            last_ns: s.last_ns,
            time_unix_ns: clock.unix_ns(s.first_ns),
            last_unix_ns: clock.unix_ns(s.last_ns),
        }
    }
}
