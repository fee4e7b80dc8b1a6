//! Tracepoint `skb:kfree_skb`: every packet the kernel drops, with its drop reason. The packet
//! is read through the skb (offsets from BTF, fields of the record from its format file) so
//! drops are counted per flow, reason, namespace and device. Two programs, one loaded:
//! `insp_kfree_btf` (`tp_btf`, plain loads) where the kernel's BTF has the tracepoint, else
//! `insp_kfree_skb` (the classic tracepoint, a `bpf_probe_read_kernel` per field).
use aya_ebpf::{
    helpers::{bpf_probe_read_kernel, generated::bpf_jiffies64},
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use inspector_common::{
    DropKey, FlowStats,
    config::{FLAG_PCAP, NO_DROP_REASON},
    parse::{self, FAST_LEN},
};

use crate::{
    config::conf,
    kmem::{KernelPacket, field, read},
    maps::{DROPS, precise_now},
    tp_stack::{ETH_HLEN, UNSET},
};

/// `SKB_NOT_DROPPED_YET` and `SKB_CONSUMED` are not drops.
const FIRST_DROP_REASON: u32 = 2;

#[tracepoint]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro passes the context by value"
)]
pub fn insp_kfree_skb(ctx: TracePointContext) -> u32 {
    let _ = try_kfree_skb(&ctx);
    0
}

fn try_kfree_skb(ctx: &TracePointContext) -> Option<()> {
    let (off_reason, off_skb) = (
        conf!(off_tp_reason) as usize,
        conf!(off_tp_skbaddr) as usize,
    );
    // Before Linux 5.17 the record has no reason: every kfree_skb is a drop, reason not
    // specified (a load-time constant: the verifier drops the other branch).
    let reason: u32 = if conf!(off_tp_reason) == NO_DROP_REASON {
        FIRST_DROP_REASON
    } else {
        // SAFETY: offsets come from the tracepoint's own format file; the helper
        // bounds-checks.
        unsafe { ctx.read_at(off_reason) }.ok()?
    };
    if reason < FIRST_DROP_REASON {
        return None;
    }
    // SAFETY: as above.
    let skb: u64 = unsafe { ctx.read_at(off_skb) }.ok()?;
    let dev: u64 = read(skb + u64::from(conf!(off_skb_dev))).unwrap_or(0);
    let (netns, ifindex) = if dev == 0 {
        (0, 0)
    } else {
        let net: u64 = read(dev + u64::from(conf!(off_dev_net))).unwrap_or(0);
        (
            read::<u32>(net + u64::from(conf!(off_net_inum))).unwrap_or(0),
            read::<u32>(dev + u64::from(conf!(off_dev_ifindex))).unwrap_or(0),
        )
    };
    let off_location = conf!(off_tp_location) as usize;
    // SAFETY: offset from the tracepoint's format file; the helper bounds-checks.
    let location: u64 = unsafe { ctx.read_at(off_location) }.unwrap_or(0);
    let s = SkbView {
        head: read(skb + u64::from(conf!(off_skb_head)))?,
        // Only the filter needs it (a load-time constant: no read otherwise).
        data: if conf!(flags) & FLAG_PCAP == 0 {
            0
        } else {
            read(skb + u64::from(conf!(off_skb_data))).unwrap_or(0)
        },
        nh: read(skb + u64::from(conf!(off_skb_nh)))?,
        mac: read(skb + u64::from(conf!(off_skb_mac)))?,
        tail: read(skb + u64::from(conf!(off_skb_tail)))?,
        len: read(skb + u64::from(conf!(off_skb_len))).unwrap_or(0),
        proto: u16::from_be(read::<u16>(skb + u64::from(conf!(off_skb_proto))).unwrap_or(0)),
    };
    record(reason, location, netns, ifindex, &s);
    Some(())
}

/// The same drops from `tp_btf/kfree_skb` where the kernel's BTF has it (Linux 5.5+ with
/// BTF): the skb's fields are plain loads the verifier checks against BTF, where the
/// classic tracepoint pays a `bpf_probe_read_kernel` for each.
#[btf_tracepoint(function = "kfree_skb")]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro passes the context by value"
)]
pub fn insp_kfree_btf(ctx: BtfTracePointContext) -> i32 {
    // Arguments: the skb, the caller's address, and (Linux 5.17+, as the record's field)
    // the reason.
    let reason: u32 = if conf!(off_tp_reason) == NO_DROP_REASON {
        FIRST_DROP_REASON
    } else {
        // The third argument exists where the record has a reason (5.17+); the branch is a
        // load-time constant, so the verifier never sees it elsewhere.
        ctx.arg(2)
    };
    if reason < FIRST_DROP_REASON {
        return 0;
    }
    let (skb, location): (*const u8, u64) = (ctx.arg(0), ctx.arg(1));
    let dev: *const u8 = field(skb, conf!(off_skb_dev));
    let (netns, ifindex) = if dev.is_null() {
        (0, 0)
    } else {
        let net: *const u8 = field(dev, conf!(off_dev_net));
        let netns = if net.is_null() {
            0
        } else {
            field(net, conf!(off_net_inum))
        };
        (netns, field(dev, conf!(off_dev_ifindex)))
    };
    let s = SkbView {
        head: field(skb, conf!(off_skb_head)),
        data: field(skb, conf!(off_skb_data)),
        nh: field(skb, conf!(off_skb_nh)),
        mac: field(skb, conf!(off_skb_mac)),
        tail: field(skb, conf!(off_skb_tail)),
        len: field(skb, conf!(off_skb_len)),
        proto: u16::from_be(field(skb, conf!(off_skb_proto))),
    };
    record(reason, location, netns, ifindex, &s);
    0
}

