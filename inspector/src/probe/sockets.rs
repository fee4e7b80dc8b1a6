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

use super::{ProbeError, load_error};
use crate::identity::SocketOwners;

pub const PROGS: [(&str, CgroupSkbAttachType); 2] = [
    ("insp_sock_owner_in", CgroupSkbAttachType::Ingress),
    ("insp_sock_owner_out", CgroupSkbAttachType::Egress),
];
pub const MAP_SOCKS: &str = "inspector_socks";

/// Loads both programs (attaching comes later, per cgroup).
pub fn load(ebpf: &mut Ebpf) -> Result<(), String> {
    if crate::sys::cgroup::v2_mount().is_none() {
        return Err("no cgroup v2 hierarchy is mounted".into());
    }
    for (name, _) in PROGS {
        let prog: &mut CgroupSkb = ebpf
            .program_mut(name)
            .ok_or("program missing from object")?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| e.to_string())?;
        prog.load().map_err(|e| load_error(name, e).to_string())?;
    }
    Ok(())
}

/// The links of one cgroup.
pub(super) type CgroupLinks = [Option<CgroupSkbLinkId>; 2];

/// Attaches both programs to the cgroup directory `dir`.
pub(super) fn attach(ebpf: &mut Ebpf, dir: &Path) -> Result<CgroupLinks, ProbeError> {
    let file = std::fs::File::open(dir)
        .map_err(|e| ProbeError::Kernel(format!("opening cgroup {}: {e}", dir.display())))?;
    let mut links: CgroupLinks = [None, None];
    for (i, (name, t)) in PROGS.into_iter().enumerate() {
        let Some(prog) = ebpf.program_mut(name) else {
            continue;
        };
        let prog: &mut CgroupSkb = prog.try_into().map_err(|source| ProbeError::Program {
            program: name,
            source,
        })?;
        // As a bpf_link (aya makes one on 5.7+) the attachment always coexists with others;
        // the kernel refuses the ALLOW_MULTI flag on links, so `Single` is the right mode.
        match prog.attach(&file, t, CgroupAttachMode::Single) {
            Ok(id) => links[i] = Some(id),
            Err(source) => {
                detach(ebpf, links);
                return Err(ProbeError::Program {
                    program: name,
                    source,
                });
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
        BpfHashMap::try_from(map).map_err(|source| ProbeError::Map {
            map: MAP_SOCKS,
            source,
        })?;
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
