//! The receive hot path: `recvmsg`/`recvmmsg` with headers set up once per
//! batch, and the parsing of each datagram's control messages (GRO segment
//! size, TOS byte, destination); and the sends with control messages
//! ([`send_msg`]), the GSO fallback's `sendmmsg` ([`send_datagrams`]) and
//! the `sendmmsg` of several whole messages, each with its own destination
//! and control messages ([`send_msgs`]), with their headers on the stack
//! and the bytes named by iovecs.
//!
//! These are the receive calls not taken from `nix`: its `recvmmsg` needs
//! its headers allocated and zeroed again for every call (its
//! `MultiHeaders` cannot be kept: it is not `Send`, and the lengths the
//! kernel overwrites are not restored), which doubled the instructions of
//! a small round trip; and its `recvmsg` error path (every empty poll of a
//! busy-polling thread) converts errno through a large match. Here the
//! headers point into the batch's own buffers, set up when the batch is
//! created, and each call only resets the lengths the previous one
//! overwrote.

use std::io::{self, IoSlice};
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use libc::{c_int, socklen_t};

use super::RecvMeta;

/// The hot-path socket calls made straight through `syscall(2)`.
///
/// glibc's `sendto`, `sendmsg`, `sendmmsg`, `recvmsg` and `recvmmsg` are
/// POSIX cancellation points: in a process with more than one thread each
/// call switches asynchronous cancellation on and off around the system
/// call, about 60 instructions per call, a tenth of the user-space cost of
/// sending a 100-byte request (callgrind, `docs/performance.md`). Nothing
/// in homa-rs cancels threads, so the cancellation points buy nothing.
/// Each function returns what the kernel returned: a count, or -1 with
/// `errno` set.
mod raw {
    use libc::{c_int, c_long};

    /// `recvmsg` or `sendmsg` (`nr`): `(fd, msg, flags)`.
    ///
    /// # Safety
    /// As `recvmsg(2)` / `sendmsg(2)`: `msg` points at a header whose name,
    /// iovecs (and the bytes they name) and control bytes stay alive for
    /// the call, writable for a receive.
    #[inline]
    pub(super) unsafe fn msg(nr: c_long, fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> isize {
        // SAFETY: as the caller guarantees.
        unsafe { libc::syscall(nr, fd as c_long, msg, flags as c_long) as isize }
    }

    /// `recvmmsg` or `sendmmsg` (`nr`): `(fd, hdrs, n, flags)`, and for a
    /// receive no timeout (`sendmmsg` takes no fifth argument).
    ///
    /// # Safety
    /// As `recvmmsg(2)` / `sendmmsg(2)`: the first `n` headers point at
    /// what [`msg`] needs; a send's kernel writes only their `msg_len`.
    #[inline]
    pub(super) unsafe fn mmsg(
        nr: c_long,
        fd: c_int,
        hdrs: *mut libc::mmsghdr,
        n: u32,
        flags: c_int,
    ) -> isize {
        // SAFETY: as the caller guarantees.
        unsafe {
            libc::syscall(
                nr,
                fd as c_long,
                hdrs,
                n as c_long,
                flags as c_long,
                std::ptr::null_mut::<libc::timespec>(),
            ) as isize
        }
    }

    /// `sendto(fd, buf, len, flags, name, namelen)`.
    ///
    /// # Safety
    /// As `sendto(2)`: `buf` names `len` readable bytes and `name` a socket
    /// address of `namelen` bytes, both alive for the call.
    #[inline]
    pub(super) unsafe fn sendto(
        fd: c_int,
        buf: *const u8,
        len: usize,
        flags: c_int,
        name: super::RawName,
    ) -> isize {
        // SAFETY: as the caller guarantees.
        unsafe {
            libc::syscall(
                libc::SYS_sendto,
                fd as c_long,
                buf,
                len,
                flags as c_long,
                name.0,
                name.1 as c_long,
            ) as isize
        }
    }
}

/// One `sendto` of `data` to `name` (no flags: as the socket's own
/// blocking mode and TOS setting say): a single datagram.
#[inline]
pub(super) fn send_to(fd: RawFd, name: RawName, data: &[u8]) -> io::Result<usize> {
    // SAFETY: `data` and the address `name` names are alive for the call;
    // the kernel only reads them.
    let r = unsafe { raw::sendto(fd, data.as_ptr(), data.len(), 0, name) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}

/// A destination as the kernel reads it: pointer and length of a socket
/// address that outlives the call.
pub(super) type RawName = (*const libc::sockaddr, socklen_t);

/// Control-message buffer of a send, aligned for `cmsghdr`: room for an
/// `int`-sized TOS message and a `u16` GSO segment size.
#[repr(C, align(8))]
struct SendCmsg([u8; 64]);

impl SendCmsg {
    /// Writes the TOS message `tos` (level, type, value) and the
    /// `UDP_SEGMENT` message `segment`, each if given; returns the length
    /// of what was written (0 for none).
    fn fill(&mut self, tos: Option<(c_int, c_int, c_int)>, segment: Option<u16>) -> usize {
        // SAFETY: CMSG_SPACE is a pure computation.
        let (int_space, u16_space) = unsafe {
            (
                libc::CMSG_SPACE(size_of::<c_int>() as u32) as usize,
                libc::CMSG_SPACE(size_of::<u16>() as u32) as usize,
            )
        };
        assert!(int_space + u16_space <= self.0.len());
        let mut len = 0;
        // SAFETY: the buffer is aligned for `cmsghdr` and has room for both
        // messages (checked above); each header is written at the start of
        // its own CMSG_SPACE-sized, aligned slot.
        unsafe {
            if let Some((level, kind, value)) = tos {
                let c = self.0.as_mut_ptr().add(len).cast::<libc::cmsghdr>();
                (*c).cmsg_level = level;
                (*c).cmsg_type = kind;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<c_int>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<c_int>(), value);
                len += int_space;
            }
            if let Some(seg) = segment {
                let c = self.0.as_mut_ptr().add(len).cast::<libc::cmsghdr>();
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = libc::UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg);
                len += u16_space;
            }
        }
        len
    }
}

