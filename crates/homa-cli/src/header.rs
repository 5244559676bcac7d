//! The 12-byte header at the front of every load-generator message, the
//! layout of the kernel benchmark's (`cp_node`) message header, so both
//! ends know a message's length and identity whatever the transport:
//!
//! ```text
//! bytes 0..4   length   i32  whole message, header included
//! bytes 4..8   cid      u8 client port, u8 client node, u8 server port, u8 server node
//! bytes 8..10  msg_id   u16  the client port's sequence number
//! bytes 10..12 flags    u16  bit 0 freeze, bit 1 short_response, bit 2 response,
//!                            bit 3 metrics (ours: a metrics request)
//! ```
//!
//! All fields little-endian (cp_node writes its struct in the host's byte
//! order, little-endian on the x86 machines it runs on). Over TCP the length
//! field is the framing ([`read_message`], [`write_message`]); over Homa
//! messages carry their own length and the header only lets the server
//! choose the response.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes of the header, and so the shortest message the load generator
/// sends (cp_node raises shorter workload lengths to this).
pub(crate) const HEADER_LEN: usize = 12;

/// Length of a response in one-way mode (`short_response`), as cp_node.
pub(crate) const SHORT_RESPONSE_LEN: u32 = 100;

/// Bit of `flags`: freeze the timetraces (carried, never acted on here).
#[allow(dead_code)]
pub(crate) const FLAG_FREEZE: u16 = 1 << 0;
/// Bit of `flags`: the server answers with [`SHORT_RESPONSE_LEN`] bytes.
pub(crate) const FLAG_SHORT_RESPONSE: u16 = 1 << 1;
/// Bit of `flags`: this message is a response.
pub(crate) const FLAG_RESPONSE: u16 = 1 << 2;
/// Bit of `flags`: a metrics request; the server answers with its
/// counters as JSON after the header (an extension of cp_node's header).
pub(crate) const FLAG_METRICS: u16 = 1 << 3;

/// A decoded message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Header {
    /// Whole message length in bytes, header included.
    pub length: u32,
    /// Client port index on the client node.
    pub client_port: u8,
    /// Client node id.
    pub client_node: u8,
    /// Server port index on the server node.
    pub server_port: u8,
    /// Server node id.
    pub server_node: u8,
    /// Sequence number on the client port (wraps).
    pub msg_id: u16,
    /// `FLAG_*` bits.
    pub flags: u16,
}

impl Header {
    /// Writes the header into the first [`HEADER_LEN`] bytes of `buf`.
    ///
    /// Panics if `buf` is shorter than the header.
    pub(crate) fn write(&self, buf: &mut [u8]) {
        buf[0..4].copy_from_slice(&(self.length as i32).to_le_bytes());
        buf[4] = self.client_port;
        buf[5] = self.client_node;
        buf[6] = self.server_port;
        buf[7] = self.server_node;
        buf[8..10].copy_from_slice(&self.msg_id.to_le_bytes());
        buf[10..12].copy_from_slice(&self.flags.to_le_bytes());
    }

    /// The header as bytes.
    pub(crate) fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        self.write(&mut b);
        b
    }

    /// Reads a header from the front of `buf`; `None` if `buf` is too
    /// short or the length field is negative or shorter than the header.
    pub(crate) fn read(buf: &[u8]) -> Option<Header> {
        if buf.len() < HEADER_LEN {
            return None;
        }
        let length = i32::from_le_bytes(buf[0..4].try_into().ok()?);
        if length < HEADER_LEN as i32 {
            return None;
        }
        Some(Header {
            length: length as u32,
            client_port: buf[4],
            client_node: buf[5],
            server_port: buf[6],
            server_node: buf[7],
            msg_id: u16::from_le_bytes([buf[8], buf[9]]),
            flags: u16::from_le_bytes([buf[10], buf[11]]),
        })
    }

    /// Reads the header of a complete message: `None` unless the header
    /// parses and its length equals the message's (a message from a client
    /// that does not speak this header, e.g. a plain echo client).
    pub(crate) fn of_message(msg: &[u8]) -> Option<Header> {
        Header::read(msg).filter(|h| h.length as usize == msg.len())
    }

    /// True if `flag` is set.
    pub(crate) fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }

    /// Length of the response a server sends to this request.
    pub(crate) fn response_length(&self) -> u32 {
        if self.has(FLAG_SHORT_RESPONSE) {
            SHORT_RESPONSE_LEN
        } else {
            self.length
        }
    }

    /// The header of the response to this request, `length` bytes long.
    pub(crate) fn response(&self, length: u32) -> Header {
        Header {
            length,
            flags: self.flags | FLAG_RESPONSE,
            ..*self
        }
    }
}

