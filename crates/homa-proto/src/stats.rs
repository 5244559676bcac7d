//! Counters kept by an endpoint: what it sent and received, per packet type,
//! and every reason it dropped something. Everything the network can make
//! the endpoint discard is counted here, never panicked on.

use crate::wire::PacketType;

/// Packet and byte counters for one direction, indexed by packet type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PerType {
    /// Packets per type, indexed by [`PacketType::index`].
    pub packets: [u64; 9],
    /// Bytes (Homa header + payload) per type.
    pub bytes: [u64; 9],
}

impl PerType {
    /// Counts one packet.
    pub fn add(&mut self, ty: PacketType, bytes: usize) {
        self.packets[ty.index()] += 1;
        self.bytes[ty.index()] += bytes as u64;
    }

    /// Packets of one type.
    pub fn packets_of(&self, ty: PacketType) -> u64 {
        self.packets[ty.index()]
    }

    /// Total packets of all types.
    pub fn total_packets(&self) -> u64 {
        self.packets.iter().sum()
    }
}

/// Message counts and bytes by size: bucket `i` holds messages of
/// `2^(i-1) + 1 ..= 2^i` bytes (bucket 0: 1 byte).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SizeBuckets {
    /// Messages per bucket.
    pub counts: [u64; 32],
    /// Message bytes per bucket.
    pub bytes: [u64; 32],
}

impl SizeBuckets {
    /// Counts a message of `len` bytes.
    pub fn add(&mut self, len: u32) {
        let i = Self::bucket(len);
        self.counts[i] += 1;
        self.bytes[i] += len as u64;
    }

    /// The bucket of a length.
    pub fn bucket(len: u32) -> usize {
        (32 - len.max(1).saturating_sub(1).leading_zeros()) as usize % 32
    }

    /// Largest length that falls in bucket `i`.
    pub fn upper_bound(i: usize) -> u64 {
        1u64 << i
    }

