//! Real sockets on loopback, one process, server and clients in threads.
#![allow(non_snake_case)]

mod common;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use common::{check_echo_sizes, echo_server, free_port, patient, pattern, server_socket, HANG};
use homa_transport::{Config, Error, Mtu, Socket};

const SIZES: &[usize] = &[
    1, 2, 100, 1415, 1416, 1417, 2832, 2833, 39_999, 40_000, 40_001, 65_536, 200_000, 1_000_000,
    8_000_000,
];

/// Sizes around the packet boundaries of the loopback MTU (65 536,
/// clamped to 65 535: 65 451 message bytes per DATA packet over IPv4).
const LOOPBACK_SIZES: &[usize] = &[
    1, 1417, 65_450, 65_451, 65_452, 130_902, 130_903, 1_000_000, 8_000_000,
];

/// 1 500-byte packets (the protocol's default MTU; loopback's own would
/// be chosen otherwise), so that the sizes above cross packet boundaries.
fn mtu_1500() -> Config {
    Config::default().with_mtu(Mtu::Proto)
}

#[test]
fn echo__sizes_1b_to_8mb_are_byte_exact_with_gso_and_gro() {
    let (server, h) = echo_server("127.0.0.1:0", mtu_1500());
    let client = Socket::bind_with("127.0.0.1:0", mtu_1500()).unwrap();
    check_echo_sizes(&client, server.local_addr(), SIZES);
    let (c, s) = (client.stats().transport, server.stats().transport);
    // Multi-packet messages went out as GSO batches and came in as GRO
    // batches whenever the kernel offered the offloads.
    assert_eq!(c.gso_sends > 0, client.offloads().gso, "{c:?}");
    assert_eq!(s.gro_batches > 0, server.offloads().gro, "{s:?}");
    // The TOS byte survives loopback: every packet's priority was known.
    assert_eq!(s.packets_with_level, s.packets_received, "{s:?}");
    assert_eq!(c.packets_with_level, c.packets_received, "{c:?}");
    server.close();
    assert_eq!(h.join().unwrap(), SIZES.len() as u64);
}

#[test]
fn echo__sizes_1b_to_8mb_are_byte_exact_with_offloads_forced_off() {
    let mut config = mtu_1500();
    config.gso = false;
    config.gro = false;
    let (server, h) = echo_server("127.0.0.1:0", config.clone());
    let client = Socket::bind_with("127.0.0.1:0", config).unwrap();
    for s in [&client, &server] {
        let o = s.offloads();
        assert!(!o.gso && !o.gro, "{o:?}");
    }
    check_echo_sizes(&client, server.local_addr(), SIZES);
    let (c, s) = (client.stats().transport, server.stats().transport);
    assert_eq!(c.gso_sends + s.gso_sends, 0);
    assert_eq!(c.gro_batches + s.gro_batches, 0);
    // Every packet went out as its own datagram.
    assert!(c.packets_sent > 8_000_000 / 1500, "{c:?}");
    server.close();
    assert_eq!(h.join().unwrap(), SIZES.len() as u64);
}

#[test]
fn echo__sizes_1b_to_8mb_are_byte_exact_with_the_loopback_mtu() {
    // The default MTU policy picks the loopback interface's MTU: 64 kB
    // packets, each its own datagram (no GSO batch holds two), with the
    // offloads on and off.
    for (gso, gro) in [(true, true), (false, false)] {
        let config = Config::default().with_gso(gso).with_gro(gro);
        let (server, h) = echo_server("127.0.0.1:0", config.clone());
        let client = Socket::bind_with("127.0.0.1:0", config).unwrap();
        assert_eq!(client.offloads().mtu, 65_535, "{:?}", client.offloads());
        assert_eq!(server.offloads().mtu, 65_535);
        check_echo_sizes(&client, server.local_addr(), LOOPBACK_SIZES);
        let (c, s) = (client.stats().transport, server.stats().transport);
        let bytes: usize = LOOPBACK_SIZES.iter().sum();
        // Requests and echoes in 64 kB packets (plus a few control
        // packets), not 1 500-byte ones.
        assert!(c.packets_sent < (bytes / 20_000) as u64, "{c:?}");
        assert!(s.packets_sent < (bytes / 20_000) as u64, "{s:?}");
        assert_eq!(c.bad_datagrams + s.bad_datagrams, 0);
        server.close();
        assert_eq!(h.join().unwrap(), LOOPBACK_SIZES.len() as u64);
    }
}

