//! Experiment configuration: the topology, the hosts, the protocol
//! parameters handed to `homa-proto`, the traffic, and how long to run.
//!
//! Every default is the SIGCOMM 2018 paper's simulation setup (see
//! `SimConfig::default`); the ablations the paper discusses are fields of
//! [`ProtoParams`] (one priority level, overcommitment 1, no FIFO grants,
//! the unscheduled/scheduled split). [`ProtoParams::resolve`] turns them,
//! with the workload, into the `homa_proto::Config` every endpoint gets.

use core::time::Duration;
use std::path::PathBuf;

use homa_proto::config::{ETH_OVERHEAD, IPV4_HEADER_LEN, UDP_HEADER_LEN};
use homa_proto::wire::DataHeader;
use homa_proto::Config;
use homa_workload::cutoffs::{prio_split, split_with};
use homa_workload::{SizeDist, SizeSpec, Variant, Workload};

use crate::SimError;

/// Bytes a packet occupies on a link beyond its Homa bytes: IPv4 and UDP
/// headers plus Ethernet framing (header, CRC, preamble, inter-packet gap).
pub const WIRE_OVERHEAD: u32 = IPV4_HEADER_LEN + UDP_HEADER_LEN + ETH_OVERHEAD;

/// The network: racks of hosts under top-of-rack (ToR) switches, every ToR
/// connected to every aggregation switch (a two-level folded Clos).
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// Number of racks (ToR switches).
    pub racks: u32,
    /// Hosts under each ToR.
    pub hosts_per_rack: u32,
    /// Aggregation switches (ignored with one rack).
    pub aggs: u32,
    /// Host link rate, bits per second (both directions).
    pub host_link_bps: u64,
    /// ToR–aggregation link rate, bits per second.
    pub fabric_link_bps: u64,
    /// Propagation delay of every link.
    pub link_delay: Duration,
    /// Fixed forwarding delay of a switch, added when a packet has been
    /// fully received (switches store and forward).
    pub switch_delay: Duration,
    /// Shared buffer of each switch in bytes (packets waiting in its output
    /// queues); an arriving packet that does not fit is dropped. `None`:
    /// unlimited, as in the paper (which reports the occupancy instead).
    pub switch_buffer: Option<u64>,
}

impl Default for Topology {
    /// The paper's: 144 hosts in 9 racks of 16, 4 aggregation switches,
    /// 10 Gbit/s host links, 40 Gbit/s fabric links (no oversubscription),
    /// 0.25 µs per switch, no propagation delay (HomaSimulation's
    /// `edgeLinkDelay` and `fabricLinkDelay` are 0).
    fn default() -> Topology {
        Topology {
            racks: 9,
            hosts_per_rack: 16,
            aggs: 4,
            host_link_bps: 10_000_000_000,
            fabric_link_bps: 40_000_000_000,
            link_delay: Duration::ZERO,
            switch_delay: Duration::from_nanos(250),
            switch_buffer: None,
        }
    }
}

impl Topology {
    /// Total number of hosts.
    pub fn hosts(&self) -> u32 {
        self.racks * self.hosts_per_rack
    }

    /// Aggregation switches actually built (none for a single rack).
    pub fn effective_aggs(&self) -> u32 {
        if self.racks > 1 {
            self.aggs
        } else {
            0
        }
    }
}

/// How a host's NIC takes packets from its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NicMode {
    /// The NIC asks the endpoint for the next packet only when its link is
    /// about to go idle (a NIC with back-pressure and no queue of its own).
    /// Every transmit decision (SRPT order, control first) is then taken at
    /// the last moment, as the paper's simulated transport does. Correct
    /// whatever pacing the endpoint implements.
    #[default]
    Pull,
    /// After every input the driver drains everything the endpoint offers
    /// into a FIFO NIC queue, as the UDP runtime does with a socket. The
    /// endpoint's own pacer must keep that queue short.
    Push,
}

