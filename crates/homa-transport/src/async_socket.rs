//! The tokio API: [`AsyncSocket`] and its outstanding calls, [`AsyncCall`].
//!
//! # Who drives the socket
//!
//! Each socket has one driver task, spawned on the runtime that opened it.
//! It waits on the runtime's reactor for the socket (readable, writable,
//! error queue), an eventfd (woken when an application command creates an
//! earlier deadline, or on close) and a timerfd armed at the next protocol
//! timer or call deadline. A timerfd rather than `tokio::time::sleep`
//! because tokio's timer wheel has millisecond resolution and the protocol's
//! timers need better.
//!
//! The futures of calls also drive: while a call is younger than
//! [`Config::busy_poll`](crate::Config::busy_poll), each poll of it reads
//! the socket itself and, if the response is not there, wakes its own task
//! again (a cooperative busy-poll: other tasks still run). After that it
//! parks its waker in the call slot and the driver task completes it. So a
//! fast response is picked up by the task that waits for it, without the
//! reactor, and a slow one costs the reactor's wake-up plus a task switch.

use std::future::{poll_fn, Future};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use homa_proto::Instant;
use tokio::io::unix::AsyncFd;
use tokio::io::{Interest, Ready};

use crate::calls::{Request, Waiter};
use crate::datapath::Received;
use crate::engine::{Commit, Shared, Sleeper, State};
use crate::message::{bind_any, resolve, IntoMessage};
use crate::stats::{Metrics, Offloads, Stats};
use crate::{Config, Error};

/// A Homa socket with an async API for tokio: client and server at once.
///
/// Must be opened inside a tokio runtime (it spawns its driver task there)
/// and used while that runtime runs: if the runtime shuts down while the
/// socket lives, the socket closes and every pending and later operation
/// fails with [`Error::RuntimeShutdown`]. It may be used from other
/// runtimes and threads meanwhile, but its driver (receiving, timers, call
/// deadlines) runs on the opening runtime: a runtime whose threads block
/// (a current-thread runtime inside a blocking call, say) holds every
/// deadline of the socket until it runs again. Open sockets on a runtime
/// that keeps running. Cloning gives another handle to the
/// same socket; the socket closes when the last handle (including
/// outstanding [`AsyncCall`]s) is dropped, or at once with
/// [`AsyncSocket::close`].
///
/// ```no_run
/// use homa_transport::AsyncSocket;
///
/// # async fn demo() -> Result<(), homa_transport::Error> {
/// let server = AsyncSocket::bind("127.0.0.1:4000")?;
/// tokio::spawn(async move {
///     while let Ok(req) = server.recv_request().await {
///         server.reply(req.peer, req.id, req.body).await.unwrap();
///     }
/// });
/// let client = AsyncSocket::bind("127.0.0.1:0")?;
/// let response = client.call("127.0.0.1:4000", b"hi").await?;
/// assert_eq!(&response[..], b"hi");
/// # Ok(())
/// # }
/// ```
///
/// The operations have the blocking API's names (see
/// [`crate::Socket`]): `start_call` waits for room under the send cap,
/// `try_start_call` does not.
#[derive(Clone)]
pub struct AsyncSocket {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        self.shared.close(&mut st);
        self.shared.unlock(st);
    }
}

impl std::fmt::Debug for AsyncSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncSocket")
            .field("local_addr", &self.inner.shared.local)
            .finish_non_exhaustive()
    }
}

/// Which of the shared socket's descriptors a reactor registration is for.
#[derive(Clone, Copy)]
enum Which {
    Socket,
    Wake,
    Timer,
}

/// A descriptor owned by [`Shared`], kept open by the `Arc` this holds:
/// whatever registers it with the reactor cannot outlive it (closing the
/// socket only makes it refuse peers; the descriptor stays open).
struct SharedFd(Arc<Shared>, Which);

