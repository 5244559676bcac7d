//! Percentiles, one convention for every command (`compare`, `client`,
//! `rack`): values go into an HDR histogram ([`hdrhistogram`], three
//! significant digits, i.e. within 0.1%) and a percentile is its
//! `value_at_quantile`, the nearest-rank value (the smallest recorded
//! value with at least `⌈n·p⌉` values at or below it). Means are exact.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Significant decimal digits the histograms keep.
const SIGFIG: u8 = 3;

/// A set of non-negative values and their percentiles.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    h: Histogram<u64>,
    sum: f64,
    /// The largest value recorded, exactly (the histogram keeps buckets).
    max: u64,
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder::new()
    }
}

impl Recorder {
    /// An empty set.
    pub(crate) fn new() -> Recorder {
        Recorder {
            // Auto-resizing: any u64 can be recorded.
            h: Histogram::new(SIGFIG).unwrap_or_else(|_| unreachable!("3 significant digits")),
            sum: 0.0,
            max: 0,
        }
    }

    /// Adds a value.
    pub(crate) fn record(&mut self, v: u64) {
        // Cannot fail on an auto-resizing histogram; a value it could not
        // hold would be dropped, never panic.
        let _ = self.h.record(v);
        self.sum += v as f64;
        self.max = self.max.max(v);
    }

    /// Number of values.
    pub(crate) fn count(&self) -> usize {
        self.h.len() as usize
    }

    /// The nearest-rank percentile `q` (0..=1); 0 if empty.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.h.is_empty() {
            return 0;
        }
        // Never above the largest value recorded (the histogram reports a
        // bucket's upper end).
        self.h.value_at_quantile(q).min(self.max)
    }

    /// The exact mean; 0 if empty.
    pub(crate) fn mean(&self) -> f64 {
        if self.h.is_empty() {
            0.0
        } else {
            self.sum / self.h.len() as f64
        }
    }
}

/// Percentiles of a set of round-trip times, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Latency {
    /// Number of samples.
    pub count: usize,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Mean.
    pub mean_us: f64,
}

impl Latency {
    /// Summarises round-trip times given in nanoseconds.
    pub(crate) fn from_nanos(samples: Vec<u64>) -> Latency {
        let mut r = Recorder::new();
        for s in samples {
            r.record(s);
        }
        Latency::of(&r, 1000.0)
    }

    /// The summary of `r`, whose values are `per_us` units per µs.
    pub(crate) fn of(r: &Recorder, per_us: f64) -> Latency {
        Latency {
            count: r.count(),
            p50_us: r.quantile(0.50) as f64 / per_us,
            p99_us: r.quantile(0.99) as f64 / per_us,
            p999_us: r.quantile(0.999) as f64 / per_us,
            mean_us: r.mean() / per_us,
        }
    }
}

impl From<crate::results::Spread> for Latency {
    /// A [`crate::results::Spread`] of RTTs in µs.
    fn from(s: crate::results::Spread) -> Latency {
        Latency {
            count: s.count,
            p50_us: s.p50,
            p99_us: s.p99,
            p999_us: s.p999,
            mean_us: s.mean,
        }
    }
}

/// The median of some values (upper median for even counts); 0 if none.
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b.abs() * 1e-3
    }

    #[test]
    fn latency__nearest_rank_within_a_thousandth() {
        let l = Latency::from_nanos((1..=1000).map(|i| i * 1000).collect());
        assert_eq!(l.count, 1000);
        assert!(close(l.p50_us, 500.0), "{}", l.p50_us);
        assert!(close(l.p99_us, 990.0), "{}", l.p99_us);
        assert!(close(l.p999_us, 999.0), "{}", l.p999_us);
        assert_eq!(l.mean_us, 500.5);
        assert_eq!(Latency::from_nanos(Vec::new()), Latency::default());
    }

    #[test]
    fn recorder__small_values_exact_and_never_above_the_max() {
        let mut r = Recorder::new();
        for v in [3, 1, 2] {
            r.record(v);
        }
        assert_eq!(
            (r.quantile(0.5), r.quantile(0.99), r.quantile(1.0)),
            (2, 3, 3)
        );
        let mut big = Recorder::new();
        big.record(123_456_789);
        assert_eq!(big.quantile(0.999), 123_456_789);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    }
}
