//! Unscheduled priorities: the cutoffs this endpoint, as a receiver, asks
//! its senders to use, computed from the sizes of the messages it receives.
//!
//! The kernel module needs an external daemon (`homa_prio`) that reads its
//! metrics every second and writes new cutoffs; here the same algorithm
//! (`docs/protocol.md`, "Unscheduled priorities and cutoffs") runs inside
//! the endpoint:
//!
//! 1. received message sizes go into a histogram (64-byte buckets up to
//!    4 KiB, 1 KiB buckets up to 128 KiB, then powers of two);
//! 2. per bucket, the unscheduled bytes are all its bytes if its largest
//!    message fits in `unsched_bytes`, else `count × unsched_bytes`;
//! 3. the number of unscheduled levels is the unscheduled share of all bytes
//!    times the number of levels, rounded, at least 1 and (unless every byte
//!    is unscheduled) at most one less than the number of levels;
//! 4. walking the buckets from small to large, each time the running sum of
//!    unscheduled bytes passes another `1/levels` of the total, the next
//!    lower level's cutoff is set to the bucket's size, so each unscheduled
//!    level carries about the same bytes; the lowest unscheduled level takes
//!    everything larger.
//!
//! Steps 2-4 are [`unsched_split`], public so that tools configuring
//! cutoffs for a known distribution (the simulator, the workload crate)
//! compute them the same way.
//!
//! Cutoffs are computed first after `cutoffs_first_messages` messages (the
//! defaults suit only configurations near the kernel's 40 kB of unscheduled
//! bytes), then recomputed after every `cutoffs_min_messages`; a new
//! version is published only if they moved enough (sum of relative changes
//! at least 1, as the daemon's `--min-drift`). Senders learn them through
//! CUTOFFS packets (see the receive path). A fixed configuration
//! (`Config::unsched_cutoffs`) disables the computation.

use crate::wire::MAX_PRIORITIES;

/// Cutoff marking "this level takes every larger message".
pub const CUTOFF_ALL: u32 = i32::MAX as u32;

/// Cutoffs at or above this mark the lowest unscheduled level (the kernel's
/// convention, since its messages never exceed 1 000 000 bytes).
pub const LOWEST_UNSCHED_MARK: u32 = 1_000_000;

/// The kernel's default cutoffs, with the lowest unscheduled level widened
/// to admit every message length we accept.
pub const DEFAULT_CUTOFFS: [u32; MAX_PRIORITIES] = [0, 0, 0, 0, CUTOFF_ALL, 15_000, 2_800, 200];

/// Upper bounds of the histogram buckets.
fn bucket_bounds() -> Vec<u32> {
    let mut v: Vec<u32> = (1..=64).map(|i| i * 64).collect();
    v.extend((5..=128).map(|i| i * 1024));
    let mut b = 256 * 1024;
    while b < CUTOFF_ALL {
        v.push(b);
        b = b.saturating_mul(2);
    }
    v.push(CUTOFF_ALL);
    v
}

/// Message-size histogram: count and bytes per bucket.
#[derive(Debug, Clone)]
pub(crate) struct SizeHistogram {
    bounds: Vec<u32>,
    count: Vec<u64>,
    bytes: Vec<u64>,
    total: u64,
}

impl Default for SizeHistogram {
    fn default() -> Self {
        let bounds = bucket_bounds();
        let n = bounds.len();
        SizeHistogram {
            bounds,
            count: vec![0; n],
            bytes: vec![0; n],
            total: 0,
        }
    }
}

impl SizeHistogram {
    /// Counts one message of `len` bytes.
    pub(crate) fn add(&mut self, len: u32) {
        let i = self.bucket(len);
        self.count[i] += 1;
        self.bytes[i] += len as u64;
        self.total += 1;
    }

    /// The bucket of a message of `len` bytes: the first whose bound is
    /// at least `len` (the last for anything longer). Computed directly
    /// for the evenly spaced buckets up to 128 KiB (every message of a
    /// small-RPC workload), searched beyond.
    #[inline]
    fn bucket(&self, len: u32) -> usize {
        let l = len as usize;
        if l <= 64 * 64 {
            l.max(1).div_ceil(64) - 1
        } else if l <= 128 * 1024 {
            64 + l.div_ceil(1024) - 5
        } else {
            let i = self.bounds.partition_point(|&b| b < len);
            i.min(self.bounds.len() - 1)
        }
    }

