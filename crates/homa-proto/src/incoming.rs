//! The receive path: what the endpoint does with each packet type
//! (`docs/protocol.md`: RPC ids, receive memory, timers, at-most-once),
//! and admission of new
//! incoming messages under the endpoint's limits. Packets that do not fit the
//! state they arrive in are counted in [`Stats`](crate::Stats) and dropped.

use core::net::SocketAddr;

use bytes::Bytes;

use crate::amo::{started_after, Seen};
use crate::endpoint::Endpoint;
use crate::memory::{Owner, RxMemory, WaitKey};
use crate::peer::PeerRef;
use crate::rpc::msgin::{AddOutcome, ChainParts, MsgIn, Piece, UNKNOWN_LEVEL};
use crate::rpc::{local_id, Probe, RpcRef, RpcState};
use crate::timer::unsched_level;
use crate::wire::{
    AckEntry, AckHeader, Body, CutoffsHeader, DataHeader, GrantHeader, PacketType, Repr,
    ResendHeader, RpcUnknownHeader, UnknownStatus,
};
use crate::{Event, Instant, RpcError, DELIVERED_OVERHEAD};

/// A message being delivered: a single packet's payload (copied once, into
/// the delivered `Bytes`) or a reassembled buffer (handed over).
enum Payload<'a> {
    Copy(&'a [u8]),
    Owned(Vec<u8>),
    /// Pieces kept in the buffers they arrived in (a chained message).
    Chain(ChainParts),
    /// Shared storage (zeros for a message received without storage).
    Shared(Bytes),
}

impl Payload<'_> {
    fn len(&self) -> usize {
        match self {
            Payload::Copy(m) => m.len(),
            Payload::Owned(m) => m.len(),
            Payload::Chain(c) => c.pieces.iter().map(Piece::len).sum(),
            Payload::Shared(m) => m.len(),
        }
    }
}

/// What became of a DATA packet added to a message being reassembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Added {
    /// Not added (duplicate, out of range, beyond the grant, too many gaps).
    Dropped,
    /// Added; the message is not complete.
    Progress,
    /// Added, and the message was delivered.
    Complete,
}

/// A run of DATA packets of one message in one GRO batch, handled after
/// its first packet without looking the RPC up again: the packets' common
/// header fields, the RPC, and whether its grant state awaits an update.
#[derive(Debug, Clone, Copy)]
struct Run {
    key: usize,
    seq: u64,
    sport: u16,
    dport: u16,
    sender_id: u64,
    incarnation: u64,
    message_length: u32,
    /// The last piggybacked ack applied (applying it again changes nothing).
    ack: AckEntry,
    /// Bytes were added since the RPC's last grant update.
    dirty: bool,
    /// Bytes were added since the RPC's silence mark was last taken: the
    /// run takes it when it ends (see [`Endpoint::add_to_message`]).
    mark_due: bool,
}

impl Run {
    /// True if `repr` (DATA `h`) continues the run.
    #[inline]
    fn matches(&self, repr: &Repr, h: &DataHeader) -> bool {
        repr.sender_id == self.sender_id
            && repr.sport == self.sport
            && repr.dport == self.dport
            && repr.incarnation == self.incarnation
            && h.message_length == self.message_length
    }
}

/// A packet that may answer a round-trip probe.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Data { offset: u32, retransmit: bool },
    Grant,
    Busy,
}

/// Parked messages one admission pass may queue again on behalf of an
/// owner other than the one that parked them (see
/// [`Endpoint::admit_waiting`]).
const ADMISSION_RELAYS: u32 = 16;

