//! One packet's hops: the per-hook events of the same packet stitched together by a
//! fingerprint that survives NAT and veth/bridge crossings - IPv4 id, total length and
//! protocol, plus TCP sequence and acknowledgement numbers (or ICMP id/sequence, or the UDP
//! length) - read from the headers each event carries. Addresses and ports are left out on
//! purpose: DNAT and masquerade rewrite them between hops.
use std::collections::HashMap;

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

/// Groups events per packet and hands a packet's events over once it has been quiet.
#[derive(Default)]
pub struct Stitcher {
    open: HashMap<Fingerprint, Vec<PacketEvent>>,
    /// Events that had no fingerprint (non-IP): passed through as one-hop packets.
    single: Vec<PacketEvent>,
}

/// At most this many open packets; the oldest are closed first when full.
const MAX_OPEN: usize = 65_536;

impl Stitcher {
    pub fn push(&mut self, ev: &PacketEvent) {
        match fingerprint(ev) {
            Some(fp) => {
                if self.open.len() >= MAX_OPEN && !self.open.contains_key(&fp) {
                    return;
                }
                self.open.entry(fp).or_default().push(*ev);
            }
            None => self.single.push(*ev),
        }
    }

    /// Packets whose last event is older than `now_ns - idle_ns` (all when `idle_ns` is 0),
    /// each with its events in path order (time, then egress before ingress at equal time).
    pub fn take_quiet(&mut self, now_ns: u64, idle_ns: u64) -> Vec<Vec<PacketEvent>> {
        let mut done: Vec<Vec<PacketEvent>> = self.single.drain(..).map(|e| vec![e]).collect();
        let quiet: Vec<Fingerprint> = self
            .open
            .iter()
            .filter(|(_, v)| {
                idle_ns == 0 || v.iter().map(|e| e.ts_ns).max().unwrap_or(0) + idle_ns <= now_ns
            })
            .map(|(k, _)| *k)
            .collect();
        for k in quiet {
            if let Some(mut v) = self.open.remove(&k) {
                v.sort_by_key(|e| {
                    (
                        e.ts_ns,
                        e.key.direction != inspector_common::Direction::Egress as u8,
                    )
                });
                done.push(v);
            }
        }
        done.sort_by_key(|v| v.first().map_or(0, |e| e.ts_ns));
        done
    }
}

/// Time between consecutive hops, per endpoint pair and hop, over stitched packets
/// (`flows --latency`).
#[derive(Default)]
pub struct Latency {
    samples: std::collections::BTreeMap<(String, String, String), Vec<u64>>,
}

/// One row of the latency table (`type: "latency"` JSON).
#[derive(Debug, serde::Serialize)]
pub struct LatencyRow {
    /// `src -> dst`, named when the ends are known.
    pub pair: String,
    /// `netns/ifname(out|in)` of the hop the time is measured from, and to.
    pub from: String,
    pub to: String,
    pub packets: usize,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

/// At most this many samples per (pair, hop); later ones replace earlier ones in turn.
const MAX_SAMPLES: usize = 100_000;

impl Latency {
    /// Adds one packet: `hops` are (label) in path order with their timestamps.
    pub fn add(&mut self, pair: &str, hops: &[(String, u64)]) {
        for w in hops.windows(2) {
            let v = self
                .samples
                .entry((pair.to_owned(), w[0].0.clone(), w[1].0.clone()))
                .or_default();
            let d = w[1].1.saturating_sub(w[0].1);
            if v.len() < MAX_SAMPLES {
                v.push(d);
            } else {
                let i = usize::try_from(d).unwrap_or(0) % MAX_SAMPLES;
                v[i] = d;
            }
        }
    }

