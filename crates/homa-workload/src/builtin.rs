//! The Homa paper's workloads W1–W5 (and the kernel benchmark's `starve`),
//! embedded from the CSV files in the crate's `workloads/` directory.
//!
//! Two forms of each workload exist, chosen with [`Variant`]:
//! * [`Variant::Raw`]: the full distribution (`<w>_raw.csv`), uncapped. The
//!   SIGCOMM 2018 simulations use it: W4 reaches 10 MB, W5 29 MB.
//! * [`Variant::CpNode`]: what the kernel module's benchmark (`cp_node`)
//!   samples: the raw distribution reduced by `dist_point_gen(w, 1000000,
//!   0.0025, 1.2)` (`<w>_cp_node.csv`), so no message exceeds 1 MB. cp_node
//!   further raises every length to at least 12 bytes (its message header);
//!   that clamp is not applied here (see [`SizeDist::clamp_min`]).
//! * [`Variant::Paper`]: what the paper's simulator (HomaSimulation)
//!   generates, where it differs from the kernel's tables: W1 keeps its
//!   generalized-Pareto tail (the kernel's table stops at 100 KB and puts
//!   the remaining 2.5e-7 of the messages there), and W5's lengths are whole
//!   packets of 1442 bytes (the simulator's DATA payload; the kernel's table
//!   converted packets at 1470 bytes, 1430 for the first). W2-W4 are the raw
//!   tables (the kernel's table also moves W2's 2-4 byte and W3's 3-byte
//!   messages to 8 bytes; all of them fit one minimum-size frame, so
//!   slowdowns and load are the same).

use core::fmt;
use core::str::FromStr;

use crate::dist::{CdfPoint, Reduction, SizeDist};
use crate::Error;

/// Which form of a workload to use (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Variant {
    /// The full distribution, uncapped (the paper's simulations).
    #[default]
    Raw,
    /// The reduced CDF capped at 1 MB that the kernel benchmark samples.
    CpNode,
    /// What the paper's simulator generates (W1's tail, W5 in 1442-byte
    /// packets; see the [module docs](self)).
    Paper,
}

impl FromStr for Variant {
    type Err = Error;
    fn from_str(s: &str) -> Result<Variant, Error> {
        match s {
            "raw" => Ok(Variant::Raw),
            "cp_node" | "cp-node" | "capped" => Ok(Variant::CpNode),
            "paper" => Ok(Variant::Paper),
            _ => Err(Error::UnknownWorkload(s.to_string())),
        }
    }
}

/// A named workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    /// Facebook memcached (mean 189 B, up to 100 KB).
    W1,
    /// Google search RPCs (mean 442 B, up to 3.5 MB).
    W2,
    /// All Google RPCs (mean 2.9 KB, up to 15 MB).
    W3,
    /// Facebook Hadoop (mean 128 KB, up to 10 MB).
    W4,
    /// DCTCP web search (mean 2.56 MB, up to 29 MB).
    W5,
    /// The kernel benchmark's `starve`: 100 KB–1 MB, built to starve large
    /// messages at full load.
    Starve,
}

impl Workload {
    /// Every workload, in order.
    pub const ALL: [Workload; 6] = [
        Workload::W1,
        Workload::W2,
        Workload::W3,
        Workload::W4,
        Workload::W5,
        Workload::Starve,
    ];

    /// The paper's five workloads.
    pub const PAPER: [Workload; 5] = [
        Workload::W1,
        Workload::W2,
        Workload::W3,
        Workload::W4,
        Workload::W5,
    ];

