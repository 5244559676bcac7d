//! Aggregating round-trip times the way the kernel module's benchmark
//! scripts (cperf) do, so figures can be set side by side with theirs:
//!
//! * **Slowdown** of an RPC is its RTT divided by the ideal RTT of its
//!   length, `base_rtt + length × 8 / link_rate` ([`Ideal`]), with
//!   `base_rtt` the unloaded short-message RTT measured on the same setup.
//!   (Like the kernel tools, the length term counts the message once even
//!   when the response echoes it.)
//! * **Percentiles** follow the convention of every `homa` command
//!   ([`crate::stats`]: nearest rank from an HDR histogram, within 0.1%).
//! * **Buckets by size**: samples sorted by length, adjacent lengths merged
//!   until a bucket holds a minimum number of samples
//!   ([`default_min_bucket`]: between 25 and 500, about 1/40 of all); each
//!   bucket is named after its largest length.
//! * **Short messages** ([`short_message_limit`]): the shortest lengths
//!   that together make up 10% of the samples, never going past 1500 bytes
//!   once at least one length is in (whole lengths are taken, so the share
//!   can exceed 10%).

use serde::{Deserialize, Serialize};

use crate::stats::Recorder;

/// Values are recorded in thousandths of their unit.
const SCALE: f64 = 1000.0;

/// One completed RPC.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    /// Request length in bytes.
    pub length: u32,
    /// Round-trip time in microseconds.
    pub rtt_us: f64,
}

/// The ideal (unloaded) RTT of a message length: the denominator of
/// slowdown.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct Ideal {
    /// Unloaded short-message RTT on the same setup, µs.
    pub base_rtt_us: f64,
    /// Link rate, Mbit/s (bits per µs).
    pub link_mbps: f64,
}

impl Ideal {
    /// Ideal RTT of a message of `length` bytes, µs.
    pub(crate) fn rtt_us(&self, length: u32) -> f64 {
        self.base_rtt_us + f64::from(length) * 8.0 / self.link_mbps
    }

    /// Slowdown of a sample.
    pub(crate) fn slowdown(&self, s: &Sample) -> f64 {
        s.rtt_us / self.rtt_us(s.length)
    }

    /// The base RTT `samples` prove possible: the least of each RTT less
    /// its transfer time at the link rate (`None` without samples). A
    /// measured base above it was perturbed (the unloaded probe ran on a
    /// busy machine) and would give slowdowns below 1.
    pub(crate) fn floor_of(&self, samples: &[Sample]) -> Option<f64> {
        samples
            .iter()
            .map(|s| s.rtt_us - f64::from(s.length) * 8.0 / self.link_mbps)
            .filter(|b| b.is_finite() && *b > 0.0)
            .reduce(f64::min)
    }
}

/// Percentiles and mean of a set of values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Spread {
    /// Number of values.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Mean.
    pub mean: f64,
}

impl Spread {
    /// Summarises `values` (non-negative; kept to a thousandth of their
    /// unit: nanoseconds for µs, 0.001 for slowdowns).
    pub(crate) fn of(values: Vec<f64>) -> Spread {
        if values.is_empty() {
            return Spread::default();
        }
        let mut r = Recorder::new();
        for v in &values {
            r.record((v.max(0.0) * SCALE).round() as u64);
        }
        Spread {
            count: values.len(),
            p50: r.quantile(0.5) as f64 / SCALE,
            p99: r.quantile(0.99) as f64 / SCALE,
            p999: r.quantile(0.999) as f64 / SCALE,
            mean: values.iter().sum::<f64>() / values.len() as f64,
        }
    }
}

/// One size bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Bucket {
    /// Largest length in the bucket.
    pub max_length: u32,
    /// Fraction of all samples of at most `max_length` bytes.
    pub cum_frac: f64,
    /// RTTs in the bucket, µs.
    pub rtt_us: Spread,
    /// Slowdowns in the bucket.
    pub slowdown: Spread,
}

/// The short messages of a run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub(crate) struct Short {
    /// Largest length counted as short.
    pub max_length: u32,
    /// Share of all samples they are.
    pub fraction: f64,
    /// Shortest RTT among them, µs.
    pub rtt_min_us: f64,
    /// Their RTTs, µs.
    pub rtt_us: Spread,
    /// Their slowdowns.
    pub slowdown: Spread,
}

