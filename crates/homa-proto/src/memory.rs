//! The receive-memory budget: the bytes of incoming-message buffers the
//! endpoint holds, against three budgets (endpoint-wide `max_rx_bytes`,
//! `max_rx_bytes_per_peer`, and each socket's `socket_rx_budget`, which also
//! counts delivered messages its application still holds), and the two
//! queues of messages that wait for memory:
//!
//! * **blocked**: admitted messages whose next grant did not fit (found by
//!   the grant pass, cleared at the start of the next one);
//! * **waiting**: new messages that got no buffer at all, admitted later in
//!   SRPT order (shortest first) when memory frees. A waiting message that
//!   an admission pass found over its peer's or its socket's budget is
//!   *parked* with that owner: it cannot fit before the owner frees memory,
//!   so the passes skip it, and the owner's first parked message (its
//!   shortest) goes back to the queue when the owner frees memory or one of
//!   its messages is admitted. A pass so examines the messages that may
//!   fit, not every waiting one (a flood of messages over budget made
//!   every pass walk them all).
//!
//! The per-peer and per-socket counters live with the peer and the socket
//! (they go when those go); this type owns the endpoint-wide total, the
//! limits, the queues and the arithmetic, and takes the counters as
//! explicit inputs. Its one output to the grant scheduler is
//! [`RxMemory::has_waiters`]: when memory frees and someone waits, the
//! endpoint asks for a grant pass. Eviction (taking a buffer from a worse
//! message so the best one can finish) is decided by the grant pass, which
//! knows the ranks: see `Endpoint::break_memory_deadlock`.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

use crate::config::Config;
use crate::rpc::msgin::GRANT_SLACK;
use crate::rpc::RpcRef;
use crate::DELIVERED_OVERHEAD;

/// A message waiting for a receive buffer, in admission order: shortest
/// first, then the older RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct WaitKey {
    /// The message's length.
    pub(crate) length: u32,
    /// The RPC.
    pub(crate) rpc: RpcRef,
    /// The RPC's peer (whose budget may park the message).
    pub(crate) peer: SocketAddr,
    /// The RPC's socket (whose budget may park the message).
    pub(crate) port: u16,
}

/// Whose budget a parked message is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Owner {
    /// The peer's (`max_rx_bytes_per_peer`).
    Peer(SocketAddr),
    /// The socket's (`socket_rx_budget`).
    Port(u16),
}

/// Receive-memory budget state.
#[derive(Debug)]
pub(crate) struct RxMemory {
    max_total: u64,
    max_per_peer: u64,
    socket_budget: u64,
    /// Bytes of incoming-message buffers held, endpoint-wide.
    total: u64,
    /// Admitted messages whose grants wait for memory.
    blocked: Vec<RpcRef>,
    /// New messages waiting for a receive buffer.
    waiting: BTreeSet<WaitKey>,
    /// Waiting messages over their peer's or socket's budget, by owner
    /// (keyed by addresses from the network: a keyed hash).
    parked: HashMap<Owner, BTreeSet<WaitKey>, ahash::RandomState>,
    /// Messages in `parked`.
    parked_count: usize,
    /// The sockets with parked messages (a few: one per socket).
    parked_ports: Vec<u16>,
    /// Contiguous storage reserved by messages being received: at most
    /// one socket's budget, endpoint-wide.
    pub(crate) contiguous: crate::rpc::msgin::Reservations,
}

impl RxMemory {
    /// An empty budget with the limits of `config`; the parked messages'
    /// map hashes with `hasher`.
    pub(crate) fn new(config: &Config, hasher: ahash::RandomState) -> RxMemory {
        RxMemory {
            max_total: config.max_rx_bytes,
            max_per_peer: config.max_rx_bytes_per_peer,
            socket_budget: config.socket_rx_budget,
            contiguous: crate::rpc::msgin::Reservations::new(config.socket_rx_budget),
            total: 0,
            blocked: Vec::new(),
            waiting: BTreeSet::new(),
            parked: HashMap::with_hasher(hasher),
            parked_count: 0,
            parked_ports: Vec::new(),
        }
    }

    /// Bytes held endpoint-wide.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Room left under the endpoint-wide budget.
    pub(crate) fn global_room(&self) -> u64 {
        self.max_total.saturating_sub(self.total)
    }

    /// Room left under a socket's budget, given its use (`socket_used`:
    /// buffers plus messages its application holds).
    pub(crate) fn socket_room(&self, socket_used: u64) -> u64 {
        self.socket_budget.saturating_sub(socket_used)
    }

    /// Bytes a message may still take, given its peer's use and its
    /// socket's room ([`RxMemory::socket_room`]; 0 for no socket).
    pub(crate) fn available(&self, peer_used: u64, socket_room: u64) -> u64 {
        self.global_room()
            .min(self.peer_room(peer_used))
            .min(socket_room)
    }