impl AsRawFd for SharedFd {
    fn as_raw_fd(&self) -> RawFd {
        match self.1 {
            Which::Socket => self.0.socket_fd().as_raw_fd(),
            Which::Wake => self.0.wake_fd(Sleeper::Driver).as_raw_fd(),
            Which::Timer => self.0.timer_fd(Sleeper::Driver).as_raw_fd(),
        }
    }
}

/// A descriptor the registration keeps open: the socket's own (held by
/// an `Arc` to its owner) or a duplicate the registration owns.
trait KeptOpen: AsRawFd {}
impl KeptOpen for SharedFd {}
impl KeptOpen for std::os::fd::OwnedFd {}

/// Registers one of the socket's descriptors with the reactor. tokio's
/// registration is `unsafe` (the descriptor must stay open while
/// registered): the crate's one `unsafe` site, listed in `homa_sys`'s
/// documentation.
#[allow(unsafe_code)]
fn register<T: KeptOpen>(fd: T, interest: Interest) -> std::io::Result<AsyncFd<T>> {
    // SAFETY: a `SharedFd` holds an `Arc` to the descriptor's owner, and no
    // descriptor is closed while the registration lives (closing the
    // socket only makes it refuse peers); an `OwnedFd` is owned by the
    // registration itself, closed only after it is deregistered;
    // `as_raw_fd` always returns the same value.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(Into::into)
}

impl AsyncSocket {
    /// Opens a socket on `addr` with the default configuration; see
    /// [`crate::Socket::bind`] for the meaning of the address.
    pub fn bind(addr: impl ToSocketAddrs) -> Result<AsyncSocket, Error> {
        AsyncSocket::bind_with(addr, Config::default())
    }

