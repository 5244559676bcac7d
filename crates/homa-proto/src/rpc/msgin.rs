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
//!
//! The buffer only covers what the receiver allowed the sender to send:
//! `granted` plus one packet of slack (a sender transmits whole packets, so
//! the packet that starts just below `granted` may end above it). Packets
//! starting at or beyond `granted` are refused, so memory follows grants,
//! never the length a peer claims. The buffer is paged: a page is allocated
//! when the first byte in it arrives and never moves, so raising a grant
//! costs nothing and a preempted long message holds only what it received
//! (growing one contiguous buffer per grant reallocated and copied it, and
//! left the heap fragmented by buffers of every size).
//!
//! A message whose length is at most [`CONTIGUOUS_RATIO`] times the buffer
//! it is charged when it starts (every message up to about a megabyte
//! with the default grant window) has a single page of its whole length,
//! reserved up front: it is delivered as that storage, without the copy
//! that concatenating pages costs (the second user-space copy of every
//! received byte). The reservation is address space, not memory: bytes are
//! still written strictly below `recv_end`, which never passes what the
//! budget charges, so only written pages become resident; and the ratio
//! bounds the address space reserved by the bytes charged. If the
//! allocator refuses the reservation, the message is paged as above.
//! What the unwritten part of a reservation costs depends on the
//! allocator: freed storage is reused without being returned to the
//! kernel (always so below glibc's mmap threshold, which rises to 32 MB as
//! large blocks are freed, and with `tune_malloc`), so a reservation can
//! land on pages an earlier message already made resident. Senders that
//! start many long messages and send only their first packets would then
//! make the process keep up to the ratio times the budget resident. So
//! the storage reserved by messages being received is bounded as a whole
//! ([`Reservations`]): past the bound, messages are paged.
//!
//! Each gap also remembers the lowest priority level at which any packet
//! from beyond it arrived (when the driver reports arrival levels). Packets
//! of one message travel at different levels (unscheduled level, the level
//! of each GRANT, FIFO grants), so with strict-priority switches a later
//! packet at a *higher* level may overtake the gap's packets; one at the same
//! or a lower level cannot. The timer uses this to tell loss from
//! overtaking.
//!
//! Each gap remembers when it was last "touched": when it opened (a packet
//! arrived beyond it) or when we last asked for it. The timer uses this to
//! request holes that are clearly lost (data beyond them arrived a while ago)
//! without waiting for the whole RPC to fall silent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
    /// The packet starts at or beyond what we granted.
    BeyondGrant,
}

/// Bytes of buffer kept beyond `granted`: the largest possible packet.
pub(crate) const GRANT_SLACK: u32 = 65_536;

/// Longest message delivered as a slice of shared zeros when its bytes
/// were not stored ([`MsgIn::shared_zeros`]): the default
/// `max_message_length`.
pub(crate) const SHARED_ZEROS: usize = 16 << 20;

/// Bytes per page of the receive buffer. Pages are allocated as bytes
/// arrive in them, never moved, and all (but a message's last or only one)
/// have this size, so freed pages are reused as they are.
pub(crate) const PAGE: usize = 65_536;

/// A message up to this many times the buffer charged at its start is
/// stored contiguously (see the module documentation).
pub(crate) const CONTIGUOUS_RATIO: u64 = 16;

/// The contiguous storage reserved by an endpoint's messages being
/// received, and its bound (see the module documentation). Cloned into
/// every contiguous message, which gives its share back when dropped
/// (delivered or discarded).
#[derive(Debug, Clone)]
pub(crate) struct Reservations {
    reserved: Arc<AtomicU64>,
    limit: u64,
}

impl Reservations {
    /// No storage reserved; at most `limit` bytes at once.
    pub(crate) fn new(limit: u64) -> Reservations {
        Reservations {
            reserved: Arc::new(AtomicU64::new(0)),
            limit,
        }
    }

    /// Bytes reserved now.
    pub(crate) fn reserved(&self) -> u64 {
        self.reserved.load(Ordering::Relaxed)
    }

    /// Takes `len` bytes if they fit under the limit.
    fn take(&self, len: u64) -> Option<Reservation> {
        let r = self.reserved();
        if r.saturating_add(len) > self.limit {
            return None;
        }
        self.reserved.fetch_add(len, Ordering::Relaxed);
        Some(Reservation {
            pool: self.reserved.clone(),
            len,
        })
    }
}

/// One message's share of [`Reservations`], given back when dropped.
#[derive(Debug)]
struct Reservation {
    pool: Arc<AtomicU64>,
    len: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.pool.fetch_sub(self.len, Ordering::Relaxed);
    }
}

/// A missing range `[start, end)` below `recv_end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gap {
    pub start: u32,
    pub end: u32,
    /// When the gap opened, or when it was last requested.
    pub since: Instant,
    /// True once a RESEND asked for it.
    pub requested: bool,
    /// Lowest priority level of the packets that arrived beyond this gap
    /// since it opened ([`UNKNOWN_LEVEL`] if none was reported).
    pub beyond_level: u8,
}

/// Level value meaning "the arrival level was not reported".
pub(crate) const UNKNOWN_LEVEL: u8 = u8::MAX;

/// Most pieces a chained message reserves room for at its first piece
/// (about 10 KB; a message of more pieces grows its list as it needs).
const PIECES_RESERVED: usize = 256;

/// The storage of a chained message: the received bytes as pieces, each a
/// range of the receive buffer its packet arrived in, or a copy (see
/// [`MsgIn::chained`]).
#[derive(Debug, Default)]
struct Chain {
    /// `(offset, piece)`, sorted by offset, not overlapping.
    pieces: Vec<(u32, Piece)>,
    /// The receive buffers the pieces pin, each once per run of pieces
    /// from it (a buffer revisited after another appears again).
    buffers: Vec<bytes::Bytes>,
    /// Bytes of memory the pieces hold: the whole length of every receive
    /// buffer a piece pins (counted once per run of pieces from one
    /// buffer), plus the bytes copied.
    held: u64,
}

/// A piece of a chained message: bytes `start..start + len` of receive
/// buffer `buffer` (an index into the chain's buffers: no reference count
/// per packet until the message is delivered), or a copy.
#[derive(Debug, Clone)]
pub(crate) enum Piece {
    /// A range of one of the chain's receive buffers.
    Slice {
        /// Index of the buffer.
        buffer: u32,
        /// First byte in it.
        start: u32,
        /// Bytes.
        len: u32,
    },
    /// Bytes copied out of their datagram.
    Copy(bytes::Bytes),
}

impl Piece {
    /// Bytes in the piece.
    pub(crate) fn len(&self) -> usize {
        match self {
            Piece::Slice { len, .. } => *len as usize,
            Piece::Copy(b) => b.len(),
        }
    }

    /// The piece's bytes, given the chain's buffers (`None` only if the
    /// range is not in them, which `keep` never records).
    pub(crate) fn bytes<'a>(&'a self, buffers: &'a [bytes::Bytes]) -> Option<&'a [u8]> {
        match self {
            Piece::Slice { buffer, start, len } => buffers
                .get(*buffer as usize)?
                .get(*start as usize..*start as usize + *len as usize),
            Piece::Copy(b) => Some(b),
        }
    }
}

