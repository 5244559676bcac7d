//! What a socket reports about itself: the offloads in use, the
//! datapath's counters, and the snapshots that combine them with the
//! protocol's ([`Stats`], [`Metrics`]).

use std::net::SocketAddr;

/// What the socket learned about the kernel when it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Offloads {
    /// Multi-packet transmits go out as one GSO send (`UDP_SEGMENT`). May
    /// turn false later if the kernel refuses a GSO send.
    pub gso: bool,
    /// The socket receives GRO batches (`UDP_GRO`).
    pub gro: bool,
    /// The MTU the socket's DATA packets are cut to (see
    /// [`crate::Config::mtu`]).
    pub mtu: u32,
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
    /// Sends that carried several packets as one GSO batch (each GSO
    /// message of a batched send counts).
    pub gso_sends: u64,
    /// `sendmmsg` calls that carried several transmits (datagrams or GSO
    /// batches, to one peer or several) polled in one flush; each is one of
    /// `send_calls`.
    pub batched_sends: u64,
    /// Sends refused for lack of buffer space (retried when writable).
    pub send_blocked: u64,
    /// Wake-ups of a driver because the socket became writable while
    /// transmits waited for room.
    pub write_wakeups: u64,
    /// Packets dropped because the kernel refused them for another reason.
    pub send_errors: u64,
    /// Times GSO was switched off because the kernel refused a GSO send.
    pub gso_fallbacks: u64,
    /// `recvmmsg` calls that returned datagrams.
    pub recv_calls: u64,
    /// Receive calls that found the socket empty (`EAGAIN`): the price of
    /// polling. A sleeping driver pays about one per wake-up that brought
    /// data; a busy-polling one, one per idle poll.
    pub recv_empty: u64,
    /// Times a driver that slept (in `ppoll`, or the tokio task parked on
    /// the reactor) woke: for data, room to write, a timer or a poke.
    pub driver_wakeups: u64,
    /// Turns a blocking driver spun instead of sleeping (busy polling
    /// after input, or a deadline nearer than a sleep's overshoot): each
    /// reads the socket, so each may add to `recv_empty`.
    pub spins: u64,
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
    /// Requests dropped because `max_queued_requests` were waiting: they
    /// do not count as run, and their clients send them again after their
    /// next probe.
    pub requests_dropped: u64,
    /// Sends that had to wait for room under the protocol's send cap.
    pub send_cap_waits: u64,
    /// Times the socket's TOS / traffic-class setting was changed for a
    /// send at another priority level (see the performance notes).
    pub tos_changes: u64,
    /// Packets written to the capture file ([`crate::Config::capture`]).
    pub packets_captured: u64,
    /// Capture write errors (the first one ends the capture).
    pub capture_errors: u64,
    /// Times the socket's state lock was taken (every driver turn, every
    /// command, every busy-poll iteration).
    pub lock_acquired: u64,
    /// Times it was held by another thread and the caller had to wait.
    pub lock_contended: u64,
    /// Nanoseconds spent waiting for the lock (only contended takes).
    pub lock_wait_ns: u64,
    /// Nanoseconds the lock was held: the socket's serial section
    /// (protocol processing, system calls under the lock, empty polls);
    /// an estimate: one take in 16 is timed and counted 16 times.
    pub lock_hold_ns: u64,
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
/// let socket = homa_transport::Socket::bind("127.0.0.1:4000")?;
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
    /// The host table the socket joined (`None`: host sharing off).
    pub host: Option<crate::HostMetrics>,
}
