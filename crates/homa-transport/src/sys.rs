//! The Linux system calls of the datapath, each wrapped once: socket options,
//! `sendmsg`/`sendmmsg` with control messages (GSO segment size and the
//! TOS / traffic-class byte), `recvmmsg` with GRO, the socket error queue,
//! `ppoll`, `eventfd` and `timerfd`. Every `unsafe` block of the crate but
//! one (registering descriptors with tokio's reactor) lives in this module;
//! the rest of the crate sees safe functions on descriptors it owns.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use libc::{c_int, c_void, socklen_t};

/// Most segments the kernel accepts in one `UDP_SEGMENT` send.
pub(crate) const MAX_GSO_SEGMENTS: usize = 64;

fn cvt(r: c_int) -> io::Result<c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cvt_size(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Sets an integer socket option.
pub(crate) fn set_int(fd: RawFd, level: c_int, name: c_int, value: c_int) -> io::Result<()> {
    // SAFETY: the option value points to a live c_int of the stated size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const c_int).cast(),
            size_of::<c_int>() as socklen_t,
        )
    };
    cvt(r).map(drop)
}

/// Reads an integer socket option.
pub(crate) fn get_int(fd: RawFd, level: c_int, name: c_int) -> io::Result<c_int> {
    let mut value: c_int = 0;
    let mut len = size_of::<c_int>() as socklen_t;
    // SAFETY: value and len are live and len gives value's size.
    let r =
        unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut c_int).cast(), &mut len) };
    cvt(r).map(|_| value)
}

/// Sizes a socket buffer: `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` when the process
/// may exceed the system maximum, else the ordinary option (capped by
/// `net.core.rmem_max`/`wmem_max`). Returns the size the kernel reports.
pub(crate) fn set_buffer(fd: RawFd, receive: bool, bytes: usize) -> io::Result<usize> {
    let (force, plain) = if receive {
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF)
    } else {
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)
    };
    let value = c_int::try_from(bytes / 2).unwrap_or(c_int::MAX / 2);
    // The kernel doubles the value for bookkeeping overhead; ask for half.
    if set_int(fd, libc::SOL_SOCKET, force, value).is_err() {
        set_int(fd, libc::SOL_SOCKET, plain, value)?;
    }
    Ok(get_int(fd, libc::SOL_SOCKET, plain)?.max(0) as usize)
}

/// Fills the thread's random bytes from the kernel (`getrandom(2)`).
pub(crate) fn random_u64() -> u64 {
    let mut v = 0u64;
    // SAFETY: writes at most 8 bytes into v.
    let r = unsafe { libc::getrandom((&mut v as *mut u64).cast(), size_of::<u64>(), 0) };
    if r == size_of::<u64>() as isize {
        return v;
    }
    // getrandom cannot fail on supported kernels; if it does, fall back to
    // the clock and the address of a stack variable.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (&v as *const u64 as u64).rotate_left(32)
}

// ----- addresses -----------------------------------------------------------

/// A socket address in the kernel's layout.
#[derive(Clone, Copy)]
pub(crate) struct RawAddr {
    storage: libc::sockaddr_storage,
    len: socklen_t,
}

impl RawAddr {
    /// Encodes `addr` for a socket of the given family: an IPv4 address on
    /// an IPv6 socket becomes IPv4-mapped. Fails for IPv6 on an IPv4 socket.
    pub(crate) fn new(addr: SocketAddr, ipv6_socket: bool) -> Option<RawAddr> {
        // SAFETY: sockaddr_storage is plain data; all zeroes is valid.
        let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
        let len = match (addr, ipv6_socket) {
            (SocketAddr::V4(a), false) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
                unsafe {
                    std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin)
                };
                size_of::<libc::sockaddr_in>()
            }
            (SocketAddr::V6(_), false) => return None,
            (a, true) => {
                let (ip, port, flow, scope) = match a {
                    SocketAddr::V4(a) => (a.ip().to_ipv6_mapped(), a.port(), 0, 0),
                    SocketAddr::V6(a) => (*a.ip(), a.port(), a.flowinfo(), a.scope_id()),
                };
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: port.to_be(),
                    sin6_flowinfo: flow,
                    sin6_addr: libc::in6_addr {
                        s6_addr: ip.octets(),
                    },
                    sin6_scope_id: scope,
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
                unsafe {
                    std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6)
                };
                size_of::<libc::sockaddr_in6>()
            }
        };
        Some(RawAddr {
            storage,
            len: len as socklen_t,
        })
    }
}

