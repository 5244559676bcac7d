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

/// An application that takes requests and will not answer them says so
/// with `discard`: each RPC is freed and its client's call fails at once
/// with `Abandoned`. (A request dropped unanswered held its RPC until the
/// socket closed: after `max_rpcs_per_peer` of them, an outside test's
/// client could never reach the server again.)
#[test]
fn discarded_requests__free_their_rpcs_and_fail_their_calls_at_once() {
    let mut config = Config::default();
    config.server = Some(true);
    config.proto.max_rpcs_per_peer = 8;
    let server = Socket::bind_with("127.0.0.1:0", config).unwrap();
    let client = Socket::bind("127.0.0.1:0").unwrap();
    let s = server.clone();
    let n = 40;
    let h = std::thread::spawn(move || {
        for _ in 0..n {
            let r = s.recv_request_timeout(HANG).unwrap().expect("request");
            s.discard(r.peer, r.id).unwrap();
            let again = s.discard(r.peer, r.id);
            assert!(
                matches!(again, Err(homa_transport::Error::UnknownRpc)),
                "a second discard: {again:?}"
            );
        }
        let r = s.recv_request_timeout(HANG).unwrap().expect("request");
        s.reply(r.peer, r.id, r.body).unwrap();
    });
    for i in 0..n {
        let t = Instant::now();
        let e = client
            .call_timeout(server.local_addr(), pattern(100, i), HANG)
            .unwrap_err();
        assert!(
            matches!(e, homa_transport::Error::Abandoned),
            "call {i}: {e:?}"
        );
        // Told, not found out by a probe (a fifth of the 1 s timeout).
        assert!(
            t.elapsed() < Duration::from_millis(150),
            "call {i}: {:?}",
            t.elapsed()
        );
    }
    // Five times the per-peer limit discarded: the client is still served.
    let r = client
        .call_timeout(server.local_addr(), pattern(100, 99), HANG)
        .unwrap();
    assert_eq!(&r[..], &pattern(100, 99)[..]);
    h.join().unwrap();
    let m = server.metrics();
    assert_eq!(m.proto.stats.requests_abandoned, n);
    // The answered one may wait for its ACK.
    assert!(
        m.proto.server_rpcs <= 1,
        "{} server RPCs",
        m.proto.server_rpcs
    );
}

/// Requests that arrive while the queue of untaken requests is full are
/// taken back unseen: they do not count as run, their clients send them
/// again, and every call completes once the application reads (they used
/// to fail as `Abandoned`, "it ran", although the application never saw
/// them).
#[test]
fn queue_full__requests_taken_back_are_sent_again_and_run_once() {
    let mut config = Config::default();
    config.server = Some(true);
    config.max_queued_requests = 2;
    let server = Socket::bind_with("127.0.0.1:0", config).unwrap();
    let client = Socket::bind("127.0.0.1:0").unwrap();
    let n = 10;
    let calls: Vec<_> = (0..n)
        .map(|i| {
            client
                .start_call_timeout(server.local_addr(), pattern(100, i), HANG)
                .unwrap()
        })
        .collect();
    let give_up = Instant::now() + HANG;
    while server.metrics().transport.requests_dropped < n - 2 {
        assert!(Instant::now() < give_up, "the queue never overflowed");
        std::thread::sleep(Duration::from_millis(1));
    }
    let s = server.clone();
    let h = std::thread::spawn(move || {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..n {
            let r = s.recv_request_timeout(HANG).unwrap().expect("request");
            assert!(seen.insert(r.body.clone()), "a request ran twice");
            s.reply(r.peer, r.id, r.body).unwrap();
        }
    });
    for (i, call) in calls.into_iter().enumerate() {
        let r = call.wait().unwrap();
        assert_eq!(&r[..], &pattern(100, i as u64)[..]);
    }
    h.join().unwrap();
    // Each dropped one at least once (a copy sent again may find the queue
    // still full).
    assert!(server.metrics().proto.stats.requests_declined >= n - 2);
}

/// `recv_request` hands over a contiguous copy of a request that arrived
/// in pieces; the copy counts in the receive budget as the pieces did. (It
/// did not: an outside test's server held 69 requests of 4 MiB, 276 MiB,
/// against a 64 MiB budget, none waiting for memory.)
#[test]
fn held_request_copies__count_in_the_receive_budget() {
    let mut config = Config::default();
    config.server = Some(true);
    config.proto.socket_rx_budget = 1 << 20;
    config.proto.max_rx_bytes_per_peer = 1 << 20;
    config.proto.max_message_length = 512 << 10;
    let server = Socket::bind_with("127.0.0.1:0", config).unwrap();
    let client = Socket::bind("127.0.0.1:0").unwrap();
    let (n, len) = (12u64, 256 << 10);
    let calls: Vec<_> = (0..n)
        .map(|i| {
            client
                .start_call_timeout(server.local_addr(), pattern(len, i), HANG)
                .unwrap()
        })
        .collect();
    // The application takes what it can and holds it.
    let mut held = Vec::new();
    let give_up = Instant::now() + HANG;
    while server.metrics().proto.stats.messages_waited == 0 {
        assert!(Instant::now() < give_up, "the budget never filled");
        if let Some(r) = server
            .recv_request_timeout(Duration::from_millis(5))
            .unwrap()
        {
            held.push(r);
        }
    }
    // Taking more finds nothing while the copies are held.
    while let Some(r) = server
        .recv_request_timeout(Duration::from_millis(50))
        .unwrap()
    {
        held.push(r);
    }
    let most = (1 << 20) / len + 1;
    assert!(
        held.len() <= most,
        "{} of {len} B held against a 1 MiB budget",
        held.len()
    );
    assert!(server.metrics().proto.waiting_for_memory > 0);
    // Answering releases them; the rest arrive.
    let mut answered = 0;
    while answered < n {
        for r in held.drain(..) {
            assert_eq!(r.body.len(), len);
            server.reply(r.peer, r.id, &b"ok"[..]).unwrap();
            answered += 1;
        }
        if answered < n {
            held.push(server.recv_request_timeout(HANG).unwrap().expect("request"));
        }
    }
    for call in calls {
        assert_eq!(&call.wait().unwrap()[..], b"ok");
    }
}
