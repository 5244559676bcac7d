//! Packet captures from the runtime (`Config::capture`): a real loopback
//! exchange, checked record by record (addresses, ports, TOS, Homa
//! headers, every packet sent and received exactly once, GSO and GRO
//! batches as individual packets), then decoded by tshark with the
//! project's Lua dissector (that test needs tshark: ignored by default,
//! run by CI).
#![allow(non_snake_case)]

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use common::{pattern, HANG};
use homa_pcap::tshark;
use homa_proto::wire::{Body, Repr};
use homa_transport::{Config, Error, Socket};

/// One record of a raw-IP pcap file, decoded.
#[derive(Debug)]
struct Record {
    src: SocketAddr,
    dst: SocketAddr,
    tos: u8,
    repr: Repr,
    payload_len: usize,
}

/// Reads a pcap file written by the runtime (link type raw IP).
fn read_pcap(path: &Path) -> Vec<Record> {
    let bytes = std::fs::read(path).unwrap();
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    assert_eq!(u32_at(&bytes, 0), 0xa1b2_c3d4, "pcap magic");
    assert_eq!(u32_at(&bytes, 20), 101, "link type raw IP");
    let mut at = 24;
    let mut out = Vec::new();
    while at < bytes.len() {
        let caplen = u32_at(&bytes, at + 8) as usize;
        let origlen = u32_at(&bytes, at + 12) as usize;
        assert_eq!(caplen, origlen, "records are not truncated");
        let ip = &bytes[at + 16..at + 16 + caplen];
        at += 16 + caplen;
        let (udp, src, dst, tos) = match ip[0] >> 4 {
            4 => {
                let ihl = (ip[0] & 0x0f) as usize * 4;
                assert_eq!(ip[9], 17, "UDP");
                assert_eq!(u16::from_be_bytes([ip[2], ip[3]]) as usize, ip.len());
                let addr =
                    |o: usize| IpAddr::V4(Ipv4Addr::new(ip[o], ip[o + 1], ip[o + 2], ip[o + 3]));
                (&ip[ihl..], addr(12), addr(16), ip[1])
            }
            6 => {
                assert_eq!(ip[6], 17, "UDP");
                assert_eq!(u16::from_be_bytes([ip[4], ip[5]]) as usize + 40, ip.len());
                let addr = |o: usize| {
                    let b: [u8; 16] = ip[o..o + 16].try_into().unwrap();
                    IpAddr::V6(Ipv6Addr::from(b))
                };
                let tclass = (ip[0] & 0x0f) << 4 | ip[1] >> 4;
                (&ip[40..], addr(8), addr(24), tclass)
            }
            v => panic!("IP version {v}"),
        };
        let port = |o: usize| u16::from_be_bytes([udp[o], udp[o + 1]]);
        assert_eq!(port(4) as usize, udp.len(), "UDP length");
        let (repr, payload) = Repr::parse_with_payload(&udp[8..]).expect("a Homa packet");
        out.push(Record {
            src: SocketAddr::new(src, port(0)),
            dst: SocketAddr::new(dst, port(2)),
            tos,
            repr,
            payload_len: payload.len(),
        });
    }
    out
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("homa-capture-{}-{name}.pcap", std::process::id()))
}

fn capturing(bind: &str, path: &Path, server: bool) -> Socket {
    let mut config = Config::default();
    config.capture = Some(path.to_owned());
    config.server = Some(server);
    Socket::bind_with(bind, config).unwrap()
}

/// Sum of the payloads of first transmissions of a message's DATA.
fn data_bytes(records: &[Record], sender_id: u64) -> u64 {
    records
        .iter()
        .filter(|r| r.repr.sender_id == sender_id)
        .filter_map(|r| match r.repr.body {
            Body::Data(d) if !d.retransmit => Some(r.payload_len as u64),
            _ => None,
        })
        .sum()
}

