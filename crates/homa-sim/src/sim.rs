//! The simulator: hosts (a `homa_proto::Endpoint`, a NIC, an application)
//! on the fabric (ports, switches, links), driven by one event loop.
//!
//! # Hosts
//!
//! Host `h` has address `10.x.y.z` = `0x0A000001 + h` and one Homa socket on
//! port [`PORT`] that both sends requests and serves them; with
//! `HostParams::endpoints` = K > 1 it runs K independent endpoints, endpoint
//! `k` on port `PORT + k` (endpoint number `h K + k`). The simulator
//! follows the endpoint's driver contract: after every input
//! (`handle_datagram`, `handle_timeout`, an application command) it drains
//! `poll_event`, lets the NIC take packets (`poll_transmit`, see
//! [`NicMode`]) and re-reads `poll_timeout`. Every protocol decision is the
//! endpoint's; the simulator only moves bytes and time.
//!
//! # Applications
//!
//! Each host's application creates messages in an open-loop Poisson
//! process, with sizes from the workload and a destination drawn uniformly
//! among the other hosts, all from the host's own random stream. Hand-offs
//! between application and endpoint take `host_delay` each way. A server
//! application answers every request at once: with `response_bytes` in
//! one-way mode, with as many bytes as the request in RPC mode. Message
//! payloads are slices of one shared zero buffer, and nothing copies them:
//! a packet carries its header and the length of its payload, the
//! endpoints count received bytes without keeping them
//! (`Config::discard_payload`) and hand over zeros. Every protocol decision
//! depends on lengths only, so results are those of packets with bytes.
//!
//! # Measurement
//!
//! A message created at or after the warm-up is measured. Its completion
//! time runs from its creation to the moment the server application has
//! the request (one-way) or the client application has the response (RPC);
//! the unloaded time comes from [`Unloaded`]. Arrivals stop at the end of
//! the run's duration; the simulation continues until every measured
//! message has completed or the drain time has passed.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::Bytes;
use homa_proto::{Config, Endpoint, Event};
use homa_workload::{rate_for_load, Poisson, Rng, SizeDist};
use rustc_hash::FxHashMap;
use slab::Slab;

use crate::analytic::Unloaded;
use crate::capture::{Capture, CaptureStats};
use crate::config::{LoadModel, Mode, NicMode, Profile, SimConfig, Slowdown};
use crate::fabric::{wire_overhead, Fabric, Freed, Node, PortKind};
use crate::ideal::{Greedy, Ideal};
use crate::pdes::Pdes;
use crate::queue::EventQueue;
use crate::results::{
    Buffers, Conservation, IdleCauses, Messages, ProtocolCounters, Results, Sample, Stats,
    Utilization,
};
use crate::time::{from_instant, instant, ps, Ps, PS_PER_NS, PS_PER_SEC};
use crate::SimError;

/// The Homa port every host listens and sends on.
pub const PORT: u16 = 100;

/// Backlog samples taken during the arrivals (plus one at the end).
const PROBES: u64 = 20;

/// Interval between samples of idle downlinks ([`IdleCauses`]).
const DIAG_INTERVAL: Ps = 5_000_000;

const BASE_IP: u32 = 0x0A00_0001;

/// The address of host `h` (its first endpoint's socket).
pub fn host_addr(h: u32) -> SocketAddr {
    endpoint_addr(h, 0)
}

/// The address of endpoint `k` of host `h`.
pub fn endpoint_addr(h: u32, k: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(BASE_IP + h)), PORT + k as u16)
}

fn host_of(addr: &SocketAddr) -> Option<u32> {
    match addr.ip() {
        IpAddr::V4(ip) => u32::from(ip).checked_sub(BASE_IP),
        IpAddr::V6(_) => None,
    }
}

/// The endpoint number of `addr` among `hosts` hosts of `k` endpoints.
fn ep_of(addr: &SocketAddr, hosts: u32, k: u32) -> Option<u32> {
    let h = host_of(addr).filter(|&h| h < hosts)?;
    let i = u32::from(addr.port().checked_sub(PORT)?);
    (i < k).then_some(h * k + i)
}

/// Simulator events.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ev {
    /// A packet arrives at the far end of the link it was sent on (the
    /// packet's `hop` port). One `u32` per event keeps queue entries at 16
    /// bytes.
    Arrive { pkt: u32 },
    /// `port` finished serialising a packet.
    PortFree { port: u32 },
    /// A host's endpoint deadline.
    Timer { host: u32 },
    /// A host's application creates a message.
    NewMessage { host: u32 },
    /// A message reaches its sender's endpoint.
    AppSend { msg: u32 },
    /// An endpoint event reaches the application.
    AppNote { note: u32 },
    /// A server application's response reaches its endpoint.
    AppRespond { note: u32 },
    /// Record the backlog of unfinished messages.
    Probe,
    /// Sample why idle downlinks are idle.
    Diag,
}

// Queue entries (key and event) stay at 16 bytes: the wheel's memory, and
// its cache misses on every push, follow their size.
const _: () = assert!(core::mem::size_of::<(u64, Ev)>() == 16);

/// Client RPC id -> message. `rustc-hash`'s fixed hasher: ids are
/// well-spread, and runs stay independent of OS randomness (the map is
/// never iterated).
type IdMap = FxHashMap<u64, u32>;

/// One endpoint of a host (a host has `HostParams::endpoints` of them).
struct Host {
    ep: Endpoint,
    /// The NIC's port: the host's number.
    nic_port: u32,
    /// The endpoint's socket port.
    port: u16,
    /// Time of the Timer event currently scheduled, if any.
    timer_at: Option<Ps>,
    /// Client RPC id -> message.
    rpcs: IdMap,
    /// Messages whose send hit the socket's send cap, waiting for
    /// `Event::Writable`, oldest first.
    blocked: std::collections::VecDeque<u32>,
    /// Endpoints whose server incarnation this endpoint was given.
    met: rustc_hash::FxHashSet<u32>,
}

#[derive(Debug, Clone, Copy)]
struct Msg {
    /// Creation order.
    id: u64,
    src: u32,
    dst: u32,
    /// Sending and receiving endpoints (`host K + k`).
    src_ep: u32,
    dst_ep: u32,
    size: u32,
    created: Ps,
    measured: bool,
}

#[derive(Debug, Clone, Copy)]
enum Note {
    Request {
        host: u32,
        peer: SocketAddr,
        id: u64,
        len: u32,
        msg: Option<u32>,
    },
    Response {
        host: u32,
        id: u64,
    },
    Failed {
        host: u32,
        id: u64,
    },
    Writable {
        host: u32,
    },
}

