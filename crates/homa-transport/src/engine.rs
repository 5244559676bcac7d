//! The engine room both APIs share: one protocol [`Endpoint`], its
//! [`Datapath`] and its [`Calls`] behind one mutex, and the steps that
//! drive them: a *turn* (receive what is queued, then process), *output*
//! (transmit, read the error queue, dispatch the endpoint's events into
//! calls and requests), the application's commands, and what a sleeping
//! driver needs (the next deadline, its wake-up descriptors). Who calls
//! [`Shared::turn`] and when (a waiting application thread, the background
//! thread, a tokio task) is the business of the API modules.
//!
//! The mutex is only ever held for non-blocking work (a `recvmmsg` with
//! `MSG_DONTWAIT`, protocol processing, `sendmsg`); threads block outside
//! it.
//!
//! Ordering rule: a turn reads the datagrams queued in the socket before
//! it runs the protocol's timers, and an application command never runs
//! them: silence timers evaluated without the packets waiting in the
//! socket fire spurious RESENDs.

use std::net::{SocketAddr, UdpSocket};
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};
use std::task::Waker;
use std::thread::Thread;
use std::time::Duration;

use bytes::Bytes;
use homa_proto::{Endpoint, Event, Instant};
use homa_sys::wait::{self, Event as EventFd, Timer};

use crate::calls::{Calls, Request, RequestMessage, Waiter};
use crate::datapath::{normalize, Datapath, Received};
use crate::stats::{Metrics, Offloads, Stats};
use crate::{Config, Error};

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
    wake: EventFd,
    timer: Timer,
}

impl Alarm {
    fn new() -> std::io::Result<Alarm> {
        Ok(Alarm {
            wake: EventFd::new()?,
            timer: Timer::new()?,
        })
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

/// Most `recvmmsg` batches one turn reads before running timers and
/// transmitting (bounds the time a flood can keep a turn busy).
const MAX_BATCHES_PER_TURN: usize = 64;

/// Who drives the socket and how a sleeping driver is woken.
#[derive(Debug)]
pub(crate) struct Driving {
    pub(crate) role: Role,
    /// Application threads parked while another thread drives.
    pub(crate) followers: Vec<Thread>,
    /// A driver is blocked in `ppoll` (or a tokio select) until this
    /// instant; an earlier deadline must wake it.
    pub(crate) sleep_until: Option<Instant>,
    /// Something completed while an application thread slept in `ppoll` as
    /// the driver: its own call may be among them, and it registered no
    /// waiter (it wakes through its eventfd).
    kick_driver: bool,
    /// When each sleeper's timerfd is armed to fire, if it is (indexed by
    /// [`Sleeper`]).
    timer_at: [Option<Instant>; 2],
    /// The earliest protocol timer or call deadline, as of the last input
    /// or command (which are the only things that move it earlier).
    next_due: Option<Instant>,
    /// An input or command happened since `next_due` was computed: it is
    /// recomputed when next asked for (a driver about to sleep or spin,
    /// a sleeping driver to kick), not on the way to waking a caller.
    next_due_stale: bool,
}

/// Everything behind the socket's mutex.
pub(crate) struct State {
    pub(crate) ep: Endpoint,
    pub(crate) dp: Datapath,
    pub(crate) calls: Calls,
    pub(crate) driving: Driving,
    pub(crate) closed: bool,
    /// Why the socket closed: `Error::Closed` or `Error::RuntimeShutdown`
    /// (reported to every later operation).
    closed_by_runtime: bool,
    /// Time spent waiting for and holding this state's lock.
    lock_stats: LockStats,
    /// The wait token of the held-back endpoint (`Endpoint::host_wait`), as
    /// last told to the waiter (`Shared::host_wait`), or `NOT_WAITING`.
    host_wait: u64,
}

/// The serial section of a socket: how often its lock was taken, how
/// often another thread held it, and the time spent waiting for it and
/// holding it (nanoseconds, `CLOCK_MONOTONIC`).
#[derive(Debug, Default, Clone, Copy)]
struct LockStats {
    acquired: u64,
    contended: u64,
    wait_ns: u64,
    hold_ns: u64,
    /// When the current hold began, if it is one of the sampled ones.
    hold_since: Option<u64>,
}

impl LockStats {
    /// A sampled take: the hold starts now.
    #[cold]
    #[inline(never)]
    fn sample_hold(&mut self) {
        self.hold_since = Some(wait::monotonic_nanos());
    }

    /// The end of a sampled hold.
    #[cold]
    #[inline(never)]
    fn end_hold(&mut self, since: u64) {
        let held = wait::monotonic_nanos().saturating_sub(since);
        self.hold_ns += held * HOLD_SAMPLE;
        self.hold_since = None;
    }
}

/// One lock take in this many has its hold time measured (and counted
/// this many times): two clock reads on every take were a measurable part
/// of a 100-byte round trip.
const HOLD_SAMPLE: u64 = 16;

/// The locked state: a mutex guard that, on a sampled take, counts how
/// long it was held (`LockStats`) when it is dropped.
pub(crate) struct Locked<'a> {
    guard: MutexGuard<'a, State>,
}

impl Deref for Locked<'_> {
    type Target = State;
    #[inline]
    fn deref(&self) -> &State {
        &self.guard
    }
}

