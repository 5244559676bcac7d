//! Message-size distributions: a cumulative distribution over message
//! lengths, built from a CSV, from weights or as a fixed size; sampling by
//! inverse CDF; means and other expectations; and the bucket reduction the
//! kernel module's benchmark applies (`dist_point_gen` in `util/dist.cc`).
//!
//! A distribution is a list of [`CdfPoint`]s with strictly increasing
//! lengths and non-decreasing cumulative fractions ending at exactly 1.0.
//! Point `i` stands for every message of exactly `length[i]` bytes and has
//! probability `fraction[i] - fraction[i-1]`.

use core::fmt;

use crate::rng::Rng;
use crate::Error;

/// One point of a cumulative distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CdfPoint {
    /// Message length in bytes.
    pub length: u32,
    /// Fraction of messages whose length is at most `length`.
    pub fraction: f64,
}

/// Parameters of the bucket reduction of [`SizeDist::reduce`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reduction {
    /// Lengths at or above this collapse into one final point at this
    /// length (the kernel benchmark's messages cannot exceed 1 MB).
    pub max_length: u32,
    /// Smallest growth of the cumulative fraction between two emitted
    /// points; raw points are merged until it is reached.
    pub min_bucket_frac: f64,
    /// Largest ratio between the longest and shortest raw length merged
    /// into one bucket.
    pub max_size_ratio: f64,
}

impl Reduction {
    /// What `cp_node` uses: `dist_point_gen(w, 1000000, 0.0025, 1.2)`.
    pub const CP_NODE: Reduction = Reduction {
        max_length: 1_000_000,
        min_bucket_frac: 0.0025,
        max_size_ratio: 1.2,
    };
}

/// A distribution of message lengths (see the [module docs](self)).
#[derive(Clone, PartialEq)]
pub struct SizeDist {
    points: Vec<CdfPoint>,
}

impl fmt::Debug for SizeDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SizeDist")
            .field("points", &self.points.len())
            .field("min", &self.min_length())
            .field("max", &self.max_length())
            .field("mean", &self.mean())
            .finish()
    }
}

impl SizeDist {
    /// Every message is `length` bytes long.
    pub fn fixed(length: u32) -> Result<SizeDist, Error> {
        SizeDist::from_cdf(vec![CdfPoint {
            length,
            fraction: 1.0,
        }])
    }

    /// A distribution from cumulative points. Points with zero probability
    /// (the same fraction as their predecessor, such as the leading
    /// `(0, 0.0)` of the benchmark's CSVs) are dropped. Errors if lengths do
    /// not increase, fractions decrease or leave `[0, 1]`, the last fraction
    /// is not 1, or a length with positive probability is 0.
    pub fn from_cdf(points: Vec<CdfPoint>) -> Result<SizeDist, Error> {
        let mut out: Vec<CdfPoint> = Vec::with_capacity(points.len());
        let mut prev_len: Option<u32> = None;
        let mut prev_frac = 0.0f64;
        for p in points {
            if !(0.0..=1.0).contains(&p.fraction) {
                return Err(Error::Invalid("fraction outside [0, 1]"));
            }
            if prev_len.is_some_and(|l| p.length <= l) {
                return Err(Error::Invalid("lengths must increase"));
            }
            if p.fraction < prev_frac {
                return Err(Error::Invalid("fractions must not decrease"));
            }
            prev_len = Some(p.length);
            if p.fraction > prev_frac {
                if p.length == 0 {
                    return Err(Error::Invalid("zero-length messages"));
                }
                out.push(p);
                prev_frac = p.fraction;
            }
        }
        match out.last() {
            Some(last) if last.fraction == 1.0 => Ok(SizeDist { points: out }),
            Some(_) => Err(Error::Invalid("last fraction must be 1")),
            None => Err(Error::Invalid("empty distribution")),
        }
    }

    /// A distribution from `(length, relative weight)` pairs with increasing
    /// lengths; the cumulative fractions are running sums over the total,
    /// and the last one is forced to exactly 1 as `dist_point_gen` does.
    pub fn from_weights(weights: &[(u32, f64)]) -> Result<SizeDist, Error> {
        let total: f64 = weights.iter().map(|w| w.1).sum();
        let valid = |x: f64| x.is_finite() && x >= 0.0;
        if !valid(total) || total == 0.0 || weights.iter().any(|w| !valid(w.1)) {
            return Err(Error::Invalid(
                "weights must be non-negative, total positive",
            ));
        }
        let mut run = 0.0;
        let n = weights.len();
        let points = weights
            .iter()
            .enumerate()
            .map(|(i, &(length, w))| {
                run += w;
                let fraction = if i + 1 == n {
                    1.0
                } else {
                    (run / total).min(1.0)
                };
                CdfPoint { length, fraction }
            })
            .collect();
        SizeDist::from_cdf(points)
    }

