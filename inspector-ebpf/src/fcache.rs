//! The per-CPU flow cache in front of `inspector_flow4` (see `inspector_common::FlowSlot`):
//! a packet of the flow that holds its slot costs an array lookup, a key compare and a few
//! stores; a packet of another flow moves the slot's counts into the LRU table (one lookup,
//! and an insert the first time) and takes the slot. Counts are never sampled: userspace
//! adds the two parts (`probe::read`).
//!
//! Every writer of a slot runs on the slot's own CPU with bottom halves off (tc, and the
//! stack's `netif_receive_skb`/`net_dev_start_xmit` tracepoints), so writers never
//! interleave; only userspace's copies can overlap a write, and the slot's generation pair
//! tells it when a copy overlapped a take-over.
use aya_ebpf::{bindings::BPF_ANY, helpers::generated::bpf_jiffies64, maps::LruPerCpuHashMap};
use core::ptr::{addr_of_mut, write_volatile};
use inspector_common::{FlowKey4, FlowStats, Stat, flow::cache_index};

use crate::maps::{FCACHE, FLOWS4, bump, precise_now};

/// Counts one packet of an IPv4 flow the fast parser read. (Other writers of
/// `inspector_flow4`, the general parser and the tc programs, go straight to the LRU table:
/// userspace adds whatever each part holds.)
#[inline(always)]
pub(crate) fn count4(key: &FlowKey4, tcp_flags: u8, status: u8, len: u32) {
    // The index is below the map's size by construction: the lookup cannot fail.
    let Some(slot) = FCACHE.get_ptr_mut(cache_index(key)) else {
        return;
    };
    // SAFETY: plain helper call.
    let jiffies = unsafe { bpf_jiffies64() };
    // SAFETY: this CPU's slot (see the module header: no other writer interleaves).
    unsafe {
        let s = addr_of_mut!((*slot).stats);
        if (*s).packets != 0 && (*slot).key == *key {
            add_packet(s, len, jiffies, tcp_flags, status);
            return;
        }
        if (*s).packets != 0 {
            spill(&FLOWS4, &(*slot).key, &*s);
        }
        let generation = (*slot).gen_head.wrapping_add(1);
        write_volatile(addr_of_mut!((*slot).gen_tail), generation);
        write_volatile(addr_of_mut!((*slot).key), *key);
        // Field by field: a whole `FlowStats` would be built on the stack first.
        write_volatile(addr_of_mut!((*s).packets), 1);
        write_volatile(addr_of_mut!((*s).bytes), u64::from(len));
        write_volatile(addr_of_mut!((*s).first_ns), precise_now());
        write_volatile(addr_of_mut!((*s).last_jiffies), jiffies);
        write_volatile(addr_of_mut!((*s).tcp_flags), tcp_flags);
        write_volatile(addr_of_mut!((*s).status), status);
        write_volatile(addr_of_mut!((*slot).gen_head), generation);
    }
}

/// Counts one more packet in counters that already hold the flow.
///
/// # Safety
/// `s` points at this CPU's counters (no other writer interleaves).
#[inline(always)]
pub(crate) unsafe fn add_packet(
    s: *mut FlowStats,
    len: u32,
    jiffies: u64,
    tcp_flags: u8,
    status: u8,
) {
    // SAFETY: the caller's.
    unsafe {
        (*s).packets += 1;
        (*s).bytes += u64::from(len);
        (*s).last_jiffies = jiffies;
        (*s).tcp_flags |= tcp_flags;
        (*s).status |= status;
    }
}

/// Adds a cache slot's counts to its flow's entry in the LRU table (this CPU's part).
#[inline(always)]
fn spill(map: &LruPerCpuHashMap<FlowKey4, FlowStats>, key: &FlowKey4, s: &FlowStats) {
    if let Some(v) = map.get_ptr_mut(key) {
        // SAFETY: this CPU's slot of a per-CPU value (no other writer interleaves).
        unsafe {
            if (*v).packets == 0 || (*v).first_ns > s.first_ns {
                (*v).first_ns = s.first_ns;
            }
            (*v).packets += s.packets;
            (*v).bytes += s.bytes;
            if (*v).last_jiffies < s.last_jiffies {
                (*v).last_jiffies = s.last_jiffies;
            }
            (*v).tcp_flags |= s.tcp_flags;
            (*v).status |= s.status;
        }
        return;
    }
    // BPF_ANY: if another CPU created the entry meanwhile, this only sets this CPU's slot
    // (and both count it created: a second insert to tell would not fit the stack).
    if map.insert(key, s, u64::from(BPF_ANY)).is_ok() {
        bump(Stat::FlowsCreated);
    } else {
        bump(Stat::FlowUpdateFailed);
    }
}
