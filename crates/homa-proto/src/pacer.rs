//! Sender-side scheduling (`docs/protocol.md`, "Pacer"): which message
//! transmits next, and when the link can take it.
//!
//! * **SRPT**: among messages with granted bytes not yet sent, the one with
//!   the fewest bytes left to transmit goes first (ties: the older one).
//! * **FIFO share**: `pacer_fifo_fraction` thousandths of paced batches go
//!   to the oldest message instead, so long messages keep moving.
//! * **NIC backlog estimate**: `link_idle` is when the NIC would have sent
//!   everything handed to it so far, computed from wire bytes (Homa header,
//!   UDP, IP and Ethernet framing) at `link_mbps` less 1% (the kernel's
//!   margin for rate error). A paced batch goes out only if no more than
//!   `max_nic_backlog` of transmit time is queued, and a batch holds at most
//!   that much data (at least one packet), so output never exceeds the link
//!   rate by more than the backlog allowance plus one packet over any
//!   window. Control packets and messages shorter than `defer_min_bytes`
//!   are never held back but still count toward the estimate.
//! * When the pacer holds data back, [`Endpoint::poll_timeout`] reports when
//!   the link will have room.
//!
//! With `link_mbps == 0` or `pacer` off there is no pacing: every granted
//! byte goes out at once, in SRPT order.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use crate::config::Config;
use crate::endpoint::Endpoint;
use crate::grant::rank_list::RankList;
use crate::host::{Host, TxEntry};
use crate::rpc::{RpcRef, RpcState, XmitPos};
use crate::timers::Timer;
use crate::Instant;

/// A paced message's place in SRPT order: fewest bytes left to transmit,
/// then the older RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct SrptKey {
    left: u32,
    rpc: RpcRef,
}

/// A paced message's place in FIFO order: the older message first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct FifoKey {
    born: Instant,
    rpc: RpcRef,
}

/// The messages too short to pace, oldest (lowest [`RpcRef`]) first, each
/// once: a sorted queue. RPCs are created in sequence order and short
/// messages mostly leave in that order, so an RPC almost always joins at
/// the back and leaves from the front: no ordered-set nodes to allocate,
/// rebalance and free per short message. Out-of-order joins and leaves
/// (a message held, then released) find their place by binary search.
#[derive(Debug, Default)]
struct ShortQueue(VecDeque<RpcRef>);

impl ShortQueue {
    /// Adds `rpc` in order (nothing if it is there already).
    #[inline]
    fn insert(&mut self, rpc: RpcRef) {
        match self.0.back() {
            Some(last) if *last >= rpc => {
                if let Err(i) = self.0.binary_search(&rpc) {
                    self.0.insert(i, rpc);
                }
            }
            _ => self.0.push_back(rpc),
        }
    }

    /// Removes `rpc` if it is queued.
    #[inline]
    fn remove(&mut self, rpc: &RpcRef) {
        if self.0.front() == Some(rpc) {
            self.0.pop_front();
        } else if let Ok(i) = self.0.binary_search(rpc) {
            self.0.remove(i);
        }
    }

    #[inline]
    fn first(&self) -> Option<&RpcRef> {
        self.0.front()
    }

