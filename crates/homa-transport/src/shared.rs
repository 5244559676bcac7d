//! The engine room both APIs share: one UDP socket, one protocol
//! [`Endpoint`], and the bookkeeping that turns the endpoint's events into
//! completed calls and queued requests.
//!
//! This module moves datagrams and time and nothing else: every datagram
//! read goes to [`Endpoint::handle_datagram`] (one call per Homa packet of a
//! GRO batch), every input is followed by draining
//! [`Endpoint::poll_transmit`] into `sendmsg` (GSO when a transmit holds
//! several segments, the TOS byte on every send) and
//! [`Endpoint::poll_event`] into call slots. Who calls [`Shared::turn`] and
//! when (a waiting application thread, the background thread, a tokio task)
//! is the business of the API modules.
//!
//! All state sits behind one mutex. It is only ever held for non-blocking
//! work (a `recvmmsg` with `MSG_DONTWAIT`, protocol processing, `sendmsg`);
//! threads block outside it.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;
use std::thread::Thread;
use std::time::Duration;

use bytes::Bytes;
use homa_proto::{Endpoint, Event, Instant, Unreachable};

use crate::capture::Capture;
use crate::sys::{self, RawAddr, RecvBatch, TosOption};
use crate::{Config, Error};

/// A request delivered to a server socket, waiting for its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The server's id for the RPC; pass it to `reply`.
    pub id: u64,
    /// The client's address; pass it to `reply`.
    pub peer: SocketAddr,
    /// The request message.
    pub body: Bytes,
}

/// What the socket learned about the kernel when it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Offloads {
    /// Multi-packet transmits go out as one GSO send (`UDP_SEGMENT`). May
    /// turn false later if the kernel refuses a GSO send.
    pub gso: bool,
    /// The socket receives GRO batches (`UDP_GRO`).
    pub gro: bool,
    /// Receive buffer size the kernel granted (bytes, as `SO_RCVBUF` reports).
    pub recv_buffer: usize,
    /// Send buffer size the kernel granted.
    pub send_buffer: usize,
}

/// Counters of the datapath. All cumulative.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct TransportStats {
    /// `sendmsg`/`sendmmsg` calls that succeeded.
    pub send_calls: u64,
    /// Homa packets handed to the kernel.
    pub packets_sent: u64,
    /// Sends that carried several packets as one GSO batch.
    pub gso_sends: u64,
    /// Sends refused for lack of buffer space (retried when writable).
    pub send_blocked: u64,
    /// Packets dropped because the kernel refused them for another reason.
    pub send_errors: u64,
    /// Times GSO was switched off because the kernel refused a GSO send.
    pub gso_fallbacks: u64,
    /// `recvmmsg` calls that returned datagrams.
    pub recv_calls: u64,
    /// Homa packets handed to the endpoint.
    pub packets_received: u64,
    /// Received buffers that held more than one packet (GRO).
    pub gro_batches: u64,
    /// Homa packets whose arrival priority level was read from the TOS /
    /// traffic-class byte and given to the endpoint.
    pub packets_with_level: u64,
    /// Datagrams dropped: truncated or from a non-IP source.
    pub bad_datagrams: u64,
    /// Errors read from the socket error queue (ICMP and local).
    pub queued_errors: u64,
    /// Requests dropped because `max_queued_requests` were waiting (their
    /// clients eventually see a timeout).
    pub requests_dropped: u64,
    /// Sends that had to wait for room under the protocol's send cap.
    pub send_cap_waits: u64,
    /// Times the socket's TOS / traffic-class setting was changed for a
    /// send at another priority level (see the performance notes).
    pub tos_changes: u64,
    /// Packets written to the capture file ([`Config::capture`]).
    pub packets_captured: u64,
    /// Capture write errors (the first one ends the capture).
    pub capture_errors: u64,
}

/// Everything a socket counts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// The datapath's counters.
    pub transport: TransportStats,
    /// The protocol engine's counters.
    pub proto: homa_proto::Stats,
}

/// A snapshot of a socket for monitoring, like the kernel module's
/// `homa_metrics`: the protocol's counters and gauges (packets and bytes
/// per type sent and received, resends, timeouts, grants, throttled time,
/// RPCs and peers alive, message-size histograms; see
/// [`homa_proto::stats::Metrics`]) plus the datapath's counters and the
/// runtime's own gauges. Serializable with serde, e.g. as JSON:
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let socket = homa_transport::Socket::bind("127.0.0.1:4000".parse()?)?;
/// let m = socket.metrics();
/// println!("{} requests delivered", m.proto.stats.requests_delivered);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Metrics {
    /// The socket's address.
    pub local_addr: SocketAddr,
    /// Offloads in use.
    pub offloads: Offloads,
    /// The datapath's counters.
    pub transport: TransportStats,
    /// The protocol engine's counters and gauges.
    pub proto: homa_proto::stats::Metrics,
    /// Client calls started whose result the application has not taken.
    pub calls_outstanding: usize,
    /// Delivered requests waiting for the application.
    pub requests_queued: usize,
    /// Transmits waiting for socket buffer space (0 or 1).
    pub sends_waiting: usize,
}

/// A thread or task to wake when something it waits for happens.
#[derive(Debug)]
pub(crate) enum Waiter {
    Thread(Thread),
    Task(Waker),
}

impl Waiter {
    pub(crate) fn wake(self) {
        match self {
            Waiter::Thread(t) => t.unpark(),
            Waiter::Task(w) => w.wake(),
        }
    }

    fn same(&self, other: &Waiter) -> bool {
        match (self, other) {
            (Waiter::Thread(a), Waiter::Thread(b)) => a.id() == b.id(),
            (Waiter::Task(a), Waiter::Task(b)) => a.will_wake(b),
            _ => false,
        }
    }
}

/// Which thread is currently driving a blocking socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Nobody: the next thread that has to wait takes over.
    Idle,
    /// An application thread (busy-polling or blocked in `ppoll`).
    App,
    /// The background thread; any application thread may take over.
    Background,
}

/// An outstanding client RPC.
#[derive(Debug)]
pub(crate) struct Call {
    /// The destination, as the endpoint sees it.
    dest: SocketAddr,
    result: Option<Result<Bytes, Error>>,
    waiter: Option<Waiter>,
    deadline: Option<Instant>,
}

/// A transmit the kernel refused for lack of buffer space.
struct Pending {
    dest: RawAddr,
    /// `dest` as the endpoint named it (for the capture).
    to: SocketAddr,
    tos: (TosOption, u8),
    segment: Option<usize>,
    data: Vec<u8>,
    /// Segments already sent (when sending one datagram per packet).
    done: usize,
}

