//! Every map the programs share. Names carry the `inspector_` prefix so `bpftool map` shows
//! whose they are; sizes here are defaults that userspace may override at load.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf},
};
use inspector_common::{
    ClockSample, DropKey, FlowKey, FlowKey4, FlowStats, SockKey,
    flow::{CACHE_SLOTS, FlowSlot, IFNS_SLOTS, IfInfo, STAT_SLOTS, WholeEvent},
    hop::{HopHist, HopSeen},
};

/// Per-flow, per-hook counters. LRU so a busy node evicts idle flows instead of failing.
#[map(name = "inspector_flows")]
pub(crate) static FLOWS: LruPerCpuHashMap<FlowKey, FlowStats> =
    LruPerCpuHashMap::with_max_entries(65536, 0);

/// The same for IPv4 flows, under a compact key (see `FlowKey4`).
#[map(name = "inspector_flow4")]
pub(crate) static FLOWS4: LruPerCpuHashMap<FlowKey4, FlowStats> =
    LruPerCpuHashMap::with_max_entries(65536, 0);

/// The per-CPU flow cache in front of `inspector_flow4` (see `FlowSlot`).
#[map(name = "inspector_fcache")]
pub(crate) static FCACHE: PerCpuArray<FlowSlot> = PerCpuArray::with_max_entries(CACHE_SLOTS, 0);

/// Packets the kernel dropped, per (flow, device, reason), from `skb:kfree_skb`.
#[map(name = "inspector_drops")]
pub(crate) static DROPS: LruPerCpuHashMap<DropKey, FlowStats> =
    LruPerCpuHashMap::with_max_entries(16384, 0);

/// Per-packet events (only written when events are switched on). Resized by userspace.
#[map(name = "inspector_evts")]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(4096, 0);

/// ifindex -> inode of the namespace of the one attached interface with that ifindex, or 0
/// when two attached namespaces share the ifindex (then the program reads it from the device),
/// and per-hop timing's auto sampling shift.
/// Userspace writes it before attaching, so a non-zero entry is never wrong. An array lookup is
/// inlined by the verifier: this is what keeps the namespace lookup off the per-packet bill.
#[map(name = "inspector_ifns")]
pub(crate) static IFNS: Array<IfInfo> = Array::with_max_entries(IFNS_SLOTS, 0);

/// The sampling shift each CPU last said it times with (`--kernel-log info`), plus one.
#[map(name = "inspector_logsh")]
pub(crate) static LOG_SHIFT: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// The latest (jiffies, ns) pair each CPU saw; see `ClockSample`.
#[map(name = "inspector_clock")]
pub(crate) static CLOCK: PerCpuArray<ClockSample> = PerCpuArray::with_max_entries(1, 0);

/// Reads the precise clock, and records it with the current jiffies for userspace.
#[inline(always)]
pub(crate) fn precise_now() -> u64 {
    // SAFETY: plain helper calls.
    let (ns, jiffies) = unsafe {
        (
            aya_ebpf::helpers::bpf_ktime_get_ns(),
            aya_ebpf::helpers::generated::bpf_jiffies64(),
        )
    };
    if let Some(slot) = CLOCK.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; tc and tracepoint programs do not preempt each other here.
        unsafe { *slot = ClockSample { jiffies, ns } };
    }
    ns
}

/// Counters of what the programs saw or lost, one slot per `inspector_common::Stat`.
#[map(name = "inspector_stats")]
pub(crate) static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_SLOTS, 0);

/// Adds one to a per-CPU counter and returns its new value on this CPU.
#[inline(always)]
pub(crate) fn bump_get(stat: inspector_common::Stat) -> u64 {
    if let Some(slot) = STATS.get_ptr_mut(stat as u32) {
        // SAFETY: per-CPU slot, tc programs run with BH disabled, so no concurrent writer.
        unsafe {
            *slot += 1;
            return *slot;
        }
    }
    0
}

