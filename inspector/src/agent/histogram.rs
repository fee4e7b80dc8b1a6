//! A Prometheus histogram whose buckets are filled from the kernel's per-hop histograms
//! rather than by observing values one at a time (`prometheus-client`'s `Histogram` only
//! observes; this type encodes through the same `encode_histogram`, so the exposition is the
//! crate's). The kernel keeps 8 buckets per power of two (`inspector_common::hop`); the
//! exposition keeps the power-of-two edges: `le` = 2^k ns for k in [`LE_LOG2`], each the
//! exact sum of the kernel's buckets below it (integer nanoseconds: a time of exactly 2^k ns
//! counts in the next bucket).
use std::sync::{Arc, Mutex};

use inspector_common::hop::{HOP_BUCKETS, HOP_SUB_BITS, HopHist};
use prometheus_client::{
    encoding::{EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::{MetricType, TypedMetric},
};

/// Powers of two of the `le` edges: 128 ns to 134 ms (hops longer than 100 ms are not timed).
pub const LE_LOG2: std::ops::RangeInclusive<u32> = 7..=27;
/// Buckets exposed: one per edge, and `+Inf`.
pub const N: usize = 22;

/// Per-edge counts (not cumulative), the sum in ns, and the count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub buckets: [u64; N],
    pub sum_ns: u64,
    pub count: u64,
}

impl Counts {
    /// A kernel histogram's counts on the exposed edges.
    #[must_use]
    pub fn of(h: &HopHist) -> Self {
        let mut buckets = [0u64; N];
        for (b, &c) in h.buckets.iter().enumerate() {
            buckets[edge_of(b)] += u64::from(c);
        }
        Self {
            buckets,
            sum_ns: h.sum_ns,
            count: h.packets,
        }
    }

    /// What `self` grew by since `before` (all of it if it shrank: a slot started over).
    #[must_use]
    pub fn since(&self, before: &Self) -> Self {
        if self.count < before.count || self.sum_ns < before.sum_ns {
            return *self;
        }
        let mut d = Self {
            buckets: [0; N],
            sum_ns: self.sum_ns - before.sum_ns,
            count: self.count - before.count,
        };
        for (i, b) in d.buckets.iter_mut().enumerate() {
            *b = self.buckets[i].saturating_sub(before.buckets[i]);
        }
        d
    }

    pub fn add(&mut self, d: &Self) {
        for (a, b) in self.buckets.iter_mut().zip(d.buckets.iter()) {
            *a += b;
        }
        self.sum_ns += d.sum_ns;
        self.count += d.count;
    }
}

/// The exposed bucket a kernel bucket falls in: the first edge 2^k above all its values.
fn edge_of(b: usize) -> usize {
    // Kernel bucket b >= 8 holds values in [2^e, 2^(e+1)) with e = b / 8 + 2; below 8 ns
    // each bucket is one value.
    let e = if b < 8 {
        0
    } else {
        u32::try_from(b / 8).unwrap_or(u32::MAX) + HOP_SUB_BITS - 1
    };
    let k = (e + 1).max(*LE_LOG2.start());
    usize::try_from(k - LE_LOG2.start())
        .unwrap_or(N - 1)
        .min(N - 1)
}

const _: () = assert!(
    HOP_BUCKETS / 8 + 2 > 27,
    "the kernel's buckets reach past the edges"
);

/// The metric: shared so the family's entry and the updater see one value.
#[derive(Clone, Debug, Default)]
pub struct KernelHistogram(Arc<Mutex<Counts>>);

impl KernelHistogram {
    pub fn add(&self, d: &Counts) {
        if let Ok(mut c) = self.0.lock() {
            c.add(d);
        }
    }

    #[must_use]
    pub fn get(&self) -> Counts {
        self.0.lock().map(|c| *c).unwrap_or_default()
    }
}

impl TypedMetric for KernelHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for KernelHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let c = self.get();
        let buckets: Vec<(f64, u64)> = c
            .buckets
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let le = LE_LOG2
                    .clone()
                    .nth(i)
                    .map_or(f64::INFINITY, |k| f64::from(1u32 << k) / 1e9);
                (le, n)
            })
            .collect();
        #[expect(clippy::cast_precision_loss, reason = "seconds as a float")]
        let sum = c.sum_ns as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, c.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use inspector_common::hop::{HopTag, hop_bucket};

    use super::*;

    /// Every value lands under the first edge above it, as a direct count says.
    #[test]
    fn edges_hold_exactly_the_values_below_them() {
        let mut h = HopHist {
            tag: HopTag::default(),
            packets: 0,
            sum_ns: 0,
            max_ns: 0,
            buckets: [0; HOP_BUCKETS],
        };
        let values: Vec<u64> = (0..4000u64)
            .map(|i| (i * 2_654_435_761) % 200_000_000)
            .chain([
                0,
                1,
                127,
                128,
                129,
                255,
                256,
                1 << 20,
                (1 << 27) - 1,
                1 << 27,
            ])
            .collect();
        for &v in &values {
            h.buckets[hop_bucket(v)] += 1;
            h.packets += 1;
            h.sum_ns += v;
        }
        let c = Counts::of(&h);
        assert_eq!(c.count, values.len() as u64);
        let mut cum = 0;
        for (i, k) in LE_LOG2.enumerate() {
            cum += c.buckets[i];
            let below = values.iter().filter(|&&v| v < 1u64 << k).count() as u64;
            assert_eq!(cum, below, "le 2^{k}");
        }
        assert_eq!(cum + c.buckets[N - 1], c.count);
    }

    #[test]
    fn growth_is_the_difference_and_a_restart_is_all_new() {
        let a = Counts {
            buckets: [1; N],
            sum_ns: 100,
            count: 22,
        };
        let mut b = a;
        b.buckets[3] += 2;
        b.sum_ns += 50;
        b.count += 2;
        let d = b.since(&a);
        assert_eq!(
            (d.count, d.sum_ns, d.buckets[3], d.buckets[4]),
            (2, 50, 2, 0)
        );
        assert_eq!(a.since(&b), a);
    }
}
