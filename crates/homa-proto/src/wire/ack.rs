//! ACK (0x18): a client tells a server it may free RPCs.
//!
//! Besides the RPC named in the common header, an ACK carries up to five
//! `{client_id, server_port}` entries; `num_acks` says how many leading
//! entries are valid and receivers clamp it to five.

use super::{get_u16, get_u64, put_u16, put_u64, Packet};

/// Byte offsets of the ACK fields.
pub mod field {
    /// Number of valid entries.
    pub const NUM_ACKS: usize = 28;
    /// First of five 10-byte entries.
    pub const ACKS: usize = 30;
    /// Size of one entry.
    pub const ACK_SIZE: usize = 10;
}

/// Length of an ACK packet.
pub const HEADER_LEN: usize = 80;

/// Most acks one ACK packet carries.
pub const MAX_ACKS_PER_PKT: usize = 5;

/// One acknowledgement: the client's id for an RPC and the server's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AckEntry {
    /// The RPC id as the client knows it (even); 0 means "no ack".
    pub client_id: u64,
    /// Port of the server socket holding the RPC.
    pub server_port: u16,
}

/// The fields of an ACK packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AckHeader {
    num_acks: u8,
    acks: [AckEntry; MAX_ACKS_PER_PKT],
}

impl AckHeader {
    /// Builds an ACK body from up to five entries; extra entries are ignored.
    pub fn new(entries: &[AckEntry]) -> AckHeader {
        let mut h = AckHeader::default();
        for e in entries.iter().take(MAX_ACKS_PER_PKT) {
            h.acks[h.num_acks as usize] = *e;
            h.num_acks += 1;
        }
        h
    }

    /// The valid entries.
    pub fn acks(&self) -> &[AckEntry] {
        &self.acks[..self.num_acks as usize]
    }

    pub(super) fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> AckHeader {
        let b = p.buffer.as_ref();
        let n = (get_u16(b, field::NUM_ACKS) as usize).min(MAX_ACKS_PER_PKT);
        let mut h = AckHeader::default();
        for i in 0..n {
            let at = field::ACKS + i * field::ACK_SIZE;
            h.acks[i] = AckEntry {
                client_id: get_u64(b, at),
                server_port: get_u16(b, at + 8),
            };
        }
        h.num_acks = n as u8;
        h
    }

    pub(super) fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        let b = p.buffer.as_mut();
        put_u16(b, field::NUM_ACKS, self.num_acks as u16);
        for (i, a) in self.acks().iter().enumerate() {
            let at = field::ACKS + i * field::ACK_SIZE;
            put_u64(b, at, a.client_id);
            put_u16(b, at + 8, a.server_port);
        }
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::super::{Body, Repr};
    use super::*;

    #[test]
    fn parse__num_acks_clamped_to_five() {
        let entries: Vec<AckEntry> = (1..=5)
            .map(|i| AckEntry {
                client_id: i * 2,
                server_port: i as u16,
            })
            .collect();
        let repr = Repr {
            sport: 1,
            dport: 2,
            sender_id: 8,
            incarnation: 0,
            body: Body::Ack(AckHeader::new(&entries)),
        };
        let mut v = repr.to_vec();
        put_u16(&mut v, field::NUM_ACKS, 9);
        let parsed = Repr::parse(&Packet::new_unchecked(&v[..])).unwrap();
        match parsed.body {
            Body::Ack(a) => assert_eq!(a.acks(), &entries[..]),
            _ => unreachable!(),
        }
    }

    #[test]
    fn new__ignores_entries_beyond_five() {
        let entries = [AckEntry::default(); 7];
        assert_eq!(AckHeader::new(&entries).acks().len(), 5);
    }
}