    /// Opens a socket on `addr` with `config` (`config.background` does not
    /// apply: the driver task plays its part).
    pub fn bind_with(addr: impl ToSocketAddrs, config: Config) -> Result<AsyncSocket, Error> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|e| Error::Io(std::io::Error::other(e)))?;
        let shared = Arc::new(bind_any(addr, |a| Shared::open(a, config.clone()))?);
        crate::host::register(&shared)?;
        let _guard = handle.enter();
        // Not WRITABLE: with it, every sent packet's freed buffer space
        // would wake the reactor. The driver watches writability on a
        // second descriptor, only while a transmit waits for room.
        let sock = register(
            SharedFd(Arc::clone(&shared), Which::Socket),
            Interest::READABLE | Interest::ERROR,
        )?;
        let wake = register(
            SharedFd(Arc::clone(&shared), Which::Wake),
            Interest::READABLE,
        )?;
        let timer = register(
            SharedFd(Arc::clone(&shared), Which::Timer),
            Interest::READABLE,
        )?;
        let guard = DriverGuard(Arc::clone(&shared));
        handle.spawn(async move {
            let s = &guard.0;
            let _ = drive(s, sock, wake, timer).await;
            // Reactor trouble: nothing can drive the socket any more.
            let mut st = s.lock();
            s.close(&mut st);
            s.unlock(st);
        });
        Ok(AsyncSocket {
            inner: Arc::new(Inner { shared }),
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

    /// Sends `request` to `dest` and waits for the response (and, first,
    /// for room under the protocol's send cap if it is reached).
    ///
    /// `dest` is anything [`ToSocketAddrs`]; a host name is looked up with
    /// the blocking system resolver, on every call: in async code pass a
    /// `SocketAddr` (e.g. from `tokio::net::lookup_host`). `request` is
    /// anything [`IntoMessage`] (borrowed bytes are copied).
    pub async fn call(
        &self,
        dest: impl ToSocketAddrs,
        request: impl IntoMessage,
    ) -> Result<Bytes, Error> {
        self.start_call(dest, request).await?.await
    }

    /// Like [`AsyncSocket::call`], failing with [`Error::DeadlineExceeded`]
    /// (and aborting the RPC) after `timeout`. The deadline covers
    /// everything: waiting for room under the send cap, for the peer, for
    /// memory.
    pub async fn call_timeout(
        &self,
        dest: impl ToSocketAddrs,
        request: impl IntoMessage,
        timeout: Duration,
    ) -> Result<Bytes, Error> {
        self.start_call_timeout(dest, request, timeout).await?.await
    }

    /// Sends `request` to `dest` and returns the future of its response,
    /// first waiting for room under the protocol's send cap if it is
    /// reached ([`AsyncSocket::try_start_call`] does not). Any number of
    /// calls may be outstanding; dropping the future aborts the RPC.
    pub async fn start_call(
        &self,
        dest: impl ToSocketAddrs,
        request: impl IntoMessage,
    ) -> Result<AsyncCall, Error> {
        let dest = resolve(dest, self.shared().local.is_ipv6())?;
        self.start_waiting(dest, request.into_message(), None).await
    }

    /// Like [`AsyncSocket::start_call`] with a deadline `timeout` from now
    /// (a wait for room counts against it).
    pub async fn start_call_timeout(
        &self,
        dest: impl ToSocketAddrs,
        request: impl IntoMessage,
        timeout: Duration,
    ) -> Result<AsyncCall, Error> {
        let until = self.shared().now() + timeout;
        let dest = resolve(dest, self.shared().local.is_ipv6())?;
        self.start_waiting(dest, request.into_message(), Some(until))
            .await
    }

    /// The former name of [`AsyncSocket::start_call`].
    #[deprecated(note = "renamed start_call (the same name as the blocking API)")]
    pub async fn send_request(
        &self,
        dest: impl ToSocketAddrs,
        request: impl IntoMessage,
    ) -> Result<AsyncCall, Error> {
        self.start_call(dest, request).await
    }

    async fn start_waiting(
        &self,
        dest: SocketAddr,
        request: Bytes,
        until: Option<Instant>,
    ) -> Result<AsyncCall, Error> {
        let id = self
            .send_waiting(until, |sh, st| {
                sh.start_call(st, dest, request.clone(), until)
            })
            .await?;
        Ok(self.call_handle(id, until))
    }

    /// Runs a send; while the protocol's send cap refuses it, waits for
    /// room (an `Event::Writable`) until `until`.
    async fn send_waiting<T>(
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
            // The driver wakes the task at `until` (see `Shared::wake_at`).
            let mut alarm = WakeAt {
                shared: sh,
                waker: None,
            };
            poll_fn(|cx| {
                let mut st = sh.lock();
                let r = if sh.room_since(&st, seen) {
                    Poll::Ready(Ok(()))
                } else if until.is_some_and(|u| sh.now() >= u) {
                    Poll::Ready(Err(Error::DeadlineExceeded))
                } else {
                    let w = cx.waker().clone();
                    st.calls.add_write_waiter(Waiter::Task(w.clone()));
                    if let Some(u) = until {
                        sh.wake_at(&mut st, u, &w);
                        alarm.waker = Some(w);
                    }
                    Poll::Pending
                };
                sh.unlock(st);
                r
            })
            .await?;
        }
    }

    /// Like [`AsyncSocket::start_call`], but fails with
    /// [`Error::WouldBlock`] instead of waiting when the protocol's send
    /// cap is reached.
    pub fn try_start_call(
        &self,
        dest: impl ToSocketAddrs,
        request: impl IntoMessage,
    ) -> Result<AsyncCall, Error> {
        self.try_start(dest, request.into_message(), None)
    }

    /// Like [`AsyncSocket::try_start_call`] with a deadline `timeout` from
    /// now.
    pub fn try_start_call_timeout(
        &self,
        dest: impl ToSocketAddrs,
        request: impl IntoMessage,
        timeout: Duration,
    ) -> Result<AsyncCall, Error> {
        let until = self.shared().now() + timeout;
        self.try_start(dest, request.into_message(), Some(until))
    }

    fn try_start(
        &self,
        dest: impl ToSocketAddrs,
        request: Bytes,
        until: Option<Instant>,
    ) -> Result<AsyncCall, Error> {
        let dest = resolve(dest, self.shared().local.is_ipv6())?;
        let (r, _) = self
            .shared()
            .try_send(|sh, st| sh.start_call(st, dest, request, until));
        Ok(self.call_handle(r?, until))
    }

    /// The future of started call `id`.
    fn call_handle(&self, id: u64, deadline: Option<Instant>) -> AsyncCall {
        AsyncCall {
            socket: self.clone(),
            id,
            deadline,
            taken: false,
            spin_until: None,
        }
    }

    /// Waits for the next request; [`Error::Closed`] once closed
    /// ([`Error::RuntimeShutdown`] if the runtime that opened the socket
    /// shut down).
    pub async fn recv_request(&self) -> Result<Request, Error> {
        self.recv_until(None).await.unwrap_or(Err(Error::Closed))
    }

    /// Waits at most `timeout` for the next request; `Ok(None)` if none
    /// came. The runtime keeps the deadline (no tokio timer needed).
    pub async fn recv_request_timeout(&self, timeout: Duration) -> Result<Option<Request>, Error> {
        let until = self.shared().now() + timeout;
        self.recv_until(Some(until)).await.transpose()
    }

    /// Returns a request if one is ready, without waiting.
    pub fn try_recv_request(&self) -> Result<Option<Request>, Error> {
        let sh = self.shared();
        let mut st = sh.lock();
        let mut r = sh.take_request(&mut st);
        if r.is_none() {
            let now = sh.now();
            sh.turn(&mut st, now);
            r = sh.take_request(&mut st);
        }
        sh.unlock(st);
        r.transpose()
    }

    /// Waits for a request until `until`: `None` once it passed.
    async fn recv_until(&self, until: Option<Instant>) -> Option<Result<Request, Error>> {
        let mut registered = RequestWait {
            shared: self.shared(),
            waker: None,
        };
        let mut alarm = WakeAt {
            shared: self.shared(),
            waker: None,
        };
        poll_fn(|cx| {
            let sh = self.shared();
            let mut st = sh.lock();
            if let Some(r) = sh.take_request(&mut st) {
                sh.unlock(st);
                return Poll::Ready(Some(r));
            }
            let now = sh.now();
            sh.turn(&mut st, now);
            let r = sh.take_request(&mut st);
            let r = match (r, until) {
                (Some(r), _) => Poll::Ready(Some(r)),
                (None, Some(u)) if now >= u => Poll::Ready(None),
                (None, _) => {
                    let w = cx.waker().clone();
                    st.calls.add_request_waiter(Waiter::Task(w.clone()));
                    if let Some(u) = until {
                        sh.wake_at(&mut st, u, &w);
                        alarm.waker = Some(w.clone());
                    }
                    registered.waker = Some(w);
                    Poll::Pending
                }
            };
            sh.unlock(st);
            r
        })
        .await
    }

    /// Sends `response` to request `id` from `peer`, waiting for room
    /// under the protocol's send cap if it is reached.
    pub async fn reply(
        &self,
        peer: SocketAddr,
        id: u64,
        response: impl IntoMessage,
    ) -> Result<(), Error> {
        let response = response.into_message();
        self.send_waiting(None, |sh, st| sh.reply(st, peer, id, response.clone()))
            .await
    }

    /// Tells the transport that the application will not answer request
    /// `id` from `peer`: its RPC is freed and the client's call fails at
    /// once with [`Error::Abandoned`] (the request ran). A request taken
    /// and neither answered nor discarded holds its RPC until the socket
    /// closes, and with it one of the client's `max_rpcs_per_peer` slots.
    pub fn discard(&self, peer: SocketAddr, id: u64) -> Result<(), Error> {
        self.shared().locked(|sh, st| sh.discard(st, peer, id))
    }

    /// Sends `response` without waiting: [`Error::WouldBlock`] when the
    /// protocol's send cap is reached.
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

    /// Aborts outstanding call `id`; its future resolves to
    /// [`Error::Aborted`]. False if no such call is outstanding.
    pub fn abort(&self, id: u64) -> bool {
        self.shared().locked(|sh, st| sh.abort(st, id))
    }

    /// Output commit: starts a new epoch whose messages are held until
    /// released (see [`crate::Socket::plug`]).
    pub fn plug(&self) -> Result<(), Error> {
        self.commit(Commit::Plug).map(|_| ())
    }

    /// Output commit: releases the oldest closed epoch (see
    /// [`crate::Socket::release_one`]).
    pub fn release_one(&self) -> Result<usize, Error> {
        self.commit(Commit::ReleaseOne)
    }

    /// Output commit: releases everything and stops holding (see
    /// [`crate::Socket::release_all`]).
    pub fn release_all(&self) -> Result<usize, Error> {
        self.commit(Commit::ReleaseAll)
    }

    fn commit(&self, op: Commit) -> Result<usize, Error> {
        self.shared().locked(|sh, st| sh.output_commit(st, op))
    }

    /// Closes the socket now (see [`crate::Socket::close`]).
    pub fn close(&self) {
        self.shared().locked(|sh, st| sh.close(st));
    }
}