    #[inline]
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The pacer's membership in a host table.
#[derive(Debug)]
struct HostPacer {
    host: crate::host::Host,
    /// Our instants to host time.
    offset: u64,
    /// Our slot.
    slot: u32,
    /// The transmit candidate we last published (0: none).
    published: u64,
    /// The endpoint's latest time (stamps what we publish).
    now: Instant,
    /// Paced data held longer than this (the table's `liveness`) goes
    /// out by our own estimate: a participant that keeps the shared
    /// estimate busy (or keeps a shorter message published) can slow us
    /// down, not stop us.
    max_hold: u64,
    /// Holds re-armed while already held (the wake-up sent nothing), and
    /// of those the yields to a shorter message, the pacer's own wake-ups,
    /// and the yields ended by a poke ([`crate::HostView`]).
    rewaits: u64,
    yields: u64,
    wakeups: u64,
    pokes: u64,
    /// The pacer's timer fired since the last hold (its wake-up).
    timer_woke: bool,
    /// The driver runs a waiter ([`crate::host::HostParams::waiter`]): a
    /// yield sleeps until the better message leaves the table.
    waiter: bool,
    /// We yield to a better message and published it (`S_YIELD`).
    yielding: Option<Yield>,
    /// Our last yield, ended because the link drained or we sent: if we
    /// yield to the same unchanged message again, its fallback still runs
    /// from then.
    last: Option<Yield>,
    /// A better message found unchanged when our fallback passed: its
    /// sender stalled or died, and we no longer yield to it (until it
    /// changes). Counted in `stalls`. (Publishers do not know it: while
    /// it stays published, the withdrawal of another message we yield to
    /// does not wake us, and our own fallback timer, at most a quarter of
    /// `liveness` after the drain, ends that yield instead.)
    skip: Option<TxEntry>,
    stalls: u64,
}

impl HostPacer {
    /// We no longer yield (the link drained, or we sent): clears the
    /// published yield and remembers it.
    fn end_yield(&mut self) {
        if let Some(y) = self.yielding.take() {
            self.host.yield_end(self.slot, y.mine);
            self.last = Some(y);
        }
    }
}

/// A yield to another participant's better message, published in our
/// slot (with a waiter).
#[derive(Debug, Clone, Copy)]
struct Yield {
    /// Our shortest paced message's bytes left (what `S_YIELD` holds).
    mine: u32,
    /// Our yield wake-up count when we published it (the wait token).
    count: u64,
    /// The message we yield to.
    to: TxEntry,
    /// The fallback: when we look again if no poke came.
    until: Instant,
}

/// When a pacer that yields (with a waiter) looks again on its own, if no
/// poke came first: once the link drained (`idle`), plus the better
/// message's transmit time at the link rate (`better_left` bytes at
/// `mbps`) and one backlog allowance (`backlog_ns`), at most `cap_ns`
/// after the drain. A live better participant hands its message (or at
/// least its next batch) to the NIC within that; one that stalls or died
/// leaves the link idle for at most that long after it drained, after
/// which we stop yielding to it.
fn yield_fallback(
    idle: Instant,
    better_left: u32,
    mbps: u64,
    backlog_ns: u64,
    cap_ns: u64,
) -> Instant {
    let send = (better_left as u64 * 8080).checked_div(mbps).unwrap_or(0);
    idle.plus_nanos(send.saturating_add(backlog_ns).min(cap_ns))
}

/// Sender scheduler state (the kernel's `struct homa_pacer`): the
/// transmit queues and the NIC backlog estimate.
#[derive(Debug)]
pub(crate) struct Pacer {
    /// Pacing is on (`pacer` and a known link rate).
    on: bool,
    link_mbps: u64,
    max_backlog: Duration,
    defer_min_bytes: u32,
    fifo_fraction: i32,
    /// `Config::pacer_grant_order`: the FIFO order, keyed by how long each
    /// message's granted bytes have waited, serves every batch.
    grant_order: bool,
    /// Paced messages in SRPT order.
    srpt: RankList<SrptKey>,
    /// The same messages, oldest first.
    fifo: BTreeSet<FifoKey>,
    /// Messages too short to pace, oldest first.
    short: ShortQueue,
    /// Estimated time the NIC finishes what it has been given.
    link_idle: Instant,
    /// FIFO share counter (thousandths); starts full so the first batches
    /// follow SRPT.
    fifo_count: i32,
    /// Since when paced data has been held (for the throttled-time metric).
    held_since: Option<Instant>,
    /// The host table whose NIC estimate replaces ours, if the endpoint
    /// joined one.
    host: Option<HostPacer>,
}

impl Pacer {
    /// An idle pacer for `config`'s link.
    pub(crate) fn new(config: &Config) -> Pacer {
        Pacer {
            on: config.pacer && config.link_mbps > 0,
            link_mbps: config.link_mbps as u64,
            max_backlog: config.max_nic_backlog,
            defer_min_bytes: config.defer_min_bytes,
            fifo_fraction: config.pacer_fifo_fraction as i32,
            grant_order: config.pacer_grant_order,
            srpt: RankList::default(),
            fifo: BTreeSet::new(),
            short: ShortQueue::default(),
            link_idle: Instant::ZERO,
            fifo_count: 1000,
            held_since: None,
            host: None,
        }
    }

    /// Where a message of `length` bytes with `left` bytes to transmit,
    /// created at `born`, queues.
    #[inline]
    pub(crate) fn position(&self, length: u32, left: u32, born: Instant) -> XmitPos {
        if length < self.defer_min_bytes {
            XmitPos::Short
        } else {
            XmitPos::Paced(left, born)
        }
    }

    /// Queues the RPC at `pos`.
    #[inline]
    pub(crate) fn enqueue(&mut self, rpc: RpcRef, pos: XmitPos) {
        match pos {
            XmitPos::Short => {
                self.short.insert(rpc);
            }
            XmitPos::Paced(left, born) => {
                self.srpt.insert(SrptKey { left, rpc });
                self.fifo.insert(FifoKey { born, rpc });
            }
        }
    }