impl DerefMut for Locked<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

impl Drop for Locked<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        let ls = &mut self.guard.lock_stats;
        if let Some(since) = ls.hold_since {
            ls.end_hold(since);
        }
    }
}

impl State {
    /// The error of operations on a closed socket.
    pub(crate) fn closed_error(&self) -> Error {
        if self.closed_by_runtime {
            Error::RuntimeShutdown
        } else {
            Error::Closed
        }
    }

    /// Something a waiter may be waiting for happened: a driver sleeping in
    /// `ppoll` must look (see `kick_driver`).
    fn note_completion(&mut self) {
        if self.driving.role == Role::App && self.driving.sleep_until.is_some() {
            self.driving.kick_driver = true;
        }
    }

    /// Completes call `id` and notes it for a sleeping driver.
    #[inline]
    fn complete(&mut self, id: u64, result: Result<Bytes, Error>) {
        if self.calls.complete(id, result) {
            self.note_completion();
        }
    }
}

/// The datapath's counters with the lock's.
fn transport_stats(st: &State) -> crate::TransportStats {
    let ls = st.lock_stats;
    crate::TransportStats {
        lock_acquired: ls.acquired,
        lock_contended: ls.contended,
        lock_wait_ns: ls.wait_ns,
        lock_hold_ns: ls.hold_ns,
        ..st.dp.stats()
    }
}

/// The socket, its endpoint and the shared state of every handle to it.
pub(crate) struct Shared {
    /// The datapath's socket, for waiting on it outside the lock.
    socket: Arc<UdpSocket>,
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
    /// Bound to an IPv6 address other than the wildcard: no IPv4
    /// destination is reachable (the wildcard reaches them mapped).
    ipv4_unreachable: bool,
    /// `CLOCK_MONOTONIC` when the socket opened, in nanoseconds.
    epoch: u64,
    /// The host table the endpoint joined.
    host: Option<crate::host::Joining>,
    /// The waiter of that table in this process (set once the socket is
    /// shared: `host::register`).
    waiter: OnceLock<Arc<crate::host::Waiter>>,
    /// The wait token of the endpoint held back by the table
    /// (`Endpoint::host_wait`; over once a publisher covered its need:
    /// `Host::wait_over`), or `host::NOT_WAITING`: what the waiter reads
    /// without the lock.
    pub(crate) host_wait: AtomicU64,
    /// The waiter saw the wait of `host_wait` over: the driver's next turn
    /// re-checks (`Shared::host_poke`).
    host_poked: AtomicBool,
    pub(crate) config: Config,
    offloads: Offloads,
    state: Mutex<State>,
    /// When an application thread last left the driver role (protocol
    /// clock, nanoseconds); the background thread waits until the socket
    /// has been left alone for its period.
    pub(crate) driver_left: AtomicU64,
    /// An application thread holds the driver role (mirrors
    /// `Role::App`, for the background thread to read without the lock).
    pub(crate) app_driving: AtomicBool,
    pub(crate) closed: AtomicBool,
}

