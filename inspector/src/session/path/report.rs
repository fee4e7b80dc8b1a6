//! The answer to a path question: the connection's steps in order (interfaces that saw it,
//! the NAT between them), its replies, the Service and backend, and the verdict with, for a
//! refused or dropped connection, where and why.
use std::{
    collections::HashSet,
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
};

use serde::Serialize;

use super::{
    Verdict,
    attempts::{DropWhere, drop_where},
    target::Source,
};
use crate::{
    flows::Tuple,
    identity::Endpoint,
    net::Proto,
    services::{
        attrib::{Attribution, BackendRef, NatRef, ServiceRef, Services},
        counters::RuleHit,
    },
    session::{Drop, Flow, Session, SessionError},
};

/// What a step of the path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// An interface that saw the packet.
    Interface,
    /// kube-proxy's DNAT (and masquerade) between two interfaces.
    Nat,
}

/// One step of the path.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeStep {
    pub kind: StepKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<&'static str>,
    /// The packet's addresses at this interface.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    /// veth and peer, bridge port, ... (interfaces); what was rewritten and by which chains
    /// (NAT).
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_unix_ns: Option<u64>,
}

/// The whole answer (`type: "probe"`).
#[derive(Clone, Debug, Serialize)]
pub struct PathReport {
    pub proto: Proto,
    /// The connection's own ends, as sent.
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    /// The source as named: a workload, or a namespace.
    pub source: String,
    /// Who the ends are (`null` when unknown), as for flows.
    pub src_endpoint: Option<Endpoint>,
    pub dst_endpoint: Option<Endpoint>,
    /// When the connection was first seen.
    pub time_unix_ns: u64,
    pub hops: Vec<ProbeStep>,
    pub reply_hops: Vec<ProbeStep>,
    pub service: Option<ServiceRef>,
    pub backend: Option<BackendRef>,
    pub nat: Option<NatRef>,
    pub verdict: Verdict,
    pub verdict_detail: String,
    pub drop_reason: Option<String>,
    pub drop: Option<DropWhere>,
    /// Netfilter DROP/REJECT rules that counted packets during the probe.
    pub rules_hit: Vec<RuleHit>,
    /// Every packet of this connection the kernel freed as a drop (also after a delivered
    /// exchange, e.g. a late segment to a closed socket).
    pub drops: Vec<DropWhere>,
    /// Every attempt (each SYN; a UDP probe's datagram): its DNAT choice, hops and fate.
    pub attempts: Vec<super::attempts::Attempt>,
    /// Why it went as it did, from the kernel's reasons and the rules' counters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

pub(super) struct Inputs<'a> {
    pub session: &'a Session,
    pub services: &'a Services,
    pub src: &'a Source,
    pub local: SocketAddr,
    pub dst: SocketAddr,
    pub proto: Proto,
    pub verdict: Verdict,
    pub detail: String,
    /// How long the connect took, when it did.
    pub connected_ms: Option<f64>,
    pub rules_hit: Vec<RuleHit>,
    /// The session's stitched packets over the probe.
    pub packets: Vec<crate::session::records::PacketHops>,
    /// When each drop record's drops happened, as read during the probe.
    pub drop_times: &'a super::drop_times::DropTimes,
}

fn rev((a, ap, b, bp): Tuple) -> Tuple {
    (b, bp, a, ap)
}

fn iface_step(f: &Flow, s: &Session) -> ProbeStep {
    let r = &f.rec;
    ProbeStep {
        kind: StepKind::Interface,
        netns_name: Some(r.netns_name.clone()),
        ifname: Some(r.ifname.clone()),
        direction: Some(r.direction),
        src: r.hdr.src,
        sport: r.hdr.sport,
        dst: r.hdr.dst,
        dport: r.hdr.dport,
        detail: crate::flows::path::role(s.topology(), r.netns, r.ifindex),
        first_ns: Some(r.first_ns),
        time_unix_ns: Some(r.time_unix_ns),
    }
}