    /// Moves a queued RPC from `old` to `new`: a paced message that sent
    /// some bytes only changes its SRPT place (in place, usually), its
    /// FIFO place stays.
    #[inline]
    pub(crate) fn requeue(&mut self, rpc: RpcRef, old: XmitPos, new: XmitPos) {
        match (old, new) {
            (XmitPos::Paced(l0, b0), XmitPos::Paced(l1, b1)) if b0 == b1 => {
                self.srpt
                    .replace(&SrptKey { left: l0, rpc }, SrptKey { left: l1, rpc });
            }
            _ => {
                self.dequeue(rpc, old);
                self.enqueue(rpc, new);
            }
        }
    }

    /// Queues a message too short to pace (usually at the back).
    #[inline]
    pub(crate) fn enqueue_short(&mut self, rpc: RpcRef) {
        self.short.insert(rpc);
    }

    /// Takes a message too short to pace out of its queue (usually the
    /// front).
    #[inline]
    pub(crate) fn dequeue_short(&mut self, rpc: RpcRef) {
        self.short.remove(&rpc);
    }

    /// Takes the RPC out of the queue it sits in at `pos`.
    #[inline]
    pub(crate) fn dequeue(&mut self, rpc: RpcRef, pos: XmitPos) {
        match pos {
            XmitPos::Short => {
                self.short.remove(&rpc);
            }
            XmitPos::Paced(left, born) => {
                self.srpt.remove(&SrptKey { left, rpc });
                self.fifo.remove(&FifoKey { born, rpc });
            }
        }
    }

    /// True if no message waits to transmit.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.short.is_empty() && self.srpt.is_empty()
    }

    /// The oldest message too short to pace, if any.
    #[inline]
    pub(crate) fn next_short(&self) -> Option<usize> {
        self.short.first().map(|r| r.key)
    }

    /// True if paced messages wait.
    #[inline]
    pub(crate) fn has_paced(&self) -> bool {
        !self.srpt.is_empty()
    }

    /// Paces against the host table's shared NIC estimate from now on
    /// (`offset`: our instants to host time), publishing our best paced
    /// message in `slot`.
    pub(crate) fn attach_host(&mut self, host: crate::host::Host, offset: u64, slot: u32) {
        let max_hold = host.params().liveness.as_nanos() as u64;
        self.host = Some(HostPacer {
            offset,
            slot,
            published: 0,
            now: Instant::ZERO,
            max_hold,
            rewaits: 0,
            yields: 0,
            wakeups: 0,
            pokes: 0,
            timer_woke: false,
            waiter: host.params().waiter,
            yielding: None,
            last: None,
            skip: None,
            stalls: 0,
            host,
        });
        self.publish_best();
    }

    /// Our slot changed (it lapsed and was claimed again).
    pub(crate) fn set_host_slot(&mut self, now: Instant, slot: u32) {
        if let Some(h) = self.host.as_mut() {
            if h.slot != slot {
                // (The old slot may be someone else's by now.)
                let hn = now.as_nanos().wrapping_add(h.offset);
                h.host.withdraw_tx(h.slot, h.published, hn);
                if let Some(y) = h.yielding.take() {
                    h.host.yield_end(h.slot, y.mine);
                }
                h.skip = None;
                h.last = None;
                h.slot = slot;
                h.published = 0;
                h.now = now;
                self.publish_best();
            }
        }
    }

    /// Paces against our own estimate again.
    pub(crate) fn detach_host(&mut self) {
        if let Some(h) = self.host.take() {
            let hn = h.now.as_nanos().wrapping_add(h.offset);
            h.host.withdraw_tx(h.slot, h.published, hn);
            if let Some(y) = h.yielding {
                h.host.yield_end(h.slot, y.mine);
            }
        }
    }

    /// Holds re-armed while joined (wake-ups that sent nothing), of those
    /// the yields to another participant's shorter message and the
    /// pacer's own wake-ups, and the yields a poke ended.
    pub(crate) fn host_rewaits(&self) -> (u64, u64, u64, u64, u64) {
        self.host.as_ref().map_or((0, 0, 0, 0, 0), |h| {
            (h.rewaits, h.yields, h.wakeups, h.pokes, h.stalls)
        })
    }

    /// The pacer's timer fired (joined: counted at the next hold).
    #[inline]
    pub(crate) fn timer_fired(&mut self) {
        if let Some(h) = self.host.as_mut() {
            h.timer_woke = true;
        }
    }

    /// While we yield to a better message in `slot` (with a waiter): our
    /// yield wake-up count when we published the yield.
    pub(crate) fn yield_count(&self, slot: u32) -> Option<u64> {
        let h = self.host.as_ref()?;
        h.yielding.filter(|_| h.slot == slot).map(|y| y.count)
    }