    /// Short name: `w1` … `w5`, `starve`.
    pub fn name(self) -> &'static str {
        match self {
            Workload::W1 => "w1",
            Workload::W2 => "w2",
            Workload::W3 => "w3",
            Workload::W4 => "w4",
            Workload::W5 => "w5",
            Workload::Starve => "starve",
        }
    }

    /// Where the distribution comes from.
    pub fn description(self) -> &'static str {
        match self {
            Workload::W1 => "Facebook memcached",
            Workload::W2 => "Google search RPC",
            Workload::W3 => "Google all RPCs",
            Workload::W4 => "Facebook Hadoop",
            Workload::W5 => "DCTCP web search",
            Workload::Starve => "starvation test",
        }
    }

    fn raw_csv(self) -> &'static str {
        match self {
            Workload::W1 => include_str!("../workloads/w1_raw.csv"),
            Workload::W2 => include_str!("../workloads/w2_raw.csv"),
            Workload::W3 => include_str!("../workloads/w3_raw.csv"),
            Workload::W4 => include_str!("../workloads/w4_raw.csv"),
            Workload::W5 => include_str!("../workloads/w5_raw.csv"),
            Workload::Starve => include_str!("../workloads/starve_raw.csv"),
        }
    }

    /// The embedded `<w>_cp_node.csv`, if the repository has one (`starve`
    /// has none: its reduction is computed).
    pub fn cp_node_csv(self) -> Option<&'static str> {
        Some(match self {
            Workload::W1 => include_str!("../workloads/w1_cp_node.csv"),
            Workload::W2 => include_str!("../workloads/w2_cp_node.csv"),
            Workload::W3 => include_str!("../workloads/w3_cp_node.csv"),
            Workload::W4 => include_str!("../workloads/w4_cp_node.csv"),
            Workload::W5 => include_str!("../workloads/w5_cp_node.csv"),
            Workload::Starve => return None,
        })
    }

    /// The full, uncapped distribution.
    pub fn raw(self) -> SizeDist {
        SizeDist::parse_csv(self.raw_csv()).expect("embedded workload CSVs are valid")
    }

    /// The reduced distribution capped at 1 MB that `cp_node` samples: the
    /// embedded CSV, or for `starve` the reduction computed with
    /// [`Reduction::CP_NODE`]. (The kernel's `starve` table lacks its
    /// terminator, so the kernel reads past its end; its measured mean is
    /// 526 814 B instead of 526 316 B. That bug is not reproduced.)
    pub fn cp_node(self) -> SizeDist {
        match self.cp_node_csv() {
            Some(csv) => SizeDist::parse_csv(csv).expect("embedded workload CSVs are valid"),
            None => self.raw().reduce(Reduction::CP_NODE),
        }
    }

    /// The distribution in the given form.
    pub fn dist(self, variant: Variant) -> SizeDist {
        match variant {
            Variant::Raw => self.raw(),
            Variant::CpNode => self.cp_node(),
            Variant::Paper => self.paper(),
        }
    }

    /// What the paper's simulator generates (see the [module docs](self)).
    pub fn paper(self) -> SizeDist {
        match self {
            Workload::W1 => w1_with_tail(),
            // The kernel's table: packets x 1470 bytes (1430 for one).
            Workload::W5 => self
                .raw()
                .map_lengths(|l| (l as f64 / 1470.0).round() as u32 * PAPER_PACKET_DATA),
            _ => self.raw(),
        }
    }
}

/// Message bytes per packet in the paper's simulator (1500-byte frames less
/// IP, UDP and its 30-byte unscheduled DATA header): W5's unit.
pub const PAPER_PACKET_DATA: u32 = 1442;

/// W1's tail in the paper's simulator: beyond 15 bytes (cumulative share
/// 0.47), lengths follow a generalized Pareto distribution with shape
/// `W1_TAIL_SHAPE` and scale `W1_TAIL_SCALE` bytes, rounded to whole bytes
/// and capped at `W1_TAIL_MAX`.
pub const W1_TAIL_SHAPE: f64 = 0.348238;
/// See [`W1_TAIL_SHAPE`].
pub const W1_TAIL_SCALE: f64 = 214.476;
/// See [`W1_TAIL_SHAPE`].
pub const W1_TAIL_MAX: u32 = 1 << 30;

/// W1 as the paper's simulator draws it: the kernel's table up to 15 bytes
/// (it merges 1-7 into 8, which changes nothing that is measured), then the
/// generalized Pareto tail as a table: every length up to 16 KiB exactly
/// (the probability that the rounded draw is that length), then lengths 1%
/// apart, each taking the probability of the draws rounded into the range
/// it closes (so a long message may be up to 1% longer than drawn).
fn w1_with_tail() -> SizeDist {
    let head = Workload::W1.raw();
    let (x0, y0) = (15u32, head.cdf(15));
    let cdf = |x: f64| -> f64 {
        if x <= f64::from(x0) {
            return y0;
        }
        let z = 1.0 + W1_TAIL_SHAPE * (x - f64::from(x0)) / W1_TAIL_SCALE;
        y0 + (1.0 - y0) * (1.0 - z.powf(-1.0 / W1_TAIL_SHAPE))
    };
    let mut points: Vec<CdfPoint> = head
        .points()
        .iter()
        .copied()
        .filter(|p| p.length < x0)
        .collect();
    let mut push = |length: u32, fraction: f64| points.push(CdfPoint { length, fraction });
    let mut len = x0;
    while len < W1_TAIL_MAX {
        push(len, cdf(f64::from(len) + 0.5));
        len = if len < 16_384 {
            len + 1
        } else {
            ((f64::from(len) * 1.01) as u32).min(W1_TAIL_MAX)
        };
    }
    push(W1_TAIL_MAX, 1.0);
    SizeDist::from_cdf(points).expect("the W1 tail is a valid distribution")
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Workload {
    type Err = Error;
    fn from_str(s: &str) -> Result<Workload, Error> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::UnknownWorkload(s.to_string()))
    }
}

