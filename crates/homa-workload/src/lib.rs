//! # homa-workload
//!
//! Message-size distributions and arrival processes for driving Homa: the
//! SIGCOMM 2018 paper's workloads W1–W5 (plus the kernel benchmark's
//! `starve`), fixed sizes, sampling that reproduces the kernel benchmark's
//! `dist_point_gen`, means, and open-loop Poisson arrivals at a target load.
//! Used by the simulator (`homa-sim`) and the load generator of the `homa`
//! command.
//!
//! This crate only describes traffic: it sends nothing, reads no clock and
//! draws randomness only from seeds ([`Rng`]), so the same seed always gives
//! the same sizes and gaps.
//!
//! ```
//! use homa_workload::{Poisson, Rng, Variant, Workload, rate_for_load};
//!
//! let sizes = Workload::W4.dist(Variant::Raw);
//! assert!((sizes.mean() - 127_796.6).abs() < 1.0);
//! let mut rng = Rng::new(7);
//! let first = sizes.sample(&mut rng);
//! assert!(first >= 53 && first <= 10_000_000);
//!
//! // 80% of 10 Gbit/s with W4's mean message length:
//! let rate = rate_for_load(0.8, 10e9, sizes.mean());
//! let mut arrivals = Poisson::new(rate, Rng::stream(7, 1)).unwrap();
//! let gap_ns = arrivals.next_gap_nanos();
//! # let _ = gap_ns;
//! ```
//!
//! Modules: [`dist`] (distributions, sampling, reduction), [`builtin`] (the
//! embedded workloads), [`arrivals`] (Poisson process, load to rate),
//! [`cutoffs`] (unscheduled priority cutoffs for a known distribution),
//! [`rng`] (the seeded generator).

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod arrivals;
pub mod builtin;
pub mod cutoffs;
pub mod dist;
pub mod rng;

pub use arrivals::{rate_for_load, Poisson};
pub use builtin::{SizeSpec, Variant, Workload};
pub use dist::{CdfPoint, Reduction, SizeDist};
pub use rng::Rng;

/// Errors building or parsing a distribution.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The points or parameters do not form a valid distribution.
    #[error("invalid distribution: {0}")]
    Invalid(&'static str),
    /// A CSV line could not be parsed.
    #[error("syntax error on line {line}")]
    Syntax {
        /// 1-based line number.
        line: usize,
    },
    /// The CSV header lacks a required column.
    #[error("missing column {0}")]
    MissingColumn(&'static str),
    /// No workload of that name.
    #[error("unknown workload {0:?} (expected w1..w5, starve or a size in bytes)")]
    UnknownWorkload(String),
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
    }
}
