//! A deterministic in-memory network of endpoints, for tests.
//!
//! Modelled on quinn-proto's test `Pair`, generalised to N hosts: time is
//! manual ([`Network::now`] only moves when [`Network::step`] advances it to
//! the next event), and a filter hook can drop, duplicate, delay or hold any
//! packet as it is sent. Held packets are released on demand, in order,
//! reversed or shuffled. The drive loop ([`Network::run`]) is bounded: a test
//! that would spin forever fails with [`Stalled`] instead.
//!
//! Two link models:
//! * default: every packet arrives a fixed latency after it is sent
//!   (infinite bandwidth; per host-pair latencies can be set);
//! * [`Links`]: every host has an uplink of a given rate into one switch
//!   (a FIFO NIC queue: hosts must pace themselves), and the switch port
//!   toward each host serves 8 strict-priority queues at the same rate.
//!   Serialization uses wire bytes (Homa packet plus UDP, IP and Ethernet
//!   framing). Per-port statistics give queue peaks and utilisation, and an
//!   optional log of NIC hand-offs lets tests check a sender's pacing.
//!
//! This module moves bytes and time only; every protocol decision is the
//! endpoints'.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use core::time::Duration;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use crate::config::{ETH_OVERHEAD, IPV4_HEADER_LEN, IPV6_HEADER_LEN, UDP_HEADER_LEN};
use crate::wire::MAX_PRIORITIES;
use crate::{Config, Endpoint, Event, Instant, Rng};

/// One packet in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Sender's address and port.
    pub src: SocketAddr,
    /// Receiver's address and port.
    pub dst: SocketAddr,
    /// Homa priority level the sender chose.
    pub priority: u8,
    /// The Homa packet.
    pub data: Vec<u8>,
}

impl Datagram {
    /// The Homa packet type, if the type byte is valid.
    pub fn packet_type(&self) -> Option<crate::wire::PacketType> {
        let p = crate::wire::Packet::new_checked(&self.data[..]).ok()?;
        p.packet_type().ok()
    }

    /// Bytes this packet occupies on an Ethernet link.
    pub fn wire_bytes(&self) -> u64 {
        let ip = if self.dst.is_ipv6() {
            IPV6_HEADER_LEN
        } else {
            IPV4_HEADER_LEN
        };
        self.data.len() as u64 + (UDP_HEADER_LEN + ip + ETH_OVERHEAD) as u64
    }
}

/// What the filter decides for a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver normally.
    Deliver,
    /// Lose the packet.
    Drop,
    /// Deliver it twice.
    Duplicate,
    /// Deliver it this much later than normal.
    Delay(Duration),
    /// Keep it aside until [`Network::release_held`].
    Hold,
}

/// The filter hook: sees every packet as it is sent.
pub type Filter = Box<dyn FnMut(&Datagram, &mut Rng) -> Verdict>;

/// One host: an address and its endpoint.
#[derive(Debug)]
pub struct Host {
    /// The host's IP address.
    pub addr: IpAddr,
    /// The protocol endpoint.
    pub endpoint: Endpoint,
    /// Events not consumed by a [`Network::run`] application.
    pub events: Vec<Event>,
    /// While paused (see [`Network::pause_host`]), until when.
    paused_until: Option<Instant>,
    /// Packets that arrived while paused, in arrival order.
    backlog: Vec<(Datagram, Option<u8>)>,
}

/// Why a bounded drive loop gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("network stalled at {now:?} after {steps} steps ({in_flight} packets in flight, {rpcs} rpcs alive)")]
pub struct Stalled {
    /// Simulated time reached.
    pub now: Instant,
    /// Steps taken.
    pub steps: u64,
    /// Packets still in flight.
    pub in_flight: usize,
    /// RPCs alive across all hosts.
    pub rpcs: usize,
}

