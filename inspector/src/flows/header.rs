//! What a packet's headers say about its flow: protocol, addresses and ports (ICMP's type,
//! code and id instead of ports). Every record that names a flow - flow, drop, packet,
//! `packet_hops` - carries these fields flattened, under the same names.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use inspector_common::{
    FlowKey,
    parse::{ETH_P_ARP, ETH_P_IP, ETH_P_IPV6},
};
use serde::Serialize;

use crate::net::Proto;

/// A connection's (source, source port, destination, destination port).
pub type Tuple = (IpAddr, u16, IpAddr, u16);

/// Protocol, addresses and ports of a flow (`src`/`sport`/`dst`/`dport` in JSON).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Header {
    pub proto: Proto,
    pub src: Option<IpAddr>,
    pub sport: Option<u16>,
    pub dst: Option<IpAddr>,
    pub dport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_id: Option<u16>,
}

impl Header {
    /// Decodes a kernel key: ports only where the protocol has them; for ICMP the kernel
    /// keeps type and code in `dport` and the echo id in `sport`.
    #[must_use]
    pub fn of_key(k: &FlowKey) -> Self {
        let (src, dst) = addrs(k);
        let proto = Proto::from_key(k.ethertype, k.proto);
        let icmp = proto.is_icmp();
        let ports = proto.has_ports();
        Self {
            proto,
            src,
            sport: ports.then_some(k.sport),
            dst,
            dport: ports.then_some(k.dport),
            icmp_type: icmp.then_some((k.dport >> 8) as u8),
            icmp_code: icmp.then_some((k.dport & 0xff) as u8),
            icmp_id: (icmp && k.sport != 0).then_some(k.sport),
        }
    }

    /// (IP protocol, src, sport, dst, dport) of a key that has ports.
    #[must_use]
    pub fn decode_key(k: &FlowKey) -> Option<(u8, IpAddr, u16, IpAddr, u16)> {
        let (src, dst) = addrs(k);
        Proto::from_key(k.ethertype, k.proto)
            .has_ports()
            .then_some((k.proto, src?, k.sport, dst?, k.dport))
    }

    /// The IP protocol number (0 for non-IP), for lookups by socket.
    #[must_use]
    pub fn ip_proto(&self) -> u8 {
        self.proto.number().unwrap_or(0)
    }

    /// The 4-tuple, when the protocol has ports.
    #[must_use]
    pub fn tuple(&self) -> Option<Tuple> {
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
