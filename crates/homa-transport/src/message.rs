//! What the API accepts as a message body ([`IntoMessage`]) and as an
//! address (anything [`ToSocketAddrs`], host names included), and a
//! received message that may be a chain of pieces ([`Message`]).

use std::net::{SocketAddr, ToSocketAddrs};

use bytes::Bytes;

use crate::Error;

/// A request or response body. Owned bytes ([`Bytes`], `Vec<u8>`,
/// `String`, `Box<[u8]>`) are taken without a copy; borrowed ones (`&[u8]`,
/// `&str`, `&[u8; N]`, `&Vec<u8>`, `&Bytes`) are copied (a `&Bytes` only
/// shares its buffer), so a call never needs `'static` data.
///
/// ```no_run
/// # fn demo(socket: &homa_transport::Socket) -> Result<(), homa_transport::Error> {
/// let dest = "127.0.0.1:4000";
/// let local = [1u8, 2, 3];
/// socket.call(dest, &local[..])?;            // copied
/// socket.call(dest, b"ping")?;               // copied
/// socket.call(dest, vec![0u8; 1 << 20])?;    // moved, no copy
/// socket.call(dest, "text")?;                // copied
/// # Ok(())
/// # }
/// ```
pub trait IntoMessage {
    /// The body as [`Bytes`].
    fn into_message(self) -> Bytes;
}

impl IntoMessage for Bytes {
    fn into_message(self) -> Bytes {
        self
    }
}

impl IntoMessage for &Bytes {
    fn into_message(self) -> Bytes {
        self.clone()
    }
}

impl IntoMessage for Vec<u8> {
    fn into_message(self) -> Bytes {
        Bytes::from(self)
    }
}