/// Bounds for [`Network::run`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most steps (event instants) before giving up.
    pub max_steps: u64,
    /// Latest simulated time before giving up.
    pub max_time: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_steps: 50_000_000,
            max_time: Duration::from_secs(3600),
        }
    }
}

/// Counters of the network itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Packets handed to the network by endpoints.
    pub sent: u64,
    /// Packets delivered to an endpoint.
    pub delivered: u64,
    /// Packets the filter dropped.
    pub dropped: u64,
    /// Extra copies the filter made.
    pub duplicated: u64,
    /// Packets addressed to no host.
    pub no_route: u64,
}

/// The rate-limited link model (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Links {
    /// Rate of every host uplink and switch port, in bits per second.
    pub rate_bps: u64,
    /// Propagation delay of each hop (host to switch, switch to host).
    pub hop_delay: Duration,
}

/// Statistics of the switch port toward one host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Largest number of wire bytes queued at once.
    pub max_queue_bytes: u64,
    /// Wire bytes transmitted toward the host.
    pub wire_bytes: u64,
    /// Total time the port spent transmitting.
    pub busy: Duration,
    /// Packets transmitted, per priority level.
    pub packets_by_priority: [u64; MAX_PRIORITIES],
}

#[derive(Debug)]
enum Ev {
    /// A packet reaches its destination host.
    Arrive(Datagram),
    /// A packet reaches the switch (link model only).
    AtSwitch(Datagram),
    /// The switch port toward a host finished a packet.
    PortFree(usize),
    /// A paused host runs again.
    Resume(usize),
}

#[derive(Debug, Default)]
struct Port {
    queues: [VecDeque<Datagram>; MAX_PRIORITIES],
    queued_bytes: u64,
    busy: bool,
    stats: PortStats,
}

/// The network: hosts, packets in flight, time.
pub struct Network {
    now: Instant,
    hosts: Vec<Host>,
    /// (time, sequence) -> event; the sequence keeps FIFO order per time.
    events: BTreeMap<(Instant, u64), Ev>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    latency: Duration,
    link_latency: BTreeMap<(IpAddr, IpAddr), Duration>,
    links: Option<Links>,
    nic_free: Vec<Instant>,
    ports: Vec<Port>,
    nic_log: Option<Vec<(Instant, usize, u64)>>,
    filter: Option<Filter>,
    held: Vec<Datagram>,
    rng: Rng,
    seq: u64,
    steps: u64,
    packets: usize,
    stats: NetStats,
    buf: Vec<u8>,
    report_levels: bool,
    /// Destination addresses delivered to another host than the first at
    /// that address ([`Network::steer`]).
    steered: Vec<(IpAddr, usize)>,
}

impl core::fmt::Debug for Network {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Network")
            .field("now", &self.now)
            .field("hosts", &self.hosts.len())
            .field("in_flight", &self.packets)
            .finish_non_exhaustive()
    }
}

impl Network {
    /// An empty network whose randomness (filters, endpoint seeds) derives
    /// from `seed`. Default: fixed 5 µs one-way latency, no rate limit.
    pub fn new(seed: u64) -> Network {
        Network {
            now: Instant::ZERO,
            hosts: Vec::new(),
            events: BTreeMap::new(),
            timers: BinaryHeap::new(),
            latency: Duration::from_micros(5),
            link_latency: BTreeMap::new(),
            links: None,
            nic_free: Vec::new(),
            ports: Vec::new(),
            nic_log: None,
            filter: None,
            held: Vec::new(),
            rng: Rng::new(seed),
            seq: 0,
            steps: 0,
            packets: 0,
            stats: NetStats::default(),
            buf: Vec::new(),
            report_levels: true,
            steered: Vec::new(),
        }
    }

    /// Current simulated time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Network counters.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// Switches to the rate-limited link model.
    pub fn set_links(&mut self, links: Links) {
        self.links = Some(links);
    }

    /// Whether receivers are told the level each packet arrived at (as a
    /// runtime reading the TOS byte would); on by default.
    pub fn set_report_levels(&mut self, on: bool) {
        self.report_levels = on;
    }

