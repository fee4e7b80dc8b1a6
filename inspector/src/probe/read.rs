//! Reading what the programs recorded: per-flow counters (summed over CPUs, times in
//! `CLOCK_MONOTONIC` ns), drops, the kernel-side statistics, per-hop histograms; and the one
//! value userspace writes while running (per-hop timing's auto sampling shift).
use std::collections::HashMap;

use aya::maps::{Array, MapData, PerCpuArray, PerCpuHashMap};
use inspector_common::{
    ClockSample, DropKey, FlowKey, FlowKey4, FlowStats, Stat,
    flow::{FlowSlot, STAT_SLOTS},
    hop::HopHist,
};

use super::{
    AttachKey, Counts, MAP_CLOCK, MAP_DROPS, MAP_FCACHE, MAP_FLOWS, MAP_FLOWS4, MAP_HOP_HIST,
    MAP_HOP_SHIFT, MAP_STATS, Probe, ProbeError, batch, clock, error::map_err, fcache, map_mut_ref,
    map_ref,
};

impl Probe {
    /// Packets the kernel dropped, per (flow, device, reason), summed over CPUs.
    pub fn drops(&self) -> Result<Vec<(DropKey, Counts)>, ProbeError> {
        let clock = self.clock()?;
        let Some(map) = self.ebpf.map(MAP_DROPS) else {
            return Ok(Vec::new());
        };
        let map: PerCpuHashMap<&MapData, DropKey, FlowStats> =
            PerCpuHashMap::try_from(map).map_err(map_err(MAP_DROPS))?;
        Ok(map
            .iter()
            .flatten()
            .map(|(k, v)| (k, sum(v.iter(), &clock)))
            .collect())
    }

    /// Name of a drop reason ("`NO_SOCKET`"), or its number.
    #[must_use]
    pub fn drop_reason(&self, reason: u32) -> String {
        self.drop_reasons
            .get(&reason)
            .cloned()
            .unwrap_or_else(|| format!("reason_{reason}"))
    }

    /// Every (namespace, ifindex) both programs are attached to.
    pub fn attached(&self) -> impl Iterator<Item = &AttachKey> {
        self.links.keys()
    }

    /// Summed per-CPU flow counters, one entry per (flow, hook), IPv4 ones widened to the
    /// full key.
    pub fn flows(&self) -> Result<Vec<(FlowKey, Counts)>, ProbeError> {
        let clock = self.clock()?;
        // Read before the tables: a flow created meanwhile is then in the tables and not
        // in this count, so what is missing is at least what was evicted (see `evicted`).
        let created = self.stat(Stat::FlowsCreated)?;
        let mut out = Vec::new();
        let cpus = aya::util::nr_cpus().map_err(|(_, source)| ProbeError::Batch {
            map: MAP_FLOWS,
            source,
        })?;
        // In batches where the kernel has them (5.6+), else entry by entry.
        let map = map_ref(&self.ebpf, MAP_FLOWS)?;
        let batched = batch::per_cpu::<FlowKey, FlowStats>(map, cpus, |k, s| {
            out.push((k, sum(s.iter(), &clock)));
        })
        .map_err(batch_err(MAP_FLOWS))?;
        if !batched {
            let full: PerCpuHashMap<&MapData, FlowKey, FlowStats> =
                PerCpuHashMap::try_from(map).map_err(map_err(MAP_FLOWS))?;
            // An entry evicted between get_next_key and lookup is simply skipped.
            for (k, per_cpu) in full.iter().flatten() {
                out.push((k, sum(per_cpu.iter(), &clock)));
            }
        }
        // The LRU table's part first, then the cache's (see `fcache`: that order can miss
        // a moving part, never count it twice).
        let mut v4: HashMap<FlowKey4, Counts> = HashMap::new();
        let map = map_ref(&self.ebpf, MAP_FLOWS4)?;
        let batched = batch::per_cpu::<FlowKey4, FlowStats>(map, cpus, |k, s| {
            v4.insert(k, sum(s.iter(), &clock));
        })
        .map_err(batch_err(MAP_FLOWS4))?;
        if !batched {
            let table: PerCpuHashMap<&MapData, FlowKey4, FlowStats> =
                PerCpuHashMap::try_from(map).map_err(map_err(MAP_FLOWS4))?;
            for (k, per_cpu) in table.iter().flatten() {
                v4.insert(k, sum(per_cpu.iter(), &clock));
            }
        }
        let entries = (out.len() + v4.len()) as u64;
        self.evicted
            .set(self.evicted.get().max(created.saturating_sub(entries)));
        let cache = self.cache_parts(cpus, &clock)?;
        fcache::merge(&mut v4, &cache, &mut self.cache_held.borrow_mut());
        out.extend(v4.into_iter().map(|(k, c)| (k.widen(), c)));
        if self.global() {
            out.retain(|(k, _)| !self.left_out(k.netns, k.ifindex));
        }
        Ok(out)
    }

