//! The Homa paper's workloads W1–W5 (and the kernel benchmark's `starve`),
//! embedded from the CSV files in the repository's `workloads/` directory.
//!
//! Two forms of each workload exist, chosen with [`Variant`]:
//! * [`Variant::Raw`]: the full distribution (`<w>_raw.csv`), uncapped. The
//!   SIGCOMM 2018 simulations use it: W4 reaches 10 MB, W5 29 MB.
//! * [`Variant::CpNode`]: what the kernel module's benchmark (`cp_node`)
//!   samples: the raw distribution reduced by `dist_point_gen(w, 1000000,
//!   0.0025, 1.2)` (`<w>_cp_node.csv`), so no message exceeds 1 MB. cp_node
//!   further raises every length to at least 12 bytes (its message header);
//!   that clamp is not applied here (see [`SizeDist::clamp_min`]).

use core::fmt;
use core::str::FromStr;

use crate::dist::{Reduction, SizeDist};
use crate::Error;

/// Which form of a workload to use (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Variant {
    /// The full distribution, uncapped (the paper's simulations).
    #[default]
    Raw,
    /// The reduced CDF capped at 1 MB that the kernel benchmark samples.
    CpNode,
}

impl FromStr for Variant {
    type Err = Error;
    fn from_str(s: &str) -> Result<Variant, Error> {
        match s {
            "raw" => Ok(Variant::Raw),
            "cp_node" | "cp-node" | "capped" => Ok(Variant::CpNode),
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
            Workload::W1 => include_str!("../../../workloads/w1_raw.csv"),
            Workload::W2 => include_str!("../../../workloads/w2_raw.csv"),
            Workload::W3 => include_str!("../../../workloads/w3_raw.csv"),
            Workload::W4 => include_str!("../../../workloads/w4_raw.csv"),
            Workload::W5 => include_str!("../../../workloads/w5_raw.csv"),
            Workload::Starve => include_str!("../../../workloads/starve_raw.csv"),
        }
    }

    /// The embedded `<w>_cp_node.csv`, if the repository has one (`starve`
    /// has none: its reduction is computed).
    pub fn cp_node_csv(self) -> Option<&'static str> {
        Some(match self {
            Workload::W1 => include_str!("../../../workloads/w1_cp_node.csv"),
            Workload::W2 => include_str!("../../../workloads/w2_cp_node.csv"),
            Workload::W3 => include_str!("../../../workloads/w3_cp_node.csv"),
            Workload::W4 => include_str!("../../../workloads/w4_cp_node.csv"),
            Workload::W5 => include_str!("../../../workloads/w5_cp_node.csv"),
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
        }
    }
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