#[test]
fn echo__a_64k_mtu_client_and_a_1500_byte_server_interoperate() {
    let (server, h) = echo_server("127.0.0.1:0", mtu_1500().with_gro(false));
    let client = Socket::bind("127.0.0.1:0").unwrap();
    check_echo_sizes(&client, server.local_addr(), LOOPBACK_SIZES);
    let (c, s) = (client.stats().transport, server.stats().transport);
    assert_eq!(
        (client.offloads().mtu, server.offloads().mtu),
        (65_535, 1500)
    );
    assert_eq!(c.bad_datagrams + s.bad_datagrams, 0);
    server.close();
    assert_eq!(h.join().unwrap(), LOOPBACK_SIZES.len() as u64);
}

#[test]
fn echo__ipv6_loopback() {
    let (server, h) = echo_server("[::1]:0", Config::default());
    let client = Socket::bind("[::1]:0").unwrap();
    check_echo_sizes(&client, server.local_addr(), &[1, 5000, 300_000]);
    let s = server.stats().transport;
    assert_eq!(s.packets_with_level, s.packets_received, "{s:?}");
    server.close();
    assert_eq!(h.join().unwrap(), 3);
}

#[test]
fn dual_stack_server__sees_ipv4_clients_as_ipv4() {
    let server = server_socket("[::]:0");
    let port = server.local_addr().port();
    let client = Socket::bind("127.0.0.1:0").unwrap();
    let dest: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let call = client.start_call_timeout(dest, &b"v4"[..], HANG).unwrap();
    let req = server.recv_request().unwrap();
    // The kernel reports ::ffff:127.0.0.1; the endpoint must see IPv4.
    assert_eq!(req.peer, client.local_addr());
    server.reply(req.peer, req.id, &b"ok"[..]).unwrap();
    assert_eq!(&call.wait().unwrap()[..], b"ok");
}

#[test]
fn one_socket__1000_outstanding_calls() {
    // Patient timers: see common::patient.
    let (server, h) = echo_server("127.0.0.1:0", patient(Config::default()));
    let client = Socket::bind_with("127.0.0.1:0", patient(Config::default())).unwrap();
    let dest = server.local_addr();
    let calls: Vec<_> = (0..1000u64)
        .map(|i| {
            let len = 1 + (i as usize * 37) % 3000;
            let call = client
                .start_call_timeout(dest, pattern(len, i), HANG)
                .unwrap();
            (call, len, i)
        })
        .collect();
    let mut ids: Vec<u64> = calls.iter().map(|(c, ..)| c.id()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 1000, "ids are unique");
    assert!(ids.iter().all(|id| id % 2 == 0), "client ids are even");
    for (call, len, i) in calls {
        let resp = call.wait().unwrap();
        assert!(resp[..] == pattern(len, i)[..], "call {i}");
    }
    server.close();
    assert_eq!(h.join().unwrap(), 1000);
}

