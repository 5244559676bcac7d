//! The network fabric: packets in flight, output ports with strict-priority
//! queues, switches with shared-buffer accounting, routing and packet
//! spraying.
//!
//! # Model
//!
//! * Every link is driven by an output **port** at its sending end: a host's
//!   NIC, a ToR's port down to a host or up to an aggregation switch, an
//!   aggregation switch's port down to a ToR. A port serialises one packet at
//!   a time at its link rate; the packet arrives at the far end after the
//!   serialisation time plus the link's latency.
//! * A port has 8 FIFO queues, one per Homa priority level, served in strict
//!   priority order (level 7 first) without preemption of the packet being
//!   sent. A host NIC in push mode keeps everything in one FIFO (level 0).
//! * **Switches** store and forward: a packet is forwarded once fully
//!   received plus the fixed switch delay (folded into the latency of the
//!   links that end at a switch). A ToR sends a packet for its own rack down
//!   to the host; otherwise up to an aggregation switch chosen uniformly at
//!   random for every packet (packet spraying). An aggregation switch sends
//!   it down to the destination's ToR.
//! * Each switch has one **shared buffer**: the bytes of packets waiting in
//!   any of its output queues (a packet that starts serialisation at once is
//!   not counted; the packet being serialised is no longer counted). The
//!   maximum occupancy is recorded. With a capacity configured, a packet
//!   arriving at a busy port that does not fit is dropped.
//!
//! The fabric moves bytes and time only: it never looks inside a packet
//! except to count DATA bytes for statistics.

use homa_proto::wire::{common::field, DataHeader, PacketType};
use homa_workload::Rng;

use crate::capture::Capture;
use crate::config::Topology;

/// Bytes a packet occupies on a link beyond its Homa bytes: IPv4 and UDP
/// headers and Ethernet framing (homa-proto's `Config::wire_bytes`).
pub(crate) fn wire_overhead() -> u32 {
    homa_proto::Config::default().wire_bytes(0, false) as u32
}
use crate::queue::EventQueue;
use crate::sim::Ev;
use crate::time::{ps, ser_ps, Ps};

/// Sentinel for "no switch" / "no host".
const NONE: u32 = u32::MAX;

/// Header bytes a [`Packet`] holds in place: every Homa header but the
/// ACK's (80 bytes, kept in `Packet::spill`), and the whole packet is two
/// cache lines.
const HEAD_INLINE: usize = 69;

/// A packet in flight. Aligned to cache lines, with its header in place:
/// nearly every event starts by reading one packet that is not in cache,
/// and a header behind a pointer (a `Vec` per packet) was one more miss at
/// each end (writing it into the packet, handing it to the receiver).
#[derive(Debug)]
#[repr(align(64))]
pub(crate) struct Packet {
    /// A header longer than [`HEAD_INLINE`] (its buffer is recycled with
    /// the slot); empty otherwise.
    spill: Vec<u8>,
    /// Payload bytes at the end of the packet that it stands for but does
    /// not carry: the simulator's messages are zeros that nothing reads
    /// (homa-proto's `Config::discard_payload`), so only their length
    /// travels; the receiving endpoint is handed zeros.
    pub tail: u32,
    /// Sending host.
    pub src: u32,
    /// Destination host.
    pub dst: u32,
    /// Sending port (the Homa source port).
    pub sport: u16,
    /// Destination port (the Homa destination port).
    pub dport: u16,
    /// IP TOS byte the endpoint asked for (for captures).
    pub tos: u8,
    /// Homa priority level.
    pub prio: u8,
    /// Message bytes carried (DATA packets only).
    pub payload: u32,
    /// Bytes on the wire: Homa bytes plus IP, UDP and Ethernet overhead.
    pub wire: u32,
    /// The next packet in the same port queue ([`NONE`] at the tail): the
    /// queues are lists threaded through the packets, so taking a packet
    /// off a queue touches only the packet, which is read anyway.
    next: u32,
    /// The port that sent the packet on its current link (set when the
    /// port starts it), so an arrival event needs only the packet's id.
    pub hop: u32,
    /// Length of the header in `head` (0 when it is in `spill`).
    head_len: u8,
    /// The header, when it fits.
    head: [u8; HEAD_INLINE],
}

