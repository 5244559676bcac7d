//! The UDP socket the way Homa uses it: one unconnected socket talking to
//! many peers, every send naming its destination, every receive asking
//! for the source address and control messages.
//!
//! * Options: buffer sizes ([`set_buffer`], `SO_RCVBUFFORCE` when
//!   allowed), the error queue ([`enable_errors`]), arrival TOS bytes
//!   ([`enable_recv_tos`]), GRO ([`enable_gro`]), destination addresses
//!   ([`enable_pktinfo`]), the TOS byte of later sends ([`TosOption::set`]).
//! * Sending: [`send`] is a plain `sendto` when the socket's own TOS
//!   setting is right and the datagram is single, else a `sendmsg` with a
//!   TOS / traffic-class and a `UDP_SEGMENT` (GSO) control message.
//!   [`send_vectored`] (GSO) and [`send_datagrams`] (the fallback without
//!   GSO: `sendmmsg`, one datagram per segment) gather the bytes from
//!   iovecs (a header and a payload per datagram), so a message is never
//!   copied in user space. [`send_batch`] hands several such sends (to one
//!   destination or several, each a datagram or a GSO batch with its own
//!   segment size and TOS byte) to the kernel in one `sendmmsg`.
//! * Receiving: [`recv_batch`] reads one datagram with `recvmsg` or a
//!   batch with `recvmmsg`, with each datagram's source, GRO segment
//!   size, TOS byte and (if asked) destination address, into a
//!   [`RecvBatch`] whose buffers and headers are reused (hand-written on
//!   `libc`: the receive hot path, see `udp/mmsg.rs` for why not `nix`).
//!   A datagram handed over in its buffer ([`RecvBatch::take_shared`])
//!   returns it to the batch's bounded [`BufPool`] when its last `Bytes`
//!   drops, and the batch takes its fresh buffers from that pool.
//! * Errors: [`recv_error`] takes one entry off the error queue (ICMP
//!   unreachable and local errors, with the destination that caused it).
//! * Closing: [`refuse_peers`] makes a socket nobody reads any more answer
//!   every peer with ICMP port unreachable while its descriptor stays
//!   valid for threads still polling it.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    self as ns, sockopt, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType,
    SockaddrIn, SockaddrIn6, SockaddrLike, SockaddrStorage,
};

mod mmsg;
mod pool;

pub use pool::{BufPool, PoolStats, MAX_IDLE};

/// Most segments the kernel accepts in one `UDP_SEGMENT` send.
pub const MAX_GSO_SEGMENTS: usize = 64;

/// Most messages one [`send_batch`] hands to the kernel.
pub const MAX_SEND_BATCH: usize = 16;

/// Binds a UDP socket to `addr`; with `reuse_port`, sets `SO_REUSEPORT`
/// first, so that several sockets (of this or other processes of the same
/// user) can bind the same port and the kernel spreads the datagrams
/// among them by a hash of the source and destination (every datagram of
/// one peer socket goes to the same socket while the group does not
/// change).
pub fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::UdpSocket> {
    if !reuse_port {
        return std::net::UdpSocket::bind(addr);
    }
    let family = if addr.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fd = ns::socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    ns::setsockopt(&fd, sockopt::ReusePort, &true)?;
    match addr {
        SocketAddr::V4(a) => ns::bind(fd.as_raw_fd(), &SockaddrIn::from(a))?,
        SocketAddr::V6(a) => ns::bind(fd.as_raw_fd(), &SockaddrIn6::from(a))?,
    }
    Ok(std::net::UdpSocket::from(fd))
}

/// Attaches to `sock`'s `SO_REUSEPORT` group (the group's sockets in the
/// order they were bound) a classic BPF program that steers every datagram
/// to the socket whose index is the CPU that received it (`SKF_AD_CPU`):
/// with socket `i` served by a thread pinned to CPU `i`, a datagram is
/// processed by the core whose caches its receive path warmed. A CPU
/// without a socket of that index falls back to the kernel's hash. The
/// program is the group's: attaching it once, to any member, is enough.
pub fn steer_reuseport_by_cpu(sock: BorrowedFd<'_>) -> io::Result<()> {
    let insn = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let mut prog = [
        // A = the receiving CPU (an ancillary load), then return A.
        insn(
            libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
            (libc::SKF_AD_OFF + libc::SKF_AD_CPU) as u32,
        ),
        insn(libc::BPF_RET | libc::BPF_A, 0),
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    ns::setsockopt(&sock, sockopt::AttachReusePortCbpf, &fprog)?;
    Ok(())
}

/// Which socket buffer [`set_buffer`] sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffer {
    /// `SO_RCVBUF`.
    Receive,
    /// `SO_SNDBUF`.
    Send,
}

/// Sizes a socket buffer: `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` when the
/// process may exceed the system maximum, else the ordinary option (capped
/// by `net.core.rmem_max`/`wmem_max`). Returns the size the kernel reports.
pub fn set_buffer(fd: BorrowedFd<'_>, which: Buffer, bytes: usize) -> io::Result<usize> {
    // The kernel doubles the value for bookkeeping overhead; ask for half.
    let value = (bytes / 2).min(i32::MAX as usize / 2);
    let got = match which {
        Buffer::Receive => {
            if ns::setsockopt(&fd, sockopt::RcvBufForce, &value).is_err() {
                ns::setsockopt(&fd, sockopt::RcvBuf, &value)?;
            }
            ns::getsockopt(&fd, sockopt::RcvBuf)?
        }
        Buffer::Send => {
            if ns::setsockopt(&fd, sockopt::SndBufForce, &value).is_err() {
                ns::setsockopt(&fd, sockopt::SndBuf, &value)?;
            }
            ns::getsockopt(&fd, sockopt::SndBuf)?
        }
    };
    Ok(got)
}

