//! The datapath: one UDP socket and what moves bytes through it, between
//! the kernel and a [`homa_proto::Endpoint`]. It owns the socket, the
//! transmit and receive buffers, the offload state (GSO on or off, the
//! socket's sticky TOS byte), the capture and the datapath's counters; it
//! knows nothing of calls, waiters or threads.
//!
//! * [`Datapath::receive`] reads one `recvmsg`/`recvmmsg` batch and hands
//!   every datagram of it to [`homa_proto::Endpoint::handle_datagram_at_level`],
//!   a GRO batch whole to
//!   [`homa_proto::Endpoint::handle_datagram_batch_at_level`] (which cuts
//!   it at its segment size); a datagram or batch of at least `KEEP_MIN`
//!   bytes goes in its receive buffer, taken from the batch, to the
//!   `_shared` variants, so a bulk message is kept where the kernel wrote
//!   it and delivered as a chain of those buffers; a full buffer returns
//!   to the socket's bounded pool when the application drops it, and
//!   the receive batch takes its replacements from there.
//! * [`Datapath::flush`] drains [`homa_proto::Endpoint::poll_transmit_packets`]
//!   into the kernel: a multi-packet transmit as one GSO send whose iovecs
//!   alternate the packets' headers and their payloads (slices of the
//!   message itself: no user-space copy), falling back to one datagram per
//!   header/payload pair if the kernel refuses GSO; a single packet of at
//!   most 4 kB is copied into one small buffer and sent with a plain
//!   `sendto` (cheaper for the kernel than a gathered `sendmsg`), a larger
//!   one (a large MTU) is gathered like a GSO batch. The transmits of one
//!   flush are polled first and then sent in order; when there are
//!   several, each run of them that fits one send (single datagrams and
//!   GSO batches, to any peers) goes to the kernel in one `sendmmsg`
//!   (`udp::send_batch`), each with its own segment size and TOS byte; a
//!   lone transmit is sent as above, so a turn that sends one short
//!   message makes the same system call as before. Transmits the kernel
//!   has no room for wait in `pending`, in order, for writability.
//! * [`Datapath::read_errors`] turns the socket's error queue (ICMP port,
//!   host and net unreachable) into
//!   [`homa_proto::Endpoint::handle_unreachable`]; sends the kernel refuses
//!   for lack of a route do the same.
//!
//! The system calls themselves are `homa_sys::udp`'s.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr, SocketAddrV6, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use homa_proto::{Endpoint, Instant, TxPackets, Unreachable};
use homa_sys::udp::{
    self, BatchMsg, BufPool, Buffer, Dest, RecvBatch, TosOption, MAX_GSO_SEGMENTS, MAX_SEND_BATCH,
};

use crate::capture::Capture;
use crate::stats::{Offloads, TransportStats};
use crate::{Config, Error};

/// Bytes of each receive buffer: the largest UDP datagram (65 535 bytes
/// of IP packet less the 28 of IPv4 and UDP headers) rounded up.
const RECV_STRIDE: usize = 1 << 16;

/// Smallest datagram (or GRO batch) handed to the endpoint in its receive
/// buffer ([`Endpoint::handle_datagram_shared`]): the DATA payloads of a
/// multi-packet message in it are then kept where the kernel put them,
/// without the reassembly copy, and the slot gets a fresh buffer. Smaller
/// datagrams (every short RPC) are copied as before: no allocation per
/// packet, and no 64 KiB buffer pinned by a few bytes. A kept buffer less
/// than fifteen sixteenths full is trimmed to its datagram (the allocator
/// shrinks it in place); a fuller one keeps its capacity for the pool
/// (`RecvBatch::take_shared`), so what a message pins is at most 16/15 of
/// what it received.
const KEEP_MIN: usize = 16 << 10;

/// Largest payload of a lone packet copied after its header for a plain
/// `sendto`; longer ones (MTUs above 4 kB) go out as a gathered `sendmsg`
/// of header and message, without copying up to 64 kB in user space.
const COPY_SINGLE_MAX: usize = 4096;

/// Most iovecs of one batched send (a header and a payload per packet):
/// room for eight full GSO batches, so that a batch is bounded by
/// [`MAX_SEND_BATCH`] transmits rather than by iovecs at any MTU.
const BATCH_IOV: usize = 16 * MAX_GSO_SEGMENTS;

/// [`Datapath::deliver`] for a datagram or GRO batch of at least
/// [`KEEP_MIN`] bytes (slot `i` of `rx`, from `src`): it is handed over in
/// its receive buffer, trimmed to what it holds, to the endpoint's shared
/// entry points. Returns the packets it held.
#[cold]
#[inline(never)]
fn deliver_kept(
    link: &mut Link,
    rx: &mut RecvBatch,
    ep: &mut Endpoint,
    now: Instant,
    i: usize,
    src: SocketAddr,
) -> usize {
    let meta = rx.get(i).0;
    // Handed over in its buffer, which returns to the pool when dropped
    // (`Config::recv_pool`).
    let b = rx.take_shared(i);
    let stats = &mut link.stats;
    if let Some(c) = &mut link.capture {
        c.received(stats, src, meta.dst, meta.tos, &b, meta.segment);
    }
    let level = meta.tos.and_then(|t| ep.level_of_tos(t));
    let got = match meta.segment {
        Some(seg) if seg > 0 && seg < b.len() => {
            stats.gro_batches += 1;
            ep.handle_datagram_batch_shared(now, src, level, &b, seg);
            b.len().div_ceil(seg)
        }
        _ => {
            ep.handle_datagram_shared(now, src, level, &b);
            1
        }
    };
    if level.is_some() {
        stats.packets_with_level += got as u64;
    }
    got
}

/// Rewrites an address the way the endpoint must see it: IPv4-mapped IPv6
/// addresses become IPv4 ([`IpAddr::to_canonical`]), and IPv6 flow labels
/// are dropped (they are not part of a peer's identity).
pub(crate) fn normalize(addr: SocketAddr) -> SocketAddr {
    match (addr, addr.ip().to_canonical()) {
        (SocketAddr::V6(a), IpAddr::V6(ip)) => {
            SocketAddr::V6(SocketAddrV6::new(ip, a.port(), 0, a.scope_id()))
        }
        (a, ip) => SocketAddr::new(ip, a.port()),
    }
}