/// Events processed, by kind, and the DATA packets they moved: what a
/// packet costs the event loop (not part of the deterministic results:
/// the simulator's own bookkeeping).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventCounts {
    /// Packets arriving at a switch.
    pub switch_arrivals: u64,
    /// Packets arriving at a host (each a `handle_datagram`).
    pub host_arrivals: u64,
    /// Switch ports freeing with a packet waiting.
    pub switch_frees: u64,
    /// Pull-mode NIC ports freeing (each asks the host's endpoints).
    pub nic_frees: u64,
    /// Of which the endpoints had nothing to send.
    pub nic_frees_idle: u64,
    /// Port frees superseded by a later transmission (nothing done).
    pub stale_frees: u64,
    /// Of which NIC ports'.
    pub stale_nic_frees: u64,
    /// Endpoint deadlines.
    pub timers: u64,
    /// Of which superseded by an earlier deadline (nothing done).
    pub stale_timers: u64,
    /// Application events (new messages, hand-offs).
    pub app: u64,
    /// The simulator's own sampling (backlog probes, idle diagnosis).
    pub sampling: u64,
    /// DATA packets handed to NICs.
    pub data_packets: u64,
    /// All packets handed to NICs.
    pub packets: u64,
}

impl EventCounts {
    /// Every event counted.
    pub fn total(&self) -> u64 {
        self.switch_arrivals
            + self.host_arrivals
            + self.switch_frees
            + self.nic_frees
            + self.stale_frees
            + self.timers
            + self.app
            + self.sampling
    }

    /// One line: events per DATA packet, by kind.
    pub fn per_data_packet(&self) -> String {
        let d = self.data_packets.max(1) as f64;
        let f = |n: u64| n as f64 / d;
        format!(
            "events per DATA packet {:.2} ({} DATA of {} packets): switch arrivals {:.2}, \
             host arrivals {:.2}, switch port frees {:.2}, NIC frees {:.2} (idle {:.2}), \
             stale port frees {:.2} (NIC {:.2}), timers {:.3} (stale {:.3}), application {:.3}, sampling {:.4}",
            f(self.total()),
            self.data_packets,
            self.packets,
            f(self.switch_arrivals),
            f(self.host_arrivals),
            f(self.switch_frees),
            f(self.nic_frees),
            f(self.nic_frees_idle),
            f(self.stale_frees),
            f(self.stale_nic_frees),
            f(self.timers),
            f(self.stale_timers),
            f(self.app),
            f(self.sampling),
        )
    }
}

/// Progress of a running simulation, for display.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Simulated time now.
    pub now: Ps,
    /// When arrivals stop.
    pub arrivals_end: Ps,
    /// Latest possible end (arrivals end plus drain).
    pub hard_end: Ps,
    /// Events processed so far.
    pub events: u64,
    /// Measured messages completed so far.
    pub completed: u64,
    /// Measured messages not yet completed.
    pub outstanding: u64,
}

/// A simulation being built or run (see the [module docs](self)).
pub struct Simulator {
    cfg: SimConfig,
    now: Ps,
    q: EventQueue<Ev>,
    fabric: Fabric,
    /// Every endpoint: host `h`'s are `h K .. (h + 1) K`.
    hosts: Vec<Host>,
    /// Endpoints per host (K).
    k: u32,
    /// Per host: its application's arrival process.
    arrivals: Vec<Option<Poisson>>,
    /// Per host (K > 1): the stream that picks a message's sending and
    /// receiving endpoints, apart from the arrivals' so that every K draws
    /// the same messages (times, sizes, hosts) as K = 1.
    ep_choice: Vec<Rng>,
    /// Per host: the endpoint its pull-mode NIC asks first when the link
    /// frees (round robin among K endpoints).
    nic_next: Vec<u32>,
    msgs: Slab<Msg>,
    notes: Slab<Note>,
    dist: SizeDist,
    unloaded: Unloaded,
    /// homa-proto's configuration of the endpoints (its wire arithmetic).
    ep_config: Config,
    overhead: u32,
    zeros: Bytes,
    /// The packets of the transmit being taken.
    tx: homa_proto::TxPackets,
    /// Zeros, but for the header of the packet being delivered.
    rx: Vec<u8>,
    stats: Stats,
    /// Every completed message, when asked for (`RunParams::keep_samples`).
    samples: Option<Vec<Sample>>,
    completed: u64,
    host_delay: Ps,
    warmup: Ps,
    arrivals_end: Ps,
    hard_end: Ps,
    rate_per_host: f64,
    /// Wire bytes of the DATA packets of every message created so far
    /// (request and response).
    offered_wire: u64,
    /// The same for messages created in the measurement window.
    window_offered: u64,
    /// Backlog samples: (time, offered minus delivered DATA wire bytes,
    /// the ideal reference's unfinished bytes).
    backlog: Vec<(Ps, i64, f64)>,
    ideal: Ideal,
    greedy: Greedy,
    probe_interval: Ps,
    idle_causes: IdleCauses,
    protocol: String,
    events: u64,
    /// Events by kind.
    kinds: EventCounts,
    generated: u64,
    warmup_messages: u64,
    measured: u64,
    outstanding: u64,
    failed: u64,
    ran: bool,
    /// The rack-parallel estimate, when asked for.
    pdes: Option<Pdes>,
}

impl core::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Simulator")
            .field("now", &self.now)
            .field("hosts", &self.hosts.len())
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// Mean bytes on host links per message as the load model counts them:
/// the DATA packets of the request and of the response (when they count),
/// headers and framing included, with homa-proto's packets; or the
/// paper's DATA and GRANT bytes ([`crate::paper::wire_bytes`]).
pub fn wire_bytes_per_message(cfg: &SimConfig, dist: &SizeDist) -> f64 {
    let c = &cfg.proto.endpoint;
    let data = |l: u32| c.message_wire_bytes(l, false) as f64;
    match (cfg.traffic.load_model, cfg.traffic.mode) {
        (LoadModel::Paper, _) => dist.expectation(|l| crate::paper::wire_bytes(l) as f64),
        (LoadModel::Data { .. }, Mode::Rpc) => 2.0 * dist.expectation(data),
        (LoadModel::Data { count_responses }, Mode::Request { response_bytes })
            if count_responses =>
        {
            dist.expectation(data) + data(response_bytes)
        }
        (LoadModel::Data { .. }, _) => dist.expectation(data),
    }
}