/// What a load generator is asked to send: a named workload or a fixed
/// message size. Parses from `w1`…`w5`, `starve`, or a positive integer
/// (bytes), the syntax of the kernel benchmark's `--workload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SizeSpec {
    /// A named distribution.
    Named(Workload),
    /// Every message this many bytes.
    Fixed(u32),
}

impl SizeSpec {
    /// The distribution (the variant matters only for named workloads).
    pub fn dist(self, variant: Variant) -> SizeDist {
        match self {
            SizeSpec::Named(w) => w.dist(variant),
            SizeSpec::Fixed(n) => SizeDist::fixed(n).expect("positive fixed size"),
        }
    }

    /// `w1` … or the size in bytes.
    pub fn name(self) -> String {
        match self {
            SizeSpec::Named(w) => w.name().to_string(),
            SizeSpec::Fixed(n) => n.to_string(),
        }
    }
}

impl fmt::Display for SizeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for SizeSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<SizeSpec, Error> {
        if let Ok(n) = s.parse::<u32>() {
            return if n > 0 {
                Ok(SizeSpec::Fixed(n))
            } else {
                Err(Error::Invalid("fixed message size must be positive"))
            };
        }
        s.parse().map(SizeSpec::Named)
    }
}

impl From<Workload> for SizeSpec {
    fn from(w: Workload) -> SizeSpec {
        SizeSpec::Named(w)
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    #[test]
    fn from_str__names_and_fixed_sizes() {
        assert_eq!(
            "w4".parse::<SizeSpec>().unwrap(),
            SizeSpec::Named(Workload::W4)
        );
        assert_eq!("W1".parse::<Workload>().unwrap(), Workload::W1);
        assert_eq!("100".parse::<SizeSpec>().unwrap(), SizeSpec::Fixed(100));
        assert!("0".parse::<SizeSpec>().is_err());
        assert!("w9".parse::<SizeSpec>().is_err());
        assert_eq!("cp_node".parse::<Variant>().unwrap(), Variant::CpNode);
        assert_eq!(SizeSpec::Fixed(5).dist(Variant::Raw).mean(), 5.0);
    }

    /// The paper variant by hand: W1's Pareto tail (its survival function
    /// at 1000 bytes, its mean) and W5 in whole 1442-byte packets.
    #[test]
    fn paper__w1_tail_and_w5_packets() {
        let w1 = Workload::W1.paper();
        // Beyond a few hundred MB the remaining probability is below f64's
        // resolution: the table ends there.
        assert!(w1.max_length() <= 1 << 30 && w1.max_length() > 100_000_000);
        assert!(
            (w1.cdf(15)
                - (0.47
                    + 0.53
                        * (1.0
                            - (1.0 + W1_TAIL_SHAPE * 0.5 / W1_TAIL_SCALE)
                                .powf(-1.0 / W1_TAIL_SHAPE))))
            .abs()
                < 1e-12
        );
        // P(length > 1000) = 0.53 (1 + k (1000.5 - 15) / sigma)^(-1/k).
        let tail = 0.53 * (1.0 + W1_TAIL_SHAPE * 985.5 / W1_TAIL_SCALE).powf(-1.0 / W1_TAIL_SHAPE);
        assert!(
            (1.0 - w1.cdf(1000) - tail).abs() < 1e-12,
            "{}",
            1.0 - w1.cdf(1000)
        );
        // Mean: the head (the kernel's 8..15 bytes, 4.393 B) plus 0.53 x
        // (15 + sigma / (1 - k)). (The paper's file says 185 B: its head has
        // the 1-7 byte messages the kernel's table moved to 8.)
        let mean = 4.393 + 0.53 * (15.0 + W1_TAIL_SCALE / (1.0 - W1_TAIL_SHAPE));
        assert!(
            (w1.mean() / mean - 1.0).abs() < 0.001,
            "{} {mean}",
            w1.mean()
        );
        assert!(Workload::W1.raw().max_length() == 100_000);
        let w5 = Workload::W5.paper();
        assert!(w5.points().iter().all(|p| p.length % 1442 == 0));
        assert_eq!(w5.max_length(), 20_000 * 1442);
        assert_eq!(w5.min_length(), 1442);
        assert_eq!(Workload::W4.paper(), Workload::W4.raw());
    }

    #[test]
    fn raw__maxima_match_the_paper() {
        let max: Vec<u32> = Workload::ALL.iter().map(|w| w.raw().max_length()).collect();
        assert_eq!(
            max,
            vec![100_000, 3_529_904, 15_158_197, 10_000_000, 29_400_000, 1_000_000]
        );
        for w in Workload::ALL {
            assert!(w.cp_node().max_length() <= 1_000_000, "{w}");
        }
    }
}
