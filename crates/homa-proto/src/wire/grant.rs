//! GRANT (0x11): the receiver lets the sender transmit more of a message.

use super::{get_u32, put_u32, Packet};

/// Byte offsets of the GRANT fields.
pub mod field {
    /// The sender may transmit every byte below this offset.
    pub const OFFSET: usize = 28;
    /// Priority level for scheduled DATA from now on.
    pub const PRIORITY: usize = 32;
}

/// Length of a GRANT packet.
pub const HEADER_LEN: usize = 33;

/// The fields of a GRANT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GrantHeader {
    /// The sender may now transmit all bytes below this offset.
    pub offset: u32,
    /// Internal priority level for scheduled DATA of this message.
    pub priority: u8,
}

impl GrantHeader {
    pub(super) fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> GrantHeader {
        GrantHeader {
            offset: p.grant_offset(),
            priority: p.grant_priority(),
        }
    }

    pub(super) fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        let b = p.buffer.as_mut();
        put_u32(b, field::OFFSET, self.offset);
        b[field::PRIORITY] = self.priority;
    }
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// GRANT: the granted offset.
    pub fn grant_offset(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::OFFSET)
    }
    /// GRANT: the priority level.
    pub fn grant_priority(&self) -> u8 {
        self.buffer.as_ref()[field::PRIORITY]
    }
}