    /// Percentiles per (pair, hop).
    #[must_use]
    pub fn rows(&self) -> Vec<LatencyRow> {
        self.samples
            .iter()
            .map(|((pair, from, to), v)| {
                let mut s = v.clone();
                s.sort_unstable();
                let pct = |p: usize| {
                    s[((s.len() * p).div_ceil(100))
                        .saturating_sub(1)
                        .min(s.len() - 1)]
                };
                LatencyRow {
                    pair: pair.clone(),
                    from: from.clone(),
                    to: to.clone(),
                    packets: s.len(),
                    p50_ns: pct(50),
                    p90_ns: pct(90),
                    p99_ns: pct(99),
                    max_ns: s[s.len() - 1],
                }
            })
            .collect()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ts: u64, dir: u8, ifindex: u32, frame: &[u8]) -> PacketEvent {
        // SAFETY: PacketEvent is plain old data; all-zero is a valid value.
        let mut ev: PacketEvent = unsafe { std::mem::zeroed() };
        ev.ts_ns = ts;
        ev.key.direction = dir;
        ev.key.ifindex = ifindex;
        ev.snap[..frame.len()].copy_from_slice(frame);
        ev.snap_len = u16::try_from(frame.len()).unwrap();
        ev
    }

    /// An Ethernet + IPv4 + TCP header with the given addresses, id and sequence number.
    fn tcp_frame(src: [u8; 4], dst: [u8; 4], sport: u16, id: u16, seq: u32) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[16..18].copy_from_slice(&60u16.to_be_bytes());
        f[18..20].copy_from_slice(&id.to_be_bytes());
        f[23] = 6;
        f[26..30].copy_from_slice(&src);
        f[30..34].copy_from_slice(&dst);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[38..42].copy_from_slice(&seq.to_be_bytes());
        f
    }

    #[test]
    fn a_packet_is_one_packet_across_dnat_and_masquerade() {
        let before = tcp_frame([198, 18, 30, 5], [198, 18, 32, 10], 40000, 7, 1000);
        let after = tcp_frame([198, 18, 30, 1], [198, 18, 30, 2], 51234, 7, 1000);
        let other = tcp_frame([198, 18, 30, 5], [198, 18, 32, 10], 40000, 8, 1000);
        let mut s = Stitcher::default();
        s.push(&event(100, 1, 9, &before));
        s.push(&event(130, 0, 10, &before));
        s.push(&event(190, 1, 11, &after));
        s.push(&event(195, 0, 2, &after));
        s.push(&event(150, 1, 9, &other));
        assert!(
            s.take_quiet(200, 1000).is_empty(),
            "still within the idle window"
        );
        let done = s.take_quiet(10_000, 1000);
        assert_eq!(done.len(), 2);
        let hops: Vec<(u64, u32)> = done[0].iter().map(|e| (e.ts_ns, e.key.ifindex)).collect();
        assert_eq!(hops, [(100, 9), (130, 10), (190, 11), (195, 2)]);
        assert_eq!(done[1].len(), 1);
    }

    #[test]
    fn latency_percentiles_per_hop() {
        let mut l = Latency::default();
        for i in 1..=100u64 {
            l.add(
                "a -> b",
                &[
                    ("x".into(), 0),
                    ("y".into(), i * 10),
                    ("z".into(), i * 10 + 5),
                ],
            );
        }
        let rows = l.rows();
        assert_eq!(rows.len(), 2);
        let xy = rows.iter().find(|r| r.from == "x").unwrap();
        assert_eq!(
            (xy.packets, xy.p50_ns, xy.p90_ns, xy.p99_ns, xy.max_ns),
            (100, 500, 900, 990, 1000)
        );
        let yz = rows.iter().find(|r| r.from == "y").unwrap();
        assert_eq!((yz.p50_ns, yz.max_ns), (5, 5));
    }

    #[test]
    fn non_ip_events_pass_through_alone() {
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        let mut s = Stitcher::default();
        s.push(&event(1, 1, 3, &arp));
        assert_eq!(s.take_quiet(2, 1_000_000).len(), 1);
    }
}
