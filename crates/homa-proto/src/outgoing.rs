//! The transmit path: what [`Endpoint::poll_transmit`] emits, in order:
//! control packets (grants first computed by the grant scheduler), then
//! retransmissions, then messages too short to pace, then paced DATA chosen
//! by the pacer; and how DATA packets are built into GSO batches.
//!
//! A transmit is written into a [`TxSink`]: either one contiguous buffer
//! ([`Endpoint::poll_transmit`], every packet's header and payload copied
//! in, for the simulator and tests) or a [`TxPackets`]
//! ([`Endpoint::poll_transmit_packets`]), which holds only the headers and
//! refers to the payload as ranges of the message's own [`Bytes`], so a
//! runtime can hand header/payload pairs to the kernel as iovecs without
//! copying message bytes in user space.

use core::net::SocketAddr;

use bytes::Bytes;

use crate::endpoint::{Control, Endpoint, Transmit};
use crate::rpc::Probe;
use crate::timers::Timer;
use crate::wire::{AckEntry, Body, DataHeader, Packet, PacketType, Repr};
use crate::Instant;

/// Where a transmit's packets are written.
pub(crate) trait TxSink {
    /// Forgets the previous transmit.
    fn reset(&mut self);
    /// Bytes of the transmit so far (headers and payloads).
    fn bytes(&self) -> usize;
    /// Starts a new packet with a zeroed header of `len` bytes, returned
    /// for the caller to fill.
    fn header(&mut self, len: usize) -> &mut [u8];
    /// Appends message bytes `[offset, offset + len)` of `message` to the
    /// packet just started.
    fn payload(&mut self, message: &Bytes, offset: u32, len: u32);
}

impl TxSink for Vec<u8> {
    fn reset(&mut self) {
        self.clear();
    }

    fn bytes(&self) -> usize {
        self.len()
    }

    fn header(&mut self, len: usize) -> &mut [u8] {
        let at = self.len();
        // Zero only the header: the payload is appended, not written over
        // zeroes (the memset cost ~10% of loopback bulk throughput).
        self.resize(at + len, 0);
        &mut self[at..]
    }

    fn payload(&mut self, message: &Bytes, offset: u32, len: u32) {
        self.extend_from_slice(&message[offset as usize..(offset + len) as usize]);
    }
}

/// One packet of a [`TxPackets`]: where its header lies in the header
/// buffer and which message bytes follow it.
#[derive(Debug, Clone, Copy)]
struct TxPacket {
    header_start: u32,
    header_len: u32,
    payload_offset: u32,
    payload_len: u32,
}

/// The packets of one transmit without their payload copied: each
/// packet's header (written by the endpoint) and its payload as a range of
/// the message being sent. Filled by [`Endpoint::poll_transmit_packets`];
/// reuse one value for every call (its buffers are kept).
///
/// A packet on the wire is its header followed by its payload
/// ([`TxPackets::packet`]; a short payload is copied into the header
/// buffer, see [`TxPackets::INLINE_MAX`]); [`TxPackets::copy_to`] writes the transmit
/// exactly as [`Endpoint::poll_transmit`] would have. All packets of a
/// transmit belong to one message, so a single [`Bytes`] handle keeps the
/// payload alive until the next call.
#[derive(Debug, Default)]
pub struct TxPackets {
    headers: Vec<u8>,
    packets: Vec<TxPacket>,
    message: Option<Bytes>,
    bytes: usize,
}

impl TxPackets {
    /// Payloads up to this many bytes are copied after their header (the
    /// header slice of [`TxPackets::packet`] is then the whole packet and
    /// its payload slice empty): a small message's only packet, or the
    /// short last packet of a batch. Referring to the message costs more
    /// than copying so few bytes.
    pub const INLINE_MAX: usize = 512;

    /// An empty value, to be filled by [`Endpoint::poll_transmit_packets`].
    pub fn new() -> TxPackets {
        TxPackets::default()
    }

    /// Number of packets.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// Empties the value, keeping its buffers, and drops its handle on the
    /// message (a driver that keeps several values for one batched send
    /// releases the messages once they are sent).
    pub fn clear(&mut self) {
        TxSink::reset(self);
    }

    /// True if there is no packet.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Bytes of every packet together (headers and payloads): the
    /// [`Transmit::size`] of the transmit.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Packet `i`: its header and its payload (empty for control packets),
    /// to be sent back to back as one datagram. Panics if `i >= len()`.
    #[inline]
    pub fn packet(&self, i: usize) -> (&[u8], &[u8]) {
        let p = self.packets[i];
        let h = p.header_start as usize;
        let header = &self.headers[h..h + p.header_len as usize];
        let payload = match &self.message {
            Some(m) if p.payload_len > 0 => {
                let o = p.payload_offset as usize;
                &m[o..o + p.payload_len as usize]
            }
            _ => &[],
        };
        (header, payload)
    }

