//! The protocol of a record, typed: what `--proto` names and JSON writes ("tcp", "icmp6",
//! "arp", "ip/47", "ether/0x88cc"), decided once from the kernel key's `EtherType` and IP
//! protocol number.
use inspector_common::parse::{ETH_P_ARP, ETH_P_IP, ETH_P_IPV6};

/// A packet's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
    Icmp6,
    Igmp,
    IpIp,
    Ipv6InIp,
    Gre,
    Esp,
    Ah,
    Vrrp,
    Sctp,
    UdpLite,
    Dccp,
    Arp,
    /// Another IP protocol number, over IPv4 (`v6` false) or IPv6.
    Ip {
        number: u8,
        v6: bool,
    },
    /// A non-IP `EtherType`.
    Ether(u16),
}

const NAMED: [(Proto, &str, u8); 14] = [
    (Proto::Tcp, "tcp", 6),
    (Proto::Udp, "udp", 17),
    (Proto::Icmp, "icmp", 1),
    (Proto::Icmp6, "icmp6", 58),
    (Proto::Igmp, "igmp", 2),
    (Proto::IpIp, "ipip", 4),
    (Proto::Ipv6InIp, "ipv6-in-ip", 41),
    (Proto::Gre, "gre", 47),
    (Proto::Esp, "esp", 50),
    (Proto::Ah, "ah", 51),
    (Proto::Vrrp, "vrrp", 112),
    (Proto::Sctp, "sctp", 132),
    (Proto::UdpLite, "udplite", 136),
    (Proto::Dccp, "dccp", 33),
];

impl Proto {
    /// From an `EtherType` and (for IP) the protocol number, as the kernel keys carry them.
    #[must_use]
    pub fn from_key(ethertype: u16, number: u8) -> Self {
        let v6 = match ethertype {
            ETH_P_ARP => return Self::Arp,
            ETH_P_IP => false,
            ETH_P_IPV6 => true,
            e => return Self::Ether(e),
        };
        match (number, v6) {
            (1 | 2, false) => {}
            (58, true) => return Self::Icmp6,
            (1 | 2 | 58, _) => return Self::Ip { number, v6 },
            _ => {}
        }
        NAMED
            .iter()
            .find(|(_, _, n)| *n == number)
            .map_or(Self::Ip { number, v6 }, |(p, _, _)| *p)
    }

    /// The IP protocol number (None for ARP and other `EtherTypes`).
    #[must_use]
    pub fn number(self) -> Option<u8> {
        match self {
            Self::Ip { number, .. } => Some(number),
            Self::Arp | Self::Ether(_) => None,
            p => NAMED.iter().find(|(q, _, _)| *q == p).map(|(_, _, n)| *n),
        }
    }

    /// Whether the protocol's header starts with source and destination ports.
    #[must_use]
    pub fn has_ports(self) -> bool {
        matches!(
            self,
            Self::Tcp | Self::Udp | Self::Sctp | Self::UdpLite | Self::Dccp
        )
    }

    /// ICMP or `ICMPv6`.
    #[must_use]
    pub fn is_icmp(self) -> bool {
        matches!(self, Self::Icmp | Self::Icmp6)
    }
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Arp => f.write_str("arp"),
            Self::Ip { number, v6: false } => write!(f, "ip/{number}"),
            Self::Ip { number, v6: true } => write!(f, "ip6/{number}"),
            Self::Ether(e) => write!(f, "ether/0x{e:04x}"),
            p => f.write_str(
                NAMED
                    .iter()
                    .find(|(q, _, _)| q == p)
                    .map_or("?", |(_, name, _)| name),
            ),
        }
    }
}

/// A protocol name nobody knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol '{0}'")]
pub struct UnknownProto(pub String);

impl std::str::FromStr for Proto {
    type Err = UnknownProto;

    /// A protocol name as `--proto` takes it, in any case ("TCP" too); numbers of named
    /// protocols become their names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let l = s.to_ascii_lowercase();
        if l == "arp" {
            return Ok(Self::Arp);
        }
        if l == "icmpv6" {
            return Ok(Self::Icmp6);
        }
        if let Some((p, _, _)) = NAMED.iter().find(|(_, name, _)| *name == l) {
            return Ok(*p);
        }
        if let Some(hex) = l.strip_prefix("ether/0x") {
            return u16::from_str_radix(hex, 16)
                .map(Self::Ether)
                .map_err(|_| UnknownProto(s.to_owned()));
        }
        match l.parse::<u8>() {
            Ok(n) if n > 0 => Ok(Self::from_key(ETH_P_IP, n)),
            _ => Err(UnknownProto(s.to_owned())),
        }
    }
}

impl serde::Serialize for Proto {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Proto {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        if let Some(n) = s.strip_prefix("ip6/").and_then(|n| n.parse().ok()) {
            return Ok(Self::Ip {
                number: n,
                v6: true,
            });
        }
        if let Some(n) = s.strip_prefix("ip/").and_then(|n| n.parse().ok()) {
            return Ok(Self::Ip {
                number: n,
                v6: false,
            });
        }
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (e, n, name) in [
            (ETH_P_IP, 6, "tcp"),
            (ETH_P_IPV6, 6, "tcp"),
            (ETH_P_IP, 1, "icmp"),
            (ETH_P_IPV6, 58, "icmp6"),
            (ETH_P_IPV6, 1, "ip6/1"),
            (ETH_P_IP, 58, "ip/58"),
            (ETH_P_IP, 47, "gre"),
            (ETH_P_IP, 200, "ip/200"),
            (ETH_P_IPV6, 200, "ip6/200"),
            (ETH_P_ARP, 0, "arp"),
            (0x88cc, 0, "ether/0x88cc"),
        ] {
            let p = Proto::from_key(e, n);
            assert_eq!(p.to_string(), name);
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<Proto>(&json).unwrap(), p, "{name}");
        }
        assert_eq!("TCP".parse::<Proto>(), Ok(Proto::Tcp));
        assert_eq!("Udp".parse::<Proto>(), Ok(Proto::Udp));
        assert_eq!("17".parse::<Proto>(), Ok(Proto::Udp));
        assert!("tcpp".parse::<Proto>().is_err());
        assert_eq!(Proto::Udp.number(), Some(17));
        assert!(Proto::Tcp.has_ports() && !Proto::Icmp.has_ports());
    }
}