/// True if `piece` lies within `buffer`'s memory (so it can be a slice of
/// it).
#[inline]
pub(crate) fn within(buffer: &[u8], piece: &[u8]) -> bool {
    let (base, p) = (buffer.as_ptr() as usize, piece.as_ptr() as usize);
    p >= base && p + piece.len() <= base + buffer.len()
}

/// A complete chained message: its pieces in order, and the receive
/// buffers they are ranges of. The socket wraps each buffer once when it
/// delivers the message and slices the pieces out of the wrapped buffers
/// ([`crate::socket::Socket::deliver_chain`]).
#[derive(Debug, Default)]
pub(crate) struct ChainParts {
    /// The message's pieces, in order.
    pub pieces: Vec<Piece>,
    /// The buffers pinned, in the order the pieces first used them.
    pub buffers: Vec<bytes::Bytes>,
}

impl ChainParts {
    /// The pieces as slices of the buffers, without a budget wrapper
    /// (a message for no socket; tests).
    pub(crate) fn into_pieces(self) -> Vec<bytes::Bytes> {
        self.into_slices(|buffer, _| buffer, |copy| copy)
    }

    /// The pieces as `Bytes`: each buffer that holds pieces goes through
    /// `buffer` once, with the bytes of the message's pieces in it (a
    /// socket wraps it in its budget's guard), and the pieces are slices
    /// of what it returns; each copied piece goes through `copy`.
    pub(crate) fn into_slices(
        self,
        mut buffer: impl FnMut(bytes::Bytes, u64) -> bytes::Bytes,
        mut copy: impl FnMut(bytes::Bytes) -> bytes::Bytes,
    ) -> Vec<bytes::Bytes> {
        let ChainParts { pieces, buffers } = self;
        let mut bytes_in = vec![0u64; buffers.len()];
        for p in &pieces {
            if let Piece::Slice { buffer, len, .. } = p {
                if let Some(n) = bytes_in.get_mut(*buffer as usize) {
                    *n += u64::from(*len);
                }
            }
        }
        let wrapped: Vec<Option<bytes::Bytes>> = buffers
            .into_iter()
            .zip(bytes_in)
            .map(|(b, n)| (n > 0).then(|| buffer(b, n)))
            .collect();
        pieces
            .into_iter()
            .filter_map(|p| match p {
                Piece::Slice { buffer, start, len } => {
                    let (start, end) = (start as usize, start as usize + len as usize);
                    wrapped
                        .get(buffer as usize)?
                        .as_ref()
                        .filter(|w| end <= w.len())
                        .map(|w| w.slice(start..end))
                }
                Piece::Copy(b) => Some(copy(b)),
            })
            .collect()
    }
}

/// A chained message pins receive buffers while the memory it holds is
/// below its charge plus this fraction of it: the buffers also hold the
/// packets' headers (56 bytes per packet, 4% of a 1500-byte packet).
const HEADER_ROOM: u64 = 16;

/// An incoming message being reassembled.
#[derive(Debug)]
pub(crate) struct MsgIn {
    length: u32,
    /// The bytes below `recv_end` (gaps hold zeroes), in pages of
    /// [`PAGE`] bytes: page `i` holds `[i * PAGE, min((i + 1) * PAGE,
    /// recv_end))`. Bytes are appended as they arrive rather than copied
    /// over a zeroed buffer. A page is allocated (at its final size) when
    /// the first byte in it arrives: raising the grant allocates and moves
    /// nothing, and memory follows the bytes received. A contiguous
    /// message has one page of `page` = `length` bytes, reserved at once.
    pages: Vec<Vec<u8>>,
    /// False: bytes are counted, not kept (`pages` stays empty).
    store: bool,
    /// Bytes per page: [`PAGE`], or the whole length (contiguous).
    page: usize,
    /// A contiguous message's share of the endpoint's reservations.
    _reservation: Option<Reservation>,
    /// A chained message ([`MsgIn::chained`]): its bytes as pieces
    /// `(offset, bytes)`, sorted, not overlapping (`pages` stays empty).
    chain: Option<Chain>,
    /// Buffer bytes the message may hold (what memory accounting charges):
    /// see [`MsgIn::capacity_for`]. The pages in use never exceed it.
    cap: u32,
    recv_end: u32,
    gaps: Vec<Gap>,
    bytes_remaining: u32,
    /// Bytes the sender may transmit: `[0, granted)`. Change it only with
    /// [`MsgIn::set_granted`], which grows the buffer.
    granted: u32,
    /// When the first packet arrived (grant tie-breaks, FIFO grants).
    pub birth: Instant,
    /// Granted-but-not-received bytes last counted in the scheduler's
    /// total.
    pub rec_incoming: u32,
    /// End of the sender's unscheduled region (its `incoming` claim).
    pub unsched_end: u32,
    /// Lowest level seen on packets of the unscheduled region.
    pub unsched_level: u8,
    /// Lowest level we granted this message's scheduled bytes at.
    pub min_grant_level: u8,
}

impl MsgIn {
    /// A message of `length` bytes whose sender promised `[0, incoming)`
    /// unscheduled, stored contiguously if it qualifies, without a bound on
    /// the storage reserved (tests).
    #[cfg(test)]
    pub(crate) fn new(length: u32, incoming: u32, birth: Instant) -> MsgIn {
        Self::with_reservations(length, incoming, birth, &Reservations::new(u64::MAX), true)
    }

    /// A message of `length` bytes whose sender promised `[0, incoming)`
    /// unscheduled; stored contiguously if it qualifies and `reservations`
    /// has room for its length. Without `store` (`Config::discard_payload`)
    /// the bytes are counted, not kept: every decision (gaps, grants,
    /// reservations, memory charged) is the same, nothing is allocated or
    /// copied, and the message is delivered as zeros of its length.
    pub(crate) fn with_reservations(
        length: u32,
        incoming: u32,
        birth: Instant,
        reservations: &Reservations,
        store: bool,
    ) -> MsgIn {
        let granted = incoming.min(length);
        let cap = Self::capacity_for(length, granted);
        let mut pages = Vec::new();
        let mut page = PAGE;
        let mut reservation = None;
        if length as usize > PAGE && length as u64 <= cap as u64 * CONTIGUOUS_RATIO {
            if let Some(r) = reservations.take(length as u64) {
                let mut all = Vec::new();
                if !store || all.try_reserve_exact(length as usize).is_ok() {
                    if store {
                        pages.push(all);
                    }
                    page = length as usize;
                    reservation = Some(r);
                }
            }
        }
        MsgIn {
            length,
            pages,
            store,
            page,
            _reservation: reservation,
            chain: None,
            cap: cap as u32,
            recv_end: 0,
            gaps: Vec::new(),
            bytes_remaining: length,
            granted,
            birth,
            rec_incoming: 0,
            unsched_end: granted,
            unsched_level: UNKNOWN_LEVEL,
            min_grant_level: UNKNOWN_LEVEL,
        }
    }

