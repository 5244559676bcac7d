//! # homa-capi
//!
//! A C API for Homa over UDP ([`homa_transport`]), for programs written
//! against the Linux kernel module's user API (`homa_send`, `homa_reply`,
//! `recvmsg`): blocking calls on an opaque socket, every result an
//! integer that is the length or a negative errno-style code
//! ([`homa_strerror`] says what it means). The header `include/homa.h` is
//! generated from this file by cbindgen (a test checks it is current);
//! `docs/c-api.md` documents the API and `c/` holds an echo client and
//! server.
//!
//! | C | does | kernel module's counterpart |
//! |---|---|---|
//! | `homa_open` / `homa_close` | a socket on an address ("ip:port") | `socket(AF_INET, SOCK_DGRAM, IPPROTO_HOMA)` + `bind` / `close` |
//! | `homa_call` | send a request, wait for its response (with a timeout) | `homa_send` + `recvmsg` for the response |
//! | `homa_recv_request` | wait for a request (with a timeout) | `recvmsg` with `HOMA_RECVMSG_REQUEST` |
//! | `homa_reply` | answer a request | `homa_reply` |
//!
//! Nothing a C caller passes can make Rust panic across the boundary:
//! every function checks its pointers and lengths, and runs inside
//! `catch_unwind` (a panic, which would be a bug here, returns
//! `-ENOTRECOVERABLE`).

#![allow(non_camel_case_types)]
#![warn(unreachable_pub)]

use std::ffi::{c_char, c_int, c_void, CStr};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use homa_transport::{Config, Error, Socket};

/// A Homa socket (opaque to C).
pub struct homa_socket {
    sock: Socket,
    /// The socket's maximum message length (its configuration's
    /// `max_message_length`): a longer buffer is refused before a byte of
    /// it is read.
    max_message: usize,
}

/// The address of a peer, as text (`"ip:port"`, NUL-terminated).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct homa_peer {
    /// `"127.0.0.1:4000"` or `"[::1]:4000"`, NUL-terminated.
    pub addr: [c_char; 64],
}

/// The errno-style code of an error (positive). Every variant of
/// [`Error`] has its own arm, so a caller can tell "did not run" from "may
/// have run" from "ran" (`docs/at-most-once.md`); `docs/c-api.md` has the
/// table. `Error` is `#[non_exhaustive]`, so the compiler cannot check the
/// match is complete: the test `errno__names_every_variant_of_the_error`
/// fails when homa-transport gains a variant this match does not name.
fn errno(e: &Error) -> c_int {
    match e {
        // The call: did not run.
        Error::PortUnreachable => libc::ECONNREFUSED,
        Error::HostUnreachable => libc::EHOSTUNREACH,
        Error::NetworkUnreachable => libc::ENETUNREACH,
        Error::NotServer => libc::ENXIO,
        // The call: may have run.
        Error::DeadlineExceeded => libc::ETIME,
        Error::PeerTimeout => libc::ETIMEDOUT,
        Error::OutcomeUnknown => libc::ECONNRESET,
        Error::Aborted => libc::ECANCELED,
        // The call: ran.
        Error::Abandoned => libc::ECONNABORTED,
        // Refused before anything was sent.
        Error::MessageTooLong { .. } => libc::EMSGSIZE,
        Error::EmptyMessage | Error::Config(_) => libc::EINVAL,
        Error::AddressFamily => libc::EAFNOSUPPORT,
        Error::WouldBlock => libc::EAGAIN,
        // The socket.
        Error::Closed | Error::RuntimeShutdown => libc::EBADF,
        Error::ClientOnly => libc::EOPNOTSUPP,
        Error::UnknownRpc => libc::ENOENT,
        Error::HostSharing(_) => libc::EUCLEAN,
        Error::Io(io) => match io.raw_os_error() {
            // An operating-system code that would read as one of Homa's
            // outcomes above (ran, did not run, server restarted) would
            // misstate it: plain I/O error instead.
            Some(libc::ECONNABORTED | libc::ENXIO | libc::ECONNRESET) => libc::EIO,
            // An argument the library refused (a destination port 0).
            None if io.kind() == std::io::ErrorKind::InvalidInput => libc::EINVAL,
            None => libc::EIO,
            Some(c) => c,
        },
        // A variant added to homa-transport after this match was written
        // (a bug here, caught by errno__names_every_variant_of_the_error):
        // never a code that claims an outcome.
        _ => libc::ENOTRECOVERABLE,
    }
}