/// Errors a send may report on behalf of an earlier packet (an ICMP error
/// queued on the socket).
fn is_icmp_errno(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::ENETDOWN
                | libc::EPROTO
                | libc::EMSGSIZE
        )
    )
}

/// What one non-blocking receive found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    /// The socket's queue was empty.
    Empty,
    /// Datagrams were processed: this many Homa packets.
    Packets(usize),
    /// The kernel reported an error (already noted for the error queue).
    Error,
}

/// A destination a send found unreachable, until the endpoint is told
/// ([`Datapath::fail_unreachable`]).
#[derive(Debug, Clone, Copy)]
struct Unreach {
    dest: SocketAddr,
    /// No route to its network (`ENETUNREACH`), rather than to the host.
    network: bool,
}

/// Most such destinations kept between two reports (one output pass):
/// beyond, a new one is dropped (its RPCs end by their timeouts).
const MAX_UNREACH: usize = 256;

/// Outcome of handing bytes to the kernel.
enum SendOutcome {
    Sent,
    /// Out of buffer space after this many segments.
    Blocked(usize),
    Dropped,
    /// The kernel has no route to the destination (`ENETUNREACH`,
    /// `network` true) or cannot reach the host (`EHOSTUNREACH`).
    Unreachable {
        network: bool,
    },
}

/// One transmit on its way to the kernel.
struct Outgoing<'a> {
    /// Where and how.
    head: &'a Queued,
    /// The packets: headers, and payloads in the message.
    packets: &'a TxPackets,
}

impl Outgoing<'_> {
    /// Packets in the transmit.
    fn packets(&self) -> usize {
        self.packets.len()
    }
}

/// Where and how a transmit goes: for one polled in this flush, waiting
/// for the flush's send, its packets are in the slot of the same index in
/// `Datapath::tx`.
#[derive(Clone, Copy)]
struct Queued {
    /// The destination as the endpoint named it.
    to: SocketAddr,
    /// `to` encoded for the socket.
    dest: Dest,
    tos: (TosOption, u8),
    /// GSO segment size of a multi-packet transmit.
    segment: Option<usize>,
}

/// A transmit the kernel refused for lack of buffer space.
struct Pending {
    head: Queued,
    packets: TxPackets,
    /// Segments already sent (when sending one datagram per packet).
    done: usize,
}

/// The socket and the state of sending on it.
struct Link {
    sock: Arc<UdpSocket>,
    /// GSO in use (switched off if the kernel refuses a GSO send).
    gso: bool,
    /// The kernel returned a socket error on send or receive: the error
    /// queue must be read.
    errors_pending: bool,
    sticky: StickyTos,
    capture: Option<Capture>,
    stats: TransportStats,
    /// A single packet copied whole for `sendto`, or a transmit for the
    /// capture.
    scratch: Vec<u8>,
}

/// The datapath of one socket: see the module documentation.
pub(crate) struct Datapath {
    link: Link,
    ipv6: bool,
    /// The endpoint describes the transmits of one flush here, one slot
    /// each ([`MAX_SEND_BATCH`] slots, reused).
    tx: Vec<TxPackets>,
    /// What is in the first slots, in the order polled.
    queued: Vec<Queued>,
    /// Transmits waiting for buffer space, in order.
    pending: VecDeque<Pending>,
    rx: RecvBatch,
    /// Consecutive turns whose first receive found data (see
    /// `engine::Shared::turn`).
    pub(crate) rx_streak: u32,
    unreachable: Vec<Unreach>,
}

impl Datapath {
    /// Binds the UDP socket and configures it: non-blocking, buffers, the
    /// error queue, arrival TOS bytes, offload probes, the capture. Sets
    /// `config.proto.mtu` as `config.mtu` says (from the interface of the
    /// bound address by default).
    pub(crate) fn open(
        addr: SocketAddr,
        config: &mut Config,
    ) -> Result<(Datapath, Offloads), Error> {
        let sock = udp::bind(addr, config.reuse_port)?;
        sock.set_nonblocking(true)?;
        let fd = sock.as_fd();
        let local = sock.local_addr()?;
        let ipv6 = local.is_ipv6();
        let up = match config.mtu {
            crate::Mtu::Auto => homa_sys::netif::up_addresses().unwrap_or_default(),
            _ => Vec::new(),
        };
        config.proto.mtu = config.mtu.choose(local.ip(), &up, config.proto.mtu);
        let recv_buffer = udp::set_buffer(fd, Buffer::Receive, config.recv_buffer)?;
        let send_buffer = udp::set_buffer(fd, Buffer::Send, config.send_buffer)?;
        udp::enable_errors(fd, ipv6)?;
        // The arrival priority lets the endpoint recover losses early.
        let _ = udp::enable_recv_tos(fd, ipv6);
        let gso = config.gso && udp::gso_supported(ipv6);
        let gro = config.gro && udp::enable_gro(fd);
        // Every receive buffer holds the largest UDP datagram (a GRO batch
        // is at most that too): peers may send DATA packets cut to a larger
        // MTU than ours.
        let stride = RECV_STRIDE;
        let capture = match &config.capture {
            Some(path) => {
                let c = Capture::create(path, local)?;
                if c.needs_pktinfo() {
                    udp::enable_pktinfo(fd, ipv6)?;
                }
                Some(c)
            }
            None => None,
        };
        let offloads = Offloads {
            gso,
            gro,
            mtu: config.proto.mtu,
            recv_buffer,
            send_buffer,
        };
        let dp = Datapath {
            link: Link {
                sock: Arc::new(sock),
                gso,
                errors_pending: false,
                sticky: StickyTos::default(),
                capture,
                stats: TransportStats::default(),
                scratch: Vec::with_capacity(2048),
            },
            ipv6,
            tx: (0..MAX_SEND_BATCH).map(|_| TxPackets::new()).collect(),
            queued: Vec::with_capacity(MAX_SEND_BATCH),
            pending: VecDeque::new(),
            rx: RecvBatch::with_pool(config.recv_batch, BufPool::new(stride, config.recv_pool)),
            rx_streak: 0,
            unreachable: Vec::new(),
        };
        Ok((dp, offloads))
    }

