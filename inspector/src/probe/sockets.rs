//! The socket-owner program (`insp_sock_owner`, `cgroup_skb`): attached to the root of the
//! cgroup v2 hierarchy for ingress and egress as links held by this process (so they vanish
//! with it), and its map read back as [`SocketOwners`].
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapData},
    programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType},
};
use inspector_common::SockKey;

use super::{ProbeError, load_error};
use crate::identity::{SocketOwners, cgroup};

pub const PROGS: [(&str, CgroupSkbAttachType); 2] = [
    ("insp_sock_owner_in", CgroupSkbAttachType::Ingress),
    ("insp_sock_owner_out", CgroupSkbAttachType::Egress),
];
pub const MAP_SOCKS: &str = "inspector_socks";

/// Loads and attaches the program. An `Err` here is a warning for the user, not a failure:
/// tracing works without it, only shared namespaces cannot be split by socket owner.
pub fn attach(ebpf: &mut Ebpf) -> Result<(), String> {
    let Some(root) = cgroup::v2_mount() else {
        return Err("no cgroup v2 hierarchy is mounted".into());
    };
    let dir = std::fs::File::open(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    for (name, t) in PROGS {
        let prog: &mut CgroupSkb = ebpf
            .program_mut(name)
            .ok_or("program missing from object")?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| e.to_string())?;
        prog.load().map_err(|e| load_error(name, e).to_string())?;
        // As a bpf_link (what aya makes on 5.7+) the attachment always coexists with others;
        // the kernel refuses the ALLOW_MULTI flag on links, so `Single` is the right mode.
        prog.attach(&dir, t, CgroupAttachMode::Single)
            .map_err(|e| {
                format!(
                    "attaching to {}: {}",
                    root.display(),
                    crate::output::chain(&e)
                )
            })?;
    }
    Ok(())
}

/// What the program recorded so far (empty if it is not attached).
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