// Two cache lines: the routing fields and the start of the header in the
// first, the rest of the header in the second.
const _: () = assert!(core::mem::size_of::<Packet>() == 128);

impl Default for Packet {
    fn default() -> Self {
        Packet {
            spill: Vec::new(),
            tail: 0,
            src: 0,
            dst: 0,
            sport: 0,
            dport: 0,
            tos: 0,
            prio: 0,
            payload: 0,
            wire: 0,
            next: NONE,
            hop: NONE,
            head_len: 0,
            head: [0; HEAD_INLINE],
        }
    }
}

impl Packet {
    /// The Homa bytes the packet carries: its header (the payload it
    /// stands for is `tail` bytes of zeros after it).
    #[inline]
    pub fn header(&self) -> &[u8] {
        if self.spill.is_empty() {
            &self.head[..usize::from(self.head_len)]
        } else {
            &self.spill
        }
    }

    /// Sets the Homa bytes the packet carries (see [`header`](Self::header)).
    #[inline]
    pub fn set_header(&mut self, header: &[u8]) {
        self.spill.clear();
        if header.len() <= HEAD_INLINE {
            self.head[..header.len()].copy_from_slice(header);
            self.head_len = header.len() as u8;
        } else {
            self.spill.extend_from_slice(header);
            self.head_len = 0;
        }
    }

    /// Bytes of the Homa packet (header and payload, carried or not).
    #[inline]
    pub fn len(&self) -> u32 {
        self.header().len() as u32 + self.tail
    }

    /// Fills the derived fields from the Homa bytes in the header and the
    /// length of `tail`; `overhead` is [`wire_overhead`].
    pub fn classify(&mut self, overhead: u32) {
        let len = self.len();
        self.wire = len + overhead;
        let is_data = self
            .header()
            .get(field::TYPE)
            .is_some_and(|&t| t == PacketType::Data as u8);
        self.payload = if is_data {
            len.saturating_sub(DataHeader::LEN as u32)
        } else {
            0
        };
    }
}

/// Packet slots, recycled together with their buffers so that steady state
/// allocates nothing per packet.
#[derive(Debug, Default)]
pub(crate) struct PacketPool {
    slots: Vec<Packet>,
    free: Vec<u32>,
}

impl PacketPool {
    /// A free slot (its buffer keeps its capacity, contents unspecified).
    pub fn alloc(&mut self) -> u32 {
        match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Packet::default());
                (self.slots.len() - 1) as u32
            }
        }
    }

    /// Returns a slot.
    pub fn release(&mut self, id: u32) {
        self.free.push(id);
    }

    /// Slots in use.
    pub fn live(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Homa bytes of the packets in use.
    pub fn live_bytes(&self) -> u64 {
        let mut free = vec![false; self.slots.len()];
        for &f in &self.free {
            free[f as usize] = true;
        }
        self.slots
            .iter()
            .zip(free)
            .filter(|(_, f)| !f)
            .map(|(p, _)| u64::from(p.len()))
            .sum()
    }

    pub fn get(&self, id: u32) -> &Packet {
        &self.slots[id as usize]
    }

    pub fn get_mut(&mut self, id: u32) -> &mut Packet {
        &mut self.slots[id as usize]
    }
}

/// What a port's link leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Node {
    /// A host's NIC (receive side).
    Host(u32),
    /// A switch.
    Switch(u32),
}

/// Which kind of link a port drives (for statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortKind {
    /// Host to ToR.
    Nic,
    /// ToR to host: the host's downlink.
    TorDown,
    /// ToR to aggregation switch.
    TorUp,
    /// Aggregation switch to ToR.
    AggDown,
}

