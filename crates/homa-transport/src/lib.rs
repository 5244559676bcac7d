//! # homa-transport
//!
//! Homa over UDP sockets on Linux: the crate applications import to make
//! Homa RPCs without a kernel module or privileges.
//!
//! A [`Socket`] (blocking) or [`AsyncSocket`] (tokio) is one UDP socket whose
//! port is the Homa port. It is client and server at once: [`Socket::call`]
//! sends a request and waits for the response (or [`Socket::start_call`]
//! returns a [`Call`] to wait on later, with any number outstanding),
//! [`Socket::recv_request`] waits for a [`Request`] and [`Socket::reply`]
//! answers it.
//!
//! ```no_run
//! use homa_transport::Socket;
//!
//! # fn main() -> Result<(), homa_transport::Error> {
//! let client = Socket::bind("0.0.0.0:0".parse().unwrap())?;
//! let response = client.call("10.0.0.2:4000".parse().unwrap(), &b"ping"[..])?;
//! println!("{} bytes back", response.len());
//! # Ok(())
//! # }
//! ```
//!
//! What it does **not** do: any protocol logic. Grants, retransmission,
//! priorities and timeouts are `homa_proto`'s; this crate only moves
//! datagrams and time between the kernel and a [`homa_proto::Endpoint`]:
//!
//! * every received datagram (each Homa packet of a GRO batch) goes to
//!   [`homa_proto::Endpoint::handle_datagram`], ICMP errors from the error
//!   queue to [`homa_proto::Endpoint::handle_unreachable`];
//! * after each batch of inputs the endpoint's transmit queue is drained to
//!   the kernel, multi-packet transmits as one GSO send (`UDP_SEGMENT`),
//!   each with the Homa priority in the TOS / traffic-class byte;
//! * the endpoint's timers are run at its deadline, with nanosecond
//!   resolution.
//!
//! GSO and GRO are probed when the socket opens and used if the kernel
//! accepts them ([`Config::gso`], [`Config::gro`] force them off); socket
//! buffers are sized for bursts. IPv4-mapped IPv6 addresses (seen on
//! dual-stack sockets) are turned into IPv4 before the endpoint sees them.
//! Each socket has its own endpoint with a random seed, so client RPC ids
//! start at a random even value.
//!
//! See the [`blocking`] and [`async_socket`] module documentation for how
//! each API drives the socket and why.
//!
//! # Performance notes
//!
//! * Every received message is delivered in its own buffer. With glibc's
//!   default (dynamic) allocation thresholds, an application that receives
//!   megabyte messages can spend a large share of its time in page faults:
//!   freed buffers are returned to the kernel and faulted back in for the
//!   next message. Fixing the thresholds (`mallopt(M_MMAP_THRESHOLD)` and
//!   `M_TRIM_THRESHOLD`, as the `homa` binary does) doubled 1 MB throughput
//!   on loopback.
//! * The protocol's pacer assumes a NIC of `link_mbps` (25 Gbit/s by
//!   default). Over loopback there is no NIC queue to protect; the default
//!   caps throughput at 25 Gbit/s and cuts GSO batches to about 15 kB.
//! * The socket cost of a round trip is higher than a connected UDP
//!   ping-pong's: one Homa socket talks to many peers, so it cannot be
//!   `connect`ed; every send names its destination (a route lookup) and
//!   every receive asks for the source address and control messages (TOS
//!   byte, GRO segment size). Measured on the development VM (kernel
//!   6.18, 156-byte datagrams over loopback, medians of interleaved
//!   batches; a send includes the loopback delivery):
//!
//!   | call | ns |
//!   |---|---|
//!   | `sendmsg`, destination + TOS control message | 3650 |
//!   | `sendto`, destination (TOS as socket option: what the runtime does) | 3340 |
//!   | `send` on a connected socket | 2900 |
//!   | `recvmsg`, source + control messages, `IP_RECVTOS` on (the runtime) | 1060 |
//!   | the same without `IP_RECVTOS` | 945 |
//!   | `recvfrom` with source address | 775 |
//!   | `recv` | 665 |
//!   | empty `recvmsg` (a busy-poll iteration) / empty `recvfrom` | 480 / 330 |
//!
//!   So a round trip costs about 1.3 µs more in the kernel than the
//!   connected floor of `homa compare` (client `send`/`recv`, server
//!   `recvfrom`/`sendto`): 0.45 µs for the client's send, 0.7 µs for the
//!   two receives, and slower empty polls, so a packet is noticed later.
//!   The compare's "unconnected" floor uses the runtime's calls. The runtime keeps the TOS byte as a socket
//!   option, changed only when the level changes
//!   ([`TransportStats::tos_changes`]), because a TOS control message costs
//!   ~0.3 µs per send. Two further savings were evaluated and not taken:
//!   per-peer connected sockets bound to the same port (`SO_REUSEPORT`)
//!   would save ~0.45 µs per send, but the kernel delivers a peer's
//!   datagrams to the socket connected to it (checked on 6.18), so each
//!   would have to be read too: one more system call per busy-poll
//!   iteration and a descriptor per peer. `recvfrom` would save ~0.3 µs per
//!   receive but cannot report GRO segment sizes or arrival levels.
//! * Sleeping waits (`busy_poll` elapsed, or zero) block in `ppoll` on a
//!   timerfd armed at the next deadline rather than with a `ppoll`
//!   timeout: on the development VM a sleep with a timeout under the 4 ms
//!   scheduler tick made every wake-up ~15-25 µs slower (see
//!   [`blocking`]).

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
mod stats;

#[cfg(feature = "tokio")]
pub use async_socket::{AsyncCall, AsyncSocket};
pub use blocking::{Call, Socket};
pub use calls::Request;
pub use config::Config;
pub use error::Error;
pub use stats::{Metrics, Offloads, Stats, TransportStats};
