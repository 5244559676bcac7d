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

use core::net::SocketAddr;
use std::collections::HashMap;
use std::time::Duration;

use slab::Slab;

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
    #[inline]
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
    #[inline]
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

/// A peer's name in a [`PeerTable`] that an RPC keeps instead of looking
/// its peer up by address on every packet: the peer's slot and the
/// generation the slot had when the peer was created (a removed peer's slot
/// is reused by a peer with another generation, so a stale handle finds
/// nothing). Generations are 32 bits and wrap; an RPC's peer is not
/// collected while the RPC lives (it counts in `Peer::rpcs`), so an RPC's
/// handle does not go stale, and the fallback to the address covers the
/// rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerRef {
    slot: u32,
    gen: u32,
}

impl PeerRef {
    /// A handle that names no peer (generation 0 is never given out).
    pub(crate) const NONE: PeerRef = PeerRef { slot: 0, gen: 0 };
}

/// One peer in the table: its address, the generation of its slot, its
/// state.
struct Entry {
    addr: SocketAddr,
    gen: u32,
    peer: Peer,
}

/// The peer table: peers in a slab, found by address through a hash index,
/// or by a [`PeerRef`] (a slot index and a generation compare) by the RPCs
/// that know theirs. The last peer looked up by address is remembered, so
/// that the several lookups one datagram (or one send) makes for the same
/// peer hash its address once. Consecutive datagrams usually come from the
/// same peer, so the memory often saves that one hash too.
///
/// Iteration order is the slab's; no caller depends on it (they sort, take
/// a minimum or shift every entry).
pub(crate) struct PeerTable {
    index: HashMap<SocketAddr, usize, ahash::RandomState>,
    slots: Slab<Entry>,
    /// The address and slot of the last peer found or created; cleared
    /// when that peer is removed (its slot may be reused).
    last: Option<(SocketAddr, usize)>,
    /// The generation of the last peer created (never 0).
    gen: u32,
}

impl PeerTable {
    /// An empty table whose index hashes with `hasher`.
    pub(crate) fn new(hasher: ahash::RandomState) -> PeerTable {
        PeerTable {
            index: HashMap::with_hasher(hasher),
            slots: Slab::new(),
            last: None,
            gen: 0,
        }
    }

    /// The slot of `addr`, if it has one.
    #[inline]
    fn slot(&self, addr: &SocketAddr) -> Option<usize> {
        match self.last {
            Some((a, i)) if a == *addr => Some(i),
            _ => self.index.get(addr).copied(),
        }
    }

    /// The slot of `addr`, remembered for the next lookup.
    #[inline]
    fn slot_remember(&mut self, addr: &SocketAddr) -> Option<usize> {
        let i = self.slot(addr)?;
        self.last = Some((*addr, i));
        Some(i)
    }

    /// The slot `r` names, if its peer still exists.
    #[inline]
    fn slot_of(&self, r: PeerRef) -> Option<usize> {
        let i = r.slot as usize;
        self.slots.get(i).filter(|e| e.gen == r.gen).map(|_| i)
    }

    /// Number of peers.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// True if there is no peer.
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// True if `addr` has state.
    pub(crate) fn contains_key(&self, addr: &SocketAddr) -> bool {
        self.slot(addr).is_some()
    }

    /// The state of `addr`.
    #[inline]
    pub(crate) fn get(&self, addr: &SocketAddr) -> Option<&Peer> {
        let i = self.slot(addr)?;
        Some(&self.slots[i].peer)
    }

    /// The state of `addr`, mutable.
    #[inline]
    pub(crate) fn get_mut(&mut self, addr: &SocketAddr) -> Option<&mut Peer> {
        let i = self.slot_remember(addr)?;
        Some(&mut self.slots[i].peer)
    }

    /// The state of the peer `r` names or, if that peer is gone, of
    /// `addr` (the address `r` was made for): the same peer a lookup by
    /// address finds, without the lookup while `r` is valid.
    #[inline]
    pub(crate) fn get_by(&self, r: PeerRef, addr: &SocketAddr) -> Option<&Peer> {
        let i = self.slot_of(r).or_else(|| self.slot(addr))?;
        Some(&self.slots[i].peer)
    }

    /// [`PeerTable::get_by`], mutable.
    #[inline]
    pub(crate) fn get_mut_by(&mut self, r: PeerRef, addr: &SocketAddr) -> Option<&mut Peer> {
        let i = match self.slot_of(r) {
            Some(i) => i,
            None => self.slot_remember(addr)?,
        };
        Some(&mut self.slots[i].peer)
    }

    /// The handle of `addr`'s peer and its state, created by `new` if it
    /// has none.
    pub(crate) fn entry(
        &mut self,
        addr: SocketAddr,
        new: impl FnOnce() -> Peer,
    ) -> (PeerRef, &mut Peer) {
        let i = match self.slot_remember(&addr) {
            Some(i) => i,
            None => {
                self.gen = self.gen.checked_add(1).unwrap_or(1);
                let gen = self.gen;
                let i = self.slots.insert(Entry {
                    addr,
                    gen,
                    peer: new(),
                });
                self.index.insert(addr, i);
                self.last = Some((addr, i));
                i
            }
        };
        let e = &mut self.slots[i];
        let r = PeerRef {
            slot: i as u32,
            gen: e.gen,
        };
        (r, &mut e.peer)
    }

