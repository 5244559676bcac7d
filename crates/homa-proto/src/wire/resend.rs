//! RESEND (0x12): the receiver asks for a range of bytes again.
//!
//! The full kernel build sends 37 bytes (with a priority byte); the stripped
//! upstream build sends 36. Both parse; a 36-byte RESEND has no priority
//! ([`ResendHeader::priority`] is `None`) and emitting such a header writes
//! 36 bytes.

use super::{get_u32, put_u32, Packet};

/// Byte offsets of the RESEND fields.
pub mod field {
    /// First byte to retransmit.
    pub const OFFSET: usize = 28;
    /// Number of bytes (0xFFFFFFFF: everything sent so far).
    pub const LENGTH: usize = 32;
    /// Priority for the retransmitted DATA (full build only).
    pub const PRIORITY: usize = 36;
}

/// Length of a full-build RESEND.
pub const HEADER_LEN: usize = 37;
/// Length of an upstream-build RESEND (no priority byte).
pub const MIN_HEADER_LEN: usize = 36;

/// `length` value meaning "nothing received yet: resend everything sent".
pub const RESEND_ALL: u32 = 0xFFFF_FFFF;

/// The fields of a RESEND.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResendHeader {
    /// First byte to retransmit.
    pub offset: u32,
    /// Number of bytes; [`RESEND_ALL`] asks for everything sent so far.
    pub length: u32,
    /// Priority for the retransmitted DATA; `None` for a 36-byte RESEND.
    pub priority: Option<u8>,
}

impl ResendHeader {
    /// `length` value meaning "resend everything sent so far".
    pub const ALL: u32 = RESEND_ALL;

    pub(super) fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> ResendHeader {
        let b = p.buffer.as_ref();
        ResendHeader {
            offset: get_u32(b, field::OFFSET),
            length: get_u32(b, field::LENGTH),
            priority: b.get(field::PRIORITY).copied(),
        }
    }

    pub(super) fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        let b = p.buffer.as_mut();
        put_u32(b, field::OFFSET, self.offset);
        put_u32(b, field::LENGTH, self.length);
        if let Some(prio) = self.priority {
            b[field::PRIORITY] = prio;
        }
    }
}