impl Shared {
    /// Binds the UDP socket, configures it (buffers, error queue, offload
    /// probes) and registers its port with a fresh endpoint.
    pub(crate) fn open(addr: SocketAddr, mut config: Config) -> Result<Shared, Error> {
        config.proto.validate()?;
        // Other sockets of a reuseport group serve our address too: our
        // refusals must not vouch for what they saw (at most once).
        config.proto.shared_address |= config.reuse_port;
        let (dp, offloads) = Datapath::open(addr, &mut config)?;
        if config.reuse_port && config.reuse_port_by_cpu {
            homa_sys::udp::steer_reuseport_by_cpu(dp.socket().as_fd())?;
        }
        let local = dp.socket().local_addr()?;
        let mut ep = Endpoint::new(config.proto.clone(), wait::random_u64())?;
        let port = ep.open_socket(local.port()).map_err(Error::from_proto)?;
        // The protocol clock counts from the socket's epoch; the host
        // table's timestamps are CLOCK_MONOTONIC (the same in every process
        // of the host), i.e. the endpoint's Instant plus the epoch.
        let epoch = wait::monotonic_nanos();
        // The socket is bound: the uptime clients hear after a restart
        // counts from now, not from the first datagram.
        ep.start(Instant::ZERO);
        let host = crate::host::join(&mut ep, &config, epoch)?;
        let server = config.server.unwrap_or(addr.port() != 0);
        ep.set_server(port, server).map_err(Error::from_proto)?;
        let state = State {
            ep,
            calls: Calls::default(),
            driving: Driving {
                role: Role::Idle,
                followers: Vec::new(),
                sleep_until: None,
                kick_driver: false,
                timer_at: [None; 2],
                next_due: None,
                next_due_stale: false,
            },
            closed: false,
            closed_by_runtime: false,
            lock_stats: LockStats::default(),
            host_wait: crate::host::NOT_WAITING,
            dp,
        };
        Ok(Shared {
            socket: Arc::clone(state.dp.socket()),
            alarms: [Alarm::new()?, Alarm::new()?],
            local,
            port,
            server,
            ipv6: state.dp.ipv6(),
            ipv4_unreachable: {
                let ip = local.ip().to_canonical();
                ip.is_ipv6() && !ip.is_unspecified()
            },
            epoch,
            host,
            waiter: OnceLock::new(),
            host_wait: AtomicU64::new(crate::host::NOT_WAITING),
            host_poked: AtomicBool::new(false),
            offloads,
            config,
            state: Mutex::new(state),
            driver_left: AtomicU64::new(0),
            app_driving: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        })
    }

    /// The protocol's clock: nanoseconds since the socket opened.
    #[inline]
    pub(crate) fn now(&self) -> Instant {
        Instant::from_nanos(wait::monotonic_nanos().saturating_sub(self.epoch))
    }