impl Simulator {
    /// Builds the network, endpoints and applications of `cfg`.
    pub fn new(cfg: &SimConfig) -> Result<Simulator, SimError> {
        cfg.validate()?;
        let t = &cfg.topology;
        let dist = cfg.traffic.workload.dist(cfg.traffic.variant);
        let max_msg = cfg.max_message(&dist);
        let resolved = cfg.proto.resolve(&dist, t.host_link_bps, max_msg);
        let mut ep_cfg = resolved.config.clone();
        // Nothing reads the payloads (zeros): the endpoints count received
        // bytes without keeping them, as they do everything else.
        ep_cfg.discard_payload = true;
        let pull = cfg.host.nic == NicMode::Pull;
        let h = &cfg.host;
        let fabric = Fabric::new(
            t,
            ps(h.nic_delay) + ps(h.tx_delay),
            ps(h.rx_delay),
            pull,
            cfg.seed,
        );
        let rate = rate_for_load(
            cfg.traffic.load,
            t.host_link_bps as f64,
            wire_bytes_per_message(cfg, &dist),
        );
        let k = cfg.host.endpoints;
        let mut hosts = Vec::with_capacity((t.hosts() * k) as usize);
        let mut arrivals = Vec::with_capacity(t.hosts() as usize);
        let mut ep_choice = Vec::new();
        let table = homa_proto::HostParams::from_config(&ep_cfg, k);
        for h in 0..t.hosts() {
            // Coordinated: the host's K endpoints share one host table.
            let shared = cfg
                .host
                .host_sharing
                .then(|| homa_proto::Host::in_process(&table));
            for i in 0..k {
                // Endpoint 0 keeps the stream a host had before endpoints
                // were multiplied, so K = 1 runs are unchanged.
                let stream = if i == 0 {
                    0x1000_0000 + u64::from(h)
                } else {
                    0x2000_0000 + u64::from(h) * u64::from(k) + u64::from(i)
                };
                let seed = Rng::stream(cfg.seed, stream).next_u64();
                let mut ep = Endpoint::new(ep_cfg.clone(), seed).map_err(SimError::Endpoint)?;
                if let Some(host) = &shared {
                    ep.join_host(instant(0), host, u64::from(i) + 1, 0)
                        .map_err(|_| SimError::Config("endpoints cannot join their host table"))?;
                }
                let port = PORT + i as u16;
                ep.open_socket(port).map_err(SimError::Proto)?;
                hosts.push(Host {
                    ep,
                    nic_port: h,
                    port,
                    timer_at: None,
                    rpcs: IdMap::default(),
                    blocked: std::collections::VecDeque::new(),
                    met: rustc_hash::FxHashSet::default(),
                });
            }
            if k > 1 {
                ep_choice.push(Rng::stream(cfg.seed, 0x3000_0000 + u64::from(h)));
            }
            arrivals.push(if rate > 0.0 {
                Some(
                    Poisson::new(rate, Rng::stream(cfg.seed, u64::from(h)))
                        .map_err(SimError::Workload)?,
                )
            } else {
                None
            });
        }
        let arrivals_end = ps(cfg.run.duration);
        let mut sim = Simulator {
            now: 0,
            q: EventQueue::new(),
            fabric,
            hosts,
            k,
            arrivals,
            ep_choice,
            nic_next: vec![0; t.hosts() as usize],
            msgs: Slab::new(),
            notes: Slab::new(),
            unloaded: Unloaded::new(cfg),
            overhead: wire_overhead(),
            // Zeroed by the allocator: pages never written stay shared.
            zeros: Bytes::from(vec![0u8; max_msg as usize]),
            tx: homa_proto::TxPackets::new(),
            rx: Vec::new(),
            stats: Stats::new(&dist),
            samples: cfg.run.keep_samples.then(Vec::new),
            completed: 0,
            host_delay: ps(cfg.host.host_delay),
            warmup: ps(cfg.run.warmup),
            arrivals_end,
            hard_end: arrivals_end.saturating_add(ps(cfg.run.drain)),
            rate_per_host: rate,
            offered_wire: 0,
            window_offered: 0,
            backlog: Vec::new(),
            probe_interval: (arrivals_end / PROBES).max(1),
            idle_causes: IdleCauses::default(),
            ideal: Ideal::new(t.hosts(), t.host_link_bps, ps(cfg.run.warmup), arrivals_end),
            greedy: Greedy::new(
                cfg.run.matching,
                t.hosts(),
                t.host_link_bps,
                ep_cfg.message_wire_bytes(ep_cfg.max_seg_data(false), false),
                ps(cfg.run.warmup),
                arrivals_end,
            ),
            protocol: resolved.summary(),
            ep_config: ep_cfg,
            events: 0,
            kinds: EventCounts::default(),
            generated: 0,
            warmup_messages: 0,
            measured: 0,
            outstanding: 0,
            failed: 0,
            ran: false,
            pdes: None,
            dist,
            cfg: cfg.clone(),
        };
        if let Some(c) = &cfg.capture {
            sim.fabric.capture = Some(Capture::create(c, t.hosts())?);
        }
        if cfg.run.pdes_estimate {
            // The lookahead: the least delay of a packet between a ToR and
            // an aggregation switch.
            let lookahead = ps(t.link_delay) + ps(t.switch_delay);
            sim.pdes = Some(Pdes::new(&sim.fabric, lookahead));
        }
        sim.fabric.window.start = sim.warmup;
        sim.fabric.window.end = arrivals_end;
        for h in 0..t.hosts() {
            sim.schedule_arrival(h);
        }
        sim.q.push(0, Ev::Probe);
        sim.q.push(sim.warmup, Ev::Diag);
        Ok(sim)
    }

    /// Arrivals per second at each host.
    pub fn rate_per_host(&self) -> f64 {
        self.rate_per_host
    }

    /// Measured messages not completed yet: `(source, destination, size,
    /// creation time)`, in creation order.
    pub fn outstanding_messages(&self) -> Vec<(u32, u32, u32, Ps)> {
        let mut v: Vec<(u64, (u32, u32, u32, Ps))> = self
            .msgs
            .iter()
            .filter(|(_, m)| m.measured && m.created != Ps::MAX)
            .map(|(_, m)| (m.id, (m.src, m.dst, m.size, m.created)))
            .collect();
        v.sort_unstable_by_key(|e| e.0);
        v.into_iter().map(|e| e.1).collect()
    }

    /// Completed measured messages so far, in completion order (empty
    /// unless `RunParams::keep_samples` is set).
    pub fn samples(&self) -> &[Sample] {
        self.samples.as_deref().unwrap_or(&[])
    }

    /// Events processed so far, by kind (see [`EventCounts`]).
    pub fn event_counts(&self) -> EventCounts {
        EventCounts {
            data_packets: self.fabric.flow.injected_data,
            packets: self.fabric.flow.injected_packets,
            ..self.kinds
        }
    }

    /// Endpoint number `e` (host `e / K`'s endpoint `e % K`; with one
    /// endpoint per host, host `e`'s).
    pub fn endpoint(&self, e: u32) -> &Endpoint {
        &self.hosts[e as usize].ep
    }

    /// The endpoint number of a socket address (see [`endpoint_addr`]).
    fn ep_of(&self, addr: &SocketAddr) -> Option<u32> {
        ep_of(addr, self.fabric.hosts(), self.k)
    }

    /// The unloaded-time model in use.
    pub fn unloaded(&self) -> &Unloaded {
        &self.unloaded
    }

