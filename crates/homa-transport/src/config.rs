//! Socket configuration: the protocol's tunables plus the datapath's
//! (offloads, buffers, polling, the background driver).

use std::time::Duration;

/// Configuration of a socket ([`crate::Socket`], [`crate::AsyncSocket`]):
/// start from [`Config::default`] and change what you need, with struct
/// update syntax or field by field.
///
/// ```
/// use std::time::Duration;
/// use homa_transport::Config;
///
/// let config = Config {
///     busy_poll: Duration::ZERO, // sleep at once instead of spinning
///     server: Some(true),        // accept requests even on port 0
///     ..Config::default()
/// };
/// let mut proto = homa_proto::Config::default();
/// proto.timeout = Duration::from_millis(500);
/// let config = Config { proto, ..config };
/// assert!(config.gso);
/// ```
///
/// Memory: the protocol's per-socket receive budget
/// (`proto.socket_rx_budget`, 64 MB by default) counts the buffers of
/// messages being received and the delivered messages the application
/// still holds (requests not yet answered, responses not yet dropped);
/// at the budget, the socket grants nothing more and new messages wait
/// for memory, slowing their senders. A call's deadline bounds that wait
/// like any other.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The protocol engine's configuration.
    pub proto: homa_proto::Config,
    /// How long a waiting thread polls the socket without sleeping, counted
    /// from the last datagram it saw (the kernel module's `poll_usecs`,
    /// default 50 µs). Zero sleeps at once.
    pub busy_poll: Duration,
    /// Send multi-packet batches with GSO (`UDP_SEGMENT`) when the kernel
    /// supports it. `false` forces one datagram per packet (`sendmmsg`).
    pub gso: bool,
    /// Receive coalesced batches with GRO (`UDP_GRO`) when the kernel
    /// supports it.
    pub gro: bool,
    /// Receive buffer size to request (bytes). Uses `SO_RCVBUFFORCE` when
    /// the process may, else is capped by `net.core.rmem_max`.
    pub recv_buffer: usize,
    /// Send buffer size to request (bytes); see `recv_buffer`.
    pub send_buffer: usize,
    /// Datagrams (or GRO batches) read per `recvmmsg`.
    pub recv_batch: usize,
    /// Accept requests on this socket. `None`: yes if it was bound to a
    /// specific port, no for an ephemeral (port 0) socket.
    pub server: Option<bool>,
    /// Blocking sockets only: a background thread drives the socket (answers
    /// grants, resends and acknowledgements, runs timers, completes calls)
    /// once no application thread has been inside the socket for this long.
    /// `None` runs no thread: the socket then makes progress only while an
    /// application thread waits in it.
    pub background: Option<Duration>,
    /// Most delivered requests waiting for [`crate::Socket::recv_request`];
    /// requests arriving beyond this are dropped (and counted). A backstop:
    /// the protocol's per-socket receive budget
    /// (`proto.socket_rx_budget`, in which every held message counts
    /// [`homa_proto::DELIVERED_OVERHEAD`] bytes beyond its length) holds
    /// senders back first with the defaults.
    pub max_queued_requests: usize,
    /// Write every datagram the socket sends and receives to this pcap
    /// file (created or truncated when the socket opens; complete once it
    /// is closed). Off by default. See the `capture` module documentation
    /// for what is recorded; open it with Wireshark and
    /// `tools/wireshark/homa.lua`.
    pub capture: Option<std::path::PathBuf>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            proto: homa_proto::Config::default(),
            busy_poll: Duration::from_micros(50),
            gso: true,
            gro: true,
            recv_buffer: 16 << 20,
            send_buffer: 4 << 20,
            recv_batch: 16,
            server: None,
            background: Some(Duration::from_millis(2)),
            max_queued_requests: 65_536,
            capture: None,
        }
    }
}
