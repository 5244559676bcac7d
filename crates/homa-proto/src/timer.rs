//! Timers: silence tracking, retransmission requests, probes, timeouts,
//! NEED_ACK, and fast recovery of clearly lost packets (`docs/protocol.md`,
//! "Timers, retransmission and timeouts").
//!
//! A periodic pass (every `Config::tick`, armed only while RPCs exist) does
//! what the kernel's 1 ms timer does for every RPC, but looks only at the
//! RPCs that changed since the last pass or whose time came (see
//! [`RpcTable`](crate::rpc::RpcTable)), and asks what each waits for from its
//! peer:
//!
//! * nothing (we are sending, or our application holds it): its clocks
//!   restart. A sender whose granted bytes wait behind its other messages
//!   for half of `resend_after` says BUSY, so the receiver does not take the
//!   silence for a loss.
//! * bytes we granted (or that were sent unscheduled): after `resend_after`
//!   of silence we ask for what is missing: RESEND(0, all) when nothing has
//!   arrived, else one RESEND per gap plus one for granted bytes beyond the
//!   highest byte received; again every `resend_interval`, backing off. Only
//!   time during which our downlink was not busy with packets at their level
//!   or above counts as silence ([`RxLink`]): strict-priority switches serve
//!   those first, so the bytes are queued, not lost. While they starve that
//!   way the grant scheduler issues no grant above their level.
//! * a client's response, before the server showed it has the request: after
//!   `resend_after` of silence, RESEND(0, all) (a lost request, a lost
//!   response, or a lost probe).
//! * only a sign of life (we hold the peer's message back, the server holds
//!   our request and grants later, we wait for the server's incarnation):
//!   zero-length RESENDs as probes, every [`Endpoint::probe_interval`]
//!   (the incarnation probe after `resend_after`), answered BUSY or
//!   RPC_UNKNOWN.
//!
//! Two clocks per RPC: `last_heard` (progress, or BUSY) times our requests;
//! `alive` (anything from the peer about the RPC) times the timeout. After
//! `timeout` with nothing from the peer the RPC is abandoned: a client RPC
//! fails with [`RpcError::Timeout`], a server RPC is freed. A server whose
//! response is fully sent sends NEED_ACK after `need_ack_after`, then at
//! doubling intervals (at least `resend_interval`: about ten over `timeout`,
//! where the kernel sends one per tick); unlike the kernel it gives up after
//! `timeout` without an answer (the at-most-once record keeps the request
//! from running again).
//! A pass that runs `resend_after` or more late means the endpoint was not
//! run: every silence clock moves forward by the delay.
//!
//! Fast recovery. The kernel waits for whole-RPC silence before asking for
//! anything, so a single lost packet in the middle of a long message costs at
//! least 5 ms; the kernel authors tried faster retries and measured 20x more
//! retransmitted packets, because the receiver cannot tell a lost packet from
//! one still queued behind other traffic. We only act early on *holes*: a
//! gap below the highest byte received. Senders transmit each message in
//! order, so once bytes beyond a hole have arrived, the hole's packets were
//! sent earlier. They may still be in flight, overtaken: a message's packets
//! travel at several priority levels, and strict-priority switches let a
//! later packet at a higher level pass earlier ones; our own first measurement
//! of a naive rule on a queued network confirmed the kernel's finding (2265
//! spurious retransmissions without a single loss). A packet at the same or
//! a lower level cannot pass, so a hole counts as clearly lost only when a
//! packet from beyond it arrived at a level no higher than the lowest level
//! the hole's bytes can have used (the message's unscheduled level, or the
//! lowest level we ever granted it). Drivers report arrival levels with
//! [`Endpoint::handle_datagram_at_level`]; without them only the silence
//! timer recovers losses. We then wait `fast_resend_rtts` measured round
//! trips (at least `min_gap_age`) to cover path reordering, and ask for that
//! hole alone. Tail losses (nothing beyond) still wait for silence, because
//! there the ambiguity is real.

use core::net::SocketAddr;
use core::time::Duration;

use crate::endpoint::{Endpoint, RpcError, MAX_RESENDS_PER_CHECK};
use crate::rpc::msgin::UNKNOWN_LEVEL;
use crate::rpc::{Probe, RpcState};
use crate::timers::Timer;
use crate::wire::{Body, ResendHeader};
use crate::Instant;