    /// Charges `len` bytes to the endpoint, the peer's counter and the
    /// socket's counter (if the socket exists).
    pub(crate) fn charge(&mut self, peer_used: &mut u64, socket_used: Option<&mut u64>, len: u64) {
        *peer_used += len;
        self.total += len;
        if let Some(s) = socket_used {
            *s += len;
        }
    }

    /// Returns `len` bytes charged by [`RxMemory::charge`] (the counters
    /// of a peer or socket that is gone are skipped). True if memory freed
    /// and a message waits for it: a grant pass should run.
    pub(crate) fn uncharge(
        &mut self,
        peer_used: Option<&mut u64>,
        socket_used: Option<&mut u64>,
        len: u64,
    ) -> bool {
        self.total = self.total.saturating_sub(len);
        if let Some(p) = peer_used {
            *p = p.saturating_sub(len);
        }
        if let Some(s) = socket_used {
            *s = s.saturating_sub(len);
        }
        len > 0 && self.has_waiters()
    }

    /// True if any message waits for memory (blocked or not admitted).
    pub(crate) fn has_waiters(&self) -> bool {
        !self.blocked.is_empty() || !self.waiting.is_empty() || self.parked_count > 0
    }

    /// The largest grant (at most `target`) whose buffer fits in `avail`
    /// more bytes, for a message whose buffer is `buffer_len` bytes and
    /// would grow by `growth` for `target`: the buffer extends
    /// `GRANT_SLACK` past the grant.
    pub(crate) fn fit_grant(target: u32, buffer_len: u32, growth: u32, avail: u64) -> u32 {
        if growth as u64 <= avail {
            return target;
        }
        let cap = (buffer_len as u64 + avail).saturating_sub(GRANT_SLACK as u64);
        target.min(cap.min(u32::MAX as u64) as u32)
    }

    /// The least a waiting message of `length` bytes needs to be admitted
    /// (its first buffer and the delivery overhead); grows with `length`.
    pub(crate) fn admission_floor(length: u32) -> u64 {
        length.min(GRANT_SLACK) as u64 + DELIVERED_OVERHEAD
    }

    /// A message's next grant did not fit.
    pub(crate) fn block(&mut self, rpc: RpcRef) {
        self.blocked.push(rpc);
    }

    /// Messages blocked since [`RxMemory::clear_blocked`].
    pub(crate) fn blocked(&self) -> &[RpcRef] {
        &self.blocked
    }

    /// Forgets the blocked messages (a grant pass starts and finds them
    /// again); true if there were any.
    pub(crate) fn clear_blocked(&mut self) -> bool {
        let any = !self.blocked.is_empty();
        self.blocked.clear();
        any
    }

    /// A new message waits for a buffer.
    pub(crate) fn wait(&mut self, w: WaitKey) {
        self.waiting.insert(w);
    }

    /// A message stops waiting (admitted, or its RPC is freed), queued or
    /// parked. Its peer's and its socket's first parked messages (if any)
    /// are queued again: a message an owner's free unparked may leave the
    /// queue without being admitted, and the owner's others must not stay
    /// parked for it. True if any was.
    pub(crate) fn unwait(&mut self, w: &WaitKey) -> bool {
        if self.parked_count == 0 {
            self.waiting.remove(w);
            return false;
        }
        if !self.waiting.remove(w) {
            for owner in [Owner::Peer(w.peer), Owner::Port(w.port)] {
                if self.take_parked(owner, Some(w)).is_some() {
                    break;
                }
            }
        }
        self.freed_by(w.peer, w.port)
    }

    /// `peer` and socket `port` freed memory (or one of their messages
    /// left the queue): each one's shortest parked message is queued
    /// again. True if any was.
    pub(crate) fn freed_by(&mut self, peer: SocketAddr, port: u16) -> bool {
        self.unpark_first(Owner::Peer(peer)) | self.unpark_first(Owner::Port(port))
    }

    /// Parks waiting message `w` with `owner`, whose budget it is over (see
    /// the module documentation).
    pub(crate) fn park(&mut self, w: WaitKey, owner: Owner) {
        if !self.waiting.remove(&w) {
            return;
        }
        let set = self.parked.entry(owner).or_default();
        if set.is_empty() {
            if let Owner::Port(p) = owner {
                self.parked_ports.push(p);
            }
        }
        if set.insert(w) {
            self.parked_count += 1;
        }
    }

