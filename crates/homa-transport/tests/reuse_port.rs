//! Several sockets serving one port (`Config::reuse_port`) over real
//! sockets: the kernel picks the socket for each datagram, and may move a
//! client to another socket of the group. A request one socket ran must
//! never run on another (at most once): the moved client's call fails with
//! `OutcomeUnknown` instead.
#![allow(non_snake_case)]

use std::time::{Duration, Instant};

use homa_transport::{Config, Error, Socket};

#[test]
#[ignore = "needs CPUs 0 and 1: the group steers each datagram by the CPU that receives it"]
fn reuse_port__a_request_one_socket_ran_never_runs_on_another() {
    let cpus = homa_sys::process::allowed_cpus();
    assert!(
        cpus.contains(&0) && cpus.contains(&1),
        "this test needs CPUs 0 and 1, allowed: {cpus:?}"
    );
    // Socket i of the group gets the datagrams CPU i receives; over
    // loopback a datagram is received on the CPU that sent it.
    let mut server = Config::default();
    server.server = Some(true);
    server.background = None;
    server.reuse_port = true;
    server.reuse_port_by_cpu = true;
    let s0 = Socket::bind_with("127.0.0.1:0", server.clone()).unwrap();
    let addr = s0.local_addr();
    let s1 = Socket::bind_with(addr, server).unwrap();
    // Both up well before the request: socket 1's refusal would show an
    // uptime longer than the request's age.
    std::thread::sleep(Duration::from_millis(50));

    let outcome = std::thread::spawn(move || {
        let mut client = Config::default();
        client.server = Some(false);
        // This thread drives the client: everything it sends leaves from
        // the CPU it is pinned to.
        client.background = None;
        client.proto.resend_after = Duration::from_millis(5);
        client.proto.resend_interval = Duration::from_millis(5);
        let c = Socket::bind_with("127.0.0.1:0", client).unwrap();
        homa_sys::process::pin_current_thread(0).unwrap();
        let mut call = c
            .start_call_timeout(
                addr,
                bytes::Bytes::from_static(b"run me once"),
                Duration::from_secs(5),
            )
            .unwrap();
        let start = Instant::now();
        let held = loop {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "socket 0 never got the request"
            );
            if let Some(r) = call.wait_timeout(Duration::from_millis(1)) {
                panic!("the call ended before socket 0 ran it: {r:?}");
            }
            assert!(
                s1.try_recv_request().unwrap().is_none(),
                "socket 1 got the request first"
            );
            if let Some(r) = s0.try_recv_request().unwrap() {
                break r;
            }
        };
        // Socket 0 ran it and holds it. From now on the client's datagrams
        // (its probes for the response) reach socket 1.
        homa_sys::process::pin_current_thread(1).unwrap();
        let mut ran_on_1 = 0;
        let end = loop {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the call never ended"
            );
            if let Some(r) = s1.try_recv_request().unwrap() {
                ran_on_1 += 1;
                s1.reply(r.peer, r.id, r.body).unwrap();
            }
            if let Some(r) = call.wait_timeout(Duration::from_millis(1)) {
                break r;
            }
        };
        drop(held);
        (end, ran_on_1)
    })
    .join()
    .unwrap();
    let (end, ran_on_1) = outcome;
    assert_eq!(ran_on_1, 0, "the request ran on both sockets of the group");
    assert!(matches!(end, Err(Error::OutcomeUnknown)), "{end:?}");
}