/// A message of `length` bytes (at least [`HEADER_LEN`]) that starts with
/// `header` (its length field set to `length`) and continues with zeroes.
pub(crate) fn message(header: Header, length: u32) -> Vec<u8> {
    let length = length.max(HEADER_LEN as u32);
    let mut v = vec![0u8; length as usize];
    Header { length, ..header }.write(&mut v);
    v
}

/// Messages of a header and zeroes, built in buffers that are reused once
/// the transport has let go of them: the Homa client's requests and the
/// server's responses, which would otherwise cost an allocation and a
/// `memset` of the whole length each (the TCP side writes its zeroes from
/// one static buffer). A buffer only ever holds a header at its start and
/// zeroes after it, so reusing one means rewriting the header.
///
/// Buffers come in power-of-two sizes from [`ZeroPool::MIN`] (shorter
/// messages are built afresh: cheap); each size keeps at most
/// [`ZeroPool::KEEP`] buffers and the pool at most [`ZeroPool::MAX_BYTES`]
/// in all: messages beyond those are built afresh and freed when sent.
#[derive(Debug, Default)]
pub(crate) struct ZeroPool {
    /// Index `i`: buffers of `MIN << i` bytes, each the pool's handle to
    /// the whole buffer (unique once the transport dropped its slice).
    sizes: Vec<Vec<bytes::Bytes>>,
    /// Bytes of the buffers kept.
    bytes: usize,
}

impl ZeroPool {
    /// Smallest pooled buffer, bytes.
    pub(crate) const MIN: usize = 4096;
    /// Most buffers kept per size.
    pub(crate) const KEEP: usize = 256;
    /// Most bytes kept over all sizes.
    pub(crate) const MAX_BYTES: usize = 64 << 20;

    /// A message of `length` bytes (at least [`HEADER_LEN`]): `header`
    /// with its length set, then zeroes.
    pub(crate) fn message(&mut self, header: Header, length: u32) -> bytes::Bytes {
        let length = length.max(HEADER_LEN as u32);
        let len = length as usize;
        if len < Self::MIN {
            return message(header, length).into();
        }
        let size = len.next_power_of_two();
        let class = (size / Self::MIN).trailing_zeros() as usize;
        if self.sizes.len() <= class {
            self.sizes.resize_with(class + 1, Vec::new);
        }
        let kept = &mut self.sizes[class];
        // The pool's handle is the only one left once the transport let go:
        // then nobody else can clone it, and it converts back without a copy.
        let reused = kept
            .iter()
            .position(|b| b.is_unique())
            .and_then(|i| kept.swap_remove(i).try_into_mut().ok());
        if reused.is_some() {
            self.bytes -= size;
        }
        let mut buf = reused.unwrap_or_else(|| bytes::BytesMut::zeroed(size));
        Header { length, ..header }.write(&mut buf);
        let whole = buf.freeze();
        if kept.len() < Self::KEEP && self.bytes + size <= Self::MAX_BYTES {
            kept.push(whole.clone());
            self.bytes += size;
        }
        whole.slice(..len)
    }
}

/// Most bytes of a message body held at once when messages stream over
/// TCP. Bodies are read and written in chunks of this size, never whole:
/// the length comes from the peer and may claim up to 2 GiB.
pub(crate) const CHUNK: usize = 64 * 1024;

/// The zeroes after the first chunk of a message written by
/// [`write_message`].
static ZEROS: [u8; CHUNK] = [0; CHUNK];