#[test]
fn one_socket__shared_by_eight_calling_threads() {
    // Exercises the driver hand-off: threads park while another drives.
    let (server, h) = echo_server("127.0.0.1:0", Config::default());
    let client = Socket::bind("127.0.0.1:0").unwrap();
    let dest = server.local_addr();
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let c = client.clone();
            std::thread::spawn(move || {
                for i in 0..200u64 {
                    let len = 1 + ((t * 1000 + i) as usize * 131) % 20_000;
                    let req = pattern(len, t << 32 | i);
                    let resp = c.call_timeout(dest, req.clone(), HANG).unwrap();
                    assert!(resp[..] == req[..], "thread {t} call {i}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    server.close();
    assert_eq!(h.join().unwrap(), 1600);
}

#[test]
fn one_socket__is_client_and_server_at_once() {
    let mut config = Config::default();
    config.server = Some(true);
    let a = Socket::bind_with("127.0.0.1:0", config.clone()).unwrap();
    let b = Socket::bind_with("127.0.0.1:0", config).unwrap();
    // Each calls the other, and serves the other's call while its own is
    // outstanding.
    let a_call = a
        .start_call_timeout(b.local_addr(), &b"from a"[..], HANG)
        .unwrap();
    let b_call = b
        .start_call_timeout(a.local_addr(), &b"from b"[..], HANG)
        .unwrap();
    for (me, other) in [(&a, &b), (&b, &a)] {
        let req = me.recv_request().unwrap();
        assert_eq!(req.peer, other.local_addr());
        let mut answer = b"re: ".to_vec();
        answer.extend_from_slice(&req.body);
        me.reply(req.peer, req.id, answer).unwrap();
    }
    assert_eq!(&a_call.wait().unwrap()[..], b"re: from a");
    assert_eq!(&b_call.wait().unwrap()[..], b"re: from b");
}

#[test]
fn client_socket__does_not_accept_requests_unless_asked() {
    let client = Socket::bind("127.0.0.1:0").unwrap();
    let other = Socket::bind("127.0.0.1:0").unwrap();
    // The deadline is a safety net: the client-only socket refuses the
    // request and the call fails at once.
    let r = other.call_timeout(client.local_addr(), &b"hi"[..], HANG);
    assert!(matches!(r, Err(Error::NotServer)), "{r:?}");
    // (Issue 12.5: asking a client-only socket for requests is an error,
    // not "none yet".)
    assert!(matches!(client.try_recv_request(), Err(Error::ClientOnly)));
    assert!(
        client.stats().proto.refused_not_server >= 1,
        "the endpoint refused it"
    );
}

#[test]
fn call__to_a_port_without_server_fails_fast_with_port_unreachable() {
    for ip in ["127.0.0.1", "::1"] {
        let client = Socket::bind(SocketAddr::new(ip.parse().unwrap(), 0)).unwrap();
        let dest = free_port(ip);
        // The deadline is a safety net only: without the ICMP error the
        // call would fail with DeadlineExceeded instead.
        let r = client.call_timeout(dest, &b"anyone?"[..], HANG);
        assert!(matches!(r, Err(Error::PortUnreachable)), "{ip}: {r:?}");
        let e: std::io::Error = r.unwrap_err().into();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(client.stats().transport.queued_errors >= 1);
    }
}

#[test]
fn call__deadline_expires_when_the_server_never_answers() {
    let server = server_socket("127.0.0.1:0");
    let client = Socket::bind("127.0.0.1:0").unwrap();
    let r = client.call_timeout(
        server.local_addr(),
        &b"hello"[..],
        Duration::from_millis(50),
    );
    assert!(matches!(r, Err(Error::DeadlineExceeded)), "{r:?}");
    // The server did get it (and may still answer: the client forgot the
    // RPC, so the answer is dropped).
    let req = server.recv_request_timeout(HANG).unwrap().unwrap();
    server.reply(req.peer, req.id, &b"too late"[..]).unwrap();
    // The socket keeps working for later calls.
    let s2 = server.clone();
    let h = std::thread::spawn(move || {
        let r = s2.recv_request().unwrap();
        s2.reply(r.peer, r.id, r.body).unwrap();
    });
    assert_eq!(
        &client
            .call_timeout(server.local_addr(), &b"again"[..], HANG)
            .unwrap()[..],
        b"again"
    );
    h.join().unwrap();
}

#[test]
fn abort__from_another_thread_fails_the_waiter_with_aborted() {
    let server = server_socket("127.0.0.1:0");
    let client = Socket::bind("127.0.0.1:0").unwrap();
    let call = client
        .start_call_timeout(server.local_addr(), &b"x"[..], HANG)
        .unwrap();
    let id = call.id();
    let waiter = std::thread::spawn(move || call.wait());
    // Whether the waiter is already parked or not, it must see Aborted.
    assert!(client.abort(id));
    assert!(matches!(waiter.join().unwrap(), Err(Error::Aborted)));
    assert!(!client.abort(id), "second abort finds nothing");
}

#[test]
fn close__fails_outstanding_calls_and_later_operations() {
    let server = server_socket("127.0.0.1:0");
    let client = Socket::bind("127.0.0.1:0").unwrap();
    let call = client.start_call(server.local_addr(), &b"x"[..]).unwrap();
    let (tx, rx) = mpsc::channel();
    let c2 = client.clone();
    let waiter = std::thread::spawn(move || {
        tx.send(()).unwrap();
        call.wait()
    });
    rx.recv().unwrap();
    c2.close();
    assert!(matches!(waiter.join().unwrap(), Err(Error::Closed)));
    assert!(matches!(
        client.call(server.local_addr(), &b"y"[..]),
        Err(Error::Closed)
    ));
    assert!(matches!(client.recv_request(), Err(Error::Closed)));
}

#[test]
fn send__refuses_bad_messages() {
    let mut config = Config::default();
    config.proto.max_message_length = 1000;
    let client = Socket::bind_with("127.0.0.1:0", config).unwrap();
    let dest = free_port("127.0.0.1");
    let r = client.start_call(dest, vec![0u8; 1001]);
    assert!(
        matches!(
            r,
            Err(Error::MessageTooLong {
                len: 1001,
                max: 1000
            })
        ),
        "{r:?}"
    );
    let r = client.start_call(dest, Vec::new());
    assert!(matches!(r, Err(Error::EmptyMessage)), "{r:?}");
    let r = client.start_call("[::1]:80", &b"x"[..]);
    assert!(matches!(r, Err(Error::AddressFamily)), "{r:?}");
    let r = client.reply("127.0.0.1:9".parse().unwrap(), 7, &b"x"[..]);
    assert!(matches!(r, Err(Error::UnknownRpc)), "{r:?}");
}

#[test]
fn background_thread__finishes_a_long_response_while_the_server_is_away() {
    // The server replies with 2 MB (far beyond the unscheduled bytes, so the
    // client's grants must be processed) and then waits on a channel, not
    // in the socket: only the background thread can make progress.
    let server = server_socket("127.0.0.1:0");
    let client = Socket::bind("127.0.0.1:0").unwrap();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let s = server.clone();
    let h = std::thread::spawn(move || {
        let r = s.recv_request().unwrap();
        s.reply(r.peer, r.id, pattern(2_000_000, 9)).unwrap();
        done_rx.recv().unwrap();
    });
    let resp = client
        .call_timeout(server.local_addr(), &b"big please"[..], HANG)
        .unwrap();
    assert!(resp[..] == pattern(2_000_000, 9)[..]);
    done_tx.send(()).unwrap();
    h.join().unwrap();
}

#[test]
fn no_background_thread__a_long_response_stalls_while_the_server_is_away() {
    // The counterpart of the test above: without the background thread and
    // with the server outside the socket, nothing processes the grants.
    let mut config = Config::default();
    config.background = None;
    config.server = Some(true);
    let server = Socket::bind_with("127.0.0.1:0", config).unwrap();
    let client = Socket::bind("127.0.0.1:0").unwrap();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let s = server.clone();
    let h = std::thread::spawn(move || {
        let r = s.recv_request().unwrap();
        s.reply(r.peer, r.id, pattern(2_000_000, 9)).unwrap();
        done_rx.recv().unwrap();
        // Back in the socket: the response completes.
        let _ = s.recv_request_timeout(Duration::from_secs(60));
    });
    let mut call = client
        .start_call(server.local_addr(), &b"big please"[..])
        .unwrap();
    assert!(call.wait_timeout(Duration::from_millis(200)).is_none());
    done_tx.send(()).unwrap();
    let resp = call
        .wait_timeout(HANG)
        .expect("completes once the server is back")
        .unwrap();
    assert_eq!(resp.len(), 2_000_000);
    server.close();
    h.join().unwrap();
}

#[test]
fn tos__carries_the_priority_in_every_packet() {
    // A plain UDP socket plays the server and reads the TOS / traffic class
    // of the Homa request through IP_RECVTOS / IPV6_RECVTCLASS.
    for ip in ["127.0.0.1", "::1"] {
        let mut raw = common::TosReader::bind(SocketAddr::new(ip.parse().unwrap(), 0));
        let mut config = Config::default();
        config.proto.priority_map = [5; 8];
        let client = Socket::bind_with(SocketAddr::new(ip.parse().unwrap(), 0), config).unwrap();
        let _call = client
            .start_call(raw.sock.local_addr().unwrap(), pattern(5000, 1))
            .unwrap();
        for _ in 0..4 {
            let (_, _, tos) = raw.recv();
            assert_eq!(tos, 5 << 5, "{ip}");
        }
    }
}

#[test]
fn send_cap__start_call_waits_for_room_and_gets_it_back_on_abort() {
    // The protocol caps unfinished outgoing bytes per socket; a silent
    // server makes the cap fill deterministically.
    let server = server_socket("127.0.0.1:0");
    let mut config = Config::default();
    config.proto.max_tx_bytes_per_socket = 120_000;
    let client = Socket::bind_with("127.0.0.1:0", config).unwrap();
    let dest = server.local_addr();
    let a = client.start_call(dest, pattern(50_000, 1)).unwrap();
    let _b = client.start_call(dest, pattern(50_000, 2)).unwrap();
    // A third would exceed the cap: it waits, here until its deadline.
    let r = client.start_call_timeout(dest, pattern(50_000, 3), Duration::from_millis(30));
    assert!(matches!(r, Err(Error::DeadlineExceeded)), "{r:?}");
    assert_eq!(client.stats().transport.send_cap_waits, 1);
    // Aborting one frees room: a waiting sender gets through.
    let c2 = client.clone();
    let waiter = std::thread::spawn(move || c2.start_call_timeout(dest, pattern(50_000, 4), HANG));
    while client.stats().transport.send_cap_waits < 2 {
        std::thread::yield_now();
    }
    a.abort();
    let _d = waiter.join().unwrap().unwrap();
    // And the request really went out.
    loop {
        let req = server.recv_request_timeout(HANG).unwrap().unwrap();
        if req.body[..] == pattern(50_000, 4)[..] {
            break;
        }
    }
}

#[test]
fn send_cap__many_large_calls_from_one_thread_all_complete() {
    let mut config = Config::default();
    config.proto.max_tx_bytes_per_socket = 120_000;
    let client = Socket::bind_with("127.0.0.1:0", config).unwrap();
    // The server answers request k only once the client has had to wait
    // k + 1 times: so the client, not the scheduler, decides whether a
    // call found room (on a loaded machine an eager server freed room
    // before the next call and the count below depended on timing).
    let server = common::server_socket("127.0.0.1:0");
    let (s, c) = (server.clone(), client.clone());
    let h = std::thread::spawn(move || {
        for k in 0..20u64 {
            let r = s.recv_request_timeout(HANG).unwrap().expect("request");
            if k < 18 {
                let give_up = std::time::Instant::now() + HANG;
                while c.stats().transport.send_cap_waits < k + 1 {
                    assert!(std::time::Instant::now() < give_up, "call {k} never waited");
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            s.reply(r.peer, r.id, r.body).unwrap();
        }
    });
    let calls: Vec<_> = (0..20u64)
        .map(|i| {
            client
                .start_call_timeout(server.local_addr(), pattern(50_000, i), HANG)
                .unwrap()
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        assert!(call.wait().unwrap()[..] == pattern(50_000, i as u64)[..]);
    }
    // Only two 50 kB requests fit under the cap at once.
    assert!(client.stats().transport.send_cap_waits >= 18 - 2);
    h.join().unwrap();
    assert_eq!(server.metrics().proto.stats.requests_delivered, 20);
}