/// One non-blocking `sendmsg` to `name` of the bytes of `iov` (in
/// order), with the TOS message and the `UDP_SEGMENT` (GSO) message, each
/// if given. nix's `sendmsg` allocates the control buffer on every call;
/// this one is on the stack.
pub(super) fn send_msg(
    fd: RawFd,
    name: RawName,
    tos: Option<(c_int, c_int, c_int)>,
    segment: Option<u16>,
    iov: &[IoSlice<'_>],
) -> io::Result<usize> {
    let mut cmsg = SendCmsg([0; 64]);
    let controllen = cmsg.fill(tos, segment);
    // SAFETY: plain data; all zeroes is valid.
    let mut m: libc::msghdr = unsafe { zeroed() };
    set_header(&mut m, name, iov, &mut cmsg, controllen);
    // SAFETY: the header points at `iov` (and the bytes it names), `name`
    // and `cmsg`, all alive for the call; the kernel only reads them.
    let r = unsafe { raw::msg(libc::SYS_sendmsg, fd, &mut m, libc::MSG_DONTWAIT) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}

/// Sends datagrams to `name` in one non-blocking `sendmmsg`, each with
/// the TOS control message `tos` (level, type, value) if given: datagram
/// `i` is the concatenation of the `parts` slices `iov[i * parts..]` (the
/// last datagram may have fewer), at most [`super::MAX_GSO_SEGMENTS`]
/// datagrams. Returns how many datagrams the kernel took.
///
/// nix's `sendmmsg` needs its `MultiHeaders`, the addresses and the
/// slices allocated for every call (about 20 allocations per 64-packet
/// batch); here everything lives on the stack.
pub(super) fn send_datagrams(
    fd: RawFd,
    name: RawName,
    tos: Option<(c_int, c_int, c_int)>,
    parts: usize,
    iov: &[IoSlice<'_>],
) -> io::Result<usize> {
    const N: usize = super::MAX_GSO_SEGMENTS;
    let parts = parts.max(1);
    let n = iov.len().div_ceil(parts).min(N);
    let mut cmsg = SendCmsg([0; 64]);
    let controllen = cmsg.fill(tos, None);
    // SAFETY: plain data; all zeroes is valid.
    let mut hdrs: [libc::mmsghdr; N] = unsafe { zeroed() };
    for (i, d) in iov.chunks(parts).take(n).enumerate() {
        // The kernel only reads the control message: every datagram may
        // point at the same one.
        set_header(&mut hdrs[i].msg_hdr, name, d, &mut cmsg, controllen);
    }
    // SAFETY: the first `n` headers point at `iov` (and the bytes it
    // names), `name` and `cmsg`, all alive for the call.
    unsafe { sendmmsg(fd, &mut hdrs[..n]) }
}

/// Points header `m` at `name`, the bytes of `iov` and, if `controllen`
/// is not 0, the first `controllen` bytes of `cmsg`.
fn set_header(
    m: &mut libc::msghdr,
    name: RawName,
    iov: &[IoSlice<'_>],
    cmsg: &mut SendCmsg,
    controllen: usize,
) {
    m.msg_name = name.0 as *mut libc::c_void;
    m.msg_namelen = name.1;
    // `IoSlice` is ABI-compatible with `iovec` (std guarantees it on
    // Unix); the kernel only reads the vector.
    m.msg_iov = iov.as_ptr() as *mut libc::iovec;
    m.msg_iovlen = iov.len() as _;
    if controllen > 0 {
        m.msg_control = cmsg.0.as_mut_ptr().cast();
        m.msg_controllen = controllen as _;
    }
}

/// One non-blocking `sendmmsg` of `hdrs`: how many messages the kernel
/// took.
///
/// # Safety
/// Every header must point at a name, iovecs (and the bytes they name)
/// and control bytes that stay alive for the call; the kernel only writes
/// `msg_len`.
unsafe fn sendmmsg(fd: RawFd, hdrs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    // SAFETY: as the caller guarantees.
    let r = unsafe {
        raw::mmsg(
            libc::SYS_sendmmsg,
            fd,
            hdrs.as_mut_ptr(),
            hdrs.len() as u32,
            libc::MSG_DONTWAIT,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}

/// Sends up to [`super::MAX_SEND_BATCH`] messages (the rest of `msgs` is
/// ignored) in one non-blocking `sendmmsg`: message `i` is what
/// [`send_msg`] would send for `msgs[i]`, with its own control messages.
/// Returns how many messages the kernel took, in order (an error only if
/// it took none).
///
/// The headers and control buffers live on the stack (about 2 KiB): no
/// allocation per call, and nothing to keep between calls.
pub(super) fn send_msgs(fd: RawFd, msgs: &[super::BatchMsg<'_>]) -> io::Result<usize> {
    const N: usize = super::MAX_SEND_BATCH;
    let n = msgs.len().min(N);
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: plain data; all zeroes is valid.
    let mut cmsgs: [SendCmsg; N] = unsafe { zeroed() };
    // SAFETY: plain data; all zeroes is valid.
    let mut hdrs: [libc::mmsghdr; N] = unsafe { zeroed() };
    for ((msg, h), c) in msgs.iter().zip(&mut hdrs).zip(&mut cmsgs) {
        let controllen = c.fill(super::raw_tos(msg.tos), msg.segment);
        set_header(
            &mut h.msg_hdr,
            super::raw_name(msg.dest),
            msg.iov,
            c,
            controllen,
        );
    }
    // SAFETY: the first `n` headers point at the messages' names (in the
    // `Dest`s `msgs` borrows), iovecs (and the bytes they name) and their
    // own control buffers, all alive for the call.
    unsafe { sendmmsg(fd, &mut hdrs[..n]) }
}

/// Control-message buffer of a receive, aligned for `cmsghdr`: room for
/// the GRO segment size, the TOS byte and an IPv6 packet-info message.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct CmsgBuf([u8; 128]);

/// The `recvmmsg` headers of a [`super::RecvBatch`].
pub(super) struct Headers {
    names: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<CmsgBuf>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// Headers the last call filled (their lengths need a reset).
    used: usize,
}

// SAFETY: the raw pointers in `iovs` and `hdrs` point into the batch's own
// heap buffers (its receive buffers and these vectors), which never move or
// grow (a receive buffer is only replaced, through `set_buffer`); they are only used by `recv` through `&mut self`. Moving the
// headers to another thread is therefore sound.
unsafe impl Send for Headers {}

impl Headers {
    /// Headers for `bufs.len()` datagrams, datagram `i` received into the
    /// first `stride` bytes of `bufs[i]`'s storage (its capacity, at least
    /// `stride`; the vector must not be reallocated afterwards, only
    /// replaced through [`Headers::set_buffer`]).
    pub(super) fn new(bufs: &mut [Vec<u8>], stride: usize) -> Headers {
        let n = bufs.len();
        assert!(bufs.iter().all(|b| b.capacity() >= stride));
        let mut h = Headers {
            // SAFETY: plain data; all zeroes is valid.
            names: (0..n).map(|_| unsafe { zeroed() }).collect(),
            cmsgs: vec![CmsgBuf([0; 128]); n],
            iovs: bufs
                .iter_mut()
                .map(|b| libc::iovec {
                    iov_base: b.as_mut_ptr().cast(),
                    iov_len: stride,
                })
                .collect(),
            // SAFETY: plain data; all zeroes is valid.
            hdrs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            used: n,
        };
        for i in 0..n {
            let m = &mut h.hdrs[i].msg_hdr;
            m.msg_name = (&mut h.names[i] as *mut libc::sockaddr_storage).cast();
            m.msg_iov = &mut h.iovs[i];
            m.msg_iovlen = 1;
            m.msg_control = h.cmsgs[i].0.as_mut_ptr().cast();
        }
        h.reset();
        h
    }

    /// Datagram `i` is received into `buf`'s storage from now on (its
    /// capacity is at least the stride; the caller keeps it alive and
    /// unmoved, as [`Headers::new`] says).
    pub(super) fn set_buffer(&mut self, i: usize, buf: &mut Vec<u8>) {
        debug_assert!(buf.capacity() >= self.iovs[i].iov_len);
        self.iovs[i].iov_base = buf.as_mut_ptr().cast();
    }

    /// Restores the in/out lengths of the headers the last call filled.
    fn reset(&mut self) {
        for h in &mut self.hdrs[..self.used.max(1)] {
            h.msg_len = 0;
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as socklen_t;
            h.msg_hdr.msg_controllen = size_of::<CmsgBuf>() as _;
            h.msg_hdr.msg_flags = 0;
        }
    }

    /// One non-blocking `recvmsg` into the first header: the receive of
    /// every busy-poll iteration, most of which find nothing. (nix's
    /// `recvmsg` turns each `EAGAIN` into its `Errno` through a large
    /// match, a visible share of an empty iteration.)
    #[inline]
    pub(super) fn recv_one(&mut self, fd: RawFd) -> io::Result<usize> {
        self.reset();
        let h = &mut self.hdrs[0];
        // SAFETY: the header points into live buffers owned by the batch
        // (set up in `new`, never moved) with the lengths reset above.
        let r = unsafe { raw::msg(libc::SYS_recvmsg, fd, &mut h.msg_hdr, libc::MSG_DONTWAIT) };
        self.used = 1;
        if r < 0 {
            return empty_or_error();
        }
        h.msg_len = r as u32;
        Ok(1)
    }

    /// One non-blocking `recvmmsg` of up to `n` datagrams.
    pub(super) fn recv(&mut self, fd: RawFd, n: usize) -> io::Result<usize> {
        let n = n.min(self.hdrs.len());
        self.reset();
        // SAFETY: every header points into live buffers owned by the batch
        // (set up in `new`, never moved) with the lengths reset above.
        let r = unsafe {
            raw::mmsg(
                libc::SYS_recvmmsg,
                fd,
                self.hdrs.as_mut_ptr(),
                n as u32,
                libc::MSG_DONTWAIT,
            )
        };
        if r < 0 {
            self.used = 1;
            return empty_or_error();
        }
        self.used = r as usize;
        Ok(r as usize)
    }

    /// What the last call received in datagram `i`.
    pub(super) fn meta(&self, i: usize) -> RecvMeta {
        let h = &self.hdrs[i];
        let mut meta = RecvMeta {
            len: h.msg_len as usize,
            src: decode(&self.names[i], h.msg_hdr.msg_namelen),
            segment: None,
            tos: None,
            dst: None,
            truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        };
        // SAFETY: the kernel wrote msg_controllen bytes of valid cmsgs into
        // the buffer msg_control points to; CMSG_NXTHDR stays inside it.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
            while !c.is_null() {
                let data = libc::CMSG_DATA(c);
                match ((*c).cmsg_level, (*c).cmsg_type) {
                    (libc::SOL_UDP, libc::UDP_GRO) => {
                        let s: c_int = std::ptr::read_unaligned(data.cast());
                        if s > 0 {
                            meta.segment = Some(s as usize);
                        }
                    }
                    // IP_TOS arrives as one byte, IPV6_TCLASS as an int.
                    (libc::IPPROTO_IP, libc::IP_TOS) => meta.tos = Some(*data),
                    (libc::IPPROTO_IPV6, libc::IPV6_TCLASS) => {
                        let t: c_int = std::ptr::read_unaligned(data.cast());
                        meta.tos = Some(t as u8);
                    }
                    (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                        let p: libc::in_pktinfo = std::ptr::read_unaligned(data.cast());
                        meta.dst =
                            Some(IpAddr::V4(Ipv4Addr::from(p.ipi_addr.s_addr.to_ne_bytes())));
                    }
                    (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                        let p: libc::in6_pktinfo = std::ptr::read_unaligned(data.cast());
                        meta.dst = Some(IpAddr::V6(Ipv6Addr::from(p.ipi6_addr.s6_addr)));
                    }
                    _ => {}
                }
                c = libc::CMSG_NXTHDR(&h.msg_hdr, c);
            }
        }
        meta
    }
}

/// After a failed receive: `Ok(0)` if the queue was just empty (`EAGAIN`,
/// checked on the raw errno: the common case of a busy-polling thread),
/// else the error.
#[inline]
fn empty_or_error() -> io::Result<usize> {
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) => Ok(0),
        _ => Err(e),
    }
}

/// Decodes a kernel socket address; `None` for families other than IP.
fn decode(storage: &libc::sockaddr_storage, len: socklen_t) -> Option<SocketAddr> {
    match storage.ss_family as c_int {
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read((storage as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read((storage as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}
