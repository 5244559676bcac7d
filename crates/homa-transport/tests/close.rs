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

/// A client that closes after its calls completed acks them on the way
/// out: the server frees its RPCs at once, without asking for acks (after
/// every `homa client` run it asked, and met ICMP port unreachable).
#[test]
fn closed_client__acks_its_completed_calls() {
    let mut config = Config::default();
    config.server = Some(true);
    let server = Socket::bind_with("127.0.0.1:0", config).unwrap();
    let dest = server.local_addr();
    let s = server.clone();
    let h = std::thread::spawn(move || {
        for _ in 0..3 {
            let r = s
                .recv_request_timeout(Duration::from_secs(5))
                .unwrap()
                .expect("request");
            s.reply(r.peer, r.id, r.body).unwrap();
        }
    });
    let client = Socket::bind("127.0.0.1:0").unwrap();
    for i in 0..3u8 {
        assert_eq!(&client.call(dest, vec![i; 10]).unwrap()[..], &[i; 10][..]);
    }
    h.join().unwrap();
    client.close();
    let give_up = Instant::now() + Duration::from_secs(5);
    while server.metrics().proto.server_rpcs > 0 {
        assert!(Instant::now() < give_up, "the server still holds its RPCs");
        std::thread::sleep(Duration::from_millis(1));
    }
    let m = server.metrics().proto.stats;
    assert_eq!(m.need_acks, 0, "the server asked for acks");
    assert_eq!(m.server_rpcs_acked, 3);
}
