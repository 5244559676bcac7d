//! A send buffer that fills (needs root and `ip`, `tc`: ignored by default,
//! CI runs it). On loopback the kernel frees a datagram's send buffer as
//! it delivers it, so a socket there never waits for room; behind a
//! shaped interface the queued packets hold their buffer until they leave,
//! and a sender faster than the link finds its socket full.
//!
//! The tokio driver watches writability only while a transmit waits for
//! room (on a second descriptor, registered then and dropped after): this
//! test makes sends wait and checks that a large request still leaves
//! whole and its response comes back byte-exact.
#![allow(non_snake_case)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use homa_lab::{Lab, Shaper};
use homa_transport::{AsyncSocket, Config, Socket};

#[test]
#[ignore = "needs root, ip and tc"]
fn backpressure__tokio_sender_waits_for_room_and_completes() {
    let mut lab = Lab::new("hn-room").expect("this test needs root and the ip tool");
    assert!(homa_lab::have_tool("tc"), "this test needs tc");
    let a = lab.namespace("a").unwrap();
    let b = lab.namespace("b").unwrap();
    let (ia, _) = lab.link(&a, "10.93.0.1/24", &b, "10.93.0.2/24").unwrap();
    // 50 Mbit/s out of the client: its socket (a small send buffer, no
    // pacer) outruns the link at once.
    lab.shape_priorities(&a, &ia, &Shaper::new(50)).unwrap();
    let server_addr: std::net::SocketAddr = "10.93.0.2:4000".parse().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = lab
        .in_namespace(&b, move || {
            let s = Socket::bind_with(server_addr, Config::default()).unwrap();
            ready_tx.send(()).unwrap();
            let r = s.recv_request_timeout(common::HANG).unwrap().unwrap();
            s.reply(r.peer, r.id, r.body).unwrap();
            // Until the client has its response (it acknowledges it).
            std::thread::sleep(Duration::from_millis(500));
        })
        .unwrap();
    ready_rx.recv().unwrap();
    let client = lab
        .in_namespace(&a, move || {
            let mut c = Config::default();
            c.send_buffer = 16 * 1024;
            c.proto.link_mbps = 0;
            let rt = common::current_thread();
            rt.block_on(async {
                let s = AsyncSocket::bind_with("10.93.0.1:0", c).unwrap();
                let req = Bytes::from(common::pattern(2_000_000, 11));
                let got = s
                    .call_timeout(server_addr, req.clone(), Duration::from_secs(30))
                    .await
                    .expect("the call completes");
                assert!(got == req, "response bytes differ");
                s.stats().transport
            })
        })
        .unwrap();
    let t = client.join().unwrap();
    server.join().unwrap();
    eprintln!(
        "send_blocked {}, write_wakeups {}, send_calls {}, packets_sent {}",
        t.send_blocked, t.write_wakeups, t.send_calls, t.packets_sent
    );
    assert!(t.send_blocked > 0, "the socket never filled: {t:?}");
    // The watch woke the driver (the protocol's timer alone would also
    // retry the sends, so completion does not show it).
    assert!(t.write_wakeups > 0, "no wake-up for room: {t:?}");
}
