//! RPC state: one [`Rpc`] per request/response exchange, on either side.
//!
//! Like the kernel, one structure serves both roles; the low bit of the local
//! id tells them apart (0 = we are the client, 1 = we are the server).
//!
//! Life cycles:
//! * client: `Outgoing` (request being sent) → `Incoming` (response
//!   arriving) → freed when the response is complete, failed or aborted;
//! * server: `Incoming` (request arriving) → `InService` (handed to the
//!   application) → `Outgoing` (response being sent, then waiting for the
//!   client's ACK) → freed.

pub(crate) mod msgin;
pub(crate) mod msgout;

use core::net::SocketAddr;

use crate::peer::PeerRef;
use crate::Instant;
use msgin::MsgIn;
use msgout::MsgOut;

/// Where an RPC is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RpcState {
    /// Sending our message (client: request; server: response).
    Outgoing,
    /// Receiving the peer's message.
    Incoming,
    /// Server only: the request was handed to the application.
    InService,
}

/// A reference to an RPC that stays valid as a name: its slot in the
/// endpoint's table and its creation sequence (the slot's generation: a
/// freed slot is reused by an RPC with another sequence). Orders by
/// sequence first (older RPCs first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct RpcRef {
    /// Creation sequence of the RPC.
    pub(crate) seq: u64,
    /// Slot of the RPC in the endpoint's table.
    pub(crate) key: usize,
}

/// One RPC.
#[derive(Debug)]
pub(crate) struct Rpc {
    /// Local id: even for client RPCs, odd for server RPCs.
    pub id: u64,
    /// Unique creation number; doubles as a generation tag for queue entries.
    pub seq: u64,
    /// The other end.
    pub peer: SocketAddr,
    /// The other end's state in the peer table (found by this handle, not
    /// by `peer`, while it is valid).
    pub peer_ref: PeerRef,
    /// Server RPCs: the next server RPC with the same id from another
    /// client ([`ServerRpcs`]), [`NO_RPC`] for none.
    pub next_same_id: usize,
    /// Changed since the timer's last periodic pass looked at it (its key
    /// is then in [`RpcTable`]'s list of changed RPCs).
    pub(crate) changed: bool,
    /// Local socket port.
    pub port: u16,
    /// Life-cycle state.
    pub state: RpcState,
    /// Our message, once there is one.
    pub msgout: Option<MsgOut>,
    /// The peer's message, once its first packet arrived and only if it
    /// needs reassembly (a single-packet message is delivered from its
    /// packet). Boxed: the RPC is moved into and out of its table once
    /// each, and most never have one.
    pub msgin: Option<Box<MsgIn>>,
    /// Where the RPC sits in the transmit queues, if it does.
    pub xmit_key: Option<XmitPos>,
    /// True while the RPC sits in the retransmission queue.
    pub in_retx_queue: bool,
    /// Position of the incoming message in the grant scheduler's rank
    /// order, while it needs grants.
    pub grant_rank: Option<crate::grant::scheduler::RankKey>,
    /// Last time the peer moved this RPC forward or said why not: DATA,
    /// GRANT, BUSY, or a RESEND for our message (our RESENDs for what it owes
    /// us wait for silence on this clock).
    pub last_heard: Instant,
    /// Last time anything at all came from the peer about this RPC (also a
    /// RESEND or probe while we owe it nothing): the RPC times out only
    /// after `timeout` of silence on this clock.
    pub alive: Instant,
    /// When we last asked the peer to retransmit (or sent NEED_ACK).
    pub last_request: Option<Instant>,
    /// Server: when the response was fully transmitted.
    pub done_at: Option<Instant>,
    /// Something we sent that the peer answers at once; its answer yields a
    /// round-trip sample.
    pub rtt_probe: Option<Probe>,
    /// Our message is held by output commit (socket plugged).
    pub held: bool,
    /// Silence RESENDs sent since we last heard from the peer (backoff).
    pub resend_backoff: u32,
    /// The peer's message waits for a receive buffer: (length, the sender's
    /// unscheduled bytes).
    pub waiting: Option<(u32, u32)>,
    /// The incarnation of the server endpoint this RPC belongs to: for a
    /// client RPC, the one its request is bound to (0: not known yet, and
    /// nothing is sent until it is; see the `amo` module); for a server RPC,
    /// our own.
    pub echo: u64,
    /// The last word from the peer was BUSY: it is alive but makes no
    /// progress, so our probes keep backing off.
    pub busy: bool,
    /// Client: the server has shown it has the RPC (GRANT, BUSY): from then
    /// on it recovers lost request bytes itself, and we only need to know
    /// it is alive.
    pub peer_knows: bool,
    /// Receiving: the level at which the bytes we wait for travel, and how
    /// much link time DATA at that level or above had taken when the
    /// message last made progress (see the timer's `RxLink`).
    pub quiet_mark: (u8, u64),
    /// Receiving: the level of our latest GRANT.
    pub grant_level: u8,
    /// Receiving: bytes we granted have been silent for `resend_after`
    /// while our link was busy with packets at their level or above: they
    /// are queued behind our other grants, and the grant scheduler lets them
    /// through (see the `grant` module).
    pub starving: bool,
    /// Sending: when we last transmitted DATA of our message, or told the
    /// receiver BUSY while granted bytes waited behind other messages.
    pub last_xmit: Instant,
}

