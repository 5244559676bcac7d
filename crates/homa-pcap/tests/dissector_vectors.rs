//! The Lua dissector and homa-proto decode the byte-exact wire vectors
//! (`crates/homa-proto/tests/vectors/wire.json`, built by an independent
//! Python encoder) the same way: packet type, RPC id, and the fields homa-rs
//! keeps in bytes the kernel leaves unused (incarnation, RPC_UNKNOWN status,
//! DATA's oldest_live). The dissector also cuts GSO datagrams (several
//! DATA packets in one UDP datagram, as loopback captures show them) into
//! their packets, and gives payload lengths as sent when the capture was
//! cut at a snapshot length.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use homa_pcap::{tshark, PcapWriter};
use homa_proto::wire::{AckEntry, Body, DataHeader, Repr, UnknownStatus};
use homa_proto::{Config, Endpoint, Instant};

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

/// One DATA packet of RPC `id`: header (from `homa_proto::wire`) and
/// `payload`.
fn data_packet(
    id: u64,
    message_length: u32,
    offset: u32,
    retransmit: bool,
    payload: &[u8],
) -> Vec<u8> {
    let repr = Repr {
        sport: 0x8001,
        dport: 4000,
        sender_id: id,
        incarnation: 0x12_3456_789a,
        body: Body::Data(DataHeader {
            message_length,
            incoming: 60_000,
            ack: AckEntry {
                client_id: 6,
                server_port: 4000,
            },
            cutoff_version: 3,
            retransmit,
            offset,
            oldest_live: 2,
        }),
    };
    let mut p = repr.to_vec();
    p.extend_from_slice(payload);
    p
}