    /// Total messages.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Counters of an [`Endpoint`](crate::Endpoint). All cumulative.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Stats {
    /// Packets sent, per type.
    pub sent: PerType,
    /// Packets received and parsed, per type.
    pub received: PerType,
    /// Datagrams that failed to parse.
    pub malformed: u64,
    /// Packets whose header source port differs from the datagram's.
    pub port_mismatch: u64,
    /// Packets for a port with no socket (or a non-server socket).
    pub no_socket: u64,
    /// Packets for an RPC we have no state for (dropped).
    pub unknown_rpc: u64,
    /// DATA packets that carried no new bytes.
    pub duplicate_data: u64,
    /// DATA packets dropped because the message had too many gaps.
    pub too_many_gaps: u64,
    /// DATA packets inconsistent with the message (length changed, too long,
    /// zero length, past the end).
    pub bad_data: u64,
    /// Packets that arrived in a state that does not accept them.
    pub wrong_state: u64,
    /// Control packets dropped because the control queue was full.
    pub control_queue_full: u64,
    /// FREEZE packets received (ignored).
    pub freeze: u64,
    /// Client RPCs started.
    pub requests_started: u64,
    /// Responses delivered to the application.
    pub responses_delivered: u64,
    /// Requests delivered to the application.
    pub requests_delivered: u64,
    /// Responses the application sent.
    pub responses_started: u64,
    /// Server RPCs freed after an ACK.
    pub server_rpcs_acked: u64,
    /// DATA packets retransmitted.
    pub data_retransmitted: u64,
    /// Message bytes delivered to the application.
    pub message_bytes_delivered: u64,
    /// Stale duplicates of requests that already ran (at-most-once).
    pub stale_requests: u64,
    /// Requests refused because they did not echo our incarnation (first
    /// contact, a client bound to an earlier incarnation, a replay): never
    /// run, answered with RPC_UNKNOWN and our uptime.
    pub refused_incarnation: u64,
    /// Requests refused because the socket does not serve (answered with
    /// RPC_UNKNOWN, so the client fails at once).
    pub refused_not_server: u64,
    /// New requests held back (answered BUSY) because the client's
    /// at-most-once record was full.
    pub done_ids_full: u64,
    /// Clients' at-most-once records renewed (they needed room for one more
    /// earlier client run): we serve that client as a new incarnation.
    pub records_renewed: u64,
    /// Packets about one of our client RPCs from another incarnation of the
    /// server than the one the request is bound to (ignored).
    pub wrong_incarnation: u64,
    /// Servers' incarnations learned (first contact or restart).
    pub incarnations_learned: u64,
    /// Probes sent to learn a server's incarnation (zero-length RESENDs).
    pub incarnation_probes: u64,
    /// Probes sent to the sender of a message we hold back (zero-length
    /// RESENDs answered by BUSY): it must not give up on a receiver that
    /// is alive.
    pub liveness_probes: u64,
    /// BUSY packets sent to a receiver whose granted bytes waited at least
    /// half of `resend_after` behind our other messages (so it does not ask
    /// for them).
    pub busy_sent_waiting: u64,
    /// Requests sent again to a new incarnation of their server because
    /// it started before them (so no earlier one can have run them).
    pub requests_rebound: u64,
    /// Client RPCs failed with `OutcomeUnknown`.
    pub outcome_unknown: u64,
    /// Client RPCs failed with `Abandoned`.
    pub abandoned: u64,
    /// Client RPCs failed with `NotServer`.
    pub not_server: u64,
    /// New requests held back (answered BUSY) because the peer table was
    /// full.
    pub peer_limit: u64,
    /// Scans of a full peer table for idle peers to collect (at most one
    /// per 10 ms while the scans cannot bring the table down to 90%).
    pub peer_table_scans: u64,
    /// New requests held back (answered BUSY) because the client had too
    /// many open RPCs.
    pub rpc_limit: u64,
    /// Messages refused (packets dropped) for lack of receive-buffer budget.
    pub no_buffer_space: u64,
    /// Client requests resent from the start after RPC_UNKNOWN.
    pub requests_restarted: u64,
    /// RPCs abandoned after `timeout` of silence.
    pub timeouts: u64,
    /// Timer passes that ran at least `resend_after` late (the endpoint was
    /// not run): silence clocks moved forward by the delay.
    pub timer_late: u64,
    /// RPCs ended because the peer was unreachable (ICMP errors).
    pub rpcs_unreachable: u64,
    /// RESEND packets sent after silence.
    pub resends_silence: u64,
    /// RESEND packets sent early for clearly lost holes.
    pub resends_fast: u64,
    /// NEED_ACK packets sent.
    pub need_acks: u64,
    /// Server RPCs freed after NEED_ACKs went unanswered for `timeout`.
    pub need_ack_given_up: u64,
    /// Server RPCs freed because the client stopped granting the response.
    pub response_abandoned: u64,
    /// Peers collected.
    pub peers_collected: u64,
    /// DATA packets starting at or beyond what we granted (dropped).
    pub beyond_grant: u64,
    /// Grants held back because receive memory was exhausted.
    pub grants_deferred_memory: u64,
    /// GRANT packets issued.
    pub grants: u64,
    /// Of which FIFO ("pity") grants.
    pub fifo_grants: u64,
    /// CUTOFFS packets sent.
    pub cutoffs_sent: u64,
    /// Times the automatic cutoffs changed.
    pub cutoffs_updates: u64,
    /// Sends refused by the socket send cap.
    pub sends_blocked: u64,
    /// Incoming messages that had to wait for a receive buffer.
    pub messages_waited: u64,
    /// Of those, admitted once memory freed (each with a RESEND).
    pub messages_admitted: u64,
    /// Waiting messages the admission passes examined (the work memory
    /// pressure costs: each pass looks at the messages that may fit now,
    /// not at every waiting one).
    pub admission_checks: u64,
    /// Scans of the RPC table for RPCs to destinations reported unreachable
    /// (ICMP errors, failed sends): at most one per tick however many
    /// errors arrive.
    pub unreachable_scans: u64,
    /// RPCs the timer's periodic pass looked at: those that changed since
    /// the pass before, or whose time came (not every RPC at every pass).
    pub timer_checks: u64,
    /// RPC_UNKNOWN "never seen" answers ignored because the response was
    /// already arriving (late copies of answers to earlier probes).
    pub stale_unknown: u64,
    /// Delivered requests the application will not answer
    /// ([`Endpoint::abandon_request`](crate::Endpoint::abandon_request)):
    /// their clients fail with `Abandoned`.
    pub requests_abandoned: u64,
    /// Delivered requests the driver took back unseen
    /// ([`Endpoint::decline_request`](crate::Endpoint::decline_request)):
    /// their clients send them again.
    pub requests_declined: u64,
    /// Our oldest RPC to a server finished and the next, which the server
    /// had answered BUSY, was probed at once (see `Endpoint::nudge_oldest`).
    pub oldest_nudged: u64,
    /// Acks a closing socket sent at once (see `Endpoint::close_socket`).
    pub acks_at_close: u64,
    /// Partially received messages whose buffer was taken back to let a
    /// better-ranked message finish (they wait and are resent).
    pub evictions: u64,
    /// Times the pacer held paced data back for the link.
    pub throttled: u64,
    /// Total time paced data waited for the link, in nanoseconds.
    pub throttled_nanos: u64,
    /// Sizes of messages received (requests and responses).
    pub rx_sizes: SizeBuckets,
    /// Sizes of messages sent.
    pub tx_sizes: SizeBuckets,
}

/// A snapshot of an endpoint's counters and gauges (see
/// [`Endpoint::metrics`](crate::Endpoint::metrics)).
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Metrics {
    /// Cumulative counters.
    pub stats: Stats,
    /// Client RPCs alive.
    pub client_rpcs: usize,
    /// Server RPCs alive.
    pub server_rpcs: usize,
    /// Peers with state.
    pub peers: usize,
    /// Bytes of incoming-message buffers held.
    pub rx_bytes: u64,
    /// Granted-but-not-received bytes over all incoming messages.
    pub total_incoming: i64,
    /// Messages granted to at the last grant pass.
    pub active_grants: usize,
    /// Incoming messages waiting for a receive buffer.
    pub waiting_for_memory: usize,
    /// Bytes our peers granted us that we have not sent yet (sender-side
    /// backlog: receivers wait for these).
    pub tx_granted_unsent: u64,
    /// Bytes of outgoing messages not yet sent at all.
    pub tx_unsent: u64,
    /// Measured minimum RTT of each peer with one, in nanoseconds.
    pub min_rtt_nanos: Option<u64>,
}