/// Queues ICMP and local errors on the socket's error queue
/// (`IP_RECVERR`, `IPV6_RECVERR`) instead of failing a later call with
/// them. On an IPv6 socket the IPv4 option is also set (best effort:
/// IPv4-mapped traffic of a dual-stack socket reports through it).
pub fn enable_errors(fd: BorrowedFd<'_>, ipv6: bool) -> io::Result<()> {
    if ipv6 {
        ns::setsockopt(&fd, sockopt::Ipv6RecvErr, &true)?;
        let _ = ns::setsockopt(&fd, sockopt::Ipv4RecvErr, &true);
    } else {
        ns::setsockopt(&fd, sockopt::Ipv4RecvErr, &true)?;
    }
    Ok(())
}

/// Reports each received datagram's TOS / traffic-class byte
/// (`IP_RECVTOS`, and `IPV6_RECVTCLASS` on an IPv6 socket).
pub fn enable_recv_tos(fd: BorrowedFd<'_>, ipv6: bool) -> io::Result<()> {
    ns::setsockopt(&fd, sockopt::IpRecvTos, &true)?;
    if ipv6 {
        ns::setsockopt(&fd, sockopt::Ipv6RecvTClass, &true)?;
    }
    Ok(())
}

/// Turns GRO on (`UDP_GRO`): a receive may return several datagrams of
/// one flow coalesced, with their segment size. False if the kernel
/// refuses.
pub fn enable_gro(fd: BorrowedFd<'_>) -> bool {
    ns::setsockopt(&fd, sockopt::UdpGroSegment, &true).is_ok()
}

/// Reports each datagram's destination address ([`RecvMeta::dst`]):
/// `IPV6_RECVPKTINFO` on an IPv6 socket (it covers the IPv4 datagrams of a
/// dual-stack socket too), `IP_PKTINFO` on an IPv4 one.
pub fn enable_pktinfo(fd: BorrowedFd<'_>, ipv6: bool) -> io::Result<()> {
    if ipv6 {
        ns::setsockopt(&fd, sockopt::Ipv6RecvPacketInfo, &true)?;
    } else {
        ns::setsockopt(&fd, sockopt::Ipv4PacketInfo, &true)?;
    }
    Ok(())
}

/// Sets the GSO segment size of every later send of the socket
/// (`UDP_SEGMENT` as a socket option; [`send`] sets it per call instead).
pub fn set_gso_segment(fd: BorrowedFd<'_>, size: u16) -> io::Result<()> {
    ns::setsockopt(&fd, sockopt::UdpGsoSegment, &i32::from(size))?;
    Ok(())
}

/// Turns off the UDP checksum of the socket's sends (`SO_NO_CHECK`): the
/// kernel then refuses every GSO send with `EINVAL`, as a device that
/// cannot do GSO does (`EIO`). For tests of the fallback without GSO.
pub fn disable_send_checksum(fd: BorrowedFd<'_>) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: a plain `int` option, read by the kernel for the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NO_CHECK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// True if the kernel accepts `UDP_SEGMENT` on a socket of this family
/// (probed on a throw-away socket, since setting the option changes every
/// later send of that socket).
pub fn gso_supported(ipv6: bool) -> bool {
    let family = if ipv6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    match ns::socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None) {
        Ok(fd) => set_gso_segment(fd.as_fd(), 1400).is_ok(),
        Err(_) => false,
    }
}

/// How to mark a datagram's TOS / traffic-class byte on this socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TosOption {
    /// `IP_TOS`.
    Ipv4,
    /// `IPV6_TCLASS`.
    Ipv6,
}

impl TosOption {
    /// `IP_TOS` for IPv4 destinations (including IPv4-mapped ones on a
    /// dual-stack socket, which the kernel sends through its IPv4 path),
    /// `IPV6_TCLASS` for IPv6 destinations.
    #[inline]
    pub fn for_destination(dest: &SocketAddr) -> TosOption {
        match dest {
            SocketAddr::V4(_) => TosOption::Ipv4,
            SocketAddr::V6(_) => TosOption::Ipv6,
        }
    }

    /// Sets this option on the socket: the TOS / traffic-class byte of
    /// every later send that carries no control message for it.
    pub fn set(self, fd: BorrowedFd<'_>, tos: u8) -> io::Result<()> {
        let v = i32::from(tos);
        match self {
            TosOption::Ipv4 => ns::setsockopt(&fd, sockopt::Ipv4Tos, &v)?,
            TosOption::Ipv6 => ns::setsockopt(&fd, sockopt::Ipv6TClass, &v)?,
        }
        Ok(())
    }
}

/// A destination encoded for a socket's family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// For an IPv4 socket.
    V4(SockaddrIn),
    /// For an IPv6 socket (IPv4 destinations IPv4-mapped).
    V6(SockaddrIn6),
}

impl Dest {
    /// Encodes `addr` for a socket of the given family: an IPv4 address on
    /// an IPv6 socket becomes IPv4-mapped. `None` for IPv6 on an IPv4
    /// socket.
    #[inline]
    pub fn new(addr: SocketAddr, ipv6_socket: bool) -> Option<Dest> {
        match (addr, ipv6_socket) {
            (SocketAddr::V4(a), false) => Some(Dest::V4(SockaddrIn::from(a))),
            (SocketAddr::V6(_), false) => None,
            (SocketAddr::V4(a), true) => Some(Dest::V6(SockaddrIn6::from(SocketAddrV6::new(
                a.ip().to_ipv6_mapped(),
                a.port(),
                0,
                0,
            )))),
            (SocketAddr::V6(a), true) => Some(Dest::V6(SockaddrIn6::from(a))),
        }
    }

    /// The address, decoded again.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Dest::V4(a) => SocketAddr::V4(SocketAddrV4::from(*a)),
            Dest::V6(a) => SocketAddr::V6(SocketAddrV6::from(*a)),
        }
    }
}

/// Decodes a kernel socket address; `None` for families other than IP.
fn decode(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(a) = s.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*a)));
    }
    s.as_sockaddr_in6()
        .map(|a| SocketAddr::V6(SocketAddrV6::from(*a)))
}