/// A pending round-trip probe. Each kind names the answers that are
/// causally after it, so a sample can overestimate (queueing) but never
/// underestimate the round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// The first DATA packet of our message: answered by a GRANT about the
    /// RPC (the peer knows the RPC only from that packet; its response,
    /// which waited for its application, is no answer, and a BUSY may
    /// answer a later RESEND, which replaces this probe).
    FirstData(Instant),
    /// A GRANT raising the grant from the given offset: answered by DATA at
    /// or beyond that offset, which the sender could not send before.
    Grant(Instant, u32),
    /// A RESEND: answered by retransmitted DATA or BUSY.
    Resend(Instant),
}

impl Probe {
    /// The probe of a RESEND sent at `now` for an RPC whose pending probe
    /// was `old`: it replaces a first-DATA probe (whose BUSY answers would
    /// count the time the peer's application held the RPC), not a GRANT's
    /// or an earlier RESEND's.
    pub(crate) fn resend(old: Option<Probe>, now: Instant) -> Probe {
        match old {
            None | Some(Probe::FirstData(_)) => Probe::Resend(now),
            Some(p) => p,
        }
    }
}

impl Rpc {
    /// A new RPC in the given state, belonging to the server incarnation
    /// `echo`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: u64,
        seq: u64,
        peer: SocketAddr,
        peer_ref: PeerRef,
        port: u16,
        state: RpcState,
        echo: u64,
        now: Instant,
    ) -> Rpc {
        Rpc {
            id,
            seq,
            peer,
            peer_ref,
            next_same_id: NO_RPC,
            changed: false,
            port,
            state,
            msgout: None,
            msgin: None,
            xmit_key: None,
            in_retx_queue: false,
            grant_rank: None,
            last_heard: now,
            alive: now,
            last_request: None,
            done_at: None,
            rtt_probe: None,
            held: false,
            resend_backoff: 0,
            waiting: None,
            echo,
            busy: false,
            peer_knows: false,
            quiet_mark: (0, 0),
            grant_level: 0,
            starving: false,
            last_xmit: now,
        }
    }

    /// Makes a freed RPC's memory the new RPC [`Rpc::new`] would build,
    /// field by field where it lies (building a new value and moving it
    /// in copied the whole RPC, a few hundred bytes, per RPC started). The
    /// destructuring names every field, so a field added to [`Rpc`] fails
    /// to compile here until it is reset too.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(crate) fn restart(
        &mut self,
        id: u64,
        seq: u64,
        peer: SocketAddr,
        peer_ref: PeerRef,
        port: u16,
        state: RpcState,
        echo: u64,
        now: Instant,
    ) {
        let Rpc {
            id: r_id,
            seq: r_seq,
            peer: r_peer,
            peer_ref: r_peer_ref,
            next_same_id,
            changed,
            port: r_port,
            state: r_state,
            msgout,
            msgin,
            xmit_key,
            in_retx_queue,
            grant_rank,
            last_heard,
            alive,
            last_request,
            done_at,
            rtt_probe,
            held,
            resend_backoff,
            waiting,
            echo: r_echo,
            busy,
            peer_knows,
            quiet_mark,
            grant_level,
            starving,
            last_xmit,
        } = self;
        *r_id = id;
        *r_seq = seq;
        *r_peer = peer;
        *r_peer_ref = peer_ref;
        *next_same_id = NO_RPC;
        *changed = false;
        *r_port = port;
        *r_state = state;
        *msgout = None;
        *msgin = None;
        *xmit_key = None;
        *in_retx_queue = false;
        *grant_rank = None;
        *last_heard = now;
        *alive = now;
        *last_request = None;
        *done_at = None;
        *rtt_probe = None;
        *held = false;
        *resend_backoff = 0;
        *waiting = None;
        *r_echo = echo;
        *busy = false;
        *peer_knows = false;
        *quiet_mark = (0, 0);
        *grant_level = 0;
        *starving = false;
        *last_xmit = now;
    }

    /// The peer moved the RPC forward (or said why it does not).
    pub(crate) fn heard(&mut self, now: Instant) {
        self.last_heard = now;
        self.alive = now;
    }

    /// True for client RPCs (even id).
    pub(crate) fn is_client(&self) -> bool {
        self.id & 1 == 0
    }
}

