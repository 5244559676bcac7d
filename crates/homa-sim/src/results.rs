//! What an experiment measured: slowdown by message size, the shortest
//! messages' tail, utilisation, switch buffers, conservation counters.
//!
//! Slowdown of a message = its completion time / its completion time on an
//! unloaded network ([`crate::analytic`]; which formula is the run's
//! [`Slowdown`](crate::config::Slowdown) setting).
//!
//! # Streaming statistics
//!
//! Nothing is kept per message: every completed message goes into
//! HdrHistograms (3 significant digits, fixed ranges: slowdowns up to
//! 100 000, times up to 1000 s) of its size bucket, of the
//! shortest 10% and of all messages, one for slowdown (recorded in
//! thousandths) and one for completion time (nanoseconds), plus a count
//! and a sum for the mean. Memory is a few megabytes whatever the run's
//! length. Percentiles are HdrHistogram's `value_at_quantile` (the smallest
//! recorded value, at the histogram's resolution, that at least `q` of the
//! values do not exceed), the convention of the `homa` command's statistics
//! too.
//!
//! # Incomplete messages
//!
//! A measured message that has not completed when the run ends is counted
//! in its bucket as incomplete (count and bytes), *and* recorded in the
//! percentiles with its age at the end of the run as its completion time:
//! a lower bound of its slowdown. Leaving it out would report the tail of
//! the messages that were lucky enough to finish.
//!
//! # Size buckets and the shortest 10%
//!
//! Size buckets follow the paper's plots, whose x axis is linear in the
//! number of messages: bucket boundaries are the workload's message-count
//! quantiles 10%, 20%, ..., 90%, 95%, 99% and 100% (merged where equal), so
//! every bucket holds a known share of the messages.
//!
//! The shortest 10% are the messages shorter than the workload's 10%
//! quantile, plus, of those exactly at it, a share drawn by a hash of the
//! message's creation number so that the expected total is 10% of the
//! messages ([`ShortRule`]).

use hdrhistogram::Histogram;
use homa_proto::Rng;
use homa_workload::SizeDist;

use crate::time::{Ps, PS_PER_NS};

/// One completed, measured message (kept only when asked for, see
/// `RunParams::keep_samples`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Creation order of the message.
    pub id: u64,
    /// Message (request) length in bytes.
    pub size: u32,
    /// Completion time.
    pub time: Ps,
    /// Unloaded completion time.
    pub ideal: Ps,
}

impl Sample {
    /// Completion time over unloaded completion time.
    pub fn slowdown(&self) -> f64 {
        self.time as f64 / self.ideal as f64
    }
}

/// Statistics of a set of messages.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    /// Number of messages.
    pub count: u64,
    /// Median slowdown.
    pub p50: f64,
    /// 99th-percentile slowdown.
    pub p99: f64,
    /// 99.9th-percentile slowdown.
    pub p999: f64,
    /// Mean slowdown.
    pub mean: f64,
    /// Median completion time, µs.
    pub p50_us: f64,
    /// 99th-percentile completion time, µs.
    pub p99_us: f64,
}

/// Streaming distribution of slowdowns and completion times.
#[derive(Debug, Clone)]
pub struct Dist {
    slowdown: Histogram<u64>,
    time: Histogram<u64>,
    count: u64,
    sum: f64,
}

/// Largest slowdown recorded, in thousandths (larger ones are recorded as
/// this): 100 000.
const MAX_SLOWDOWN: u64 = 100_000_000;
/// Largest completion time recorded, ns (larger ones are recorded as this):
/// 1000 s.
const MAX_TIME_NS: u64 = 1_000_000_000_000;

impl Default for Dist {
    fn default() -> Dist {
        let h = |max| Histogram::new_with_bounds(1, max, 3).expect("valid bounds");
        Dist {
            slowdown: h(MAX_SLOWDOWN),
            time: h(MAX_TIME_NS),
            count: 0,
            sum: 0.0,
        }
    }
}

impl Dist {
    /// Records one message: its completion time and unloaded time.
    pub fn record(&mut self, time: Ps, ideal: Ps) {
        let slowdown = time as f64 / ideal.max(1) as f64;
        self.slowdown
            .saturating_record(((slowdown * 1000.0).round() as u64).max(1));
        self.time.saturating_record((time / PS_PER_NS).max(1));
        self.count += 1;
        self.sum += slowdown;
    }

