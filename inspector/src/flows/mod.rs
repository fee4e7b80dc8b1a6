//! From raw kernel records to what users read: decoded addresses and protocols, names for
//! namespaces and interfaces, flows stitched across hops into the path they took, drops,
//! the packet filter, and per-hop timing (`hops`). Who is at each end and which Service a
//! flow went to are added above this layer (`session`), from `identity` and `services`.
pub mod drops;
pub mod filter;
pub mod hops;
pub mod path;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use inspector_common::{
    Direction, FlowKey, PacketEvent,
    parse::{ETH_P_ARP, ETH_P_IP, ETH_P_IPV6},
};
use serde::Serialize;

use crate::{net::Proto, probe::Counts, sys::time::WallClock, topology::names::Names};

/// One flow at one hook (`inspector flows` line), decoded and named.
#[derive(Clone, Debug, Serialize)]
pub struct FlowRecord {
    /// Namespace inode (0 if the kernel could not tell).
    pub netns: u64,
    pub netns_name: String,
    pub ifindex: u32,
    pub ifname: String,
    pub direction: &'static str,
    pub proto: Proto,
    pub ethertype: String,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_id: Option<u16>,
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

/// The source and destination addresses of a key, if it has an address family.
#[must_use]
pub fn addrs(k: &FlowKey) -> (Option<IpAddr>, Option<IpAddr>) {
    let v4 = |a: &[u8; 16]| IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]));
    match k.ethertype {
        ETH_P_IP | ETH_P_ARP => (Some(v4(&k.src)), Some(v4(&k.dst))),
        ETH_P_IPV6 => (
            Some(IpAddr::V6(Ipv6Addr::from(k.src))),
            Some(IpAddr::V6(Ipv6Addr::from(k.dst))),
        ),
        _ => (None, None),
    }
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
        let (src, dst) = addrs(k);
        let proto = Proto::from_key(k.ethertype, k.proto);
        let icmp = proto.is_icmp();
        let ports = proto.has_ports();
        let (netns_name, ifname) = hook_names(names, inode, k.ifindex);
        Self {
            netns: inode,
            netns_name,
            ifindex: k.ifindex,
            ifname,
            direction: Direction::from_u8(k.direction).as_str(),
            proto,
            ethertype: format!("0x{:04x}", k.ethertype),
            src,
            dst,
            sport: ports.then_some(k.sport),
            dport: ports.then_some(k.dport),
            icmp_type: icmp.then_some((k.dport >> 8) as u8),
            icmp_code: icmp.then_some((k.dport & 0xff) as u8),
            icmp_id: (icmp && k.sport != 0).then_some(k.sport),
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

    /// The IP protocol number (0 for non-IP), for lookups by socket.
    #[must_use]
    pub fn ip_proto(&self) -> u8 {
        self.proto.number().unwrap_or(0)
    }

    /// (IP protocol, src, sport, dst, dport) of a key that has ports.
    #[must_use]
    pub fn decode_key(k: &FlowKey) -> Option<(u8, IpAddr, u16, IpAddr, u16)> {
        let (src, dst) = addrs(k);
        Proto::from_key(k.ethertype, k.proto)
            .has_ports()
            .then_some((k.proto, src?, k.sport, dst?, k.dport))
    }

    /// The 4-tuple, when the protocol has ports.
    #[must_use]
    pub fn tuple(&self) -> Option<(IpAddr, u16, IpAddr, u16)> {
        Some((self.src?, self.sport?, self.dst?, self.dport?))
    }

    /// "198.18.0.2:41234" / "198.18.0.2" / "-".
    #[must_use]
    pub fn src_str(&self) -> String {
        crate::net::endpoint(self.src, self.sport)
    }

    #[must_use]
    pub fn dst_str(&self) -> String {
        crate::net::endpoint(self.dst, self.dport)
    }

    /// The ICMP type and code in words ("echo-request"), for ICMP records.
    #[must_use]
    pub fn icmp_name(&self) -> Option<String> {
        let (t, c) = self.icmp_type.zip(self.icmp_code)?;
        Some(icmp_name(self.proto == Proto::Icmp6, t, c))
    }
}

/// "echo-request", "unreachable code=3", ...: an ICMP/ICMPv6 type and code for people.
#[must_use]
pub fn icmp_name(v6: bool, t: u8, c: u8) -> String {
    let name = match (v6, t) {
        (false, 0) | (true, 129) => "echo-reply",
        (false, 8) | (true, 128) => "echo-request",
        (false, 3) | (true, 1) => "unreachable",
        (false, 11) | (true, 3) => "time-exceeded",
        (true, 133) => "router-solicit",
        (true, 134) => "router-advert",
        (true, 135) => "neighbor-solicit",
        (true, 136) => "neighbor-advert",
        (true, 143) => "mld2-report",
        _ => return format!("type={t} code={c}"),
    };
    if c == 0 {
        name.into()
    } else {
        format!("{name} code={c}")
    }
}