    /// Statistics of the switch port toward `host` (link model only).
    pub fn port_stats(&self, host: usize) -> PortStats {
        self.ports.get(host).map(|p| p.stats).unwrap_or_default()
    }

    /// Starts recording every packet a host hands to its NIC as (time,
    /// host, wire bytes) (link model only): what a pacer let out.
    pub fn record_nic(&mut self) {
        self.nic_log = Some(Vec::new());
    }

    /// The recorded NIC hand-offs.
    pub fn nic_log(&self) -> &[(Instant, usize, u64)] {
        self.nic_log.as_deref().unwrap_or(&[])
    }

    /// Adds a host at 10.0.0.(n+1) with an endpoint built from `config`.
    pub fn add_host(&mut self, config: Config) -> usize {
        let n = self.hosts.len() as u32 + 1;
        let addr = IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + n));
        self.add_host_at(addr, config)
    }

    /// Adds a host at `addr`.
    pub fn add_host_at(&mut self, addr: IpAddr, config: Config) -> usize {
        let seed = self.rng.next_u64();
        let endpoint = Endpoint::new(config, seed).expect("valid test config");
        self.hosts.push(Host {
            addr,
            endpoint,
            events: Vec::new(),
            paused_until: None,
            backlog: Vec::new(),
        });
        self.nic_free.push(Instant::ZERO);
        self.ports.push(Port::default());
        self.hosts.len() - 1
    }

    /// Replaces a host's endpoint with a fresh one (a crash and restart:
    /// all protocol state is lost; sockets must be reopened).
    pub fn restart_host(&mut self, host: usize, config: Config) {
        let seed = self.rng.next_u64();
        let h = &mut self.hosts[host];
        h.endpoint = Endpoint::new(config, seed).expect("valid test config");
        h.events.clear();
        h.paused_until = None;
        h.backlog.clear();
    }

    /// Deschedules a host for `d`, as a process that is not running (or a
    /// runtime that does not drive its endpoint): it sends nothing, its
    /// timers do not run, and packets for it wait in its socket buffer. When
    /// it runs again its timers fire first, then it reads the backlog in
    /// arrival order.
    pub fn pause_host(&mut self, host: usize, d: Duration) {
        self.flush();
        let until = self.now + d;
        self.hosts[host].paused_until = Some(until);
        self.schedule(until, Ev::Resume(host));
    }

    /// The host.
    pub fn host(&self, host: usize) -> &Host {
        &self.hosts[host]
    }

    /// The host, mutably.
    pub fn host_mut(&mut self, host: usize) -> &mut Host {
        &mut self.hosts[host]
    }

    /// The host's endpoint.
    pub fn endpoint(&mut self, host: usize) -> &mut Endpoint {
        &mut self.hosts[host].endpoint
    }

    /// Number of hosts.
    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// A socket address on a host.
    pub fn addr(&self, host: usize, port: u16) -> SocketAddr {
        SocketAddr::new(self.hosts[host].addr, port)
    }

    /// Sets the default one-way latency (default link model).
    pub fn set_latency(&mut self, latency: Duration) {
        self.latency = latency;
    }

    /// Sets the one-way latency from host `a` to host `b` (default link
    /// model).
    pub fn set_link_latency(&mut self, a: usize, b: usize, latency: Duration) {
        let key = (self.hosts[a].addr, self.hosts[b].addr);
        self.link_latency.insert(key, latency);
    }

    /// Installs a filter that sees every packet sent from now on.
    pub fn set_filter(&mut self, filter: impl FnMut(&Datagram, &mut Rng) -> Verdict + 'static) {
        self.filter = Some(Box::new(filter));
    }

    /// Removes the filter.
    pub fn clear_filter(&mut self) {
        self.filter = None;
    }

    /// Number of held packets.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Releases every held packet, in the order they were held, or
    /// reversed.
    pub fn release_held(&mut self, reverse: bool) {
        let mut held = core::mem::take(&mut self.held);
        if reverse {
            held.reverse();
        }
        for d in held {
            self.transmit(d, Duration::ZERO);
        }
    }

    /// Releases held packets in a random order.
    pub fn release_held_shuffled(&mut self) {
        let mut held = core::mem::take(&mut self.held);
        for i in (1..held.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            held.swap(i, j);
        }
        self.held = held;
        self.release_held(false);
    }

    /// Packets in flight (on links or in switch queues).
    pub fn in_flight(&self) -> usize {
        self.packets
    }

    /// Total RPCs alive on every host.
    pub fn rpcs_alive(&self) -> usize {
        self.hosts.iter().map(|h| h.endpoint.rpc_count()).sum()
    }

    /// Injects a raw datagram, as if `src` had sent it (subject to the
    /// filter).
    pub fn inject(&mut self, src: SocketAddr, dst: SocketAddr, data: Vec<u8>) {
        let d = Datagram {
            src,
            dst,
            priority: 0,
            data,
        };
        self.send(d);
    }

    fn host_of(&self, ip: IpAddr) -> Option<usize> {
        self.hosts.iter().position(|h| h.addr == ip)
    }

    /// Delivers datagrams to `ip` to `host` from now on (and those
    /// already in flight when they arrive). With several hosts added at one
    /// address ([`Network::add_host_at`]) this is one address served by
    /// several endpoints, as an `SO_REUSEPORT` group whose kernel moved a
    /// peer to another socket (the group changed, or datagrams are steered
    /// by the CPU that received them).
    pub fn steer(&mut self, ip: IpAddr, host: usize) {
        self.steered.retain(|&(i, _)| i != ip);
        self.steered.push((ip, host));
    }

    /// The host datagrams to `ip` reach.
    fn dest_host(&self, ip: IpAddr) -> Option<usize> {
        match self.steered.iter().find(|&&(i, _)| i == ip) {
            Some(&(_, h)) => Some(h),
            None => self.host_of(ip),
        }
    }

    fn schedule(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.events.insert((at, self.seq), ev);
    }

    fn send(&mut self, d: Datagram) {
        self.stats.sent += 1;
        let verdict = match self.filter.as_mut() {
            Some(f) => f(&d, &mut self.rng),
            None => Verdict::Deliver,
        };
        match verdict {
            Verdict::Deliver => self.transmit(d, Duration::ZERO),
            Verdict::Drop => self.stats.dropped += 1,
            Verdict::Duplicate => {
                self.stats.duplicated += 1;
                self.transmit(d.clone(), Duration::ZERO);
                self.transmit(d, Duration::ZERO);
            }
            Verdict::Delay(extra) => self.transmit(d, extra),
            Verdict::Hold => self.held.push(d),
        }
    }

    /// Puts a packet on the wire now, `extra` later than normal.
    fn transmit(&mut self, d: Datagram, extra: Duration) {
        self.packets += 1;
        let Some(links) = self.links else {
            let latency = *self
                .link_latency
                .get(&(d.src.ip(), d.dst.ip()))
                .unwrap_or(&self.latency);
            let at = self.now + latency + extra;
            self.schedule(at, Ev::Arrive(d));
            return;
        };
        let Some(h) = self.host_of(d.src.ip()) else {
            // Injected from outside: straight to the switch.
            let at = self.now + links.hop_delay + extra;
            self.schedule(at, Ev::AtSwitch(d));
            return;
        };
        let wire = d.wire_bytes();
        let start = self.now.max(self.nic_free[h]);
        let done = start + serialization(wire, links.rate_bps);
        self.nic_free[h] = done;
        if let Some(log) = self.nic_log.as_mut() {
            log.push((self.now, h, wire));
        }
        self.schedule(done + links.hop_delay + extra, Ev::AtSwitch(d));
    }

    fn at_switch(&mut self, d: Datagram) {
        let Some(port) = self.dest_host(d.dst.ip()) else {
            self.packets -= 1;
            self.stats.no_route += 1;
            return;
        };
        let p = &mut self.ports[port];
        p.queued_bytes += d.wire_bytes();
        p.stats.max_queue_bytes = p.stats.max_queue_bytes.max(p.queued_bytes);
        let level = (d.priority as usize).min(MAX_PRIORITIES - 1);
        p.queues[level].push_back(d);
        if !p.busy {
            self.start_port(port);
        }
    }

    /// Starts sending the highest-priority queued packet on a port.
    fn start_port(&mut self, port: usize) {
        let links = self.links.expect("link model");
        let p = &mut self.ports[port];
        let Some(d) = p.queues.iter_mut().rev().find_map(|q| q.pop_front()) else {
            p.busy = false;
            return;
        };
        let wire = d.wire_bytes();
        let ser = serialization(wire, links.rate_bps);
        p.busy = true;
        p.queued_bytes -= wire;
        p.stats.wire_bytes += wire;
        p.stats.busy += ser;
        p.stats.packets_by_priority[(d.priority as usize).min(MAX_PRIORITIES - 1)] += 1;
        let done = self.now + ser;
        self.schedule(done, Ev::PortFree(port));
        self.schedule(done + links.hop_delay, Ev::Arrive(d));
    }

    /// Collects every host's output: transmits become packets in flight
    /// (GSO batches split into segments), events go to the hosts' queues,
    /// and timer deadlines are re-read.
    pub fn flush(&mut self) {
        for h in 0..self.hosts.len() {
            self.flush_host(h);
        }
    }

    fn flush_host(&mut self, h: usize) {
        if self.hosts[h].paused_until.is_some() {
            return;
        }
        let now = self.now;
        let mut buf = core::mem::take(&mut self.buf);
        let addr = self.hosts[h].addr;
        while let Some(t) = self.hosts[h].endpoint.poll_transmit(now, &mut buf) {
            let seg = t.segment_size.unwrap_or(t.size);
            for chunk in buf[..t.size].chunks(seg) {
                let d = Datagram {
                    src: SocketAddr::new(addr, t.src_port),
                    dst: t.destination,
                    priority: t.priority,
                    data: chunk.to_vec(),
                };
                self.send(d);
            }
        }
        self.buf = buf;
        while let Some(e) = self.hosts[h].endpoint.poll_event() {
            self.hosts[h].events.push(e);
        }
        if let Some(t) = self.hosts[h].endpoint.poll_timeout() {
            self.timers.push(Reverse((t, h)));
        }
    }

    fn next_timer(&mut self) -> Option<Instant> {
        // Drop stale heap entries (a host's deadline moved).
        while let Some(&Reverse((t, h))) = self.timers.peek() {
            match self.hosts[h].endpoint.poll_timeout() {
                Some(cur) if cur == t && self.hosts[h].paused_until.is_none() => return Some(t),
                _ => {
                    self.timers.pop();
                }
            }
        }
        None
    }

    /// When the next packet arrives or timer fires (after the hosts'
    /// pending output is collected), if anything is pending: lets a driver
    /// step to a deadline of its own without overshooting it.
    pub fn next_event_time(&mut self) -> Option<Instant> {
        self.flush();
        self.next_time()
    }

    fn next_time(&mut self) -> Option<Instant> {
        let next_ev = self.events.keys().next().map(|k| k.0);
        let next_timer = self.next_timer();
        [next_ev, next_timer].into_iter().flatten().min()
    }

    /// Advances time to the next event or timer and processes everything
    /// due then. Returns false when nothing is pending (the network is
    /// quiescent).
    pub fn step(&mut self) -> bool {
        self.flush();
        let Some(t) = self.next_time() else {
            return false;
        };
        self.now = self.now.max(t);
        self.steps += 1;
        while let Some(entry) = self.events.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            match entry.remove() {
                Ev::Arrive(d) => {
                    self.packets -= 1;
                    match self.dest_host(d.dst.ip()) {
                        Some(h) => {
                            self.stats.delivered += 1;
                            let now = self.now;
                            let level = self.report_levels.then_some(d.priority);
                            let host = &mut self.hosts[h];
                            if host.paused_until.is_some() {
                                host.backlog.push((d, level));
                            } else {
                                host.endpoint
                                    .handle_datagram_at_level(now, d.src, level, &d.data);
                            }
                        }
                        None => self.stats.no_route += 1,
                    }
                }
                Ev::AtSwitch(d) => self.at_switch(d),
                Ev::PortFree(port) => self.start_port(port),
                Ev::Resume(h) => {
                    let now = self.now;
                    let host = &mut self.hosts[h];
                    if host.paused_until.is_some_and(|t| t <= now) {
                        host.paused_until = None;
                        host.endpoint.handle_timeout(now);
                        for (d, level) in core::mem::take(&mut host.backlog) {
                            host.endpoint
                                .handle_datagram_at_level(now, d.src, level, &d.data);
                        }
                    }
                }
            }
        }
        while let Some(&Reverse((t, h))) = self.timers.peek() {
            if t > self.now {
                break;
            }
            self.timers.pop();
            if self.hosts[h].paused_until.is_none()
                && self.hosts[h].endpoint.poll_timeout() == Some(t)
            {
                let now = self.now;
                self.hosts[h].endpoint.handle_timeout(now);
            }
        }
        true
    }

    /// Runs until quiescent, handing every event to `app` (which may issue
    /// commands through the network). Fails with [`Stalled`] if the limits
    /// are hit first.
    pub fn run(
        &mut self,
        limits: Limits,
        app: impl FnMut(&mut Network, usize, Event),
    ) -> Result<(), Stalled> {
        self.run_until(limits, app, |_| false)
    }

    /// Like [`Network::run`], but also stops (successfully) as soon as
    /// `done` returns true.
    pub fn run_until(
        &mut self,
        limits: Limits,
        mut app: impl FnMut(&mut Network, usize, Event),
        mut done: impl FnMut(&Network) -> bool,
    ) -> Result<(), Stalled> {
        let start_steps = self.steps;
        let deadline = self.now + limits.max_time;
        loop {
            self.flush();
            let mut any = false;
            for h in 0..self.hosts.len() {
                let events = core::mem::take(&mut self.hosts[h].events);
                for e in events {
                    any = true;
                    app(self, h, e);
                }
            }
            if any {
                continue;
            }
            if done(self) {
                return Ok(());
            }
            if self.steps - start_steps >= limits.max_steps || self.now > deadline {
                return Err(self.stalled());
            }
            if !self.step() {
                return Ok(());
            }
        }
    }

    /// Advances time by `d`, processing everything due in between.
    pub fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        loop {
            self.flush();
            match self.next_time() {
                Some(t) if t <= until => {
                    self.step();
                }
                _ => break,
            }
        }
        self.now = until;
    }

    fn stalled(&self) -> Stalled {
        Stalled {
            now: self.now,
            steps: self.steps,
            in_flight: self.packets,
            rpcs: self.rpcs_alive(),
        }
    }

    /// Takes the events queued for a host (outside [`Network::run`]).
    pub fn take_events(&mut self, host: usize) -> Vec<Event> {
        self.flush();
        core::mem::take(&mut self.hosts[host].events)
    }

    /// The network's random generator (for test decisions that must stay
    /// deterministic).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }
}

/// Time to serialize `wire_bytes` at `rate_bps`.
fn serialization(wire_bytes: u64, rate_bps: u64) -> Duration {
    Duration::from_nanos((wire_bytes * 8 * 1_000_000_000).div_ceil(rate_bps.max(1)))
}