    /// Messages recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Percentiles and mean (see the [module docs](self)).
    pub fn summary(&self) -> Summary {
        if self.count == 0 {
            return Summary::default();
        }
        let s = |q: f64| self.slowdown.value_at_quantile(q) as f64 / 1000.0;
        let t = |q: f64| self.time.value_at_quantile(q) as f64 / 1000.0;
        Summary {
            count: self.count,
            p50: s(0.5),
            p99: s(0.99),
            p999: s(0.999),
            mean: self.sum / self.count as f64,
            p50_us: t(0.5),
            p99_us: t(0.99),
        }
    }
}

/// Messages in a size range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Sizes above this (bytes)...
    pub above: u32,
    /// ...up to and including this.
    pub upto: u32,
    /// Share of the workload's messages in the bucket.
    pub share: f64,
    /// Their slowdowns (incomplete messages included at their age).
    pub stats: Summary,
    /// Measured messages still incomplete at the end of the run.
    pub incomplete: u64,
    /// Their bytes (message lengths).
    pub incomplete_bytes: u64,
}

/// The message-count quantiles used as bucket boundaries.
pub const BUCKET_QUANTILES: [f64; 12] =
    [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0];

/// Bucket upper bounds for a distribution (distinct, increasing).
pub fn bucket_bounds(dist: &SizeDist) -> Vec<u32> {
    let mut out: Vec<u32> = BUCKET_QUANTILES.iter().map(|&q| dist.quantile(q)).collect();
    out.dedup();
    out
}

/// Which messages make up the shortest 10% (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShortRule {
    /// The workload's 10% quantile: shorter messages are all in.
    pub size: u32,
    /// Share of the messages of exactly `size` bytes that are in.
    pub at_size: f64,
}

impl ShortRule {
    /// The rule for `fraction` (0.1) of `dist`'s messages.
    pub fn new(dist: &SizeDist, fraction: f64) -> ShortRule {
        let size = dist.quantile(fraction);
        let below = if size > 0 { dist.cdf(size - 1) } else { 0.0 };
        let at = dist.cdf(size) - below;
        let at_size = if at > 0.0 {
            ((fraction - below) / at).clamp(0.0, 1.0)
        } else {
            1.0
        };
        ShortRule { size, at_size }
    }

    /// True if message number `id` of `size` bytes is among the shortest.
    pub fn contains(&self, id: u64, size: u32) -> bool {
        size < self.size
            || (size == self.size && Rng::new(id ^ 0x5851_F42D_4C95_7F2D).next_f64() < self.at_size)
    }
}

/// Every measured message's statistics, by bucket and overall, under the
/// run's slowdown formula and (shortest 10% and all only) the other one.
#[derive(Debug, Clone)]
pub struct Stats {
    bounds: Vec<u32>,
    buckets: Vec<Dist>,
    incomplete: Vec<(u64, u64)>,
    short_rule: ShortRule,
    short: Dist,
    all: Dist,
    short_alt: Dist,
    all_alt: Dist,
}

impl Stats {
    /// Empty statistics for `dist`'s buckets.
    pub fn new(dist: &SizeDist) -> Stats {
        let bounds = bucket_bounds(dist);
        Stats {
            buckets: vec![Dist::default(); bounds.len()],
            incomplete: vec![(0, 0); bounds.len()],
            bounds,
            short_rule: ShortRule::new(dist, 0.1),
            short: Dist::default(),
            all: Dist::default(),
            short_alt: Dist::default(),
            all_alt: Dist::default(),
        }
    }

    fn bucket(&self, size: u32) -> usize {
        self.bounds
            .partition_point(|&b| b < size)
            .min(self.bounds.len() - 1)
    }

    /// Records message `id` of `size` bytes that took `time` (unloaded:
    /// `ideal` under the run's formula, `alt` under the other). An
    /// incomplete message is recorded with its age and counted as such.
    pub fn record(&mut self, id: u64, size: u32, time: Ps, ideal: Ps, alt: Ps, complete: bool) {
        let b = self.bucket(size);
        self.buckets[b].record(time, ideal);
        if !complete {
            self.incomplete[b].0 += 1;
            self.incomplete[b].1 += u64::from(size);
        }
        self.all.record(time, ideal);
        self.all_alt.record(time, alt);
        if self.short_rule.contains(id, size) {
            self.short.record(time, ideal);
            self.short_alt.record(time, alt);
        }
    }

    /// Messages recorded (complete or not).
    pub fn count(&self) -> u64 {
        self.all.count()
    }

    /// The buckets' summaries.
    pub fn buckets(&self, dist: &SizeDist) -> Vec<Bucket> {
        let mut above = 0;
        self.bounds
            .iter()
            .enumerate()
            .map(|(i, &upto)| {
                let b = Bucket {
                    above,
                    upto,
                    share: dist.cdf(upto) - if above == 0 { 0.0 } else { dist.cdf(above) },
                    stats: self.buckets[i].summary(),
                    incomplete: self.incomplete[i].0,
                    incomplete_bytes: self.incomplete[i].1,
                };
                above = upto;
                b
            })
            .collect()
    }

