//! Clocks: the monotonic clock in the unit of `bpf_ktime_get_ns`, a thread's CPU time, and
//! the offset that turns a monotonic stamp into wall-clock (Unix) time.
use nix::time::{ClockId, clock_gettime};

fn ns(id: ClockId) -> u64 {
    clock_gettime(id).map_or(0, |t| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000_000
            + u64::try_from(t.tv_nsec()).unwrap_or(0)
    })
}

/// `CLOCK_MONOTONIC` now, in ns: the clock the kernel programs stamp with.
#[must_use]
pub fn mono_now_ns() -> u64 {
    ns(ClockId::CLOCK_MONOTONIC)
}

/// The CPU time the calling thread has used, in ns.
#[must_use]
pub fn thread_cpu_ns() -> u64 {
    ns(ClockId::CLOCK_THREAD_CPUTIME_ID)
}

/// What to add to a monotonic stamp to get Unix time in ns (read once per run: the two
/// clocks drift apart only by NTP slew).
#[must_use]
pub fn mono_to_unix_offset() -> i128 {
    let mono = mono_now_ns();
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    unix.as_nanos() as i128 - i128::from(mono)
}

/// The kernel's clock tick rate for user-visible times (`/proc/*/stat` fields).
#[must_use]
pub fn clock_ticks_per_sec() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|v| *v > 0)
        .unwrap_or(100)
}

/// Turns the kernel's monotonic stamps into Unix time (ns), with the offset read once.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    offset: i128,
}

impl WallClock {
    /// The offset as it is now.
    #[must_use]
    pub fn now() -> Self {
        Self {
            offset: mono_to_unix_offset(),
        }
    }

    /// A fixed offset (tests, replays).
    #[must_use]
    pub const fn with_offset(offset: i128) -> Self {
        Self { offset }
    }

    /// Unix time in ns of a monotonic stamp (0 stays 0: "never").
    #[must_use]
    pub fn unix_ns(&self, mono_ns: u64) -> u64 {
        if mono_ns == 0 {
            return 0;
        }
        u64::try_from(i128::from(mono_ns) + self.offset).unwrap_or(0)
    }
}
