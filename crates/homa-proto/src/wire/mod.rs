//! The Homa wire format, byte-compatible with the Linux module's `homa_wire.h`.
//!
//! This module owns every byte layout Homa puts on the wire and nothing else:
//! no protocol decisions are taken here. It follows the smoltcp `wire` pattern:
//!
//! * [`Packet`] is a zero-copy view over a buffer (`T: AsRef<[u8]>`), with one
//!   accessor per field. The byte ranges live in `field` modules next to each
//!   packet type; accessors on a view created with [`Packet::new_unchecked`]
//!   may panic on short buffers, while [`Packet::new_checked`] guarantees that
//!   every accessor of the packet's type is in bounds.
//! * [`Repr`] is the parsed, validated representation of a header:
//!   [`Repr::parse`] never panics on arbitrary input and [`Repr::emit`] writes
//!   exactly [`Repr::header_len`] bytes.
//!
//! Layout summary (all multi-byte fields big-endian):
//!
//! | type | code | header bytes |
//! |---|---|---|
//! | DATA | 0x10 | 56 + payload |
//! | GRANT | 0x11 | 33 |
//! | RESEND | 0x12 | 37 (36 accepted) |
//! | RPC_UNKNOWN | 0x13 | 28 |
//! | BUSY | 0x14 | 28 |
//! | CUTOFFS | 0x15 | 62 |
//! | FREEZE | 0x16 | 28 |
//! | NEED_ACK | 0x17 | 28 |
//! | ACK | 0x18 | 80 |
//!
//! On emit, the common header is filled as the full kernel build does: `doff`
//! is 0xE0 for DATA and 0x50 otherwise, `flags` is 0x06 and `urgent` 0xB97D
//! (the TCP-hijacking markers, harmless elsewhere). The checksum field is left
//! 0: over UDP the datagram checksum covers the packet, and no Homa receiver
//! verifies this field. Receivers ignore `doff`, `flags` and `checksum`.
//!
//! Fields homa-rs adds in space the kernel leaves unused (zero there, and
//! harmless to a receiver that ignores them): the 40-bit incarnation in the
//! common header's `ack` and `window` bytes ([`Repr::incarnation`], see
//! [`common`]), the status of an RPC_UNKNOWN in `urgent`
//! ([`simple::UnknownStatus`]), and the client's oldest unfinished RPC in
//! DATA's padding ([`DataHeader::oldest_live`]).

pub mod ack;
pub mod common;
pub mod cutoffs;
pub mod data;
pub mod grant;
pub mod resend;
pub mod simple;

pub use ack::{AckEntry, AckHeader, MAX_ACKS_PER_PKT};
pub use cutoffs::CutoffsHeader;
pub use data::DataHeader;
pub use grant::GrantHeader;
pub use resend::ResendHeader;
pub use simple::{RpcUnknownHeader, UnknownStatus};

use core::fmt;

/// Number of priority levels the wire format (CUTOFFS) is laid out for.
pub const MAX_PRIORITIES: usize = 8;

/// Length of the common header that starts every Homa packet.
pub const COMMON_HEADER_LEN: usize = 28;

/// Value of the TCP `flags` byte the full kernel build sets on every packet.
pub const HIJACK_FLAGS: u8 = 0x06;

/// Value of the TCP `urgent` field the full kernel build sets on every packet.
pub const HIJACK_URGENT: u16 = 0xB97D;

/// The largest header of any packet type (ACK).
pub const MAX_HEADER_LEN: usize = 80;

/// Errors from parsing untrusted bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer is shorter than the header of its packet type.
    #[error("packet truncated: {len} bytes, type needs {need}")]
    Truncated {
        /// Bytes available.
        len: usize,
        /// Bytes the packet type requires.
        need: usize,
    },
    /// The type byte is not one of the nine Homa packet types.
    #[error("unknown packet type {0:#04x}")]
    UnknownType(u8),
    /// A field holds a value the protocol does not allow.
    #[error("malformed {0} packet")]
    Malformed(PacketType),
}

