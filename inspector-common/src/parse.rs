//! The one packet parser, shared by the tc programs and by userspace (which unit-tests it on
//! crafted packets). It reads through [`Packet::read`], which fails instead of reading past the
//! end, so every header access is bounds-checked on both sides; it never panics and never
//! loops unboundedly (the verifier must accept it).
//!
//! Layers: Ethernet, up to two 802.1Q/802.1ad tags, IPv4 (options skipped by IHL, non-first
//! fragments flagged), IPv6 (hop-by-hop, routing, fragment, destination-options and AH
//! extension headers followed up to [`MAX_IPV6_EXT`]), TCP, UDP, UDP-Lite, SCTP, DCCP (ports),
//! ICMP and `ICMPv6` (type, code, echo id), and ARP (sender/target protocol addresses).
//! Anything else is recorded by `EtherType` only.

/// Byte access to one packet.
pub trait Packet {
    /// `N` bytes at `off`, or `None` if the packet is shorter than `off + N`.
    fn read<const N: usize>(&self, off: u32) -> Option<[u8; N]>;
}

impl Packet for [u8] {
    #[inline]
    fn read<const N: usize>(&self, off: u32) -> Option<[u8; N]> {
        let start = off as usize;
        let bytes = self.get(start..start.checked_add(N)?)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Some(out)
    }
}

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;
pub const ETH_P_QINQ1: u16 = 0x9100;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_DCCP: u8 = 33;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_SCTP: u8 = 132;
pub const IPPROTO_UDPLITE: u8 = 136;

/// How many IPv6 extension headers the parser follows before giving up.
pub const MAX_IPV6_EXT: usize = 6;
/// How many VLAN tags the parser steps over.
pub const MAX_VLAN_TAGS: usize = 2;

/// Bits of [`Parsed::status`].
pub mod status {
    /// The packet ended before a header the parser needed.
    pub const TRUNCATED: u8 = 1;
    /// A header field is impossible (wrong IP version, IHL < 5, TCP data offset < 5, ...).
    pub const MALFORMED: u8 = 2;
    /// A non-first IP fragment: no L4 header to read.
    pub const FRAGMENT: u8 = 4;
    /// Neither IPv4 nor IPv6.
    pub const NON_IP: u8 = 8;
    /// More IPv6 extension headers than [`super::MAX_IPV6_EXT`].
    pub const EXT_LIMIT: u8 = 16;
    /// More VLAN tags than [`super::MAX_VLAN_TAGS`].
    pub const VLAN_LIMIT: u8 = 32;
}

/// What the parser found. Zero where a layer is absent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// `EtherType` after VLAN tags (0 if even the Ethernet header is cut).
    pub ethertype: u16,
    /// Outer VLAN id found in the frame (0 = none).
    pub vlan: u16,
    /// IP protocol number of the L4 header (after IPv6 extension headers).
    pub proto: u8,
    /// TCP flags byte (FIN=1, SYN=2, RST=4, PSH=8, ACK=16, URG=32, ECE=64, CWR=128).
    pub tcp_flags: u8,
    /// [`status`] bits.
    pub status: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    /// Offset of the L3 header and of the L4 header (0 if not reached).
    pub l3_off: u16,
    pub l4_off: u16,
}

impl Parsed {
    /// 4 for IPv4, 6 for IPv6, 0 otherwise.
    #[must_use]
    pub const fn ip_family(&self) -> u8 {
        match self.ethertype {
            ETH_P_IP => 4,
            ETH_P_IPV6 => 6,
            _ => 0,
        }
    }
}

#[inline(always)]
const fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// The first [`FAST_LEN`] bytes of a frame, known to be there: the fast path reads them as
/// big-endian 16-bit words at even offsets. In the kernel that is one aligned 2-byte load each
/// after a single bounds check; byte arrays copied to the stack cost far more.
pub trait Head {
    /// Big-endian u16 at even offset `off` (< [`FAST_LEN`]).
    fn w(&self, off: usize) -> u16;
    /// The 4 bytes at `off` (an IPv4 address), in packet order.
    fn a4(&self, off: usize) -> [u8; 4];
}

