//! Receiver-side scheduling (`docs/protocol.md`, "Grants"): which incoming
//! messages get granted, how far, and at which priority. The scheduler's
//! state is the owned [`scheduler::GrantScheduler`]; this module is the
//! grant pass that applies it to the RPCs.
//!
//! * **Rank**: fewer bytes still to receive first; ties go to the message
//!   whose first packet arrived earlier.
//! * **Overcommitment**: at most `max_overcommit` messages are *active*
//!   (granted to) at once. They are the best by (depth, rank), where depth
//!   is a message's position among its own peer's messages: every peer gets
//!   one slot before any peer gets two (a sender transmits only its own
//!   shortest message anyway). The active set is recomputed whenever
//!   something changed, once per batch of input (at the next
//!   [`Endpoint::poll_transmit`]), so promotion after a completion and
//!   demotion when a shorter message appears are immediate.
//! * **Window**: each active message may have `window` bytes granted beyond
//!   what it received, `max_incoming / (active + 1)` when `window` is 0.
//! * **Incoming cap**: the sum over *all* incoming messages of granted but
//!   not yet received bytes, unscheduled bytes of new messages included,
//!   stays at most `max_incoming` as far as grants are concerned. Messages
//!   are served in rank order; once one cannot get its full window, lower
//!   ranks get nothing until bytes arrive (the kernel's "needy" rule).
//! * **Priority**: the i-th ranked active message is granted level
//!   `max_sched_prio - i`, shifted down when fewer messages are active than
//!   scheduled levels (leaving the higher levels free for newcomers that
//!   will outrank them), never below 0.
//! * **FIFO grants**: every `fifo_grant_increment` bytes' worth of
//!   `grant_fifo_fraction` of the link, the oldest message that is still
//!   responsive gets `fifo_grant_increment` more bytes at the high priority,
//!   so large messages cannot starve under a stream of shorter ones.
//! * **Memory**: every grant first fits the receive-memory budget
//!   (`Endpoint::fit_grant_to_memory`, [`crate::memory::RxMemory`]).

pub(crate) mod rank_list;
pub(crate) mod scheduler;

use crate::endpoint::Endpoint;
use crate::memory::{RxMemory, WaitKey};
use crate::rpc::{Probe, RpcRef};
use crate::timers::Timer;
use crate::wire::{Body, GrantHeader};
use crate::Instant;
use scheduler::{GrantScheduler, RankKey};

impl Endpoint {
    /// Updates the incoming accounting and the rank position of the RPC's
    /// incoming message after it changed (bytes arrived, grant raised), and
    /// schedules a grant pass.
    pub(crate) fn grant_update(&mut self, key: usize) {
        self.grant_refresh(key);
        self.grants.request_pass();
    }

    pub(crate) fn grant_refresh(&mut self, key: usize) {
        let rpc = &mut self.rpcs[key];
        let Some(m) = rpc.msgin.as_mut() else {
            return;
        };
        let inc = m.granted().saturating_sub(m.received());
        self.grants.add_incoming(inc as i64 - m.rec_incoming as i64);
        m.rec_incoming = inc;
        let want = (m.granted() < m.length()).then_some(RankKey {
            remaining: m.bytes_remaining(),
            birth: m.birth,
            rpc: RpcRef { seq: rpc.seq, key },
        });
        if want != rpc.grant_rank {
            let old = core::mem::replace(&mut rpc.grant_rank, want);
            let peer = rpc.peer;
            self.grants
                .rank_move(self.now, &mut self.timers, peer, old, want);
        }
    }

    /// Takes the RPC's incoming message out of the scheduler (it completed
    /// or the RPC is being freed).
    pub(crate) fn grant_remove(&mut self, key: usize) {
        let rpc = &mut self.rpcs[key];
        if let Some(m) = rpc.msgin.as_mut() {
            self.grants.add_incoming(-(m.rec_incoming as i64));
            m.rec_incoming = 0;
        }
        if let Some(old) = rpc.grant_rank.take() {
            let peer = rpc.peer;
            self.grants
                .rank_move(self.now, &mut self.timers, peer, Some(old), None);
        }
        self.grants.request_pass();
    }