/// Runs `f`, turning a panic into `-ENOTRECOVERABLE`.
fn guard<T: From<i32>>(f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| T::from(-libc::ENOTRECOVERABLE))
}

/// A NUL-terminated address string, parsed.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string.
unsafe fn parse_addr(p: *const c_char) -> Result<SocketAddr, c_int> {
    if p.is_null() {
        return Err(libc::EINVAL);
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or(libc::EINVAL)
}

/// The socket behind a handle, as an owned clone, and its maximum message
/// length: a call blocked in it on one thread never touches the handle
/// again, so [`homa_close`] on another thread may free the handle while
/// the call is still returning `-EBADF`.
///
/// # Safety
/// `s` is null or a handle from [`homa_open`] not yet closed.
unsafe fn socket(s: *const homa_socket) -> Result<(Socket, usize), c_int> {
    // SAFETY: a live handle by the caller's contract; null is checked.
    unsafe { s.as_ref() }
        .map(|h| (h.sock.clone(), h.max_message))
        .ok_or(libc::EINVAL)
}

/// Refuses a message length over `max` with `EMSGSIZE`, before anything
/// reads (or copies) the caller's buffer: a length far beyond the buffer
/// must not become an allocation or a read of that size.
fn check_len(len: usize, max: usize) -> Result<(), c_int> {
    if len > max {
        Err(libc::EMSGSIZE)
    } else {
        Ok(())
    }
}

/// A timeout in milliseconds; negative means none.
fn timeout(ms: i64) -> Option<Duration> {
    u64::try_from(ms).ok().map(Duration::from_millis)
}

/// Copies `data` into `buf` (at most `cap` bytes); returns the full length.
///
/// # Safety
/// `buf` is valid for `cap` bytes of writes (or `cap` is 0).
unsafe fn copy_out(data: &[u8], buf: *mut u8, cap: usize) -> i64 {
    let n = data.len().min(cap);
    if n > 0 {
        // SAFETY: buf holds cap >= n bytes (checked non-null by callers).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), buf, n) };
    }
    i64::try_from(data.len()).unwrap_or(i64::MAX)
}

/// The bytes `p..p+len` (empty if `len` is 0).
///
/// # Safety
/// `p` is valid for `len` bytes of reads when `len > 0`.
unsafe fn bytes_in<'a>(p: *const u8, len: usize) -> Result<&'a [u8], c_int> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() || len > isize::MAX as usize {
        return Err(libc::EINVAL);
    }
    // SAFETY: non-null, valid for len bytes by the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Opens a Homa socket bound to `addr` (`"127.0.0.1:4000"`, `"0.0.0.0:0"`
/// for any port). With `server` non-zero the socket accepts requests (also
/// on port 0); a client-only socket does not. Stores the handle in `*out`.
/// Returns 0 or a negative errno code: `-EINVAL` (bad address text),
/// `-EUCLEAN` (the host table asked for by `HOMA_HOST_SHARING` cannot be
/// used), or the operating system's (`-EADDRINUSE`, ...).
///
/// # Safety
/// `addr` is a NUL-terminated string; `out` is valid for one write.
#[no_mangle]
pub unsafe extern "C" fn homa_open(
    addr: *const c_char,
    server: c_int,
    out: *mut *mut homa_socket,
) -> c_int {
    guard(|| {
        if out.is_null() {
            return -libc::EINVAL;
        }
        // SAFETY: a NUL-terminated string by the caller's contract.
        let a = match unsafe { parse_addr(addr) } {
            Ok(a) => a,
            Err(e) => return -e,
        };
        let mut cfg = Config::default();
        cfg.server = Some(server != 0);
        let max_message = usize::try_from(cfg.proto.max_message_length).unwrap_or(usize::MAX);
        match Socket::bind_with(a, cfg) {
            Ok(sock) => {
                let h = Box::into_raw(Box::new(homa_socket { sock, max_message }));
                // SAFETY: out is valid for one write (checked non-null).
                unsafe { *out = h };
                0
            }
            Err(e) => -errno(&e),
        }
    })
}

/// Closes the socket and frees the handle: calls and waits still running
/// on other threads return `-EBADF`. Requests received but not answered
/// are dropped (their clients' calls fail). Returns 0, or `-EINVAL` for a
/// null handle.
///
/// # Safety
/// `s` is a handle from [`homa_open`], closed at most once; no thread
/// uses it after this returns.
#[no_mangle]
pub unsafe extern "C" fn homa_close(s: *mut homa_socket) -> c_int {
    guard(|| {
        if s.is_null() {
            return -libc::EINVAL;
        }
        // SAFETY: a live handle from homa_open, given back exactly once.
        let h = unsafe { Box::from_raw(s) };
        h.sock.close();
        0
    })
}

/// Writes the socket's local address (`"ip:port"`, NUL-terminated) into
/// `buf` of `len` bytes. Returns the string's length without the NUL, or
/// `-ENOSPC` if `buf` is too small, or `-EINVAL`.
///
/// # Safety
/// `s` is a live handle; `buf` is valid for `len` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn homa_local_addr(
    s: *const homa_socket,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    guard(|| {
        // SAFETY: a live handle or null by the caller's contract.
        let (sock, _) = match unsafe { socket(s) } {
            Ok(x) => x,
            Err(e) => return -e,
        };
        if buf.is_null() {
            return -libc::EINVAL;
        }
        let text = sock.local_addr().to_string();
        if text.len() + 1 > len {
            return -libc::ENOSPC;
        }
        // SAFETY: buf holds len > text.len() bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
            *buf.add(text.len()) = 0;
        }
        text.len() as c_int
    })
}

