//! Endpoint configuration: every tunable of the protocol, with the kernel
//! module's defaults unless a comment says why we differ.

use core::time::Duration;

/// Bytes of UDP header in front of every Homa packet.
pub const UDP_HEADER_LEN: u32 = 8;
/// Bytes of an IPv4 header (no options).
pub const IPV4_HEADER_LEN: u32 = 20;
/// Bytes of an IPv6 header (no extension headers).
pub const IPV6_HEADER_LEN: u32 = 40;
/// Ethernet framing per packet: header, CRC, preamble, SFD and inter-packet
/// gap (`HOMA_ETH_OVERHEAD`).
pub const ETH_OVERHEAD: u32 = 42;

/// Smallest valid [`Config::mtu`]: one byte of message in a DATA packet
/// over IPv6.
pub const MIN_MTU: u32 = IPV6_HEADER_LEN + UDP_HEADER_LEN + crate::wire::DataHeader::LEN as u32 + 1;
/// Largest valid [`Config::mtu`]: an IPv4 packet's total length field.
/// A DATA packet of this size is one UDP datagram of the largest size
/// (65 507 bytes of payload over IPv4).
pub const MAX_MTU: u32 = 65_535;

/// Configuration of an [`Endpoint`](crate::Endpoint).
///
/// Construct with [`Config::default`] and adjust fields; call
/// [`Config::validate`] (the endpoint does) to catch inconsistent values.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Config {
    /// IP MTU of the path ([`MIN_MTU`]..=[`MAX_MTU`]). Each DATA packet
    /// this endpoint sends carries `mtu - ip header - udp header - 56`
    /// message bytes. It bounds only what this endpoint sends: DATA
    /// packets of any size up to a UDP datagram's are accepted, so peers
    /// with different MTUs interoperate. (`homa-transport` sets it from the
    /// interface by default.)
    pub mtu: u32,
    /// Largest GSO super-packet the driver accepts, in bytes of Homa packets
    /// (header + payload per segment). 0 disables batching: every transmit
    /// is one packet.
    pub max_gso_bytes: u32,
    /// Most segments in one GSO transmit (Linux accepts 64 per `UDP_SEGMENT`
    /// send).
    pub max_gso_segments: u32,
    /// Bytes of each message sent before any grant, rounded up to whole
    /// packets (`unsched_bytes`, default 40 000). With `unsched_from_rtt`,
    /// this is only the fallback for peers whose RTT is not yet measured.
    pub unsched_bytes: u32,
    /// Derive each peer's unscheduled bytes from its measured round-trip
    /// time and `link_mbps` (RTTbytes), instead of one global value.
    pub unsched_from_rtt: bool,
    /// Speed of the uplink in Mbit/s (`link_mbps`, kernel default 25 000).
    /// The pacer holds output to it and FIFO grants are timed by it.
    /// 0 means "unknown": no pacing and no FIFO grants.
    pub link_mbps: u32,
    /// Hold output to `link_mbps` (the pacer). Drivers whose NIC pulls
    /// packets only when its link is free (a simulator) turn this off;
    /// `link_mbps` still times FIFO grants.
    pub pacer: bool,
    /// Most transmit time the pacer lets queue in the NIC
    /// (`max_nic_est_backlog_usecs`, 5 µs).
    pub max_nic_backlog: Duration,
    /// Share of paced output, in thousandths, given to the oldest message
    /// instead of the shortest (`pacer_fifo_fraction`, 50).
    pub pacer_fifo_fraction: u32,
    /// Serve paced messages in the order their receivers asked for their
    /// bytes instead of SRPT: the message whose granted bytes have waited
    /// longest (since the grant that made it sendable) goes first. Off by
    /// default (Homa's sender is SRPT); the simulator's
    /// `--sender-grant-order` ablation (crate `homa-sim`, results
    /// "Sustainable load").
    pub pacer_grant_order: bool,
    /// Messages shorter than this are never throttled (`defer_min_bytes`,
    /// 1000).
    pub defer_min_bytes: u32,
    /// Cap on granted-but-not-received bytes over all incoming messages
    /// (`max_incoming`, 400 000).
    pub max_incoming: u32,
    /// Most messages granted to at once (`max_overcommit`, 8, at most 8).
    pub max_overcommit: u32,
    /// Bytes granted ahead of what was received for each active message;
    /// 0 means dynamic: `max_incoming / (active + 1)` (`window`, 0).
    pub window: u32,
    /// Share of scheduled bandwidth, in thousandths, granted to the oldest
    /// message regardless of size (`grant_fifo_fraction`, 50; 0 disables).
    pub grant_fifo_fraction: u32,
    /// Bytes per FIFO grant (`fifo_grant_increment`, 50 000; 0 disables).
    pub fifo_grant_increment: u32,
    /// Fixed unscheduled cutoffs (entry i: largest message length sent
    /// unscheduled at level i; an entry ≥ 1 000 000 marks the lowest
    /// unscheduled level). `None`: computed from the sizes of received
    /// messages (the kernel's `homa_prio` daemon, built in), starting from
    /// the kernel's defaults.
    pub unsched_cutoffs: Option<[u32; 8]>,
    /// Messages observed before automatic cutoffs are recomputed.
    pub cutoffs_min_messages: u32,
    /// Messages observed before automatic cutoffs are computed the first
    /// time (at most `cutoffs_min_messages`): the defaults suit only
    /// configurations near the kernel's (40 kB unscheduled), so a receiver
    /// replaces them early and refines them later.
    pub cutoffs_first_messages: u32,
    /// Shortest time between two CUTOFFS to the same peer.
    pub cutoffs_min_interval: Duration,
    /// Largest message accepted or sent. The kernel's limit is 1 000 000; we
    /// default to 16 MiB.
    pub max_message_length: u32,
    /// Number of priority levels in use (1..=8).
    pub num_priorities: u8,
    /// Most ports a client socket may be assigned from (0x8000..=0xFFFF).
    pub first_client_port: u16,
    /// Most gaps a partially received message may have; a packet that would
    /// create more is dropped (the sender retransmits it later).
    pub max_gaps: usize,
    /// Most control packets queued for transmission; beyond this new ones are
    /// dropped and counted (a driver that never polls cannot grow memory).
    pub max_control_queue: usize,
    /// Timer period: how often the endpoint checks RPCs for silence
    /// (the kernel's 1 ms tick).
    pub tick: Duration,
    /// Silence before the first RESEND for an RPC (kernel: `resend_ticks`,
    /// 5 ms). For bytes we granted, only time during which our downlink was
    /// not busy with packets at their priority or above counts (they are
    /// queued behind those, not lost); see the timer module.
    pub resend_after: Duration,
    /// Time between RESENDs for one RPC (kernel: `resend_interval`, 5 ms).
    pub resend_interval: Duration,
    /// Most RPCs per peer that send silence RESENDs in one timer pass (2
    /// while nothing at all has come from the peer for `resend_after`); the
    /// others wait for a later pass. Together with per-RPC exponential
    /// backoff (up to 16 intervals while the peer stays silent) this keeps a
    /// peer that was descheduled for a while from returning to a RESEND
    /// storm (the kernel sends one per RPC every interval).
    pub max_resend_rpcs_per_peer: u32,
    /// Silence after which an RPC is abandoned: a client RPC fails with
    /// [`RpcError::Timeout`](crate::RpcError::Timeout), a server RPC is
    /// freed. Silence means nothing at all from the peer, not even BUSY: a
    /// peer that is alive answers our probes (every `timeout / 5` at most)
    /// even while its application computes or its memory holds our message
    /// back, so a timeout means the peer stopped answering. The kernel uses
    /// 100 ms; a user-space peer can be descheduled for tens of
    /// milliseconds, so we default to 1 s.
    pub timeout: Duration,
    /// Time after a response is fully sent before the server asks for an
    /// ACK (kernel: `request_ack_ticks`, 2 ms). NEED_ACKs repeat every
    /// `resend_interval`; after `timeout` without any answer the server gives
    /// up and frees the RPC (the kernel never gives up).
    pub need_ack_after: Duration,
    /// Fast recovery: a hole below the highest byte received is requested
    /// once it is older than `fast_resend_rtts` round trips (at least
    /// `min_gap_age`), instead of waiting for `resend_after` of silence.
    /// 0 disables it.
    pub fast_resend_rtts: u32,
    /// Lower bound on the age of a hole before fast recovery requests it.
    pub min_gap_age: Duration,
    /// Most finished request ids kept per client socket above the oldest
    /// unfinished id the client states (at-most-once, exact: see
    /// `docs/at-most-once.md`). When a client's record is full, its new
    /// requests are answered BUSY (it retries) except the one it names as its
    /// oldest, whose completion frees the record.
    pub done_ids_per_peer: usize,
    /// Ignored: kept only so existing configurations still build and
    /// deserialize. Finished ids leave the record when the client says every
    /// id below them finished, not after a time (the time-based floor
    /// refused requests that had never run), so nothing reads this and
    /// [`Config::validate`] does not check it.
    pub done_id_lifetime: Duration,
    /// Most server RPCs one client socket may have open at once; requests
    /// beyond are answered BUSY (the client waits and retries when room
    /// frees).
    pub max_rpcs_per_peer: u32,
    /// Most server RPCs the endpoint holds at once, from all clients;
    /// requests beyond are answered BUSY, as for `max_rpcs_per_peer`. A
    /// request costs one packet to start, so without this bound a flood of
    /// first packets from many (forged) sources would hold state for each
    /// until it timed out.
    #[cfg_attr(feature = "serde", serde(default = "default_max_server_rpcs"))]
    pub max_server_rpcs: usize,
    /// Largest unscheduled region (the DATA `incoming` field) accepted from
    /// a sender; bytes beyond it wait for our grants. Receive buffers follow
    /// grants, so this bounds what a new message can claim.
    pub max_unscheduled: u32,
    /// Most bytes of incoming-message buffers held at once by the endpoint.
    pub max_rx_bytes: u64,
    /// Most bytes of incoming-message buffers held for one peer.
    pub max_rx_bytes_per_peer: u64,
    /// Receive memory per socket. What counts: the reassembly buffers of
    /// messages being received for the socket (each follows the grants, plus
    /// one packet of slack), and every delivered request or response whose
    /// bytes the application still holds (its length plus
    /// [`DELIVERED_OVERHEAD`](crate::DELIVERED_OVERHEAD)), until the
    /// application drops the last handle. At the budget the socket's
    /// messages get no more grants, new messages wait (in SRPT order, without
    /// a buffer, their packets dropped) and the receiver keeps their senders
    /// alive with probes answered BUSY: calls slow down, they do not fail
    /// (a call that waits longer than its deadline fails with the runtime's
    /// deadline error; an application holding more than the budget waits
    /// until it lets go). When memory frees, the shortest waiting message
    /// gets a buffer and asks its sender for everything again.
    pub socket_rx_budget: u64,
    /// Bytes of a socket's outgoing messages not yet freed before sends
    /// fail with `WouldBlock` (the kernel's `wmem_max`, 100 MB).
    pub max_tx_bytes_per_socket: u64,
    /// Most peers with state; idle peers are collected first. A new client
    /// that finds the table full of busy peers is answered BUSY and waits.
    pub max_peers: usize,
    /// A peer with no RPCs is kept at least this long after its last
    /// activity (it holds the at-most-once record).
    pub peer_idle: Duration,
    /// Maps internal priority levels to the 3-bit value written into the top
    /// bits of the IP TOS / traffic-class byte (identity by default).
    pub priority_map: [u8; 8],
    /// Count received DATA bytes without keeping them: reassembly tracks
    /// which bytes arrived (gaps, grants, memory accounting unchanged) and
    /// a complete message is delivered as zeros of its length. For
    /// simulators, whose payloads carry nothing: it saves copying every
    /// byte into the reassembly buffer and out of it. Off by default.
    #[cfg_attr(feature = "serde", serde(default))]
    pub discard_payload: bool,
    /// Other endpoints may serve this endpoint's address at the same time
    /// (`SO_REUSEPORT`: the kernel picks the socket, and may move a client
    /// to another one when the group changes or, steered by CPU, with
    /// every datagram). A refusal from this endpoint then says nothing
    /// about when it started (its RPC_UNKNOWN reports an uptime of zero):
    /// with one endpoint per address, an incarnation up since before a
    /// request was created proves that no earlier one saw the request, but
    /// here another endpoint may have run it, so the client fails the call
    /// with `OutcomeUnknown` instead of sending it again. Off by default.
    #[cfg_attr(feature = "serde", serde(default))]
    pub shared_address: bool,
}