    /// A message of `length` bytes whose sender promised `[0, incoming)`
    /// unscheduled, kept as a chain: bytes that arrive with the buffer
    /// they were received in ([`MsgIn::add_from`]) are kept as slices of
    /// it, the rest is copied, and the message is delivered as those
    /// pieces ([`MsgIn::into_chain`]) without being assembled. A piece
    /// pins its whole receive buffer (a run of pieces from one buffer
    /// counts it once), so a new buffer is pinned only while the memory
    /// the message holds is below what it is charged
    /// ([`MsgIn::buffer_len`]) and a sixteenth ([`HEADER_ROOM`]: the
    /// buffers hold packet headers too); past that, bytes are copied. The
    /// memory held is thus at most 17/16 of the charge, plus one receive
    /// buffer, plus bytes received (copied): for in-order packets in full
    /// receive buffers (the bulk case), the bytes received and their
    /// headers. (A buffer is counted by its datagram's length; a runtime
    /// whose buffers may be larger than that scales the bound by their
    /// ratio: homa-sys keeps a whole buffer only for a datagram filling
    /// 15/16 of it.) Every
    /// protocol decision is the same as with the other storages; no
    /// contiguous storage is reserved.
    pub(crate) fn chained(length: u32, incoming: u32, birth: Instant) -> MsgIn {
        let mut m = Self::with_reservations(length, incoming, birth, &Reservations::new(0), false);
        m.store = true;
        m.chain = Some(Chain::default());
        m
    }

    /// Lowest level at which the bytes of `[start, end)` can have been sent:
    /// the unscheduled level for unscheduled bytes, the lowest granted level
    /// for scheduled ones.
    pub(crate) fn level_floor(&self, start: u32, end: u32) -> u8 {
        let mut floor = u8::MAX;
        if start < self.unsched_end {
            floor = floor.min(self.unsched_level);
        }
        if end > self.unsched_end {
            floor = floor.min(self.min_grant_level);
        }
        floor
    }

    /// Buffer bytes a message of `length` bytes needs with `granted` bytes
    /// granted.
    pub(crate) fn capacity_for(length: u32, granted: u32) -> usize {
        granted.saturating_add(GRANT_SLACK).min(length) as usize
    }

    /// Bytes the sender may transmit: `[0, granted)`.
    pub(crate) fn granted(&self) -> u32 {
        self.granted
    }

    /// Bytes of buffer held (what memory accounting charges).
    pub(crate) fn buffer_len(&self) -> u32 {
        self.cap
    }

    /// Buffer bytes that raising the grant to `granted` would add.
    pub(crate) fn growth_for(&self, granted: u32) -> u32 {
        (Self::capacity_for(self.length, granted.min(self.length)) as u32)
            .saturating_sub(self.buffer_len())
    }

    /// Raises the grant (never lowers it) and the buffer bytes the message
    /// may hold with it. Returns the number of buffer bytes added to the
    /// accounting; nothing is allocated here (pages come with the bytes).
    pub(crate) fn set_granted(&mut self, granted: u32) -> u32 {
        let granted = granted.min(self.length);
        if granted <= self.granted {
            return 0;
        }
        let grow = self.growth_for(granted);
        self.granted = granted;
        self.cap += grow;
        grow
    }

    /// Total message length.
    pub(crate) fn length(&self) -> u32 {
        self.length
    }

    /// Bytes not yet received.
    pub(crate) fn bytes_remaining(&self) -> u32 {
        self.bytes_remaining
    }

    /// Bytes received so far.
    pub(crate) fn received(&self) -> u32 {
        self.length - self.bytes_remaining
    }

    /// One past the highest byte received.
    pub(crate) fn recv_end(&self) -> u32 {
        self.recv_end
    }

    /// Missing ranges below `recv_end`, sorted.
    pub(crate) fn gaps(&self) -> &[Gap] {
        &self.gaps
    }

    /// Missing ranges, mutable (the timer marks them requested).
    pub(crate) fn gaps_mut(&mut self) -> &mut [Gap] {
        &mut self.gaps
    }

    /// True once every byte has arrived.
    pub(crate) fn is_complete(&self) -> bool {
        self.bytes_remaining == 0
    }

    /// True if all granted bytes have arrived (the sender owes us nothing).
    pub(crate) fn all_granted_received(&self) -> bool {
        self.gaps.is_empty() && self.recv_end >= self.granted
    }

    /// Adds the bytes `data` at `offset`, keeping only bytes not yet present.
    /// A packet that would push the gap count above `max_gaps` is dropped.
    /// `level` is the priority level the packet arrived at, or
    /// [`UNKNOWN_LEVEL`].
    #[cfg(test)]
    pub(crate) fn add(
        &mut self,
        offset: u32,
        data: &[u8],
        max_gaps: usize,
        now: Instant,
        level: u8,
    ) -> AddOutcome {
        self.add_from(offset, data, None, max_gaps, now, level)
    }

