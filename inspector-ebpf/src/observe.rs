//! What both tc hooks do with a packet: parse it, count it in its flow, and (only when events
//! are switched on and the packet passes the load-time filter) copy it to the ring buffer.
//! The verdict is always `TC_ACT_UNSPEC` ("continue"; `TCX_NEXT` under TCX): the inspector
//! never drops, redirects or rewrites a packet, and never short-cuts other tc programs.
use aya_ebpf::maps::{LruPerCpuHashMap, ring_buf::RingBufEntry};
use aya_ebpf::{
    bindings::{BPF_ANY, TC_ACT_UNSPEC},
    helpers::{
        bpf_ktime_get_ns, bpf_probe_read_kernel,
        generated::{self as raw, bpf_jiffies64, bpf_skb_load_bytes},
    },
    programs::TcContext,
};
use core::ffi::c_void;
use inspector_common::{
    Direction, FlowKey, FlowKey4, FlowStats, PacketEvent, Stat,
    config::{FLAG_EVENTS, FLAG_FAULT_VERIFIER, FLAG_HOPTIME, FLAG_NETNS, FLAG_PCAP, FLAG_WHOLE},
    flow::{
        HOOK_RECEIVE, HOOK_START_XMIT, IFNS_SLOTS, SNAP_LEN, SNAP_MAX, SNAP_OFFSET, WholeEvent,
    },
    hop,
    parse::{self, ETH_P_IP, FAST_LEN, FastV4, Parsed, status},
};

use crate::{
    config::conf,
    fcache::{add_packet, count4},
    hoptime::{NO_SHIFT, hop_time},
    maps::{EVENTS, FLOWS, FLOWS4, IFNS, WHOLE, bump, bump_get, precise_now},
    pcap::{Tag, copy_frame},
    skb::Skb,
};

#[inline(always)]
pub(crate) fn observe(ctx: &TcContext, dir: Direction) -> i32 {
    if conf!(flags) & FLAG_FAULT_VERIFIER != 0 {
        // Deliberately invalid (reads far past the end of __sk_buff) so the verifier rejects
        // the program; only ever switched on by the test of verifier-error reporting.
        // SAFETY: never executed: the verifier refuses to load a program containing it.
        let bad = unsafe { core::ptr::read_volatile(ctx.skb.skb.cast::<u8>().add(4000)) };
        if bad == 0 {
            return TC_ACT_UNSPEC;
        }
    }
    // SAFETY: reading fields of the program's own __sk_buff.
    let (ifindex, vlan_present, vlan_tci, len, mark) = unsafe {
        let skb = &*ctx.skb.skb;
        (
            skb.ifindex,
            skb.vlan_present,
            skb.vlan_tci,
            skb.len,
            skb.mark,
        )
    };
    if conf!(flags) & FLAG_PCAP != 0 && !crate::pcap::matches_tc(ctx, len, tc_tag(ctx)) {
        return TC_ACT_UNSPEC;
    }
    // A tag the driver or the stack moved into the skb metadata is not in the frame bytes.
    let meta_vlan = if vlan_present == 0 {
        0
    } else {
        (vlan_tci & 0x0fff) as u16
    };
    let (data, data_end) = (ctx.data(), ctx.data_end());
    // The common case, read in place after one bounds check (see parse::fast_v4).
    if data + FAST_LEN <= data_end
        && let Some(f) = parse::fast_v4(&Linear(data), data_end - data)
    {
        let (netns, hop_shift, _) = netns_of(ctx, ifindex);
        let hook = Hook {
            netns,
            ifindex,
            vlan: meta_vlan,
            direction: dir as u8,
        };
        count_fast(&f, &hook, len, false);
        if conf!(flags) & FLAG_HOPTIME != 0 && wanted_fast(&f, hook.netns, hook.ifindex) {
            hop_time(
                hop::fingerprint(&Linear(data), f.proto),
                &f,
                hook.netns,
                hook.ifindex,
                hook.direction,
                hop_shift,
            );
        }
        if conf!(flags) & FLAG_EVENTS != 0 {
            events(ctx, &f.to_parsed(), &hook, len, mark);
        }
        return TC_ACT_UNSPEC;
    }
    let p = parse::parse_general(&Skb::new(ctx, data, data_end));
    let hook = Hook {
        netns: netns_of(ctx, ifindex).0,
        ifindex,
        vlan: if p.vlan == 0 { meta_vlan } else { p.vlan },
        direction: dir as u8,
    };
    count_status(p.status);
    count_flow(&p, &hook, len);
    if conf!(flags) & FLAG_EVENTS != 0 {
        events(ctx, &p, &hook, len, mark);
    }
    TC_ACT_UNSPEC
}

