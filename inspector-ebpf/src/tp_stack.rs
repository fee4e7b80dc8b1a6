//! `tp_btf` on the stack's own packet tracepoints, for `trace --hops` (and per-hop timing
//! with `flows --latency --stack`): `net_dev_queue` (a packet
//! about to enter a device's qdisc, after tc egress), `net_dev_start_xmit` (out of the qdisc,
//! handed to the driver) and `netif_receive_skb` (into the stack, before tc ingress). Each
//! gets the `sk_buff` pointer; the packet, its device and namespace are read through it
//! with offsets from the kernel's BTF. They fire for every device on the node: only devices
//! the tc programs are attached to (`inspector_atch`) produce an event, which carries the
//! packet's first bytes so userspace stitches it to the tc events of the same packet by
//! fingerprint.
use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, generated::bpf_probe_read_kernel as probe_read},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use inspector_common::{
    Direction, FlowKey, PacketEvent, Stat,
    config::{FLAG_EVENTS, FLAG_HOPTIME},
    flow::{HOOK_DEV_QUEUE, HOOK_RECEIVE, HOOK_START_XMIT, IFNS_SLOTS, SNAP_LEN, hook_code},
    hop,
    parse::{self, FAST_LEN},
};

use crate::{
    config::conf,
    hoptime::{NO_SHIFT, hop_time},
    kmem::{KernelPacket, read},
    maps::{ATTACHED, EVENTS, IFNS, bump},
    observe::{submit, wanted, wanted_fast},
};

#[btf_tracepoint(function = "net_dev_queue")]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro passes the context by value"
)]
pub fn insp_dev_queue(ctx: BtfTracePointContext) -> i32 {
    let _ = stack_event(&ctx, HOOK_DEV_QUEUE, Direction::Egress);
    0
}

#[btf_tracepoint(function = "net_dev_start_xmit")]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro passes the context by value"
)]
pub fn insp_start_xmit(ctx: BtfTracePointContext) -> i32 {
    let _ = stack_event(&ctx, HOOK_START_XMIT, Direction::Egress);
    0
}

#[btf_tracepoint(function = "netif_receive_skb")]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro passes the context by value"
)]
pub fn insp_receive(ctx: BtfTracePointContext) -> i32 {
    let _ = stack_event(&ctx, HOOK_RECEIVE, Direction::Ingress);
    0
}

/// `mac_header`/`network_header` are `u16` offsets from `head`; all ones = unset.
pub(crate) const UNSET: u16 = u16::MAX;
/// An Ethernet header's length.
pub(crate) const ETH_HLEN: u16 = 14;

#[inline(always)]
fn stack_event(ctx: &BtfTracePointContext, hook: u8, dir: Direction) -> Option<()> {
    // The first argument of all three is the `struct sk_buff *`.
    let skb: u64 = ctx.arg(0);
    let dev: u64 = read(skb + u64::from(conf!(off_skb_dev)))?;
    let ifindex: u32 = read(dev + u64::from(conf!(off_dev_ifindex)))?;
    let net: u64 = read(dev + u64::from(conf!(off_dev_net)))?;
    let netns: u32 = read(net + u64::from(conf!(off_net_inum)))?;
    let here = u64::from(netns) << 32 | u64::from(ifindex);
    // SAFETY: a plain lookup; the value is not kept.
    if unsafe { ATTACHED.get(here) }.is_none() {
        crate::klog::not_attached(ctx, ifindex, netns);
        return None;
    }
    let head: u64 = read(skb + u64::from(conf!(off_skb_head)))?;
    let nh: u16 = read(skb + u64::from(conf!(off_skb_nh)))?;
    let mac: u16 = read(skb + u64::from(conf!(off_skb_mac)))?;
    let tail: u32 = read(skb + u64::from(conf!(off_skb_tail)))?;
    let len: u32 = read(skb + u64::from(conf!(off_skb_len))).unwrap_or(0);
    let proto = u16::from_be(read::<u16>(skb + u64::from(conf!(off_skb_proto))).unwrap_or(0));
    if nh == UNSET || u32::from(nh) >= tail {
        return None;
    }
    // The snapshot starts at an Ethernet header, as tc's do: the frame's own when the MAC
    // header sits right before the network header, else a blank one carrying the protocol.
    let with_mac = mac != UNSET && mac < nh && nh - mac == ETH_HLEN;
    let code = hook_code(dir as u8, hook);
    if conf!(flags) & FLAG_HOPTIME != 0 && with_mac {
        hop_time_here(
            head + u64::from(mac),
            tail - u32::from(mac),
            netns,
            ifindex,
            code,
        );
    }
    if conf!(flags) & FLAG_EVENTS == 0 {
        return Some(());
    }
    let p = parse::parse_l3(
        &KernelPacket {
            base: head + u64::from(nh),
            len: tail - u32::from(nh),
        },
        proto,
    );
    let key = FlowKey {
        src: p.src,
        dst: p.dst,
        netns,
        ifindex,
        sport: p.sport,
        dport: p.dport,
        ethertype: proto,
        vlan: 0,
        proto: p.proto,
        direction: dir as u8,
        hook,
        _pad: 0,
    };
    if !wanted(&key, &p) {
        return None;
    }
    let Some(mut entry) = EVENTS.reserve::<PacketEvent>(0) else {
        bump(Stat::EventsLost);
        return None;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at a reserved, exclusively owned ring-buffer slot of the right size;
    // bpf_probe_read_kernel never faults (bytes past `tail` are not counted in `snap_len`).
    unsafe {
        (*ev).ts_ns = bpf_ktime_get_ns();
        (*ev).key = key;
        (*ev).len = len;
        (*ev).mark = 0;
        (*ev).tcp_flags = p.tcp_flags;
        (*ev).status = p.status;
        let snap = (&raw mut (*ev).snap).cast::<u8>();
        let (from, dst, size) = if with_mac {
            (mac, snap, SNAP_LEN as u32)
        } else {
            // A blank Ethernet header: zero addresses, the protocol as EtherType.
            snap.cast::<[u8; 12]>().write_unaligned([0; 12]);
            snap.add(12)
                .cast::<[u8; 2]>()
                .write_unaligned(proto.to_be_bytes());
            (
                nh,
                snap.add(usize::from(ETH_HLEN)),
                SNAP_LEN as u32 - u32::from(ETH_HLEN),
            )
        };
        let ok = probe_read(
            dst.cast::<c_void>(),
            size,
            (head + u64::from(from)) as *const c_void,
        ) == 0;
        // Bytes past `tail` were read but are not the packet's.
        let avail = (tail - u32::from(from)).min(size) + (SNAP_LEN as u32 - size);
        (*ev).snap_len = if ok { avail as u16 } else { 0 };
    }
    submit(entry);
    Some(())
}

/// Per-hop timing at a stack hook (`flows --latency --stack`): the same fast path as tc's,
/// on the frame's first bytes read through the skb.
#[inline(always)]
fn hop_time_here(frame: u64, avail: u32, netns: u32, ifindex: u32, code: u8) {
    let Some(h) = read::<[u8; FAST_LEN]>(frame) else {
        return;
    };
    let Some(f) = parse::fast_v4(&h, avail as usize) else {
        return;
    };
    if !wanted_fast(&f, netns, ifindex) {
        return;
    }
    let auto_shift = if ifindex < IFNS_SLOTS {
        IFNS.get(ifindex).map_or(NO_SHIFT, |i| i.hop_shift)
    } else {
        NO_SHIFT
    };
    hop_time(
        hop::fingerprint(&h, f.proto),
        &f,
        netns,
        ifindex,
        code,
        auto_shift,
    );
}