    /// Queues one message from `src` to `dst` of `size` bytes, created at
    /// simulated time `at` (in addition to the Poisson arrivals; with load 0
    /// the only traffic), between the hosts' first endpoints. It is
    /// measured if created after the warm-up.
    pub fn add_message(&mut self, at: Ps, src: u32, dst: u32, size: u32) {
        let k = self.k;
        self.add_message_between(at, (src, src * k), (dst, dst * k), size);
    }

    /// [`add_message`](Self::add_message) between given endpoints:
    /// `(host, endpoint number)` each.
    fn add_message_between(&mut self, at: Ps, src: (u32, u32), dst: (u32, u32), size: u32) {
        let ((src, src_ep), (dst, dst_ep)) = (src, dst);
        let measured = at >= self.warmup;
        let c = &self.ep_config;
        let req_wire = c.message_wire_bytes(size, false);
        let resp_wire = match self.cfg.traffic.mode {
            Mode::OneWay => 0,
            Mode::Request { response_bytes } => c.message_wire_bytes(response_bytes, false),
            Mode::Rpc => req_wire,
        };
        let wire = req_wire + resp_wire;
        self.ideal.arrive(dst, at, req_wire);
        self.greedy.arrive(at, src, dst, req_wire);
        if resp_wire > 0 {
            self.ideal.arrive(src, at, resp_wire);
            self.greedy.arrive(at, dst, src, resp_wire);
        }
        if !measured {
            self.warmup_messages += 1;
        }
        self.offered_wire += wire;
        if measured && at < self.arrivals_end {
            self.window_offered += wire;
        }
        let key = self.msgs.insert(Msg {
            id: self.generated,
            src,
            dst,
            src_ep,
            dst_ep,
            size,
            created: at,
            measured,
        }) as u32;
        self.generated += 1;
        if self.cfg.run.references_only {
            self.msgs.remove(key as usize);
            return;
        }
        if measured {
            self.measured += 1;
            self.outstanding += 1;
        }
        if self.ran && at == self.now && self.host_delay == 0 {
            // No hand-off delay: no event either.
            self.app_send(key);
        } else {
            self.q.push(at + self.host_delay, Ev::AppSend { msg: key });
        }
    }

    fn schedule_arrival(&mut self, h: u32) {
        let now = self.now;
        let end = self.arrivals_end;
        let Some(p) = self.arrivals[h as usize].as_mut() else {
            return;
        };
        let gap = p.next_gap_nanos().saturating_mul(1000);
        let at = now.saturating_add(gap);
        if at < end {
            self.q.push(at, Ev::NewMessage { host: h });
        }
    }

    /// Runs to the end and returns the results. A simulator runs once.
    pub fn run(&mut self, mut progress: impl FnMut(&Progress)) -> Result<Results, SimError> {
        if self.ran {
            return Err(SimError::AlreadyRan);
        }
        self.ran = true;
        let mut next_report = 0u64;
        while let Some((t, ev)) = self.q.pop() {
            // Ending drops the popped event: nothing reads the queue after.
            if t > self.hard_end {
                // The network was simulated up to the hard end.
                self.now = self.now.max(self.hard_end);
                break;
            }
            if self.now >= self.arrivals_end && self.outstanding == 0 {
                break;
            }
            self.now = t;
            self.events += 1;
            if let Some(&next) = self.q.peek_next() {
                self.warm(next);
            }
            if self.pdes.is_some() {
                self.pdes_count(&ev);
            }
            self.dispatch(ev);
            if self.events >= next_report {
                next_report = self.events + (1 << 16);
                progress(&self.progress());
            }
        }
        progress(&self.progress());
        self.probe();
        if let Some(c) = self.fabric.capture.as_mut() {
            c.finish()?;
        }
        Ok(self.results())
    }

    /// What the packet capture wrote, if one was configured (final once
    /// [`run`](Self::run) has returned).
    pub fn capture_stats(&self) -> Option<CaptureStats> {
        self.fabric.capture.as_ref().map(|c| c.stats())
    }

    fn progress(&self) -> Progress {
        Progress {
            now: self.now,
            arrivals_end: self.arrivals_end,
            hard_end: self.hard_end,
            events: self.events,
            completed: self.completed,
            outstanding: self.outstanding,
        }
    }

    /// Counts `ev` for the rack-parallel estimate (see [`crate::pdes`]).
    fn pdes_count(&mut self, ev: &Ev) {
        let f = &self.fabric;
        let k = self.k;
        let host_lp = |h: u32| Pdes::host_lp(f, h);
        let (lp, kind, crossing) = match *ev {
            Ev::Arrive { pkt } => {
                let port = f.pkts.get(pkt).hop;
                let p = &f.ports[port as usize];
                let kind = usize::from(matches!(p.to, Node::Host(_)));
                let dst = f.pkts.get(pkt).dst;
                (
                    Pdes::arrival_lp(f, p.to, dst),
                    kind,
                    p.kind == PortKind::TorUp,
                )
            }
            Ev::PortFree { port } => {
                let p = &f.ports[port as usize];
                let kind = if p.kind == PortKind::Nic { 3 } else { 2 };
                (Pdes::port_lp(f, p), kind, false)
            }
            Ev::Timer { host } => (host_lp(host / k), 4, false),
            Ev::NewMessage { host } => (host_lp(host), 5, false),
            Ev::AppSend { msg } => (host_lp(self.msgs[msg as usize].src), 5, false),
            Ev::AppNote { note } | Ev::AppRespond { note } => {
                let e = match self.notes[note as usize] {
                    Note::Request { host, .. }
                    | Note::Response { host, .. }
                    | Note::Failed { host, .. }
                    | Note::Writable { host } => host,
                };
                (host_lp(e / k), 5, false)
            }
            // The simulator's own sampling: no part of the network.
            Ev::Probe | Ev::Diag => return,
        };
        if let Some(p) = self.pdes.as_mut() {
            p.count(self.now, lp, kind, crossing);
        }
    }

