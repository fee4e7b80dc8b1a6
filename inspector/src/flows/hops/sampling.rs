//! Per-hop timing's auto sampling: how many packets to time so timing stays cheap under
//! load and complete when traffic is light.

/// Per-hop timing's sampling in auto mode: at most this many timed hop transitions per
/// second on the node. A timed hop costs 120-300 ns here (more when the packet rate is low
/// and the tables have gone cold), so timing stays under ~0.15% of one CPU.
pub const TIMED_PER_SEC: f64 = 5_000.0;

/// The sampling shift (time 1 packet in 2^shift) for the next interval, given the current
/// one and the timed transitions per second seen under it: every packet while the traffic
/// is light, and no more than `budget` timed transitions per second when it is not. Goes up
/// at once; comes down one step at a time, only when the step would stay under half the
/// budget (so it does not flap).
#[must_use]
pub fn auto_shift(shift: u32, timed_per_sec: f64, budget: f64) -> u32 {
    let max = inspector_common::hop::HOP_MAX_SHIFT;
    let offered = timed_per_sec * f64::from(1u32 << shift.min(max));
    let mut want = 0;
    while want < max && offered / f64::from(1u32 << want) > budget {
        want += 1;
    }
    if want > shift {
        want
    } else if shift > 0 && offered / f64::from(1u32 << (shift - 1)) <= budget / 2.0 {
        shift - 1
    } else {
        shift.min(max)
    }
}