/// Per-port counters.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PortStats {
    pub max_queued: u64,
    pub tx_packets: u64,
}

/// An output port and its link. The queues are two packet ids per level,
/// and a port is aligned to cache lines: 160 bytes in three lines, not four.
#[derive(Debug)]
#[repr(align(64))]
pub(crate) struct Port {
    pub kind: PortKind,
    /// Bit `i` set: queue `i` is non-empty.
    mask: u8,
    /// Host owning a NIC port, or [`NONE`].
    pub host: u32,
    /// Switch owning the port, or [`NONE`].
    pub switch: u32,
    pub to: Node,
    bps: u64,
    latency: Ps,
    /// First packet of each priority level's FIFO (valid where `mask` says
    /// non-empty), linked through [`Packet`]`::next`.
    head: [u32; 8],
    /// Last packet of each level's FIFO.
    tail: [u32; 8],
    queued_bytes: u64,
    busy_until: Ps,
    /// The PortFree event that is still valid, if any.
    wake_at: Option<Ps>,
    /// A pull-mode NIC: its link freeing is an event only when the host's
    /// endpoints have something to send then ([`Fabric::arm_nic`]).
    pull: bool,
    /// A pull-mode NIC's place in the event order for the PortFree that
    /// ends its current transmission, reserved when the transmission
    /// started (used if the event is pushed later).
    reserved: u64,
    /// Destination host and priority of the last packet started.
    pub last_dst: u32,
    pub last_prio: u8,
    pub stats: PortStats,
}

impl Port {
    fn new(kind: PortKind, to: Node, bps: u64, latency: Ps) -> Port {
        Port {
            kind,
            host: NONE,
            switch: NONE,
            to,
            bps,
            latency,
            head: [NONE; 8],
            tail: [NONE; 8],
            mask: 0,
            queued_bytes: 0,
            busy_until: 0,
            wake_at: None,
            pull: false,
            reserved: 0,
            last_dst: NONE,
            last_prio: 0,
            stats: PortStats::default(),
        }
    }

    /// When the packet being serialised (if any) is through.
    pub fn busy_until(&self) -> Ps {
        self.busy_until
    }

    /// Bytes waiting in the port's queues.
    pub fn queued_bytes(&self) -> u64 {
        self.queued_bytes
    }

    /// The packet the port sends next, if one is queued.
    #[inline]
    pub fn next_packet(&self) -> Option<u32> {
        (self.mask != 0).then(|| self.head[7 - self.mask.leading_zeros() as usize])
    }

    /// True if nothing is queued and the link is free at `now`.
    pub fn idle(&self, now: Ps) -> bool {
        self.mask == 0 && self.busy_until <= now
    }
}

/// What a PortFree event found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freed {
    /// Superseded by a later transmission: nothing to do.
    Stale,
    /// A queued packet started.
    Started,
    /// Idle with nothing queued (a pull-mode NIC then asks its endpoint).
    Idle,
}

/// A switch.
#[derive(Debug, Clone, Default)]
pub(crate) struct Switch {
    /// True for an aggregation switch.
    pub agg: bool,
    /// Bytes waiting in all its output queues.
    pub occupancy: u64,
    pub max_occupancy: u64,
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
}

/// Window in which host downlink traffic is counted for utilisation.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Window {
    pub start: Ps,
    pub end: Ps,
    /// Wire bytes of every packet sent on a host downlink in the window.
    pub wire_bytes: u64,
    /// Wire bytes of DATA packets.
    pub data_wire_bytes: u64,
    /// Message bytes in DATA packets.
    pub payload_bytes: u64,
    /// Time host downlinks were idle while their host had a partially
    /// received message (summed over downlinks).
    pub wasted_ps: u64,
    /// Of which the host had granted bytes not yet received (senders had
    /// permission but did not send, or the bytes were still upstream).
    pub wasted_granted_ps: u64,
}

