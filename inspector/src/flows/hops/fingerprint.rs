//! One packet's fingerprint: what identifies it at every hook it crosses - IPv4 id, total
//! length and protocol, plus TCP sequence and acknowledgement numbers (or ICMP type and echo
//! sequence, or the UDP length and a hash of its payload) - read from the headers an event
//! carries. Addresses and ports are left out on purpose: DNAT and masquerade rewrite them
//! between hops.
use inspector_common::{
    PacketEvent,
    parse::{ETH_P_IP, ETH_P_IPV6},
};

/// What identifies one packet at every hook it crosses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    pub proto: u8,
    pub ip_id: u32,
    pub len: u16,
    pub a: u32,
    pub b: u32,
}

impl Fingerprint {
    /// The fingerprint folded into 64 bits (the per-hop aggregator's key: two packets in
    /// flight at once colliding here is a 1-in-10^10 event at 32,768 packets).
    #[must_use]
    pub fn key(&self) -> u64 {
        let x = (u64::from(self.a) << 32 | u64::from(self.b))
            ^ (u64::from(self.ip_id) << 24 | u64::from(self.len) << 8 | u64::from(self.proto))
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9)
    }
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// The fingerprint of the packet an event carries (None for non-IP packets or headers cut
/// short).
#[must_use]
pub fn fingerprint(ev: &PacketEvent) -> Option<Fingerprint> {
    let snap = &ev.snap[..usize::from(ev.snap_len).min(ev.snap.len())];
    // Fast path: untagged IPv4 without options carrying TCP, the common case.
    if let Some(h) = snap.get(..54)
        && h[12..14] == [0x08, 0x00]
        && h[14] == 0x45
        && h[23] == 6
    {
        let w32 = |o: usize| u32::from_be_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        return Some(Fingerprint {
            proto: 6,
            ip_id: u32::from(u16::from_be_bytes([h[18], h[19]])),
            len: u16::from_be_bytes([h[16], h[17]]),
            a: w32(38),
            b: w32(42),
        });
    }
    // The snapshot starts at the MAC header on Ethernet-like devices; skip VLAN tags.
    let mut off = 12;
    let mut ethertype = be16(snap, off)?;
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        off += 4;
        ethertype = be16(snap, off)?;
    }
    off += 2;
    match ethertype {
        ETH_P_IP => {
            let ihl = usize::from(snap.get(off)? & 0x0f) * 4;
            let len = be16(snap, off + 2)?;
            let ip_id = u32::from(be16(snap, off + 4)?);
            let proto = *snap.get(off + 9)?;
            let l4 = off + ihl;
            let (a, b) = l4_words(snap, proto, l4)?;
            Some(Fingerprint {
                proto,
                ip_id,
                len,
                a,
                b,
            })
        }
        ETH_P_IPV6 => {
            // No id in IPv6: the flow label stands in (constant per flow), with the L4 words.
            let flow = be32(snap, off)? & 0x000f_ffff;
            let len = be16(snap, off + 4)?;
            let proto = *snap.get(off + 6)?;
            let (a, b) = l4_words(snap, proto, off + 40)?;
            Some(Fingerprint {
                proto,
                ip_id: flow,
                len,
                a,
                b,
            })
        }
        _ => None,
    }
}

/// Two words of the L4 header that NAT leaves alone.
fn l4_words(snap: &[u8], proto: u8, l4: usize) -> Option<(u32, u32)> {
    match proto {
        // TCP: sequence and acknowledgement numbers.
        6 => Some((be32(snap, l4 + 4)?, be32(snap, l4 + 8)?)),
        // ICMP/ICMPv6: type/code and the echo sequence (the id may be rewritten by NAT).
        1 | 58 => Some((
            u32::from(be16(snap, l4)?),
            u32::from(be16(snap, l4 + 6).unwrap_or(0)),
        )),
        // UDP: its length and a hash of the payload bytes the snapshot holds (ports change
        // under NAT; unconnected sockets send every datagram with IP id 0).
        17 => Some((
            u32::from(be16(snap, l4 + 4)?),
            snap.get(l4 + 8..).map_or(0, |p| {
                p.iter().fold(0x811c_9dc5u32, |h, b| {
                    (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
                })
            }),
        )),
        _ => Some((0, 0)),
    }
}