    /// The handle and state of `addr`'s peer, if it has state.
    #[inline]
    pub(crate) fn find_mut(&mut self, addr: &SocketAddr) -> Option<(PeerRef, &mut Peer)> {
        let i = self.slot_remember(addr)?;
        let e = &mut self.slots[i];
        let r = PeerRef {
            slot: i as u32,
            gen: e.gen,
        };
        Some((r, &mut e.peer))
    }

    /// The state of `addr`, created by `new` if it has none.
    #[cfg(test)]
    pub(crate) fn get_or_insert_with(
        &mut self,
        addr: SocketAddr,
        new: impl FnOnce() -> Peer,
    ) -> &mut Peer {
        self.entry(addr, new).1
    }

    /// Removes the state of `addr`.
    pub(crate) fn remove(&mut self, addr: &SocketAddr) -> Option<Peer> {
        let i = self.index.remove(addr)?;
        if self.last.is_some_and(|(_, l)| l == i) {
            self.last = None;
        }
        Some(self.slots.remove(i).peer)
    }

    /// Every peer with its address.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&SocketAddr, &Peer)> {
        self.slots.iter().map(|(_, e)| (&e.addr, &e.peer))
    }

    /// Every peer.
    pub(crate) fn values(&self) -> impl Iterator<Item = &Peer> {
        self.slots.iter().map(|(_, e)| &e.peer)
    }

    /// Every peer, mutable.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut Peer> {
        self.slots.iter_mut().map(|(_, e)| &mut e.peer)
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

    fn peer(port: u16) -> Peer {
        Peer::new(port, Instant::ZERO, DoneIds::default(), [0; MAX_PRIORITIES])
    }

    #[test]
    fn peer_table__remembered_peer_is_forgotten_when_removed() {
        // The last peer looked up is remembered; once removed, its slot is
        // vacant (then reused by the next new peer), so a stale memory would
        // find a vacant slot or another peer's state for the removed address.
        let mut t = PeerTable::new(ahash::RandomState::with_seeds(1, 2, 3, 4));
        let a: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        t.get_or_insert_with(a, || peer(4000)).rx_bytes = 7;
        assert_eq!(t.get_mut(&a).map(|p| p.rx_bytes), Some(7));
        assert_eq!(t.remove(&a).map(|p| p.rx_bytes), Some(7));
        assert!(t.get(&a).is_none() && t.get_mut(&a).is_none());
        t.get_or_insert_with(b, || peer(5000)).rx_bytes = 9;
        assert!(t.get(&a).is_none() && t.get_mut(&a).is_none());
        assert!(!t.contains_key(&a));
        assert_eq!(t.get(&b).map(|p| p.rx_bytes), Some(9));
        // A known peer is found, not replaced, by get_or_insert_with.
        t.get_or_insert_with(a, || peer(4000)).rx_bytes = 1;
        assert_eq!(t.get_or_insert_with(b, || peer(5000)).rx_bytes, 9);
        assert_eq!(t.get(&a).map(|p| p.rx_bytes), Some(1));
        assert_eq!(t.len(), 2);
        assert_eq!(t.iter().count(), 2);
    }

    #[test]
    fn peer_table__handle_finds_its_peer_until_removed_never_a_successor() {
        let mut t = PeerTable::new(ahash::RandomState::with_seeds(1, 2, 3, 4));
        let a: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        let (ra, p) = t.entry(a, || peer(4000));
        p.rx_bytes = 7;
        assert_eq!(t.get_by(ra, &a).map(|p| p.rx_bytes), Some(7));
        assert_eq!(t.find_mut(&a).map(|(r, _)| r), Some(ra));
        t.remove(&a);
        // b takes a's slot: a's stale handle must not find b's state.
        let (rb, p) = t.entry(b, || peer(5000));
        p.rx_bytes = 9;
        assert_ne!(ra, rb);
        assert!(t.get_by(ra, &a).is_none() && t.get_mut_by(ra, &a).is_none());
        // A stale handle falls back to its address: a new peer there is
        // the one a lookup by address finds.
        let (ra2, p) = t.entry(a, || peer(4000));
        p.rx_bytes = 1;
        assert_ne!(ra, ra2);
        assert_eq!(t.get_by(ra, &a).map(|p| p.rx_bytes), Some(1));
        assert_eq!(t.get_mut_by(ra2, &a).map(|p| p.rx_bytes), Some(1));
        assert_eq!(t.get_by(rb, &b).map(|p| p.rx_bytes), Some(9));
        assert!(t
            .get_by(PeerRef::NONE, &"10.0.0.9:1".parse().unwrap())
            .is_none());
    }
}
