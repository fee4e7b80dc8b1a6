//! Whether a node's Service rules changed, without dumping them: a stamp that changes
//! whenever they do, read in microseconds.
//! - nftables (kube-proxy's nftables mode, and iptables-nft, which every iptables-mode rule
//!   of a current distribution goes through): the ruleset's generation id, one
//!   `NFT_MSG_GETGEN` over nfnetlink. Every commit to any table of the namespace bumps it;
//!   packet counters do not.
//! - legacy iptables (`ip_tables` in use in the namespace): each table's blob as the
//!   kernel holds it (`IPT_SO_GET_ENTRIES`, the call iptables-save itself makes), hashed
//!   with its packet and byte counters zeroed. No process, no text.
//! - IPVS: its virtual servers and real servers over generic netlink, hashed.
//!
//! Hand-written netlink and getsockopt: no crate covers `NFT_MSG_GETGEN` or the xtables
//! sockopts (the `nftnl`/`mnl` crates bind libnftnl and need it at build time).
use std::{
    hash::{Hash as _, Hasher as _},
    io,
    path::Path,
};

use crate::net::nl;

/// A node's rules, as far as a change is concerned.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Stamp {
    /// nftables' generation id (None: nfnetlink did not answer).
    pub nft_gen: Option<u32>,
    /// Each legacy iptables table in use: (name, hash of its rules; None: unreadable now).
    pub legacy: Vec<(String, Option<u64>)>,
    /// Hash of the IPVS table (None: no IPVS here).
    pub ipvs: Option<u64>,
    /// nfnetlink failed for another reason than having no nftables.
    pub nft_failed: bool,
}

impl Stamp {
    /// Whether every source of rules was read: two equal complete stamps mean equal rules.
    #[must_use]
    pub fn complete(&self) -> bool {
        !self.nft_failed && self.legacy.iter().all(|(_, h)| h.is_some())
    }
}

const NETLINK_NETFILTER: isize = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_GETGEN: u16 = 16;
const NFTA_GEN_ID: u16 = 1;

/// nftables' generation id in the calling thread's namespace.
///
/// # Errors
/// nfnetlink refusing or absent.
pub fn nft_generation() -> io::Result<u32> {
    // nfgenmsg: family AF_UNSPEC, version 0, resource id 0.
    let req = nl::message(
        NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETGEN,
        nl::NLM_F_REQUEST | nl::NLM_F_ACK,
        &[0, 0, 0, 0],
    );
    for reply in nl::exchange(NETLINK_NETFILTER, &req)? {
        let Some(body) = reply.get(4..) else { continue };
        for (ty, v) in nl::attrs(body) {
            if ty == NFTA_GEN_ID && v.len() == 4 {
                return Ok(u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "no generation id in nftables' answer",
    ))
}

const SOL_IP: libc::c_int = 0;
const IPT_SO_GET_INFO: libc::c_int = 64;
const IPT_SO_GET_ENTRIES: libc::c_int = 65;
/// `struct ipt_getinfo`: `name[32], valid_hooks, hook_entry[5], underflow[5], num_entries, size`.
const GETINFO_LEN: usize = 84;
/// `struct ipt_get_entries`: name[32], size, then the entries at 8-byte alignment.
const GET_ENTRIES_HEAD: usize = 40;
/// In `struct ipt_entry`: `next_offset` (u16) and the counters (two u64).
const NEXT_OFFSET_AT: usize = 90;
const COUNTERS_AT: usize = 96;

/// One legacy table's rules hashed, counters left out (None: the table is not there).
fn legacy_table(fd: libc::c_int, name: &str) -> io::Result<u64> {
    let mut info = [0u8; GETINFO_LEN];
    let n = name.as_bytes();
    if n.len() >= 32 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    info[..n.len()].copy_from_slice(n);
    let mut len = libc::socklen_t::try_from(GETINFO_LEN).unwrap_or(0);
    // SAFETY: the buffer is GETINFO_LEN bytes, as len says.
    if unsafe {
        libc::getsockopt(
            fd,
            SOL_IP,
            IPT_SO_GET_INFO,
            info.as_mut_ptr().cast(),
            &raw mut len,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    let word = |at: usize| u32::from_ne_bytes([info[at], info[at + 1], info[at + 2], info[at + 3]]);
    let size = usize::try_from(word(80)).unwrap_or(0);
    let mut buf = vec![0u8; GET_ENTRIES_HEAD + size];
    buf[..n.len()].copy_from_slice(n);
    buf[32..36].copy_from_slice(&word(80).to_ne_bytes());
    let mut len = libc::socklen_t::try_from(buf.len()).unwrap_or(0);
    // SAFETY: the buffer is as long as len says.
    if unsafe {
        libc::getsockopt(
            fd,
            SOL_IP,
            IPT_SO_GET_ENTRIES,
            buf.as_mut_ptr().cast(),
            &raw mut len,
        )
    } != 0
    {
        // EAGAIN: the table changed between the two calls; the caller reads again later.
        return Err(io::Error::last_os_error());
    }
    let entries = &mut buf[GET_ENTRIES_HEAD..];
    let mut off = 0;
    while off + COUNTERS_AT + 16 <= entries.len() {
        entries[off + COUNTERS_AT..off + COUNTERS_AT + 16].fill(0);
        let next = usize::from(u16::from_ne_bytes([
            entries[off + NEXT_OFFSET_AT],
            entries[off + NEXT_OFFSET_AT + 1],
        ]));
        if next == 0 {
            break;
        }
        off += next;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    info[32..].hash(&mut h);
    entries.hash(&mut h);
    Ok(h.finish())
}

/// Every legacy iptables table in use in the calling thread's namespace, hashed.
fn legacy_tables() -> Vec<(String, Option<u64>)> {
    let Ok(names) = std::fs::read_to_string("/proc/thread-self/net/ip_tables_names") else {
        return Vec::new();
    };
    // SAFETY: a plain socket call; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        return vec![("?".into(), None)];
    }
    let mut v: Vec<(String, Option<u64>)> = names
        .lines()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| (n.to_owned(), legacy_table(fd, n).ok()))
        .collect();
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    v.sort();
    v
}

fn ipvs_hash(netns: Option<&Path>) -> Option<u64> {
    let vs = super::ipvs::dump(netns).ok()??;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{vs:?}").hash(&mut h);
    Some(h.finish())
}

fn here() -> Stamp {
    let (nft_gen, nft_failed) = match nft_generation() {
        Ok(g) => (Some(g), false),
        // No nf_tables in this kernel: nothing there to change.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EPROTONOSUPPORT | libc::ENOENT | libc::EOPNOTSUPP)
            ) =>
        {
            (None, false)
        }
        Err(_) => (None, true),
    };
    Stamp {
        nft_gen,
        legacy: legacy_tables(),
        ipvs: None,
        nft_failed,
    }
}

/// The stamp of a node's rules (`netns` None: this namespace).
#[must_use]
pub fn of(netns: Option<&Path>) -> Stamp {
    let mut s = match netns {
        Some(p) => crate::sys::netns::run_in(p, here).unwrap_or_else(|_| Stamp {
            nft_failed: true,
            ..Stamp::default()
        }),
        None => here(),
    };
    s.ipvs = ipvs_hash(netns);
    s
}