    /// Loads what the next event will read first (its packet and the port
    /// it travelled on, or its port and the packet it sends next), so that
    /// those cache misses overlap with the current event's work instead of
    /// stalling the next one. Each event touches state the previous one
    /// rarely did: most of the loop's own time was these misses.
    #[inline]
    fn warm(&self, next: Ev) {
        let f = &self.fabric;
        match next {
            Ev::Arrive { pkt } => {
                let hop = f.pkts.get(pkt).hop;
                if let Some(p) = f.ports.get(hop as usize) {
                    core::hint::black_box(p.to);
                }
            }
            Ev::PortFree { port } => {
                let p = &f.ports[port as usize];
                core::hint::black_box(p.busy_until());
                if let Some(pkt) = p.next_packet() {
                    core::hint::black_box(f.pkts.get(pkt).wire);
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Arrive { pkt } => {
                match self.fabric.ports[self.fabric.pkts.get(pkt).hop as usize].to {
                    Node::Switch(s) => {
                        self.kinds.switch_arrivals += 1;
                        self.fabric.switch_arrival(s, pkt, self.now, &mut self.q)
                    }
                    Node::Host(h) => {
                        self.kinds.host_arrivals += 1;
                        self.host_receive(h, pkt)
                    }
                }
            }
            Ev::PortFree { port } => match self.fabric.port_free(port, self.now, &mut self.q) {
                Freed::Stale => {
                    self.kinds.stale_frees += 1;
                    if self.fabric.ports[port as usize].kind == PortKind::Nic {
                        self.kinds.stale_nic_frees += 1;
                    }
                }
                Freed::Started => {
                    if self.fabric.ports[port as usize].kind == PortKind::Nic {
                        self.kinds.nic_frees += 1;
                    } else {
                        self.kinds.switch_frees += 1;
                    }
                }
                Freed::Idle => {
                    let p = &self.fabric.ports[port as usize];
                    if p.kind == PortKind::Nic && self.cfg.host.nic == NicMode::Pull {
                        // The link is free: an endpoint may send.
                        let h = p.host;
                        self.kinds.nic_frees += 1;
                        self.nic_free(h);
                        if self.fabric.ports[port as usize].idle(self.now) {
                            self.kinds.nic_frees_idle += 1;
                        }
                    } else {
                        self.kinds.stale_frees += 1;
                    }
                }
            },
            Ev::Timer { host } => {
                self.kinds.timers += 1;
                let hs = &mut self.hosts[host as usize];
                if hs.timer_at != Some(self.now) {
                    self.kinds.stale_timers += 1;
                    return; // superseded by an earlier deadline
                }
                hs.timer_at = None;
                if hs
                    .ep
                    .poll_timeout()
                    .is_some_and(|d| from_instant(d) <= self.now)
                {
                    hs.ep.handle_timeout(instant(self.now));
                }
                self.after_input(host);
            }
            Ev::NewMessage { host } => {
                self.kinds.app += 1;
                self.new_message(host)
            }
            Ev::AppSend { msg } => {
                self.kinds.app += 1;
                self.app_send(msg)
            }
            Ev::AppNote { note } => {
                self.kinds.app += 1;
                self.app_note(note)
            }
            Ev::AppRespond { note } => {
                self.kinds.app += 1;
                self.app_respond(note)
            }
            Ev::Diag => {
                self.kinds.sampling += 1;
                self.diagnose();
                let next = self.now + DIAG_INTERVAL;
                if next < self.arrivals_end {
                    self.q.push(next, Ev::Diag);
                }
            }
            Ev::Probe => {
                self.kinds.sampling += 1;
                self.probe();
                let next = self.now + self.probe_interval;
                if next <= self.arrivals_end {
                    self.q.push(next, Ev::Probe);
                }
            }
        }
    }

    fn new_message(&mut self, h: u32) {
        let n = self.fabric.hosts();
        let k = self.k;
        let p = self.arrivals[h as usize]
            .as_mut()
            .expect("arrivals only with a process");
        let size = self.dist.sample(p.rng());
        let mut dst = p.rng().below(u64::from(n - 1)) as u32;
        if dst >= h {
            dst += 1;
        }
        // The endpoints come from their own stream (none with K = 1), so the
        // arrivals are K = 1's whatever K.
        let (ks, kd) = if k > 1 {
            let r = &mut self.ep_choice[h as usize];
            let ks = r.below(u64::from(k)) as u32;
            (ks, r.below(u64::from(k)) as u32)
        } else {
            (0, 0)
        };
        self.add_message_between(self.now, (h, h * k + ks), (dst, dst * k + kd), size);
        self.schedule_arrival(h);
    }

    /// Host `h`'s pull-mode NIC is free: asks its K endpoints in turn, from
    /// the one after the last that sent, until one sends (K = 1: the one).
    fn nic_free(&mut self, h: u32) {
        let k = self.k;
        let port = h as usize;
        let first = self.nic_next[port];
        for i in 0..k {
            let j = (first + i) % k;
            self.after_input(h * k + j);
            if !self.fabric.ports[port].idle(self.now) {
                self.nic_next[port] = (j + 1) % k;
                return;
            }
        }
    }

    fn app_send(&mut self, key: u32) {
        let src = self.msgs[key as usize].src_ep;
        let host = &mut self.hosts[src as usize];
        if host.blocked.is_empty() {
            self.try_send(key);
        } else {
            // Keep the application's order behind earlier blocked sends.
            host.blocked.push_back(key);
        }
        self.after_input(src);
    }

    /// Hands a message to its sender's endpoint. Returns false if the
    /// socket's send cap refused it (it then waits for `Writable`).
    fn try_send(&mut self, key: u32) -> bool {
        let m = self.msgs[key as usize];
        let payload = self.zeros.slice(..m.size as usize);
        let now = instant(self.now);
        let server_incarnation = self.hosts[m.dst_ep as usize].ep.incarnation();
        let server = endpoint_addr(m.dst, m.dst_ep % self.k);
        let host = &mut self.hosts[m.src_ep as usize];
        if !host.met.contains(&m.dst_ep) {
            // Simulated hosts model long-running processes whose clients
            // met their servers long ago: no first-contact round trip
            // (docs/at-most-once.md), as in the paper's simulator.
            host.met.insert(m.dst_ep);
            host.ep.assume_incarnation(now, server, server_incarnation);
        }
        match host.ep.send_request(now, host.port, server, payload) {
            Ok(id) => {
                host.rpcs.insert(id, key);
                true
            }
            Err(homa_proto::Error::WouldBlock) => {
                host.blocked.push_front(key);
                false
            }
            Err(_) => {
                self.failed += 1;
                self.finish_msg(key, false);
                true
            }
        }
    }

    /// The endpoint produced an event: the application sees it after the
    /// host delay.
    fn endpoint_event(&mut self, h: u32, e: Event) {
        let note = match e {
            Event::Request { peer, id, data, .. } => {
                let msg = self
                    .ep_of(&peer)
                    .and_then(|c| self.hosts.get(c as usize))
                    .and_then(|c| c.rpcs.get(&(id ^ 1)).copied());
                Note::Request {
                    host: h,
                    peer,
                    id,
                    len: data.len() as u32,
                    msg,
                }
            }
            Event::Response { id, .. } => Note::Response { host: h, id },
            Event::Failed { id, .. } => Note::Failed { host: h, id },
            Event::Writable { .. } => Note::Writable { host: h },
            _ => return,
        };
        let key = self.notes.insert(note) as u32;
        if self.host_delay == 0 && matches!(note, Note::Request { .. }) {
            // No hand-off delay: the application takes the request now
            // (it touches no other state of this host's driver loop).
            self.app_note(key);
        } else {
            self.q
                .push(self.now + self.host_delay, Ev::AppNote { note: key });
        }
    }

    fn app_note(&mut self, key: u32) {
        match self.notes[key as usize] {
            Note::Request {
                host,
                peer,
                id,
                msg,
                ..
            } => match self.cfg.traffic.mode {
                Mode::OneWay => {
                    // Nothing comes back: the server drops the request, the
                    // client forgets its RPC (see `Mode::OneWay`).
                    self.notes.remove(key as usize);
                    let server = &mut self.hosts[host as usize];
                    let _ = server.ep.discard_request(server.port, peer, id);
                    self.arm_pull_nic(host);
                    if let Some(m) = msg {
                        self.complete(m);
                        let src = self.msgs[m as usize].src_ep;
                        let client = &mut self.hosts[src as usize];
                        client.rpcs.remove(&(id ^ 1));
                        let _ = client.ep.abort(client.port, id ^ 1);
                        self.arm_pull_nic(src);
                        self.finish_msg(m, true);
                    }
                }
                Mode::Request { .. } => {
                    if let Some(m) = msg {
                        self.complete(m);
                    }
                    self.q
                        .push(self.now + self.host_delay, Ev::AppRespond { note: key });
                }
                Mode::Rpc => {
                    self.q
                        .push(self.now + self.host_delay, Ev::AppRespond { note: key });
                }
            },
            Note::Response { host, id } => {
                self.notes.remove(key as usize);
                if let Some(m) = self.hosts[host as usize].rpcs.remove(&id) {
                    if self.cfg.traffic.mode == Mode::Rpc {
                        self.complete(m);
                    }
                    self.finish_msg(m, true);
                }
            }
            Note::Failed { host, id } => {
                self.notes.remove(key as usize);
                self.failed += 1;
                if let Some(m) = self.hosts[host as usize].rpcs.remove(&id) {
                    self.finish_msg(m, false);
                }
            }
            Note::Writable { host } => {
                self.notes.remove(key as usize);
                while let Some(m) = self.hosts[host as usize].blocked.pop_front() {
                    if !self.try_send(m) {
                        break;
                    }
                }
                self.after_input(host);
            }
        }
    }

    fn app_respond(&mut self, key: u32) {
        let Note::Request {
            host,
            peer,
            id,
            len,
            ..
        } = self.notes.remove(key as usize)
        else {
            unreachable!("only requests are answered");
        };
        let size = match self.cfg.traffic.mode {
            Mode::Request { response_bytes } => response_bytes,
            Mode::Rpc | Mode::OneWay => len,
        };
        let payload = self.zeros.slice(..size as usize);
        let now = instant(self.now);
        // An error means the RPC is gone (aborted or failed meanwhile).
        let server = &mut self.hosts[host as usize];
        let _ = server.ep.send_response(now, server.port, peer, id, payload);
        self.after_input(host);
    }

    /// A measured message completed now (at most once per message).
    fn complete(&mut self, key: u32) {
        let m = self.msgs[key as usize];
        if !m.measured || m.created == Ps::MAX {
            return;
        }
        let time = self.now - m.created;
        let (ideal, alt) = self.ideal_times(&m);
        self.stats.record(m.id, m.size, time, ideal, alt, true);
        if let Some(v) = self.samples.as_mut() {
            v.push(Sample {
                id: m.id,
                size: m.size,
                time,
                ideal,
            });
        }
        self.completed += 1;
        self.outstanding -= 1;
        // Mark as completed so a late duplicate cannot count twice.
        self.msgs[key as usize].created = Ps::MAX;
    }

    /// A message's unloaded time under the run's formula and the other.
    fn ideal_times(&self, m: &Msg) -> (Ps, Ps) {
        let inter = self.fabric.rack(m.src) != self.fabric.rack(m.dst);
        match self.cfg.traffic.mode {
            Mode::OneWay | Mode::Request { .. } => self.unloaded.both(m.size, inter),
            Mode::Rpc => {
                let (a, b) = self.unloaded.both(m.size, inter);
                (2 * a, 2 * b)
            }
        }
    }

    /// The message's RPC is over (response received or failure).
    fn finish_msg(&mut self, key: u32, ok: bool) {
        let m = self.msgs.remove(key as usize);
        if m.measured && m.created != Ps::MAX && !ok {
            // Failed before completing: it will never complete.
            self.outstanding -= 1;
        }
    }

    /// A packet reached host `h`: the endpoint of its destination port
    /// takes it.
    fn host_receive(&mut self, h: u32, pkt: u32) {
        let now = instant(self.now);
        let p = self.fabric.pkts.get(pkt);
        let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(BASE_IP + p.src)), p.sport);
        if let Some(c) = self.fabric.capture.as_mut() {
            c.received(self.now, p);
        }
        let i = u32::from(p.dport.wrapping_sub(PORT));
        let e = h * self.k + i.min(self.k - 1);
        let ep = &mut self.hosts[e as usize].ep;
        if p.tail == 0 {
            ep.handle_datagram(now, src, p.header());
        } else {
            // The packet with the payload it stands for: zeros, which the
            // endpoint counts without reading (`Config::discard_payload`).
            let (head, len) = (p.header().len(), p.len() as usize);
            if self.rx.len() < len {
                self.rx.resize(len, 0);
            }
            self.rx[..head].copy_from_slice(p.header());
            ep.handle_datagram(now, src, &self.rx[..len]);
            self.rx[..head].fill(0);
        }
        self.fabric.delivered(pkt);
        self.after_input(e);
    }