    /// A poke: true if we yielded and the yield is over (a publisher woke
    /// us, or no better message is left): the yield ends, and the next
    /// transmit attempt sends or yields again.
    pub(crate) fn yield_over(&mut self, now: Instant) -> bool {
        let Some(h) = self.host.as_ref() else {
            return false;
        };
        let Some(y) = h.yielding else {
            return false;
        };
        let hn = now.as_nanos().wrapping_add(h.offset);
        // A yield wake-up ends the yield; a grant wake-up of the slot does
        // not (it moves the low half of the wake word too).
        let over = Host::yield_wakes(h.host.woken(h.slot)) != Host::yield_wakes(y.count)
            || h.host.tx_best_better(h.slot, hn, y.mine, h.skip).is_none();
        if over {
            if let Some(h) = self.host.as_mut() {
                h.yielding = None;
                h.host.yield_end(h.slot, y.mine);
                h.pokes += 1;
            }
        }
        over
    }

    /// True if the endpoint joined a host table.
    #[inline]
    pub(crate) fn joined(&self) -> bool {
        self.host.is_some()
    }

    /// The paced queue may have changed at `now`: publishes our shortest
    /// paced message if it did (joined only; kept out of line so the
    /// queue operations stay as they are without a table).
    #[cold]
    #[inline(never)]
    pub(crate) fn host_queue_changed(&mut self, now: Instant) {
        if let Some(h) = self.host.as_mut() {
            h.now = now;
        }
        self.publish_best();
    }

    /// Publishes our shortest paced message's bytes left to transmit, if
    /// it changed (joined only).
    fn publish_best(&mut self) {
        if let Some(h) = self.host.as_mut() {
            let best = self.srpt.first().map_or(0, |k| k.left as u64 + 1);
            if best != h.published {
                let old = core::mem::replace(&mut h.published, best);
                h.host
                    .publish_tx(h.slot, old, best, h.now.as_nanos().wrapping_add(h.offset));
            }
        }
    }

    /// When the NIC will have sent everything handed to it: our estimate,
    /// or the host's when joined.
    #[inline]
    fn idle_at(&self, now: Instant) -> Instant {
        match &self.host {
            None => self.link_idle,
            Some(h) if self.held_too_long(h, now) => self.link_idle,
            Some(h) => now.plus_nanos(
                h.host
                    .link_backlog_ns(now.as_nanos().wrapping_add(h.offset)),
            ),
        }
    }

    /// Joined, and paced data has been held for longer than `max_hold`.
    fn held_too_long(&self, h: &HostPacer, now: Instant) -> bool {
        self.held_since
            .is_some_and(|t| now.nanos_since(t) > h.max_hold)
    }

    /// Joined: another endpoint of the host has a shorter paced message
    /// and the link is busy (so it is sending): we let it go first.
    fn yields(&self, now: Instant, idle: Instant) -> bool {
        self.better(now, idle).is_some()
    }

    /// [`Pacer::yields`]: the better message we yield to. (Not one whose
    /// sender we found stalled.)
    fn better(&self, now: Instant, idle: Instant) -> Option<TxEntry> {
        match &self.host {
            Some(h) if now < idle && !self.held_too_long(h, now) => {
                let mine = self.srpt.first().map_or(u32::MAX, |k| k.left);
                let hn = now.as_nanos().wrapping_add(h.offset);
                h.host.tx_best_better(h.slot, hn, mine, h.skip)
            }
            _ => None,
        }
    }

    /// True if a message of `length` bytes must wait for the link at `now`.
    #[inline]
    pub(crate) fn throttled(&self, now: Instant, length: u32) -> bool {
        if !self.on || length < self.defer_min_bytes {
            return false;
        }
        let idle = self.idle_at(now);
        now + self.max_backlog < idle || (self.host.is_some() && self.yields(now, idle))
    }