/// The bytes `[offset, offset + len)` of a message (not a repeating
/// pattern, so no segment's payload equals another's).
fn message_bytes(offset: u32, len: usize) -> Vec<u8> {
    (offset..offset + len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// A GSO datagram as homa-rs hands it to the kernel: the DATA packets at
/// `offsets` (each `seg` payload bytes, less at the message's end) back to
/// back.
fn gso_datagram(
    id: u64,
    message_length: u32,
    seg: u32,
    offsets: &[u32],
    retransmit: bool,
) -> Vec<u8> {
    let mut d = Vec::new();
    for &o in offsets {
        let len = seg.min(message_length - o) as usize;
        d.extend(data_packet(
            id,
            message_length,
            o,
            retransmit,
            &message_bytes(o, len),
        ));
    }
    d
}

/// A capture file of datagrams, removed when dropped.
struct Capture(std::path::PathBuf);

impl Capture {
    /// Writes the datagrams into a capture cut at `snaplen`.
    fn new(snaplen: u32, datagrams: &[Vec<u8>]) -> Capture {
        assert!(tshark::available(), "tshark is not installed");
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("homa-gso-{}-{n}.pcap", std::process::id()));
        let mut w = PcapWriter::new(std::fs::File::create(&path).unwrap(), snaplen).unwrap();
        let (a, b) = (
            "10.0.0.1:4000".parse().unwrap(),
            "10.0.0.2:5000".parse().unwrap(),
        );
        for (i, d) in datagrams.iter().enumerate() {
            w.write_udp(Duration::from_micros(i as u64), a, b, 0, d)
                .unwrap();
        }
        w.into_inner().unwrap();
        Capture(path)
    }

    /// Per frame, the values of `field` the dissector gives (one field at
    /// a time: tshark joins several values of a field with commas).
    fn values(&self, field: &str) -> Vec<Vec<String>> {
        tshark::fields(&self.0, None, &[field]).unwrap_or_else(|e| panic!("{field}: {e}"))
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn strings(v: impl IntoIterator<Item = impl ToString>) -> Vec<String> {
    v.into_iter().map(|x| x.to_string()).collect()
}

#[test]
#[ignore = "needs tshark"]
fn dissector_splits_gso_datagrams_into_their_segments() {
    // 40 full segments of 1416 bytes from offset 0 (what loopback shows:
    // 40 * 1472 = 58880 bytes in one UDP datagram).
    let full: Vec<u32> = (0..40).map(|k| k * 1416).collect();
    // A message's last batch: 10 segments, the last one short (500 bytes).
    let tail: Vec<u32> = (20..30).map(|k| k * 1416).collect();
    let tail_len = 29 * 1416 + 500;
    // Retransmissions from separate resend ranges (not contiguous).
    let retx = [0, 5 * 1416, 6 * 1416, 9 * 1416];
    // Two segments of 1 byte each: the smallest GSO datagram there is.
    let tiny = [4, 5];
    let datagrams = [
        gso_datagram(10, 100_000, 1416, &full, false),
        gso_datagram(12, tail_len, 1416, &tail, false),
        gso_datagram(14, 100_000, 1416, &retx, true),
        gso_datagram(16, 6, 1, &tiny, false),
    ];
    let cap = Capture::new(65535, &datagrams);
    let cases: [(&[u32], u32, u64, bool, u32); 4] = [
        (&full, 100_000, 10, false, 1416),
        (&tail, tail_len, 12, false, 1416),
        (&retx, 100_000, 14, true, 1416),
        (&tiny, 6, 16, false, 1),
    ];
    let offsets = cap.values("homa.data.offset");
    let lengths = cap.values("homa.data.payload_length");
    let ids = cap.values("homa.sender_id");
    let retx = cap.values("homa.data.retransmit");
    for (i, (offs, mlen, id, retransmit, seg)) in cases.iter().enumerate() {
        let n = offs.len();
        let lens = offs.iter().map(|&o| (*seg).min(mlen - o));
        assert_eq!(offsets[i], strings(*offs), "datagram {i}: offsets");
        assert_eq!(lengths[i], strings(lens), "datagram {i}: payload lengths");
        assert_eq!(ids[i], vec![id.to_string(); n], "datagram {i}: ids");
        assert_eq!(retx[i], vec![u8::from(*retransmit).to_string(); n]);
    }
    let counts = cap.values("homa.gso.count");
    let indexes = cap.values("homa.gso.index");
    let sizes = cap.values("homa.gso.size");
    for (i, (offs, _, _, _, seg)) in cases.iter().enumerate() {
        let n = offs.len();
        assert_eq!(counts[i], vec![n.to_string(); n], "datagram {i}: count");
        assert_eq!(indexes[i], strings(1..=n), "datagram {i}: indexes");
        assert_eq!(sizes[i], vec![(seg + 56).to_string(); n], "datagram {i}");
    }
}

#[test]
#[ignore = "needs tshark"]
fn dissector_keeps_single_data_packets_whole() {
    // An ordinary full packet, a short one, and packets whose payloads hold
    // DATA headers of the same RPC that are not segment boundaries: a copy
    // of the packet's own header (same offset: not the next segment's), and
    // the next packet's header at the end, with no room for its payload.
    let plain = data_packet(20, 100_000, 1416, false, &message_bytes(1416, 1416));
    let short = data_packet(22, 300, 0, false, &message_bytes(0, 300));
    let mut own = data_packet(24, 100_000, 0, false, &message_bytes(0, 1416));
    let copy = own[..56].to_vec();
    own[1000..1056].copy_from_slice(&copy);
    let mut cramped = data_packet(26, 2000, 0, false, &message_bytes(0, 1416));
    let next = data_packet(26, 2000, 1360, false, &[]);
    cramped[1416..1472].copy_from_slice(&next);
    let cap = Capture::new(65535, &[plain, short, own, cramped]);
    let offsets = cap.values("homa.data.offset");
    assert_eq!(offsets, [["1416"], ["0"], ["0"], ["0"]]);
    let lengths = cap.values("homa.data.payload_length");
    assert_eq!(lengths, [["1416"], ["300"], ["1416"], ["1416"]]);
    assert_eq!(cap.values("homa.gso.count"), [[""]; 4], "no GSO trees");
}

#[test]
#[ignore = "needs tshark"]
fn dissector_gives_payload_lengths_of_snapped_captures() {
    let single = data_packet(30, 100_000, 8896, false, &message_bytes(8896, 8896));
    let offsets: Vec<u32> = (0..10).map(|k| k * 1416).collect();
    let gso = gso_datagram(32, 100_000, 1416, &offsets, false);
    // 28 bytes of IP and UDP header, then 3 whole segments and the 4th
    // one's header and 100 payload bytes.
    let snaplen = 28 + 3 * 1472 + 56 + 100;
    let cap = Capture::new(snaplen, &[single, gso]);
    let offsets = cap.values("homa.data.offset");
    let lengths = cap.values("homa.data.payload_length");
    assert_eq!(offsets[0], ["8896"]);
    assert_eq!(lengths[0], ["8896"], "the length on the wire");
    // The segments whose headers were captured.
    assert_eq!(offsets[1], ["0", "1416", "2832", "4248"]);
    assert_eq!(lengths[1], ["1416"; 4]);
    let cut = cap.values("homa.data.truncated");
    assert_eq!(cut[0], ["1"], "marked as cut");
    assert_eq!(cut[1], ["1"], "only the 4th segment is cut short");
    assert_eq!(cap.values("homa.gso.index")[1], ["1", "2", "3", "4"]);
}

#[test]
#[ignore = "needs tshark"]
fn dissector_splits_the_gso_batches_an_endpoint_sends() {
    // What a runtime with GSO hands the kernel (and a loopback capture
    // shows): each transmit's buffer as one datagram; the segment size
    // the endpoint reported is the truth to compare with.
    // No pacer: at a frozen clock it would send one packet at a time.
    let config = Config {
        pacer: false,
        ..Config::default()
    };
    let (caddr, saddr): (SocketAddr, SocketAddr) = (
        "10.0.0.1:32768".parse().unwrap(),
        "10.0.0.2:4000".parse().unwrap(),
    );
    let mut client = Endpoint::new(config.clone(), 1).unwrap();
    let port = client.open_socket(caddr.port()).unwrap();
    let mut server = Endpoint::new(config, 2).unwrap();
    server.open_socket(saddr.port()).unwrap();
    server.set_server(saddr.port(), true).unwrap();
    let now = Instant::ZERO;
    client
        .send_request(now, port, saddr, Bytes::from(message_bytes(0, 300_000)))
        .unwrap();
    let (mut datagrams, mut expected) = (Vec::new(), Vec::new());
    let mut buf = Vec::new();
    // The client's transmits go to the server (cut into their packets) and
    // the server's back, until the client has nothing more to send.
    for _ in 0..100 {
        let mut sent = false;
        while let Some(t) = client.poll_transmit(now, &mut buf) {
            sent = true;
            let seg = t.segment_size.unwrap_or(buf.len());
            let mut packets = Vec::new();
            for p in buf.chunks(seg) {
                server.handle_datagram(now, caddr, p);
                if let (
                    Repr {
                        body: Body::Data(d),
                        ..
                    },
                    payload,
                ) = Repr::parse_with_payload(p).unwrap()
                {
                    packets.push((d.offset.to_string(), payload.len().to_string()));
                }
            }
            // (Only DATA is the point here.)
            if !packets.is_empty() {
                datagrams.push(buf.clone());
                expected.push(packets);
            }
        }
        while let Some(t) = server.poll_transmit(now, &mut buf) {
            sent = true;
            for p in buf.chunks(t.segment_size.unwrap_or(buf.len())) {
                client.handle_datagram(now, saddr, p);
            }
        }
        while server.poll_event().is_some() {}
        while client.poll_event().is_some() {}
        if !sent {
            break;
        }
    }
    assert!(
        expected.iter().any(|p| p.len() > 1),
        "the endpoint sent a GSO batch"
    );
    let sent: usize = expected
        .iter()
        .flatten()
        .map(|p| p.1.parse::<usize>().unwrap())
        .sum();
    assert_eq!(sent, 300_000, "the whole request was sent");
    let cap = Capture::new(65535, &datagrams);
    let offsets = cap.values("homa.data.offset");
    let lengths = cap.values("homa.data.payload_length");
    assert_eq!(offsets.len(), datagrams.len());
    for (i, packets) in expected.iter().enumerate() {
        let (offs, lens): (Vec<String>, Vec<String>) = packets.iter().cloned().unzip();
        assert_eq!(offsets[i], offs, "transmit {i}: offsets");
        assert_eq!(lengths[i], lens, "transmit {i}: payload lengths");
    }
}
