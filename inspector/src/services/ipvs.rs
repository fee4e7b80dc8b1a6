//! kube-proxy's IPVS mode, read from the kernel over IPVS's generic netlink family (as
//! `ipvsadm` reads it, never by parsing `ipvsadm`'s output): every virtual server with its
//! scheduler, persistence and statistics, and every real server of each with its weight,
//! connection counts and statistics. In IPVS mode kube-proxy puts no Service name in the
//! kernel (no comments, unlike its iptables and nftables rules): names come from elsewhere
//! (a lab's record), else a virtual server is shown by its address.
use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use serde::Serialize;

use crate::net::nl;

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const IPVS_CMD_GET_SERVICE: u8 = 4;
const IPVS_CMD_GET_DEST: u8 = 8;
const IPVS_CMD_ATTR_SERVICE: u16 = 1;
const IPVS_CMD_ATTR_DEST: u16 = 2;
const SVC_AF: u16 = 1;
const SVC_PROTOCOL: u16 = 2;
const SVC_ADDR: u16 = 3;
const SVC_PORT: u16 = 4;
const SVC_FWMARK: u16 = 5;
const SVC_SCHED_NAME: u16 = 6;
const SVC_FLAGS: u16 = 7;
const SVC_TIMEOUT: u16 = 8;
const SVC_STATS: u16 = 10;
const DEST_ADDR: u16 = 1;
const DEST_PORT: u16 = 2;
const DEST_FWD_METHOD: u16 = 3;
const DEST_WEIGHT: u16 = 4;
const DEST_ACTIVE_CONNS: u16 = 7;
const DEST_INACT_CONNS: u16 = 8;
const DEST_STATS: u16 = 10;
const STATS_CONNS: u16 = 1;
const STATS_INPKTS: u16 = 2;
const STATS_OUTPKTS: u16 = 3;
const STATS_INBYTES: u16 = 4;
const STATS_OUTBYTES: u16 = 5;
const IP_VS_SVC_F_PERSISTENT: u32 = 1;
const AF_INET: u16 = 2;

/// Traffic counters of a virtual or real server (the kernel's, since it was created).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub conns: u64,
    pub in_packets: u64,
    pub out_packets: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
}

/// A real server (a Service's endpoint).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Dest {
    pub addr: IpAddr,
    pub port: u16,
    /// masq (NAT: what kube-proxy uses), local, tunnel, route, bypass.
    pub forward: &'static str,
    pub weight: u32,
    pub active_conns: u32,
    pub inactive_conns: u32,
    pub stats: Stats,
}

/// A virtual server (one Service port on one address).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VirtualServer {
    /// tcp, udp, sctp (or the number).
    pub protocol: String,
    pub addr: IpAddr,
    pub port: u16,
    /// Firewall-mark services have no address and port.
    pub fwmark: u32,
    pub scheduler: String,
    /// Persistence (kube-proxy's `ClientIP` session affinity), with its timeout in seconds.
    pub persistent: Option<u32>,
    pub stats: Stats,
    pub dests: Vec<Dest>,
}

fn genl(family: u16, cmd: u8, flags: u16, attrs: &[u8]) -> Vec<u8> {
    let mut body = vec![cmd, 1, 0, 0];
    body.extend_from_slice(attrs);
    nl::message(family, nl::NLM_F_REQUEST | flags, &body)
}

fn u16_of(v: &[u8]) -> u16 {
    v.get(..2).map_or(0, |b| u16::from_ne_bytes([b[0], b[1]]))
}

fn u32_of(v: &[u8]) -> u32 {
    v.get(..4)
        .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

fn u64_of(v: &[u8]) -> u64 {
    v.get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_ne_bytes)
}

fn addr(af: u16, v: &[u8]) -> IpAddr {
    match (af, v.len()) {
        (AF_INET, n) if n >= 4 => IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3])),
        (_, 16) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(v).unwrap_or([0; 16]))),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

fn stats(v: &[u8]) -> Stats {
    let mut s = Stats::default();
    for (k, a) in nl::attrs(v) {
        let n = if a.len() >= 8 {
            u64_of(a)
        } else {
            u64::from(u32_of(a))
        };
        match k {
            STATS_CONNS => s.conns = n,
            STATS_INPKTS => s.in_packets = n,
            STATS_OUTPKTS => s.out_packets = n,
            STATS_INBYTES => s.in_bytes = n,
            STATS_OUTBYTES => s.out_bytes = n,
            _ => {}
        }
    }
    s
}