/// Everything the report shows about one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Summary {
    /// The slowdown denominator used.
    pub ideal: Ideal,
    /// All RTTs, µs.
    pub rtt_us: Spread,
    /// All slowdowns (`slowdown.mean` is cperf's "avg slowdown").
    pub slowdown: Spread,
    /// The short messages.
    pub short: Short,
    /// Buckets by size ([`default_min_bucket`] samples each at least).
    pub buckets: Vec<Bucket>,
}

/// Minimum samples per bucket for `n` samples: `n/40` within 25..=500.
pub(crate) fn default_min_bucket(n: usize) -> usize {
    (n / 40).clamp(25, 500)
}

/// Groups `samples` (sorted by length) into runs of equal length.
fn by_length(samples: &[Sample]) -> impl Iterator<Item = &[Sample]> {
    samples.chunk_by(|a, b| a.length == b.length)
}

fn sorted_by_length(samples: &[Sample]) -> Vec<Sample> {
    let mut v = samples.to_vec();
    v.sort_by_key(|s| s.length);
    v
}

/// Buckets by size, each with at least `min_samples` samples (the last
/// may have fewer).
pub(crate) fn buckets(samples: &[Sample], ideal: Ideal, min_samples: usize) -> Vec<Bucket> {
    let sorted = sorted_by_length(samples);
    let total = sorted.len();
    let mut out = Vec::new();
    let (mut start, mut seen) = (0usize, 0usize);
    let groups: Vec<&[Sample]> = by_length(&sorted).collect();
    for (i, g) in groups.iter().enumerate() {
        seen += g.len();
        if seen - start >= min_samples.max(1) || i == groups.len() - 1 {
            let part = &sorted[start..seen];
            out.push(Bucket {
                max_length: g[0].length,
                cum_frac: seen as f64 / total as f64,
                rtt_us: Spread::of(part.iter().map(|s| s.rtt_us).collect()),
                slowdown: Spread::of(part.iter().map(|s| ideal.slowdown(s)).collect()),
            });
            start = seen;
        }
    }
    out
}

/// Lengths from here on are never counted as short (about one Ethernet
/// MTU: a short message fits one packet), unless they are the only ones.
const SHORT_CAP_BYTES: u32 = 1500;

/// The largest length counted as short (see the module docs); `None` if
/// there are no samples.
pub(crate) fn short_message_limit(samples: &[Sample]) -> Option<u32> {
    let sorted = sorted_by_length(samples);
    let mut left = sorted.len() as i64 / 10;
    let mut limit = None;
    for g in by_length(&sorted) {
        if g[0].length >= SHORT_CAP_BYTES && limit.is_some() {
            break;
        }
        limit = Some(g[0].length);
        left -= g.len() as i64;
        if left < 0 {
            break;
        }
    }
    limit
}

/// Summarises a run.
pub(crate) fn summarize(samples: &[Sample], ideal: Ideal) -> Summary {
    let limit = short_message_limit(samples).unwrap_or(0);
    let short: Vec<&Sample> = samples.iter().filter(|s| s.length <= limit).collect();
    let short_rtts: Vec<f64> = short.iter().map(|s| s.rtt_us).collect();
    Summary {
        ideal,
        rtt_us: Spread::of(samples.iter().map(|s| s.rtt_us).collect()),
        slowdown: Spread::of(samples.iter().map(|s| ideal.slowdown(s)).collect()),
        short: Short {
            max_length: limit,
            fraction: if samples.is_empty() {
                0.0
            } else {
                short.len() as f64 / samples.len() as f64
            },
            rtt_min_us: short_rtts.iter().copied().fold(f64::INFINITY, f64::min),
            rtt_us: Spread::of(short_rtts),
            slowdown: Spread::of(short.iter().map(|s| ideal.slowdown(s)).collect()),
        }
        .finite(),
        buckets: buckets(samples, ideal, default_min_bucket(samples.len())),
    }
}

impl Short {
    fn finite(mut self) -> Short {
        if !self.rtt_min_us.is_finite() {
            self.rtt_min_us = 0.0;
        }
        self
    }
}

