//! The endpoint: host-wide Homa state (sockets, peers, RPCs) and the driver
//! contract.
//!
//! The driver contract is in the [crate documentation](crate).
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
//! * Peers (one per remote socket): cutoffs, pending acknowledgements, and
//!   the at-most-once state of the `amo` module: the record of the requests
//!   each client ran here, and what we know of each server (its
//!   incarnation, our oldest unfinished RPC to it).
//! * An incarnation: a random 40-bit value from the seed that every packet
//!   of our server RPCs carries, so a client can tell us from an earlier
//!   process at the same address (`docs/at-most-once.md`). A client's first
//!   request to a server waits one round trip to learn its incarnation.
//!
//! Packet handling follows the kernel module (`docs/protocol.md` gives the
//! sources section by section); where it deviates, the function says so.

use core::net::SocketAddr;
use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

use crate::amo::{Retired, Seen};
use crate::config::{Config, ConfigError};
use crate::grant::scheduler::GrantScheduler;
use crate::pacer::Pacer;
use crate::peer::{Peer, PeerRef, PeerTable};
use crate::prio::Prio;
use crate::rng::Rng;
use crate::rpc::msgin::UNKNOWN_LEVEL;
use crate::rpc::msgout::MsgOut;
use crate::rpc::{local_id, Rpc, RpcState, ServerRpcs};
use crate::socket::Socket;
use crate::stats::Stats;
use crate::timers::Timer;
use crate::wire::{AckHeader, Body, DataHeader, PacketType, Repr};
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
    /// The port cannot be opened, or a request sent to it (0 is
    /// reserved: no socket has it).
    #[error("port {0} cannot be opened or addressed")]
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
    /// The socket's send cap is reached; retry after
    /// [`Event::Writable`].
    #[error("send buffer full")]
    WouldBlock,
}

/// Why an RPC failed.
///
/// Which errors say the request did not run: `PortUnreachable` and
/// `HostUnreachable` (the request never reached a server completely),
/// `NotServer`. Which say it may have: `Timeout` (the server stopped
/// answering), `OutcomeUnknown`, `Abandoned` (it did).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The peer stopped answering: nothing came from it (not even BUSY)
    /// for the configured `timeout`. The request may have run.
    #[error("rpc timed out")]
    Timeout,
    /// No socket listens at the destination (ICMP port unreachable) and
    /// the request was never completely sent: it did not run.
    #[error("destination port unreachable")]
    PortUnreachable,
    /// The destination host cannot be reached (ICMP host unreachable) and
    /// the request was never completely sent: it did not run.
    #[error("destination host unreachable")]
    HostUnreachable,
    /// There is no route to the destination's network (ICMP network
    /// unreachable, or the local stack refused the send) and the request
    /// was never completely sent: it did not run.
    #[error("destination network unreachable")]
    NetworkUnreachable,
    /// The server restarted (or vanished: ICMP unreachable) after the
    /// request may have reached it: it may or may not have run, and it
    /// will not be run again.
    #[error("server restarted or went away after the request reached it: outcome unknown")]
    OutcomeUnknown,
    /// The server ran the request (its application received it) but
    /// dropped the RPC before its response reached us (it gave up waiting,
    /// or its application discarded the request).
    #[error("server abandoned the rpc after running it")]
    Abandoned,
    /// The destination socket does not accept requests (a client-only
    /// socket); the request did not run.
    #[error("destination does not serve requests")]
    NotServer,
}

/// An ICMP error reported by the driver's network stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// Nothing listens on the destination port: fails RPCs to that socket.
    Port,
    /// The host cannot be reached: fails RPCs to every port of that address.
    Host,
    /// No route to the host's network: as `Host`, with
    /// [`RpcError::NetworkUnreachable`].
    Network,
}

