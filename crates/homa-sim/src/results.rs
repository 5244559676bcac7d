//! What an experiment measured: slowdown by message size, the shortest
//! messages' tail, utilisation, switch buffers, conservation counters.
//!
//! Slowdown of a message = its completion time / its completion time on an
//! unloaded network, computed analytically ([`crate::analytic`]).
//! Percentiles follow the kernel benchmark's convention: with `n` sorted
//! values, P`q` is the value at index `floor(q * n)` (clamped).
//!
//! Size buckets follow the paper's plots, whose x axis is linear in the
//! number of messages: bucket boundaries are the workload's message-count
//! quantiles 10%, 20%, …, 90%, 95%, 99% and 100% (merged where equal), so
//! every bucket holds a known share of the messages.

use homa_workload::SizeDist;

use crate::time::Ps;

/// One completed, measured message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Creation order of the message (ties between equal sizes are broken
    /// by it, never by completion time).
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

/// Statistics of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    /// Number of messages.
    pub count: usize,
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

/// The value at index `floor(q * n)` of sorted values.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((q * sorted.len() as f64) as usize).min(sorted.len() - 1);
    sorted[i]
}

impl Summary {
    /// Summarises samples (any order).
    pub fn of(samples: &[Sample]) -> Summary {
        if samples.is_empty() {
            return Summary::default();
        }
        let mut s: Vec<f64> = samples.iter().map(Sample::slowdown).collect();
        s.sort_by(f64::total_cmp);
        let mut t: Vec<f64> = samples.iter().map(|x| x.time as f64 / 1e6).collect();
        t.sort_by(f64::total_cmp);
        Summary {
            count: samples.len(),
            p50: percentile(&s, 0.5),
            p99: percentile(&s, 0.99),
            p999: percentile(&s, 0.999),
            mean: s.iter().sum::<f64>() / s.len() as f64,
            p50_us: percentile(&t, 0.5),
            p99_us: percentile(&t, 0.99),
        }
    }
}

/// Messages in a size range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Sizes above this (bytes)…
    pub above: u32,
    /// …up to and including this.
    pub upto: u32,
    /// Share of the workload's messages in the bucket.
    pub share: f64,
    /// Their slowdowns.
    pub stats: Summary,
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

/// Groups samples into buckets.
pub fn buckets(dist: &SizeDist, samples: &[Sample]) -> Vec<Bucket> {
    let bounds = bucket_bounds(dist);
    let mut groups: Vec<Vec<Sample>> = vec![Vec::new(); bounds.len()];
    for s in samples {
        let i = bounds
            .partition_point(|&b| b < s.size)
            .min(bounds.len() - 1);
        groups[i].push(*s);
    }
    let mut above = 0;
    bounds
        .iter()
        .zip(groups)
        .map(|(&upto, g)| {
            let b = Bucket {
                above,
                upto,
                share: dist.cdf(upto) - if above == 0 { 0.0 } else { dist.cdf(above) },
                stats: Summary::of(&g),
            };
            above = upto;
            b
        })
        .collect()
}

/// The shortest `fraction` of messages by size (ties in creation order):
/// their largest size and their slowdowns.
pub fn shortest(samples: &[Sample], fraction: f64) -> (u32, Summary) {
    if samples.is_empty() {
        return (0, Summary::default());
    }
    let mut v: Vec<(u32, u64, usize)> = samples
        .iter()
        .enumerate()
        .map(|(i, s)| (s.size, s.id, i))
        .collect();
    v.sort_unstable();
    let n = ((samples.len() as f64 * fraction).ceil() as usize).clamp(1, samples.len());
    let chosen: Vec<Sample> = v[..n].iter().map(|&(_, _, i)| samples[i]).collect();
    (v[n - 1].0, Summary::of(&chosen))
}

/// Message counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Messages {
    /// Created during the run.
    pub generated: u64,
    /// Created after the warm-up (measured).
    pub measured: u64,
    /// Measured and completed.
    pub completed: u64,
    /// Measured and not completed when the run ended.
    pub incomplete: u64,
    /// RPCs that failed (any).
    pub failed: u64,
}

