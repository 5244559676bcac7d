//! What a sleeping driver pays to find the socket empty: the
//! `recv_empty` counter (receive calls that returned `EAGAIN`).
//!
//! A driver reads the socket when its wait says it is readable; a wake-up
//! for anything else (a protocol timer, a poke from another thread) must
//! not cost a `recvmsg` that finds nothing. Before this was so, the tokio
//! driver read the socket empty two or three times per response and both
//! drivers once per timer tick of a waiting call (the emulated rack's
//! clients made three times as many receive calls as they received
//! datagrams).
#![allow(non_snake_case)]

mod common;

use std::time::Duration;

use common::{echo_server, pattern, HANG};
use homa_transport::{AsyncSocket, Config, Socket};

/// A client that sleeps at once when it has nothing to do (no busy
/// polling), so every receive it makes is one a wake-up decided.
fn sleeping_client() -> Config {
    let mut c = Config::default();
    c.busy_poll = Duration::ZERO;
    c
}

/// The tokio driver reads the socket empty about once per response (the
/// read that ends the readiness the reactor reported), not again at the
/// top of its loop or for its own wake-ups.
#[test]
fn polling__tokio_driver_reads_empty_about_once_per_response() {
    const CALLS: u64 = 300;
    let (server, h) = echo_server("127.0.0.1:0", Config::default());
    let rt = common::current_thread();
    let (empty, received) = rt.block_on(async {
        let client = AsyncSocket::bind_with("127.0.0.1:0", sleeping_client()).unwrap();
        for i in 0..CALLS {
            let r = client
                .call_timeout(server.local_addr(), pattern(100, i), HANG)
                .await;
            assert_eq!(r.unwrap().len(), 100);
        }
        let t = client.stats().transport;
        (t.recv_empty, t.packets_received)
    });
    server.close();
    assert_eq!(h.join().unwrap(), CALLS);
    assert!(received >= CALLS);
    assert!(
        empty <= CALLS + CALLS / 4,
        "{empty} empty reads for {CALLS} responses"
    );
}

/// A blocking client waiting for a response that the server holds wakes
/// at each protocol tick (1 ms) to run its timers; none of those wake-ups
/// reads the socket, which its `ppoll` just found not readable. The server
/// holds the request until the client has woken 20 times (so the test
/// waits for the wake-ups rather than for a time).
#[test]
fn polling__timer_wakeups_of_a_waiting_call_do_not_read_the_socket() {
    const WAKEUPS: u64 = 20;
    let mut sc = Config::default();
    sc.server = Some(true);
    let server = Socket::bind_with("127.0.0.1:0", sc).unwrap();
    let addr = server.local_addr();
    let client = Socket::bind_with("127.0.0.1:0", sleeping_client()).unwrap();
    let watched = client.clone();
    let held = std::thread::spawn(move || {
        let r = server.recv_request_timeout(HANG).unwrap().unwrap();
        let w0 = watched.stats().transport.driver_wakeups;
        let until = std::time::Instant::now() + HANG;
        while watched.stats().transport.driver_wakeups - w0 < WAKEUPS {
            assert!(std::time::Instant::now() < until, "the client never woke");
            std::thread::sleep(Duration::from_millis(1));
        }
        server.reply(r.peer, r.id, r.body).unwrap();
        server
    });
    let before = client.stats().transport;
    let r = client.call_timeout(addr, pattern(100, 7), HANG).unwrap();
    assert_eq!(r.len(), 100);
    let after = client.stats().transport;
    let _server = held.join().unwrap();
    let (empty, woke, spins) = (
        after.recv_empty - before.recv_empty,
        after.driver_wakeups - before.driver_wakeups,
        after.spins - before.spins,
    );
    assert!(woke >= WAKEUPS, "{woke} wake-ups");
    // A handful (the reads around the request and the response), not one
    // per wake-up. A wake-up that comes late can find the next tick nearer
    // than a sleep's overshoot and spin toward it, reading as it spins
    // (a loaded CI machine did, 21 times in 23 wake-ups): those reads are
    // the spin's, counted apart.
    assert!(
        empty <= 6 + spins,
        "{empty} empty reads over {woke} wake-ups and {spins} spins"
    );
}