/// Everything behind the socket's mutex.
pub(crate) struct State {
    pub(crate) ep: Endpoint,
    tx: Vec<u8>,
    pending: Option<Pending>,
    rx: RecvBatch,
    gso: bool,
    /// The kernel returned a socket error on send or receive: the error
    /// queue must be read.
    errors_pending: bool,
    calls: IdMap<Call>,
    deadlines: Deadlines,
    requests: VecDeque<Request>,
    request_waiters: Vec<Waiter>,
    /// Bumped at every `Event::Writable` (room under the send cap).
    writable_seq: u64,
    write_waiters: Vec<Waiter>,
    /// Waiters to wake once the lock is released.
    pub(crate) wake_list: Vec<Waiter>,
    pub(crate) closed: bool,
    /// Why the socket closed: `Error::Closed` or `Error::RuntimeShutdown`
    /// (reported to every later operation).
    closed_by_runtime: bool,
    pub(crate) role: Role,
    /// Application threads parked while another thread drives.
    pub(crate) followers: Vec<Thread>,
    /// A driver is blocked in `ppoll` (or a tokio select) until this instant;
    /// an earlier deadline must wake it.
    pub(crate) sleep_until: Option<Instant>,
    /// Something completed while an application thread slept in `ppoll` as
    /// the driver: its own call may be among them, and it registered no
    /// waiter (it wakes through the eventfd).
    kick_driver: bool,
    /// The TOS / traffic-class byte last set on the socket, per option
    /// (see `Shared::send_bytes`).
    sticky_tos: StickyTos,
    /// The packet capture, if configured.
    capture: Option<Capture>,
    /// When each sleeper's timerfd is armed to fire, if it is (indexed by
    /// [`Sleeper`]).
    timer_at: [Option<Instant>; 2],
    /// Destinations found unreachable in the current output pass, until
    /// the failures are dispatched: (destination, no route to its
    /// network, found by a send rather than the error queue).
    unreachable: Vec<(SocketAddr, bool, bool)>,
    /// Tasks to wake at a deadline (see `Shared::wake_at`).
    wake_at: Vec<(Instant, Waker)>,
    /// Consecutive turns whose first receive found data (see `turn`).
    rx_streak: u32,
    /// The earliest protocol timer or call deadline, as of the last input
    /// or command (which are the only things that move it earlier).
    next_due: Option<Instant>,
    /// An input or command happened since `next_due` was computed: it is
    /// recomputed when next asked for (a driver about to sleep or spin,
    /// a sleeping driver to kick), not on the way to waking a caller.
    next_due_stale: bool,
    stats: TransportStats,
}

/// Who sleeps on a set of wake-up descriptors (see `Shared::alarms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sleeper {
    /// The application thread holding the driver role, or the tokio
    /// driver task.
    Driver = 0,
    /// The blocking socket's background thread.
    Background = 1,
}

/// An eventfd to wake a sleeper and a timerfd armed at its next deadline.
struct Alarm {
    wake: OwnedFd,
    timer: OwnedFd,
}

impl Alarm {
    fn new() -> io::Result<Alarm> {
        Ok(Alarm {
            wake: sys::eventfd()?,
            timer: sys::timerfd()?,
        })
    }
}

/// What one non-blocking receive found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    /// The socket's queue was empty.
    Empty,
    /// Datagrams were processed: this many Homa packets.
    Packets(usize),
    /// The kernel reported an error (already handled).
    Error,
}

/// The socket, its endpoint and the shared state of every handle to it.
pub(crate) struct Shared {
    /// Owns the descriptor `fd` refers to.
    _sock: UdpSocket,
    pub(crate) fd: RawFd,
    /// The wake-up descriptors of each kind of sleeping driver, indexed by
    /// [`Sleeper`]: application threads (one at a time) and the tokio
    /// driver task share one set, the background thread has its own, so a
    /// thread that stops driving can never consume a wake-up meant for the
    /// one that took over.
    alarms: [Alarm; 2],
    pub(crate) local: SocketAddr,
    pub(crate) port: u16,
    /// The socket accepts requests (see [`Config::server`]).
    server: bool,
    ipv6: bool,
    /// `CLOCK_MONOTONIC` when the socket opened, in nanoseconds.
    epoch: u64,
    pub(crate) config: Config,
    pub(crate) offloads: Offloads,
    state: Mutex<State>,
    /// When an application thread last left the driver role (protocol
    /// clock, nanoseconds); the background thread waits until the socket
    /// has been left alone for its period.
    pub(crate) driver_left: AtomicU64,
    pub(crate) closed: AtomicBool,
}

/// Rewrites an address the way the endpoint must see it: IPv4-mapped IPv6
/// addresses become IPv4, and IPv6 flow labels are dropped (they are not
/// part of a peer's identity).
pub(crate) fn normalize(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, a.port())),
            None => SocketAddr::V6(SocketAddrV6::new(*a.ip(), a.port(), 0, a.scope_id())),
        },
        v4 => v4,
    }
}

fn is_icmp_errno(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::ENETDOWN
                | libc::EPROTO
                | libc::EMSGSIZE
        )
    )
}

/// Most `recvmmsg` batches one turn reads before running timers and
/// transmitting (bounds the time a flood can keep a turn busy).
const MAX_BATCHES_PER_TURN: usize = 64;

/// Outcome of handing bytes to the kernel.
enum SendOutcome {
    Sent,
    /// Out of buffer space after this many segments.
    Blocked(usize),
    Dropped,
    /// The kernel has no route to the destination (`ENETUNREACH`,
    /// `network` true) or cannot reach the host (`EHOSTUNREACH`).
    Unreachable {
        network: bool,
    },
}