    /// The flow cache's counts per flow: every slot, on every CPU, that holds a flow whose
    /// key and counters were copied together (`FlowSlot::settled`).
    fn cache_parts(
        &self,
        cpus: usize,
        clock: &clock::JiffiesClock,
    ) -> Result<HashMap<FlowKey4, Counts>, ProbeError> {
        let mut parts: HashMap<FlowKey4, Counts> = HashMap::new();
        let mut add = |slots: &[FlowSlot]| {
            for s in slots.iter().filter(|s| s.settled()) {
                parts
                    .entry(s.key)
                    .or_default()
                    .add(&sum(std::iter::once(&s.stats), clock));
            }
        };
        let map = map_ref(&self.ebpf, MAP_FCACHE)?;
        let batched = batch::per_cpu::<u32, FlowSlot>(map, cpus, |_, s| add(s))
            .map_err(batch_err(MAP_FCACHE))?;
        if !batched {
            let err = map_err(MAP_FCACHE);
            let arr: PerCpuArray<&MapData, FlowSlot> = PerCpuArray::try_from(map).map_err(err)?;
            for i in 0..arr.len() {
                add(&arr.get(&i, 0).map_err(err)?);
            }
        }
        Ok(parts)
    }

    /// Flow records the flow tables evicted (least recently seen first, when full), as of
    /// the last [`Self::flows`] read: the records created minus those in the tables. At
    /// least the truth, and above it only by a new flow two CPUs created at the same
    /// instant (both count it).
    #[must_use]
    pub fn flows_evicted(&self) -> u64 {
        self.evicted.get()
    }

    /// The kernel-side counters, indexed like `inspector_common::Stat`.
    pub fn stats(&self) -> Result<[u64; STAT_SLOTS as usize], ProbeError> {
        let mut out = [0u64; STAT_SLOTS as usize];
        for (s, slot) in Stat::ALL.iter().zip(out.iter_mut()) {
            *slot = self.stat(*s)?;
        }
        Ok(out)
    }

