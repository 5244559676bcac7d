//! Incoming message reassembly: the receive buffer, the gap list and the
//! receiver's view of how much of the message has been granted.
//!
//! Bytes may arrive in any order, duplicated or overlapping. The state is
//! `recv_end` (one past the highest byte received) plus a sorted list of gaps
//! `[start, end)` below `recv_end`; everything else below `recv_end` has been
//! received. This is the kernel's `homa_add_packet` model, with one
//! difference: a packet that partially overlaps received data contributes its
//! new bytes instead of being dropped whole (honest senders resend identical
//! bytes, so nothing is lost by accepting them, and a sender that
//! re-segments after a retransmission still makes progress).

use bytes::Bytes;

use crate::Instant;

/// What adding a packet did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddOutcome {
    /// The packet contributed this many new bytes.
    Accepted(u32),
    /// Every byte was already present.
    Duplicate,
    /// Accepting the packet would exceed the gap limit; it was dropped.
    TooManyGaps,
    /// The packet does not lie inside the message.
    OutOfRange,
}

/// An incoming message being reassembled.
#[derive(Debug)]
pub(crate) struct MsgIn {
    length: u32,
    buf: Vec<u8>,
    recv_end: u32,
    gaps: Vec<(u32, u32)>,
    bytes_remaining: u32,
    /// Bytes the sender may transmit: `[0, granted)`.
    pub granted: u32,
    /// When the first packet arrived (grant tie-breaks, FIFO grants).
    pub birth: Instant,
}

impl MsgIn {
    /// A message of `length` bytes whose sender promised `[0, incoming)`
    /// unscheduled.
    pub fn new(length: u32, incoming: u32, birth: Instant) -> MsgIn {
        MsgIn {
            length,
            buf: vec![0u8; length as usize],
            recv_end: 0,
            gaps: Vec::new(),
            bytes_remaining: length,
            granted: incoming.min(length),
            birth,
        }
    }

    /// Total message length.
    pub fn length(&self) -> u32 {
        self.length
    }

    /// Bytes not yet received.
    pub fn bytes_remaining(&self) -> u32 {
        self.bytes_remaining
    }

    /// Bytes received so far.
    pub fn received(&self) -> u32 {
        self.length - self.bytes_remaining
    }

    /// One past the highest byte received.
    pub fn recv_end(&self) -> u32 {
        self.recv_end
    }

    /// Missing ranges below `recv_end`, sorted.
    pub fn gaps(&self) -> &[(u32, u32)] {
        &self.gaps
    }

    /// True once every byte has arrived.
    pub fn is_complete(&self) -> bool {
        self.bytes_remaining == 0
    }

    /// True if all granted bytes have arrived (the sender owes us nothing).
    pub fn all_granted_received(&self) -> bool {
        self.gaps.is_empty() && self.recv_end >= self.granted
    }

    /// Adds the bytes `data` at `offset`, keeping only bytes not yet present.
    /// A packet that would push the gap count above `max_gaps` is dropped.
    pub fn add(&mut self, offset: u32, data: &[u8], max_gaps: usize) -> AddOutcome {
        let start = offset as u64;
        let end = start + data.len() as u64;
        if end > self.length as u64 {
            return AddOutcome::OutOfRange;
        }
        if data.is_empty() {
            return AddOutcome::Duplicate;
        }
        let (start, end) = (start as u32, end as u32);

        // Gap bookkeeping changes the gap count by: +1 if the packet lands
        // strictly inside one gap (splitting it), +1 if it starts beyond
        // recv_end (opening a new gap). Check before touching anything.
        let low_end = end.min(self.recv_end);
        let first = self.gaps.partition_point(|g| g.1 <= start);
        let splits = start < low_end
            && self
                .gaps
                .get(first)
                .is_some_and(|g| g.0 < start && end < g.1);
        let opens = start > self.recv_end;
        let new_gaps = splits as usize + opens as usize;
        if new_gaps > 0 && self.gaps.len() + new_gaps > max_gaps {
            return AddOutcome::TooManyGaps;
        }

        let mut added: u32 = 0;
        // Part below recv_end: fill the gaps it overlaps.
        if start < low_end {
            let mut i = first;
            while i < self.gaps.len() && self.gaps[i].0 < low_end {
                let (gs, ge) = self.gaps[i];
                let is = gs.max(start);
                let ie = ge.min(low_end);
                self.copy_in(is, &data[(is - start) as usize..(ie - start) as usize]);
                added += ie - is;
                match (is == gs, ie == ge) {
                    (true, true) => {
                        self.gaps.remove(i);
                        continue;
                    }
                    (true, false) => self.gaps[i].0 = ie,
                    (false, true) => self.gaps[i].1 = is,
                    (false, false) => {
                        self.gaps[i].1 = is;
                        self.gaps.insert(i + 1, (ie, ge));
                        i += 1;
                    }
                }
                i += 1;
            }
        }
        // Part at or above recv_end: extend, opening a gap if needed.
        if end > self.recv_end {
            let from = start.max(self.recv_end);
            if from > self.recv_end {
                self.gaps.push((self.recv_end, from));
            }
            self.copy_in(from, &data[(from - start) as usize..]);
            added += end - from;
            self.recv_end = end;
        }
        if added == 0 {
            return AddOutcome::Duplicate;
        }
        self.bytes_remaining -= added;
        AddOutcome::Accepted(added)
    }

