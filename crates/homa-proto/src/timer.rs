//! Timers: silence tracking, retransmission requests, timeouts, NEED_ACK,
//! and fast recovery of clearly lost packets (reference section 4.5).
//!
//! A periodic pass (every `Config::tick`, armed only while RPCs exist) looks
//! at every RPC, as the kernel's 1 ms timer does:
//!
//! * An RPC is *expecting* when the peer owes it something: a client whose
//!   request is fully sent (or waiting for grants) expects the response; a
//!   receiver expects the bytes it granted. Otherwise its silence clock
//!   restarts (we are the ones sending, the application is computing, or we
//!   deliberately granted nothing more).
//! * After `resend_after` of silence, the receiver asks for what is missing:
//!   RESEND(0, all) when nothing has arrived, else one RESEND per gap plus one
//!   for granted bytes beyond the highest byte received; again every
//!   `resend_interval`.
//! * After `timeout` of silence the RPC is abandoned: a client RPC fails with
//!   [`RpcError::Timeout`], a server RPC is freed.
//! * A server whose response is fully sent sends NEED_ACK after
//!   `need_ack_after` and every `resend_interval`; unlike the kernel it gives
//!   up after `timeout` without an answer (the at-most-once record keeps the
//!   request from running again).
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
use crate::rpc::{Probe, RpcState};
use crate::wire::{Body, ResendHeader};
use crate::Instant;

