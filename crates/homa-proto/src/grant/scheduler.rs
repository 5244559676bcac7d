//! The grant scheduler's own state: the rank order of the incoming messages
//! that still need grants, the best message of each peer, the incoming
//! accounting, the active set of the last pass, the FIFO-grant clock and the
//! messages whose granted bytes starve (see the [parent module](super) for
//! the policy, `docs/protocol.md#grants` for its sources).
//!
//! The scheduler knows messages only by their [`RankKey`] and their peer; it
//! never sees an RPC. Its inputs are rank moves ([`GrantScheduler::rank_move`]),
//! changes of the incoming total ([`GrantScheduler::add_incoming`]) and
//! requests for a pass ([`GrantScheduler::request_pass`]); its outputs are
//! the pass to run ([`GrantScheduler::begin_pass`]), the active set
//! ([`GrantScheduler::choose_active`]), windows and levels, and the FIFO
//! grant interval (the endpoint's timer table holds the FIFO deadline).

use crate::timers::{Timer, TimerTable};

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::HashMap;

use super::rank_list::RankList;
use crate::rpc::RpcRef;
use crate::Instant;

/// Position of an incoming message in rank order: fewer bytes remaining
/// first, then the earlier first packet, then the older RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct RankKey {
    /// Bytes of the message not yet received.
    pub(crate) remaining: u32,
    /// When the message's first packet arrived.
    pub(crate) birth: Instant,
    /// The RPC (its creation sequence breaks the remaining ties).
    pub(crate) rpc: RpcRef,
}

/// What a grant pass must do, from [`GrantScheduler::begin_pass`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pass {
    /// A FIFO grant is due in this pass.
    pub(crate) fifo_due: bool,
}

/// Receiver-side scheduling state (the kernel's `struct homa_grant`).
#[derive(Debug)]
pub(crate) struct GrantScheduler {
    /// Every incoming message that still needs grants, in rank order.
    ranked: RankList<RankKey>,
    /// The best-ranked message of each peer that has one, with the peer.
    heads: RankList<(RankKey, SocketAddr)>,
    /// Each peer's messages that need grants, in rank order.
    by_peer: HashMap<SocketAddr, RankList<RankKey>, ahash::RandomState>,
    /// Granted-but-not-received bytes over all incoming messages.
    total_incoming: i64,
    /// Something changed since the last pass.
    pass_wanted: bool,
    /// Time between FIFO grants, if they are enabled.
    fifo_interval: Option<Duration>,
    /// Messages active at the last pass, in rank order.
    active: Vec<RpcRef>,
    /// [`Self::choose_active`]'s vector between passes (its capacity).
    spare_active: Vec<RankKey>,
    /// Messages whose granted bytes starve behind higher levels (the
    /// timer finds them).
    starving: Vec<RpcRef>,
}

impl GrantScheduler {
    /// A scheduler with FIFO grants of `fifo_grant_increment` bytes every
    /// time `grant_fifo_fraction` thousandths of a `link_mbps` link would
    /// carry them (none if any of the three is 0).
    pub(crate) fn new(
        fifo_grant_increment: u32,
        grant_fifo_fraction: u32,
        link_mbps: u32,
        hasher: ahash::RandomState,
    ) -> GrantScheduler {
        let fifo_interval =
            (grant_fifo_fraction != 0 && fifo_grant_increment != 0 && link_mbps != 0).then(|| {
                // increment bytes at link × fraction: bytes·8 / (Mbit/s · ‰/1000) µs.
                Duration::from_nanos(
                    fifo_grant_increment as u64 * 8_000_000
                        / (link_mbps as u64 * grant_fifo_fraction as u64),
                )
            });
        GrantScheduler {
            ranked: RankList::default(),
            heads: RankList::default(),
            by_peer: HashMap::with_hasher(hasher),
            total_incoming: 0,
            pass_wanted: false,
            fifo_interval,
            active: Vec::new(),
            spare_active: Vec::new(),
            starving: Vec::new(),
        }
    }

