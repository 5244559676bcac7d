//! A deterministic in-memory network of endpoints, for tests.
//!
//! Modelled on quinn-proto's test `Pair`, generalised to N hosts: time is
//! manual ([`Network::now`] only moves when [`Network::step`] advances it to
//! the next packet arrival or timer), every link has a latency, and a filter
//! hook can drop, duplicate, delay or hold any packet. Held packets are
//! released on demand, in order or reversed, to test reordering. The drive
//! loop ([`Network::run`]) is bounded: a test that would spin forever fails
//! with [`Stalled`] instead.
//!
//! This module moves bytes and time only; every protocol decision is the
//! endpoints'.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use core::time::Duration;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

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
}

/// What the filter decides for a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver after the link latency.
    Deliver,
    /// Lose the packet.
    Drop,
    /// Deliver it twice.
    Duplicate,
    /// Deliver after the link latency plus this much.
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
    /// Most steps (packet deliveries and timer firings) before giving up.
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

/// The network: hosts, packets in flight, time.
pub struct Network {
    now: Instant,
    hosts: Vec<Host>,
    /// (arrival, sequence) -> packet; the sequence keeps FIFO order per time.
    in_flight: BTreeMap<(Instant, u64), Datagram>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    latency: Duration,
    link_latency: BTreeMap<(IpAddr, IpAddr), Duration>,
    filter: Option<Filter>,
    held: Vec<Datagram>,
    rng: Rng,
    seq: u64,
    steps: u64,
    stats: NetStats,
    buf: Vec<u8>,
}

impl core::fmt::Debug for Network {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Network")
            .field("now", &self.now)
            .field("hosts", &self.hosts.len())
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl Network {
    /// An empty network whose randomness (filters, endpoint seeds) derives
    /// from `seed`. Default one-way latency: 5 µs.
    pub fn new(seed: u64) -> Network {
        Network {
            now: Instant::ZERO,
            hosts: Vec::new(),
            in_flight: BTreeMap::new(),
            timers: BinaryHeap::new(),
            latency: Duration::from_micros(5),
            link_latency: BTreeMap::new(),
            filter: None,
            held: Vec::new(),
            rng: Rng::new(seed),
            seq: 0,
            steps: 0,
            stats: NetStats::default(),
            buf: Vec::new(),
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
        });
        self.hosts.len() - 1
    }

    /// Replaces a host's endpoint with a fresh one (a crash and restart:
    /// all protocol state is lost; sockets must be reopened).
    pub fn restart_host(&mut self, host: usize, config: Config) {
        let seed = self.rng.next_u64();
        self.hosts[host].endpoint = Endpoint::new(config, seed).expect("valid test config");
        self.hosts[host].events.clear();
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

    /// Sets the default one-way latency.
    pub fn set_latency(&mut self, latency: Duration) {
        self.latency = latency;
    }

    /// Sets the one-way latency from host `a` to host `b`.
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

    /// Releases every held packet for delivery after the link latency, in
    /// the order they were held, or reversed.
    pub fn release_held(&mut self, reverse: bool) {
        let mut held = core::mem::take(&mut self.held);
        if reverse {
            held.reverse();
        }
        for d in held {
            let at = self.now + self.link_latency(&d);
            self.schedule(at, d);
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

    /// Packets in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
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

    fn link_latency(&self, d: &Datagram) -> Duration {
        *self
            .link_latency
            .get(&(d.src.ip(), d.dst.ip()))
            .unwrap_or(&self.latency)
    }

    fn schedule(&mut self, at: Instant, d: Datagram) {
        self.seq += 1;
        self.in_flight.insert((at, self.seq), d);
    }

    fn send(&mut self, d: Datagram) {
        self.stats.sent += 1;
        let verdict = match self.filter.as_mut() {
            Some(f) => f(&d, &mut self.rng),
            None => Verdict::Deliver,
        };
        let at = self.now + self.link_latency(&d);
        match verdict {
            Verdict::Deliver => self.schedule(at, d),
            Verdict::Drop => self.stats.dropped += 1,
            Verdict::Duplicate => {
                self.stats.duplicated += 1;
                self.schedule(at, d.clone());
                self.schedule(at, d);
            }
            Verdict::Delay(extra) => self.schedule(at + extra, d),
            Verdict::Hold => self.held.push(d),
        }
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
                Some(cur) if cur == t => return Some(t),
                _ => {
                    self.timers.pop();
                }
            }
        }
        None
    }

    /// Advances time to the next packet arrival or timer and processes
    /// everything due then. Returns false when nothing is pending (the
    /// network is quiescent).
    pub fn step(&mut self) -> bool {
        self.flush();
        let next_pkt = self.in_flight.keys().next().map(|k| k.0);
        let next_timer = self.next_timer();
        let Some(t) = [next_pkt, next_timer].into_iter().flatten().min() else {
            return false;
        };
        self.now = self.now.max(t);
        self.steps += 1;
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let d = entry.remove();
            match self.hosts.iter().position(|h| h.addr == d.dst.ip()) {
                Some(h) => {
                    self.stats.delivered += 1;
                    let now = self.now;
                    self.hosts[h].endpoint.handle_datagram(now, d.src, &d.data);
                }
                None => self.stats.no_route += 1,
            }
        }
        while let Some(&Reverse((t, h))) = self.timers.peek() {
            if t > self.now {
                break;
            }
            self.timers.pop();
            if self.hosts[h].endpoint.poll_timeout() == Some(t) {
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
        mut app: impl FnMut(&mut Network, usize, Event),
    ) -> Result<(), Stalled> {
        self.run_until(limits, &mut app, |_| false)
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
            let next_pkt = self.in_flight.keys().next().map(|k| k.0);
            let next_timer = self.next_timer();
            match [next_pkt, next_timer].into_iter().flatten().min() {
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
            in_flight: self.in_flight.len(),
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