impl Endpoint {
    /// DATA: find or create the RPC, add the bytes, deliver complete
    /// messages, then apply the piggybacked ack. `inc` is the packet's
    /// incarnation field.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn handle_data(
        &mut self,
        now: Instant,
        src: SocketAddr,
        port: u16,
        server: bool,
        local: u64,
        inc: u64,
        h: &DataHeader,
        payload: &[u8],
        level: u8,
    ) {
        if h.message_length == 0 || h.message_length > self.config.max_message_length {
            self.stats.bad_data += 1;
            return;
        }
        let key = if local & 1 == 0 {
            match self.find_client_rpc(src, port, local, inc) {
                Some(k) => k,
                None => return,
            }
        } else {
            // One lookup tells a known server RPC from a new request.
            match self.server_rpcs.get(&self.rpcs, &src, local) {
                Some(k) if self.rpcs[k].port == port => k,
                Some(_) => {
                    // Same client id on another of our ports: not this socket's.
                    self.stats.unknown_rpc += 1;
                    return;
                }
                None => match self.admit_server_rpc(now, src, port, server, local, inc, h) {
                    Some(k) => k,
                    None => return,
                },
            }
        };
        self.accept_data(now, key, h, payload, level);
        if h.cutoff_version != self.prio.version {
            self.send_cutoffs(now, src, port, local);
        }
        if h.ack.client_id != 0 {
            self.apply_ack(now, src, h.ack);
        }
    }

    /// The packets of a GRO batch, cut every `segment` bytes: see
    /// [`Endpoint::handle_datagram_batch_at_level`]. After a DATA packet
    /// whose message is being reassembled, the packets that follow with
    /// the same header fields (source, ports, RPC, incarnation, message
    /// length) form a run: each is added to the message as
    /// [`Endpoint::handle_data`] would, without its lookups and checks
    /// (their outcome cannot differ from the first packet's), and the
    /// grant scheduler learns the run's progress once, when it ends (no
    /// grant pass runs in between). A piggybacked ack that repeats the
    /// previous one is not applied again (it would change nothing).
    pub(crate) fn handle_batch(
        &mut self,
        now: Instant,
        src: SocketAddr,
        level: u8,
        batch: &[u8],
        segment: usize,
    ) {
        let mut run: Option<Run> = None;
        for datagram in batch.chunks(segment) {
            let parsed = Repr::parse_with_payload(datagram);
            if let (Some(r), Ok((repr, payload))) = (run.as_mut(), &parsed) {
                if let Body::Data(h) = &repr.body {
                    if r.matches(repr, h) {
                        if !self.continue_run(now, src, r, h, payload, level, datagram.len()) {
                            run = None;
                        }
                        continue;
                    }
                }
            }
            if let Some(r) = run.take() {
                self.end_run(r);
            }
            match parsed {
                Ok((repr, payload)) => {
                    self.dispatch(now, src, level, &repr, payload, datagram.len());
                    run = self.start_run(src, &repr);
                }
                Err(_) => self.stats.malformed += 1,
            }
        }
        if let Some(r) = run {
            self.end_run(r);
        }
    }

    /// A run starting after `repr`, just handled, if it was DATA of a
    /// message being reassembled that the packets after it may continue.
    fn start_run(&self, src: SocketAddr, repr: &Repr) -> Option<Run> {
        let Body::Data(h) = &repr.body else {
            return None;
        };
        if repr.sport != src.port() || !self.sockets.contains_key(&repr.dport) {
            return None;
        }
        let local = local_id(repr.sender_id);
        let key = if local & 1 == 0 {
            let key = *self.client_rpcs.get(&local)?;
            let rpc = &self.rpcs[key];
            (rpc.peer == src && rpc.echo == repr.incarnation).then_some(key)?
        } else {
            self.server_rpcs.get(&self.rpcs, &src, local)?
        };
        let rpc = &self.rpcs[key];
        let reassembling = rpc.port == repr.dport
            && rpc.state == RpcState::Incoming
            && rpc.waiting.is_none()
            && rpc
                .msgin
                .as_ref()
                .is_some_and(|m| m.length() == h.message_length);
        reassembling.then_some(Run {
            key,
            seq: rpc.seq,
            sport: repr.sport,
            dport: repr.dport,
            sender_id: repr.sender_id,
            incarnation: repr.incarnation,
            message_length: h.message_length,
            ack: h.ack,
            dirty: false,
            mark_due: false,
        })
    }

    /// Adds the next DATA packet of run `r` (see [`Endpoint::handle_batch`]);
    /// false if the run ended (its message was delivered).
    #[allow(clippy::too_many_arguments)]
    fn continue_run(
        &mut self,
        now: Instant,
        src: SocketAddr,
        r: &mut Run,
        h: &DataHeader,
        payload: &[u8],
        level: u8,
        len: usize,
    ) -> bool {
        self.stats.received.add(PacketType::Data, len);
        debug_assert!(self.live(r.key, r.seq), "a run ends with its RPC");
        // What `accept_data` does for a message being reassembled.
        let answer = Answer::Data {
            offset: h.offset,
            retransmit: h.retransmit,
        };
        self.rtt_sample(now, r.key, answer);
        let rpc = &mut self.rpcs[r.key];
        rpc.heard(now);
        rpc.busy = false;
        if rpc.starving {
            rpc.starving = false;
            self.grants.request_pass();
        }
        let going = match self.add_to_message(now, r.key, h, payload, level, Some(&mut r.mark_due))
        {
            Added::Dropped => true,
            Added::Progress => {
                r.dirty = true;
                true
            }
            Added::Complete => {
                r.dirty = false;
                false
            }
        };
        // What `handle_data` does after it.
        if h.cutoff_version != self.prio.version {
            self.send_cutoffs(now, src, r.dport, local_id(r.sender_id));
        }
        if h.ack.client_id != 0 && h.ack != r.ack {
            r.ack = h.ack;
            self.apply_ack(now, src, h.ack);
        }
        going
    }

    /// The run is over: the RPC's silence mark is taken and the grant
    /// scheduler learns its progress.
    fn end_run(&mut self, r: Run) {
        if !self.live(r.key, r.seq) {
            return;
        }
        if r.mark_due {
            self.mark_quiet(r.key, None);
        }
        if r.dirty {
            self.grant_update(r.key);
        }
    }

    /// Tells a sender whose DATA carried a stale cutoff version our current
    /// cutoffs, at most once per `cutoffs_min_interval`.
    fn send_cutoffs(&mut self, now: Instant, src: SocketAddr, port: u16, local: u64) {
        let min = self.config.cutoffs_min_interval;
        let Some(peer) = self.peers.get_mut(&src) else {
            return;
        };
        if peer
            .cutoffs_sent
            .is_some_and(|t| now.saturating_duration_since(t) < min)
        {
            return;
        }
        peer.cutoffs_sent = Some(now);
        let body = Body::Cutoffs(CutoffsHeader {
            cutoffs: self.prio.cutoffs,
            version: self.prio.version,
        });
        self.stats.cutoffs_sent += 1;
        self.send_control(port, src, local, body);
    }

    /// The client RPC a packet from the server side of an RPC concerns:
    /// unknown ids (finished, aborted) are counted and `None`, and so are
    /// packets from another incarnation of the server than the one our
    /// request is bound to (they are not about our RPC: a ghost must not
    /// keep it alive).
    pub(crate) fn find_client_rpc(
        &mut self,
        src: SocketAddr,
        port: u16,
        local: u64,
        inc: u64,
    ) -> Option<usize> {
        let Some(key) = self.find_rpc(src, port, local) else {
            self.stats.unknown_rpc += 1;
            return None;
        };
        if self.rpcs[key].echo != inc {
            self.stats.wrong_incarnation += 1;
            return None;
        }
        Some(key)
    }

    /// Answers a packet for an RPC we have no state for with RPC_UNKNOWN
    /// saying why.
    pub(crate) fn refuse(&mut self, port: u16, src: SocketAddr, local: u64, status: UnknownStatus) {
        self.send_control(
            port,
            src,
            local,
            Body::RpcUnknown(RpcUnknownHeader { status }),
        );
    }

    /// Refuses a request not bound to the incarnation we serve its client
    /// as: RPC_UNKNOWN with that incarnation's uptime (the client decides
    /// whether it may have run).
    fn refuse_unbound(&mut self, now: Instant, port: u16, src: SocketAddr, local: u64) {
        self.stats.refused_incarnation += 1;
        let (_, since) = self.served(src);
        let up = self.refusal_uptime(now, since);
        self.refuse(port, src, local, UnknownStatus::Uptime(up));
    }

    /// Creates the server RPC for a request's first packet (the caller
    /// checked that no RPC has this id), unless a rule of the `amo` module
    /// or a limit forbids it. Requests that cannot be taken now are answered:
    /// RPC_UNKNOWN when they never can (not a server; not bound to our
    /// incarnation, so the client decides), BUSY when a limit holds them
    /// back (the client waits and retries); stale copies of finished
    /// requests are dropped.
    #[allow(clippy::too_many_arguments)]
    fn admit_server_rpc(
        &mut self,
        now: Instant,
        src: SocketAddr,
        port: u16,
        server: bool,
        local: u64,
        inc: u64,
        h: &DataHeader,
    ) -> Option<usize> {
        if !server {
            self.stats.no_socket += 1;
            self.stats.refused_not_server += 1;
            self.refuse(port, src, local, UnknownStatus::NotServer);
            return None;
        }
        if inc != self.served(src).0 {
            // Not bound to us: it may be a copy of a request an earlier
            // incarnation ran. Never run it; the client decides.
            self.refuse_unbound(now, port, src, local);
            return None;
        }
        let oldest = h.oldest_live_id(local ^ 1).map(local_id);
        let (max_rpcs, max_done) = (self.config.max_rpcs_per_peer, self.config.done_ids_per_peer);
        // The endpoint-wide bound counts as the peer's: `admit` refuses.
        let full = self.rpcs.len() - self.client_rpcs.len() >= self.config.max_server_rpcs;
        let max_rpcs = if full { 0 } else { max_rpcs };
        let (mut peer_ref, mut refusal) = match self.peers.find_mut(&src) {
            // A known client (the common case): one lookup for all checks.
            Some((r, peer)) => (r, admit(peer, local, oldest, max_rpcs, max_done, now)),
            None => {
                if self.request_seen(src, local) != Seen::New {
                    (PeerRef::NONE, Some(Refusal::Stale))
                } else if full {
                    // No peer state for a request that cannot be taken.
                    (PeerRef::NONE, Some(Refusal::RpcLimit))
                } else if !self.make_room_for_peer(now, src) {
                    (PeerRef::NONE, Some(Refusal::PeerLimit))
                } else {
                    let own = self.incarnation;
                    let (r, peer) = self.peer_entry_ref(src, now);
                    if !peer.done.serves(inc, own) {
                        // Making room for the client collected peers and
                        // pushed its own kept record (and the incarnation
                        // it was served as) out of the table of collected
                        // peers: the request was checked against a record
                        // that is gone. Refuse it as the record now says.
                        self.refuse_unbound(now, port, src, local);
                        return None;
                    }
                    (r, admit(peer, local, oldest, max_rpcs, max_done, now))
                }
            }
        };
        if refusal == Some(Refusal::Renew) {
            // The client starts one more run than its record has room for:
            // we become a new incarnation for it rather than forget a run.
            // This request (bound to the value it was checked against) is
            // the first of the renewed record.
            self.renew_record(src, now);
            (peer_ref, refusal) = match self.peers.find_mut(&src) {
                Some((r, peer)) => (r, admit(peer, local, oldest, max_rpcs, max_done, now)),
                None => (PeerRef::NONE, Some(Refusal::PeerLimit)),
            };
        }
        if let Some(r) = refusal {
            match r {
                Refusal::Renew => self.stats.done_ids_full += 1,
                Refusal::Stale => {
                    // A copy of a request that ran or that the client
                    // finished: drop it.
                    self.stats.stale_requests += 1;
                    return None;
                }
                Refusal::PeerLimit => self.stats.peer_limit += 1,
                Refusal::RpcLimit => self.stats.rpc_limit += 1,
                Refusal::DoneFull => self.stats.done_ids_full += 1,
            }
            // Held back by a limit: the client is told we are alive, and
            // retries when its RESEND gets RPC_UNKNOWN.
            self.send_control(port, src, local, Body::Busy);
            return None;
        }
        let seq = self.next_seq();
        // The value the request echoed: ours, or (after a renewal) the one
        // its client was bound to.
        let echo = inc;
        let key = self.rpcs.start(
            local,
            seq,
            src,
            peer_ref,
            port,
            RpcState::Incoming,
            echo,
            now,
        );
        self.server_rpcs.insert(&mut self.rpcs, key);
        self.arm_tick(now);
        Some(key)
    }

    /// Receive-buffer bytes still available to a message from `peer` for
    /// socket `port`, under the endpoint-wide, per-peer and per-socket
    /// budgets.
    pub(crate) fn rx_available(&self, peer: SocketAddr, port: u16) -> u64 {
        let used = self.peers.get(&peer).map_or(0, |p| p.rx_bytes);
        self.memory.available(used, self.socket_rx_room(port))
    }

    /// [`Endpoint::rx_available`] for the peer and socket of RPC `key`
    /// (its peer found by handle).
    fn rx_available_rpc(&self, key: usize) -> u64 {
        let rpc = &self.rpcs[key];
        let used = self
            .peers
            .get_by(rpc.peer_ref, &rpc.peer)
            .map_or(0, |p| p.rx_bytes);
        self.memory.available(used, self.socket_rx_room(rpc.port))
    }

    /// Receive memory still available under socket `port`'s budget.
    fn socket_rx_room(&self, port: u16) -> u64 {
        self.sockets
            .get(&port)
            .map_or(0, |s| self.memory.socket_room(s.rx_used()))
    }

    /// Reserves `len` receive-buffer bytes, if the budgets allow.
    pub(crate) fn charge_rx(&mut self, peer: SocketAddr, port: u16, len: u32) -> bool {
        if len as u64 > self.rx_available(peer, port) {
            return false;
        }
        self.charge_rx_checked(peer, port, len)
    }

    /// [`Endpoint::charge_rx`] for a caller that just checked
    /// [`Endpoint::rx_available`]. False if the peer has no state.
    fn charge_rx_checked(&mut self, peer: SocketAddr, port: u16, len: u32) -> bool {
        let Some(p) = self.peers.get_mut(&peer) else {
            return false;
        };
        let socket = self.sockets.get_mut(&port).map(|s| &mut s.assembling);
        self.memory.charge(&mut p.rx_bytes, socket, len as u64);
        true
    }

    /// Returns receive-buffer space reserved by [`Endpoint::charge_rx`], and
    /// lets messages that were waiting for memory be granted again.
    pub(crate) fn uncharge_rx(&mut self, peer: SocketAddr, port: u16, len: u32) {
        let peer_used = self.peers.get_mut(&peer).map(|p| &mut p.rx_bytes);
        let socket = self.sockets.get_mut(&port).map(|s| &mut s.assembling);
        if self.memory.uncharge(peer_used, socket, len as u64) {
            self.memory.freed_by(peer, port);
            self.grants.request_pass();
        }
    }

    /// Memory may have freed (a buffer was returned, or the application
    /// dropped messages): the next grant pass reconsiders messages parked
    /// for memory and admits waiting ones.
    pub(crate) fn memory_freed(&mut self) {
        self.memory.unpark_sockets();
        if self.memory.has_waiters() {
            self.grants.request_pass();
        }
    }

    /// Gives receive buffers to waiting messages, shortest first, and asks
    /// each one's sender to retransmit what it already sent (the packets
    /// were dropped while the message waited). A waiting message is admitted
    /// only if it is shorter than every admitted message that is blocked for
    /// memory (SRPT: those get the memory first).
    ///
    /// This runs in every grant pass while messages wait, so it looks only
    /// at messages that may fit: one over its peer's or its socket's budget
    /// is parked with that owner (`memory` module) until the owner frees
    /// memory, and the pass stops at the first message the endpoint's
    /// budget cannot fit (every waiting message needs at least
    /// `min(length, GRANT_SLACK) + DELIVERED_OVERHEAD` bytes, a bound that
    /// only grows along the shortest-first queue, and SRPT gives the
    /// memory to the shorter message first). A pass so examines the
    /// messages unparked since the last one, the ones it admits, and one
    /// more, however many wait.
    pub(crate) fn admit_waiting(&mut self) {
        let now = self.now;
        let blocked_min = self
            .memory
            .blocked()
            .iter()
            .filter_map(|r| self.live(r.key, r.seq).then_some(r.key))
            .filter_map(|k| self.rpcs[k].msgin.as_ref().map(|m| m.bytes_remaining()))
            .min()
            .unwrap_or(u32::MAX);
        let mut relays = ADMISSION_RELAYS;
        let mut next = self.memory.next_waiting(None);
        while let Some(entry) = next {
            next = self.memory.next_waiting(Some(entry));
            self.stats.admission_checks += 1;
            let (len, key) = (entry.length, entry.rpc.key);
            if len >= blocked_min {
                break;
            }
            let least = RxMemory::admission_floor(len);
            if self.memory.global_room() < least {
                break;
            }
            let rpc = &self.rpcs[key];
            let Some((_, incoming)) = rpc.waiting else {
                // (Not reached: a message leaves the queue when it stops
                // waiting.)
                let _ = self.memory.unwait(&entry);
                continue;
            };
            let (peer, port, id) = (rpc.peer, rpc.port, rpc.id);
            let need = MsgIn::capacity_for(len, incoming.min(len)) as u64 + DELIVERED_OVERHEAD;
            let peer_used = self.peers.get(&peer).map_or(0, |p| p.rx_bytes);
            let over = if need > self.memory.peer_room(peer_used) {
                Some((Owner::Peer(peer), Owner::Port(port)))
            } else if need > self.socket_rx_room(port) {
                Some((Owner::Port(port), Owner::Peer(peer)))
            } else {
                None
            };
            if let Some((owner, other)) = over {
                // It was unparked by the other owner, maybe: that owner's
                // next message may fit (a few per pass, so that a chain
                // through many owners costs no pass more than that).
                // (No pass is asked for it: two messages each over the
                // other's owner would relay each other in every pass.)
                self.memory.park(entry, owner);
                if relays > 0 && self.memory.unpark_first(other) {
                    relays -= 1;
                }
                continue;
            }
            if need > self.memory.global_room() {
                break;
            }
            let msgin = MsgIn::with_reservations(
                len,
                incoming,
                now,
                &self.memory.contiguous,
                !self.config.discard_payload,
            );
            let charged = self.charge_rx_checked(peer, port, rx_charge(&msgin));
            debug_assert!(charged, "checked above");
            // An owner unparks one message per free: if it freed room for
            // more, its next parked message may fit too (the next pass
            // sees it; parked again if not).
            if self.memory.unwait(&entry) {
                self.grants.request_pass();
            }
            let rpc = &mut self.rpcs[key];
            rpc.waiting = None;
            rpc.msgin = Some(Box::new(msgin));
            rpc.heard(now);
            self.mark_quiet(key, None);
            self.grant_refresh(key);
            self.stats.messages_admitted += 1;
            tracing::debug!(rpc = id, %peer, length = len, "admitted: message got its receive buffer");
            let body = Body::Resend(ResendHeader {
                offset: 0,
                length: ResendHeader::ALL,
                priority: Some(self.config.high_priority()),
            });
            self.send_control(port, peer, id, body);
        }
    }

    /// Completes the RPC's pending round-trip probe if `answer` (what just
    /// arrived) is causally after it.
    #[inline(always)]
    fn rtt_sample(&mut self, now: Instant, key: usize, answer: Answer) {
        let rpc = &mut self.rpcs[key];
        let sent = match (rpc.rtt_probe, answer) {
            (Some(Probe::FirstData(t)), Answer::Grant) => t,
            (Some(Probe::FirstData(_)), Answer::Data { .. }) => {
                // DATA answering our first packet is the peer's own message
                // (a response): it waited for the application, not only a
                // round trip. (A server that took 1 ms per request made its
                // clients send every message up to 1 MiB unscheduled.)
                rpc.rtt_probe = None;
                return;
            }
            (Some(Probe::Grant(t, from)), Answer::Data { offset, .. }) if offset >= from => t,
            (
                Some(Probe::Resend(t)),
                Answer::Data {
                    retransmit: true, ..
                }
                | Answer::Busy,
            ) => t,
            _ => return,
        };
        rpc.rtt_probe = None;
        let sample = now.saturating_duration_since(sent);
        if let Some(p) = self.peers.get_mut_by(rpc.peer_ref, &rpc.peer) {
            p.rtt_sample(sample, now);
        }
    }

    fn accept_data(&mut self, now: Instant, key: usize, h: &DataHeader, payload: &[u8], level: u8) {
        let rpc = &self.rpcs[key];
        let acceptable = matches!(
            (rpc.is_client(), rpc.state),
            (_, RpcState::Incoming) | (true, RpcState::Outgoing)
        );
        if !acceptable {
            // Server RPC past its request: a late duplicate.
            self.stats.wrong_state += 1;
            return;
        }
        if rpc.waiting.is_some() {
            // Still no memory for this message: drop, but the sender is alive.
            self.rpcs[key].alive = now;
            self.stats.no_buffer_space += 1;
            return;
        }
        let mut single = false;
        if rpc.msgin.is_none() {
            let (peer, port) = (rpc.peer, rpc.port);
            // Memory follows grants: the sender's unscheduled claim is capped,
            // and only the buffer the grant needs is reserved.
            let incoming = h.incoming.min(self.config.max_unscheduled);
            let need = MsgIn::capacity_for(h.message_length, incoming.min(h.message_length));
            if need as u64 + DELIVERED_OVERHEAD > self.rx_available_rpc(key) {
                // No memory: the message waits, in SRPT order, for a buffer;
                // its packets are dropped until then.
                self.stats.no_buffer_space += 1;
                self.stats.messages_waited += 1;
                tracing::debug!(
                    rpc = rpc.id,
                    %peer,
                    length = h.message_length,
                    "no receive memory: message waits for admission"
                );
                let rpc = &mut self.rpcs[key];
                rpc.waiting = Some((h.message_length, incoming));
                rpc.heard(now);
                let rpc = RpcRef { seq: rpc.seq, key };
                self.memory.wait(WaitKey {
                    length: h.message_length,
                    rpc,
                    peer,
                    port,
                });
                self.arm_tick(now);
                return;
            }
            if h.offset == 0
                && payload.len() == h.message_length as usize
                && incoming >= h.message_length
            {
                // The whole message in one packet, within what the sender
                // may send unscheduled (every short RPC): no reassembly
                // buffer to charge and free, nothing for the grant
                // scheduler. What follows is what the general path does
                // for such a packet.
                single = true;
            } else {
                let msgin = if self.rx_owner.is_some() && !self.config.discard_payload {
                    // The driver hands its receive buffers over: keep the
                    // message in them.
                    MsgIn::chained(h.message_length, incoming, now)
                } else {
                    MsgIn::with_reservations(
                        h.message_length,
                        incoming,
                        now,
                        &self.memory.contiguous,
                        !self.config.discard_payload,
                    )
                };
                debug_assert_eq!(msgin.buffer_len() as usize, need);
                let charged = self.charge_rx_checked(peer, port, rx_charge(&msgin));
                debug_assert!(charged, "every RPC's peer has state");
                self.rpcs[key].msgin = Some(Box::new(msgin));
                // The message joins the grant scheduler now, whatever becomes
                // of this first packet.
                self.grant_update(key);
            }
        }
        let answer = Answer::Data {
            offset: h.offset,
            retransmit: h.retransmit,
        };
        self.rtt_sample(now, key, answer);
        let rpc = &mut self.rpcs[key];
        rpc.heard(now);
        rpc.busy = false;
        if rpc.starving {
            rpc.starving = false;
            self.grants.request_pass();
        }
        let rpc = &mut self.rpcs[key];
        if rpc.state == RpcState::Outgoing {
            // The first response packet: the server has our request.
            rpc.state = RpcState::Incoming;
            let port = rpc.port;
            if let Some(m) = rpc.msgout.take() {
                self.uncharge_tx(port, m.length());
            }
            self.update_xmit(key);
        }
        if single {
            self.deliver(key, Payload::Copy(payload), 0);
            return;
        }
        let msgin = self.rpcs[key].msgin.as_ref().expect("charged above");
        if msgin.length() != h.message_length {
            self.stats.bad_data += 1;
            return;
        }
        self.add_to_message(now, key, h, payload, level, None);
    }

    /// Adds a DATA packet's bytes to RPC `key`'s message being reassembled
    /// (of `h.message_length` bytes), then delivers it if complete, or
    /// updates its silence mark and its place in the grant scheduler.
    /// Returns what became of the packet.
    ///
    /// In a run of packets (`run` is the run's `mark_due`), the caller does
    /// both once when the run ends: the mark is then what the run's last
    /// accepted packet would have taken, since only the run's own packets
    /// were recorded on the link in between (a dropped packet that follows
    /// takes the mark first, without its own link time). Taking the mark
    /// per packet was 6% of the instructions of a 58 kB round trip at MTU
    /// 1500.
    fn add_to_message(
        &mut self,
        now: Instant,
        key: usize,
        h: &DataHeader,
        payload: &[u8],
        level: u8,
        run: Option<&mut bool>,
    ) -> Added {
        let max_gaps = self.config.max_gaps;
        let rpc = &mut self.rpcs[key];
        let msgin = rpc.msgin.as_mut().expect("a message being reassembled");
        let gaps_before = msgin.gaps().len();
        // The link time this packet took, at the level it travelled (as
        // reported, else the level it was sent at as far as we know).
        let unsched_end = msgin.unsched_end;
        let at = if level != UNKNOWN_LEVEL {
            level
        } else if h.offset < unsched_end {
            unsched_level(
                &self.prio.cutoffs,
                h.message_length,
                self.config.num_priorities,
            )
        } else {
            rpc.grant_level
        };
        let wire = self
            .config
            .wire_bytes(DataHeader::LEN + payload.len(), rpc.peer.is_ipv6());
        let host = self.host.as_deref().map(|j| &j.host);
        self.rx_link.record(at, wire, self.config.link_mbps, host);
        let owner = self.rx_owner.as_ref();
        let dropped = match msgin.add_from(h.offset, payload, owner, max_gaps, now, level) {
            AddOutcome::Accepted(_) => None,
            AddOutcome::Duplicate => Some(&mut self.stats.duplicate_data),
            AddOutcome::TooManyGaps => Some(&mut self.stats.too_many_gaps),
            AddOutcome::OutOfRange => Some(&mut self.stats.bad_data),
            AddOutcome::BeyondGrant => Some(&mut self.stats.beyond_grant),
        };
        if let Some(counter) = dropped {
            *counter += 1;
            if let Some(due) = run.filter(|due| **due) {
                *due = false;
                self.mark_quiet(key, Some((at, wire)));
            }
            return Added::Dropped;
        }
        let opened_gap = msgin.gaps().len() > gaps_before;
        let complete = msgin.is_complete();
        let in_run = run.is_some();
        match run {
            Some(due) if !complete => *due = true,
            _ => self.mark_quiet(key, None),
        }
        if complete {
            self.grant_update(key);
            self.message_complete(key);
            return Added::Complete;
        }
        if !in_run {
            self.grant_update(key);
        }
        if opened_gap {
            let peer = self.rpcs[key].peer;
            self.arm_gap_check(now, peer);
        }
        Added::Progress
    }

    /// Takes RPC `key`'s silence mark: the level the bytes it still waits
    /// for travel at (unscheduled ones at ours for the message, granted ones
    /// at the lowest we granted) and the link time taken so far at that
    /// level or above, less that of `except`, a packet just recorded (its
    /// level and wire bytes) that the mark must not count.
    fn mark_quiet(&mut self, key: usize, except: Option<(u8, u64)>) {
        let rpc = &mut self.rpcs[key];
        let Some(msgin) = rpc.msgin.as_ref() else {
            return;
        };
        let waits_at = if msgin.recv_end() < msgin.unsched_end {
            unsched_level(
                &self.prio.cutoffs,
                msgin.length(),
                self.config.num_priorities,
            )
        } else if msgin.min_grant_level != UNKNOWN_LEVEL {
            msgin.min_grant_level
        } else {
            rpc.grant_level
        };
        let host = self.host.as_deref().map(|j| &j.host);
        let mut taken = self.rx_link.at_or_above(waits_at, host);
        if let Some((at, wire)) = except {
            taken =
                taken.wrapping_sub(
                    self.rx_link
                        .counted(at, wire, self.config.link_mbps, waits_at),
                );
        }
        rpc.quiet_mark = (waits_at, taken);
    }

    /// A whole message arrived: deliver it.
    fn message_complete(&mut self, key: usize) {
        self.grant_remove(key);
        let msgin = self.rpcs[key].msgin.take().expect("complete message");
        let charged = rx_charge(&msgin);
        let message = match msgin.shared_zeros() {
            Some(zeros) => Payload::Shared(zeros),
            None if msgin.is_chained() => Payload::Chain(msgin.into_chain()),
            None => Payload::Owned(msgin.into_vec()),
        };
        self.deliver(key, message, charged);
    }

    /// Hands a complete message to the application and returns the
    /// `charged` bytes of its reassembly buffer to the receive budget.
    #[inline(always)]
    fn deliver(&mut self, key: usize, message: Payload<'_>, charged: u32) {
        let rpc = &self.rpcs[key];
        let (peer, peer_ref, port) = (rpc.peer, rpc.peer_ref, rpc.port);
        let length = message.len() as u32;
        self.stats.rx_sizes.add(length);
        if self.prio.observe(length, &self.config) {
            self.stats.cutoffs_updates += 1;
        }
        // Count the bytes as held by the application before returning the
        // buffer, so the room is never handed to a waiting message twice.
        let mut more = Vec::new();
        let data = match (self.sockets.get(&port), message) {
            (sock, Payload::Chain(parts)) => {
                let pieces = match sock {
                    Some(sock) => sock.deliver_chain(parts),
                    None => parts.into_pieces(),
                };
                let mut pieces = pieces.into_iter();
                let first = pieces.next().unwrap_or_default();
                more.extend(pieces);
                first
            }
            (Some(sock), Payload::Copy(m)) => sock.deliver_copy(m),
            (Some(sock), Payload::Owned(m)) => sock.deliver(m),
            (None, Payload::Copy(m)) => Bytes::copy_from_slice(m),
            (None, Payload::Owned(m)) => Bytes::from(m),
            (Some(sock), Payload::Shared(m)) => sock.deliver_shared(m),
            (None, Payload::Shared(m)) => m,
        };
        if charged > 0 {
            self.uncharge_rx(peer, port, charged);
        }
        self.stats.message_bytes_delivered += length as u64;
        let rpc = &mut self.rpcs[key];
        if rpc.is_client() {
            let (port, id) = (rpc.port, rpc.id);
            self.events.push_back(Event::Response {
                port,
                id,
                data,
                more,
            });
            self.stats.responses_delivered += 1;
            self.free_rpc(key);
            self.queue_ack(port, peer, peer_ref, id);
        } else {
            rpc.state = RpcState::InService;
            self.events.push_back(Event::Request {
                port: rpc.port,
                peer,
                id: rpc.id,
                data,
                more,
            });
            self.stats.requests_delivered += 1;
        }
    }

    /// Records that the server may free client RPC `id`: piggybacked on a
    /// later DATA packet, or sent at once in an ACK when five are waiting.
    fn queue_ack(&mut self, port: u16, server: SocketAddr, server_ref: PeerRef, id: u64) {
        let Some(peer) = self.peers.get_mut_by(server_ref, &server) else {
            return;
        };
        if peer.acks_pending(port) >= crate::wire::MAX_ACKS_PER_PKT {
            let acks = peer.take_acks(port);
            self.send_control(port, server, id, Body::Ack(AckHeader::new(&acks)));
        } else {
            peer.pending_acks.push((port, id));
        }
    }

    /// GRANT: raise the grant and the scheduled priority.
    pub(crate) fn handle_grant(
        &mut self,
        now: Instant,
        src: SocketAddr,
        port: u16,
        local: u64,
        inc: u64,
        g: &GrantHeader,
    ) {
        let key = if local & 1 == 0 {
            self.find_client_rpc(src, port, local, inc)
        } else {
            let k = self.find_rpc(src, port, local);
            if k.is_none() {
                self.stats.unknown_rpc += 1;
            }
            k
        };
        let Some(key) = key else {
            return;
        };
        self.rtt_sample(now, key, Answer::Grant);
        let max_prio = self.config.num_priorities - 1;
        let rpc = &mut self.rpcs[key];
        rpc.heard(now);
        rpc.busy = false;
        rpc.peer_knows = true;
        let (RpcState::Outgoing, Some(m)) = (rpc.state, rpc.msgout.as_mut()) else {
            self.stats.wrong_state += 1;
            return;
        };
        if !m.has_sendable() {
            m.wait_since = now;
        }
        m.raise_grant(g.offset);
        m.sched_priority = g.priority.min(max_prio);
        self.update_xmit(key);
    }

    /// BUSY: the peer is alive but makes no progress; restart the silence
    /// clock (our probes keep backing off).
    pub(crate) fn handle_busy(
        &mut self,
        now: Instant,
        src: SocketAddr,
        port: u16,
        local: u64,
        inc: u64,
    ) {
        let key = if local & 1 == 0 {
            self.find_client_rpc(src, port, local, inc)
        } else {
            let k = self.find_rpc(src, port, local);
            if k.is_none() {
                self.stats.unknown_rpc += 1;
            }
            k
        };
        if let Some(key) = key {
            self.rtt_sample(now, key, Answer::Busy);
            let rpc = &mut self.rpcs[key];
            rpc.heard(now);
            rpc.busy = true;
            rpc.peer_knows = true;
            if rpc.is_client() {
                let (peer_ref, peer) = (rpc.peer_ref, rpc.peer);
                if let Some(p) = self.peers.get_mut_by(peer_ref, &peer) {
                    p.server.note_busy();
                }
            }
        }
    }

    /// RESEND: retransmit the range, treat a range beyond our grant as a lost
    /// GRANT, answer BUSY when we have nothing to send (a zero-length RESEND
    /// is a probe: always BUSY), and RPC_UNKNOWN with the reason when we do
    /// not know the RPC. A client whose request is complete ignores RESENDs
    /// for it: answering BUSY would keep a server RPC that no longer matches
    /// ours alive.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn handle_resend(
        &mut self,
        now: Instant,
        src: SocketAddr,
        port: u16,
        server: bool,
        local: u64,
        inc: u64,
        r: &ResendHeader,
    ) {
        let key = if local & 1 == 0 {
            match self.find_rpc(src, port, local) {
                Some(k) if self.rpcs[k].echo == inc => Some(k),
                Some(_) => {
                    self.stats.wrong_incarnation += 1;
                    return;
                }
                None => None,
            }
        } else {
            self.find_rpc(src, port, local)
        };
        let Some(key) = key else {
            self.stats.unknown_rpc += 1;
            let status = if local & 1 == 0 {
                // One of our client RPCs that we finished or aborted.
                UnknownStatus::None
            } else if !server {
                self.stats.refused_not_server += 1;
                UnknownStatus::NotServer
            } else {
                let (expected, since) = self.served(src);
                let up = self.refusal_uptime(now, since);
                if inc != expected {
                    UnknownStatus::Uptime(up)
                } else {
                    match self.request_seen(src, local) {
                        Seen::New => UnknownStatus::Uptime(up),
                        Seen::Ran => UnknownStatus::Abandoned,
                        Seen::Finished => UnknownStatus::Forgotten,
                    }
                }
            };
            self.refuse(port, src, local, status);
            return;
        };
        let max_prio = self.config.num_priorities - 1;
        let rpc = &mut self.rpcs[key];
        if rpc.is_client() && (rpc.state != RpcState::Outgoing || rpc.echo == 0) {
            self.stats.wrong_state += 1;
            return;
        }
        if rpc.state == RpcState::Outgoing && rpc.msgout.is_some() {
            // The peer is waiting for our message: it is alive. (A RESEND
            // while we wait for the peer's bytes proves nothing about this
            // RPC: the peer may believe its message complete, and our BUSY
            // reply must not be what keeps both sides alive.)
            rpc.heard(now);
        }
        let msgout = match (rpc.state, rpc.msgout.as_mut()) {
            (RpcState::Outgoing, Some(m)) => m,
            _ => {
                // Alive, but our message is not being sent (server still
                // receiving or computing): say so.
                self.send_control(port, src, local, Body::Busy);
                return;
            }
        };
        let tx_end = msgout.next_xmit;
        let end = if r.length == ResendHeader::ALL {
            tx_end
        } else {
            (r.offset as u64 + r.length as u64).min(u32::MAX as u64) as u32
        };
        let prio = r.priority.unwrap_or(max_prio).min(max_prio);
        if end > msgout.granted {
            // The receiver granted more than we know: a GRANT was lost.
            msgout.raise_grant(end);
        }
        let queued = msgout.queue_resend(r.offset, end, prio);
        self.update_xmit(key);
        if queued {
            self.queue_retx(key);
        } else {
            self.send_control(port, src, local, Body::Busy);
        }
    }

    /// RPC_UNKNOWN: the peer has no state for the RPC. A server that forgot
    /// is told nothing more; a client applies the rules of the `amo` module:
    /// learn the server's incarnation, then send the request (again) only if
    /// it cannot have run, else fail with the precise reason.
    pub(crate) fn handle_rpc_unknown(
        &mut self,
        now: Instant,
        src: SocketAddr,
        port: u16,
        local: u64,
        inc: u64,
        u: RpcUnknownHeader,
    ) {
        let Some(key) = self.find_rpc(src, port, local) else {
            self.stats.unknown_rpc += 1;
            return;
        };
        if !self.rpcs[key].is_client() {
            // The client forgot the RPC: nothing left to do for it.
            self.free_rpc(key);
            return;
        }
        let bound_to = self.rpcs[key].echo;
        let uptime = match u.status {
            UnknownStatus::Uptime(up) => {
                if inc != 0 {
                    self.learn_incarnation(now, src, inc);
                }
                up
            }
            UnknownStatus::NotServer => {
                self.stats.not_server += 1;
                return self.fail_rpc(key, RpcError::NotServer);
            }
            UnknownStatus::Abandoned if inc == bound_to => {
                self.stats.abandoned += 1;
                return self.fail_rpc(key, RpcError::Abandoned);
            }
            UnknownStatus::Forgotten if inc == bound_to => {
                self.stats.outcome_unknown += 1;
                return self.fail_rpc(key, RpcError::OutcomeUnknown);
            }
            _ => core::time::Duration::ZERO,
        };
        if bound_to == 0 {
            // Never sent: learning the incarnation (above) let it go.
            return;
        }
        let rpc = &self.rpcs[key];
        let sending = rpc.state == RpcState::Outgoing;
        if inc == bound_to {
            if sending {
                // The server lost (or refused) our request: send it again.
                self.restart_request(key);
            } else {
                // "Never seen" while its response arrives: a late copy of
                // an answer to a probe sent before our request reached it
                // (a server that dropped an RPC it ran says "abandoned",
                // above).
                self.stats.stale_unknown += 1;
            }
        } else if sending
            && inc != 0
            && rpc.msgout.as_ref().is_some_and(|m| {
                // The request's age: since it was queued (created, or
                // released by output commit), before its first copy left.
                started_after(uptime, now.saturating_duration_since(m.init_time))
            })
        {
            // A new incarnation, up since before we created the request:
            // no copy reached the old one. Bind to the new one and send.
            self.rpcs[key].echo = inc;
            self.stats.requests_rebound += 1;
            self.restart_request(key);
        } else {
            // The request may have reached an earlier incarnation.
            self.stats.outcome_unknown += 1;
            self.fail_rpc(key, RpcError::OutcomeUnknown);
        }
    }

    /// Sends a client request again from its start (what was transmitted
    /// so far, at the unscheduled priority).
    fn restart_request(&mut self, key: usize) {
        let rpc = &mut self.rpcs[key];
        rpc.busy = false;
        rpc.peer_knows = false;
        if let Some(m) = rpc.msgout.as_mut() {
            let prio = m.unsched_priority;
            let sent = m.next_xmit;
            if m.queue_resend(0, sent, prio) {
                self.stats.requests_restarted += 1;
                self.queue_retx(key);
            }
        }
    }

    /// We learned that peer `src` serves as incarnation `inc`: requests
    /// waiting for it are bound to it and start.
    fn learn_incarnation(&mut self, now: Instant, src: SocketAddr, inc: u64) {
        let Some(peer) = self.peers.get_mut(&src) else {
            return;
        };
        let Some(waiting) = peer.server.learn(inc) else {
            return;
        };
        self.stats.incarnations_learned += 1;
        for RpcRef { seq, key } in waiting {
            if self.live(key, seq) && self.rpcs[key].echo == 0 {
                let rpc = &mut self.rpcs[key];
                rpc.echo = inc;
                rpc.heard(now);
                self.update_xmit(key);
            }
        }
    }

    /// Asks the server of client RPC `key`, whose incarnation we do not
    /// know, for it: a zero-length RESEND, which it answers with RPC_UNKNOWN
    /// carrying its incarnation. One probe per peer per `resend_after`
    /// unless `again` (the RPC's own silence timer asks).
    pub(crate) fn probe_incarnation(&mut self, now: Instant, key: usize, again: bool) {
        let rpc = &self.rpcs[key];
        let (peer, port, id) = (rpc.peer, rpc.port, rpc.id);
        let every = self.config.resend_after;
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if !p.server.probe(now, every, again) {
            return;
        }
        self.stats.incarnation_probes += 1;
        self.send_probe(port, peer, id, 0);
    }

    /// A zero-length RESEND: "are you alive, and do you know this RPC?". The
    /// peer answers BUSY (and counts it as a sign of life) or RPC_UNKNOWN.
    pub(crate) fn send_probe(&mut self, port: u16, peer: SocketAddr, id: u64, offset: u32) {
        let body = Body::Resend(ResendHeader {
            offset,
            length: 0,
            priority: Some(self.config.control_priority()),
        });
        self.send_control(port, peer, id, body);
    }

    /// CUTOFFS: adopt the peer's unscheduled priorities.
    pub(crate) fn handle_cutoffs(&mut self, src: SocketAddr, c: &CutoffsHeader) {
        match self.peers.get_mut(&src) {
            Some(peer) => peer.set_cutoffs(c.cutoffs, c.version),
            None => self.stats.unknown_rpc += 1,
        }
    }

    /// NEED_ACK: acknowledge if we have the response, else ask for the rest.
    pub(crate) fn handle_need_ack(
        &mut self,
        now: Instant,
        src: SocketAddr,
        port: u16,
        local: u64,
        inc: u64,
    ) {
        if local & 1 == 1 {
            // NEED_ACK goes from servers to clients only.
            self.stats.wrong_state += 1;
            return;
        }
        if let Some(key) = self.find_rpc(src, port, local) {
            if self.rpcs[key].echo != inc {
                self.stats.wrong_incarnation += 1;
                return;
            }
            if self.rpcs[key].waiting.is_some() {
                // We hold the response back for lack of memory.
                self.rpcs[key].alive = now;
                return;
            }
            // Our response is incomplete: ask for the missing pieces instead.
            self.request_retransmission(now, key);
            return;
        }
        let acks = self
            .peers
            .get_mut(&src)
            .map(|p| p.take_acks(port))
            .unwrap_or_default();
        self.send_control(port, src, local, Body::Ack(AckHeader::new(&acks)));
    }

    /// ACK: free the named server RPC and every listed one.
    pub(crate) fn handle_ack(
        &mut self,
        now: Instant,
        src: SocketAddr,
        port: u16,
        local: u64,
        a: &AckHeader,
    ) {
        self.apply_ack(
            now,
            src,
            AckEntry {
                client_id: local ^ 1,
                server_port: port,
            },
        );
        for entry in a.acks() {
            self.apply_ack(now, src, *entry);
        }
    }

    /// Frees the server RPC a client acknowledged, if it is done.
    fn apply_ack(&mut self, _now: Instant, client: SocketAddr, ack: AckEntry) {
        let Some(key) = self.find_rpc(client, ack.server_port, local_id(ack.client_id)) else {
            return;
        };
        let rpc = &self.rpcs[key];
        if rpc.is_client() || rpc.state != RpcState::Outgoing {
            self.stats.wrong_state += 1;
            return;
        }
        self.stats.server_rpcs_acked += 1;
        self.free_rpc(key);
    }
}

