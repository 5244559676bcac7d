//! The protocol's per-socket send cap through both APIs, for responses as
//! well as requests: the blocking send waits, the async one awaits, the
//! non-blocking forms fail with `WouldBlock`, and room freed by an
//! acknowledgement or an abort lets a waiting sender through.
#![allow(non_snake_case)]

mod common;

use std::net::{SocketAddr, UdpSocket};

use common::{pattern, HANG};
use homa_proto::wire::{Body, DataHeader, Repr};
use homa_transport::{AsyncSocket, Config, Error, Socket};

/// Room for two 50 kB messages, not three.
const CAP: u64 = 120_000;
const BIG: usize = 50_000;

fn capped(server: bool) -> Config {
    let mut c = Config::default();
    c.proto.max_tx_bytes_per_socket = CAP;
    c.server = Some(server);
    c
}

/// A client written by hand: it sends one-packet requests and never
/// acknowledges a response until told to, so responses stay unfinished
/// and count against the server's cap.
struct RawClient {
    sock: UdpSocket,
    /// The server's incarnation, which requests must echo (learned from
    /// its answer to a probe, as a homa-proto client does).
    incarnation: std::cell::Cell<u64>,
}

impl RawClient {
    fn new() -> RawClient {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(HANG)).unwrap();
        RawClient {
            sock,
            incarnation: std::cell::Cell::new(0),
        }
    }

    /// Learns the server's incarnation: a zero-length RESEND for an RPC it
    /// does not know is answered with RPC_UNKNOWN carrying it.
    fn learn_incarnation(&self, server: SocketAddr) {
        if self.incarnation.get() != 0 {
            return;
        }
        let probe = homa_proto::wire::ResendHeader {
            offset: 0,
            length: 0,
            priority: Some(7),
        };
        self.send(server, 2, Body::Resend(probe), &[]);
        let mut buf = [0u8; 2048];
        loop {
            let n = self.sock.recv(&mut buf).expect("no answer to the probe");
            let (repr, _) = Repr::parse_with_payload(&buf[..n]).unwrap();
            if matches!(repr.body, Body::RpcUnknown(_)) {
                self.incarnation.set(repr.incarnation);
                return;
            }
        }
    }

    fn send(&self, server: SocketAddr, sender_id: u64, body: Body, payload: &[u8]) {
        let mut bytes = Repr {
            sport: self.sock.local_addr().unwrap().port(),
            dport: server.port(),
            sender_id,
            incarnation: self.incarnation.get(),
            body,
        }
        .to_vec();
        bytes.extend_from_slice(payload);
        self.sock.send_to(&bytes, server).unwrap();
    }

    /// A 10-byte request with client id `id` (even).
    fn request(&self, server: SocketAddr, id: u64) {
        self.learn_incarnation(server);
        let data = DataHeader {
            message_length: 10,
            incoming: 10,
            ..Default::default()
        };
        self.send(server, id, Body::Data(data), b"0123456789");
    }

    /// Acknowledges the response to request `id`: the server frees it.
    fn ack(&self, server: SocketAddr, id: u64) {
        let ack = homa_proto::wire::AckHeader::new(&[]);
        self.send(server, id, Body::Ack(ack), &[]);
    }

    /// Reads until a DATA packet of the response to request `id` arrives.
    fn wait_response(&self, id: u64) {
        let mut buf = [0u8; 2048];
        loop {
            let n = self.sock.recv(&mut buf).expect("no response");
            let (repr, _) = Repr::parse_with_payload(&buf[..n]).unwrap();
            if repr.sender_id == id | 1 && matches!(repr.body, Body::Data(_)) {
                return;
            }
        }
    }
}

/// Spins (yielding) until `f` holds; a safety net turns a hang into a
/// failure.
fn until(mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < HANG, "condition never held");
        std::thread::yield_now();
    }
}

#[test]
fn send_cap__blocking_reply_waits_until_an_ack_frees_room() {
    let server = Socket::bind_with("127.0.0.1:0", capped(true)).unwrap();
    let dest = server.local_addr();
    let raw = RawClient::new();
    for id in [1000, 1002, 1004] {
        raw.request(dest, id);
    }
    let reqs: Vec<_> = (0..3).map(|_| server.recv_request().unwrap()).collect();
    server
        .reply(reqs[0].peer, reqs[0].id, pattern(BIG, 1))
        .unwrap();
    server
        .reply(reqs[1].peer, reqs[1].id, pattern(BIG, 2))
        .unwrap();
    // The third response would exceed the cap: the reply waits.
    let s = server.clone();
    let (peer, id) = (reqs[2].peer, reqs[2].id);
    let third = std::thread::spawn(move || s.reply(peer, id, pattern(BIG, 3)));
    until(|| server.stats().transport.send_cap_waits == 1);
    assert!(!third.is_finished());
    // The client acknowledges the first response: room frees, the
    // waiting reply goes out.
    raw.ack(dest, 1000);
    third.join().unwrap().unwrap();
    raw.wait_response(1004);
    assert_eq!(server.stats().proto.server_rpcs_acked, 1);
}