/// Decodes a kernel socket address; `None` for families other than IP.
fn decode_addr(storage: &libc::sockaddr_storage, len: socklen_t) -> Option<SocketAddr> {
    match storage.ss_family as c_int {
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read((storage as *const libc::sockaddr_storage).cast()) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
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

// ----- sending -------------------------------------------------------------

/// Control-message buffer, aligned for `cmsghdr`.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct CmsgBuf([u8; 64]);

/// How to mark a datagram's TOS / traffic-class byte on this socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TosOption {
    level: c_int,
    name: c_int,
}

impl TosOption {
    /// `IP_TOS` for IPv4 destinations (including IPv4-mapped ones on a
    /// dual-stack socket, which the kernel sends through its IPv4 path),
    /// `IPV6_TCLASS` for IPv6 destinations.
    pub(crate) fn for_destination(dest: &SocketAddr) -> TosOption {
        match dest {
            SocketAddr::V4(_) => TosOption {
                level: libc::IPPROTO_IP,
                name: libc::IP_TOS,
            },
            SocketAddr::V6(_) => TosOption {
                level: libc::IPPROTO_IPV6,
                name: libc::IPV6_TCLASS,
            },
        }
    }
}

/// Writes the control messages for one send into `buf` and points `hdr` at
/// them. `segment` adds a `UDP_SEGMENT` (GSO) message.
///
/// # Safety
/// `buf` must outlive every use of `hdr`.
unsafe fn write_cmsgs(
    hdr: &mut libc::msghdr,
    buf: &mut CmsgBuf,
    tos: (TosOption, u8),
    segment: Option<u16>,
) {
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    let (space_int, space_u16) = unsafe {
        (
            libc::CMSG_SPACE(size_of::<c_int>() as u32) as usize,
            libc::CMSG_SPACE(size_of::<u16>() as u32) as usize,
        )
    };
    let total = space_int + if segment.is_some() { space_u16 } else { 0 };
    debug_assert!(total <= buf.0.len());
    buf.0 = [0; 64];
    hdr.msg_control = buf.0.as_mut_ptr().cast();
    hdr.msg_controllen = total as _;
    // SAFETY: msg_control points to `total` writable, aligned bytes, enough
    // for the headers written below (checked above).
    unsafe {
        let c = libc::CMSG_FIRSTHDR(hdr);
        (*c).cmsg_level = tos.0.level;
        (*c).cmsg_type = tos.0.name;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<c_int>(), c_int::from(tos.1));
        if let Some(seg) = segment {
            let c = libc::CMSG_NXTHDR(hdr, c);
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = libc::UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg);
        }
    }
}

/// Sends `data` to `dest` in one `sendmsg`, with the TOS byte and, when
/// `segment` is given, as a GSO batch of `segment`-byte datagrams.
pub(crate) fn send(
    fd: RawFd,
    dest: &RawAddr,
    tos: (TosOption, u8),
    segment: Option<u16>,
    data: &[u8],
) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut c_void,
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; all zeroes is valid.
    let mut hdr: libc::msghdr = unsafe { zeroed() };
    hdr.msg_name = (&dest.storage as *const libc::sockaddr_storage) as *mut c_void;
    hdr.msg_namelen = dest.len;
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    let mut cbuf = CmsgBuf([0; 64]);
    // SAFETY: cbuf, iov and dest outlive the sendmsg call below; the kernel
    // only reads through the pointers.
    unsafe {
        write_cmsgs(&mut hdr, &mut cbuf, tos, segment);
        cvt_size(libc::sendmsg(fd, &hdr, 0))
    }
}

