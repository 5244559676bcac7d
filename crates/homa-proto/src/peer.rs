//! Per-peer state: the unscheduled-priority cutoffs a peer told us to use,
//! acknowledgements waiting to be sent to it, a round-trip-time estimate,
//! the record that makes at-most-once airtight, and memory accounting.
//!
//! A peer is a remote *socket* (IP address and port), not a host as in the
//! kernel: in user space several independent Homa endpoints (processes) can
//! share an IP address, each with its own cutoffs and its own RPC ids, so
//! state keyed by address alone would mix them.
//!
//! # At-most-once
//!
//! The kernel frees a server RPC once the client acknowledges the response,
//! and a stale duplicate of the request arriving later creates a fresh RPC
//! and runs the request again (reference 4.6). We close that hole with a
//! per-client record of finished requests, [`DoneIds`]:
//!
//! * when a server RPC whose request reached the application is freed (acked,
//!   abandoned after NEED_ACK, aborted by the client, or timed out), its id
//!   goes into `recent` with the time;
//! * a request for an id in `recent`, or at or below `floor` (within a
//!   window, see below), is a stale duplicate: it is counted and dropped;
//! * entries leave `recent` after `lifetime` (or when it is full), and the
//!   floor rises to the departing id. Client ids from one endpoint only grow,
//!   so the floor covers every older request for good, while the set holds
//!   the recent ones that may complete out of order.
//!
//! Memory is bounded by `max_recent` entries per peer plus the peer table
//! limit. Raising the floor can only err on the safe side: a request whose id
//! is below the floor but that the server never saw (impossible unless it was
//! delayed for longer than `lifetime`, which exceeds the RPC timeout) is
//! refused, never run twice.
//!
//! Client endpoints start their ids at random 63-bit values, so a restarted
//! client (new incarnation at the same address) almost surely starts far
//! from the old floor. The floor therefore only covers ids within
//! [`FLOOR_WINDOW`] below it; ids further below belong to another
//! incarnation and are judged by `recent` alone until the floor moves to
//! their range.
//!
//! When an idle peer is collected, its floor (one `u64`) moves to a bounded
//! table of retired peers and comes back if the peer returns, so the
//! guarantee also covers duplicates delayed longer than a peer is kept; it
//! lapses only for a peer pushed out of that table (`Config::max_peers`
//! retired entries, oldest first).

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::time::Duration;

use crate::wire::{AckEntry, MAX_ACKS_PER_PKT, MAX_PRIORITIES};
use crate::Instant;

/// How far below the floor ids are still considered covered by it.
pub const FLOOR_WINDOW: u64 = 1 << 32;

/// How long an RTT sample stays the minimum before newer samples replace it.
const RTT_WINDOW: Duration = Duration::from_secs(10);

/// Finished request ids of one client socket (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct DoneIds {
    /// Every id in `(floor - FLOOR_WINDOW, floor]` is finished; 0 = none.
    floor: u64,
    /// Recently finished ids, oldest first.
    order: VecDeque<(Instant, u64)>,
    /// The same ids, for lookups. (A keyed ahash rather than std's SipHash:
    /// every request and every ACK touches this set, and SipHash was a
    /// visible share of a small RPC's processing.)
    recent: HashSet<u64, ahash::RandomState>,
}

impl DoneIds {
    /// A record that knows only a floor (0: nothing; a peer restored after
    /// collection: its old floor). Its set hashes with `hasher`, keyed per
    /// endpoint because clients choose the ids.
    pub fn with_floor(floor: u64, hasher: ahash::RandomState) -> DoneIds {
        DoneIds {
            floor,
            order: VecDeque::new(),
            recent: HashSet::with_hasher(hasher),
        }
    }

    /// True if a request with this (server-side, odd) id has finished.
    pub fn contains(&self, id: u64) -> bool {
        Self::floor_covers(self.floor, id) || self.recent.contains(&id)
    }

    /// True if `floor` alone says request `id` has finished.
    pub fn floor_covers(floor: u64, id: u64) -> bool {
        floor != 0 && id <= floor && floor - id < FLOOR_WINDOW
    }

    /// Records a finished request and retires entries past their lifetime or
    /// beyond `max_recent`.
    pub fn insert(&mut self, id: u64, now: Instant, max_recent: usize, lifetime: Duration) {
        if self.recent.insert(id) {
            self.order.push_back((now, id));
        }
        self.expire(now, max_recent, lifetime);
    }

    /// Retires old entries into the floor.
    pub fn expire(&mut self, now: Instant, max_recent: usize, lifetime: Duration) {
        while let Some(&(at, id)) = self.order.front() {
            if self.order.len() <= max_recent && now.saturating_duration_since(at) < lifetime {
                break;
            }
            self.order.pop_front();
            self.recent.remove(&id);
            let same_run = self.floor != 0 && self.floor.abs_diff(id) < FLOOR_WINDOW;
            if same_run {
                self.floor = self.floor.max(id);
            } else {
                // First floor, or a new client incarnation took over.
                self.floor = id;
            }
        }
    }