/// Whether the expression (`FLAG_PCAP`) matches the dropped packet: from its Ethernet header
/// (one or two VLAN tags before the network header allowed) where it has one, else from its
/// network header behind a made-up Ethernet header; never when neither is set.
#[inline(always)]
fn filtered(s: &SkbView) -> bool {
    if s.nh == UNSET || u32::from(s.nh) >= s.tail {
        return false;
    }
    let link = u32::from(s.nh).wrapping_sub(u32::from(s.mac));
    if s.mac != UNSET
        && (link == u32::from(ETH_HLEN)
            || link == u32::from(ETH_HLEN) + 4
            || link == u32::from(ETH_HLEN) + 8)
    {
        // `len` counts from `data`: the frame's length adds what lies before it.
        let at = s.data.wrapping_sub(s.head);
        let len = if at > u64::from(s.mac) && at - u64::from(s.mac) <= u64::from(link) {
            s.len + (at - u64::from(s.mac)) as u32
        } else {
            s.len
        };
        let avail = s.tail - u32::from(s.mac);
        return crate::pcap::matches_kernel(s.head + u64::from(s.mac), avail, len, 0);
    }
    crate::pcap::matches_l3(
        s.head + u64::from(s.nh),
        s.tail - u32::from(s.nh),
        s.len,
        s.proto,
    )
}

/// What a drop record needs of the skb.
struct SkbView {
    head: u64,
    data: u64,
    nh: u16,
    mac: u16,
    tail: u32,
    len: u32,
    proto: u16,
}

/// Parses the dropped packet and counts it under (flow, device, reason, location). An
/// untagged IPv4 frame with its Ethernet header in place takes the fast parser (one read of
/// its first 48 bytes); anything else the general one, from the network header.
#[inline(always)]
fn record(reason: u32, location: u64, netns: u32, ifindex: u32, s: &SkbView) {
    let framed = s.mac != UNSET
        && u32::from(s.mac) + u32::from(ETH_HLEN) == u32::from(s.nh)
        && u32::from(s.nh) < s.tail;
    if conf!(flags) & FLAG_PCAP != 0 && !filtered(s) {
        return;
    }
    let fast = if framed {
        // SAFETY: bpf_probe_read_kernel never faults; `avail` bounds what the parser uses.
        unsafe { bpf_probe_read_kernel((s.head + u64::from(s.mac)) as *const [u8; FAST_LEN]) }
            .ok()
            .and_then(|h| parse::fast_v4(&h, (s.tail - u32::from(s.mac)) as usize))
    } else {
        None
    };
    // network_header is unset (~0) until the stack has looked at L3.
    let p = if let Some(f) = fast {
        f.to_parsed()
    } else if s.nh != UNSET && u32::from(s.nh) < s.tail {
        parse::parse_l3(
            &KernelPacket {
                base: s.head + u64::from(s.nh),
                len: s.tail - u32::from(s.nh),
            },
            s.proto,
        )
    } else {
        parse::Parsed {
            ethertype: s.proto,
            ..parse::Parsed::default()
        }
    };
    let key = DropKey {
        location,
        src: p.src,
        dst: p.dst,
        netns,
        ifindex,
        reason,
        sport: p.sport,
        dport: p.dport,
        ethertype: s.proto,
        proto: p.proto,
        _pad: 0,
        _pad2: [0; 4],
    };
    // SAFETY: plain helper call.
    let jiffies = unsafe { bpf_jiffies64() };
    if let Some(v) = DROPS.get_ptr_mut(key) {
        // SAFETY: this CPU's slot of a per-CPU value.
        unsafe {
            (*v).packets += 1;
            (*v).bytes += u64::from(s.len);
            (*v).last_jiffies = jiffies;
            if (*v).first_ns == 0 {
                (*v).first_ns = precise_now();
            }
        }
    } else {
        let now = precise_now();
        let v = FlowStats {
            packets: 1,
            bytes: u64::from(s.len),
            first_ns: now,
            last_jiffies: jiffies,
            tcp_flags: 0,
            status: p.status,
            _pad16: 0,
            _pad32: 0,
        };
        let _ = DROPS.insert(key, v, 0);
    }
}