/// Sends `data` to `dest` in one system call: with the TOS byte in a
/// control message if `tos` is given (else the socket's own setting
/// applies) and, when `segment` is given, as a GSO batch of
/// `segment`-byte datagrams. Without control messages this is a plain
/// `sendto`, which the kernel handles with less work than `sendmsg`.
pub fn send(
    fd: BorrowedFd<'_>,
    dest: &Dest,
    tos: Option<(TosOption, u8)>,
    segment: Option<u16>,
    data: &[u8],
) -> io::Result<usize> {
    let raw = fd.as_raw_fd();
    if tos.is_none() && segment.is_none() {
        return mmsg::send_to(raw, raw_name(dest), data);
    }
    mmsg::send_msg(
        raw,
        raw_name(dest),
        raw_tos(tos),
        segment,
        &[IoSlice::new(data)],
    )
}

/// [`send`] of the bytes of `iov`, in order, gathered by the kernel (one
/// `sendmsg`, no user-space copy): one datagram, or with `segment` a GSO
/// batch the kernel cuts every `segment` bytes of the whole stream,
/// whatever the slices' boundaries.
pub fn send_vectored(
    fd: BorrowedFd<'_>,
    dest: &Dest,
    tos: Option<(TosOption, u8)>,
    segment: Option<u16>,
    iov: &[IoSlice<'_>],
) -> io::Result<usize> {
    mmsg::send_msg(fd.as_raw_fd(), raw_name(dest), raw_tos(tos), segment, iov)
}

/// `dest` as the kernel reads it.
fn raw_name(dest: &Dest) -> mmsg::RawName {
    match dest {
        Dest::V4(a) => (a.as_ptr(), a.len()),
        Dest::V6(a) => (a.as_ptr(), a.len()),
    }
}

/// The TOS policy as a control message: level, type, value.
fn raw_tos(tos: Option<(TosOption, u8)>) -> Option<(libc::c_int, libc::c_int, libc::c_int)> {
    tos.map(|(opt, t)| match opt {
        TosOption::Ipv4 => (libc::IPPROTO_IP, libc::IP_TOS, libc::c_int::from(t)),
        TosOption::Ipv6 => (libc::IPPROTO_IPV6, libc::IPV6_TCLASS, libc::c_int::from(t)),
    })
}

/// Sends datagrams to `dest` without GSO and without a user-space copy:
/// datagram `i` is the concatenation of the `parts` slices
/// `iov[i * parts..(i + 1) * parts]` (the last may have fewer), one
/// `sendmmsg` per 64 datagrams. Returns the number of datagrams the kernel
/// accepted (fewer than all when the buffer filled).
pub fn send_datagrams(
    fd: BorrowedFd<'_>,
    dest: &Dest,
    tos: Option<(TosOption, u8)>,
    parts: usize,
    iov: &[IoSlice<'_>],
) -> io::Result<usize> {
    let name = raw_name(dest);
    let tos = raw_tos(tos);
    let parts = parts.max(1);
    let mut sent = 0usize;
    for group in iov.chunks(parts * MAX_GSO_SEGMENTS) {
        let want = group.len().div_ceil(parts);
        match mmsg::send_datagrams(fd.as_raw_fd(), name, tos, parts, group) {
            Ok(k) => {
                sent += k;
                if k < want {
                    return Ok(sent);
                }
            }
            Err(e) if sent > 0 && e.kind() == io::ErrorKind::WouldBlock => return Ok(sent),
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

/// One message of a [`send_batch`]: what one [`send_vectored`] call
/// would send.
#[derive(Debug, Clone, Copy)]
pub struct BatchMsg<'a> {
    /// The destination.
    pub dest: &'a Dest,
    /// The TOS byte as a control message (else the socket's own setting).
    pub tos: Option<(TosOption, u8)>,
    /// With a segment size, a GSO batch the kernel cuts every `segment`
    /// bytes of the gathered stream; else one datagram.
    pub segment: Option<u16>,
    /// The bytes, in order.
    pub iov: &'a [IoSlice<'a>],
}

/// Sends the first [`MAX_SEND_BATCH`] messages of `msgs` in one
/// non-blocking `sendmmsg` (no user-space copy, no allocation): message
/// `i` goes out as [`send_vectored`] would send `msgs[i]`, each with its
/// own destination, TOS control message and `UDP_SEGMENT` size. Returns
/// how many messages the kernel took, in order; an error only if it took
/// none. When it took some but not all, the error that stopped it (other
/// than `EAGAIN`) is the socket's pending error, which the next send on
/// the socket returns: sending the first message not taken again on its
/// own reports what happened to it.
pub fn send_batch(fd: BorrowedFd<'_>, msgs: &[BatchMsg<'_>]) -> io::Result<usize> {
    mmsg::send_msgs(fd.as_raw_fd(), msgs)
}

/// One received datagram of a [`RecvBatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvMeta {
    /// Bytes received.
    pub len: usize,
    /// Source address, as the kernel reported it.
    pub src: Option<SocketAddr>,
    /// With GRO: size of each coalesced datagram (the last may be shorter).
    pub segment: Option<usize>,
    /// The IP TOS / traffic-class byte, when the socket asked for it.
    pub tos: Option<u8>,
    /// The datagram's destination address, when the socket asked for it
    /// ([`enable_pktinfo`]).
    pub dst: Option<IpAddr>,
    /// The datagram did not fit the buffer.
    pub truncated: bool,
}

/// Buffers for receiving up to `n` datagrams (or GRO batches) at once,
/// reused by every [`recv_batch`]. Each datagram has a buffer of its own,
/// which [`RecvBatch::take`] / [`RecvBatch::take_shared`] hand over (a
/// received datagram kept without a copy) and replace from the batch's
/// [`BufPool`].
pub struct RecvBatch {
    /// One buffer per datagram, `stride` bytes of capacity each; its
    /// length is the bytes the kernel wrote into it by the last receive.
    bufs: Vec<Vec<u8>>,
    stride: usize,
    /// The `recvmsg`/`recvmmsg` headers, set up once (see [`mmsg`]).
    multi: mmsg::Headers,
    meta: Vec<RecvMeta>,
    /// Datagrams the last call asked for.
    asked: usize,
    capacity: usize,
    /// Where replacement buffers come from and handed-over ones return.
    pool: BufPool,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("capacity", &self.capacity)
            .field("stride", &self.stride)
            .field("received", &self.meta.len())
            .finish_non_exhaustive()
    }
}