    /// The rule choosing the shortest 10%.
    pub fn short_rule(&self) -> ShortRule {
        self.short_rule
    }

    /// Shortest 10%, all messages; then the same under the other formula.
    pub fn summaries(&self) -> [Summary; 4] {
        [
            self.short.summary(),
            self.all.summary(),
            self.short_alt.summary(),
            self.all_alt.summary(),
        ]
    }
}

/// Message counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Messages {
    /// Created during the run.
    pub generated: u64,
    /// Created before the end of the warm-up: not measured.
    pub warmup: u64,
    /// Created after the warm-up (measured).
    pub measured: u64,
    /// Measured and completed.
    pub completed: u64,
    /// Measured and not completed when the run ended (counted in the
    /// percentiles at their age, see the [module docs](self)).
    pub incomplete: u64,
    /// Their bytes.
    pub incomplete_bytes: u64,
    /// RPCs that failed (any).
    pub failed: u64,
}

/// Link utilisation in the measurement window (from the end of the
/// warm-up to the end of arrivals), over all host downlinks.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Utilization {
    /// Target load given in the configuration (in the run's load model).
    pub offered: f64,
    /// Load actually generated in the window: DATA wire bytes of the
    /// messages created in it (requests and responses) over the capacity.
    /// Differs from `offered` by sampling noise, which heavy tails make
    /// large over short windows, and by the load model (the paper's counts
    /// GRANTs and its own header sizes).
    pub generated: f64,
    /// Fraction of downlink capacity used by DATA packets, headers and
    /// framing included (comparable with `generated`).
    pub data: f64,
    /// What the ideal reference (every downlink a work-conserving queue
    /// fed directly by its messages, see `ideal.rs`) carries in the window
    /// for the same arrivals: the most any scheduler could carry. Below
    /// `generated` while the workload's steady backlog builds up.
    pub ideal: f64,
    /// What the matching reference (global SRPT, greedy maximal matching
    /// of senders to receivers, see `ideal.rs`) carries in the window.
    pub greedy: f64,
    /// Fraction used by all packets (DATA and control).
    pub total: f64,
    /// Fraction carrying message bytes only.
    pub goodput: f64,
    /// Fraction of downlink time idle while the host had a partially
    /// received message (bandwidth the receivers left unused although a
    /// sender had bytes for them: the paper's "wasted bandwidth").
    pub wasted: f64,
    /// Part of `wasted` during which the host had granted bytes not yet
    /// received: the senders had permission but were sending something
    /// else (or the bytes were upstream). The rest of `wasted` is time with
    /// nothing granted outstanding: the receiver was not granting.
    pub wasted_granted: f64,
}

/// Why receivers' downlinks sat idle with granted bytes outstanding: the
/// idle downlinks are sampled every 5 µs of the measurement window
/// and each sample is put in the first class that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IdleCauses {
    /// Samples of host downlinks (all hosts, every sampling instant).
    pub samples: u64,
    /// Samples with the downlink idle and granted bytes outstanding.
    pub idle: u64,
    /// DATA for the host was in the network (a NIC, a queue, a link).
    pub in_network: u64,
    /// Of `in_network`: some of it waited in a ToR uplink or aggregation
    /// queue.
    pub queued_in_fabric: u64,
    /// Nothing in the network; a sender held granted bytes for the host
    /// while its NIC was sending something else.
    pub sender_busy: u64,
    /// Of `sender_busy`: the sender was sending to a host whose downlink
    /// had a queue (its bytes only lengthened that queue).
    pub sender_feeding_queue: u64,
    /// Of `sender_busy`: by the priority of the packet the sender was
    /// sending.
    pub sender_busy_prio: [u64; 8],
    /// A sender held granted bytes with its NIC idle (its pacer held them).
    pub sender_idle: u64,
    /// The senders had sent everything they knew was granted: a GRANT was
    /// still on its way to them.
    pub grant_in_transit: u64,
    /// None of the above.
    pub other: u64,
    /// Samples with the downlink idle, nothing partially received, while a
    /// sender had a message for the host that it had not started sending:
    /// work existed but the host could not know of it.
    pub idle_unknown_work: u64,
    /// Idle samples in which some sender had a message for the host that it
    /// had not started sending (the host could not know of it).
    pub unstarted_message: u64,
    /// Idle samples in which the host had an incoming message needing
    /// grants that was not among those it granted to.
    pub inactive_candidate: u64,
    /// Idle samples by the number of distinct senders with granted bytes
    /// outstanding for the host (index 8: 8 or more).
    pub senders: [u64; 9],
}