/// What an RPC waits for from its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Nothing: we are sending, or our application holds the RPC.
    Nothing,
    /// Bytes of the peer's message that we granted (or it sent
    /// unscheduled).
    Granted,
    /// A client: the first byte of the response (the request is complete),
    /// or any sign that the server has the request.
    Response,
    /// A client: grants for the rest of its request. The server knows the
    /// RPC, or will ask for what it missed: only liveness is in question.
    Grants,
    /// We hold the peer's message back (memory, or others rank first):
    /// only liveness is in question.
    Held,
    /// A client request waiting for its server's incarnation.
    Incarnation,
}

/// Wire time of the DATA this endpoint received, per priority level: when
/// granted bytes are silent while packets of the same or higher levels keep
/// arriving, they are queued behind those packets (strict-priority switch
/// ports serve higher levels first, FIFO within a level), not lost. The
/// silence a receiver waits for before asking for granted bytes counts only
/// the time its downlink was not busy with such traffic. (The kernel's plain
/// 5 ms of silence made a lossless simulated datacenter at 80% load
/// retransmit about 1% of its long messages' packets.)
///
/// An endpoint that joined a host table shares its downlink with the
/// host's other participants: it adds its figures to the table's downlink
/// counters (in batches of [`RX_LINK_BATCH_NS`]) and reads the host's, so
/// its granted bytes queued behind another participant's higher-level
/// packets are not taken for lost either.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RxLink {
    /// Nanoseconds of link time taken by DATA arriving at each level.
    busy: [u64; crate::wire::MAX_PRIORITIES],
    /// Joined: what of `busy` is not yet added to the host's counters.
    pending: [u64; crate::wire::MAX_PRIORITIES],
    /// The sum of `pending`.
    pending_ns: u64,
}

/// Link time a joined endpoint's [`RxLink`] gathers before it adds it to
/// the host table (one atomic add per level then, not one per packet). The
/// others' view of our downlink traffic lags by at most this much, against
/// a silence timer of milliseconds.
pub(crate) const RX_LINK_BATCH_NS: u64 = 20_000;

impl RxLink {
    /// A DATA packet of `wire_bytes` arrived at `level`; `host` is the
    /// table we joined, if any.
    pub(crate) fn record(
        &mut self,
        level: u8,
        wire_bytes: u64,
        link_mbps: u32,
        host: Option<&crate::host::Host>,
    ) {
        if let Some((l, ns)) = self.level_time(level, wire_bytes, link_mbps) {
            self.busy[l] += ns;
            if let Some(h) = host {
                self.pending[l] += ns;
                self.pending_ns += ns;
                if self.pending_ns >= RX_LINK_BATCH_NS {
                    h.downlink_add(&self.pending);
                    self.pending = Default::default();
                    self.pending_ns = 0;
                }
            }
        }
    }

    /// What [`RxLink::record`] of a packet of `wire_bytes` at `level` added
    /// to [`RxLink::at_or_above`]`(from)`.
    pub(crate) fn counted(&self, level: u8, wire_bytes: u64, link_mbps: u32, from: u8) -> u64 {
        match self.level_time(level, wire_bytes, link_mbps) {
            Some((l, ns)) if l >= (from as usize).min(self.busy.len()) => ns,
            _ => 0,
        }
    }

    /// The level slot a packet of `wire_bytes` at `level` is recorded in,
    /// and its link time (ns) at `link_mbps`; `None` without a link rate.
    #[inline]
    fn level_time(&self, level: u8, wire_bytes: u64, link_mbps: u32) -> Option<(usize, u64)> {
        (link_mbps > 0).then(|| {
            (
                (level as usize).min(self.busy.len() - 1),
                wire_bytes * 8000 / link_mbps as u64,
            )
        })
    }

    /// Link time taken so far by DATA at `level` or above: ours alone, or
    /// with a host table the host's (what every participant added, plus
    /// our part not added yet). Wraps; callers take differences.
    pub(crate) fn at_or_above(&self, level: u8, host: Option<&crate::host::Host>) -> u64 {
        let from = (level as usize).min(self.busy.len());
        match host {
            None => self.busy[from..].iter().sum(),
            Some(h) => self.pending[from..]
                .iter()
                .fold(h.downlink_at_or_above(level), |a, x| a.wrapping_add(*x)),
        }
    }
}