/// Counts a packet the fast path parsed: into the LRU table (tc), or `cached` through the
/// per-CPU flow cache (`fcache`), the global hooks' way. (The tc programs' stack, 504 of
/// 512 bytes with both parsers inlined, has no room for the cache.) `cached` is a constant
/// at each call: the other branch is not compiled in.
#[inline(always)]
pub(crate) fn count_fast(f: &FastV4, hook: &Hook, len: u32, cached: bool) {
    count_status(f.status);
    let key = key4(f.src, f.dst, f.sport, f.dport, f.proto, hook);
    if cached {
        count4(&key, f.tcp_flags, f.status, len);
    } else {
        update(&FLOWS4, &key, f.tcp_flags, f.status, len);
    }
}

/// The load-time filter for the fast path (`wanted`'s checks on its fields).
#[inline(always)]
pub(crate) fn wanted_fast(f: &FastV4, netns: u32, ifindex: u32) -> bool {
    passes(netns, ifindex, f.proto, f.sport, f.dport, || {
        let cfg = crate::config::get();
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src[..4].copy_from_slice(&f.src);
        dst[..4].copy_from_slice(&f.dst);
        cfg.host_matches(4, &src) || cfg.host_matches(4, &dst)
    })
}

/// The first `FAST_LEN` bytes of the linear packet data, after the caller's bounds check.
struct Linear(usize);

impl parse::Head for Linear {
    #[inline(always)]
    fn w(&self, off: usize) -> u16 {
        // SAFETY: the caller checked data + FAST_LEN <= data_end, and off + 2 <= FAST_LEN.
        u16::from_be(unsafe { core::ptr::read_unaligned((self.0 + off) as *const u16) })
    }

    #[inline(always)]
    fn a4(&self, off: usize) -> [u8; 4] {
        // SAFETY: as above, off + 4 <= FAST_LEN.
        unsafe { core::ptr::read_unaligned((self.0 + off) as *const [u8; 4]) }
    }
}

/// Per-packet event, if the load-time filter wants it.
#[inline(always)]
fn events(ctx: &TcContext, p: &Parsed, hook: &Hook, len: u32, mark: u32) {
    let key = full_key(p, hook);
    if wanted(&key, p) {
        // SAFETY: plain helper call.
        let now = unsafe { bpf_ktime_get_ns() };
        emit(&key, p, len, len, mark, now, tc_tag(ctx), |off, to, n| {
            // SAFETY: `to` and `n` stay inside the event's snap buffer (`copy_frame`).
            unsafe { bpf_skb_load_bytes(ctx.skb.skb.cast::<c_void>(), off, to, n) == 0 }
        });
    }
}

/// The VLAN tag a tc packet carries out of band.
#[inline(always)]
pub(crate) fn tc_tag(ctx: &TcContext) -> Tag {
    // SAFETY: reading fields of the program's own __sk_buff.
    let skb = unsafe { &*ctx.skb.skb };
    if skb.vlan_present == 0 {
        0
    } else {
        skb.vlan_proto & 0xffff | (skb.vlan_tci & 0xffff) << 16
    }
}

/// Per-packet event from a hook that has the frame in kernel memory (the global hooks):
/// `frame` is where the frame starts, `linear` how many of its bytes are there.
#[inline(always)]
pub(crate) fn events_kernel(
    p: &Parsed,
    hook: &Hook,
    len: u32,
    mark: u32,
    frame: u64,
    linear: u32,
    tag: Tag,
) {
    let mut key = full_key(p, hook);
    // Named for where they are seen: the stack's receive and transmit tracepoints.
    key.hook = if hook.direction == Direction::Ingress as u8 {
        HOOK_RECEIVE
    } else {
        HOOK_START_XMIT
    };
    if wanted(&key, p) {
        // SAFETY: plain helper call.
        let now = unsafe { bpf_ktime_get_ns() };
        let avail = if linear < len { linear } else { len };
        emit(&key, p, len, avail, mark, now, tag, |off, to, n| {
            // SAFETY: bpf_probe_read_kernel never faults; `to` and `n` stay inside the snap
            // buffer (`copy_frame`).
            unsafe {
                raw::bpf_probe_read_kernel(to, n, (frame + u64::from(off)) as *const c_void) == 0
            }
        });
    }
}

