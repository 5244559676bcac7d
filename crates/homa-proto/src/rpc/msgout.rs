//! Outgoing message state: the bytes, how they are cut into packets, how far
//! they have been granted and transmitted, and pending retransmissions.
//!
//! Packets are cut on a fixed grid of `seg_size` message bytes, so packet `k`
//! always covers `[k * seg_size, min((k+1) * seg_size, length))`, whether it
//! is sent the first time or retransmitted. The unscheduled region is rounded
//! up to whole packets: the receiver is told its exact end in the `incoming`
//! field of every DATA packet.

use bytes::Bytes;

use crate::Instant;

/// Most distinct retransmission ranges remembered per message; further
/// requests are merged into the last range.
const MAX_RESEND_RANGES: usize = 16;

/// A message being sent.
#[derive(Debug)]
pub(crate) struct MsgOut {
    data: Bytes,
    /// Message bytes per packet.
    pub seg_size: u32,
    /// End of the unscheduled region (multiple of `seg_size`, or `length`).
    pub unscheduled: u32,
    /// The sender may transmit every byte below this offset.
    pub granted: u32,
    /// First byte never transmitted; always a multiple of `seg_size` or
    /// `length`.
    pub next_xmit: u32,
    /// Priority for scheduled bytes (from the latest GRANT).
    pub sched_priority: u8,
    /// Priority for unscheduled bytes (from the peer's cutoffs).
    pub unsched_priority: u8,
    /// When the message was queued (pacer FIFO share).
    pub init_time: Instant,
    /// Since when its granted bytes have waited: its creation, or the
    /// GRANT that made it sendable again (`Config::pacer_grant_order`).
    pub wait_since: Instant,
    /// Ranges `[start, end)` to retransmit, each with its priority.
    resends: Vec<(u32, u32, u8)>,
}

impl MsgOut {
    /// A message of `data.len()` bytes (at most `u32::MAX`; the endpoint
    /// checks its configured maximum first).
    #[inline(always)]
    pub(crate) fn new(
        data: Bytes,
        seg_size: u32,
        unsched_bytes: u32,
        unsched_priority: u8,
        now: Instant,
    ) -> MsgOut {
        let length = data.len() as u32;
        let unscheduled = round_up(unsched_bytes.max(1), seg_size).min(length);
        MsgOut {
            data,
            seg_size,
            unscheduled,
            granted: unscheduled,
            next_xmit: 0,
            sched_priority: 0,
            unsched_priority,
            init_time: now,
            wait_since: now,
            resends: Vec::new(),
        }
    }

    /// Message length.
    pub(crate) fn length(&self) -> u32 {
        self.data.len() as u32
    }

    /// Bytes never transmitted (the sender's SRPT key).
    pub(crate) fn bytes_left(&self) -> u32 {
        self.length() - self.next_xmit
    }

    /// True if granted bytes wait for their first transmission.
    pub(crate) fn has_sendable(&self) -> bool {
        self.next_xmit < self.granted
    }

    /// True once every byte has been transmitted at least once.
    pub(crate) fn fully_sent(&self) -> bool {
        self.next_xmit >= self.length()
    }

    /// Raises the grant (never lowers it), clamped to the message length.
    /// Returns true if the grant grew.
    pub(crate) fn raise_grant(&mut self, offset: u32) -> bool {
        let offset = offset.min(self.length());
        if offset > self.granted {
            self.granted = offset;
            true
        } else {
            false
        }
    }

    /// The packet starting at `offset` (a grid point): its length.
    pub(crate) fn packet_len(&self, offset: u32) -> u32 {
        self.seg_size.min(self.length() - offset)
    }

    /// Priority of the packet starting at `offset`.
    pub(crate) fn priority_at(&self, offset: u32) -> u8 {
        if offset < self.unscheduled {
            self.unsched_priority
        } else {
            self.sched_priority
        }
    }

    /// The message's bytes (packets refer to ranges of it).
    pub(crate) fn data(&self) -> &Bytes {
        &self.data
    }

