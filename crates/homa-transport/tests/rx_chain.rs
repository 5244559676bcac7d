//! A bulk request read without the reassembly copy: over loopback
//! (packets of up to 64 kB), a 1 MB request arrives through
//! `recv_request_message` as a chain of the receive buffers its packets
//! arrived in, byte-exact; `recv_request` gives the same bytes in one
//! piece; short requests stay one piece.
#![allow(non_snake_case)]

mod common;

use common::HANG;
use homa_transport::{Bytes, Config, Socket};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

#[test]
fn recv_request_message__bulk_request_is_a_chain_byte_exact() {
    let server = Socket::bind_with("127.0.0.1:0", Config::default().with_server(true)).unwrap();
    let client = Socket::bind("127.0.0.1:0").unwrap();
    let dest = server.local_addr();
    let mtu = server.offloads().mtu;
    for (k, len) in [100usize, 1_000_000, 1_000_000].into_iter().enumerate() {
        let body = pattern(len, k as u8);
        let call = client.start_call_timeout(dest, body.clone(), HANG).unwrap();
        let bytes = if k < 2 {
            let r = server.recv_request_message().unwrap();
            let pieces = r.message.chunks().count();
            if len == 100 {
                assert!(r.message.is_contiguous());
            } else if mtu >= 32_000 {
                // Loopback's packets fill receive buffers: kept in place.
                assert!(pieces > 1, "{pieces} pieces at MTU {mtu}");
            }
            let mut all = Vec::new();
            for c in r.message.chunks() {
                all.extend_from_slice(c);
            }
            assert_eq!(r.message.len(), len);
            server.reply(r.peer, r.id, "ok").unwrap();
            all
        } else {
            let r = server.recv_request().unwrap();
            server.reply(r.peer, r.id, "ok").unwrap();
            r.body.to_vec()
        };
        assert!(bytes == body, "request {k} differs");
        assert_eq!(call.wait().unwrap(), Bytes::from_static(b"ok"));
    }
    server.close();
}