/// Conservation counters (Homa bytes, i.e. without wire overhead).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Flow {
    /// Wire bytes of DATA packets delivered to hosts.
    pub delivered_data_wire: u64,
    /// DATA packets handed to NICs.
    pub injected_data: u64,
    pub injected_packets: u64,
    pub injected_bytes: u64,
    pub delivered_packets: u64,
    pub delivered_bytes: u64,
}

/// The whole network (see the [module docs](self)).
#[derive(Debug)]
pub(crate) struct Fabric {
    pub ports: Vec<Port>,
    pub switches: Vec<Switch>,
    pub pkts: PacketPool,
    hosts_per_rack: u32,
    hosts: u32,
    racks: u32,
    aggs: u32,
    /// One spraying generator per ToR.
    spray: Vec<Rng>,
    capacity: Option<u64>,
    pub window: Window,
    /// Wire bytes sent on host downlinks per priority level, whole run.
    pub downlink_prio_bytes: [u64; 8],
    pub flow: Flow,
    /// Per host: 0 nothing partially received, 1 partially received
    /// messages and granted bytes outstanding, 2 partially received
    /// messages but nothing granted outstanding (kept current by the
    /// simulator after every input to the host).
    pub rx_pending: Vec<u8>,
    /// Per destination host: DATA packets injected and not yet delivered
    /// or dropped (in a NIC, a queue or on a link).
    pub data_in_net: Vec<u32>,
    /// Per destination host: DATA packets waiting in a ToR uplink or
    /// aggregation queue.
    pub data_queued_fabric: Vec<u32>,
    /// The packet capture, if one was asked for: sees every packet a NIC
    /// starts sending (here) and every packet delivered to a host (the
    /// simulator).
    pub capture: Option<Capture>,
}

impl Fabric {
    /// Builds the topology. Port numbering: NIC of host `h` is port `h`;
    /// then per ToR its down ports (one per host) and up ports (one per
    /// aggregation switch); then per aggregation switch its down ports (one
    /// per ToR). Switches: ToRs `0..racks`, then aggregation switches.
    /// `nic_latency` (NIC think time and the per-packet delay out of the
    /// host) is added to every NIC's link, `rx_latency` (the per-packet
    /// delay into the host) to every link down to a host: constant
    /// pipelined delays, so they change when packets arrive, never the
    /// order or spacing in which a link sends them.
    pub fn new(t: &Topology, nic_latency: Ps, rx_latency: Ps, pull: bool, seed: u64) -> Fabric {
        let (hosts, hpr, racks, aggs) = (t.hosts(), t.hosts_per_rack, t.racks, t.effective_aggs());
        let link = ps(t.link_delay);
        let to_switch = link + ps(t.switch_delay);
        let mut ports = Vec::with_capacity((hosts * 2 + racks * aggs * 2) as usize);
        for h in 0..hosts {
            let mut p = Port::new(
                PortKind::Nic,
                Node::Switch(h / hpr),
                t.host_link_bps,
                to_switch + nic_latency,
            );
            p.host = h;
            p.pull = pull;
            ports.push(p);
        }
        for r in 0..racks {
            for i in 0..hpr {
                let mut p = Port::new(
                    PortKind::TorDown,
                    Node::Host(r * hpr + i),
                    t.host_link_bps,
                    link + rx_latency,
                );
                p.switch = r;
                ports.push(p);
            }
            for a in 0..aggs {
                let mut p = Port::new(
                    PortKind::TorUp,
                    Node::Switch(racks + a),
                    t.fabric_link_bps,
                    to_switch,
                );
                p.switch = r;
                ports.push(p);
            }
        }
        for a in 0..aggs {
            for r in 0..racks {
                let mut p = Port::new(
                    PortKind::AggDown,
                    Node::Switch(r),
                    t.fabric_link_bps,
                    to_switch,
                );
                p.switch = racks + a;
                ports.push(p);
            }
        }
        let switches = (0..racks + aggs)
            .map(|s| Switch {
                agg: s >= racks,
                ..Switch::default()
            })
            .collect();
        Fabric {
            ports,
            switches,
            pkts: PacketPool::default(),
            hosts_per_rack: hpr,
            hosts,
            racks,
            aggs,
            spray: (0..racks)
                .map(|r| Rng::stream(seed, 0x5bd1_e995 + u64::from(r)))
                .collect(),
            capacity: t.switch_buffer,
            window: Window::default(),
            downlink_prio_bytes: [0; 8],
            flow: Flow::default(),
            rx_pending: vec![0; hosts as usize],
            data_in_net: vec![0; hosts as usize],
            data_queued_fabric: vec![0; hosts as usize],
            capture: None,
        }
    }

