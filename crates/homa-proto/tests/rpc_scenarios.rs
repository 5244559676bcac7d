//! Scenario tests of complete RPCs on the deterministic in-memory network:
//! many hosts, all message sizes, reordering, duplication, and the
//! unknown-RPC rules.
#![allow(non_snake_case)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use homa_proto::testnet::{Limits, Verdict};
use homa_proto::wire::{Body, PacketType, Repr, ResendHeader, UnknownStatus};
use homa_proto::{Config, Event, Rng};

/// Sizes at every boundary that matters: packet and unscheduled limits,
/// and one above and below each.
fn boundary_sizes(config: &Config) -> Vec<usize> {
    let seg = config.max_seg_data(false) as usize;
    let unsched = config.unsched_bytes as usize;
    let unsched_pkts = unsched.div_ceil(seg) * seg;
    let mut v = vec![1, 2, 100];
    for base in [seg, 2 * seg, 10 * seg, unsched, unsched_pkts, 2 * unsched] {
        v.extend([base - 1, base, base + 1]);
    }
    v.extend([1_000_000, 10 << 20, (10 << 20) - 1]);
    v
}

fn mixed_plan(seed: u64, hosts: usize, count: usize, config: &Config) -> Vec<Planned> {
    let mut rng = Rng::new(seed);
    let mut sizes = boundary_sizes(config);
    while sizes.len() < count {
        // Mostly small, some large: log-uniform pieces up to 10 MB.
        let max_log = if rng.chance(0.03) { 7.0 } else { 5.0 };
        let len = 10f64.powf(rng.next_f64() * max_log) as usize;
        sizes.push(len.clamp(1, 10_000_000));
    }
    sizes
        .into_iter()
        .enumerate()
        .map(|(i, len)| {
            let client = i % hosts;
            let server = rng.below(hosts as u64) as usize;
            Planned {
                client,
                server,
                len,
                tag: rng.next_u64() ^ i as u64,
            }
        })
        .collect()
}

#[test]
fn four_hosts__thousand_rpcs_all_sizes_byte_exact() {
    let config = Config::default();
    let mut net = network(1, 4, &config);
    let plan = mixed_plan(2, 4, 1000, &config);
    let out = run_workload(&mut net, &plan, 100, Limits::default());
    assert_eq!(out.completed, 1000);
    eprintln!("bytes delivered in responses: {}", out.bytes);
    assert!(
        out.bytes > 30_000_000,
        "the plan includes several 10 MB messages"
    );
    assert!(out.failed.is_empty());
    assert_eq!(out.served.len(), 1000);
    assert!(
        out.served.values().all(|&n| n == 1),
        "a request was served twice"
    );
    // Every multi-packet message needed no retransmission on a clean network.
    for h in 0..4 {
        assert_eq!(net.endpoint(h).stats().data_retransmitted, 0);
        assert_eq!(net.endpoint(h).stats().malformed, 0);
    }
}

#[test]
fn hundred_outstanding_per_client__all_complete() {
    let config = Config::default();
    let mut net = network(3, 2, &config);
    let plan: Vec<Planned> = (0..100)
        .map(|i| Planned {
            client: 0,
            server: 1,
            len: 1 + i * 997,
            tag: i as u64,
        })
        .collect();
    // Window 100: all issued at once.
    let out = run_workload(&mut net, &plan, 100, Limits::default());
    assert_eq!(out.completed, 100);
}

#[test]
fn ipv6_hosts__rpcs_complete_with_smaller_segments() {
    let config = Config::default();
    let mut net = homa_proto::testnet::Network::new(4);
    net.add_host_at("fd00::1".parse().unwrap(), config.clone());
    net.add_host_at("fd00::2".parse().unwrap(), config.clone());
    let plan: Vec<Planned> = [1usize, 1396, 1397, 100_000]
        .iter()
        .enumerate()
        .map(|(i, &len)| Planned {
            client: 0,
            server: 1,
            len,
            tag: i as u64,
        })
        .collect();
    let out = run_workload(&mut net, &plan, 10, Limits::default());
    assert_eq!(out.completed, 4);
    assert_eq!(config.max_seg_data(true), 1396);
}