/// Sends `req_len` bytes at `req` to `dest` (`"ip:port"`) and waits for
/// the response, at most `timeout_ms` milliseconds (negative: no limit but
/// the protocol's own peer timeout). Copies at most `resp_cap` bytes of
/// the response into `resp` and returns the response's full length (more
/// than `resp_cap` means it was truncated), or a negative errno code that
/// says whether the request ran:
/// * did not run: `-ECONNREFUSED` nothing listens there, `-EHOSTUNREACH`,
///   `-ENETUNREACH`, `-ENXIO` the destination socket is client-only (it
///   serves no requests), `-EMSGSIZE` `req_len` is over the maximum message
///   length (checked before `req` is read), `-EINVAL`, `-EAFNOSUPPORT`;
/// * may have run: `-ETIME` deadline exceeded (the RPC was aborted),
///   `-ETIMEDOUT` the peer stopped answering, `-ECONNRESET` the server
///   restarted or went away after the request may have reached it (it will
///   not run again), `-EBADF` socket closed, `-EIO` or another
///   operating-system code;
/// * ran: `-ECONNABORTED` the server ran it and then discarded the RPC
///   before its response reached us.
///
/// # Safety
/// `s` is a live handle; `dest` a NUL-terminated string; `req` valid for
/// `req_len` bytes of reads; `resp` valid for `resp_cap` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn homa_call(
    s: *mut homa_socket,
    dest: *const c_char,
    req: *const c_void,
    req_len: usize,
    resp: *mut c_void,
    resp_cap: usize,
    timeout_ms: i64,
) -> i64 {
    guard(|| {
        // SAFETY: the caller's contract (see above) for each pointer.
        let r = (|| unsafe {
            let (sock, max) = socket(s)?;
            check_len(req_len, max)?;
            let dest = parse_addr(dest)?;
            let body = bytes_in(req.cast(), req_len)?;
            if resp.is_null() && resp_cap > 0 {
                return Err(libc::EINVAL);
            }
            let result = match timeout(timeout_ms) {
                Some(t) => sock.call_timeout(dest, body.to_vec(), t),
                None => sock.call(dest, body.to_vec()),
            };
            match result {
                Ok(b) => Ok(copy_out(&b, resp.cast(), resp_cap)),
                Err(e) => Err(errno(&e)),
            }
        })();
        r.unwrap_or_else(|e| -i64::from(e))
    })
}

