//! Property tests of the wire format: parse(emit(x)) == x for every packet
//! type, and arbitrary bytes never make the parser panic.
#![allow(non_snake_case)]

use homa_proto::wire::{
    AckEntry, AckHeader, Body, CutoffsHeader, DataHeader, GrantHeader, Packet, Repr, ResendHeader,
    RpcUnknownHeader, UnknownStatus,
};
use proptest::prelude::*;

fn ack_entry() -> impl Strategy<Value = AckEntry> {
    (any::<u64>(), any::<u16>()).prop_map(|(client_id, server_port)| AckEntry {
        client_id,
        server_port,
    })
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            ack_entry(),
            any::<u16>(),
            any::<bool>()
        )
            .prop_map(|(a, b, incoming, ack, cutoff_version, retransmit)| {
                // The offset must lie inside the message.
                let (offset, message_length) = (a.min(b), a.max(b));
                Body::Data(DataHeader {
                    message_length,
                    incoming,
                    ack,
                    cutoff_version,
                    retransmit,
                    offset,
                    oldest_live: cutoff_version as u32 * 251,
                })
            }),
        (any::<u32>(), any::<u8>())
            .prop_map(|(offset, priority)| Body::Grant(GrantHeader { offset, priority })),
        (
            any::<u32>(),
            any::<u32>(),
            proptest::option::of(any::<u8>())
        )
            .prop_map(|(offset, length, priority)| Body::Resend(ResendHeader {
                offset,
                length,
                priority
            })),
        any::<u16>().prop_map(|c| Body::RpcUnknown(RpcUnknownHeader {
            status: UnknownStatus::decode(c)
        })),
        Just(Body::Busy),
        Just(Body::Freeze),
        Just(Body::NeedAck),
        (any::<[u32; 8]>(), any::<u16>())
            .prop_map(|(cutoffs, version)| Body::Cutoffs(CutoffsHeader { cutoffs, version })),
        proptest::collection::vec(ack_entry(), 0..=5)
            .prop_map(|acks| Body::Ack(AckHeader::new(&acks))),
    ]
}

fn repr() -> impl Strategy<Value = Repr> {
    (
        any::<u16>(),
        any::<u16>(),
        any::<u64>(),
        0..=homa_proto::wire::common::MAX_INCARNATION,
        body(),
    )
        .prop_map(|(sport, dport, sender_id, incarnation, body)| Repr {
            sport,
            dport,
            sender_id,
            incarnation,
            body,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_of_emit_is_identity(r in repr()) {
        let bytes = r.to_vec();
        prop_assert_eq!(bytes.len(), r.header_len());
        let parsed = Repr::parse(&Packet::new_unchecked(&bytes[..])).unwrap();
        prop_assert_eq!(parsed, r);
    }

    #[test]
    fn data_payload_round_trips(r in repr(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Body::Data(mut d) = r.body {
            d.message_length = d.offset.saturating_add(payload.len() as u32).max(d.message_length);
            if (d.offset as u64 + payload.len() as u64) > u32::MAX as u64 {
                return Ok(());
            }
            let r = Repr { body: Body::Data(d), ..r };
            let mut bytes = r.to_vec();
            bytes.extend_from_slice(&payload);
            let (parsed, got) = Repr::parse_with_payload(&bytes).unwrap();
            prop_assert_eq!(parsed, r);
            prop_assert_eq!(got, &payload[..]);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Repr::parse_with_payload(&bytes);
        if let Ok(p) = Packet::new_checked(&bytes[..]) {
            let _ = Repr::parse(&p);
        }
    }

    #[test]
    fn corrupted_valid_packets_never_panic(r in repr(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let mut bytes = r.to_vec();
        for (at, v) in flips {
            let n = bytes.len();
            bytes[at % n] = v;
        }
        let n = bytes.len();
        bytes.truncate(cut % (n + 1));
        let _ = Repr::parse_with_payload(&bytes);
    }
}