    /// Messages counted.
    pub(crate) fn messages(&self) -> u64 {
        self.total
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        self.count.iter_mut().for_each(|c| *c = 0);
        self.bytes.iter_mut().for_each(|c| *c = 0);
        self.total = 0;
    }

    /// Cutoffs that give each unscheduled level about the same bytes
    /// (module docs, steps 2-4), by [`unsched_split`].
    pub(crate) fn cutoffs(&self, num_priorities: u8, unsched_bytes: u32) -> [u32; MAX_PRIORITIES] {
        let buckets: Vec<SizeBucket> = (0..self.bounds.len())
            .filter(|&i| self.count[i] > 0)
            .map(|i| SizeBucket {
                upper: self.bounds[i],
                messages: self.count[i] as f64,
                bytes: self.bytes[i] as f64,
            })
            .collect();
        unsched_split(&buckets, unsched_bytes, num_priorities, None).cutoffs
    }
}

/// Messages of a size distribution whose lengths fall in one bucket: at
/// most `upper` bytes (and more than the previous bucket's `upper`). The
/// counts may be probabilities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizeBucket {
    /// Longest length in the bucket.
    pub upper: u32,
    /// Messages (or their probability).
    pub messages: f64,
    /// Their bytes (or expected bytes).
    pub bytes: f64,
}

/// How the priority levels are split between unscheduled and scheduled
/// bytes, and which lengths use which unscheduled level (see
/// [`unsched_split`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnschedSplit {
    /// Levels in use (1..=8).
    pub num_priorities: u8,
    /// Levels for unscheduled bytes: the top `unsched_levels` levels.
    pub unsched_levels: u8,
    /// `Config::unsched_cutoffs` layout: entry `i` is the longest message
    /// whose unscheduled bytes use level `i`; the lowest unscheduled level
    /// (and any the walk did not reach) holds [`CUTOFF_ALL`]; scheduled
    /// levels hold 0. Assigned cutoffs stay below [`LOWEST_UNSCHED_MARK`].
    pub cutoffs: [u32; MAX_PRIORITIES],
}

impl UnschedSplit {
    /// Levels for scheduled bytes; the paper sets the degree of
    /// overcommitment to it.
    pub fn sched_levels(&self) -> u8 {
        self.num_priorities - self.unsched_levels
    }

    /// The level a sender uses for the unscheduled bytes of a message of
    /// `length` bytes: the highest whose cutoff admits it.
    pub fn unsched_level(&self, length: u32) -> u8 {
        (0..self.num_priorities)
            .rev()
            .find(|&i| self.cutoffs[i as usize] >= length)
            .unwrap_or(0)
    }
}