/// Where a sendable RPC is queued for transmission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum XmitPos {
    /// A message shorter than `defer_min_bytes`: never throttled.
    Short,
    /// A paced message, keyed by bytes left to transmit (SRPT) and by its
    /// creation time (the pacer's FIFO share).
    Paced(u32, Instant),
}

/// Converts a `sender_id` from the wire into the receiver's local id.
pub(crate) const fn local_id(sender_id: u64) -> u64 {
    sender_id ^ 1
}

/// Spare boxes [`RpcTable`] keeps for reuse, at most: enough for the RPCs
/// a busy endpoint starts between two frees, small next to the RPCs
/// themselves.
const SPARE_RPCS: usize = 256;

/// The endpoint's RPCs by key (a slot that stays valid while the RPC
/// lives). Each RPC lives in its own box, and freed boxes are reused: an
/// RPC is written once when it starts and never moved after (a slab of
/// RPCs moved every RPC in and out of the table, a few hundred bytes
/// each), and a steady stream of RPCs allocates nothing.
///
/// The table also tells the timer's periodic pass which RPCs to look at
/// ([`RpcTable::due`]): those that changed since the last pass (every
/// mutable access goes through this table, which lists the RPC once), and
/// those whose time came (by key, the instant the pass computed from the
/// RPC's clocks), instead of every RPC.
#[derive(Debug, Default)]
pub(crate) struct RpcTable {
    slots: slab::Slab<Box<Rpc>>,
    /// Boxes of freed RPCs (boxed on purpose: they move into `slots`).
    #[allow(clippy::vec_box)]
    spare: Vec<Box<Rpc>>,
    /// By key: nanoseconds of the instant from which the periodic pass
    /// must look at the RPC (`u64::MAX`: no RPC, or only once it changes).
    check_at: Vec<u64>,
    /// By key: `u64::MAX` unless the RPC had a hole that fast recovery may
    /// ask for when the timer last looked at it; then when the first of
    /// those is due. Every pass, also those for holes alone, looks at RPCs
    /// with such holes.
    gap_at: Vec<u64>,
    /// Keys of the RPCs changed since the last periodic pass (each once:
    /// see [`Rpc::changed`]; a key may outlive its RPC).
    changed: Vec<usize>,
}

