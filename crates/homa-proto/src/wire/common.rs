//! The 28-byte common header that starts every Homa packet.
//!
//! It is laid out to alias a 20-byte TCP header (so NIC TSO can segment
//! Homa packets) followed by the 8-byte RPC id.

use super::{get_u16, get_u32, get_u64, put_u16, put_u32, put_u64, Packet};

/// Byte offsets of the common header fields.
pub mod field {
    /// Sender's port (TCP source port).
    pub const SPORT: usize = 0;
    /// Receiver's port (TCP destination port).
    pub const DPORT: usize = 2;
    /// DATA: offset of the first payload byte (TCP sequence number).
    pub const SEQUENCE: usize = 4;
    /// Three unused bytes (high bytes of the TCP ack number).
    pub const UNUSED: usize = 8;
    /// Packet type (low byte of the TCP ack number).
    pub const TYPE: usize = 11;
    /// Header length in 32-bit words, high nibble (TCP data offset).
    pub const DOFF: usize = 12;
    /// TCP flags (0x06 marks hijacked Homa packets).
    pub const FLAGS: usize = 13;
    /// TCP window (unused).
    pub const WINDOW: usize = 14;
    /// TCP-style checksum (not verified by receivers).
    pub const CHECKSUM: usize = 16;
    /// TCP urgent pointer (0xB97D marks hijacked Homa packets).
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
}