/// [`Config::max_server_rpcs`]'s default: 131 072 RPCs, about 100 MB of
/// RPC state at most.
fn default_max_server_rpcs() -> usize {
    1 << 17
}

impl Default for Config {
    fn default() -> Config {
        Config {
            mtu: 1500,
            max_gso_bytes: 64_000,
            max_gso_segments: 64,
            unsched_bytes: 40_000,
            unsched_from_rtt: true,
            link_mbps: 25_000,
            pacer: true,
            max_nic_backlog: Duration::from_micros(5),
            pacer_fifo_fraction: 50,
            pacer_grant_order: false,
            defer_min_bytes: 1000,
            max_incoming: 400_000,
            max_overcommit: 8,
            window: 0,
            grant_fifo_fraction: 50,
            fifo_grant_increment: 50_000,
            unsched_cutoffs: None,
            cutoffs_min_messages: 1000,
            cutoffs_first_messages: 100,
            cutoffs_min_interval: Duration::from_millis(1),
            max_message_length: 16 << 20,
            num_priorities: 8,
            first_client_port: 0x8000,
            max_gaps: 1024,
            max_control_queue: 65_536,
            tick: Duration::from_millis(1),
            resend_after: Duration::from_millis(5),
            resend_interval: Duration::from_millis(5),
            max_resend_rpcs_per_peer: 16,
            timeout: Duration::from_secs(1),
            need_ack_after: Duration::from_millis(2),
            fast_resend_rtts: 3,
            min_gap_age: Duration::from_micros(100),
            done_ids_per_peer: 4096,
            done_id_lifetime: Duration::from_secs(10),
            max_rpcs_per_peer: 4096,
            max_unscheduled: 1 << 20,
            max_rx_bytes: 512 << 20,
            max_rx_bytes_per_peer: 64 << 20,
            socket_rx_budget: 64 << 20,
            max_tx_bytes_per_socket: 100_000_000,
            max_peers: 100_000,
            max_server_rpcs: default_max_server_rpcs(),
            peer_idle: Duration::from_secs(120),
            priority_map: [0, 1, 2, 3, 4, 5, 6, 7],
            discard_payload: false,
            shared_address: false,
        }
    }
}

