//! Workload selection in the kernel's event filter (`inspector_wns`, `inspector_waddr`; see
//! `inspector_common::wsel`): userspace writes the bits of each namespace and address after
//! every rescan, and only what changed.
use std::collections::HashMap;

use aya::maps::{HashMap as BpfHashMap, MapData};

use super::{Probe, ProbeError, error::map_err, map_mut_ref};

pub const MAP_WSEL_NS: &str = "inspector_wns";
pub const MAP_WSEL_ADDR: &str = "inspector_waddr";

/// What the maps hold, as last written.
#[derive(Default)]
pub(super) struct Written {
    netns: HashMap<u32, u8>,
    addrs: HashMap<[u8; 16], u8>,
}

/// Brings `map` from `old` to `new`: writes what changed, removes what went.
fn sync<K>(
    probe: &mut Probe,
    name: &'static str,
    old: &HashMap<K, u8>,
    new: &HashMap<K, u8>,
) -> Result<(), ProbeError>
where
    K: aya::Pod + Eq + std::hash::Hash,
{
    let map = map_mut_ref(&mut probe.ebpf, name)?;
    let mut m: BpfHashMap<&mut MapData, K, u8> =
        BpfHashMap::try_from(map).map_err(map_err(name))?;
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        // Already absent is fine.
        let _ = m.remove(k);
    }
    for (k, v) in new.iter().filter(|(k, v)| old.get(*k) != Some(*v)) {
        m.insert(k, v, 0).map_err(map_err(name))?;
    }
    Ok(())
}

impl Probe {
    /// Sets the selection: namespaces (inodes) and addresses (as `FlowKey` holds them), each
    /// with its `wsel` bits. A namespace left out passes (userspace decides its packets);
    /// with `waiting`, so does a packet with an address left out.
    pub fn select_workloads(
        &mut self,
        netns: &HashMap<u64, u8>,
        addrs: &HashMap<[u8; 16], u8>,
        waiting: bool,
    ) -> Result<(), ProbeError> {
        let wait = if waiting {
            inspector_common::wsel::WAITING
        } else {
            0
        };
        let netns: HashMap<u32, u8> = netns
            .iter()
            .filter_map(|(ns, b)| u32::try_from(*ns).ok().map(|ns| (ns, *b | wait)))
            .collect();
        let old = std::mem::take(&mut self.wsel);
        sync(self, MAP_WSEL_NS, &old.netns, &netns)?;
        sync(self, MAP_WSEL_ADDR, &old.addrs, addrs)?;
        self.wsel = Written {
            netns,
            addrs: addrs.clone(),
        };
        Ok(())
    }
}