    /// Number of hosts.
    pub fn hosts(&self) -> u32 {
        self.hosts
    }

    /// Number of racks.
    pub fn racks(&self) -> u32 {
        self.racks
    }

    /// The rack of a host.
    pub fn rack(&self, host: u32) -> u32 {
        host / self.hosts_per_rack
    }

    /// The ToR port driving host `h`'s downlink.
    pub fn downlink_port(&self, h: u32) -> u32 {
        self.tor_base(self.rack(h)) + h % self.hosts_per_rack
    }

    fn tor_base(&self, rack: u32) -> u32 {
        self.hosts + rack * (self.hosts_per_rack + self.aggs)
    }

    /// The output port a switch uses for a packet to `dst`.
    fn route(&mut self, switch: u32, dst: u32) -> u32 {
        let rack = self.rack(dst);
        if switch < self.racks {
            let base = self.tor_base(switch);
            if rack == switch {
                base + dst % self.hosts_per_rack
            } else {
                let a = self.spray[switch as usize].below(u64::from(self.aggs)) as u32;
                base + self.hosts_per_rack + a
            }
        } else {
            let a = switch - self.racks;
            self.hosts + self.racks * (self.hosts_per_rack + self.aggs) + a * self.racks + rack
        }
    }

    /// A host hands a packet to its NIC (`level` is the NIC queue to use).
    pub fn inject(&mut self, port: u32, pkt: u32, level: u8, now: Ps, q: &mut EventQueue<Ev>) {
        let p = self.pkts.get(pkt);
        let len = u64::from(p.len());
        if p.payload > 0 {
            self.data_in_net[p.dst as usize] += 1;
            self.flow.injected_data += 1;
        }
        self.flow.injected_packets += 1;
        self.flow.injected_bytes += len;
        self.enqueue(port, pkt, level, now, q);
    }

    /// A packet is delivered to a host's endpoint: releases its slot after
    /// the caller has used it.
    pub fn delivered(&mut self, pkt: u32) {
        let p = self.pkts.get(pkt);
        let len = u64::from(p.len());
        if p.payload > 0 {
            self.flow.delivered_data_wire += u64::from(p.wire);
            self.data_in_net[p.dst as usize] -= 1;
        }
        self.flow.delivered_packets += 1;
        self.flow.delivered_bytes += len;
        self.pkts.release(pkt);
    }

    /// A packet fully arrived at switch `s` (switch delay included).
    pub fn switch_arrival(&mut self, s: u32, pkt: u32, now: Ps, q: &mut EventQueue<Ev>) {
        let (dst, prio, wire) = {
            let p = self.pkts.get(pkt);
            (p.dst, p.prio, u64::from(p.wire))
        };
        let out = self.route(s, dst);
        if let Some(cap) = self.capacity {
            let busy = !self.ports[out as usize].idle(now);
            let sw = &mut self.switches[s as usize];
            if busy && sw.occupancy + wire > cap {
                sw.dropped_packets += 1;
                let p = self.pkts.get(pkt);
                sw.dropped_bytes += u64::from(p.len());
                if p.payload > 0 {
                    self.data_in_net[p.dst as usize] -= 1;
                }
                self.pkts.release(pkt);
                return;
            }
        }
        self.enqueue(out, pkt, prio, now, q);
    }