/// Reads one message from a TCP stream: its header, then its body,
/// discarded `scratch.len()` bytes at a time (only the header matters to
/// either end). A header that does not parse is `InvalidData`.
pub(crate) async fn read_message<R: AsyncRead + Unpin>(
    rd: &mut R,
    scratch: &mut [u8],
) -> io::Result<Header> {
    let mut hb = [0u8; HEADER_LEN];
    rd.read_exact(&mut hb).await?;
    let h = Header::read(&hb)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad message header"))?;
    let chunk = scratch.len().max(1);
    let mut left = h.length as usize - HEADER_LEN;
    while left > 0 {
        let n = left.min(chunk);
        rd.read_exact(&mut scratch[..n]).await?;
        left -= n;
    }
    Ok(h)
}

/// Writes a message of `h.length` bytes (at least [`HEADER_LEN`]) to a TCP
/// stream: `h`, then zeroes. `first` is the caller's buffer for the first
/// [`CHUNK`] bytes, kept between calls: it never holds anything but zeroes
/// after the header, and a message that fits goes out in one write.
pub(crate) async fn write_message<W: AsyncWrite + Unpin>(
    wr: &mut W,
    h: Header,
    first: &mut Vec<u8>,
) -> io::Result<()> {
    let length = h.length.max(HEADER_LEN as u32);
    let len = length as usize;
    let n = len.min(CHUNK);
    if first.len() < n {
        first.resize(n, 0);
    }
    Header { length, ..h }.write(first);
    wr.write_all(&first[..n]).await?;
    let mut left = len - n;
    while left > 0 {
        let n = left.min(CHUNK);
        wr.write_all(&ZEROS[..n]).await?;
        left -= n;
    }
    Ok(())
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    fn hdr(msg_id: u16) -> Header {
        Header {
            length: 0,
            client_port: 1,
            client_node: 2,
            server_port: 3,
            server_node: 4,
            msg_id,
            flags: 0,
        }
    }

    /// Pooled messages read as a fresh header and zeroes at every length,
    /// including after their buffers were reused for other lengths.
    #[test]
    fn zero_pool__messages_are_header_then_zeroes_across_reuse() {
        let mut pool = ZeroPool::default();
        for (i, len) in [5000u32, 70_000, 4096, 6000, 65_536, 100, 5000, 1_000_000]
            .into_iter()
            .enumerate()
        {
            let m = pool.message(hdr(i as u16), len);
            assert_eq!(m.len(), len as usize);
            assert_eq!(&m[..HEADER_LEN], &message(hdr(i as u16), len)[..HEADER_LEN]);
            assert!(m[HEADER_LEN..].iter().all(|&b| b == 0), "length {len}");
            drop(m);
        }
    }

    /// A buffer is reused only once every other handle is gone, and the
    /// pool stays bounded while messages are held.
    #[test]
    fn zero_pool__reuses_only_released_buffers_and_stays_bounded() {
        let mut pool = ZeroPool::default();
        let a = pool.message(hdr(1), 10_000);
        let b = pool.message(hdr(2), 10_000);
        assert_ne!(a.as_ptr(), b.as_ptr(), "a held buffer was handed out again");
        assert_eq!(&a[8..10], &1u16.to_le_bytes());
        let pa = a.as_ptr();
        drop(a);
        let c = pool.message(hdr(3), 9_000);
        assert_eq!(c.as_ptr(), pa, "the released buffer was not reused");
        assert_eq!(&b[8..10], &2u16.to_le_bytes(), "a held message changed");
        let held: Vec<_> = (0..ZeroPool::KEEP + 10)
            .map(|i| pool.message(hdr(i as u16), 5000))
            .collect();
        assert!(pool.sizes.iter().all(|k| k.len() <= ZeroPool::KEEP));
        drop(held);
        // And by bytes: 100 held messages of 1 MB keep at most 64 MB.
        let held: Vec<_> = (0..100).map(|i| pool.message(hdr(i), 1_000_000)).collect();
        let kept: usize = pool.sizes.iter().flatten().map(|b| b.len()).sum();
        assert_eq!(kept, pool.bytes);
        assert!(kept <= ZeroPool::MAX_BYTES, "{kept} bytes kept");
        drop(held);
    }

    #[test]
    fn write_read__round_trip_and_byte_layout() {
        let h = Header {
            length: 0x0102_0304,
            client_port: 5,
            client_node: 6,
            server_port: 7,
            server_node: 8,
            msg_id: 0x090a,
            flags: FLAG_SHORT_RESPONSE | FLAG_RESPONSE,
        };
        let b = h.to_bytes();
        assert_eq!(b, [4, 3, 2, 1, 5, 6, 7, 8, 0x0a, 0x09, 6, 0]);
        assert_eq!(Header::read(&b), Some(h));
    }

    #[test]
    fn read__rejects_short_buffers_and_bad_lengths() {
        assert_eq!(Header::read(&[0; 11]), None);
        let mut b = Header::default().to_bytes();
        assert_eq!(Header::read(&b), None, "length 0 < header");
        b[0..4].copy_from_slice(&(-5i32).to_le_bytes());
        assert_eq!(Header::read(&b), None);
    }

    #[test]
    fn of_message__requires_matching_length() {
        let m = message(Header::default(), 40);
        assert_eq!(m.len(), 40);
        assert_eq!(Header::of_message(&m).unwrap().length, 40);
        assert_eq!(Header::of_message(&m[..39]), None);
        assert_eq!(message(Header::default(), 3).len(), HEADER_LEN);
    }

    #[test]
    fn response__length_and_flags() {
        let req = Header {
            length: 5000,
            msg_id: 9,
            flags: FLAG_SHORT_RESPONSE,
            ..Header::default()
        };
        assert_eq!(req.response_length(), 100);
        let r = req.response(100);
        assert!(r.has(FLAG_RESPONSE) && r.has(FLAG_SHORT_RESPONSE));
        assert_eq!((r.length, r.msg_id), (100, 9));
        let echo = Header { flags: 0, ..req };
        assert_eq!(echo.response_length(), 5000);
        let m = Header {
            flags: FLAG_METRICS,
            ..req
        };
        assert!(m.response(50).has(FLAG_METRICS));
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn write_message_read_message__round_trip_in_chunks() {
        let mut wire = Vec::new();
        let mut first = Vec::new();
        let h = Header {
            msg_id: 7,
            ..Header::default()
        };
        for length in [3, 12, 500, CHUNK as u32, 3 * CHUNK as u32 + 5] {
            block_on(write_message(&mut wire, Header { length, ..h }, &mut first)).unwrap();
        }
        assert!(first.len() <= CHUNK);
        let total = 12 + 12 + 500 + CHUNK + 3 * CHUNK + 5;
        assert_eq!(wire.len(), total);
        // Exactly one message the length of the first chunk: the shorter
        // messages before it left nothing but zeroes behind the header.
        let m = &wire[12 + 12 + 500..12 + 12 + 500 + CHUNK];
        assert_eq!(Header::of_message(m).unwrap().length, CHUNK as u32);
        assert!(m[HEADER_LEN..].iter().all(|&b| b == 0));
        let mut rd: &[u8] = &wire;
        let mut scratch = vec![0u8; 1000];
        let lengths: Vec<u32> = (0..5)
            .map(|_| block_on(read_message(&mut rd, &mut scratch)).unwrap())
            .map(|h| {
                assert_eq!(h.msg_id, 7);
                h.length
            })
            .collect();
        assert_eq!(lengths, [12, 12, 500, CHUNK as u32, 3 * CHUNK as u32 + 5]);
        assert!(rd.is_empty());
    }

    /// A header from the network claiming 2 GiB costs nothing up front:
    /// the body is read into the caller's fixed scratch, and a stream that
    /// ends early is an error, never an allocation of the claimed length.
    #[test]
    fn read_message__huge_or_garbled_lengths_from_the_peer() {
        let mut scratch = [0u8; 64];
        let mut huge = Header {
            length: i32::MAX as u32,
            ..Header::default()
        }
        .to_bytes()
        .to_vec();
        huge.extend_from_slice(&[1; 100]);
        let e = block_on(read_message(&mut &huge[..], &mut scratch)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let mut neg = Header::default().to_bytes();
        neg[0..4].copy_from_slice(&(-1i32).to_le_bytes());
        let e = block_on(read_message(&mut &neg[..], &mut scratch)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let e = block_on(read_message(&mut &neg[..5], &mut scratch)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