    /// Removes `w` (or with `None` the first) from `owner`'s parked
    /// messages; returns it.
    fn take_parked(&mut self, owner: Owner, w: Option<&WaitKey>) -> Option<WaitKey> {
        let set = self.parked.get_mut(&owner)?;
        let taken = match w {
            Some(w) => set.take(w),
            None => set.pop_first(),
        };
        if set.is_empty() {
            self.parked.remove(&owner);
            if let Owner::Port(p) = owner {
                self.parked_ports.retain(|&q| q != p);
            }
        }
        if taken.is_some() {
            self.parked_count -= 1;
        }
        taken
    }

    /// `owner` freed memory, or one of its messages was admitted: its
    /// shortest parked message (if any) is queued again. True if one was.
    pub(crate) fn unpark_first(&mut self, owner: Owner) -> bool {
        if self.parked_count == 0 {
            return false;
        }
        match self.take_parked(owner, None) {
            Some(w) => {
                self.waiting.insert(w);
                true
            }
            None => false,
        }
    }

    /// [`RxMemory::unpark_first`] for every socket with parked messages
    /// (their applications may have dropped delivered messages, which
    /// frees socket budget without an event): at most one message per
    /// socket. True if any was.
    pub(crate) fn unpark_sockets(&mut self) -> bool {
        let mut any = false;
        for i in (0..self.parked_ports.len()).rev() {
            if let Some(&p) = self.parked_ports.get(i) {
                any |= self.unpark_first(Owner::Port(p));
            }
        }
        any
    }

    /// True if new messages wait for a buffer in the queue an admission
    /// pass walks (parked ones are not looked at).
    pub(crate) fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Number of new messages waiting for a buffer, parked ones included.
    pub(crate) fn waiting_count(&self) -> usize {
        self.waiting.len() + self.parked_count
    }

    /// Room left under the per-peer budget, given the peer's use.
    pub(crate) fn peer_room(&self, peer_used: u64) -> u64 {
        self.max_per_peer.saturating_sub(peer_used)
    }