/// The unscheduled-priority algorithm of the kernel's `homa_prio` daemon,
/// the one place it is written: `buckets` (increasing `upper`) describe the
/// received (or expected) message sizes. A message's unscheduled bytes are
/// `min(length, unsched_bytes)` (for a bucket: all its bytes if `upper`
/// fits, else at most `messages × unsched_bytes`).
///
/// * Unscheduled levels: `unsched_levels` if given (clamped to
///   1..=`num_priorities`), else the unscheduled share of all bytes times the
///   levels, rounded, at least 1 and at most one less than the levels
///   (unless every byte is unscheduled: then all of them).
/// * Cutoffs: walking the buckets from short to long, each time the running
///   sum of unscheduled bytes reaches another `1/levels` of their total, the
///   next lower level's cutoff is the bucket's `upper`; the lowest
///   unscheduled level takes every longer message.
///
/// Sums are in `f64` (the endpoint's histogram used integer sums with a
/// threshold one byte higher; a boundary can move one bucket only when a
/// running sum lands exactly on a level's share).
pub fn unsched_split(
    buckets: &[SizeBucket],
    unsched_bytes: u32,
    num_priorities: u8,
    unsched_levels: Option<u8>,
) -> UnschedSplit {
    let n = num_priorities.clamp(1, MAX_PRIORITIES as u8) as usize;
    let unsched_of = |b: &SizeBucket| -> f64 {
        if b.upper <= unsched_bytes {
            b.bytes
        } else {
            b.bytes.min(b.messages * f64::from(unsched_bytes))
        }
    };
    let total: f64 = buckets.iter().map(|b| b.bytes).sum();
    let unsched_total: f64 = buckets.iter().map(unsched_of).sum();
    let mut out = [0u32; MAX_PRIORITIES];
    let levels = match unsched_levels {
        Some(l) => (l as usize).clamp(1, n),
        None if n == 1 || total <= 0.0 => 1,
        None if unsched_total >= total => n,
        None => ((n as f64 * unsched_total / total).round() as usize).clamp(1, n - 1),
    };
    let lowest = n - levels;
    let per_level = unsched_total / levels as f64;
    let mut next = n - 1;
    let mut threshold = per_level;
    let mut sum = 0.0;
    for b in buckets {
        if next <= lowest {
            break;
        }
        sum += unsched_of(b);
        // A little slack so that rounding in the running sum does not push
        // a boundary one bucket too far.
        if sum >= threshold * (1.0 - 1e-9) {
            out[next] = b.upper.min(LOWEST_UNSCHED_MARK - 1);
            next -= 1;
            threshold = sum + per_level;
        }
    }
    // The lowest unscheduled level (and any level the walk did not reach)
    // takes every longer message.
    for c in out.iter_mut().take(next + 1).skip(lowest) {
        *c = CUTOFF_ALL;
    }
    UnschedSplit {
        num_priorities: n as u8,
        unsched_levels: levels as u8,
        cutoffs: out,
    }
}

/// Highest level used for scheduled packets under these cutoffs: one below
/// the lowest unscheduled level (0 if every level is unscheduled).
pub fn max_sched_prio(cutoffs: &[u32; MAX_PRIORITIES], num_priorities: u8) -> u8 {
    let top = num_priorities.max(1) as usize - 1;
    for i in (0..=top).rev() {
        if cutoffs[i] >= LOWEST_UNSCHED_MARK {
            return i.saturating_sub(1) as u8;
        }
    }
    0
}

/// Normalises configured cutoffs: levels beyond `num_priorities` unused,
/// level 0 admits everything, and the kernel's 1 000 000 marker widened so
/// longer messages (we accept up to 2^31 - 1 bytes) stay on that level.
pub fn normalise(cutoffs: [u32; MAX_PRIORITIES], num_priorities: u8) -> [u32; MAX_PRIORITIES] {
    let mut c = cutoffs;
    for (i, v) in c.iter_mut().enumerate() {
        if i >= num_priorities as usize {
            *v = 0;
        } else if *v >= LOWEST_UNSCHED_MARK {
            *v = CUTOFF_ALL;
        }
    }
    c[0] = CUTOFF_ALL;
    c
}

/// How far apart two sets of cutoffs are: the sum over levels of the
/// relative change.
pub fn drift(old: &[u32; MAX_PRIORITIES], new: &[u32; MAX_PRIORITIES]) -> f64 {
    old.iter()
        .zip(new)
        .map(|(&a, &b)| {
            if a == b {
                0.0
            } else {
                (a as f64 - b as f64).abs() / (a.max(b) as f64).max(1.0)
            }
        })
        .sum()
}

/// The receiver's priority state: current cutoffs and their version.
#[derive(Debug, Clone)]
pub struct Prio {
    /// Current cutoffs (what CUTOFFS packets carry).
    pub cutoffs: [u32; MAX_PRIORITIES],
    /// Their version (starts at 1; 0 means "none" on the wire).
    pub version: u16,
    /// Highest level used for scheduled data.
    pub max_sched_prio: u8,
    auto: bool,
    /// Messages the next computation waits for: `cutoffs_first_messages`
    /// before the first, `cutoffs_min_messages` after.
    due: u64,
    hist: SizeHistogram,
}