/// A configuration value outside its allowed range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub &'static str);

impl Config {
    /// Checks ranges and relations between values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.mtu < MIN_MTU {
            return Err(ConfigError("mtu too small for a DATA packet over IPv6"));
        }
        if self.mtu > MAX_MTU {
            return Err(ConfigError("mtu larger than an IP packet"));
        }
        if self.num_priorities == 0 || self.num_priorities as usize > crate::wire::MAX_PRIORITIES {
            return Err(ConfigError("num_priorities must be 1..=8"));
        }
        if self.max_message_length == 0 || self.max_message_length > i32::MAX as u32 {
            return Err(ConfigError("max_message_length must be 1..=2^31-1"));
        }
        if self.first_client_port < 0x8000 {
            return Err(ConfigError("client ports start at 0x8000 or above"));
        }
        if self.max_overcommit == 0 || self.max_overcommit > 8 {
            return Err(ConfigError("max_overcommit must be 1..=8"));
        }
        if self.max_incoming == 0 {
            return Err(ConfigError("max_incoming must be positive"));
        }
        if self.grant_fifo_fraction > 500 || self.pacer_fifo_fraction > 500 {
            return Err(ConfigError("fifo fractions are at most 500 per mille"));
        }
        if self.max_gso_bytes > MAX_UDP_PAYLOAD {
            // Every GSO send would fail with EMSGSIZE: transmits dropped
            // until the RPCs time out.
            return Err(ConfigError(
                "max_gso_bytes must be at most 65507 (one UDP datagram)",
            ));
        }
        if self.max_gso_segments > 64 {
            return Err(ConfigError(
                "max_gso_segments must be at most 64 (Linux's UDP_SEGMENT limit)",
            ));
        }
        if self.max_gaps == 0 {
            return Err(ConfigError("max_gaps must be positive"));
        }
        if self.priority_map.iter().any(|&p| p > 7) {
            return Err(ConfigError("priority_map values must be 0..=7"));
        }
        if self.tick.is_zero()
            || self.resend_interval.is_zero()
            || self.timeout.is_zero()
            || self.peer_idle.is_zero()
        {
            return Err(ConfigError(
                "tick, resend_interval, timeout and peer_idle must be positive",
            ));
        }
        if self.max_rpcs_per_peer == 0 || self.max_peers == 0 || self.max_server_rpcs == 0 {
            return Err(ConfigError(
                "max_rpcs_per_peer, max_server_rpcs and max_peers must be positive",
            ));
        }
        let one_message = self.max_message_length as u64;
        if self.socket_rx_budget < one_message || self.max_rx_bytes_per_peer < one_message {
            return Err(ConfigError(
                "socket_rx_budget and max_rx_bytes_per_peer must hold one message of max_message_length",
            ));
        }
        if self.max_rx_bytes_per_peer > self.max_rx_bytes {
            return Err(ConfigError("max_rx_bytes_per_peer exceeds max_rx_bytes"));
        }
        Ok(())
    }

    /// Message bytes per DATA packet to a peer of the given IP family.
    pub fn max_seg_data(&self, ipv6: bool) -> u32 {
        let ip = if ipv6 {
            IPV6_HEADER_LEN
        } else {
            IPV4_HEADER_LEN
        };
        self.mtu - ip - UDP_HEADER_LEN - crate::wire::DataHeader::LEN as u32
    }

    /// The highest priority level (used for control packets).
    pub fn control_priority(&self) -> u8 {
        self.num_priorities - 1
    }

    /// The level for FIFO grants and memory-wakeup RESENDs
    /// (`homa_high_priority`): one below the top, or 0 with ≤ 2 levels.
    pub fn high_priority(&self) -> u8 {
        self.num_priorities.saturating_sub(2)
    }

    /// DATA packets of a message of `length` bytes (at least one) to a
    /// peer of the given IP family.
    pub fn data_packets(&self, length: u32, ipv6: bool) -> u32 {
        length.div_ceil(self.max_seg_data(ipv6)).max(1)
    }

    /// Bytes on the wire of all DATA packets of a message of `length`
    /// bytes: payload, DATA header, UDP, IP and Ethernet framing. What a
    /// message costs a link (the load it offers), without the control
    /// packets (GRANTs) it causes.
    pub fn message_wire_bytes(&self, length: u32, ipv6: bool) -> u64 {
        let per_packet = self.wire_bytes(crate::wire::DataHeader::LEN, ipv6);
        u64::from(length) + u64::from(self.data_packets(length, ipv6)) * per_packet
    }

    /// Wire bytes of a packet carrying `homa_bytes` of Homa header and
    /// payload: UDP, IP and Ethernet framing included.
    pub fn wire_bytes(&self, homa_bytes: usize, ipv6: bool) -> u64 {
        let ip = if ipv6 {
            IPV6_HEADER_LEN
        } else {
            IPV4_HEADER_LEN
        };
        (homa_bytes as u32 + UDP_HEADER_LEN + ip + ETH_OVERHEAD) as u64
    }
}