    /// The driver contract's "after any input" for endpoint `h`: events,
    /// transmissions, deadline.
    fn after_input(&mut self, h: u32) {
        while let Some(e) = self.hosts[h as usize].ep.poll_event() {
            self.endpoint_event(h, e);
        }
        let host = self.hosts[h as usize].nic_port;
        let (mut rx, mut incoming) = (false, false);
        for e in host * self.k..(host + 1) * self.k {
            let ep = &self.hosts[e as usize].ep;
            rx |= ep.rx_bytes() > 0;
            incoming |= ep.total_incoming() > 0;
        }
        self.fabric.rx_pending[host as usize] = match (rx, incoming) {
            (false, _) => 0,
            (true, true) => 1,
            (true, false) => 2,
        };
        match self.cfg.host.nic {
            NicMode::Pull => {
                if self.fabric.ports[host as usize].idle(self.now) {
                    self.take_transmit(h);
                }
                self.arm_nic(host);
            }
            NicMode::Push => while self.take_transmit(h) {},
        }
        let host = &mut self.hosts[h as usize];
        if let Some(d) = host.ep.poll_timeout() {
            let mut at = from_instant(d).max(self.now);
            if at <= self.now {
                // A deadline already due after the input was handled can
                // only be one that poll_transmit serves (the pacer's wakeup,
                // a FIFO grant) while a pull-mode NIC is busy: serve it when
                // the link frees. Never spin at one instant.
                let port = &self.fabric.ports[host.nic_port as usize];
                at = if port.busy_until() > self.now {
                    port.busy_until()
                } else {
                    self.now + PS_PER_NS
                };
            }
            if host.timer_at.is_none_or(|t| at < t) {
                host.timer_at = Some(at);
                self.q.push(at, Ev::Timer { host: h });
            }
        }
    }