#[test]
fn reverse_order__message_reassembles() {
    let config = Config::default();
    let mut net = network(5, 2, &config);
    let server = net.addr(1, SERVER_PORT);
    net.endpoint(1).open_socket(SERVER_PORT).unwrap();
    let cport = net.endpoint(0).open_socket(0).unwrap();
    // Hold every DATA packet of the (fully unscheduled) request, then deliver
    // them in reverse.
    net.set_filter(|d, _| {
        if d.packet_type() == Some(PacketType::Data) {
            Verdict::Hold
        } else {
            Verdict::Deliver
        }
    });
    let req = pattern(9, 30_000);
    request(&mut net, 0, cport, server, req.clone());
    // The pacer spreads the packets over a few microseconds.
    net.advance(Duration::from_micros(100));
    assert_eq!(net.held(), 22);
    net.clear_filter();
    net.release_held(true);
    let mut got_response = false;
    net.run(Limits::default(), |net, h, ev| match ev {
        Event::Request {
            port,
            peer,
            id,
            data,
            ..
        } => {
            assert_eq!(data, req);
            respond(net, h, port, peer, id, response_for(&data));
        }
        Event::Response { data, .. } => {
            assert_eq!(data, response_for(&req));
            got_response = true;
        }
        other => panic!("{other:?}"),
    })
    .unwrap();
    assert!(got_response);
    assert_eq!(net.endpoint(1).stats().requests_delivered, 1);
    assert_eq!(net.endpoint(0).stats().responses_delivered, 1);
}

#[test]
fn random_order__many_rpcs_complete() {
    let config = Config::default();
    let mut net = network(6, 3, &config);
    // Every packet gets a random extra delay of up to 200 µs: heavy reordering.
    net.set_filter(|_, rng| Verdict::Delay(Duration::from_nanos(rng.below(200_000))));
    let plan = mixed_plan(7, 3, 200, &config)
        .into_iter()
        .map(|mut p| {
            p.len = p.len.min(2_000_000);
            p
        })
        .collect::<Vec<_>>();
    let out = run_workload(&mut net, &plan, 20, Limits::default());
    assert_eq!(out.completed, 200);
    assert!(out.served.values().all(|&n| n == 1));
}

#[test]
fn duplicated_packets__each_request_served_once() {
    let config = Config::default();
    let mut net = network(8, 3, &config);
    net.set_filter(|_, rng| {
        if rng.chance(0.3) {
            Verdict::Duplicate
        } else {
            Verdict::Deliver
        }
    });
    let plan = mixed_plan(9, 3, 300, &config)
        .into_iter()
        .map(|mut p| {
            p.len = p.len.min(1_000_000);
            p
        })
        .collect::<Vec<_>>();
    let out = run_workload(&mut net, &plan, 30, Limits::default());
    assert_eq!(out.completed, 300);
    assert!(out.served.values().all(|&n| n == 1), "duplicate execution");
    let dups: u64 = (0..3).map(|h| net.endpoint(h).stats().duplicate_data).sum();
    assert!(
        dups > 0,
        "the filter duplicated DATA, the endpoints must notice"
    );
}

#[test]
fn resend_for_unknown_server_rpc__answered_with_rpc_unknown() {
    let config = Config::default();
    let mut net = network(10, 2, &config);
    net.endpoint(1).open_socket(SERVER_PORT).unwrap();
    let client = net.addr(0, 0x9000);
    let server = net.addr(1, SERVER_PORT);
    // Capture what the server sends.
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let s2 = seen.clone();
    net.set_filter(move |d, _| {
        s2.borrow_mut().push(d.clone());
        Verdict::Drop
    });
    let resend = Repr {
        sport: 0x9000,
        dport: SERVER_PORT,
        sender_id: 1234, // client id (even)
        incarnation: 0,
        body: Body::Resend(ResendHeader {
            offset: 0,
            length: 100,
            priority: Some(7),
        }),
    };
    // Bypass the filter for the injected packet by delivering directly.
    let now = net.now();
    net.endpoint(1)
        .handle_datagram(now, client, &resend.to_vec());
    net.flush();
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1);
    let reply = Repr::parse_with_payload(&seen[0].data).unwrap().0;
    assert!(
        matches!(reply.body, Body::RpcUnknown(u) if matches!(u.status, UnknownStatus::Uptime(_))),
        "{reply}"
    );
    let server_incarnation = net.endpoint(1).incarnation();
    assert_eq!(
        reply.incarnation, server_incarnation,
        "the server says who it is"
    );
    assert_eq!(reply.sport, SERVER_PORT);
    assert_eq!(reply.dport, 0x9000);
    assert_eq!(reply.sender_id, 1235, "server's id for the rpc");
    assert_eq!(seen[0].dst, client);
    assert_eq!(seen[0].src, server);
    assert_eq!(net.endpoint(1).rpc_count(), 0);
}