/// Most destinations [`Endpoint::handle_unreachable`] gathers between two
/// walks of the RPC table; errors beyond are dropped (their RPCs end by
/// their timeouts).
const MAX_UNREACHABLE: usize = 4096;

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
        /// The request bytes (the first piece of them if `more` is not
        /// empty).
        data: Bytes,
        /// The rest of the request, in order, when it is delivered as
        /// several pieces: only a message received through
        /// [`Endpoint::handle_datagram_batch_shared`] (or
        /// [`Endpoint::handle_datagram_shared`]) in more than one packet,
        /// kept in the buffers it arrived in. Empty otherwise.
        more: Vec<Bytes>,
    },
    /// The response to a request we sent arrived in full.
    Response {
        /// Local socket port.
        port: u16,
        /// The id [`Endpoint::send_request`] returned.
        id: u64,
        /// The response bytes (the first piece of them if `more` is not
        /// empty).
        data: Bytes,
        /// The rest of the response, in order: as for
        /// [`Event::Request`]'s `more`.
        more: Vec<Bytes>,
    },
    /// Room freed under the socket's send cap after a send failed with
    /// [`Error::WouldBlock`].
    Writable {
        /// Local socket port.
        port: u16,
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
pub(crate) struct Control {
    pub(crate) dest: SocketAddr,
    pub(crate) repr: Repr,
}

/// Host-wide Homa state (like the kernel's `struct homa`): see the
/// [crate documentation](crate) for the driver contract.
pub struct Endpoint {
    pub(crate) config: Config,
    pub(crate) seg_v4: u32,
    pub(crate) seg_v6: u32,
    pub(crate) max_gso_segs_v4: u32,
    pub(crate) max_gso_segs_v6: u32,
    pub(crate) sockets: crate::socket::SocketTable,
    pub(crate) next_client_port: u16,
    pub(crate) next_client_id: u64,
    pub(crate) next_seq: u64,
    pub(crate) rpcs: crate::rpc::RpcTable,
    /// Client RPCs by id. The ids are this endpoint's own (sequential,
    /// never chosen by a peer), so a multiplicative hash is enough; the
    /// table is never iterated, so the hash decides no order.
    pub(crate) client_rpcs: rustc_hash::FxHashMap<u64, usize>,
    pub(crate) server_rpcs: ServerRpcs,
    pub(crate) peers: PeerTable,
    /// While the peer table is full and the last forced collection left it
    /// above its target, new peers are refused without another scan until
    /// then.
    pub(crate) peer_room_retry: Instant,
    pub(crate) control: VecDeque<Control>,
    pub(crate) retx_queue: VecDeque<crate::rpc::RpcRef>,
    /// Sender scheduling: transmit queues and the NIC estimate.
    pub(crate) pacer: Pacer,
    /// Receiver scheduling: ranks, incoming accounting, FIFO grants.
    pub(crate) grants: GrantScheduler,
    /// Our unscheduled cutoffs as a receiver.
    pub(crate) prio: Prio,
    pub(crate) events: VecDeque<Event>,
    /// The receive buffer of the datagram being handled, while a
    /// `handle_*_shared` call runs: DATA payloads in it may be kept
    /// without a copy.
    pub(crate) rx_owner: Option<Bytes>,
    pub(crate) stats: Stats,
    /// Every deadline: the periodic pass, fast RESENDs, peer collection,
    /// the pacer's wake-up, the next FIFO grant.
    pub(crate) timers: crate::timers::TimerTable,
    /// The receive-memory budget and the messages waiting for memory.
    pub(crate) memory: crate::memory::RxMemory,
    /// Latest time seen in any input.
    pub(crate) now: Instant,
    /// The key the timer's periodic scan starts at (see `handle_timeout`).
    pub(crate) scan_start: usize,
    /// This tick: the first RPC the per-peer RESEND cap turned away.
    pub(crate) first_capped: Option<usize>,
    /// The timer pass's list of RPC keys, kept between passes.
    pub(crate) scan_keys: Vec<usize>,
    /// The timer's periodic pass looks at every RPC, not only those due
    /// (tests compare the two).
    pub(crate) full_timer_walk: bool,
    /// Silence RESENDs issued per peer in the current timer pass.
    pub(crate) resends_this_tick: Map<SocketAddr, u32>,
    /// Destinations reported unreachable whose RPCs are not failed yet
    /// (see [`Endpoint::handle_unreachable`]), each with the last RPC
    /// sequence number when its latest error came (RPCs started after it
    /// are not failed): ports...
    pub(crate) unreachable_ports: std::collections::HashMap<SocketAddr, u64, ahash::RandomState>,
    /// ... and whole hosts, with the error their RPCs fail with.
    pub(crate) unreachable_hosts:
        std::collections::HashMap<std::net::IpAddr, (u64, RpcError), ahash::RandomState>,
    /// When the RPC table was last walked for them.
    pub(crate) unreachable_scan: Option<Instant>,
    /// At-most-once records of collected peers (bounded, oldest evicted).
    pub(crate) retired: Retired,
    /// This endpoint's incarnation as a server (40 bits, nonzero): see the
    /// `amo` module.
    pub(crate) incarnation: u64,
    /// Key of the incarnations a client's renewed at-most-once record gets
    /// (`amo::DoneIds::renew`), and how many were drawn (0: every client
    /// sees [`Endpoint::incarnation`], and nothing needs looking up).
    renew_key: u64,
    renewals: u64,
    /// The first instant any input brought: the incarnation's uptime counts
    /// from here (it cannot have run anything earlier).
    pub(crate) born: Option<Instant>,
    /// Link time of the DATA we received, per level (the timer's measure
    /// of how long granted bytes may be queued).
    pub(crate) rx_link: crate::timer::RxLink,
    /// Membership in a host table (`host` module), if joined.
    pub(crate) host: Option<Box<crate::host::Joined>>,
    /// The level of each IP precedence value (`tos >> 5`) under
    /// `config.priority_map`, `u8::MAX` for none: [`Endpoint::level_of_tos`]
    /// per datagram without a search.
    tos_levels: [u8; 8],
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
    /// Creates an endpoint. `seed` determines the first client RPC id, the
    /// endpoint's incarnation (what tells its clients apart from those of an
    /// earlier process at the same address) and the hash keys of internal
    /// tables; give every process a different, random seed.
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
        let incarnation = (rng_u64(seed, 5) & crate::wire::common::MAX_INCARNATION).max(1);
        Ok(Endpoint {
            seg_v4,
            seg_v6,
            max_gso_segs_v4: gso(seg_v4),
            max_gso_segs_v6: gso(seg_v6),
            sockets: Default::default(),
            next_client_port: first_port,
            next_client_id,
            next_seq: 1,
            rpcs: Default::default(),
            client_rpcs: Default::default(),
            server_rpcs: ServerRpcs::new(hasher()),
            peers: PeerTable::new(hasher()),
            peer_room_retry: Instant::ZERO,
            control: VecDeque::new(),
            retx_queue: VecDeque::new(),
            pacer: Pacer::new(&config),
            grants: GrantScheduler::new(
                config.fifo_grant_increment,
                config.grant_fifo_fraction,
                config.link_mbps,
                hasher(),
            ),
            prio: Prio::new(&config),
            events: VecDeque::new(),
            rx_owner: None,
            stats: Stats::default(),
            timers: Default::default(),
            memory: crate::memory::RxMemory::new(&config, hasher()),
            now: Instant::ZERO,
            scan_start: 0,
            first_capped: None,
            scan_keys: Vec::new(),
            full_timer_walk: false,
            unreachable_ports: std::collections::HashMap::with_hasher(hasher()),
            unreachable_hosts: std::collections::HashMap::with_hasher(hasher()),
            unreachable_scan: None,
            resends_this_tick: Map::with_hasher(hasher()),
            retired: Retired::new(config.max_peers, hasher()),
            incarnation,
            renew_key: rng_u64(seed, 6),
            renewals: 0,
            born: None,
            rx_link: Default::default(),
            host: None,
            tos_levels: tos_levels(&config),
            config,
        })
    }

    /// This endpoint's incarnation: the random 40-bit value its server
    /// sockets put in every packet, which clients echo in their requests
    /// (see `docs/at-most-once.md`). Tests crafting requests by hand need
    /// it; a request that does not echo it is refused, not run.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Starts this endpoint acquainted with the server socket `server`:
    /// its requests to it are bound to `incarnation` at once instead of
    /// after a probe (the first-contact round trip of `docs/at-most-once.md`).
    /// For simulators and tests that model long-running processes, whose
    /// clients met their servers long ago; `incarnation` must be the one
    /// `server`'s endpoint reports ([`Endpoint::incarnation`]). A wrong value
    /// costs a refusal (the request is then rebound or fails with
    /// `OutcomeUnknown`), never a second execution.
    pub fn assume_incarnation(&mut self, now: Instant, server: SocketAddr, incarnation: u64) {
        let inc = incarnation & crate::wire::common::MAX_INCARNATION;
        if inc == 0 {
            return;
        }
        self.touch(now);
        self.peer_entry(server, now).server.assume(inc);
    }

    /// How long this endpoint has been running, as its refusals report it:
    /// since the first instant any input gave it (never earlier than its
    /// creation, so never more than the truth). Zero when other endpoints
    /// may serve our address ([`Config::shared_address`]): our start then
    /// proves nothing about what they saw.
    pub(crate) fn uptime(&self, now: Instant) -> core::time::Duration {
        match self.born {
            Some(b) if !self.config.shared_address => now.saturating_duration_since(b),
            _ => core::time::Duration::ZERO,
        }
    }

    /// The incarnation we serve client `src` as (what its requests must
    /// echo) and, if it is not the endpoint's own, since when: another
    /// value once the client's at-most-once record was renewed.
    #[inline]
    pub(crate) fn served(&self, src: SocketAddr) -> (u64, Option<Instant>) {
        if self.renewals == 0 {
            return (self.incarnation, None);
        }
        let (inc, at) = match self.peers.get(&src) {
            Some(p) => p.done.incarnation(),
            None => self.retired.incarnation(src),
        };
        if inc == 0 {
            (self.incarnation, None)
        } else {
            (inc, at)
        }
    }

    /// The uptime a refusal by an incarnation that started at `since`
    /// (`None`: the endpoint's own) reports.
    pub(crate) fn refusal_uptime(
        &self,
        now: Instant,
        since: Option<Instant>,
    ) -> core::time::Duration {
        match since {
            Some(t) if !self.config.shared_address => now.saturating_duration_since(t),
            _ => self.uptime(now),
        }
    }

    /// Renews client `src`'s at-most-once record (it needed room for one
    /// more earlier client run): from now on we serve the client as a new
    /// incarnation, as if we had restarted for it alone. Its requests open
    /// here go on; the others bound to the earlier value are refused, and
    /// the client decides by the refusal's uptime (from now) whether they
    /// may have run.
    pub(crate) fn renew_record(&mut self, src: SocketAddr, now: Instant) {
        let Some(peer) = self.peers.get_mut(&src) else {
            return;
        };
        let current = peer.done.incarnation().0;
        let inc = loop {
            self.renewals += 1;
            let v = Rng::new(self.renew_key ^ self.renewals.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .next_u64()
                & crate::wire::common::MAX_INCARNATION;
            if v != 0 && v != self.incarnation && v != current {
                break v;
            }
        };
        peer.done.renew(inc, now);
        self.stats.records_renewed += 1;
    }

    /// Starts the endpoint's uptime at `now` (the uptime an RPC_UNKNOWN
    /// tells clients, which decides whether a request could have reached
    /// an earlier incarnation). Without it the uptime counts from the
    /// first input, which after a restart may come well after the socket
    /// was ready: clients then took requests sent to the new incarnation
    /// for ones the old one may have run (`OutcomeUnknown`). Call it when
    /// the endpoint's socket is bound, not earlier.
    pub fn start(&mut self, now: Instant) {
        self.touch(now);
    }

    /// Notes the time of an input: `now` never goes backwards, and the
    /// first one starts the uptime.
    #[inline]
    pub(crate) fn touch(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if self.born.is_none() {
            self.born = Some(now);
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Makes the timer's periodic pass look at every RPC, as it did before
    /// it skipped those that did not change and whose time has not come
    /// (tests check that both do the same).
    #[doc(hidden)]
    pub fn set_full_timer_walk(&mut self, on: bool) {
        self.full_timer_walk = on;
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

    /// Counters and gauges, for monitoring.
    pub fn metrics(&self) -> crate::stats::Metrics {
        let client = self.client_rpcs.len();
        crate::stats::Metrics {
            stats: self.stats.clone(),
            client_rpcs: client,
            server_rpcs: self.rpcs.len() - client,
            peers: self.peers.len(),
            rx_bytes: self.memory.total(),
            total_incoming: self.grants.total_incoming(),
            active_grants: self.grants.active_count(),
            waiting_for_memory: self.memory.waiting_count(),
            tx_granted_unsent: self
                .rpcs
                .iter()
                .filter_map(|(_, r)| r.msgout.as_ref())
                .map(|m| m.granted.saturating_sub(m.next_xmit) as u64)
                .sum(),
            tx_unsent: self
                .rpcs
                .iter()
                .filter_map(|(_, r)| r.msgout.as_ref())
                .map(|m| m.bytes_left() as u64)
                .sum(),
            min_rtt_nanos: self
                .peers
                .values()
                .filter_map(|p| p.rtt)
                .map(|d| d.as_nanos() as u64)
                .min(),
        }
    }

    /// Number of open sockets.
    pub fn socket_count(&self) -> usize {
        self.sockets.len()
    }

    /// A delivered message's pieces (from [`Event::Request`] or
    /// [`Event::Response`] on socket `port`) copied into one contiguous
    /// `Bytes` that counts in the socket's receive budget as the pieces
    /// did (they are released as they drop): an application that holds
    /// copies is held back like one that holds the pieces. Without such a
    /// socket the copy is not counted.
    pub fn contiguous_copy<'a>(
        &self,
        port: u16,
        pieces: impl Iterator<Item = &'a Bytes> + Clone,
    ) -> Bytes {
        let mut all = Vec::with_capacity(pieces.clone().map(Bytes::len).sum());
        for p in pieces {
            all.extend_from_slice(p);
        }
        match self.sockets.get(&port) {
            Some(s) => s.deliver(all),
            None => Bytes::from(all),
        }
    }

    /// Bytes of incoming-message buffers currently held.
    pub fn rx_bytes(&self) -> u64 {
        self.memory.total()
    }

    /// True if the endpoint holds no RPC, no queued packet and no event: a
    /// quiescent endpoint (peers may remain for at-most-once).
    pub fn is_idle(&self) -> bool {
        self.rpcs.is_empty()
            && self.control.is_empty()
            && self.events.is_empty()
            && self.pacer.is_empty()
            && self.grants.is_empty()
            && self.memory.total() == 0
    }

    /// True if [`Endpoint::poll_transmit`] would return `None` and change
    /// nothing: no control packet, grant pass, retransmission or sendable
    /// message is waiting, and no pacer wake-up is set. Cheaper than the
    /// call it saves; drivers drain `poll_transmit` after every input and
    /// most inputs (an ACK, a request whose response the application
    /// computes) produce nothing to send.
    pub fn transmit_idle(&self, now: Instant) -> bool {
        self.control.is_empty()
            && !self.grants.pass_wanted()
            && !self.timers.is_expired(Timer::FifoGrant, now)
            && self.retx_queue.is_empty()
            && self.pacer.is_empty()
            && !self.timers.is_set(Timer::Pacer)
    }

    /// The measured round-trip time to a peer socket, if any.
    pub fn peer_rtt(&self, peer: SocketAddr) -> Option<core::time::Duration> {
        self.peers.get(&peer).and_then(|p| p.rtt)
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
        self.sockets.insert(port, Socket::new(port < 0x8000));
        Ok(port)
    }

    pub(crate) fn assign_client_port(&mut self) -> Result<u16, Error> {
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
        self.ack_all(port);
        self.events.retain(|e| match e {
            Event::Request { port: p, .. }
            | Event::Response { port: p, .. }
            | Event::Writable { port: p }
            | Event::Failed { port: p, .. } => *p != port,
        });
        ended.sort_unstable();
        Ok(ended)
    }

    /// Sends every ack the closing socket `port` kept to piggyback on a
    /// later request: its servers free those RPCs now instead of asking
    /// with NEED_ACK (which would meet an ICMP error once the socket is
    /// gone).
    fn ack_all(&mut self, port: u16) {
        let servers: Vec<SocketAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| p.acks_pending(port) > 0)
            .map(|(a, _)| *a)
            .collect();
        for server in servers {
            while let Some(acks) = self
                .peers
                .get_mut(&server)
                .map(|p| p.take_acks(port))
                .filter(|a| !a.is_empty())
            {
                // The packet names the first; the rest ride in its list.
                let named = acks[0].client_id;
                self.stats.acks_at_close += acks.len() as u64;
                self.send_control(port, server, named, Body::Ack(AckHeader::new(&acks[1..])));
            }
        }
    }

    // ----- application commands ----------------------------------------

    pub(crate) fn check_message(&self, len: usize) -> Result<(), Error> {
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

    pub(crate) fn seg_size(&self, addr: &SocketAddr) -> u32 {
        if addr.is_ipv6() {
            self.seg_v6
        } else {
            self.seg_v4
        }
    }

    /// [`Endpoint::peer_entry`] for callers that also need the
    /// configuration: one table lookup.
    pub(crate) fn peer_entry_with<R>(
        &mut self,
        addr: SocketAddr,
        now: Instant,
        f: impl FnOnce(&Config, &mut Peer) -> R,
    ) -> (PeerRef, R) {
        self.timers
            .set_if_unset(Timer::PeerGc, now + self.config.peer_idle);
        let (r, peer) = peer_slot(
            &mut self.peers,
            &mut self.retired,
            &self.prio.cutoffs,
            addr,
            now,
        );
        (r, f(&self.config, peer))
    }

    /// [`Endpoint::peer_entry_with`] for the peer of RPC `key`, found by
    /// the RPC's handle while it is valid.
    #[inline]
    pub(crate) fn rpc_peer_with<R>(
        &mut self,
        key: usize,
        now: Instant,
        f: impl FnOnce(&Config, &mut Peer) -> R,
    ) -> R {
        let rpc = &self.rpcs[key];
        let (r, addr) = (rpc.peer_ref, rpc.peer);
        self.timers
            .set_if_unset(Timer::PeerGc, now + self.config.peer_idle);
        let peer = match self.peers.get_mut_by(r, &addr) {
            Some(p) => {
                p.last_active = now;
                p
            }
            None => {
                let (r, p) = peer_slot(
                    &mut self.peers,
                    &mut self.retired,
                    &self.prio.cutoffs,
                    addr,
                    now,
                );
                self.rpcs[key].peer_ref = r;
                p
            }
        };
        f(&self.config, peer)
    }

    /// The state of peer `addr`, created if new (restoring its
    /// at-most-once floor if it was collected).
    pub(crate) fn peer_entry(&mut self, addr: SocketAddr, now: Instant) -> &mut Peer {
        self.peer_entry_ref(addr, now).1
    }

    /// [`Endpoint::peer_entry`] with the peer's handle.
    pub(crate) fn peer_entry_ref(
        &mut self,
        addr: SocketAddr,
        now: Instant,
    ) -> (PeerRef, &mut Peer) {
        self.timers
            .set_if_unset(Timer::PeerGc, now + self.config.peer_idle);
        peer_slot(
            &mut self.peers,
            &mut self.retired,
            &self.prio.cutoffs,
            addr,
            now,
        )
    }

    /// Unscheduled bytes for a message to `peer`: RTTbytes once the RTT is
    /// measured (if configured), else the configured value.
    fn unsched_bytes_for(&self, peer: SocketAddr) -> u32 {
        unsched_bytes_of(&self.config, self.peers.get(&peer))
    }

    /// The unscheduled bytes this endpoint would use for a message to
    /// `peer` now.
    pub fn peer_unsched_bytes(&self, peer: SocketAddr) -> u32 {
        self.unsched_bytes_for(peer)
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
        self.touch(now);
        if !self.sockets.contains_key(&port) {
            return Err(Error::NoSocket(port));
        }
        if dest.port() == 0 {
            // No socket has port 0: the call could only time out.
            return Err(Error::InvalidPort(0));
        }
        self.check_message(request.len())?;
        self.charge_tx(port, request.len())?;
        let id = self.next_client_id;
        self.next_client_id = self.next_client_id.wrapping_add(2);
        let seg = self.seg_size(&dest);
        let len = request.len() as u32;
        let seq = self.next_seq();
        let key = self.rpcs.vacant_key();
        let (peer_ref, (prio, unsched, echo)) = self.peer_entry_with(dest, now, |c, peer| {
            peer.rpcs += 1;
            peer.server.push_live(id);
            let echo = peer.server.incarnation();
            if echo == 0 {
                // Not heard from it yet: the request waits for its
                // incarnation (the `amo` module).
                peer.server
                    .wait_for_incarnation(crate::rpc::RpcRef { seq, key });
            }
            let prio = peer.unsched_priority(len, c.num_priorities);
            (prio, unsched_bytes_of(c, Some(peer)), echo)
        });
        let key2 = self
            .rpcs
            .start(id, seq, dest, peer_ref, port, RpcState::Outgoing, echo, now);
        debug_assert_eq!(key, key2);
        self.rpcs[key].msgout = Some(MsgOut::new(request, seg, unsched, prio, now));
        self.client_rpcs.insert(id, key);
        if echo == 0 {
            self.probe_incarnation(now, key, false);
        }
        self.stats.requests_started += 1;
        self.stats
            .tx_sizes
            .add(self.rpcs[key].msgout.as_ref().map_or(0, |m| m.length()));
        self.hold_if_plugged(port, key);
        self.update_xmit(key);
        self.arm_tick(now);
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
        self.touch(now);
        self.check_message(response.len())?;
        let key = self
            .server_rpcs
            .get(&self.rpcs, &peer, id)
            .ok_or(Error::UnknownRpc)?;
        if self.rpcs[key].port != port {
            return Err(Error::UnknownRpc);
        }
        if self.rpcs[key].state != RpcState::InService {
            return Err(Error::WrongState);
        }
        self.charge_tx(port, response.len())?;
        let response_len = response.len() as u32;
        let seg = self.seg_size(&peer);
        let (prio, unsched) = self.rpc_peer_with(key, now, |c, p| {
            let prio = p.unsched_priority(response_len, c.num_priorities);
            (prio, unsched_bytes_of(c, Some(p)))
        });
        let rpc = &mut self.rpcs[key];
        rpc.state = RpcState::Outgoing;
        rpc.heard(now);
        rpc.busy = false;
        rpc.msgout = Some(MsgOut::new(response, seg, unsched, prio, now));
        self.stats.responses_started += 1;
        self.stats.tx_sizes.add(response_len);
        self.hold_if_plugged(port, key);
        self.update_xmit(key);
        Ok(())
    }

    /// Drops a request delivered by [`Event::Request`] without answering
    /// it: the server RPC is freed and the request still counts as run
    /// (at-most-once). The client learns it at its next RESEND: its RPC
    /// fails with [`RpcError::Abandoned`].
    pub fn discard_request(&mut self, port: u16, peer: SocketAddr, id: u64) -> Result<(), Error> {
        let key = self.delivered_request(port, peer, id)?;
        self.free_rpc(key);
        Ok(())
    }

    /// [`Endpoint::discard_request`] for an application that will not
    /// answer: the client is also told at once (RPC_UNKNOWN "abandoned",
    /// as its later RESENDs would be), so its call fails now rather than
    /// at its next probe.
    pub fn abandon_request(&mut self, port: u16, peer: SocketAddr, id: u64) -> Result<(), Error> {
        let key = self.delivered_request(port, peer, id)?;
        // Told while the RPC still exists: the refusal carries the value
        // the request was bound to (its client's record may have been
        // renewed since), or the client reads "another incarnation".
        self.refuse(port, peer, id, crate::wire::UnknownStatus::Abandoned);
        self.free_rpc(key);
        self.stats.requests_abandoned += 1;
        Ok(())
    }

    /// Takes back a request delivered by [`Event::Request`] that the
    /// application never saw (a driver with no room to queue it): the
    /// server RPC is freed as if the request had not arrived, so it does
    /// not count as run; the client's next probe is answered "never seen"
    /// and it sends the request again.
    pub fn decline_request(&mut self, port: u16, peer: SocketAddr, id: u64) -> Result<(), Error> {
        let key = self.delivered_request(port, peer, id)?;
        self.release_rpc(key, Some(false));
        self.stats.requests_declined += 1;
        Ok(())
    }

    /// The key of server RPC `id` from `peer` on `port` whose request was
    /// delivered and not answered.
    fn delivered_request(&self, port: u16, peer: SocketAddr, id: u64) -> Result<usize, Error> {
        let key = self
            .server_rpcs
            .get(&self.rpcs, &peer, id)
            .ok_or(Error::UnknownRpc)?;
        if self.rpcs[key].port != port {
            return Err(Error::UnknownRpc);
        }
        if self.rpcs[key].state != RpcState::InService {
            return Err(Error::WrongState);
        }
        Ok(key)
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
        self.handle_datagram_at_level(now, src, None, datagram);
    }

    /// Like [`Endpoint::handle_datagram`], with the priority level the
    /// packet arrived at (from the IP TOS / traffic-class byte, see
    /// [`Endpoint::level_of_tos`], or from a simulator). Knowing arrival
    /// levels lets the receiver recover clearly lost packets without waiting
    /// for the silence timer (see the timer module).
    #[inline]
    pub fn handle_datagram_at_level(
        &mut self,
        now: Instant,
        src: SocketAddr,
        level: Option<u8>,
        datagram: &[u8],
    ) {
        self.touch(now);
        let level = self.arrival_level(level);
        match Repr::parse_with_payload(datagram) {
            Ok((repr, payload)) => self.dispatch(now, src, level, &repr, payload, datagram.len()),
            Err(_) => self.stats.malformed += 1,
        }
    }

    /// Like [`Endpoint::handle_datagram_at_level`] for each of the
    /// datagrams `batch` holds back to back, every `segment` bytes (a
    /// GRO batch: the last may be shorter), all from `src` at `level`.
    /// The result is the same as handing them over one by one, but
    /// consecutive DATA packets of one message are added to it without
    /// looking its RPC up again, and its grant state is updated once for
    /// the run instead of once per packet.
    pub fn handle_datagram_batch_at_level(
        &mut self,
        now: Instant,
        src: SocketAddr,
        level: Option<u8>,
        batch: &[u8],
        segment: usize,
    ) {
        self.touch(now);
        let level = self.arrival_level(level);
        self.handle_batch(now, src, level, batch, segment.max(1));
    }

    /// [`Endpoint::handle_datagram_at_level`] for a datagram the caller
    /// hands over in its receive buffer: the payload of a DATA packet of a
    /// message longer than one packet may be kept as a slice of
    /// `datagram` (no copy; the buffer lives until the message is
    /// dropped), and the message is then delivered as several pieces
    /// (the events' `more`). See the `rpc::msgin` module for when bytes
    /// are still copied.
    pub fn handle_datagram_shared(
        &mut self,
        now: Instant,
        src: SocketAddr,
        level: Option<u8>,
        datagram: &Bytes,
    ) {
        self.rx_owner = Some(datagram.clone());
        self.handle_datagram_at_level(now, src, level, datagram);
        self.rx_owner = None;
    }

    /// [`Endpoint::handle_datagram_batch_at_level`] for a GRO batch handed
    /// over in its receive buffer, as [`Endpoint::handle_datagram_shared`]
    /// does for one datagram.
    pub fn handle_datagram_batch_shared(
        &mut self,
        now: Instant,
        src: SocketAddr,
        level: Option<u8>,
        batch: &Bytes,
        segment: usize,
    ) {
        self.rx_owner = Some(batch.clone());
        self.handle_datagram_batch_at_level(now, src, level, batch, segment);
        self.rx_owner = None;
    }

    /// An arrival level as the receive path keeps it.
    #[inline]
    fn arrival_level(&self, level: Option<u8>) -> u8 {
        level.map_or(UNKNOWN_LEVEL, |l| l.min(self.config.num_priorities - 1))
    }

    /// Handles one parsed packet of `len` bytes.
    #[inline(always)]
    pub(crate) fn dispatch(
        &mut self,
        now: Instant,
        src: SocketAddr,
        level: u8,
        repr: &Repr,
        payload: &[u8],
        datagram_len: usize,
    ) {
        let ty = repr.body.packet_type();
        self.stats.received.add(ty, datagram_len);
        if repr.sport != src.port() {
            self.stats.port_mismatch += 1;
            return;
        }
        if let Some(p) = self.peers.get_mut(&src) {
            p.last_heard = now;
        }
        if ty == PacketType::Freeze {
            self.stats.freeze += 1;
            return;
        }
        let Some(server) = self.sockets.get(&repr.dport).map(|s| s.server) else {
            self.stats.no_socket += 1;
            return;
        };
        let local = local_id(repr.sender_id);
        let inc = repr.incarnation;
        match &repr.body {
            Body::Data(h) => {
                self.handle_data(now, src, repr.dport, server, local, inc, h, payload, level)
            }
            Body::Grant(g) => self.handle_grant(now, src, repr.dport, local, inc, g),
            Body::Resend(r) => self.handle_resend(now, src, repr.dport, server, local, inc, r),
            Body::RpcUnknown(u) => self.handle_rpc_unknown(now, src, repr.dport, local, inc, *u),
            Body::Busy => self.handle_busy(now, src, repr.dport, local, inc),
            Body::Cutoffs(c) => self.handle_cutoffs(src, c),
            Body::NeedAck => self.handle_need_ack(now, src, repr.dport, local, inc),
            Body::Ack(a) => self.handle_ack(now, src, repr.dport, local, a),
            Body::Freeze => {}
        }
    }

    /// The priority level whose packets carry this IP TOS / traffic-class
    /// byte under [`Config::priority_map`], if any.
    #[inline]
    pub fn level_of_tos(&self, tos: u8) -> Option<u8> {
        let l = self.tos_levels[(tos >> 5) as usize];
        (l != u8::MAX).then_some(l)
    }

    /// Reports an ICMP error for packets sent to `dest`: client RPCs to it
    /// fail with the matching [`RpcError`], server RPCs to it are dropped.
    ///
    /// Errors arrive one per packet sent to a dead destination, and
    /// finding a destination's RPCs walks the RPC table; so the errors are
    /// gathered (up to 4 096 destinations) and the table is
    /// walked for all of them at most once per [`Config::tick`]: at once
    /// if the last walk is older, else at the next tick. An error about a
    /// port none of our RPCs uses costs a lookup.
    pub fn handle_unreachable(&mut self, now: Instant, dest: SocketAddr, kind: Unreachable) {
        self.touch(now);
        let pending = self.unreachable_ports.len() + self.unreachable_hosts.len();
        let seq = self.next_seq;
        match kind {
            Unreachable::Port => {
                if self.peers.get(&dest).is_none_or(|p| p.rpcs == 0) {
                    return;
                }
                if pending < MAX_UNREACHABLE || self.unreachable_ports.contains_key(&dest) {
                    self.unreachable_ports.insert(dest, seq);
                }
            }
            Unreachable::Host | Unreachable::Network => {
                let error = if kind == Unreachable::Host {
                    RpcError::HostUnreachable
                } else {
                    RpcError::NetworkUnreachable
                };
                let ip = dest.ip();
                if pending < MAX_UNREACHABLE || self.unreachable_hosts.contains_key(&ip) {
                    self.unreachable_hosts.insert(ip, (seq, error));
                }
            }
        }
        let due = self
            .unreachable_scan
            .is_none_or(|t| now.saturating_duration_since(t) >= self.config.tick);
        if due {
            self.fail_unreachable(now);
        } else {
            self.arm_tick(now);
        }
    }

    /// Fails the RPCs of the destinations [`Endpoint::handle_unreachable`]
    /// gathered, in one walk of the RPC table.
    pub(crate) fn fail_unreachable(&mut self, now: Instant) {
        if self.unreachable_ports.is_empty() && self.unreachable_hosts.is_empty() {
            return;
        }
        self.unreachable_scan = Some(now);
        self.stats.unreachable_scans += 1;
        let (ports, hosts) = (&self.unreachable_ports, &self.unreachable_hosts);
        let keys: Vec<(usize, RpcError)> = self
            .rpcs
            .iter()
            .filter_map(|(k, r)| {
                // Only RPCs that existed when the error came.
                if ports.get(&r.peer).is_some_and(|&s| r.seq <= s) {
                    return Some((k, RpcError::PortUnreachable));
                }
                match hosts.get(&r.peer.ip()) {
                    Some(&(s, error)) if r.seq <= s => Some((k, error)),
                    _ => None,
                }
            })
            .collect();
        self.unreachable_ports.clear();
        self.unreachable_hosts.clear();
        self.stats.rpcs_unreachable += keys.len() as u64;
        for (key, unreachable) in keys {
            // A request that may be complete at the server may have run
            // there before it went away.
            let r = &self.rpcs[key];
            let maybe_ran = r.echo != 0
                && (r.state != RpcState::Outgoing
                    || r.msgout.as_ref().is_none_or(|m| m.fully_sent()));
            let error = if r.is_client() && maybe_ran {
                self.stats.outcome_unknown += 1;
                RpcError::OutcomeUnknown
            } else {
                unreachable
            };
            self.fail_rpc(key, error);
        }
    }

    // ----- driver outputs ------------------------------------------------

    /// The next application event, if any.
    #[inline]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ----- internals: RPC table ------------------------------------------

    pub(crate) fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Finds the RPC a packet from `src` to local `port` with local id
    /// `local` belongs to.
    #[inline(always)]
    pub(crate) fn find_rpc(&self, src: SocketAddr, port: u16, local: u64) -> Option<usize> {
        let key = if local & 1 == 0 {
            *self.client_rpcs.get(&local)?
        } else {
            self.server_rpcs.get(&self.rpcs, &src, local)?
        };
        let rpc = &self.rpcs[key];
        (rpc.peer == src && rpc.port == port).then_some(key)
    }

    /// Removes an RPC and every reference to it, returns its receive
    /// buffer to the budget, and records finished requests for
    /// at-most-once.
    pub(crate) fn free_rpc(&mut self, key: usize) {
        self.release_rpc(key, None);
    }

    /// [`Endpoint::free_rpc`]; for a server RPC, `ran` says whether its
    /// request counts as run (recorded, never run again), by default
    /// whether the application saw it.
    fn release_rpc(&mut self, key: usize, ran: Option<bool>) {
        let r = &self.rpcs[key];
        if r.msgin.is_some() || r.grant_rank.is_some() {
            // (An RPC without an incoming message is not in the grant
            // scheduler, and freeing it changes nothing a grant pass
            // looks at: skip scheduling a pass.)
            self.grant_remove(key);
        }
        let rpc = self.rpcs.remove(key);
        let ran = ran.unwrap_or(rpc.state != RpcState::Incoming);
        self.forget_rpc(key, &rpc, ran);
        self.rpcs.recycle(rpc);
    }

    /// [`Endpoint::free_rpc`] of an RPC just removed from the table.
    fn forget_rpc(&mut self, key: usize, rpc: &Rpc, ran: bool) {
        if rpc.is_client() {
            self.client_rpcs.remove(&rpc.id);
        } else {
            self.server_rpcs.remove(&mut self.rpcs, key, rpc);
        }
        self.xmit_unqueue(key, rpc.seq, rpc.xmit_key);
        if let Some(m) = &rpc.msgin {
            self.uncharge_rx(rpc.peer, rpc.port, crate::incoming::rx_charge(m));
        }
        if let Some(m) = &rpc.msgout {
            self.uncharge_tx(rpc.port, m.length());
        }
        if let Some((len, _)) = rpc.waiting {
            if self.memory.unwait(&crate::memory::WaitKey {
                length: len,
                rpc: crate::rpc::RpcRef { seq: rpc.seq, key },
                peer: rpc.peer,
                port: rpc.port,
            }) {
                self.grants.request_pass();
            }
        }
        let now = self.now;
        let mut next_oldest = None;
        let mut renew = false;
        if let Some(peer) = self.peers.get_mut_by(rpc.peer_ref, &rpc.peer) {
            peer.rpcs = peer.rpcs.saturating_sub(1);
            peer.last_active = now;
            if !rpc.is_client() {
                peer.server_rpcs = peer.server_rpcs.saturating_sub(1);
                if ran && peer.done.serves(rpc.echo, self.incarnation) {
                    // The application saw this request: never again. (One
                    // bound to the value before a renewal is refused by it.)
                    renew = !peer.done.insert(rpc.id);
                }
            } else {
                let client_rpcs = &self.client_rpcs;
                next_oldest = peer.server.next_after_oldest(
                    rpc.id,
                    |id| client_rpcs.contains_key(&id),
                    peer.rpcs,
                );
                if rpc.echo == 0 {
                    peer.server
                        .forget_waiting(crate::rpc::RpcRef { seq: rpc.seq, key });
                }
            }
        }
        if let Some(id) = next_oldest {
            self.nudge_oldest(id);
        }
        if renew {
            self.renew_record(rpc.peer, now);
        }
    }

    /// Our oldest RPC to a server that once said BUSY finished, and `id`
    /// is the next: if the server refused it with BUSY (a full record of
    /// finished ids admits only the client's oldest request), it is probed
    /// now rather than at its next probe, so that the server takes it at
    /// once (the probe is answered "never seen" and the request sent
    /// again). Without this a client with many requests queued behind a
    /// full record got one admitted per probe interval: 145 requests took
    /// over a second in a fuzzed run.
    fn nudge_oldest(&mut self, id: u64) {
        let Some(&key) = self.client_rpcs.get(&id) else {
            return;
        };
        let rpc = &self.rpcs[key];
        let refused = rpc.state == RpcState::Outgoing
            && rpc.busy
            && rpc.echo != 0
            && rpc.msgout.as_ref().is_some_and(|m| m.fully_sent());
        if refused {
            self.stats.oldest_nudged += 1;
            self.probe_peer(self.now, key);
        }
    }

    /// Ensures there is room for state about `addr` in the peer table,
    /// collecting idle peers (oldest first) if the table is full. Returns
    /// false if the peer is new and no room can be made.
    pub(crate) fn make_room_for_peer(&mut self, now: Instant, addr: SocketAddr) -> bool {
        if self.peers.contains_key(&addr) || self.peers.len() < self.config.max_peers {
            return true;
        }
        if now < self.peer_room_retry {
            // The last scan left the table above its target: strangers
            // must not make every datagram scan and sort the whole table.
            return false;
        }
        self.stats.peer_table_scans += 1;
        self.collect_peers(now, true);
        if self.peers.len() > self.pressed_peer_target() {
            // Too few idle peers to reach the target (none, or peers going
            // idle one at a time): the next scan would free as little, so
            // it waits. Room made now is still used.
            self.peer_room_retry = now + PEER_ROOM_RETRY;
        }
        self.peers.len() < self.config.max_peers
    }

    /// Peers a forced collection keeps at most: 90% of the limit, and at
    /// least one below it, or a small table never frees room.
    fn pressed_peer_target(&self) -> usize {
        self.config.max_peers - (self.config.max_peers / 10).max(1)
    }

    /// Removes idle peers: those with no RPC or pending ack, silent for
    /// `peer_idle`, or (when `pressed`) the longest-idle ones beyond the
    /// table limit, down to 90% of it.
    pub(crate) fn collect_peers(&mut self, now: Instant, pressed: bool) {
        let idle_for = self.config.peer_idle;
        let mut idle: Vec<(Instant, SocketAddr)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.idle())
            .map(|(a, p)| (p.last_active, *a))
            .collect();
        idle.sort_unstable();
        let target = if pressed {
            self.pressed_peer_target()
        } else {
            usize::MAX
        };
        for (last, addr) in idle {
            let expired = now.saturating_duration_since(last) >= idle_for;
            if !expired && self.peers.len() <= target {
                break;
            }
            self.retire_peer(addr);
        }
    }

    /// Ends an RPC because of `error`: a client RPC reports the failure, a
    /// server RPC just disappears.
    pub(crate) fn fail_rpc(&mut self, key: usize, error: RpcError) {
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

    pub(crate) fn queue_control(&mut self, dest: SocketAddr, repr: Repr) {
        if self.control.len() >= self.config.max_control_queue {
            self.stats.control_queue_full += 1;
            return;
        }
        self.control.push_back(Control { dest, repr });
    }

    /// Collects a peer, keeping only its at-most-once floor.
    fn retire_peer(&mut self, addr: SocketAddr) {
        let Some(peer) = self.peers.remove(&addr) else {
            return;
        };
        self.stats.peers_collected += 1;
        self.retired.keep(addr, peer.done);
    }

    /// What the at-most-once record says about request `id` from
    /// `client` (also for a collected client).
    pub(crate) fn request_seen(&self, client: SocketAddr, id: u64) -> Seen {
        match self.peers.get(&client) {
            Some(p) => p.done.seen(id),
            None => self.retired.seen(client, id),
        }
    }

    /// Number of collected peers whose at-most-once floor is kept.
    pub fn retired_peer_count(&self) -> usize {
        self.retired.len()
    }

    /// Queues a control packet from local `port` to `dest` carrying
    /// `sender_id` (our local id for the RPC). Packets of our server RPCs
    /// carry our incarnation; those of our client RPCs the incarnation their
    /// request is bound to (or the one we know for the peer).
    pub(crate) fn send_control(&mut self, port: u16, dest: SocketAddr, sender_id: u64, body: Body) {
        let incarnation = if sender_id & 1 == 1 {
            if self.renewals == 0 {
                self.incarnation
            } else {
                // An RPC keeps the value it was created under.
                match self.server_rpcs.get(&self.rpcs, &dest, sender_id) {
                    Some(k) => self.rpcs[k].echo,
                    None => self.served(dest).0,
                }
            }
        } else {
            match self.client_rpcs.get(&sender_id) {
                Some(&k) => self.rpcs[k].echo,
                None => self.peers.get(&dest).map_or(0, |p| p.server.incarnation()),
            }
        };
        let repr = Repr {
            sport: port,
            dport: dest.port(),
            sender_id,
            incarnation,
            body,
        };
        self.queue_control(dest, repr);
    }

    pub(crate) fn queue_retx(&mut self, key: usize) {
        let rpc = &mut self.rpcs[key];
        if !rpc.in_retx_queue {
            rpc.in_retx_queue = true;
            self.retx_queue
                .push_back(crate::rpc::RpcRef { seq: rpc.seq, key });
        }
    }

    pub(crate) fn live(&self, key: usize, seq: u64) -> bool {
        self.rpcs.get(key).is_some_and(|r| r.seq == seq)
    }
}

/// How long a full peer table whose forced collection could not bring it
/// down to its target (90%) refuses new peers before it scans again: the
/// scan walks the table and sorts every idle peer, and strangers'
/// datagrams must not buy one each.
pub(crate) const PEER_ROOM_RETRY: core::time::Duration = core::time::Duration::from_millis(10);

/// Most RESEND packets one retransmission request issues for one RPC.
pub(crate) const MAX_RESENDS_PER_CHECK: usize = 8;

/// The entry of peer `addr` in `peers`, created if new: one hash lookup
/// when it exists.
/// A new peer starts with `own_cutoffs`, ours (see `Peer::new`).
fn peer_slot<'a>(
    peers: &'a mut PeerTable,
    retired: &mut Retired,
    own_cutoffs: &[u32; crate::wire::MAX_PRIORITIES],
    addr: SocketAddr,
    now: Instant,
) -> (PeerRef, &'a mut Peer) {
    let (r, peer) = peers.entry(addr, || {
        Peer::new(addr.port(), now, retired.take(addr), *own_cutoffs)
    });
    peer.last_active = now;
    (r, peer)
}

/// The lowest level whose `priority_map` value is each precedence value
/// (`u8::MAX`: none), for [`Endpoint::level_of_tos`].
fn tos_levels(config: &Config) -> [u8; 8] {
    let mut t = [u8::MAX; 8];
    for (value, slot) in t.iter_mut().enumerate() {
        if let Some(l) =
            (0..config.num_priorities).find(|&l| config.priority_map[l as usize] as usize == value)
        {
            *slot = l;
        }
    }
    t
}

/// Unscheduled bytes for a message to a peer with this state: RTTbytes
/// once the RTT is measured (if configured), else the configured value.
fn unsched_bytes_of(c: &Config, peer: Option<&Peer>) -> u32 {
    match peer {
        Some(p) if c.unsched_from_rtt => {
            p.unsched_bytes(c.link_mbps, c.unsched_bytes, c.max_unscheduled)
        }
        _ => c.unsched_bytes,
    }
}

fn rng_u64(seed: u64, stream: u64) -> u64 {
    Rng::new(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F)).next_u64()
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    #[test]
    fn uptime__counts_from_start_not_from_the_first_input() {
        let mut ep = Endpoint::new(Config::default(), 1).unwrap();
        ep.start(Instant::from_micros(10_000));
        ep.touch(Instant::from_micros(60_000));
        let up = ep.uptime(Instant::from_micros(60_000));
        assert_eq!(up, core::time::Duration::from_millis(50));
    }

    #[test]
    fn level_of_tos__lowest_level_mapped_to_the_precedence_or_none() {
        let maps: [(u8, [u8; 8]); 3] = [
            (8, [0, 1, 2, 3, 4, 5, 6, 7]),
            (8, [1, 1, 3, 3, 5, 5, 7, 7]),
            (4, [7, 6, 5, 4, 0, 1, 2, 3]),
        ];
        for (num_priorities, priority_map) in maps {
            let config = Config {
                num_priorities,
                priority_map,
                ..Config::default()
            };
            let ep = Endpoint::new(config, 1).unwrap();
            for tos in 0..=255u8 {
                let want = (0..num_priorities).find(|&l| priority_map[l as usize] == tos >> 5);
                assert_eq!(ep.level_of_tos(tos), want, "map {priority_map:?} tos {tos}");
            }
        }
    }
}