    /// The grant pass: recomputes the active set and issues the GRANTs its
    /// windows, the incoming cap and the memory budget allow; then a FIFO
    /// grant if one is due.
    pub(crate) fn send_grants(&mut self, now: Instant) {
        let fifo_due = self.timers.is_expired(Timer::FifoGrant, now);
        let Some(pass) = self.grants.begin_pass(fifo_due) else {
            return;
        };
        if self.memory.has_waiting() {
            self.admit_waiting();
        }
        let blocked_before = self.memory.clear_blocked();
        let mut active = self
            .grants
            .choose_active(self.config.max_overcommit as usize);
        // Joined to a host table: only the messages in the host's top
        // `max_overcommit`, within what the others leave of its budget.
        let limits = match self.host.as_deref_mut() {
            None => None,
            Some(j) => {
                let l = j.limits(now, &mut active, self.config.max_incoming);
                let slot = j.slot;
                self.pacer.set_host_slot(now, slot);
                l
            }
        };
        let n_active = limits.as_ref().map_or(active.len(), |l| l.n_host);
        self.grants.set_active(&active);
        let cfg = &self.config;
        let window = GrantScheduler::window(cfg.window, cfg.max_incoming, n_active);
        let max_incoming = limits
            .as_ref()
            .map_or(cfg.max_incoming as i64, |l| l.budget);
        let max_sched = self.prio.max_sched_prio;
        let mut needy = false;
        // What the first message the budget stopped still wants (host hook:
        // a held-back endpoint publishes it as its need).
        let mut need = 0u32;
        // Bytes we granted that starve behind later grants at higher levels:
        // grant nothing above them until they arrive.
        let rpcs = &self.rpcs;
        let starve_level = self
            .grants
            .retain_starving(|r| {
                rpcs.get(r.key)
                    .is_some_and(|x| x.seq == r.seq && x.starving)
            })
            .iter()
            .map(|r| rpcs[r.key].quiet_mark.0)
            .min();
        for (rank, k) in active.iter().enumerate() {
            let rank = limits.as_ref().map_or(rank, |l| l.ranks[rank] as usize);
            let prio = GrantScheduler::level(rank, n_active, max_sched);
            if starve_level.is_some_and(|l| prio > l) {
                continue;
            }
            let Some(m) = self.rpcs[k.rpc.key].msgin.as_ref() else {
                continue;
            };
            let target = (m.received() as u64 + window as u64).min(m.length() as u64) as u32;
            let granted = m.granted();
            if target <= granted || needy {
                continue;
            }
            let avail = max_incoming - self.grants.total_incoming();
            if avail <= 0 {
                needy = true;
                need = target - granted;
                continue;
            }
            let delta = (target - granted).min(avail.min(u32::MAX as i64) as u32);
            if delta < target - granted {
                needy = true;
                need = target - granted - delta;
            }
            self.issue_grant(k.rpc, granted + delta, prio);
        }
        self.grants.recycle_active(active);
        if pass.fifo_due {
            self.fifo_grant(now, window);
        }
        if let Some(l) = limits {
            let by_budget = needy && l.others_incoming > 0;
            let limited = l.cut || by_budget;
            let incoming = self.grants.total_incoming();
            if let Some(j) = self.host.as_deref_mut() {
                let need = if by_budget { need as u64 } else { 0 };
                let next = j.finish(now, incoming, limited, need);
                self.timers.set_opt(Timer::Host, next);
            }
        }
        if !self.memory.blocked().is_empty() {
            self.break_memory_deadlock();
        } else if blocked_before && self.memory.has_waiting() {
            // Messages that were blocked got their memory: waiting ones may
            // be admitted next.
            self.grants.request_pass();
        }
    }

    /// When the best-ranked message blocked for memory has received
    /// everything it was granted, no data in flight can free memory for it:
    /// evict the worst-ranked other message holding buffer memory in the same
    /// socket or from the same peer (its bytes come back by RESEND when it is
    /// admitted again), so the best message can always finish.
    fn break_memory_deadlock(&mut self) {
        let best = self
            .memory
            .blocked()
            .iter()
            .filter(|r| self.live(r.key, r.seq))
            .filter_map(|r| self.rpcs[r.key].grant_rank.map(|g| (g, r.key)))
            .min();
        let Some((best_rank, best)) = best else {
            return;
        };
        let stuck = self.rpcs[best]
            .msgin
            .as_ref()
            .is_some_and(|m| m.all_granted_received());
        if !stuck {
            return;
        }
        let (port, peer) = (self.rpcs[best].port, self.rpcs[best].peer);
        let victim = self
            .grants
            .worse_than(best_rank)
            .map(|r| r.rpc.key)
            .find(|&k| {
                let r = &self.rpcs[k];
                (r.port == port || r.peer == peer)
                    && r.msgin.as_ref().is_some_and(|m| m.buffer_len() > 0)
            });
        if let Some(victim) = victim {
            self.evict(victim);
            self.grants.request_pass();
        }
    }

    /// Takes a partially received message's buffer away; the message waits
    /// for memory again.
    fn evict(&mut self, key: usize) {
        self.grant_remove(key);
        let rpc = &mut self.rpcs[key];
        let Some(m) = rpc.msgin.take() else {
            return;
        };
        let (peer, port, seq) = (rpc.peer, rpc.port, rpc.seq);
        rpc.waiting = Some((m.length(), m.unsched_end));
        self.memory.wait(WaitKey {
            length: m.length(),
            rpc: RpcRef { seq, key },
            peer,
            port,
        });
        self.stats.evictions += 1;
        tracing::debug!(
            rpc = rpc.id,
            %peer,
            length = m.length(),
            received = m.received(),
            "evicted: buffer taken for a better-ranked message"
        );
        self.uncharge_rx(peer, port, crate::incoming::rx_charge(&m));
    }

