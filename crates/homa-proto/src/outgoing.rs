//! The transmit path: control packets, retransmissions and new DATA in SRPT
//! order, cut into GSO batches for the driver.

use core::net::SocketAddr;

use crate::endpoint::{Control, Endpoint, Transmit};
use crate::rpc::Probe;
use crate::wire::{AckEntry, Body, DataHeader, Packet, PacketType, Repr};
use crate::Instant;

impl Endpoint {
    pub(crate) fn tos(&self, level: u8) -> u8 {
        self.config.priority_map[level as usize] << 5
    }

    pub(crate) fn emit_control(&mut self, c: Control, buf: &mut Vec<u8>) -> Transmit {
        let len = c.repr.header_len();
        buf.resize(len, 0);
        c.repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        self.stats.sent.add(c.repr.body.packet_type(), len);
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

    pub(crate) fn max_segs(&self, dest: &SocketAddr) -> u32 {
        if dest.is_ipv6() {
            self.max_gso_segs_v6
        } else {
            self.max_gso_segs_v4
        }
    }

    pub(crate) fn transmit_resends(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        while let Some((key, seq)) = self.retx_queue.pop_front() {
            if !self.live(key, seq) {
                continue;
            }
            self.rpcs[key].in_retx_queue = false;
            let has = self.rpcs[key]
                .msgout
                .as_ref()
                .is_some_and(|m| m.has_resends());
            if !has {
                continue;
            }
            let t = self.write_data(now, key, buf, true);
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

    pub(crate) fn transmit_data(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        let &(_, _, key) = self.xmit_queue.first()?;
        let t = self.write_data(now, key, buf, false);
        self.update_xmit(key);
        Some(t)
    }

    /// Writes a batch of DATA packets of RPC `key` into `buf`: new data from
    /// `next_xmit` (or pending retransmissions when `retransmit`), as many
    /// packets as GSO allows, all at one priority.
    pub(crate) fn write_data(
        &mut self,
        now: Instant,
        key: usize,
        buf: &mut Vec<u8>,
        retransmit: bool,
    ) -> Transmit {
        let max_segs = self.max_segs(&self.rpcs[key].peer);
        let rpc = &mut self.rpcs[key];
        let peer = self.peers.get_mut(&rpc.peer);
        let (ack, cutoff_version) = match peer {
            Some(p) => (p.take_ack(rpc.port).unwrap_or_default(), p.cutoff_version),
            None => (AckEntry::default(), 0),
        };
        let m = rpc.msgout.as_mut().expect("sending rpc has a message");
        let seg_len = DataHeader::LEN + m.seg_size as usize;
        let mut header = Repr {
            sport: rpc.port,
            dport: rpc.peer.port(),
            sender_id: rpc.id,
            body: Body::Data(DataHeader {
                message_length: m.length(),
                incoming: if retransmit { m.granted } else { m.unscheduled },
                ack,
                cutoff_version,
                retransmit,
                offset: 0,
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
            // Only the last segment of a GSO batch may be short, and the
            // segments must be consecutive to stay in one retransmit range.
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
            buf.resize(at + DataHeader::LEN + len as usize, 0);
            header.emit(&mut Packet::new_unchecked(&mut buf[at..]));
            buf[at + DataHeader::LEN..].copy_from_slice(m.bytes(offset, len));
            self.stats
                .sent
                .add(PacketType::Data, DataHeader::LEN + len as usize);
            if retransmit {
                self.stats.data_retransmitted += 1;
            }
            count += 1;
            if count >= max_segs {
                break;
            }
        }
        let level = level.expect("write_data called with something to send");
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