    /// Paced data waits for the link: returns when the link will take the
    /// next batch, and whether the hold starts now (it was not held).
    pub(crate) fn hold(&mut self, now: Instant) -> (Instant, bool) {
        let started = self.held_since.is_none();
        if started {
            self.held_since = Some(now);
        }
        let idle = self.idle_at(now);
        if self.host.is_some() {
            let better = self.better(now, idle);
            let mine = self.srpt.first().map_or(u32::MAX, |k| k.left);
            let (mbps, backlog) = (self.link_mbps, self.max_backlog.as_nanos() as u64);
            if let Some(h) = self.host.as_mut() {
                h.rewaits += u64::from(!started);
                h.yields += u64::from(!started && better.is_some());
                h.wakeups += u64::from(!started && h.timer_woke);
                h.timer_woke = false;
                match better {
                    // Yielding to a shorter message of another endpoint,
                    // without a waiter: look again when the backlog drains
                    // to the allowance, when the better message's sender
                    // may send its next batch (as one endpoint's SRPT pick
                    // would, so that if that message has nothing to send
                    // then, ours goes instead of waiting for the NIC to
                    // drain and then filling it at once).
                    Some(_) if !h.waiter => {
                        let room = Self::hold_for_room(idle, self.max_backlog, started);
                        // At the allowance already, and the better message's
                        // sender did not send: it may still (its grant is
                        // on the way) or have nothing left; nothing tells a
                        // polling driver which, so look again every quarter
                        // of the allowance until the link drained (then
                        // nobody is yielded to).
                        return if room.0 > now {
                            room
                        } else {
                            (idle.min(now + self.max_backlog / 4), started)
                        };
                    }
                    Some(mut b) => {
                        // With a waiter: publish the yield, so that the
                        // better message's withdrawal wakes us, and sleep
                        // until then (or the fallback).
                        let hn = now.as_nanos().wrapping_add(h.offset);
                        let prev = h.yielding.take().or(h.last.take());
                        if let Some(y) = prev {
                            if y.until <= now && y.to == b {
                                // The fallback passed and the message we
                                // yielded to did not move: its sender
                                // stalled (or died). Stop yielding to it.
                                h.skip = Some(b);
                                h.stalls += 1;
                            }
                            if y.mine != mine {
                                h.host.yield_end(h.slot, y.mine);
                            }
                        }
                        let count = h.host.yield_begin(h.slot, mine);
                        // (Again after the publish: a withdrawal before it
                        // did not see it.)
                        match h.host.tx_best_better(h.slot, hn, mine, h.skip) {
                            Some(nb) => b = nb,
                            None => {
                                h.host.yield_end(h.slot, mine);
                                return Self::hold_for_room(idle, self.max_backlog, started);
                            }
                        }
                        // The fallback runs from our first yield to this
                        // entry: an unchanged entry has made no progress.
                        let until = match prev {
                            Some(y) if y.to == b => y.until,
                            _ => yield_fallback(idle, b.left, mbps, backlog, h.max_hold / 4),
                        };
                        h.yielding = Some(Yield {
                            mine,
                            count,
                            to: b,
                            until,
                        });
                        return (until, started);
                    }
                    None => h.end_yield(),
                }
            }
        }
        Self::hold_for_room(idle, self.max_backlog, started)
    }

    /// A hold until the NIC estimate (`idle`) drains to the backlog
    /// allowance.
    fn hold_for_room(idle: Instant, max_backlog: Duration, started: bool) -> (Instant, bool) {
        let at = idle
            .saturating_duration_since(Instant::ZERO)
            .saturating_sub(max_backlog);
        (Instant::ZERO + at, started)
    }

    /// Paced data went out at `now`: nanoseconds it was held, if it was.
    pub(crate) fn release(&mut self, now: Instant) -> Option<u64> {
        if let Some(h) = self.host.as_mut() {
            h.timer_woke = false;
            h.end_yield();
        }
        self.held_since.take().map(|since| now.nanos_since(since))
    }

    /// Accounts `wire_bytes` handed to the NIC at `now`.
    #[inline]
    pub(crate) fn charge_link(&mut self, now: Instant, wire_bytes: u64) {
        if self.link_mbps == 0 {
            return;
        }
        // bits / Mbit/s = µs; ×1.01 for the rate margin: ns = bytes·8080/mbps.
        let nanos = wire_bytes * 8080 / self.link_mbps;
        self.link_idle = self.link_idle.max(now).plus_nanos(nanos);
        if let Some(h) = &self.host {
            h.host
                .charge_link(now.as_nanos().wrapping_add(h.offset), nanos);
        }
    }

    /// Most packets of `pkt_wire` wire bytes one paced batch may hold.
    pub(crate) fn batch_limit(&self, pkt_wire: u64) -> u32 {
        if !self.on {
            return u32::MAX;
        }
        let backlog_bytes = self.max_backlog.as_nanos() as u64 * self.link_mbps / 8000;
        (backlog_bytes / pkt_wire.max(1))
            .max(1)
            .min(u32::MAX as u64) as u32
    }

    /// The paced message to serve next: the shortest, or the oldest when the
    /// FIFO share is due.
    pub(crate) fn pick_paced(&mut self) -> Option<usize> {
        if self.grant_order {
            return self.fifo.first().map(|e| e.rpc.key);
        }
        let frac = self.fifo_fraction;
        if frac > 0 {
            self.fifo_count -= frac;
            if self.fifo_count <= 0 {
                self.fifo_count += 1000;
                return self.fifo.first().map(|e| e.rpc.key);
            }
        }
        self.srpt.first().map(|e| e.rpc.key)
    }
}

