//! A frame made up from a flow's headers (Ethernet, an optional 802.1Q tag, IPv4/IPv6 or
//! ARP, the TCP/UDP/ICMP header with its ports or type), so a pcap-filter expression can be
//! asked about a flow that was counted, not captured (the agent's per-query `expr`). What
//! the flow does not keep - payload bytes, packet lengths, TCP flags, IP options - is
//! zero in it: an expression on those is answered as for such a packet.
//! (Hand-written: a few fixed header layouts; no crate builds frames from parts this small.)
use std::net::IpAddr;

use inspector_common::parse::{ETH_P_8021Q, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6};

use super::Header;
use crate::net::Proto;

/// The made-up frame of a flow with these headers (tagged with `vlan` if it has one).
#[must_use]
pub fn of_header(h: &Header, vlan: Option<u16>) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    if let Some(v) = vlan {
        f.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
        f.extend_from_slice(&(v & 0x0fff).to_be_bytes());
    }
    let l4 = transport(h);
    match (h.proto, h.src, h.dst) {
        (Proto::Arp, Some(IpAddr::V4(s)), Some(IpAddr::V4(d))) => {
            f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
            // Ethernet/IPv4, a request: sender, then target.
            f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
            f.extend_from_slice(&[0; 6]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&[0; 6]);
            f.extend_from_slice(&d.octets());
        }
        (Proto::Ether(t), _, _) => f.extend_from_slice(&t.to_be_bytes()),
        (_, Some(IpAddr::V4(s)), Some(IpAddr::V4(d))) => {
            f.extend_from_slice(&ETH_P_IP.to_be_bytes());
            let total = u16::try_from(20 + l4.len()).unwrap_or(u16::MAX);
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&total.to_be_bytes());
            f.extend_from_slice(&[0, 0, 0x40, 0, 64, h.ip_proto(), 0, 0]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
            f.extend_from_slice(&l4);
        }
        (_, Some(IpAddr::V6(s)), Some(IpAddr::V6(d))) => {
            f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
            let payload = u16::try_from(l4.len()).unwrap_or(u16::MAX);
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&payload.to_be_bytes());
            f.extend_from_slice(&[h.ip_proto(), 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
            f.extend_from_slice(&l4);
        }
        _ => f.extend_from_slice(&[0, 0]),
    }
    f
}

/// The transport header: ports for TCP/UDP/SCTP/UDP-Lite/DCCP, type/code/id for ICMP.
fn transport(h: &Header) -> Vec<u8> {
    let ports = |len: usize| {
        let mut t = vec![0u8; len];
        t[..2].copy_from_slice(&h.sport.unwrap_or(0).to_be_bytes());
        t[2..4].copy_from_slice(&h.dport.unwrap_or(0).to_be_bytes());
        t
    };
    match h.proto {
        Proto::Tcp => {
            let mut t = ports(20);
            t[12] = 5 << 4;
            t
        }
        Proto::Udp | Proto::UdpLite => ports(8),
        Proto::Sctp => ports(12),
        Proto::Dccp => ports(16),
        Proto::Icmp | Proto::Icmp6 => {
            let mut t = vec![h.icmp_type.unwrap_or(0), h.icmp_code.unwrap_or(0), 0, 0];
            t.extend_from_slice(&h.icmp_id.unwrap_or(0).to_be_bytes());
            t.extend_from_slice(&[0, 0]);
            t
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::pcap::Filter;

    fn hdr(proto: Proto, src: &str, sport: u16, dst: &str, dport: u16) -> Header {
        Header {
            proto,
            src: Some(src.parse().unwrap()),
            sport: Some(sport),
            dst: Some(dst.parse().unwrap()),
            dport: Some(dport),
            icmp_type: None,
            icmp_code: None,
            icmp_id: None,
        }
    }

    /// libpcap's own compiled filters (the oracle) accept the made-up frames as they would
    /// a real packet of the flow.
    #[test]
    fn libpcap_reads_the_made_up_headers() {
        let tcp = of_header(&hdr(Proto::Tcp, "198.18.0.2", 4000, "198.18.0.3", 80), None);
        let udp6 = of_header(&hdr(Proto::Udp, "fe80::1", 53, "fe80::2", 5353), Some(100));
        let mut icmp = hdr(Proto::Icmp, "198.18.0.2", 0, "198.18.0.3", 0);
        icmp.icmp_type = Some(8);
        let icmp = of_header(&icmp, None);
        let cases: [(&str, &[u8], bool); 9] = [
            ("tcp dst port 80 and src host 198.18.0.2", &tcp, true),
            ("tcp port 4000 and net 198.18.0.0/24", &tcp, true),
            ("udp", &tcp, false),
            ("vlan 100 and ip6 and udp src port 53", &udp6, true),
            ("vlan 200", &udp6, false),
            ("icmp[icmptype] == icmp-echo", &icmp, true),
            ("icmp[icmptype] == icmp-echoreply", &icmp, false),
            ("not host 198.18.0.9", &tcp, true),
            ("portrange 70-90", &tcp, true),
        ];
        for (expr, frame, want) in cases {
            let f = Filter::new(expr).unwrap();
            let len = u32::try_from(frame.len()).unwrap();
            assert_eq!(f.matches(frame, len), want, "{expr}");
        }
    }
}
