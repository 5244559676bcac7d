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

/// The errno-style code of an error (positive).
fn errno(e: &Error) -> c_int {
    match e {
        Error::DeadlineExceeded => libc::ETIME,
        Error::PeerTimeout => libc::ETIMEDOUT,
        Error::PortUnreachable => libc::ECONNREFUSED,
        Error::HostUnreachable => libc::EHOSTUNREACH,
        Error::MessageTooLong { .. } => libc::EMSGSIZE,
        Error::EmptyMessage | Error::Config(_) => libc::EINVAL,
        Error::Aborted => libc::ECANCELED,
        Error::Closed | Error::RuntimeShutdown => libc::EBADF,
        Error::WouldBlock => libc::EAGAIN,
        Error::AddressFamily => libc::EAFNOSUPPORT,
        Error::UnknownRpc => libc::ENOENT,
        Error::Io(io) => io.raw_os_error().unwrap_or(libc::EIO),
        _ => libc::EIO,
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
/// Returns 0 or a negative errno code.
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
/// than `resp_cap` means it was truncated), or a negative errno code:
/// `-ETIME` deadline exceeded, `-ETIMEDOUT` the peer stopped answering,
/// `-ECONNREFUSED` nothing listens there, `-EHOSTUNREACH`, `-EMSGSIZE`
/// (`req_len` over the maximum message length, checked before `req` is
/// read), `-EINVAL`, `-EBADF` socket closed.
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
/// once the socket is closed.
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
            let p = peer.as_ref().ok_or(libc::EINVAL)?;
            // Never read past the array, terminated or not.
            let end = p.addr.iter().position(|&c| c == 0).ok_or(libc::EINVAL)?;
            let text: Vec<u8> = p.addr[..end].iter().map(|&c| c as u8).collect();
            let addr: SocketAddr = std::str::from_utf8(&text)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or(libc::EINVAL)?;
            let body = bytes_in(buf.cast(), len)?;
            sock.reply(addr, id, body.to_vec()).map_err(|e| errno(&e))
        })();
        match r {
            Ok(()) => 0,
            Err(e) => -e,
        }
    })
}

/// What a code returned by this API means (negative or positive; static
/// text, never null).
#[no_mangle]
pub extern "C" fn homa_strerror(err: c_int) -> *const c_char {
    let text: &'static CStr = match err.checked_abs().unwrap_or(0) {
        0 => c"success",
        libc::ETIME => c"deadline exceeded (the call's timeout passed; the RPC was aborted)",
        libc::ETIMEDOUT => c"timed out (the peer stopped answering, or no request came in time)",
        libc::ECONNREFUSED => c"destination port unreachable (nothing listens there)",
        libc::EHOSTUNREACH => c"destination host unreachable",
        libc::EMSGSIZE => c"message longer than the maximum Homa message",
        libc::EINVAL => c"invalid argument (null pointer, bad address text, empty message)",
        libc::ECANCELED => c"rpc aborted",
        libc::EBADF => c"socket closed",
        libc::EAGAIN => c"send buffer full",
        libc::EAFNOSUPPORT => c"address family mismatch (IPv6 destination on an IPv4 socket)",
        libc::ENOENT => c"no such rpc (a reply to an unknown or already answered request)",
        libc::ENOSPC => c"buffer too small",
        libc::EADDRINUSE => c"address already in use",
        libc::EADDRNOTAVAIL => c"cannot assign requested address",
        libc::ENOTRECOVERABLE => c"internal error in homa-rs (a bug: please report it)",
        _ => c"operating system error (see errno)",
    };
    text.as_ptr()
}

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

    /// Opens a socket on loopback (`server` as for homa_open).
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