/// Largest UDP payload over IPv4 (65 535 - 20 - 8): the most one GSO send
/// can carry.
const MAX_UDP_PAYLOAD: u32 = 65_507;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_refuses_gso_sizes_the_kernel_would_refuse_on_every_send() {
        let ok = Config {
            max_gso_bytes: 65_507,
            max_gso_segments: 64,
            ..Config::default()
        };
        ok.validate().unwrap();
        let too_big = Config {
            max_gso_bytes: 65_508,
            ..Config::default()
        };
        assert!(too_big.validate().is_err());
        let too_many = Config {
            max_gso_segments: 65,
            ..Config::default()
        };
        assert!(too_many.validate().is_err());
    }

    #[test]
    fn default_is_valid_and_segments_match_mtu() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.max_seg_data(false), 1500 - 20 - 8 - 56);
        assert_eq!(c.max_seg_data(true), 1500 - 40 - 8 - 56);
        assert_eq!(c.control_priority(), 7);
        // 3000 bytes over IPv4: 1416 + 1416 + 168, each with 56 + 8 + 20
        // + 42 bytes around it.
        assert_eq!(c.data_packets(3000, false), 3);
        assert_eq!(c.message_wire_bytes(3000, false), 3000 + 3 * 126);
        assert_eq!(c.message_wire_bytes(1, false), 127);
    }

    #[test]
    fn validate_rejects_nonsense() {
        let bad = [
            Config {
                mtu: 100,
                ..Config::default()
            },
            Config {
                num_priorities: 9,
                ..Config::default()
            },
            Config {
                max_message_length: 0,
                ..Config::default()
            },
            Config {
                first_client_port: 10,
                ..Config::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }

    #[test]
    fn done_id_lifetime_is_ignored() {
        // Nothing reads it (the exact records need no time), so no value of
        // it may reject a configuration.
        let c = Config {
            done_id_lifetime: Duration::ZERO,
            peer_idle: Duration::from_millis(1),
            ..Config::default()
        };
        assert_eq!(c.validate(), Ok(()));
        // peer_idle is the collection timer's period: zero stays refused
        // (done_id_lifetime's checks used to imply it).
        let c = Config {
            peer_idle: Duration::ZERO,
            ..c
        };
        assert!(c.validate().is_err());
    }
}
