//! Global hooks (`--attach global`): flows counted (and, for `trace`, packets copied to the
//! ring) with the stack's own tracepoints instead of per-device tc programs. `tp_btf` on `netif_receive_skb` (a packet entering the stack,
//! before tc ingress) and `net_dev_start_xmit` (handed to the driver, after tc egress and the
//! qdisc), attached once for the whole node: they fire for every device, and a device is
//! counted when `inspector_gsel` (or, for one userspace has not listed yet, the load-time
//! `global_unknown` rule) selects it. A veth is counted from its first packet, with no
//! attach at all.
//!
//! The device, its namespace and the packet's offsets are plain loads through the `sk_buff`
//! the tracepoint hands over (the verifier checks each against the kernel's BTF: no helper
//! call); the packet's first bytes are one `bpf_probe_read_kernel`. Counting is the tc
//! programs' own (`observe::update`), under the same keys, so userspace cannot tell the
//! two apart except by position (see docs/architecture.md).
use aya_ebpf::{
    helpers::bpf_probe_read_kernel, macros::btf_tracepoint, programs::BtfTracePointContext,
};
use inspector_common::{
    Direction,
    config::{FLAG_EVENTS, FLAG_PCAP, NO_VLAN_PRESENT, UNKNOWN_COUNT, UNKNOWN_COUNT_LO},
    flow::IFNS_SLOTS,
    parse::{self, FAST_LEN},
};

use crate::{
    config::conf,
    kmem::{KernelPacket, field},
    maps::{GSEL, IFNS},
    observe::{Hook, count_fast, count_flow, count_status, events_kernel},
    tp_stack::{ETH_HLEN, UNSET},
};

#[btf_tracepoint(function = "netif_receive_skb")]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro passes the context by value"
)]
// Inlined into the program the macro wraps it in: left a BPF-to-BPF call (LLVM outlines a
// body this large), it would cost a frame of stack that Linux 6.1's verifier counts.
#[inline(always)]
pub fn insp_gl_receive(ctx: BtfTracePointContext) -> i32 {
    count(&ctx, Direction::Ingress);
    0
}

#[btf_tracepoint(function = "net_dev_start_xmit")]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro passes the context by value"
)]
// Inlined into the program the macro wraps it in: left a BPF-to-BPF call (LLVM outlines a
// body this large), it would cost a frame of stack that Linux 6.1's verifier counts.
#[inline(always)]
pub fn insp_gl_xmit(ctx: BtfTracePointContext) -> i32 {
    count(&ctx, Direction::Egress);
    0
}

/// Do-nothing programs on the same tracepoints: `bench overhead`'s baseline of what a global
/// hook costs before it does any work (as `insp_tc_empty` is for tc).
#[btf_tracepoint(function = "netif_receive_skb")]
pub fn insp_gl_empty_rx(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "net_dev_start_xmit")]
pub fn insp_gl_empty_tx(_ctx: BtfTracePointContext) -> i32 {
    0
}

/// The loopback device's ifindex, the same in every namespace.
const LOOPBACK_IFINDEX: u32 = 1;

