//! The 28-byte common header that starts every Homa packet.
//!
//! It is laid out to alias a 20-byte TCP header (so NIC TSO can segment
//! Homa packets) followed by the 8-byte RPC id.
//!
//! homa-rs uses two fields the kernel module leaves unused (always 0 there):
//! the three `ack` bytes at offset 8 and the `window` at 14 together hold a
//! 40-bit *incarnation* (high 24 bits at 8, low 16 at 14): in a packet sent
//! by the server side of an RPC (odd `sender_id`), the sending endpoint's
//! own incarnation; in a packet sent by the client side (even `sender_id`),
//! the incarnation of the server that the client believes it is talking to
//! (0: not known yet). The at-most-once rules built on it are described in
//! the crate's `amo` module and in `docs/at-most-once.md`. A receiver that
//! ignores the field (the kernel module) loses nothing; 0 means "none".

use super::{get_u16, get_u32, get_u64, put_u16, put_u32, put_u64, Packet};

/// Byte offsets of the common header fields.
pub mod field {
    /// Sender's port (TCP source port).
    pub const SPORT: usize = 0;
    /// Receiver's port (TCP destination port).
    pub const DPORT: usize = 2;
    /// DATA: offset of the first payload byte (TCP sequence number).
    pub const SEQUENCE: usize = 4;
    /// Three bytes the kernel leaves unused (high bytes of the TCP ack
    /// number): the high 24 bits of the incarnation.
    pub const UNUSED: usize = 8;
    /// High 24 bits of the 40-bit incarnation (the kernel's unused `ack`).
    pub const INCARNATION_HIGH: usize = 8;
    /// Packet type (low byte of the TCP ack number).
    pub const TYPE: usize = 11;
    /// Header length in 32-bit words, high nibble (TCP data offset).
    pub const DOFF: usize = 12;
    /// TCP flags (0x06 marks hijacked Homa packets).
    pub const FLAGS: usize = 13;
    /// TCP window (unused by the kernel): the low 16 bits of the
    /// incarnation.
    pub const WINDOW: usize = 14;
    /// TCP-style checksum (not verified by receivers).
    pub const CHECKSUM: usize = 16;
    /// TCP urgent pointer (0xB97D marks hijacked Homa packets; RPC_UNKNOWN
    /// carries its status here instead, see the `simple` module).
    pub const URGENT: usize = 18;
    /// RPC id as known by the sender.
    pub const SENDER_ID: usize = 20;
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Sender's Homa port.
    pub fn sport(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SPORT)
    }
    /// Receiver's Homa port.
    pub fn dport(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DPORT)
    }
    /// The `sequence` field (DATA offset, or 0).
    pub fn sequence(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SEQUENCE)
    }
    /// The raw type byte.
    pub fn raw_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    /// The `doff` byte.
    pub fn doff(&self) -> u8 {
        self.buffer.as_ref()[field::DOFF]
    }
    /// The `flags` byte.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }
    /// The `checksum` field.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }
    /// The `urgent` field.
    pub fn urgent(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::URGENT)
    }
    /// RPC id as known by the sender.
    pub fn sender_id(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::SENDER_ID)
    }
    /// The 40-bit incarnation (see the module docs).
    pub fn incarnation(&self) -> u64 {
        let b = self.buffer.as_ref();
        let at = field::INCARNATION_HIGH;
        let high = u32::from_be_bytes([0, b[at], b[at + 1], b[at + 2]]) as u64;
        (high << 16) | get_u16(b, field::WINDOW) as u64
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the sender's port.
    pub fn set_sport(&mut self, v: u16) {
        put_u16(self.buffer.as_mut(), field::SPORT, v)
    }
    /// Sets the receiver's port.
    pub fn set_dport(&mut self, v: u16) {
        put_u16(self.buffer.as_mut(), field::DPORT, v)
    }
    /// Sets the `sequence` field.
    pub fn set_sequence(&mut self, v: u32) {
        put_u32(self.buffer.as_mut(), field::SEQUENCE, v)
    }
    /// Sets the raw type byte.
    pub fn set_raw_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v
    }
    /// Sets the `doff` byte.
    pub fn set_doff(&mut self, v: u8) {
        self.buffer.as_mut()[field::DOFF] = v
    }
    /// Sets the `flags` byte.
    pub fn set_flags(&mut self, v: u8) {
        self.buffer.as_mut()[field::FLAGS] = v
    }
    /// Sets the `checksum` field.
    pub fn set_checksum(&mut self, v: u16) {
        put_u16(self.buffer.as_mut(), field::CHECKSUM, v)
    }
    /// Sets the `urgent` field.
    pub fn set_urgent(&mut self, v: u16) {
        put_u16(self.buffer.as_mut(), field::URGENT, v)
    }
    /// Sets the RPC id.
    pub fn set_sender_id(&mut self, v: u64) {
        put_u64(self.buffer.as_mut(), field::SENDER_ID, v)
    }
    /// Sets the 40-bit incarnation (bits above 40 are ignored).
    pub fn set_incarnation(&mut self, v: u64) {
        let b = self.buffer.as_mut();
        let high = ((v >> 16) as u32 & 0xFF_FFFF).to_be_bytes();
        b[field::INCARNATION_HIGH..field::INCARNATION_HIGH + 3].copy_from_slice(&high[1..]);
        put_u16(b, field::WINDOW, v as u16);
    }
}

/// Largest incarnation the header holds (40 bits).
pub const MAX_INCARNATION: u64 = (1 << 40) - 1;