#[test]
fn unknown_client_rpc__data_grant_busy_dropped_and_counted() {
    let config = Config::default();
    let mut net = network(11, 2, &config);
    let cport = net.endpoint(0).open_socket(0).unwrap();
    let server = net.addr(1, SERVER_PORT);
    let now = net.now();
    for body in [
        Body::Data(homa_proto::wire::DataHeader {
            message_length: 10,
            incoming: 10,
            ..Default::default()
        }),
        Body::Grant(homa_proto::wire::GrantHeader {
            offset: 1,
            priority: 0,
        }),
        Body::Busy,
        Body::RpcUnknown(Default::default()),
    ] {
        let repr = Repr {
            sport: SERVER_PORT,
            dport: cport,
            sender_id: 777, // odd: server's id for client rpc 776
            incarnation: 0,
            body,
        };
        let mut bytes = repr.to_vec();
        if matches!(body, Body::Data(_)) {
            bytes.extend_from_slice(&[0; 10]);
        }
        net.endpoint(0).handle_datagram(now, server, &bytes);
    }
    net.flush();
    let s = net.endpoint(0).stats();
    assert_eq!(s.unknown_rpc, 4);
    assert_eq!(s.sent.total_packets(), 0, "nothing is sent in reply");
    assert_eq!(net.in_flight(), 0);
}

#[test]
fn grants__data_beyond_unscheduled_waits_for_grants() {
    let config = Config::default();
    let (mut net, cport, server) = client_and_server(12, &config);
    net.set_filter(|d, _| {
        if d.packet_type() == Some(PacketType::Grant) {
            Verdict::Drop
        } else {
            Verdict::Deliver
        }
    });
    let req = pattern(1, 1_000_000);
    request(&mut net, 0, cport, server, req.clone());
    // Before any timer could fire, only the unscheduled packets went out.
    net.advance(config.resend_after / 2);
    let seg = config.max_seg_data(false) as u64;
    let unsched_pkts = (config.unsched_bytes as u64).div_ceil(seg);
    assert_eq!(
        net.endpoint(0).stats().sent.packets_of(PacketType::Data),
        unsched_pkts,
        "only the unscheduled packets go out without grants"
    );
    assert!(net.endpoint(1).stats().sent.packets_of(PacketType::Grant) > 0);
    // Every GRANT is lost, but the receiver's RESEND for granted bytes tells
    // the sender what was granted (docs/protocol.md, "Timers"): the request completes.
    let mut delivered = false;
    let mut answered = false;
    net.run(Limits::default(), |net, h, ev| match ev {
        Event::Request {
            port,
            peer,
            id,
            data,
            ..
        } => {
            assert_eq!(h, 1);
            assert_eq!(data, req);
            delivered = true;
            respond(net, h, port, peer, id, Bytes::from_static(b"ok"));
        }
        Event::Response { data, .. } => {
            assert_eq!(&data[..], b"ok");
            answered = true;
        }
        other => panic!("{other:?}"),
    })
    .unwrap();
    assert!(delivered && answered);
    assert!(net.endpoint(1).stats().resends_silence > 0);
}