/// Hosts: software and NIC delays, NIC behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct HostParams {
    /// Delay of every hand-off between an application and its endpoint:
    /// a message handed to the endpoint, an event handed to the application
    /// (HomaSimulation's `hostSwTurnAroundTime`, 0.5 µs). A server's
    /// response therefore starts `2 × host_delay` after its endpoint has the
    /// whole request.
    pub host_delay: Duration,
    /// NIC think time (HomaSimulation's `hostNicSxThinkTime`, 0.5 µs),
    /// modelled as a fixed latency on the host's transmit path: it delays
    /// every packet but not the link's throughput.
    pub nic_delay: Duration,
    /// How the NIC takes packets from the endpoint.
    pub nic: NicMode,
}

impl Default for HostParams {
    fn default() -> HostParams {
        HostParams {
            host_delay: Duration::from_nanos(500),
            nic_delay: Duration::from_nanos(500),
            nic: NicMode::Pull,
        }
    }
}

/// Receive and send memory caps given to endpoints (1 TiB: never reached).
const MEMORY_CAP: u64 = 1 << 40;

/// How receivers choose the unscheduled priority cutoffs they send to
/// senders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cutoffs {
    /// Fixed, computed once from the workload's distribution as the paper
    /// configures its simulations: unscheduled levels in proportion to
    /// unscheduled bytes (or `unsched_levels` of them, the split ablation),
    /// each carrying about the same bytes.
    Workload {
        /// Levels for unscheduled bytes; `None`: proportional.
        unsched_levels: Option<u8>,
    },
    /// homa-proto's built-in `homa_prio`: computed by each receiver from the
    /// sizes it receives, starting from the kernel's defaults.
    Auto,
    /// Exactly these (homa-proto's `unsched_cutoffs` layout).
    Fixed([u32; 8]),
}

impl Default for Cutoffs {
    fn default() -> Cutoffs {
        Cutoffs::Workload {
            unsched_levels: None,
        }
    }
}

/// Homa parameters given to every endpoint, and the ablations.
///
/// Defaults are the paper's where homa-proto has the knob (RTTbytes of
/// unscheduled data and of grant window, 8 levels split by bytes,
/// overcommitment = scheduled levels) and homa-proto's (the kernel
/// module's) otherwise: `max_incoming`, FIFO grants, the pacer's 5 µs NIC
/// backlog. The 2018 paper had no FIFO grants; `fifo_grants: false`
/// reproduces that.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtoParams {
    /// IP MTU (1500: 1416 message bytes per DATA packet over IPv4).
    pub mtu: u32,
    /// Largest GSO batch the NIC accepts from the endpoint, in Homa bytes;
    /// 0 = one packet per transmit (the paper's per-packet transport).
    pub gso_bytes: u32,
    /// Unscheduled bytes per message: RTTbytes, 10 KB at 10 Gbit/s in the
    /// paper (homa-proto rounds up to whole packets: 11 328 bytes).
    pub unsched_bytes: u32,
    /// Let homa-proto derive each peer's unscheduled bytes from its
    /// measured RTT instead (`unsched_from_rtt`).
    pub unsched_from_rtt: bool,
    /// Bytes each active incoming message is granted beyond what arrived
    /// (homa-proto's `window`): RTTbytes as in the paper; 0 = the kernel's
    /// dynamic `max_incoming / (active + 1)`.
    pub grant_window: u32,
    /// Cap on granted-but-unreceived bytes per receiver (`max_incoming`).
    pub max_incoming: u32,
    /// Priority levels (8; the ablation uses 1).
    pub num_priorities: u8,
    /// Degree of overcommitment: messages a receiver grants to at once
    /// (1..=8; the ablation uses 1). `None`: the paper's choice, the number
    /// of scheduled levels of the workload's 8-level split (W1 1, W4 7), so
    /// that the priority ablations keep the same overcommitment.
    pub overcommit: Option<u32>,
    /// FIFO grants: 5% of scheduled bandwidth to the oldest message
    /// (`grant_fifo_fraction` 50‰; off: 0).
    pub fifo_grants: bool,
    /// Unscheduled cutoffs.
    pub cutoffs: Cutoffs,
    /// The pacer's allowance of queued NIC transmit time
    /// (`max_nic_backlog`).
    pub max_nic_backlog: Duration,
    /// The sender's pacer (`pacer`). With a pull-mode NIC it is not needed
    /// to keep the NIC queue short.
    pub pacer: bool,
    /// Share of the sender's output, in thousandths, given to its oldest
    /// message instead of its shortest (`pacer_fifo_fraction`; the 2018
    /// paper's senders were pure SRPT: 0).
    pub sender_fifo: u32,
}