impl Endpoint {
    /// Processes timers; call when [`Endpoint::poll_timeout`]'s deadline
    /// passes (calling early is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        // Deadlines that only mean "transmit now" are consumed here, so
        // poll_timeout never stays in the past: a due FIFO grant is issued
        // (queued for poll_transmit), and a pacer wake-up is cleared.
        if self.pacer.wakeup.is_some_and(|t| now >= t) {
            self.pacer.wakeup = None;
        }
        if self.grants.next_fifo.is_some_and(|t| now >= t) {
            self.send_grants(now);
        }
        if self.next_peer_gc.is_some_and(|t| now >= t) {
            self.collect_peers(now, false);
            let period = self.config.peer_idle / 2;
            self.next_peer_gc = (!self.peers.is_empty()).then_some(now + period);
        }
        let tick_due = self.next_tick.is_some_and(|t| now >= t);
        let gaps_due = self.gap_deadline.is_some_and(|t| now >= t);
        if !tick_due && !gaps_due {
            return;
        }
        self.gap_deadline = None;
        let mut keys: Vec<usize> = self.rpcs.iter().map(|(k, _)| k).collect();
        if tick_due {
            // Rotate the scan so the per-peer RESEND cap does not always
            // favour the same RPCs.
            self.tick_count = self.tick_count.wrapping_add(1);
            if !keys.is_empty() {
                let n = keys.len();
                keys.rotate_left(self.tick_count as usize % n);
            }
            self.resends_this_tick.clear();
        }
        for key in keys {
            self.check_gaps(now, key);
            if tick_due && self.rpcs.contains(key) {
                self.check_rpc(now, key);
            }
        }
        if tick_due {
            // The application may have dropped delivered messages.
            self.memory_freed();
            let tick = self.config.tick;
            self.next_tick = (!self.rpcs.is_empty()).then_some(now + tick);
        }
    }

    /// The next deadline at which [`Endpoint::handle_timeout`] must run, if
    /// any. After `handle_timeout(t)` every deadline returned is later than
    /// `t`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // Written out rather than as an iterator chain: drivers call this
        // after every input, and the chain did not optimise well.
        fn earlier(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        let fifo = if self.grants.ranked.is_empty() {
            None
        } else {
            self.grants.next_fifo
        };
        let t = earlier(self.next_tick, self.gap_deadline);
        let t = earlier(t, self.next_peer_gc);
        let t = earlier(t, self.pacer.wakeup);
        earlier(t, fifo)
    }

    /// Starts the periodic pass if it is not running.
    pub(crate) fn arm_tick(&mut self, now: Instant) {
        if self.next_tick.is_none() {
            self.next_tick = Some(now + self.config.tick);
        }
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
            self.gap_deadline = Some(self.gap_deadline.map_or(due, |d| d.min(due)));
        }
    }

    /// Fast recovery for one RPC: requests holes that are due and re-arms
    /// the gap deadline for the others.
    fn check_gaps(&mut self, now: Instant, key: usize) {
        let rpc = &self.rpcs[key];
        if rpc.state != RpcState::Incoming {
            return;
        }
        let Some(m) = rpc.msgin.as_ref() else {
            return;
        };
        if m.gaps().is_empty() {
            return;
        }
        let rtt = self.peers.get(&rpc.peer).and_then(|p| p.rtt);
        let Some(age) = self.gap_age(rtt) else {
            return;
        };
        let interval = self.config.resend_interval;
        let (peer, port, id) = (rpc.peer, rpc.port, rpc.id);
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        let m = self.rpcs[key].msgin.as_mut().expect("checked");
        let floors: Vec<u8> = m
            .gaps()
            .iter()
            .map(|g| m.level_floor(g.start, g.end))
            .collect();
        for (g, floor) in m.gaps_mut().iter_mut().zip(floors) {
            // Only a hole that a packet sent after it, at a level no higher
            // than the hole's own, has passed is clearly lost; others may be
            // queued behind higher-priority traffic (the silence timer
            // covers them).
            if g.beyond_level > floor {
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
            self.gap_deadline = Some(self.gap_deadline.map_or(n, |d| d.min(n)));
        }
        if !due.is_empty() {
            self.rpcs[key].rtt_probe.get_or_insert(Probe::Resend(now));
        }
        self.stats.resends_fast += due.len() as u64;
        self.send_resends(port, peer, id, &due);
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
        let rpc = &mut self.rpcs[key];
        if rpc.held {
            // Output commit holds our message: nothing is late.
            rpc.last_heard = now;
            return;
        }
        if rpc.waiting.is_some() {
            // We hold the peer's message back for lack of memory; it only
            // has to show it is alive (its packets and probes count).
            if now.saturating_duration_since(rpc.last_heard) >= timeout {
                self.stats.timeouts += 1;
                self.fail_rpc(key, RpcError::Timeout);
            }
            return;
        }
        let expecting = match (rpc.is_client(), rpc.state) {
            (_, RpcState::Incoming) => rpc.msgin.as_ref().is_none_or(|m| !m.all_granted_received()),
            (true, RpcState::Outgoing) => rpc.msgout.as_ref().is_none_or(|m| !m.has_sendable()),
            (true, RpcState::InService) => false,
            (false, RpcState::InService) => false,
            (false, RpcState::Outgoing) => return self.check_response(now, key),
        };
        if !expecting {
            rpc.last_heard = now;
            return;
        }
        let silent = now.saturating_duration_since(rpc.last_heard);
        if silent >= timeout {
            self.stats.timeouts += 1;
            self.fail_rpc(key, RpcError::Timeout);
            return;
        }
        // Back off while the peer stays silent: 1, 2, 4, ... 16 intervals
        // between RESENDs (a descheduled user-space peer must not come back
        // to a flood).
        if rpc.last_request.is_some_and(|t| rpc.last_heard > t) {
            rpc.resend_backoff = 0;
        }
        let interval = self.config.resend_interval * (1u32 << rpc.resend_backoff.min(4));
        let due = rpc
            .last_request
            .is_none_or(|t| now.saturating_duration_since(t) >= interval);
        if silent >= self.config.resend_after && due {
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
                // Over this tick's budget for the peer; it stays due.
                return;
            }
            *sent += 1;
            self.rpcs[key].resend_backoff += 1;
            self.request_retransmission(now, key);
        }
    }

    /// A server RPC sending its response: wait for grants while the client
    /// is alive, then ask for the ACK, and give up after `timeout`.
    fn check_response(&mut self, now: Instant, key: usize) {
        let timeout = self.config.timeout;
        let rpc = &mut self.rpcs[key];
        let m = rpc
            .msgout
            .as_ref()
            .expect("outgoing server rpc has a response");
        if m.has_sendable() {
            // We are transmitting; the client has nothing to say yet.
            rpc.last_heard = now;
            return;
        }
        let silent = now.saturating_duration_since(rpc.last_heard);
        if !m.fully_sent() {
            // Waiting for the client's grants.
            if silent >= timeout {
                self.stats.response_abandoned += 1;
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
        let due = rpc
            .last_request
            .is_none_or(|t| now.saturating_duration_since(t) >= self.config.resend_interval);
        if since_done >= self.config.need_ack_after && due {
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
        rpc.rtt_probe.get_or_insert(Probe::Resend(now));
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
        self.send_resends(port, peer, id, &ranges);
    }
}
