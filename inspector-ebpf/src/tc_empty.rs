//! A tc program that does nothing: `bench overhead` attaches it in place of the observing
//! programs to measure, in the same run, what a tc program costs before it does any work
//! (the baseline of the per-hook figure).
use aya_ebpf::{bindings::TC_ACT_UNSPEC, macros::classifier, programs::TcContext};

#[classifier]
pub fn insp_tc_empty(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}