    fn copy_in(&mut self, at: u32, bytes: &[u8]) {
        self.buf[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
    }

    /// The assembled message. Call only when complete.
    pub fn into_bytes(self) -> Bytes {
        debug_assert!(self.is_complete());
        Bytes::from(self.buf)
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    fn msg(len: u32) -> MsgIn {
        MsgIn::new(len, len, Instant::ZERO)
    }

    fn bytes(range: core::ops::Range<u32>) -> Vec<u8> {
        range.map(|i| (i % 251) as u8).collect()
    }

    fn add(m: &mut MsgIn, start: u32, end: u32) -> AddOutcome {
        m.add(start, &bytes(start..end), 100)
    }

    #[test]
    fn add__in_order_extends_recv_end() {
        let mut m = msg(30);
        assert_eq!(add(&mut m, 0, 10), AddOutcome::Accepted(10));
        assert_eq!(add(&mut m, 10, 20), AddOutcome::Accepted(10));
        assert_eq!(m.recv_end(), 20);
        assert!(m.gaps().is_empty());
        assert_eq!(add(&mut m, 20, 30), AddOutcome::Accepted(10));
        assert!(m.is_complete());
        assert_eq!(&m.into_bytes()[..], &bytes(0..30)[..]);
    }

    #[test]
    fn add__beyond_recv_end_opens_gap() {
        let mut m = msg(50);
        add(&mut m, 20, 30);
        assert_eq!(m.gaps(), &[(0, 20)]);
        add(&mut m, 40, 50);
        assert_eq!(m.gaps(), &[(0, 20), (30, 40)]);
        assert_eq!(m.bytes_remaining(), 30);
    }

    #[test]
    fn add__packet_covers_entire_gap() {
        let mut m = msg(30);
        add(&mut m, 10, 30);
        assert_eq!(add(&mut m, 0, 10), AddOutcome::Accepted(10));
        assert!(m.gaps().is_empty());
        assert!(m.is_complete());
    }

    #[test]
    fn add__packet_in_middle_of_gap_splits_it() {
        let mut m = msg(40);
        add(&mut m, 30, 40);
        add(&mut m, 10, 20);
        assert_eq!(m.gaps(), &[(0, 10), (20, 30)]);
    }

    #[test]
    fn add__packet_straddles_start_of_gap() {
        let mut m = msg(40);
        add(&mut m, 0, 10);
        add(&mut m, 30, 40);
        // Gap is [10, 30); packet [5, 15) overlaps received [5,10).
        assert_eq!(add(&mut m, 5, 15), AddOutcome::Accepted(5));
        assert_eq!(m.gaps(), &[(15, 30)]);
    }

    #[test]
    fn add__packet_extends_past_gap() {
        let mut m = msg(40);
        add(&mut m, 0, 10);
        add(&mut m, 20, 30);
        // Gap [10,20); packet [15, 35) fills [15,20) and extends to 35.
        assert_eq!(add(&mut m, 15, 35), AddOutcome::Accepted(10));
        assert_eq!(m.gaps(), &[(10, 15)]);
        assert_eq!(m.recv_end(), 35);
    }

    #[test]
    fn add__scan_multiple_gaps() {
        let mut m = msg(100);
        for s in [10, 30, 50, 70, 90] {
            add(&mut m, s, s + 10);
        }
        assert_eq!(m.gaps().len(), 5);
        // One packet spanning several gaps fills them all.
        assert_eq!(add(&mut m, 0, 100), AddOutcome::Accepted(50));
        assert!(m.is_complete());
        assert_eq!(&m.into_bytes()[..], &bytes(0..100)[..]);
    }

    #[test]
    fn add__duplicate_is_reported() {
        let mut m = msg(20);
        add(&mut m, 0, 10);
        assert_eq!(add(&mut m, 0, 10), AddOutcome::Duplicate);
        assert_eq!(add(&mut m, 2, 8), AddOutcome::Duplicate);
        assert_eq!(m.bytes_remaining(), 10);
    }

    #[test]
    fn add__packet_overlaps_message_end() {
        let mut m = msg(20);
        assert_eq!(m.add(15, &bytes(15..25), 100), AddOutcome::OutOfRange);
        assert_eq!(m.bytes_remaining(), 20);
    }

    #[test]
    fn add__gap_limit_drops_packet() {
        let mut m = msg(100);
        assert_eq!(m.add(10, &bytes(10..20), 1), AddOutcome::Accepted(10));
        assert_eq!(m.add(30, &bytes(30..40), 1), AddOutcome::TooManyGaps);
        // Filling without new gaps still works at the limit.
        assert_eq!(m.add(20, &bytes(20..30), 1), AddOutcome::Accepted(10));
        // Splitting the remaining gap [0,10) would need a second gap.
        assert_eq!(m.add(4, &bytes(4..6), 1), AddOutcome::TooManyGaps);
        assert_eq!(m.add(0, &bytes(0..5), 1), AddOutcome::Accepted(5));
    }

    #[test]
    fn all_granted_received__tracks_gaps_and_grant() {
        let mut m = MsgIn::new(100, 20, Instant::ZERO);
        assert_eq!(m.granted, 20);
        add(&mut m, 10, 20);
        assert!(!m.all_granted_received());
        add(&mut m, 0, 10);
        assert!(m.all_granted_received());
        m.granted = 40;
        assert!(!m.all_granted_received());
    }

    #[test]
    fn new__unsched_past_end_of_message() {
        let m = MsgIn::new(10, 1000, Instant::ZERO);
        assert_eq!(m.granted, 10);
    }
}