#[test]
fn acks__server_state_freed_by_piggybacked_and_explicit_acks() {
    let config = Config::default();
    let mut net = network(13, 2, &config);
    let plan: Vec<Planned> = (0..50)
        .map(|i| Planned {
            client: 0,
            server: 1,
            len: 100,
            tag: i,
        })
        .collect();
    // One at a time: each new request piggybacks the ack of the previous
    // one; the last is freed by NEED_ACK and the client's ACK.
    let out = run_workload(&mut net, &plan, 1, Limits::default());
    assert_eq!(out.completed, 50);
    let server = net.endpoint(1).stats().clone();
    assert_eq!(server.server_rpcs_acked, 50);
    assert_eq!(server.need_acks, 1, "only the last rpc needed NEED_ACK");
    assert_eq!(net.endpoint(0).stats().sent.packets_of(PacketType::Ack), 1);
    assert_eq!(net.endpoint(1).rpc_count(), 0);
    assert_eq!(net.endpoint(0).rpc_count(), 0);
}

#[test]
fn acks__sixth_pending_ack_sends_ack_packet() {
    let config = Config::default();
    let mut net = network(14, 2, &config);
    let plan: Vec<Planned> = (0..6)
        .map(|i| Planned {
            client: 0,
            server: 1,
            len: 100,
            tag: i,
        })
        .collect();
    // All six in flight at once: no later DATA to piggyback on; the sixth
    // completion flushes all six in one ACK before any NEED_ACK.
    let out = run_workload(&mut net, &plan, 6, Limits::default());
    assert_eq!(out.completed, 6);
    assert_eq!(net.endpoint(0).stats().sent.packets_of(PacketType::Ack), 1);
    assert_eq!(net.endpoint(1).stats().need_acks, 0);
    assert_eq!(net.endpoint(1).stats().server_rpcs_acked, 6);
    assert_eq!(net.endpoint(1).rpc_count(), 0);
}

/// A 10-byte request from the client of `client_and_server`, served, the
/// network run until the response arrives and no further.
fn serve_one_until_its_response(
    net: &mut homa_proto::testnet::Network,
    cport: u16,
    server: std::net::SocketAddr,
) {
    request(net, 0, cport, server, pattern(1, 10));
    let got = std::cell::Cell::new(false);
    net.run_until(
        Limits::default(),
        |net, h, ev| match ev {
            Event::Request {
                port,
                peer,
                id,
                data,
                ..
            } => respond(net, h, port, peer, id, response_for(&data)),
            Event::Response { .. } => got.set(true),
            other => panic!("{other:?}"),
        },
        |_| got.get(),
    )
    .unwrap();
}

#[test]
fn need_ack__client_answers_with_pending_acks() {
    let config = Config::default();
    let (mut net, cport, server) = client_and_server(15, &config);
    serve_one_until_its_response(&mut net, cport, server);
    assert_eq!(net.endpoint(1).rpc_count(), 1, "server waits for the ack");
    assert_eq!(net.endpoint(1).stats().need_acks, 0);
    // Nothing else to send: after need_ack_after the server asks, and the
    // client's ACK frees the rpc.
    net.run(Limits::default(), |_, _, ev| panic!("{ev:?}"))
        .unwrap();
    assert_eq!(net.endpoint(1).stats().need_acks, 1);
    assert_eq!(net.endpoint(0).stats().sent.packets_of(PacketType::Ack), 1);
    assert_eq!(net.endpoint(1).rpc_count(), 0);
    assert_eq!(net.endpoint(1).stats().server_rpcs_acked, 1);
}

#[test]
fn need_ack__a_client_that_never_answers_draws_few_of_them() {
    // The client vanishes once its response arrived (or its address was
    // forged): the server asks for the ACK at growing intervals until it
    // gives up, a few packets rather than one per resend interval (a
    // forged request made the server a reflector: 189 NEED_ACKs toward the
    // claimed source for one 95-byte datagram).
    let config = Config::default();
    let (mut net, cport, server) = client_and_server(16, &config);
    let client = net.addr(0, cport);
    serve_one_until_its_response(&mut net, cport, server);
    net.set_filter(move |d, _| {
        if d.src == client {
            Verdict::Drop
        } else {
            Verdict::Deliver
        }
    });
    net.advance(config.timeout * 2);
    assert_eq!(net.endpoint(1).rpc_count(), 0);
    let s = net.endpoint(1).stats();
    assert_eq!(s.need_ack_given_up, 1);
    assert!(
        (3..=12).contains(&s.need_acks),
        "{} NEED_ACKs over the timeout",
        s.need_acks
    );
}