impl Endpoint {
    /// Puts the RPC in the right transmit queue if it has granted bytes not
    /// yet sent, or takes it out.
    ///
    /// Inline for the moves every short message makes (into the short
    /// queue when it is sent, out when its last byte went): those are a
    /// push at the back and a pop at the front of one queue, never the
    /// paced orders, the host table or the grant structures. Every other
    /// move goes through [`Endpoint::requeue_xmit`].
    #[inline(always)]
    pub(crate) fn update_xmit(&mut self, key: usize) {
        let rpc = &mut self.rpcs[key];
        let want = match (&rpc.msgout, rpc.state) {
            // (A client request waits for its server's incarnation: `echo`.)
            (Some(m), RpcState::Outgoing) if m.has_sendable() && !rpc.held && rpc.echo != 0 => {
                let born = if self.pacer.grant_order {
                    m.wait_since
                } else {
                    m.init_time
                };
                Some(self.pacer.position(m.length(), m.bytes_left(), born))
            }
            _ => None,
        };
        let old = rpc.xmit_key;
        if want == old {
            return;
        }
        let r = RpcRef { seq: rpc.seq, key };
        match (old, want) {
            (None, Some(XmitPos::Short)) => {
                rpc.xmit_key = want;
                self.pacer.enqueue_short(r);
            }
            (Some(XmitPos::Short), None) => {
                rpc.xmit_key = want;
                self.pacer.dequeue_short(r);
            }
            _ => self.requeue_xmit(key, want),
        }
    }

    /// [`Endpoint::update_xmit`]'s general case: the RPC moves from its
    /// current queue position to `want`.
    #[inline(never)]
    fn requeue_xmit(&mut self, key: usize, want: Option<XmitPos>) {
        let rpc = &mut self.rpcs[key];
        let r = RpcRef { seq: rpc.seq, key };
        let old = core::mem::replace(&mut rpc.xmit_key, want);
        if let (Some(o), Some(n)) = (old, want) {
            // Still queued, fewer bytes left (per packet sent).
            self.pacer.requeue(r, o, n);
            if (o != XmitPos::Short || n != XmitPos::Short) && self.pacer.joined() {
                self.host_queue_changed();
            }
            return;
        }
        self.xmit_unqueue(key, r.seq, old);
        if let Some(pos) = want {
            self.pacer.enqueue(r, pos);
            if pos != XmitPos::Short && self.pacer.joined() {
                self.host_queue_changed();
            }
        }
    }

    /// Removes a queue position (the RPC is being freed or stops sending).
    pub(crate) fn xmit_unqueue(&mut self, key: usize, seq: u64, pos: Option<XmitPos>) {
        if let Some(pos) = pos {
            self.pacer.dequeue(RpcRef { seq, key }, pos);
            // Only the paced queue is published (short messages never wait
            // for the link): no table traffic per short message.
            if pos != XmitPos::Short && self.pacer.joined() {
                self.host_queue_changed();
            }
        }
    }

    /// The paced queue changed while joined: publishes our shortest paced
    /// message in a slot that is ours. An idle endpoint's slot lapses and
    /// may have been taken since our last grant pass or heartbeat, so the
    /// slot is renewed (or another claimed) first.
    #[cold]
    #[inline(never)]
    fn host_queue_changed(&mut self) {
        let now = self.now;
        if let Some(j) = self.host.as_deref_mut() {
            if !j.keep_slot(now) {
                // No slot is ours (the table is full of live ones): publish
                // nothing rather than into someone else's; the next change
                // tries again.
                return;
            }
            let slot = j.slot;
            self.pacer.set_host_slot(now, slot);
        }
        self.pacer.host_queue_changed(now);
    }

    /// Remembers that paced data waits for the link, and arms the pacer's
    /// wake-up.
    pub(crate) fn hold_for_link(&mut self) {
        let (wakeup, started) = self.pacer.hold(self.now);
        if started {
            self.stats.throttled += 1;
        }
        self.timers.set(Timer::Pacer, wakeup);
    }
}

/// An outgoing message not yet fully transmitted (for diagnostics and
/// simulators: see [`Endpoint::outgoing_messages`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The receiver.
    pub peer: core::net::SocketAddr,
    /// Local RPC id (the receiver's id for the RPC is `id ^ 1`).
    pub id: u64,
    /// Message length.
    pub length: u32,
    /// Bytes the receiver allowed so far (unscheduled bytes and grants).
    pub granted: u32,
    /// Bytes transmitted at least once.
    pub sent: u32,
}

impl Endpoint {
    /// Every outgoing message with bytes not yet transmitted, in no
    /// particular order (diagnostics; walks all RPCs).
    pub fn outgoing_messages(&self) -> impl Iterator<Item = OutgoingMessage> + '_ {
        self.rpcs.iter().filter_map(|(_, r)| {
            let m = r.msgout.as_ref()?;
            (!m.fully_sent()).then(|| OutgoingMessage {
                peer: r.peer,
                id: r.id,
                length: m.length(),
                granted: m.granted,
                sent: m.next_xmit,
            })
        })
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    /// 10 Gbit/s, 5 µs of backlog (6250 bytes), 50‰ FIFO share.
    fn pacer() -> Pacer {
        let config = Config {
            link_mbps: 10_000,
            ..Config::default()
        };
        Pacer::new(&config)
    }

