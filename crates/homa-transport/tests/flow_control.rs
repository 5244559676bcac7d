//! A server application that stops reading, over real sockets: many tiny
//! requests fill the socket's receive budget (each message counts its
//! bookkeeping overhead), the senders are held back instead of having
//! requests dropped, and everything completes once the server reads.
#![allow(non_snake_case)]

mod common;

use std::time::{Duration, Instant};

use common::{pattern, HANG};
use homa_transport::{Config, Socket};

#[test]
fn stopped_reader__tiny_requests_wait_for_memory_none_dropped() {
    let mut config = Config::default();
    config.server = Some(true);
    config.proto.socket_rx_budget = 256 << 10;
    config.proto.max_rx_bytes_per_peer = 256 << 10;
    config.proto.max_message_length = 64 << 10;
    // A queue far larger than the budget allows: it must not be what binds.
    config.max_queued_requests = 1000;
    let server = Socket::bind_with("127.0.0.1:0", config).unwrap();
    let client = Socket::bind("127.0.0.1:0").unwrap();
    let n = 2000;
    let calls: Vec<_> = (0..n)
        .map(|i| {
            client
                .start_call_timeout(server.local_addr(), pattern(20, i), HANG)
                .unwrap()
        })
        .collect();
    // Wait (a condition, with a generous bound) until the server ran out of
    // receive memory while its application read nothing.
    let give_up = Instant::now() + HANG;
    while server.metrics().proto.stats.messages_waited == 0 {
        assert!(Instant::now() < give_up, "the budget never filled");
        std::thread::sleep(Duration::from_millis(1));
    }
    let m = server.metrics();
    let most = (256 << 10) / (20 + homa_proto::DELIVERED_OVERHEAD) as usize + 1;
    assert!(m.requests_queued <= most, "{} queued", m.requests_queued);
    assert_eq!(m.transport.requests_dropped, 0);
    // The server reads and answers everything.
    let s = server.clone();
    let h = std::thread::spawn(move || {
        for _ in 0..n {
            let r = s.recv_request_timeout(HANG).unwrap().expect("request");
            s.reply(r.peer, r.id, r.body).unwrap();
        }
    });
    for (i, call) in calls.into_iter().enumerate() {
        let r = call.wait().unwrap();
        assert_eq!(&r[..], &pattern(20, i as u64)[..]);
    }
    h.join().unwrap();
    let m = server.metrics();
    assert_eq!(m.transport.requests_dropped, 0);
    assert_eq!(m.proto.stats.requests_delivered, n);
}