/// Bytes the fast path needs in the linear part of the packet.
pub const FAST_LEN: usize = 48;

impl Head for [u8; FAST_LEN] {
    #[inline(always)]
    fn w(&self, off: usize) -> u16 {
        be16([self[off], self[off + 1]])
    }

    #[inline(always)]
    fn a4(&self, off: usize) -> [u8; 4] {
        [self[off], self[off + 1], self[off + 2], self[off + 3]]
    }
}

/// What the fast path extracts from an untagged IPv4 packet without options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastV4 {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub tcp_flags: u8,
    pub status: u8,
}

impl FastV4 {
    /// The same result in the general parser's form.
    #[must_use]
    pub fn to_parsed(&self) -> Parsed {
        let mut out = Parsed {
            ethertype: ETH_P_IP,
            proto: self.proto,
            tcp_flags: self.tcp_flags,
            status: self.status,
            sport: self.sport,
            dport: self.dport,
            l3_off: 14,
            l4_off: 34,
            ..Parsed::default()
        };
        out.src[..4].copy_from_slice(&self.src);
        out.dst[..4].copy_from_slice(&self.dst);
        out
    }
}

/// The fast path: untagged IPv4, IHL 5, not a later fragment, and (for TCP) the whole TCP
/// header within `avail` bytes. `None` means "ask the general parser", which gives the same
/// answer for everything this accepts (a unit test checks that on generated packets).
#[inline(always)]
pub fn fast_v4<H: Head + ?Sized>(h: &H, avail: usize) -> Option<FastV4> {
    if h.w(12) != ETH_P_IP || h.w(14) >> 8 != 0x45 || h.w(16) < 20 || h.w(20) & 0x1fff != 0 {
        return None;
    }
    let proto = (h.w(22) & 0xff) as u8;
    let mut out = FastV4 {
        src: h.a4(26),
        dst: h.a4(30),
        proto,
        ..FastV4::default()
    };
    match proto {
        IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_SCTP | IPPROTO_DCCP => {
            out.sport = h.w(34);
            out.dport = h.w(36);
        }
        IPPROTO_ICMP => {
            out.dport = h.w(34);
            if matches!(out.dport >> 8, 0 | 8 | 13 | 14) {
                out.sport = h.w(38);
            }
        }
        IPPROTO_TCP => {
            if avail < 54 {
                return None;
            }
            out.sport = h.w(34);
            out.dport = h.w(36);
            let off_flags = h.w(46);
            out.tcp_flags = (off_flags & 0xff) as u8;
            if off_flags >> 12 < 5 {
                out.status |= status::MALFORMED;
            }
        }
        _ => {}
    }
    Some(out)
}

/// Parses one frame that starts with an Ethernet header: the fast path when it applies, the
/// general parser otherwise.
#[inline(always)]
pub fn parse<P: Packet + ?Sized>(pkt: &P) -> Parsed {
    if let Some(h) = pkt.read::<FAST_LEN>(0) {
        let avail = if pkt.read::<1>(53).is_some() {
            54
        } else {
            FAST_LEN
        };
        if let Some(f) = fast_v4(&h, avail) {
            return f.to_parsed();
        }
    }
    parse_general(pkt)
}