/// Waits for a request, at most `timeout_ms` milliseconds (negative: no
/// limit). Copies at most `cap` bytes of it into `buf`, stores its id in
/// `*id` and the client's address in `*peer` (both needed by
/// [`homa_reply`]), and returns the request's full length (more than `cap`
/// means it was truncated); `-ETIMEDOUT` if none came in time, `-EBADF`
/// once the socket is closed, `-EOPNOTSUPP` at once on a client-only
/// socket (opened with `server` 0: it accepts no requests).
///
/// # Safety
/// `s` is a live handle; `buf` valid for `cap` bytes of writes; `id` and
/// `peer` valid for one write each.
#[no_mangle]
pub unsafe extern "C" fn homa_recv_request(
    s: *mut homa_socket,
    buf: *mut c_void,
    cap: usize,
    id: *mut u64,
    peer: *mut homa_peer,
    timeout_ms: i64,
) -> i64 {
    guard(|| {
        // SAFETY: the caller's contract (see above) for each pointer.
        let r = (|| unsafe {
            let (sock, _) = socket(s)?;
            if id.is_null() || peer.is_null() || (buf.is_null() && cap > 0) {
                return Err(libc::EINVAL);
            }
            let req = match timeout(timeout_ms) {
                Some(t) => match sock.recv_request_timeout(t) {
                    Ok(Some(r)) => r,
                    Ok(None) => return Err(libc::ETIMEDOUT),
                    Err(e) => return Err(errno(&e)),
                },
                None => sock.recv_request().map_err(|e| errno(&e))?,
            };
            let mut p = homa_peer { addr: [0; 64] };
            let text = req.peer.to_string();
            for (d, b) in p.addr.iter_mut().zip(text.bytes().take(63)) {
                *d = b as c_char;
            }
            *peer = p;
            *id = req.id;
            Ok(copy_out(&req.body, buf.cast(), cap))
        })();
        r.unwrap_or_else(|e| -i64::from(e))
    })
}

/// Answers request `id` from `peer` (as [`homa_recv_request`] gave them)
/// with `len` bytes at `buf`. Returns 0 or a negative errno code
/// (`-ENOENT`: no such request waits for a reply; `-EMSGSIZE`: `len` is
/// over the maximum message length, checked before `buf` is read).
///
/// # Safety
/// `s` is a live handle; `peer` valid for reads; `buf` valid for `len`
/// bytes of reads.
#[no_mangle]
pub unsafe extern "C" fn homa_reply(
    s: *mut homa_socket,
    peer: *const homa_peer,
    id: u64,
    buf: *const c_void,
    len: usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract (see above) for each pointer.
        let r = (|| unsafe {
            let (sock, max) = socket(s)?;
            check_len(len, max)?;
            let addr = peer_addr(peer)?;
            let body = bytes_in(buf.cast(), len)?;
            sock.reply(addr, id, body.to_vec()).map_err(|e| errno(&e))
        })();
        match r {
            Ok(()) => 0,
            Err(e) => -e,
        }
    })
}

/// Tells the library that the application will not answer request `id`
/// from `peer` (as [`homa_recv_request`] gave them): the request is
/// freed and its client's call fails at once with `-ECONNABORTED` (it
/// ran). A request neither answered nor discarded is kept until the socket
/// closes, and holds one of its client's slots (`max_rpcs_per_peer`).
/// Returns 0 or a negative errno code (`-ENOENT`: no such request waits
/// for a reply).
///
/// # Safety
/// `s` is a live handle; `peer` valid for reads.
#[no_mangle]
pub unsafe extern "C" fn homa_discard(
    s: *mut homa_socket,
    peer: *const homa_peer,
    id: u64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract (see above) for each pointer.
        let r = (|| unsafe {
            let (sock, _) = socket(s)?;
            let addr = peer_addr(peer)?;
            sock.discard(addr, id).map_err(|e| errno(&e))
        })();
        match r {
            Ok(()) => 0,
            Err(e) => -e,
        }
    })
}

