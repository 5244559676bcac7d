//! Per-peer state: the unscheduled-priority cutoffs a peer told us to use,
//! acknowledgements waiting to be sent to it, and activity for collection.
//!
//! A peer is a remote *socket* (IP address and port), not a host as in the
//! kernel: in user space several independent Homa endpoints (processes) can
//! share an IP address, each with its own cutoffs and its own RPC ids, so
//! state keyed by address alone would mix them.

use crate::wire::{AckEntry, MAX_ACKS_PER_PKT, MAX_PRIORITIES};
use crate::Instant;

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
    /// Live RPCs with this peer.
    pub rpcs: u32,
    /// The peer's port (the server port named in acks we send it).
    port: u16,
}

impl Peer {
    /// A peer we have heard nothing about: every unscheduled byte at level 6
    /// (or the top level with fewer priorities) until its CUTOFFS arrives.
    pub fn new(port: u16, now: Instant) -> Peer {
        let mut cutoffs = [0u32; MAX_PRIORITIES];
        cutoffs[MAX_PRIORITIES - 2] = i32::MAX as u32;
        Peer {
            cutoffs,
            cutoff_version: 0,
            pending_acks: Vec::new(),
            last_active: now,
            rpcs: 0,
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
}
