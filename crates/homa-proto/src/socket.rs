//! Per-socket state: whether the socket serves requests, its receive-memory
//! budget, its send cap, and output commit (plug/release epochs).
//!
//! # Receive memory
//!
//! A socket's receive memory is the buffers of incoming messages being
//! assembled for it plus the delivered messages its application still
//! holds. Delivered message bytes carry a drop guard: when the application
//! drops the last [`Bytes`] handle of a message, the socket's `held` count
//! falls. When the total reaches `Config::socket_rx_budget` the endpoint
//! grants nothing more to that socket's messages and new messages wait,
//! without a buffer, in SRPT order (their packets are dropped); when memory
//! frees, the shortest waiting message gets its buffer and a RESEND for
//! everything its sender sent (`docs/protocol.md`, "Receive memory").
//! Nothing is lost, and an application that stops reading slows its senders
//! instead of growing memory. Each delivered message counts
//! [`DELIVERED_OVERHEAD`] bytes beyond its length, so that a flood of tiny
//! messages exhausts the budget as well (and slows its senders) before the
//! bookkeeping of held messages grows large.
//!
//! # Send cap
//!
//! Bytes of the socket's outgoing messages that are not yet freed
//! (untransmitted, or transmitted but not acknowledged) are capped by
//! `Config::max_tx_bytes_per_socket`; a send that would exceed it fails with
//! [`Error::WouldBlock`](crate::Error::WouldBlock) (a single message may
//! exceed the cap when nothing else is outstanding), and an
//! [`Event::Writable`](crate::Event::Writable) follows when room frees.
//!
//! # Output commit
//!
//! Modelled on Linux's `sch_plug`: [`Endpoint::plug`] starts a new epoch;
//! messages sent while plugged belong to the current epoch and are held: no
//! packet of them leaves, and their timers do not run.
//! [`Endpoint::release_one`] releases the oldest *closed* epoch (one a later
//! `plug` ended); [`Endpoint::release_all`] releases everything and stops
//! holding until the next `plug`. Released messages become transmittable in
//! the order they were sent; epochs are released strictly in order.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::endpoint::{Endpoint, Error};
use crate::rpc::msgin::ChainParts;

/// Bytes of receive budget a delivered message takes beyond its length
/// while the application holds it: an estimate of the memory around each
/// message (its allocation, the handle, a runtime's queue entry).
pub const DELIVERED_OVERHEAD: u64 = 1024;

/// State of one socket.
#[derive(Debug)]
pub(crate) struct Socket {
    /// Accepts requests.
    pub server: bool,
    /// Delivered message bytes the application still holds, with
    /// [`DELIVERED_OVERHEAD`] for each message.
    pub held: Arc<AtomicU64>,
    /// Buffer bytes of incoming messages being assembled for this socket.
    pub assembling: u64,
    /// Bytes of outgoing messages not yet freed.
    pub tx_bytes: u64,
    /// A send was refused for lack of room; report when room frees.
    pub tx_blocked: bool,
    /// Output commit: true while new messages are held.
    pub plugged: bool,
    /// Held messages by epoch, oldest first: (RPC key, RPC seq).
    pub epochs: VecDeque<Vec<(usize, u64)>>,
}

/// Sockets up to this many are found by a scan, more by binary search.
const SCAN_MAX: usize = 8;

/// The endpoint's sockets by port: a vector sorted by port. An endpoint
/// usually has one socket or a few, and every datagram, send and delivery
/// looks its socket up several times: comparing a port or two costs less
/// than hashing it (the hash map this replaced cost ~25 instructions per
/// lookup). Many sockets are found by binary search; opening and closing
/// one moves the entries after it (rare next to lookups).
#[derive(Debug, Default)]
pub(crate) struct SocketTable {
    entries: Vec<(u16, Socket)>,
}