/// Result of parsing wire bytes.
pub type Result<T> = core::result::Result<T, Error>;

/// The Homa packet types (`enum homa_packet_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[repr(u8)]
pub enum PacketType {
    /// Message bytes.
    Data = 0x10,
    /// Receiver permits the sender to transmit more bytes.
    Grant = 0x11,
    /// Receiver asks for bytes to be retransmitted.
    Resend = 0x12,
    /// "I have no state for this RPC".
    RpcUnknown = 0x13,
    /// "Alive, intentionally not sending".
    Busy = 0x14,
    /// Receiver tells a sender which priorities to use for unscheduled bytes.
    Cutoffs = 0x15,
    /// Debugging: freeze the time trace.
    Freeze = 0x16,
    /// Server asks the client to acknowledge a response.
    NeedAck = 0x17,
    /// Client tells the server it may free RPCs.
    Ack = 0x18,
}

impl PacketType {
    /// All packet types, in code order.
    pub const ALL: [PacketType; 9] = [
        PacketType::Data,
        PacketType::Grant,
        PacketType::Resend,
        PacketType::RpcUnknown,
        PacketType::Busy,
        PacketType::Cutoffs,
        PacketType::Freeze,
        PacketType::NeedAck,
        PacketType::Ack,
    ];

    /// The minimum number of bytes a packet of this type must have.
    pub const fn min_len(self) -> usize {
        match self {
            PacketType::Data => data::HEADER_LEN,
            PacketType::Grant => grant::HEADER_LEN,
            PacketType::Resend => resend::MIN_HEADER_LEN,
            PacketType::Cutoffs => cutoffs::HEADER_LEN,
            PacketType::Ack => ack::HEADER_LEN,
            PacketType::RpcUnknown
            | PacketType::Busy
            | PacketType::Freeze
            | PacketType::NeedAck => COMMON_HEADER_LEN,
        }
    }

    /// Index of this type in [`PacketType::ALL`] (for per-type counters).
    pub const fn index(self) -> usize {
        self as usize - PacketType::Data as usize
    }

    /// The conventional upper-case name used by the kernel module.
    pub const fn name(self) -> &'static str {
        match self {
            PacketType::Data => "DATA",
            PacketType::Grant => "GRANT",
            PacketType::Resend => "RESEND",
            PacketType::RpcUnknown => "RPC_UNKNOWN",
            PacketType::Busy => "BUSY",
            PacketType::Cutoffs => "CUTOFFS",
            PacketType::Freeze => "FREEZE",
            PacketType::NeedAck => "NEED_ACK",
            PacketType::Ack => "ACK",
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<u8> for PacketType {
    type Error = Error;
    fn try_from(v: u8) -> Result<Self> {
        Ok(match v {
            0x10 => PacketType::Data,
            0x11 => PacketType::Grant,
            0x12 => PacketType::Resend,
            0x13 => PacketType::RpcUnknown,
            0x14 => PacketType::Busy,
            0x15 => PacketType::Cutoffs,
            0x16 => PacketType::Freeze,
            0x17 => PacketType::NeedAck,
            0x18 => PacketType::Ack,
            other => return Err(Error::UnknownType(other)),
        })
    }
}

/// A zero-copy view of a Homa packet in a byte buffer.
///
/// Accessors for the common header live in this module; accessors for the
/// type-specific fields live beside each packet type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after checking that it holds a known packet type and is
    /// long enough for every field of that type.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the type byte and that the buffer covers that type's header.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < COMMON_HEADER_LEN {
            return Err(Error::Truncated {
                len,
                need: COMMON_HEADER_LEN,
            });
        }
        let ty = PacketType::try_from(self.raw_type())?;
        let need = ty.min_len();
        if len < need {
            return Err(Error::Truncated { len, need });
        }
        Ok(())
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole underlying buffer.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The packet type, if the type byte is valid.
    pub fn packet_type(&self) -> Result<PacketType> {
        PacketType::try_from(self.raw_type())
    }
}