    /// Queues a packet on a port and starts the port if it is free.
    fn enqueue(&mut self, port: u32, pkt: u32, level: u8, now: Ps, q: &mut EventQueue<Ev>) {
        let (wire, dst, data) = {
            let k = self.pkts.get_mut(pkt);
            k.next = NONE;
            (u64::from(k.wire), k.dst, k.payload > 0)
        };
        let p = &mut self.ports[port as usize];
        if data && matches!(p.kind, PortKind::TorUp | PortKind::AggDown) {
            self.data_queued_fabric[dst as usize] += 1;
        }
        let p = &mut self.ports[port as usize];
        let level = usize::from(level.min(7));
        if p.mask & (1 << level) != 0 {
            let last = p.tail[level];
            self.pkts.get_mut(last).next = pkt;
        } else {
            p.head[level] = pkt;
        }
        let p = &mut self.ports[port as usize];
        p.tail[level] = pkt;
        p.mask |= 1 << level;
        p.queued_bytes += wire;
        let switch = p.switch;
        if switch != NONE {
            self.switches[switch as usize].occupancy += wire;
        }
        let p = &mut self.ports[port as usize];
        if p.busy_until <= now {
            self.start_next(port, now, q);
        } else if p.wake_at.is_none() {
            p.wake_at = Some(p.busy_until);
            q.push(p.busy_until, Ev::PortFree { port });
        }
        let p = &mut self.ports[port as usize];
        p.stats.max_queued = p.stats.max_queued.max(p.queued_bytes);
        if switch != NONE {
            let sw = &mut self.switches[switch as usize];
            sw.max_occupancy = sw.max_occupancy.max(sw.occupancy);
        }
    }

    /// Starts serialising the highest-priority waiting packet (the port must
    /// be free and have one).
    fn start_next(&mut self, port: u32, now: Ps, q: &mut EventQueue<Ev>) {
        let p = &mut self.ports[port as usize];
        debug_assert!(p.mask != 0 && p.busy_until <= now);
        let level = 7 - p.mask.leading_zeros() as usize;
        let pkt = p.head[level];
        let (wire, prio, payload, dst, next) = {
            let k = self.pkts.get_mut(pkt);
            k.hop = port;
            (k.wire, k.prio, k.payload, k.dst, k.next)
        };
        let p = &mut self.ports[port as usize];
        if next == NONE {
            p.mask &= !(1 << level);
        } else {
            p.head[level] = next;
        }
        p.last_dst = dst;
        p.last_prio = prio;
        if payload > 0 && matches!(p.kind, PortKind::TorUp | PortKind::AggDown) {
            self.data_queued_fabric[dst as usize] -= 1;
        }
        let p = &mut self.ports[port as usize];
        p.queued_bytes -= u64::from(wire);
        let idle_since = p.busy_until;
        let done = now + ser_ps(wire, p.bps);
        p.busy_until = done;
        p.stats.tx_packets += 1;
        q.push(done + p.latency, Ev::Arrive { pkt });
        if p.mask != 0 {
            if p.wake_at != Some(done) {
                p.wake_at = Some(done);
                q.push(done, Ev::PortFree { port });
            }
        } else if p.pull {
            // Whether the NIC needs to wake when the link frees is known
            // only after its endpoints have been asked (`arm_nic`); the
            // event keeps the place a push now would have had.
            p.reserved = q.reserve();
            p.wake_at = None;
        } else {
            p.wake_at = None;
        }
        let (kind, switch) = (p.kind, p.switch);
        if kind == PortKind::Nic {
            if let Some(c) = self.capture.as_mut() {
                c.sent(now, self.pkts.get(pkt));
            }
        }
        if switch != NONE {
            self.switches[switch as usize].occupancy -= u64::from(wire);
        }
        if kind == PortKind::TorDown {
            self.downlink_prio_bytes[usize::from(prio.min(7))] += u64::from(wire);
            // The host's receive state cannot change while its downlink is
            // idle, so its state now held for the whole idle period.
            if let Node::Host(h) = self.ports[port as usize].to {
                let state = self.rx_pending[h as usize];
                if state > 0 {
                    let w = &mut self.window;
                    let (a, b) = (idle_since.max(w.start), now.min(w.end));
                    w.wasted_ps += b.saturating_sub(a);
                    if state == 1 {
                        w.wasted_granted_ps += b.saturating_sub(a);
                    }
                }
            }
            let w = &mut self.window;
            if now >= w.start && now < w.end {
                w.wire_bytes += u64::from(wire);
                if payload > 0 {
                    w.data_wire_bytes += u64::from(wire);
                    w.payload_bytes += u64::from(payload);
                }
            }
        }
    }

