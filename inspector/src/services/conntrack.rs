//! The kernel's connection tracking table over ctnetlink (`NETLINK_NETFILTER`, subsystem
//! `CTNETLINK`), dumped inside a chosen network namespace: each connection's original and
//! reply tuples and its status bits. A DNAT shows as a reply source that differs from the
//! original destination (the backend); a SNAT/MASQUERADE as a reply destination that differs
//! from the original source. This is what the kernel actually did, per connection - unlike
//! nat-table counters, which count only first packets and not which backend they chose.
//!
//! The socket is `netlink-sys`'s; the five ctnetlink attributes a dump needs (tuples,
//! status, mark, id) are decoded here, in ~100 lines checked against the `conntrack` tool by
//! the Service tests. `netlink-packet-netfilter` 0.4 decodes conntrack messages too (it
//! leaves `CTA_ID` untyped); moving to it is open.
use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use serde::Serialize;

use crate::net::nl;

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_MARK: u16 = 8;
const CTA_ID: u16 = 12;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

/// `IPS_SRC_NAT` / `IPS_DST_NAT` status bits.
pub const IPS_SRC_NAT: u32 = 1 << 4;
pub const IPS_DST_NAT: u32 = 1 << 5;

/// One direction of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Tuple {
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

impl Default for Tuple {
    fn default() -> Self {
        Self {
            proto: 0,
            src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            sport: 0,
            dport: 0,
        }
    }
}

/// One tracked connection.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Conn {
    pub orig: Tuple,
    pub reply: Tuple,
    pub status: u32,
    pub mark: u32,
    pub id: u32,
}

impl Conn {
    /// The destination was rewritten (DNAT): the reply comes from here.
    #[must_use]
    pub fn dnat_to(&self) -> Option<(IpAddr, u16)> {
        (self.orig.dst != self.reply.src || self.orig.dport != self.reply.sport)
            .then_some((self.reply.src, self.reply.sport))
    }

    /// The source was rewritten (SNAT/MASQUERADE): the backend saw this address.
    #[must_use]
    pub fn snat_to(&self) -> Option<(IpAddr, u16)> {
        (self.orig.src != self.reply.dst || self.orig.sport != self.reply.dport)
            .then_some((self.reply.dst, self.reply.dport))
    }
}

fn be16(d: &[u8]) -> u16 {
    d.get(..2).map_or(0, |x| u16::from_be_bytes([x[0], x[1]]))
}

fn be32(d: &[u8]) -> u32 {
    d.get(..4)
        .map_or(0, |x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]))
}

fn ip(d: &[u8]) -> Option<IpAddr> {
    match d.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::new(d[0], d[1], d[2], d[3]))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(d).ok()?))),
        _ => None,
    }
}

fn tuple(d: &[u8]) -> Tuple {
    let mut t = Tuple::default();
    for (ty, v) in nl::attrs(d) {
        match ty {
            CTA_TUPLE_IP => {
                for (k, a) in nl::attrs(v) {
                    match k {
                        CTA_IP_V4_SRC | CTA_IP_V6_SRC => t.src = ip(a).unwrap_or(t.src),
                        CTA_IP_V4_DST | CTA_IP_V6_DST => t.dst = ip(a).unwrap_or(t.dst),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (k, a) in nl::attrs(v) {
                    match k {
                        CTA_PROTO_NUM => t.proto = a.first().copied().unwrap_or(0),
                        CTA_PROTO_SRC_PORT => t.sport = be16(a),
                        CTA_PROTO_DST_PORT => t.dport = be16(a),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    t
}

/// Decodes one ctnetlink message body (after the 4-byte nfgenmsg).
#[must_use]
pub fn decode(body: &[u8]) -> Conn {
    let mut c = Conn::default();
    for (ty, v) in nl::attrs(body) {
        match ty {
            CTA_TUPLE_ORIG => c.orig = tuple(v),
            CTA_TUPLE_REPLY => c.reply = tuple(v),
            CTA_STATUS => c.status = be32(v),
            CTA_MARK => c.mark = be32(v),
            CTA_ID => c.id = be32(v),
            _ => {}
        }
    }
    c
}

/// Dumps the conntrack table of the calling thread's namespace.
///
/// # Errors
/// Netlink failures (e.g. no `CAP_NET_ADMIN`).
pub fn dump_here() -> io::Result<Vec<Conn>> {
    // nfgenmsg: family AF_UNSPEC (every family), version 0, res_id 0.
    let req = nl::message(
        (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
        nl::NLM_F_REQUEST | nl::NLM_F_DUMP,
        &[0u8; 4],
    );
    let replies = nl::exchange(netlink_sys::protocols::NETLINK_NETFILTER, &req)?;
    Ok(replies
        .iter()
        .filter(|b| b.len() >= 4)
        .map(|b| decode(&b[4..]))
        .collect())
}

/// Dumps the conntrack table of the namespace at `netns` (None: this one).
///
/// # Errors
/// Entering the namespace or the netlink dump failed.
pub fn dump(netns: Option<&Path>) -> io::Result<Vec<Conn>> {
    match netns {
        None => dump_here(),
        Some(p) => crate::sys::netns::run_in(p, dump_here)?,
    }
}
