//! Kernel-side debug logging through aya-log, for `--kernel-log LEVEL`: parse anomalies
//! (debug), namespace decisions for an interface (trace), per-hop timing's sampling changes
//! (info), and stack hooks skipped for unattached devices (trace).
//!
//! The tc side is two programs of its own (`insp_log_ingress`/`insp_log_egress`), attached
//! right after the observing ones only when `--kernel-log` is given; they re-derive what the
//! observing programs decided from the same packet and maps, and say it. The observing
//! programs carry no logging: their frame (about 500 bytes) leaves no room under the
//! kernel's 512-byte stack for a call into a log statement, and so, with logging off, they
//! are the very programs that ran before logging existed.
//!
//! The level is `AYA_LOG_LEVEL`, a load-time constant in `.rodata`: statements above it are
//! on branches the verifier knows are never taken, and removes (with logging off, the stack
//! tracepoints' statement is gone that way).
use aya_ebpf::{EbpfContext, bindings::TC_ACT_UNSPEC, macros::classifier, programs::TcContext};
use aya_log_ebpf::macro_support::{Level, level_enabled};
use inspector_common::{
    Direction,
    config::{FLAG_HOPTIME, HOP_SHIFT_AUTO},
    parse::{self, status},
};

use crate::{config::conf, maps::LOG_SHIFT, skb::Skb};

#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro passes the context by value"
)]
pub fn insp_log_ingress(ctx: TcContext) -> i32 {
    tc(&ctx, Direction::Ingress);
    TC_ACT_UNSPEC
}

#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro passes the context by value"
)]
pub fn insp_log_egress(ctx: TcContext) -> i32 {
    tc(&ctx, Direction::Egress);
    TC_ACT_UNSPEC
}

/// What the observing tc program decided for this packet, said: where its namespace came
/// from, the sampling rate in force, and the parser's anomalies.
#[inline(always)]
fn tc(ctx: &TcContext, dir: Direction) {
    // SAFETY: reading a field of the program's own __sk_buff.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let (netns, auto_shift, from_device) = crate::observe::netns_of(ctx, ifindex);
    if from_device {
        netns_from_device(ctx, ifindex, netns);
    }
    if conf!(flags) & FLAG_HOPTIME != 0 && conf!(hop_sample_shift) == HOP_SHIFT_AUTO {
        sampling(ctx, crate::hoptime::sample_shift(auto_shift));
    }
    if level_enabled(Level::Debug) {
        let p = parse::parse_general(&Skb::new(ctx, ctx.data(), ctx.data_end()));
        anomaly(ctx, ifindex, dir == Direction::Egress, p.status);
    }
}

/// A packet the parser flagged (cut short, malformed, too many headers).
#[inline(always)]
fn anomaly<C: EbpfContext>(ctx: &C, ifindex: u32, egress: bool, st: u8) {
    let bad = status::TRUNCATED | status::MALFORMED | status::EXT_LIMIT | status::VLAN_LIMIT;
    if st & bad != 0 && level_enabled(Level::Debug) {
        say_anomaly(ctx, ifindex, egress, st);
    }
}

// The statements themselves are functions of their own (BPF-to-BPF calls): their record
// building takes stack the hot tc path has no room for, and a separate frame costs nothing
// on the path that does not log.
#[inline(never)]
fn say_anomaly<C: EbpfContext>(ctx: &C, ifindex: u32, egress: bool, st: u8) {
    aya_log_ebpf::debug!(
        ctx,
        "parse anomaly on ifindex {} ({}): status 0x{:x}",
        ifindex,
        if egress { "egress" } else { "ingress" },
        st
    );
}

/// The namespace of a packet's device was read from the device itself: the ifindex is
/// attached in several namespaces (or not known to userspace yet).
#[inline(always)]
fn netns_from_device<C: EbpfContext>(ctx: &C, ifindex: u32, netns: u32) {
    if level_enabled(Level::Trace) {
        say_netns(ctx, ifindex, netns);
    }
}

#[inline(never)]
fn say_netns<C: EbpfContext>(ctx: &C, ifindex: u32, netns: u32) {
    aya_log_ebpf::trace!(
        ctx,
        "ifindex {}: not one attached namespace, its device says namespace {}",
        ifindex,
        netns
    );
}

/// A stack tracepoint fired for a device the tc programs are not attached to: skipped.
#[inline(always)]
pub(crate) fn not_attached<C: EbpfContext>(ctx: &C, ifindex: u32, netns: u32) {
    if level_enabled(Level::Trace) {
        say_not_attached(ctx, ifindex, netns);
    }
}

#[inline(never)]
fn say_not_attached<C: EbpfContext>(ctx: &C, ifindex: u32, netns: u32) {
    aya_log_ebpf::trace!(
        ctx,
        "stack hook on ifindex {} in namespace {}: not attached, skipped",
        ifindex,
        netns
    );
}

/// Per-hop timing's sampling rate on this CPU changed (said once per change per CPU).
#[inline(always)]
fn sampling<C: EbpfContext>(ctx: &C, shift: u32) {
    if !level_enabled(Level::Info) {
        return;
    }
    let Some(last) = LOG_SHIFT.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot of a per-CPU array; plain data.
    let last = unsafe { &mut *last };
    // Stored as shift + 1, so the zeroed slot means "not said yet".
    if *last == shift + 1 {
        return;
    }
    *last = shift + 1;
    say_sampling(ctx, shift);
}

#[inline(never)]
fn say_sampling<C: EbpfContext>(ctx: &C, shift: u32) {
    aya_log_ebpf::info!(
        ctx,
        "per-hop timing on cpu {}: 1 packet in {} timed from now",
        ctx.cpu_id_or_zero(),
        1u32 << shift.min(31)
    );
}

/// The CPU a program runs on (for messages).
trait Cpu {
    fn cpu_id_or_zero(&self) -> u32;
}

impl<C: EbpfContext> Cpu for C {
    #[inline(always)]
    fn cpu_id_or_zero(&self) -> u32 {
        // SAFETY: plain helper call.
        unsafe { aya_ebpf::helpers::bpf_get_smp_processor_id() }
    }
}
