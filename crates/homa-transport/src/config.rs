//! Socket configuration: the protocol's tunables plus the datapath's
//! (offloads, buffers, polling, the background driver).

use std::net::IpAddr;
use std::time::Duration;

use homa_sys::netif::InterfaceAddr;

/// How a socket chooses the MTU its DATA packets are cut to
/// ([`homa_proto::Config::mtu`]), like the kernel module, which sizes them
/// from the route's MTU. Whatever the choice, the socket accepts DATA
/// packets of any size from its peers (its receive buffers hold the
/// largest UDP datagram), so sockets with different MTUs interoperate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mtu {
    /// The MTU of the interface that holds the socket's bound address (a
    /// loopback address: the loopback interface's); for a wildcard bind
    /// (`0.0.0.0`, `::`), the smallest MTU of the interfaces that are up,
    /// are not loopback and hold an address (the socket may send through
    /// any of them). Clamped to what homa-proto accepts
    /// ([`homa_proto::config::MIN_MTU`]..=[`homa_proto::config::MAX_MTU`]:
    /// loopback's 65 536 becomes 65 535, the largest UDP datagram). If no
    /// interface answers (none is up besides loopback, or the query
    /// fails), `proto.mtu` as configured.
    #[default]
    Auto,
    /// `proto.mtu` as configured (1500 unless changed).
    Proto,
    /// This MTU, whatever the interfaces say (validated like `proto.mtu`).
    Fixed(u32),
}

impl Mtu {
    /// The MTU a socket bound to `local` uses, given the interfaces that
    /// are up (`homa_sys::netif::up_addresses`) and the configured
    /// `proto_mtu`.
    pub fn choose(self, local: IpAddr, up: &[InterfaceAddr], proto_mtu: u32) -> u32 {
        let auto = match self {
            Mtu::Proto => return proto_mtu,
            Mtu::Fixed(m) => return m,
            Mtu::Auto => {
                let local = local.to_canonical();
                if local.is_unspecified() {
                    up.iter().filter(|a| !a.loopback).map(|a| a.mtu).min()
                } else if let Some(a) = up.iter().find(|a| a.addr.to_canonical() == local) {
                    Some(a.mtu)
                } else if local.is_loopback() {
                    // 127.0.0.0/8 is all the loopback's, though only
                    // 127.0.0.1 is listed.
                    up.iter().filter(|a| a.loopback).map(|a| a.mtu).min()
                } else {
                    None
                }
            }
        };
        auto.map_or(proto_mtu, |m| {
            m.clamp(homa_proto::config::MIN_MTU, homa_proto::config::MAX_MTU)
        })
    }
}