impl Shared {
    /// Binds the UDP socket, configures it (buffers, error queue, offload
    /// probes) and registers its port with a fresh endpoint.
    pub(crate) fn open(addr: SocketAddr, config: Config) -> Result<Shared, Error> {
        config.proto.validate()?;
        let sock = UdpSocket::bind(addr)?;
        sock.set_nonblocking(true)?;
        let fd = sock.as_raw_fd();
        let local = sock.local_addr()?;
        let ipv6 = local.is_ipv6();
        let recv_buffer = sys::set_buffer(fd, true, config.recv_buffer)?;
        let send_buffer = sys::set_buffer(fd, false, config.send_buffer)?;
        if ipv6 {
            sys::set_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVERR, 1)?;
            // IPv4-mapped traffic on a dual-stack socket reports through the
            // IPv4 option; a v6-only socket refuses it, which is fine.
            let _ = sys::set_int(fd, libc::IPPROTO_IP, libc::IP_RECVERR, 1);
        } else {
            sys::set_int(fd, libc::IPPROTO_IP, libc::IP_RECVERR, 1)?;
        }
        // The arrival priority lets the endpoint recover losses early.
        let _ = sys::set_int(fd, libc::IPPROTO_IP, libc::IP_RECVTOS, 1);
        if ipv6 {
            let _ = sys::set_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVTCLASS, 1);
        }
        let gso = config.gso && sys::gso_supported(ipv6);
        let gro = config.gro && sys::set_int(fd, libc::SOL_UDP, libc::UDP_GRO, 1).is_ok();
        let stride = if gro {
            1 << 16
        } else {
            (config.proto.mtu as usize).max(2048)
        };
        let capture = match &config.capture {
            Some(path) => {
                let c = Capture::create(path, local)?;
                if c.needs_pktinfo() {
                    sys::enable_pktinfo(fd, ipv6)?;
                }
                Some(c)
            }
            None => None,
        };
        let mut ep = Endpoint::new(config.proto.clone(), sys::random_u64())?;
        let port = ep.open_socket(local.port()).map_err(Error::from_proto)?;
        let server = config.server.unwrap_or(addr.port() != 0);
        ep.set_server(port, server).map_err(Error::from_proto)?;
        let state = State {
            ep,
            tx: Vec::with_capacity(1 << 16),
            pending: None,
            rx: RecvBatch::new(config.recv_batch, stride),
            gso,
            errors_pending: false,
            calls: IdMap::default(),
            deadlines: Deadlines::default(),
            requests: VecDeque::new(),
            request_waiters: Vec::new(),
            writable_seq: 0,
            write_waiters: Vec::new(),
            wake_list: Vec::new(),
            closed: false,
            closed_by_runtime: false,
            role: Role::Idle,
            followers: Vec::new(),
            sleep_until: None,
            kick_driver: false,
            rx_streak: 0,
            timer_at: [None; 2],
            wake_at: Vec::new(),
            unreachable: Vec::new(),
            sticky_tos: StickyTos::default(),
            capture,
            next_due: None,
            next_due_stale: false,
            stats: TransportStats::default(),
        };
        Ok(Shared {
            fd,
            _sock: sock,
            alarms: [Alarm::new()?, Alarm::new()?],
            local,
            port,
            server,
            ipv6,
            epoch: sys::monotonic_nanos(),
            offloads: Offloads {
                gso,
                gro,
                recv_buffer,
                send_buffer,
            },
            config,
            state: Mutex::new(state),
            driver_left: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        })
    }

    /// The protocol's clock: nanoseconds since the socket opened.
    pub(crate) fn now(&self) -> Instant {
        Instant::from_nanos(sys::monotonic_nanos().saturating_sub(self.epoch))
    }

    /// Locks the state. A panic while holding the lock leaves consistent
    /// enough state (every mutation is a single protocol call), so poison
    /// is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` under the lock, then unlocks (waking whoever it completed).
    pub(crate) fn locked<R>(&self, f: impl FnOnce(&Shared, &mut State) -> R) -> R {
        let mut st = self.lock();
        let r = f(self, &mut st);
        self.unlock(st);
        r
    }

    /// Releases the lock, then wakes whoever the last operation completed.
    pub(crate) fn unlock(&self, mut st: MutexGuard<'_, State>) {
        if std::mem::take(&mut st.kick_driver) {
            self.wake(Sleeper::Driver);
        }
        let wake = std::mem::take(&mut st.wake_list);
        drop(st);
        for w in wake {
            w.wake();
        }
    }

    /// Snapshot of the counters.
    pub(crate) fn stats(&self) -> Stats {
        let st = self.lock();
        Stats {
            transport: st.transport_stats(),
            proto: st.ep.stats().clone(),
        }
    }

    /// Snapshot for monitoring.
    pub(crate) fn metrics(&self) -> Metrics {
        let st = self.lock();
        Metrics {
            local_addr: self.local,
            offloads: self.offloads_of(&st),
            transport: st.transport_stats(),
            proto: st.ep.metrics(),
            calls_outstanding: st.calls.len(),
            requests_queued: st.requests.len(),
            sends_waiting: usize::from(st.pending.is_some()),
        }
    }

    /// The current offload state (GSO may have been switched off since
    /// the socket opened).
    pub(crate) fn offloads(&self) -> Offloads {
        self.offloads_of(&self.lock())
    }

    fn offloads_of(&self, st: &State) -> Offloads {
        Offloads {
            gso: st.gso,
            ..self.offloads
        }
    }

    // ----- application commands ------------------------------------------

    /// Starts a client RPC that fails with [`Error::DeadlineExceeded`] at
    /// `deadline` (if any); its result lands in a call slot.
    pub(crate) fn start_call(
        &self,
        st: &mut State,
        dest: SocketAddr,
        request: Bytes,
        deadline: Option<Instant>,
    ) -> Result<u64, Error> {
        if st.closed {
            return Err(st.closed_error());
        }
        let dest = normalize(dest);
        if dest.is_ipv6() && !self.ipv6 {
            return Err(Error::AddressFamily);
        }
        let now = self.now();
        let id = st
            .ep
            .send_request(now, self.port, dest, request)
            .map_err(Error::from_proto)?;
        st.calls.insert(
            id,
            Call {
                dest,
                result: None,
                waiter: None,
                deadline,
            },
        );
        if let Some(d) = deadline {
            st.deadlines.push(d, id);
        }
        self.after_command(st, now);
        Ok(id)
    }

    /// Sends the response to a delivered request.
    pub(crate) fn reply(
        &self,
        st: &mut State,
        peer: SocketAddr,
        id: u64,
        response: Bytes,
    ) -> Result<(), Error> {
        if st.closed {
            return Err(st.closed_error());
        }
        let now = self.now();
        st.ep
            .send_response(now, self.port, normalize(peer), id, response)
            .map_err(Error::from_proto)?;
        self.after_command(st, now);
        Ok(())
    }

    /// Aborts a client RPC: a waiter gets [`Error::Aborted`]. False if the
    /// call is unknown or already complete.
    pub(crate) fn abort(&self, st: &mut State, id: u64) -> bool {
        match st.calls.get(&id) {
            Some(c) if c.result.is_none() => {}
            _ => return false,
        }
        let _ = st.ep.abort(self.port, id);
        st.complete(id, Err(Error::Aborted));
        // Freeing the RPC may have made room under the send cap.
        self.after_command(st, self.now());
        true
    }

    /// Output commit on this socket: see [`Commit`].
    pub(crate) fn output_commit(&self, st: &mut State, op: Commit) -> Result<usize, Error> {
        if st.closed {
            return Err(st.closed_error());
        }
        let now = self.now();
        let released = match op {
            Commit::Plug => st.ep.plug(self.port).map(|()| 0),
            Commit::ReleaseOne => st.ep.release_one(self.port),
            Commit::ReleaseAll => st.ep.release_all(self.port),
        }
        .map_err(Error::from_proto)?;
        // Released messages are output now.
        self.after_command(st, now);
        Ok(released)
    }

    /// Fails call `id` with [`Error::DeadlineExceeded`] (aborting its RPC)
    /// if its deadline has passed and it has no result yet. The waiting
    /// thread's own check, independent of the driver's deadline heap.
    pub(crate) fn expire_call(&self, st: &mut State, id: u64) {
        let now = self.now();
        let due = st
            .calls
            .get(&id)
            .is_some_and(|c| c.result.is_none() && c.deadline.is_some_and(|d| d <= now));
        if due {
            let _ = st.ep.abort(self.port, id);
            st.complete(id, Err(Error::DeadlineExceeded));
            // Freeing the RPC may have made room under the send cap.
            self.after_command(st, now);
        }
    }

    /// Forgets a call whose handle was dropped, aborting it if still alive.
    pub(crate) fn forget(&self, st: &mut State, id: u64) {
        if let Some(c) = st.calls.remove(&id) {
            if c.deadline.is_some() {
                st.deadlines.cancel();
            }
            if c.result.is_none() {
                let _ = st.ep.abort(self.port, id);
                // Freeing the RPC may have made room under the send cap.
                self.after_command(st, self.now());
            }
        }
    }

    /// Takes a completed call's result, freeing its slot.
    pub(crate) fn take_result(&self, st: &mut State, id: u64) -> Option<Result<Bytes, Error>> {
        match st.calls.entry(id) {
            Entry::Occupied(e) if e.get().result.is_some() => e.remove().result,
            _ => None,
        }
    }

    /// True if the call has a result (or is unknown).
    pub(crate) fn is_done(&self, st: &State, id: u64) -> bool {
        st.calls.get(&id).is_none_or(|c| c.result.is_some())
    }

    /// Registers who to wake when the call completes.
    pub(crate) fn set_call_waiter(&self, st: &mut State, id: u64, w: Waiter) {
        if let Some(c) = st.calls.get_mut(&id) {
            c.waiter = Some(w);
        }
    }

    /// Takes the next delivered request: `Err(Closed)` once closed,
    /// `Err(ClientOnly)` at once on a socket that accepts no requests.
    pub(crate) fn take_request(&self, st: &mut State) -> Option<Result<Request, Error>> {
        if !self.server {
            return Some(Err(Error::ClientOnly));
        }
        if let Some(r) = st.requests.pop_front() {
            return Some(Ok(r));
        }
        st.closed.then(|| Err(st.closed_error()))
    }

    /// Registers a thread or task waiting for a request (once).
    pub(crate) fn add_request_waiter(&self, st: &mut State, w: Waiter) {
        if !st.request_waiters.iter().any(|x| x.same(&w)) {
            st.request_waiters.push(w);
        }
    }

    /// Withdraws the registration of a thread or task that stopped waiting
    /// for a request (it got one, timed out, or its future was dropped).
    /// Each request wakes one registered waiter, so a registration left
    /// behind would take the wake-up of one still waiting; and if this one
    /// was woken for a request it did not take, the next waiter is woken
    /// in its place.
    pub(crate) fn remove_request_waiter(&self, st: &mut State, w: &Waiter) {
        st.request_waiters.retain(|x| !x.same(w));
        if !st.requests.is_empty() {
            if let Some(next) = st.request_waiters.pop() {
                st.wake_list.push(next);
            }
        }
    }

    /// Runs a send command (`start_call`, `reply`) under the lock. Returns
    /// its result and, for a send the protocol's send cap refused with
    /// [`Error::WouldBlock`] (counted), the state to wait past with
    /// [`Shared::room_since`].
    pub(crate) fn try_send<T>(
        &self,
        op: impl FnOnce(&Shared, &mut State) -> Result<T, Error>,
    ) -> (Result<T, Error>, u64) {
        let mut st = self.lock();
        let seen = st.writable_seq;
        let r = op(self, &mut st);
        if matches!(r, Err(Error::WouldBlock)) {
            st.stats.send_cap_waits += 1;
        }
        self.unlock(st);
        (r, seen)
    }

    /// True once room may have appeared under the send cap since
    /// [`Shared::try_send`] returned `seen` (an `Event::Writable`), or the
    /// socket closed.
    pub(crate) fn room_since(&self, st: &State, seen: u64) -> bool {
        st.writable_seq != seen || st.closed
    }

    /// Has the driver wake task `w` at `at` (once; a later registration of
    /// the same task replaces it): the deadline of a task waiting for
    /// something that is not a call (room under the send cap), kept by the
    /// runtime like call deadlines rather than by tokio's timer.
    pub(crate) fn wake_at(&self, st: &mut State, at: Instant, w: &Waker) {
        match st.wake_at.iter_mut().find(|(_, x)| x.will_wake(w)) {
            Some(e) => e.0 = at,
            None => st.wake_at.push((at, w.clone())),
        }
        st.next_due_stale = true;
        self.kick(st);
    }

    /// Withdraws a [`Shared::wake_at`] registration.
    pub(crate) fn cancel_wake_at(&self, st: &mut State, w: &Waker) {
        st.wake_at.retain(|(_, x)| !x.will_wake(w));
    }

    /// Registers a thread or task waiting for room under the send cap.
    pub(crate) fn add_write_waiter(&self, st: &mut State, w: Waiter) {
        if !st.write_waiters.iter().any(|x| x.same(&w)) {
            st.write_waiters.push(w);
        }
    }

    /// Closes the socket because its tokio runtime shut down: like
    /// [`Shared::close`], with [`Error::RuntimeShutdown`] for everyone.
    pub(crate) fn close_runtime_gone(&self, st: &mut State) {
        if !st.closed {
            st.closed_by_runtime = true;
            self.close(st);
        }
    }

    /// Closes the socket: the endpoint forgets it, pending calls fail with
    /// [`Error::Closed`] and every waiter wakes.
    pub(crate) fn close(&self, st: &mut State) {
        if st.closed {
            return;
        }
        st.closed = true;
        self.closed.store(true, Ordering::Release);
        let _ = st.ep.close_socket(self.port);
        // Give the port up now, not when the last handle is dropped: peers
        // learn from ICMP at their next packet instead of retrying into a
        // socket nobody reads.
        let _ = sys::release_port(self.fd, self.ipv6);
        let ids: Vec<u64> = st.calls.keys().copied().collect();
        for id in ids {
            let e = st.closed_error();
            st.complete(id, Err(e));
        }
        st.deadlines = Deadlines::default();
        st.pending = None;
        if let Some(mut c) = st.capture.take() {
            c.finish(&mut st.stats);
        }
        let waiters = std::mem::take(&mut st.request_waiters);
        st.wake_list.extend(waiters);
        let waiters = std::mem::take(&mut st.write_waiters);
        st.wake_list.extend(waiters);
        let followers: Vec<Waiter> = st.followers.iter().cloned().map(Waiter::Thread).collect();
        st.wake_list.extend(followers);
        self.wake(Sleeper::Driver);
        self.wake(Sleeper::Background);
    }

    // ----- the datapath ----------------------------------------------------

    /// One non-blocking turn: receive what is queued, then transmit,
    /// dispatch events and (once the socket reads empty) run timers.
    ///
    /// While traffic is sparse (request/response), a turn reads a single
    /// datagram with `recvmmsg(1)` and processes it at once: asking for
    /// more would make the kernel try the queue again, an extra ~0.3 µs
    /// on the critical path of every response. After two turns in a row
    /// found data, turns read full batches (up to [`MAX_BATCHES_PER_TURN`]
    /// of them) until the queue is empty.
    ///
    /// Protocol timers run only once the queue was seen empty (or the
    /// batch bound was hit): packets waiting in the socket are evidence of
    /// life that silence timers would otherwise ignore, firing spurious
    /// RESENDs and NEED_ACKs under load. Transmissions (grants above all)
    /// and events are processed after every batch.
    pub(crate) fn turn(&self, st: &mut State, now: Instant) -> Received {
        let mut total = Received::Empty;
        let mut drained = true;
        for i in 0..MAX_BATCHES_PER_TURN {
            let burst = st.rx_streak >= 2;
            let max = if burst { st.rx.capacity() } else { 1 };
            match self.receive(st, now, max) {
                Received::Empty => {
                    if i == 0 {
                        st.rx_streak = 0;
                    }
                    break;
                }
                Received::Error => total = Received::Error,
                Received::Packets(n) => {
                    total = match total {
                        Received::Packets(m) => Received::Packets(m + n),
                        _ => Received::Packets(n),
                    };
                    if i == 0 {
                        st.rx_streak = st.rx_streak.saturating_add(1);
                    }
                    if !burst {
                        // Process the one datagram now; the next turn reads on.
                        drained = false;
                        break;
                    }
                    if !st.rx.filled() {
                        // A short batch: the queue is (almost certainly) empty.
                        break;
                    }
                    // More is queued: answer this batch (grants above all)
                    // before reading on, so the sender is not kept waiting
                    // while the whole queue drains. Timers still wait.
                    self.process(st, now, false);
                }
            }
        }
        let idle = total == Received::Empty
            && st.pending.is_none()
            && !st.errors_pending
            && self.next_deadline(st).is_none_or(|d| d > now);
        if !idle {
            // (Nothing arrived and nothing is due: the busy-poll loop's
            // common case skips the endpoint entirely.)
            self.process(st, now, drained);
        }
        total
    }

    /// Reads one `recvmmsg` batch and feeds every Homa packet in it to the
    /// endpoint.
    fn receive(&self, st: &mut State, now: Instant, max: usize) -> Received {
        if st.closed {
            return Received::Empty;
        }
        let State {
            rx,
            ep,
            stats,
            capture,
            ..
        } = st;
        match sys::recv_batch(self.fd, rx, max) {
            Ok(n) => {
                stats.recv_calls += 1;
                let mut packets = 0;
                for i in 0..n {
                    let (meta, data) = rx.get(i);
                    let Some(src) = meta.src.map(normalize).filter(|_| !meta.truncated) else {
                        stats.bad_datagrams += 1;
                        continue;
                    };
                    if let Some(c) = capture {
                        c.received(stats, src, meta.dst, meta.tos, data, meta.segment);
                    }
                    let level = meta.tos.and_then(|t| ep.level_of_tos(t));
                    let before = packets;
                    match meta.segment {
                        Some(seg) if seg < data.len() => {
                            stats.gro_batches += 1;
                            for chunk in data.chunks(seg) {
                                ep.handle_datagram_at_level(now, src, level, chunk);
                                packets += 1;
                            }
                        }
                        _ => {
                            ep.handle_datagram_at_level(now, src, level, data);
                            packets += 1;
                        }
                    }
                    if level.is_some() {
                        stats.packets_with_level += (packets - before) as u64;
                    }
                }
                stats.packets_received += packets as u64;
                Received::Packets(packets)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Received::Empty,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Received::Packets(0),
            Err(_) => {
                // A pending socket error (ICMP) surfaced through recv: the
                // details are on the error queue.
                st.errors_pending = true;
                Received::Error
            }
        }
    }

    /// Work after input: protocol timers (if `timers`), call deadlines,
    /// transmissions, events.
    fn process(&self, st: &mut State, now: Instant, timers: bool) {
        if st.closed {
            return;
        }
        if timers && st.ep.poll_timeout().is_some_and(|t| t <= now) {
            st.ep.handle_timeout(now);
        }
        self.expire_deadlines(st, now);
        self.output(st, now);
    }

    /// Transmits (reading the error queue if a send or receive reported an
    /// error), then moves the endpoint's events to their waiters.
    fn output(&self, st: &mut State, now: Instant) {
        self.flush(st, now);
        if st.errors_pending {
            self.read_errors(st, now);
            self.flush(st, now);
        }
        self.fail_unreachable(st, now);
        self.dispatch(st);
        st.unreachable.clear();
        st.next_due_stale = true;
    }

    /// Fails the RPCs to destinations a send found unreachable (the
    /// kernel refused the packet itself: no route).
    fn fail_unreachable(&self, st: &mut State, now: Instant) {
        for i in 0..st.unreachable.len() {
            let (dest, _, from_send) = st.unreachable[i];
            if from_send {
                st.ep
                    .handle_unreachable(now, normalize(dest), Unreachable::Host);
            }
        }
    }

    /// Work after an application command: transmit, report, and wake a
    /// sleeping driver if the command created an earlier deadline.
    ///
    /// Timers do not run here: the command did not read the socket, and
    /// silence timers evaluated without the packets waiting in it fire
    /// spurious RESENDs (a burst of 1000 `start_call`s did exactly that).
    /// They run in the driver's next turn, which the kick below brings
    /// forward if needed.
    fn after_command(&self, st: &mut State, now: Instant) {
        if st.closed {
            return;
        }
        self.output(st, now);
        self.kick(st);
    }

    /// Wakes a driver blocked past the next deadline.
    pub(crate) fn kick(&self, st: &mut State) {
        let Some(until) = st.sleep_until else {
            return;
        };
        if let Some(next) = self.next_deadline(st) {
            if next < until {
                self.wake(if st.role == Role::Background {
                    Sleeper::Background
                } else {
                    Sleeper::Driver
                });
            }
        }
    }

    /// The earliest instant something must happen without input: a
    /// protocol timer or a call deadline.
    pub(crate) fn next_deadline(&self, st: &mut State) -> Option<Instant> {
        if std::mem::take(&mut st.next_due_stale) {
            st.next_due = self.compute_next_due(st);
        }
        st.next_due
    }

    fn compute_next_due(&self, st: &mut State) -> Option<Instant> {
        let call = st.deadlines.first(&st.calls);
        let task = st.wake_at.iter().map(|&(t, _)| t).min();
        [st.ep.poll_timeout(), call, task]
            .into_iter()
            .flatten()
            .min()
    }

    /// The eventfd that wakes `who` from its sleep.
    pub(crate) fn wake_fd(&self, who: Sleeper) -> RawFd {
        self.alarms[who as usize].wake.as_raw_fd()
    }

    /// The timerfd `who` sleeps on.
    pub(crate) fn timer_fd(&self, who: Sleeper) -> RawFd {
        self.alarms[who as usize].timer.as_raw_fd()
    }

    /// Wakes `who` from its sleep (or makes its next sleep return at once).
    pub(crate) fn wake(&self, who: Sleeper) {
        sys::eventfd_signal(&self.alarms[who as usize].wake);
    }

    /// Resets `who`'s eventfd after a wake-up.
    pub(crate) fn woken(&self, who: Sleeper) {
        sys::drain_counter(self.wake_fd(who));
    }

    /// Arms `who`'s timerfd at `next` (disarms it for `None`) unless it is
    /// armed there already. On error (the kernel refused) the timer is
    /// not armed: the caller must bound its sleep itself.
    ///
    /// Only the sleeper itself arms, reads or resets its timer, and only
    /// one thread or task sleeps as each kind at a time: a timer another
    /// thread could reset between the arming and the sleep would leave the
    /// sleeper without its wake-up (issue 12: calls outlived their
    /// deadlines when the background thread, woken by the shared timer,
    /// reset it after an application thread had re-armed it and gone to
    /// sleep).
    pub(crate) fn arm_sleep_timer(
        &self,
        st: &mut State,
        who: Sleeper,
        next: Option<Instant>,
        now: Instant,
    ) -> io::Result<()> {
        let fd = self.timer_fd(who);
        let at = &mut st.timer_at[who as usize];
        if at.is_some_and(|t| t <= now) {
            // Fired (or about to): clear it so it cannot wake the next sleep.
            sys::drain_counter(fd);
            *at = None;
        }
        if next == *at {
            return Ok(());
        }
        let after = next.map(|d| Duration::from_nanos(d.nanos_since(now)));
        let r = sys::timerfd_arm(fd, after);
        *at = if r.is_ok() { next } else { None };
        r
    }

    /// `who`'s timer fired.
    pub(crate) fn sleep_timer_fired(&self, st: &mut State, who: Sleeper) {
        sys::drain_counter(self.timer_fd(who));
        st.timer_at[who as usize] = None;
    }

    /// True while a transmit waits for buffer space.
    pub(crate) fn wants_write(&self, st: &State) -> bool {
        st.pending.is_some()
    }

    fn expire_deadlines(&self, st: &mut State, now: Instant) {
        if st.wake_at.iter().any(|&(t, _)| t <= now) {
            let (due, later) = std::mem::take(&mut st.wake_at)
                .into_iter()
                .partition(|&(t, _)| t <= now);
            st.wake_at = later;
            let due: Vec<(Instant, Waker)> = due;
            st.wake_list
                .extend(due.into_iter().map(|(_, w)| Waiter::Task(w)));
        }
        while let Some(id) = st.deadlines.pop_due(now, &st.calls) {
            if let Some(c) = st.calls.get_mut(&id) {
                c.deadline = None;
                if c.result.is_none() {
                    let _ = st.ep.abort(self.port, id);
                    st.complete(id, Err(Error::DeadlineExceeded));
                }
            }
        }
    }

    /// Drains the endpoint's transmit queue into the kernel, stopping when
    /// the kernel runs out of buffer space (the rest waits for writability).
    pub(crate) fn flush(&self, st: &mut State, now: Instant) {
        if st.closed {
            return;
        }
        if let Some(p) = st.pending.take() {
            let State {
                gso,
                stats,
                errors_pending,
                sticky_tos,
                capture,
                ..
            } = st;
            match self.send_bytes(
                gso,
                stats,
                errors_pending,
                sticky_tos,
                capture,
                p.to,
                &p.dest,
                p.tos,
                p.segment,
                &p.data,
                p.done,
            ) {
                SendOutcome::Blocked(done) => {
                    st.pending = Some(Pending { done, ..p });
                    return;
                }
                SendOutcome::Unreachable { network } => {
                    st.unreachable.push((p.to, network, true));
                }
                SendOutcome::Sent | SendOutcome::Dropped => {}
            }
        }
        loop {
            let State {
                ep,
                tx,
                gso,
                stats,
                errors_pending,
                sticky_tos,
                capture,
                ..
            } = st;
            if ep.transmit_idle(now) {
                break;
            }
            let Some(t) = ep.poll_transmit(now, tx) else {
                break;
            };
            let Some(dest) = RawAddr::new(t.destination, self.ipv6) else {
                stats.send_errors += t.segments() as u64;
                continue;
            };
            let tos = (TosOption::for_destination(&t.destination), t.tos);
            let data = &tx[..t.size];
            match self.send_bytes(
                gso,
                stats,
                errors_pending,
                sticky_tos,
                capture,
                t.destination,
                &dest,
                tos,
                t.segment_size,
                data,
                0,
            ) {
                SendOutcome::Sent | SendOutcome::Dropped => {}
                SendOutcome::Unreachable { network } => {
                    st.unreachable.push((t.destination, network, true));
                }
                SendOutcome::Blocked(done) => {
                    st.pending = Some(Pending {
                        dest,
                        to: t.destination,
                        tos,
                        segment: t.segment_size,
                        data: data.to_vec(),
                        done,
                    });
                    break;
                }
            }
        }
    }

    /// Sends one transmit (from segment `done` on). A pending socket error
    /// that fails the send is noted for the error queue and the send
    /// retried once.
    ///
    /// The TOS byte is set on the socket (`IP_TOS` / `IPV6_TCLASS`) when it
    /// differs from the last one set, and the send then carries no TOS
    /// control message: small RPCs send every packet at the same level, and
    /// a control message makes the kernel parse it on every send (and, on
    /// a connected socket, would also cost the cached route). All sends
    /// happen under the state lock, so the setting cannot change between
    /// the `setsockopt` and the send. If the kernel refuses the option,
    /// sends carry the control message as before.
    #[allow(clippy::too_many_arguments)]
    fn send_bytes(
        &self,
        gso: &mut bool,
        stats: &mut TransportStats,
        errors_pending: &mut bool,
        sticky: &mut StickyTos,
        capture: &mut Option<Capture>,
        to: SocketAddr,
        dest: &RawAddr,
        tos: (TosOption, u8),
        segment: Option<usize>,
        data: &[u8],
        done: usize,
    ) -> SendOutcome {
        let outcome = self.send_raw(
            gso,
            stats,
            errors_pending,
            sticky,
            dest,
            tos,
            segment,
            data,
            done,
        );
        if let Some(c) = capture {
            let total = segment.map_or(1, |s| data.len().div_ceil(s.max(1)));
            let sent = match outcome {
                SendOutcome::Sent => total,
                SendOutcome::Blocked(k) => k,
                SendOutcome::Dropped | SendOutcome::Unreachable { .. } => done,
            };
            c.sent(stats, to, tos.1, data, segment, done, sent);
        }
        outcome
    }

    /// [`Shared::send_bytes`] without the capture.
    #[allow(clippy::too_many_arguments)]
    fn send_raw(
        &self,
        gso: &mut bool,
        stats: &mut TransportStats,
        errors_pending: &mut bool,
        sticky: &mut StickyTos,
        dest: &RawAddr,
        tos: (TosOption, u8),
        segment: Option<usize>,
        data: &[u8],
        done: usize,
    ) -> SendOutcome {
        let tos = sticky.prepare(self.fd, tos);
        let mut retried = false;
        loop {
            let multi = segment.filter(|&s| data.len() > s);
            let r = match multi {
                Some(seg) if *gso && done == 0 => {
                    match sys::send(self.fd, dest, tos, Some(seg as u16), data) {
                        Ok(_) => {
                            stats.send_calls += 1;
                            stats.gso_sends += 1;
                            stats.packets_sent += data.len().div_ceil(seg) as u64;
                            return SendOutcome::Sent;
                        }
                        Err(e) if matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL)) => {
                            // The kernel (or the route's device) cannot do
                            // GSO: fall back to one datagram per packet.
                            *gso = false;
                            stats.gso_fallbacks += 1;
                            continue;
                        }
                        Err(e) => Err(e),
                    }
                }
                Some(seg) => {
                    let total = data.len().div_ceil(seg);
                    match sys::send_split(self.fd, dest, tos, seg, &data[done * seg..]) {
                        Ok(k) => {
                            stats.send_calls += 1;
                            stats.packets_sent += k as u64;
                            if done + k < total {
                                stats.send_blocked += 1;
                                return SendOutcome::Blocked(done + k);
                            }
                            return SendOutcome::Sent;
                        }
                        Err(e) => Err(e),
                    }
                }
                None => sys::send(self.fd, dest, tos, None, data).map(|_| {
                    stats.send_calls += 1;
                    stats.packets_sent += 1;
                }),
            };
            let e = match r {
                Ok(()) => return SendOutcome::Sent,
                Err(e) => e,
            };
            match e.kind() {
                io::ErrorKind::WouldBlock => {
                    stats.send_blocked += 1;
                    return SendOutcome::Blocked(done);
                }
                io::ErrorKind::Interrupted => continue,
                _ if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    stats.send_blocked += 1;
                    return SendOutcome::Blocked(done);
                }
                _ if is_icmp_errno(&e) && !retried => {
                    // The send reported (and cleared) an error queued by an
                    // earlier packet; this packet was not sent.
                    retried = true;
                    *errors_pending = true;
                    continue;
                }
                _ if matches!(
                    e.raw_os_error(),
                    Some(libc::ENETUNREACH | libc::EHOSTUNREACH)
                ) =>
                {
                    // Refused twice: this packet's own route failed (no
                    // route to the network, or an unreachable route).
                    stats.send_errors += 1;
                    return SendOutcome::Unreachable {
                        network: e.raw_os_error() == Some(libc::ENETUNREACH),
                    };
                }
                _ => {
                    stats.send_errors += 1;
                    return SendOutcome::Dropped;
                }
            }
        }
    }

    /// Reads the socket's error queue: ICMP port / host unreachable become
    /// [`Endpoint::handle_unreachable`] for the original destination.
    pub(crate) fn read_errors(&self, st: &mut State, now: Instant) {
        st.errors_pending = false;
        // Bounded: the kernel caps the error queue by the receive buffer,
        // and we stop after a generous number of entries per call.
        for _ in 0..1024 {
            let e = match sys::recv_error(self.fd) {
                Ok(Some(e)) => e,
                Ok(None) | Err(_) => break,
            };
            st.stats.queued_errors += 1;
            if e.origin != libc::SO_EE_ORIGIN_ICMP && e.origin != libc::SO_EE_ORIGIN_ICMP6 {
                continue;
            }
            let kind = match e.errno {
                libc::ECONNREFUSED => Unreachable::Port,
                libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EHOSTDOWN => Unreachable::Host,
                _ => continue,
            };
            if let Some(dest) = e.dest {
                let dest = normalize(dest);
                if kind == Unreachable::Host {
                    // Remembered until the failures are dispatched, to
                    // tell "no route to the network" from "host down".
                    st.unreachable
                        .push((dest, e.errno == libc::ENETUNREACH, false));
                }
                st.ep.handle_unreachable(now, dest, kind);
            }
        }
    }

    /// Marks that the error queue must be read (a poll reported POLLERR).
    pub(crate) fn note_poll_error(&self, st: &mut State) {
        st.errors_pending = true;
    }

    /// Moves the endpoint's events into call slots and the request queue.
    fn dispatch(&self, st: &mut State) {
        while let Some(ev) = st.ep.poll_event() {
            match ev {
                Event::Response { id, data, .. } => st.complete(id, Ok(data)),
                Event::Failed { id, error, .. } => {
                    let e = match error {
                        homa_proto::RpcError::HostUnreachable if st.network_unreachable(id) => {
                            Error::NetworkUnreachable
                        }
                        other => Error::from_rpc(other),
                    };
                    st.complete(id, Err(e));
                }
                Event::Writable { .. } => {
                    st.writable_seq += 1;
                    let waiters = std::mem::take(&mut st.write_waiters);
                    st.wake_list.extend(waiters);
                    st.note_completion();
                }
                Event::Request {
                    port,
                    peer,
                    id,
                    data,
                } => {
                    if st.requests.len() >= self.config.max_queued_requests {
                        // Free the server RPC too (the request counts as
                        // run: the client gets a timeout, never a rerun).
                        st.stats.requests_dropped += 1;
                        let _ = st.ep.discard_request(port, peer, id);
                        continue;
                    }
                    st.requests.push_back(Request {
                        id,
                        peer,
                        body: data,
                    });
                    if let Some(w) = st.request_waiters.pop() {
                        st.wake_list.push(w);
                    }
                    st.note_completion();
                }
                _ => {}
            }
        }
    }
}

