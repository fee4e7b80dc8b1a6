//! The packet filter users give (`--proto`, `--host`, `--port`): parsed and validated once,
//! then applied in the kernel (as the load-time `Config`) for events and in userspace for flows.
use inspector_common::{
    FlowKey,
    config::Config,
    parse::{ETH_P_ARP, ETH_P_IP, ETH_P_IPV6},
};

use crate::net::Cidr;

/// A protocol as the user names it for the filter (`--proto`): IP protocol numbers match
/// either IP version unless the name says one (icmp, icmp6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoFilter {
    /// An IP protocol number (any IP version unless `v` is set).
    Ip { proto: u8, v: Option<u16> },
    /// A non-IP `EtherType`.
    Ether(u16),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub proto: Option<ProtoFilter>,
    pub host: Option<Cidr>,
    pub port: Option<u16>,
    /// `--service NS/NAME`: only connections to that Service (decided in userspace, from
    /// conntrack; not part of the kernel-side filter).
    pub service: Option<String>,
    /// A pcap-filter expression (the positional argument), compiled: evaluated in the
    /// kernel, before counting and tracing.
    pub expression: Option<crate::probe::pcap::Filter>,
}

/// A filter the user typed that makes no sense; the message names it and says what is allowed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error(
        "unknown protocol '{0}': use tcp, udp, icmp, icmp6, sctp, udplite, dccp, arp, an IP \
         protocol number (0-255) or ether/0xNNNN"
    )]
    Proto(String),
    #[error("bad address '{0}': use an IPv4/IPv6 address or CIDR such as 198.18.0.0/15")]
    Host(String),
    #[error("bad port '{0}': use a number from 1 to 65535")]
    Port(String),
}

impl ProtoFilter {
    pub fn parse(s: &str) -> Result<Self, FilterError> {
        let err = || FilterError::Proto(s.to_owned());
        Ok(match s.to_ascii_lowercase().as_str() {
            "tcp" => Self::Ip { proto: 6, v: None },
            "udp" => Self::Ip { proto: 17, v: None },
            "icmp" => Self::Ip {
                proto: 1,
                v: Some(ETH_P_IP),
            },
            "icmp6" | "icmpv6" => Self::Ip {
                proto: 58,
                v: Some(ETH_P_IPV6),
            },
            "sctp" => Self::Ip {
                proto: 132,
                v: None,
            },
            "udplite" => Self::Ip {
                proto: 136,
                v: None,
            },
            "dccp" => Self::Ip { proto: 33, v: None },
            "arp" => Self::Ether(ETH_P_ARP),
            other => {
                if let Some(hex) = other.strip_prefix("ether/0x") {
                    Self::Ether(u16::from_str_radix(hex, 16).map_err(|_| err())?)
                } else {
                    let n: u8 = other.parse().map_err(|_| err())?;
                    if n == 0 {
                        return Err(err());
                    }
                    Self::Ip { proto: n, v: None }
                }
            }
        })
    }
}

/// Parses `--host`: an address or a network.
pub fn parse_host(s: &str) -> Result<Cidr, FilterError> {
    Cidr::parse(s).map_err(|_| FilterError::Host(s.to_owned()))
}

/// Sets the address part of a kernel `Config` to the network `c`.
fn apply_host(c: &Cidr, cfg: &mut Config) {
    let (fam, net, mask) = c.to_key_bytes();
    cfg.host_family = fam;
    cfg.host = net;
    cfg.host_mask = mask;
}

pub fn parse_port(s: &str) -> Result<u16, FilterError> {
    s.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| FilterError::Port(s.to_owned()))
}

impl Filter {
    /// Writes the kernel-side part of the filter into the load-time configuration. Parts the
    /// kernel cannot express (a non-IP `EtherType`) are left to [`Filter::matches`].
    pub fn apply_to(&self, cfg: &mut Config) {
        if let Some(ProtoFilter::Ip { proto, .. }) = self.proto {
            cfg.proto = proto;
        }
        if let Some(port) = self.port {
            cfg.port = port;
        }
        if let Some(c) = self.host {
            apply_host(&c, cfg);
        }
    }