pub(super) fn build(i: &Inputs<'_>) -> Result<PathReport, SessionError> {
    let s = i.session;
    let flows = s.flows()?;
    let proto_num = i.proto.number().unwrap_or(0);
    let t0: Tuple = (i.local.ip(), i.local.port(), i.dst.ip(), i.dst.port());
    let attribution: Option<Attribution> = s.services.as_ref().and_then(|sv| {
        sv.borrow()
            .lookup(proto_num, t0.0, t0.1, t0.2, t0.3)
            .cloned()
    });
    // The tuples of this connection: as sent, after NAT, and the two replies.
    let after_nat = attribution.as_ref().map(|at| {
        let r = &at.conn.reply;
        rev((r.src, r.sport, r.dst, r.dport))
    });
    let fwd: HashSet<Tuple> = std::iter::once(t0).chain(after_nat).collect();
    let back: HashSet<Tuple> = fwd.iter().map(|k| rev(*k)).collect();
    let pick = |set: &HashSet<Tuple>| {
        let mut v: Vec<&Flow> = flows
            .iter()
            .filter(|f| {
                f.rec.hdr.proto == i.proto && f.rec.hdr.tuple().is_some_and(|k| set.contains(&k))
            })
            .collect();
        v.sort_by_key(|f| (f.rec.first_ns, f.rec.direction == "ingress"));
        v
    };
    let mut hops: Vec<ProbeStep> = Vec::new();
    let mut nat_done = false;
    let forward = pick(&fwd);
    for f in &forward {
        if !nat_done
            && let Some(at) = &attribution
            && f.rec.hdr.tuple() == after_nat
            && after_nat != Some(t0)
        {
            hops.push(nat_step(at));
            nat_done = true;
        }
        hops.push(iface_step(f, s));
    }
    if !nat_done && let Some(at) = &attribution {
        hops.push(nat_step(at));
    }
    let reply_hops = pick(&back).into_iter().map(|f| iface_step(f, s)).collect();
    // Drops of this connection's packets (either direction, either side of the NAT; the
    // client's own address and port whatever DNAT chose for each attempt).
    let drops: Vec<Drop> = s
        .drops()?
        .into_iter()
        .filter(|d| {
            let r = &d.rec;
            r.hdr.proto == i.proto
                && r.hdr
                    .src
                    .zip(r.hdr.sport)
                    .zip(r.hdr.dst.zip(r.hdr.dport))
                    .is_some_and(|((a, ap), (b, bp))| {
                        let k = (a, ap, b, bp);
                        fwd.contains(&k)
                            || back.contains(&k)
                            || (a, ap) == (t0.0, t0.1)
                            || (b, bp) == (t0.0, t0.1)
                    })
        })
        .collect();
    let attempts = s.with_resolver(|r| {
        let owner = |ip: IpAddr| {
            r.netns_of(ip, 0)
                .and_then(|ns| s.identity().in_netns(ns).next().map(|w| w.name.clone()))
        };
        super::attempts::attempts(&super::attempts::Seen {
            t0,
            tcp: i.proto == Proto::Tcp,
            packets: &i.packets,
            drops: &drops,
            drop_times: i.drop_times,
            rules_hit: &i.rules_hit,
            owner: &owner,
        })
    })?;
    let first = forward.first();
    let mut report = PathReport {
        proto: i.proto,
        src: i.local.ip(),
        sport: i.local.port(),
        dst: i.dst.ip(),
        dport: i.dst.port(),
        source: i.src.label.clone(),
        src_endpoint: first.and_then(|f| f.src_endpoint.clone()),
        dst_endpoint: first.and_then(|f| f.dst_endpoint.clone()),
        time_unix_ns: first.map_or_else(
            || s.wall_clock().unix_ns(crate::sys::time::mono_now_ns()),
            |f| f.rec.time_unix_ns,
        ),
        hops,
        reply_hops,
        service: attribution.as_ref().map(|x| x.service.clone()),
        backend: attribution.as_ref().map(|x| x.backend.clone()),
        nat: attribution.as_ref().map(|x| x.nat.clone()),
        verdict: i.verdict,
        verdict_detail: i.detail.clone(),
        drop_reason: None,
        drop: None,
        rules_hit: i.rules_hit.clone(),
        drops: Vec::new(),
        cause: super::attempts::story(&attempts, i.connected_ms),
        attempts,
    };
    if report.service.is_none() {
        // No DNAT happened (no endpoints, or refused before NAT): name the Service the
        // address belongs to from the rules.
        report.service = frontend_of(i.services, i.src.node.as_deref(), i.dst, i.proto);
    }
    explain_failure(&mut report, &drops, i.services, i.dst, i.proto);
    Ok(report)
}

/// The Service whose ClusterIP:port is `dst`, from the rules alone.
fn frontend_of(
    services: &Services,
    node: Option<&str>,
    dst: SocketAddr,
    proto: Proto,
) -> Option<ServiceRef> {
    let proto = proto.to_string();
    let (n, e) = services.entries().find(|(n, e)| {
        node.is_none_or(|want| want == *n)
            && e.protocol == proto
            && e.cluster_ip.map(IpAddr::V4) == Some(dst.ip())
            && e.port == dst.port()
    })?;
    Some(ServiceRef {
        namespace: e.namespace.clone(),
        name: e.name.clone(),
        port_name: e.port_name.clone(),
        via: "ClusterIP",
        frontend: dst.to_string(),
        cluster_ip: e.cluster_ip,
        port: e.port,
        protocol: e.protocol.clone(),
        chain: e.chain.clone(),
        mode: e.mode,
        node: n.to_owned(),
    })
}