impl SocketTable {
    /// Where `port` is, or where it would go.
    #[inline]
    fn find(&self, port: u16) -> Result<usize, usize> {
        if self.entries.len() <= SCAN_MAX {
            match self.entries.iter().position(|e| e.0 >= port) {
                Some(i) if self.entries[i].0 == port => Ok(i),
                Some(i) => Err(i),
                None => Err(self.entries.len()),
            }
        } else {
            self.entries.binary_search_by_key(&port, |e| e.0)
        }
    }

    /// Number of sockets.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if socket `port` is open.
    #[inline]
    pub(crate) fn contains_key(&self, port: &u16) -> bool {
        self.find(*port).is_ok()
    }

    /// Socket `port`.
    #[inline]
    pub(crate) fn get(&self, port: &u16) -> Option<&Socket> {
        let i = self.find(*port).ok()?;
        Some(&self.entries[i].1)
    }

    /// Socket `port`, mutable.
    #[inline]
    pub(crate) fn get_mut(&mut self, port: &u16) -> Option<&mut Socket> {
        let i = self.find(*port).ok()?;
        Some(&mut self.entries[i].1)
    }

    /// Adds (or replaces) socket `port`; returns the replaced one.
    pub(crate) fn insert(&mut self, port: u16, socket: Socket) -> Option<Socket> {
        match self.find(port) {
            Ok(i) => Some(core::mem::replace(&mut self.entries[i].1, socket)),
            Err(i) => {
                self.entries.insert(i, (port, socket));
                None
            }
        }
    }

    /// Removes socket `port`.
    pub(crate) fn remove(&mut self, port: &u16) -> Option<Socket> {
        let i = self.find(*port).ok()?;
        Some(self.entries.remove(i).1)
    }
}

impl Socket {
    pub(crate) fn new(server: bool) -> Socket {
        Socket {
            server,
            held: Arc::new(AtomicU64::new(0)),
            assembling: 0,
            tx_bytes: 0,
            tx_blocked: false,
            plugged: false,
            epochs: VecDeque::new(),
        }
    }

    /// Receive memory in use: assembling plus held by the application.
    pub(crate) fn rx_used(&self) -> u64 {
        self.assembling + self.held.load(Ordering::Relaxed)
    }

    /// Wraps a delivered message so that dropping it returns its bytes to
    /// this socket's budget.
    pub(crate) fn deliver(&self, data: Vec<u8>) -> Bytes {
        self.wrap(data)
    }

    /// [`Socket::deliver`] for a message in shared storage.
    pub(crate) fn deliver_shared(&self, data: Bytes) -> Bytes {
        self.wrap(data)
    }

    /// [`Socket::deliver`] for a chained message: each receive buffer its
    /// pieces pin is wrapped once (an allocation per buffer, up to 44
    /// packets of a GRO batch, not per piece) and the pieces become slices
    /// of the wrapped buffers. The budget counts what it did before: the
    /// bytes of the message's pieces, plus the overhead once per buffer.
    /// A copied piece is wrapped on its own.
    pub(crate) fn deliver_chain(&self, parts: ChainParts) -> Vec<Bytes> {
        parts.into_slices(
            |data, counted| self.wrap(InBuffer { data, counted }),
            |copy| self.wrap(copy),
        )
    }

    /// [`Socket::deliver`] for a message that is a slice of a packet (a
    /// single-packet message): a short one is copied into the drop guard
    /// itself, so the delivered `Bytes` costs one allocation, not two.
    #[inline]
    pub(crate) fn deliver_copy(&self, data: &[u8]) -> Bytes {
        if let Some(inline) = Inline::<SMALL_INLINE>::new(data) {
            self.wrap(inline)
        } else if let Some(inline) = Inline::<LARGE_INLINE>::new(data) {
            self.wrap(inline)
        } else {
            self.wrap(data.to_vec())
        }
    }

    fn wrap<D: Charged + Send + 'static>(&self, data: D) -> Bytes {
        self.held.fetch_add(data.charged(), Ordering::Relaxed);
        Bytes::from_owner(Delivered {
            data,
            held: self.held.clone(),
        })
    }
}