    /// Every packet in order, as [`TxPackets::packet`] gives it.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        (0..self.len()).map(|i| self.packet(i))
    }

    /// Appends the whole transmit, packet after packet, to `out`: the bytes
    /// [`Endpoint::poll_transmit`] writes.
    pub fn copy_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.bytes);
        for (h, p) in self.iter() {
            out.extend_from_slice(h);
            out.extend_from_slice(p);
        }
    }
}

impl TxSink for TxPackets {
    #[inline]
    fn reset(&mut self) {
        self.headers.clear();
        self.packets.clear();
        self.message = None;
        self.bytes = 0;
    }

    fn bytes(&self) -> usize {
        self.bytes
    }

    #[inline]
    fn header(&mut self, len: usize) -> &mut [u8] {
        const ZEROS: [u8; 64] = [0; 64];
        let at = self.headers.len();
        match ZEROS.get(..len) {
            Some(z) => self.headers.extend_from_slice(z),
            None => self.headers.resize(at + len, 0),
        }
        self.packets.push(TxPacket {
            header_start: at as u32,
            header_len: len as u32,
            payload_offset: 0,
            payload_len: 0,
        });
        self.bytes += len;
        &mut self.headers[at..]
    }

    #[inline]
    fn payload(&mut self, message: &Bytes, offset: u32, len: u32) {
        if len as usize <= TxPackets::INLINE_MAX {
            // Cheaper copied than referred to (no handle on the message,
            // one slice for the driver).
            let (o, n) = (offset as usize, len as usize);
            self.headers.extend_from_slice(&message[o..o + n]);
            let p = self.packets.last_mut().expect("payload follows a header");
            p.header_len += len;
            self.bytes += n;
            return;
        }
        if self.message.is_none() {
            self.message = Some(message.clone());
        }
        debug_assert!(self
            .message
            .as_ref()
            .is_some_and(|m| m.as_ptr() == message.as_ptr()));
        let p = self.packets.last_mut().expect("payload follows a header");
        p.payload_offset = offset;
        p.payload_len = len;
        self.bytes += len as usize;
    }
}