    /// Moves a message of `peer` from rank `old` to rank `new` (`None`: not
    /// ranked), keeping the per-peer heads and the FIFO-grant timer (armed
    /// at `now` when a message joins and it is not armed, stopped when the
    /// last message leaves).
    pub(crate) fn rank_move(
        &mut self,
        now: Instant,
        timers: &mut TimerTable,
        peer: SocketAddr,
        old: Option<RankKey>,
        new: Option<RankKey>,
    ) {
        // Most moves are one message's bytes arriving: its key changes,
        // its place rarely does (`RankList::replace` is in place then).
        self.ranked.apply(old.as_ref(), new);
        if new.is_some() {
            if let Some(i) = self.fifo_interval {
                timers.set_if_unset(Timer::FifoGrant, now + i);
            }
        }
        let set = self.by_peer.entry(peer).or_default();
        let before = set.first().copied();
        set.apply(old.as_ref(), new);
        let after = set.first().copied();
        if set.is_empty() {
            self.by_peer.remove(&peer);
        }
        if before != after {
            self.heads
                .apply(before.map(|b| (b, peer)).as_ref(), after.map(|a| (a, peer)));
        }
        if self.ranked.is_empty() {
            timers.stop(Timer::FifoGrant);
        }
    }

    /// Adds `delta` to the granted-but-not-received total.
    pub(crate) fn add_incoming(&mut self, delta: i64) {
        self.total_incoming += delta;
    }

    /// Granted-but-not-received bytes over all incoming messages.
    pub(crate) fn total_incoming(&self) -> i64 {
        self.total_incoming
    }

    /// Something a pass looks at changed: run one at the next chance.
    pub(crate) fn request_pass(&mut self) {
        self.pass_wanted = true;
    }

    /// True if a pass was requested since the last one.
    pub(crate) fn pass_wanted(&self) -> bool {
        self.pass_wanted
    }

    /// Starts a pass if one is wanted or the FIFO grant is due
    /// (`fifo_due`, from the timer table).
    pub(crate) fn begin_pass(&mut self, fifo_due: bool) -> Option<Pass> {
        if !self.pass_wanted && !fifo_due {
            return None;
        }
        self.pass_wanted = false;
        Some(Pass { fifo_due })
    }

    /// The messages to grant to: the best `max_overcommit` by (depth within
    /// their peer, rank), in rank order. Every peer gets one slot before
    /// any peer gets two.
    /// The vector comes from the previous pass ([`Self::recycle_active`]):
    /// nothing is allocated per pass.
    pub(crate) fn choose_active(&mut self, max_overcommit: usize) -> Vec<RankKey> {
        let n = max_overcommit;
        let mut active = core::mem::take(&mut self.spare_active);
        active.clear();
        active.extend(self.heads.iter().take(n).map(|h| h.0));
        if active.len() < n && self.ranked.len() > active.len() {
            // Fewer peers than slots: give the remaining slots to second,
            // third, ... messages of those peers, best first.
            let mut more: Vec<(usize, RankKey)> = Vec::new();
            for (_, peer) in self.heads.iter().take(n) {
                if let Some(set) = self.by_peer.get(peer) {
                    more.extend(set.iter().copied().enumerate().skip(1).take(n));
                }
            }
            more.sort_unstable();
            let room = n - active.len();
            active.extend(more.into_iter().take(room).map(|(_, k)| k));
            active.sort_unstable();
        }
        active
    }

    /// Gives back the vector of [`Self::choose_active`] for the next pass.
    pub(crate) fn recycle_active(&mut self, active: Vec<RankKey>) {
        self.spare_active = active;
    }

    /// Records the active set of this pass.
    pub(crate) fn set_active(&mut self, active: &[RankKey]) {
        self.active.clear();
        self.active.extend(active.iter().map(|k| k.rpc));
    }

    /// Number of messages active at the last pass.
    pub(crate) fn active_count(&self) -> usize {
        self.active.len()
    }