impl RecvBatch {
    /// `n` buffers of `stride` bytes each, with a pool that keeps no idle
    /// buffer (every replacement is a new allocation, every handed-over
    /// buffer is freed when dropped).
    pub fn new(n: usize, stride: usize) -> RecvBatch {
        RecvBatch::with_pool(n, BufPool::new(stride, 0))
    }

    /// `n` buffers of the pool's stride each; replacements come from
    /// `pool` and handed-over buffers return to it.
    pub fn with_pool(n: usize, pool: BufPool) -> RecvBatch {
        let n = n.max(1);
        let stride = pool.stride();
        let mut bufs: Vec<Vec<u8>> = (0..n).map(|_| Vec::with_capacity(stride)).collect();
        let multi = mmsg::Headers::new(&mut bufs, stride);
        RecvBatch {
            bufs,
            stride,
            multi,
            meta: Vec::with_capacity(n),
            asked: n,
            capacity: n,
            pool,
        }
    }

    /// The pool replacement buffers come from.
    #[inline]
    pub fn pool(&self) -> &BufPool {
        &self.pool
    }

    /// True if the last [`recv_batch`] returned as many datagrams as it
    /// asked for (more may be queued).
    #[inline]
    pub fn filled(&self) -> bool {
        self.meta.len() == self.asked
    }

    /// Most datagrams one call can return.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Datagrams the last [`recv_batch`] returned.
    #[inline]
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    /// True if the last [`recv_batch`] returned nothing.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// Received datagram `i` of the last [`recv_batch`]: metadata and bytes.
    #[inline]
    pub fn get(&self, i: usize) -> (RecvMeta, &[u8]) {
        (self.meta[i], &self.bufs[i])
    }

    /// Takes received datagram `i` of the last [`recv_batch`] (its bytes,
    /// in the buffer they were received in) and gives the batch a fresh
    /// buffer for that slot from its pool (an idle one, else one
    /// allocation of `stride` bytes; not initialized: the kernel writes
    /// what is read). The buffer taken does not return to the pool.
    pub fn take(&mut self, i: usize) -> Vec<u8> {
        assert!(i < self.meta.len(), "datagram {i} was not received");
        let mut fresh = self.pool.get();
        self.multi.set_buffer(i, &mut fresh);
        std::mem::replace(&mut self.bufs[i], fresh)
    }

    /// [`RecvBatch::take`] as `Bytes`. A datagram that fills at least
    /// fifteen sixteenths of its buffer keeps the whole buffer, which
    /// returns to the pool when the last `Bytes` referencing it drops (so a
    /// bulk transfer's buffers are reused, not allocated per datagram); a
    /// shorter one is trimmed to its length (the allocator shrinks it in
    /// place) and freed when dropped, so it pins about what it holds.
    /// Either way a kept buffer pins at most 16/15 of its datagram (a
    /// message's memory accounting counts datagram lengths).
    pub fn take_shared(&mut self, i: usize) -> bytes::Bytes {
        let mut buf = self.take(i);
        if self.pool.max() > 0 && buf.len() >= self.stride - self.stride / 16 {
            return bytes::Bytes::from_owner(pool::Pooled {
                buf,
                pool: self.pool.clone(),
            });
        }
        buf.shrink_to_fit();
        bytes::Bytes::from(buf)
    }

    /// Bytes of each datagram's buffer.
    #[inline]
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Records the lengths the kernel reported for the `got` datagrams
    /// just received: those bytes of each buffer are initialized.
    fn received(&mut self, got: usize) {
        for i in 0..got {
            let len = self.meta[i].len.min(self.stride);
            // SAFETY: the buffer's capacity is at least `stride` and the
            // kernel wrote its first `len` bytes (`len` is what it reported,
            // capped at the iovec's length, `stride`).
            unsafe { self.bufs[i].set_len(len) };
        }
    }
}

/// Receives up to `max` datagrams (at most the batch's capacity) without
/// blocking: one `recvmsg` for a single datagram (cheaper than
/// `recvmmsg`'s loop), else one `recvmmsg`, both into headers set up once
/// (see the `mmsg` module).
/// Returns how many arrived: 0 when none is queued (the common case of a
/// busy-polling thread, so it is not an error).
#[inline]
pub fn recv_batch(fd: BorrowedFd<'_>, batch: &mut RecvBatch, max: usize) -> io::Result<usize> {
    let n = batch.capacity.min(max.max(1));
    batch.asked = n;
    batch.meta.clear();
    let raw = fd.as_raw_fd();
    if n == 1 {
        let got = batch.multi.recv_one(raw)?;
        if got == 1 {
            batch.meta.push(batch.multi.meta(0));
            batch.received(1);
        }
        return Ok(got);
    }
    let got = batch.multi.recv(raw, n)?;
    for i in 0..got {
        batch.meta.push(batch.multi.meta(i));
    }
    batch.received(got);
    Ok(got)
}

/// An error the kernel queued for the socket ([`enable_errors`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedError {
    /// The errno it maps to (`ECONNREFUSED` for port unreachable,
    /// `EHOSTUNREACH`, `ENETUNREACH`...; 0 for an entry without details).
    pub errno: i32,
    /// It came from an ICMP / ICMPv6 message (else from the local stack).
    pub icmp: bool,
    /// Destination of the datagram that caused it.
    pub dest: Option<SocketAddr>,
}