impl Default for ProtoParams {
    fn default() -> ProtoParams {
        ProtoParams {
            mtu: 1500,
            gso_bytes: 0,
            unsched_bytes: 10_000,
            unsched_from_rtt: false,
            grant_window: 10_000,
            max_incoming: 400_000,
            num_priorities: 8,
            overcommit: None,
            fifo_grants: true,
            cutoffs: Cutoffs::default(),
            max_nic_backlog: Duration::from_micros(5),
            pacer: true,
            sender_fifo: 50,
        }
    }
}

/// What the endpoints were configured with, after the defaults that depend
/// on the workload were resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The endpoint configuration.
    pub config: Config,
    /// Unscheduled levels (`None` with automatic cutoffs).
    pub unsched_levels: Option<u8>,
}

impl Resolved {
    /// One line describing the protocol settings that matter for results.
    pub fn summary(&self) -> String {
        let c = &self.config;
        let cutoffs = match c.unsched_cutoffs {
            Some(v) => {
                let shown: Vec<String> = v[..c.num_priorities as usize]
                    .iter()
                    .map(|&x| {
                        if x >= homa_proto::prio::LOWEST_UNSCHED_MARK {
                            "all".to_string()
                        } else {
                            x.to_string()
                        }
                    })
                    .collect();
                format!("[{}]", shown.join(" "))
            }
            None => "auto".into(),
        };
        format!(
            "priorities {}, unscheduled levels {}, cutoffs {}, overcommit {}, unsched bytes {}{}, \
             window {}, max_incoming {}, fifo grants {}, link {} Mbit/s, nic backlog {} us, gso {}",
            c.num_priorities,
            self.unsched_levels
                .map_or_else(|| "auto".to_string(), |n| n.to_string()),
            cutoffs,
            c.max_overcommit,
            c.unsched_bytes,
            if c.unsched_from_rtt {
                " (from rtt)"
            } else {
                ""
            },
            if c.window == 0 {
                "dynamic".to_string()
            } else {
                c.window.to_string()
            },
            c.max_incoming,
            if c.grant_fifo_fraction > 0 {
                "on"
            } else {
                "off"
            },
            c.link_mbps,
            c.max_nic_backlog.as_micros(),
            c.max_gso_bytes
        )
    }
}

impl ProtoParams {
    /// Message bytes per DATA packet (IPv4).
    pub fn seg_size(&self) -> u32 {
        self.mtu - IPV4_HEADER_LEN - UDP_HEADER_LEN - DataHeader::LEN as u32
    }