/// The TOS / traffic-class byte last set on the socket with `setsockopt`,
/// for IPv4 (`IP_TOS`, also IPv4-mapped destinations of a dual-stack
/// socket) and IPv6 (`IPV6_TCLASS`).
#[derive(Debug, Default)]
pub(crate) struct StickyTos {
    set: [Option<u8>; 2],
    /// `setsockopt` failed once: every send carries a control message.
    refused: bool,
    /// `setsockopt` calls made.
    pub(crate) changes: u64,
}

impl StickyTos {
    /// Makes the socket's own setting `tos.1` if it can: returns the
    /// control message a send still needs (`None` when the socket's
    /// setting is right).
    fn prepare(&mut self, fd: RawFd, tos: (TosOption, u8)) -> Option<(TosOption, u8)> {
        if self.refused {
            return Some(tos);
        }
        let slot = &mut self.set[usize::from(tos.0 != TosOption::IPV4)];
        if *slot == Some(tos.1) {
            return None;
        }
        self.changes += 1;
        match tos.0.set(fd, tos.1) {
            Ok(()) => {
                *slot = Some(tos.1);
                None
            }
            Err(_) => {
                self.refused = true;
                Some(tos)
            }
        }
    }
}

/// Hashes the socket's own RPC ids (sequential even numbers, not chosen
/// by peers) with one multiplication: std's SipHash was a visible share of
/// a small RPC's processing.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 ^= v;
    }

    fn finish(&self) -> u64 {
        // Fold the 128-bit product so both the low bits (bucket) and the
        // high bits (hashbrown's tag) depend on every bit of the id.
        let m = u128::from(self.0) * 0x9E37_79B9_7F4A_7C15;
        (m as u64) ^ ((m >> 64) as u64)
    }
}