#[test]
fn send_cap__tokio_reply_awaits_and_try_reply_refuses() {
    let rt = common::current_thread();
    rt.block_on(async {
        let server = AsyncSocket::bind_with("127.0.0.1:0", capped(true)).unwrap();
        let dest = server.local_addr();
        let raw = RawClient::new();
        // (Learning the server's incarnation waits for its answer: off the
        // runtime's thread, which drives the server.)
        let raw = tokio::task::spawn_blocking(move || {
            raw.learn_incarnation(dest);
            raw
        })
        .await
        .unwrap();
        for id in [1000, 1002, 1004] {
            raw.request(dest, id);
        }
        let mut reqs = Vec::new();
        for _ in 0..3 {
            reqs.push(server.recv_request().await.unwrap());
        }
        server
            .reply(reqs[0].peer, reqs[0].id, pattern(BIG, 1))
            .await
            .unwrap();
        server
            .reply(reqs[1].peer, reqs[1].id, pattern(BIG, 2))
            .await
            .unwrap();
        let (peer, id) = (reqs[2].peer, reqs[2].id);
        let r = server.try_reply(peer, id, pattern(BIG, 3));
        assert!(matches!(r, Err(Error::WouldBlock)), "{r:?}");
        let s = server.clone();
        let third = tokio::spawn(async move { s.reply(peer, id, pattern(BIG, 3)).await });
        while server.stats().transport.send_cap_waits == 0 {
            tokio::task::yield_now().await;
        }
        assert!(!third.is_finished());
        raw.ack(dest, 1000);
        tokio::time::timeout(HANG, third)
            .await
            .expect("hung")
            .unwrap()
            .unwrap();
        tokio::task::spawn_blocking(move || raw.wait_response(1004))
            .await
            .unwrap();
    });
}

#[test]
fn send_cap__tokio_start_call_awaits_room_for_a_call() {
    let rt = common::current_thread();
    rt.block_on(async {
        let mut silent_config = Config::default();
        silent_config.server = Some(true);
        let silent = AsyncSocket::bind_with("127.0.0.1:0", silent_config).unwrap();
        let client = AsyncSocket::bind_with("127.0.0.1:0", capped(false)).unwrap();
        let dest = silent.local_addr();
        let first = client.start_call(dest, pattern(BIG, 1)).await.unwrap();
        let _second = client.start_call(dest, pattern(BIG, 2)).await.unwrap();
        let r = client.try_start_call(dest, pattern(BIG, 3));
        assert!(matches!(r, Err(Error::WouldBlock)), "{r:?}");
        let c = client.clone();
        let third = tokio::spawn(async move { c.start_call(dest, pattern(BIG, 3)).await });
        tokio::task::yield_now().await;
        assert!(!third.is_finished());
        // Dropping a call aborts it and frees its bytes.
        drop(first);
        let call = tokio::time::timeout(HANG, third)
            .await
            .expect("hung")
            .unwrap()
            .unwrap();
        // The request really went out.
        loop {
            let req = silent.recv_request().await.unwrap();
            if req.body[..] == pattern(BIG, 3)[..] {
                break;
            }
        }
        drop(call);
    });
}

/// A call waiting for room under the send cap still ends by its deadline,
/// and the runtime keeps that deadline itself: the runtime here has no
/// timer driver (tokio's timer would panic), only I/O.
#[test]
fn send_cap__tokio_call_waiting_for_room_ends_by_its_deadline() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut silent_config = Config::default();
        silent_config.server = Some(true);
        let silent = AsyncSocket::bind_with("127.0.0.1:0", silent_config).unwrap();
        let client = AsyncSocket::bind_with("127.0.0.1:0", capped(false)).unwrap();
        let dest = silent.local_addr();
        let _first = client.start_call(dest, pattern(BIG, 1)).await.unwrap();
        let _second = client.start_call(dest, pattern(BIG, 2)).await.unwrap();
        let deadline = std::time::Duration::from_millis(200);
        let t0 = std::time::Instant::now();
        let r = client.call_timeout(dest, pattern(BIG, 3), deadline).await;
        let took = t0.elapsed();
        assert!(matches!(r, Err(Error::DeadlineExceeded)), "{r:?}");
        assert!(took >= deadline, "{took:?}");
        assert_eq!(client.stats().transport.send_cap_waits, 1);
    });
}