#[inline(always)]
pub(crate) fn bump(stat: inspector_common::Stat) {
    if let Some(slot) = STATS.get_ptr_mut(stat as u32) {
        // SAFETY: per-CPU slot, tc programs run with BH disabled, so no concurrent writer.
        unsafe { *slot += 1 };
    }
}

/// Socket (namespace, protocol, local address and port) -> cgroup v2 id of its owner, from
/// `insp_sock_owner`. Lets userspace tell apart containers that share a namespace.
#[map(name = "inspector_socks")]
pub(crate) static SOCKS: LruHashMap<SockKey, u64> = LruHashMap::with_max_entries(65536, 0);

/// Slots of `inspector_sock_seen`.
pub(crate) const SOCK_SEEN_SLOTS: u32 = 256;

/// Per-CPU cache of socket cookies already recorded in `inspector_socks` (direct-mapped by
/// cookie): lets `insp_sock_owner` skip sockets it has seen.
#[map(name = "inspector_sockseen")]
pub(crate) static SOCK_SEEN: PerCpuArray<u64> = PerCpuArray::with_max_entries(SOCK_SEEN_SLOTS, 0);

/// Per-hop timing: the packets seen last, direct-mapped by fingerprint, shared by all CPUs
/// (see `inspector_common::hop`). Sized by userspace (one entry unless hop timing is on).
#[map(name = "inspector_hseen")]
pub(crate) static HOP_SEEN: Array<HopSeen> = Array::with_max_entries(1, 0);

/// Per-hop timing: one histogram per transition (from hook, to hook, addresses), one block
/// of `HOP_HIST_SLOTS` per CPU. Sized by userspace.
#[map(name = "inspector_hhist")]
pub(crate) static HOP_HIST: Array<HopHist> = Array::with_max_entries(1, 0);

/// Per-hop timing in auto mode: packets are timed 1 in 2^(this value), chosen by fingerprint
/// so every hook times the same packets. Userspace moves it with the rate; the programs read
/// the copy in `inspector_ifns` (a line they read anyway), this one only for interfaces
/// beyond that array.
#[map(name = "inspector_hshift")]
pub(crate) static HOP_SHIFT: Array<u32> = Array::with_max_entries(1, 0);

/// (namespace inode << 32 | ifindex) of every interface the tc programs are attached to,
/// kept by userspace: the stack's tracepoints fire for every device on the node and report
/// only these.
#[map(name = "inspector_atch")]
pub(crate) static ATTACHED: HashMap<u64, u8> = HashMap::with_max_entries(65536, 0);

/// Global hooks: (namespace inode << 32 | ifindex) -> 1 (count) or 0 (do not), kept by
/// userspace; (namespace << 32 | 0) says the same of every device of that namespace not
/// listed itself. See `tp_global`.
#[map(name = "inspector_gsel")]
pub(crate) static GSEL: HashMap<u64, u8> = HashMap::with_max_entries(65536, 0);

/// Workload selection: namespace inode -> `wsel` bits, for every namespace userspace has
/// placed (0: none of the selected workloads is in it). See `wsel`.
#[map(name = "inspector_wns")]
pub(crate) static WSEL_NS: HashMap<u32, u8> = HashMap::with_max_entries(16384, 0);

/// Where the workload selection copies a packet's two addresses to look them up (a map
/// value as the key: the stack has no room, and a key read in place on the stack makes
/// LLVM write IPv4 zero tails with `memset` calls, frames Linux 6.1's verifier counts).
#[map(name = "inspector_wkey")]
pub(crate) static WSEL_KEY: PerCpuArray<[[u8; 16]; 2]> = PerCpuArray::with_max_entries(1, 0);

/// Workload selection: address (as in `FlowKey`: IPv4 in the first 4 bytes) -> `wsel` bits.
#[map(name = "inspector_waddr")]
pub(crate) static WSEL_ADDR: HashMap<[u8; 16], u8> = HashMap::with_max_entries(16384, 0);

/// Whole-packet events (`FLAG_WHOLE`) are built here, then copied to the ring.
#[map(name = "inspector_whole")]
pub(crate) static WHOLE: PerCpuArray<WholeEvent> = PerCpuArray::with_max_entries(1, 0);
