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

use homa_proto::Config;
use homa_workload::cutoffs::{prio_split, split_with};
use homa_workload::{SizeDist, SizeSpec, Variant, Workload};

use crate::SimError;

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
    /// a message handed to the endpoint, an event handed to the
    /// application. A server's response therefore starts `2 × host_delay`
    /// after its endpoint has the whole request. (The default profile's
    /// 0.5 µs stands for HomaSimulation's `hostSwTurnAroundTime` applied
    /// per message; the paper profile applies it per packet instead:
    /// `tx_delay` and `rx_delay`.)
    pub host_delay: Duration,
    /// Delay of every packet from its endpoint to the NIC, pipelined (it
    /// delays each packet, not the link's throughput): HomaSimulation's
    /// output hook of `hostSwTurnAroundTime` (0.5 µs). The endpoint still
    /// decides what to send when the link frees; the packet reaches the
    /// wire this much later.
    pub tx_delay: Duration,
    /// Delay of every packet from the NIC to its endpoint (HomaSimulation's
    /// input hook, 0.5 µs). With `tx_delay` it lengthens every round trip,
    /// the grant's included, by twice the sum.
    pub rx_delay: Duration,
    /// NIC think time (HomaSimulation's `hostNicSxThinkTime`, 0.5 µs),
    /// modelled as a fixed latency on the host's transmit path: it delays
    /// every packet but not the link's throughput.
    pub nic_delay: Duration,
    /// How the NIC takes packets from the endpoint.
    pub nic: NicMode,
    /// Homa endpoints per host (`K`), each with its own socket (ports
    /// `PORT`, `PORT + 1`, ...), peer table, grant scheduler and pacer,
    /// and each believing it owns the host's link: what `K` Homa
    /// processes on one host are today (issue 17). The host's application
    /// hands each message to one of its endpoints, chosen uniformly, for
    /// one of the destination host's endpoints, chosen uniformly. What K
    /// processes have is a FIFO NIC they all push into, each with its own
    /// pacer (`NicMode::Push`, pacer on); a pull-mode NIC asks the
    /// endpoints in turn, one transmit per turn, which starves an endpoint
    /// whose GRANTs (sent before its data) use up its turns (see the
    /// crate's `results/README.md`). 1 (the default) is one endpoint per
    /// host.
    pub endpoints: u32,
    /// The K endpoints of a host coordinate through one host table
    /// (`homa_proto::host`, `docs/host-sharing.md`): one NIC estimate, one
    /// `max_incoming` budget and one SRPT ranking of incoming messages, as
    /// K processes sharing a host table would. Off (the default): K
    /// independent endpoints.
    pub host_sharing: bool,
}

impl Default for HostParams {
    fn default() -> HostParams {
        HostParams {
            host_delay: Duration::from_nanos(500),
            tx_delay: Duration::ZERO,
            rx_delay: Duration::ZERO,
            nic_delay: Duration::from_nanos(500),
            nic: NicMode::Pull,
            endpoints: 1,
            host_sharing: false,
        }
    }
}

/// Receive and send memory caps given to endpoints (1 TiB: never reached).
const MEMORY_CAP: u64 = 1 << 40;

/// Where the unscheduled priority cutoffs every receiver announces come
/// from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cutoffs {
    /// Computed once from the workload's distribution, as the paper
    /// configures its simulations, by homa-proto's `unsched_split`: the top
    /// `unsched_levels` levels (`None`: in proportion to unscheduled bytes)
    /// each carrying about the same unscheduled bytes.
    Workload {
        /// Levels for unscheduled bytes; `None`: proportional.
        unsched_levels: Option<u8>,
    },
    /// The endpoint configuration's own `unsched_cutoffs`: fixed if set,
    /// else homa-proto's built-in `homa_prio`, computed by each receiver
    /// from the sizes it receives.
    Endpoint,
}

impl Default for Cutoffs {
    fn default() -> Cutoffs {
        Cutoffs::Workload {
            unsched_levels: None,
        }
    }
}

