//! Per-peer state: the unscheduled-priority cutoffs a peer told us to use,
//! acknowledgements waiting to be sent to it, a round-trip-time estimate,
//! the record that makes at-most-once airtight, and memory accounting.
//!
//! A peer is a remote *socket* (IP address and port), not a host as in the
//! kernel: in user space several independent Homa endpoints (processes) can
//! share an IP address, each with its own cutoffs and its own RPC ids, so
//! state keyed by address alone would mix them.
//!
//! The at-most-once record (`done`) and what this endpoint knows about
//! the peer as a server (`server`) are the `amo` module's mechanisms; the
//! peer only holds them.

use std::time::Duration;

use crate::amo::{Binding, DoneIds};

use crate::wire::{AckEntry, MAX_ACKS_PER_PKT, MAX_PRIORITIES};
use crate::Instant;

/// How long an RTT sample stays the minimum before newer samples replace it.
const RTT_WINDOW: Duration = Duration::from_secs(10);

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
    /// Requests from this peer that ran (at-most-once, server side).
    pub done: DoneIds,
    /// The peer as a server: its incarnation, our RPCs waiting to learn it,
    /// our oldest unfinished RPC to it (at-most-once, client side).
    pub server: Binding,
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
    pub(crate) fn new(
        port: u16,
        now: Instant,
        done: DoneIds,
        cutoffs: [u32; MAX_PRIORITIES],
    ) -> Peer {
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
            server: Binding::default(),
            cutoffs_sent: None,
            port,
        }
    }

    /// Priority for unscheduled bytes of a message of `length` bytes to this
    /// peer: the highest level whose cutoff admits the length.
    pub(crate) fn unsched_priority(&self, length: u32, num_priorities: u8) -> u8 {
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
    pub(crate) fn set_cutoffs(&mut self, cutoffs: [u32; MAX_PRIORITIES], version: u16) {
        self.cutoffs = cutoffs;
        self.cutoffs[0] = i32::MAX as u32;
        self.cutoff_version = version;
    }

    /// Feeds one round-trip sample: the estimate is the minimum over the
    /// last [`RTT_WINDOW`] (queueing only ever inflates samples).
    pub(crate) fn rtt_sample(&mut self, sample: Duration, now: Instant) {
        let stale = now.saturating_duration_since(self.rtt_stamp) > RTT_WINDOW;
        if stale || self.rtt.is_none_or(|r| sample <= r) {
            self.rtt = Some(sample);
            self.rtt_stamp = now;
        }
    }

    /// Takes one pending ack issued from `port`, if any.
    pub(crate) fn take_ack(&mut self, port: u16) -> Option<AckEntry> {
        let i = self.pending_acks.iter().position(|a| a.0 == port)?;
        let entry = self.pending_acks.swap_remove(i);
        Some(self.ack_entry(entry))
    }

    /// Takes up to five pending acks issued from `port`.
    pub(crate) fn take_acks(&mut self, port: u16) -> Vec<AckEntry> {
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
    pub(crate) fn acks_pending(&self, port: u16) -> usize {
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
    pub(crate) fn unsched_bytes(&self, link_mbps: u32, fallback: u32, max: u32) -> u32 {
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
    pub(crate) fn idle(&self) -> bool {
        self.rpcs == 0
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    impl Default for DoneIds {
        fn default() -> DoneIds {
            DoneIds::with_old_run(0)
        }
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