    /// Retires every entry into the floor and returns it: what survives
    /// the peer's collection.
    pub fn retire(mut self, now: Instant) -> u64 {
        self.expire(now, 0, Duration::ZERO);
        self.floor
    }

    /// Number of ids held individually.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.order.len()
    }
}

/// State kept about one remote socket.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// Entry i: largest message length that uses level i for unscheduled
    /// bytes sent to this peer.
    pub cutoffs: [u32; MAX_PRIORITIES],
    /// Version of `cutoffs` as received (0 = none received yet).
    pub cutoff_version: u16,
    /// Client ids of completed RPCs to acknowledge, with the local port they
    /// were issued from (acks travel from that port).
    pub pending_acks: Vec<(u16, u64)>,
    /// Last time a packet from this peer arrived or was sent to it.
    pub last_active: Instant,
    /// Last time any packet from this peer arrived.
    pub last_heard: Instant,
    /// Live RPCs with this peer.
    pub rpcs: u32,
    /// Live server RPCs this peer created (bounded by configuration).
    pub server_rpcs: u32,
    /// Bytes of incoming-message buffers held for this peer.
    pub rx_bytes: u64,
    /// Minimum recent round-trip time, if measured.
    pub rtt: Option<Duration>,
    rtt_stamp: Instant,
    /// Finished requests from this peer (at-most-once).
    pub done: DoneIds,
    /// This peer's incoming messages that need grants, in rank order.
    pub grantable: BTreeSet<crate::grant::RankKey>,
    /// When we last sent this peer our CUTOFFS.
    pub cutoffs_sent: Option<Instant>,
    /// The peer's port (the server port named in acks we send it).
    port: u16,
}

impl Peer {
    /// A peer we have heard nothing about. Until its CUTOFFS arrives,
    /// unscheduled bytes sent to it use `cutoffs`: the caller passes its own
    /// (those it asks its senders to use as a receiver). Where every host
    /// computes cutoffs alike, or is configured with the same ones (the
    /// paper's simulations give every host the workload's), they are the
    /// peer's; elsewhere they are still a size-ordered guess, better than one
    /// fixed level for every message (the kernel's level 6 put 38% of a W4
    /// run's requests one level too low). `done` is its (empty, or
    /// restored) record of finished requests.
    pub fn new(port: u16, now: Instant, done: DoneIds, cutoffs: [u32; MAX_PRIORITIES]) -> Peer {
        let mut cutoffs = cutoffs;
        cutoffs[0] = i32::MAX as u32;
        Peer {
            cutoffs,
            cutoff_version: 0,
            pending_acks: Vec::new(),
            last_active: now,
            last_heard: now,
            rpcs: 0,
            server_rpcs: 0,
            rx_bytes: 0,
            rtt: None,
            rtt_stamp: now,
            done,
            grantable: BTreeSet::new(),
            cutoffs_sent: None,
            port,
        }
    }

    /// Priority for unscheduled bytes of a message of `length` bytes to this
    /// peer: the highest level whose cutoff admits the length.
    pub fn unsched_priority(&self, length: u32, num_priorities: u8) -> u8 {
        let top = num_priorities as usize - 1;
        for i in (0..=top).rev() {
            if self.cutoffs[i] >= length {
                return i as u8;
            }
        }
        0
    }

    /// Installs cutoffs received in a CUTOFFS packet (entry 0 is forced to
    /// admit everything).
    pub fn set_cutoffs(&mut self, cutoffs: [u32; MAX_PRIORITIES], version: u16) {
        self.cutoffs = cutoffs;
        self.cutoffs[0] = i32::MAX as u32;
        self.cutoff_version = version;
    }

    /// Feeds one round-trip sample: the estimate is the minimum over the
    /// last [`RTT_WINDOW`] (queueing only ever inflates samples).
    pub fn rtt_sample(&mut self, sample: Duration, now: Instant) {
        let stale = now.saturating_duration_since(self.rtt_stamp) > RTT_WINDOW;
        if stale || self.rtt.is_none_or(|r| sample <= r) {
            self.rtt = Some(sample);
            self.rtt_stamp = now;
        }
    }

    /// Takes one pending ack issued from `port`, if any.
    pub fn take_ack(&mut self, port: u16) -> Option<AckEntry> {
        let i = self.pending_acks.iter().position(|a| a.0 == port)?;
        let entry = self.pending_acks.swap_remove(i);
        Some(self.ack_entry(entry))
    }

    /// Takes up to five pending acks issued from `port`.
    pub fn take_acks(&mut self, port: u16) -> Vec<AckEntry> {
        let mut out = Vec::new();
        while out.len() < MAX_ACKS_PER_PKT {
            match self.take_ack(port) {
                Some(a) => out.push(a),
                None => break,
            }
        }
        out
    }