impl Prio {
    /// The initial state for a configuration: fixed cutoffs if configured,
    /// else the kernel's defaults until enough messages were observed.
    pub fn new(config: &crate::Config) -> Prio {
        let fixed = config.unsched_cutoffs;
        let cutoffs = normalise(fixed.unwrap_or(DEFAULT_CUTOFFS), config.num_priorities);
        Prio {
            cutoffs,
            version: 1,
            max_sched_prio: max_sched_prio(&cutoffs, config.num_priorities),
            auto: fixed.is_none(),
            due: u64::from(
                config
                    .cutoffs_first_messages
                    .min(config.cutoffs_min_messages),
            ),
            hist: SizeHistogram::default(),
        }
    }

    /// Records a received message; recomputes the cutoffs when enough
    /// messages were seen. Returns true if a new version was published.
    #[inline]
    pub fn observe(&mut self, len: u32, config: &crate::Config) -> bool {
        if !self.auto {
            return false;
        }
        self.hist.add(len);
        if self.hist.messages() < self.due {
            return false;
        }
        self.due = u64::from(config.cutoffs_min_messages);
        let new = normalise(
            self.hist
                .cutoffs(config.num_priorities, config.unsched_bytes),
            config.num_priorities,
        );
        self.hist.clear();
        if drift(&self.cutoffs, &new) < 1.0 {
            return false;
        }
        self.cutoffs = new;
        self.version = self.version.wrapping_add(1).max(1);
        self.max_sched_prio = max_sched_prio(&new, config.num_priorities);
        true
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    #[test]
    fn size_histogram_bucket__same_as_searching_the_bounds() {
        let h = SizeHistogram::default();
        let search = |len: u32| {
            h.bounds
                .partition_point(|&b| b < len)
                .min(h.bounds.len() - 1)
        };
        let mut lens: Vec<u32> = (0..=140_000).collect();
        lens.extend([
            262_143,
            262_144,
            262_145,
            1 << 20,
            CUTOFF_ALL - 1,
            CUTOFF_ALL,
            u32::MAX,
        ]);
        for len in lens {
            assert_eq!(h.bucket(len), search(len), "length {len}");
        }
    }

    #[test]
    fn max_sched_prio__default_cutoffs_leave_levels_0_to_3() {
        assert_eq!(max_sched_prio(&DEFAULT_CUTOFFS, 8), 3);
        let all_unsched = [CUTOFF_ALL, 100, 200, 300, 400, 500, 600, 700];
        assert_eq!(max_sched_prio(&all_unsched, 8), 0);
    }

    #[test]
    fn normalise__share_lowest_priority() {
        let c = normalise([0, 0, 0, 0, 1_000_000, 15_000, 2_800, 200], 8);
        assert_eq!(c[4], CUTOFF_ALL);
        assert_eq!(c[0], CUTOFF_ALL);
        let c = normalise(DEFAULT_CUTOFFS, 4);
        assert_eq!(&c[4..], &[0, 0, 0, 0]);
    }

    #[test]
    fn cutoffs__all_small_messages_use_every_level() {
        let mut h = SizeHistogram::default();
        for len in 1..=1000u32 {
            h.add(len);
        }
        let c = h.cutoffs(8, 10_000);
        // Every message is unscheduled: no scheduled level is left, and the
        // assigned levels split the sizes in increasing order from the top.
        assert_eq!(
            max_sched_prio(&c, 8) as usize,
            c.iter()
                .rposition(|&x| x == CUTOFF_ALL)
                .unwrap()
                .saturating_sub(1)
        );
        assert_eq!(c[0], CUTOFF_ALL);
        let assigned: Vec<u32> = c.iter().copied().filter(|&x| x != CUTOFF_ALL).collect();
        assert!(assigned.len() >= 4, "{c:?}");
        for w in assigned.windows(2) {
            assert!(w[0] > w[1], "{c:?}");
        }
    }

    #[test]
    fn cutoffs__large_messages_leave_scheduled_levels() {
        let mut h = SizeHistogram::default();
        for _ in 0..100 {
            h.add(100);
            h.add(1_000_000);
        }
        let c = h.cutoffs(8, 10_000);
        // 100 small messages (10 KB) vs 100 × 10 KB unscheduled of the large
        // ones: about 2% unscheduled → one unscheduled level.
        assert_eq!(c[7], CUTOFF_ALL);
        assert_eq!(max_sched_prio(&c, 8), 6);
    }

    #[test]
    fn unsched_split__equal_bytes_per_level_shortest_on_top() {
        // Lengths 1..4 with probabilities making every length carry the
        // same bytes: one level each, shortest on top.
        let b: Vec<SizeBucket> = [(1u32, 12.0), (2, 6.0), (3, 4.0), (4, 3.0)]
            .iter()
            .map(|&(l, w)| SizeBucket {
                upper: l,
                messages: w / 25.0,
                bytes: f64::from(l) * w / 25.0,
            })
            .collect();
        let s = unsched_split(&b, 1000, 8, Some(4));
        assert_eq!(s.cutoffs, [0, 0, 0, 0, CUTOFF_ALL, 3, 2, 1]);
        assert_eq!((s.unsched_level(1), s.unsched_level(3)), (7, 5));
        assert_eq!(s.unsched_level(100_000), 4);
        assert_eq!(s.sched_levels(), 4);
        // All bytes unscheduled and no count given: every level.
        assert_eq!(unsched_split(&b, 1000, 8, None).unsched_levels, 8);
        // One level: everything at level 0.
        let one = unsched_split(&b, 1000, 1, None);
        assert_eq!((one.unsched_levels, one.unsched_level(3)), (1, 0));
    }

    #[test]
    fn unsched_split__cutoffs_stay_below_the_lowest_mark() {
        let b = [
            SizeBucket {
                upper: 2_000_000,
                messages: 1.0,
                bytes: 2e6,
            },
            SizeBucket {
                upper: 4_000_000,
                messages: 1.0,
                bytes: 4e6,
            },
        ];
        let s = unsched_split(&b, 10_000_000, 8, Some(2));
        assert_eq!(s.cutoffs[7], LOWEST_UNSCHED_MARK - 1);
        assert_eq!(s.cutoffs[6], CUTOFF_ALL);
    }

    /// A receiver's first cutoffs come after `cutoffs_first_messages`, not
    /// after the `cutoffs_min_messages` every later recomputation waits for:
    /// a receiver serving 150 messages a second would otherwise keep the
    /// defaults (sized for 40 kB of unscheduled bytes) for its first seven
    /// seconds.
    #[test]
    fn observe__first_cutoffs_after_the_first_count_then_every_min_count() {
        let config = crate::Config {
            unsched_bytes: 1500,
            ..crate::Config::default()
        };
        assert!(config.cutoffs_first_messages < config.cutoffs_min_messages);
        let mut p = Prio::new(&config);
        // Mostly short messages, every tenth a long one: almost every byte
        // is scheduled, so the computed split has one unscheduled level.
        let len = |i: u32| if i % 10 == 9 { 500_000 } else { 500 };
        let first = config.cutoffs_first_messages;
        for i in 0..first - 1 {
            assert!(!p.observe(len(i), &config), "message {i}");
        }
        assert!(
            p.observe(len(first - 1), &config),
            "published at the first count"
        );
        assert_eq!(
            (p.version, p.cutoffs[7]),
            (2, CUTOFF_ALL),
            "{:?}",
            p.cutoffs
        );
        assert_eq!(p.max_sched_prio, 6);
        // The next recomputation needs the full count again; a different mix
        // (every message short) shows when it happens.
        for i in 0..config.cutoffs_min_messages - 1 {
            assert!(!p.observe(100 + i % 1000, &config), "message {i}");
        }
        assert!(p.observe(100, &config), "recomputed at the full count");
        assert_eq!(p.version, 3);
        assert_eq!(p.max_sched_prio, 0, "{:?}", p.cutoffs);
    }

    #[test]
    fn drift__sums_relative_changes() {
        assert_eq!(drift(&DEFAULT_CUTOFFS, &DEFAULT_CUTOFFS), 0.0);
        let mut b = DEFAULT_CUTOFFS;
        b[7] = 100;
        assert!((drift(&DEFAULT_CUTOFFS, &b) - 0.5).abs() < 1e-9);
    }
}
