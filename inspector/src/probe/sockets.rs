//! The socket-owner programs (`insp_sock_owner_in/out`, `cgroup_skb`), and their map read
//! back as [`SocketOwners`].
//!
//! They are attached only where the owner of a socket decides something: to the cgroups of
//! workloads that share a namespace with another workload (Docker's container mode) or live
//! in the node's namespace (host mode). Elsewhere the namespace alone names the owner, and
//! the packets of every other socket on the node pay nothing (a program on the cgroup root
//! cost the small-packet benchmark ~5% more). The links are file descriptors, like the TCX
//! ones: they go with the process.
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapData},
    programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, cgroup_skb::CgroupSkbLinkId},
};
use inspector_common::SockKey;

use super::{
    ProbeError,
    error::{load_error, program_err},
};

pub const PROGS: [(&str, CgroupSkbAttachType); 2] = [
    ("insp_sock_owner_in", CgroupSkbAttachType::Ingress),
    ("insp_sock_owner_out", CgroupSkbAttachType::Egress),
];
pub const MAP_SOCKS: &str = "inspector_socks";

/// Why the socket-owner programs are not loaded.
#[derive(Debug, thiserror::Error)]
pub enum SocketsError {
    #[error("no cgroup v2 hierarchy is mounted")]
    NoCgroupV2,
    #[error(transparent)]
    Probe(#[from] ProbeError),
}

/// Loads both programs (attaching comes later, per cgroup).
pub fn load(ebpf: &mut Ebpf) -> Result<(), SocketsError> {
    if crate::sys::cgroup::v2_mount().is_none() {
        return Err(SocketsError::NoCgroupV2);
    }
    for (name, _) in PROGS {
        let prog: &mut CgroupSkb = super::program(ebpf, name)?
            .try_into()
            .map_err(program_err(name))?;
        prog.load().map_err(|e| load_error(name, e))?;
    }
    Ok(())
}

/// The links of one cgroup.
pub(super) type CgroupLinks = [Option<CgroupSkbLinkId>; 2];

/// Attaches both programs to the cgroup directory `dir`.
pub(super) fn attach(ebpf: &mut Ebpf, dir: &Path) -> Result<CgroupLinks, ProbeError> {
    let file = std::fs::File::open(dir).map_err(|source| ProbeError::Cgroup {
        dir: dir.to_owned(),
        source,
    })?;
    let mut links: CgroupLinks = [None, None];
    for (i, (name, t)) in PROGS.into_iter().enumerate() {
        let Some(prog) = ebpf.program_mut(name) else {
            continue;
        };
        let prog: &mut CgroupSkb = prog.try_into().map_err(program_err(name))?;
        // As a bpf_link (aya makes one on 5.7+) the attachment always coexists with others;
        // the kernel refuses the ALLOW_MULTI flag on links, so `Single` is the right mode.
        match prog.attach(&file, t, CgroupAttachMode::Single) {
            Ok(id) => links[i] = Some(id),
            Err(source) => {
                detach(ebpf, links);
                return Err(program_err(name)(source));
            }
        }
    }
    Ok(links)
}

/// Detaches one cgroup's links (a cgroup that is gone already detached them).
pub(super) fn detach(ebpf: &mut Ebpf, links: CgroupLinks) {
    for ((name, _), id) in PROGS.into_iter().zip(links) {
        let Some(id) = id else { continue };
        if let Some(p) = ebpf.program_mut(name) {
            let p: Result<&mut CgroupSkb, _> = p.try_into();
            if let Ok(p) = p {
                let _ = p.detach(id);
            }
        }
    }
}

/// What the programs recorded so far (empty if they are not loaded).
pub fn owners(ebpf: &Ebpf) -> Result<SocketOwners, ProbeError> {
    let mut out = SocketOwners::default();
    let Some(map) = ebpf.map(MAP_SOCKS) else {
        return Ok(out);
    };
    let m: BpfHashMap<&MapData, SockKey, u64> =
        BpfHashMap::try_from(map).map_err(super::error::map_err(MAP_SOCKS))?;
    for (k, cg) in m.iter().flatten() {
        let ip = match k.family {
            4 => IpAddr::V4(Ipv4Addr::new(k.addr[0], k.addr[1], k.addr[2], k.addr[3])),
            6 => IpAddr::V6(Ipv6Addr::from(k.addr)),
            _ => continue,
        };
        out.insert(k.netns, k.proto, ip, k.port, cg);
    }
    Ok(out)
}

/// Attached cgroups, by cgroup id.
pub(super) type Attached = HashMap<u64, CgroupLinks>;

/// (namespace inode, IP protocol, local address, local port) -> cgroup v2 id of the socket's
/// owner, as the kernel recorded it. The unspecified address stands for a wildcard bind.
#[derive(Clone, Debug, Default)]
pub struct SocketOwners(pub HashMap<(u32, u8, IpAddr, u16), u64>);

impl SocketOwners {
    /// Records a socket. Dual-stack IPv6 sockets carry IPv4 peers as v4-mapped addresses
    /// (and a `::` bind takes IPv4 too), so those are also filed under IPv4, where flows look.
    pub fn insert(&mut self, netns: u32, proto: u8, ip: IpAddr, port: u16, cgroup: u64) {
        if let IpAddr::V6(v6) = ip {
            if let Some(v4) = v6.to_ipv4_mapped() {
                self.0.insert((netns, proto, IpAddr::V4(v4), port), cgroup);
                return;
            }
            if v6.is_unspecified() {
                let any4 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
                self.0.entry((netns, proto, any4, port)).or_insert(cgroup);
            }
        }
        self.0.insert((netns, proto, ip, port), cgroup);
    }

    #[must_use]
    pub fn lookup(&self, netns: u32, proto: u8, ip: IpAddr, port: u16) -> Option<u64> {
        let any = if ip.is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        };
        self.0
            .get(&(netns, proto, ip, port))
            .or_else(|| self.0.get(&(netns, proto, any, port)))
            .copied()
    }
}

impl super::Probe {
    /// Keeps the socket-owner programs attached to exactly the cgroups in `wanted` (id,
    /// directory). Returns what failed, one message per cgroup.
    pub fn watch_sockets(&mut self, wanted: &[(u64, std::path::PathBuf)]) -> Vec<String> {
        if !self.sockets_loaded {
            return Vec::new();
        }
        let keep: std::collections::HashSet<u64> = wanted.iter().map(|(id, _)| *id).collect();
        let gone: Vec<u64> = self
            .cgroup_links
            .keys()
            .filter(|id| !keep.contains(id))
            .copied()
            .collect();
        for id in gone {
            if let Some(l) = self.cgroup_links.remove(&id) {
                detach(&mut self.ebpf, l);
            }
        }
        let mut errors = Vec::new();
        for (id, dir) in wanted {
            if self.cgroup_links.contains_key(id) {
                continue;
            }
            match attach(&mut self.ebpf, dir) {
                Ok(l) => {
                    self.cgroup_links.insert(*id, l);
                }
                Err(e) => errors.push(format!("socket owners in {}: {e}", dir.display())),
            }
        }
        errors
    }

    /// Whether the socket-owner programs watch any cgroup now (so some flow end is told by
    /// its socket's owner).
    #[must_use]
    pub fn watching_sockets(&self) -> bool {
        !self.cgroup_links.is_empty()
    }

    /// Socket owners the kernel recorded.
    pub fn socket_owners(&self) -> Result<SocketOwners, ProbeError> {
        owners(&self.ebpf)
    }
}
