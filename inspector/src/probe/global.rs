//! Global hooks (`AttachMode::Global`): no per-interface attachment. Two `tp_btf` programs
//! on the stack's packet tracepoints fire for every device of the node, and count those
//! `inspector_gsel` selects: what "attaching" an interface means here is writing its entry
//! (a map update, microseconds, no RCU grace period). Devices the selection leaves out are
//! written as 0, so the programs skip them; a device nobody has listed yet (a veth created a
//! moment ago) follows the load-time rule (`ProbeOptions::global_unknown`), which by default
//! counts it: its first packet is in the flows before userspace has heard of it.
use aya::maps::{HashMap as BpfHashMap, MapData};

use super::{
    AttachKey, GLOBAL_EMPTY, GLOBAL_HOOKS, MAP_GSEL, Probe, ProbeError, error::program_err,
};

/// The `inspector_gsel` key of a device (`ifindex` 0: its whole namespace).
fn gsel_key(netns: u64, ifindex: u32) -> u64 {
    (netns & 0xffff_ffff) << 32 | u64::from(ifindex)
}

impl Probe {
    /// Whether this probe counts with the global hooks.
    #[must_use]
    pub fn global(&self) -> bool {
        self.attach_mode == super::AttachMode::Global
    }

    /// Writes (`Some`) or removes (`None`) a device's selection.
    pub(super) fn set_gsel(&mut self, key: u64, value: Option<u8>) -> Result<(), ProbeError> {
        let err = super::error::map_err(MAP_GSEL);
        let map = super::map_mut_ref(&mut self.ebpf, MAP_GSEL)?;
        let mut m: BpfHashMap<&mut MapData, u64, u8> = BpfHashMap::try_from(map).map_err(err)?;
        if let Some(v) = value {
            m.insert(key, v, 0).map_err(err)
        } else {
            // Already absent is fine.
            let _ = m.remove(&key);
            Ok(())
        }
    }

    /// Selects a device (global hooks).
    pub(super) fn select(&mut self, key: AttachKey) -> Result<(), ProbeError> {
        self.excluded.remove(&key);
        self.set_gsel(gsel_key(key.0, key.1), Some(1))
    }

    /// Global hooks: these devices are not to be counted (the scan found them, the selection
    /// leaves them out); devices excluded before and not listed now are forgotten (gone).
    /// A no-op with tc.
    pub fn exclude(&mut self, keys: &[AttachKey]) -> Result<(), ProbeError> {
        if !self.global() {
            return Ok(());
        }
        let now: std::collections::HashSet<AttachKey> = keys.iter().copied().collect();
        let gone: Vec<AttachKey> = self.excluded.difference(&now).copied().collect();
        for k in gone {
            self.excluded.remove(&k);
            self.set_gsel(gsel_key(k.0, k.1), None)?;
        }
        for &k in keys {
            if self.excluded.insert(k) {
                self.set_gsel(gsel_key(k.0, k.1), Some(0))?;
            }
        }
        Ok(())
    }

    /// Global hooks with `--netns`: every device of these namespaces is counted, including
    /// ones that appear later (devices of other namespaces only when listed).
    pub fn select_namespaces(&mut self, inodes: &[u64]) -> Result<(), ProbeError> {
        if !self.global() {
            return Ok(());
        }
        for &ns in inodes {
            self.set_gsel(gsel_key(ns, 0), Some(1))?;
        }
        Ok(())
    }

    /// Whether flows seen on this device are left out (global hooks: it is excluded).
    pub(super) fn left_out(&self, netns: u32, ifindex: u32) -> bool {
        !self.excluded.is_empty() && self.excluded.contains(&(u64::from(netns), ifindex))
    }

    /// Attaches the global hooks' programs, once, after the first selection is written.
    pub(super) fn start_global(&mut self) -> Result<(), ProbeError> {
        if self.global_on {
            return Ok(());
        }
        for (prog, _) in if self.empty {
            GLOBAL_EMPTY
        } else {
            GLOBAL_HOOKS
        } {
            let p: &mut aya::programs::BtfTracePoint = super::program(&mut self.ebpf, prog)?
                .try_into()
                .map_err(program_err(prog))?;
            p.attach().map_err(program_err(prog))?;
        }
        self.global_on = true;
        Ok(())
    }
}