#[test]
fn capture__records_a_real_exchange_with_real_addresses() {
    let (spath, cpath) = record_exchange("server", "client");
    for p in [spath, cpath] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
#[ignore = "needs tshark"]
fn capture__tshark_decodes_it_with_the_lua_dissector() {
    assert!(tshark::available(), "this test needs tshark");
    let (spath, cpath) = record_exchange("server-ts", "client-ts");
    tshark_check(&spath);
    for p in [spath, cpath] {
        let _ = std::fs::remove_file(p);
    }
}

/// Records a short and a long call between a capturing server (bound to
/// an address) and a capturing client (bound to the wildcard address) and
/// checks the files against the sockets' counters; returns the paths.
fn record_exchange(server_name: &str, client_name: &str) -> (PathBuf, PathBuf) {
    let (spath, cpath) = (temp(server_name), temp(client_name));
    // The server is bound to an address, the client to the wildcard
    // address: its local address must come from the kernel.
    let server = capturing("127.0.0.1:0", &spath, true);
    let client = capturing("0.0.0.0:0", &cpath, false);
    let s = server.clone();
    let h = std::thread::spawn(move || loop {
        match s.recv_request() {
            Ok(r) => s.reply(r.peer, r.id, r.body).unwrap(),
            Err(Error::Closed) => return,
            Err(e) => panic!("{e}"),
        }
    });
    let dest = server.local_addr();
    // One short call, one long enough for GSO sends, GRO batches and
    // grants in both directions.
    let short = client
        .start_call_timeout(dest, pattern(100, 1), HANG)
        .unwrap();
    let short_id = short.id();
    assert_eq!(short.wait().unwrap().len(), 100);
    let long = client
        .start_call_timeout(dest, pattern(200_000, 2), HANG)
        .unwrap();
    let long_id = long.id();
    assert_eq!(long.wait().unwrap().len(), 200_000);
    // Closing ends the captures; the counters are final from then on.
    client.close();
    server.close();
    h.join().unwrap();
    let (cs, ss) = (client.stats().transport, server.stats().transport);

    let caddr: SocketAddr = format!("127.0.0.1:{}", client.local_addr().port())
        .parse()
        .unwrap();
    for (path, stats, me, other) in [(&cpath, &cs, caddr, dest), (&spath, &ss, dest, caddr)] {
        let records = read_pcap(path);
        // Every packet handed to the kernel and every packet read from
        // it, once each.
        assert_eq!(records.len() as u64, stats.packets_captured);
        assert_eq!(
            stats.packets_captured,
            stats.packets_sent + stats.packets_received
        );
        assert_eq!(stats.capture_errors, 0);
        let mut sent = 0;
        for r in &records {
            // Real addresses on both ends; UDP ports are the Homa ports.
            assert!(
                (r.src, r.dst) == (me, other) || (r.src, r.dst) == (other, me),
                "{r:?}"
            );
            assert_eq!((r.repr.sport, r.repr.dport), (r.src.port(), r.dst.port()));
            sent += u64::from(r.src == me);
            // Priorities travel in the top three bits of the TOS byte;
            // control packets at the top level.
            assert_eq!(r.tos & 0x1f, 0, "{r:?}");
            if matches!(r.repr.body, Body::Grant(_)) {
                assert_eq!(r.tos, 7 << 5, "{r:?}");
            }
        }
        assert_eq!(sent, stats.packets_sent);
        // Whole messages: requests from the client, responses back.
        assert_eq!(data_bytes(&records, short_id), 100);
        assert_eq!(data_bytes(&records, short_id | 1), 100);
        assert_eq!(data_bytes(&records, long_id), 200_000);
        assert_eq!(data_bytes(&records, long_id | 1), 200_000);
    }
    // The long messages went out in GSO batches and came in as GRO
    // batches, yet the files hold single packets (checked by parsing).
    assert!(cs.gso_sends > 0 || !client.offloads().gso);
    assert!(ss.gro_batches > 0 || !server.offloads().gro);
    (spath, cpath)
}

/// Decodes the server's capture with tshark and the Lua dissector.
fn tshark_check(path: &Path) {
    let rows = tshark::fields(path, None, &["homa.type_name", "ip.src", "ip.dst"]).unwrap();
    assert_eq!(rows.len(), read_pcap(path).len());
    for r in &rows {
        assert!(!r[0].is_empty(), "every packet decodes as Homa: {r:?}");
        assert_eq!((&*r[1], &*r[2]), ("127.0.0.1", "127.0.0.1"), "{r:?}");
    }
    for ty in ["DATA", "GRANT"] {
        assert!(rows.iter().any(|r| r[0] == ty), "no {ty} in {rows:?}");
    }
}

#[test]
fn capture__ipv6_wildcard_socket_names_its_real_address() {
    let path = temp("v6");
    let server = common::server_socket("[::1]:0");
    let client = capturing("[::]:0", &path, false);
    let s = server.clone();
    let h = std::thread::spawn(move || {
        let r = s.recv_request().unwrap();
        s.reply(r.peer, r.id, r.body).unwrap();
    });
    let r = client.call_timeout(server.local_addr(), pattern(3000, 3), HANG);
    assert_eq!(r.unwrap().len(), 3000);
    h.join().unwrap();
    client.close();
    let records = read_pcap(&path);
    let me = SocketAddr::new("::1".parse().unwrap(), client.local_addr().port());
    assert_eq!(
        records.len() as u64,
        client.stats().transport.packets_captured
    );
    assert!(records.len() >= 6, "3 DATA out, 3 in at least");
    for r in &records {
        assert!(r.src == me || r.dst == me, "{r:?}");
        assert!(
            r.src == server.local_addr() || r.dst == server.local_addr(),
            "{r:?}"
        );
    }
    let _ = std::fs::remove_file(path);
}