    /// True if the RPC was active at the last pass.
    pub(crate) fn is_active(&self, key: usize) -> bool {
        self.active.iter().any(|r| r.key == key)
    }

    /// Bytes each active message may have granted beyond what it received:
    /// `window`, or `max_incoming / (active + 1)` when `window` is 0.
    pub(crate) fn window(window: u32, max_incoming: u32, n_active: usize) -> u32 {
        if window > 0 {
            window
        } else {
            max_incoming / (n_active as u32 + 1)
        }
    }

    /// The level for the `rank`-th (from 0) of `n_active` active messages:
    /// `max_sched_prio - rank`, shifted down when fewer messages are active
    /// than scheduled levels, never below 0.
    pub(crate) fn level(rank: usize, n_active: usize, max_sched_prio: u8) -> u8 {
        let max_sched = max_sched_prio as i32;
        let extra = max_sched + 1 - n_active as i32;
        let mut prio = max_sched - rank as i32;
        if extra >= 0 {
            prio -= extra;
        }
        prio.max(0) as u8
    }

    /// Notes a message whose granted bytes starve behind higher levels.
    pub(crate) fn note_starving(&mut self, rpc: RpcRef) {
        self.starving.push(rpc);
    }

    /// Keeps the starving messages for which `still` holds, and returns
    /// them.
    pub(crate) fn retain_starving(&mut self, still: impl FnMut(&RpcRef) -> bool) -> &[RpcRef] {
        self.starving.retain(still);
        &self.starving
    }

    /// Time between FIFO grants, if they are enabled.
    pub(crate) fn fifo_interval(&self) -> Option<Duration> {
        self.fifo_interval
    }

    /// The oldest ranked message (by first packet, then creation) for which
    /// `responsive` holds: the one a FIFO grant goes to.
    pub(crate) fn fifo_candidate(
        &self,
        mut responsive: impl FnMut(&RankKey) -> bool,
    ) -> Option<RankKey> {
        self.ranked
            .iter()
            .filter(|k| responsive(k))
            .min_by_key(|k| (k.birth, k.rpc.seq))
            .copied()
    }