fn nat_step(at: &Attribution) -> ProbeStep {
    let s = &at.service;
    let spn = crate::services::spn(&s.namespace, &s.name, &s.port_name);
    let mut detail = format!(
        "DNAT {} by {} -> {} ({spn} {} -> {}{})",
        at.nat.dnat.clone().unwrap_or_default(),
        s.chain,
        at.backend.chain.clone().unwrap_or_else(|| "?".into()),
        s.via,
        at.backend
            .workload
            .as_ref()
            .map(|w| format!("pod {w}, "))
            .unwrap_or_default(),
        at.backend.endpoint,
    );
    if at.backend.affinity {
        detail.push_str("; the Service has ClientIP affinity: this client stays on this pod");
    }
    if let Some(sn) = &at.nat.snat {
        let _ = write!(
            detail,
            "; SNAT {sn} ({})",
            if s.mode == "nftables" {
                "masquerade: mark-for-masquerade, then chain masquerading"
            } else {
                "masquerade: KUBE-MARK-MASQ, then KUBE-POSTROUTING"
            }
        );
    }
    ProbeStep {
        kind: StepKind::Nat,
        netns_name: Some(s.node.clone()),
        ifname: None,
        direction: None,
        src: None,
        sport: None,
        dst: None,
        dport: None,
        detail,
        first_ns: None,
        time_unix_ns: None,
    }
}

/// Fills in drop reason, place and rule for refused / dropped probes. The cause is the
/// kernel's: its drop reason, and a rule only when the kernel says netfilter dropped the
/// packet - the rule whose counter grew, or (rules without counters, as kube-proxy's
/// nftables ones) the no-endpoints rule of the Service the packet was sent to. When the
/// Service's shape suggests a rule that did not fire, the cause says so.
fn explain_failure(
    r: &mut PathReport,
    drops: &[Drop],
    services: &Services,
    dst: SocketAddr,
    proto: Proto,
) {
    let proto = proto.to_string();
    let no_eps = services.entries().find(|(_, e)| {
        e.endpoints.is_empty()
            && e.protocol == proto
            && e.cluster_ip.map(IpAddr::V4) == Some(dst.ip())
            && e.port == dst.port()
    });
    r.drops = drops.iter().map(|d| drop_where(d, None)).collect();
    if r.verdict == Verdict::Delivered {
        return;
    }
    // A rule that counted, in the namespace the packet died in.
    let counted = drops.first().and_then(|d| {
        r.rules_hit
            .iter()
            .find(|h| h.node == d.rec.netns_name)
            .map(|h| format!("{} {}: {}", h.table, h.chain, h.rule))
    });
    let no_eps_rule =
        no_eps.map(|(_, e)| format!("{} ({} has no endpoints)", e.no_endpoints, e.spn()));
    // The drop that decided: the last attempt's, else the first of the connection.
    let last = r.attempts.last().and_then(|a| a.drop.clone());
    if let Some(d) = drops.first() {
        let netfilter = d.rec.reason == "NETFILTER_DROP";
        let rule = if netfilter {
            last.as_ref()
                .and_then(|l| l.rule.clone())
                .or(counted)
                .or_else(|| no_eps_rule.clone())
        } else {
            None
        };
        let mut at = last.unwrap_or_else(|| drop_where(d, None));
        at.rule = rule;
        r.drop_reason = Some(at.reason.clone());
        if r.cause.is_none() {
            r.cause = Some(if let Some(rule) = &at.rule {
                format!(
                    "netfilter dropped it at {}/{}: {rule}",
                    at.netns_name, at.ifname
                )
            } else {
                let mut c = format!(
                    "the kernel dropped it at {}/{}: {} in {}",
                    at.netns_name, at.ifname, at.reason, at.location
                );
                if at.reason == "IP_INNOROUTES" {
                    let _ = write!(c, " (no route to {} there)", dst.ip());
                }
                if let Some(rule) = &no_eps_rule {
                    let _ = write!(
                        c,
                        "; the Service's rule `{rule}` did not fire: the packet died before \
                         reaching it"
                    );
                }
                c
            });
        }
        r.drop = Some(at);
        if r.verdict != Verdict::Refused {
            r.verdict = Verdict::Dropped;
        }
    } else if let Some(rule) = no_eps_rule {
        r.drop = Some(DropWhere {
            reason: String::new(),
            location: String::new(),
            netns_name: String::new(),
            ifname: String::new(),
            rule: Some(rule),
        });
    }
}
