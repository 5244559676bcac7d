//! The transmit path: what [`Endpoint::poll_transmit`] emits, in order:
//! control packets (grants first computed by the grant scheduler), then
//! retransmissions, then messages too short to pace, then paced DATA chosen
//! by the pacer; and how DATA packets are built into GSO batches.

use core::net::SocketAddr;

use crate::endpoint::{Control, Endpoint, Transmit};
use crate::rpc::Probe;
use crate::wire::{AckEntry, Body, DataHeader, Packet, PacketType, Repr};
use crate::Instant;

impl Endpoint {
    /// Writes the next datagram (or GSO batch) to send into `buf` (which is
    /// cleared first) and describes it. Returns `None` when nothing can be
    /// sent now (see [`Endpoint::poll_timeout`] for when to ask again).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        self.touch(now);
        buf.clear();
        self.timers.stop(crate::timers::Timer::Pacer);
        self.send_grants(now);
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

    fn emit_control(&mut self, now: Instant, c: Control, buf: &mut Vec<u8>) -> Transmit {
        let len = c.repr.header_len();
        buf.resize(len, 0);
        c.repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
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

    fn transmit_resends(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
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

    fn transmit_data(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
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
    fn write_data(
        &mut self,
        now: Instant,
        key: usize,
        buf: &mut Vec<u8>,
        retransmit: bool,
        limit: u32,
    ) -> Transmit {
        let num_prio = self.config.num_priorities;
        let rpc = &mut self.rpcs[key];
        let peer = self.peers.get_mut(&rpc.peer);
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
            if count > 0 && buf.len() % seg_len != 0 {
                break;
            }
            let len = m.packet_len(offset);
            if retransmit {
                m.next_resend();
            } else {
                if offset == 0 {
                    // The peer answers the first packet at once (GRANT,
                    // CUTOFFS, or the response): a round-trip sample.
                    rpc.rtt_probe = Some(Probe::FirstData(now));
                }
                m.next_xmit += len;
            }
            level = Some(prio);
            if let Body::Data(d) = &mut header.body {
                d.offset = offset;
            }
            let at = buf.len();
            // Zero only the header: the payload is appended, not written
            // over zeroes (the memset cost ~10% of loopback bulk throughput).
            buf.resize(at + DataHeader::LEN, 0);
            header.emit(&mut Packet::new_unchecked(&mut buf[at..]));
            buf.extend_from_slice(m.bytes(offset, len));
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
            size: buf.len(),
            segment_size: (count > 1).then_some(seg_len),
        }
    }
}
