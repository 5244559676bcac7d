//! The four header-only packet types: RPC_UNKNOWN (0x13), BUSY (0x14),
//! FREEZE (0x16) and NEED_ACK (0x17).
//!
//! Each is exactly the 28-byte common header; the RPC it concerns is named by
//! `sender_id`. Their meanings:
//!
//! * RPC_UNKNOWN: "I have no state for this RPC".
//! * BUSY: "alive, intentionally not sending" (resets the peer's silence).
//! * FREEZE: debugging aid (freeze the time trace), sent with dport 0 and
//!   sender_id 0; receivers count and ignore it.
//! * NEED_ACK: a server asks the client to acknowledge the RPC's response.
//!
//! They carry no fields, so this module holds only their documentation; the
//! length rule lives in [`super::PacketType::min_len`].