impl RpcTable {
    /// The key the next [`RpcTable::insert`] returns.
    #[inline]
    pub(crate) fn vacant_key(&self) -> usize {
        self.slots.vacant_key()
    }

    /// Starts a new RPC ([`Rpc::new`]'s arguments), written straight into
    /// a spare box when there is one; returns its key.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(crate) fn start(
        &mut self,
        id: u64,
        seq: u64,
        peer: SocketAddr,
        peer_ref: PeerRef,
        port: u16,
        state: RpcState,
        echo: u64,
        now: Instant,
    ) -> usize {
        let b = match self.spare.pop() {
            Some(mut b) => {
                b.restart(id, seq, peer, peer_ref, port, state, echo, now);
                b
            }
            None => Box::new(Rpc::new(id, seq, peer, peer_ref, port, state, echo, now)),
        };
        let key = self.slots.insert(b);
        if key >= self.check_at.len() {
            self.check_at.resize(key + 1, u64::MAX);
            self.gap_at.resize(key + 1, u64::MAX);
        }
        self.mark(key);
        key
    }

    /// Removes RPC `key` (which must exist) from the table; hand it back
    /// with [`RpcTable::recycle`] once done with it.
    #[inline]
    pub(crate) fn remove(&mut self, key: usize) -> Box<Rpc> {
        let rpc = self.slots.remove(key);
        self.check_at[key] = u64::MAX;
        self.gap_at[key] = u64::MAX;
        rpc
    }

    /// Keeps a removed RPC's box for the next RPC (its messages are
    /// dropped now).
    #[inline]
    pub(crate) fn recycle(&mut self, mut rpc: Box<Rpc>) {
        if self.spare.len() < SPARE_RPCS {
            rpc.msgout = None;
            rpc.msgin = None;
            self.spare.push(rpc);
        }
    }

    /// RPC `key`, if it exists.
    #[inline]
    pub(crate) fn get(&self, key: usize) -> Option<&Rpc> {
        self.slots.get(key).map(|b| &**b)
    }

    /// True if RPC `key` exists.
    #[inline]
    pub(crate) fn contains(&self, key: usize) -> bool {
        self.slots.contains(key)
    }

    /// Number of RPCs.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// True if there is no RPC.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Every RPC with its key.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &Rpc)> {
        self.slots.iter().map(|(k, b)| (k, &**b))
    }

    /// Every RPC with its key, mutable (each is then due at the next pass).
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut Rpc)> {
        let keys: Vec<usize> = self.slots.iter().map(|(k, _)| k).collect();
        for k in keys {
            self.mark(k);
        }
        self.slots.iter_mut().map(|(k, b)| (k, &mut **b))
    }

    /// RPC `key` (which must exist), mutable, for the periodic pass: unlike
    /// `IndexMut`, this does not make it due (the pass then says when it is,
    /// with [`RpcTable::set_check_at`]).
    #[inline]
    pub(crate) fn timer_mut(&mut self, key: usize) -> &mut Rpc {
        &mut self.slots[key]
    }

    /// Lists RPC `key` (which exists) as changed.
    #[inline(always)]
    fn mark(&mut self, key: usize) {
        let rpc = &mut self.slots[key];
        if !rpc.changed {
            rpc.changed = true;
            self.list_changed(key);
        }
    }

    /// Adds `key` to the list of changed RPCs. A key reused by a new RPC
    /// is listed again, so between two passes (a pass may run late) the
    /// list could grow with the RPCs started: past twice the RPCs (plus
    /// 64) it keeps only the keys of RPCs still flagged, each once.
    #[inline]
    fn list_changed(&mut self, key: usize) {
        self.changed.push(key);
        if self.changed.len() > 2 * self.slots.len() + 64 {
            let slots = &self.slots;
            self.changed
                .retain(|&k| slots.get(k).is_some_and(|r| r.changed));
            self.changed.sort_unstable();
            self.changed.dedup();
        }
    }

    /// Appends to `out`, in key order, the keys of the RPCs a periodic
    /// pass (`tick`), or a pass for holes alone, must look at by `now`:
    /// those that changed since the last periodic pass, those that may
    /// have a hole for fast recovery, and for a tick those whose time came.
    /// A periodic pass takes the list of changed RPCs (the pass then
    /// clears their flags with [`RpcTable::set_check_at`]).
    pub(crate) fn due(&mut self, now: Instant, tick: bool, out: &mut Vec<usize>) {
        let now = now.as_nanos();
        out.extend(
            self.check_at
                .iter()
                .zip(&self.gap_at)
                .enumerate()
                .filter(|&(_, (&c, &g))| g != u64::MAX || (tick && c <= now))
                .map(|(k, _)| k),
        );
        let slots = &self.slots;
        let changed = self
            .changed
            .iter()
            .copied()
            .filter(|&k| slots.get(k).is_some_and(|r| r.changed));
        out.extend(changed);
        if tick {
            self.changed.clear();
        }
        out.sort_unstable();
        out.dedup();
    }

    /// Empties the list of changed RPCs (a pass that looked at every RPC,
    /// which tests compare with the usual one, does not read it).
    pub(crate) fn forget_changed(&mut self) {
        self.changed.clear();
    }

    /// Sets when the periodic pass must next look at RPC `key` if nothing
    /// changes it meanwhile ([`Instant::MAX`]: only once it changes), and
    /// when its first hole for fast recovery is due (`None`: it has none).
    /// A periodic pass (`at` given) clears the RPC's changed flag.
    #[inline]
    pub(crate) fn set_check_at(&mut self, key: usize, at: Option<Instant>, gap: Option<Instant>) {
        if let Some(at) = at {
            self.check_at[key] = at.as_nanos();
            self.slots[key].changed = false;
        }
        self.gap_at[key] = gap.map_or(u64::MAX, Instant::as_nanos);
    }
}

