//! # homa-proto
//!
//! The Homa transport protocol as a sans-IO state machine.
//!
//! This crate holds the whole protocol and nothing but the protocol: the wire
//! format ([`wire`]), RPC state, message reassembly, grants, retransmission
//! and acknowledgement, all driven through one type, [`Endpoint`]. It does
//! **not** open sockets, spawn threads, read clocks or draw OS randomness:
//! time comes in as an argument ([`Instant`]), randomness as a seed, and
//! packets go out as bytes the driver sends. The same code therefore runs
//! under the UDP runtime (`homa-transport`), the datacenter simulator
//! (`homa-sim`) and the deterministic test network (`testnet`, with the
//! `testing` feature).
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
//!    equal-size segments, for one destination at one priority; or
//!    [`Endpoint::poll_transmit_packets`] for the same transmit as headers
//!    plus payload ranges of the message, to send without copying it),
//!    [`Endpoint::poll_event`] until `None`, and re-reads
//!    [`Endpoint::poll_timeout`]. A driver whose link is busy may postpone
//!    `poll_transmit` until the link frees ([`Endpoint::transmit_idle`]
//!    says whether anything is waiting); nothing is lost by asking later.
//!
//! Every input takes `now`; instants must never go backwards. Outputs depend
//! only on inputs and the seed given to [`Endpoint::new`], so a driver that
//! replays the same inputs gets the same outputs.
//!
//! **Ordering rule.** When a deadline has passed and datagrams are also
//! waiting (in a socket buffer, a ring, an event queue), feed the datagrams
//! first ([`Endpoint::handle_datagram`] for everything already received),
//! then call [`Endpoint::handle_timeout`]. The timer judges silence by what
//! the endpoint has been told: a driver that runs it first, with the peer's
//! answer still unread, makes it take a slow or descheduled driver for a
//! silent peer and send spurious RESENDs (and, after `timeout`, fail RPCs
//! whose answers were sitting in the buffer). The UDP runtime reads its
//! socket (a bounded number of batches) before it runs timers; a simulator,
//! which hands each datagram over at its arrival instant, has nothing
//! unread.
//!
//! `docs/architecture.md` in the repository shows how a packet flows
//! through the protocol's mechanisms; `docs/protocol.md` gives the source of
//! every protocol fact this crate implements and where it deviates from the
//! Linux kernel module.
//!
//! ```
//! use bytes::Bytes;
//! use homa_proto::{Config, Endpoint, Event, Instant};
//!
//! let now = Instant::ZERO;
//! let mut client = Endpoint::new(Config::default(), 1).unwrap();
//! let mut server = Endpoint::new(Config::default(), 2).unwrap();
//! let cport = client.open_socket(0).unwrap();
//! server.open_socket(99).unwrap();
//! let (caddr, saddr) = ("10.0.0.1:0".parse().unwrap(), "10.0.0.2:99".parse().unwrap());
//! let caddr = std::net::SocketAddr::new(std::net::SocketAddr::ip(&caddr), cport);
//!
//! let id = client.send_request(now, cport, saddr, Bytes::from_static(b"ping")).unwrap();
//! // Carry datagrams both ways until both sides are quiet. (The first
//! // exchange with a server also teaches the client the server's
//! // incarnation: a probe and its answer, see `docs/at-most-once.md`.)
//! let mut buf = Vec::new();
//! let mut shuttle = |client: &mut Endpoint, server: &mut Endpoint| loop {
//!     let mut quiet = true;
//!     while let Some(_t) = client.poll_transmit(now, &mut buf) {
//!         server.handle_datagram(now, caddr, &buf);
//!         quiet = false;
//!     }
//!     while let Some(_t) = server.poll_transmit(now, &mut buf) {
//!         client.handle_datagram(now, saddr, &buf);
//!         quiet = false;
//!     }
//!     if quiet {
//!         break;
//!     }
//! };
//! shuttle(&mut client, &mut server);
//! let Some(Event::Request { peer, id: sid, data, .. }) = server.poll_event() else { panic!() };
//! assert_eq!(&data[..], b"ping");
//! server.send_response(now, 99, peer, sid, Bytes::from_static(b"pong")).unwrap();
//! shuttle(&mut client, &mut server);
//! assert!(matches!(client.poll_event(), Some(Event::Response { id: r, .. }) if r == id));
//! ```

#![warn(missing_docs)]
#![warn(unreachable_pub)]
#![forbid(unsafe_code)]

mod amo;
pub mod config;
mod endpoint;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod fuzzing;
mod grant;
pub mod host;
mod incoming;
mod memory;
mod outgoing;
mod pacer;
mod peer;
pub mod prio;
mod rng;
mod rpc;
mod socket;
pub mod stats;
#[cfg(any(test, feature = "testing"))]
pub mod testnet;
mod time;
mod timer;
mod timers;
pub mod wire;

pub use config::Config;
pub use endpoint::{Endpoint, Error, Event, RpcError, Transmit, Unreachable};
pub use grant::IncomingMessage;
pub use host::{Host, HostError, HostMemory, HostParams, HostView, SlotSleep};
pub use outgoing::TxPackets;
pub use pacer::OutgoingMessage;
pub use rng::Rng;
pub use socket::DELIVERED_OVERHEAD;
pub use stats::Stats;
pub use time::Instant;