    fn rpc(seq: u64) -> RpcRef {
        RpcRef {
            seq,
            key: seq as usize + 100,
        }
    }

    fn at(ns: u64) -> Instant {
        Instant::from_nanos(ns)
    }

    #[test]
    fn set_host_slot_and_detach__leave_the_old_slot_to_whoever_took_it() {
        let cfg = Config {
            link_mbps: 10_000,
            ..Config::default()
        };
        let host = crate::host::Host::in_process(&crate::host::HostParams::from_config(&cfg, 3));
        let mut p = Pacer::new(&cfg);
        p.attach_host(host.clone(), 0, 0);
        // Our slot 0 lapsed; another endpoint took it and publishes a
        // paced message. We move to slot 1.
        host.claim(1_000, 7, 0).unwrap();
        host.publish_tx(0, 0, 3001, 1_000);
        p.set_host_slot(at(1_000), 1);
        assert!(
            host.tx_better(2, 1_000, 5_000),
            "the new owner of slot 0 had its paced message withdrawn"
        );
        // The same when we leave after slot 1 was taken too.
        host.claim(1_000, 8, 1).unwrap();
        host.publish_tx(1, 0, 2001, 1_000);
        p.detach_host();
        assert!(
            host.tx_better(2, 1_000, 2_500),
            "the new owner of slot 1 had its paced message withdrawn"
        );
    }

    #[test]
    fn charge_link__one_percent_margin_and_backlog_builds_up() {
        let mut p = pacer();
        // 10 000 wire bytes at 10 Gbit/s: 8 µs, ×1.01.
        p.charge_link(at(1000), 10_000);
        assert_eq!(p.link_idle, at(1000 + 8080));
        // Handed over before the NIC is idle: queues behind.
        p.charge_link(at(2000), 10_000);
        assert_eq!(p.link_idle, at(1000 + 2 * 8080));
        // After it went idle: starts from now.
        p.charge_link(at(100_000), 1250);
        assert_eq!(p.link_idle, at(100_000 + 1010));
    }

    #[test]
    fn throttled__only_beyond_max_backlog() {
        let mut p = pacer();
        assert!(!p.throttled(at(0), 100_000));
        p.charge_link(at(0), 20_000); // idle at 16.16 µs
        assert!(p.throttled(at(0), 100_000));
        // 5 µs of backlog allowed: at 11.16 µs the next batch may go.
        assert!(p.throttled(at(11_159), 100_000));
        assert!(!p.throttled(at(11_160), 100_000));
    }

    #[test]
    fn throttled__short_messages_never() {
        let mut p = pacer();
        p.charge_link(at(0), 1_000_000);
        assert!(!p.throttled(at(0), 999));
        assert!(p.throttled(at(0), 1000));
    }

    #[test]
    fn throttled__never_without_link_rate_or_when_off() {
        let config = Config {
            link_mbps: 0,
            ..Config::default()
        };
        let mut p = Pacer::new(&config);
        p.charge_link(at(0), 1_000_000);
        assert!(!p.throttled(at(0), u32::MAX));
        let config = Config {
            link_mbps: 10_000,
            pacer: false,
            ..Config::default()
        };
        let mut p = Pacer::new(&config);
        p.charge_link(at(0), 1_000_000);
        assert!(!p.throttled(at(0), u32::MAX));
        assert_eq!(p.batch_limit(1500), u32::MAX);
    }

    #[test]
    fn hold__wakes_when_backlog_drains_to_the_allowance() {
        let mut p = pacer();
        p.charge_link(at(0), 20_000);
        let (wake, started) = p.hold(at(10));
        assert_eq!(wake, at(16_160 - 5000));
        assert!(started);
        let (_, again) = p.hold(at(20));
        assert!(!again, "one hold until released");
        assert_eq!(p.release(at(1010)), Some(1000));
        assert_eq!(p.release(at(2000)), None);
    }

    #[test]
    fn hold__yielding_without_a_waiter_looks_again_at_the_allowance_not_the_drain() {
        let cfg = Config {
            link_mbps: 10_000,
            ..Config::default()
        };
        let params = crate::host::HostParams::from_config(&cfg, 3);
        assert!(!params.waiter, "a polling driver");
        let host = crate::host::Host::in_process(&params);
        let mut p = Pacer::new(&cfg);
        p.attach_host(host.clone(), 0, 0);
        // Slot 1 has a shorter paced message; the link is busy until
        // 16.16 µs: we yield to it.
        host.claim(1, 7, 1).unwrap();
        host.publish_tx(1, 0, 3001, 0);
        p.charge_link(at(0), 20_000);
        assert!(
            p.throttled(at(12_000), u32::MAX),
            "yields: the link is busy"
        );
        let (wake, started) = p.hold(at(10));
        assert!(started);
        // When the better message's sender may send its next batch: if it
        // has nothing to send then, we go.
        assert_eq!(wake, at(16_160 - 5000));
        // At the allowance the better message's sender did not send (it
        // stalled, or its grant is on the way): we look again every quarter
        // of the allowance, and once the link drained we send.
        assert_eq!(p.hold(at(11_160)).0, at(12_410));
        assert_eq!(p.hold(at(15_000)).0, at(16_160));
        assert!(!p.throttled(at(16_160), u32::MAX));
        // It has nothing to send (withdrawn): we send at the allowance.
        host.withdraw_tx(1, 3001, 11_160);
        assert!(!p.throttled(at(11_160), u32::MAX));
    }