/// Reads a big-endian integer from a fixed range. Callers guarantee bounds.
#[inline]
pub(crate) fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
#[inline]
pub(crate) fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
#[inline]
pub(crate) fn get_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}
#[inline]
pub(crate) fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}
#[inline]
pub(crate) fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
#[inline]
pub(crate) fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

/// The type-specific part of a parsed packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// DATA header fields; the payload follows the header in the buffer.
    Data(DataHeader),
    /// GRANT fields.
    Grant(GrantHeader),
    /// RESEND fields.
    Resend(ResendHeader),
    /// RPC_UNKNOWN (its status lives in the common header's `urgent`).
    RpcUnknown(RpcUnknownHeader),
    /// BUSY (no fields).
    Busy,
    /// CUTOFFS fields.
    Cutoffs(CutoffsHeader),
    /// FREEZE (no fields).
    Freeze,
    /// NEED_ACK (no fields).
    NeedAck,
    /// ACK fields.
    Ack(AckHeader),
}

impl Body {
    /// The packet type of this body.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Body::Data(_) => PacketType::Data,
            Body::Grant(_) => PacketType::Grant,
            Body::Resend(_) => PacketType::Resend,
            Body::RpcUnknown(_) => PacketType::RpcUnknown,
            Body::Busy => PacketType::Busy,
            Body::Cutoffs(_) => PacketType::Cutoffs,
            Body::Freeze => PacketType::Freeze,
            Body::NeedAck => PacketType::NeedAck,
            Body::Ack(_) => PacketType::Ack,
        }
    }
}

/// A parsed Homa packet header: the meaningful common fields plus the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Sender's Homa port.
    pub sport: u16,
    /// Receiver's Homa port.
    pub dport: u16,
    /// RPC id as known by the sender (even from clients, odd from servers).
    pub sender_id: u64,
    /// The 40-bit incarnation (0: none): the sending endpoint's own in a
    /// packet from the server side of an RPC (odd `sender_id`), the one the
    /// client believes the server has in a packet from the client side. See
    /// [`common`].
    pub incarnation: u64,
    /// Type-specific fields.
    pub body: Body,
}

