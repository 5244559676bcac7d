//! Socket close as users expect it: the closed side's callers are woken
//! with an error, and the peer stops sending to it at once (ICMP port
//! unreachable) instead of retrying until its timeout.

#![allow(non_snake_case)]

use std::time::{Duration, Instant};

use homa_transport::{Config, Error, Socket};

#[test]
fn closed_client__server_stops_sending_to_it_quickly() {
    // An ephemeral port that accepts requests.
    let mut config = Config::default();
    config.server = Some(true);
    let server = Socket::bind_with("127.0.0.1:0", config).unwrap();
    let dest = server.local_addr();
    let client = Socket::bind("127.0.0.1:0").unwrap();
    let call = client.start_call(dest, &b"work"[..]).unwrap();
    let req = server
        .recv_request_timeout(Duration::from_secs(5))
        .unwrap()
        .expect("request arrives");
    // The client goes away while the server computes: its caller is woken
    // with an error.
    client.close();
    assert!(matches!(call.wait(), Err(Error::Closed)));
    // The server answers anyway; the first packet draws ICMP port
    // unreachable and the server drops the RPC, long before its 1 s
    // timeout and without NEED_ACK retries.
    server.reply(req.peer, req.id, &b"result"[..]).unwrap();
    let start = Instant::now();
    loop {
        let s = server.stats();
        if s.proto.rpcs_unreachable == 1 {
            assert_eq!(s.proto.need_acks, 0, "no retries toward a closed socket");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "server still holds the rpc: {:?}",
            s.proto
        );
        // Give the server's socket a chance to read the ICMP error.
        let _ = server.recv_request_timeout(Duration::from_millis(5));
    }
}