impl core::ops::Index<usize> for RpcTable {
    type Output = Rpc;
    #[inline]
    fn index(&self, key: usize) -> &Rpc {
        &self.slots[key]
    }
}

impl core::ops::IndexMut<usize> for RpcTable {
    #[inline]
    fn index_mut(&mut self, key: usize) -> &mut Rpc {
        // A change to the RPC may change what the periodic pass does with
        // it, and when: it looks at the RPC at its next run.
        // (Listed at most once per live RPC between two passes: its flag
        // stays set until the pass; starts, which may reuse keys, go
        // through `mark`, which keeps the list bounded.)
        let rpc = &mut *self.slots[key];
        if !rpc.changed {
            rpc.changed = true;
            self.changed.push(key);
        }
        rpc
    }
}

/// "No RPC" in [`Rpc::next_same_id`] and [`ServerRpcs`].
pub(crate) const NO_RPC: usize = usize::MAX;

/// The server RPCs by id. A server RPC is named by its client's address
/// and the client's id, and two clients may pick the same id; hashing the
/// id alone (not the address with it) finds the first RPC with that id,
/// and RPCs sharing an id are chained through [`Rpc::next_same_id`] (in
/// practice the chain has one link: ids are random 62-bit values per
/// client endpoint).
#[derive(Debug)]
pub(crate) struct ServerRpcs {
    first: std::collections::HashMap<u64, usize, ahash::RandomState>,
}

impl ServerRpcs {
    /// An empty index whose map hashes with `hasher`.
    pub(crate) fn new(hasher: ahash::RandomState) -> ServerRpcs {
        ServerRpcs {
            first: std::collections::HashMap::with_hasher(hasher),
        }
    }