    /// The `homa-proto` configuration for every endpoint, for traffic with
    /// sizes `dist` on host links of `link_bps`; messages up to
    /// `max_message` bytes must be accepted.
    pub fn resolve(&self, dist: &SizeDist, link_bps: u64, max_message: u32) -> Resolved {
        let n = self.num_priorities;
        let paper = prio_split(dist, self.unsched_bytes, 8);
        let (cutoffs, levels) = match self.cutoffs {
            Cutoffs::Workload { unsched_levels } => {
                let split = match unsched_levels {
                    Some(l) => split_with(dist, self.unsched_bytes, n, l),
                    None => prio_split(dist, self.unsched_bytes, n),
                };
                let mut c = split.cutoffs;
                // homa-proto reads any cutoff >= 1 000 000 as "lowest
                // unscheduled level": keep the others below it.
                let lowest = (n - split.unsched_levels) as usize;
                for v in c.iter_mut().skip(lowest + 1) {
                    *v = (*v).min(homa_proto::prio::LOWEST_UNSCHED_MARK - 1);
                }
                (Some(c), Some(split.unsched_levels))
            }
            Cutoffs::Auto => (None, None),
            Cutoffs::Fixed(c) => {
                let levels = (0..n as usize)
                    .rev()
                    .position(|i| c[i] >= homa_proto::prio::LOWEST_UNSCHED_MARK)
                    .map(|p| p as u8 + 1);
                (Some(c), levels)
            }
        };
        let overcommit = self
            .overcommit
            .unwrap_or_else(|| u32::from(paper.sched_levels()))
            .clamp(1, 8);
        let config = Config {
            mtu: self.mtu,
            max_gso_bytes: self.gso_bytes,
            unsched_bytes: self.unsched_bytes,
            unsched_from_rtt: self.unsched_from_rtt,
            link_mbps: (link_bps / 1_000_000).min(u64::from(u32::MAX)) as u32,
            max_nic_backlog: self.max_nic_backlog,
            pacer: self.pacer,
            pacer_fifo_fraction: self.sender_fifo,
            max_incoming: self.max_incoming,
            max_overcommit: overcommit,
            window: self.grant_window,
            grant_fifo_fraction: if self.fifo_grants { 50 } else { 0 },
            unsched_cutoffs: cutoffs,
            num_priorities: n,
            max_message_length: max_message.max(Config::default().max_message_length),
            max_unscheduled: Config::default().max_unscheduled.max(self.unsched_bytes),
            // The paper's hosts have unlimited memory and its applications
            // are open-loop: keep homa-proto's memory caps out of the way
            // (the report counts any send that still blocks).
            max_rx_bytes: MEMORY_CAP,
            max_rx_bytes_per_peer: MEMORY_CAP,
            socket_rx_budget: MEMORY_CAP,
            max_tx_bytes_per_socket: MEMORY_CAP,
            ..Config::default()
        };
        Resolved {
            config,
            unsched_levels: levels,
        }
    }
}

/// What the applications do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One-way messages as in the paper: a request of the sampled size,
    /// answered by a minimal response of `response_bytes` so the RPC
    /// completes. The message is complete when the server application has
    /// the whole request.
    OneWay {
        /// Length of the response (at least 1).
        response_bytes: u32,
    },
    /// Request/response: the server echoes a response of the request's
    /// length (as the kernel benchmark does); complete when the client
    /// application has the response.
    Rpc,
}

impl Default for Mode {
    fn default() -> Mode {
        Mode::OneWay { response_bytes: 1 }
    }
}

/// The offered traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    /// Message sizes.
    pub workload: SizeSpec,
    /// Raw (uncapped, the paper's) or the kernel benchmark's capped CDF.
    pub variant: Variant,
    /// Target load: fraction of every host link's rate taken by DATA
    /// packets, counting their headers and Ethernet framing (the paper's
    /// definition), from open-loop Poisson arrivals with uniform random
    /// source and destination.
    pub load: f64,
    /// One-way messages or RPCs.
    pub mode: Mode,
    /// In one-way mode, whether the minimal responses count in the load
    /// (they occupy the links: 127 bytes on the wire per message, which for
    /// W1 is 40% of a request's). With `false` the request rate is the
    /// paper's and the links carry more than `load`.
    pub count_responses: bool,
}

impl Default for Traffic {
    fn default() -> Traffic {
        Traffic {
            workload: SizeSpec::Named(Workload::W4),
            variant: Variant::Raw,
            load: 0.8,
            mode: Mode::default(),
            count_responses: true,
        }
    }
}

/// How long to run and what to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct RunParams {
    /// Messages arrive during `[0, duration)`.
    pub duration: Duration,
    /// Messages created before this are not measured (the network starts
    /// empty).
    pub warmup: Duration,
    /// After `duration`, how long to keep running for measured messages to
    /// finish; the run stops earlier once they all have.
    pub drain: Duration,
    /// Generate the arrivals and compute only the reference schedules
    /// (ideal and matching), without simulating the network: a quick way to
    /// see how a workload's backlog behaves over long runs.
    pub references_only: bool,
}

impl Default for RunParams {
    fn default() -> RunParams {
        RunParams {
            duration: Duration::from_millis(100),
            warmup: Duration::from_millis(10),
            drain: Duration::from_millis(100),
            references_only: false,
        }
    }
}

/// A packet capture of some hosts (see [`crate::capture`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureParams {
    /// The pcap file to write (created or truncated).
    pub path: PathBuf,
    /// Hosts whose sent and received packets are recorded (at least one;
    /// each below [`Topology::hosts`]).
    pub hosts: Vec<u32>,
    /// Records written at most; later packets are counted, not written.
    pub limit: u64,
}