    /// Number of pending acks issued from `port`.
    pub fn acks_pending(&self, port: u16) -> usize {
        self.pending_acks.iter().filter(|a| a.0 == port).count()
    }

    fn ack_entry(&self, (_, id): (u16, u64)) -> AckEntry {
        AckEntry {
            client_id: id,
            server_port: self.port,
        }
    }

    /// Bytes of unscheduled data to send this peer per message: one
    /// round trip at the link rate (RTTbytes), or `fallback` until the RTT is
    /// known.
    pub fn unsched_bytes(&self, link_mbps: u32, fallback: u32, max: u32) -> u32 {
        match self.rtt {
            Some(rtt) if link_mbps > 0 => {
                let bytes = rtt.as_nanos() as u64 * link_mbps as u64 / 8000;
                bytes.clamp(1, max as u64) as u32
            }
            _ => fallback,
        }
    }

    /// True if no RPC refers to this peer, so it may be collected once it
    /// has been inactive long enough. Pending acks do not keep it: after
    /// that long the server has given up on them anyway.
    pub fn idle(&self) -> bool {
        self.rpcs == 0
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    const LIFE: Duration = Duration::from_secs(10);

    impl Default for DoneIds {
        fn default() -> DoneIds {
            DoneIds::with_floor(0, ahash::RandomState::with_seeds(1, 2, 3, 4))
        }
    }

    #[test]
    fn done_ids__recent_then_floor() {
        let mut d = DoneIds::default();
        let t0 = Instant::ZERO;
        d.insert(101, t0, 3, LIFE);
        d.insert(105, t0, 3, LIFE);
        assert!(d.contains(101) && d.contains(105));
        assert!(!d.contains(103), "103 may still arrive");
        // Past the lifetime, both retire into the floor.
        d.expire(t0 + LIFE, 3, LIFE);
        assert_eq!(d.len(), 0);
        assert!(d.contains(101) && d.contains(105));
        assert!(d.contains(103), "below the floor: refused");
        assert!(!d.contains(107));
    }

    #[test]
    fn done_ids__bounded_by_max_recent() {
        let mut d = DoneIds::default();
        for i in 0..100u64 {
            d.insert(1001 + 2 * i, Instant::ZERO, 10, LIFE);
        }
        assert_eq!(d.len(), 10);
        for i in 0..100u64 {
            assert!(d.contains(1001 + 2 * i), "{i}");
        }
    }

    #[test]
    fn done_ids__new_incarnation_far_below_floor_is_new() {
        let mut d = DoneIds::default();
        let far = 1u64 << 60;
        d.insert(far + 1, Instant::ZERO, 0, LIFE);
        assert!(d.contains(far + 1));
        // A restarted client draws ids far away: not covered by the floor.
        assert!(!d.contains(12_345));
        d.insert(12_345, Instant::ZERO, 0, LIFE);
        assert!(d.contains(12_345) && d.contains(12_343));
    }

    #[test]
    fn rtt_sample__keeps_minimum_until_stale() {
        let mut p = Peer::new(1, Instant::ZERO, DoneIds::default(), [0; MAX_PRIORITIES]);
        p.rtt_sample(Duration::from_micros(50), Instant::ZERO);
        p.rtt_sample(Duration::from_micros(80), Instant::from_micros(1));
        assert_eq!(p.rtt, Some(Duration::from_micros(50)));
        p.rtt_sample(Duration::from_micros(30), Instant::from_micros(2));
        assert_eq!(p.rtt, Some(Duration::from_micros(30)));
        let later = Instant::ZERO + Duration::from_secs(11);
        p.rtt_sample(Duration::from_micros(90), later);
        assert_eq!(p.rtt, Some(Duration::from_micros(90)));
    }

    #[test]
    fn unsched_priority__new_peer_uses_given_cutoffs() {
        let own = [0, 0, 0, 0, i32::MAX as u32, 10_000, 1_000, 100];
        let p = Peer::new(1, Instant::ZERO, DoneIds::default(), own);
        assert_eq!(p.unsched_priority(1, 8), 7);
        assert_eq!(p.unsched_priority(5_000, 8), 5);
        assert_eq!(p.unsched_priority(10_000_000, 8), 4);
        // Level 0 always admits every length.
        let p = Peer::new(1, Instant::ZERO, DoneIds::default(), [0; MAX_PRIORITIES]);
        assert_eq!(p.unsched_priority(10_000_000, 8), 0);
        let mut p = p;
        p.set_cutoffs([0, 0, 0, 0, 1_000_000, 15_000, 2_800, 200], 1);
        assert_eq!(p.unsched_priority(200, 8), 7);
        assert_eq!(p.unsched_priority(201, 8), 6);
        assert_eq!(p.unsched_priority(15_001, 8), 4);
        assert_eq!(p.unsched_priority(5_000_000, 8), 0);
    }
}
