//! From raw kernel records to what users read: decoded addresses and protocols, names for
//! namespaces and interfaces, and flows stitched across hops into the path they took.
pub mod drops;
pub mod filter;
pub mod hops;
pub mod path;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use inspector_common::{
    Direction, FlowKey,
    parse::{ETH_P_ARP, ETH_P_IP, ETH_P_IPV6},
};
use serde::Serialize;

use crate::{
    identity::{Endpoint, Resolver},
    probe::Counts,
    topology::names::Names,
};

/// One flow at one hook, ready to print (`inspector flows` line).
#[derive(Clone, Debug, Serialize)]
pub struct FlowRecord {
    /// Namespace inode (0 if the kernel could not tell).
    pub netns: u64,
    pub netns_name: String,
    pub ifindex: u32,
    pub ifname: String,
    pub direction: &'static str,
    pub proto: String,
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
    pub first_ns: u64,
    pub last_ns: u64,
    pub tcp_flags: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub anomalies: String,
    /// Who sent it and who receives it (`null` when unknown).
    pub src_endpoint: Option<Endpoint>,
    pub dst_endpoint: Option<Endpoint>,
    /// For connections to a Kubernetes Service: the Service, the backend the kernel chose
    /// (and its chain), and the NAT conntrack recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<crate::services::attrib::ServiceRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<crate::services::attrib::BackendRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat: Option<crate::services::attrib::NatRef>,
    /// IP protocol number (for attribution by socket).
    #[serde(skip)]
    pub ip_proto: u8,
}

/// Who is at each end of a packet seen in namespace `seen_in` (flows and drops alike).
#[must_use]
pub fn ends(
    r: &Resolver<'_>,
    src: (Option<IpAddr>, Option<u16>),
    dst: (Option<IpAddr>, Option<u16>),
    ip_proto: u8,
    seen_in: u64,
) -> (Option<Endpoint>, Option<Endpoint>) {
    let one = |(ip, port): (Option<IpAddr>, Option<u16>)| {
        ip.and_then(|ip| r.endpoint(ip, port, ip_proto, seen_in))
    };
    (one(src), one(dst))
}