/// The address in a [`homa_peer`] (`-EINVAL` for a null pointer, an
/// unterminated array or text that is not an address).
///
/// # Safety
/// `peer` is null or valid for reads.
unsafe fn peer_addr(peer: *const homa_peer) -> Result<SocketAddr, c_int> {
    // SAFETY: the caller's contract.
    let p = unsafe { peer.as_ref() }.ok_or(libc::EINVAL)?;
    // Never read past the array, terminated or not.
    let end = p.addr.iter().position(|&c| c == 0).ok_or(libc::EINVAL)?;
    let text: Vec<u8> = p.addr[..end].iter().map(|&c| c as u8).collect();
    std::str::from_utf8(&text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or(libc::EINVAL)
}

/// What a code returned by this API means (negative or positive; static
/// text, never null). For the codes of [`homa_call`] the text says whether
/// the request ran. This API never sets `errno`: an operating-system error
/// is returned as its negated code.
#[no_mangle]
pub extern "C" fn homa_strerror(err: c_int) -> *const c_char {
    strerror_text(err).as_ptr()
}

/// The text behind [`homa_strerror`]; [`UNKNOWN_CODE`] for a code this API
/// does not give a meaning of its own.
fn strerror_text(err: c_int) -> &'static CStr {
    match err.checked_abs().unwrap_or(0) {
        0 => c"success",
        libc::ECONNREFUSED => c"destination port unreachable (nothing listens there): the request did not run",
        libc::EHOSTUNREACH => c"destination host unreachable: the request did not run",
        libc::ENETUNREACH => c"destination network unreachable (no route): the request did not run",
        libc::ENXIO => c"destination socket does not serve requests (it is client-only): the request did not run",
        libc::ETIME => c"deadline exceeded (the call's timeout passed; the RPC was aborted): the request may have run",
        libc::ETIMEDOUT => c"timed out (the peer stopped answering: the request may have run; or no request came in time)",
        libc::ECONNRESET => c"server restarted or went away after the request may have reached it: the request may have run, and will not run again",
        libc::ECONNABORTED => c"server ran the request, then discarded the rpc before its response reached us: the request ran",
        libc::ECANCELED => c"rpc aborted by the application: the request may have run",
        libc::EMSGSIZE => c"message longer than the maximum Homa message: not sent",
        libc::EINVAL => c"invalid argument (null pointer, bad address text, empty message, bad configuration)",
        libc::EAFNOSUPPORT => c"address family mismatch (IPv6 destination on an IPv4 socket, or IPv4 destination on a socket bound to a specific IPv6 address)",
        libc::EBADF => c"socket closed",
        libc::EOPNOTSUPP => c"this socket accepts no requests (opened client-only)",
        libc::EAGAIN => c"send buffer full",
        libc::ENOENT => c"no such rpc (a reply to an unknown or already answered request)",
        libc::EUCLEAN => c"host sharing: the host table asked for (HOMA_HOST_SHARING) cannot be used (bad value; foreign, corrupt, wrong-size, wrong-owner or full table file)",
        libc::ENOSPC => c"buffer too small",
        libc::EADDRINUSE => c"address already in use",
        libc::EADDRNOTAVAIL => c"cannot assign requested address",
        libc::EIO => c"input/output error (an operating-system or internal failure with no more precise code): a request may have run",
        libc::ENOTRECOVERABLE => c"internal error in homa-rs (a bug: please report it)",
        _ => UNKNOWN_CODE,
    }
}