/// A pending [`AsyncSocket::recv_request`]'s registration as a request
/// waiter, withdrawn when the future completes or is dropped (see
/// `Shared::remove_request_waiter`).
struct RequestWait<'a> {
    shared: &'a Shared,
    waker: Option<std::task::Waker>,
}

impl Drop for RequestWait<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.waker.take() {
            self.shared
                .locked(|_, st| st.calls.remove_request_waiter(&Waiter::Task(w)));
        }
    }
}

/// A task's registration to be woken at a deadline, withdrawn when the
/// future that made it completes or is dropped.
struct WakeAt<'a> {
    shared: &'a Shared,
    waker: Option<std::task::Waker>,
}

impl Drop for WakeAt<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.waker.take() {
            self.shared.locked(|_, st| st.calls.cancel_wake_at(&w));
        }
    }
}

/// The response of a call started with [`AsyncSocket::start_call`].
/// Dropping it before completion aborts the RPC.
#[derive(Debug)]
#[must_use = "a call is aborted when its future is dropped"]
pub struct AsyncCall {
    socket: AsyncSocket,
    id: u64,
    /// The call's deadline (the driver fails the call then; each poll
    /// checks it too).
    deadline: Option<Instant>,
    taken: bool,
    spin_until: Option<Instant>,
}

