//! A [`tower`] service layer over [`AsyncSocket`] (feature `tower`, on by
//! default): the client and server halves a tokio service is built from.
//!
//! * [`Client`] implements `tower::Service<Bytes>`: each call is one Homa
//!   RPC to the client's destination, in a `tracing` span `homa.call`. It
//!   composes with tower's layers (`ServiceBuilder::new().timeout(..)`,
//!   concurrency limits, retries); [`Client::with_deadline`] gives every
//!   call the runtime's own deadline instead, which also aborts the RPC
//!   on the wire.
//! * [`serve`] answers the requests of a socket with any
//!   `tower::Service<Request, Response = Bytes>`: at most
//!   [`ServeConfig::max_concurrency`] requests in the service at once (at
//!   the limit, further requests wait in the socket: back-pressure, not
//!   refusal), each in a span `homa.serve`. When `shutdown` completes it
//!   stops taking requests, lets the requests already taken finish and
//!   answers them, waits until those responses are acknowledged, aborts
//!   what is still running after [`ServeConfig::drain_timeout`], and
//!   closes the socket. A request the service fails (or that panics, or
//!   that the drain deadline aborts) is discarded: its client's call fails
//!   at once with [`Error::Abandoned`] (the request ran). Requests that
//!   were never taken are never executed: their clients' calls fail once
//!   the socket is closed, with [`Error::OutcomeUnknown`] when the request
//!   had reached the server (the client cannot tell it was never taken),
//!   or by their deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower::{Service, ServiceExt};
use tracing::Instrument;

use crate::{AsyncSocket, Error, Request};

/// A Homa client for one destination as a `tower::Service<Bytes>`.
#[derive(Debug, Clone)]
pub struct Client {
    socket: AsyncSocket,
    dest: SocketAddr,
    deadline: Option<Duration>,
}

impl Client {
    /// Calls to `dest` over `socket` (which may serve other clients too).
    pub fn new(socket: AsyncSocket, dest: SocketAddr) -> Client {
        Client {
            socket,
            dest,
            deadline: None,
        }
    }

    /// Every call fails with [`Error::DeadlineExceeded`] after `d` and its
    /// RPC is aborted.
    pub fn with_deadline(mut self, d: Duration) -> Client {
        self.deadline = Some(d);
        self
    }

    /// The destination.
    pub fn dest(&self) -> SocketAddr {
        self.dest
    }
}

impl Service<Bytes> for Client {
    type Response = Bytes;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Bytes, Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // The socket takes any number of calls (sends wait for room).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Bytes) -> Self::Future {
        let (socket, dest, deadline) = (self.socket.clone(), self.dest, self.deadline);
        let span = tracing::info_span!("homa.call", %dest, request_bytes = request.len());
        Box::pin(
            async move {
                let r = match deadline {
                    Some(d) => socket.call_timeout(dest, request, d).await,
                    None => socket.call(dest, request).await,
                };
                match &r {
                    Ok(b) => tracing::debug!(response_bytes = b.len(), "done"),
                    Err(e) => tracing::debug!(error = %e, "failed"),
                }
                r
            }
            .instrument(span),
        )
    }
}

/// How [`serve`] runs.
#[derive(Debug, Clone, Copy)]
pub struct ServeConfig {
    /// Most requests in the service at once.
    pub max_concurrency: usize,
    /// After shutdown, how long requests already taken may still run
    /// before they are aborted (unanswered).
    pub drain_timeout: Duration,
}

