//! Kernel-side debug logging through aya-log, for `--kernel-log LEVEL`: parse anomalies
//! (debug), namespace decisions for an interface (trace), and per-hop timing's sampling
//! changes (info). The level is `AYA_LOG_LEVEL`, a load-time constant in `.rodata`: with
//! logging off (the default) every statement below is on a branch the verifier knows is
//! never taken, and removes; the programs then run exactly as without logging.
use aya_ebpf::EbpfContext;
use aya_log_ebpf::macro_support::{Level, level_enabled};
use inspector_common::parse::status;

use crate::maps::LOG_SHIFT;

/// A packet the parser flagged (cut short, malformed, too many headers).
#[inline(always)]
pub(crate) fn anomaly<C: EbpfContext>(ctx: &C, ifindex: u32, egress: bool, st: u8) {
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
pub(crate) fn netns_from_device<C: EbpfContext>(ctx: &C, ifindex: u32, netns: u32) {
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
pub(crate) fn sampling<C: EbpfContext>(ctx: &C, shift: u32) {
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