impl AsyncCall {
    /// The RPC's id (for [`AsyncSocket::abort`]).
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Future for AsyncCall {
    type Output = Result<Bytes, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.taken {
            return Poll::Ready(Err(Error::UnknownRpc));
        }
        let sh = this.socket.shared();
        let mut st = sh.lock();
        if let Some(r) = st.calls.take_result(this.id) {
            this.taken = true;
            sh.unlock(st);
            return Poll::Ready(r);
        }
        let now = sh.now();
        if this.deadline.is_some_and(|d| now >= d) {
            sh.expire_call(&mut st, this.id);
            if let Some(r) = st.calls.take_result(this.id) {
                this.taken = true;
                sh.unlock(st);
                return Poll::Ready(r);
            }
        }
        let spin_until = *this.spin_until.get_or_insert(now + sh.config.busy_poll);
        if now < spin_until {
            sh.turn(&mut st, now);
            if let Some(r) = st.calls.take_result(this.id) {
                this.taken = true;
                sh.unlock(st);
                return Poll::Ready(r);
            }
            sh.unlock(st);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        st.calls
            .set_waiter(this.id, Waiter::Task(cx.waker().clone()));
        sh.unlock(st);
        Poll::Pending
    }
}

impl Drop for AsyncCall {
    fn drop(&mut self) {
        if !self.taken {
            let sh = self.socket.shared();
            let mut st = sh.lock();
            sh.forget(&mut st, self.id);
            sh.unlock(st);
        }
    }
}

/// Owned by the driver task. A runtime that shuts down drops its tasks
/// without running them to completion: the guard then closes the socket
/// with [`Error::RuntimeShutdown`], so calls and receives fail at once
/// instead of waiting for a driver that is gone. (When the task ends
/// normally the socket is already closed and this does nothing.)
struct DriverGuard(Arc<Shared>);

impl Drop for DriverGuard {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        self.0.close_runtime_gone(&mut st);
        self.0.unlock(st);
    }
}