/// Takes one entry off the socket's error queue; `None` when it is empty.
pub fn recv_error(fd: BorrowedFd<'_>) -> io::Result<Option<QueuedError>> {
    let mut data = [0u8; 64];
    let mut iov = [IoSliceMut::new(&mut data)];
    let mut cmsg = vec![0u8; 512];
    let m = match ns::recvmsg::<SockaddrStorage>(
        fd.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(m) => m,
        Err(Errno::EAGAIN) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let dest = m.address.as_ref().and_then(decode);
    // An entry without an extended-error message still left the queue:
    // report it with errno 0 so the caller keeps draining.
    let mut found = QueuedError {
        errno: 0,
        icmp: false,
        dest,
    };
    if let Ok(cmsgs) = m.cmsgs() {
        for c in cmsgs {
            let ee = match c {
                ControlMessageOwned::Ipv4RecvErr(ee, _) => ee,
                ControlMessageOwned::Ipv6RecvErr(ee, _) => ee,
                _ => continue,
            };
            found.errno = ee.ee_errno as i32;
            found.icmp =
                ee.ee_origin == libc::SO_EE_ORIGIN_ICMP || ee.ee_origin == libc::SO_EE_ORIGIN_ICMP6;
        }
    }
    Ok(Some(found))
}

/// Makes a socket that nobody will read again refuse every peer: it is
/// connected to its own address, so the kernel no longer delivers other
/// peers' datagrams to it and answers them with ICMP port unreachable
/// (peers learn at their next packet instead of retrying into a socket
/// nobody reads). The descriptor stays valid, so threads still polling it
/// are not left with a number that could be reused for something else.
pub fn refuse_peers(fd: BorrowedFd<'_>, local: SocketAddr) -> io::Result<()> {
    let ip = match local.ip() {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    match SocketAddr::new(ip, local.port()) {
        SocketAddr::V4(a) => ns::connect(fd.as_raw_fd(), &SockaddrIn::from(a))?,
        SocketAddr::V6(a) => ns::connect(fd.as_raw_fd(), &SockaddrIn6::from(a))?,
    }
    Ok(())
}

/// A second descriptor of the same socket (`fcntl(F_DUPFD_CLOEXEC)`), for a
/// reactor that must watch the socket for another event than the first
/// descriptor's registration asks for, and only for a while: the tokio
/// driver watches writability this way, only while a transmit waits for
/// room (an `epoll` registration that asks for writability wakes its
/// thread each time a sent packet frees buffer space).
pub fn duplicate(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    fd.try_clone_to_owned()
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    /// Sends `data`, cut into `segment`-byte datagrams (the last may be
    /// shorter), with one `sendmmsg` per 64 datagrams: the fallback when the
    /// kernel cannot do GSO. Returns the number of datagrams the kernel
    /// accepted (fewer than all when the buffer filled). The datapath sends
    /// through [`send_datagrams`] directly; these tests keep checking the
    /// one-buffer form of it.
    fn send_split(
        fd: BorrowedFd<'_>,
        dest: &Dest,
        tos: Option<(TosOption, u8)>,
        segment: usize,
        data: &[u8],
    ) -> io::Result<usize> {
        let segment = segment.max(1);
        let mut sent = 0usize;
        let mut iov = [IoSlice::new(&[]); MAX_GSO_SEGMENTS];
        for group in data.chunks(segment * MAX_GSO_SEGMENTS) {
            let mut n = 0;
            for (slot, chunk) in iov.iter_mut().zip(group.chunks(segment)) {
                *slot = IoSlice::new(chunk);
                n += 1;
            }
            match send_datagrams(fd, dest, tos, 1, &iov[..n]) {
                Ok(k) => {
                    sent += k;
                    if k < n {
                        return Ok(sent);
                    }
                }
                Err(e) if sent > 0 && e.kind() == io::ErrorKind::WouldBlock => return Ok(sent),
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }

    #[test]
    fn bind__reuse_port_shares_a_port_only_when_asked() {
        let a = bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let addr = a.local_addr().unwrap();
        let b = bind(addr, true).unwrap();
        assert_eq!(b.local_addr().unwrap(), addr);
        let e = bind(addr, false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    }
    use std::net::UdpSocket;

    #[test]
    fn steer_reuseport_by_cpu__each_cpu_sends_to_its_socket() {
        // Two sockets on one port; a datagram sent over loopback is
        // received (softirq) on the sending CPU, so a sender pinned to CPU
        // c must reach socket c (or socket 0 when only one CPU is allowed:
        // CPU indexes beyond the group fall back to the hash).
        let cpus = crate::process::allowed_cpus();
        let a = bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let addr = a.local_addr().unwrap();
        let b = bind(addr, true).unwrap();
        steer_reuseport_by_cpu(a.as_fd()).unwrap();
        let group = [&a, &b];
        for s in group {
            s.set_nonblocking(true).unwrap();
        }
        let mut checked = 0;
        for &cpu in cpus.iter().filter(|&&c| c < 2) {
            let got = std::thread::spawn(move || {
                crate::process::pin_current_thread(cpu).unwrap();
                // Eight source ports: the hash alone would spread them.
                for _ in 0..8 {
                    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
                    tx.send_to(&[cpu as u8], addr).unwrap();
                }
            });
            got.join().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
            let mut buf = [0u8; 4];
            for (i, s) in group.iter().enumerate() {
                let mut n = 0;
                while let Ok((len, _)) = s.recv_from(&mut buf) {
                    assert_eq!((len, buf[0] as usize), (1, cpu));
                    n += 1;
                }
                let want = if i == cpu { 8 } else { 0 };
                assert_eq!(n, want, "socket {i} from cpu {cpu}");
            }
            checked += 1;
        }
        assert!(checked > 0, "no CPU among 0 and 1 allowed: {cpus:?}");
    }

    #[test]
    fn dest__maps_ipv4_on_ipv6_socket_and_refuses_the_reverse() {
        let v4: SocketAddr = "10.1.2.3:4000".parse().unwrap();
        assert_eq!(
            Dest::new(v4, true).unwrap().addr(),
            "[::ffff:10.1.2.3]:4000".parse().unwrap()
        );
        assert_eq!(Dest::new(v4, false).unwrap().addr(), v4);
        assert!(Dest::new("[::1]:5".parse().unwrap(), false).is_none());
    }

    #[test]
    fn send_and_recv_batch__carry_tos_segment_and_source() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable_recv_tos(rx.as_fd(), false).unwrap();
        let gro = enable_gro(rx.as_fd());
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dest = Dest::new(rx.local_addr().unwrap(), false).unwrap();
        // Plain sendto, then a TOS control message, then (if the kernel
        // can) a GSO batch of three 100-byte datagrams.
        send(tx.as_fd(), &dest, None, None, b"plain").unwrap();
        send(
            tx.as_fd(),
            &dest,
            Some((TosOption::Ipv4, 0xa0)),
            None,
            b"marked",
        )
        .unwrap();
        let gso = gso_supported(false);
        if gso {
            send(tx.as_fd(), &dest, None, Some(100), &[7u8; 300]).unwrap();
        }
        let mut batch = RecvBatch::new(4, 1 << 16);
        let mut seen = Vec::new();
        while seen.len() < 2 + usize::from(gso) {
            let n =
                recv_batch(rx.as_fd(), &mut batch, if seen.is_empty() { 1 } else { 4 }).unwrap();
            for i in 0..n {
                let (m, b) = batch.get(i);
                seen.push((m, b.to_vec()));
            }
        }
        let from = tx.local_addr().unwrap();
        assert_eq!(seen[0].1, b"plain");
        assert_eq!(seen[0].0.src, Some(from));
        assert_eq!(seen[0].0.tos, Some(0));
        assert_eq!(seen[1].1, b"marked");
        assert_eq!(seen[1].0.tos, Some(0xa0));
        if gso {
            let total: usize = seen[2..].iter().map(|s| s.1.len()).sum();
            assert_eq!(total, 300);
            if gro {
                assert_eq!(seen[2].0.segment, Some(100));
            }
        }
    }

    /// A taken datagram keeps its bytes in the buffer they were received
    /// in while the batch receives into a fresh one (`recvmsg` and
    /// `recvmmsg` alike).
    #[test]
    fn take__keeps_the_datagram_and_the_slot_receives_into_a_new_buffer() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dest = Dest::new(rx.local_addr().unwrap(), false).unwrap();
        let mut batch = RecvBatch::new(2, 2048);
        let next = |batch: &mut RecvBatch, max: usize, payload: &[u8]| {
            send(tx.as_fd(), &dest, None, None, payload).unwrap();
            while recv_batch(rx.as_fd(), batch, max).unwrap() == 0 {}
        };
        for max in [1, 2] {
            next(&mut batch, max, &[1; 700]);
            let at = batch.get(0).1.as_ptr();
            let first = batch.take(0);
            assert_eq!((first.as_ptr(), &first[..]), (at, &[1u8; 700][..]));
            next(&mut batch, max, &[2; 300]);
            assert_eq!(batch.get(0).1, &[2u8; 300][..]);
            assert_ne!(batch.get(0).1.as_ptr(), at, "a fresh buffer");
            assert_eq!(&first[..], &[1u8; 700][..], "untouched");
        }
    }

    /// A nearly full datagram (15/16 of the buffer or more) handed over as
    /// `Bytes` keeps its buffer, which comes back to the pool when the last
    /// `Bytes` drops and is the next replacement; a shorter one (here 93%)
    /// is trimmed and not pooled.
    #[test]
    fn take_shared__full_buffers_return_to_the_pool_short_ones_are_trimmed() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dest = Dest::new(rx.local_addr().unwrap(), false).unwrap();
        let pool = BufPool::new(2048, 4);
        let mut batch = RecvBatch::with_pool(1, pool.clone());
        let next = |batch: &mut RecvBatch, payload: &[u8]| {
            send(tx.as_fd(), &dest, None, None, payload).unwrap();
            while recv_batch(rx.as_fd(), batch, 1).unwrap() == 0 {}
        };
        next(&mut batch, &[1; 1950]);
        let at = batch.get(0).1.as_ptr();
        let full = batch.take_shared(0);
        assert_eq!((full.as_ptr(), &full[..]), (at, &[1u8; 1950][..]));
        let piece = full.slice(10..20);
        drop(full);
        assert_eq!(pool.stats().idle, 0, "still referenced");
        drop(piece);
        assert_eq!(pool.stats().idle, 1, "back in the pool");
        next(&mut batch, &[2; 1900]);
        let short = batch.take_shared(0);
        assert_eq!(&short[..], &[2u8; 1900][..]);
        next(&mut batch, &[3; 1600]);
        assert_eq!(batch.get(0).1.as_ptr(), at, "the pooled buffer was reused");
        drop(short);
        let s = pool.stats();
        // One allocation (the replacement for the first take), reused
        // once; the short datagram's buffer was freed, not returned.
        assert_eq!((s.allocated, s.reused, s.returned, s.idle), (1, 1, 1, 0));
    }

    #[test]
    fn send_split__sends_one_datagram_per_segment() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dest = Dest::new(rx.local_addr().unwrap(), false).unwrap();
        let n = send_split(
            tx.as_fd(),
            &dest,
            Some((TosOption::Ipv4, 0x20)),
            10,
            &[1u8; 25],
        )
        .unwrap();
        assert_eq!(n, 3);
        let mut buf = [0u8; 64];
        let lens: Vec<usize> = (0..3).map(|_| rx.recv(&mut buf).unwrap()).collect();
        assert_eq!(lens, vec![10, 10, 5]);
    }

    #[test]
    fn send_split__more_than_one_sendmmsg_byte_exact_with_the_tos_byte() {
        for ipv6 in [false, true] {
            let host = if ipv6 { "[::1]:0" } else { "127.0.0.1:0" };
            let rx = UdpSocket::bind(host).unwrap();
            let tx = UdpSocket::bind(host).unwrap();
            set_buffer(rx.as_fd(), Buffer::Receive, 1 << 20).unwrap();
            enable_recv_tos(rx.as_fd(), ipv6).unwrap();
            rx.set_nonblocking(true).unwrap();
            let dest = Dest::new(rx.local_addr().unwrap(), ipv6).unwrap();
            // 150 segments: three sendmmsg calls (64 + 64 + 22).
            let data: Vec<u8> = (0..1495u32).map(|i| (i % 251) as u8).collect();
            let opt = if ipv6 {
                TosOption::Ipv6
            } else {
                TosOption::Ipv4
            };
            let n = send_split(tx.as_fd(), &dest, Some((opt, 0xa0)), 10, &data).unwrap();
            assert_eq!(n, 150);
            let mut batch = RecvBatch::new(1, 2048);
            let mut got = Vec::new();
            while recv_batch(rx.as_fd(), &mut batch, 1).unwrap() == 1 {
                let (meta, bytes) = batch.get(0);
                assert_eq!(meta.tos, Some(0xa0), "ipv6 {ipv6}");
                got.extend_from_slice(bytes);
            }
            assert_eq!(got, data, "ipv6 {ipv6}");
            // Without a TOS control message too.
            assert_eq!(
                send_split(tx.as_fd(), &dest, None, 7, &data[..20]).unwrap(),
                3
            );
        }
    }

    #[test]
    fn send_and_send_split__allocate_nothing() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        set_buffer(rx.as_fd(), Buffer::Receive, 4 << 20).unwrap();
        let dest = Dest::new(rx.local_addr().unwrap(), false).unwrap();
        let data = vec![7u8; 1472 * 100];
        let tos = Some((TosOption::Ipv4, 0x20));
        let gso = gso_supported(false);
        let n = crate::alloc_count::during(|| {
            // The fallback: 100 datagrams in two sendmmsg calls.
            assert_eq!(
                send_split(tx.as_fd(), &dest, tos, 1472, &data).unwrap(),
                100
            );
            // A plain send, a send with a TOS control message, a GSO send.
            send(tx.as_fd(), &dest, None, None, &data[..100]).unwrap();
            send(tx.as_fd(), &dest, tos, None, &data[..100]).unwrap();
            if gso {
                send(tx.as_fd(), &dest, tos, Some(1472), &data[..1472 * 40]).unwrap();
            }
            // The same without a user-space copy: header and payload
            // iovecs, with GSO and without.
            let iov = [IoSlice::new(&data[..56]), IoSlice::new(&data[56..1472])];
            let iov = [iov; 40];
            let iov = iov.as_flattened();
            assert_eq!(send_datagrams(tx.as_fd(), &dest, tos, 2, iov).unwrap(), 40);
            if gso {
                send_vectored(tx.as_fd(), &dest, tos, Some(1472), iov).unwrap();
                // Several sends in one sendmmsg, each with its control
                // messages.
                let m = |segment, iov| BatchMsg {
                    dest: &dest,
                    tos,
                    segment,
                    iov,
                };
                let msgs = [m(Some(1472), iov), m(None, &iov[..2]), m(None, &iov[2..4])];
                assert_eq!(send_batch(tx.as_fd(), &msgs).unwrap(), 3);
            }
        });
        assert_eq!(n, 0, "allocations while sending");
        assert!(gso, "UDP GSO unavailable: the GSO send was not checked");
    }

    /// Header/payload iovec pairs arrive as the datagrams they describe,
    /// byte-exact, through GSO (the kernel cuts the gathered stream at the
    /// segment size, whatever the iovec boundaries) and through the
    /// fallback (one datagram per pair), with a short last datagram.
    #[test]
    fn send_vectored_and_send_datagrams__deliver_header_payload_pairs_byte_exact() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        set_buffer(rx.as_fd(), Buffer::Receive, 4 << 20).unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let dest = Dest::new(rx.local_addr().unwrap(), false).unwrap();
        let (seg, n) = (1400usize, 30usize);
        let headers: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8 ^ 0xa5; 56]).collect();
        let message: Vec<u8> = (0..(seg - 56) * (n - 1) + 700)
            .map(|i| (i * 13 % 251) as u8)
            .collect();
        let payloads: Vec<&[u8]> = message.chunks(seg - 56).collect();
        let expect: Vec<Vec<u8>> = headers
            .iter()
            .zip(&payloads)
            .map(|(h, p)| [&h[..], p].concat())
            .collect();
        assert!(expect.last().unwrap().len() < seg, "a short last datagram");
        let iov: Vec<IoSlice<'_>> = headers
            .iter()
            .zip(&payloads)
            .flat_map(|(h, p)| [IoSlice::new(h), IoSlice::new(p)])
            .collect();
        let mut buf = vec![0u8; 65_536];
        let mut check = |what: &str| {
            for (i, want) in expect.iter().enumerate() {
                let k = rx.recv(&mut buf).unwrap();
                assert_eq!(&buf[..k], &want[..], "{what}: datagram {i}");
            }
        };
        assert_eq!(send_datagrams(tx.as_fd(), &dest, None, 2, &iov).unwrap(), n);
        check("sendmmsg");
        assert!(gso_supported(false), "UDP GSO unavailable: not checked");
        let total: usize = expect.iter().map(Vec::len).sum();
        let sent = send_vectored(tx.as_fd(), &dest, None, Some(seg as u16), &iov).unwrap();
        assert_eq!(sent, total);
        check("GSO");
    }

    /// One `sendmmsg` of four messages to two peers: GSO batches of
    /// different segment sizes and single datagrams, each with its own TOS
    /// byte or none, gathered from header/payload iovecs. Every datagram
    /// arrives byte-exact at its peer, cut at its message's segment size,
    /// with its message's TOS byte, in order; both address families.
    #[test]
    fn send_batch__messages_to_two_peers_each_with_its_segment_and_tos_byte_exact() {
        assert!(gso_supported(false), "UDP GSO unavailable: not checked");
        for ipv6 in [false, true] {
            let host = if ipv6 { "[::1]:0" } else { "127.0.0.1:0" };
            let opt = if ipv6 {
                TosOption::Ipv6
            } else {
                TosOption::Ipv4
            };
            let tx = UdpSocket::bind(host).unwrap();
            let rxs = [
                UdpSocket::bind(host).unwrap(),
                UdpSocket::bind(host).unwrap(),
            ];
            for rx in &rxs {
                set_buffer(rx.as_fd(), Buffer::Receive, 4 << 20).unwrap();
                enable_recv_tos(rx.as_fd(), ipv6).unwrap();
                rx.set_nonblocking(true).unwrap();
            }
            let dests = rxs
                .each_ref()
                .map(|rx| Dest::new(rx.local_addr().unwrap(), ipv6).unwrap());
            let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 253) as u8).collect();
            let heads: Vec<[u8; 8]> = (0..16u8).map(|i| [i ^ 0x5a; 8]).collect();
            // Message 0: GSO to peer 0, 100-byte segments (8 + 92), 5
            // datagrams, the last short. Message 1: one datagram to peer 1
            // with TOS 0xa0. Message 2: GSO to peer 1, 600-byte segments, 3
            // datagrams, TOS 0x40. Message 3: one datagram to peer 0, no
            // TOS message.
            let iov0: Vec<IoSlice<'_>> = (0..5)
                .flat_map(|i| {
                    let end = if i == 4 { 92 * 4 + 50 } else { 92 * (i + 1) };
                    [IoSlice::new(&heads[i]), IoSlice::new(&data[92 * i..end])]
                })
                .collect();
            let iov1 = [IoSlice::new(&heads[5]), IoSlice::new(&data[1000..2400])];
            let iov2: Vec<IoSlice<'_>> = (0..3)
                .flat_map(|i| {
                    let at = 3000 + 592 * i;
                    [
                        IoSlice::new(&heads[6 + i]),
                        IoSlice::new(&data[at..at + 592]),
                    ]
                })
                .collect();
            let iov3 = [IoSlice::new(&data[5000..5001])];
            let m = |to: usize, tos: Option<u8>, segment, iov| BatchMsg {
                dest: &dests[to],
                tos: tos.map(|t| (opt, t)),
                segment,
                iov,
            };
            let msgs = [
                m(0, None, Some(100), &iov0[..]),
                m(1, Some(0xa0), None, &iov1[..]),
                m(1, Some(0x40), Some(600), &iov2[..]),
                m(0, None, None, &iov3[..]),
            ];
            assert_eq!(send_batch(tx.as_fd(), &msgs).unwrap(), 4);
            // What each message's datagrams must be: its stream cut at
            // its segment size.
            let cut = |msg: &BatchMsg<'_>, tos: u8| -> Vec<(Vec<u8>, u8)> {
                let all: Vec<u8> = msg.iov.iter().flat_map(|s| s.iter().copied()).collect();
                let seg = msg.segment.map_or(all.len(), usize::from);
                all.chunks(seg).map(|c| (c.to_vec(), tos)).collect()
            };
            let want = [
                [cut(&msgs[0], 0), cut(&msgs[3], 0)].concat(),
                [cut(&msgs[1], 0xa0), cut(&msgs[2], 0x40)].concat(),
            ];
            assert_eq!(want.each_ref().map(Vec::len), [6, 4]);
            let mut batch = RecvBatch::new(1, 1 << 16);
            for (rx, want) in rxs.iter().zip(&want) {
                let mut got = Vec::new();
                while recv_batch(rx.as_fd(), &mut batch, 1).unwrap() == 1 {
                    let (meta, bytes) = batch.get(0);
                    assert_eq!(meta.src, Some(tx.local_addr().unwrap()));
                    got.push((bytes.to_vec(), meta.tos.unwrap()));
                }
                assert_eq!(&got, want, "ipv6 {ipv6}");
            }
        }
    }

    /// A batch the kernel stops in the middle (here: a GSO message on a
    /// socket without send checksums, `EINVAL`) returns the messages taken
    /// before it; the error is the socket's pending error, which the next
    /// send of the refused message on its own reports.
    #[test]
    fn send_batch__a_refused_message_stops_the_batch_and_is_reported_on_its_own() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        disable_send_checksum(tx.as_fd()).unwrap();
        rx.set_nonblocking(true).unwrap();
        let dest = Dest::new(rx.local_addr().unwrap(), false).unwrap();
        let data = vec![3u8; 300];
        let ok = [IoSlice::new(&data[..10])];
        let bad = [IoSlice::new(&data)];
        let m = |segment, iov| BatchMsg {
            dest: &dest,
            tos: None,
            segment,
            iov,
        };
        let msgs = [m(None, &ok[..]), m(Some(100), &bad[..]), m(None, &ok[..])];
        assert_eq!(send_batch(tx.as_fd(), &msgs).unwrap(), 1);
        let e = send_batch(tx.as_fd(), &msgs[1..2]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        // The error is not reported again: the next message goes out.
        assert_eq!(send_batch(tx.as_fd(), &msgs[2..]).unwrap(), 1);
        // Nothing of the refused message went out.
        let mut buf = [0u8; 64];
        assert_eq!(rx.recv(&mut buf).unwrap(), 10);
        assert_eq!(rx.recv(&mut buf).unwrap(), 10);
        assert!(rx.recv(&mut buf).is_err());
    }

    #[test]
    fn recv_error__reports_port_unreachable_with_its_destination() {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable_errors(sock.as_fd(), false).unwrap();
        let gone = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = gone.local_addr().unwrap();
        drop(gone);
        let dest = Dest::new(to, false).unwrap();
        send(sock.as_fd(), &dest, None, None, b"anyone?").unwrap();
        // Loopback queues the ICMP error during the send.
        let e = recv_error(sock.as_fd())
            .unwrap()
            .expect("an error is queued");
        assert_eq!(e.errno, libc::ECONNREFUSED);
        assert!(e.icmp);
        assert_eq!(e.dest, Some(to));
        assert_eq!(recv_error(sock.as_fd()).unwrap(), None);
    }

    #[test]
    fn refuse_peers__peers_get_port_unreachable_and_the_fd_stays_valid() {
        let closing = UdpSocket::bind("127.0.0.1:0").unwrap();
        let at = closing.local_addr().unwrap();
        refuse_peers(closing.as_fd(), at).unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable_errors(peer.as_fd(), false).unwrap();
        send(
            peer.as_fd(),
            &Dest::new(at, false).unwrap(),
            None,
            None,
            b"x",
        )
        .unwrap();
        let e = recv_error(peer.as_fd()).unwrap().expect("refused");
        assert_eq!(e.errno, libc::ECONNREFUSED);
        // Still a socket: options can be read.
        assert!(set_buffer(closing.as_fd(), Buffer::Receive, 1 << 16).unwrap() > 0);
    }
}
