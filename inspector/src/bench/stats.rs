//! Medians and spreads over repetitions: the one place they are computed.
use serde::{Deserialize, Serialize};

/// The median of `v` (NaN when empty).
#[must_use]
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => f64::midpoint(s[n / 2 - 1], s[n / 2]),
    }
}

/// Median and spread (min, max) of one value over repetitions.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// None when there is no value.
    #[must_use]
    pub fn of(v: &[f64]) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        Some(Self {
            median: median(v),
            min: v.iter().copied().fold(f64::INFINITY, f64::min),
            max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }

    /// The spread of `f` over `items`.
    #[must_use]
    pub fn over<T>(items: &[T], f: impl Fn(&T) -> f64) -> Option<Self> {
        Self::of(&items.iter().map(f).collect::<Vec<_>>())
    }

    /// (max - min) / median in percent (None for a zero median).
    #[must_use]
    pub fn range_pct(&self) -> Option<f64> {
        (self.median > 0.0).then(|| (self.max - self.min) / self.median * 100.0)
    }
}

#[cfg(test)]
#[allow(
    clippy::float_cmp,
    reason = "the expected values are exact by construction"
)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_spreads() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        let s = Spread::of(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 5.0));
        assert!((s.range_pct().unwrap() - 400.0 / 3.0).abs() < 1e-9);
        assert!(Spread::of(&[]).is_none());
    }
}
