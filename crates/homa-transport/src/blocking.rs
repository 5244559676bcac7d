//! The blocking API: [`Socket`] and its outstanding calls, [`Call`].
//!
//! # Who drives the socket
//!
//! There is no I/O thread on the fast path. A thread that has to wait (for
//! a response in [`Call::wait`], for a request in [`Socket::recv_request`])
//! takes the *driver role* if nobody holds it and runs the datapath itself:
//! it reads the socket with non-blocking `recvmsg`/`recvmmsg`, feeds the
//! endpoint, transmits, and completes whatever calls the datagrams
//! completed. It polls like this for
//! [`Config::busy_poll`](crate::Config::busy_poll) after the last datagram
//! it saw, then sleeps in `ppoll` on the socket and a timerfd armed at the
//! next protocol timer or call deadline (nanosecond resolution, no timer
//! slack; see `doze` for why not a `ppoll` timeout). Other threads that
//! have to wait meanwhile park; the driver
//! unparks exactly the thread whose call or request it completed, and hands
//! the role to a parked thread when it leaves (leader/follower, as in the
//! kernel module where waiting threads poll and the next one inherits).
//!
//! For the common case of one thread per socket (a client issuing calls, a
//! server loop) the thread that waits is the thread that wakes: a response
//! costs one kernel wake-up when sleeping and none when polling. A design
//! with an I/O thread pays a second cross-thread hand-off per message,
//! several times the round trip of a small RPC on a small machine, or
//! needs a second spinning thread per socket (the repository's
//! `docs/performance.md` has the measurements).
//!
//! Progress must not depend on the application being inside the socket,
//! though: a server that replied with a long response and went to compute
//! must still answer the client's grants, and timers must run. So a
//! *background thread* takes the driver role when no application thread has
//! touched it for [`Config::background`](crate::Config::background) (2 ms by
//! default), and blocks in `ppoll` like any driver. An application thread
//! that needs to wait takes the role from it at once (the background thread
//! notices through its own eventfd and goes back to sleep). While
//! applications are active the background thread only wakes to look at
//! the role, at a period that backs off from 2 ms to 64 ms (its wake-ups
//! preempt the busy-polling thread on its core and show in the P99 of
//! small RPCs); a socket the application leaves is taken over within one
//! such period plus 2 ms.
//!
//! # Deadlines
//!
//! Every wait ends by its deadline whatever the driver and the protocol
//! are doing: a driving thread's sleep is bounded by its timerfd (armed at
//! the earliest protocol timer or call deadline) and, should that wake-up
//! be lost, by `ppoll`'s own timeout a few milliseconds later; a parked
//! thread bounds its park by its own call's deadline and fails the call
//! itself when it passes.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use bytes::Bytes;
use homa_proto::Instant;

use homa_sys::wait::{self, Ready};

use crate::calls::{Request, Waiter};
use crate::datapath::Received;
use crate::engine::{Commit, Locked, Role, Shared, Sleeper, State};
use crate::message::{bind_any, resolve, IntoMessage};
use crate::stats::{Metrics, Offloads, Stats};
use crate::{Config, Error};

/// A Homa socket with a blocking API: client and server at once.
///
/// Cloning is cheap and gives another handle to the same socket; the socket
/// closes when the last handle (including outstanding [`Call`]s) is dropped,
/// or at once with [`Socket::close`]. Every method may be called from any
/// number of threads.
///
/// ```
/// use homa_transport::{Config, Socket};
///
/// # fn main() -> Result<(), homa_transport::Error> {
/// // A server on an ephemeral port (port 0 alone makes a client-only socket).
/// let server = Socket::bind_with("127.0.0.1:0", Config::default().with_server(true))?;
/// let client = Socket::bind("127.0.0.1:0")?;
/// let addr = server.local_addr();
/// let s = server.clone();
/// std::thread::spawn(move || {
///     while let Ok(req) = s.recv_request() {
///         s.reply(req.peer, req.id, req.body).unwrap();
///     }
/// });
/// let response = client.call(addr, b"hello")?;
/// assert_eq!(&response[..], b"hello");
/// # Ok(())
/// # }
/// ```
///
/// # Names
///
/// The operations are named alike in both APIs: `call` sends a request and
/// waits for its response; `start_call` sends it and returns a handle,
/// waiting for room under the protocol's send cap if needed;
/// `try_start_call` and `try_reply` never wait (they fail with
/// [`Error::WouldBlock`]); the `_timeout` forms add a deadline.
#[derive(Clone)]
pub struct Socket {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    background: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        self.shared.close(&mut st);
        self.shared.unlock(st);
        if let Some(h) = self.background.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("local_addr", &self.inner.shared.local)
            .finish_non_exhaustive()
    }
}