/// A map keyed by RPC id.
pub(crate) type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// Call deadlines, earliest first: a binary heap whose entries are removed
/// lazily. An entry `(t, id)` is live while call `id` exists with deadline
/// `t`; completing a call only decrements the live count (no heap or tree
/// operation per call), and stale entries are dropped when they reach the
/// top or when they outnumber live ones.
#[derive(Default)]
struct Deadlines {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    live: usize,
}

impl Deadlines {
    fn push(&mut self, at: Instant, id: u64) {
        self.heap.push(Reverse((at, id)));
        self.live += 1;
    }

    /// A call with a deadline completed or was forgotten.
    fn cancel(&mut self) {
        self.live = self.live.saturating_sub(1);
    }

    fn is_live(calls: &IdMap<Call>, at: Instant, id: u64) -> bool {
        calls.get(&id).is_some_and(|c| c.deadline == Some(at))
    }

    /// The earliest live deadline (dropping stale entries on the way).
    fn first(&mut self, calls: &IdMap<Call>) -> Option<Instant> {
        if self.heap.len() > 64 && self.heap.len() > 4 * self.live {
            self.heap
                .retain(|&Reverse((t, id))| Self::is_live(calls, t, id));
        }
        while let Some(&Reverse((t, id))) = self.heap.peek() {
            if Self::is_live(calls, t, id) {
                return Some(t);
            }
            self.heap.pop();
        }
        None
    }