impl IntoMessage for &Vec<u8> {
    fn into_message(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

impl IntoMessage for Box<[u8]> {
    fn into_message(self) -> Bytes {
        Bytes::from(self)
    }
}

impl IntoMessage for String {
    fn into_message(self) -> Bytes {
        Bytes::from(self)
    }
}

impl IntoMessage for &String {
    fn into_message(self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }
}

impl IntoMessage for &str {
    fn into_message(self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }
}

impl IntoMessage for &[u8] {
    fn into_message(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

impl<const N: usize> IntoMessage for &[u8; N] {
    fn into_message(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

impl<const N: usize> IntoMessage for [u8; N] {
    fn into_message(self) -> Bytes {
        Bytes::copy_from_slice(&self)
    }
}

/// A received message: one piece, or a chain of pieces of the receive
/// buffers it arrived in (a message longer than one packet, received by
/// a socket that keeps bulk payloads where the kernel put them; see
/// `docs/runtime.md`, "Receiving without a copy"). Reading it piece by
/// piece ([`Message::chunks`]) costs no copy; [`Message::into_bytes`]
/// copies only a chain, once, into contiguous storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message(Pieces);

/// A message's storage. A one-piece message (every short RPC's) is a
/// plain [`Bytes`], the same size as one (the chain's `Vec` takes the
/// niche of `Bytes`'s vtable reference), so queueing it and turning it
/// back into `Bytes` cost a move, not a `Vec` to check and drop.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pieces {
    One(Bytes),
    /// Two pieces or more, in order.
    Chain(Vec<Bytes>),
}

impl Default for Message {
    fn default() -> Message {
        Message(Pieces::One(Bytes::new()))
    }
}

impl Message {
    /// The message whose pieces are `first` then `rest`, in order.
    #[inline]
    pub fn from_parts(first: Bytes, rest: Vec<Bytes>) -> Message {
        if rest.is_empty() {
            Message(Pieces::One(first))
        } else {
            Message::chain(first, rest)
        }
    }

    #[cold]
    fn chain(first: Bytes, mut rest: Vec<Bytes>) -> Message {
        rest.insert(0, first);
        Message(Pieces::Chain(rest))
    }

    /// Bytes in the message.
    pub fn len(&self) -> usize {
        match &self.0 {
            Pieces::One(b) => b.len(),
            Pieces::Chain(v) => v.iter().map(Bytes::len).sum(),
        }
    }

    /// True for an empty message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True if the message is one piece ([`Message::into_bytes`] is free).
    pub fn is_contiguous(&self) -> bool {
        matches!(self.0, Pieces::One(_))
    }

    /// The pieces, in order (one for a contiguous message).
    pub fn chunks(&self) -> impl Iterator<Item = &Bytes> + '_ {
        match &self.0 {
            Pieces::One(b) => std::slice::from_ref(b).iter(),
            Pieces::Chain(v) => v.iter(),
        }
    }

    /// The message as one [`Bytes`]: the piece itself if contiguous, else
    /// a copy of the pieces into new storage.
    #[inline]
    pub fn into_bytes(self) -> Bytes {
        match self.0 {
            Pieces::One(b) => b,
            Pieces::Chain(v) => concat(v.iter()),
        }
    }
}

/// The pieces `first` then `rest` of a message delivered on socket `port`
/// as one [`Bytes`]: `first` itself when `rest` is empty (no copy), else a
/// copy of them all that counts in the socket's receive budget as they did
/// ([`Endpoint::contiguous_copy`](homa_proto::Endpoint::contiguous_copy)).
/// The runtime's contiguous deliveries (responses, `recv_request`) take
/// this path.
#[inline]
pub(crate) fn contiguous(
    ep: &homa_proto::Endpoint,
    port: u16,
    first: Bytes,
    rest: Vec<Bytes>,
) -> Bytes {
    if rest.is_empty() {
        first
    } else {
        ep.contiguous_copy(port, std::iter::once(&first).chain(&rest))
    }
}

impl Message {
    /// [`contiguous`] for a delivered message.
    #[inline]
    pub(crate) fn into_counted_bytes(self, ep: &homa_proto::Endpoint, port: u16) -> Bytes {
        match self.0 {
            Pieces::One(b) => b,
            Pieces::Chain(v) => ep.contiguous_copy(port, v.iter()),
        }
    }
}

/// The pieces copied into one contiguous `Bytes`.
#[cold]
fn concat<'a>(pieces: impl Iterator<Item = &'a Bytes> + Clone) -> Bytes {
    let mut all = Vec::with_capacity(pieces.clone().map(Bytes::len).sum());
    for c in pieces {
        all.extend_from_slice(c);
    }
    Bytes::from(all)
}

impl From<Bytes> for Message {
    #[inline]
    fn from(b: Bytes) -> Message {
        Message(Pieces::One(b))
    }
}

impl IntoMessage for Message {
    /// Copies a chain once (see [`Message::into_bytes`]).
    fn into_message(self) -> Bytes {
        self.into_bytes()
    }
}

/// Resolves `addr` to one address a socket of the given family can reach:
/// the first of that family, else the first at all (an IPv6 socket reaches
/// IPv4 addresses through IPv4-mapping). A `SocketAddr` costs nothing; a
/// host name is looked up on every call (resolve it once for hot paths).
pub(crate) fn resolve(addr: impl ToSocketAddrs, ipv6: bool) -> Result<SocketAddr, Error> {
    let mut first = None;
    for a in addr.to_socket_addrs()? {
        if a.is_ipv6() == ipv6 {
            return Ok(a);
        }
        first.get_or_insert(a);
    }
    first.ok_or_else(|| {
        Error::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the address resolved to nothing",
        ))
    })
}

/// Runs `open` on each address `addr` resolves to until one succeeds
/// (as `std::net::UdpSocket::bind` does); the last error otherwise.
pub(crate) fn bind_any<T>(
    addr: impl ToSocketAddrs,
    mut open: impl FnMut(SocketAddr) -> Result<T, Error>,
) -> Result<T, Error> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match open(a) {
            Ok(t) => return Ok(t),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        Error::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the address resolved to nothing",
        ))
    }))
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    #[test]
    fn into_message__owned_bodies_keep_their_buffer() {
        let v = vec![7u8; 100];
        let p = v.as_ptr();
        assert_eq!(v.into_message().as_ptr(), p);
        let b = Bytes::from_static(b"static");
        assert_eq!((&b).into_message().as_ptr(), b.as_ptr());
    }

    #[test]
    fn into_message__borrowed_bodies_are_copied() {
        let local = [1u8, 2, 3];
        assert_eq!(&local[..].into_message()[..], &local[..]);
        assert_eq!(&(&local).into_message()[..], &local[..]);
        assert_eq!(&"hi".into_message()[..], b"hi");
        assert_eq!(&local.into_message()[..], &local[..]);
    }

    #[test]
    fn resolve__prefers_the_socket_family() {
        let both = [
            "[::1]:9".parse::<SocketAddr>().unwrap(),
            "127.0.0.1:9".parse().unwrap(),
        ];
        assert_eq!(resolve(&both[..], false).unwrap(), both[1]);
        assert_eq!(resolve(&both[..], true).unwrap(), both[0]);
        assert_eq!(resolve("127.0.0.1:9", true).unwrap(), both[1]);
        assert!(resolve(&[][..] as &[SocketAddr], false).is_err());
        assert_eq!(resolve("localhost:9", false).unwrap().port(), 9);
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod chain_tests {
    use super::*;

    #[test]
    fn message__chain_copied_once_contiguous_handed_over() {
        let one = Bytes::from_static(b"hello");
        let m = Message::from(one.clone());
        assert!(m.is_contiguous());
        assert_eq!(m.into_bytes().as_ptr(), one.as_ptr(), "no copy");
        let chain = Message::from_parts(
            Bytes::from_static(b"ab"),
            vec![Bytes::from_static(b"c"), Bytes::from_static(b"de")],
        );
        assert_eq!((chain.len(), chain.is_contiguous()), (5, false));
        let pieces: Vec<&[u8]> = chain.chunks().map(|c| &c[..]).collect();
        assert_eq!(pieces, [&b"ab"[..], b"c", b"de"]);
        assert_eq!(&chain.into_bytes()[..], b"abcde");
        let one = Bytes::from_static(b"xy");
        let m = Message::from_parts(one.clone(), Vec::new());
        assert_eq!(m, Message::from(one.clone()));
        let ep = homa_proto::Endpoint::new(homa_proto::Config::default(), 1).unwrap();
        assert_eq!(
            contiguous(&ep, 9, one.clone(), Vec::new()).as_ptr(),
            one.as_ptr()
        );
        let c = contiguous(&ep, 9, one, vec![Bytes::from_static(b"z")]);
        assert_eq!(&c[..], b"xyz");
        assert_eq!(Message::default().len(), 0);
    }

    #[test]
    fn message__one_piece_is_the_size_of_bytes() {
        assert_eq!(std::mem::size_of::<Message>(), std::mem::size_of::<Bytes>());
    }
}