/// Sends `data`, cut into `segment`-byte datagrams (the last may be
/// shorter), with one `sendmmsg` per 64 datagrams. Returns the number of
/// datagrams the kernel accepted (fewer than all when the buffer filled).
pub(crate) fn send_split(
    fd: RawFd,
    dest: &RawAddr,
    tos: (TosOption, u8),
    segment: usize,
    data: &[u8],
) -> io::Result<usize> {
    let mut sent = 0usize;
    let chunks: Vec<&[u8]> = data.chunks(segment.max(1)).collect();
    let mut cbuf = CmsgBuf([0; 64]);
    for group in chunks.chunks(MAX_GSO_SEGMENTS) {
        let mut iovs: Vec<libc::iovec> = group
            .iter()
            .map(|c| libc::iovec {
                iov_base: c.as_ptr() as *mut c_void,
                iov_len: c.len(),
            })
            .collect();
        // SAFETY: mmsghdr is plain data; all zeroes is valid.
        let mut hdrs: Vec<libc::mmsghdr> = (0..group.len()).map(|_| unsafe { zeroed() }).collect();
        for (h, iov) in hdrs.iter_mut().zip(iovs.iter_mut()) {
            h.msg_hdr.msg_name = (&dest.storage as *const libc::sockaddr_storage) as *mut c_void;
            h.msg_hdr.msg_namelen = dest.len;
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            // SAFETY: every header points at the same cbuf, rewritten with
            // identical contents; cbuf outlives the sendmmsg below.
            unsafe { write_cmsgs(&mut h.msg_hdr, &mut cbuf, tos, None) };
        }
        // SAFETY: hdrs, iovs, cbuf, dest and data are live for the call.
        let n = cvt(unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), hdrs.len() as u32, 0) });
        match n {
            Ok(n) => {
                sent += n as usize;
                if (n as usize) < group.len() {
                    return Ok(sent);
                }
            }
            Err(e) if sent > 0 && e.kind() == io::ErrorKind::WouldBlock => return Ok(sent),
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

// ----- receiving -----------------------------------------------------------

/// One received datagram of a [`RecvBatch`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecvMeta {
    /// Bytes received.
    pub len: usize,
    /// Source address, as the kernel reported it.
    pub src: Option<SocketAddr>,
    /// With GRO: size of each coalesced datagram (the last may be shorter).
    pub segment: Option<usize>,
    /// The IP TOS / traffic-class byte, when the socket asked for it.
    pub tos: Option<u8>,
    /// The datagram did not fit the buffer.
    pub truncated: bool,
}

/// Buffers for receiving up to `n` datagrams in one `recvmmsg`.
pub(crate) struct RecvBatch {
    bufs: Vec<u8>,
    stride: usize,
    names: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<CmsgBuf>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    meta: Vec<RecvMeta>,
    /// Datagrams the last call asked for.
    asked: usize,
}