    /// The socket (for waiting on it outside the state's lock).
    #[inline]
    pub(crate) fn socket(&self) -> &Arc<UdpSocket> {
        &self.link.sock
    }

    /// True for an IPv6 (possibly dual-stack) socket.
    #[inline]
    pub(crate) fn ipv6(&self) -> bool {
        self.ipv6
    }

    /// GSO in use now (it may have been switched off since opening).
    #[inline]
    pub(crate) fn gso(&self) -> bool {
        self.link.gso
    }

    /// The datapath's counters, with the TOS changes `StickyTos` counts.
    pub(crate) fn stats(&self) -> TransportStats {
        TransportStats {
            tos_changes: self.link.sticky.changes,
            ..self.link.stats.clone()
        }
    }

    /// The counters, to count what the engine decides (dropped requests,
    /// send-cap waits).
    #[inline]
    pub(crate) fn stats_mut(&mut self) -> &mut TransportStats {
        &mut self.link.stats
    }

    /// True while a transmit waits for buffer space.
    #[inline]
    pub(crate) fn wants_write(&self) -> bool {
        !self.pending.is_empty()
    }

    /// True if the error queue must be read.
    #[inline]
    pub(crate) fn errors_pending(&self) -> bool {
        self.link.errors_pending
    }

    /// A poll reported an error on the socket: read the error queue.
    #[inline]
    pub(crate) fn note_error(&mut self) {
        self.link.errors_pending = true;
    }

    /// True if the last receive filled its batch (more may be queued).
    #[inline]
    pub(crate) fn batch_filled(&self) -> bool {
        self.rx.filled()
    }

    /// Most datagrams one receive can return.
    #[inline]
    pub(crate) fn batch_capacity(&self) -> usize {
        self.rx.capacity()
    }