impl CaptureParams {
    /// Default of [`limit`](Self::limit): a million records, at most about
    /// 1.5 GB with 1500-byte packets.
    pub const DEFAULT_LIMIT: u64 = 1_000_000;

    /// A capture of host 0 into `path`, with the default limit.
    pub fn new(path: impl Into<PathBuf>) -> CaptureParams {
        CaptureParams {
            path: path.into(),
            hosts: vec![0],
            limit: CaptureParams::DEFAULT_LIMIT,
        }
    }
}

/// A whole experiment. The same configuration and seed always give the
/// same results, byte for byte.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SimConfig {
    /// The network.
    pub topology: Topology,
    /// Host delays and NIC model.
    pub host: HostParams,
    /// Protocol parameters and ablations.
    pub proto: ProtoParams,
    /// The offered traffic.
    pub traffic: Traffic,
    /// Duration and measurement window.
    pub run: RunParams,
    /// Seed of every random choice (arrivals, sizes, destinations, packet
    /// spraying, endpoint seeds).
    pub seed: u64,
    /// Write the packets of some hosts to a pcap file (off by default).
    /// Observing only: the results are the same with or without it.
    pub capture: Option<CaptureParams>,
}

impl SimConfig {
    /// Checks that the values make sense together.
    pub fn validate(&self) -> Result<(), SimError> {
        let t = &self.topology;
        let bad = |s: &'static str| Err(SimError::Config(s));
        if t.racks == 0 || t.hosts_per_rack == 0 || t.hosts() < 2 {
            return bad("need at least two hosts");
        }
        if t.racks > 1 && t.aggs == 0 {
            return bad("several racks need at least one aggregation switch");
        }
        if t.host_link_bps == 0 || t.fabric_link_bps == 0 {
            return bad("link rates must be positive");
        }
        if t.fabric_link_bps < t.host_link_bps {
            return bad("fabric links slower than host links are not modelled");
        }
        if t.hosts() > 1 << 24 {
            return bad("too many hosts");
        }
        let load = self.traffic.load;
        if !load.is_finite() || load < 0.0 {
            return bad("load must be a non-negative number");
        }
        if let Mode::OneWay { response_bytes: 0 } = self.traffic.mode {
            return bad("responses need at least one byte");
        }
        if self.run.warmup > self.run.duration {
            return bad("warmup longer than the run");
        }
        if self.proto.num_priorities == 0 || self.proto.num_priorities > 8 {
            return bad("priorities must be 1..=8");
        }
        if let Cutoffs::Workload {
            unsched_levels: Some(n),
        } = self.proto.cutoffs
        {
            if n == 0 || n > self.proto.num_priorities {
                return bad("unscheduled levels must be 1..=priorities");
            }
        }
        if let Some(c) = &self.capture {
            if c.hosts.is_empty() {
                return bad("a capture needs at least one host");
            }
            if c.hosts.iter().any(|&h| h >= t.hosts()) {
                return bad("capture host out of range");
            }
        }
        if self.proto.overcommit.is_some_and(|n| n == 0 || n > 8) {
            return bad("overcommitment must be 1..=8");
        }
        let dist = self.traffic.workload.dist(self.traffic.variant);
        self.proto
            .resolve(&dist, self.topology.host_link_bps, dist.max_length())
            .config
            .validate()
            .map_err(SimError::Endpoint)?;
        Ok(())
    }
}