#[inline(always)]
pub(crate) fn key4(
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    proto: u8,
    h: &Hook,
) -> FlowKey4 {
    FlowKey4 {
        src,
        dst,
        netns: h.netns,
        ifindex: h.ifindex,
        sport,
        dport,
        vlan: h.vlan,
        proto,
        direction: h.direction,
    }
}

/// Where a packet was seen.
pub(crate) struct Hook {
    pub(crate) netns: u32,
    pub(crate) ifindex: u32,
    pub(crate) vlan: u16,
    pub(crate) direction: u8,
}

/// The full flow key. Built field by field: zero-initialising the struct first would make
/// LLVM call a (slow, out-of-line) memset on every packet.
#[inline(always)]
fn full_key(p: &Parsed, h: &Hook) -> FlowKey {
    FlowKey {
        src: p.src,
        dst: p.dst,
        netns: h.netns,
        ifindex: h.ifindex,
        sport: p.sport,
        dport: p.dport,
        ethertype: p.ethertype,
        vlan: h.vlan,
        proto: p.proto,
        direction: h.direction,
        hook: 0,
        _pad: 0,
    }
}

/// Inode of the namespace of the device the packet is on: `skb->dev->nd_net.net->ns.inum`,
/// with offsets from the kernel's BTF (see userspace `probe::btf`). `bpf_get_netns_cookie`
/// cannot do this in tc: it reports the namespace of the packet's socket, or the host's.
/// Also the auto sampling shift of per-hop timing, from the same entry (`NO_SHIFT` if the
/// interface has none), and whether the namespace came from the device (the entry did not
/// say: the ifindex is attached in several namespaces, or not known yet).
#[inline(always)]
pub(crate) fn netns_of(ctx: &TcContext, ifindex: u32) -> (u32, u32, bool) {
    if conf!(flags) & FLAG_NETNS == 0 {
        return (0, NO_SHIFT, false);
    }
    let mut shift = NO_SHIFT;
    if ifindex < IFNS_SLOTS
        && let Some(info) = IFNS.get(ifindex)
    {
        if info.netns != 0 {
            return (info.netns, info.hop_shift, false);
        }
        shift = info.hop_shift;
    }
    (netns_from_device(ctx), shift, true)
}

#[inline(always)]
fn netns_from_device(ctx: &TcContext) -> u32 {
    let skb = ctx.skb.skb.cast::<u8>();
    let (off_dev, off_net, off_inum) =
        (conf!(off_skb_dev), conf!(off_dev_net), conf!(off_net_inum));
    // SAFETY: bpf_probe_read_kernel never faults; a bad pointer just yields an error.
    unsafe {
        let Ok(dev) = bpf_probe_read_kernel(skb.add(off_dev as usize) as u64 as *const u64) else {
            return 0;
        };
        if dev == 0 {
            return 0;
        }
        let Ok(net) = bpf_probe_read_kernel((dev + u64::from(off_net)) as *const u64) else {
            return 0;
        };
        if net == 0 {
            return 0;
        }
        bpf_probe_read_kernel((net + u64::from(off_inum)) as *const u32).unwrap_or(0)
    }
}

#[inline(always)]
pub(crate) fn count_status(st: u8) {
    if st == 0 {
        return;
    }
    if st & status::TRUNCATED != 0 {
        bump(Stat::Truncated);
    }
    if st & status::MALFORMED != 0 {
        bump(Stat::Malformed);
    }
    if st & status::FRAGMENT != 0 {
        bump(Stat::Fragment);
    }
    if st & status::NON_IP != 0 {
        bump(Stat::NonIp);
    }
    if st & status::EXT_LIMIT != 0 {
        bump(Stat::ExtLimit);
    }
}

/// Updates the flow's counters: IPv4 flows under the compact key, the rest under the full
/// key. Last-seen is in jiffies (a few ms of resolution for a plain load); `first_ns`, which
/// orders hops along a path, is precise.
#[inline(always)]
pub(crate) fn count_flow(p: &Parsed, h: &Hook, len: u32) {
    if p.ethertype == ETH_P_IP {
        let src = [p.src[0], p.src[1], p.src[2], p.src[3]];
        let dst = [p.dst[0], p.dst[1], p.dst[2], p.dst[3]];
        update(
            &FLOWS4,
            &key4(src, dst, p.sport, p.dport, p.proto, h),
            p.tcp_flags,
            p.status,
            len,
        );
    } else {
        update(&FLOWS, &full_key(p, h), p.tcp_flags, p.status, len);
    }
}