    #[test]
    fn batch_limit__backlog_worth_of_packets_at_least_one() {
        let p = pacer();
        // 5 µs at 10 Gbit/s = 6250 bytes.
        assert_eq!(p.batch_limit(1500), 4);
        assert_eq!(p.batch_limit(9000), 1);
    }

    #[test]
    fn pick_paced__srpt_with_fifo_share() {
        let mut p = pacer();
        // The old long message and a newer short one.
        p.enqueue(rpc(1), XmitPos::Paced(1_000_000, at(0)));
        p.enqueue(rpc(2), XmitPos::Paced(5_000, at(50)));
        let picks: Vec<usize> = (0..40).map(|_| p.pick_paced().unwrap()).collect();
        // 50‰: one pick in 20 goes to the oldest.
        let old = picks.iter().filter(|&&k| k == rpc(1).key).count();
        assert_eq!(old, 2);
        assert_eq!(picks[0], rpc(2).key);
        assert_eq!(picks[19], rpc(1).key);
    }

    #[test]
    fn enqueue__short_messages_apart_in_creation_order() {
        let mut p = pacer();
        assert_eq!(p.position(999, 999, at(0)), XmitPos::Short);
        assert_eq!(p.position(1000, 700, at(3)), XmitPos::Paced(700, at(3)));
        p.enqueue(rpc(5), XmitPos::Short);
        p.enqueue(rpc(4), XmitPos::Short);
        assert!(!p.has_paced());
        assert_eq!(p.next_short(), Some(rpc(4).key));
        p.dequeue(rpc(4), XmitPos::Short);
        assert_eq!(p.next_short(), Some(rpc(5).key));
        p.dequeue(rpc(5), XmitPos::Short);
        assert!(p.is_empty());
    }

    #[test]
    fn short_queue__matches_an_ordered_set_under_any_order_of_changes() {
        // A model check: joins and leaves in scrambled order, repeats and
        // removals of absent entries; the queue's head and emptiness must
        // always be the ordered set's.
        let mut q = ShortQueue::default();
        let mut model = BTreeSet::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let r = rpc(x % 64);
            if x & (1 << 40) == 0 {
                q.insert(r);
                model.insert(r);
            } else {
                q.remove(&r);
                model.remove(&r);
            }
            assert_eq!(q.first(), model.first());
            assert_eq!(q.is_empty(), model.is_empty());
            assert!(q.0.iter().eq(model.iter()), "same entries, same order");
        }
    }

    #[test]
    fn requeue__bytes_sent_move_the_srpt_place_only() {
        let mut p = pacer();
        p.enqueue(rpc(1), XmitPos::Paced(8_000, at(0)));
        p.enqueue(rpc(2), XmitPos::Paced(5_000, at(50)));
        assert_eq!(p.pick_paced(), Some(rpc(2).key));
        // RPC 1 sent bytes: now the shortest; the FIFO order is unchanged.
        p.requeue(
            rpc(1),
            XmitPos::Paced(8_000, at(0)),
            XmitPos::Paced(4_000, at(0)),
        );
        assert_eq!(p.srpt.len(), 2);
        assert_eq!(p.pick_paced(), Some(rpc(1).key));
        assert_eq!(p.fifo.first().map(|k| k.rpc), Some(rpc(1)));
        // Short to paced (another queue): out of one, into the other.
        p.enqueue(rpc(3), XmitPos::Short);
        p.requeue(rpc(3), XmitPos::Short, XmitPos::Paced(100, at(70)));
        assert_eq!(p.next_short(), None);
        assert_eq!(p.pick_paced(), Some(rpc(3).key));
        assert_eq!(p.fifo.len(), 3);
    }

    #[test]
    fn dequeue__removes_from_both_paced_orders() {
        let mut p = pacer();
        let pos = XmitPos::Paced(10_000, at(7));
        p.enqueue(rpc(1), pos);
        assert!(p.has_paced());
        p.dequeue(rpc(1), pos);
        assert!(p.is_empty());
        assert_eq!(p.pick_paced(), None);
    }
}