impl Default for ServeConfig {
    fn default() -> ServeConfig {
        ServeConfig {
            max_concurrency: 64,
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// What [`serve`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServeStats {
    /// Requests answered.
    pub answered: u64,
    /// Requests the service failed (or whose reply could not be sent):
    /// discarded, so the client's call fails with
    /// [`Error::Abandoned`] (the request ran).
    pub failed: u64,
    /// Requests still running at the drain deadline, aborted and
    /// discarded (their clients fail with `Abandoned`).
    pub abandoned: u64,
}

/// Discards a request taken by [`serve`] when dropped, unless it was
/// answered.
struct Unanswered {
    socket: AsyncSocket,
    peer: SocketAddr,
    id: u64,
    answered: bool,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if !self.answered {
            let _ = self.socket.discard(self.peer, self.id);
        }
    }
}

/// What one request's task ended with.
enum Outcome {
    Answered,
    Failed,
}

/// Serves the requests of `socket` with `service` until `shutdown`
/// completes (or the socket is closed), then drains and closes the socket
/// (see the module docs).
pub async fn serve<S, F>(
    socket: AsyncSocket,
    service: S,
    config: ServeConfig,
    shutdown: F,
) -> Result<ServeStats, Error>
where
    S: Service<Request, Response = Bytes> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Display + Send,
    F: Future<Output = ()>,
{
    let limit = Arc::new(Semaphore::new(config.max_concurrency.max(1)));
    let mut tasks: JoinSet<Outcome> = JoinSet::new();
    let mut stats = ServeStats::default();
    let count = |stats: &mut ServeStats, r: Result<Outcome, tokio::task::JoinError>| match r {
        Ok(Outcome::Answered) => stats.answered += 1,
        Ok(Outcome::Failed) | Err(_) => stats.failed += 1,
    };
    tokio::pin!(shutdown);
    let result = loop {
        // A slot first: at the limit, requests wait in the socket.
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break Ok(()),
            p = Arc::clone(&limit).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break Ok(()),
            },
        };
        let req = tokio::select! {
            biased;
            () = &mut shutdown => break Ok(()),
            r = socket.recv_request() => match r {
                Ok(r) => r,
                Err(Error::Closed) => break Ok(()),
                Err(e) => break Err(e),
            },
        };
        while let Some(r) = tasks.try_join_next() {
            count(&mut stats, r);
        }
        let (sock, mut svc) = (socket.clone(), service.clone());
        let span = tracing::info_span!("homa.serve", peer = %req.peer, id = req.id, request_bytes = req.body.len());
        tasks.spawn(
            async move {
                let _permit = permit;
                let (peer, id) = (req.peer, req.id);
                // A request not answered (the service failed or panicked,
                // the reply failed, or the drain deadline aborted the task)
                // is discarded when this guard drops: the RPC is freed and
                // the client told now (left unanswered, it held one of the
                // client's `max_rpcs_per_peer` slots until the socket
                // closed).
                let mut guard = Unanswered {
                    socket: sock.clone(),
                    peer,
                    id,
                    answered: false,
                };
                let response = match svc.ready().await {
                    Ok(s) => s.call(req).await,
                    Err(e) => Err(e),
                };
                match response {
                    Ok(body) => match sock.reply(peer, id, body).await {
                        Ok(()) => {
                            guard.answered = true;
                            Outcome::Answered
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "reply failed");
                            Outcome::Failed
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "service failed; request discarded");
                        Outcome::Failed
                    }
                }
            }
            .instrument(span),
        );
    };
    // Drain: answer what was taken, up to the deadline.
    let deadline = tokio::time::sleep(config.drain_timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            r = tasks.join_next() => match r {
                Some(r) => count(&mut stats, r),
                None => break,
            },
            () = &mut deadline => {
                stats.abandoned = tasks.len() as u64;
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                break;
            }
        }
    }
    // Responses in flight: the socket stays open until each is
    // acknowledged (a response still unsent or lost needs it), within the
    // same deadline. Requests queued but never taken do not count.
    loop {
        let m = socket.metrics();
        if m.proto.server_rpcs <= m.requests_queued {
            break;
        }
        tokio::select! {
            () = &mut deadline => break,
            () = tokio::time::sleep(Duration::from_millis(1)) => {}
        }
    }
    socket.close();
    result.map(|()| stats)
}