/// Protocol activity summed over all endpoints (from homa-proto's stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProtocolCounters {
    /// GRANT packets.
    pub grants: u64,
    /// Of which FIFO grants.
    pub fifo_grants: u64,
    /// DATA packets retransmitted.
    pub data_retransmitted: u64,
    /// RESEND packets (silence and fast recovery).
    pub resends: u64,
    /// RPCs abandoned after a timeout.
    pub timeouts: u64,
    /// NEED_ACK packets.
    pub need_acks: u64,
    /// CUTOFFS packets.
    pub cutoffs_sent: u64,
    /// DATA beyond the grant (dropped by the receiver).
    pub beyond_grant: u64,
    /// Packets refused or grants deferred for lack of receive memory.
    pub no_buffer_space: u64,
    /// DATA packets that carried nothing new.
    pub duplicate_data: u64,
    /// Sends refused by a socket's send cap (the application then waits).
    pub sends_blocked: u64,
    /// Time paced data waited for the link (pacer), ns, summed over hosts.
    pub throttled_nanos: u64,
}

/// Switch buffer occupancy (bytes waiting in output queues).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Buffers {
    /// Largest occupancy of any ToR's shared buffer.
    pub max_tor: u64,
    /// Largest occupancy of any aggregation switch's shared buffer.
    pub max_agg: u64,
    /// Largest queue of a single ToR port towards a host.
    pub max_downlink_queue: u64,
    /// Largest queue of a single ToR port towards an aggregation switch.
    pub max_uplink_queue: u64,
    /// Largest queue of a single aggregation port towards a ToR.
    pub max_agg_queue: u64,
    /// Largest NIC queue of any host.
    pub max_nic_queue: u64,
}

/// Packet conservation: `injected = delivered + dropped + in_flight`, in
/// packets and in Homa bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Conservation {
    /// Packets handed by endpoints to their NICs.
    pub injected_packets: u64,
    /// Their Homa bytes.
    pub injected_bytes: u64,
    /// Packets handed to endpoints.
    pub delivered_packets: u64,
    /// Their bytes.
    pub delivered_bytes: u64,
    /// Packets dropped by switches.
    pub dropped_packets: u64,
    /// Their bytes.
    pub dropped_bytes: u64,
    /// Packets still queued or on a link when the run ended.
    pub in_flight_packets: u64,
    /// Their bytes.
    pub in_flight_bytes: u64,
}

impl Conservation {
    /// True if every injected packet and byte is accounted for.
    pub fn balanced(&self) -> bool {
        self.injected_packets
            == self.delivered_packets + self.dropped_packets + self.in_flight_packets
            && self.injected_bytes
                == self.delivered_bytes + self.dropped_bytes + self.in_flight_bytes
    }
}

