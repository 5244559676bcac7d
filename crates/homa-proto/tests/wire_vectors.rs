//! Byte-exact wire vectors: `emit` must reproduce the bytes built from the
//! reference offset tables (by `vectors/gen_wire.py`), and `parse` must
//! reproduce the fields, for every packet type.
#![allow(non_snake_case)]

use homa_proto::wire::{
    AckEntry, AckHeader, Body, CutoffsHeader, DataHeader, GrantHeader, Packet, PacketType, Repr,
    ResendHeader, RpcUnknownHeader, UnknownStatus,
};
use serde_json::Value;

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("field {k} in {v}"))
}

/// A field the generator writes only where it is not its default.
fn u_or(v: &Value, k: &str, default: u64) -> u64 {
    v.get(k).map_or(default, |_| u(v, k))
}

/// Builds the expected header and payload from a vector's fields.
fn repr_of(ty: &str, f: &Value) -> (Repr, Vec<u8>) {
    let body = match ty {
        "DATA" => Body::Data(DataHeader {
            message_length: u(f, "message_length") as u32,
            incoming: u(f, "incoming") as u32,
            ack: AckEntry {
                client_id: u(f, "ack_client_id"),
                server_port: u(f, "ack_server_port") as u16,
            },
            cutoff_version: u(f, "cutoff_version") as u16,
            retransmit: f["retransmit"].as_bool().unwrap(),
            offset: u(f, "offset") as u32,
            oldest_live: u_or(f, "oldest_live", 0) as u32,
        }),
        "GRANT" => Body::Grant(GrantHeader {
            offset: u(f, "offset") as u32,
            priority: u(f, "priority") as u8,
        }),
        "RESEND" => Body::Resend(ResendHeader {
            offset: u(f, "offset") as u32,
            length: u(f, "length") as u32,
            priority: f["priority"].as_u64().map(|p| p as u8),
        }),
        "RPC_UNKNOWN" => Body::RpcUnknown(RpcUnknownHeader {
            status: UnknownStatus::decode(u_or(f, "status", 0xB97D) as u16),
        }),
        "BUSY" => Body::Busy,
        "FREEZE" => Body::Freeze,
        "NEED_ACK" => Body::NeedAck,
        "CUTOFFS" => {
            let mut cutoffs = [0u32; 8];
            for (i, c) in f["cutoffs"].as_array().unwrap().iter().enumerate() {
                cutoffs[i] = c.as_u64().unwrap() as u32;
            }
            Body::Cutoffs(CutoffsHeader {
                cutoffs,
                version: u(f, "version") as u16,
            })
        }
        "ACK" => {
            let entries: Vec<AckEntry> = f["acks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| AckEntry {
                    client_id: u(a, "client_id"),
                    server_port: u(a, "server_port") as u16,
                })
                .collect();
            Body::Ack(AckHeader::new(&entries))
        }
        other => panic!("unknown type {other}"),
    };
    let payload = f
        .get("payload")
        .map(|p| hex::decode(p.as_str().unwrap()).unwrap())
        .unwrap_or_default();
    let repr = Repr {
        sport: u(f, "sport") as u16,
        dport: u(f, "dport") as u16,
        sender_id: u(f, "sender_id"),
        incarnation: u_or(f, "incarnation", 0),
        body,
    };
    (repr, payload)
}

fn vectors() -> Vec<Value> {
    let text = include_str!("vectors/wire.json");
    let v: Value = serde_json::from_str(text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

#[test]
fn vectors__emit_reproduces_bytes_and_parse_reproduces_fields() {
    let mut emitted = 0;
    let mut parsed = 0;
    let mut rejected = 0;
    for case in vectors() {
        let name = case["name"].as_str().unwrap();
        let dir = case["direction"].as_str().unwrap();
        let bytes = hex::decode(case["hex"].as_str().unwrap()).unwrap();
        if dir == "reject" {
            assert!(
                Repr::parse(&Packet::new_unchecked(&bytes[..])).is_err(),
                "{name}: should be rejected"
            );
            rejected += 1;
            continue;
        }
        let ty = case["type"].as_str().unwrap();
        let (expected, payload) = repr_of(ty, &case["fields"]);
        if dir == "both" {
            let mut out = expected.to_vec();
            assert_eq!(out.len(), expected.header_len(), "{name}");
            out.extend_from_slice(&payload);
            assert_eq!(hex::encode(&out), hex::encode(&bytes), "{name}: emit");
            emitted += 1;
        }
        let (repr, got_payload) = Repr::parse_with_payload(&bytes)
            .unwrap_or_else(|e| panic!("{name}: parse failed: {e}"));
        assert_eq!(repr, expected, "{name}: parse");
        assert_eq!(got_payload, &payload[..], "{name}: payload");
        assert_eq!(repr.body.packet_type().name(), ty, "{name}");
        parsed += 1;
    }
    assert!(
        emitted >= 27 && parsed >= 29 && rejected >= 8,
        "emitted {emitted} parsed {parsed} rejected {rejected}"
    );
}

#[test]
fn vectors__every_type_has_two_emit_cases() {
    let cases = vectors();
    for ty in PacketType::ALL {
        let n = cases
            .iter()
            .filter(|c| c["direction"] == "both" && c["type"] == ty.name())
            .count();
        assert!(n >= 2, "{ty}: {n} cases");
    }
}

#[test]
fn vectors__header_sizes_match_reference() {
    let sizes = [
        (PacketType::Data, 56),
        (PacketType::Grant, 33),
        (PacketType::Resend, 36),
        (PacketType::RpcUnknown, 28),
        (PacketType::Busy, 28),
        (PacketType::Cutoffs, 62),
        (PacketType::Freeze, 28),
        (PacketType::NeedAck, 28),
        (PacketType::Ack, 80),
    ];
    for (ty, len) in sizes {
        assert_eq!(ty.min_len(), len, "{ty}");
    }
    let full_resend = Repr {
        sport: 0,
        dport: 0,
        sender_id: 0,
        incarnation: 0,
        body: Body::Resend(ResendHeader {
            offset: 0,
            length: 0,
            priority: Some(0),
        }),
    };
    assert_eq!(full_resend.header_len(), 37);
}