/// Largest message [`Socket::deliver_copy`] stores in its small inline
/// guard (a 100-byte RPC's). At 112 the guard (length, bytes, budget
/// handle) is 128 bytes, a size the compiler moves into `from_owner`'s box
/// with a few vector moves; a larger one went through a `memcpy` call per
/// delivered message.
const SMALL_INLINE: usize = 112;
/// Largest message stored in the larger inline guard: the guard stays
/// under 1 KiB, a size the allocator serves from its per-thread cache.
const LARGE_INLINE: usize = 928;

/// A short message stored inline.
struct Inline<const N: usize> {
    len: usize,
    buf: [u8; N],
}

impl<const N: usize> Inline<N> {
    /// `data` stored inline, if it fits.
    fn new(data: &[u8]) -> Option<Inline<N>> {
        // Checked before the buffer is zeroed: a longer message tries both
        // sizes on its way to the heap.
        if data.len() > N {
            return None;
        }
        let mut buf = [0u8; N];
        buf[..data.len()].copy_from_slice(data);
        Some(Inline {
            len: data.len(),
            buf,
        })
    }
}

impl<const N: usize> AsRef<[u8]> for Inline<N> {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Delivered storage and what it counts in the receive budget while the
/// application holds it: its bytes plus [`DELIVERED_OVERHEAD`], unless it
/// says otherwise.
trait Charged: AsRef<[u8]> {
    fn charged(&self) -> u64 {
        self.as_ref().len() as u64 + DELIVERED_OVERHEAD
    }
}

impl Charged for Vec<u8> {}
impl Charged for Bytes {}
impl<const N: usize> Charged for Inline<N> {}

/// A receive buffer that pieces of a delivered chained message are slices
/// of: it counts the message's bytes in it (`counted`), not the whole
/// buffer, which other messages' pieces may share.
struct InBuffer {
    data: Bytes,
    counted: u64,
}

impl AsRef<[u8]> for InBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Charged for InBuffer {
    fn charged(&self) -> u64 {
        self.counted + DELIVERED_OVERHEAD
    }
}

/// A delivered message's storage; dropping it releases what it counted.
struct Delivered<D: Charged> {
    data: D,
    held: Arc<AtomicU64>,
}

impl<D: Charged> AsRef<[u8]> for Delivered<D> {
    fn as_ref(&self) -> &[u8] {
        self.data.as_ref()
    }
}

impl<D: Charged> Drop for Delivered<D> {
    fn drop(&mut self) {
        self.held.fetch_sub(self.data.charged(), Ordering::Relaxed);
    }
}

impl Endpoint {
    /// Output commit: starts a new epoch on socket `port`. Messages sent
    /// from now on are held until their epoch is released.
    pub fn plug(&mut self, port: u16) -> Result<(), Error> {
        let sock = self.sockets.get_mut(&port).ok_or(Error::NoSocket(port))?;
        sock.plugged = true;
        sock.epochs.push_back(Vec::new());
        Ok(())
    }

    /// Output commit: releases the oldest closed epoch of socket `port` (one
    /// that a later [`Endpoint::plug`] ended). Returns the number of
    /// messages released (0 if no epoch is closed).
    pub fn release_one(&mut self, port: u16) -> Result<usize, Error> {
        let sock = self.sockets.get_mut(&port).ok_or(Error::NoSocket(port))?;
        if sock.epochs.len() < 2 {
            return Ok(0);
        }
        let epoch = sock.epochs.pop_front().expect("two epochs");
        Ok(self.release(epoch))
    }

    /// Output commit: releases every held message of socket `port` and stops
    /// holding until the next [`Endpoint::plug`]. Returns the number of
    /// messages released.
    pub fn release_all(&mut self, port: u16) -> Result<usize, Error> {
        let sock = self.sockets.get_mut(&port).ok_or(Error::NoSocket(port))?;
        sock.plugged = false;
        let epochs: Vec<_> = sock.epochs.drain(..).collect();
        Ok(epochs.into_iter().map(|e| self.release(e)).sum())
    }