/// The level the sender uses for unscheduled bytes of a `length`-byte
/// message to us, under our `cutoffs` (what `Peer::unsched_priority` does on
/// its side).
pub(crate) fn unsched_level(
    cutoffs: &[u32; crate::wire::MAX_PRIORITIES],
    length: u32,
    levels: u8,
) -> u8 {
    (0..levels)
        .rev()
        .find(|&i| cutoffs[i as usize] >= length)
        .unwrap_or(0)
}

/// What `rpc` waits for from its peer; `None` for a server RPC sending its
/// response (which [`Endpoint::check_response`] looks after).
fn wait_of(rpc: &crate::rpc::Rpc) -> Option<Wait> {
    Some(match (rpc.is_client(), rpc.state) {
        // We hold the peer's message back (no buffer, or no grant: too
        // little memory, or others rank first): the peer owes us nothing
        // but must know we are alive, and we that it is.
        (_, RpcState::Incoming) if rpc.waiting.is_some() => Wait::Held,
        (_, RpcState::Incoming) => match rpc.msgin.as_ref() {
            Some(m) if m.all_granted_received() => Wait::Held,
            Some(_) => Wait::Granted,
            None => Wait::Response,
        },
        // A request waiting for its server's incarnation.
        (true, RpcState::Outgoing) if rpc.echo == 0 => Wait::Incarnation,
        (true, RpcState::Outgoing) => match rpc.msgout.as_ref() {
            Some(m) if m.has_sendable() => Wait::Nothing,
            Some(m) if !m.fully_sent() => Wait::Grants,
            _ => Wait::Response,
        },
        (true, RpcState::InService) => Wait::Nothing,
        // Our application holds the request.
        (false, RpcState::InService) => Wait::Nothing,
        (false, RpcState::Outgoing) => return None,
    })
}