/// Configuration of a socket ([`crate::Socket`], [`crate::AsyncSocket`]):
/// start from [`Config::default`] and change what you need, with the
/// `with_*` builder methods or field by field (the struct is
/// `non_exhaustive`, so it can gain fields without breaking callers).
///
/// ```
/// use std::time::Duration;
/// use homa_transport::Config;
///
/// let config = Config::default()
///     .with_busy_poll(Duration::ZERO) // sleep at once instead of spinning
///     .with_server(true)              // accept requests even on port 0
///     .with_proto(|p| p.timeout = Duration::from_millis(500));
/// assert!(config.gso);
/// assert_eq!(config.proto.timeout, Duration::from_millis(500));
///
/// // The same, field by field.
/// let mut c = Config::default();
/// c.busy_poll = Duration::ZERO;
/// c.server = Some(true);
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
#[non_exhaustive]
pub struct Config {
    /// The protocol engine's configuration. Its `mtu` is replaced when the
    /// socket opens, as [`Config::mtu`] says.
    pub proto: homa_proto::Config,
    /// How the socket chooses the MTU of the packets it sends: by default
    /// from the interface of its bound address ([`Mtu::Auto`]). The choice
    /// is reported by [`crate::Offloads::mtu`].
    pub mtu: Mtu,
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
    /// Most idle receive buffers (64 KiB each) the socket keeps for reuse:
    /// a bulk datagram's buffer, handed to the application with the
    /// message, comes back here when the application drops the message,
    /// and the socket receives into it again instead of allocating. What
    /// comes back beyond this many is freed. 0 allocates every
    /// replacement buffer.
    pub recv_pool: usize,
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
    /// Which host table the socket's endpoint joins, making the sockets of
    /// a process, or of every process of the user on the host, one Homa:
    /// one pacer estimate, one `max_incoming` budget, one grant ranking
    /// (see [`HostSharing`](crate::HostSharing)). Default
    /// [`Auto`](crate::HostSharing::Auto): the `HOMA_HOST_SHARING`
    /// environment variable (`off`, `process`, `host`), else process-wide
    /// (host-wide sharing is asked for: `HostSharing::Host`).
    pub host_sharing: crate::HostSharing,
    /// Directory of the host-wide table (`None`: the `HOMA_HOST_DIR`
    /// environment variable, else `/dev/shm`).
    pub host_dir: Option<std::path::PathBuf>,
    /// Share the host-wide table with this group (mode 0660) instead of
    /// the user alone (0600).
    pub host_group: Option<u32>,
    /// Bind with `SO_REUSEPORT`: several sockets (threads, processes of the
    /// same user) may serve one port, the kernel spreading the peers among
    /// them by a hash of their addresses. Each socket has its own endpoint
    /// and lock (several cores work at once); with host sharing they are
    /// one Homa. A peer keeps reaching the same socket while the group does
    /// not change; when it changes, a peer the kernel moves to another
    /// socket sees its requests in progress fail with `OutcomeUnknown`, as
    /// after a server restart, never run twice (the sockets' refusals
    /// claim no uptime: `homa_proto::Config::shared_address`, set by the
    /// runtime). Off by default.
    pub reuse_port: bool,
    /// With [`Config::reuse_port`]: steer each datagram to the socket of
    /// the group whose index (binding order) is the CPU that received it
    /// (a classic BPF program on the group, `SO_ATTACH_REUSEPORT_CBPF`),
    /// instead of the kernel's flow hash. Meant for one socket per CPU,
    /// socket `i` driven by a thread pinned to CPU `i` (`homa server
    /// --reuseport --pin`): a datagram is then processed by the core that
    /// received it. A CPU without a socket of its index falls back to the
    /// hash. Off by default.
    pub reuse_port_by_cpu: bool,
    /// The least time between two wake-ups of a process's host-table
    /// waiter, the thread that re-checks the process's held-back sockets
    /// when the table changes (`host` module): bounds the wake-ups (and the
    /// grant passes) a participant that keeps changing the table can cause
    /// in this process, at the price of up to this much delay when changes
    /// come faster. `None`: `HOMA_HOST_RECHECK_US` if set, else 100 µs (at
    /// most 10 ms).
    pub host_recheck: Option<Duration>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            proto: homa_proto::Config::default(),
            mtu: Mtu::Auto,
            busy_poll: Duration::from_micros(50),
            gso: true,
            gro: true,
            recv_buffer: 16 << 20,
            send_buffer: 4 << 20,
            recv_batch: 16,
            recv_pool: 32,
            server: None,
            background: Some(Duration::from_millis(2)),
            max_queued_requests: 65_536,
            capture: None,
            host_sharing: crate::HostSharing::Auto,
            host_dir: None,
            host_group: None,
            reuse_port: false,
            reuse_port_by_cpu: false,
            host_recheck: None,
        }
    }
}

impl Config {
    /// Changes the protocol engine's configuration in place:
    /// `config.with_proto(|p| p.timeout = Duration::from_secs(2))`.
    pub fn with_proto(mut self, f: impl FnOnce(&mut homa_proto::Config)) -> Config {
        f(&mut self.proto);
        self
    }

    /// Sets [`Config::mtu`].
    pub fn with_mtu(mut self, mtu: Mtu) -> Config {
        self.mtu = mtu;
        self
    }

    /// Sets [`Config::busy_poll`].
    pub fn with_busy_poll(mut self, busy_poll: Duration) -> Config {
        self.busy_poll = busy_poll;
        self
    }

    /// Sets [`Config::gso`].
    pub fn with_gso(mut self, gso: bool) -> Config {
        self.gso = gso;
        self
    }

    /// Sets [`Config::gro`].
    pub fn with_gro(mut self, gro: bool) -> Config {
        self.gro = gro;
        self
    }

    /// Sets [`Config::recv_buffer`].
    pub fn with_recv_buffer(mut self, bytes: usize) -> Config {
        self.recv_buffer = bytes;
        self
    }

    /// Sets [`Config::send_buffer`].
    pub fn with_send_buffer(mut self, bytes: usize) -> Config {
        self.send_buffer = bytes;
        self
    }

    /// Sets [`Config::recv_batch`].
    pub fn with_recv_batch(mut self, datagrams: usize) -> Config {
        self.recv_batch = datagrams;
        self
    }