// SAFETY: the raw pointers in `iovs` and `hdrs` point into the batch's own
// vectors, are rewritten before every recvmmsg and never dereferenced
// elsewhere; moving the batch between threads is therefore sound.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// `n` buffers of `stride` bytes each.
    pub(crate) fn new(n: usize, stride: usize) -> RecvBatch {
        let n = n.max(1);
        let mut b = RecvBatch {
            bufs: vec![0; n * stride],
            stride,
            // SAFETY: plain data; all zeroes is valid.
            names: (0..n).map(|_| unsafe { zeroed() }).collect(),
            cmsgs: vec![CmsgBuf([0; 64]); n],
            // SAFETY: plain data; all zeroes is valid.
            iovs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            // SAFETY: plain data; all zeroes is valid.
            hdrs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            meta: Vec::with_capacity(n),
            asked: n,
        };
        // The vectors never grow, so their heap buffers never move: the
        // pointers set here stay valid for the batch's life, and a receive
        // only resets the lengths the kernel overwrote.
        let base = b.bufs.as_mut_ptr();
        for i in 0..n {
            b.iovs[i] = libc::iovec {
                // SAFETY: i * stride < bufs.len().
                iov_base: unsafe { base.add(i * stride) }.cast(),
                iov_len: stride,
            };
            let h = &mut b.hdrs[i].msg_hdr;
            h.msg_name = (&mut b.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_iov = &mut b.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = b.cmsgs[i].0.as_mut_ptr().cast();
        }
        b.reset(n);
        b
    }

    /// Restores the in/out lengths of the first `n` headers.
    fn reset(&mut self, n: usize) {
        for h in &mut self.hdrs[..n] {
            h.msg_len = 0;
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as socklen_t;
            h.msg_hdr.msg_controllen = size_of::<CmsgBuf>() as _;
            h.msg_hdr.msg_flags = 0;
        }
    }

    /// True if the last [`recv_batch`] returned as many datagrams as it
    /// asked for (more may be queued).
    pub(crate) fn filled(&self) -> bool {
        self.meta.len() == self.asked
    }

    /// Most datagrams one call can return.
    pub(crate) fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Received datagram `i` of the last [`recv_batch`]: metadata and bytes.
    pub(crate) fn get(&self, i: usize) -> (RecvMeta, &[u8]) {
        let m = self.meta[i];
        let at = i * self.stride;
        (m, &self.bufs[at..at + m.len.min(self.stride)])
    }
}

/// Receives up to a batch of datagrams without blocking. Returns how many
/// arrived; `WouldBlock` when none is queued.
pub(crate) fn recv_batch(fd: RawFd, batch: &mut RecvBatch, max: usize) -> io::Result<usize> {
    let n = batch.hdrs.len().min(max.max(1));
    batch.asked = n;
    // Only headers the previous call filled had their lengths overwritten.
    // (Index 0 is reset even after an error, to be safe.)
    let used = batch.meta.len().max(1);
    batch.reset(used);
    batch.meta.clear();
    // Every header points into the batch's own live buffers (set up in
    // `new`, never moved) with the lengths reset above.
    let got = if n == 1 {
        // One datagram: plain recvmsg is cheaper than recvmmsg's loop.
        // SAFETY: as above, for the first header.
        let h = &mut batch.hdrs[0];
        let r = unsafe { libc::recvmsg(fd, &mut h.msg_hdr, libc::MSG_DONTWAIT) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        h.msg_len = r as u32;
        1
    } else {
        // SAFETY: as above.
        cvt(unsafe {
            libc::recvmmsg(
                fd,
                batch.hdrs.as_mut_ptr(),
                n as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        })? as usize
    };
    for i in 0..got {
        let h = &batch.hdrs[i];
        let mut segment = None;
        let mut tos = None;
        // SAFETY: the kernel wrote msg_controllen bytes of valid cmsgs into
        // the buffer msg_control points to.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
            while !c.is_null() {
                let data = libc::CMSG_DATA(c);
                match ((*c).cmsg_level, (*c).cmsg_type) {
                    (libc::SOL_UDP, libc::UDP_GRO) => {
                        let s: c_int = std::ptr::read_unaligned(data.cast());
                        if s > 0 {
                            segment = Some(s as usize);
                        }
                    }
                    // IP_TOS arrives as one byte, IPV6_TCLASS as an int.
                    (libc::IPPROTO_IP, libc::IP_TOS) => tos = Some(*data),
                    (libc::IPPROTO_IPV6, libc::IPV6_TCLASS) => {
                        let t: c_int = std::ptr::read_unaligned(data.cast());
                        tos = Some(t as u8);
                    }
                    _ => {}
                }
                c = libc::CMSG_NXTHDR(&h.msg_hdr, c);
            }
        }
        batch.meta.push(RecvMeta {
            len: h.msg_len as usize,
            src: decode_addr(&batch.names[i], h.msg_hdr.msg_namelen),
            segment,
            tos,
            truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        });
    }
    Ok(got)
}

/// An ICMP (or local) error the kernel queued for the socket (`IP_RECVERR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueuedError {
    /// errno the error maps to (`ECONNREFUSED` for port unreachable).
    pub errno: i32,
    /// `SO_EE_ORIGIN_*`.
    pub origin: u8,
    /// Destination of the datagram that caused the error.
    pub dest: Option<SocketAddr>,
}

