//! Every attempt of a connection, told apart: each SYN the client sent (a UDP probe's
//! datagram), with the hops the kernel saw it at, where DNAT sent it, and its fate -
//! answered, refused, or dropped with the kernel's reason, place and the rule whose counter
//! grew. A SYN dropped after DNAT takes its unconfirmed conntrack entry with it, so each
//! retransmission is load-balanced afresh: one connect can meet several backends.
//!
//! The packets come from the session's per-packet events, stitched across NAT by their
//! fingerprint (`flows::hops`); drops from the drop table, matched to an attempt by the
//! client's address and port and by the drop times read during the probe (`drop_times`);
//! rules from the counters read before and after.
use std::{fmt::Write as _, net::IpAddr};

use serde::Serialize;

use crate::{
    flows::Tuple,
    services::counters::RuleHit,
    session::{Drop, records::PacketHops},
};

use super::drop_times::DropTimes;

/// How far a drop's time may read before its packet's: the table keeps the last drop in
/// kernel ticks (1/HZ, 10 ms at the coarsest).
const TICK_NS: u64 = 10_000_000;

/// What became of one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fate {
    /// A SYN-ACK (or, for UDP, a datagram) came back.
    Answered,
    /// A RST came back.
    Refused,
    /// The kernel freed it as a drop.
    Dropped,
    /// Neither an answer nor a drop was seen.
    Unanswered,
}

/// One attempt (`attempts` of a `probe` record).
#[derive(Clone, Debug, Serialize)]
pub struct Attempt {
    /// 1, 2, ... in the order sent.
    pub n: usize,
    /// Milliseconds after the first attempt.
    pub after_ms: f64,
    pub time_unix_ns: u64,
    /// Where DNAT sent it (`ip:port`), when it was rewritten.
    pub backend: Option<String>,
    /// The workload holding the backend's address.
    pub backend_workload: Option<String>,
    /// The interfaces that saw it, in order (`netns/if(dir)`).
    pub hops: Vec<String>,
    pub fate: Fate,
    /// For a dropped attempt: where, why, and the rule when one counted it.
    pub drop: Option<DropWhere>,
}

/// Where a dropped packet died.
#[derive(Clone, Debug, Serialize)]
pub struct DropWhere {
    pub reason: String,
    /// The kernel function that freed the packet.
    pub location: String,
    pub netns_name: String,
    pub ifname: String,
    /// The rule or chain that decided, when it can be known.
    pub rule: Option<String>,
}

/// The place, reason and rule of a dropped packet.
pub(super) fn drop_where(d: &Drop, rule: Option<String>) -> DropWhere {
    DropWhere {
        reason: d.rec.reason.clone(),
        location: d.rec.location.clone(),
        netns_name: d.rec.netns_name.clone(),
        ifname: d.rec.ifname.clone(),
        rule,
    }
}

/// What [`attempts`] reads.
pub(super) struct Seen<'a> {
    pub t0: Tuple,
    pub tcp: bool,
    pub packets: &'a [PacketHops],
    pub drops: &'a [Drop],
    pub drop_times: &'a DropTimes,
    pub rules_hit: &'a [RuleHit],
    /// The workload holding an address, if any.
    pub owner: &'a dyn Fn(IpAddr) -> Option<String>,
}

fn hop_tuples(p: &PacketHops) -> impl Iterator<Item = Tuple> + '_ {
    p.hops
        .iter()
        .filter_map(|h| Some((h.src?, h.sport?, h.dst?, h.dport?)))
}

fn flags(p: &PacketHops) -> (bool, bool, bool) {
    let has = |f: &str| p.tcp_flags.split('|').any(|x| x == f);
    (has("SYN"), has("ACK"), has("RST"))
}

