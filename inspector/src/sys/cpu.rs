//! CPUs: how many, and pinning the calling thread to one.
use nix::{sched::CpuSet, unistd::Pid};

/// CPUs this process may run on.
#[must_use]
pub fn count() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Pins the calling thread to `cpu` (modulo the CPUs there are). Best effort: a refused
/// pin leaves the thread where the scheduler puts it.
pub fn pin(cpu: usize) {
    let mut set = CpuSet::new();
    if set.set(cpu % count()).is_ok() {
        let _ = nix::sched::sched_setaffinity(Pid::from_raw(0), &set);
    }
}
