//! CUTOFFS (0x15): a receiver tells a sender which priority levels to use for
//! unscheduled bytes sent to it.

use super::{get_u16, get_u32, put_u16, put_u32, Packet, MAX_PRIORITIES};

/// Byte offsets of the CUTOFFS fields.
pub mod field {
    /// Eight big-endian u32 cutoffs.
    pub const UNSCHED_CUTOFFS: usize = 28;
    /// Version of these cutoffs.
    pub const CUTOFF_VERSION: usize = 60;
}

/// Length of a CUTOFFS packet.
pub const HEADER_LEN: usize = 62;

/// The fields of a CUTOFFS packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CutoffsHeader {
    /// Entry i is the largest message length that uses level i for
    /// unscheduled bytes sent to the CUTOFFS sender.
    pub cutoffs: [u32; MAX_PRIORITIES],
    /// Version, echoed in later DATA packets.
    pub version: u16,
}

impl CutoffsHeader {
    pub(super) fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> CutoffsHeader {
        let b = p.buffer.as_ref();
        let mut cutoffs = [0u32; MAX_PRIORITIES];
        for (i, c) in cutoffs.iter_mut().enumerate() {
            *c = get_u32(b, field::UNSCHED_CUTOFFS + 4 * i);
        }
        CutoffsHeader {
            cutoffs,
            version: get_u16(b, field::CUTOFF_VERSION),
        }
    }

    pub(super) fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        let b = p.buffer.as_mut();
        for (i, c) in self.cutoffs.iter().enumerate() {
            put_u32(b, field::UNSCHED_CUTOFFS + 4 * i, *c);
        }
        put_u16(b, field::CUTOFF_VERSION, self.version);
    }
}
