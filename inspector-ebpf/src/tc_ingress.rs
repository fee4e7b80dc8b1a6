//! tc/TCX ingress hook: every packet arriving on an attached interface.
use aya_ebpf::{macros::classifier, programs::TcContext};
use inspector_common::Direction;

#[classifier]
pub fn insp_tc_ingress(ctx: TcContext) -> i32 {
    crate::observe::observe(&ctx, Direction::Ingress)
}