/// [`homa_strerror`]'s text for a code without a meaning of its own here.
const UNKNOWN_CODE: &CStr =
    c"operating-system error (strerror(-code) describes it; errno is not set): a request may have run";

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;
    use std::ptr;

    #[test]
    fn close__wakes_a_blocked_receiver_with_ebadf() {
        // SAFETY: the handle is live until homa_close; the receiver holds
        // only its own clone once blocked.
        unsafe {
            let mut s: *mut homa_socket = ptr::null_mut();
            assert_eq!(homa_open(c"127.0.0.1:0".as_ptr(), 1, &mut s), 0);
            let addr = s as usize;
            let (tx, rx) = std::sync::mpsc::channel();
            let t = std::thread::spawn(move || {
                let mut id = 0u64;
                let mut peer = homa_peer { addr: [0; 64] };
                tx.send(()).unwrap();
                homa_recv_request(
                    addr as *mut homa_socket,
                    ptr::null_mut(),
                    0,
                    &mut id,
                    &mut peer,
                    -1,
                )
            });
            rx.recv().unwrap();
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(homa_close(s), 0);
            assert_eq!(t.join().unwrap(), -i64::from(libc::EBADF));
        }
    }

    #[test]
    fn null_and_garbage_arguments__error_codes_not_panics() {
        // SAFETY: every pointer is null or valid; the API must refuse nulls.
        unsafe {
            let mut s: *mut homa_socket = ptr::null_mut();
            assert_eq!(homa_open(ptr::null(), 0, &mut s), -libc::EINVAL);
            assert_eq!(
                homa_open(c"not an address".as_ptr(), 0, &mut s),
                -libc::EINVAL
            );
            assert_eq!(
                homa_open(c"127.0.0.1:0".as_ptr(), 0, ptr::null_mut()),
                -libc::EINVAL
            );
            assert_eq!(homa_close(ptr::null_mut()), -libc::EINVAL);
            assert_eq!(
                homa_call(
                    ptr::null_mut(),
                    ptr::null(),
                    ptr::null(),
                    0,
                    ptr::null_mut(),
                    0,
                    10
                ),
                -i64::from(libc::EINVAL)
            );
            assert_eq!(homa_open(c"127.0.0.1:0".as_ptr(), 1, &mut s), 0);
            assert!(!s.is_null());
            let mut buf = [0 as c_char; 8];
            assert_eq!(
                homa_local_addr(s, buf.as_mut_ptr(), buf.len()),
                -libc::ENOSPC
            );
            // A peer address without a terminating NUL is refused.
            let bad = homa_peer {
                addr: [b'1' as c_char; 64],
            };
            assert_eq!(
                homa_reply(s, &bad, 1, c"x".as_ptr().cast(), 1),
                -libc::EINVAL
            );
            let mut id = 0u64;
            let mut peer = homa_peer { addr: [0; 64] };
            assert_eq!(
                homa_recv_request(s, ptr::null_mut(), 0, &mut id, &mut peer, 10),
                -i64::from(libc::ETIMEDOUT)
            );
            assert_eq!(homa_close(s), 0);
        }
    }

    #[test]
    fn strerror__every_code_has_text() {
        for e in [0, -libc::ETIME, libc::ETIMEDOUT, -12345, i32::MIN] {
            let p = homa_strerror(e);
            assert!(!p.is_null());
            // SAFETY: static NUL-terminated strings.
            assert!(!unsafe { CStr::from_ptr(p) }.to_bytes().is_empty());
        }
    }

    /// An `Error::Config`, from a socket opened with a bad configuration.
    fn config_error() -> Error {
        let mut cfg = Config::default();
        cfg.proto.max_message_length = 0;
        let e = Socket::bind_with("127.0.0.1:0", cfg).unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e:?}");
        e
    }

    /// One value of every variant of the transport's error, with the code
    /// the C API gives it and whether a call that failed with it ran
    /// (`Some(false)` did not run, `None` may have run, `Some(true)` ran;
    /// variants no call returns count as "did not run").
    fn every_error() -> Vec<(Error, c_int, Option<bool>)> {
        use std::io;
        vec![
            (Error::PortUnreachable, libc::ECONNREFUSED, Some(false)),
            (Error::HostUnreachable, libc::EHOSTUNREACH, Some(false)),
            (Error::NetworkUnreachable, libc::ENETUNREACH, Some(false)),
            (Error::NotServer, libc::ENXIO, Some(false)),
            (Error::DeadlineExceeded, libc::ETIME, None),
            (Error::PeerTimeout, libc::ETIMEDOUT, None),
            (Error::OutcomeUnknown, libc::ECONNRESET, None),
            (Error::Aborted, libc::ECANCELED, None),
            (Error::Abandoned, libc::ECONNABORTED, Some(true)),
            (
                Error::MessageTooLong { len: 2, max: 1 },
                libc::EMSGSIZE,
                Some(false),
            ),
            (Error::EmptyMessage, libc::EINVAL, Some(false)),
            (config_error(), libc::EINVAL, Some(false)),
            (Error::AddressFamily, libc::EAFNOSUPPORT, Some(false)),
            (Error::WouldBlock, libc::EAGAIN, Some(false)),
            (Error::Closed, libc::EBADF, None),
            (Error::RuntimeShutdown, libc::EBADF, None),
            (Error::ClientOnly, libc::EOPNOTSUPP, Some(false)),
            (Error::UnknownRpc, libc::ENOENT, Some(false)),
            (Error::HostSharing("x".into()), libc::EUCLEAN, Some(false)),
            (
                Error::Io(io::Error::from_raw_os_error(libc::EACCES)),
                libc::EACCES,
                None,
            ),
            (Error::Io(io::Error::other("x")), libc::EIO, None),
        ]
    }

    #[test]
    fn errno__each_outcome_has_its_own_code_and_text() {
        let all = every_error();
        for (e, code, _) in &all {
            assert_eq!(errno(e), *code, "{e:?}");
            if !matches!(e, Error::Io(_)) {
                assert_ne!(*code, libc::EIO, "{e:?} falls to -EIO");
                assert_ne!(
                    strerror_text(-code),
                    UNKNOWN_CODE,
                    "{e:?}: homa_strerror has no text of its own for {code}"
                );
            }
        }
        // A code never stands for two answers to "did the request run".
        for (a, ca, ra) in &all {
            for (b, cb, rb) in &all {
                if ca == cb {
                    assert_eq!(ra, rb, "{a:?} and {b:?} share {ca}");
                }
            }
        }
        // The outcomes of a call, one code each.
        let outcomes = [
            Error::PortUnreachable,
            Error::HostUnreachable,
            Error::NetworkUnreachable,
            Error::NotServer,
            Error::DeadlineExceeded,
            Error::PeerTimeout,
            Error::OutcomeUnknown,
            Error::Aborted,
            Error::Abandoned,
        ];
        let codes: std::collections::HashSet<c_int> = outcomes.iter().map(errno).collect();
        assert_eq!(codes.len(), outcomes.len(), "two outcomes share a code");
        // An operating-system code that reads as a Homa outcome is not passed on.
        for c in [libc::ECONNABORTED, libc::ENXIO, libc::ECONNRESET] {
            let e = Error::Io(std::io::Error::from_raw_os_error(c));
            assert_eq!(errno(&e), libc::EIO);
        }
    }

    /// `Error` is `#[non_exhaustive]`: the compiler accepts a match on it
    /// that misses a variant. This reads the enum's source and fails when a
    /// variant is missing from `errno` or from `every_error`.
    #[test]
    fn errno__names_every_variant_of_the_error() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../homa-transport/src/error.rs");
        let src = std::fs::read_to_string(&path).expect("homa-transport's error.rs");
        let body = src
            .split_once("pub enum Error {")
            .and_then(|(_, rest)| rest.split_once("\n}"))
            .expect("pub enum Error { ... }")
            .0;
        let variants: Vec<&str> = body
            .lines()
            .filter_map(|l| l.strip_prefix("    "))
            .filter(|l| l.starts_with(|c: char| c.is_ascii_uppercase()))
            .map(|l| {
                l.split(|c: char| !c.is_ascii_alphanumeric())
                    .next()
                    .unwrap()
            })
            .collect();
        assert!(variants.len() >= 20, "parsed {variants:?}");
        let lib = include_str!("lib.rs");
        let errno_src = lib
            .split_once("fn errno(e: &Error) -> c_int {")
            .and_then(|(_, rest)| rest.split_once("\n}"))
            .unwrap()
            .0;
        let sampled: Vec<String> = every_error()
            .iter()
            .map(|(e, _, _)| format!("{e:?}"))
            .collect();
        for v in variants {
            assert!(
                errno_src.contains(&format!("Error::{v}")),
                "errno() does not map Error::{v}: give it a code, a homa_strerror text and a row in docs/c-api.md"
            );
            assert!(
                sampled.iter().any(|d| d.starts_with(v)
                    && !d[v.len()..].starts_with(|c: char| c.is_ascii_alphanumeric())),
                "every_error() has no Error::{v}"
            );
        }
    }

    /// Opens a socket on loopback (`server` as for homa_open).
    /// `homa_call` of "ping" from `client` to the address in `addr`, 5 s
    /// timeout, the response into `resp`.
    ///
    /// # Safety
    /// `client` is a live handle.
    unsafe fn ping(client: *mut homa_socket, addr: &[c_char; 64], resp: &mut [u8]) -> i64 {
        // SAFETY: the caller's handle; buffers of the lengths given.
        unsafe {
            homa_call(
                client,
                addr.as_ptr(),
                c"ping".as_ptr().cast(),
                4,
                resp.as_mut_ptr().cast(),
                resp.len(),
                5000,
            )
        }
    }

    fn open(server: c_int) -> *mut homa_socket {
        let mut s: *mut homa_socket = ptr::null_mut();
        // SAFETY: a NUL-terminated string and a valid out pointer.
        assert_eq!(
            unsafe { homa_open(c"127.0.0.1:0".as_ptr(), server, &mut s) },
            0
        );
        s
    }

    #[test]
    fn call__to_a_client_only_socket_is_enxio_not_eio() {
        let (client, target) = (open(0), open(0));
        let mut addr = [0 as c_char; 64];
        let mut resp = [0u8; 16];
        // SAFETY: live handles, valid buffers of the lengths given.
        unsafe {
            assert!(homa_local_addr(target, addr.as_mut_ptr(), addr.len()) > 0);
            let n = ping(client, &addr, &mut resp);
            assert_eq!(n, -i64::from(libc::ENXIO));
            let text = CStr::from_ptr(homa_strerror(n as c_int)).to_str().unwrap();
            assert!(text.contains("did not run"), "{text}");
            assert_eq!(homa_close(client), 0);
            assert_eq!(homa_close(target), 0);
        }
    }

    #[test]
    fn discard__the_call_fails_at_once_with_econnaborted() {
        let (client, server) = (open(0), open(1));
        let mut addr = [0 as c_char; 64];
        // SAFETY: live handles (the server's until joined and closed),
        // valid buffers of the lengths given.
        unsafe {
            assert!(homa_local_addr(server, addr.as_mut_ptr(), addr.len()) > 0);
            let s = server as usize;
            let t = std::thread::spawn(move || {
                let s = s as *mut homa_socket;
                let (mut id, mut peer) = (0u64, homa_peer { addr: [0; 64] });
                let n = homa_recv_request(s, ptr::null_mut(), 0, &mut id, &mut peer, 5000);
                assert!(n > 0, "{n}");
                let first = homa_discard(s, &peer, id);
                let again = homa_discard(s, &peer, id);
                (first, again, homa_discard(s, ptr::null(), id))
            });
            let mut resp = [0u8; 16];
            let started = std::time::Instant::now();
            let n = ping(client, &addr, &mut resp);
            assert_eq!(n, -i64::from(libc::ECONNABORTED));
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "told, not timed out"
            );
            assert_eq!(t.join().unwrap(), (0, -libc::ENOENT, -libc::EINVAL));
            assert_eq!(homa_close(client), 0);
            assert_eq!(homa_close(server), 0);
        }
    }

    #[test]
    fn recv_request__on_a_client_only_socket_is_eopnotsupp_not_eio() {
        let s = open(0);
        let mut id = 0u64;
        let mut peer = homa_peer { addr: [0; 64] };
        // SAFETY: a live handle, valid out pointers.
        unsafe {
            assert_eq!(
                homa_recv_request(s, ptr::null_mut(), 0, &mut id, &mut peer, -1),
                -i64::from(libc::EOPNOTSUPP)
            );
            assert_eq!(homa_close(s), 0);
        }
    }

    #[test]
    fn call_and_reply__length_over_the_maximum_is_emsgsize_without_reading_the_buffer() {
        let s = open(1);
        let one = [7u8; 1];
        let mut resp = [0u8; 16];
        let max = Config::default().proto.max_message_length as usize;
        let peer = homa_peer {
            addr: {
                let mut a = [0 as c_char; 64];
                for (d, b) in a.iter_mut().zip(b"127.0.0.1:9") {
                    *d = *b as c_char;
                }
                a
            },
        };
        // The buffer holds one byte: reading `len` bytes of it (or copying
        // them) would fault or abort the process.
        for len in [max + 1, 1 << 40, isize::MAX as usize, usize::MAX] {
            // SAFETY: a live handle; the API must not read past `one`.
            unsafe {
                assert_eq!(
                    homa_call(
                        s,
                        c"127.0.0.1:9".as_ptr(),
                        one.as_ptr().cast(),
                        len,
                        resp.as_mut_ptr().cast(),
                        resp.len(),
                        1000,
                    ),
                    -i64::from(libc::EMSGSIZE),
                    "homa_call with {len} bytes"
                );
                assert_eq!(
                    homa_reply(s, &peer, 1, one.as_ptr().cast(), len),
                    -libc::EMSGSIZE,
                    "homa_reply with {len} bytes"
                );
            }
        }
        // SAFETY: the live handle, closed once.
        assert_eq!(unsafe { homa_close(s) }, 0);
    }
}