/// The protocol: homa-proto's own configuration, plus the two things only
/// a simulator can do, deriving cutoffs and overcommitment from the
/// workload it knows in advance.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtoParams {
    /// The configuration every endpoint gets, in homa-proto's names.
    /// [`ProtoParams::resolve`] overrides `link_mbps` (the topology's host
    /// link), raises `max_message_length` and `max_unscheduled` to what the
    /// workload needs, and sets `unsched_cutoffs` and `max_overcommit` when
    /// `cutoffs` and `overcommit_from_split` say so.
    pub endpoint: Config,
    /// Where the cutoffs come from.
    pub cutoffs: Cutoffs,
    /// Set `max_overcommit` to the number of scheduled levels of the
    /// workload's 8-level split (the paper's rule: W1 1, W4 7; with
    /// `unsched_levels` given, 8 minus it). With fewer priority levels the
    /// 8-level value is kept, so the priority ablations keep the
    /// overcommitment.
    pub overcommit_from_split: bool,
}

/// The endpoint configuration of the default profile: homa-proto's
/// (the kernel module's) defaults except a 1500-byte MTU without GSO (the
/// paper's per-packet transport), RTTbytes (10 KB at 10 Gbit/s) of
/// unscheduled data and of grant window, no RTT-derived unscheduled bytes,
/// and memory caps that are never reached (the paper's hosts have unlimited
/// memory; the report counts any send that still blocks).
pub fn default_endpoint() -> Config {
    Config {
        mtu: 1500,
        max_gso_bytes: 0,
        unsched_bytes: 10_000,
        unsched_from_rtt: false,
        window: 10_000,
        link_mbps: 10_000,
        max_rx_bytes: MEMORY_CAP,
        max_rx_bytes_per_peer: MEMORY_CAP,
        socket_rx_budget: MEMORY_CAP,
        max_tx_bytes_per_socket: MEMORY_CAP,
        ..Config::default()
    }
}

impl Default for ProtoParams {
    fn default() -> ProtoParams {
        ProtoParams {
            endpoint: default_endpoint(),
            cutoffs: Cutoffs::default(),
            overcommit_from_split: true,
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
             window {}, max_incoming {}, fifo grants {}‰, sender fifo {}‰{}, pacer {}, link {} Mbit/s, \
             nic backlog {} us, gso {}",
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
            c.grant_fifo_fraction,
            c.pacer_fifo_fraction,
            if c.pacer_grant_order {
                ", sender grant order"
            } else {
                ""
            },
            if c.pacer { "on" } else { "off" },
            c.link_mbps,
            c.max_nic_backlog.as_micros(),
            c.max_gso_bytes
        )
    }
}

impl ProtoParams {
    /// Message bytes per DATA packet (IPv4).
    pub fn seg_size(&self) -> u32 {
        self.endpoint.max_seg_data(false)
    }

    /// The `homa-proto` configuration for every endpoint, for traffic with
    /// sizes `dist` on host links of `link_bps`; messages up to
    /// `max_message` bytes must be accepted.
    pub fn resolve(&self, dist: &SizeDist, link_bps: u64, max_message: u32) -> Resolved {
        let mut c = self.endpoint.clone();
        c.link_mbps = (link_bps / 1_000_000).min(u64::from(u32::MAX)) as u32;
        c.max_message_length = c.max_message_length.max(max_message);
        c.max_unscheduled = c.max_unscheduled.max(c.unsched_bytes);
        let n = c.num_priorities;
        let (unsched, eight) = match self.cutoffs {
            Cutoffs::Workload { unsched_levels } => {
                let split = |levels: u8| match unsched_levels {
                    Some(l) => split_with(dist, c.unsched_bytes, levels, l),
                    None => prio_split(dist, c.unsched_bytes, levels),
                };
                let mine = split(n);
                c.unsched_cutoffs = Some(mine.cutoffs);
                (Some(mine.unsched_levels), split(8).sched_levels())
            }
            Cutoffs::Endpoint => {
                let levels = c.unsched_cutoffs.and_then(|cut| {
                    (0..n as usize)
                        .rev()
                        .position(|i| cut[i] >= homa_proto::prio::LOWEST_UNSCHED_MARK)
                        .map(|p| p as u8 + 1)
                });
                (levels, prio_split(dist, c.unsched_bytes, 8).sched_levels())
            }
        };
        if self.overcommit_from_split {
            c.max_overcommit = u32::from(eight).clamp(1, 8);
        }
        Resolved {
            config: c,
            unsched_levels: unsched,
        }
    }
}