    /// The server RPC for request `id` from `client`.
    #[inline(always)]
    pub(crate) fn get(&self, rpcs: &RpcTable, client: &SocketAddr, id: u64) -> Option<usize> {
        let mut key = *self.first.get(&id)?;
        loop {
            let rpc = &rpcs[key];
            if rpc.peer == *client {
                return Some(key);
            }
            key = rpc.next_same_id;
            if key == NO_RPC {
                return None;
            }
        }
    }

    /// Adds server RPC `key` (in `rpcs`, not in the index yet: no other
    /// RPC has its id from its client).
    #[inline]
    pub(crate) fn insert(&mut self, rpcs: &mut RpcTable, key: usize) {
        let id = rpcs[key].id;
        let next = self.first.insert(id, key).unwrap_or(NO_RPC);
        rpcs[key].next_same_id = next;
    }

    /// Removes server RPC `rpc` (with key `key`, just removed from `rpcs`)
    /// from the index.
    #[inline]
    pub(crate) fn remove(&mut self, rpcs: &mut RpcTable, key: usize, rpc: &Rpc) {
        let next = rpc.next_same_id;
        let Some(first) = self.first.get_mut(&rpc.id) else {
            return;
        };
        if *first == key {
            if next == NO_RPC {
                self.first.remove(&rpc.id);
            } else {
                *first = next;
            }
            return;
        }
        let mut k = *first;
        while k != NO_RPC {
            let r = &mut rpcs[k];
            if r.next_same_id == key {
                r.next_same_id = next;
                return;
            }
            k = r.next_same_id;
        }
    }