/// Protocol name for an `EtherType` / IP protocol pair.
#[must_use]
pub fn proto_name(ethertype: u16, proto: u8) -> String {
    match (ethertype, proto) {
        (ETH_P_ARP, _) => "arp".into(),
        (ETH_P_IP | ETH_P_IPV6, 6) => "tcp".into(),
        (ETH_P_IP | ETH_P_IPV6, 17) => "udp".into(),
        (ETH_P_IP, 1) => "icmp".into(),
        (ETH_P_IP, 2) => "igmp".into(),
        (ETH_P_IP | ETH_P_IPV6, 4) => "ipip".into(),
        (ETH_P_IP | ETH_P_IPV6, 41) => "ipv6-in-ip".into(),
        (ETH_P_IP | ETH_P_IPV6, 47) => "gre".into(),
        (ETH_P_IP | ETH_P_IPV6, 50) => "esp".into(),
        (ETH_P_IP | ETH_P_IPV6, 51) => "ah".into(),
        (ETH_P_IP | ETH_P_IPV6, 112) => "vrrp".into(),
        (ETH_P_IPV6, 58) => "icmp6".into(),
        (ETH_P_IP | ETH_P_IPV6, 132) => "sctp".into(),
        (ETH_P_IP | ETH_P_IPV6, 136) => "udplite".into(),
        (ETH_P_IP | ETH_P_IPV6, 33) => "dccp".into(),
        (ETH_P_IP, p) => format!("ip/{p}"),
        (ETH_P_IPV6, p) => format!("ip6/{p}"),
        (e, _) => format!("ether/0x{e:04x}"),
    }
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

/// Whether the protocol's header starts with source and destination ports.
#[must_use]
pub fn carries_ports(ethertype: u16, proto: u8) -> bool {
    matches!(ethertype, ETH_P_IP | ETH_P_IPV6) && matches!(proto, 6 | 17 | 33 | 132 | 136)
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
    pub fn new(k: &FlowKey, s: &Counts, names: &Names) -> Self {
        let inode = u64::from(k.netns);
        let (src, dst) = addrs(k);
        let is_ip = matches!(k.ethertype, ETH_P_IP | ETH_P_IPV6);
        let icmp = is_ip && matches!((k.ethertype, k.proto), (ETH_P_IP, 1) | (ETH_P_IPV6, 58));
        let ports = carries_ports(k.ethertype, k.proto);
        let (netns_name, ifname) = hook_names(names, inode, k.ifindex);
        Self {
            netns: inode,
            netns_name,
            ifindex: k.ifindex,
            ifname,
            direction: Direction::from_u8(k.direction).as_str(),
            proto: proto_name(k.ethertype, k.proto),
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
            tcp_flags: tcp_flags(s.tcp_flags),
            anomalies: anomalies(s.status),
            src_endpoint: None,
            service: None,
            backend: None,
            nat: None,
            dst_endpoint: None,
            ip_proto: if is_ip { k.proto } else { 0 },
        }
    }

    /// Fills in `src_endpoint` and `dst_endpoint`.
    pub fn attribute(&mut self, r: &Resolver<'_>) {
        (self.src_endpoint, self.dst_endpoint) = ends(
            r,
            (self.src, self.sport),
            (self.dst, self.dport),
            self.ip_proto,
            self.netns,
        );
    }

    /// (IP protocol, src, sport, dst, dport) of a key that has ports.
    #[must_use]
    pub fn decode_key(k: &FlowKey) -> Option<(u8, IpAddr, u16, IpAddr, u16)> {
        let (src, dst) = addrs(k);
        carries_ports(k.ethertype, k.proto).then_some((k.proto, src?, k.sport, dst?, k.dport))
    }

    /// Service, backend and NAT from conntrack, if this flow is a connection to a Service.
    pub fn attribute_service(&mut self, s: &crate::services::attrib::Services) {
        let (Some(src), Some(dst), Some(sport), Some(dport)) =
            (self.src, self.dst, self.sport, self.dport)
        else {
            return;
        };
        if let Some(a) = s.lookup(self.ip_proto, src, sport, dst, dport) {
            self.service = Some(a.service.clone());
            self.backend = Some(a.backend.clone());
            self.nat = Some(a.nat.clone());
        }
    }

    /// `ns/name` of the Service this flow went to, if any.
    #[must_use]
    pub fn service_name(&self) -> Option<String> {
        self.service
            .as_ref()
            .map(|s| format!("{}/{}", s.namespace, s.name))
    }

    /// "198.18.0.2:41234" / "198.18.0.2" / "-".
    #[must_use]
    pub fn src_str(&self) -> String {
        endpoint(self.src, self.sport)
    }

    #[must_use]
    pub fn dst_str(&self) -> String {
        endpoint(self.dst, self.dport)
    }

    /// "198.18.0.2:41234 (web)" when the end is attributed, else just the address.
    #[must_use]
    pub fn src_label(&self) -> String {
        labelled(self.src_str(), self.src_endpoint.as_ref())
    }

    #[must_use]
    pub fn dst_label(&self) -> String {
        labelled(self.dst_str(), self.dst_endpoint.as_ref())
    }
}

fn labelled(addr: String, e: Option<&Endpoint>) -> String {
    match e.and_then(|e| e.name.as_deref()) {
        Some(n) => format!("{addr} ({n})"),
        None => addr,
    }
}

#[must_use]
pub fn endpoint(ip: Option<IpAddr>, port: Option<u16>) -> String {
    match (ip, port) {
        (Some(IpAddr::V6(a)), Some(p)) => format!("[{a}]:{p}"),
        (Some(a), Some(p)) => format!("{a}:{p}"),
        (Some(a), None) => a.to_string(),
        (None, _) => "-".into(),
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