    /// [`MsgIn::add`] for bytes that may lie in `owner`, the buffer they
    /// were received in: a chained message keeps them as slices of it
    /// (see [`MsgIn::chained`]); other storages copy them.
    pub(crate) fn add_from(
        &mut self,
        offset: u32,
        data: &[u8],
        owner: Option<&bytes::Bytes>,
        max_gaps: usize,
        now: Instant,
        level: u8,
    ) -> AddOutcome {
        let start = offset as u64;
        let end = start + data.len() as u64;
        if end > self.length as u64 {
            return AddOutcome::OutOfRange;
        }
        if data.is_empty() {
            return AddOutcome::Duplicate;
        }
        if start >= self.granted as u64 || end > self.cap as u64 {
            return AddOutcome::BeyondGrant;
        }
        let (start, end) = (start as u32, end as u32);

        // Gap bookkeeping changes the gap count by: +1 if the packet lands
        // strictly inside one gap (splitting it), +1 if it starts beyond
        // recv_end (opening a new gap). Check before touching anything.
        let low_end = end.min(self.recv_end);
        let first = self.gaps.partition_point(|g| g.end <= start);
        let splits = start < low_end
            && self
                .gaps
                .get(first)
                .is_some_and(|g| g.start < start && end < g.end);
        let opens = start > self.recv_end;
        let new_gaps = splits as usize + opens as usize;
        if new_gaps > 0 && self.gaps.len() + new_gaps > max_gaps {
            return AddOutcome::TooManyGaps;
        }

        // Every gap wholly before this packet saw a packet from beyond it.
        if level != UNKNOWN_LEVEL {
            if start < self.unsched_end {
                self.unsched_level = self.unsched_level.min(level);
            }
            for g in self.gaps.iter_mut().take(first) {
                g.beyond_level = g.beyond_level.min(level);
            }
        }
        let mut added: u32 = 0;
        // Part below recv_end: fill the gaps it overlaps.
        if start < low_end {
            let mut i = first;
            while i < self.gaps.len() && self.gaps[i].start < low_end {
                let Gap {
                    start: gs, end: ge, ..
                } = self.gaps[i];
                let is = gs.max(start);
                let ie = ge.min(low_end);
                self.copy_in(
                    is,
                    &data[(is - start) as usize..(ie - start) as usize],
                    owner,
                );
                added += ie - is;
                match (is == gs, ie == ge) {
                    (true, true) => {
                        self.gaps.remove(i);
                        continue;
                    }
                    (true, false) => self.gaps[i].start = ie,
                    (false, true) => self.gaps[i].end = is,
                    (false, false) => {
                        let mut tail = self.gaps[i];
                        tail.start = ie;
                        self.gaps[i].end = is;
                        self.gaps.insert(i + 1, tail);
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
                self.gaps.push(Gap {
                    start: self.recv_end,
                    end: from,
                    since: now,
                    requested: false,
                    beyond_level: level,
                });
            }
            // The pages hold exactly the bytes below recv_end: zero the
            // new gap (if any), then append.
            self.append(
                from - self.recv_end,
                &data[(from - start) as usize..],
                owner,
            );
            added += end - from;
            self.recv_end = end;
        }
        if added == 0 {
            return AddOutcome::Duplicate;
        }
        self.bytes_remaining -= added;
        AddOutcome::Accepted(added)
    }

    /// Overwrites bytes below `recv_end` (a gap being filled).
    fn copy_in(&mut self, at: u32, bytes: &[u8], owner: Option<&bytes::Bytes>) {
        if !self.store {
            return;
        }
        if self.chain.is_some() {
            self.keep(at, bytes, owner);
            return;
        }
        let mut at = at as usize;
        let mut rest = bytes;
        let size = self.page;
        while !rest.is_empty() {
            let (page, off) = (at / size, at % size);
            let n = rest.len().min(size - off);
            self.pages[page][off..off + n].copy_from_slice(&rest[..n]);
            at += n;
            rest = &rest[n..];
        }
    }

    /// Appends `zeros` zero bytes, then `data`, at `recv_end` (the caller
    /// then moves `recv_end`), opening pages as they are reached.
    fn append(&mut self, zeros: u32, data: &[u8], owner: Option<&bytes::Bytes>) {
        if !self.store {
            return;
        }
        if self.chain.is_some() {
            // Gaps are not stored: the pieces are what arrived.
            if !data.is_empty() {
                self.keep(self.recv_end + zeros, data, owner);
            }
            return;
        }
        let mut end = self.recv_end as usize;
        let mut zeros = zeros as usize;
        let mut rest = data;
        let size = self.page;
        while zeros > 0 || !rest.is_empty() {
            let page = end / size;
            if page == self.pages.len() {
                let len = (self.length as usize - page * size).min(size);
                self.pages.push(Vec::with_capacity(len));
            }
            let p = &mut self.pages[page];
            let room = size - end % size;
            if zeros > 0 {
                let n = zeros.min(room);
                p.resize(p.len() + n, 0);
                zeros -= n;
                end += n;
            } else {
                let n = rest.len().min(room);
                p.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                end += n;
            }
        }
    }

    /// Keeps `bytes`, new bytes of a chained message at offset `at`, as a
    /// slice of `owner` if they lie in it and the memory the message holds
    /// is still below its charge; else as a copy.
    fn keep(&mut self, at: u32, bytes: &[u8], owner: Option<&bytes::Bytes>) {
        let cap = self.cap as u64;
        let Some(chain) = self.chain.as_mut() else {
            return;
        };
        let piece = owner
            .and_then(|o| {
                if !within(o, bytes) {
                    return None;
                }
                let base = o.as_ptr() as usize;
                if chain.buffers.last().map(|b| b.as_ptr() as usize) != Some(base) {
                    if chain.held >= cap + cap / HEADER_ROOM {
                        return None;
                    }
                    chain.held += o.len() as u64;
                    chain.buffers.push(o.clone());
                }
                Some(Piece::Slice {
                    buffer: u32::try_from(chain.buffers.len() - 1).ok()?,
                    start: u32::try_from(bytes.as_ptr() as usize - base).ok()?,
                    len: u32::try_from(bytes.len()).ok()?,
                })
            })
            .unwrap_or_else(|| {
                chain.held += bytes.len() as u64;
                Piece::Copy(bytes::Bytes::copy_from_slice(bytes))
            });
        if chain.pieces.is_empty() {
            // Room for as many pieces as packets of this size make the
            // message (at most PIECES_RESERVED): no regrowth per message in
            // the common case.
            let n = (self.length as usize).div_ceil(bytes.len().max(1));
            chain.pieces.reserve(n.min(PIECES_RESERVED));
        }
        // Bytes arriving in order go at the end; a gap filled goes between.
        let i = match chain.pieces.last() {
            Some(&(last, _)) if last > at => chain.pieces.partition_point(|&(o, _)| o < at),
            _ => chain.pieces.len(),
        };
        chain.pieces.insert(i, (at, piece));
    }

    /// The pieces of a complete chained message, in order, and the
    /// receive buffers they are slices of; the message whole, in one
    /// piece, for the other storages.
    pub(crate) fn into_chain(mut self) -> ChainParts {
        match self.chain.take() {
            Some(chain) => ChainParts {
                pieces: chain.pieces.into_iter().map(|(_, p)| p).collect(),
                buffers: chain.buffers,
            },
            None => ChainParts {
                pieces: vec![Piece::Copy(bytes::Bytes::from(self.into_vec()))],
                buffers: Vec::new(),
            },
        }
    }

    /// True if the message is kept as a chain ([`MsgIn::chained`]).
    pub(crate) fn is_chained(&self) -> bool {
        self.chain.is_some()
    }

    /// The assembled message's storage. Call only when complete. A
    /// message of one page (a short or a contiguous one) is handed over as
    /// it is; a longer one is copied once into contiguous storage; one not
    /// stored is zeros (allocated zeroed: large ones are untouched pages).
    pub(crate) fn into_vec(mut self) -> Vec<u8> {
        debug_assert!(self.is_complete() && self.recv_end == self.length);
        if !self.store {
            return vec![0; self.length as usize];
        }
        if let Some(chain) = self.chain.take() {
            let mut out = Vec::with_capacity(self.length as usize);
            for (_, p) in &chain.pieces {
                out.extend_from_slice(p.bytes(&chain.buffers).unwrap_or_default());
            }
            return out;
        }
        if self.pages.len() == 1 {
            return self.pages.pop().unwrap_or_default();
        }
        let mut out = Vec::with_capacity(self.length as usize);
        for p in &self.pages {
            out.extend_from_slice(p);
        }
        out
    }

    /// A message received without storage, up to [`SHARED_ZEROS`] bytes
    /// long: its bytes as a slice of zeros shared by every such message
    /// (nothing allocated, written or made resident). Others: `None`, and
    /// [`MsgIn::into_vec`] gives their bytes.
    pub(crate) fn shared_zeros(&self) -> Option<bytes::Bytes> {
        static ZEROS: std::sync::OnceLock<bytes::Bytes> = std::sync::OnceLock::new();
        let len = self.length as usize;
        if self.store || len > SHARED_ZEROS {
            return None;
        }
        // Allocated zeroed: pages nobody writes or reads stay unbacked.
        let zeros = ZEROS.get_or_init(|| bytes::Bytes::from(vec![0u8; SHARED_ZEROS]));
        Some(zeros.slice(..len))
    }

    /// The assembled message. Call only when complete.
    #[cfg(test)]
    pub(crate) fn into_bytes(self) -> bytes::Bytes {
        bytes::Bytes::from(self.into_vec())
    }

    /// Address of the first page's storage (tests: nothing moves).
    #[cfg(test)]
    fn first_byte_addr(&self) -> usize {
        self.pages.first().map_or(0, |p| p.as_ptr() as usize)
    }

    /// Bytes of storage allocated (tests: memory follows arrivals).
    #[cfg(test)]
    fn allocated(&self) -> usize {
        self.pages.iter().map(Vec::capacity).sum()
    }

    /// [`MsgIn::new`] without the contiguous reservation (tests of the
    /// paged storage).
    #[cfg(test)]
    fn paged(length: u32, incoming: u32) -> MsgIn {
        MsgIn::with_reservations(length, incoming, Instant::ZERO, &Reservations::new(0), true)
    }

    /// Bytes of memory a chained message's pieces hold (tests).
    #[cfg(test)]
    fn held(&self) -> u64 {
        self.chain.as_ref().map_or(0, |c| c.held)
    }

    /// Bytes written into the storage (tests: never past `recv_end`).
    #[cfg(test)]
    fn written(&self) -> usize {
        self.pages.iter().map(Vec::len).sum()
    }

    /// True if the message has contiguous storage.
    #[cfg(test)]
    fn contiguous(&self) -> bool {
        self.page != PAGE
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
        m.add(start, &bytes(start..end), 100, Instant::ZERO, UNKNOWN_LEVEL)
    }

    fn ranges(m: &MsgIn) -> Vec<(u32, u32)> {
        m.gaps().iter().map(|g| (g.start, g.end)).collect()
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
        assert_eq!(ranges(&m), vec![(0, 20)]);
        add(&mut m, 40, 50);
        assert_eq!(ranges(&m), vec![(0, 20), (30, 40)]);
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
        assert_eq!(ranges(&m), vec![(0, 10), (20, 30)]);
    }

    #[test]
    fn add__packet_straddles_start_of_gap() {
        let mut m = msg(40);
        add(&mut m, 0, 10);
        add(&mut m, 30, 40);
        // Gap is [10, 30); packet [5, 15) overlaps received [5,10).
        assert_eq!(add(&mut m, 5, 15), AddOutcome::Accepted(5));
        assert_eq!(ranges(&m), vec![(15, 30)]);
    }

    #[test]
    fn add__packet_extends_past_gap() {
        let mut m = msg(40);
        add(&mut m, 0, 10);
        add(&mut m, 20, 30);
        // Gap [10,20); packet [15, 35) fills [15,20) and extends to 35.
        assert_eq!(add(&mut m, 15, 35), AddOutcome::Accepted(10));
        assert_eq!(ranges(&m), vec![(10, 15)]);
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
        assert_eq!(
            m.add(15, &bytes(15..25), 100, Instant::ZERO, UNKNOWN_LEVEL),
            AddOutcome::OutOfRange
        );
        assert_eq!(m.bytes_remaining(), 20);
    }

    #[test]
    fn add__gap_limit_drops_packet() {
        let mut m = msg(100);
        assert_eq!(
            m.add(10, &bytes(10..20), 1, Instant::ZERO, UNKNOWN_LEVEL),
            AddOutcome::Accepted(10)
        );
        assert_eq!(
            m.add(30, &bytes(30..40), 1, Instant::ZERO, UNKNOWN_LEVEL),
            AddOutcome::TooManyGaps
        );
        // Filling without new gaps still works at the limit.
        assert_eq!(
            m.add(20, &bytes(20..30), 1, Instant::ZERO, UNKNOWN_LEVEL),
            AddOutcome::Accepted(10)
        );
        // Splitting the remaining gap [0,10) would need a second gap.
        assert_eq!(
            m.add(4, &bytes(4..6), 1, Instant::ZERO, UNKNOWN_LEVEL),
            AddOutcome::TooManyGaps
        );
        assert_eq!(
            m.add(0, &bytes(0..5), 1, Instant::ZERO, UNKNOWN_LEVEL),
            AddOutcome::Accepted(5)
        );
    }

    #[test]
    fn all_granted_received__tracks_gaps_and_grant() {
        let mut m = MsgIn::new(100, 20, Instant::ZERO);
        assert_eq!(m.granted(), 20);
        add(&mut m, 10, 20);
        assert!(!m.all_granted_received());
        add(&mut m, 0, 10);
        assert!(m.all_granted_received());
        m.set_granted(40);
        assert!(!m.all_granted_received());
    }

    #[test]
    fn add__records_lowest_level_beyond_each_gap() {
        let mut m = MsgIn::new(100_000, 10_000, Instant::ZERO);
        m.add(0, &bytes(0..1000), 100, Instant::ZERO, 5);
        m.add(2000, &bytes(2000..3000), 100, Instant::ZERO, 5);
        assert_eq!(m.gaps()[0].beyond_level, 5);
        assert_eq!(m.unsched_level, 5);
        m.set_granted(50_000);
        m.min_grant_level = 2;
        m.add(12_000, &bytes(12_000..13_000), 100, Instant::ZERO, 2);
        // The first gap saw a level-2 packet beyond it; the new one opened
        // with it.
        assert_eq!(m.gaps()[0].beyond_level, 2);
        assert_eq!(m.gaps()[1].beyond_level, 2);
        assert_eq!(m.level_floor(1000, 2000), 5, "unscheduled hole");
        assert_eq!(m.level_floor(3000, 12_000), 2, "straddles into scheduled");
    }

    /// Raising the grant allocates nothing and moves nothing: bytes
    /// already received stay where they are, and memory follows the bytes
    /// that arrived, not the grant.
    #[test]
    fn set_granted__does_not_move_or_allocate() {
        let mut m = MsgIn::new(10_000_000, 10_000, Instant::ZERO);
        add(&mut m, 0, 1000);
        let before = m.first_byte_addr();
        let held = m.allocated();
        for g in (1..100).map(|i| 10_000 + i * 100_000) {
            m.set_granted(g);
        }
        assert_eq!(m.first_byte_addr(), before);
        assert_eq!(m.allocated(), held);
        assert!(held <= PAGE, "{held}");
        // Bytes far into the message take pages as they arrive.
        add(&mut m, 5_000_000, 5_001_000);
        assert!(m.allocated() <= 5_001_000 + PAGE);
        assert_eq!(m.first_byte_addr(), before);
    }

    #[test]
    fn into_vec__pages_assemble_in_order() {
        let len = 3 * PAGE as u32 + 17;
        let mut m = MsgIn::paged(len, len);
        // Out of order, across page boundaries, with a gap filled last.
        add(&mut m, PAGE as u32 - 5, 2 * PAGE as u32 + 3);
        add(&mut m, 2 * PAGE as u32 + 100, len);
        add(&mut m, 0, PAGE as u32 - 5);
        assert_eq!(
            add(&mut m, 2 * PAGE as u32, 2 * PAGE as u32 + 100),
            AddOutcome::Accepted(97)
        );
        assert!(m.is_complete());
        assert_eq!(&m.into_bytes()[..], &bytes(0..len)[..]);
    }

    #[test]
    fn new__contiguous_up_to_the_ratio_of_the_first_charge() {
        // One page anyway.
        assert!(!MsgIn::new(PAGE as u32, 1000, Instant::ZERO).contiguous());
        // 1 MB with 60 kB unscheduled: charged 60 kB + the grant slack.
        let m = MsgIn::new(1_000_000, 60_000, Instant::ZERO);
        assert!(m.contiguous());
        assert_eq!(m.allocated(), 1_000_000);
        assert_eq!(m.written(), 0, "reserved, nothing written");
        let cap = MsgIn::capacity_for(4 << 20, 10_000) as u64;
        let at = (cap * CONTIGUOUS_RATIO) as u32;
        assert!(MsgIn::new(at, 10_000, Instant::ZERO).contiguous());
        assert!(!MsgIn::new(at + 1, 10_000, Instant::ZERO).contiguous());
    }

    /// Packets of 1400 bytes arrive shuffled (so GRO batches and pages are
    /// crossed anywhere), a tenth of them lost and sent again later, a
    /// fifth duplicated: the message is byte-exact, with both storages;
    /// nothing is ever written past the highest byte received; and a
    /// contiguous message is handed over in the storage it was received
    /// in (no second copy).
    #[test]
    fn into_vec__byte_exact_out_of_order_duplicated_and_lost_in_both_storages() {
        let len = 3 * PAGE as u32 + 1017;
        for contiguous in [true, false] {
            for seed in 0..20 {
                let mut rng = crate::Rng::new(seed);
                let mut m = if contiguous {
                    MsgIn::new(len, len, Instant::ZERO)
                } else {
                    MsgIn::paged(len, len)
                };
                assert_eq!(m.contiguous(), contiguous);
                let mut order: Vec<u32> = (0..len.div_ceil(1400)).collect();
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.below(i as u64 + 1) as usize);
                }
                let mut lost = Vec::new();
                for &k in &order {
                    let (s, e) = (k * 1400, ((k + 1) * 1400).min(len));
                    if rng.chance(0.1) {
                        lost.push((s, e));
                        continue;
                    }
                    assert!(matches!(add(&mut m, s, e), AddOutcome::Accepted(_)));
                    if rng.chance(0.2) {
                        assert_eq!(add(&mut m, s, e), AddOutcome::Duplicate);
                    }
                    assert!(m.written() <= m.recv_end() as usize);
                }
                for (s, e) in lost {
                    assert!(!m.is_complete());
                    assert!(matches!(add(&mut m, s, e), AddOutcome::Accepted(_)));
                }
                assert!(m.is_complete());
                let storage = m.first_byte_addr();
                let v = m.into_vec();
                assert_eq!(v, bytes(0..len), "seed {seed} contiguous {contiguous}");
                assert_eq!(v.as_ptr() as usize == storage, contiguous, "seed {seed}");
            }
        }
    }