    fn release(&mut self, epoch: Vec<(usize, u64)>) -> usize {
        let mut n = 0;
        for (key, seq) in epoch {
            if !self.live(key, seq) {
                continue;
            }
            let now = self.now;
            let rpc = &mut self.rpcs[key];
            rpc.held = false;
            rpc.heard(now);
            if let Some(m) = rpc.msgout.as_mut() {
                // The message counts as sent now (pacer FIFO share).
                m.init_time = now;
            }
            self.update_xmit(key);
            n += 1;
        }
        n
    }

    /// Puts a new outgoing message of RPC `key` into the socket's current
    /// epoch if the socket is plugged.
    #[inline(always)]
    pub(crate) fn hold_if_plugged(&mut self, port: u16, key: usize) {
        let Some(sock) = self.sockets.get_mut(&port) else {
            return;
        };
        if !sock.plugged {
            return;
        }
        let rpc = &mut self.rpcs[key];
        rpc.held = true;
        sock.epochs
            .back_mut()
            .expect("a plugged socket has an epoch")
            .push((key, rpc.seq));
    }

    /// Charges a new outgoing message to the socket's send cap, or refuses
    /// it.
    pub(crate) fn charge_tx(&mut self, port: u16, len: usize) -> Result<(), Error> {
        let cap = self.config.max_tx_bytes_per_socket;
        let sock = self.sockets.get_mut(&port).ok_or(Error::NoSocket(port))?;
        if sock.tx_bytes > 0 && sock.tx_bytes + len as u64 > cap {
            sock.tx_blocked = true;
            self.stats.sends_blocked += 1;
            return Err(Error::WouldBlock);
        }
        sock.tx_bytes += len as u64;
        Ok(())
    }

    /// Returns an outgoing message's bytes to the socket's send cap.
    pub(crate) fn uncharge_tx(&mut self, port: u16, len: u32) {
        let cap = self.config.max_tx_bytes_per_socket;
        let Some(sock) = self.sockets.get_mut(&port) else {
            return;
        };
        sock.tx_bytes = sock.tx_bytes.saturating_sub(len as u64);
        if sock.tx_blocked && sock.tx_bytes < cap {
            sock.tx_blocked = false;
            self.events.push_back(crate::Event::Writable { port });
        }
    }

    /// Bytes of outgoing messages on socket `port` not yet freed.
    pub fn tx_bytes(&self, port: u16) -> u64 {
        self.sockets.get(&port).map_or(0, |s| s.tx_bytes)
    }

    /// Receive memory in use by socket `port`: messages being assembled plus
    /// delivered messages the application still holds.
    pub fn rx_used(&self, port: u16) -> u64 {
        self.sockets.get(&port).map_or(0, |s| s.rx_used())
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;
    use crate::rpc::msgin::Piece;

    #[test]
    fn socket_table__matches_a_hash_map_with_few_and_many_sockets() {
        // A model check across the scan and the binary search: opens,
        // closes and lookups of scrambled ports, repeats and absent ones.
        let mut t = SocketTable::default();
        let mut model = std::collections::HashMap::new();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut seen_many = false;
        for step in 0..40_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Few distinct ports first, then many.
            let span = if step < 20_000 { 12 } else { 200 };
            let port = ((x % span) as u16).wrapping_mul(331);
            match (x >> 32) % 3 {
                0 => {
                    let server = x & 1 == 0;
                    let old_t = t.insert(port, Socket::new(server)).map(|s| s.server);
                    let old_m = model.insert(port, server);
                    assert_eq!(old_t, old_m, "insert {port}");
                }
                1 => {
                    let old_t = t.remove(&port).map(|s| s.server);
                    assert_eq!(old_t, model.remove(&port), "remove {port}");
                }
                _ => {
                    assert_eq!(t.contains_key(&port), model.contains_key(&port));
                    assert_eq!(t.get(&port).map(|s| s.server), model.get(&port).copied());
                    if let (Some(s), Some(m)) = (t.get_mut(&port), model.get_mut(&port)) {
                        s.server = !s.server;
                        *m = !*m;
                    }
                }
            }
            assert_eq!(t.len(), model.len());
            seen_many |= t.len() > SCAN_MAX;
        }
        assert!(seen_many, "the binary search was exercised");
        assert!(t.entries.windows(2).all(|w| w[0].0 < w[1].0), "sorted");
    }

