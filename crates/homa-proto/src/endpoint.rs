//! The endpoint: host-wide Homa state (sockets, peers, RPCs) and the driver
//! contract.
//!
//! # Driver contract
//!
//! An [`Endpoint`] does no I/O and reads no clock. A driver (the UDP runtime,
//! the simulator, a test network) owns it and:
//!
//! 1. feeds it inputs: [`Endpoint::handle_datagram`] for every received
//!    datagram, [`Endpoint::handle_timeout`] when the deadline from
//!    [`Endpoint::poll_timeout`] passes, [`Endpoint::handle_unreachable`] for
//!    ICMP errors, and application commands ([`Endpoint::send_request`],
//!    [`Endpoint::send_response`], [`Endpoint::abort`], socket calls);
//! 2. after any input, drains the outputs: [`Endpoint::poll_transmit`] until
//!    it returns `None` (each call yields one datagram, or a GSO batch of
//!    equal-size segments, for one destination at one priority),
//!    [`Endpoint::poll_event`] until `None`, and re-reads
//!    [`Endpoint::poll_timeout`].
//!
//! Every input takes `now`; instants must never go backwards. Outputs depend
//! only on inputs and the seed given to [`Endpoint::new`], so a driver that
//! replays the same inputs gets the same outputs.
//!
//! # What the endpoint owns
//!
//! * Sockets, named by port: server ports (1..=0x7FFF) are bound explicitly;
//!   client ports are assigned round-robin from 0x8000, or registered
//!   explicitly when the driver's OS chose the port. Any socket can be both
//!   client and server.
//! * RPCs. Client ids are even, unique per endpoint, starting at a random
//!   even value; the server's id for an RPC is the client's id with the low
//!   bit set. Servers key RPCs on (client address, client port, id).
//! * Peers (one per remote socket): cutoffs and pending acknowledgements.
//!
//! Packet handling follows the kernel module (reference sections 1.6, 4.1,
//! 4.5, 4.6); where it deviates, the function says so.

use core::net::SocketAddr;
use std::collections::{BTreeSet, HashMap, VecDeque};

use bytes::Bytes;
use slab::Slab;

use crate::config::{Config, ConfigError};
use crate::peer::Peer;
use crate::rng::Rng;
use crate::rpc::msgin::{AddOutcome, MsgIn};
use crate::rpc::msgout::MsgOut;
use crate::rpc::{local_id, Rpc, RpcState};
use crate::stats::Stats;
use crate::wire::{
    AckEntry, AckHeader, Body, CutoffsHeader, DataHeader, GrantHeader, Packet, PacketType, Repr,
    ResendHeader,
};
use crate::Instant;

type Map<K, V> = HashMap<K, V, ahash::RandomState>;

/// Errors returned by application commands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No socket is open on the port.
    #[error("no socket on port {0}")]
    NoSocket(u16),
    /// The port is already open.
    #[error("port {0} is already in use")]
    PortInUse(u16),
    /// The port cannot be opened (0 is reserved).
    #[error("port {0} cannot be opened")]
    InvalidPort(u16),
    /// Every client port is in use.
    #[error("no client port available")]
    NoPortsAvailable,
    /// The message exceeds the configured maximum.
    #[error("message of {len} bytes exceeds the maximum of {max}")]
    MessageTooLong {
        /// Length of the message.
        len: usize,
        /// The configured maximum.
        max: u32,
    },
    /// Messages must hold at least one byte.
    #[error("empty message")]
    EmptyMessage,
    /// No RPC with that id exists on that socket.
    #[error("no such rpc")]
    UnknownRpc,
    /// The RPC is not in a state that allows the command.
    #[error("rpc is in the wrong state for this command")]
    WrongState,
}

/// Why an RPC failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The peer was silent for longer than the configured timeout.
    #[error("rpc timed out")]
    Timeout,
    /// No socket listens at the destination (ICMP port unreachable).
    #[error("destination port unreachable")]
    PortUnreachable,
    /// The destination host cannot be reached (ICMP host unreachable).
    #[error("destination host unreachable")]
    HostUnreachable,
}

/// An ICMP error reported by the driver's network stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// Nothing listens on the destination port: fails RPCs to that socket.
    Port,
    /// The host cannot be reached: fails RPCs to every port of that address.
    Host,
}

/// Something the application must learn about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A complete request arrived on a server socket. Answer it with
    /// [`Endpoint::send_response`] using `peer` and `id`.
    Request {
        /// Local socket port.
        port: u16,
        /// The client.
        peer: SocketAddr,
        /// The server's id for the RPC (odd).
        id: u64,
        /// The request bytes.
        data: Bytes,
    },
    /// The response to a request we sent arrived in full.
    Response {
        /// Local socket port.
        port: u16,
        /// The id [`Endpoint::send_request`] returned.
        id: u64,
        /// The response bytes.
        data: Bytes,
    },
    /// A request we sent failed.
    Failed {
        /// Local socket port.
        port: u16,
        /// The id [`Endpoint::send_request`] returned.
        id: u64,
        /// Why.
        error: RpcError,
    },
}