    /// The UDP socket (to wait for it).
    #[inline]
    pub(crate) fn socket_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// Locks the state. A panic while holding the lock leaves consistent
    /// enough state (every mutation is a single protocol call), so poison
    /// is ignored.
    ///
    /// Counts the serial section (`TransportStats::lock_*`): the wait is
    /// timed only when another thread holds the lock, and the hold of one
    /// take in [`HOLD_SAMPLE`]; the common take (uncontended, not sampled)
    /// reads no clock and runs in line, with the rest out of line.
    #[inline(always)]
    pub(crate) fn lock(&self) -> Locked<'_> {
        let mut guard = match self.state.try_lock() {
            Ok(g) => g,
            Err(e) => self.lock_slow(e),
        };
        let ls = &mut guard.lock_stats;
        ls.acquired += 1;
        if ls.acquired % HOLD_SAMPLE == 0 {
            ls.sample_hold();
        }
        Locked { guard }
    }

    /// [`Shared::lock`] when the first try failed: poisoned (ignored), or
    /// held by another thread (waited for, and the wait counted).
    #[cold]
    #[inline(never)]
    fn lock_slow<'a>(&'a self, e: TryLockError<MutexGuard<'a, State>>) -> MutexGuard<'a, State> {
        match e {
            TryLockError::Poisoned(p) => p.into_inner(),
            TryLockError::WouldBlock => {
                let t0 = wait::monotonic_nanos();
                let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let ls = &mut g.lock_stats;
                ls.contended += 1;
                ls.wait_ns += wait::monotonic_nanos().saturating_sub(t0);
                g
            }
        }
    }

    /// Runs `f` under the lock, then unlocks (waking whoever it completed).
    pub(crate) fn locked<R>(&self, f: impl FnOnce(&Shared, &mut State) -> R) -> R {
        let mut st = self.lock();
        let r = f(self, &mut st);
        self.unlock(st);
        r
    }

    /// Releases the lock, then wakes whoever the last operation completed.
    #[inline(always)]
    pub(crate) fn unlock(&self, st: Locked<'_>) {
        if st.driving.kick_driver || !st.calls.wake_list.is_empty() {
            self.unlock_waking(st);
        }
        // The busy-poll loop's common case: nobody to wake.
    }

    /// [`Shared::unlock`] with a driver to kick or callers to wake.
    #[inline(never)]
    fn unlock_waking(&self, mut st: Locked<'_>) {
        if std::mem::take(&mut st.driving.kick_driver) {
            self.wake(Sleeper::Driver);
        }
        if st.calls.wake_list.is_empty() {
            return;
        }
        let wake = std::mem::take(&mut st.calls.wake_list);
        drop(st);
        for w in wake {
            w.wake();
        }
    }

    /// Snapshot of the counters.
    pub(crate) fn stats(&self) -> Stats {
        let st = self.lock();
        Stats {
            transport: transport_stats(&st),
            proto: st.ep.stats().clone(),
        }
    }

    /// Snapshot for monitoring.
    pub(crate) fn metrics(&self) -> Metrics {
        let st = self.lock();
        Metrics {
            local_addr: self.local,
            offloads: self.offloads_of(&st),
            transport: transport_stats(&st),
            proto: st.ep.metrics(),
            calls_outstanding: st.calls.outstanding(),
            requests_queued: st.calls.requests_queued(),
            sends_waiting: usize::from(st.dp.wants_write()),
            host: self
                .host
                .as_ref()
                .zip(st.ep.host_view())
                .map(|(j, v)| crate::HostMetrics::new(j, v, self.waiter.get())),
        }
    }

    /// The current offload state (GSO may have been switched off since
    /// the socket opened).
    pub(crate) fn offloads(&self) -> Offloads {
        self.offloads_of(&self.lock())
    }

    fn offloads_of(&self, st: &State) -> Offloads {
        Offloads {
            gso: st.dp.gso(),
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
        if dest.is_ipv4() && self.ipv4_unreachable {
            return Err(Error::AddressFamily);
        }
        let now = self.now();
        let id = st
            .ep
            .send_request(now, self.port, dest, request)
            .map_err(Error::from_proto)?;
        st.calls.start(id, deadline);
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

    /// Discards request `id` from `peer`, which the application will not
    /// answer: its RPC is freed and the client's call fails with
    /// [`Error::Abandoned`] (the request ran).
    pub(crate) fn discard(&self, st: &mut State, peer: SocketAddr, id: u64) -> Result<(), Error> {
        if st.closed {
            return Err(st.closed_error());
        }
        let now = self.now();
        st.ep
            .abandon_request(self.port, normalize(peer), id)
            .map_err(Error::from_proto)?;
        self.after_command(st, now);
        Ok(())
    }

    /// Aborts a client RPC: a waiter gets [`Error::Aborted`]. False if the
    /// call is unknown or already complete.
    pub(crate) fn abort(&self, st: &mut State, id: u64) -> bool {
        if !st.calls.is_pending(id) {
            return false;
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
        if st.calls.is_expired(id, now) {
            let _ = st.ep.abort(self.port, id);
            st.complete(id, Err(Error::DeadlineExceeded));
            // Freeing the RPC may have made room under the send cap.
            self.after_command(st, now);
        }
    }

    /// Forgets a call whose handle was dropped, aborting it if still alive.
    pub(crate) fn forget(&self, st: &mut State, id: u64) {
        if st.calls.forget(id) {
            let _ = st.ep.abort(self.port, id);
            // Freeing the RPC may have made room under the send cap.
            self.after_command(st, self.now());
        }
    }

    /// Takes the next delivered request: `Err(Closed)` once closed,
    /// `Err(ClientOnly)` at once on a socket that accepts no requests.
    #[inline(always)]
    pub(crate) fn take_request(&self, st: &mut State) -> Option<Result<Request, Error>> {
        match self.take_request_message(st) {
            // Made contiguous: a chain is copied, and the copy counts in
            // the receive budget as the pieces did.
            Some(Ok(r)) => Some(Ok(Request {
                id: r.id,
                peer: r.peer,
                body: r.message.into_counted_bytes(&st.ep, self.port),
            })),
            Some(Err(e)) => Some(Err(e)),
            None => None,
        }
    }

    /// [`Shared::take_request`] with the body as it was received.
    #[inline(always)]
    pub(crate) fn take_request_message(
        &self,
        st: &mut State,
    ) -> Option<Result<RequestMessage, Error>> {
        if !self.server {
            return Some(Err(if st.closed {
                st.closed_error()
            } else {
                Error::ClientOnly
            }));
        }
        if let Some(r) = st.calls.take_request() {
            return Some(Ok(r));
        }
        st.closed.then(|| Err(st.closed_error()))
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
        let seen = st.calls.writable_seq();
        let r = op(self, &mut st);
        if matches!(r, Err(Error::WouldBlock)) {
            st.dp.stats_mut().send_cap_waits += 1;
        }
        self.unlock(st);
        (r, seen)
    }

    /// True once room may have appeared under the send cap since
    /// [`Shared::try_send`] returned `seen`, or the socket closed.
    #[inline]
    pub(crate) fn room_since(&self, st: &State, seen: u64) -> bool {
        st.calls.writable_seq() != seen || st.closed
    }

    /// Has the driver wake task `w` at `at` (see [`Calls::wake_at`]),
    /// waking a driver that sleeps past it.
    pub(crate) fn wake_at(&self, st: &mut State, at: Instant, w: &Waker) {
        st.calls.wake_at(at, w);
        st.driving.next_due_stale = true;
        self.kick(st);
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
        // What closing queued (the acks kept to piggyback, so servers free
        // our finished RPCs now) leaves before the UDP socket goes.
        let now = self.now();
        let State { ep, dp, .. } = st;
        dp.flush(ep, now);
        // Free the slot in the host table at once (not after the liveness
        // bound).
        st.ep.leave_host();
        self.host_wait
            .store(crate::host::NOT_WAITING, Ordering::SeqCst);
        // Refuse peers now, not when the last handle is dropped: they
        // learn from ICMP at their next packet instead of retrying into a
        // socket nobody reads.
        st.dp.close(self.local);
        let by_runtime = st.closed_by_runtime;
        st.calls.close(|| {
            if by_runtime {
                Error::RuntimeShutdown
            } else {
                Error::Closed
            }
        });
        st.calls
            .wake_list
            .extend(st.driving.followers.iter().cloned().map(Waiter::Thread));
        self.wake(Sleeper::Driver);
        self.wake(Sleeper::Background);
    }

    // ----- the driver's steps ----------------------------------------------

    /// One non-blocking turn: receive what is queued, then transmit,
    /// dispatch events and (once the socket reads empty) run timers.
    ///
    /// While traffic is sparse (request/response), a turn reads a single
    /// datagram with `recvmsg` and processes it at once: asking for more
    /// would make the kernel try the queue again, an extra pass on the
    /// critical path of every response. After two turns in a row found
    /// data, turns read full batches (up to [`MAX_BATCHES_PER_TURN`] of
    /// them) until the queue is empty.
    ///
    /// Protocol timers run only once the queue was seen empty (or the
    /// batch bound was hit): packets waiting in the socket are evidence of
    /// life that silence timers would otherwise ignore, firing spurious
    /// RESENDs and NEED_ACKs under load. Transmissions (grants above all)
    /// and events are processed after every batch.
    pub(crate) fn turn(&self, st: &mut State, now: Instant) -> Received {
        self.turn_reading(st, now, true)
    }

    /// A turn that reads the socket only if `read`: a driver that knows
    /// the socket is empty (its wait just reported it not readable, or it
    /// read it empty since the reactor's last readiness) skips the
    /// `recvmsg` that would return `EAGAIN`, the one system call of a
    /// timer's or a wake-up's turn. Everything else is [`Shared::turn`]'s.
    pub(crate) fn turn_reading(&self, st: &mut State, now: Instant, read: bool) -> Received {
        let mut total = Received::Empty;
        let mut drained = true;
        // The host table's waiter poked us (a relaxed load per turn).
        let poked = self.host_poked.load(Ordering::Relaxed)
            && self.host_poked.swap(false, Ordering::AcqRel)
            && self.host_rechecked(st, now);
        let batches = if read { MAX_BATCHES_PER_TURN } else { 0 };
        for i in 0..batches {
            let burst = st.dp.rx_streak >= 2;
            let max = if burst { st.dp.batch_capacity() } else { 1 };
            let got = if st.closed {
                Received::Empty
            } else {
                st.dp.receive(&mut st.ep, now, max)
            };
            match got {
                Received::Empty => {
                    if i == 0 {
                        st.dp.rx_streak = 0;
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
                        st.dp.rx_streak = st.dp.rx_streak.saturating_add(1);
                    }
                    if !burst {
                        // Process the one datagram now; the next turn reads on.
                        drained = false;
                        break;
                    }
                    if !st.dp.batch_filled() {
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
            && !poked
            && !st.dp.wants_write()
            && !st.dp.errors_pending()
            && self.next_deadline(st).is_none_or(|d| d > now);
        if !idle {
            // (Nothing arrived and nothing is due: the busy-poll loop's
            // common case skips the endpoint entirely.)
            self.process(st, now, drained);
        }
        total
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

    /// Fails the calls whose deadline passed and wakes the tasks whose
    /// wake-up time came.
    fn expire_deadlines(&self, st: &mut State, now: Instant) {
        while let Some(id) = st.calls.pop_expired(now) {
            let _ = st.ep.abort(self.port, id);
            st.complete(id, Err(Error::DeadlineExceeded));
        }
        st.calls.wake_due(now);
    }

    /// Transmits (reading the error queue if a send or receive reported an
    /// error), then moves the endpoint's events to their waiters.
    fn output(&self, st: &mut State, now: Instant) {
        let State { ep, dp, .. } = st;
        dp.flush(ep, now);
        if dp.errors_pending() {
            dp.read_errors(ep, now);
            dp.flush(ep, now);
        }
        dp.fail_unreachable(ep, now);
        self.dispatch(st);
        st.driving.next_due_stale = true;
        // Nothing to tell the waiter while the endpoint neither waits nor
        // waited (the common case: two loads, no call).
        if self.host.is_some()
            && (st.host_wait != crate::host::NOT_WAITING || st.ep.host_wait().is_some())
        {
            self.note_host_wait(st, now);
        }
    }

    /// Tells the table's waiter what the endpoint waits for, if that
    /// changed (a field compare per output while nothing changes).
    ///
    /// A pass whose wait is already over (a publisher, or the endpoint
    /// itself, covered its need meanwhile) looks again at once (one more
    /// pass), and if that one's wait is over too, nudges the generation so
    /// that the waiter cannot sleep through it.
    #[cold]
    fn note_host_wait(&self, st: &mut State, now: Instant) {
        let Some(waiter) = self.waiter.get() else {
            return;
        };
        for retry in [true, false] {
            let w = st.ep.host_wait().unwrap_or(crate::host::NOT_WAITING);
            if w != st.host_wait {
                st.host_wait = w;
                self.host_wait.store(w, Ordering::SeqCst);
                if w != crate::host::NOT_WAITING {
                    waiter.note_waiting(w);
                }
            }
            if w == crate::host::NOT_WAITING || !waiter.table().wait_over(w) {
                return;
            }
            if retry && st.ep.host_recheck(now) {
                let State { ep, dp, .. } = st;
                dp.flush(ep, now);
                self.dispatch(st);
                continue;
            }
            waiter.nudge();
            return;
        }
    }

    /// The waiter's poke: the table moved while the endpoint was held
    /// back. The driver re-checks in its next turn (the flag), woken
    /// through its own eventfd: the waiter never takes the socket's lock
    /// (a waiter preempted while holding it stalled the driver: measured in
    /// docs/host-sharing.md). A socket nobody drives sees the flag
    /// when a thread next drives it (at the latest the background
    /// thread's period).
    pub(crate) fn host_poke(&self) {
        if !self.host_poked.swap(true, Ordering::SeqCst) {
            self.wake(Sleeper::Driver);
            if !self.app_driving.load(Ordering::Acquire) {
                self.wake(Sleeper::Background);
            }
        }
    }

    /// True while a poke waits for the driver's next turn.
    pub(crate) fn host_poke_pending(&self) -> bool {
        self.host_poked.load(Ordering::Acquire)
    }

    /// A poke: re-checks the table; true if a grant pass is due (or the
    /// waiter's figure must be refreshed), so the turn processes.
    #[cold]
    fn host_rechecked(&self, st: &mut State, now: Instant) -> bool {
        if st.closed {
            return false;
        }
        if !st.ep.host_recheck(now) {
            // Nothing to re-check: the waiter's figure was stale.
            st.host_wait = crate::host::NOT_WAITING;
        }
        true
    }

    /// The host table this socket joined.
    pub(crate) fn host_joining(&self) -> Option<&crate::host::Joining> {
        self.host.as_ref()
    }

    /// Set by `host::register`.
    pub(crate) fn set_waiter(&self, w: Arc<crate::host::Waiter>) {
        let _ = self.waiter.set(w);
    }

    /// Writes what the datapath has waiting (the socket became writable).
    pub(crate) fn flush(&self, st: &mut State, now: Instant) {
        if st.closed {
            return;
        }
        let State { ep, dp, .. } = st;
        dp.flush(ep, now);
    }

    /// Moves the endpoint's events into call slots and the request queue.
    /// (In line: `output` is the hot caller; the host-wait recheck, the
    /// other, is cold.)
    #[inline(always)]
    fn dispatch(&self, st: &mut State) {
        while let Some(ev) = st.ep.poll_event() {
            match ev {
                Event::Response { id, data, more, .. } => {
                    // A chained response is made contiguous (one copy, as
                    // reassembly did).
                    let data = crate::message::contiguous(&st.ep, self.port, data, more);
                    st.complete(id, Ok(data))
                }
                Event::Failed { id, error, .. } => st.complete(id, Err(Error::from_rpc(error))),
                Event::Writable { .. } => {
                    st.calls.writable();
                    st.note_completion();
                }
                Event::Request {
                    port,
                    peer,
                    id,
                    data,
                    more,
                } => {
                    let r = RequestMessage {
                        id,
                        peer,
                        message: crate::Message::from_parts(data, more),
                    };
                    if st.calls.queue_request(r, self.config.max_queued_requests) {
                        st.note_completion();
                    } else {
                        // The application never sees it: the server RPC is
                        // freed as if the request had not arrived, and the
                        // client sends it again after its next probe.
                        st.dp.stats_mut().requests_dropped += 1;
                        let _ = st.ep.decline_request(port, peer, id);
                    }
                }
                _ => {}
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
    #[inline]
    pub(crate) fn kick(&self, st: &mut State) {
        let Some(until) = st.driving.sleep_until else {
            return;
        };
        if self.next_deadline(st).is_some_and(|next| next < until) {
            self.wake(if st.driving.role == Role::Background {
                Sleeper::Background
            } else {
                Sleeper::Driver
            });
        }
    }

    /// The earliest instant something must happen without input: a
    /// protocol timer, a call deadline or a task's wake-up.
    #[inline]
    pub(crate) fn next_deadline(&self, st: &mut State) -> Option<Instant> {
        if std::mem::take(&mut st.driving.next_due_stale) {
            let call = st.calls.next_deadline();
            st.driving.next_due = match (st.ep.poll_timeout(), call) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        st.driving.next_due
    }

    /// A poll reported an error on the socket: read the error queue.
    pub(crate) fn note_poll_error(&self, st: &mut State) {
        st.dp.note_error();
    }

    /// True while a transmit waits for buffer space.
    #[inline]
    pub(crate) fn wants_write(&self, st: &State) -> bool {
        st.dp.wants_write()
    }

    // ----- sleeping --------------------------------------------------------

    /// The eventfd that wakes `who` from its sleep.
    pub(crate) fn wake_fd(&self, who: Sleeper) -> BorrowedFd<'_> {
        self.alarms[who as usize].wake.as_fd()
    }

    /// The timerfd `who` sleeps on.
    pub(crate) fn timer_fd(&self, who: Sleeper) -> BorrowedFd<'_> {
        self.alarms[who as usize].timer.as_fd()
    }

    /// Wakes `who` from its sleep (or makes its next sleep return at once).
    pub(crate) fn wake(&self, who: Sleeper) {
        self.alarms[who as usize].wake.signal();
    }

    /// Resets `who`'s eventfd after a wake-up.
    pub(crate) fn woken(&self, who: Sleeper) {
        self.alarms[who as usize].wake.reset();
    }

    /// Arms `who`'s timerfd at `next` (disarms it for `None`) unless it is
    /// armed there already. On error (the kernel refused) the timer is
    /// not armed: the caller must bound its sleep itself.
    ///
    /// Only the sleeper itself arms, reads or resets its timer, and only
    /// one thread or task sleeps as each kind at a time: a timer another
    /// thread could reset between the arming and the sleep would leave the
    /// sleeper without its wake-up (issue 12: calls outlived their
    /// deadlines when the background thread, woken by a shared timer,
    /// reset it after an application thread had re-armed it and gone to
    /// sleep).
    pub(crate) fn arm_sleep_timer(
        &self,
        st: &mut State,
        who: Sleeper,
        next: Option<Instant>,
        now: Instant,
    ) -> std::io::Result<()> {
        let timer = &self.alarms[who as usize].timer;
        let at = &mut st.driving.timer_at[who as usize];
        if at.is_some_and(|t| t <= now) {
            // Fired (or about to): clear it so it cannot wake the next sleep.
            timer.reset();
            *at = None;
        }
        if next == *at {
            return Ok(());
        }
        let after = next.map(|d| Duration::from_nanos(d.nanos_since(now)));
        let r = timer.arm(after);
        *at = if r.is_ok() { next } else { None };
        r
    }

    /// `who`'s timer fired.
    pub(crate) fn sleep_timer_fired(&self, st: &mut State, who: Sleeper) {
        self.alarms[who as usize].timer.reset();
        st.driving.timer_at[who as usize] = None;
    }
}