/// The attempts of the connection whose first packet left as `t0`, in order.
pub(super) fn attempts(s: &Seen<'_>) -> Vec<Attempt> {
    let (src, sport, dst, dport) = s.t0;
    let mut sent: Vec<&PacketHops> = s
        .packets
        .iter()
        .filter(|p| hop_tuples(p).next() == Some(s.t0))
        .filter(|p| {
            let (syn, ack, _) = flags(p);
            !s.tcp || (syn && !ack)
        })
        .collect();
    sent.sort_by_key(|p| p.ts_ns);
    let Some(first) = sent.first().map(|p| p.ts_ns) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, p) in sent.iter().enumerate() {
        let (from, until) = (p.ts_ns, sent.get(i + 1).map_or(u64::MAX, |q| q.ts_ns));
        // This client's packets (its address and port before any source NAT), dropped in
        // this attempt's window.
        let mine: Vec<&Drop> = s
            .drops
            .iter()
            .filter(|d| d.rec.hdr.src == Some(src) && d.rec.hdr.sport == Some(sport))
            .collect();
        // The record with a drop seen in the window (a tick early allowed), when one alone
        // has; else by span: a record counts every drop of one (tuple, place, reason) from
        // its first to its last, so one whose first or last drop falls in the window is
        // this attempt's, else the narrowest one spanning it.
        let near = |t: u64| t.saturating_add(TICK_NS) >= from && t.saturating_add(TICK_NS) < until;
        let timed: Vec<&Drop> = mine
            .iter()
            .copied()
            .filter(|d| s.drop_times.of(d).any(near))
            .collect();
        let dropped = if let [one] = timed.as_slice() {
            Some(*one)
        } else {
            mine.iter()
                .copied()
                .filter(|d| d.rec.first_ns < until && d.rec.last_ns >= from)
                .min_by_key(|d| {
                    let inside = |t: u64| (from..until).contains(&t);
                    (
                        !(inside(d.rec.first_ns) || inside(d.rec.last_ns)),
                        d.rec.last_ns - d.rec.first_ns,
                    )
                })
        };
        // An answer: a packet to the client's address and port in the window.
        let answer = s.packets.iter().find(|r| {
            r.ts_ns >= from
                && r.ts_ns < until
                && hop_tuples(r).any(|(_, _, a, ap)| a == src && ap == sport)
        });
        let last = p.hops.last();
        let rewritten = last
            .and_then(|h| Some((h.dst?, h.dport?)))
            .filter(|&d| d != (dst, dport))
            .or_else(|| {
                dropped
                    .and_then(|d| Some((d.rec.hdr.dst?, d.rec.hdr.dport?)))
                    .filter(|&d| d != (dst, dport))
            });
        let fate = match (answer.map(flags), dropped) {
            (Some((_, _, true)), _) => Fate::Refused,
            (Some(_), _) => Fate::Answered,
            (None, Some(_)) => Fate::Dropped,
            (None, None) => Fate::Unanswered,
        };
        let drop = dropped.filter(|_| fate == Fate::Dropped).map(|d| {
            let rule = rule_for(d, rewritten.map(|b| b.0), s.rules_hit);
            drop_where(d, rule)
        });
        out.push(Attempt {
            n: i + 1,
            #[expect(clippy::cast_precision_loss, reason = "milliseconds for people")]
            after_ms: (p.ts_ns - first) as f64 / 1e6,
            time_unix_ns: p.time_unix_ns,
            backend: rewritten.map(|(ip, port)| crate::net::endpoint(Some(ip), Some(port))),
            backend_workload: rewritten.and_then(|(ip, _)| (s.owner)(ip)),
            hops: p
                .hops
                .iter()
                .map(crate::session::records::HopAt::label)
                .collect(),
            fate,
            drop,
        });
    }
    out
}

/// The rule behind a netfilter drop: of the rules whose counters grew, the one naming the
/// packet's (rewritten) destination, else the only one. None for other reasons: the kernel
/// says what dropped it, and no rule did.
fn rule_for(d: &Drop, dst: Option<IpAddr>, hits: &[RuleHit]) -> Option<String> {
    if d.rec.reason != "NETFILTER_DROP" {
        return None;
    }
    let name = |h: &RuleHit| format!("{} {}: {}", h.table, h.chain, h.rule);
    let dst = dst.or(d.rec.hdr.dst)?.to_string();
    // Rules of the namespace the packet died in.
    let hits: Vec<&RuleHit> = hits.iter().filter(|h| h.node == d.rec.netns_name).collect();
    let naming: Vec<&RuleHit> = hits
        .iter()
        .copied()
        .filter(|h| h.rule.split([' ', '/']).any(|w| w == dst))
        .collect();
    match (naming.as_slice(), hits.as_slice()) {
        ([one], _) | ([], [one]) => Some(name(one)),
        _ => None,
    }
}