/// The per-bucket table: about `rows` rows (fewer for small runs).
pub(crate) fn table(samples: &[Sample], ideal: Ideal, rows: usize) -> String {
    use std::fmt::Write as _;
    let min = (samples.len() / rows.max(1)).max(1);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>9} {:>6} {:>8} | {:^29} | {:^26}",
        "", "", "", "RTT (us)", "slowdown"
    );
    let _ = writeln!(
        out,
        "{:>9} {:>6} {:>8} | {:>9} {:>9} {:>9} | {:>8} {:>8} {:>8}",
        "length", "cum%", "count", "P50", "P99", "P99.9", "P50", "P99", "P99.9"
    );
    for b in buckets(samples, ideal, min) {
        let _ = writeln!(
            out,
            "{:>9} {:>6.1} {:>8} | {:>9.1} {:>9.1} {:>9.1} | {:>8.2} {:>8.2} {:>8.2}",
            b.max_length,
            b.cum_frac * 100.0,
            b.rtt_us.count,
            b.rtt_us.p50,
            b.rtt_us.p99,
            b.rtt_us.p999,
            b.slowdown.p50,
            b.slowdown.p99,
            b.slowdown.p999
        );
    }
    out
}

/// Reads RTT samples in the kernel benchmark's `dump_times` format: `#`
/// comment lines, then `length rtt_us` per line.
pub(crate) fn parse_rtts(text: &str) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut w = line.split_whitespace();
        let parsed = (|| {
            let length = w.next()?.parse().ok()?;
            let rtt_us = w.next()?.parse().ok()?;
            Some(Sample { length, rtt_us })
        })();
        out.push(parsed.ok_or_else(|| format!("line {}: {line:?}", i + 1))?);
    }
    Ok(out)
}

