//! Unscheduled priority levels for a known workload: how many of the
//! priority levels carry unscheduled bytes, and which message lengths use
//! which level.
//!
//! This is the computation of the kernel module's `homa_prio` daemon
//! (`util/homa_prio.cc`), done once from a distribution instead of from
//! measured traffic, as the Homa paper configures its simulations: "8
//! priority levels split between unscheduled and scheduled traffic in
//! proportion to their bytes, unscheduled cutoffs chosen so each level
//! carries about the same bytes". It is configuration, not protocol: the
//! result is meant to be handed to a receiver's configuration, which sends
//! it to senders in CUTOFFS packets.

use crate::dist::SizeDist;

/// How levels are split (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrioSplit {
    /// Levels in use (1..=8).
    pub num_priorities: u8,
    /// Levels for unscheduled bytes: the top `unsched_levels` levels. The
    /// rest (`num_priorities - unsched_levels`) carry scheduled bytes; the
    /// paper sets the degree of overcommitment to that number.
    pub unsched_levels: u8,
    /// Entry `i`: the largest message length whose unscheduled bytes use
    /// level `i`, in the layout of the kernel's `unsched_cutoffs` (a sender
    /// picks the highest level whose entry is at least the length). The
    /// lowest unscheduled level holds `i32::MAX` (every longer message);
    /// scheduled levels hold 0.
    pub cutoffs: [u32; 8],
}

impl PrioSplit {
    /// Levels for scheduled bytes.
    pub fn sched_levels(&self) -> u8 {
        self.num_priorities - self.unsched_levels
    }

    /// The level a sender uses for the unscheduled bytes of a message of
    /// `length` bytes.
    pub fn unsched_level(&self, length: u32) -> u8 {
        (0..self.num_priorities)
            .rev()
            .find(|&i| self.cutoffs[i as usize] >= length)
            .unwrap_or(0)
    }
}

/// Fraction of all message bytes that are unscheduled when the first
/// `unsched_bytes` of each message are sent without a grant.
pub fn unsched_fraction(dist: &SizeDist, unsched_bytes: u32) -> f64 {
    let total = dist.mean();
    let unsched = dist.expectation(|l| f64::from(l.min(unsched_bytes)));
    unsched / total
}

/// Splits `num_priorities` levels (clamped to 1..=8) for `dist`:
/// unscheduled levels in proportion to unscheduled bytes (at least one, and
/// at least one level left for scheduled bytes when there are two or more
/// levels), then cutoffs so that each unscheduled level carries about the
/// same unscheduled bytes, shortest messages on the highest level.
pub fn prio_split(dist: &SizeDist, unsched_bytes: u32, num_priorities: u8) -> PrioSplit {
    let n = num_priorities.clamp(1, 8);
    let frac = unsched_fraction(dist, unsched_bytes);
    let levels = if n == 1 {
        1
    } else {
        ((f64::from(n) * frac).round() as u8).clamp(1, n - 1)
    };
    split_with(dist, unsched_bytes, n, levels)
}

/// Like [`prio_split`] with the number of unscheduled levels given
/// (clamped to 1..=`num_priorities`).
pub fn split_with(
    dist: &SizeDist,
    unsched_bytes: u32,
    num_priorities: u8,
    unsched_levels: u8,
) -> PrioSplit {
    let n = num_priorities.clamp(1, 8);
    let levels = unsched_levels.clamp(1, n);
    let lowest = n - levels;
    let mut cutoffs = [0u32; 8];
    cutoffs[lowest as usize] = i32::MAX as u32;
    let total = dist.expectation(|l| f64::from(l.min(unsched_bytes)));
    let per_level = total / f64::from(levels);
    let mut next = n - 1;
    let mut threshold = per_level;
    let mut sum = 0.0;
    let mut prev = 0.0;
    for p in dist.points() {
        if next <= lowest {
            break;
        }
        sum += f64::from(p.length.min(unsched_bytes)) * (p.fraction - prev);
        prev = p.fraction;
        // Compare with a little slack so that rounding in the running sum
        // does not push a boundary one point too far.
        if sum >= threshold * (1.0 - 1e-9) {
            cutoffs[next as usize] = p.length;
            next -= 1;
            threshold = sum + per_level;
        }
    }
    PrioSplit {
        num_priorities: n,
        unsched_levels: levels,
        cutoffs,
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;
    use crate::builtin::Workload;
    use crate::dist::CdfPoint;

    #[test]
    fn prio_split__paper_overcommit_degrees() {
        // The paper reports a degree of overcommitment (= scheduled levels)
        // of W1 1, W2 3, W3 4, W4 7, W5 7 with RTTbytes about 10 KB. The
        // byte-proportional rule applied to the raw distributions agrees
        // for W1, W4 and W5; for W2 (77% of bytes unscheduled) and W3 (30%)
        // it gives 2 and 6. The paper does not say exactly how it counted
        // bytes; callers can override with `split_with`.
        let sched: Vec<u8> = Workload::PAPER
            .iter()
            .map(|w| prio_split(&w.raw(), 10_000, 8).sched_levels())
            .collect();
        assert_eq!(sched, vec![1, 2, 6, 7, 7]);
    }

    #[test]
    fn split_with__equal_bytes_per_level_shortest_on_top() {
        // Four equally likely sizes, all unscheduled, equal bytes per size
        // would need lengths weighted inversely; use lengths 1,2,3,4 with
        // probabilities giving equal bytes: p_i ∝ 1/l_i.
        let w = [(1u32, 12.0), (2, 6.0), (3, 4.0), (4, 3.0)];
        let d = SizeDist::from_weights(&w).unwrap();
        let s = split_with(&d, 1000, 8, 4);
        assert_eq!(s.cutoffs, [0, 0, 0, 0, i32::MAX as u32, 3, 2, 1]);
        assert_eq!(s.unsched_level(1), 7);
        assert_eq!(s.unsched_level(3), 5);
        assert_eq!(s.unsched_level(100_000), 4);
        assert_eq!(s.sched_levels(), 4);
    }

    #[test]
    fn prio_split__single_level() {
        let d = SizeDist::from_cdf(vec![CdfPoint {
            length: 100,
            fraction: 1.0,
        }])
        .unwrap();
        let s = prio_split(&d, 10_000, 1);
        assert_eq!(s.unsched_levels, 1);
        assert_eq!(s.unsched_level(5), 0);
        assert!((unsched_fraction(&d, 10) - 0.1).abs() < 1e-12);
    }
}