    /// A chain of pieces from two receive buffers (one listed twice, as a
    /// revisited buffer is) and a copy: the pieces stay slices of their
    /// buffers, byte for byte; the budget counts the pieces' bytes plus the
    /// overhead once per buffer that holds pieces and once for the copy,
    /// and gets all of it back when the pieces drop, in any order.
    #[test]
    fn deliver_chain__one_wrapper_per_buffer_and_the_pieces_bytes_counted() {
        let sock = Socket::new(true);
        let a = Bytes::from((0..200u8).collect::<Vec<_>>());
        let b = Bytes::from(vec![9u8; 300]);
        let copy = Bytes::from(vec![5u8; 7]);
        let slice = |buffer, start, len| Piece::Slice { buffer, start, len };
        let parts = ChainParts {
            pieces: vec![
                slice(0, 10, 50),
                slice(0, 60, 40),
                slice(2, 0, 250),
                Piece::Copy(copy.clone()),
            ],
            buffers: vec![a.clone(), b.clone(), b.clone()],
        };
        let out = sock.deliver_chain(parts);
        assert_eq!(&out[0][..], &a[10..60]);
        assert_eq!(&out[1][..], &a[60..100]);
        assert_eq!(&out[2][..], &b[0..250]);
        assert_eq!(&out[3][..], &copy[..]);
        assert!(crate::rpc::msgin::within(&a, &out[0]) && crate::rpc::msgin::within(&a, &out[1]));
        assert!(crate::rpc::msgin::within(&b, &out[2]));
        assert_eq!(
            sock.rx_used(),
            (50 + 40 + DELIVERED_OVERHEAD) + (250 + DELIVERED_OVERHEAD) + (7 + DELIVERED_OVERHEAD)
        );
        let mut out = out;
        drop(out.remove(2));
        drop(out.remove(0));
        assert!(sock.rx_used() > 0, "a piece of buffer a is still held");
        drop(out);
        assert_eq!(sock.rx_used(), 0);
    }

    #[test]
    fn deliver_copy__small_guard_is_128_bytes_and_holds_a_100_byte_message() {
        assert_eq!(core::mem::size_of::<Delivered<Inline<SMALL_INLINE>>>(), 128);
        let sock = Socket::new(true);
        let b = sock.deliver_copy(&[7u8; 100]);
        assert_eq!(&b[..], &[7u8; 100][..]);
        assert_eq!(sock.rx_used(), 100 + DELIVERED_OVERHEAD);
        assert!(Inline::<SMALL_INLINE>::new(&[7u8; 100]).is_some(), "inline");
    }

    #[test]
    fn deliver_copy__byte_exact_and_held_until_dropped_at_every_storage_size() {
        // Around each inline size and beyond it (a heap copy).
        let lens = [
            1,
            SMALL_INLINE - 1,
            SMALL_INLINE,
            SMALL_INLINE + 1,
            LARGE_INLINE,
            LARGE_INLINE + 1,
            1400,
        ];
        let sock = Socket::new(true);
        let mut kept = Vec::new();
        let mut held = 0;
        for len in lens {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let b = sock.deliver_copy(&payload);
            assert_eq!(&b[..], &payload[..], "length {len}");
            held += len as u64 + DELIVERED_OVERHEAD;
            assert_eq!(sock.rx_used(), held);
            kept.push((b.clone(), b, len));
        }
        for (a, b, len) in kept {
            drop(a);
            assert_eq!(sock.rx_used(), held, "a clone still holds length {len}");
            drop(b);
            held -= len as u64 + DELIVERED_OVERHEAD;
            assert_eq!(sock.rx_used(), held);
        }
        assert_eq!(sock.rx_used(), 0);
    }
}