#[inline(always)]
fn count(ctx: &BtfTracePointContext, dir: Direction) {
    // The first argument of both is the `struct sk_buff *`.
    let skb: *const u8 = ctx.arg(0);
    let dev: *const u8 = field(skb, conf!(off_skb_dev));
    if dev.is_null() {
        return;
    }
    let ifindex: u32 = field(dev, conf!(off_dev_ifindex));
    let net: *const u8 = field(dev, conf!(off_dev_net));
    if net.is_null() {
        return;
    }
    let netns: u32 = field(net, conf!(off_net_inum));
    if !selected(netns, ifindex) {
        return;
    }
    let head: u64 = field(skb, conf!(off_skb_head));
    let data: u64 = field(skb, conf!(off_skb_data));
    let mac: u16 = field(skb, conf!(off_skb_mac));
    let nh: u16 = field(skb, conf!(off_skb_nh));
    let tail: u32 = field(skb, conf!(off_skb_tail));
    let len: u32 = field(skb, conf!(off_skb_len));
    let hook = Hook {
        netns,
        ifindex,
        vlan: 0,
        direction: dir as u8,
    };
    // Where the network header starts: at `data` on receive (the stack has pulled the
    // Ethernet header and sets `network_header` only after this tracepoint), at
    // `network_header` on transmit (`data` is at the Ethernet header there).
    let at = data.wrapping_sub(head);
    let l3 = if dir as u8 == Direction::Ingress as u8 {
        at
    } else {
        u64::from(nh)
    };
    // An Ethernet header, or one with one or two VLAN tags (the stack moves the network
    // header past tags on transmit).
    let link = l3.wrapping_sub(u64::from(mac));
    let framed = mac != UNSET
        && (link == u64::from(ETH_HLEN)
            || link == u64::from(ETH_HLEN) + 4
            || link == u64::from(ETH_HLEN) + 8)
        && l3 <= u64::from(tail);
    if framed {
        let frame = head + u64::from(mac);
        let avail = tail - u32::from(mac);
        // The frame's length, as tc and the interface counters count it: on receive `len`
        // starts after the Ethernet header.
        let len = if at > u64::from(mac) {
            len + (at - u64::from(mac)) as u32
        } else {
            len
        };
        if conf!(flags) & FLAG_PCAP != 0
            && !crate::pcap::matches_kernel(frame, avail, len, vlan_tag(skb))
        {
            return;
        }
        // SAFETY: bpf_probe_read_kernel never faults; bytes past `tail` are not trusted
        // (`avail` bounds what the fast path may use).
        if let Ok(h) = unsafe { bpf_probe_read_kernel(frame as *const [u8; FAST_LEN]) }
            && let Some(f) = parse::fast_v4(&h, avail as usize)
        {
            count_fast(&f, &hook, len, true);
            if conf!(flags) & FLAG_EVENTS != 0 {
                events_kernel(
                    &f.to_parsed(),
                    &hook,
                    len,
                    field(skb, conf!(off_skb_mark)),
                    frame,
                    avail,
                    vlan_tag(skb),
                );
            }
            return;
        }
        let p = parse::parse(&KernelPacket {
            base: frame,
            len: avail,
        });
        count_status(p.status);
        count_flow(&p, &hook, len);
        if conf!(flags) & FLAG_EVENTS != 0 {
            events_kernel(
                &p,
                &hook,
                len,
                field(skb, conf!(off_skb_mark)),
                frame,
                avail,
                // Read again here: kept across the parser, it would not fit the stack.
                vlan_tag(skb),
            );
        }
        return;
    }
    // No Ethernet header (a tunnel, a raw IP device): the network layer alone. An
    // expression is compiled for Ethernet frames: such a packet never matches one.
    if l3 >= u64::from(tail)
        || (dir as u8 != Direction::Ingress as u8 && nh == UNSET)
        || conf!(flags) & FLAG_PCAP != 0
    {
        return;
    }
    let proto: u16 = u16::from_be(field(skb, conf!(off_skb_proto)));
    let p = parse::parse_l3(
        &KernelPacket {
            base: head + l3,
            len: tail - l3 as u32,
        },
        proto,
    );
    count_status(p.status);
    count_flow(&p, &hook, len);
    if conf!(flags) & FLAG_EVENTS != 0 {
        // No Ethernet header: the event's bytes start at the network header.
        let at = head + l3;
        events_kernel(
            &p,
            &hook,
            len,
            field(skb, conf!(off_skb_mark)),
            at,
            tail - l3 as u32,
            0,
        );
    }
}

/// The VLAN tag the skb holds out of band (TPID as stored, TCI), if any.
#[inline(always)]
fn vlan_tag(skb: *const u8) -> crate::pcap::Tag {
    let off = conf!(off_skb_vlan);
    let at = conf!(off_skb_vlan_present);
    let present = if at == NO_VLAN_PRESENT {
        field::<u32>(skb, off) != 0
    } else {
        field::<u8>(skb, at / 8) >> (at % 8) & 1 != 0
    };
    if present {
        u32::from(field::<u16>(skb, off)) | u32::from(field::<u16>(skb, off + 2)) << 16
    } else {
        0
    }
}

/// Whether the device is counted: its `inspector_ifns` entry names this namespace (the
/// common case: an inlined array lookup), else its `inspector_gsel` entry, else its
/// namespace's (`ifindex` 0), else the load-time rule for devices nobody listed yet.
#[inline(always)]
fn selected(netns: u32, ifindex: u32) -> bool {
    if ifindex < IFNS_SLOTS
        && let Some(info) = IFNS.get(ifindex)
        && info.netns == netns
        && netns != 0
    {
        return true;
    }
    let dev = u64::from(netns) << 32 | u64::from(ifindex);
    // SAFETY: plain lookups; the values are copied out at once.
    if let Some(v) = unsafe { GSEL.get(dev) } {
        return *v != 0;
    }
    if let Some(v) = unsafe { GSEL.get(u64::from(netns) << 32) } {
        return *v != 0 && ifindex != LOOPBACK_IFINDEX;
    }
    match conf!(global_unknown) {
        UNKNOWN_COUNT => ifindex != LOOPBACK_IFINDEX,
        UNKNOWN_COUNT_LO => true,
        _ => false,
    }
}