    /// Sets [`Config::recv_pool`].
    pub fn with_recv_pool(mut self, buffers: usize) -> Config {
        self.recv_pool = buffers;
        self
    }

    /// Sets [`Config::server`]: whether the socket accepts requests.
    pub fn with_server(mut self, server: bool) -> Config {
        self.server = Some(server);
        self
    }

    /// Sets [`Config::background`].
    pub fn with_background(mut self, background: Option<Duration>) -> Config {
        self.background = background;
        self
    }

    /// Sets [`Config::max_queued_requests`].
    pub fn with_max_queued_requests(mut self, requests: usize) -> Config {
        self.max_queued_requests = requests;
        self
    }

    /// Sets [`Config::host_sharing`].
    pub fn with_host_sharing(mut self, sharing: crate::HostSharing) -> Config {
        self.host_sharing = sharing;
        self
    }

    /// Sets [`Config::reuse_port`].
    pub fn with_reuse_port(mut self, reuse: bool) -> Config {
        self.reuse_port = reuse;
        self
    }

    /// Sets [`Config::reuse_port_by_cpu`].
    pub fn with_reuse_port_by_cpu(mut self, by_cpu: bool) -> Config {
        self.reuse_port_by_cpu = by_cpu;
        self
    }

    /// Sets [`Config::host_dir`].
    pub fn with_host_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Config {
        self.host_dir = Some(dir.into());
        self
    }

    /// Sets [`Config::capture`]: the pcap file to write.
    pub fn with_capture(mut self, path: impl Into<std::path::PathBuf>) -> Config {
        self.capture = Some(path.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, addr: &str, loopback: bool, mtu: u32) -> InterfaceAddr {
        InterfaceAddr {
            name: name.into(),
            addr: addr.parse().unwrap(),
            loopback,
            mtu,
        }
    }

    fn table() -> Vec<InterfaceAddr> {
        vec![
            iface("lo", "127.0.0.1", true, 65_536),
            iface("lo", "::1", true, 65_536),
            iface("eth0", "192.0.2.2", false, 9000),
            iface("eth0", "fd00::2", false, 9000),
            iface("eth1", "198.51.100.7", false, 1500),
        ]
    }

    #[test]
    fn auto_mtu_follows_the_bound_address_interface() {
        let up = table();
        let auto = |a: &str| Mtu::Auto.choose(a.parse().unwrap(), &up, 1500);
        // Loopback: 65 536 clamped to the largest IP packet.
        assert_eq!(auto("127.0.0.1"), 65_535);
        assert_eq!(auto("127.0.0.9"), 65_535);
        assert_eq!(auto("::1"), 65_535);
        assert_eq!(auto("::ffff:127.0.0.1"), 65_535);
        assert_eq!(auto("192.0.2.2"), 9000);
        assert_eq!(auto("fd00::2"), 9000);
        assert_eq!(auto("198.51.100.7"), 1500);
        // Wildcards: the smallest non-loopback interface.
        assert_eq!(auto("0.0.0.0"), 1500);
        assert_eq!(auto("::"), 1500);
        // An address no interface holds: the configured value.
        assert_eq!(auto("203.0.113.1"), 1500);
        assert_eq!(
            Mtu::Auto.choose("203.0.113.1".parse().unwrap(), &up, 4000),
            4000
        );
    }

    #[test]
    fn auto_mtu_without_other_interfaces_keeps_the_configured_value() {
        let only_lo = &table()[..2];
        assert_eq!(
            Mtu::Auto.choose("0.0.0.0".parse().unwrap(), only_lo, 1500),
            1500
        );
        assert_eq!(
            Mtu::Auto.choose("0.0.0.0".parse().unwrap(), &[], 1500),
            1500
        );
        // A tiny interface MTU is raised to what homa-proto accepts.
        let tiny = [iface("sl0", "10.1.1.1", false, 68)];
        assert_eq!(
            Mtu::Auto.choose("10.1.1.1".parse().unwrap(), &tiny, 1500),
            homa_proto::config::MIN_MTU
        );
    }

    #[test]
    fn explicit_mtu_policies_ignore_the_interfaces() {
        let up = table();
        let lo = "127.0.0.1".parse().unwrap();
        assert_eq!(Mtu::Proto.choose(lo, &up, 1500), 1500);
        assert_eq!(Mtu::Fixed(9000).choose(lo, &up, 1500), 9000);
    }
}