    /// Whether a decoded header passes the protocol, host and port parts of the filter (for
    /// records already read, e.g. the agent's API; the same rules as [`Filter::matches`]).
    #[must_use]
    pub fn matches_header(&self, h: &crate::flows::Header) -> bool {
        use crate::net::Proto;
        let v4 = h.src.is_some_and(|a| a.is_ipv4());
        let ip = h.src.is_some() && !matches!(h.proto, Proto::Arp | Proto::Ether(_));
        match self.proto {
            Some(ProtoFilter::Ip { proto, v }) => {
                let v_ok = match v {
                    Some(ETH_P_IP) => v4,
                    Some(_) => !v4,
                    None => true,
                };
                if !ip || h.ip_proto() != proto || !v_ok {
                    return false;
                }
            }
            Some(ProtoFilter::Ether(e)) => {
                let ok = match h.proto {
                    Proto::Arp => e == ETH_P_ARP,
                    Proto::Ether(x) => x == e,
                    _ => false,
                };
                if !ok {
                    return false;
                }
            }
            None => {}
        }
        if let Some(port) = self.port
            && h.sport != Some(port)
            && h.dport != Some(port)
        {
            return false;
        }
        if let Some(c) = self.host
            && !h.src.is_some_and(|a| c.contains(a))
            && !h.dst.is_some_and(|a| c.contains(a))
        {
            return false;
        }
        true
    }

    /// Whether a flow key passes the whole filter.
    #[must_use]
    pub fn matches(&self, k: &FlowKey) -> bool {
        let is_ip = k.ethertype == ETH_P_IP || k.ethertype == ETH_P_IPV6;
        match self.proto {
            Some(ProtoFilter::Ip { proto, v })
                if !is_ip || k.proto != proto || v.is_some_and(|v| v != k.ethertype) =>
            {
                return false;
            }
            Some(ProtoFilter::Ether(e)) if k.ethertype != e => return false,
            _ => {}
        }
        if let Some(port) = self.port {
            let has_ports = is_ip && matches!(k.proto, 6 | 17 | 33 | 132 | 136);
            if !has_ports || (k.sport != port && k.dport != port) {
                return false;
            }
        }
        if let Some(c) = self.host {
            let mut cfg = Config::zeroed();
            apply_host(&c, &mut cfg);
            let fam = match k.ethertype {
                ETH_P_IP | ETH_P_ARP => 4,
                ETH_P_IPV6 => 6,
                _ => 0,
            };
            if !cfg.host_matches(fam, &k.src) && !cfg.host_matches(fam, &k.dst) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_inputs_are_named() {
        assert_eq!(
            ProtoFilter::parse("tcpp"),
            Err(FilterError::Proto("tcpp".into()))
        );
        assert_eq!(
            parse_host("198.18.0.0/33"),
            Err(FilterError::Host("198.18.0.0/33".into()))
        );
        assert_eq!(parse_port("0"), Err(FilterError::Port("0".into())));
        assert_eq!(parse_port("70000"), Err(FilterError::Port("70000".into())));
    }

    #[test]
    fn host_filter_matches_either_end() {
        let f = Filter {
            host: Some(parse_host("198.18.1.0/24").unwrap()),
            ..Filter::default()
        };
        let mut k = FlowKey::zeroed();
        k.ethertype = ETH_P_IP;
        k.src[..4].copy_from_slice(&[198, 18, 0, 5]);
        k.dst[..4].copy_from_slice(&[198, 18, 1, 9]);
        assert!(f.matches(&k));
        k.dst[..4].copy_from_slice(&[198, 18, 2, 9]);
        assert!(!f.matches(&k));
    }
}