    /// Reads one batch of up to `max` datagrams and feeds every Homa
    /// packet in it to the endpoint.
    #[inline]
    pub(crate) fn receive(&mut self, ep: &mut Endpoint, now: Instant, max: usize) -> Received {
        match udp::recv_batch(self.link.sock.as_fd(), &mut self.rx, max) {
            Ok(0) => {
                self.link.stats.recv_empty += 1;
                Received::Empty
            }
            Ok(n) => self.deliver(ep, now, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Received::Packets(0),
            Err(_) => {
                // A pending socket error (ICMP) surfaced through recv: the
                // details are on the error queue.
                self.link.errors_pending = true;
                Received::Error
            }
        }
    }

    /// Feeds the `n` datagrams just received to the endpoint.
    ///
    /// A datagram shorter than [`KEEP_MIN`] (every short RPC's) is handed
    /// to the copying entry points straight from its slot, read once; only
    /// a longer one goes through the hand-over ([`Datapath::deliver_kept`],
    /// out of line).
    fn deliver(&mut self, ep: &mut Endpoint, now: Instant, n: usize) -> Received {
        let Datapath { link, rx, .. } = self;
        link.stats.recv_calls += 1;
        let mut packets = 0;
        for i in 0..n {
            let (meta, data) = rx.get(i);
            let src = match meta.src {
                Some(a) if !meta.truncated => normalize(a),
                _ => {
                    link.stats.bad_datagrams += 1;
                    continue;
                }
            };
            if data.len() >= KEEP_MIN {
                packets += deliver_kept(link, rx, ep, now, i, src);
                continue;
            }
            if let Some(c) = &mut link.capture {
                c.received(&mut link.stats, src, meta.dst, meta.tos, data, meta.segment);
            }
            let level = match meta.tos {
                Some(t) => ep.level_of_tos(t),
                None => None,
            };
            let got = match meta.segment {
                Some(seg) if seg > 0 && seg < data.len() => {
                    // One call per GRO batch: the endpoint handles a run of
                    // one message's packets with one lookup.
                    link.stats.gro_batches += 1;
                    ep.handle_datagram_batch_at_level(now, src, level, data, seg);
                    data.len().div_ceil(seg)
                }
                _ => {
                    ep.handle_datagram_at_level(now, src, level, data);
                    1
                }
            };
            if level.is_some() {
                link.stats.packets_with_level += got as u64;
            }
            packets += got;
        }
        link.stats.packets_received += packets as u64;
        Received::Packets(packets)
    }

    /// Drains the endpoint's transmit queue into the kernel, stopping when
    /// the kernel runs out of buffer space (the rest waits for
    /// writability). The transmits are polled first (at most
    /// [`MAX_SEND_BATCH`] before a send) and then sent in order, several
    /// in one system call where they fit one (see the module
    /// documentation).
    pub(crate) fn flush(&mut self, ep: &mut Endpoint, now: Instant) {
        if !self.pending.is_empty() && !self.send_pending() {
            return;
        }
        loop {
            if ep.transmit_idle(now) {
                break;
            }
            let n = self.queued.len();
            let Some(t) = ep.poll_transmit_packets(now, &mut self.tx[n]) else {
                break;
            };
            let Some(dest) = Dest::new(t.destination, self.ipv6) else {
                self.link.stats.send_errors += t.segments() as u64;
                continue;
            };
            self.queued.push(Queued {
                to: t.destination,
                dest,
                tos: (TosOption::for_destination(&t.destination), t.tos),
                segment: t.segment_size,
            });
            if self.queued.len() == MAX_SEND_BATCH && !self.send_queued() {
                return;
            }
        }
        match self.queued.len() {
            0 => {}
            // The common case (every short RPC's turn): one transmit, sent
            // on its own as before batching.
            1 => {
                self.send_one(0);
                self.tx[0].clear();
                self.queued.clear();
            }
            _ => {
                self.send_queued();
            }
        }
    }

    /// Sends the transmits waiting for buffer space, in order; false if
    /// the kernel still has no room.
    fn send_pending(&mut self) -> bool {
        while let Some(p) = self.pending.pop_front() {
            let out = Outgoing {
                head: &p.head,
                packets: &p.packets,
            };
            match self.link.send(&out, p.done) {
                SendOutcome::Blocked(done) => {
                    self.pending.push_front(Pending { done, ..p });
                    return false;
                }
                SendOutcome::Unreachable { network } => self.note_unreachable(p.head.to, network),
                SendOutcome::Sent | SendOutcome::Dropped => {}
            }
        }
        true
    }

    /// Sends the transmits polled so far, in order: each run of at least
    /// two that fit one `sendmmsg` in one call, the others (and the first
    /// one the kernel did not take from a run) on their own, which
    /// classifies the error. Releases their messages. False if the kernel
    /// ran out of room: that transmit and the ones after it wait in
    /// `pending`.
    fn send_queued(&mut self) -> bool {
        let n = self.queued.len();
        let mut i = 0;
        let mut room = true;
        while i < n {
            let run = self.link.batch_run(&self.queued[i..n], &self.tx[i..n]);
            if run >= 2 {
                let k = self
                    .link
                    .send_batch(&self.queued[i..i + run], &self.tx[i..i + run]);
                i += k;
                if k == run {
                    continue;
                }
            }
            if !self.send_one(i) {
                room = false;
                break;
            }
            i += 1;
        }
        for t in &mut self.tx[..n] {
            t.clear();
        }
        self.queued.clear();
        room
    }

    /// Sends polled transmit `i` on its own (which classifies an error).
    /// False if the kernel had no room: it and the transmits polled after
    /// it wait in `pending`, in order, keeping their packets (headers and a
    /// handle on the message).
    #[inline(always)]
    fn send_one(&mut self, i: usize) -> bool {
        let out = Outgoing {
            head: &self.queued[i],
            packets: &self.tx[i],
        };
        match self.link.send(&out, 0) {
            SendOutcome::Sent | SendOutcome::Dropped => true,
            SendOutcome::Unreachable { network } => {
                let to = self.queued[i].to;
                self.note_unreachable(to, network);
                true
            }
            SendOutcome::Blocked(done) => {
                for (j, q) in self.queued[i..].iter().enumerate() {
                    self.pending.push_back(Pending {
                        head: *q,
                        packets: std::mem::take(&mut self.tx[i + j]),
                        done: if j == 0 { done } else { 0 },
                    });
                }
                false
            }
        }
    }

    /// Remembers that a send to `dest` found no route, once per host.
    fn note_unreachable(&mut self, dest: SocketAddr, network: bool) {
        let known = self
            .unreachable
            .iter()
            .any(|u| u.network == network && u.dest.ip() == dest.ip());
        if !known && self.unreachable.len() < MAX_UNREACH {
            self.unreachable.push(Unreach { dest, network });
        }
    }

    /// Reads the socket's error queue: ICMP port / host / net unreachable
    /// become [`Endpoint::handle_unreachable`] for the original
    /// destination.
    pub(crate) fn read_errors(&mut self, ep: &mut Endpoint, now: Instant) {
        self.link.errors_pending = false;
        // Bounded: the kernel caps the error queue by the receive buffer,
        // and we stop after a generous number of entries per call.
        for _ in 0..1024 {
            let e = match udp::recv_error(self.link.sock.as_fd()) {
                Ok(Some(e)) => e,
                Ok(None) | Err(_) => break,
            };
            self.link.stats.queued_errors += 1;
            if !e.icmp {
                continue;
            }
            let kind = match e.errno {
                libc::ECONNREFUSED => Unreachable::Port,
                libc::ENETUNREACH => Unreachable::Network,
                libc::EHOSTUNREACH | libc::EHOSTDOWN => Unreachable::Host,
                _ => continue,
            };
            if let Some(dest) = e.dest {
                ep.handle_unreachable(now, normalize(dest), kind);
            }
        }
    }

    /// Tells the endpoint about destinations sends found unreachable (it
    /// fails their RPCs) and forgets them.
    #[inline]
    pub(crate) fn fail_unreachable(&mut self, ep: &mut Endpoint, now: Instant) {
        for u in self.unreachable.drain(..) {
            let kind = if u.network {
                Unreachable::Network
            } else {
                Unreachable::Host
            };
            ep.handle_unreachable(now, normalize(u.dest), kind);
        }
    }

    /// The socket is closing: waiting transmits are dropped, the capture
    /// is completed, and peers are refused from now on (ICMP port
    /// unreachable at their next packet) although the descriptor stays
    /// open for whoever still polls it.
    pub(crate) fn close(&mut self, local: SocketAddr) {
        self.pending.clear();
        if let Some(mut c) = self.link.capture.take() {
            c.finish(&mut self.link.stats);
        }
        let _ = udp::refuse_peers(self.link.sock.as_fd(), local);
    }
}

impl Link {
    fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Sends one transmit (from segment `done` on) and records it in the
    /// capture.
    fn send(&mut self, out: &Outgoing<'_>, done: usize) -> SendOutcome {
        let outcome = self.send_raw(out, done);
        if let Some(c) = &mut self.capture {
            let sent = match outcome {
                SendOutcome::Sent => out.packets(),
                SendOutcome::Blocked(k) => k,
                SendOutcome::Dropped | SendOutcome::Unreachable { .. } => done,
            };
            self.scratch.clear();
            out.packets.copy_to(&mut self.scratch);
            c.sent(
                &mut self.stats,
                out.head.to,
                out.head.tos.1,
                (&self.scratch, out.head.segment),
                done..sent,
            );
        }
        outcome
    }