/// The driver task: see the module documentation.
///
/// It reads the socket only when the reactor has reported it readable and
/// it has not read it empty since: the other turns (a timer, a wake-up)
/// skip the `recvmsg` that would find nothing. Writability is watched on
/// a second descriptor registered only while a transmit waits for room
/// ([`homa_sys::udp::duplicate`]).
async fn drive(
    sh: &Shared,
    sock: AsyncFd<SharedFd>,
    wake: AsyncFd<SharedFd>,
    timer: AsyncFd<SharedFd>,
) -> std::io::Result<()> {
    // False while the socket may hold data the driver has not read: from
    // a readiness report until a read finds it empty. (Data read by a
    // turn at the top of the loop leaves tokio's readiness set, so the
    // readable branch still fires for what remains.)
    let mut drained = false;
    let mut writable: Option<AsyncFd<std::os::fd::OwnedFd>> = None;
    let mut first = true;
    loop {
        let want_write = {
            let mut st = sh.lock();
            if st.closed {
                return Ok(());
            }
            if !first {
                // Back from the reactor.
                st.dp.stats_mut().driver_wakeups += 1;
            }
            first = false;
            let now = sh.now();
            // Drain before timers (see `Shared::turn`).
            sh.turn_reading(&mut st, now, !drained);
            let next = sh.next_deadline(&mut st);
            st.driving.sleep_until = Some(next.unwrap_or(Instant::MAX));
            sh.arm_sleep_timer(&mut st, Sleeper::Driver, next, now)?;
            let ww = sh.wants_write(&st);
            sh.unlock(st);
            ww
        };
        drained = true;
        if !want_write {
            writable = None;
        } else if writable.is_none() {
            // Without the watch (no descriptor left), the waiting
            // transmits are retried at the next turn, a timer's at the
            // latest: a full send buffer must not close the socket.
            writable = homa_sys::udp::duplicate(sh.socket_fd())
                .and_then(|fd| register(fd, Interest::WRITABLE))
                .ok();
        }
        tokio::select! {
            biased;
            g = sock.ready(Interest::READABLE | Interest::ERROR) => {
                let mut g = g?;
                let mut st = sh.lock();
                st.driving.sleep_until = None;
                if g.ready().is_error() {
                    sh.note_poll_error(&mut st);
                    g.clear_ready_matching(Ready::ERROR);
                }
                // Bounded, so a flood cannot starve the runtime; readiness
                // is cleared only once the socket reads empty.
                drained = false;
                for _ in 0..8 {
                    let now = sh.now();
                    if sh.turn(&mut st, now) == Received::Empty {
                        g.clear_ready_matching(Ready::READABLE);
                        drained = true;
                        break;
                    }
                }
                sh.unlock(st);
            }
            g = async {
                match &writable {
                    Some(w) => w.writable().await,
                    None => std::future::pending().await,
                }
            }, if want_write => {
                let mut g = g?;
                let mut st = sh.lock();
                st.dp.stats_mut().write_wakeups += 1;
                let now = sh.now();
                sh.flush(&mut st, now);
                // A socket error (an ICMP report) reads as "write closed"
                // on this registration, a state tokio never clears: drop
                // the watch (a new one is made if still needed) rather
                // than spin on it; the readable branch reads the error.
                let closed = g.ready().is_write_closed() || g.ready().is_error();
                if sh.wants_write(&st) && !closed {
                    g.clear_ready_matching(Ready::WRITABLE);
                }
                sh.unlock(st);
                drop(g);
                if closed {
                    writable = None;
                }
            }
            g = wake.readable() => {
                let mut g = g?;
                sh.woken(Sleeper::Driver);
                g.clear_ready();
            }
            g = timer.readable() => {
                let mut g = g?;
                sh.locked(|sh, st| sh.sleep_timer_fired(st, Sleeper::Driver));
                g.clear_ready();
            }
        }
    }
}