/// Parses a duration written as a number and a unit: `100ms`, `1.5s`,
/// `250ns`, `10us` (or `10µs`). A bare number is in seconds.
pub fn parse_duration(s: &str) -> Result<Duration, SimError> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| SimError::Config("bad duration number"))?;
    let scale = match unit.trim() {
        "" | "s" => 1e9,
        "ms" => 1e6,
        "us" | "µs" => 1e3,
        "ns" => 1.0,
        _ => return Err(SimError::Config("duration unit must be s, ms, us or ns")),
    };
    let nanos = v * scale;
    if !nanos.is_finite() || nanos < 0.0 || nanos > u64::MAX as f64 {
        return Err(SimError::Config("duration out of range"));
    }
    Ok(Duration::from_nanos(nanos.round() as u64))
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    #[test]
    fn parse_duration__units() {
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ns").unwrap(), Duration::from_nanos(250));
        assert_eq!(parse_duration("10us").unwrap(), Duration::from_micros(10));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn resolve__paper_defaults_and_ablations() {
        let w4 = Workload::W4.raw();
        let p = ProtoParams::default();
        let r = p.resolve(&w4, 10_000_000_000, w4.max_length());
        let c = &r.config;
        assert_eq!(c.link_mbps, 10_000);
        assert_eq!(c.max_overcommit, 7); // W4: 7 scheduled levels
        assert_eq!(c.window, 10_000);
        assert_eq!(c.unsched_bytes, 10_000);
        assert!(!c.unsched_from_rtt);
        assert_eq!(c.grant_fifo_fraction, 50);
        assert_eq!(c.max_gso_bytes, 0);
        assert_eq!(c.max_message_length, 16 << 20);
        assert_eq!(r.unsched_levels, Some(1));
        assert_eq!(c.unsched_cutoffs.unwrap()[7], i32::MAX as u32);
        c.validate().unwrap();

        let w1 = Workload::W1.raw();
        let r1 = p.resolve(&w1, 10_000_000_000, w1.max_length());
        assert_eq!(r1.config.max_overcommit, 1);
        assert_eq!(r1.unsched_levels, Some(7));
        let cut = r1.config.unsched_cutoffs.unwrap();
        assert!(cut[2..].windows(2).all(|w| w[0] > w[1]), "{cut:?}");

        let ablated = ProtoParams {
            num_priorities: 1,
            overcommit: Some(1),
            fifo_grants: false,
            ..ProtoParams::default()
        };
        let a = ablated.resolve(&w4, 10_000_000_000, 10_000_000).config;
        assert_eq!(a.num_priorities, 1);
        assert_eq!(a.max_overcommit, 1);
        assert_eq!(a.grant_fifo_fraction, 0);
        a.validate().unwrap();

        // One priority level keeps the paper's overcommitment.
        let one = ProtoParams {
            num_priorities: 1,
            ..ProtoParams::default()
        };
        assert_eq!(one.resolve(&w4, 10_000_000_000, 1).config.max_overcommit, 7);

        let split = ProtoParams {
            cutoffs: Cutoffs::Workload {
                unsched_levels: Some(4),
            },
            ..ProtoParams::default()
        };
        let s = split.resolve(&w4, 10_000_000_000, 1);
        assert_eq!(s.unsched_levels, Some(4));
        let cut = s.config.unsched_cutoffs.unwrap();
        assert_eq!(cut[4], i32::MAX as u32);
        assert!(cut[5..].iter().all(|&v| v < 1_000_000), "{cut:?}");
        assert_eq!(&cut[..4], &[0, 0, 0, 0]);

        let auto = ProtoParams {
            cutoffs: Cutoffs::Auto,
            ..ProtoParams::default()
        };
        let r = auto.resolve(&w4, 10_000_000_000, 1);
        assert_eq!(r.config.unsched_cutoffs, None);
        assert!(r.summary().contains("cutoffs auto"));
    }

    #[test]
    fn validate__defaults_and_nonsense() {
        SimConfig::default().validate().unwrap();
        let mut c = SimConfig::default();
        c.topology.fabric_link_bps = 1;
        assert!(c.validate().is_err());
        let mut c = SimConfig::default();
        c.topology.aggs = 0;
        assert!(c.validate().is_err());
        let mut c = SimConfig::default();
        c.run.warmup = c.run.duration * 2;
        assert!(c.validate().is_err());
        let mut c = SimConfig::default();
        c.proto.num_priorities = 9;
        assert!(c.validate().is_err());
        let mut c = SimConfig::default();
        c.proto.overcommit = Some(9);
        assert!(c.validate().is_err());
        let mut c = SimConfig::default();
        c.proto.num_priorities = 2;
        c.proto.cutoffs = Cutoffs::Workload {
            unsched_levels: Some(3),
        };
        assert!(c.validate().is_err());
    }
}