/// Everything one run measured. Contains no wall-clock quantity, so the
/// same configuration gives identical results.
#[derive(Debug, Clone, PartialEq)]
pub struct Results {
    /// The profile the configuration started from (`linux` or `paper`).
    pub profile: String,
    /// Workload name (`w1`... or a size).
    pub workload: String,
    /// `raw`, `cp_node` or `paper`.
    pub variant: String,
    /// `one-way`, `request` or `rpc`.
    pub mode: String,
    /// How the load was counted (`data` or `paper`).
    pub load_model: String,
    /// The slowdown formula (`analytic` or `paper`) and the other one the
    /// `alt_*` summaries use.
    pub slowdown: (String, String),
    /// Seed.
    pub seed: u64,
    /// Hosts.
    pub hosts: u32,
    /// Arrivals per second per host.
    pub rate_per_host: f64,
    /// Slowdown by size bucket.
    pub buckets: Vec<Bucket>,
    /// The rule choosing the shortest 10%.
    pub short_rule: ShortRule,
    /// Slowdowns of the shortest 10% of messages.
    pub short: Summary,
    /// Slowdowns of all measured messages.
    pub all: Summary,
    /// The shortest 10% under the other slowdown formula.
    pub alt_short: Summary,
    /// All messages under the other slowdown formula.
    pub alt_all: Summary,
    /// Message counts.
    pub messages: Messages,
    /// Utilisation.
    pub utilization: Utilization,
    /// Protocol activity.
    pub protocol_counters: ProtocolCounters,
    /// Causes of downlink idle time with grants outstanding.
    pub idle_causes: IdleCauses,
    /// Unfinished work over time: `(time µs, backlog, ideal backlog,
    /// matching reference backlog)` where the backlog is the DATA wire
    /// bytes of created messages not yet delivered, per host, in µs of host
    /// link time, and the ideal backlog the same for the ideal reference.
    /// Sampled 20 times during the arrivals and once at the end. In a
    /// stable run it levels off; the unfinished work of a heavy-tailed
    /// workload takes long to reach its steady level, which is why
    /// utilisation over a short window can fall short of the offered load
    /// without the network being overloaded; the ideal backlog shows how
    /// much of it any scheduler would have.
    pub backlog: Vec<(f64, f64, f64, f64)>,
    /// Switch buffers.
    pub buffers: Buffers,
    /// Conservation counters.
    pub conservation: Conservation,
    /// Wire bytes on host downlinks per priority level (whole run).
    pub downlink_prio_bytes: [u64; 8],
    /// Simulated time when arrivals stopped, µs.
    pub arrivals_end_us: f64,
    /// Simulated time at the end, µs (the drain is the difference).
    pub end_us: f64,
    /// Events processed.
    pub events: u64,
    /// The protocol settings in force (see `config::Resolved::summary`).
    pub protocol: String,
    /// Unloaded round trip of a 1-byte request and a 1-byte response
    /// between racks (this network's, `analytic.rs`), µs.
    pub base_rtt_us: f64,
    /// Host link rate, Gbit/s.
    pub link_gbps: f64,
    /// Independent Homa endpoints per host (`HostParams::endpoints`).
    pub endpoints_per_host: u32,
    /// The rack-parallel estimate, when asked for
    /// (`RunParams::pdes_estimate`).
    pub pdes: Option<crate::pdes::PdesReport>,
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;
    use homa_workload::Workload;

    #[test]
    fn dist__percentiles_are_hdrhistograms() {
        let mut d = Dist::default();
        for i in 1..=100u64 {
            d.record(i * 1_000_000, 1_000_000);
        }
        let s = d.summary();
        let near = |a: f64, b: f64| (a / b - 1.0).abs() < 1e-3;
        assert_eq!(s.count, 100);
        // Three significant digits: the value at index ceil(q n) of the
        // sorted values, within 0.1%.
        assert!(near(s.p50, 50.0) && near(s.p99, 99.0), "{s:?}");
        assert!((s.mean - 50.5).abs() < 1e-9);
        assert!(near(s.p99_us, 99.0));
        // Slowdowns below 2.048 are exact to the thousandth.
        let mut d = Dist::default();
        d.record(1_234, 1_000);
        assert_eq!(d.summary().p99, 1.234);
        assert_eq!(Dist::default().summary(), Summary::default());
    }

    #[test]
    fn stats__buckets_and_incomplete_messages() {
        let d = Workload::W4.raw();
        let b = bucket_bounds(&d);
        assert_eq!(*b.last().unwrap(), 10_000_000);
        assert!(b.windows(2).all(|w| w[0] < w[1]));
        let mut s = Stats::new(&d);
        s.record(1, b[0], 200, 100, 100, true);
        s.record(2, b[0] + 1, 300, 100, 100, true);
        s.record(3, 10_000_000, 400, 100, 50, false);
        let got = s.buckets(&d);
        assert_eq!(got[0].stats.count, 1);
        assert_eq!(got[1].stats.count, 1);
        let last = got.last().unwrap();
        assert_eq!((last.stats.count, last.incomplete), (1, 1));
        assert_eq!(last.incomplete_bytes, 10_000_000);
        assert!((last.stats.p50 - 4.0).abs() < 0.01);
        let [_, all, _, all_alt] = s.summaries();
        assert_eq!(all.count, 3);
        assert!((all.p99 - 4.0).abs() < 0.01 && (all_alt.p99 - 8.0).abs() < 0.01);
        let share: f64 = got.iter().map(|b| b.share).sum();
        assert!((share - 1.0).abs() < 1e-9);
    }

    #[test]
    fn short_rule__draws_a_tenth() {
        // W4's 10% quantile is a length shared by many messages: the rule
        // takes part of them so that a tenth of the messages are in.
        let d = Workload::W4.raw();
        let r = ShortRule::new(&d, 0.1);
        assert_eq!(r.size, d.quantile(0.1));
        assert!(r.at_size > 0.0 && r.at_size < 1.0);
        let mut rng = Rng::new(5);
        let n = 200_000u64;
        let short = (0..n)
            .filter(|&id| r.contains(id, d.sample(&mut rng)))
            .count() as f64;
        assert!(
            (short / n as f64 - 0.1).abs() < 0.003,
            "{}",
            short / n as f64
        );
    }
}
