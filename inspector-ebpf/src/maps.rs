//! Every map the programs share. Names carry the `inspector_` prefix so `bpftool map` shows
//! whose they are; sizes here are defaults that userspace may override at load.
use aya_ebpf::{
    macros::map,
    maps::{LruPerCpuHashMap, PerCpuArray, RingBuf},
};
use inspector_common::{FlowKey, FlowStats, flow::STAT_SLOTS};

/// Per-flow, per-hook counters. LRU so a busy node evicts idle flows instead of failing.
#[map(name = "inspector_flows")]
pub(crate) static FLOWS: LruPerCpuHashMap<FlowKey, FlowStats> =
    LruPerCpuHashMap::with_max_entries(65536, 0);

/// Per-packet events (only written when events are switched on). Resized by userspace.
#[map(name = "inspector_evts")]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(4096, 0);

/// Counters of what the programs saw or lost, one slot per `inspector_common::Stat`.
#[map(name = "inspector_stats")]
pub(crate) static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_SLOTS, 0);

#[inline(always)]
pub(crate) fn bump(stat: inspector_common::Stat) {
    if let Some(slot) = STATS.get_ptr_mut(stat as u32) {
        // SAFETY: per-CPU slot, tc programs run with BH disabled, so no concurrent writer.
        unsafe { *slot += 1 };
    }
}
