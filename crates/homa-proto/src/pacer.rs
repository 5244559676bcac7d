//! Sender-side scheduling (reference 4.3): which message transmits next, and
//! when the link can take it.
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

use std::collections::BTreeSet;

use crate::endpoint::Endpoint;
use crate::rpc::{RpcState, XmitPos};
use crate::Instant;

/// Sender scheduler state.
#[derive(Debug)]
pub(crate) struct Pacer {
    /// Paced messages by (bytes left, seq, key).
    pub srpt: BTreeSet<(u32, u64, usize)>,
    /// The same messages by (creation time, seq, key).
    pub fifo: BTreeSet<(Instant, u64, usize)>,
    /// Messages too short to pace, by (seq, key).
    pub short: BTreeSet<(u64, usize)>,
    /// Estimated time the NIC finishes what it has been given.
    pub link_idle: Instant,
    /// FIFO share counter (thousandths); starts full so the first batches
    /// follow SRPT.
    pub fifo_count: i32,
    /// Since when paced data has been held (for the throttled-time metric).
    pub held_since: Option<Instant>,
}

impl Default for Pacer {
    fn default() -> Pacer {
        Pacer {
            srpt: BTreeSet::new(),
            fifo: BTreeSet::new(),
            short: BTreeSet::new(),
            link_idle: Instant::ZERO,
            fifo_count: 1000,
            held_since: None,
        }
    }
}

impl Endpoint {
    /// Puts the RPC in the right transmit queue if it has granted bytes not
    /// yet sent, or takes it out.
    pub(crate) fn update_xmit(&mut self, key: usize) {
        let defer_min = self.config.defer_min_bytes;
        let rpc = &mut self.rpcs[key];
        let want = match (&rpc.msgout, rpc.state) {
            // (A client request waits for its server's incarnation: `echo`.)
            (Some(m), RpcState::Outgoing) if m.has_sendable() && !rpc.held && rpc.echo != 0 => {
                Some(if m.length() < defer_min {
                    XmitPos::Short
                } else {
                    XmitPos::Paced(m.bytes_left(), m.init_time)
                })
            }
            _ => None,
        };
        if want == rpc.xmit_key {
            return;
        }
        let seq = rpc.seq;
        let old = core::mem::replace(&mut rpc.xmit_key, want);
        self.xmit_unqueue(key, seq, old);
        match want {
            Some(XmitPos::Short) => {
                self.pacer.short.insert((seq, key));
            }
            Some(XmitPos::Paced(left, born)) => {
                self.pacer.srpt.insert((left, seq, key));
                self.pacer.fifo.insert((born, seq, key));
            }
            None => {}
        }
    }

    /// Removes a queue position (the RPC is being freed or stops sending).
    pub(crate) fn xmit_unqueue(&mut self, key: usize, seq: u64, pos: Option<XmitPos>) {
        match pos {
            Some(XmitPos::Short) => {
                self.pacer.short.remove(&(seq, key));
            }
            Some(XmitPos::Paced(left, born)) => {
                self.pacer.srpt.remove(&(left, seq, key));
                self.pacer.fifo.remove(&(born, seq, key));
            }
            None => {}
        }
    }

    /// True if a message of `length` bytes must wait for the link.
    pub(crate) fn throttled(&self, now: Instant, length: u32) -> bool {
        self.config.pacer
            && self.config.link_mbps > 0
            && length >= self.config.defer_min_bytes
            && now + self.config.max_nic_backlog < self.pacer.link_idle
    }

    /// Remembers that paced data waits for the link.
    pub(crate) fn hold_for_link(&mut self) {
        if self.pacer.held_since.is_none() {
            self.pacer.held_since = Some(self.now);
            self.stats.throttled += 1;
        }
        let at = self
            .pacer
            .link_idle
            .saturating_duration_since(Instant::ZERO)
            .saturating_sub(self.config.max_nic_backlog);
        self.timers
            .set(crate::timers::Timer::Pacer, Instant::ZERO + at);
    }

    /// Accounts `wire_bytes` handed to the NIC at `now`.
    pub(crate) fn charge_link(&mut self, now: Instant, wire_bytes: u64) {
        let mbps = self.config.link_mbps as u64;
        if mbps == 0 {
            return;
        }
        // bits / Mbit/s = µs; ×1.01 for the rate margin: ns = bytes·8080/mbps.
        let nanos = wire_bytes * 8080 / mbps;
        self.pacer.link_idle = self.pacer.link_idle.max(now).plus_nanos(nanos);
    }

    /// Most packets of `pkt_wire` wire bytes one paced batch may hold.
    pub(crate) fn paced_batch(&self, pkt_wire: u64) -> u32 {
        if self.config.link_mbps == 0 || !self.config.pacer {
            return u32::MAX;
        }
        let backlog_bytes =
            self.config.max_nic_backlog.as_nanos() as u64 * self.config.link_mbps as u64 / 8000;
        (backlog_bytes / pkt_wire.max(1))
            .max(1)
            .min(u32::MAX as u64) as u32
    }

    /// The paced message to serve next: the shortest, or the oldest when the
    /// FIFO share is due.
    pub(crate) fn pick_paced(&mut self) -> Option<usize> {
        let frac = self.config.pacer_fifo_fraction as i32;
        if frac > 0 {
            self.pacer.fifo_count -= frac;
            if self.pacer.fifo_count <= 0 {
                self.pacer.fifo_count += 1000;
                return self.pacer.fifo.first().map(|e| e.2);
            }
        }
        self.pacer.srpt.first().map(|e| e.2)
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