    /// Takes the earliest live deadline if it is due: the call's id.
    fn pop_due(&mut self, now: Instant, calls: &IdMap<Call>) -> Option<u64> {
        let t = self.first(calls)?;
        if t > now {
            return None;
        }
        let Reverse((_, id)) = self.heap.pop()?;
        self.live = self.live.saturating_sub(1);
        Some(id)
    }
}

impl State {
    /// The datapath's counters, with the TOS changes `StickyTos` counts.
    fn transport_stats(&self) -> TransportStats {
        TransportStats {
            tos_changes: self.sticky_tos.changes,
            ..self.stats.clone()
        }
    }

    /// The error of operations on a closed socket.
    pub(crate) fn closed_error(&self) -> Error {
        if self.closed_by_runtime {
            Error::RuntimeShutdown
        } else {
            Error::Closed
        }
    }

    /// Stores a call's result (first one wins) and schedules its waiter.
    fn complete(&mut self, id: u64, result: Result<Bytes, Error>) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.result.is_some() {
            return;
        }
        c.result = Some(result);
        if c.deadline.take().is_some() {
            self.deadlines.cancel();
        }
        if let Some(w) = c.waiter.take() {
            self.wake_list.push(w);
        }
        self.note_completion();
    }

    /// True if call `id`'s destination was found to have no route in this
    /// output pass.
    fn network_unreachable(&self, id: u64) -> bool {
        self.calls.get(&id).is_some_and(|c| {
            self.unreachable
                .iter()
                .any(|&(d, net, _)| net && d.ip() == c.dest.ip())
        })
    }

    /// See `kick_driver`.
    fn note_completion(&mut self) {
        if self.role == Role::App && self.sleep_until.is_some() {
            self.kick_driver = true;
        }
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    fn call(deadline: Option<Instant>) -> Call {
        Call {
            dest: "127.0.0.1:1".parse().unwrap(),
            result: None,
            waiter: None,
            deadline,
        }
    }

    #[test]
    fn deadlines__skip_completed_calls_and_pop_in_order() {
        let t = Instant::from_micros;
        let mut calls = IdMap::default();
        let mut d = Deadlines::default();
        for (id, at) in [(2, 30), (4, 10), (6, 20)] {
            calls.insert(id, call(Some(t(at))));
            d.push(t(at), id);
        }
        // Call 4 completes: its entry is stale and skipped.
        calls.get_mut(&4).unwrap().deadline = None;
        d.cancel();
        assert_eq!(d.first(&calls), Some(t(20)));
        assert_eq!(d.pop_due(t(15), &calls), None);
        assert_eq!(d.pop_due(t(25), &calls), Some(6));
        calls.remove(&6);
        assert_eq!(d.pop_due(t(25), &calls), None);
        assert_eq!(d.pop_due(t(30), &calls), Some(2));
        calls.remove(&2);
        assert_eq!(d.first(&calls), None);
        assert_eq!(d.live, 0);
    }

    #[test]
    fn deadlines__stale_entries_do_not_accumulate() {
        let mut calls = IdMap::default();
        let mut d = Deadlines::default();
        calls.insert(0, call(Some(Instant::from_micros(1))));
        d.push(Instant::from_micros(1), 0);
        for id in 1..10_000u64 {
            // Calls that complete before their (later) deadline.
            let at = Instant::from_micros(1000 + id);
            calls.insert(id, call(Some(at)));
            d.push(at, id);
            calls.remove(&id);
            d.cancel();
            assert_eq!(d.first(&calls), Some(Instant::from_micros(1)));
        }
        assert!(d.heap.len() <= 64, "{}", d.heap.len());
    }

    #[test]
    fn normalize__unmaps_ipv4_and_drops_flow_label() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:80".parse().unwrap();
        assert_eq!(normalize(mapped), "127.0.0.1:80".parse().unwrap());
        let v6 = SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 9, 77, 3));
        assert_eq!(
            normalize(v6),
            SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 9, 0, 3))
        );
    }
}

/// The output-commit operations of a socket (modelled on Linux's `sch_plug`
/// queueing discipline); see [`homa_proto::Endpoint::plug`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Commit {
    /// Start a new epoch whose outgoing messages are held.
    Plug,
    /// Release the oldest epoch a later plug closed.
    ReleaseOne,
    /// Release everything and stop holding.
    ReleaseAll,
}