/// Writes samples in the `dump_times` format [`parse_rtts`] reads.
pub(crate) fn write_rtts(samples: &[Sample], comment: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(24 * samples.len() + 100);
    for l in comment.lines() {
        let _ = writeln!(out, "# {l}");
    }
    let _ = writeln!(out, "# length  rtt_us");
    for s in samples {
        let _ = writeln!(out, "{:8} {:12.2}", s.length, s.rtt_us);
    }
    out
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    const IDEAL: Ideal = Ideal {
        base_rtt_us: 10.0,
        link_mbps: 1000.0,
    };

    fn s(length: u32, rtt_us: f64) -> Sample {
        Sample { length, rtt_us }
    }

    #[test]
    fn spread__nearest_rank_within_a_thousandth() {
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        let sp = Spread::of(v);
        assert!((sp.p50 - 500.0).abs() <= 0.5, "{}", sp.p50);
        assert!((sp.p99 - 990.0).abs() <= 1.0, "{}", sp.p99);
        assert!((sp.p999 - 999.0).abs() <= 1.0, "{}", sp.p999);
        assert_eq!(Spread::of(Vec::new()), Spread::default());
        let sp = Spread::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((sp.count, sp.p50, sp.p99, sp.mean), (3, 2.0, 3.0, 2.0));
    }

    #[test]
    fn ideal__base_plus_serialisation() {
        // 1250 bytes at 1000 Mbit/s: 10 µs on the wire.
        assert_eq!(IDEAL.rtt_us(1250), 20.0);
        assert_eq!(IDEAL.slowdown(&s(1250, 50.0)), 2.5);
        assert_eq!(IDEAL.slowdown(&s(0, 10.0)), 1.0);
    }

    #[test]
    fn buckets__merge_lengths_up_to_the_minimum() {
        // Lengths 100 (x3), 200 (x1), 300 (x2), 400 (x4).
        let mut v = Vec::new();
        v.extend([s(100, 20.0), s(100, 30.0), s(100, 10.0)]);
        v.push(s(200, 40.0));
        v.extend([s(300, 50.0), s(300, 60.0)]);
        v.extend((0..4).map(|i| s(400, 100.0 + f64::from(i))));
        let b = buckets(&v, IDEAL, 3);
        let shape: Vec<(u32, usize)> = b.iter().map(|b| (b.max_length, b.rtt_us.count)).collect();
        assert_eq!(shape, vec![(100, 3), (300, 3), (400, 4)]);
        assert_eq!(b[0].cum_frac, 0.3);
        assert_eq!(b[1].cum_frac, 0.6);
        assert_eq!(b[2].cum_frac, 1.0);
        // Bucket 1: RTTs 40, 50, 60 -> P50 the 2nd = 50; P99 the 3rd (within
        // the histogram's 0.1%).
        let near = |a: f64, b: f64| (a - b).abs() <= b * 1e-3;
        assert!(
            near(b[1].rtt_us.p50, 50.0) && b[1].rtt_us.p99 == 60.0,
            "{:?}",
            b[1].rtt_us
        );
        // Slowdown of 100 B at 20 µs: 20 / (10 + 0.8).
        assert!(near(b[0].slowdown.p50, 20.0 / 10.8), "{:?}", b[0].slowdown);
        // A final small group forms its own bucket.
        let b = buckets(&v[..7], IDEAL, 3);
        let last = b.last().unwrap();
        assert_eq!((b.len(), last.max_length, last.rtt_us.count), (3, 400, 1));
    }

    #[test]
    fn short_message_limit__ten_percent_of_whole_lengths() {
        // 100 samples: 5 of 50 B, 10 of 80 B, the rest 5000 B.
        let mut v: Vec<Sample> = (0..5).map(|_| s(50, 1.0)).collect();
        v.extend((0..10).map(|_| s(80, 1.0)));
        v.extend((0..85).map(|_| s(5000, 1.0)));
        assert_eq!(short_message_limit(&v), Some(80), "past 10% inside 80 B");
        // Exactly 10%: the next length is still taken (cperf stops only
        // once the count goes negative).
        let mut w: Vec<Sample> = (0..10).map(|_| s(50, 1.0)).collect();
        w.extend((0..10).map(|_| s(60, 1.0)));
        w.extend((0..80).map(|_| s(70, 1.0)));
        assert_eq!(short_message_limit(&w), Some(60));
        // Never past 1500 B once something is in.
        let mut x: Vec<Sample> = (0..2).map(|_| s(100, 1.0)).collect();
        x.extend((0..98).map(|_| s(2000, 1.0)));
        assert_eq!(short_message_limit(&x), Some(100));
        // ... unless nothing is shorter.
        let y: Vec<Sample> = (0..10).map(|i| s(3000 + i, 1.0)).collect();
        assert_eq!(short_message_limit(&y), Some(3000));
        assert_eq!(short_message_limit(&[]), None);
    }

    #[test]
    fn summarize__known_run() {
        // 20 samples of 100 B with RTT 20..39 µs, 80 of 10 000 B at 200 µs.
        let mut v: Vec<Sample> = (0..20).map(|i| s(100, 20.0 + f64::from(i))).collect();
        v.extend((0..80).map(|_| s(10_000, 200.0)));
        let sum = summarize(&v, IDEAL);
        assert_eq!(sum.short.max_length, 100);
        assert_eq!(sum.short.fraction, 0.2);
        assert_eq!(sum.short.rtt_min_us, 20.0);
        // Nearest rank: the 10th of 20 is 29 µs, the 20th 39 µs.
        assert!(
            (sum.short.rtt_us.p50 - 29.0).abs() <= 0.03,
            "{:?}",
            sum.short.rtt_us
        );
        assert_eq!(sum.short.rtt_us.p99, 39.0);
        assert!((sum.short.slowdown.p99 - 39.0 / 10.8).abs() < 4e-3);
        // 10 000 B: ideal 10 + 80 µs; slowdown 200/90.
        let mean =
            (v[..20].iter().map(|x| x.rtt_us / 10.8).sum::<f64>() + 80.0 * 200.0 / 90.0) / 100.0;
        assert!((sum.slowdown.mean - mean).abs() < 1e-9);
        assert_eq!(sum.rtt_us.count, 100);
        // At least 25 samples per bucket: the 20 short ones join the rest.
        assert_eq!(sum.buckets.len(), 1);
        assert_eq!(sum.buckets[0].max_length, 10_000);
        let empty = summarize(&[], IDEAL);
        assert_eq!(empty.short.rtt_min_us, 0.0);
        assert!(empty.buckets.is_empty());
    }

    #[test]
    fn rtts_file__round_trip() {
        let v = vec![s(12, 15.5), s(1_000_000, 12345.25)];
        let text = write_rtts(&v, "homa w4\nhost 1");
        assert!(text.starts_with("# homa w4\n# host 1\n"));
        assert_eq!(parse_rtts(&text).unwrap(), v);
        assert!(parse_rtts("12 x\n").is_err());
    }

    #[test]
    fn table__has_a_row_per_bucket() {
        let v: Vec<Sample> = (0..100).map(|i| s(100 * (i / 10 + 1), 50.0)).collect();
        let t = table(&v, IDEAL, 5);
        assert_eq!(t.lines().count(), 2 + 5);
        assert!(t.contains("slowdown") && !t.contains("sd P50"));
    }
}