    /// Sends one transmit without the capture. A pending socket error that
    /// fails the send is noted for the error queue and the send retried
    /// once.
    ///
    /// The TOS byte is set on the socket (`IP_TOS` / `IPV6_TCLASS`) when it
    /// differs from the last one set, and the send then carries no TOS
    /// control message: small RPCs send every packet at the same level, and
    /// a control message makes the kernel parse it on every send (and, on
    /// a connected socket, would also cost the cached route). All sends
    /// happen under the state lock, so the setting cannot change between
    /// the `setsockopt` and the send. If the kernel refuses the option,
    /// sends carry the control message as before.
    fn send_raw(&mut self, out: &Outgoing<'_>, done: usize) -> SendOutcome {
        let tos = self.sticky.prepare(self.sock.as_fd(), out.head.tos);
        let packets = out.packets;
        let total = packets.len();
        let mut retried = false;
        loop {
            let multi = out.head.segment.filter(|_| total > 1);
            let r = match multi {
                Some(seg) if self.gso && done == 0 => {
                    match self.send_gso(&out.head.dest, tos, seg, packets) {
                        Ok(()) => return SendOutcome::Sent,
                        Err((k, e)) if k > 0 => {
                            // A later group of a long transmit failed: the
                            // rest waits (or is dropped) like a fallback send.
                            let blocked = e.kind() == io::ErrorKind::WouldBlock
                                || e.raw_os_error() == Some(libc::ENOBUFS);
                            if blocked {
                                self.stats.send_blocked += 1;
                                return SendOutcome::Blocked(k);
                            }
                            self.stats.send_errors += 1;
                            return SendOutcome::Dropped;
                        }
                        Err((_, e))
                            if matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL)) =>
                        {
                            // The kernel (or the route's device) cannot do
                            // GSO: fall back to one datagram per packet.
                            self.gso = false;
                            self.stats.gso_fallbacks += 1;
                            continue;
                        }
                        Err((_, e)) => Err(e),
                    }
                }
                Some(_) => {
                    let mut iov = [IoSlice::new(&[]); 2 * MAX_GSO_SEGMENTS];
                    let mut sent = done;
                    let mut result = Ok(());
                    while sent < total {
                        let n = fill_iov(&mut iov, packets, sent);
                        match udp::send_datagrams(self.fd(), &out.head.dest, tos, 2, &iov[..2 * n])
                        {
                            Ok(k) => {
                                self.stats.send_calls += 1;
                                self.stats.packets_sent += k as u64;
                                sent += k;
                                if k < n {
                                    break;
                                }
                            }
                            Err(e) if sent > done && e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => {
                                result = Err(e);
                                break;
                            }
                        }
                    }
                    match result {
                        Ok(()) if sent < total => {
                            self.stats.send_blocked += 1;
                            return SendOutcome::Blocked(sent);
                        }
                        Ok(()) => return SendOutcome::Sent,
                        // Nothing of this call went out: handled below
                        // as for a single send.
                        Err(e) if sent == done => Err(e),
                        Err(_) => {
                            self.stats.send_errors += 1;
                            return SendOutcome::Dropped;
                        }
                    }
                }
                None => {
                    // One packet, sent with `sendto` (the kernel's cheapest
                    // send): a control packet or a short message is whole
                    // in its header slice; a longer one up to
                    // `COPY_SINGLE_MAX` is copied whole first; a larger one
                    // (a large MTU) is gathered by the kernel from the
                    // header and the message (no user-space copy).
                    let (h, p) = packets.packet(0);
                    let r = if p.len() > COPY_SINGLE_MAX {
                        udp::send_vectored(
                            self.sock.as_fd(),
                            &out.head.dest,
                            tos,
                            None,
                            &[IoSlice::new(h), IoSlice::new(p)],
                        )
                    } else {
                        let data = if p.is_empty() {
                            h
                        } else {
                            self.scratch.clear();
                            self.scratch.extend_from_slice(h);
                            self.scratch.extend_from_slice(p);
                            &self.scratch[..]
                        };
                        udp::send(self.sock.as_fd(), &out.head.dest, tos, None, data)
                    };
                    r.map(|_| {
                        self.stats.send_calls += 1;
                        self.stats.packets_sent += 1;
                    })
                }
            };
            let e = match r {
                Ok(()) => return SendOutcome::Sent,
                Err(e) => e,
            };
            match e.kind() {
                io::ErrorKind::WouldBlock => {
                    self.stats.send_blocked += 1;
                    return SendOutcome::Blocked(done);
                }
                io::ErrorKind::Interrupted => continue,
                _ if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.stats.send_blocked += 1;
                    return SendOutcome::Blocked(done);
                }
                _ if is_icmp_errno(&e) && !retried => {
                    // The send reported (and cleared) an error queued by an
                    // earlier packet; this packet was not sent.
                    retried = true;
                    self.errors_pending = true;
                    continue;
                }
                _ if matches!(
                    e.raw_os_error(),
                    Some(libc::ENETUNREACH | libc::EHOSTUNREACH)
                ) =>
                {
                    // Refused twice: this packet's own route failed (no
                    // route to the network, or an unreachable route).
                    self.stats.send_errors += 1;
                    return SendOutcome::Unreachable {
                        network: e.raw_os_error() == Some(libc::ENETUNREACH),
                    };
                }
                _ => {
                    self.stats.send_errors += 1;
                    return SendOutcome::Dropped;
                }
            }
        }
    }
}

impl Link {
    /// How many of `queued` (with their packets `tx`), from the first, one
    /// [`Link::send_batch`] can take: transmits that are one datagram, or
    /// one GSO send while GSO is on, within [`BATCH_IOV`] iovecs; none
    /// while the capture records sends one by one.
    fn batch_run(&self, queued: &[Queued], tx: &[TxPackets]) -> usize {
        if self.capture.is_some() {
            return 0;
        }
        let mut iovs = 0;
        let mut run = 0;
        for (q, t) in queued.iter().zip(tx) {
            let packets = t.len();
            let fits =
                packets == 1 || (self.gso && q.segment.is_some() && packets <= MAX_GSO_SEGMENTS);
            if !fits || iovs + 2 * packets > BATCH_IOV {
                break;
            }
            iovs += 2 * packets;
            run += 1;
        }
        run
    }