/// Takes one entry off the socket's error queue; `None` when it is empty.
pub(crate) fn recv_error(fd: RawFd) -> io::Result<Option<QueuedError>> {
    // SAFETY: plain data; all zeroes is valid.
    let mut name: libc::sockaddr_storage = unsafe { zeroed() };
    let mut data = [0u8; 64];
    #[repr(C, align(8))]
    struct Ctrl([u8; 512]);
    let mut ctrl = Ctrl([0; 512]);
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: plain data; all zeroes is valid.
    let mut hdr: libc::msghdr = unsafe { zeroed() };
    hdr.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as socklen_t;
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = ctrl.0.as_mut_ptr().cast();
    hdr.msg_controllen = ctrl.0.len() as _;
    // SAFETY: every pointer in hdr refers to a live local buffer.
    let r = unsafe { libc::recvmsg(fd, &mut hdr, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(e)
        };
    }
    let mut found = None;
    // SAFETY: the kernel wrote msg_controllen bytes of cmsgs into ctrl.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&hdr);
        while !c.is_null() {
            let lvl = (*c).cmsg_level;
            let ty = (*c).cmsg_type;
            if (lvl == libc::IPPROTO_IP && ty == libc::IP_RECVERR)
                || (lvl == libc::IPPROTO_IPV6 && ty == libc::IPV6_RECVERR)
            {
                let ee: libc::sock_extended_err =
                    std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                found = Some(QueuedError {
                    errno: ee.ee_errno as i32,
                    origin: ee.ee_origin,
                    dest: decode_addr(&name, hdr.msg_namelen),
                });
            }
            c = libc::CMSG_NXTHDR(&hdr, c);
        }
    }
    // An entry without an extended-error message still left the queue:
    // report it with errno 0 so the caller keeps draining.
    Ok(Some(found.unwrap_or(QueuedError {
        errno: 0,
        origin: 0,
        dest: None,
    })))
}

// ----- waiting -------------------------------------------------------------

/// Readiness reported by [`poll`] for one descriptor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Ready {
    pub readable: bool,
    pub writable: bool,
    pub error: bool,
}

/// Waits until one of `fds` (descriptor, want-write) is ready or `timeout`
/// passes (`None`: forever). Nanosecond timeout (`ppoll`).
pub(crate) fn poll(
    fds: &[(RawFd, bool)],
    timeout: Option<Duration>,
    out: &mut [Ready],
) -> io::Result<usize> {
    let mut pfds: [libc::pollfd; 4] = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 4];
    let n = fds.len().min(4);
    for (p, &(fd, write)) in pfds.iter_mut().zip(fds) {
        p.fd = fd;
        p.events = libc::POLLIN | if write { libc::POLLOUT } else { 0 };
    }
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let tsp = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: pfds holds n initialised entries; tsp is null or points to ts.
    let r = unsafe { libc::ppoll(pfds.as_mut_ptr(), n as libc::nfds_t, tsp, std::ptr::null()) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    for (o, p) in out.iter_mut().zip(&pfds[..n]) {
        *o = Ready {
            readable: p.revents & (libc::POLLIN | libc::POLLHUP) != 0,
            writable: p.revents & libc::POLLOUT != 0,
            error: p.revents & libc::POLLERR != 0,
        };
    }
    Ok(r as usize)
}

