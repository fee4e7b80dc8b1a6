//! From raw kernel records to what users read: decoded addresses and protocols, names for
//! namespaces and interfaces, flows stitched across hops into the path they took, drops,
//! the packet filter, and per-hop timing (`hops`). Who is at each end and which Service a
//! flow went to are added above this layer (`session`), from `identity` and `services`.
pub mod drops;
pub mod filter;
pub mod frame;
mod header;
pub mod hops;
pub mod path;

use inspector_common::{Direction, FlowKey, PacketEvent};
use serde::Serialize;

pub use header::{Header, Tuple, addrs, icmp_name};

use crate::{probe::Counts, sys::time::WallClock, topology::names::Names};

/// One flow at one hook (`inspector flows` line), decoded and named.
#[derive(Clone, Debug, Serialize)]
pub struct FlowRecord {
    /// Namespace inode (0 if the kernel could not tell).
    pub netns: u64,
    pub netns_name: String,
    pub ifindex: u32,
    pub ifname: String,
    pub direction: &'static str,
    #[serde(flatten)]
    pub hdr: Header,
    pub ethertype: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    pub packets: u64,
    pub bytes: u64,
    /// First and last seen, `CLOCK_MONOTONIC` ns (what the kernel stamps).
    pub first_ns: u64,
    pub last_ns: u64,
    /// First and last seen, Unix time in ns.
    pub time_unix_ns: u64,
    pub last_unix_ns: u64,
    pub tcp_flags: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub anomalies: String,
}

/// `SYN|ACK`-style rendering of a TCP flags byte ("" if none).
#[must_use]
pub fn tcp_flags(f: u8) -> String {
    const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
    NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| f & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join("|")
}

/// Names of parser status bits ("" if none).
#[must_use]
pub fn anomalies(st: u8) -> String {
    use inspector_common::parse::status;
    let mut v = Vec::new();
    for (bit, name) in [
        (status::TRUNCATED, "truncated"),
        (status::MALFORMED, "malformed"),
        (status::FRAGMENT, "fragment"),
        (status::EXT_LIMIT, "ipv6-ext-limit"),
        (status::VLAN_LIMIT, "vlan-limit"),
    ] {
        if st & bit != 0 {
            v.push(name);
        }
    }
    v.join(",")
}

/// Names of a hook (namespace, interface); "-" where the kernel could not tell (0), a
/// numeric placeholder where no scan ever saw it.
#[must_use]
pub fn hook_names(names: &Names, inode: u64, ifindex: u32) -> (String, String) {
    let ns = match inode {
        0 => "-".to_owned(),
        _ => names
            .netns_name(inode)
            .map_or_else(|| format!("netns:{inode}"), str::to_owned),
    };
    let ifname = match ifindex {
        0 => "-".to_owned(),
        _ => names
            .ifname((inode, ifindex))
            .map_or_else(|| format!("if{ifindex}"), str::to_owned),
    };
    (ns, ifname)
}

impl FlowRecord {
    #[must_use]
    pub fn new(k: &FlowKey, s: &Counts, names: &Names, clock: WallClock) -> Self {
        let inode = u64::from(k.netns);
        let (netns_name, ifname) = hook_names(names, inode, k.ifindex);
        Self {
            netns: inode,
            netns_name,
            ifindex: k.ifindex,
            ifname,
            direction: Direction::from_u8(k.direction).as_str(),
            hdr: Header::of_key(k),
            ethertype: format!("0x{:04x}", k.ethertype),
            vlan: (k.vlan != 0).then_some(k.vlan),
            packets: s.packets,
            bytes: s.bytes,
            first_ns: s.first_ns,
            last_ns: s.last_ns,
            time_unix_ns: clock.unix_ns(s.first_ns),
            last_unix_ns: clock.unix_ns(s.last_ns),
            tcp_flags: tcp_flags(s.tcp_flags),
            anomalies: anomalies(s.status),
        }
    }

    /// One per-packet event as a one-packet record (names, decoded addresses).
    #[must_use]
    pub fn of_event(ev: &PacketEvent, names: &Names, clock: WallClock) -> Self {
        let stats = Counts {
            packets: 1,
            bytes: u64::from(ev.len),
            first_ns: ev.ts_ns,
            last_ns: ev.ts_ns,
            tcp_flags: ev.tcp_flags,
            status: ev.status,
        };
        Self::new(&ev.key, &stats, names, clock)
    }
}