    /// Sends transmits [`Link::batch_run`] accepted in one `sendmmsg`, each
    /// as its own message: one datagram, or a GSO batch with its segment
    /// size. The socket's TOS setting is made the first transmit's (as a
    /// lone send does); a transmit at another TOS byte carries it as a
    /// control message. Returns how many the kernel took (0 on an error:
    /// the caller sends the first one not taken on its own, which reports
    /// what happened to it).
    fn send_batch(&mut self, queued: &[Queued], tx: &[TxPackets]) -> usize {
        let n = queued.len().min(MAX_SEND_BATCH);
        let mut iov = [IoSlice::new(&[]); BATCH_IOV];
        let mut ends = [0usize; MAX_SEND_BATCH];
        let mut at = 0;
        for (j, t) in tx[..n].iter().enumerate() {
            at += 2 * fill_iov(&mut iov[at..], t, 0);
            ends[j] = at;
        }
        let _ = self.sticky.prepare(self.sock.as_fd(), queued[0].tos);
        let sticky = &self.sticky;
        let msgs: [BatchMsg<'_>; MAX_SEND_BATCH] = std::array::from_fn(|j| {
            let j = j.min(n - 1);
            let q = &queued[j];
            let start = if j == 0 { 0 } else { ends[j - 1] };
            BatchMsg {
                dest: &q.dest,
                tos: sticky.control(q.tos),
                segment: q.segment.filter(|_| tx[j].len() > 1).map(|s| s as u16),
                iov: &iov[start..ends[j]],
            }
        });
        let k = match udp::send_batch(self.sock.as_fd(), &msgs[..n]) {
            Ok(k) => k,
            Err(e) => {
                if is_icmp_errno(&e) {
                    // It reported (and cleared) an error an earlier packet
                    // queued: the error queue says which.
                    self.errors_pending = true;
                }
                return 0;
            }
        };
        self.stats.send_calls += 1;
        self.stats.batched_sends += 1;
        for m in &msgs[..k] {
            self.stats.packets_sent += (m.iov.len() / 2) as u64;
            if m.segment.is_some() {
                self.stats.gso_sends += 1;
            }
        }
        k
    }

    /// Sends a multi-packet transmit with GSO: its header and payload
    /// iovecs in one `sendmsg` per [`MAX_GSO_SEGMENTS`] packets (the
    /// endpoint's batches are never longer by default). On failure, the
    /// packets sent before it and the error.
    fn send_gso(
        &mut self,
        dest: &Dest,
        tos: Option<(TosOption, u8)>,
        segment: usize,
        packets: &TxPackets,
    ) -> Result<(), (usize, io::Error)> {
        let mut iov = [IoSlice::new(&[]); 2 * MAX_GSO_SEGMENTS];
        let mut at = 0;
        while at < packets.len() {
            let n = fill_iov(&mut iov, packets, at);
            // A lone packet at the end of a long transmit is still sent
            // with its segment size (GSO accepts one segment).
            udp::send_vectored(self.fd(), dest, tos, Some(segment as u16), &iov[..2 * n])
                .map_err(|e| (at, e))?;
            self.stats.send_calls += 1;
            self.stats.gso_sends += 1;
            self.stats.packets_sent += n as u64;
            at += n;
        }
        Ok(())
    }
}

/// Fills `iov` with header/payload pairs of `packets` from packet `from`
/// on; returns the number of packets (at most [`MAX_GSO_SEGMENTS`]).
fn fill_iov<'a>(iov: &mut [IoSlice<'a>], packets: &'a TxPackets, from: usize) -> usize {
    let n = (packets.len() - from).min(iov.len() / 2);
    for (i, pair) in iov.chunks_exact_mut(2).take(n).enumerate() {
        let (h, p) = packets.packet(from + i);
        pair[0] = IoSlice::new(h);
        pair[1] = IoSlice::new(p);
    }
    n
}

/// The TOS / traffic-class byte last set on the socket with `setsockopt`,
/// for IPv4 (`IP_TOS`, also IPv4-mapped destinations of a dual-stack
/// socket) and IPv6 (`IPV6_TCLASS`): the runtime's TOS policy.
#[derive(Debug, Default)]
struct StickyTos {
    set: [Option<u8>; 2],
    /// `setsockopt` failed once: every send carries a control message.
    refused: bool,
    /// `setsockopt` calls made.
    changes: u64,
}

impl StickyTos {
    /// The control message a send at `tos` needs given the socket's
    /// setting now (`None` when the setting is right); changes nothing.
    fn control(&self, tos: (TosOption, u8)) -> Option<(TosOption, u8)> {
        let set = self.set[usize::from(tos.0 != TosOption::Ipv4)];
        if self.refused || set != Some(tos.1) {
            return Some(tos);
        }
        None
    }