/// The general parser: every layer and every odd case. Public so tests can check that the
/// fast path in [`parse`] agrees with it.
#[inline(always)]
pub fn parse_general<P: Packet + ?Sized>(pkt: &P) -> Parsed {
    let mut out = Parsed::default();
    let Some(eth) = pkt.read::<14>(0) else {
        out.status |= status::TRUNCATED;
        return out;
    };
    let mut ethertype = be16([eth[12], eth[13]]);
    let mut off: u32 = 14;
    let mut tags = 0;
    while tags < MAX_VLAN_TAGS
        && (ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD || ethertype == ETH_P_QINQ1)
    {
        let Some(tag) = pkt.read::<4>(off) else {
            out.ethertype = ethertype;
            out.status |= status::TRUNCATED;
            return out;
        };
        if tags == 0 {
            out.vlan = be16([tag[0], tag[1]]) & 0x0fff;
        }
        ethertype = be16([tag[2], tag[3]]);
        off += 4;
        tags += 1;
    }
    out.ethertype = ethertype;
    out.l3_off = off as u16;
    match ethertype {
        ETH_P_IP => parse_ipv4(pkt, off, &mut out),
        ETH_P_IPV6 => parse_ipv6(pkt, off, &mut out),
        ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ1 => {
            out.status |= status::NON_IP | status::VLAN_LIMIT;
        }
        ETH_P_ARP => {
            out.status |= status::NON_IP;
            parse_arp(pkt, off, &mut out);
        }
        _ => out.status |= status::NON_IP,
    }
    out
}

/// Parses a packet that starts at its network header (no Ethernet), given its `EtherType`: the
/// view the kernel has of a packet it is about to drop.
#[inline(always)]
pub fn parse_l3<P: Packet + ?Sized>(pkt: &P, ethertype: u16) -> Parsed {
    let mut out = Parsed {
        ethertype,
        ..Parsed::default()
    };
    match ethertype {
        ETH_P_IP => parse_ipv4(pkt, 0, &mut out),
        ETH_P_IPV6 => parse_ipv6(pkt, 0, &mut out),
        ETH_P_ARP => {
            out.status |= status::NON_IP;
            parse_arp(pkt, 0, &mut out);
        }
        _ => out.status |= status::NON_IP,
    }
    out
}

#[inline(always)]
fn parse_arp<P: Packet + ?Sized>(pkt: &P, off: u32, out: &mut Parsed) {
    let Some(arp) = pkt.read::<28>(off) else {
        out.status |= status::TRUNCATED;
        return;
    };
    // Only Ethernet/IPv4 ARP has addresses we can show.
    if be16([arp[0], arp[1]]) == 1
        && be16([arp[2], arp[3]]) == ETH_P_IP
        && arp[4] == 6
        && arp[5] == 4
    {
        out.dport = be16([arp[6], arp[7]]);
        out.src[..4].copy_from_slice(&arp[14..18]);
        out.dst[..4].copy_from_slice(&arp[24..28]);
    } else {
        out.status |= status::MALFORMED;
    }
}

#[inline(always)]
fn parse_ipv4<P: Packet + ?Sized>(pkt: &P, off: u32, out: &mut Parsed) {
    let Some(ip) = pkt.read::<20>(off) else {
        out.status |= status::TRUNCATED;
        return;
    };
    out.src[..4].copy_from_slice(&ip[12..16]);
    out.dst[..4].copy_from_slice(&ip[16..20]);
    out.proto = ip[9];
    let ihl = u32::from(ip[0] & 0x0f) * 4;
    let total_len = u32::from(be16([ip[2], ip[3]]));
    if ip[0] >> 4 != 4 || ihl < 20 || total_len < ihl {
        out.status |= status::MALFORMED;
        return;
    }
    // IHL beyond what the packet holds: the options are cut.
    if ihl > 20 && pkt.read::<1>(off + ihl - 1).is_none() {
        out.status |= status::TRUNCATED;
        return;
    }
    let frag = be16([ip[6], ip[7]]);
    if frag & 0x1fff != 0 {
        out.status |= status::FRAGMENT;
        return;
    }
    parse_l4(pkt, off + ihl, out);
}