/// A datagram (or a GSO batch of datagrams) to send.
///
/// The bytes were written into the buffer passed to
/// [`Endpoint::poll_transmit`]. When `segment_size` is `Some(s)`, the buffer
/// holds several Homa packets of `s` bytes each (the last may be shorter),
/// all for the same destination at the same priority: hand them to the
/// kernel as one GSO send or send them one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Transmit {
    /// Local (source) port.
    pub src_port: u16,
    /// Destination address and port.
    pub destination: SocketAddr,
    /// Homa priority level (0 lowest, `num_priorities - 1` highest).
    pub priority: u8,
    /// IP TOS / traffic-class byte for this priority (`level << 5` by
    /// default; see [`Config::priority_map`]).
    pub tos: u8,
    /// Total bytes written.
    pub size: usize,
    /// Size of each segment when the buffer holds more than one packet.
    pub segment_size: Option<usize>,
}

impl Transmit {
    /// Number of packets in the buffer.
    pub fn segments(&self) -> usize {
        match self.segment_size {
            Some(s) => self.size.div_ceil(s),
            None => 1,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Socket {
    server: bool,
}

#[derive(Debug, Clone, Copy)]
struct Control {
    dest: SocketAddr,
    repr: Repr,
}

/// Host-wide Homa state: see the [module documentation](self).
pub struct Endpoint {
    config: Config,
    seg_v4: u32,
    seg_v6: u32,
    max_gso_segs_v4: u32,
    max_gso_segs_v6: u32,
    sockets: Map<u16, Socket>,
    next_client_port: u16,
    next_client_id: u64,
    next_seq: u64,
    rpcs: Slab<Rpc>,
    client_rpcs: Map<u64, usize>,
    server_rpcs: Map<(SocketAddr, u64), usize>,
    peers: Map<SocketAddr, Peer>,
    control: VecDeque<Control>,
    grant_list: Vec<(usize, u64)>,
    retx_queue: VecDeque<(usize, u64)>,
    /// RPCs with granted, never-sent bytes: (bytes left, seq, key), SRPT.
    xmit_queue: BTreeSet<(u32, u64, usize)>,
    events: VecDeque<Event>,
    stats: Stats,
}

impl core::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Endpoint")
            .field("sockets", &self.sockets.len())
            .field("rpcs", &self.rpcs.len())
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Creates an endpoint. `seed` determines the first client RPC id and
    /// the hash keys of internal tables; give every process a different,
    /// random seed.
    pub fn new(config: Config, seed: u64) -> Result<Endpoint, ConfigError> {
        config.validate()?;
        let mut rng = Rng::new(seed);
        let hasher = || {
            ahash::RandomState::with_seeds(
                rng_u64(seed, 1),
                rng_u64(seed, 2),
                rng_u64(seed, 3),
                rng_u64(seed, 4),
            )
        };
        // A random even start, leaving room for 2^62 RPCs before wrapping.
        let next_client_id = (rng.next_u64() >> 2).max(1) << 1;
        let seg_v4 = config.max_seg_data(false);
        let seg_v6 = config.max_seg_data(true);
        let gso = |seg: u32| {
            let pkt = seg + DataHeader::LEN as u32;
            (config.max_gso_bytes / pkt).clamp(1, config.max_gso_segments.max(1))
        };
        let first_port = config.first_client_port;
        Ok(Endpoint {
            seg_v4,
            seg_v6,
            max_gso_segs_v4: gso(seg_v4),
            max_gso_segs_v6: gso(seg_v6),
            sockets: Map::with_hasher(hasher()),
            next_client_port: first_port,
            next_client_id,
            next_seq: 1,
            rpcs: Slab::new(),
            client_rpcs: Map::with_hasher(hasher()),
            server_rpcs: Map::with_hasher(hasher()),
            peers: Map::with_hasher(hasher()),
            control: VecDeque::new(),
            grant_list: Vec::new(),
            retx_queue: VecDeque::new(),
            xmit_queue: BTreeSet::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            config,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Cumulative counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Number of live RPCs (client and server).
    pub fn rpc_count(&self) -> usize {
        self.rpcs.len()
    }

    /// Number of peers with state.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Number of open sockets.
    pub fn socket_count(&self) -> usize {
        self.sockets.len()
    }

    // ----- sockets -------------------------------------------------------

    /// Opens a socket.
    ///
    /// * `port == 0`: assigns the next free client port (0x8000 and up,
    ///   round-robin, as the kernel does).
    /// * `1..=0x7FFF`: binds a server port; the socket accepts requests.
    /// * `0x8000..`: registers that exact port as a client socket (for
    ///   drivers whose operating system picked the port); call
    ///   [`Endpoint::set_server`] to accept requests on it too.
    pub fn open_socket(&mut self, port: u16) -> Result<u16, Error> {
        let port = match port {
            0 => self.assign_client_port()?,
            p if self.sockets.contains_key(&p) => return Err(Error::PortInUse(p)),
            p => p,
        };
        self.sockets.insert(
            port,
            Socket {
                server: port < 0x8000,
            },
        );
        Ok(port)
    }

    fn assign_client_port(&mut self) -> Result<u16, Error> {
        let first = self.config.first_client_port;
        let span = u32::from(u16::MAX - first) + 1;
        for _ in 0..span {
            let p = self.next_client_port;
            self.next_client_port = if p == u16::MAX { first } else { p + 1 };
            if !self.sockets.contains_key(&p) {
                return Ok(p);
            }
        }
        Err(Error::NoPortsAvailable)
    }

    /// Enables or disables receiving requests on a socket.
    pub fn set_server(&mut self, port: u16, enabled: bool) -> Result<(), Error> {
        let sock = self.sockets.get_mut(&port).ok_or(Error::NoSocket(port))?;
        sock.server = enabled;
        Ok(())
    }

    /// Closes a socket: every RPC on it ends at once, without packets to
    /// peers (they learn from ICMP errors, RPC_UNKNOWN or timeouts). Returns
    /// the ids of client RPCs that were still pending so the driver can fail
    /// their callers.
    pub fn close_socket(&mut self, port: u16) -> Result<Vec<u64>, Error> {
        self.sockets.remove(&port).ok_or(Error::NoSocket(port))?;
        let keys: Vec<usize> = self
            .rpcs
            .iter()
            .filter(|(_, r)| r.port == port)
            .map(|(k, _)| k)
            .collect();
        let mut ended = Vec::new();
        for key in keys {
            if self.rpcs[key].is_client() {
                ended.push(self.rpcs[key].id);
            }
            self.free_rpc(key);
        }
        self.control.retain(|c| c.repr.sport != port);
        self.events.retain(|e| match e {
            Event::Request { port: p, .. }
            | Event::Response { port: p, .. }
            | Event::Failed { port: p, .. } => *p != port,
        });
        ended.sort_unstable();
        Ok(ended)
    }

    // ----- application commands ----------------------------------------

    fn check_message(&self, len: usize) -> Result<(), Error> {
        if len == 0 {
            return Err(Error::EmptyMessage);
        }
        if len > self.config.max_message_length as usize {
            return Err(Error::MessageTooLong {
                len,
                max: self.config.max_message_length,
            });
        }
        Ok(())
    }

    fn seg_size(&self, addr: &SocketAddr) -> u32 {
        if addr.is_ipv6() {
            self.seg_v6
        } else {
            self.seg_v4
        }
    }

    fn peer_entry(&mut self, addr: SocketAddr, now: Instant) -> &mut Peer {
        let peer = self
            .peers
            .entry(addr)
            .or_insert_with(|| Peer::new(addr.port(), now));
        peer.last_active = now;
        peer
    }

    /// Starts a client RPC: sends `request` from socket `port` to `dest`.
    /// Returns the RPC's id; its response (or failure) arrives as an
    /// [`Event`].
    pub fn send_request(
        &mut self,
        now: Instant,
        port: u16,
        dest: SocketAddr,
        request: Bytes,
    ) -> Result<u64, Error> {
        if !self.sockets.contains_key(&port) {
            return Err(Error::NoSocket(port));
        }
        self.check_message(request.len())?;
        let id = self.next_client_id;
        self.next_client_id = self.next_client_id.wrapping_add(2);
        let seg = self.seg_size(&dest);
        let num_prio = self.config.num_priorities;
        let unsched = self.config.unsched_bytes;
        let peer = self.peer_entry(dest, now);
        peer.rpcs += 1;
        let prio = peer.unsched_priority(request.len() as u32, num_prio);
        let seq = self.next_seq();
        let mut rpc = Rpc::new(id, seq, dest, port, RpcState::Outgoing, now);
        rpc.msgout = Some(MsgOut::new(request, seg, unsched, prio, now));
        let key = self.rpcs.insert(rpc);
        self.client_rpcs.insert(id, key);
        self.stats.requests_started += 1;
        self.update_xmit(key);
        Ok(id)
    }

    /// Sends the response to a request delivered by [`Event::Request`].
    pub fn send_response(
        &mut self,
        now: Instant,
        port: u16,
        peer: SocketAddr,
        id: u64,
        response: Bytes,
    ) -> Result<(), Error> {
        self.check_message(response.len())?;
        let key = *self.server_rpcs.get(&(peer, id)).ok_or(Error::UnknownRpc)?;
        if self.rpcs[key].port != port {
            return Err(Error::UnknownRpc);
        }
        if self.rpcs[key].state != RpcState::InService {
            return Err(Error::WrongState);
        }
        let seg = self.seg_size(&peer);
        let num_prio = self.config.num_priorities;
        let unsched = self.config.unsched_bytes;
        let prio = self
            .peer_entry(peer, now)
            .unsched_priority(response.len() as u32, num_prio);
        let rpc = &mut self.rpcs[key];
        rpc.state = RpcState::Outgoing;
        rpc.last_heard = now;
        rpc.msgout = Some(MsgOut::new(response, seg, unsched, prio, now));
        self.stats.responses_started += 1;
        self.update_xmit(key);
        Ok(())
    }

    /// Abandons a client RPC: its state is freed at once and no event will
    /// report it. The server is not told (as in the kernel).
    pub fn abort(&mut self, port: u16, id: u64) -> Result<(), Error> {
        let key = *self.client_rpcs.get(&id).ok_or(Error::UnknownRpc)?;
        if self.rpcs[key].port != port {
            return Err(Error::UnknownRpc);
        }
        self.free_rpc(key);
        Ok(())
    }

    // ----- driver inputs -------------------------------------------------

    /// Processes one received datagram from `src`. Malformed or unexpected
    /// packets are counted in [`Stats`] and dropped; nothing here panics.
    pub fn handle_datagram(&mut self, now: Instant, src: SocketAddr, datagram: &[u8]) {
        let (repr, payload) = match Repr::parse_with_payload(datagram) {
            Ok(r) => r,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        let ty = repr.body.packet_type();
        self.stats.received.add(ty, datagram.len());
        if repr.sport != src.port() {
            self.stats.port_mismatch += 1;
            return;
        }
        if ty == PacketType::Freeze {
            self.stats.freeze += 1;
            return;
        }
        let Some(sock) = self.sockets.get(&repr.dport).copied() else {
            self.stats.no_socket += 1;
            return;
        };
        let local = local_id(repr.sender_id);
        match repr.body {
            Body::Data(h) => self.handle_data(now, src, repr.dport, sock, local, &h, payload),
            Body::Grant(g) => self.handle_grant(now, src, repr.dport, local, &g),
            Body::Resend(r) => self.handle_resend(now, src, repr.dport, local, &r),
            Body::RpcUnknown => self.handle_rpc_unknown(src, repr.dport, local),
            Body::Busy => {
                if let Some(key) = self.find_rpc(src, repr.dport, local) {
                    self.rpcs[key].last_heard = now;
                } else {
                    self.stats.unknown_rpc += 1;
                }
            }
            Body::Cutoffs(c) => self.handle_cutoffs(src, &c),
            Body::NeedAck => self.handle_need_ack(now, src, repr.dport, local),
            Body::Ack(a) => self.handle_ack(src, repr.dport, local, &a),
            Body::Freeze => {}
        }
    }

    /// Reports an ICMP error for packets sent to `dest`: client RPCs to it
    /// fail with the matching [`RpcError`], server RPCs to it are dropped.
    pub fn handle_unreachable(&mut self, _now: Instant, dest: SocketAddr, kind: Unreachable) {
        let matches = |peer: &SocketAddr| match kind {
            Unreachable::Port => *peer == dest,
            Unreachable::Host => peer.ip() == dest.ip(),
        };
        let keys: Vec<usize> = self
            .rpcs
            .iter()
            .filter(|(_, r)| matches(&r.peer))
            .map(|(k, _)| k)
            .collect();
        let error = match kind {
            Unreachable::Port => RpcError::PortUnreachable,
            Unreachable::Host => RpcError::HostUnreachable,
        };
        for key in keys {
            self.fail_rpc(key, error);
        }
    }

    /// Processes timers; call when [`Endpoint::poll_timeout`]'s deadline
    /// passes (calling early is harmless).
    pub fn handle_timeout(&mut self, _now: Instant) {}

    // ----- driver outputs ------------------------------------------------

    /// The next deadline at which [`Endpoint::handle_timeout`] must run, if
    /// any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// The next application event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Writes the next datagram (or GSO batch) to send into `buf` (which is
    /// cleared first) and describes it. Returns `None` when nothing is ready.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        buf.clear();
        if !self.grant_list.is_empty() {
            self.send_grants();
        }
        if let Some(c) = self.control.pop_front() {
            return Some(self.emit_control(c, buf));
        }
        if let Some(t) = self.transmit_resends(now, buf) {
            return Some(t);
        }
        self.transmit_data(now, buf)
    }

    // ----- internals: RPC table ------------------------------------------

    fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Finds the RPC a packet from `src` to local `port` with local id
    /// `local` belongs to.
    fn find_rpc(&self, src: SocketAddr, port: u16, local: u64) -> Option<usize> {
        let key = if local & 1 == 0 {
            *self.client_rpcs.get(&local)?
        } else {
            *self.server_rpcs.get(&(src, local))?
        };
        let rpc = &self.rpcs[key];
        (rpc.peer == src && rpc.port == port).then_some(key)
    }

    /// Removes an RPC and every reference to it.
    fn free_rpc(&mut self, key: usize) {
        let rpc = self.rpcs.remove(key);
        if rpc.is_client() {
            self.client_rpcs.remove(&rpc.id);
        } else {
            self.server_rpcs.remove(&(rpc.peer, rpc.id));
        }
        if let Some(k) = rpc.xmit_key {
            self.xmit_queue.remove(&(k, rpc.seq, key));
        }
        if let Some(peer) = self.peers.get_mut(&rpc.peer) {
            peer.rpcs = peer.rpcs.saturating_sub(1);
        }
    }

    /// Ends an RPC because of `error`: a client RPC reports the failure, a
    /// server RPC just disappears.
    fn fail_rpc(&mut self, key: usize, error: RpcError) {
        let rpc = &self.rpcs[key];
        if rpc.is_client() {
            self.events.push_back(Event::Failed {
                port: rpc.port,
                id: rpc.id,
                error,
            });
        }
        self.free_rpc(key);
    }

    /// Puts the RPC in the transmit queue at its SRPT position if it has
    /// granted bytes never sent, or takes it out.
    fn update_xmit(&mut self, key: usize) {
        let rpc = &mut self.rpcs[key];
        let want = match (&rpc.msgout, rpc.state) {
            (Some(m), RpcState::Outgoing) if m.has_sendable() => Some(m.bytes_left()),
            _ => None,
        };
        if want == rpc.xmit_key {
            return;
        }
        if let Some(old) = rpc.xmit_key.take() {
            self.xmit_queue.remove(&(old, rpc.seq, key));
        }
        if let Some(k) = want {
            self.xmit_queue.insert((k, rpc.seq, key));
            rpc.xmit_key = Some(k);
        }
    }

    fn queue_control(&mut self, dest: SocketAddr, repr: Repr) {
        if self.control.len() >= self.config.max_control_queue {
            self.stats.control_queue_full += 1;
            return;
        }
        self.control.push_back(Control { dest, repr });
    }

    /// Queues a header-only reply to `src` for a packet that arrived on
    /// `port` about local id `local` (ports swapped, our id in sender_id).
    fn reply(&mut self, src: SocketAddr, port: u16, local: u64, body: Body) {
        let repr = Repr {
            sport: port,
            dport: src.port(),
            sender_id: local,
            body,
        };
        self.queue_control(src, repr);
    }

    fn queue_retx(&mut self, key: usize) {
        let rpc = &mut self.rpcs[key];
        if !rpc.in_retx_queue {
            rpc.in_retx_queue = true;
            self.retx_queue.push_back((key, rpc.seq));
        }
    }

    fn queue_grant_check(&mut self, key: usize) {
        let rpc = &mut self.rpcs[key];
        if !rpc.in_grant_list {
            rpc.in_grant_list = true;
            self.grant_list.push((key, rpc.seq));
        }
    }

    fn live(&self, key: usize, seq: u64) -> bool {
        self.rpcs.get(key).is_some_and(|r| r.seq == seq)
    }

    // ----- internals: packet handlers ---------------------------------

    #[allow(clippy::too_many_arguments)]
    fn handle_data(
        &mut self,
        now: Instant,
        src: SocketAddr,
        port: u16,
        sock: Socket,
        local: u64,
        h: &DataHeader,
        payload: &[u8],
    ) {
        if h.message_length == 0 || h.message_length > self.config.max_message_length {
            self.stats.bad_data += 1;
            return;
        }
        let key = match self.find_rpc(src, port, local) {
            Some(k) => k,
            None if local & 1 == 0 => {
                // DATA for a client RPC we do not know (finished, aborted).
                self.stats.unknown_rpc += 1;
                return;
            }
            None => {
                if !sock.server {
                    self.stats.no_socket += 1;
                    return;
                }
                if self.server_rpcs.contains_key(&(src, local)) {
                    // Same client id, different local port: not ours.
                    self.stats.unknown_rpc += 1;
                    return;
                }
                let seq = self.next_seq();
                self.peer_entry(src, now).rpcs += 1;
                let rpc = Rpc::new(local, seq, src, port, RpcState::Incoming, now);
                let key = self.rpcs.insert(rpc);
                self.server_rpcs.insert((src, local), key);
                key
            }
        };
        self.accept_data(now, key, h, payload);
        if h.ack.client_id != 0 {
            self.apply_ack(src, h.ack);
        }
    }

    fn accept_data(&mut self, now: Instant, key: usize, h: &DataHeader, payload: &[u8]) {
        let max_gaps = self.config.max_gaps;
        let rpc = &mut self.rpcs[key];
        rpc.last_heard = now;
        match (rpc.is_client(), rpc.state) {
            (_, RpcState::Incoming) => {}
            (true, RpcState::Outgoing) => {
                // The first response packet: the server has our request.
                rpc.state = RpcState::Incoming;
                rpc.msgout = None;
                if let Some(k) = rpc.xmit_key.take() {
                    self.xmit_queue.remove(&(k, rpc.seq, key));
                }
            }
            _ => {
                // Server RPC past its request: a late duplicate.
                self.stats.wrong_state += 1;
                return;
            }
        }
        let msgin = rpc
            .msgin
            .get_or_insert_with(|| MsgIn::new(h.message_length, h.incoming, now));
        if msgin.length() != h.message_length {
            self.stats.bad_data += 1;
            return;
        }
        match msgin.add(h.offset, payload, max_gaps) {
            AddOutcome::Accepted(_) => {}
            AddOutcome::Duplicate => {
                self.stats.duplicate_data += 1;
                return;
            }
            AddOutcome::TooManyGaps => {
                self.stats.too_many_gaps += 1;
                return;
            }
            AddOutcome::OutOfRange => {
                self.stats.bad_data += 1;
                return;
            }
        }
        if msgin.is_complete() {
            self.message_complete(key);
        } else if msgin.granted < msgin.length() {
            self.queue_grant_check(key);
        }
    }

    /// A whole message arrived: deliver it.
    fn message_complete(&mut self, key: usize) {
        let rpc = &mut self.rpcs[key];
        let data = rpc.msgin.take().expect("complete message").into_bytes();
        self.stats.message_bytes_delivered += data.len() as u64;
        if rpc.is_client() {
            let (port, id, peer) = (rpc.port, rpc.id, rpc.peer);
            self.events.push_back(Event::Response { port, id, data });
            self.stats.responses_delivered += 1;
            self.free_rpc(key);
            self.queue_ack(port, peer, id);
        } else {
            rpc.state = RpcState::InService;
            self.events.push_back(Event::Request {
                port: rpc.port,
                peer: rpc.peer,
                id: rpc.id,
                data,
            });
            self.stats.requests_delivered += 1;
        }
    }

    /// Records that the server may free client RPC `id`: piggybacked on a
    /// later DATA packet, or sent at once in an ACK when five are waiting.
    fn queue_ack(&mut self, port: u16, server: SocketAddr, id: u64) {
        let Some(peer) = self.peers.get_mut(&server) else {
            return;
        };
        if peer.acks_pending(port) >= crate::wire::MAX_ACKS_PER_PKT {
            let acks = peer.take_acks(port);
            let repr = Repr {
                sport: port,
                dport: server.port(),
                sender_id: id,
                body: Body::Ack(AckHeader::new(&acks)),
            };
            self.queue_control(server, repr);
        } else {
            peer.pending_acks.push((port, id));
        }
    }

    fn handle_grant(
        &mut self,
        now: Instant,
        src: SocketAddr,
        port: u16,
        local: u64,
        g: &GrantHeader,
    ) {
        let Some(key) = self.find_rpc(src, port, local) else {
            self.stats.unknown_rpc += 1;
            return;
        };
        let max_prio = self.config.num_priorities - 1;
        let rpc = &mut self.rpcs[key];
        rpc.last_heard = now;
        let (RpcState::Outgoing, Some(m)) = (rpc.state, rpc.msgout.as_mut()) else {
            self.stats.wrong_state += 1;
            return;
        };
        m.raise_grant(g.offset);
        m.sched_priority = g.priority.min(max_prio);
        self.update_xmit(key);
    }

    fn handle_resend(
        &mut self,
        _now: Instant,
        src: SocketAddr,
        port: u16,
        local: u64,
        r: &ResendHeader,
    ) {
        let Some(key) = self.find_rpc(src, port, local) else {
            self.stats.unknown_rpc += 1;
            self.reply(src, port, local, Body::RpcUnknown);
            return;
        };
        let max_prio = self.config.num_priorities - 1;
        let rpc = &mut self.rpcs[key];
        let msgout = match (rpc.state, rpc.msgout.as_mut()) {
            (RpcState::Outgoing, Some(m)) => m,
            _ => {
                // Alive, but our message is not being sent (server still
                // receiving or computing): say so.
                self.reply(src, port, local, Body::Busy);
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
            self.reply(src, port, local, Body::Busy);
        }
    }

    fn handle_rpc_unknown(&mut self, src: SocketAddr, port: u16, local: u64) {
        let Some(key) = self.find_rpc(src, port, local) else {
            self.stats.unknown_rpc += 1;
            return;
        };
        let rpc = &mut self.rpcs[key];
        if !rpc.is_client() {
            // The client forgot the RPC: nothing left to do for it.
            self.free_rpc(key);
            return;
        }
        match (rpc.state, rpc.msgout.as_mut()) {
            (RpcState::Outgoing, Some(m)) => {
                // The server lost our request: send it again from the start
                // at the unscheduled priority.
                let prio = m.unsched_priority;
                let sent = m.next_xmit;
                if m.queue_resend(0, sent, prio) {
                    self.queue_retx(key);
                }
            }
            _ => self.stats.wrong_state += 1,
        }
    }

    fn handle_cutoffs(&mut self, src: SocketAddr, c: &CutoffsHeader) {
        match self.peers.get_mut(&src) {
            Some(peer) => peer.set_cutoffs(c.cutoffs, c.version),
            None => self.stats.unknown_rpc += 1,
        }
    }

    fn handle_need_ack(&mut self, now: Instant, src: SocketAddr, port: u16, local: u64) {
        if local & 1 == 1 {
            // NEED_ACK goes from servers to clients only.
            self.stats.wrong_state += 1;
            return;
        }
        if let Some(key) = self.find_rpc(src, port, local) {
            // Our response is incomplete: ask for the missing pieces instead.
            self.request_retransmission(now, key);
            return;
        }
        let acks = self
            .peers
            .get_mut(&src)
            .map(|p| p.take_acks(port))
            .unwrap_or_default();
        self.reply(src, port, local, Body::Ack(AckHeader::new(&acks)));
    }

    fn handle_ack(&mut self, src: SocketAddr, port: u16, local: u64, a: &AckHeader) {
        self.apply_ack(
            src,
            AckEntry {
                client_id: local ^ 1,
                server_port: port,
            },
        );
        for entry in a.acks() {
            self.apply_ack(src, *entry);
        }
    }

    /// Frees the server RPC a client acknowledged, if it is done.
    fn apply_ack(&mut self, client: SocketAddr, ack: AckEntry) {
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

    /// Asks the peer for what is missing of the RPC's incoming message:
    /// everything if nothing arrived yet, else each gap and the granted bytes
    /// beyond the highest byte received.
    fn request_retransmission(&mut self, _now: Instant, key: usize) {
        let prio = Some(self.config.control_priority());
        let rpc = &self.rpcs[key];
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        match &rpc.msgin {
            None => ranges.push((0, ResendHeader::ALL)),
            Some(m) => {
                for &(s, e) in m.gaps().iter().take(MAX_RESENDS_PER_CHECK) {
                    ranges.push((s, e - s));
                }
                if m.granted > m.recv_end() && ranges.len() < MAX_RESENDS_PER_CHECK {
                    ranges.push((m.recv_end(), m.granted - m.recv_end()));
                }
            }
        }
        let (peer, port, id) = (rpc.peer, rpc.port, rpc.id);
        for (offset, length) in ranges {
            let repr = Repr {
                sport: port,
                dport: peer.port(),
                sender_id: id,
                body: Body::Resend(ResendHeader {
                    offset,
                    length,
                    priority: prio,
                }),
            };
            self.queue_control(peer, repr);
        }
    }

    // ----- internals: output -------------------------------------------

    fn tos(&self, level: u8) -> u8 {
        self.config.priority_map[level as usize] << 5
    }

    fn emit_control(&mut self, c: Control, buf: &mut Vec<u8>) -> Transmit {
        let len = c.repr.header_len();
        buf.resize(len, 0);
        c.repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        self.stats.sent.add(c.repr.body.packet_type(), len);
        let level = self.config.control_priority();
        Transmit {
            src_port: c.repr.sport,
            destination: c.dest,
            priority: level,
            tos: self.tos(level),
            size: len,
            segment_size: None,
        }
    }

    /// Issues the grants the simple rule calls for: every incoming message is
    /// granted up to `received + grant_window` bytes.
    fn send_grants(&mut self) {
        let list = core::mem::take(&mut self.grant_list);
        let window = self.config.grant_window as u64;
        for (key, seq) in list {
            if !self.live(key, seq) {
                continue;
            }
            let rpc = &mut self.rpcs[key];
            rpc.in_grant_list = false;
            let Some(m) = rpc.msgin.as_mut() else {
                continue;
            };
            let target = (m.received() as u64 + window).min(m.length() as u64) as u32;
            if target <= m.granted {
                continue;
            }
            m.granted = target;
            let repr = Repr {
                sport: rpc.port,
                dport: rpc.peer.port(),
                sender_id: rpc.id,
                body: Body::Grant(GrantHeader {
                    offset: target,
                    priority: 0,
                }),
            };
            let dest = rpc.peer;
            self.queue_control(dest, repr);
        }
    }

    fn max_segs(&self, dest: &SocketAddr) -> u32 {
        if dest.is_ipv6() {
            self.max_gso_segs_v6
        } else {
            self.max_gso_segs_v4
        }
    }

    fn transmit_resends(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        while let Some((key, seq)) = self.retx_queue.pop_front() {
            if !self.live(key, seq) {
                continue;
            }
            self.rpcs[key].in_retx_queue = false;
            let has = self.rpcs[key]
                .msgout
                .as_ref()
                .is_some_and(|m| m.has_resends());
            if !has {
                continue;
            }
            let t = self.write_data(key, buf, true);
            if self.rpcs[key]
                .msgout
                .as_ref()
                .is_some_and(|m| m.has_resends())
            {
                self.queue_retx(key);
            }
            return Some(t);
        }
        None
    }

    fn transmit_data(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        let &(_, _, key) = self.xmit_queue.first()?;
        let t = self.write_data(key, buf, false);
        self.update_xmit(key);
        Some(t)
    }

    /// Writes a batch of DATA packets of RPC `key` into `buf`: new data from
    /// `next_xmit` (or pending retransmissions when `retransmit`), as many
    /// packets as GSO allows, all at one priority.
    fn write_data(&mut self, key: usize, buf: &mut Vec<u8>, retransmit: bool) -> Transmit {
        let max_segs = self.max_segs(&self.rpcs[key].peer);
        let rpc = &mut self.rpcs[key];
        let peer = self.peers.get_mut(&rpc.peer);
        let (ack, cutoff_version) = match peer {
            Some(p) => (p.take_ack(rpc.port).unwrap_or_default(), p.cutoff_version),
            None => (AckEntry::default(), 0),
        };
        let m = rpc.msgout.as_mut().expect("sending rpc has a message");
        let seg_len = DataHeader::LEN + m.seg_size as usize;
        let mut header = Repr {
            sport: rpc.port,
            dport: rpc.peer.port(),
            sender_id: rpc.id,
            body: Body::Data(DataHeader {
                message_length: m.length(),
                incoming: if retransmit { m.granted } else { m.unscheduled },
                ack,
                cutoff_version,
                retransmit,
                offset: 0,
            }),
        };
        let mut count = 0u32;
        let mut level = None;
        loop {
            let next = if retransmit {
                match m.peek_resend() {
                    Some((off, prio)) if level.is_none_or(|l| l == prio) => Some((off, prio)),
                    _ => None,
                }
            } else if m.has_sendable() {
                let off = m.next_xmit;
                let prio = m.priority_at(off);
                level.is_none_or(|l| l == prio).then_some((off, prio))
            } else {
                None
            };
            let Some((offset, prio)) = next else { break };
            // Only the last segment of a GSO batch may be short, and the
            // segments must be consecutive to stay in one retransmit range.
            if count > 0 && buf.len() % seg_len != 0 {
                break;
            }
            let len = m.packet_len(offset);
            if retransmit {
                m.next_resend();
            } else {
                m.next_xmit += len;
            }
            level = Some(prio);
            if let Body::Data(d) = &mut header.body {
                d.offset = offset;
            }
            let at = buf.len();
            buf.resize(at + DataHeader::LEN + len as usize, 0);
            header.emit(&mut Packet::new_unchecked(&mut buf[at..]));
            buf[at + DataHeader::LEN..].copy_from_slice(m.bytes(offset, len));
            self.stats
                .sent
                .add(PacketType::Data, DataHeader::LEN + len as usize);
            if retransmit {
                self.stats.data_retransmitted += 1;
            }
            count += 1;
            if count >= max_segs {
                break;
            }
        }
        let level = level.expect("write_data called with something to send");
        Transmit {
            src_port: rpc.port,
            destination: rpc.peer,
            priority: level,
            tos: self.config.priority_map[level as usize] << 5,
            size: buf.len(),
            segment_size: (count > 1).then_some(seg_len),
        }
    }
}

/// Most RESEND packets one retransmission request issues for one RPC.
const MAX_RESENDS_PER_CHECK: usize = 8;

fn rng_u64(seed: u64, stream: u64) -> u64 {
    Rng::new(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F)).next_u64()
}
