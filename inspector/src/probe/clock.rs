//! Turning the kernel's jiffies into nanoseconds. The programs stamp "last seen" with
//! `bpf_jiffies64` (a plain load; a nanosecond clock costs a seqcount loop per packet) and
//! record a (jiffies, ns) pair whenever they read the precise clock anyway. With the tick
//! length (from the kernel's `CONFIG_HZ`) that pair converts any jiffies value.
use std::io::Read as _;

use inspector_common::ClockSample;

/// Converts jiffies to `CLOCK_MONOTONIC` nanoseconds: `ns = jiffies * tick + offset`.
///
/// The kernel keeps `jiffies * tick` and monotonic time in lockstep, but on a tickless CPU
/// jiffies may lag until the next tick or interrupt, so a sample taken then has too large an
/// offset. The smallest offset ever seen is the truest; `observe` keeps it.
#[derive(Clone, Copy, Debug)]
pub struct JiffiesClock {
    pub tick_ns: u64,
    /// Smallest `ns - jiffies * tick` seen so far (None before the first sample).
    pub offset: Option<i128>,
}

impl JiffiesClock {
    #[must_use]
    pub const fn new(tick_ns: u64) -> Self {
        Self {
            tick_ns,
            offset: None,
        }
    }

    /// Takes a sample into account.
    pub fn observe(&mut self, s: ClockSample) {
        if s.ns == 0 {
            return;
        }
        let off = i128::from(s.ns) - i128::from(s.jiffies) * i128::from(self.tick_ns);
        self.offset = Some(self.offset.map_or(off, |o| o.min(off)));
    }

    #[must_use]
    pub fn to_ns(&self, jiffies: u64) -> u64 {
        match self.offset {
            Some(off) if jiffies != 0 => {
                u64::try_from((i128::from(jiffies) * i128::from(self.tick_ns) + off).max(0))
                    .unwrap_or(0)
            }
            _ => 0,
        }
    }
}

/// The kernel's `CONFIG_HZ`, from /boot/config-RELEASE or /proc/config.gz; 250 (the most
/// common value) if neither says. Only the resolution of "last seen" depends on it.
#[must_use]
pub fn kernel_hz() -> u64 {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut text =
        std::fs::read_to_string(format!("/boot/config-{}", release.trim())).unwrap_or_default();
    if text.is_empty()
        && let Ok(f) = std::fs::File::open("/proc/config.gz")
    {
        let _ = flate2::read::GzDecoder::new(f).read_to_string(&mut text);
    }
    hz_from_config(&text).unwrap_or(250)
}

fn hz_from_config(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("CONFIG_HZ="))
        .and_then(|v| v.trim().parse().ok())
        .filter(|hz| *hz > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_around_the_sample() {
        let mut c = JiffiesClock::new(4_000_000);
        assert_eq!(c.to_ns(1000), 0, "no sample yet");
        c.observe(ClockSample {
            jiffies: 1000,
            ns: 5_000_000_000,
        });
        assert_eq!(c.to_ns(1000), 5_000_000_000);
        assert_eq!(c.to_ns(1250), 6_000_000_000);
        assert_eq!(c.to_ns(750), 4_000_000_000);
        assert_eq!(c.to_ns(0), 0, "0 means never");
    }

    /// Regression: a sample taken while jiffies lagged (tickless idle) shifted every
    /// converted time by the lag (44 ms seen here). The least-lagging sample wins.
    #[test]
    fn a_lagging_sample_does_not_shift_conversions() {
        let mut c = JiffiesClock::new(4_000_000);
        c.observe(ClockSample {
            jiffies: 989,
            ns: 5_000_000_000,
        }); // 11 ticks behind
        c.observe(ClockSample {
            jiffies: 1250,
            ns: 6_000_000_000,
        }); // fresh
        c.observe(ClockSample {
            jiffies: 1300,
            ns: 6_210_000_000,
        }); // 2.5 ticks behind
        assert_eq!(c.to_ns(1000), 5_000_000_000);
    }

    #[test]
    fn reads_config_hz() {
        assert_eq!(
            hz_from_config("CONFIG_HZ_250=y\nCONFIG_HZ=250\n"),
            Some(250)
        );
        assert_eq!(hz_from_config("# CONFIG_HZ is not set\n"), None);
    }

    /// On this kernel: the value the running kernel was built with is found.
    #[test]
    fn running_kernel_hz_is_a_kernel_value() {
        assert!([100, 250, 300, 1000].contains(&kernel_hz()));
    }
}