    /// A pull-mode NIC port that is sending and has no PortFree pending:
    /// its link frees later than `now` and nothing would ask its host's
    /// endpoints then. Returns that time.
    #[inline]
    pub fn nic_unarmed(&self, port: u32, now: Ps) -> Option<Ps> {
        let p = &self.ports[port as usize];
        (p.pull && p.wake_at.is_none() && p.busy_until > now).then_some(p.busy_until)
    }

    /// Schedules the PortFree of a pull-mode NIC's current transmission
    /// (see [`nic_unarmed`](Self::nic_unarmed)) in the place reserved when
    /// the transmission started: the same event, in the same order among
    /// simultaneous ones, as if it had been pushed then.
    pub fn arm_nic(&mut self, port: u32, q: &mut EventQueue<Ev>) {
        let p = &mut self.ports[port as usize];
        debug_assert!(p.pull && p.wake_at.is_none());
        p.wake_at = Some(p.busy_until);
        q.push_reserved(p.busy_until, p.reserved, Ev::PortFree { port });
    }

    /// A PortFree event fired: starts the next queued packet, if any.
    pub fn port_free(&mut self, port: u32, now: Ps, q: &mut EventQueue<Ev>) -> Freed {
        let p = &mut self.ports[port as usize];
        if p.wake_at != Some(now) {
            return Freed::Stale;
        }
        p.wake_at = None;
        if p.mask != 0 {
            self.start_next(port, now, q);
            Freed::Started
        } else {
            Freed::Idle
        }
    }

    /// Packets waiting in queues or on links, and their Homa bytes.
    pub fn in_flight(&self) -> (u64, u64) {
        (self.pkts.live() as u64, self.pkts.live_bytes())
    }

    /// Packets and Homa bytes dropped by all switches.
    pub fn dropped(&self) -> (u64, u64) {
        self.switches.iter().fold((0, 0), |(p, b), s| {
            (p + s.dropped_packets, b + s.dropped_bytes)
        })
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    /// A header that fits is held in place, a longer one (an ACK's 80
    /// bytes) in the spill buffer; either way the packet hands back exactly
    /// the bytes it was given, and a recycled slot forgets the longer one.
    #[test]
    fn set_header__inline_and_spilled_headers_round_trip() {
        let mut p = Packet::default();
        let short: Vec<u8> = (0..56).collect();
        let long: Vec<u8> = (0..80).map(|i| 255 - i).collect();
        let exact: Vec<u8> = (0..HEAD_INLINE as u8).collect();
        for h in [&short, &long, &exact, &short] {
            p.set_header(h);
            p.tail = 1000;
            assert_eq!(p.header(), &h[..]);
            assert_eq!(p.len(), h.len() as u32 + 1000);
        }
        p.set_header(&[]);
        assert!(p.header().is_empty());
    }
}
