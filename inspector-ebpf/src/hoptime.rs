//! Per-hop timing in the kernel, shared by the tc programs and the stack's tracepoints (see
//! `inspector_common::hop`).
use aya_ebpf::helpers::{bpf_get_smp_processor_id, bpf_ktime_get_ns};
use inspector_common::{
    Stat,
    config::HOP_SHIFT_AUTO,
    hop::{self, HOP_HIST_SLOTS, HOP_MAX_NS, HOP_MAX_SHIFT, HOP_PROBES, HopTag},
    parse::FastV4,
};

use crate::{
    config::conf,
    maps::{HOP_HIST, HOP_SEEN, HOP_SHIFT, bump},
};

/// No sampling shift known for the interface: read `inspector_hshift`.
pub(crate) const NO_SHIFT: u32 = u32::MAX;

/// The sampling shift in force: the load-time one, else auto's from the interface's entry
/// (`auto_shift`), else auto's node-wide one.
#[inline(always)]
pub(crate) fn sample_shift(auto_shift: u32) -> u32 {
    let fixed = conf!(hop_sample_shift);
    if fixed != HOP_SHIFT_AUTO {
        u32::from(fixed)
    } else if auto_shift != NO_SHIFT {
        auto_shift
    } else {
        HOP_SHIFT.get(0).copied().unwrap_or(0)
    }
}

/// Per-hop timing (see `inspector_common::hop`): if the packet with fingerprint `fp` was
/// last seen at another hook, the time since goes into that transition's histogram; then
/// this hook becomes the packet's last. A hook is (namespace, ifindex, `code`): the
/// direction, plus the stack hook's number << 1 for the stack's tracepoints.
#[inline(always)]
pub(crate) fn hop_time(fp: u64, f: &FastV4, netns: u32, ifindex: u32, code: u8, auto_shift: u32) {
    // Sampled by the fingerprint's top bits (the slot index uses bits 32..42): the timed
    // path is most of the cost, and every hook must pick the same packets. A fixed rate is
    // a load-time constant; auto's comes with the interface's entry in `inspector_ifns`
    // (userspace moves it), so neither costs a memory read of its own.
    let shift = sample_shift(auto_shift);
    if shift != 0 && shift <= HOP_MAX_SHIFT && (fp >> (64 - shift)) != 0 {
        return;
    }
    // SAFETY: plain helper call (inlined by the verifier).
    let cpu = unsafe { bpf_get_smp_processor_id() };
    // Two-way: the packet's slot and its neighbour (one cache line). A packet takes the
    // slot holding its fingerprint, else the one written longer ago, so two packets in
    // flight at once with the same index (a burst held in a qdisc) both keep their entry.
    let first = (fp >> 32) as u32 & conf!(hop_seen_mask) & !1;
    let (Some(even), Some(odd)) = (HOP_SEEN.get_ptr_mut(first), HOP_SEEN.get_ptr_mut(first | 1))
    else {
        return;
    };
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: slots of the shared table: plain loads and stores of plain data (another CPU
    // writing the same slot at the same instant can only tear the entry; see `hop`).
    let (even, odd) = unsafe { (&mut *even, &mut *odd) };
    let s = if even.fp == fp || (odd.fp != fp && even.ts <= odd.ts) {
        even
    } else {
        odd
    };
    let moved = s.ifindex != ifindex || s.netns != netns || s.direction != code;
    let d = now.wrapping_sub(s.ts);
    if s.fp == fp && moved && d < HOP_MAX_NS {
        record(
            cpu,
            &HopTag {
                from_netns: s.netns,
                from_ifindex: s.ifindex,
                to_netns: netns,
                to_ifindex: ifindex,
                src: s.src,
                dst: s.dst,
                proto: s.proto,
                from_direction: s.direction,
                to_direction: code,
                used: 1,
                _pad: 0,
            },
            d,
        );
    } else {
        // A packet not seen before (or the same fingerprint at the same hook again: a new
        // packet); its addresses here name its pair at every later hop.
        s.fp = fp;
        s.src = f.src;
        s.dst = f.dst;
        s.proto = f.proto;
    }
    s.ts = now;
    s.netns = netns;
    s.ifindex = ifindex;
    s.direction = code;
}

/// Adds one hop time to its transition's histogram (open addressing, `HOP_PROBES` slots).
#[inline(always)]
fn record(cpu: u32, tag: &HopTag, d: u64) {
    let words = tag.words();
    let first = tag.slot();
    let block = cpu * HOP_HIST_SLOTS;
    let mut i = 0;
    while i < HOP_PROBES {
        let Some(slot) = HOP_HIST.get_ptr_mut(block + ((first + i) & (HOP_HIST_SLOTS - 1))) else {
            return;
        };
        // SAFETY: this CPU's block, as above.
        let hh = unsafe { &mut *slot };
        if hh.tag.used == 0 {
            hh.tag = *tag;
        } else if !same(&hh.tag.words(), &words) {
            i += 1;
            continue;
        }
        hh.packets += 1;
        hh.sum_ns += d;
        if d > hh.max_ns {
            hh.max_ns = d;
        }
        // Opaque to LLVM, so the bounds check below stays for the verifier (LLVM proves it
        // redundant, the verifier cannot follow that proof).
        let b = core::hint::black_box(hop::hop_bucket(d));
        if let Some(c) = hh.buckets.get_mut(b) {
            *c += 1;
        }
        bump(Stat::HopTimed);
        return;
    }
    bump(Stat::HopSlotsFull);
}

/// Word-by-word equality (`==` on arrays becomes a call to a byte-wise `memcmp`).
#[inline(always)]
fn same(a: &[u64; 4], b: &[u64; 4]) -> bool {
    (a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) == 0
}