    /// Queues `[start, end)` (clamped to what was transmitted) for
    /// retransmission at `priority`. Returns false if nothing was queued.
    pub(crate) fn queue_resend(&mut self, start: u32, end: u32, priority: u8) -> bool {
        let end = end.min(self.next_xmit);
        if start >= end {
            return false;
        }
        // Align to the packet grid so retransmitted packets match originals.
        let start = start - start % self.seg_size;
        if let Some(last) = self.resends.last_mut() {
            if start <= last.1 && end >= last.0 {
                last.0 = last.0.min(start);
                last.1 = last.1.max(end);
                last.2 = last.2.max(priority);
                return true;
            }
        }
        if self.resends.len() >= MAX_RESEND_RANGES {
            let last = self.resends.last_mut().expect("non-empty");
            last.0 = last.0.min(start);
            last.1 = last.1.max(end);
            return true;
        }
        self.resends.push((start, end, priority));
        true
    }

    /// True if retransmissions are pending.
    pub(crate) fn has_resends(&self) -> bool {
        !self.resends.is_empty()
    }

    /// Takes the next retransmission packet: `(offset, len, priority)`.
    pub(crate) fn next_resend(&mut self) -> Option<(u32, u32, u8)> {
        let (start, end, prio) = *self.resends.first()?;
        let len = self.packet_len(start);
        let next = start + len;
        if next >= end {
            self.resends.remove(0);
        } else {
            self.resends[0].0 = next;
        }
        Some((start, len, prio))
    }

    /// Peeks at the start and priority of the next retransmission.
    pub(crate) fn peek_resend(&self) -> Option<(u32, u8)> {
        self.resends.first().map(|r| (r.0, r.2))
    }
}

fn round_up(v: u32, unit: u32) -> u32 {
    v.div_ceil(unit).saturating_mul(unit)
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    fn msg(len: usize, seg: u32, unsched: u32) -> MsgOut {
        MsgOut::new(Bytes::from(vec![7u8; len]), seg, unsched, 6, Instant::ZERO)
    }

    #[test]
    fn new__unscheduled_rounds_up_to_packets_and_clamps() {
        assert_eq!(msg(100_000, 1416, 40_000).unscheduled, 29 * 1416);
        assert_eq!(msg(100, 1416, 40_000).unscheduled, 100);
        assert_eq!(msg(2832, 1416, 1416).unscheduled, 1416);
    }

    #[test]
    fn raise_grant__never_lowers_and_clamps() {
        let mut m = msg(10_000, 1000, 2000);
        assert!(!m.raise_grant(1000));
        assert_eq!(m.granted, 2000);
        assert!(m.raise_grant(5000));
        assert!(m.raise_grant(1 << 30));
        assert_eq!(m.granted, 10_000);
    }

    #[test]
    fn priority_at__unscheduled_then_scheduled() {
        let mut m = msg(10_000, 1000, 2000);
        m.sched_priority = 1;
        assert_eq!(m.priority_at(0), 6);
        assert_eq!(m.priority_at(1000), 6);
        assert_eq!(m.priority_at(2000), 1);
    }

    #[test]
    fn queue_resend__clip_range_to_tx_end_and_grid() {
        let mut m = msg(10_000, 1000, 10_000);
        m.next_xmit = 3000;
        assert!(!m.queue_resend(3000, 5000, 7));
        assert!(m.queue_resend(1500, 9000, 7));
        assert_eq!(m.next_resend(), Some((1000, 1000, 7)));
        assert_eq!(m.next_resend(), Some((2000, 1000, 7)));
        assert_eq!(m.next_resend(), None);
    }

    #[test]
    fn queue_resend__merges_and_bounds() {
        let mut m = msg(100_000, 1000, 100_000);
        m.next_xmit = 100_000;
        for i in 0..40u32 {
            m.queue_resend(i * 2000, i * 2000 + 1000, 5);
        }
        assert!(m.resends.len() <= MAX_RESEND_RANGES);
        // Everything requested is still covered.
        let mut covered = std::collections::BTreeSet::new();
        while let Some((off, _, _)) = m.next_resend() {
            covered.insert(off);
        }
        for i in 0..40u32 {
            assert!(covered.contains(&(i * 2000)), "{i}");
        }
    }

    #[test]
    fn packet_len__short_last_packet() {
        let m = msg(2500, 1000, 2500);
        assert_eq!(m.packet_len(0), 1000);
        assert_eq!(m.packet_len(2000), 500);
    }
}