/// What the applications do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The paper's one-way messages: nothing comes back. The message is
    /// complete when the server application has it; the server then drops
    /// the request unanswered and the client abandons its RPC (homa-proto
    /// has only RPCs: the simulator, which sees both ends, ends both at
    /// once, so no packet beyond the message and its grants is sent).
    OneWay,
    /// Linux-Homa-style requests: a message of the sampled size answered by
    /// a minimal response of `response_bytes` so the RPC completes (and its
    /// ACK/NEED_ACK traffic runs). The message is complete when the server
    /// application has the whole request.
    Request {
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
        Mode::Request { response_bytes: 1 }
    }
}

/// How offered load turns into a message rate: which bytes count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadModel {
    /// DATA packets on the wire with homa-proto's headers and Ethernet
    /// framing; in `Request` mode the responses count when
    /// `count_responses` is set.
    Data {
        /// Count minimal responses (they occupy the links).
        count_responses: bool,
    },
    /// The paper's: DATA and GRANT bytes on the wire with HomaSimulation's
    /// header sizes ([`crate::paper::wire_bytes`]). Responses, if any, do
    /// not count.
    Paper,
}

impl Default for LoadModel {
    fn default() -> LoadModel {
        LoadModel::Data {
            count_responses: true,
        }
    }
}

/// The offered traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    /// Message sizes.
    pub workload: SizeSpec,
    /// Raw (uncapped), the kernel benchmark's capped CDF, or what the
    /// paper's simulator draws.
    pub variant: Variant,
    /// Target load: fraction of every host link's rate taken by the
    /// traffic as `load_model` counts it, from open-loop Poisson arrivals
    /// with uniform random source and destination.
    pub load: f64,
    /// One-way messages, requests with minimal responses, or RPCs.
    pub mode: Mode,
    /// Which bytes count in the load.
    pub load_model: LoadModel,
}

impl Default for Traffic {
    fn default() -> Traffic {
        Traffic {
            workload: SizeSpec::Named(Workload::W4),
            variant: Variant::Raw,
            load: 0.8,
            mode: Mode::default(),
            load_model: LoadModel::default(),
        }
    }
}

/// The denominator of a slowdown: a message's completion time on an
/// unloaded network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Slowdown {
    /// What this network achieves unloaded, with homa-proto's packets
    /// ([`crate::analytic::Unloaded::one_way`]).
    #[default]
    Analytic,
    /// HomaSimulation's formula (`idealMsgEndToEndDelay`, see
    /// [`crate::paper::unloaded`]): no transport header, its frame sizes.
    Paper,
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
    /// Compute the matching reference (a global-SRPT fluid schedule of the
    /// same arrivals; about 10% of a W4 run's time).
    pub matching: bool,
    /// Keep every completed message's sample (tests; memory grows with the
    /// run).
    pub keep_samples: bool,
    /// Estimate what a rack-parallel simulation of this run would gain
    /// ([`crate::pdes`]): counts every event by rack and lookahead window.
    pub pdes_estimate: bool,
}

