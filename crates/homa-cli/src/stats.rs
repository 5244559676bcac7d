//! Latency samples and their summary.

use serde::Serialize;

/// Percentiles of a set of round-trip times, in microseconds: nearest rank
/// (element `⌈n·p⌉ - 1`) from [`Latency::from_nanos`], as `homa compare`
/// takes them; a client's report converts a [`crate::results::Spread`]
/// (element `⌊n·p⌋`, the kernel tools' convention).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
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
    pub fn from_nanos(mut samples: Vec<u64>) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let pct = |p: f64| {
            let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i] as f64 / 1000.0
        };
        let sum: u128 = samples.iter().map(|&s| s as u128).sum();
        Latency {
            count: samples.len(),
            p50_us: pct(0.50),
            p99_us: pct(0.99),
            p999_us: pct(0.999),
            mean_us: sum as f64 / samples.len() as f64 / 1000.0,
        }
    }
}

impl From<crate::results::Spread> for Latency {
    /// A [`crate::results::Spread`] of RTTs in µs, percentiles as it took
    /// them.
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
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_samples() {
        let l = Latency::from_nanos((1..=1000).map(|i| i * 1000).collect());
        assert_eq!(l.count, 1000);
        assert_eq!(l.p50_us, 500.0);
        assert_eq!(l.p99_us, 990.0);
        assert_eq!(l.p999_us, 999.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    }
}
