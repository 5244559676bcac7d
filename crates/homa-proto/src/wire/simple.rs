//! The four header-only packet types: RPC_UNKNOWN (0x13), BUSY (0x14),
//! FREEZE (0x16) and NEED_ACK (0x17).
//!
//! Each is exactly the 28-byte common header; the RPC it concerns is named by
//! `sender_id`. Their meanings:
//!
//! * RPC_UNKNOWN: "I have no state for this RPC". homa-rs servers say why in
//!   the common header's `urgent` field (where other packets carry the
//!   0xB97D marker), see [`UnknownStatus`]; with the incarnation in the same
//!   header this is what lets a client tell a lost request from one a
//!   restarted server may have run.
//! * BUSY: "alive, intentionally not sending" (resets the peer's silence).
//! * FREEZE: debugging aid (freeze the time trace), sent with dport 0 and
//!   sender_id 0; receivers count and ignore it.
//! * NEED_ACK: a server asks the client to acknowledge the RPC's response.
//!
//! The length rule lives in [`super::PacketType::min_len`].

use core::time::Duration;

use super::{get_u16, put_u16, Packet, HIJACK_URGENT};

/// `urgent` value of an RPC_UNKNOWN from a socket that does not accept
/// requests.
pub const STATUS_NOT_SERVER: u16 = 0xFFFF;
/// `urgent` value of an RPC_UNKNOWN for a request the server ran and then
/// dropped (its response will never come).
pub const STATUS_ABANDONED: u16 = 0xFFFE;
/// `urgent` value of an RPC_UNKNOWN for a request the server no longer
/// knows about (the client said it was finished, or the server collected
/// the client's record): it may or may not have run.
pub const STATUS_FORGOTTEN: u16 = 0xFFFD;
/// Codes from here to [`STATUS_FORGOTTEN`] (excluded) are reserved; they
/// parse as [`UnknownStatus::Reserved`] and mean nothing yet.
pub const STATUS_RESERVED: u16 = 0xFFF0;

/// Why a peer has no state for an RPC (the `urgent` field of RPC_UNKNOWN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownStatus {
    /// No reason given (the 0xB97D marker: a client that forgot the RPC, or
    /// a sender that does not know the field).
    #[default]
    None,
    /// A server that has never run this request (in the incarnation named
    /// in the header), up for at least this long. Encoded in 16 bits as
    /// `m << e` microseconds (11-bit mantissa, 5-bit exponent, rounded
    /// down), so the value read is never more than the true uptime.
    Uptime(Duration),
    /// The destination socket does not accept requests.
    NotServer,
    /// The server ran the request (its application received it) and has
    /// since dropped the RPC: no response will come.
    Abandoned,
    /// The server no longer knows whether it ran the request.
    Forgotten,
    /// A reserved code; treated like [`UnknownStatus::None`].
    Reserved(u16),
}

impl UnknownStatus {
    /// The `urgent` value for this status.
    pub fn encode(self) -> u16 {
        match self {
            UnknownStatus::None => HIJACK_URGENT,
            UnknownStatus::Uptime(d) => encode_uptime(d),
            UnknownStatus::NotServer => STATUS_NOT_SERVER,
            UnknownStatus::Abandoned => STATUS_ABANDONED,
            UnknownStatus::Forgotten => STATUS_FORGOTTEN,
            UnknownStatus::Reserved(c) => c,
        }
    }

    /// The status an `urgent` value stands for.
    pub fn decode(code: u16) -> UnknownStatus {
        match code {
            HIJACK_URGENT => UnknownStatus::None,
            STATUS_NOT_SERVER => UnknownStatus::NotServer,
            STATUS_ABANDONED => UnknownStatus::Abandoned,
            STATUS_FORGOTTEN => UnknownStatus::Forgotten,
            STATUS_RESERVED.. => UnknownStatus::Reserved(code),
            c => UnknownStatus::Uptime(decode_uptime(c)),
        }
    }
}

/// Largest uptime code: codes above are reserved.
const MAX_UPTIME_CODE: u16 = STATUS_RESERVED - 1;

fn decode_uptime(code: u16) -> Duration {
    let (e, m) = (code >> 11, code & 0x7FF);
    Duration::from_micros((m as u64) << e)
}

/// Rounds `d` down to the nearest representable uptime (never 0xB97D,
/// which is the marker, nor a reserved code).
fn encode_uptime(d: Duration) -> u16 {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    let e = (64 - us.leading_zeros()).saturating_sub(11);
    let code = if e > 31 {
        MAX_UPTIME_CODE
    } else {
        (((e as u64) << 11) | (us >> e)).min(MAX_UPTIME_CODE as u64) as u16
    };
    if code == HIJACK_URGENT {
        code - 1
    } else {
        code
    }
}

/// The fields of an RPC_UNKNOWN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RpcUnknownHeader {
    /// Why the sender has no state for the RPC.
    pub status: UnknownStatus,
}

impl RpcUnknownHeader {
    pub(super) fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> RpcUnknownHeader {
        RpcUnknownHeader {
            status: UnknownStatus::decode(get_u16(p.buffer.as_ref(), super::common::field::URGENT)),
        }
    }

    pub(super) fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        put_u16(
            p.buffer.as_mut(),
            super::common::field::URGENT,
            self.status.encode(),
        );
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    #[test]
    fn uptime__rounds_down_and_round_trips() {
        for us in [
            0u64,
            1,
            2047,
            2048,
            2049,
            4097,
            1_000_000,
            3_600_000_000,
            u64::MAX / 2,
        ] {
            let d = Duration::from_micros(us);
            let code = encode_uptime(d);
            let UnknownStatus::Uptime(back) = UnknownStatus::decode(code) else {
                panic!("{us}: code {code:#x} is not an uptime");
            };
            assert!(back <= d, "{us}: read {back:?}");
            if us < 1 << 40 {
                // 11 significant bits: within 1/1024 below.
                assert!(back.as_micros() as u64 >= us - us / 1024, "{us}: {back:?}");
            }
            assert_eq!(encode_uptime(back), code, "{us}: stable");
        }
        assert_eq!(encode_uptime(Duration::MAX), MAX_UPTIME_CODE);
    }

    #[test]
    fn decode__every_code_is_harmless() {
        for code in 0..=u16::MAX {
            let s = UnknownStatus::decode(code);
            // Uptimes have several codes for small values; the meaning
            // survives re-encoding.
            assert_eq!(UnknownStatus::decode(s.encode()), s, "{code:#x} -> {s:?}");
        }
        assert_eq!(UnknownStatus::decode(HIJACK_URGENT), UnknownStatus::None);
    }
}