    /// The first waiting message after `after` (from the start for
    /// `None`), in admission order.
    pub(crate) fn next_waiting(&self, after: Option<WaitKey>) -> Option<WaitKey> {
        use core::ops::Bound::{Excluded, Unbounded};
        match after {
            None => self.waiting.first().copied(),
            Some(a) => self.waiting.range((Excluded(a), Unbounded)).next().copied(),
        }
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    fn mem() -> RxMemory {
        let config = Config {
            max_rx_bytes: 1_000_000,
            max_rx_bytes_per_peer: 400_000,
            socket_rx_budget: 300_000,
            ..Config::default()
        };
        RxMemory::new(&config, ahash::RandomState::with_seeds(1, 2, 3, 4))
    }

    fn rpc(seq: u64) -> RpcRef {
        RpcRef {
            seq,
            key: seq as usize,
        }
    }

    /// Waiting message `seq` of `length` bytes from peer `p` to socket 7.
    fn waiter(length: u32, seq: u64, p: u16) -> WaitKey {
        WaitKey {
            length,
            rpc: rpc(seq),
            peer: SocketAddr::from(([10, 0, 0, 1], p)),
            port: 7,
        }
    }

    #[test]
    fn available__smallest_of_three_budgets() {
        let m = mem();
        assert_eq!(m.available(0, m.socket_room(0)), 300_000);
        assert_eq!(m.available(350_000, m.socket_room(0)), 50_000);
        assert_eq!(m.available(0, m.socket_room(290_000)), 10_000);
        assert_eq!(m.available(0, 0), 0);
    }

    #[test]
    fn charge__counts_everywhere_and_uncharge_returns_it() {
        let mut m = mem();
        let (mut peer, mut sock) = (0, 0);
        m.charge(&mut peer, Some(&mut sock), 700_000);
        assert_eq!((m.total(), peer, sock), (700_000, 700_000, 700_000));
        assert_eq!(m.global_room(), 300_000);
        assert_eq!(m.available(0, m.socket_room(0)), 300_000);
        m.charge(&mut 0, None, 250_000);
        assert_eq!(m.available(0, m.socket_room(0)), 50_000);
        assert!(!m.uncharge(Some(&mut peer), Some(&mut sock), 700_000));
        assert_eq!((m.total(), peer, sock), (250_000, 0, 0));
    }

    #[test]
    fn uncharge__saturates_and_skips_gone_counters() {
        let mut m = mem();
        m.charge(&mut 0, None, 10);
        m.uncharge(None, None, 100);
        assert_eq!(m.total(), 0);
    }

    #[test]
    fn uncharge__asks_for_a_pass_only_when_someone_waits() {
        let mut m = mem();
        m.charge(&mut 0, None, 1000);
        assert!(!m.uncharge(None, None, 10));
        m.block(rpc(1));
        assert!(m.uncharge(None, None, 10));
        assert!(!m.uncharge(None, None, 0), "nothing freed");
        assert!(m.clear_blocked());
        assert!(!m.clear_blocked());
        m.wait(waiter(5, 2, 1));
        assert!(m.uncharge(None, None, 10));
    }

    #[test]
    fn fit_grant__caps_to_the_buffer_that_fits() {
        // Fits: unchanged.
        assert_eq!(RxMemory::fit_grant(50_000, 20_000, 30_000, 30_000), 50_000);
        // GRANT_SLACK + 10 000 bytes of room beyond a 20 000-byte buffer:
        // the grant stops GRANT_SLACK short of the grown buffer's end.
        let avail = GRANT_SLACK as u64 + 10_000;
        let capped = RxMemory::fit_grant(200_000, 20_000, 200_000, avail);
        assert_eq!(capped, 30_000);
        // No room: the grant cannot pass the buffer.
        assert!(RxMemory::fit_grant(50_000, 0, 50_000, 0) == 0);
    }

    #[test]
    fn admission_floor__grows_with_length_up_to_the_slack() {
        assert_eq!(RxMemory::admission_floor(100), 100 + DELIVERED_OVERHEAD);
        assert_eq!(
            RxMemory::admission_floor(u32::MAX),
            GRANT_SLACK as u64 + DELIVERED_OVERHEAD
        );
        assert!(RxMemory::admission_floor(10) <= RxMemory::admission_floor(11));
    }

    #[test]
    fn next_waiting__shortest_first_then_oldest() {
        let mut m = mem();
        let a = waiter(500, 1, 1);
        let b = waiter(100, 3, 1);
        let c = waiter(100, 2, 1);
        for w in [a, b, c] {
            m.wait(w);
        }
        assert_eq!(m.waiting_count(), 3);
        assert_eq!(m.next_waiting(None), Some(c));
        assert_eq!(m.next_waiting(Some(c)), Some(b));
        assert_eq!(m.next_waiting(Some(b)), Some(a));
        assert_eq!(m.next_waiting(Some(a)), None);
        m.unwait(&c);
        assert_eq!(m.next_waiting(None), Some(b));
        assert!(m.has_waiting());
    }

    #[test]
    fn park__skipped_by_the_queue_until_the_peer_unparks_its_shortest() {
        let mut m = mem();
        let (a1, a2, a3) = (waiter(300, 1, 1), waiter(100, 2, 1), waiter(200, 3, 1));
        let b = waiter(250, 4, 2);
        for w in [a1, a2, a3, b] {
            m.wait(w);
        }
        let peer = |w: WaitKey| Owner::Peer(w.peer);
        for w in [a1, a2, a3] {
            m.park(w, peer(w));
        }
        m.park(a2, peer(a2)); // already parked: no change
        assert_eq!(m.waiting_count(), 4, "parked messages still wait");
        assert!(m.has_waiters());
        assert_eq!(m.next_waiting(None), Some(b), "the queue skips them");
        assert!(!m.unpark_first(peer(b)), "peer 2 has nothing parked");
        assert!(m.unpark_first(peer(a1)));
        assert_eq!(m.next_waiting(None), Some(a2), "its shortest first");
        assert_eq!(m.next_waiting(Some(a2)), Some(b));
        // Freed while parked: gone from the peer's list, and the peer's
        // next (a3) is queued in its place.
        assert!(m.unwait(&a1));
        assert_eq!(m.waiting_count(), 3);
        assert_eq!(m.next_waiting(Some(a2)), Some(a3));
        assert!(!m.unpark_first(peer(a1)), "nothing left parked");
        // Parked with the socket: back one per socket.
        m.park(b, Owner::Port(7));
        m.park(a3, Owner::Port(7));
        assert_eq!(m.next_waiting(None), Some(a2));
        assert_eq!(m.next_waiting(Some(a2)), None);
        assert!(m.unpark_sockets());
        assert_eq!(m.next_waiting(Some(a2)), Some(a3), "the socket's shortest");
        assert_eq!(m.next_waiting(Some(a3)), None);
        // A queued message that leaves without being admitted queues its
        // socket's next (b) in its place.
        assert!(m.unwait(&a3));
        assert_eq!(m.next_waiting(Some(a2)), Some(b));
        assert!(!m.unpark_sockets(), "nothing left parked");
        for w in [a2, b] {
            assert!(!m.unwait(&w));
        }
        assert_eq!(m.waiting_count(), 0);
        assert!(!m.has_waiters());
    }

    #[test]
    fn block__lists_blocked_messages() {
        let mut m = mem();
        m.block(rpc(4));
        m.block(rpc(7));
        assert_eq!(m.blocked(), &[rpc(4), rpc(7)]);
        assert!(m.has_waiters());
    }
}