#[test]
fn send_request__rejects_empty_and_oversize() {
    let config = Config {
        max_message_length: 1000,
        ..Config::default()
    };
    let mut net = network(16, 2, &config);
    let cport = net.endpoint(0).open_socket(0).unwrap();
    let dest = net.addr(1, SERVER_PORT);
    let now = net.now();
    let ep = net.endpoint(0);
    assert_eq!(
        ep.send_request(now, cport, dest, Bytes::new()),
        Err(homa_proto::Error::EmptyMessage)
    );
    assert!(matches!(
        ep.send_request(now, cport, dest, Bytes::from(vec![0; 1001])),
        Err(homa_proto::Error::MessageTooLong {
            len: 1001,
            max: 1000
        })
    ));
    assert_eq!(
        ep.send_request(now, 0x7777, dest, Bytes::from_static(b"x")),
        Err(homa_proto::Error::NoSocket(0x7777))
    );
}

#[test]
fn one_packet_request__delivered_at_once_only_within_the_unscheduled_claim() {
    let mut server = homa_proto::Endpoint::new(Config::default(), 5).unwrap();
    server.open_socket(SERVER_PORT).unwrap();
    let client: std::net::SocketAddr = "10.0.0.1:40000".parse().unwrap();
    let now = homa_proto::Instant::ZERO;
    let incarnation = server.incarnation();
    let request = |sender_id: u64, incoming: u32| data_request(incarnation, sender_id, incoming);
    // Claiming no unscheduled bytes: the whole message in one packet is
    // still beyond what it may send, so it waits (buffer reserved) for a
    // grant instead of being delivered. (Its reservation includes what the
    // message will count once delivered.)
    let reserved = 10 + homa_proto::DELIVERED_OVERHEAD;
    server.handle_datagram(now, client, &request(1000, 0));
    assert_eq!(server.poll_event(), None);
    assert_eq!(server.stats().beyond_grant, 1);
    assert_eq!(server.rx_bytes(), reserved);
    // Within the claim: delivered at once, and no reassembly buffer stays
    // charged for it (the application holds the bytes now).
    server.handle_datagram(now, client, &request(1002, 10));
    match server.poll_event() {
        Some(Event::Request { id, data, .. }) => {
            assert_eq!(id, 1003);
            assert_eq!(&data[..], b"0123456789");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.rx_bytes(), reserved);
    assert_eq!(server.stats().requests_delivered, 1);
    assert_eq!(server.stats().rx_sizes.total(), 1);
}

/// A whole 10-byte request from port 40 000 to `SERVER_PORT`, bound to
/// the server's `incarnation`.
fn ten_byte_request(incarnation: u64, sender_id: u64) -> Vec<u8> {
    data_request(incarnation, sender_id, 10)
}

/// A 10-byte request in one packet that claims `incoming` unscheduled
/// bytes.
fn data_request(incarnation: u64, sender_id: u64, incoming: u32) -> Vec<u8> {
    let mut bytes = Repr {
        sport: 40_000,
        dport: SERVER_PORT,
        sender_id,
        incarnation,
        body: Body::Data(homa_proto::wire::DataHeader {
            message_length: 10,
            incoming,
            ..Default::default()
        }),
    }
    .to_vec();
    bytes.extend_from_slice(b"0123456789");
    bytes
}

#[test]
fn full_peer_table__strangers_do_not_buy_a_scan_each_and_get_in_once_a_peer_is_idle() {
    let config = Config {
        max_peers: 4,
        ..Config::default()
    };
    let mut server = homa_proto::Endpoint::new(config, 9).unwrap();
    server.open_socket(SERVER_PORT).unwrap();
    let incarnation = server.incarnation();
    let request = |sender_id: u64| ten_byte_request(incarnation, sender_id);
    let addr = |i: u32| -> std::net::SocketAddr {
        std::net::SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + i), 40_000))
    };
    let mut now = homa_proto::Instant::ZERO;
    // Four clients fill the table, each with a request the server holds.
    let mut held = Vec::new();
    for i in 1..=4 {
        server.handle_datagram(now, addr(i), &request(1000));
        match server.poll_event() {
            Some(Event::Request { id, port, .. }) => held.push((addr(i), id, port)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(server.peer_count(), 4);
    // A thousand strangers: all refused, and only the first pays for a scan.
    for i in 100..1100 {
        server.handle_datagram(now, addr(i), &request(2000));
    }
    assert_eq!(server.stats().peer_limit, 1000);
    assert_eq!(server.stats().peer_table_scans, 1);
    assert_eq!(server.peer_count(), 4);
    // One client's request is answered and acknowledged: its peer is idle.
    let (client, id, port) = held[0];
    server
        .send_response(now, port, client, id, bytes::Bytes::from_static(b"ok"))
        .unwrap();
    let mut buf = Vec::new();
    while server.poll_transmit(now, &mut buf).is_some() {}
    let ack = Repr {
        sport: 40_000,
        dport: SERVER_PORT,
        sender_id: 1000,
        incarnation,
        body: Body::Ack(Default::default()),
    };
    server.handle_datagram(now, client, &ack.to_vec());
    // Until the retry interval passes, strangers are still refused unscanned...
    now += core::time::Duration::from_millis(5);
    server.handle_datagram(now, addr(5000), &request(3000));
    assert_eq!(server.stats().peer_table_scans, 1);
    assert_eq!(server.stats().peer_limit, 1001);
    // ...after it, one scan collects the idle peer and the stranger gets in.
    now += core::time::Duration::from_millis(10);
    server.handle_datagram(now, addr(5001), &request(3000));
    assert_eq!(server.stats().peer_table_scans, 2);
    assert!(matches!(server.poll_event(), Some(Event::Request { .. })));
}

/// A full table of busy peers where peers go idle one at a time (a
/// stranger's RPC ends, a timed-out one is dropped): each forced
/// collection frees just one, and the next stranger took it, so without
/// a pause after a scan that leaves the table above its target every
/// stranger's datagram bought a scan of the whole table.
#[test]
fn full_peer_table__peers_going_idle_one_by_one_do_not_buy_a_scan_each() {
    let config = Config {
        max_peers: 100,
        ..Config::default()
    };
    let mut server = homa_proto::Endpoint::new(config, 9).unwrap();
    server.open_socket(SERVER_PORT).unwrap();
    let incarnation = server.incarnation();
    let request = |sender_id: u64| ten_byte_request(incarnation, sender_id);
    let ack = Repr {
        sport: 40_000,
        dport: SERVER_PORT,
        sender_id: 1000,
        incarnation,
        body: Body::Ack(Default::default()),
    }
    .to_vec();
    let addr = |i: u32| -> std::net::SocketAddr {
        std::net::SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + i), 40_000))
    };
    let now = homa_proto::Instant::ZERO;
    // A hundred clients fill the table, each with a request the server
    // holds.
    let mut held = std::collections::VecDeque::new();
    for i in 1..=100 {
        server.handle_datagram(now, addr(i), &request(1000));
        match server.poll_event() {
            Some(Event::Request { id, port, .. }) => held.push_back((addr(i), id, port)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(server.peer_count(), 100);
    let mut buf = Vec::new();
    // Fifty times, within one instant: one held request is answered and
    // acknowledged (its peer goes idle), then a stranger arrives.
    for i in 0..50 {
        let (client, id, port) = held.pop_front().unwrap();
        server
            .send_response(now, port, client, id, Bytes::from_static(b"ok"))
            .unwrap();
        while server.poll_transmit(now, &mut buf).is_some() {}
        server.handle_datagram(now, client, &ack);
        server.handle_datagram(now, addr(1000 + i), &request(2000));
        while server.poll_event().is_some() {}
    }
    assert!(server.peer_count() <= 100);
    assert_eq!(
        server.stats().peer_table_scans,
        1,
        "one scan, then none for PEER_ROOM_RETRY"
    );
}

/// Delivers every datagram `from` (at `from_addr`) sends to `to` (at
/// `to_addr`); returns how many there were.
fn pump_one_way(
    from: &mut homa_proto::Endpoint,
    from_addr: std::net::SocketAddr,
    to: &mut homa_proto::Endpoint,
    now: homa_proto::Instant,
) -> usize {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while let Some(t) = from.poll_transmit(now, &mut buf) {
        out.push((t.destination, buf[..t.size].to_vec()));
    }
    for (_, bytes) in &out {
        to.handle_datagram(now, from_addr, bytes);
    }
    out.len()
}

#[test]
fn server__same_id_from_two_clients_are_two_rpcs_each_answered_to_its_client() {
    // Two client endpoints with the same seed pick the same first RPC id;
    // the server keeps their requests apart by client address, answers
    // each to the right client, and frees each when its client acks,
    // whichever finishes first.
    for first_done in [0usize, 1] {
        let config = Config::default();
        let now = homa_proto::Instant::from_micros(1);
        let mut server = homa_proto::Endpoint::new(config.clone(), 11).unwrap();
        server.open_socket(100).unwrap();
        let srv: std::net::SocketAddr = "10.0.0.1:100".parse().unwrap();
        let mut clients = [
            homa_proto::Endpoint::new(config.clone(), 7).unwrap(),
            homa_proto::Endpoint::new(config.clone(), 7).unwrap(),
        ];
        let mut addrs = Vec::new();
        let mut ids = Vec::new();
        for (i, c) in clients.iter_mut().enumerate() {
            let port = c.open_socket(0).unwrap();
            addrs.push(std::net::SocketAddr::new(
                format!("10.0.0.{}", 2 + i).parse().unwrap(),
                port,
            ));
            c.assume_incarnation(now, srv, server.incarnation());
            let id = c
                .send_request(now, port, srv, pattern(i as u64, 100))
                .unwrap();
            ids.push(id);
        }
        assert_eq!(ids[0], ids[1], "same seed, same first id");
        assert_eq!(
            addrs[0].port(),
            addrs[1].port(),
            "same port: only the address differs"
        );
        for (c, a) in clients.iter_mut().zip(&addrs) {
            assert_eq!(pump_one_way(c, *a, &mut server, now), 1);
        }
        let mut requests = Vec::new();
        while let Some(e) = server.poll_event() {
            if let Event::Request { peer, id, data, .. } = e {
                requests.push((peer, id, data));
            }
        }
        assert_eq!(requests.len(), 2, "two RPCs, not one: {requests:?}");
        assert_eq!(server.rpc_count(), 2);
        // Answer in the order that frees the chain's first or second link first.
        let order = if first_done == 0 { [0, 1] } else { [1, 0] };
        for &i in &order {
            let (peer, id, data) = requests.iter().find(|r| r.0 == addrs[i]).unwrap().clone();
            assert_eq!(
                data,
                pattern(i as u64, 100),
                "client {i}'s request under its address"
            );
            server
                .send_response(now, 100, peer, id, response_for(&data))
                .unwrap();
            // What the server sends (the response, and CUTOFFS for clients
            // that have not heard them) goes to the client it names.
            let mut buf = Vec::new();
            while let Some(t) = server.poll_transmit(now, &mut buf) {
                let c = addrs.iter().position(|a| *a == t.destination).unwrap();
                clients[c].handle_datagram(now, srv, &buf[..t.size]);
            }
            match clients[i].poll_event() {
                Some(Event::Response {
                    id: rid, data: r, ..
                }) => {
                    assert_eq!((rid, r), (ids[i], response_for(&pattern(i as u64, 100))))
                }
                other => panic!("client {i}: {other:?}"),
            }
        }
        // The server's RPCs end when the clients' acks arrive; each ack
        // frees its own client's RPC and no other.
        for (n, &i) in order.iter().enumerate() {
            let later = homa_proto::Instant::from_micros(2);
            let id = clients[i]
                .send_request(later, addrs[i].port(), srv, pattern(9, 10))
                .unwrap();
            assert_ne!(id, ids[i]);
            assert!(pump_one_way(&mut clients[i], addrs[i], &mut server, later) >= 1);
            // The acked RPC is gone, the other's is still there (or gone
            // too once both acked); the new request makes one more.
            let left_unacked = 1 - n;
            assert_eq!(
                server.rpc_count(),
                left_unacked + 1 + n,
                "after client {i}'s ack"
            );
        }
    }
}
