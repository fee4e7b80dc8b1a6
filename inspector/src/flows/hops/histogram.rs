//! A log-linear histogram of nanoseconds, for the userspace per-hop aggregator.

/// A log-linear histogram of nanoseconds: exact below 32 ns, then 32 buckets per power of
/// two (a value is reported as its bucket's middle: within 1.6%); the maximum is exact.
#[derive(Clone, Default)]
pub struct Histogram {
    /// Bucket of `counts[0]`.
    base: usize,
    counts: Vec<u32>,
    n: u64,
    sum: u64,
    max: u64,
}

const SUB: u32 = 32;

pub(super) fn bucket(v: u64) -> usize {
    if v < u64::from(SUB) {
        return v as usize;
    }
    let e = v.ilog2();
    let sub = (v >> (e - 5)) & u64::from(SUB - 1);
    ((e - 4) * SUB) as usize + sub as usize
}

pub(super) fn bucket_value(b: usize) -> u64 {
    let sub = SUB as usize;
    if b < sub {
        return b as u64;
    }
    let e = (b / sub) as u32 + 4;
    let lo = ((sub + b % sub) as u64) << (e - 5);
    lo + (1u64 << (e - 5)) / 2
}

impl Histogram {
    pub fn add(&mut self, v: u64) {
        // Counts are kept from the lowest bucket seen (`base`) up: one hop's times cluster,
        // so a histogram stays a few hundred bytes and thousands of them stay in cache.
        let b = bucket(v);
        if self.counts.is_empty() {
            self.base = b;
        } else if b < self.base {
            let grow = self.base - b;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.base = b;
        }
        let i = b - self.base;
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] = self.counts[i].saturating_add(1);
        self.n += 1;
        self.sum = self.sum.saturating_add(v);
        self.max = self.max.max(v);
    }

    #[must_use]
    pub fn count(&self) -> u64 {
        self.n
    }

    /// The exact mean (0 when empty).
    #[must_use]
    pub fn mean(&self) -> u64 {
        self.sum.checked_div(self.n).unwrap_or(0)
    }

    #[must_use]
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at percentile `p` (0-100].
    #[must_use]
    pub fn percentile(&self, p: u64) -> u64 {
        let rank = (self.n * p).div_ceil(100).clamp(1, self.n.max(1));
        let mut seen = 0u64;
        for (b, c) in self.counts.iter().enumerate() {
            seen += u64::from(*c);
            if seen >= rank {
                return bucket_value(self.base + b).min(self.max);
            }
        }
        self.max
    }
}
