//! Tracepoint `skb:kfree_skb`: every packet the kernel drops, with its drop reason. The packet
//! is read through the skb (offsets from BTF, fields of the record from its format file) so
//! drops are counted per flow, reason, namespace and device.
use aya_ebpf::{
    helpers::generated::bpf_jiffies64, macros::tracepoint, programs::TracePointContext,
};
use inspector_common::{DropKey, FlowStats, config::NO_DROP_REASON, parse};

use crate::{
    config::conf,
    kmem::{KernelPacket, read},
    maps::{DROPS, precise_now},
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
    let head: u64 = read(skb + u64::from(conf!(off_skb_head)))?;
    let nh: u16 = read(skb + u64::from(conf!(off_skb_nh)))?;
    let tail: u32 = read(skb + u64::from(conf!(off_skb_tail)))?;
    let len: u32 = read(skb + u64::from(conf!(off_skb_len))).unwrap_or(0);
    let proto = u16::from_be(read::<u16>(skb + u64::from(conf!(off_skb_proto))).unwrap_or(0));
    // network_header is unset (~0) until the stack has looked at L3.
    let p = if nh != u16::MAX && u32::from(nh) < tail {
        parse::parse_l3(
            &KernelPacket {
                base: head + u64::from(nh),
                len: tail - u32::from(nh),
            },
            proto,
        )
    } else {
        parse::Parsed {
            ethertype: proto,
            ..parse::Parsed::default()
        }
    };
    let off_location = conf!(off_tp_location) as usize;
    // SAFETY: offset from the tracepoint's format file; the helper bounds-checks.
    let location: u64 = unsafe { ctx.read_at(off_location) }.unwrap_or(0);
    let key = DropKey {
        location,
        src: p.src,
        dst: p.dst,
        netns,
        ifindex,
        reason,
        sport: p.sport,
        dport: p.dport,
        ethertype: proto,
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
            (*v).bytes += u64::from(len);
            (*v).last_jiffies = jiffies;
            if (*v).first_ns == 0 {
                (*v).first_ns = precise_now();
            }
        }
    } else {
        let now = precise_now();
        let v = FlowStats {
            packets: 1,
            bytes: u64::from(len),
            first_ns: now,
            last_jiffies: jiffies,
            tcp_flags: 0,
            status: p.status,
            _pad16: 0,
            _pad32: 0,
        };
        let _ = DROPS.insert(key, v, 0);
    }
    Some(())
}