    /// Host `host`'s pull-mode NIC is sending: makes sure it wakes when its
    /// link frees if one of the host's endpoints has something to send
    /// then. Otherwise nothing would come of that wake-up (`poll_transmit`
    /// would return nothing and change nothing, see
    /// `Endpoint::transmit_idle`, which also covers deadlines due by
    /// then), so it is not an event; any later input to the host comes
    /// here again. Called after every input to the host's endpoints.
    fn arm_nic(&mut self, host: u32) {
        let Some(free) = self.fabric.nic_unarmed(host, self.now) else {
            return;
        };
        let at = instant(free);
        let k = self.k;
        if (host * k..(host + 1) * k).all(|e| self.hosts[e as usize].ep.transmit_idle(at)) {
            return;
        }
        self.fabric.arm_nic(host, &mut self.q);
    }

    /// [`arm_nic`](Self::arm_nic) after a command to endpoint `e` outside
    /// the driver loop.
    fn arm_pull_nic(&mut self, e: u32) {
        if self.cfg.host.nic == NicMode::Pull {
            self.arm_nic(self.hosts[e as usize].nic_port);
        }
    }

    /// Takes one transmit from host `h`'s endpoint into its NIC. Returns
    /// false if the endpoint had nothing to send. The packets carry their
    /// headers (and payloads short enough to be copied after them); the
    /// rest of a payload travels as its length only (`Packet::tail`).
    fn take_transmit(&mut self, h: u32) -> bool {
        let now = self.now;
        let host = &mut self.hosts[h as usize];
        let Some(t) = host.ep.poll_transmit_packets(instant(now), &mut self.tx) else {
            return false;
        };
        let port = host.nic_port;
        let dst = host_of(&t.destination).filter(|&d| d < self.fabric.hosts());
        debug_assert!(dst.is_some(), "endpoint sent to {}", t.destination);
        let Some(dst) = dst else {
            return true;
        };
        for i in 0..self.tx.len() {
            let (header, payload) = self.tx.packet(i);
            let id = self.fabric.pkts.alloc();
            let p = self.fabric.pkts.get_mut(id);
            p.set_header(header);
            p.tail = payload.len() as u32;
            p.src = port;
            p.dst = dst;
            p.sport = t.src_port;
            p.dport = t.destination.port();
            p.tos = t.tos;
            p.prio = t.priority;
            p.classify(self.overhead);
            self.fabric.inject(port, id, 0, now, &mut self.q);
        }
        true
    }

    /// Samples every host downlink: if it is idle while its host has
    /// granted bytes outstanding, finds out where those bytes are.
    fn diagnose(&mut self) {
        let now = self.now;
        let n = self.fabric.hosts();
        // Messages not started, by destination.
        let mut unstarted = vec![false; n as usize];
        for h in &self.hosts {
            for o in h.ep.outgoing_messages() {
                if o.sent == 0 {
                    if let Some(d) = host_of(&o.peer).filter(|&d| d < n) {
                        unstarted[d as usize] = true;
                    }
                }
            }
        }
        let c = &mut self.idle_causes;
        for r in 0..n {
            c.samples += 1;
            let down = self.fabric.downlink_port(r);
            if !self.fabric.ports[down as usize].idle(now) {
                continue;
            }
            if self.fabric.rx_pending[r as usize] != 1 {
                if self.fabric.rx_pending[r as usize] == 0 && unstarted[r as usize] {
                    c.idle_unknown_work += 1;
                }
                continue;
            }
            c.idle += 1;
            let (mut busy, mut idle, mut transit) = (false, false, false);
            let mut feeding = false;
            let mut busy_prio = 0;
            let mut inactive = false;
            let mut senders: Vec<u32> = Vec::new();
            let k = self.k;
            let incoming = (r * k..(r + 1) * k).flat_map(|e| {
                let raddr = endpoint_addr(r, e % k);
                self.hosts[e as usize]
                    .ep
                    .incoming_messages()
                    .map(move |m| (raddr, m))
            });
            for (raddr, m) in incoming {
                if m.granted < m.length && !m.active {
                    inactive = true;
                }
                if m.granted <= m.received {
                    continue;
                }
                let Some(se) = ep_of(&m.peer, n, k) else {
                    continue;
                };
                let s = se / k;
                if !senders.contains(&s) {
                    senders.push(s);
                }
                let out = self.hosts[se as usize]
                    .ep
                    .outgoing_messages()
                    .find(|o| o.id == m.id ^ 1 && o.peer == raddr);
                let Some(o) = out else { continue };
                if o.sent < o.granted {
                    let nic = &self.fabric.ports[s as usize];
                    if nic.busy_until() > now {
                        busy = true;
                        busy_prio = nic.last_prio;
                        let d = nic.last_dst;
                        if d < self.fabric.hosts() {
                            let dp = self.fabric.downlink_port(d);
                            if self.fabric.ports[dp as usize].queued_bytes() >= 3000 {
                                feeding = true;
                            }
                        }
                    } else {
                        idle = true;
                    }
                } else if o.granted < m.granted {
                    transit = true;
                }
            }
            if inactive {
                c.inactive_candidate += 1;
            }
            if unstarted[r as usize] {
                c.unstarted_message += 1;
            }
            c.senders[senders.len().min(8)] += 1;
            if self.fabric.data_in_net[r as usize] > 0 {
                c.in_network += 1;
                if self.fabric.data_queued_fabric[r as usize] > 0 {
                    c.queued_in_fabric += 1;
                }
            } else if busy {
                c.sender_busy += 1;
                c.sender_busy_prio[usize::from(busy_prio.min(7))] += 1;
                if feeding {
                    c.sender_feeding_queue += 1;
                }
            } else if idle {
                c.sender_idle += 1;
            } else if transit {
                c.grant_in_transit += 1;
            } else {
                c.other += 1;
            }
        }
    }

    fn probe(&mut self) {
        let backlog = self.offered_wire as i64 - self.fabric.flow.delivered_data_wire as i64;
        if self.backlog.last().is_none_or(|b| b.0 < self.now) {
            let ideal = self.ideal.backlog_at(self.now);
            self.backlog.push((self.now, backlog, ideal));
            self.greedy.advance_to(self.now);
            self.greedy.sample_backlog();
        }
    }