impl Repr {
    /// Parses a packet header, validating lengths and the type code.
    ///
    /// Never panics, whatever the input. For DATA, the payload is
    /// `&bytes[DataHeader::LEN..]`; see [`Repr::parse_with_payload`].
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        let ty = packet.packet_type()?;
        let body = match ty {
            PacketType::Data => Body::Data(DataHeader::parse(packet)?),
            PacketType::Grant => Body::Grant(GrantHeader::parse(packet)),
            PacketType::Resend => Body::Resend(ResendHeader::parse(packet)),
            PacketType::RpcUnknown => Body::RpcUnknown(RpcUnknownHeader::parse(packet)),
            PacketType::Busy => Body::Busy,
            PacketType::Cutoffs => Body::Cutoffs(CutoffsHeader::parse(packet)),
            PacketType::Freeze => Body::Freeze,
            PacketType::NeedAck => Body::NeedAck,
            PacketType::Ack => Body::Ack(AckHeader::parse(packet)),
        };
        Ok(Repr {
            sport: packet.sport(),
            dport: packet.dport(),
            sender_id: packet.sender_id(),
            incarnation: packet.incarnation(),
            body,
        })
    }

    /// Parses a datagram and returns the header and the payload (empty for
    /// everything but DATA).
    pub fn parse_with_payload(bytes: &[u8]) -> Result<(Repr, &[u8])> {
        // DATA, most packets, is read from its fixed-size header: one
        // length check instead of one per field.
        if let Some((head, payload)) = bytes.split_first_chunk::<{ data::HEADER_LEN }>() {
            if head[common::field::TYPE] == PacketType::Data as u8 {
                let packet = Packet::new_unchecked(&head[..]);
                let body = Body::Data(DataHeader::read(&packet).checked(payload.len())?);
                let repr = Repr {
                    sport: packet.sport(),
                    dport: packet.dport(),
                    sender_id: packet.sender_id(),
                    incarnation: packet.incarnation(),
                    body,
                };
                return Ok((repr, payload));
            }
        }
        let packet = Packet::new_unchecked(bytes);
        let repr = Repr::parse(&packet)?;
        let payload = match repr.body {
            Body::Data(_) => &bytes[data::HEADER_LEN..],
            _ => &[][..],
        };
        Ok((repr, payload))
    }

    /// Number of header bytes [`Repr::emit`] writes.
    pub fn header_len(&self) -> usize {
        match &self.body {
            Body::Resend(r) if r.priority.is_none() => resend::MIN_HEADER_LEN,
            Body::Resend(_) => resend::HEADER_LEN,
            body => body.packet_type().min_len(),
        }
    }

    /// Writes the header into the first [`Repr::header_len`] bytes of
    /// `packet`. For DATA, the `sequence` field is set to the data offset;
    /// for every other type it is 0.
    ///
    /// # Panics
    /// If the buffer is shorter than [`Repr::header_len`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let len = self.header_len();
        packet.buffer.as_mut()[..len].fill(0);
        self.emit_zeroed(packet);
    }

    /// [`Repr::emit`] into a header the caller has already zeroed (a
    /// transmit buffer's fresh header): every field is written, the
    /// reserved bytes are left as they are.
    pub(crate) fn emit_zeroed<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let ty = self.body.packet_type();
        packet.set_sport(self.sport);
        packet.set_dport(self.dport);
        packet.set_raw_type(ty as u8);
        packet.set_doff(if ty == PacketType::Data { 0xE0 } else { 0x50 });
        packet.set_flags(HIJACK_FLAGS);
        packet.set_urgent(HIJACK_URGENT);
        packet.set_sender_id(self.sender_id);
        packet.set_incarnation(self.incarnation);
        match &self.body {
            Body::Data(d) => d.emit(packet),
            Body::Grant(g) => g.emit(packet),
            Body::Resend(r) => r.emit(packet),
            Body::Cutoffs(c) => c.emit(packet),
            Body::Ack(a) => a.emit(packet),
            Body::RpcUnknown(u) => u.emit(packet),
            Body::Busy | Body::Freeze | Body::NeedAck => {}
        }
    }

    /// Convenience: emits the header into a new vector of exactly
    /// [`Repr::header_len`] bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.header_len()];
        self.emit(&mut Packet::new_unchecked(&mut v[..]));
        v
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}->{} id {}",
            self.body.packet_type(),
            self.sport,
            self.dport,
            self.sender_id
        )?;
        match &self.body {
            Body::Data(d) => write!(
                f,
                " len {} off {} incoming {}{}",
                d.message_length,
                d.offset,
                d.incoming,
                if d.retransmit { " retx" } else { "" }
            ),
            Body::Grant(g) => write!(f, " offset {} prio {}", g.offset, g.priority),
            Body::Resend(r) => write!(f, " offset {} length {}", r.offset, r.length as i32),
            Body::Ack(a) => write!(f, " {} acks", a.acks().len()),
            Body::Cutoffs(c) => write!(f, " version {}", c.version),
            Body::RpcUnknown(u) => write!(f, " {:?}", u.status),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    #[test]
    fn packet_type__codes_round_trip() {
        for (i, ty) in PacketType::ALL.iter().enumerate() {
            assert_eq!(ty.index(), i);
            assert_eq!(PacketType::try_from(*ty as u8).unwrap(), *ty);
        }
        assert_eq!(PacketType::try_from(0x0f), Err(Error::UnknownType(0x0f)));
        assert_eq!(PacketType::try_from(0x19), Err(Error::UnknownType(0x19)));
    }

    #[test]
    fn parse_with_payload__same_as_parse_for_any_bytes() {
        // Every type at every length around its header, with patterned
        // and random contents: the DATA fast path agrees with `parse`.
        let mut rng = crate::Rng::new(7);
        for ty in PacketType::ALL
            .iter()
            .map(|t| *t as u8)
            .chain([0x0f, 0x19, 0xff])
        {
            for len in 0..data::HEADER_LEN + 80 {
                for round in 0..40 {
                    let mut buf: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                    if round % 2 == 0 && len > data::field::MESSAGE_LENGTH + 4 {
                        // A plausible message length (valid often enough).
                        let m = (rng.next_u64() % 200) as u32;
                        buf[data::field::MESSAGE_LENGTH..][..4].copy_from_slice(&m.to_be_bytes());
                        let o = (rng.next_u64() % 100) as u32;
                        buf[data::field::SEG_OFFSET.min(len - 4)..][..4]
                            .copy_from_slice(&o.to_be_bytes());
                    }
                    if len > common::field::TYPE {
                        buf[common::field::TYPE] = ty;
                    }
                    let general = Repr::parse(&Packet::new_unchecked(&buf[..])).map(|r| {
                        let payload = match r.body {
                            Body::Data(_) => buf[data::HEADER_LEN..].to_vec(),
                            _ => Vec::new(),
                        };
                        (r, payload)
                    });
                    let fast = Repr::parse_with_payload(&buf).map(|(r, p)| (r, p.to_vec()));
                    assert_eq!(fast, general, "type {ty:#x} length {len}");
                }
            }
        }
    }

    #[test]
    fn check_len__every_type_needs_its_header() {
        for ty in PacketType::ALL {
            let mut buf = vec![0u8; ty.min_len()];
            buf[11] = ty as u8;
            assert!(Packet::new_checked(&buf[..]).is_ok(), "{ty}");
            let short = &buf[..ty.min_len() - 1];
            if short.len() >= COMMON_HEADER_LEN {
                assert_eq!(
                    Packet::new_checked(short).unwrap_err(),
                    Error::Truncated {
                        len: ty.min_len() - 1,
                        need: ty.min_len()
                    }
                );
            }
        }
    }

    #[test]
    fn parse__short_buffer_is_error() {
        for len in 0..COMMON_HEADER_LEN {
            let buf = vec![0x10u8; len];
            assert!(Repr::parse(&Packet::new_unchecked(&buf[..])).is_err());
        }
    }

    #[test]
    fn emit__common_header_markers() {
        let repr = Repr {
            sport: 1,
            dport: 2,
            sender_id: 3,
            incarnation: 0,
            body: Body::Busy,
        };
        let v = repr.to_vec();
        assert_eq!(v.len(), 28);
        assert_eq!(v[12], 0x50);
        assert_eq!(v[13], 0x06);
        assert_eq!(&v[18..20], &[0xB9, 0x7D]);
        assert_eq!(&v[16..18], &[0, 0]);
        assert_eq!(&v[8..11], &[0, 0, 0]);
        assert_eq!(&v[14..16], &[0, 0]);
    }

    #[test]
    fn incarnation__spans_ack_and_window_bytes() {
        let repr = Repr {
            sport: 1,
            dport: 2,
            sender_id: 3,
            incarnation: 0xAB_CDEF_1234,
            body: Body::NeedAck,
        };
        let v = repr.to_vec();
        assert_eq!(&v[8..11], &[0xAB, 0xCD, 0xEF]);
        assert_eq!(v[11], 0x17, "the type byte is untouched");
        assert_eq!(&v[14..16], &[0x12, 0x34]);
        assert_eq!(Repr::parse(&Packet::new_unchecked(&v[..])).unwrap(), repr);
    }

    #[test]
    fn rpc_unknown__status_in_urgent_field() {
        let mut repr = Repr {
            sport: 1,
            dport: 2,
            sender_id: 3,
            incarnation: 7,
            body: Body::RpcUnknown(RpcUnknownHeader {
                status: UnknownStatus::NotServer,
            }),
        };
        let v = repr.to_vec();
        assert_eq!(&v[18..20], &[0xFF, 0xFF]);
        assert_eq!(Repr::parse(&Packet::new_unchecked(&v[..])).unwrap(), repr);
        repr.body = Body::RpcUnknown(RpcUnknownHeader::default());
        assert_eq!(
            &repr.to_vec()[18..20],
            &[0xB9, 0x7D],
            "no status: the marker"
        );
    }
}