impl Endpoint {
    /// Writes the next datagram (or GSO batch) to send into `buf` (which is
    /// cleared first) and describes it. Returns `None` when nothing can be
    /// sent now (see [`Endpoint::poll_timeout`] for when to ask again).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        self.poll_transmit_into(now, buf)
    }

    /// Like [`Endpoint::poll_transmit`], but the message bytes are not
    /// copied: `packets` receives each packet's header and refers to its
    /// payload in the message itself. The transmit is the same one
    /// [`Endpoint::poll_transmit`] would have returned (same packets, same
    /// bytes on the wire).
    pub fn poll_transmit_packets(
        &mut self,
        now: Instant,
        packets: &mut TxPackets,
    ) -> Option<Transmit> {
        self.poll_transmit_into(now, packets)
    }

    fn poll_transmit_into<S: TxSink>(&mut self, now: Instant, buf: &mut S) -> Option<Transmit> {
        self.touch(now);
        buf.reset();
        self.timers.stop(Timer::Pacer);
        // (The common case, no grant pass wanted or due, without a call.)
        if self.grants.pass_wanted() || self.timers.is_expired(Timer::FifoGrant, now) {
            self.send_grants(now);
        }
        if let Some(c) = self.control.pop_front() {
            return Some(self.emit_control(now, c, buf));
        }
        if let Some(t) = self.transmit_resends(now, buf) {
            return Some(t);
        }
        self.transmit_data(now, buf)
    }

    pub(crate) fn tos(&self, level: u8) -> u8 {
        self.config.priority_map[level as usize] << 5
    }

    fn emit_control<S: TxSink>(&mut self, now: Instant, c: Control, buf: &mut S) -> Transmit {
        let len = c.repr.header_len();
        c.repr
            .emit_zeroed(&mut Packet::new_unchecked(buf.header(len)));
        self.stats.sent.add(c.repr.body.packet_type(), len);
        let wire = self.config.wire_bytes(len, c.dest.is_ipv6());
        self.pacer.charge_link(now, wire);
        let level = self.config.control_priority();
        Transmit {
            src_port: c.repr.sport,
            destination: c.dest,
            priority: level,
            tos: self.tos(level),
            size: len,
            segment_size: None,
        }
    }

    fn max_segs(&self, dest: &SocketAddr) -> u32 {
        if dest.is_ipv6() {
            self.max_gso_segs_v6
        } else {
            self.max_gso_segs_v4
        }
    }

    /// Wire bytes of a transmit (every segment's framing included).
    fn transmit_wire_bytes(&self, t: &Transmit) -> u64 {
        let v6 = t.destination.is_ipv6();
        match t.segment_size {
            None => self.config.wire_bytes(t.size, v6),
            Some(seg) => {
                let full = t.size / seg;
                let rest = t.size % seg;
                let mut w = full as u64 * self.config.wire_bytes(seg, v6);
                if rest > 0 {
                    w += self.config.wire_bytes(rest, v6);
                }
                w
            }
        }
    }

    /// Batch size limit for RPC `key`: GSO limit, and the pacer's backlog
    /// allowance for paced messages.
    fn batch_limit(&self, key: usize, paced: bool) -> u32 {
        let rpc = &self.rpcs[key];
        let gso = self.max_segs(&rpc.peer);
        if !paced {
            return gso;
        }
        let seg = rpc.msgout.as_ref().map_or(0, |m| m.seg_size) as usize;
        let pkt = self
            .config
            .wire_bytes(DataHeader::LEN + seg, rpc.peer.is_ipv6());
        gso.min(self.pacer.batch_limit(pkt))
    }

    fn transmit_resends<S: TxSink>(&mut self, now: Instant, buf: &mut S) -> Option<Transmit> {
        while let Some(&crate::rpc::RpcRef { seq, key }) = self.retx_queue.front() {
            if !self.live(key, seq) {
                self.retx_queue.pop_front();
                continue;
            }
            let length = match self.rpcs[key].msgout.as_ref() {
                Some(m) if m.has_resends() => m.length(),
                _ => {
                    self.retx_queue.pop_front();
                    self.rpcs[key].in_retx_queue = false;
                    continue;
                }
            };
            if self.pacer.throttled(now, length) {
                self.hold_for_link();
                return None;
            }
            self.retx_queue.pop_front();
            self.rpcs[key].in_retx_queue = false;
            let paced = length >= self.config.defer_min_bytes;
            let limit = self.batch_limit(key, paced);
            let t = self.write_data(now, key, buf, true, limit);
            let wire = self.transmit_wire_bytes(&t);
            self.pacer.charge_link(now, wire);
            if self.rpcs[key]
                .msgout
                .as_ref()
                .is_some_and(|m| m.has_resends())
            {
                self.queue_retx(key);
            }
            return Some(t);
        }
        None
    }

    fn transmit_data<S: TxSink>(&mut self, now: Instant, buf: &mut S) -> Option<Transmit> {
        let (key, paced) = if let Some(key) = self.pacer.next_short() {
            (key, false)
        } else {
            if !self.pacer.has_paced() {
                return None;
            }
            if self.pacer.throttled(now, u32::MAX) {
                self.hold_for_link();
                return None;
            }
            (self.pacer.pick_paced()?, true)
        };
        let limit = self.batch_limit(key, paced);
        let t = self.write_data(now, key, buf, false, limit);
        let wire = self.transmit_wire_bytes(&t);
        self.pacer.charge_link(now, wire);
        if paced {
            if let Some(held) = self.pacer.release(now) {
                self.stats.throttled_nanos += held;
            }
        }
        self.update_xmit(key);
        Some(t)
    }

    /// Writes a batch of DATA packets of RPC `key` into `buf`: new data from
    /// `next_xmit` (or pending retransmissions when `retransmit`), at most
    /// `limit` packets, all at one priority.
    #[inline(always)]
    fn write_data<S: TxSink>(
        &mut self,
        now: Instant,
        key: usize,
        buf: &mut S,
        retransmit: bool,
        limit: u32,
    ) -> Transmit {
        let num_prio = self.config.num_priorities;
        let rpc = &mut self.rpcs[key];
        let peer = self.peers.get_mut_by(rpc.peer_ref, &rpc.peer);
        let m = rpc.msgout.as_mut().expect("sending rpc has a message");
        let client_rpcs = &self.client_rpcs;
        let (ack, cutoff_version, oldest_live) = match peer {
            Some(p) => {
                // The unscheduled level follows the peer's latest cutoffs.
                m.unsched_priority = p.unsched_priority(m.length(), num_prio);
                // A request states our oldest unfinished RPC to the server
                // (at-most-once, the `amo` module).
                let oldest_live = if rpc.id & 1 == 0 {
                    p.server
                        .oldest_live(rpc.id, |id| client_rpcs.contains_key(&id), p.rpcs)
                        .map_or(0, |o| DataHeader::encode_oldest_live(rpc.id, o))
                } else {
                    0
                };
                let ack = p.take_ack(rpc.port).unwrap_or_default();
                (ack, p.cutoff_version, oldest_live)
            }
            None => (AckEntry::default(), 0, 0),
        };
        let seg_len = DataHeader::LEN + m.seg_size as usize;
        let mut header = Repr {
            sport: rpc.port,
            dport: rpc.peer.port(),
            sender_id: rpc.id,
            incarnation: rpc.echo,
            body: Body::Data(DataHeader {
                message_length: m.length(),
                incoming: if retransmit { m.granted } else { m.unscheduled },
                ack,
                cutoff_version,
                retransmit,
                offset: 0,
                oldest_live,
            }),
        };
        let mut count = 0u32;
        let mut level = None;
        // A header the third and later packets copy (the packets differ in
        // their offset only): kept from the second, so that a lone packet,
        // the small RPC's, pays no copy.
        let mut model: Option<[u8; DataHeader::LEN]> = None;
        loop {
            let next = if retransmit {
                match m.peek_resend() {
                    Some((off, prio)) if level.is_none_or(|l| l == prio) => Some((off, prio)),
                    _ => None,
                }
            } else if m.has_sendable() {
                let off = m.next_xmit;
                let prio = m.priority_at(off);
                level.is_none_or(|l| l == prio).then_some((off, prio))
            } else {
                None
            };
            let Some((offset, prio)) = next else { break };
            // Only the last segment of a GSO batch may be short.
            if count > 0 && buf.bytes() % seg_len != 0 {
                break;
            }
            let len = m.packet_len(offset);
            if retransmit {
                m.next_resend();
            } else {
                if offset == 0 {
                    // The peer answers the first packet at once (GRANT or
                    // BUSY): a round-trip sample.
                    rpc.rtt_probe = Some(Probe::FirstData(now));
                }
                m.next_xmit += len;
            }
            level = Some(prio);
            // A fixed-size header: written without a bounds check per field.
            let h = buf
                .header(DataHeader::LEN)
                .first_chunk_mut::<{ DataHeader::LEN }>()
                .expect("a header of the length asked for");
            match &model {
                Some(bytes) => {
                    *h = *bytes;
                    Packet::new_unchecked(&mut *h).set_data_offset(offset);
                }
                None => {
                    if let Body::Data(d) = &mut header.body {
                        d.offset = offset;
                    }
                    header.emit_zeroed(&mut Packet::new_unchecked(&mut *h));
                    if count == 1 {
                        model = Some(*h);
                    }
                }
            }
            buf.payload(m.data(), offset, len);
            self.stats
                .sent
                .add(PacketType::Data, DataHeader::LEN + len as usize);
            if retransmit {
                self.stats.data_retransmitted += 1;
            }
            count += 1;
            if count >= limit {
                break;
            }
        }
        let level = level.expect("write_data called with something to send");
        rpc.last_xmit = now;
        Transmit {
            src_port: rpc.port,
            destination: rpc.peer,
            priority: level,
            tos: self.config.priority_map[level as usize] << 5,
            size: buf.bytes(),
            segment_size: (count > 1).then_some(seg_len),
        }
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;
    use crate::{Config, Event};
    use core::time::Duration;

    fn pattern(len: usize) -> Bytes {
        (0..len).map(|i| (i * 31 + i / 251) as u8).collect()
    }

    /// Cuts a transmit into its packets.
    fn packets(t: &Transmit, buf: &[u8]) -> Vec<Vec<u8>> {
        match t.segment_size {
            Some(s) => buf.chunks(s).map(<[u8]>::to_vec).collect(),
            None => vec![buf.to_vec()],
        }
    }

    /// `Repr::emit_zeroed` writes only the fields: the transmit path relies
    /// on every sink handing out zeroed headers, also after a transmit
    /// left its buffers full of other bytes.
    #[test]
    fn header__zeroed_in_every_sink_after_reuse() {
        fn check<S: TxSink>(sink: &mut S) {
            for round in 0..3 {
                sink.reset();
                for len in [DataHeader::LEN, 30, 70, DataHeader::LEN] {
                    let h = sink.header(len);
                    assert_eq!(h.len(), len);
                    assert!(h.iter().all(|&b| b == 0), "round {round} length {len}");
                    h.fill(0xA5);
                }
            }
        }
        check(&mut Vec::new());
        check(&mut TxPackets::new());
    }

    /// Two identical senders, one polled with `poll_transmit` and one with
    /// `poll_transmit_packets`, send a message of the configured maximum
    /// (and a short one) to one receiver over a lossy path: every transmit
    /// (first transmissions, retransmissions, control packets) must be the
    /// same bytes, and the receiver must get both messages byte-exact.
    #[test]
    fn poll_transmit_packets__same_bytes_as_poll_transmit_up_to_the_maximum() {
        let config = Config {
            max_message_length: 3 << 20,
            ..Config::default()
        };
        let mut copy = Endpoint::new(config.clone(), 7).unwrap();
        let mut parts = Endpoint::new(config.clone(), 7).unwrap();
        let mut rx = Endpoint::new(config.clone(), 8).unwrap();
        let a: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        let pa = copy.open_socket(a.port()).unwrap();
        assert_eq!(parts.open_socket(a.port()).unwrap(), pa);
        rx.open_socket(b.port()).unwrap();
        rx.set_server(b.port(), true).unwrap();
        let big = pattern(config.max_message_length as usize);
        let small = pattern(700);
        // Copied after its header (TxPackets::INLINE_MAX).
        let tiny = pattern(300);
        let mut now = Instant::ZERO;
        for m in [&big, &small, &tiny] {
            let id = copy.send_request(now, pa, b, m.clone()).unwrap();
            assert_eq!(parts.send_request(now, pa, b, m.clone()).unwrap(), id);
        }
        let (mut buf, mut tx, mut out) = (Vec::new(), TxPackets::new(), Vec::new());
        let mut delivered = Vec::new();
        let (mut sent, mut dropped, mut multi) = (0u64, 0, 0);
        for _ in 0..200_000 {
            let mut idle = true;
            loop {
                let t1 = copy.poll_transmit(now, &mut buf);
                let t2 = parts.poll_transmit_packets(now, &mut tx);
                assert_eq!(t1, t2);
                let Some(t) = t1 else { break };
                idle = false;
                out.clear();
                tx.copy_to(&mut out);
                assert_eq!(out, buf, "transmit {sent}");
                assert_eq!(tx.bytes(), t.size);
                assert_eq!(tx.len(), t.segments());
                multi += u64::from(tx.len() > 1);
                for (i, p) in packets(&t, &buf).into_iter().enumerate() {
                    let (h, d) = tx.packet(i);
                    assert_eq!([h, d].concat(), p);
                    // Every header, the ones copied from a batch's model
                    // too, is what a whole emit of its fields writes.
                    let (repr, _) = Repr::parse_with_payload(&p).expect("a valid packet");
                    assert_eq!(
                        repr.to_vec()[..],
                        p[..repr.header_len()],
                        "header of packet {sent}"
                    );
                    // Both fields that carry a DATA packet's offset carry it.
                    if let Body::Data(d) = &repr.body {
                        let pkt = Packet::new_unchecked(&p[..]);
                        assert_eq!(pkt.sequence(), d.offset, "packet {sent}");
                    }
                    // The payload is the message's own memory, not a copy.
                    let inside = |m: &Bytes| {
                        let at = d.as_ptr() as usize;
                        at >= m.as_ptr() as usize && at + d.len() <= m.as_ptr() as usize + m.len()
                    };
                    assert!(d.is_empty() || inside(&big) || inside(&small));
                    assert_eq!(
                        d.is_empty(),
                        p.len() <= DataHeader::LEN + TxPackets::INLINE_MAX
                    );
                    sent += 1;
                    // Lose one packet in 97: retransmissions go through
                    // both paths too.
                    if sent % 97 == 0 {
                        dropped += 1;
                        continue;
                    }
                    rx.handle_datagram(now, a, &p);
                }
            }
            while let Some(t) = rx.poll_transmit(now, &mut buf) {
                idle = false;
                for p in packets(&t, &buf) {
                    copy.handle_datagram(now, b, &p);
                    parts.handle_datagram(now, b, &p);
                }
            }
            while let Some(e) = rx.poll_event() {
                if let Event::Request { data, .. } = e {
                    delivered.push(data);
                }
            }
            if delivered.len() == 3 {
                break;
            }
            if idle {
                now += Duration::from_micros(500);
                for ep in [&mut copy, &mut parts, &mut rx] {
                    ep.handle_timeout(now);
                }
            }
        }
        assert!(dropped > 0 && multi > 0, "{dropped} {multi}");
        delivered.sort_by_key(Bytes::len);
        assert_eq!(delivered.len(), 3);
        assert!(delivered[0] == tiny, "tiny message differs");
        assert!(delivered[1] == small, "short message differs");
        assert!(delivered[2] == big, "long message differs");
        assert!(copy.stats().data_retransmitted > 0);
    }
}