#[inline(always)]
pub(crate) fn update<K>(
    map: &LruPerCpuHashMap<K, FlowStats>,
    key: &K,
    tcp_flags: u8,
    status: u8,
    len: u32,
) {
    if let Some(v) = map.get_ptr_mut(key) {
        // SAFETY: plain helper call.
        let now = unsafe { bpf_jiffies64() };
        // SAFETY: this CPU's slot of a per-CPU value; tc runs with BH disabled, so no other
        // writer can interleave on this CPU, and other CPUs have slots of their own.
        unsafe {
            if (*v).packets == 0 {
                // First packet of this flow on this CPU (another CPU created the entry).
                (*v).first_ns = precise_now();
            }
            add_packet(v, len, now, tcp_flags, status);
        }
        return;
    }
    let now = precise_now();
    // SAFETY: plain helper call.
    let jiffies = unsafe { bpf_jiffies64() };
    let v = FlowStats {
        packets: 1,
        bytes: u64::from(len),
        first_ns: now,
        last_jiffies: jiffies,
        tcp_flags,
        status,
        _pad16: 0,
        _pad32: 0,
    };
    // BPF_ANY: if another CPU created the entry meanwhile, this only sets this CPU's slot
    // (and both count it created: a second insert to tell would not fit the stack).
    if map.insert(key, v, u64::from(BPF_ANY)).is_ok() {
        bump(Stat::FlowsCreated);
    } else {
        bump(Stat::FlowUpdateFailed);
    }
}

/// The load-time event filter (zero fields match anything), then the workload selection.
#[inline(always)]
pub(crate) fn wanted(key: &FlowKey, p: &Parsed) -> bool {
    wanted_header(key, p) && (conf!(wsel) == 0 || crate::wsel::selected(key))
}

#[inline(always)]
fn wanted_header(key: &FlowKey, p: &Parsed) -> bool {
    passes(
        key.netns,
        key.ifindex,
        key.proto,
        key.sport,
        key.dport,
        || {
            let cfg = crate::config::get();
            let fam = p.ip_family();
            cfg.host_matches(fam, &key.src) || cfg.host_matches(fam, &key.dst)
        },
    )
}

/// The load-time filter's checks (constants to the verifier: the unset ones are pruned);
/// `host` is asked only when an address filter is set.
#[inline(always)]
fn passes(
    netns: u32,
    ifindex: u32,
    proto: u8,
    sport: u16,
    dport: u16,
    host: impl FnOnce() -> bool,
) -> bool {
    let want_ns = conf!(netns);
    if want_ns != 0 && want_ns != netns {
        return false;
    }
    let want_if = conf!(ifindex);
    if want_if != 0 && want_if != ifindex {
        return false;
    }
    let want_proto = conf!(proto);
    if want_proto != 0 && want_proto != proto {
        return false;
    }
    let want_port = conf!(port);
    if want_port != 0 && want_port != sport && want_port != dport {
        return false;
    }
    conf!(host_family) == 0 || host()
}

/// `bpf_ringbuf_submit` flags (uapi `linux/bpf.h`).
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;

/// Copies a key word by word with volatile stores: a plain copy lets LLVM see the zero
/// tails of IPv4 addresses and write them with a `memset` call, a BPF-to-BPF call that
/// Linux 6.1's verifier counts 32 bytes of stack for (over the limit with this program's).
#[inline(always)]
fn copy_key(key: &FlowKey, to: *mut FlowKey) {
    const WORDS: usize = core::mem::size_of::<FlowKey>() / 4;
    let from = core::ptr::from_ref(key).cast::<u32>();
    let to = to.cast::<u32>();
    let mut i = 0;
    while i < WORDS {
        // SAFETY: both point at a whole FlowKey (4-aligned, a multiple of 4 bytes long).
        unsafe { core::ptr::write_volatile(to.add(i), core::ptr::read(from.add(i))) };
        i += 1;
    }
}

