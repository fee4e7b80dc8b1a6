//! Workload selection in the event filter: the bits userspace wrote for the packet's
//! namespace and addresses, judged by `inspector_common::wsel::pass` (the rule userspace
//! applies too). A namespace userspace has not placed yet passes: a pod created a moment
//! ago is traced from its first packet, and userspace decides once its runtime names it.
use inspector_common::{
    FlowKey,
    wsel::{self, WAITING},
};

use crate::{
    config::conf,
    maps::{WSEL_ADDR, WSEL_KEY, WSEL_NS},
};

#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "the keys are read where they are, in the map buffer: a copy would take stack"
)]
pub(crate) fn selected(key: &FlowKey) -> bool {
    // SAFETY: plain lookups; the values are copied out at once.
    let Some(ns) = (unsafe { WSEL_NS.get(key.netns) }).copied() else {
        return true;
    };
    let Some(buf) = WSEL_KEY.get_ptr_mut(0) else {
        return true;
    };
    // SAFETY: this CPU's buffer (BH off: no other user on this CPU), two 16-byte keys.
    let (src, dst) = unsafe {
        copy16(&key.src, &raw mut (*buf)[0]);
        copy16(&key.dst, &raw mut (*buf)[1]);
        (
            WSEL_ADDR.get(&(*buf)[0]).copied(),
            WSEL_ADDR.get(&(*buf)[1]).copied(),
        )
    };
    // An address nobody holds, while a new namespace waits for its owner: it may be the
    // new workload's.
    if (src.is_none() || dst.is_none()) && ns & WAITING != 0 {
        return true;
    }
    wsel::pass(conf!(wsel), ns, src.unwrap_or(0), dst.unwrap_or(0))
}

/// Copies an address word by word with volatile stores (LLVM would turn a plain copy of
/// an IPv4 address's zero tail into a `memset` call).
#[inline(always)]
fn copy16(from: &[u8; 16], to: *mut [u8; 16]) {
    let from = core::ptr::from_ref(from).cast::<[u8; 4]>();
    let to = to.cast::<[u8; 4]>();
    let mut i = 0;
    while i < 4 {
        // SAFETY: both hold 16 bytes; byte arrays need no alignment.
        unsafe { core::ptr::write_volatile(to.add(i), core::ptr::read(from.add(i))) };
        i += 1;
    }
}