#[inline(always)]
fn parse_ipv6<P: Packet + ?Sized>(pkt: &P, off: u32, out: &mut Parsed) {
    let Some(ip) = pkt.read::<40>(off) else {
        out.status |= status::TRUNCATED;
        return;
    };
    out.src.copy_from_slice(&ip[8..24]);
    out.dst.copy_from_slice(&ip[24..40]);
    if ip[0] >> 4 != 6 {
        out.status |= status::MALFORMED;
        return;
    }
    let mut next = ip[6];
    let mut off = off + 40;
    let mut i = 0;
    while i < MAX_IPV6_EXT {
        let len = match next {
            // Hop-by-hop, routing, destination options: (hdr ext len + 1) * 8.
            0 | 43 | 60 => {
                let Some(h) = pkt.read::<2>(off) else {
                    out.proto = next;
                    out.status |= status::TRUNCATED;
                    return;
                };
                next = h[0];
                (u32::from(h[1]) + 1) * 8
            }
            // Fragment header: fixed 8 bytes; a non-first fragment has no L4 header.
            44 => {
                let Some(h) = pkt.read::<8>(off) else {
                    out.proto = next;
                    out.status |= status::TRUNCATED;
                    return;
                };
                next = h[0];
                if be16([h[2], h[3]]) & 0xfff8 != 0 {
                    out.proto = next;
                    out.status |= status::FRAGMENT;
                    return;
                }
                8
            }
            // Authentication header: (payload len + 2) * 4.
            51 => {
                let Some(h) = pkt.read::<2>(off) else {
                    out.proto = next;
                    out.status |= status::TRUNCATED;
                    return;
                };
                next = h[0];
                (u32::from(h[1]) + 2) * 4
            }
            _ => {
                out.proto = next;
                parse_l4(pkt, off, out);
                return;
            }
        };
        off += len;
        i += 1;
    }
    out.proto = next;
    out.status |= status::EXT_LIMIT;
}

/// Reads the L4 header at `off`. `l4_off` is set only where the frame reaches (an IPv6
/// extension header can claim to end past it: then the packet is truncated, its L4 header
/// not reached).
#[inline(always)]
fn parse_l4<P: Packet + ?Sized>(pkt: &P, off: u32, out: &mut Parsed) {
    match out.proto {
        IPPROTO_TCP => {
            if let Some(tcp) = pkt.read::<20>(off) {
                out.l4_off = off as u16;
                out.sport = be16([tcp[0], tcp[1]]);
                out.dport = be16([tcp[2], tcp[3]]);
                out.tcp_flags = tcp[13];
                if tcp[12] >> 4 < 5 {
                    out.status |= status::MALFORMED;
                }
            } else {
                out.status |= status::TRUNCATED;
                read_ports(pkt, off, out);
            }
        }
        IPPROTO_UDP | IPPROTO_UDPLITE => {
            if let Some(udp) = pkt.read::<8>(off) {
                out.l4_off = off as u16;
                out.sport = be16([udp[0], udp[1]]);
                out.dport = be16([udp[2], udp[3]]);
            } else {
                out.status |= status::TRUNCATED;
                read_ports(pkt, off, out);
            }
        }
        IPPROTO_SCTP | IPPROTO_DCCP => read_ports(pkt, off, out),
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            let Some(icmp) = pkt.read::<8>(off) else {
                out.status |= status::TRUNCATED;
                return;
            };
            out.l4_off = off as u16;
            let (ty, code) = (icmp[0], icmp[1]);
            out.dport = (u16::from(ty) << 8) | u16::from(code);
            let echo = if out.proto == IPPROTO_ICMP {
                matches!(ty, 0 | 8 | 13 | 14)
            } else {
                matches!(ty, 128 | 129)
            };
            if echo {
                out.sport = be16([icmp[4], icmp[5]]);
            }
        }
        _ => {
            if pkt.read::<1>(off).is_some() {
                out.l4_off = off as u16;
            } else {
                out.status |= status::TRUNCATED;
            }
        }
    }
}

/// Reads the two port fields that start TCP, UDP, SCTP and DCCP headers.
#[inline(always)]
fn read_ports<P: Packet + ?Sized>(pkt: &P, off: u32, out: &mut Parsed) {
    if let Some(p) = pkt.read::<4>(off) {
        out.l4_off = off as u16;
        out.sport = be16([p[0], p[1]]);
        out.dport = be16([p[2], p[3]]);
    } else {
        out.status |= status::TRUNCATED;
    }
}