impl Endpoint {
    /// Processes timers; call when [`Endpoint::poll_timeout`]'s deadline
    /// passes (calling early is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.touch(now);
        // Deadlines that only mean "transmit now" are consumed here, so
        // poll_timeout never stays in the past: a due FIFO grant is issued
        // (queued for poll_transmit), and a pacer wake-up is cleared.
        if self.timers.is_expired(Timer::Pacer, now) {
            self.timers.stop(Timer::Pacer);
            self.pacer.timer_fired();
        }
        if self.timers.is_expired(Timer::FifoGrant, now) {
            self.send_grants(now);
        }
        if self.timers.is_expired(Timer::Host, now) {
            self.host_timer(now);
        }
        if self.timers.is_expired(Timer::PeerGc, now) {
            self.collect_peers(now, false);
            let period = self.config.peer_idle / 2;
            let next = (!self.peers.is_empty()).then_some(now + period);
            self.timers.set_opt(Timer::PeerGc, next);
        }
        let tick_due = self.timers.is_expired(Timer::Tick, now);
        if let Some(due) = self.timers.get(Timer::Tick).filter(|_| tick_due) {
            let late = now.saturating_duration_since(due);
            if late >= self.config.resend_after {
                // We were not run (descheduled, or a driver that did not
                // arm our timer): that time is no one's silence.
                self.stats.timer_late += 1;
                self.shift_clocks(now, late);
            }
        }
        let gaps_due = self.timers.is_expired(Timer::Gaps, now);
        if !tick_due && !gaps_due {
            return;
        }
        self.timers.stop(Timer::Gaps);
        if tick_due {
            self.fail_unreachable(now);
        }
        // The scan's key list reuses one buffer: no allocation per pass.
        // It holds the RPCs that changed since the last pass or whose time
        // came ([`RpcTable::due`](crate::rpc::RpcTable)), in key order.
        let mut keys = core::mem::take(&mut self.scan_keys);
        keys.clear();
        if self.full_timer_walk {
            keys.extend(self.rpcs.iter().map(|(k, _)| k));
            if tick_due {
                self.rpcs.forget_changed();
            }
        } else {
            self.rpcs.due(now, tick_due, &mut keys);
        }
        if tick_due {
            // The scan starts at the first RPC the per-peer RESEND cap
            // turned away in the last tick that turned one away, so that
            // the cap does not always favour the same RPCs.
            let first = keys.partition_point(|&k| k < self.scan_start);
            keys.rotate_left(first);
            self.first_capped = None;
            self.resends_this_tick.clear();
        }
        self.stats.timer_checks += keys.len() as u64;
        for &key in &keys {
            if !self.rpcs.contains(key) {
                // Freed by the check of an RPC before it in this pass.
                continue;
            }
            let gaps = self.check_gaps(now, key);
            if tick_due && self.rpcs.contains(key) {
                self.check_rpc(now, key);
            }
            if self.rpcs.contains(key) {
                // (A pass for holes alone leaves the time of the RPC's
                // other checks as it was.)
                let at = tick_due.then(|| self.next_check(now, key));
                self.rpcs.set_check_at(key, at, gaps);
            }
        }
        self.scan_keys = keys;
        if tick_due {
            if let Some(k) = self.first_capped {
                self.scan_start = k;
            }
            // The application may have dropped delivered messages.
            self.memory_freed();
            let tick = self.config.tick;
            let next = (!self.rpcs.is_empty()).then_some(now + tick);
            self.timers.set_opt(Timer::Tick, next);
        }
    }

    /// Moves every silence clock `late` forward (never past `now`): the
    /// endpoint did not run for that long, so its peers could not be heard.
    fn shift_clocks(&mut self, now: Instant, late: Duration) {
        let shift = |t: &mut Instant| *t = (*t + late).min(now);
        for (_, rpc) in self.rpcs.iter_mut() {
            shift(&mut rpc.last_heard);
            shift(&mut rpc.alive);
            shift(&mut rpc.last_xmit);
            if let Some(t) = rpc.last_request.as_mut() {
                shift(t);
            }
        }
        for peer in self.peers.values_mut() {
            shift(&mut peer.last_heard);
        }
    }

    /// The next deadline at which [`Endpoint::handle_timeout`] must run, if
    /// any. After `handle_timeout(t)` every deadline returned is later than
    /// `t`.
    #[inline]
    pub fn poll_timeout(&self) -> Option<Instant> {
        // A FIFO-grant deadline left over after the last message needing
        // grants went is not reported (it runs at the next pass anyway).
        self.timers.next_timeout(!self.grants.is_empty())
    }

    /// Starts the periodic pass if it is not running.
    pub(crate) fn arm_tick(&mut self, now: Instant) {
        self.timers
            .set_if_unset(Timer::Tick, now + self.config.tick);
    }

    /// How old a hole must be before fast recovery asks for it, for a peer
    /// with the given round-trip estimate; `None` disables fast recovery.
    fn gap_age(&self, rtt: Option<Duration>) -> Option<Duration> {
        let n = self.config.fast_resend_rtts;
        if n == 0 {
            return None;
        }
        let age = rtt.map_or(self.config.resend_after, |r| r * n);
        Some(age.clamp(self.config.min_gap_age, self.config.resend_after))
    }

    /// A new hole opened in a message from `peer`: make sure the timer looks
    /// at it when it becomes due.
    pub(crate) fn arm_gap_check(&mut self, now: Instant, peer: core::net::SocketAddr) {
        let rtt = self.peers.get(&peer).and_then(|p| p.rtt);
        if let Some(age) = self.gap_age(rtt) {
            let due = now + age;
            self.timers.set_earliest(Timer::Gaps, due);
        }
    }

    /// Fast recovery for one RPC: requests holes that are due and re-arms
    /// the gap deadline for the others. Returns when the first of its holes
    /// that fast recovery may ask for is due, if it has any.
    fn check_gaps(&mut self, now: Instant, key: usize) -> Option<Instant> {
        let rpc = &self.rpcs[key];
        if rpc.state != RpcState::Incoming {
            return None;
        }
        let m = rpc.msgin.as_ref()?;
        if m.gaps().is_empty() {
            return None;
        }
        let rtt = self.peers.get(&rpc.peer).and_then(|p| p.rtt);
        let age = self.gap_age(rtt)?;
        let interval = self.config.resend_interval;
        let (peer, port, id) = (rpc.peer, rpc.port, rpc.id);
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        let m = self.rpcs.timer_mut(key).msgin.as_mut().expect("checked");
        let floors: Vec<u8> = m
            .gaps()
            .iter()
            .map(|g| m.level_floor(g.start, g.end))
            .collect();
        for (g, floor) in m.gaps_mut().iter_mut().zip(floors) {
            // Only a hole that a packet sent after it, at a level no higher
            // than the hole's own, has passed is clearly lost; others may be
            // queued behind higher-priority traffic (the silence timer
            // covers them). Without reported levels (both unknown) nothing
            // is clearly lost.
            if g.beyond_level > floor || g.beyond_level == UNKNOWN_LEVEL {
                continue;
            }
            let wait = if g.requested { interval } else { age };
            let at = g.since + wait;
            if now >= at && due.len() < MAX_RESENDS_PER_CHECK {
                due.push((g.start, g.end - g.start));
                g.since = now;
                g.requested = true;
                next = Some(next.map_or(now + interval, |n| n.min(now + interval)));
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        if let Some(n) = next {
            self.timers.set_earliest(Timer::Gaps, n);
        }
        if !due.is_empty() {
            let rpc = self.rpcs.timer_mut(key);
            rpc.rtt_probe = Some(Probe::resend(rpc.rtt_probe, now));
        }
        self.stats.resends_fast += due.len() as u64;
        if !due.is_empty() {
            tracing::debug!(rpc = id, %peer, holes = ?due, "fast resend: holes clearly lost");
        }
        self.send_resends(port, peer, id, &due);
        next
    }

    /// Sends one RESEND per `(offset, length)` range, asking for the data
    /// at the top level.
    fn send_resends(&mut self, port: u16, peer: SocketAddr, id: u64, ranges: &[(u32, u32)]) {
        let priority = Some(self.config.control_priority());
        for &(offset, length) in ranges {
            let body = Body::Resend(ResendHeader {
                offset,
                length,
                priority,
            });
            self.send_control(port, peer, id, body);
        }
    }

    /// The periodic check of one RPC.
    fn check_rpc(&mut self, now: Instant, key: usize) {
        let timeout = self.config.timeout;
        let rpc = self.rpcs.timer_mut(key);
        if rpc.held {
            // Output commit holds our message: nothing is late.
            rpc.heard(now);
            return;
        }
        let Some(wait) = wait_of(rpc) else {
            return self.check_response(now, key);
        };
        if wait == Wait::Nothing {
            rpc.heard(now);
            let stalled = rpc.state == RpcState::Outgoing
                && rpc
                    .msgout
                    .as_ref()
                    .is_some_and(|m| m.has_sendable() && m.next_xmit > 0)
                && now.saturating_duration_since(rpc.last_xmit) >= self.config.resend_after / 2;
            if stalled && !rpc.held && rpc.echo != 0 {
                // Granted bytes wait behind our other messages: tell the
                // receiver we are alive and will send, before it takes the
                // silence for a loss and asks.
                rpc.last_xmit = now;
                let (port, peer, id) = (rpc.port, rpc.peer, rpc.id);
                self.stats.busy_sent_waiting += 1;
                self.send_control(port, peer, id, Body::Busy);
            }
            return;
        }
        if now.saturating_duration_since(rpc.alive) >= timeout {
            // Nothing, not even BUSY, for `timeout`: the peer stopped
            // answering.
            self.stats.timeouts += 1;
            tracing::info!(rpc = rpc.id, peer = %rpc.peer, "timeout: peer silent, rpc fails");
            self.fail_rpc(key, RpcError::Timeout);
            return;
        }
        let mut silent = now.saturating_duration_since(rpc.last_heard);
        if wait == Wait::Granted && silent < timeout / 2 {
            // Bytes we granted: only time our link was not busy with
            // packets at their level or above counts (see `RxLink`), for up
            // to half the timeout.
            let (level, mark) = rpc.quiet_mark;
            let host = self.host.as_deref().map(|j| &j.host);
            let queued = self.rx_link.at_or_above(level, host).saturating_sub(mark);
            let wall = silent;
            silent = silent.saturating_sub(Duration::from_nanos(queued));
            let starving = wall >= self.config.resend_after && silent < self.config.resend_after;
            if starving != rpc.starving {
                rpc.starving = starving;
                self.grants.request_pass();
                if starving {
                    self.grants
                        .note_starving(crate::rpc::RpcRef { seq: rpc.seq, key });
                }
            }
        }
        let rpc = self.rpcs.timer_mut(key);
        // Back off while the peer stays silent or only says BUSY: 1, 2, 4,
        // ... 16 intervals between RESENDs (a descheduled user-space peer
        // must not come back to a flood, and a busy one is probed rarely).
        if rpc.last_request.is_some_and(|t| rpc.last_heard > t) && !rpc.busy {
            rpc.resend_backoff = 0;
        }
        let (after, gap) = self.resend_timing(&self.rpcs[key], wait);
        let rpc = &self.rpcs[key];
        let due = rpc
            .last_request
            .is_none_or(|t| now.saturating_duration_since(t) >= gap);
        if silent >= after && due {
            let peer = rpc.peer;
            // A peer we have heard nothing at all from for a while gets only
            // a couple of probes per pass until it answers.
            let peer_silent = self.peers.get(&peer).is_some_and(|p| {
                now.saturating_duration_since(p.last_heard) >= self.config.resend_after
            });
            let cap = if peer_silent {
                2
            } else {
                self.config.max_resend_rpcs_per_peer
            };
            let sent = self.resends_this_tick.entry(peer).or_insert(0);
            if *sent >= cap {
                // Over this tick's budget for the peer; it stays due, and
                // the next ticks' scans start with it.
                self.first_capped.get_or_insert(key);
                return;
            }
            *sent += 1;
            self.rpcs.timer_mut(key).resend_backoff += 1;
            match wait {
                Wait::Granted | Wait::Response | Wait::Grants => {
                    self.request_retransmission(now, key)
                }
                _ => self.probe_peer(now, key),
            }
        }
    }

    /// How long `rpc`, waiting for `wait` (not [`Wait::Nothing`]), stays
    /// silent before it asks its peer, and the least time between two of
    /// its requests.
    fn resend_timing(&self, rpc: &crate::rpc::Rpc, wait: Wait) -> (Duration, Duration) {
        let (resend_after, resend_interval) =
            (self.config.resend_after, self.config.resend_interval);
        let probe = self.probe_interval();
        // A probe that went unanswered is retried sooner, so that a lossy
        // path still gets several tries per `timeout` before the peer is
        // declared dead (at 20% loss each way a probe round trip fails 36%
        // of the time); an answered one (BUSY) waits the full interval.
        let unanswered = rpc.last_request.is_some_and(|t| rpc.last_heard < t);
        let probe_gap = if unanswered {
            (probe / 4).max(resend_after)
        } else {
            probe
        };
        let backed_off =
            |interval: Duration| (interval * (1u32 << rpc.resend_backoff.min(4))).min(probe);
        match wait {
            Wait::Granted => (resend_after, backed_off(resend_interval)),
            // The server has the request (it granted some, or said BUSY):
            // it recovers what it misses itself.
            Wait::Response if rpc.peer_knows => (probe, probe_gap),
            // A lost request or response, or a lost probe.
            Wait::Response | Wait::Incarnation => (resend_after, backed_off(resend_interval)),
            // The server has the request (it holds back its grants), or we
            // hold the peer's message: only liveness is in question.
            Wait::Grants | Wait::Held => (probe, probe_gap),
            Wait::Nothing => unreachable!("an RPC that waits for nothing asks nothing"),
        }
    }

    /// When the periodic pass must look at RPC `key` again (it was just
    /// checked at `now`) if nothing changes the RPC meanwhile: the earliest
    /// instant at which one of [`Endpoint::check_rpc`]'s rules can act, or
    /// the next pass for an RPC whose clocks every pass restarts (it waits
    /// for nothing) and for granted bytes silent long enough that the
    /// link's other traffic decides whether they are late. (Holes are
    /// looked after apart: see `RpcTable::due`.)
    fn next_check(&self, now: Instant, key: usize) -> Instant {
        let rpc = &self.rpcs[key];
        let c = &self.config;
        let timeout = rpc.alive + c.timeout;
        let at = match wait_of(rpc) {
            _ if rpc.held => now,
            Some(Wait::Nothing) => now,
            Some(Wait::Granted) => {
                let starving = rpc.last_heard + c.resend_after;
                if starving > now {
                    starving.min(timeout)
                } else {
                    now
                }
            }
            Some(wait) => {
                let (after, gap) = self.resend_timing(rpc, wait);
                let ask = (rpc.last_heard + after).max(rpc.last_request.map_or(now, |t| t + gap));
                ask.min(timeout)
            }
            // A server sending its response (`check_response`).
            None => match rpc.msgout.as_ref() {
                Some(m) if m.has_sendable() => now,
                Some(m) if !m.fully_sent() => timeout,
                _ => {
                    let done = rpc.done_at.unwrap_or(now);
                    let give_up = (done + c.timeout).max(timeout);
                    let need_ack = next_need_ack(c, done, rpc.last_request).max(now);
                    give_up.min(need_ack)
                }
            },
        };
        at
    }

    /// How often an RPC that waits only for a sign of life probes its
    /// peer: often enough that the peer hears from us several times per
    /// `timeout`.
    pub(crate) fn probe_interval(&self) -> Duration {
        (self.config.timeout / 5).max(self.config.resend_after)
    }

    /// Probes the peer of an RPC that waits for the peer itself rather
    /// than for bytes it owes: a zero-length RESEND, answered BUSY (or
    /// RPC_UNKNOWN, which ends or rebinds the RPC).
    pub(crate) fn probe_peer(&mut self, now: Instant, key: usize) {
        let rpc = &mut self.rpcs[key];
        rpc.last_request = Some(now);
        if rpc.is_client() && rpc.echo == 0 {
            return self.probe_incarnation(now, key, true);
        }
        let offset = rpc.msgin.as_ref().map_or(0, |m| m.recv_end());
        let (peer, port, id) = (rpc.peer, rpc.port, rpc.id);
        self.stats.liveness_probes += 1;
        self.send_probe(port, peer, id, offset);
    }

    /// A server RPC sending its response: wait for grants while the client
    /// is alive, then ask for the ACK, and give up after `timeout`.
    fn check_response(&mut self, now: Instant, key: usize) {
        let timeout = self.config.timeout;
        let rpc = self.rpcs.timer_mut(key);
        let m = rpc
            .msgout
            .as_ref()
            .expect("outgoing server rpc has a response");
        if m.has_sendable() {
            // We are transmitting; the client has nothing to say yet.
            rpc.heard(now);
            return;
        }
        let silent = now.saturating_duration_since(rpc.alive);
        if !m.fully_sent() {
            // Waiting for the client's grants.
            if silent >= timeout {
                self.stats.response_abandoned += 1;
                tracing::info!(rpc = rpc.id, peer = %rpc.peer, "timeout: client silent, response abandoned");
                self.free_rpc(key);
            }
            return;
        }
        let done = *rpc.done_at.get_or_insert(now);
        let since_done = now.saturating_duration_since(done);
        if since_done >= timeout && silent >= timeout {
            self.stats.need_ack_given_up += 1;
            self.free_rpc(key);
            return;
        }
        if now >= next_need_ack(&self.config, done, rpc.last_request) {
            rpc.last_request = Some(now);
            let (port, peer, id) = (rpc.port, rpc.peer, rpc.id);
            self.stats.need_acks += 1;
            self.send_control(port, peer, id, Body::NeedAck);
        }
    }

    /// Asks the peer for what is missing of the RPC's incoming message:
    /// everything if nothing arrived yet, else each gap and the granted bytes
    /// beyond the highest byte received (at most
    /// [`MAX_RESENDS_PER_CHECK`] packets per call).
    pub(crate) fn request_retransmission(&mut self, now: Instant, key: usize) {
        let rpc = &mut self.rpcs[key];
        rpc.last_request = Some(now);
        rpc.rtt_probe = Some(Probe::resend(rpc.rtt_probe, now));
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        match rpc.msgin.as_mut() {
            None => ranges.push((0, ResendHeader::ALL)),
            Some(m) => {
                let (recv_end, granted) = (m.recv_end(), m.granted());
                for g in m.gaps_mut().iter_mut().take(MAX_RESENDS_PER_CHECK) {
                    ranges.push((g.start, g.end - g.start));
                    g.since = now;
                    g.requested = true;
                }
                if granted > recv_end && ranges.len() < MAX_RESENDS_PER_CHECK {
                    ranges.push((recv_end, granted - recv_end));
                }
            }
        }
        let (peer, port, id) = (rpc.peer, rpc.port, rpc.id);
        self.stats.resends_silence += ranges.len() as u64;
        tracing::debug!(rpc = id, %peer, ranges = ?ranges, "resend after silence");
        self.send_resends(port, peer, id, &ranges);
    }
}

/// When a server whose response was fully sent at `done` (and whose last
/// NEED_ACK, if any, left at `last`) sends the next one: `need_ack_after`
/// after `done`, then at intervals as long as the time since `done` (at
/// least `resend_interval`), so they thin out: a client that never answers
/// (gone, or a forged source address) draws about ten over `timeout`, not
/// one per interval.
fn next_need_ack(c: &crate::Config, done: Instant, last: Option<Instant>) -> Instant {
    let first = done + c.need_ack_after;
    match last {
        None => first,
        Some(t) => first.max(t + c.resend_interval.max(t.saturating_duration_since(done))),
    }
}