/// Writes one event: `avail` of the packet's bytes can be read, by `load(offset, to, n)`;
/// a tag held out of band goes with it (userspace puts it back in the bytes).
#[inline(always)]
#[expect(
    clippy::too_many_arguments,
    reason = "one call per hook kind, all inlined"
)]
fn emit(
    key: &FlowKey,
    p: &Parsed,
    len: u32,
    avail: u32,
    mark: u32,
    now: u64,
    tag: Tag,
    load: impl Fn(u32, *mut c_void, u32) -> bool,
) {
    if conf!(flags) & FLAG_WHOLE != 0 {
        emit_whole(key, p, len, avail, mark, now, tag, load);
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<PacketEvent>(0) else {
        bump(Stat::EventsLost);
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at a reserved, exclusively owned ring-buffer slot of the right size.
    unsafe {
        fill_head(ev, key, p, len, mark, now, tag);
        let to = (&raw mut (*ev).snap).cast::<u8>();
        (*ev).snap_len = copy_frame::<{ SNAP_LEN as u32 }>(to, avail, 0, load) as u16;
    }
    submit(entry);
}

/// The fields of an event before its bytes.
///
/// # Safety
/// `ev` points at a whole, exclusively owned `PacketEvent`.
#[inline(always)]
unsafe fn fill_head(
    ev: *mut PacketEvent,
    key: &FlowKey,
    p: &Parsed,
    len: u32,
    mark: u32,
    now: u64,
    tag: Tag,
) {
    // SAFETY: the caller's.
    unsafe {
        (*ev).ts_ns = now;
        copy_key(key, &raw mut (*ev).key);
        (*ev).len = len;
        (*ev).mark = mark;
        (*ev).tcp_flags = p.tcp_flags;
        (*ev).status = p.status;
        (*ev).vlan_tpid = tag as u16;
        (*ev).vlan_tci = (tag >> 16) as u16;
    }
}

/// A whole-packet event (`FLAG_WHOLE`): up to `snaplen` bytes, built in this CPU's
/// `inspector_whole` buffer and copied to the ring at its length (`bpf_ringbuf_output`:
/// `reserve` takes only constant sizes). A tag held out of band goes with it, as with
/// `emit` (userspace puts it back in the bytes).
#[inline(always)]
#[expect(
    clippy::too_many_arguments,
    reason = "one call per hook kind, all inlined"
)]
fn emit_whole(
    key: &FlowKey,
    p: &Parsed,
    len: u32,
    avail: u32,
    mark: u32,
    now: u64,
    tag: Tag,
    load: impl Fn(u32, *mut c_void, u32) -> bool,
) {
    let Some(w) = WHOLE.get_ptr_mut(0) else {
        bump(Stat::EventsLost);
        return;
    };
    let ev = w.cast::<PacketEvent>();
    let cap = conf!(snaplen);
    let avail = if avail > cap { cap } else { avail };
    // SAFETY: `w` is this CPU's buffer (BH off: no other user on this CPU); `snap` goes on
    // for SNAP_MAX bytes in it (`WholeEvent`).
    let n = unsafe {
        fill_head(ev, key, p, len, mark, now, tag);
        let to = (&raw mut (*ev).snap).cast::<u8>();
        let n = copy_frame::<{ SNAP_MAX as u32 }>(to, avail, 0, load);
        (*ev).snap_len = n as u16;
        n
    };
    let size = SNAP_OFFSET + (n as usize & (SNAP_MAX * 2 - 1));
    let size = if size > size_of::<WholeEvent>() {
        size_of::<WholeEvent>()
    } else {
        size
    };
    // SAFETY: `size` bytes of this CPU's buffer, all written above.
    let bytes = unsafe { core::slice::from_raw_parts(w.cast::<u8>(), size) };
    if EVENTS.output::<[u8]>(bytes, wake_flags()).is_err() {
        bump(Stat::EventsLost);
    }
}

/// Submits an event. Waking the consumer (`irq_work`) costs microseconds in a VM, and even
/// asking the ring how full it is costs ~40 ns (its positions are on the consumer's cache
/// lines): wake it once every `ring_wake_events` events per CPU; it also drains on a timer.
#[inline(always)]
pub(crate) fn submit(entry: RingBufEntry<PacketEvent>) {
    entry.submit(wake_flags());
}

/// Counts an event sent, and says whether this one wakes the consumer.
#[inline(always)]
fn wake_flags() -> u64 {
    let sent = bump_get(Stat::EventsSent);
    let every = u64::from(conf!(ring_wake_events)).max(1);
    if sent.is_multiple_of(every) {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}
