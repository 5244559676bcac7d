//! The Lua dissector and homa-proto decode the byte-exact wire vectors
//! (`crates/homa-proto/tests/vectors/wire.json`, built by an independent
//! Python encoder) the same way: packet type, RPC id, and the fields homa-rs
//! keeps in bytes the kernel leaves unused (incarnation, RPC_UNKNOWN status,
//! DATA's oldest_live).

use std::time::Duration;

use homa_pcap::{tshark, PcapWriter};
use homa_proto::wire::{Body, Repr, UnknownStatus};

#[test]
#[ignore = "needs tshark"]
fn dissector_agrees_with_the_wire_vectors() {
    assert!(tshark::available(), "tshark is not installed");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../homa-proto/tests/vectors/wire.json"
    ))
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases: Vec<&serde_json::Value> = json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["direction"] != "reject")
        .collect();
    let path = std::env::temp_dir().join(format!("homa-vectors-{}.pcap", std::process::id()));
    let mut w = PcapWriter::new(std::fs::File::create(&path).unwrap(), 65535).unwrap();
    let (a, b) = (
        "10.0.0.1:4000".parse().unwrap(),
        "10.0.0.2:5000".parse().unwrap(),
    );
    let mut expected = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let bytes = hex::decode(c["hex"].as_str().unwrap()).unwrap();
        let (repr, _) = Repr::parse_with_payload(&bytes).unwrap();
        w.write_udp(Duration::from_micros(i as u64), a, b, 0, &bytes)
            .unwrap();
        expected.push((c["name"].as_str().unwrap().to_owned(), repr));
    }
    drop(w);
    let rows = tshark::fields(
        &path,
        None,
        &[
            "homa.type_name",
            "homa.sender_id",
            "homa.incarnation",
            "homa.data.oldest_live",
            "homa.rpc_unknown.status",
            "homa.rpc_unknown.uptime_us",
        ],
    );
    let _ = std::fs::remove_file(&path);
    let rows = rows.unwrap();
    assert_eq!(rows.len(), expected.len(), "every vector decodes as Homa");
    for (row, (name, repr)) in rows.iter().zip(&expected) {
        assert_eq!(row[0], repr.body.packet_type().name(), "{name}");
        assert_eq!(row[1], repr.sender_id.to_string(), "{name}");
        let inc = u64::from_str_radix(row[2].trim_start_matches("0x"), 16).unwrap();
        assert_eq!(inc, repr.incarnation, "{name}: incarnation");
        match repr.body {
            Body::Data(d) => assert_eq!(row[3], d.oldest_live.to_string(), "{name}"),
            Body::RpcUnknown(u) => {
                let (status, uptime) = match u.status {
                    UnknownStatus::None => ("none".to_owned(), None),
                    UnknownStatus::NotServer => ("not a server".to_owned(), None),
                    UnknownStatus::Abandoned => ("abandoned".to_owned(), None),
                    UnknownStatus::Forgotten => ("forgotten".to_owned(), None),
                    UnknownStatus::Reserved(c) => (format!("reserved 0x{c:04x}"), None),
                    UnknownStatus::Uptime(d) => ("uptime".to_owned(), Some(d.as_micros())),
                };
                assert_eq!(row[4], status, "{name}");
                assert_eq!(
                    row[5],
                    uptime.map_or(String::new(), |u| u.to_string()),
                    "{name}: uptime"
                );
            }
            _ => {}
        }
    }
}