    /// Contiguous storage is reserved while the bound has room, messages
    /// past it are paged, and a message gives its share back when it is
    /// dropped or delivered.
    #[test]
    fn with_reservations__paged_past_the_bound_and_shares_given_back() {
        let len = 4 * PAGE as u32;
        let r = Reservations::new(2 * len as u64);
        let a = MsgIn::with_reservations(len, len, Instant::ZERO, &r, true);
        let b = MsgIn::with_reservations(len, len, Instant::ZERO, &r, true);
        let c = MsgIn::with_reservations(len, len, Instant::ZERO, &r, true);
        assert!(a.contiguous() && b.contiguous() && !c.contiguous());
        assert_eq!(r.reserved(), 2 * len as u64);
        drop(a);
        assert_eq!(r.reserved(), len as u64);
        let mut d = MsgIn::with_reservations(len, len, Instant::ZERO, &r, true);
        assert!(d.contiguous());
        add(&mut d, 0, len);
        let v = d.into_vec();
        assert_eq!(v.len(), len as usize);
        assert_eq!(r.reserved(), len as u64, "delivered: only b's share left");
        drop((b, c));
        assert_eq!(r.reserved(), 0);
    }

    /// Senders start a thousand 1 MB messages with a 1400-byte unscheduled
    /// claim and send only the first packet: each is charged about 66 kB,
    /// within the budget, and reserved its whole megabyte of contiguous
    /// storage. Storage reused from freed messages may already be resident,
    /// so the reservations must stay bounded as a whole (by one socket's
    /// budget), not 16 times the budget.
    #[test]
    fn contiguous_storage__bounded_as_a_whole_against_senders_starting_many_messages() {
        use crate::wire::{Body, DataHeader, Repr};
        let config = crate::Config::default();
        let budget = config.socket_rx_budget;
        let mut ep = crate::Endpoint::new(config, 3).unwrap();
        ep.open_socket(4000).unwrap();
        ep.set_server(4000, true).unwrap();
        let incarnation = ep.incarnation();
        let src: core::net::SocketAddr = "10.0.0.9:40000".parse().unwrap();
        let mut admitted = 0;
        for k in 0..1000u64 {
            let mut packet = Repr {
                sport: 40_000,
                dport: 4000,
                sender_id: 1000 + 2 * k,
                incarnation,
                body: Body::Data(DataHeader {
                    message_length: 1 << 20,
                    incoming: 1400,
                    ..Default::default()
                }),
            }
            .to_vec();
            packet.extend_from_slice(&[7; 1400]);
            ep.handle_datagram(Instant::ZERO, src, &packet);
        }
        let mut reserved = 0;
        for (_, rpc) in ep.rpcs.iter() {
            if let Some(m) = &rpc.msgin {
                admitted += 1;
                reserved += m.allocated() as u64;
            }
        }
        assert!(admitted > 500, "only {admitted} messages admitted");
        assert!(
            reserved <= budget + (admitted as u64) * PAGE as u64,
            "{admitted} messages reserved {} MB for a {} MB budget",
            reserved >> 20,
            budget >> 20
        );
    }