    /// One kernel-side counter, summed over CPUs.
    fn stat(&self, s: Stat) -> Result<u64, ProbeError> {
        let err = map_err(MAP_STATS);
        let arr: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map_ref(&self.ebpf, MAP_STATS)?).map_err(err)?;
        Ok(arr.get(&(s as u32), 0).map_err(err)?.iter().sum())
    }

    /// Per-hop timing: every histogram in use, one per transition per CPU that recorded it
    /// (`flows::hops::kernel_rows` merges them), with its slot in the map (a slot keeps its
    /// transition for the probe's life: its counts only grow).
    pub fn hop_hists(&self) -> Result<Vec<(u32, HopHist)>, ProbeError> {
        let err = map_err(MAP_HOP_HIST);
        let arr: Array<&MapData, HopHist> =
            Array::try_from(map_ref(&self.ebpf, MAP_HOP_HIST)?).map_err(err)?;
        let mut out = Vec::new();
        for i in 0..arr.len() {
            let h = arr.get(&i, 0).map_err(err)?;
            if h.tag.used != 0 {
                out.push((i, h));
            }
        }
        Ok(out)
    }

    /// Per-hop timing in auto mode: time 1 packet in 2^`shift` from now on.
    pub fn set_hop_shift(&mut self, shift: u32) -> Result<(), ProbeError> {
        let err = map_err(MAP_HOP_SHIFT);
        let shift = shift.min(inspector_common::hop::HOP_MAX_SHIFT);
        let mut arr: Array<&mut MapData, u32> =
            Array::try_from(map_mut_ref(&mut self.ebpf, MAP_HOP_SHIFT)?).map_err(err)?;
        arr.set(0, shift, 0).map_err(err)?;
        self.hop_shift = shift;
        self.spread_hop_shift()
    }

    /// Folds the (jiffies, ns) pair each CPU recorded last into the jiffies clock, and
    /// returns it. Cheap (one map lookup); the main loops call it often so the clock sees
    /// many samples.
    pub fn clock(&self) -> Result<clock::JiffiesClock, ProbeError> {
        let err = map_err(MAP_CLOCK);
        let arr: PerCpuArray<&MapData, ClockSample> =
            PerCpuArray::try_from(map_ref(&self.ebpf, MAP_CLOCK)?).map_err(err)?;
        let mut clock = self.clock.borrow_mut();
        for s in arr.get(&0, 0).map_err(err)?.iter() {
            clock.observe(*s);
        }
        Ok(*clock)
    }

    /// Forwards what the kernel logged (aya-log) since the last call; the logger's
    /// descriptor, to wait on, when kernel logging is on.
    pub fn flush_kernel_log(&mut self) {
        if let Some(l) = self.logger.as_mut() {
            l.flush();
        }
    }

    /// The kernel log ring's descriptor (readable when the kernel logged something).
    #[must_use]
    pub fn kernel_log_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.logger.as_ref().map(super::log::KernelLogger::fd)
    }
}

fn batch_err(map: &'static str) -> impl Fn(std::io::Error) -> ProbeError {
    move |source| ProbeError::Batch { map, source }
}

fn sum<'a>(vals: impl Iterator<Item = &'a FlowStats>, clock: &clock::JiffiesClock) -> Counts {
    let mut s = Counts::default();
    for v in vals {
        if v.packets == 0 {
            continue;
        }
        s.packets += v.packets;
        s.bytes += v.bytes;
        if v.first_ns != 0 {
            s.first_ns = if s.first_ns == 0 {
                v.first_ns
            } else {
                s.first_ns.min(v.first_ns)
            };
        }
        // last seen has one tick of resolution and may trail a precise first_ns.
        let last = if v.packets == 1 && v.first_ns != 0 {
            v.first_ns // one packet on this CPU: its precise time is known
        } else {
            clock.to_ns(v.last_jiffies).max(v.first_ns)
        };
        s.last_ns = s.last_ns.max(last);
        s.tcp_flags |= v.tcp_flags;
        s.status |= v.status;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1 jiffy = 1 µs, jiffies 0 at ns 0.
    const CLOCK: clock::JiffiesClock = clock::JiffiesClock {
        tick_ns: 1000,
        offset: Some(0),
    };

    fn slot(packets: u64, first_ns: u64, last_jiffies: u64) -> FlowStats {
        FlowStats {
            packets,
            bytes: packets * 100,
            first_ns,
            last_jiffies,
            tcp_flags: 0,
            status: 0,
            _pad16: 0,
            _pad32: 0,
        }
    }

    /// Regression: a CPU whose slot was created by another CPU's insert once reported
    /// `first_ns` = 0, and the merge took that as the earliest time, so paths were mis-ordered.
    #[test]
    fn merge_ignores_unset_first_seen_and_empty_slots() {
        let s = sum(
            [
                slot(3, 500, 9),
                slot(0, 0, 0),
                slot(2, 0, 10),
                slot(1, 450, 5),
            ]
            .iter(),
            &CLOCK,
        );
        assert_eq!(
            (s.packets, s.bytes, s.first_ns, s.last_ns),
            (6, 600, 450, 10_000)
        );
    }

    /// Last seen has one tick of resolution and may trail the precise first seen.
    #[test]
    fn merge_never_reports_last_before_first() {
        let s = sum([slot(1, 1_000_123, 1000)].iter(), &CLOCK);
        assert!(s.last_ns >= s.first_ns);
    }
}