/// A non-blocking `eventfd`: a counter another thread bumps to wake a
/// thread waiting in [`poll`].
/// Releases the UDP port behind `fd` at once while keeping the descriptor
/// number valid: a fresh, unbound datagram socket of the same family is
/// duplicated over it, which closes the old socket. Peers' next packets
/// then draw ICMP port unreachable instead of queueing in a socket nobody
/// reads, and threads still polling `fd` are not left with a descriptor
/// that could be reused for something else.
pub(crate) fn release_port(fd: RawFd, ipv6: bool) -> io::Result<()> {
    let family = if ipv6 { libc::AF_INET6 } else { libc::AF_INET };
    // SAFETY: plain socket/dup2/close calls on descriptors we own.
    unsafe {
        let fresh = libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fresh < 0 {
            return Err(io::Error::last_os_error());
        }
        let r = libc::dup2(fresh, fd);
        libc::close(fresh);
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the result is a fresh descriptor we own.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
    // SAFETY: fd was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds one to an eventfd (wakes its waiter).
pub(crate) fn eventfd_signal(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64. Failure (counter saturated)
    // still leaves the descriptor readable, which is all we need.
    let _ = unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}

/// Resets an eventfd or a timerfd by reading its counter.
pub(crate) fn drain_counter(fd: RawFd) {
    let mut v: u64 = 0;
    // SAFETY: reads at most 8 bytes into a live u64.
    let _ = unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
}

/// A non-blocking `CLOCK_MONOTONIC` timerfd.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) fn timerfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the result is a fresh descriptor we own.
    let fd = cvt(unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    })?;
    // SAFETY: fd was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Arms a timerfd to fire once after `after` (`None` disarms it).
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) fn timerfd_arm(fd: RawFd, after: Option<Duration>) -> io::Result<()> {
    let value = match after {
        // A zero it_value would disarm: fire after 1 ns instead.
        Some(d) => libc::timespec {
            tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: d.subsec_nanos().max(u32::from(d.as_secs() == 0)) as libc::c_long,
        },
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
    };
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: value,
    };
    // SAFETY: spec is live; the old value is not requested.
    cvt(unsafe { libc::timerfd_settime(fd, 0, &spec, std::ptr::null_mut()) }).map(drop)
}

// ----- probing -------------------------------------------------------------

/// True if the kernel accepts `UDP_SEGMENT` on a socket of this family
/// (probed on a throw-away socket, since setting the option changes every
/// later send of that socket).
pub(crate) fn gso_supported(ipv6: bool) -> bool {
    let family = if ipv6 { libc::AF_INET6 } else { libc::AF_INET };
    // SAFETY: plain syscall.
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return false;
    }
    // SAFETY: fd was just created and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    set_int(fd.as_raw_fd(), libc::SOL_UDP, libc::UDP_SEGMENT, 1400).is_ok()
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    #[test]
    fn raw_addr__maps_ipv4_on_ipv6_socket_and_refuses_the_reverse() {
        let v4: SocketAddr = "10.1.2.3:4000".parse().unwrap();
        let raw = RawAddr::new(v4, true).unwrap();
        assert_eq!(
            decode_addr(&raw.storage, raw.len),
            Some("[::ffff:10.1.2.3]:4000".parse().unwrap())
        );
        let raw = RawAddr::new(v4, false).unwrap();
        assert_eq!(decode_addr(&raw.storage, raw.len), Some(v4));
        assert!(RawAddr::new("[::1]:5".parse().unwrap(), false).is_none());
    }

    #[test]
    fn timerfd_arm__fires_and_disarms() {
        let t = timerfd().unwrap();
        timerfd_arm(t.as_raw_fd(), Some(Duration::ZERO)).unwrap();
        let mut out = [Ready::default()];
        // Fires after 1 ns; wait without a time limit so timing cannot decide.
        poll(&[(t.as_raw_fd(), false)], None, &mut out).unwrap();
        assert!(out[0].readable);
        drain_counter(t.as_raw_fd());
        timerfd_arm(t.as_raw_fd(), None).unwrap();
        poll(&[(t.as_raw_fd(), false)], Some(Duration::ZERO), &mut out).unwrap();
        assert!(!out[0].readable);
    }
}