impl Default for RunParams {
    fn default() -> RunParams {
        RunParams {
            duration: Duration::from_millis(100),
            warmup: Duration::from_millis(10),
            drain: Duration::from_millis(100),
            references_only: false,
            matching: true,
            keep_samples: false,
            pdes_estimate: false,
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

/// Which settings a configuration starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// Linux-Homa-like: requests answered by 1-byte responses, homa-proto's
    /// (the kernel's) FIFO grants and sender FIFO share, load counted as
    /// homa-proto's DATA bytes, the analytic slowdown, the kernel's
    /// workload tables, priority split in proportion to bytes.
    #[default]
    Linux,
    /// The SIGCOMM 2018 paper's setup by definition ([`SimConfig::paper`]).
    Paper,
}

/// A whole experiment. The same configuration and seed always give the
/// same results, byte for byte.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SimConfig {
    /// The profile these settings started from (reported).
    pub profile: Profile,
    /// The network.
    pub topology: Topology,
    /// Host delays and NIC model.
    pub host: HostParams,
    /// Protocol parameters and ablations.
    pub proto: ProtoParams,
    /// The offered traffic.
    pub traffic: Traffic,
    /// The slowdown denominator.
    pub slowdown: Slowdown,
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
    /// The SIGCOMM 2018 paper's simulation setup for `workload`, by
    /// definition (HomaSimulation's configuration; the crate README lists
    /// every difference from the default profile and its effect):
    ///
    /// * one-way messages ([`Mode::OneWay`]), the paper's load accounting
    ///   ([`LoadModel::Paper`]) and slowdown ([`Slowdown::Paper`]);
    /// * 0.5 µs per packet into and out of every host (`tx_delay`,
    ///   `rx_delay`) instead of per message hand-off, 0.5 µs NIC think time;
    /// * the paper's priority split and overcommitment per workload (W1 7
    ///   unscheduled levels / overcommitment 1, W2 5/3, W3 4/4, W4 1/7, W5
    ///   1/7), unscheduled bytes and grant window of 9 328 message bytes
    ///   (RTTbytes: 10 000 bytes on the paper's wire), no FIFO grants, no
    ///   sender FIFO share, no pacer (the paper's sender sends the next
    ///   packet when its link frees, which the pull-mode NIC models);
    /// * the workloads as the paper's simulator draws them
    ///   ([`Variant::Paper`]: W1 with its tail, W5 in 1442-byte packets).
    pub fn paper(workload: SizeSpec) -> SimConfig {
        let levels = match workload {
            SizeSpec::Named(Workload::W1) => Some(7),
            SizeSpec::Named(Workload::W2) => Some(5),
            SizeSpec::Named(Workload::W3) => Some(4),
            SizeSpec::Named(Workload::W4) | SizeSpec::Named(Workload::W5) => Some(1),
            _ => None,
        };
        let mut c = SimConfig {
            profile: Profile::Paper,
            slowdown: Slowdown::Paper,
            ..SimConfig::default()
        };
        c.host.host_delay = Duration::ZERO;
        c.host.tx_delay = Duration::from_nanos(500);
        c.host.rx_delay = Duration::from_nanos(500);
        c.traffic.workload = workload;
        c.traffic.variant = Variant::Paper;
        c.traffic.mode = Mode::OneWay;
        c.traffic.load_model = LoadModel::Paper;
        let e = &mut c.proto.endpoint;
        e.unsched_bytes = crate::paper::UNSCHED_BYTES;
        e.window = crate::paper::UNSCHED_BYTES;
        e.grant_fifo_fraction = 0;
        e.pacer_fifo_fraction = 0;
        e.pacer = false;
        c.proto.cutoffs = Cutoffs::Workload {
            unsched_levels: levels,
        };
        c
    }

    /// The largest message the applications send.
    pub fn max_message(&self, dist: &SizeDist) -> u32 {
        match self.traffic.mode {
            Mode::Request { response_bytes } => dist.max_length().max(response_bytes),
            Mode::OneWay | Mode::Rpc => dist.max_length(),
        }
    }

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
        if self.host.endpoints == 0 || self.host.endpoints > 256 {
            return bad("endpoints per host must be 1 to 256");
        }
        if u64::from(t.hosts()) * u64::from(self.host.endpoints) > 1 << 24 {
            return bad("too many endpoints");
        }
        let load = self.traffic.load;
        if !load.is_finite() || load < 0.0 {
            return bad("load must be a non-negative number");
        }
        if let Mode::Request { response_bytes: 0 } = self.traffic.mode {
            return bad("responses need at least one byte");
        }
        if self.run.warmup > self.run.duration {
            return bad("warmup longer than the run");
        }
        if crate::time::ps(self.run.duration).saturating_add(crate::time::ps(self.run.drain))
            > crate::queue::MAX_TIME
        {
            return bad("duration and drain together must stay below 17 s");
        }
        let prios = self.proto.endpoint.num_priorities;
        if prios == 0 || prios > 8 {
            return bad("priorities must be 1..=8");
        }
        if let Cutoffs::Workload {
            unsched_levels: Some(n),
        } = self.proto.cutoffs
        {
            if n == 0 || n > prios {
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
        let dist = self.traffic.workload.dist(self.traffic.variant);
        self.proto
            .resolve(&dist, self.topology.host_link_bps, self.max_message(&dist))
            .config
            .validate()
            .map_err(SimError::Endpoint)?;
        Ok(())
    }
}

/// Parses a duration written as a number and a unit: `100ms`, `1.5s`,
/// `250ns`, `10us` (or `10µs`); a bare number is in seconds; anything
/// else the `humantime` crate reads (`1m30s`, `2h`). The one duration
/// syntax of every `homa` command and of `homa-sim`.
pub fn parse_duration(s: &str) -> Result<Duration, SimError> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let simple = match unit.trim() {
        "" | "s" => Some(1e9),
        "ms" => Some(1e6),
        "us" | "µs" => Some(1e3),
        "ns" => Some(1.0),
        _ => None,
    };
    let (Some(scale), Ok(v)) = (simple, num.parse::<f64>()) else {
        return humantime::parse_duration(s).map_err(|_| {
            SimError::Config(
                "a duration is a number and a unit (10s, 250ms, 1.5ms, 500us, 1m30s) or a number of seconds",
            )
        });
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
        // Compound forms, as every `homa` command takes them (the
        // simulator refused `1m30s` while the docs said "everywhere").
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_duration("1s 500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn resolve__derived_cutoffs_and_overcommitment() {
        let w4 = Workload::W4.raw();
        let p = ProtoParams::default();
        let r = p.resolve(&w4, 10_000_000_000, w4.max_length());
        let c = &r.config;
        assert_eq!(c.link_mbps, 10_000);
        assert_eq!(c.max_overcommit, 7); // W4: 7 scheduled levels
        assert_eq!((c.window, c.unsched_bytes), (10_000, 10_000));
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

        // One priority level keeps the 8-level overcommitment.
        let mut one = ProtoParams::default();
        one.endpoint.num_priorities = 1;
        assert_eq!(one.resolve(&w4, 10_000_000_000, 1).config.max_overcommit, 7);
        // A configured overcommitment stays.
        let mut fixed = ProtoParams::default();
        fixed.endpoint.max_overcommit = 1;
        fixed.overcommit_from_split = false;
        assert_eq!(
            fixed.resolve(&w4, 10_000_000_000, 1).config.max_overcommit,
            1
        );

        // The split ablation changes the overcommitment with it.
        let split = ProtoParams {
            cutoffs: Cutoffs::Workload {
                unsched_levels: Some(4),
            },
            ..ProtoParams::default()
        };
        let s = split.resolve(&w4, 10_000_000_000, 1);
        assert_eq!(s.unsched_levels, Some(4));
        assert_eq!(s.config.max_overcommit, 4);
        let cut = s.config.unsched_cutoffs.unwrap();
        assert_eq!(cut[4], i32::MAX as u32);
        assert!(cut[5..].iter().all(|&v| v < 1_000_000), "{cut:?}");
        assert_eq!(&cut[..4], &[0, 0, 0, 0]);

        let auto = ProtoParams {
            cutoffs: Cutoffs::Endpoint,
            ..ProtoParams::default()
        };
        let r = auto.resolve(&w4, 10_000_000_000, 1);
        assert_eq!(r.config.unsched_cutoffs, None);
        assert!(r.summary().contains("cutoffs auto"));
    }

    #[test]
    fn paper__the_papers_split_and_settings() {
        let per: Vec<(u8, u32)> = Workload::PAPER
            .iter()
            .map(|&w| {
                let c = SimConfig::paper(w.into());
                let d = c.traffic.workload.dist(c.traffic.variant);
                let r = c
                    .proto
                    .resolve(&d, c.topology.host_link_bps, c.max_message(&d));
                r.config.validate().unwrap();
                assert_eq!(r.config.grant_fifo_fraction, 0);
                assert_eq!(r.config.pacer_fifo_fraction, 0);
                assert_eq!(r.config.unsched_bytes, 9328);
                (r.unsched_levels.unwrap(), r.config.max_overcommit)
            })
            .collect();
        assert_eq!(per, vec![(7, 1), (5, 3), (4, 4), (1, 7), (1, 7)]);
        let c = SimConfig::paper(Workload::W1.into());
        c.validate().unwrap();
        assert_eq!(c.traffic.mode, Mode::OneWay);
        assert_eq!(c.host.host_delay, Duration::ZERO);
        assert_eq!(c.host.tx_delay + c.host.rx_delay, Duration::from_micros(1));
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
        c.proto.endpoint.num_priorities = 9;
        assert!(c.validate().is_err());
        let mut c = SimConfig::default();
        c.proto.endpoint.max_overcommit = 9;
        c.proto.overcommit_from_split = false;
        assert!(c.validate().is_err());
        let mut c = SimConfig::default();
        c.proto.endpoint.num_priorities = 2;
        c.proto.cutoffs = Cutoffs::Workload {
            unsched_levels: Some(3),
        };
        assert!(c.validate().is_err());
    }
}