    #[test]
    fn new__unsched_past_end_of_message() {
        let m = MsgIn::new(10, 1000, Instant::ZERO);
        assert_eq!(m.granted(), 10);
        assert_eq!(m.buffer_len(), 10);
    }

    #[test]
    fn add__packet_starting_beyond_grant_is_refused() {
        let mut m = MsgIn::new(1 << 24, 1000, Instant::ZERO);
        // The buffer follows the grant, not the claimed length.
        assert_eq!(m.buffer_len(), 1000 + GRANT_SLACK);
        assert_eq!(add(&mut m, 1000, 1100), AddOutcome::BeyondGrant);
        // A packet starting below the grant may end past it.
        assert_eq!(add(&mut m, 900, 2400), AddOutcome::Accepted(1500));
        assert_eq!(m.set_granted(100_000), 99_000);
        assert_eq!(m.buffer_len(), 100_000 + GRANT_SLACK);
        assert_eq!(m.set_granted(50), 0, "never lowers");
        assert_eq!(add(&mut m, 2400, 3000), AddOutcome::Accepted(600));
    }

    /// Without storage a message takes the same packets the same way:
    /// every outcome, gap and count as with storage, shuffled, duplicated
    /// and lost packets alike, in either storage; nothing is allocated or
    /// written, the reservation is taken all the same, and the message
    /// comes out as zeros of its length.
    #[test]
    fn add__without_storage_same_outcomes_nothing_kept() {
        let len = 3 * PAGE as u32 + 1017;
        for contiguous in [true, false] {
            for seed in 0..10 {
                let mut rng = crate::Rng::new(seed);
                let limit = if contiguous { u64::MAX } else { 0 };
                let (rs, rd) = (Reservations::new(limit), Reservations::new(limit));
                let mut kept = MsgIn::with_reservations(len, 20_000, Instant::ZERO, &rs, true);
                let mut counted = MsgIn::with_reservations(len, 20_000, Instant::ZERO, &rd, false);
                assert_eq!(rs.reserved(), rd.reserved());
                assert_eq!(kept.contiguous(), counted.contiguous());
                assert_eq!(kept.buffer_len(), counted.buffer_len());
                kept.set_granted(len);
                counted.set_granted(len);
                let mut order: Vec<u32> = (0..len.div_ceil(1400)).collect();
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.below(i as u64 + 1) as usize);
                }
                let mut later = Vec::new();
                for &k in &order {
                    let (s, e) = (k * 1400, ((k + 1) * 1400).min(len));
                    if rng.chance(0.1) {
                        later.push((s, e));
                        continue;
                    }
                    let twice = if rng.chance(0.2) { 2 } else { 1 };
                    for _ in 0..twice {
                        assert_eq!(add(&mut kept, s, e), add(&mut counted, s, e));
                    }
                    assert_eq!(ranges(&kept), ranges(&counted));
                    assert_eq!(kept.received(), counted.received());
                }
                for (s, e) in later {
                    assert_eq!(add(&mut kept, s, e), add(&mut counted, s, e));
                }
                assert!(kept.is_complete() && counted.is_complete());
                assert_eq!((counted.allocated(), counted.written()), (0, 0));
                assert!(kept.shared_zeros().is_none());
                let shared = counted.shared_zeros().expect("not stored");
                assert_eq!(&shared[..], &vec![0; len as usize][..]);
                assert_eq!(kept.into_vec(), bytes(0..len));
                assert_eq!(counted.into_vec(), vec![0; len as usize]);
            }
        }
    }

    /// Endpoints with `discard_payload` send exactly the packets storing
    /// ones do for the same exchange (grants and all), and deliver the
    /// message as zeros of its length.
    #[test]
    fn discard_payload__same_packets_message_delivered_as_zeros() {
        use crate::{Config, Event};
        let message = bytes(0..300_000);
        let run = |discard: bool| {
            let config = Config {
                max_gso_bytes: 0,
                pacer: false,
                discard_payload: discard,
                ..Config::default()
            };
            let (trace, _, mut server) = exchange(config, &message, false);
            let Some(Event::Request { data, .. }) = server.poll_event() else {
                panic!("no request delivered");
            };
            (trace, data, server.stats().grants)
        };
        let (kept, data, grants) = run(false);
        let (counted, zeros, grants_counted) = run(true);
        assert!(grants > 0 && kept.len() > 200);
        assert_eq!(grants, grants_counted);
        assert!(kept == counted, "the packets differ");
        assert_eq!(&data[..], &message[..]);
        assert_eq!(&zeros[..], &vec![0; message.len()][..]);
    }

    /// One request of `message` from a client endpoint to a server
    /// endpoint, both built with `config`, exchanged at one instant until
    /// both are quiet. The server gets each client datagram through
    /// `handle_datagram_shared` when `shared`, else `handle_datagram`.
    /// Returns every datagram sent (both ways, in order), the client's
    /// datagrams as the server received them, and the server.
    fn exchange(
        config: crate::Config,
        message: &[u8],
        shared: bool,
    ) -> (Vec<Vec<u8>>, Vec<bytes::Bytes>, crate::Endpoint) {
        let caddr: core::net::SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let saddr: core::net::SocketAddr = "10.0.0.2:99".parse().unwrap();
        let mut client = crate::Endpoint::new(config.clone(), 1).unwrap();
        let mut server = crate::Endpoint::new(config, 2).unwrap();
        client.open_socket(caddr.port()).unwrap();
        server.open_socket(saddr.port()).unwrap();
        server.set_server(saddr.port(), true).unwrap();
        let now = Instant::ZERO;
        let payload = bytes::Bytes::copy_from_slice(message);
        client
            .send_request(now, caddr.port(), saddr, payload)
            .unwrap();
        let (mut buf, mut trace, mut received) = (Vec::new(), Vec::new(), Vec::new());
        loop {
            let mut quiet = true;
            while client.poll_transmit(now, &mut buf).is_some() {
                let datagram = bytes::Bytes::from(buf.clone());
                if shared {
                    server.handle_datagram_shared(now, caddr, None, &datagram);
                } else {
                    server.handle_datagram(now, caddr, &datagram);
                }
                trace.push(buf.clone());
                received.push(datagram);
                quiet = false;
            }
            while server.poll_transmit(now, &mut buf).is_some() {
                client.handle_datagram(now, saddr, &buf);
                trace.push(buf.clone());
                quiet = false;
            }
            if quiet {
                break;
            }
        }
        (trace, received, server)
    }

    /// A packet of [`receive_buffers`]: (offset, buffer index, start of
    /// the payload in the buffer, payload length).
    type Packet = (u32, usize, usize, usize);

    /// What a receiver's buffers look like: each datagram (or GRO batch)
    /// in a buffer of its own, its packets `segment` bytes apart, each a
    /// 56-byte header then its payload of at most `segment - 56` bytes.
    /// Returns the buffers and, per packet, (offset, buffer index, start
    /// of the payload in the buffer, payload length).
    fn receive_buffers(
        len: u32,
        segment: usize,
        per_buffer: usize,
    ) -> (Vec<bytes::Bytes>, Vec<Packet>) {
        let payload = (segment - 56) as u32;
        let message = bytes(0..len);
        let mut buffers = Vec::new();
        let mut packets = Vec::new();
        let mut current = Vec::new();
        for (k, off) in (0..len).step_by(payload as usize).enumerate() {
            let n = payload.min(len - off) as usize;
            current.extend_from_slice(&[0xee; 56]);
            packets.push((off, buffers.len(), current.len(), n));
            current.extend_from_slice(&message[off as usize..off as usize + n]);
            if (k + 1) % per_buffer == 0 {
                buffers.push(bytes::Bytes::from(std::mem::take(&mut current)));
            }
        }
        if !current.is_empty() {
            buffers.push(bytes::Bytes::from(current));
        }
        (buffers, packets)
    }

    /// Adds packet `p` of [`receive_buffers`], kept in its buffer if the
    /// message can.
    fn add_packet(m: &mut MsgIn, buffers: &[bytes::Bytes], p: Packet) -> AddOutcome {
        let (off, b, at, n) = p;
        let buf = &buffers[b];
        m.add_from(
            off,
            &buf[at..at + n],
            Some(buf),
            1000,
            Instant::ZERO,
            UNKNOWN_LEVEL,
        )
    }

    /// True if `chunk` lies inside one of `buffers` (was not copied).
    fn inside(chunk: &bytes::Bytes, buffers: &[bytes::Bytes]) -> bool {
        let p = chunk.as_ptr() as usize;
        buffers.iter().any(|b| {
            let base = b.as_ptr() as usize;
            p >= base && p + chunk.len() <= base + b.len()
        })
    }

    /// A 1 MB message whose packets arrive in order, at MTU 65 535 (one
    /// packet per datagram) and 1500 (GRO batches of 44 packets): it is
    /// delivered as slices of the buffers its packets arrived in, byte
    /// for byte, without copying a byte, and it pins no more buffer bytes
    /// than it is charged.
    #[test]
    fn chained__in_order_message_is_slices_of_its_receive_buffers() {
        let len = 1_000_000;
        for (segment, per_buffer) in [(65_507, 1), (1500, 44)] {
            let (buffers, packets) = receive_buffers(len, segment, per_buffer);
            let mut m = MsgIn::chained(len, 60_000, Instant::ZERO);
            m.set_granted(len);
            for &p in &packets {
                assert!(matches!(
                    add_packet(&mut m, &buffers, p),
                    AddOutcome::Accepted(_)
                ));
                let cap = m.buffer_len() as u64;
                let bound = cap + cap / HEADER_ROOM + (segment * per_buffer) as u64;
                assert!(m.held() <= bound, "{} > {bound}", m.held());
            }
            assert!(m.is_complete());
            let chain = m.into_chain().into_pieces();
            let copied: usize = chain
                .iter()
                .filter(|c| !inside(c, &buffers))
                .map(|c| c.len())
                .sum();
            assert_eq!(copied, 0, "segment {segment}: {copied} bytes copied");
            assert_eq!(chain.concat(), bytes(0..len), "segment {segment}");
        }
    }

    /// Packets arrive shuffled (across GRO batch boundaries), a fifth of
    /// them twice, a tenth lost and sent again later each in a buffer of
    /// its own; at MTU 1500 and 65 535: the message is byte-exact, the
    /// first copies of packets are kept in their buffers, and the pinned
    /// bytes never pass the charge.
    #[test]
    fn chained__byte_exact_reordered_duplicated_and_lost() {
        let len = 700_001;
        for (segment, per_buffer) in [(65_507, 1), (1500, 44)] {
            for seed in 0..10 {
                let mut rng = crate::Rng::new(seed);
                let (buffers, packets) = receive_buffers(len, segment, per_buffer);
                let mut m = MsgIn::chained(len, 60_000, Instant::ZERO);
                m.set_granted(len);
                let mut order: Vec<usize> = (0..packets.len()).collect();
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.below(i as u64 + 1) as usize);
                }
                let mut lost = Vec::new();
                for &k in &order {
                    if rng.chance(0.1) {
                        lost.push(packets[k]);
                        continue;
                    }
                    let r = add_packet(&mut m, &buffers, packets[k]);
                    assert!(matches!(r, AddOutcome::Accepted(_)), "{r:?}");
                    if rng.chance(0.2) {
                        assert_eq!(
                            add_packet(&mut m, &buffers, packets[k]),
                            AddOutcome::Duplicate
                        );
                    }
                    let cap = m.buffer_len() as u64;
                    let bound = cap + cap / HEADER_ROOM + (segment * per_buffer) as u64;
                    assert!(m.held() <= bound + m.received() as u64);
                }
                // The lost packets come again, each in a buffer of its own.
                let mut resent = Vec::new();
                for (off, b, at, n) in lost {
                    assert!(!m.is_complete());
                    let mut own = vec![0xee; 56];
                    own.extend_from_slice(&buffers[b][at..at + n]);
                    resent.push(bytes::Bytes::from(own));
                    let r = add_packet(&mut m, &resent, (off, resent.len() - 1, 56, n));
                    assert!(matches!(r, AddOutcome::Accepted(_)), "{r:?}");
                }
                assert!(m.is_complete());
                let chain = m.into_chain().into_pieces();
                let all: Vec<bytes::Bytes> = buffers.iter().chain(&resent).cloned().collect();
                assert!(
                    chain.iter().any(|c| inside(c, &all)),
                    "nothing kept in place"
                );
                assert_eq!(
                    chain.concat(),
                    bytes(0..len),
                    "segment {segment} seed {seed}"
                );
            }
        }
    }

    /// Packets that each pin a large buffer for a few bytes of the message
    /// are copied once the pinned bytes would pass the charge: a message
    /// never holds much more memory than it is charged for.
    #[test]
    fn chained__copies_rather_than_pin_past_the_charge() {
        let len = 200_000;
        let mut m = MsgIn::chained(len, len, Instant::ZERO);
        let message = bytes(0..len);
        let mut buffers = Vec::new();
        for off in (0..len).step_by(1000) {
            // 1000 bytes at the start of a 64 KiB buffer.
            let mut b = message[off as usize..off as usize + 1000].to_vec();
            b.resize(65_536, 0);
            buffers.push(bytes::Bytes::from(b));
            let buf = buffers.last().unwrap();
            let r = m.add_from(
                off,
                &buf[..1000],
                Some(buf),
                10,
                Instant::ZERO,
                UNKNOWN_LEVEL,
            );
            assert_eq!(r, AddOutcome::Accepted(1000));
            let cap = m.buffer_len() as u64;
            assert!(m.held() <= cap + cap / HEADER_ROOM + 65_536 + m.received() as u64);
        }
        let chain = m.into_chain().into_pieces();
        let kept = chain.iter().filter(|c| inside(c, &buffers)).count();
        assert!(kept > 0 && kept < 10, "{kept} pinned");
        assert_eq!(chain.concat(), message);
    }

    /// End to end through two endpoints, at MTU 1500 and 65 535: a
    /// request handed to the server in its receive buffers
    /// (`handle_datagram_shared`) is delivered byte-exact as pieces of
    /// those buffers; the same exchange through `handle_datagram` sends
    /// the same packets and delivers one contiguous copy.
    #[test]
    fn handle_datagram_shared__message_delivered_in_the_buffers_it_arrived_in() {
        use crate::{Config, Event};
        let message = bytes(0..1_000_000);
        for mtu in [1500, crate::config::MAX_MTU] {
            let run = |shared: bool| {
                let config = Config {
                    mtu,
                    max_gso_bytes: 0,
                    pacer: false,
                    ..Config::default()
                };
                let (trace, received, mut server) = exchange(config, &message, shared);
                let Some(Event::Request { data, more, .. }) = server.poll_event() else {
                    panic!("no request delivered");
                };
                let pieces: Vec<bytes::Bytes> = std::iter::once(data).chain(more).collect();
                (trace, pieces, received)
            };
            let (copied_trace, copied, _) = run(false);
            let (shared_trace, pieces, buffers) = run(true);
            assert!(
                copied_trace == shared_trace,
                "mtu {mtu}: the packets differ"
            );
            assert_eq!(copied.len(), 1);
            assert_eq!(copied[0], message);
            assert!(pieces.len() > 1, "mtu {mtu}");
            assert_eq!(pieces.concat(), message, "mtu {mtu}");
            let copied: usize = pieces
                .iter()
                .filter(|c| !inside(c, &buffers))
                .map(|c| c.len())
                .sum();
            assert_eq!(copied, 0, "mtu {mtu}: {copied} bytes copied");
        }
    }
}