    /// Makes the socket's own setting `tos.1` if it can: returns the
    /// control message a send still needs (`None` when the socket's
    /// setting is right).
    fn prepare(&mut self, fd: BorrowedFd<'_>, tos: (TosOption, u8)) -> Option<(TosOption, u8)> {
        let need = self.control(tos);
        if need.is_none() || self.refused {
            return need;
        }
        self.changes += 1;
        match tos.0.set(fd, tos.1) {
            Ok(()) => {
                self.set[usize::from(tos.0 != TosOption::Ipv4)] = Some(tos.1);
                None
            }
            Err(_) => {
                self.refused = true;
                Some(tos)
            }
        }
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Two endpoints, each on its own datapath over loopback, exchange a
    /// request and a response of the configured maximum length: both
    /// arrive byte-exact, with GSO and GRO as configured (forced off, or
    /// on when the kernel offers them). Returns the client's and the
    /// server's counters.
    fn exchange_max(gso: bool, gro: bool) -> (TransportStats, TransportStats) {
        let config = config(gso, gro, crate::Mtu::Proto);
        exchange(&config, &config)
    }

    fn config(gso: bool, gro: bool, mtu: crate::Mtu) -> Config {
        Config {
            gso,
            gro,
            mtu,
            // Room for a whole request in flight on the slow path.
            recv_buffer: 8 << 20,
            send_buffer: 8 << 20,
            ..Config::default()
        }
    }

    /// [`exchange_max`] between a client and a server configured apart.
    fn exchange(client: &Config, server: &Config) -> (TransportStats, TransportStats) {
        exchange_with(client, server, |_| {})
    }

    /// [`exchange`], with `setup` run on each datapath (the client's
    /// first) once it is open.
    fn exchange_with(
        client: &Config,
        server: &Config,
        setup: impl Fn(&Datapath),
    ) -> (TransportStats, TransportStats) {
        let max = client.proto.max_message_length as usize;
        let open = |config: &Config, seed| {
            let mut config = config.clone();
            let (dp, offloads) =
                Datapath::open("127.0.0.1:0".parse().unwrap(), &mut config).unwrap();
            setup(&dp);
            assert_eq!(offloads.gso, config.gso && udp::gso_supported(false));
            assert_eq!(offloads.mtu, config.proto.mtu);
            let mut ep = Endpoint::new(config.proto.clone(), seed).unwrap();
            let addr = dp.socket().local_addr().unwrap();
            ep.open_socket(addr.port()).unwrap();
            (dp, ep, addr)
        };
        let (mut cdp, mut cep, caddr) = open(client, 1);
        let (mut sdp, mut sep, saddr) = open(server, 2);
        sep.set_server(saddr.port(), true).unwrap();
        let request: bytes::Bytes = (0..max).map(|i| (i * 7 + i / 4093) as u8).collect();
        let response: bytes::Bytes = (0..max).map(|i| (i * 11 + i / 65_521) as u8).collect();
        let start = std::time::Instant::now();
        let now = || Instant::from_nanos(start.elapsed().as_nanos() as u64);
        let id = cep
            .send_request(now(), caddr.port(), saddr, request.clone())
            .unwrap();
        let mut got = None;
        while got.is_none() {
            assert!(start.elapsed() < Duration::from_secs(60), "no progress");
            for (dp, ep) in [(&mut cdp, &mut cep), (&mut sdp, &mut sep)] {
                let t = now();
                ep.handle_timeout(t);
                while let Received::Packets(n) = dp.receive(ep, t, 64) {
                    if n == 0 {
                        break;
                    }
                }
                dp.flush(ep, t);
            }
            while let Some(e) = sep.poll_event() {
                if let homa_proto::Event::Request {
                    port,
                    peer,
                    id,
                    data,
                    more,
                } = e
                {
                    let all = crate::Message::from_parts(data, more).into_bytes();
                    assert!(all == request, "request differs");
                    sep.send_response(now(), port, peer, id, response.clone())
                        .unwrap();
                }
            }
            while let Some(e) = cep.poll_event() {
                if let homa_proto::Event::Response {
                    id: rid,
                    data,
                    more,
                    ..
                } = e
                {
                    assert_eq!(rid, id);
                    got = Some(crate::Message::from_parts(data, more).into_bytes());
                }
            }
        }
        assert!(got.unwrap() == response, "response differs");
        (cdp.stats(), sdp.stats())
    }

    #[test]
    fn flush__max_length_messages_byte_exact_with_gso() {
        let (c, s) = exchange_max(true, true);
        assert!(
            udp::gso_supported(false),
            "UDP GSO unavailable: not checked"
        );
        assert!(c.gso_sends > 0 && s.gso_sends > 0, "{c:?} {s:?}");
        assert_eq!(c.gso_fallbacks + s.gso_fallbacks, 0);
    }

    #[test]
    fn flush__max_length_messages_byte_exact_without_gso() {
        let (c, s) = exchange_max(false, false);
        assert_eq!(c.gso_sends + s.gso_sends, 0);
        let max = Config::default().proto.max_message_length as u64;
        assert!(c.packets_sent > max / 1500, "{c:?}");
        assert!(c.send_calls < c.packets_sent / 3, "sendmmsg batches: {c:?}");
    }

    /// [`config`] without the pacer: every granted byte is sent at once,
    /// so a flush polls several transmits.
    fn unpaced(gso: bool, mtu: crate::Mtu) -> Config {
        let mut c = config(gso, true, mtu);
        c.proto.pacer = false;
        c
    }

    /// Megabytes in a message of the maximum length.
    fn max_mb() -> f64 {
        Config::default().proto.max_message_length as f64 / 1e6
    }

    #[test]
    fn flush__gso_batches_of_one_turn_share_a_sendmmsg_byte_exact() {
        // MTU 1500: transmits of up to 44 packets, several per flush.
        let config = unpaced(true, crate::Mtu::Proto);
        let (c, s) = exchange(&config, &config);
        assert!(
            udp::gso_supported(false),
            "UDP GSO unavailable: not checked"
        );
        assert_eq!(c.gso_fallbacks + s.gso_fallbacks, 0);
        assert!(c.batched_sends > 0 && s.batched_sends > 0, "{c:?} {s:?}");
        // Fewer system calls than GSO batches: several in one call (one
        // call each without batching; about half measured).
        assert!(c.send_calls * 4 < c.gso_sends * 3, "{c:?}");
    }

    #[test]
    fn flush__lone_64k_packets_of_one_turn_share_a_sendmmsg_byte_exact() {
        // The loopback MTU: every transmit is one 64 kB datagram, 16 per
        // MB, each its own system call without batching.
        let config = unpaced(true, crate::Mtu::Auto);
        let (c, s) = exchange(&config, &config);
        let seg = f64::from(loopback_mtu() - 20 - 8 - 56);
        assert!(c.packets_sent as f64 >= max_mb() * 1e6 / seg, "{c:?}");
        // One call per packet without batching; about 0.4 measured.
        assert!(c.send_calls * 2 < c.packets_sent, "{c:?}");
        assert!(s.batched_sends > 0, "{s:?}");
        assert_eq!(c.bad_datagrams + s.bad_datagrams, 0);
    }

    #[test]
    fn flush__unpaced_without_gso_byte_exact() {
        // Multi-packet transmits go one sendmmsg of datagrams each (the
        // fallback); the lone packets between them (GRANTs) are batched.
        let config = unpaced(false, crate::Mtu::Proto);
        let (c, s) = exchange(&config, &config);
        assert_eq!(c.gso_sends + s.gso_sends, 0);
        assert!(c.packets_sent as f64 > max_mb() * 1e6 / 1500.0, "{c:?}");
        assert!(c.send_calls < c.packets_sent / 3, "sendmmsg batches: {c:?}");
    }

    #[test]
    fn flush__gso_refused_falls_back_byte_exact() {
        // A socket without send checksums: the kernel refuses every GSO
        // send (EINVAL), in a batch or alone. The first refusal switches
        // GSO off; everything arrives, one datagram per packet.
        let config = unpaced(true, crate::Mtu::Proto);
        let (c, s) = exchange_with(&config, &config, |dp| {
            udp::disable_send_checksum(dp.socket().as_fd()).unwrap()
        });
        assert!(
            udp::gso_supported(false),
            "UDP GSO unavailable: not checked"
        );
        assert_eq!((c.gso_fallbacks, s.gso_fallbacks), (1, 1), "{c:?} {s:?}");
        assert_eq!(c.gso_sends + s.gso_sends, 0, "{c:?} {s:?}");
        assert_eq!(c.send_errors + s.send_errors, 0, "{c:?} {s:?}");
        assert!(c.packets_sent as f64 > max_mb() * 1e6 / 1500.0, "{c:?}");
        // And with the pacer, one transmit per flush (the lone send's
        // fallback).
        let config = config_paced_gso();
        let (c, s) = exchange_with(&config, &config, |dp| {
            udp::disable_send_checksum(dp.socket().as_fd()).unwrap()
        });
        assert_eq!((c.gso_fallbacks, s.gso_fallbacks), (1, 1), "{c:?} {s:?}");
        assert_eq!(c.send_errors + s.send_errors, 0, "{c:?} {s:?}");
    }

    fn config_paced_gso() -> Config {
        config(true, true, crate::Mtu::Proto)
    }

    /// The loopback interface's MTU (65 536 on Linux), as `Mtu::Auto`
    /// clamps it.
    fn loopback_mtu() -> u32 {
        let lo = homa_sys::netif::up_addresses()
            .unwrap()
            .into_iter()
            .find(|a| a.addr == IpAddr::from([127, 0, 0, 1]))
            .expect("127.0.0.1 is up");
        lo.mtu.min(homa_proto::config::MAX_MTU)
    }

    #[test]
    fn open__auto_mtu_is_the_loopback_interface_for_a_loopback_bind() {
        let mut c = Config::default();
        let (_, offloads) = Datapath::open("127.0.0.1:0".parse().unwrap(), &mut c).unwrap();
        assert_eq!(offloads.mtu, loopback_mtu());
        assert_eq!(c.proto.mtu, loopback_mtu());
        // An explicit MTU wins; `Proto` keeps the protocol's value.
        let mut c = Config::default().with_mtu(crate::Mtu::Fixed(9000));
        let (_, offloads) = Datapath::open("127.0.0.1:0".parse().unwrap(), &mut c).unwrap();
        assert_eq!((offloads.mtu, c.proto.mtu), (9000, 9000));
        let mut c = Config::default().with_mtu(crate::Mtu::Proto);
        let (_, offloads) = Datapath::open("127.0.0.1:0".parse().unwrap(), &mut c).unwrap();
        assert_eq!(offloads.mtu, 1500);
    }

    #[test]
    fn open__auto_mtu_of_a_wildcard_bind_is_the_smallest_other_interface() {
        let up = homa_sys::netif::up_addresses().unwrap();
        let expect = up
            .iter()
            .filter(|a| !a.loopback)
            .map(|a| {
                a.mtu
                    .clamp(homa_proto::config::MIN_MTU, homa_proto::config::MAX_MTU)
            })
            .min()
            .unwrap_or(1500);
        let mut c = Config::default();
        let (_, offloads) = Datapath::open("0.0.0.0:0".parse().unwrap(), &mut c).unwrap();
        assert_eq!(offloads.mtu, expect, "{up:?}");
    }

    #[test]
    fn flush__max_length_messages_byte_exact_with_the_loopback_mtu() {
        // Auto on loopback: 64 kB packets, each its own send (a GSO send
        // holds at most 64 kB), gathered without a copy.
        let config = config(true, true, crate::Mtu::Auto);
        let (c, s) = exchange(&config, &config);
        let max = Config::default().proto.max_message_length as u64;
        let seg = u64::from(loopback_mtu() - 20 - 8 - 56);
        assert!(c.packets_sent >= max.div_ceil(seg), "{c:?}");
        assert!(c.packets_sent < max / 8000, "{c:?}");
        assert!(s.packets_received < max / 8000, "{s:?}");
        assert_eq!(c.bad_datagrams + s.bad_datagrams, 0);
    }

    #[test]
    fn flush__mixed_mtus_interoperate_without_gro() {
        // A client with the largest MTU and a server with the smallest
        // default one, receiving datagram by datagram: the server accepts
        // the client's 64 kB packets and answers in 1 500-byte ones.
        let client = config(true, false, crate::Mtu::Fixed(homa_proto::config::MAX_MTU));
        let server = config(true, false, crate::Mtu::Fixed(1500));
        let (c, s) = exchange(&client, &server);
        let max = Config::default().proto.max_message_length as u64;
        assert_eq!(c.bad_datagrams + s.bad_datagrams, 0, "{c:?} {s:?}");
        // (Each side's count includes the GRANTs it sends.)
        assert!(s.packets_received < max / 8000, "{s:?}");
        assert!(s.packets_sent > max / 1500, "{s:?}");
        // And the other way round, with GRO.
        let (c, s) = exchange(&config(true, true, crate::Mtu::Fixed(1500)), &client);
        assert_eq!(c.bad_datagrams + s.bad_datagrams, 0, "{c:?} {s:?}");
    }

    #[test]
    fn normalize__unmaps_ipv4_and_drops_flow_label() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:80".parse().unwrap();
        assert_eq!(normalize(mapped), "127.0.0.1:80".parse().unwrap());
        let v6 = SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 9, 77, 3));
        assert_eq!(
            normalize(v6),
            SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 9, 0, 3))
        );
        let v4: SocketAddr = "10.0.0.1:5".parse().unwrap();
        assert_eq!(normalize(v4), v4);
    }

    #[test]
    fn sticky_tos__sets_the_option_once_per_level_and_family() {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut s = StickyTos::default();
        assert_eq!(s.prepare(sock.as_fd(), (TosOption::Ipv4, 0xc0)), None);
        assert_eq!(s.prepare(sock.as_fd(), (TosOption::Ipv4, 0xc0)), None);
        assert_eq!(s.changes, 1);
        assert_eq!(s.prepare(sock.as_fd(), (TosOption::Ipv4, 0x20)), None);
        assert_eq!(s.changes, 2);
        // IPV6_TCLASS on an IPv4 socket is refused: control messages from
        // now on.
        let t = (TosOption::Ipv6, 0x40);
        assert_eq!(s.prepare(sock.as_fd(), t), Some(t));
        assert_eq!(
            s.prepare(sock.as_fd(), (TosOption::Ipv4, 0xc0)),
            Some((TosOption::Ipv4, 0xc0))
        );
    }
}
