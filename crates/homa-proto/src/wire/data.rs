//! DATA (0x10): a 56-byte header followed by message bytes.
//!
//! Offset rule: the data offset is `seg.offset` unless that field holds
//! 0xFFFFFFFF, in which case it is `sequence` (the kernel's single-segment and
//! hijacked-TSO packets). We always write both fields as the real offset,
//! which both kernel variants accept.

use super::{ack::AckEntry, get_u16, get_u32, get_u64, put_u16, put_u32, put_u64};
use super::{Error, Packet, PacketType, Result};

/// Byte offsets of the DATA-specific fields.
pub mod field {
    /// Total bytes in the message.
    pub const MESSAGE_LENGTH: usize = 28;
    /// Bytes [0, incoming) will be sent without further grants.
    pub const INCOMING: usize = 32;
    /// Piggybacked ack: client id of an RPC the recipient may free.
    pub const ACK_CLIENT_ID: usize = 36;
    /// Piggybacked ack: server port of that RPC.
    pub const ACK_SERVER_PORT: usize = 44;
    /// Version of the latest CUTOFFS received from the destination.
    pub const CUTOFF_VERSION: usize = 46;
    /// 1 when sent in response to a RESEND.
    pub const RETRANSMIT: usize = 48;
    /// Three bytes of padding in the kernel module; homa-rs clients state
    /// their oldest unfinished RPC here (see `DataHeader::oldest_live`).
    pub const PAD: usize = 49;
    /// The 24-bit `oldest_live` field (the kernel's padding).
    pub const OLDEST_LIVE: usize = 49;
    /// Offset of this packet's first payload byte (0xFFFFFFFF: use `sequence`).
    pub const SEG_OFFSET: usize = 52;
    /// First payload byte.
    pub const PAYLOAD: usize = 56;
}

/// Length of a DATA header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// `seg.offset` value meaning "the offset is in `sequence`".
pub const OFFSET_IN_SEQUENCE: u32 = 0xFFFF_FFFF;

/// The fields of a DATA header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataHeader {
    /// Total bytes in the message.
    pub message_length: u32,
    /// Sender promises bytes [0, incoming) without further grants.
    pub incoming: u32,
    /// Piggybacked ack (`client_id == 0` means none).
    pub ack: AckEntry,
    /// Version of the CUTOFFS most recently received from the destination.
    pub cutoff_version: u16,
    /// Sent in response to a RESEND.
    pub retransmit: bool,
    /// Offset in the message of the first payload byte.
    pub offset: u32,
    /// Requests only (homa-rs; the kernel's padding, 24 bits): the client's
    /// statement that every RPC id it issued to this server below
    /// `sender_id - 2 * (oldest_live - 1)` is finished or abandoned, so the
    /// server may forget them. 0 states nothing (a server must not infer
    /// anything from it). See [`DataHeader::oldest_live_id`].
    pub oldest_live: u32,
}

/// Largest `oldest_live` value (24 bits).
pub const MAX_OLDEST_LIVE: u32 = (1 << 24) - 1;

impl DataHeader {
    /// Length of the DATA header; the payload starts here.
    pub const LEN: usize = HEADER_LEN;

    /// The `oldest_live` value stating that `oldest` is the client's oldest
    /// unfinished id to this server, for a packet of RPC `sender_id`; 0 if
    /// the distance does not fit (stating nothing is always safe, stating a
    /// later id than the truth never is).
    pub fn encode_oldest_live(sender_id: u64, oldest: u64) -> u32 {
        let back = sender_id.wrapping_sub(oldest) / 2;
        if back < MAX_OLDEST_LIVE as u64 {
            back as u32 + 1
        } else {
            0
        }
    }

    /// The client's oldest unfinished id stated by this header, for a packet
    /// of RPC `sender_id`; `None` if nothing is stated.
    pub fn oldest_live_id(&self, sender_id: u64) -> Option<u64> {
        (self.oldest_live != 0).then(|| sender_id.wrapping_sub(2 * (self.oldest_live as u64 - 1)))
    }

    pub(super) fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<DataHeader> {
        let payload = p.as_bytes().len() - HEADER_LEN;
        DataHeader::read(p).checked(payload)
    }

    /// The header's fields, unchecked (the buffer holds at least
    /// [`HEADER_LEN`] bytes).
    #[inline]
    pub(super) fn read<T: AsRef<[u8]>>(p: &Packet<T>) -> DataHeader {
        DataHeader {
            message_length: p.data_message_length(),
            incoming: p.data_incoming(),
            ack: AckEntry {
                client_id: p.data_ack_client_id(),
                server_port: p.data_ack_server_port(),
            },
            cutoff_version: p.data_cutoff_version(),
            retransmit: p.data_retransmit() != 0,
            offset: p.data_offset(),
            oldest_live: p.data_oldest_live(),
        }
    }