    /// Number of server RPCs with distinct ids (for tests).
    #[cfg(test)]
    pub(crate) fn ids(&self) -> usize {
        self.first.len()
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    fn insert(t: &mut RpcTable, id: u64) -> usize {
        let peer = "10.0.0.1:9".parse().unwrap();
        t.start(
            id,
            id,
            peer,
            PeerRef::NONE,
            1,
            RpcState::Outgoing,
            0,
            Instant::ZERO,
        )
    }

    #[test]
    fn rpc_table__reuses_freed_boxes_without_their_messages() {
        let mut t = RpcTable::default();
        let k = insert(&mut t, 2);
        t[k].msgout = Some(MsgOut::new(
            bytes::Bytes::from_static(b"abc"),
            1400,
            1400,
            0,
            Instant::ZERO,
        ));
        let b = t.remove(k);
        let addr = &*b as *const Rpc;
        t.recycle(b);
        assert!(t.is_empty() && t.get(k).is_none());
        assert_eq!(t.spare.len(), 1);
        assert!(t.spare[0].msgout.is_none(), "a spare box keeps no message");
        let k2 = insert(&mut t, 4);
        assert_eq!(&t[k2] as *const Rpc, addr, "the freed box is reused");
        assert_eq!((t[k2].id, t.len()), (4, 1));
        assert!(t.spare.is_empty());
    }

    #[test]
    fn rpc_table__a_reused_box_starts_as_a_new_rpc() {
        let mut t = RpcTable::default();
        let k = insert(&mut t, 2);
        // Everything an RPC's life changes, changed.
        let r = &mut t[k];
        let at = Instant::from_nanos(5_000);
        r.state = RpcState::Incoming;
        r.xmit_key = Some(XmitPos::Paced(7, at));
        r.in_retx_queue = true;
        r.grant_rank = Some(crate::grant::scheduler::RankKey {
            remaining: 1,
            birth: at,
            rpc: RpcRef { seq: 2, key: k },
        });
        r.last_heard = at;
        r.alive = at;
        r.last_request = Some(at);
        r.done_at = Some(at);
        r.rtt_probe = Some(Probe::Resend(at));
        r.held = true;
        r.resend_backoff = 3;
        r.waiting = Some((10, 20));
        r.echo = 99;
        r.busy = true;
        r.peer_knows = true;
        r.quiet_mark = (2, 77);
        r.grant_level = 4;
        r.starving = true;
        r.last_xmit = at;
        r.next_same_id = 17;
        let b = t.remove(k);
        t.recycle(b);
        let peer = "10.0.0.2:7".parse().unwrap();
        let now = Instant::from_nanos(9_000);
        let k2 = t.start(5, 6, peer, PeerRef::NONE, 3, RpcState::InService, 8, now);
        assert_eq!(t.spare.len(), 0, "the spare box was used");
        let mut fresh = Rpc::new(5, 6, peer, PeerRef::NONE, 3, RpcState::InService, 8, now);
        // A started RPC is listed for the timer's next pass.
        fresh.changed = true;
        assert_eq!(format!("{:?}", t[k2]), format!("{fresh:?}"));
    }

    #[test]
    fn rpc_table__changed_list_stays_bounded_when_keys_are_reused() {
        // RPCs start and end at the same key with no timer pass between
        // (a pass that runs late): each start lists the key again.
        let mut t = RpcTable::default();
        let keep = insert(&mut t, 2);
        for i in 0..10_000u64 {
            let k = insert(&mut t, 4 + 2 * i);
            let b = t.remove(k);
            t.recycle(b);
            assert!(
                t.changed.len() <= 2 * (t.len() + 1) + 64,
                "{}",
                t.changed.len()
            );
        }
        let mut due = Vec::new();
        t.due(Instant::ZERO, true, &mut due);
        assert_eq!(due, vec![keep]);
    }

    #[test]
    fn rpc_table__keeps_a_bounded_number_of_spares() {
        let mut t = RpcTable::default();
        let keys: Vec<usize> = (0..SPARE_RPCS as u64 + 10)
            .map(|i| insert(&mut t, 2 * i))
            .collect();
        for k in keys {
            let b = t.remove(k);
            t.recycle(b);
        }
        assert_eq!(t.spare.len(), SPARE_RPCS);
        assert_eq!(t.iter().count(), 0);
    }

    #[test]
    fn server_rpcs__same_id_from_two_clients_found_and_removed_in_any_order() {
        let hasher = || ahash::RandomState::with_seeds(1, 2, 3, 4);
        let a: SocketAddr = "10.0.0.1:9".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:9".parse().unwrap();
        let c: SocketAddr = "10.0.0.3:9".parse().unwrap();
        for order in [[0, 1, 2], [2, 1, 0], [1, 0, 2], [1, 2, 0]] {
            let mut t = RpcTable::default();
            let mut idx = ServerRpcs::new(hasher());
            let start = |t: &mut RpcTable, peer, id| {
                t.start(
                    id,
                    id,
                    peer,
                    PeerRef::NONE,
                    1,
                    RpcState::Incoming,
                    0,
                    Instant::ZERO,
                )
            };
            let keys = [
                start(&mut t, a, 7),
                start(&mut t, b, 7),
                start(&mut t, c, 7),
            ];
            let other = start(&mut t, a, 9);
            for k in keys.into_iter().chain([other]) {
                idx.insert(&mut t, k);
            }
            assert_eq!(idx.ids(), 2);
            for (k, addr) in keys.iter().zip([a, b, c]) {
                assert_eq!(idx.get(&t, &addr, 7), Some(*k));
            }
            assert_eq!(idx.get(&t, &b, 9), None, "id 9 is only a's");
            let addrs = [a, b, c];
            for (n, &i) in order.iter().enumerate() {
                let rpc = t.remove(keys[i]);
                idx.remove(&mut t, keys[i], &rpc);
                assert_eq!(idx.get(&t, &addrs[i], 7), None, "order {order:?}");
                for &j in &order[n + 1..] {
                    assert_eq!(idx.get(&t, &addrs[j], 7), Some(keys[j]), "order {order:?}");
                }
            }
            assert_eq!(idx.ids(), 1, "only id 9 is left");
            assert_eq!(idx.get(&t, &a, 9), Some(other));
        }
    }
}