impl Socket {
    /// Opens a socket on `addr` with the default configuration. Port 0
    /// picks an ephemeral port (a client socket); a specific port also
    /// accepts requests. Binding `[::]` gives a dual-stack socket.
    ///
    /// `addr` is anything [`ToSocketAddrs`]: a `SocketAddr`, `"host:port"`
    /// or `(host, port)`; the first address that binds is used.
    pub fn bind(addr: impl ToSocketAddrs) -> Result<Socket, Error> {
        Socket::bind_with(addr, Config::default())
    }

    /// Opens a socket on `addr` with `config`.
    pub fn bind_with(addr: impl ToSocketAddrs, config: Config) -> Result<Socket, Error> {
        let shared = Arc::new(bind_any(addr, |a| Shared::open(a, config.clone()))?);
        crate::host::register(&shared)?;
        let background = match shared.config.background {
            Some(period) => {
                let s = Arc::clone(&shared);
                let h = thread::Builder::new()
                    .name(format!("homa-bg-{}", shared.port))
                    .spawn(move || background(&s, period))?;
                Some(h)
            }
            None => None,
        };
        Ok(Socket {
            inner: Arc::new(Inner { shared, background }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The local address (the Homa port is its port).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared().local
    }

    /// The offloads in use.
    pub fn offloads(&self) -> Offloads {
        self.shared().offloads()
    }

    /// Counters of the datapath and the protocol.
    pub fn stats(&self) -> Stats {
        self.shared().stats()
    }

    /// A serializable snapshot of the socket's counters and gauges for
    /// monitoring: see [`Metrics`]. Cheap enough to poll, but it takes the
    /// socket's lock and walks the protocol's RPCs and peers.
    pub fn metrics(&self) -> Metrics {
        self.shared().metrics()
    }

    /// Sends `request` to `dest` and waits for the response.
    ///
    /// `dest` is anything [`ToSocketAddrs`] (a host name is looked up on
    /// every call: resolve it once for hot paths); `request` anything
    /// [`IntoMessage`] (borrowed bytes are copied).
    pub fn call(
        &self,
        dest: impl ToSocketAddrs,
        request: impl IntoMessage,
    ) -> Result<Bytes, Error> {
        self.start_call(dest, request)?.wait()
    }

    /// Like [`Socket::call`], but gives up (and aborts the RPC) after
    /// `timeout` with [`Error::DeadlineExceeded`]. The deadline covers
    /// everything: waiting for room under the send cap, for the peer, for
    /// memory.
    pub fn call_timeout(
        &self,
        dest: impl ToSocketAddrs,
        request: impl IntoMessage,
        timeout: Duration,
    ) -> Result<Bytes, Error> {
        self.start_call_timeout(dest, request, timeout)?.wait()
    }

    /// Sends `request` to `dest` and returns with a handle to wait for the
    /// response. Any number of calls may be outstanding, up to the
    /// protocol's send cap (`max_tx_bytes_per_socket` bytes of unfinished
    /// requests); beyond it, this waits for room
    /// ([`Socket::try_start_call`] does not).
    pub fn start_call(
        &self,
        dest: impl ToSocketAddrs,
        request: impl IntoMessage,
    ) -> Result<Call, Error> {
        self.start(dest, request.into_message(), None, true)
    }

    /// Like [`Socket::start_call`] with a deadline `timeout` from now, after
    /// which the call fails with [`Error::DeadlineExceeded`] (a wait for
    /// room counts against it).
    pub fn start_call_timeout(
        &self,
        dest: impl ToSocketAddrs,
        request: impl IntoMessage,
        timeout: Duration,
    ) -> Result<Call, Error> {
        self.start(dest, request.into_message(), Some(timeout), true)
    }

    /// Like [`Socket::start_call`], but fails with [`Error::WouldBlock`]
    /// instead of waiting when the send cap is reached.
    pub fn try_start_call(
        &self,
        dest: impl ToSocketAddrs,
        request: impl IntoMessage,
    ) -> Result<Call, Error> {
        self.start(dest, request.into_message(), None, false)
    }

    /// Like [`Socket::start_call_timeout`], but fails with
    /// [`Error::WouldBlock`] instead of waiting when the send cap is
    /// reached.
    pub fn try_start_call_timeout(
        &self,
        dest: impl ToSocketAddrs,
        request: impl IntoMessage,
        timeout: Duration,
    ) -> Result<Call, Error> {
        self.start(dest, request.into_message(), Some(timeout), false)
    }

    fn start(
        &self,
        dest: impl ToSocketAddrs,
        request: Bytes,
        timeout: Option<Duration>,
        wait_for_room: bool,
    ) -> Result<Call, Error> {
        let until = timeout.map(|t| self.shared().now() + t);
        let dest = resolve(dest, self.shared().local.is_ipv6())?;
        let op = |sh: &Shared, st: &mut State| sh.start_call(st, dest, request.clone(), until);
        let id = if wait_for_room {
            self.send_waiting(until, op)?
        } else {
            self.shared().try_send(op).0?
        };
        Ok(Call {
            socket: self.clone(),
            id,
            deadline: until,
            taken: false,
        })
    }

    /// Runs a send; while the protocol's send cap refuses it, waits for
    /// room until `until` (driving the socket if nobody does, so the
    /// acknowledgements that free room are processed).
    fn send_waiting<T>(
        &self,
        until: Option<Instant>,
        mut op: impl FnMut(&Shared, &mut State) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let sh = self.shared();
        loop {
            let (r, seen) = sh.try_send(&mut op);
            if !matches!(r, Err(Error::WouldBlock)) {
                return r;
            }
            let room = wait(
                sh,
                until,
                |sh, st| sh.room_since(st, seen).then_some(()),
                |_, st, w| st.calls.add_write_waiter(w),
                |_, _, _| {},
            );
            if room.is_none() {
                return Err(Error::DeadlineExceeded);
            }
        }
    }

    /// Waits for the next request. Fails with [`Error::Closed`] once the
    /// socket is closed.
    pub fn recv_request(&self) -> Result<Request, Error> {
        self.recv_until(None).unwrap_or(Err(Error::Closed))
    }

    /// [`Socket::recv_request`] with the body as it was received: a
    /// request longer than one packet may be a chain of the receive
    /// buffers it arrived in, read without a copy ([`crate::Message`]);
    /// `recv_request` copies such a body once into contiguous storage.
    pub fn recv_request_message(&self) -> Result<crate::RequestMessage, Error> {
        self.recv_with(None, Shared::take_request_message)
            .unwrap_or(Err(Error::Closed))
    }

    /// Waits at most `timeout` for the next request; `Ok(None)` if none came.
    pub fn recv_request_timeout(&self, timeout: Duration) -> Result<Option<Request>, Error> {
        let until = self.shared().now() + timeout;
        self.recv_until(Some(until)).transpose()
    }

    /// Returns a request if one is ready, without waiting.
    pub fn try_recv_request(&self) -> Result<Option<Request>, Error> {
        let sh = self.shared();
        let mut st = sh.lock();
        if st.driving.role == Role::Idle {
            let now = sh.now();
            sh.turn(&mut st, now);
        }
        let r = sh.take_request(&mut st);
        sh.unlock(st);
        match r {
            Some(Ok(r)) => Ok(Some(r)),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }

    fn recv_until(&self, until: Option<Instant>) -> Option<Result<Request, Error>> {
        self.recv_with(until, Shared::take_request)
    }

    /// Waits until `until` (or for ever) for the next request, taken by
    /// `take` (contiguous or as received).
    fn recv_with<T>(
        &self,
        until: Option<Instant>,
        take: impl Fn(&Shared, &mut State) -> Option<Result<T, Error>>,
    ) -> Option<Result<T, Error>> {
        wait(
            self.shared(),
            until,
            take,
            |_, st, w| st.calls.add_request_waiter(w),
            |_, st, w| st.calls.remove_request_waiter(w),
        )
    }

    /// Sends `response` to the request `id` from `peer` (both from the
    /// [`Request`]). Returns once the first packets are with the kernel; the
    /// rest go out as the client grants them. Waits while the protocol's
    /// send cap is reached.
    pub fn reply(
        &self,
        peer: SocketAddr,
        id: u64,
        response: impl IntoMessage,
    ) -> Result<(), Error> {
        let response = response.into_message();
        self.send_waiting(None, |sh, st| sh.reply(st, peer, id, response.clone()))
    }

    /// Tells the transport that the application will not answer request
    /// `id` from `peer` (both from the [`Request`]): its RPC is freed and
    /// the client's call fails at once with [`Error::Abandoned`] (the
    /// request ran). A request taken and neither answered nor discarded
    /// holds its RPC until the socket closes, and with it one of the
    /// client's `max_rpcs_per_peer` slots.
    pub fn discard(&self, peer: SocketAddr, id: u64) -> Result<(), Error> {
        self.shared().locked(|sh, st| sh.discard(st, peer, id))
    }

    /// Like [`Socket::reply`], but fails with [`Error::WouldBlock`]
    /// instead of waiting when the send cap is reached.
    pub fn try_reply(
        &self,
        peer: SocketAddr,
        id: u64,
        response: impl IntoMessage,
    ) -> Result<(), Error> {
        let response = response.into_message();
        self.shared()
            .locked(|sh, st| sh.reply(st, peer, id, response))
    }

    /// Aborts the outstanding call `id`: whoever waits for it gets
    /// [`Error::Aborted`]. The server is not told. False if no such call is
    /// outstanding.
    pub fn abort(&self, id: u64) -> bool {
        self.shared().locked(|sh, st| sh.abort(st, id))
    }

    /// Output commit (as Linux's `sch_plug`, used by checkpointing
    /// systems): starts a new epoch. Requests and responses sent from now
    /// on are held, invisible to peers, until their epoch is released by
    /// [`Socket::release_one`] or [`Socket::release_all`]; order within
    /// and across epochs is kept. Held messages count against the send cap,
    /// so a send that waits for room while everything is held waits until
    /// another thread releases (or its deadline passes).
    pub fn plug(&self) -> Result<(), Error> {
        self.commit(Commit::Plug).map(|_| ())
    }

    /// Output commit: releases the oldest epoch that a later
    /// [`Socket::plug`] closed. Returns how many messages it released (0
    /// when no epoch is closed yet).
    pub fn release_one(&self) -> Result<usize, Error> {
        self.commit(Commit::ReleaseOne)
    }

    /// Output commit: releases every held message and stops holding until
    /// the next [`Socket::plug`]. Returns how many messages it released.
    pub fn release_all(&self) -> Result<usize, Error> {
        self.commit(Commit::ReleaseAll)
    }

    fn commit(&self, op: Commit) -> Result<usize, Error> {
        self.shared().locked(|sh, st| sh.output_commit(st, op))
    }

    /// Closes the socket now: outstanding calls and waiting threads fail
    /// with [`Error::Closed`], unanswered requests are forgotten. Other
    /// handles stay valid but every operation fails.
    pub fn close(&self) {
        self.shared().locked(|sh, st| sh.close(st));
    }
}

/// An outstanding call started with [`Socket::start_call`]. Dropping it
/// before the response arrived aborts the RPC.
#[derive(Debug)]
pub struct Call {
    socket: Socket,
    id: u64,
    /// The call's deadline: every wait for it ends by then.
    deadline: Option<Instant>,
    taken: bool,
}

impl Call {
    /// The RPC's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Waits for the response.
    pub fn wait(mut self) -> Result<Bytes, Error> {
        self.wait_until(None).unwrap_or(Err(Error::Closed))
    }

    /// Waits at most `timeout`: `None` if the call is still outstanding
    /// (it continues), else its result (once; later calls return
    /// `Some(Err(Error::UnknownRpc))`).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Result<Bytes, Error>> {
        let until = self.socket.shared().now() + timeout;
        self.wait_until(Some(until))
    }

    /// True if the result is available (a wait returns at once).
    pub fn is_done(&self) -> bool {
        let sh = self.socket.shared();
        let st = sh.lock();
        self.taken || st.calls.is_done(self.id)
    }

    /// Aborts the call (equivalent to dropping it).
    pub fn abort(self) {}

    /// Waits until `until` or the call's deadline, whichever is first. The
    /// waiting thread bounds its own sleep by the deadline (parked or
    /// driving) and fails the call itself if the deadline passed, so the
    /// deadline holds whatever the driver and the protocol are doing.
    fn wait_until(&mut self, until: Option<Instant>) -> Option<Result<Bytes, Error>> {
        if self.taken {
            return Some(Err(Error::UnknownRpc));
        }
        let id = self.id;
        let sh = self.socket.shared();
        let limit = match (until, self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut r = wait(
            sh,
            limit,
            |_, st| st.calls.take_result(id),
            |_, st, w| st.calls.set_waiter(id, w),
            |_, _, _| {},
        );
        if r.is_none() && self.deadline.is_some_and(|d| sh.now() >= d) {
            r = sh.locked(|sh, st| {
                sh.expire_call(st, id);
                st.calls.take_result(id)
            });
        }
        self.taken = r.is_some();
        r
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.taken {
            let sh = self.socket.shared();
            let mut st = sh.lock();
            sh.forget(&mut st, self.id);
            sh.unlock(st);
        }
    }
}

/// While applications keep using the socket, the background thread's
/// period doubles up to this multiple of `Config::background`. Each of its
/// wake-ups preempts whatever runs on its core (typically the thread that
/// created the socket, busy-polling); at the base period they showed in
/// the P99 of small round trips (`docs/performance.md`). The price is that a
/// socket the application leaves with work in flight is taken over up to
/// one such period later.
const BACKGROUND_BACKOFF: u32 = 32;

/// Deadlines nearer than this are spun for rather than slept for. A sleep
/// in `ppoll` overshoots its timeout by up to the thread's timer slack
/// (50 µs by default on Linux) and a wake-up costs more CPU than the spin,
/// so sleeping toward a deadline closer than the slack only makes it late.
/// The pacer's wake-ups, microseconds apart during a bulk transfer, are
/// the deadlines this is for: sleeping for them capped bulk throughput.
const SPIN_BEFORE_DEADLINE: u64 = 50_000;

/// True if deadline `next` is too near to sleep for (see
/// [`SPIN_BEFORE_DEADLINE`]).
fn deadline_near(next: Option<Instant>, now: Instant) -> bool {
    next.is_some_and(|d| d.nanos_since(now) < SPIN_BEFORE_DEADLINE)
}

/// A driver's turn that spins instead of sleeping: counted (`spins`), and
/// the lock let go for a moment ([`relock`]).
fn spin<'a>(sh: &'a Shared, mut st: Locked<'a>) -> Locked<'a> {
    st.dp.stats_mut().spins += 1;
    relock(sh, st)
}

/// How long past its deadline a driver's sleep may last if the timerfd's
/// wake-up were lost (see `doze`). Longer than a 4 ms scheduler tick:
/// shorter `ppoll` timeouts slow every wake-up (`docs/performance.md`).
const SLEEP_BACKSTOP: Duration = Duration::from_millis(5);

/// Waits until `check` yields a value or `until` passes (`None`), driving
/// the socket when nobody else does; see the module documentation. A
/// thread that parks registers itself with `register`, and withdraws with
/// `leave` when it returns.
fn wait<T>(
    sh: &Shared,
    until: Option<Instant>,
    mut check: impl FnMut(&Shared, &mut State) -> Option<T>,
    register: impl Fn(&Shared, &mut State, Waiter),
    leave: impl Fn(&Shared, &mut State, &Waiter),
) -> Option<T> {
    let mut st = sh.lock();
    let mut registered = None;
    let v = loop {
        if let Some(v) = check(sh, &mut st) {
            break Some(v);
        }
        let now = sh.now();
        if until.is_some_and(|u| now >= u) {
            break None;
        }
        if st.driving.role != Role::App {
            if st.driving.role == Role::Background {
                // Tell the background thread to stand down.
                sh.wake(Sleeper::Background);
            }
            st.driving.role = Role::App;
            sh.app_driving.store(true, Ordering::Release);
            let (v, last);
            (v, st, last) = lead(sh, st, until, now, &mut check);
            st.driving.role = Role::Idle;
            // The last turn's time: the background thread compares it
            // with its period (milliseconds), so a read of its own would
            // buy nothing.
            sh.driver_left.store(last.as_nanos(), Ordering::Release);
            sh.app_driving.store(false, Ordering::Release);
            break v;
        }
        // Only a thread that parks needs its handle (an Arc clone).
        let me = thread::current();
        register(sh, &mut st, Waiter::Thread(me.clone()));
        registered = Some(Waiter::Thread(me.clone()));
        st.driving.followers.push(me.clone());
        drop(st);
        match until {
            Some(u) => thread::park_timeout(Duration::from_nanos(u.nanos_since(now))),
            None => thread::park(),
        }
        st = sh.lock();
        if let Some(i) = st.driving.followers.iter().rposition(|t| t.id() == me.id()) {
            st.driving.followers.swap_remove(i);
        }
    };
    if let Some(w) = registered {
        leave(sh, &mut st, &w);
    }
    pass_baton(&mut st);
    sh.unlock(st);
    v
}

/// Lets go of the lock for a moment between a driver's turns (waking whoever
/// the last turn completed), so other threads can send meanwhile.
fn relock<'a>(sh: &'a Shared, st: Locked<'a>) -> Locked<'a> {
    sh.unlock(st);
    std::hint::spin_loop();
    sh.lock()
}

/// If nobody drives and threads are parked, wakes one to take over.
fn pass_baton(st: &mut State) {
    if st.driving.role == Role::Idle {
        if let Some(t) = st.driving.followers.last() {
            st.calls.wake_list.push(Waiter::Thread(t.clone()));
        }
    }
}

/// Drives the socket until `check` yields or `until` passes. The caller
/// holds the driver role and read the clock at `now`, just before: the
/// first turn runs at that time, each later one reads the clock once.
/// Returns the value, the lock and the time of the last turn.
fn lead<'a, T>(
    sh: &'a Shared,
    mut st: Locked<'a>,
    until: Option<Instant>,
    mut now: Instant,
    check: &mut impl FnMut(&Shared, &mut State) -> Option<T>,
) -> (Option<T>, Locked<'a>, Instant) {
    let busy = u64::try_from(sh.config.busy_poll.as_nanos()).unwrap_or(u64::MAX);
    let mut last_input = now;
    let mut first = true;
    // The last sleep's poll saw the socket not readable (woken by the
    // timer or a poke): the next turn need not read it.
    let mut seen_empty = false;
    loop {
        if !first {
            now = sh.now();
        }
        first = false;
        let got = sh.turn_reading(&mut st, now, !seen_empty);
        seen_empty = false;
        if let Some(v) = check(sh, &mut st) {
            return (Some(v), st, now);
        }
        if until.is_some_and(|u| now >= u) {
            return (None, st, now);
        }
        if !matches!(got, Received::Empty) {
            last_input = now;
            continue;
        }
        let next = match (sh.next_deadline(&mut st), until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if now.nanos_since(last_input) < busy || deadline_near(next, now) {
            // Spin without the lock so other threads can send meanwhile.
            st = spin(sh, st);
            continue;
        }
        let readable;
        (st, readable) = doze(sh, st, next, now, Sleeper::Driver);
        st.driving.sleep_until = None;
        if readable == Some(true) {
            last_input = sh.now();
        }
        seen_empty = readable == Some(false);
    }
}

/// Releases the lock and sleeps until the socket is readable (or writable,
/// if a transmit waits for room), `wake` is signalled, or `next` passes;
/// relocks and returns whether the socket was readable (`None` if the poll
/// failed or the socket reported an error: then nobody knows). The caller
/// resets `sleep_until` if it still holds the driver role.
///
/// The deadline is a timerfd in the poll set, not `ppoll`'s timeout,
/// re-armed only when the deadline moves (the protocol's tick every 1 ms,
/// rarely anything else): a `ppoll` timeout shorter than the scheduler
/// tick made every wake-up slower, and a pending timerfd made wake-ups
/// cheaper (`docs/performance.md` has the measurements).
///
/// The timerfd is the precise wake-up; `ppoll`'s own timeout, at
/// [`SLEEP_BACKSTOP`] past `next`, bounds the sleep if that wake-up is
/// ever lost (a deadline then fires that much late instead of never).
fn doze<'a>(
    sh: &'a Shared,
    mut st: Locked<'a>,
    next: Option<Instant>,
    now: Instant,
    who: Sleeper,
) -> (Locked<'a>, Option<bool>) {
    st.driving.sleep_until = Some(next.unwrap_or(Instant::MAX));
    let want_write = sh.wants_write(&st);
    let left = next.map(|d| Duration::from_nanos(d.nanos_since(now)));
    let timeout = if sh.arm_sleep_timer(&mut st, who, next, now).is_ok() {
        left.map(|d| d + SLEEP_BACKSTOP)
    } else {
        left
    };
    sh.unlock(st);
    let polled = wait::poll(
        [
            (sh.socket_fd(), want_write),
            (sh.wake_fd(who), false),
            (sh.timer_fd(who), false),
        ],
        timeout,
    );
    let ready = polled.as_ref().copied().unwrap_or([Ready::default(); 3]);
    if ready[1].readable {
        sh.woken(who);
    }
    let mut st = sh.lock();
    let stats = st.dp.stats_mut();
    stats.driver_wakeups += 1;
    stats.write_wakeups += u64::from(want_write && ready[0].writable);
    if ready[2].readable {
        sh.sleep_timer_fired(&mut st, who);
    }
    if polled.is_err() || ready[0].error {
        sh.note_poll_error(&mut st);
        return (st, None);
    }
    (st, Some(ready[0].readable))
}

/// The background thread: takes the driver role once nobody has driven
/// the socket for `period`, and drives it until an application thread
/// takes over. See the module documentation.
///
/// While an application thread drives, it checks back at a period that
/// doubles up to [`BACKGROUND_BACKOFF`] times `period`. When it finds the
/// role free it takes it if the last application driver left at least
/// `period` ago, else it looks again when that will be the case: a socket
/// the application leaves (to compute, holding requests) is taken over
/// within one back-off period plus `period`, not two back-off periods.
fn background(sh: &Shared, period: Duration) {
    let most = period * BACKGROUND_BACKOFF;
    let mut backoff = period;
    let mut sleep = period;
    loop {
        thread::park_timeout(sleep);
        if sh.closed.load(Ordering::Acquire) {
            return;
        }
        // Atomics first: the state's lock is the busy-polling driver's, and
        // taking it would make the driver pay a futex wake-up.
        if sh.app_driving.load(Ordering::Acquire) {
            backoff = (backoff * 2).min(most);
            sleep = backoff;
            continue;
        }
        let left = Instant::from_nanos(sh.driver_left.load(Ordering::Acquire));
        let idle = Duration::from_nanos(sh.now().nanos_since(left));
        if idle < period {
            // Recently driven: look again once it has been idle for `period`.
            sleep = (period - idle).max(Duration::from_micros(100));
            continue;
        }
        let mut st = sh.lock();
        if st.closed {
            return;
        }
        if st.driving.role != Role::Idle {
            drop(st);
            backoff = (backoff * 2).min(most);
            sleep = backoff;
            continue;
        }
        backoff = period;
        sleep = period;
        st.driving.role = Role::Background;
        sh.woken(Sleeper::Background);
        let mut seen_empty = false;
        loop {
            let now = sh.now();
            let got = sh.turn_reading(&mut st, now, !seen_empty);
            seen_empty = false;
            if st.closed || st.driving.role != Role::Background {
                break;
            }
            if !matches!(got, Received::Empty) {
                st = relock(sh, st);
                if st.driving.role != Role::Background {
                    break;
                }
                continue;
            }
            let next = sh.next_deadline(&mut st);
            if deadline_near(next, now) {
                st = spin(sh, st);
                if st.driving.role != Role::Background {
                    break;
                }
                continue;
            }
            let readable;
            (st, readable) = doze(sh, st, next, now, Sleeper::Background);
            seen_empty = readable == Some(false);
            if st.driving.role != Role::Background {
                break;
            }
            st.driving.sleep_until = None;
        }
        if st.driving.role == Role::Background {
            st.driving.role = Role::Idle;
            st.driving.sleep_until = None;
        }
        let closed = st.closed;
        sh.unlock(st);
        if closed {
            return;
        }
    }
}