    /// Grants the oldest responsive message `fifo_grant_increment` more
    /// bytes at the high priority.
    fn fifo_grant(&mut self, now: Instant, window: u32) {
        let next = self.grants.fifo_interval().map(|i| now + i);
        self.timers.set_opt(Timer::FifoGrant, next);
        let inc = self.config.fifo_grant_increment;
        let responsive = window as u64 + 2 * inc as u64;
        let rpcs = &self.rpcs;
        let oldest = self.grants.fifo_candidate(|k| {
            rpcs[k.rpc.key]
                .msgin
                .as_ref()
                .is_some_and(|m| (m.rec_incoming as u64) < responsive)
        });
        let Some(k) = oldest else {
            return;
        };
        let granted = self.rpcs[k.rpc.key]
            .msgin
            .as_ref()
            .map_or(0, |m| m.granted());
        let prio = self.config.high_priority();
        self.stats.fifo_grants += 1;
        tracing::trace!(
            rpc = self.rpcs[k.rpc.key].id,
            "fifo grant to the oldest message"
        );
        self.issue_grant(k.rpc, granted.saturating_add(inc), prio);
    }

    /// Raises the RPC's grant to `target` (within the memory budget) and
    /// sends the GRANT.
    fn issue_grant(&mut self, rpc: RpcRef, target: u32, prio: u8) {
        let key = rpc.key;
        let Some(target) = self.fit_grant_to_memory(key, rpc.seq, target) else {
            return;
        };
        if let Some(m) = self.rpcs[key].msgin.as_mut() {
            m.min_grant_level = m.min_grant_level.min(prio);
        }
        self.rpcs[key].grant_level = prio;
        self.grant_refresh(key);
        let rpc = &self.rpcs[key];
        let (port, peer, id) = (rpc.port, rpc.peer, rpc.id);
        let body = Body::Grant(GrantHeader {
            offset: target,
            priority: prio,
        });
        self.stats.grants += 1;
        tracing::trace!(rpc = id, %peer, offset = target, priority = prio, "grant");
        self.send_control(port, peer, id, body);
    }

    /// Lowers a grant target so the buffer it needs fits the receive-memory
    /// budgets, charges the growth, and raises the message's grant. Returns
    /// the grant to send, or `None` (and parks the message until memory
    /// frees) if nothing more can be granted.
    pub(crate) fn fit_grant_to_memory(&mut self, key: usize, seq: u64, target: u32) -> Option<u32> {
        let (peer, port) = (self.rpcs[key].peer, self.rpcs[key].port);
        let avail = self.rx_available(peer, port);
        let m = self.rpcs[key].msgin.as_mut()?;
        let target = target.min(m.length());
        let target = RxMemory::fit_grant(target, m.buffer_len(), m.growth_for(target), avail);
        if target <= m.granted() {
            self.memory.block(RpcRef { seq, key });
            self.stats.grants_deferred_memory += 1;
            tracing::trace!(rpc = self.rpcs[key].id, %peer, avail, "grant deferred: no receive memory");
            return None;
        }
        let before = m.granted();
        let grow = m.set_granted(target);
        let rpc = &mut self.rpcs[key];
        if rpc.rtt_probe.is_none() {
            rpc.rtt_probe = Some(Probe::Grant(self.now, before));
        }
        let charged = self.charge_rx(peer, port, grow);
        debug_assert!(charged, "growth was fitted to the budget");
        Some(target)
    }

    /// Bytes granted but not yet received, over all incoming messages.
    pub fn total_incoming(&self) -> i64 {
        self.grants.total_incoming()
    }

    /// Number of messages that were active at the last grant pass.
    pub fn active_grants(&self) -> usize {
        self.grants.active_count()
    }
}

/// An incoming message that is still being received, as the grant scheduler
/// sees it (for diagnostics and simulators: see
/// [`Endpoint::incoming_messages`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncomingMessage {
    /// The sender.
    pub peer: core::net::SocketAddr,
    /// Local RPC id (the sender's id for the RPC is `id ^ 1`).
    pub id: u64,
    /// Message length.
    pub length: u32,
    /// Bytes received.
    pub received: u32,
    /// Bytes the sender may send (unscheduled bytes and grants).
    pub granted: u32,
    /// True if the message was granted to at the last grant pass.
    pub active: bool,
}

impl Endpoint {
    /// Every incoming message not yet complete, in no particular order
    /// (diagnostics; walks all RPCs).
    pub fn incoming_messages(&self) -> impl Iterator<Item = IncomingMessage> + '_ {
        self.rpcs.iter().filter_map(|(key, r)| {
            let m = r.msgin.as_ref()?;
            (!m.is_complete()).then(|| IncomingMessage {
                peer: r.peer,
                id: r.id,
                length: m.length(),
                received: m.received(),
                granted: m.granted(),
                active: self.grants.is_active(key),
            })
        })
    }
}