/// The IPVS family's id, or `None` when the kernel has no IPVS (module absent).
fn family() -> io::Result<Option<u16>> {
    let mut a = Vec::new();
    nl::push_attr(&mut a, CTRL_ATTR_FAMILY_NAME, b"IPVS\0");
    let req = genl(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, nl::NLM_F_ACK, &a);
    match nl::exchange(netlink_sys::protocols::NETLINK_GENERIC, &req) {
        Ok(replies) => Ok(replies.iter().find_map(|r| {
            nl::attrs(r.get(4..)?).find_map(|(k, v)| (k == CTRL_ATTR_FAMILY_ID).then(|| u16_of(v)))
        })),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn protocol(n: u16) -> String {
    match n {
        6 => "tcp".into(),
        17 => "udp".into(),
        132 => "sctp".into(),
        n => n.to_string(),
    }
}

fn forward(m: u32) -> &'static str {
    match m & 7 {
        0 => "masq",
        1 => "local",
        2 => "tunnel",
        3 => "route",
        _ => "bypass",
    }
}

/// One `IPVS_CMD_ATTR_SERVICE` nest: the virtual server (without its real servers) and
/// the raw attributes that identify it in a `GET_DEST` request.
fn service(v: &[u8]) -> (VirtualServer, Vec<u8>) {
    let (mut af, mut proto, mut raw_addr, mut port, mut fwmark) = (AF_INET, 0, &[][..], 0, 0);
    let mut vs = VirtualServer {
        protocol: String::new(),
        addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        port: 0,
        fwmark: 0,
        scheduler: String::new(),
        persistent: None,
        stats: Stats::default(),
        dests: Vec::new(),
    };
    let (mut flags, mut timeout) = (0, 0);
    for (k, a) in nl::attrs(v) {
        match k {
            SVC_AF => af = u16_of(a),
            SVC_PROTOCOL => proto = u16_of(a),
            SVC_ADDR => raw_addr = a,
            SVC_PORT => port = a.get(..2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]])),
            SVC_FWMARK => fwmark = u32_of(a),
            SVC_SCHED_NAME => {
                String::from_utf8_lossy(a)
                    .trim_end_matches('\0')
                    .clone_into(&mut vs.scheduler);
            }
            SVC_FLAGS => flags = u32_of(a),
            SVC_TIMEOUT => timeout = u32_of(a),
            SVC_STATS => vs.stats = stats(a),
            _ => {}
        }
    }
    vs.protocol = protocol(proto);
    vs.addr = addr(af, raw_addr);
    vs.port = port;
    vs.fwmark = fwmark;
    vs.persistent = (flags & IP_VS_SVC_F_PERSISTENT != 0).then_some(timeout);
    let mut id = Vec::new();
    nl::push_attr(&mut id, SVC_AF, &af.to_ne_bytes());
    if fwmark != 0 {
        nl::push_attr(&mut id, SVC_FWMARK, &fwmark.to_ne_bytes());
    } else {
        nl::push_attr(&mut id, SVC_PROTOCOL, &proto.to_ne_bytes());
        let mut a16 = [0u8; 16];
        let n = raw_addr.len().min(16);
        a16[..n].copy_from_slice(&raw_addr[..n]);
        nl::push_attr(&mut id, SVC_ADDR, &a16);
        nl::push_attr(&mut id, SVC_PORT, &port.to_be_bytes());
    }
    (vs, id)
}

fn dest(af: u16, v: &[u8]) -> Dest {
    let mut d = Dest {
        addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        port: 0,
        forward: "masq",
        weight: 0,
        active_conns: 0,
        inactive_conns: 0,
        stats: Stats::default(),
    };
    for (k, a) in nl::attrs(v) {
        match k {
            DEST_ADDR => d.addr = addr(af, a),
            DEST_PORT => d.port = a.get(..2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]])),
            DEST_FWD_METHOD => d.forward = forward(u32_of(a)),
            DEST_WEIGHT => d.weight = u32_of(a),
            DEST_ACTIVE_CONNS => d.active_conns = u32_of(a),
            DEST_INACT_CONNS => d.inactive_conns = u32_of(a),
            DEST_STATS => d.stats = stats(a),
            _ => {}
        }
    }
    d
}

/// Every virtual server of the calling thread's namespace with its real servers; `None`
/// when the kernel has no IPVS.
///
/// # Errors
/// Netlink failures (e.g. no `CAP_NET_ADMIN`).
pub fn dump_here() -> io::Result<Option<Vec<VirtualServer>>> {
    let Some(fam) = family()? else {
        return Ok(None);
    };
    let req = genl(fam, IPVS_CMD_GET_SERVICE, nl::NLM_F_DUMP, &[]);
    let mut out = Vec::new();
    for r in nl::exchange(netlink_sys::protocols::NETLINK_GENERIC, &req)? {
        let Some(body) = r.get(4..) else { continue };
        for (k, v) in nl::attrs(body) {
            if k != IPVS_CMD_ATTR_SERVICE {
                continue;
            }
            let (mut vs, id) = service(v);
            let af = if vs.addr.is_ipv4() { AF_INET } else { 10 };
            let mut a = Vec::new();
            nl::push_attr(&mut a, IPVS_CMD_ATTR_SERVICE, &id);
            let req = genl(fam, IPVS_CMD_GET_DEST, nl::NLM_F_DUMP, &a);
            for d in nl::exchange(netlink_sys::protocols::NETLINK_GENERIC, &req)? {
                let Some(body) = d.get(4..) else { continue };
                for (k, v) in nl::attrs(body) {
                    if k == IPVS_CMD_ATTR_DEST {
                        vs.dests.push(dest(af, v));
                    }
                }
            }
            // By address (the dump's order is the kernel's list's, newest first).
            vs.dests.sort_by_key(|d| (d.addr, d.port));
            out.push(vs);
        }
    }
    out.sort_by(|a, b| (a.addr, a.port, &a.protocol).cmp(&(b.addr, b.port, &b.protocol)));
    Ok(Some(out))
}

/// The same in the namespace at `netns` (None: this one).
///
/// # Errors
/// Entering the namespace or the netlink exchange failed.
pub fn dump(netns: Option<&std::path::Path>) -> io::Result<Option<Vec<VirtualServer>>> {
    match netns {
        None => dump_here(),
        Some(p) => crate::sys::netns::run_in(p, dump_here)?,
    }
}