/// Link utilisation in the measurement window (from the end of the
/// warm-up to the end of arrivals), over all host downlinks.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Utilization {
    /// Target load given in the configuration.
    pub offered: f64,
    /// Load actually generated in the window: DATA wire bytes of the
    /// messages created in it (requests and responses) over the capacity.
    /// Differs from `offered` by sampling noise, which heavy tails make
    /// large over short windows.
    pub generated: f64,
    /// Fraction of downlink capacity used by DATA packets, headers and
    /// framing included (comparable with `offered`).
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
    /// Workload name (`w1`… or a size).
    pub workload: String,
    /// `raw` or `cp_node`.
    pub variant: String,
    /// `one-way` or `rpc`.
    pub mode: String,
    /// Seed.
    pub seed: u64,
    /// Hosts.
    pub hosts: u32,
    /// Arrivals per second per host.
    pub rate_per_host: f64,
    /// Slowdown by size bucket.
    pub buckets: Vec<Bucket>,
    /// Largest size among the shortest 10% of messages.
    pub short_cutoff: u32,
    /// Slowdowns of the shortest 10% of messages.
    pub short: Summary,
    /// Slowdowns of all measured messages.
    pub all: Summary,
    /// Message counts.
    pub messages: Messages,
    /// Utilisation.
    pub utilization: Utilization,
    /// Protocol activity.
    pub protocol_counters: ProtocolCounters,
    /// Causes of downlink idle time with grants outstanding.
    pub idle_causes: IdleCauses,
    /// Unfinished work over time: `(time µs, backlog, ideal backlog,
    /// matching reference backlog)` where
    /// the backlog is the DATA wire bytes of created messages not yet
    /// delivered, per host, in µs of host link time, and the ideal backlog
    /// the same for the ideal reference. Sampled 20 times during the
    /// arrivals and once at the end. In a stable run it levels off; the
    /// unfinished work of a heavy-tailed workload takes long to reach its
    /// steady level, which is why utilisation over a short window can fall
    /// short of the offered load without the network being overloaded; the
    /// ideal backlog shows how much of it any scheduler would have.
    pub backlog: Vec<(f64, f64, f64, f64)>,
    /// Switch buffers.
    pub buffers: Buffers,
    /// Conservation counters.
    pub conservation: Conservation,
    /// Wire bytes on host downlinks per priority level (whole run).
    pub downlink_prio_bytes: [u64; 8],
    /// Simulated time at the end, µs.
    pub end_us: f64,
    /// Events processed.
    pub events: u64,
    /// The protocol settings in force (see `config::Resolved::summary`).
    pub protocol: String,
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;
    use homa_workload::Workload;

    fn s(size: u32, time: Ps) -> Sample {
        Sample {
            id: time,
            size,
            time,
            ideal: 100,
        }
    }

    #[test]
    fn percentile__index_floor_q_n() {
        let v: Vec<f64> = (0..100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 99.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn buckets__quantile_bounds_and_membership() {
        let d = Workload::W4.raw();
        let b = bucket_bounds(&d);
        assert_eq!(*b.last().unwrap(), 10_000_000);
        assert!(b.windows(2).all(|w| w[0] < w[1]));
        let samples = [s(b[0], 200), s(b[0] + 1, 300), s(10_000_000, 400)];
        let got = buckets(&d, &samples);
        assert_eq!(got[0].stats.count, 1);
        assert_eq!(got[1].stats.count, 1);
        assert_eq!(got.last().unwrap().stats.count, 1);
        assert_eq!(got.last().unwrap().stats.p50, 4.0);
        let share: f64 = got.iter().map(|b| b.share).sum();
        assert!((share - 1.0).abs() < 1e-9);
    }

    #[test]
    fn shortest__takes_smallest_sizes() {
        let samples: Vec<Sample> = (0..20).map(|i| s(1000 - i, 100 + u64::from(i))).collect();
        let (cut, sum) = shortest(&samples, 0.1);
        assert_eq!(cut, 982);
        assert_eq!(sum.count, 2);
        assert_eq!(sum.p99, 1.19);
    }
}