    /// Parses the CSV format of this crate's `workloads/` directory: lines
    /// starting with `#` are comments, the first other line is a header
    /// naming the columns, which must include `length` and `cum_fraction`
    /// (other columns, such as `weight`, are ignored). The last point's
    /// fraction is forced to exactly 1 when it is within 1e-6 of it (the
    /// files print 9–12 decimals).
    pub fn parse_csv(text: &str) -> Result<SizeDist, Error> {
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        let (_, header) = lines.next().ok_or(Error::Invalid("no header line"))?;
        let cols: Vec<&str> = header.split(',').map(str::trim).collect();
        let find = |name: &'static str| {
            cols.iter()
                .position(|c| *c == name)
                .ok_or(Error::MissingColumn(name))
        };
        let (len_col, frac_col) = (find("length")?, find("cum_fraction")?);
        let mut points = Vec::new();
        for (line, l) in lines {
            let fields: Vec<&str> = l.split(',').map(str::trim).collect();
            let get = |c: usize| fields.get(c).copied().ok_or(Error::Syntax { line });
            let length = get(len_col)?
                .parse::<u32>()
                .map_err(|_| Error::Syntax { line })?;
            let fraction = get(frac_col)?
                .parse::<f64>()
                .map_err(|_| Error::Syntax { line })?;
            points.push(CdfPoint { length, fraction });
        }
        if let Some(last) = points.last_mut() {
            if (last.fraction - 1.0).abs() < 1e-6 {
                last.fraction = 1.0;
            }
        }
        SizeDist::from_cdf(points)
    }

    /// The points, lengths increasing, each with positive probability.
    pub fn points(&self) -> &[CdfPoint] {
        &self.points
    }

    /// Shortest length with positive probability.
    pub fn min_length(&self) -> u32 {
        self.points[0].length
    }

    /// Longest length.
    pub fn max_length(&self) -> u32 {
        self.points[self.points.len() - 1].length
    }

    /// True if every message has the same length.
    pub fn is_fixed(&self) -> bool {
        self.points.len() == 1
    }

    /// The inverse CDF: the first length whose cumulative fraction is at
    /// least `u` (`dist_point_gen`'s sampling rule). `u` is clamped to
    /// `[0, 1]`; `u = 0` gives the shortest length.
    pub fn inverse_cdf(&self, u: f64) -> u32 {
        let u = u.clamp(0.0, 1.0);
        let i = self.points.partition_point(|p| p.fraction < u);
        self.points[i.min(self.points.len() - 1)].length
    }

    /// The `q`-quantile (same as [`SizeDist::inverse_cdf`]).
    pub fn quantile(&self, q: f64) -> u32 {
        self.inverse_cdf(q)
    }

    /// Draws a length: [`SizeDist::inverse_cdf`] of a uniform number in
    /// `(0, 1]`. (`dist_point_gen` draws from `[0, 1)`; the two differ only
    /// on the measure-zero value 0, which here cannot select a point of zero
    /// probability.)
    pub fn sample(&self, rng: &mut Rng) -> u32 {
        if self.points.len() == 1 {
            return self.points[0].length;
        }
        self.inverse_cdf(rng.next_f64_open0())
    }

    /// Fraction of messages of at most `length` bytes.
    pub fn cdf(&self, length: u32) -> f64 {
        let i = self.points.partition_point(|p| p.length <= length);
        if i == 0 {
            0.0
        } else {
            self.points[i - 1].fraction
        }
    }

    /// Expected value of `f(length)`.
    pub fn expectation(&self, mut f: impl FnMut(u32) -> f64) -> f64 {
        let mut prev = 0.0;
        let mut sum = 0.0;
        for p in &self.points {
            sum += f(p.length) * (p.fraction - prev);
            prev = p.fraction;
        }
        sum
    }

    /// Mean length in bytes (`dist_mean`).
    pub fn mean(&self) -> f64 {
        self.expectation(f64::from)
    }

    /// The same distribution with every length above `max` replaced by
    /// `max` (the `max_length` argument of the kernel's `dist_mean`).
    pub fn truncate(&self, max: u32) -> SizeDist {
        self.map_lengths(|l| l.min(max))
    }

    /// The same distribution with every length below `min` raised to `min`
    /// (cp_node raises lengths to its 12-byte message header).
    pub fn clamp_min(&self, min: u32) -> SizeDist {
        self.map_lengths(|l| l.max(min))
    }

    /// Applies a non-decreasing function to every length, merging points
    /// that become equal.
    pub(crate) fn map_lengths(&self, f: impl Fn(u32) -> u32) -> SizeDist {
        let mut out: Vec<CdfPoint> = Vec::with_capacity(self.points.len());
        for p in &self.points {
            let length = f(p.length);
            match out.last_mut() {
                Some(last) if last.length == length => last.fraction = p.fraction,
                _ => out.push(CdfPoint {
                    length,
                    fraction: p.fraction,
                }),
            }
        }
        SizeDist { points: out }
    }

    /// Merges points into buckets as the kernel benchmark's
    /// `dist_point_gen` does. Walking the points in order, point `i` is
    /// emitted (closing a bucket that holds it and the unemitted points
    /// before it) when
    ///
    /// * the cumulative fraction has grown by at least `min_bucket_frac`
    ///   since the last emitted point, or
    /// * the *next* point's length exceeds `max_size_ratio` times the last
    ///   emitted length (initially 0), so that a bucket never spans too wide
    ///   a range of sizes;
    ///
    /// the first length at or above `max_length` ends the walk with a point
    /// `(max_length, 1.0)` holding all the remaining probability; otherwise
    /// the last emitted point's fraction is forced to 1, folding whatever
    /// probability lies beyond it into it.
    ///
    /// Each emitted point keeps the length of the last raw point merged into
    /// it, so within a bucket lengths round up; the final fold rounds the
    /// tail down. The result reproduces the project's `<w>_cp_node.csv`
    /// files point for point.
    pub fn reduce(&self, r: Reduction) -> SizeDist {
        let mut out: Vec<CdfPoint> = Vec::new();
        let mut last_frac = 0.0f64;
        let mut last_len = 0.0f64;
        let pts = &self.points;
        for (i, &p) in pts.iter().enumerate() {
            if p.length >= r.max_length {
                out.push(CdfPoint {
                    length: r.max_length,
                    fraction: 1.0,
                });
                break;
            }
            let wide = pts
                .get(i + 1)
                .is_some_and(|n| f64::from(n.length) > r.max_size_ratio * last_len);
            if p.fraction - last_frac >= r.min_bucket_frac || wide {
                out.push(p);
                last_frac = p.fraction;
                last_len = f64::from(p.length);
            }
        }
        if out.is_empty() {
            // Unreachable for a valid distribution (its last point has
            // fraction 1), kept for safety.
            out.push(pts[pts.len() - 1]);
        }
        let n = out.len();
        out[n - 1].fraction = 1.0;
        SizeDist::from_cdf(out).expect("reduction of a valid distribution is valid")
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    fn dist(points: &[(u32, f64)]) -> SizeDist {
        SizeDist::from_cdf(
            points
                .iter()
                .map(|&(length, fraction)| CdfPoint { length, fraction })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn from_cdf__drops_zero_mass_points_and_validates() {
        let d = dist(&[(0, 0.0), (10, 0.5), (20, 0.5), (30, 1.0)]);
        assert_eq!(d.points().len(), 2);
        assert_eq!(d.min_length(), 10);
        assert_eq!(d.max_length(), 30);
        let bad: &[&[(u32, f64)]] = &[
            &[(10, 0.5)],
            &[(10, 0.6), (5, 1.0)],
            &[(10, 0.6), (20, 0.5), (30, 1.0)],
            &[(0, 0.5), (10, 1.0)],
            &[(10, 1.5)],
            &[],
        ];
        for b in bad {
            let pts = b
                .iter()
                .map(|&(length, fraction)| CdfPoint { length, fraction })
                .collect();
            assert!(SizeDist::from_cdf(pts).is_err(), "{b:?}");
        }
    }

    #[test]
    fn inverse_cdf__first_point_at_or_above() {
        let d = dist(&[(10, 0.25), (20, 0.5), (30, 1.0)]);
        assert_eq!(d.inverse_cdf(0.0), 10);
        assert_eq!(d.inverse_cdf(0.25), 10);
        assert_eq!(d.inverse_cdf(0.2500001), 20);
        assert_eq!(d.inverse_cdf(0.5), 20);
        assert_eq!(d.inverse_cdf(0.75), 30);
        assert_eq!(d.inverse_cdf(1.0), 30);
        assert_eq!(d.inverse_cdf(7.0), 30);
        assert_eq!(d.cdf(9), 0.0);
        assert_eq!(d.cdf(25), 0.5);
        assert_eq!(d.cdf(30), 1.0);
    }

    #[test]
    fn mean__weights_lengths_by_probability() {
        let d = dist(&[(10, 0.25), (20, 0.5), (30, 1.0)]);
        assert!((d.mean() - (2.5 + 5.0 + 15.0)).abs() < 1e-12);
        assert_eq!(SizeDist::fixed(100).unwrap().mean(), 100.0);
        assert!((d.truncate(15).mean() - (2.5 + 0.25 * 15.0 + 0.5 * 15.0)).abs() < 1e-12);
        assert_eq!(d.truncate(15).points().len(), 2);
        assert_eq!(d.clamp_min(20).min_length(), 20);
        assert_eq!(d.clamp_min(20).points().len(), 2);
    }

    #[test]
    fn from_weights__running_fractions() {
        let d = SizeDist::from_weights(&[(1, 1.0), (2, 1.0), (3, 2.0)]).unwrap();
        let f: Vec<f64> = d.points().iter().map(|p| p.fraction).collect();
        assert_eq!(f, vec![0.25, 0.5, 1.0]);
        assert!(SizeDist::from_weights(&[(1, 0.0)]).is_err());
    }

    #[test]
    fn parse_csv__columns_by_header_and_comments() {
        let text = "# comment\nweight,length,cum_fraction\n1,10,0.5\n1,20,0.9999999999\n";
        let d = SizeDist::parse_csv(text).unwrap();
        assert_eq!(d.points()[1].fraction, 1.0);
        assert_eq!(d.max_length(), 20);
        assert!(matches!(
            SizeDist::parse_csv("length,x\n1,2\n"),
            Err(Error::MissingColumn("cum_fraction"))
        ));
        assert!(matches!(
            SizeDist::parse_csv("length,cum_fraction\n1,zz\n"),
            Err(Error::Syntax { line: 2 })
        ));
    }

    #[test]
    fn reduce__merges_by_fraction_ratio_and_cap() {
        let d = dist(&[
            (100, 0.05),
            (101, 0.1),
            (102, 0.12),
            (103, 0.25),
            (110, 0.26),
            (130, 0.27),
            (5000, 0.95),
            (9000, 1.0),
        ]);
        let r = Reduction {
            max_length: 6000,
            min_bucket_frac: 0.1,
            max_size_ratio: 1.2,
        };
        let got = |d: SizeDist| -> Vec<(u32, f64)> {
            d.points().iter().map(|p| (p.length, p.fraction)).collect()
        };
        // 100: the next length exceeds 1.2 x 0; 101 and 102 merge into 103
        // (+0.2); 110 and 130: the next length exceeds 1.2 x the last
        // emitted; 5000 on fraction; then 9000 >= 6000 caps.
        assert_eq!(
            got(d.reduce(r)),
            vec![
                (100, 0.05),
                (103, 0.25),
                (110, 0.26),
                (130, 0.27),
                (5000, 0.95),
                (6000, 1.0)
            ]
        );
        // Without the cap the tail folds into the last emitted point.
        let r = Reduction {
            max_length: 100_000,
            ..r
        };
        assert_eq!(
            got(d.reduce(r)),
            vec![
                (100, 0.05),
                (103, 0.25),
                (110, 0.26),
                (130, 0.27),
                (5000, 1.0)
            ]
        );
    }

    #[test]
    fn sample__fixed_and_range() {
        let mut rng = Rng::new(1);
        assert_eq!(SizeDist::fixed(7).unwrap().sample(&mut rng), 7);
        let d = dist(&[(10, 0.5), (20, 1.0)]);
        let n10 = (0..10_000).filter(|_| d.sample(&mut rng) == 10).count();
        assert!((4_500..5_500).contains(&n10), "{n10}");
    }
}