    /// The ranked messages worse than `rank`, worst first.
    pub(crate) fn worse_than(&self, rank: RankKey) -> impl Iterator<Item = RankKey> + '_ {
        self.ranked
            .iter()
            .rev()
            .take_while(move |r| **r > rank)
            .copied()
    }

    /// True if no message needs grants.
    pub(crate) fn is_empty(&self) -> bool {
        self.ranked.is_empty()
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    fn sched() -> GrantScheduler {
        // 10 kB every 10 000 × 8 / (10 000 Mbit/s × 0.05) = 160 µs.
        GrantScheduler::new(
            10_000,
            50,
            10_000,
            ahash::RandomState::with_seeds(1, 2, 3, 4),
        )
    }

    fn peer(n: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, n], 1000))
    }

    fn key(remaining: u32, birth_us: u64, seq: u64) -> RankKey {
        RankKey {
            remaining,
            birth: Instant::from_nanos(birth_us * 1000),
            rpc: RpcRef {
                seq,
                key: seq as usize,
            },
        }
    }

    fn add(s: &mut GrantScheduler, p: u8, k: RankKey) {
        s.rank_move(
            Instant::ZERO,
            &mut TimerTable::default(),
            peer(p),
            None,
            Some(k),
        );
    }

    #[test]
    fn rank_key__orders_by_remaining_then_birth_then_seq() {
        assert!(key(10, 5, 9) < key(11, 0, 0));
        assert!(key(10, 4, 9) < key(10, 5, 0));
        assert!(key(10, 5, 1) < key(10, 5, 2));
    }

    #[test]
    fn choose_active__one_per_peer_before_two() {
        let mut s = sched();
        add(&mut s, 1, key(100, 0, 1));
        add(&mut s, 1, key(200, 0, 2));
        add(&mut s, 2, key(5000, 0, 3));
        let active = s.choose_active(2);
        assert_eq!(active, vec![key(100, 0, 1), key(5000, 0, 3)]);
    }

    #[test]
    fn choose_active__fills_spare_slots_with_second_messages() {
        let mut s = sched();
        add(&mut s, 1, key(100, 0, 1));
        add(&mut s, 1, key(300, 0, 2));
        add(&mut s, 1, key(400, 0, 4));
        add(&mut s, 2, key(200, 0, 3));
        add(&mut s, 2, key(250, 0, 5));
        // Two peers, four slots: each peer's second message joins, best first.
        let active = s.choose_active(4);
        assert_eq!(
            active,
            vec![
                key(100, 0, 1),
                key(200, 0, 3),
                key(250, 0, 5),
                key(300, 0, 2)
            ]
        );
    }

    #[test]
    fn choose_active__at_most_max_overcommit() {
        let mut s = sched();
        for p in 1..=10 {
            add(&mut s, p, key(100 * p as u32, 0, p as u64));
        }
        let active = s.choose_active(3);
        assert_eq!(active.len(), 3);
        assert_eq!(active[0], key(100, 0, 1));
        assert_eq!(active[2], key(300, 0, 3));
    }

    #[test]
    fn rank_move__promotes_a_peers_next_message_when_the_head_leaves() {
        let mut s = sched();
        add(&mut s, 1, key(100, 0, 1));
        add(&mut s, 1, key(200, 0, 2));
        add(&mut s, 2, key(300, 0, 3));
        assert_eq!(s.choose_active(2), vec![key(100, 0, 1), key(300, 0, 3)]);
        let t = &mut TimerTable::default();
        s.rank_move(Instant::ZERO, t, peer(1), Some(key(100, 0, 1)), None);
        assert_eq!(s.choose_active(2), vec![key(200, 0, 2), key(300, 0, 3)]);
    }

    #[test]
    fn rank_move__shorter_newcomer_demotes_the_worst() {
        let mut s = sched();
        add(&mut s, 1, key(100, 0, 1));
        add(&mut s, 2, key(300, 0, 2));
        assert_eq!(s.choose_active(2)[1], key(300, 0, 2));
        add(&mut s, 3, key(50, 1, 3));
        assert_eq!(s.choose_active(2), vec![key(50, 1, 3), key(100, 0, 1)]);
    }

    #[test]
    fn rank_move__new_rank_replaces_old() {
        let mut s = sched();
        add(&mut s, 1, key(1000, 0, 1));
        add(&mut s, 2, key(900, 0, 2));
        // Bytes arrived for RPC 1: it now ranks first.
        s.rank_move(
            Instant::ZERO,
            &mut TimerTable::default(),
            peer(1),
            Some(key(1000, 0, 1)),
            Some(key(500, 0, 1)),
        );
        assert_eq!(s.choose_active(1), vec![key(500, 0, 1)]);
        assert_eq!(s.worse_than(key(0, 0, 0)).count(), 2);
    }

    #[test]
    fn rank_move__arms_fifo_timer_and_stops_it_when_empty() {
        let mut s = sched();
        let mut timers = TimerTable::default();
        let t = Instant::from_nanos(1_000_000);
        s.rank_move(t, &mut timers, peer(1), None, Some(key(10, 0, 1)));
        let due = t + Duration::from_micros(160);
        assert_eq!(timers.get(Timer::FifoGrant), Some(due));
        // A second message does not move an armed timer.
        let later = t + Duration::from_micros(100);
        s.rank_move(later, &mut timers, peer(2), None, Some(key(20, 0, 2)));
        assert_eq!(timers.get(Timer::FifoGrant), Some(due));
        s.rank_move(t, &mut timers, peer(1), Some(key(10, 0, 1)), None);
        assert_eq!(timers.get(Timer::FifoGrant), Some(due));
        s.rank_move(t, &mut timers, peer(2), Some(key(20, 0, 2)), None);
        assert_eq!(timers.get(Timer::FifoGrant), None);
        assert!(s.is_empty());
    }

    #[test]
    fn new__no_fifo_grants_without_a_link_rate() {
        let mut s = GrantScheduler::new(10_000, 50, 0, ahash::RandomState::new());
        let mut timers = TimerTable::default();
        s.rank_move(
            Instant::ZERO,
            &mut timers,
            peer(1),
            None,
            Some(key(10, 0, 1)),
        );
        assert_eq!(s.fifo_interval(), None);
        assert!(!timers.is_set(Timer::FifoGrant));
    }

    #[test]
    fn begin_pass__only_when_wanted_or_fifo_due() {
        let mut s = sched();
        assert_eq!(s.begin_pass(false), None);
        s.request_pass();
        assert!(s.pass_wanted());
        assert_eq!(s.begin_pass(false), Some(Pass { fifo_due: false }));
        assert!(!s.pass_wanted());
        assert_eq!(s.begin_pass(false), None);
        assert_eq!(s.begin_pass(true), Some(Pass { fifo_due: true }));
    }

    #[test]
    fn fifo_candidate__oldest_responsive_message() {
        let mut s = sched();
        add(&mut s, 1, key(10, 5, 1));
        add(&mut s, 2, key(9000, 1, 2));
        add(&mut s, 3, key(8000, 2, 3));
        assert_eq!(s.fifo_candidate(|_| true), Some(key(9000, 1, 2)));
        // The oldest is not responsive: the next oldest gets the grant.
        assert_eq!(s.fifo_candidate(|k| k.rpc.seq != 2), Some(key(8000, 2, 3)));
        assert_eq!(s.fifo_candidate(|_| false), None);
    }

    #[test]
    fn fifo_interval__increment_at_the_fifo_share_of_the_link() {
        assert_eq!(sched().fifo_interval(), Some(Duration::from_micros(160)));
        let s = GrantScheduler::new(0, 50, 10_000, ahash::RandomState::new());
        assert_eq!(s.fifo_interval(), None);
    }

    #[test]
    fn window__fixed_or_shared_incoming() {
        assert_eq!(GrantScheduler::window(60_000, 1_000_000, 4), 60_000);
        assert_eq!(GrantScheduler::window(0, 1_000_000, 4), 200_000);
        assert_eq!(GrantScheduler::window(0, 1_000_000, 0), 1_000_000);
    }

    #[test]
    fn level__top_levels_left_free_when_few_active() {
        // Eight scheduled levels (0..=7), two active messages: 1 and 0,
        // leaving 2..=7 for newcomers that will outrank them.
        assert_eq!(GrantScheduler::level(0, 2, 7), 1);
        assert_eq!(GrantScheduler::level(1, 2, 7), 0);
        // Eight active: 7 down to 0.
        assert_eq!(GrantScheduler::level(0, 8, 7), 7);
        assert_eq!(GrantScheduler::level(7, 8, 7), 0);
        // More active than levels: the rest share level 0.
        assert_eq!(GrantScheduler::level(9, 10, 7), 0);
    }

    #[test]
    fn add_incoming__sums_deltas() {
        let mut s = sched();
        s.add_incoming(1000);
        s.add_incoming(-300);
        assert_eq!(s.total_incoming(), 700);
    }

    #[test]
    fn set_active__records_the_pass() {
        let mut s = sched();
        add(&mut s, 1, key(10, 0, 1));
        add(&mut s, 2, key(20, 0, 2));
        let a = s.choose_active(1);
        s.set_active(&a);
        assert_eq!(s.active_count(), 1);
        assert!(s.is_active(1));
        assert!(!s.is_active(2));
    }

    #[test]
    fn retain_starving__drops_those_no_longer_starving() {
        let mut s = sched();
        let a = RpcRef { seq: 1, key: 1 };
        let b = RpcRef { seq: 2, key: 2 };
        s.note_starving(a);
        s.note_starving(b);
        assert_eq!(s.retain_starving(|r| r.seq == 2), &[b]);
    }
}