    /// Protocol counters summed over all endpoints.
    fn counters(&self) -> ProtocolCounters {
        let mut c = ProtocolCounters::default();
        for h in &self.hosts {
            let s = h.ep.stats();
            c.grants += s.grants;
            c.fifo_grants += s.fifo_grants;
            c.data_retransmitted += s.data_retransmitted;
            c.resends += s.resends_silence + s.resends_fast;
            c.timeouts += s.timeouts;
            c.need_acks += s.need_acks;
            c.cutoffs_sent += s.cutoffs_sent;
            c.beyond_grant += s.beyond_grant;
            c.no_buffer_space += s.no_buffer_space + s.grants_deferred_memory;
            c.duplicate_data += s.duplicate_data;
            c.sends_blocked += s.sends_blocked;
            c.throttled_nanos += s.throttled_nanos;
        }
        c
    }

    /// Records every measured message still incomplete at the end, at its
    /// age (see the results module's docs). Call once, at the end.
    fn record_incomplete(&mut self) {
        let now = self.now;
        let open: Vec<Msg> = self
            .msgs
            .iter()
            .filter(|(_, m)| m.measured && m.created != Ps::MAX)
            .map(|(_, m)| *m)
            .collect();
        for m in open {
            let (ideal, alt) = self.ideal_times(&m);
            self.stats
                .record(m.id, m.size, now - m.created, ideal, alt, false);
        }
    }

    fn results(&mut self) -> Results {
        self.record_incomplete();
        let end = self.now.max(self.arrivals_end);
        self.greedy.advance_to(end);
        let t = &self.cfg.topology;
        let window_ps = self.arrivals_end.saturating_sub(self.warmup).max(1);
        let capacity_bytes = t.host_link_bps as f64 / 8.0
            * (window_ps as f64 / PS_PER_SEC as f64)
            * f64::from(t.hosts());
        let w = self.fabric.window;
        let greedy_bytes = self.greedy.window_bytes();
        let greedy_backlog = self.greedy.backlog_samples();
        let mut buffers = Buffers::default();
        for s in &self.fabric.switches {
            let m = if s.agg {
                &mut buffers.max_agg
            } else {
                &mut buffers.max_tor
            };
            *m = (*m).max(s.max_occupancy);
        }
        for p in &self.fabric.ports {
            let m = match p.kind {
                PortKind::Nic => &mut buffers.max_nic_queue,
                PortKind::TorDown => &mut buffers.max_downlink_queue,
                PortKind::TorUp => &mut buffers.max_uplink_queue,
                PortKind::AggDown => &mut buffers.max_agg_queue,
            };
            *m = (*m).max(p.stats.max_queued);
        }
        let flow = self.fabric.flow;
        let (dropped_packets, dropped_bytes) = self.fabric.dropped();
        let (in_flight_packets, in_flight_bytes) = self.fabric.in_flight();
        let t_hosts = t.hosts();
        let t_bps = t.host_link_bps as f64;
        let [short, all, alt_short, alt_all] = self.stats.summaries();
        let buckets = self.stats.buckets(&self.dist);
        let incomplete_bytes = buckets.iter().map(|b| b.incomplete_bytes).sum();
        let name = |s: Slowdown| match s {
            Slowdown::Analytic => "analytic".to_string(),
            Slowdown::Paper => "paper".to_string(),
        };
        let other = match self.cfg.slowdown {
            Slowdown::Analytic => Slowdown::Paper,
            Slowdown::Paper => Slowdown::Analytic,
        };
        Results {
            profile: match self.cfg.profile {
                Profile::Linux => "linux".into(),
                Profile::Paper => "paper".into(),
            },
            workload: self.cfg.traffic.workload.name(),
            variant: match self.cfg.traffic.variant {
                homa_workload::Variant::Raw => "raw".into(),
                homa_workload::Variant::CpNode => "cp_node".into(),
                homa_workload::Variant::Paper => "paper".into(),
            },
            mode: match self.cfg.traffic.mode {
                Mode::OneWay => "one-way".into(),
                Mode::Request { .. } => "request".into(),
                Mode::Rpc => "rpc".into(),
            },
            load_model: match self.cfg.traffic.load_model {
                LoadModel::Data {
                    count_responses: true,
                } => "data (responses included)".into(),
                LoadModel::Data { .. } => "data".into(),
                LoadModel::Paper => "paper (DATA and GRANT, its headers)".into(),
            },
            slowdown: (name(self.cfg.slowdown), name(other)),
            seed: self.cfg.seed,
            hosts: t.hosts(),
            rate_per_host: self.rate_per_host,
            buckets,
            short_rule: self.stats.short_rule(),
            short,
            all,
            alt_short,
            alt_all,
            messages: Messages {
                generated: self.generated,
                warmup: self.warmup_messages,
                measured: self.measured,
                completed: self.completed,
                incomplete: self.outstanding,
                incomplete_bytes,
                failed: self.failed,
            },
            utilization: Utilization {
                offered: self.cfg.traffic.load,
                generated: self.window_offered as f64 / capacity_bytes,
                data: w.data_wire_bytes as f64 / capacity_bytes,
                ideal: self.ideal.window_bytes / capacity_bytes,
                greedy: greedy_bytes / capacity_bytes,
                total: w.wire_bytes as f64 / capacity_bytes,
                goodput: w.payload_bytes as f64 / capacity_bytes,
                wasted: w.wasted_ps as f64 / (window_ps as f64 * f64::from(t.hosts())),
                wasted_granted: w.wasted_granted_ps as f64
                    / (window_ps as f64 * f64::from(t.hosts())),
            },
            protocol_counters: self.counters(),
            idle_causes: self.idle_causes,
            backlog: self
                .backlog
                .iter()
                .enumerate()
                .map(|(i, &(t, b, ideal))| {
                    let g = greedy_backlog.get(i).copied().unwrap_or(f64::NAN);
                    // Per host, in microseconds of host link time.
                    let us = |bytes: f64| bytes / f64::from(t_hosts) * 8.0 / t_bps * 1e6;
                    (t as f64 / 1e6, us(b as f64), us(ideal), us(g))
                })
                .collect(),
            buffers,
            conservation: Conservation {
                injected_packets: flow.injected_packets,
                injected_bytes: flow.injected_bytes,
                delivered_packets: flow.delivered_packets,
                delivered_bytes: flow.delivered_bytes,
                dropped_packets,
                dropped_bytes,
                in_flight_packets,
                in_flight_bytes,
            },
            downlink_prio_bytes: self.fabric.downlink_prio_bytes,
            arrivals_end_us: self.arrivals_end as f64 / 1e6,
            end_us: self.now as f64 / 1e6,
            events: self.events,
            protocol: self.protocol.clone(),
            base_rtt_us: self.unloaded.rpc(1, 1, true) as f64 / 1e6,
            link_gbps: t_bps / 1e9,
            endpoints_per_host: self.k,
            pdes: self.pdes.as_mut().map(Pdes::report),
        }
    }
}

/// Builds and runs `cfg` without progress reports.
pub fn run(cfg: &SimConfig) -> Result<Results, SimError> {
    Simulator::new(cfg)?.run(|_| {})
}