/// Why the connection went as it did, in one paragraph, when it took more than one attempt.
pub(super) fn story(attempts: &[Attempt], connected_ms: Option<f64>) -> Option<String> {
    if attempts.len() < 2 {
        return None;
    }
    let dropped: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.fate == Fate::Dropped)
        .collect();
    let mut s = format!("{} attempts", attempts.len());
    if !dropped.is_empty() {
        let to: Vec<String> = dropped
            .iter()
            .map(|a| {
                format!(
                    "#{} to {}",
                    a.n,
                    a.backend.as_deref().unwrap_or("the destination")
                )
            })
            .collect();
        let _ = write!(s, "; dropped: {}", to.join(", "));
    }
    if let Some(ok) = attempts.iter().find(|a| a.fate == Fate::Answered) {
        let _ = write!(
            s,
            "; #{} answered by {} at +{:.0} ms",
            ok.n,
            ok.backend.as_deref().unwrap_or("the destination"),
            ok.after_ms
        );
    }
    let gaps: Vec<String> = attempts
        .windows(2)
        .map(|w| format!("{:.1} s", (w[1].after_ms - w[0].after_ms) / 1e3))
        .collect();
    let _ = write!(
        s,
        ". The client's kernel sent the unanswered SYN again after {} (its retransmission \
         timer); a SYN dropped after DNAT takes its unconfirmed conntrack entry with it, so \
         each one was load-balanced afresh",
        gaps.join(", ")
    );
    if let Some(ms) = connected_ms {
        let _ = write!(
            s,
            ". The connect took {ms:.0} ms because of the retransmissions"
        );
    }
    s.push('.');
    Some(s)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::{
        flows::{Header, drops::DropRecord},
        net::Proto,
        session::records::HopAt,
    };

    const S: u64 = 1_000_000_000;
    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 70, 5));
    const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 72, 10));

    fn backend(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 18, 70, last))
    }

    fn syn(ts_ns: u64) -> PacketHops {
        let hdr = Header {
            proto: Proto::Tcp,
            src: Some(CLIENT),
            sport: Some(40000),
            dst: Some(VIP),
            dport: Some(80),
            icmp_type: None,
            icmp_code: None,
            icmp_id: None,
        };
        PacketHops {
            ts_ns,
            time_unix_ns: ts_ns,
            src_endpoint: None,
            dst_endpoint: None,
            len: 60,
            tcp_flags: "SYN".into(),
            hops: vec![HopAt {
                netns: 1,
                netns_name: "client".into(),
                ifindex: 2,
                ifname: "eth0".into(),
                hook: "tc-egress",
                direction: "egress",
                hook_id: 0,
                ts_ns,
                time_unix_ns: ts_ns,
                delta_ns: 0,
                src: hdr.src,
                sport: hdr.sport,
                dst: hdr.dst,
                dport: hdr.dport,
            }],
            hdr,
            total_ns: 0,
        }
    }

    /// Drops of the client's SYNs sent by DNAT to `to`, at the backend's port `ifindex`.
    fn drops_to(to: IpAddr, ifindex: u32, first_ns: u64, last_ns: u64, packets: u64) -> Drop {
        Drop {
            rec: DropRecord {
                netns: 9,
                netns_name: "node".into(),
                ifindex,
                ifname: format!("veth{ifindex}"),
                reason: "NETFILTER_DROP".into(),
                location: "nft_do_chain+0x46f".into(),
                hdr: Header {
                    proto: Proto::Tcp,
                    src: Some(CLIENT),
                    sport: Some(40000),
                    dst: Some(to),
                    dport: Some(8080),
                    icmp_type: None,
                    icmp_code: None,
                    icmp_id: None,
                },
                packets,
                first_ns,
                last_ns,
                time_unix_ns: first_ns,
                last_unix_ns: last_ns,
            },
            rule: None,
            src_endpoint: None,
            dst_endpoint: None,
        }
    }

    /// The backends of six dropped SYNs, one a second, whose drop records interleave.
    fn backends(times: &DropTimes) -> Vec<Option<String>> {
        // Drops a few microseconds after each SYN; last drops read in kernel ticks, which
        // may fall a little before the SYN's own time.
        let packets: Vec<PacketHops> = (0..6).map(|i| syn(100 * S + i * S)).collect();
        let drops = [
            drops_to(backend(3), 7, 100 * S + 5_000, 104 * S - 3_000_000, 3),
            drops_to(backend(2), 8, 101 * S + 5_000, 105 * S - 3_000_000, 3),
        ];
        let seen = Seen {
            t0: (CLIENT, 40000, VIP, 80),
            tcp: true,
            packets: &packets,
            drops: &drops,
            drop_times: times,
            rules_hit: &[],
            owner: &|_| None,
        };
        let a = attempts(&seen);
        assert!(a.iter().all(|a| a.fate == Fate::Dropped), "{a:?}");
        a.into_iter().map(|a| a.backend).collect()
    }

    #[test]
    fn interleaved_drops_go_to_the_attempts_their_times_name() {
        // .3 dropped SYNs 1, 3 and 5; .2 SYNs 2, 4 and 6 - as read during the probe.
        let mut times = DropTimes::default();
        for (ifindex, n) in [(7, 1u64), (8, 2), (7, 3), (8, 4), (7, 5), (8, 6)] {
            let first = if ifindex == 7 {
                100 * S + 5_000
            } else {
                101 * S + 5_000
            };
            times.note((9, ifindex, first), 100 * S + (n - 1) * S + 5_000);
        }
        let at = |i: u8| Some(format!("198.18.70.{i}:8080"));
        assert_eq!(backends(&times), [at(3), at(2), at(3), at(2), at(3), at(2)]);
    }

    #[test]
    fn without_drop_times_the_middle_attempts_fall_back_to_the_spans() {
        // First and last drops only: the ends are placed, the middle by the narrower span.
        let b = backends(&DropTimes::default());
        let at = |i: u8| Some(format!("198.18.70.{i}:8080"));
        assert_eq!((&b[0], &b[1], &b[5]), (&at(3), &at(2), &at(2)));
    }
}
