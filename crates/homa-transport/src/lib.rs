//! # homa-transport
//!
//! Homa RPCs over UDP sockets on Linux, without a kernel module or
//! privileges: the crate applications import. A [`Socket`] (blocking) or
//! [`AsyncSocket`] (tokio) is one UDP socket whose port is the Homa port,
//! client and server at once.
//!
//! ```
//! use homa_transport::{Config, Socket};
//!
//! # fn main() -> Result<(), homa_transport::Error> {
//! // A server on loopback (port 0 picks a free port; `server` makes it
//! // accept requests, as a fixed port would).
//! let server = Socket::bind_with("127.0.0.1:0", Config::default().with_server(true))?;
//! let addr = server.local_addr();
//! std::thread::spawn(move || {
//!     while let Ok(req) = server.recv_request() {
//!         server.reply(req.peer, req.id, req.body).unwrap();
//!     }
//! });
//!
//! // A client: any number of calls, from any number of threads.
//! let client = Socket::bind("127.0.0.1:0")?;
//! let response = client.call(addr, b"ping")?;
//! assert_eq!(&response[..], b"ping");
//! # Ok(())
//! # }
//! ```
//!
//! The same with tokio:
//!
//! ```
//! use homa_transport::{AsyncSocket, Config};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), homa_transport::Error> {
//! let server = AsyncSocket::bind_with("127.0.0.1:0", Config::default().with_server(true))?;
//! let addr = server.local_addr();
//! tokio::spawn(async move {
//!     while let Ok(req) = server.recv_request().await {
//!         server.reply(req.peer, req.id, req.body).await.unwrap();
//!     }
//! });
//! let client = AsyncSocket::bind("127.0.0.1:0")?;
//! let response = client.call(addr, "ping").await?;
//! assert_eq!(&response[..], b"ping");
//! # Ok(())
//! # }
//! ```
//!
//! Calls take any [`IntoMessage`] (owned bytes without a copy, borrowed
//! bytes copied) and any address [`std::net::ToSocketAddrs`] accepts;
//! responses are [`Bytes`]. Every call can carry a deadline
//! (`call_timeout`), which the runtime keeps whatever the protocol is doing.
//! Errors say what happened: [`Error::DeadlineExceeded`],
//! [`Error::PeerTimeout`] (the peer stopped answering),
//! [`Error::PortUnreachable`], [`Error::NetworkUnreachable`],
//! [`Error::ClientOnly`]...
//!
//! ## What it does not do
//!
//! * No protocol logic: grants, retransmission, priorities, timeouts and
//!   at-most-once are `homa_proto`'s. This crate moves datagrams and time
//!   between the kernel and a [`homa_proto::Endpoint`], keeps the calls'
//!   deadlines, and wakes whoever waits.
//! * No interoperation with the Linux kernel module: the wire format is
//!   Homa's, carried in UDP datagrams.
//! * No encryption, authentication or congestion control beyond Homa's
//!   receiver-driven scheduling: use it inside a datacenter network you
//!   trust.
//! * No framework beyond [`service`] (feature `tower`): handlers,
//!   a concurrency limit and a graceful drain for tower services; other
//!   servers are built on `recv_request`/`reply`/`discard`.
//! * Linux only (GSO/GRO, the socket error queue, timerfd).
//!
//! ## One Homa per host
//!
//! Every socket keeps its own protocol endpoint and lock, and joins a
//! *host table* when it opens ([`Config::host_sharing`], the
//! `HOMA_HOST_SHARING` environment variable): by default one table for the
//! sockets of the process; with `host`, one table in shared memory for
//! every process of the user on the host (network namespace). The sockets
//! of a table pace against one NIC estimate, stay within one
//! `max_incoming` and grant in one SRPT order. See the [`host`] module.
//!
//! See the [`blocking`] and [`async_socket`] module documentation for how
//! each API drives the socket. The repository's `docs/runtime.md` explains
//! the datapath and its system calls; `docs/performance.md` where its time
//! goes, with measurements.

#![warn(missing_docs)]
#![deny(unsafe_code)]

#[cfg(feature = "tokio")]
pub mod async_socket;
pub mod blocking;
mod calls;
pub mod capture;
mod config;
mod datapath;
mod engine;
mod error;
pub mod host;
mod message;
#[cfg(feature = "tower")]
pub mod service;
mod stats;

#[cfg(feature = "tokio")]
pub use async_socket::{AsyncCall, AsyncSocket};
pub use blocking::{Call, Socket};
pub use bytes::Bytes;
pub use calls::{Request, RequestMessage};
pub use config::{Config, Mtu};
pub use error::Error;
pub use host::{HostMetrics, HostSharing};
pub use message::{IntoMessage, Message};
pub use stats::{Metrics, Offloads, Stats, TransportStats};

/// The README's Rust example, compiled and run as a doctest (it did not
/// compile once, unnoticed).
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