/// Receive budget an incoming message's buffer takes: the buffer, plus the
/// [`DELIVERED_OVERHEAD`] the message will count once delivered (reserved
/// from the start, so that delivering never takes the socket past its
/// budget).
pub(crate) fn rx_charge(m: &MsgIn) -> u32 {
    m.buffer_len().saturating_add(DELIVERED_OVERHEAD as u32)
}

/// Why a new request cannot be taken now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// A copy of a request that ran or that the client finished.
    Stale,
    /// No room for the client in the peer table.
    PeerLimit,
    /// The client has `max_rpcs_per_peer` RPCs open.
    RpcLimit,
    /// The client's record holds `done_ids_per_peer` ids and this request
    /// is not the one that holds its floor back.
    DoneFull,
    /// The request starts a client run the record has no room for: renew
    /// the record (`Endpoint::renew_record`) and admit it again. (If it
    /// still cannot be taken, it is answered BUSY like `DoneFull`.)
    Renew,
}

/// The admission checks for request `local` from a client with state
/// `peer`, whose DATA names `oldest` as the client's oldest unfinished
/// request; on success the request counts against the client's limits.
#[inline(always)]
fn admit(
    peer: &mut crate::peer::Peer,
    local: u64,
    oldest: Option<u64>,
    max_rpcs: u32,
    max_done: usize,
    now: Instant,
) -> Option<Refusal> {
    if let Some(o) = oldest {
        if !peer.done.claim(o) {
            return Some(Refusal::Renew);
        }
    }
    if peer.done.contains(local) {
        return Some(Refusal::Stale);
    }
    if peer.server_rpcs >= max_rpcs {
        return Some(Refusal::RpcLimit);
    }
    if peer.done.len() >= max_done && oldest != Some(local) {
        return Some(Refusal::DoneFull);
    }
    peer.server_rpcs += 1;
    peer.rpcs += 1;
    peer.last_active = now;
    None
}