    /// The header of a packet carrying `payload` bytes, if that packet lies
    /// inside its message: offset + payload <= length.
    #[inline]
    pub(super) fn checked(self, payload: usize) -> Result<DataHeader> {
        // (u64 arithmetic: attacker-controlled values cannot overflow.)
        if self.offset as u64 + payload as u64 > self.message_length as u64 {
            return Err(Error::Malformed(PacketType::Data));
        }
        Ok(self)
    }

    pub(super) fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_data_offset(self.offset);
        let b = p.buffer.as_mut();
        put_u32(b, field::MESSAGE_LENGTH, self.message_length);
        put_u32(b, field::INCOMING, self.incoming);
        put_u64(b, field::ACK_CLIENT_ID, self.ack.client_id);
        put_u16(b, field::ACK_SERVER_PORT, self.ack.server_port);
        put_u16(b, field::CUTOFF_VERSION, self.cutoff_version);
        b[field::RETRANSMIT] = self.retransmit as u8;
        let live = (self.oldest_live & MAX_OLDEST_LIVE).to_be_bytes();
        b[field::OLDEST_LIVE..field::OLDEST_LIVE + 3].copy_from_slice(&live[1..]);
    }
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// DATA: total message length.
    pub fn data_message_length(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::MESSAGE_LENGTH)
    }
    /// DATA: the `incoming` field.
    pub fn data_incoming(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::INCOMING)
    }
    /// DATA: piggybacked ack client id.
    pub fn data_ack_client_id(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::ACK_CLIENT_ID)
    }
    /// DATA: piggybacked ack server port.
    pub fn data_ack_server_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ACK_SERVER_PORT)
    }
    /// DATA: cutoff version.
    pub fn data_cutoff_version(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CUTOFF_VERSION)
    }
    /// DATA: the raw retransmit byte.
    pub fn data_retransmit(&self) -> u8 {
        self.buffer.as_ref()[field::RETRANSMIT]
    }
    /// DATA: the 24-bit `oldest_live` field.
    pub fn data_oldest_live(&self) -> u32 {
        let b = self.buffer.as_ref();
        let at = field::OLDEST_LIVE;
        u32::from_be_bytes([0, b[at], b[at + 1], b[at + 2]])
    }
    /// DATA: the raw `seg.offset` field.
    pub fn data_seg_offset(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SEG_OFFSET)
    }
    /// DATA: the effective offset (`seg.offset`, or `sequence` if that is
    /// 0xFFFFFFFF).
    pub fn data_offset(&self) -> u32 {
        match self.data_seg_offset() {
            OFFSET_IN_SEQUENCE => self.sequence(),
            off => off,
        }
    }
    /// DATA: the payload bytes.
    pub fn data_payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// DATA: sets the packet's offset, in both fields that carry it
    /// (`sequence` and `seg.offset`, the offset rule above). The packets of
    /// one transmit differ in nothing else, so the sender writes the first
    /// header whole and each next one as a copy with this set.
    #[inline]
    pub fn set_data_offset(&mut self, offset: u32) {
        self.set_sequence(offset);
        put_u32(self.buffer.as_mut(), field::SEG_OFFSET, offset);
    }
    /// DATA: mutable payload bytes.
    pub fn data_payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::super::{Body, Repr};
    use super::*;

    fn data(offset: u32, len: u32) -> Repr {
        Repr {
            sport: 0x8001,
            dport: 99,
            sender_id: 4,
            incarnation: 0,
            body: Body::Data(DataHeader {
                message_length: len,
                incoming: 1000,
                offset,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn data_offset__seg_offset_wins_unless_all_ones() {
        let mut v = data(10, 100).to_vec();
        v.extend_from_slice(&[1, 2, 3]);
        let mut p = Packet::new_unchecked(&mut v[..]);
        assert_eq!(p.data_offset(), 10);
        p.set_sequence(20);
        assert_eq!(p.data_offset(), 10);
        put_u32(p.buffer, field::SEG_OFFSET, OFFSET_IN_SEQUENCE);
        assert_eq!(p.data_offset(), 20);
    }

    #[test]
    fn emit__writes_offset_in_both_fields() {
        let v = data(0x01020304, 0x10000000).to_vec();
        assert_eq!(&v[4..8], &[1, 2, 3, 4]);
        assert_eq!(&v[52..56], &[1, 2, 3, 4]);
        assert_eq!(v[12], 0xE0);
    }

    #[test]
    fn parse__payload_past_message_end_is_malformed() {
        let mut v = data(98, 100).to_vec();
        v.extend_from_slice(&[0, 0]);
        assert!(Repr::parse(&Packet::new_unchecked(&v[..])).is_ok());
        v.push(0);
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&v[..])),
            Err(Error::Malformed(PacketType::Data))
        );
    }

    #[test]
    fn parse__offset_near_u32_max_does_not_overflow() {
        let mut v = data(u32::MAX - 1, u32::MAX).to_vec();
        v.extend_from_slice(&[0, 0]);
        assert!(Repr::parse(&Packet::new_unchecked(&v[..])).is_err());
    }
}
