//! tc/TCX ingress hook: every packet arriving on an attached interface.
use aya_ebpf::{macros::classifier, programs::TcContext};
use inspector_common::Direction;

#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro passes the context by value"
)]
pub fn insp_tc_ingress(ctx: TcContext) -> i32 {
    crate::observe::observe(&ctx, Direction::Ingress)
}
