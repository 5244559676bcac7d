//! Flow control and output commit on the deterministic network: a socket's
//! receive-memory budget slows senders instead of growing memory, the send
//! cap blocks and resumes, and plug/release epochs hold and release exactly
//! the right messages.
#![allow(non_snake_case)]

mod common;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use homa_proto::testnet::{Limits, Links, Network};
use homa_proto::{Config, Event, Instant, Rng};

#[test]
fn slow_reader__twenty_senders_memory_stays_under_budget() {
    let budget = 2 << 20;
    let config = Config {
        socket_rx_budget: budget,
        max_message_length: 1 << 20,
        link_mbps: 10_000,
        ..Config::default()
    };
    let mut net = network(21, 21, &config);
    net.set_links(Links {
        rate_bps: 10_000_000_000,
        hop_delay: Duration::from_micros(1),
    });
    net.endpoint(0).open_socket(SERVER_PORT).unwrap();
    let mut rng = Rng::new(5);
    // 20 senders, 10 messages each, 1 B to 600 KB, all sent at once.
    let mut expected: HashMap<(u16, u64), Bytes> = HashMap::new();
    for s in 1..=20 {
        let port = net.endpoint(s).open_socket(0).unwrap();
        for _ in 0..10 {
            let len = (10f64.powf(rng.next_f64() * 5.78)) as usize + 1;
            let req = pattern(rng.next_u64(), len);
            let now = net.now();
            let dest = net.addr(0, SERVER_PORT);
            let id = net
                .endpoint(s)
                .send_request(now, port, dest, req.clone())
                .unwrap();
            expected.insert((s as u16, id), req);
        }
    }
    // The application reads one message every 100 µs and holds the rest.
    let mut unread: VecDeque<(std::net::SocketAddr, u64, Bytes)> = VecDeque::new();
    let mut next_read = Instant::ZERO;
    let mut max_used = 0u64;
    let mut read = 0usize;
    let mut responses = 0usize;
    let deadline = Instant::ZERO + Duration::from_secs(30);
    while responses < 200 {
        assert!(
            net.now() < deadline,
            "stalled: {read} read, {responses} answered"
        );
        if !net.step() {
            net.advance(Duration::from_micros(100));
        }
        max_used = max_used.max(net.endpoint(0).rx_used(SERVER_PORT));
        for ev in net.take_events(0) {
            if let Event::Request { peer, id, data, .. } = ev {
                unread.push_back((peer, id, data));
            }
        }
        if net.now() >= next_read {
            if let Some((peer, id, data)) = unread.pop_front() {
                let sender = (peer
                    .ip()
                    .to_string()
                    .rsplit('.')
                    .next()
                    .unwrap()
                    .parse::<u16>()
                    .unwrap())
                    - 1;
                let want = expected.remove(&(sender, id ^ 1)).expect("known request");
                assert!(data == want, "message from {peer} id {id} differs");
                drop(data);
                read += 1;
                respond(
                    &mut net,
                    0,
                    SERVER_PORT,
                    peer,
                    id,
                    Bytes::from_static(b"ok"),
                );
            }
            next_read = net.now() + Duration::from_micros(100);
        }
        for s in 1..=20 {
            for ev in net.take_events(s) {
                match ev {
                    Event::Response { .. } => responses += 1,
                    other => panic!("sender {s}: {other:?}"),
                }
            }
        }
    }
    assert!(expected.is_empty());
    let stats = net.endpoint(0).stats().clone();
    eprintln!(
        "slow reader: peak receive memory {} KiB (budget {} KiB); {} messages waited for memory, {} evicted; {} grants deferred",
        max_used / 1024,
        budget / 1024,
        stats.messages_waited,
        stats.evictions,
        stats.grants_deferred_memory
    );
    assert!(max_used <= budget, "{max_used} > {budget}");
    assert!(stats.messages_waited > 0, "the budget was actually reached");
    assert_eq!(
        stats.messages_waited + stats.evictions,
        stats.messages_admitted
    );
    for s in 1..=20 {
        assert_eq!(net.endpoint(s).stats().timeouts, 0);
    }
}

/// Hosts 1 and 2 each send `per` requests of `len` bytes to host 0's
/// server socket; returns the requests.
fn requests_to_host_0(net: &mut Network, per: u64, len: usize) -> Vec<Bytes> {
    let mut reqs = Vec::new();
    for s in 1..=2 {
        let port = net.endpoint(s).open_socket(0).unwrap();
        for i in 0..per {
            let req = pattern(s as u64 * 1000 + i, len);
            let now = net.now();
            let dest = net.addr(0, SERVER_PORT);
            net.endpoint(s)
                .send_request(now, port, dest, req.clone())
                .unwrap();
            reqs.push(req);
        }
    }
    reqs
}

/// Runs the network for 300 ms while host 0's application takes nothing:
/// checks that its receive memory never exceeds `most` and that no sender
/// times out, and returns the events it would have read.
fn stopped_reader(net: &mut Network, most: u64) -> Vec<Event> {
    let mut held = Vec::new();
    let stop = net.now() + Duration::from_millis(300);
    while net.now() < stop {
        if !net.step() {
            break;
        }
        let used = net.endpoint(0).rx_used(SERVER_PORT);
        assert!(used <= most, "{used} bytes held");
        held.extend(net.take_events(0));
    }
    assert_eq!(
        net.endpoint(1).stats().timeouts + net.endpoint(2).stats().timeouts,
        0
    );
    held
}

/// Host 0's application starts reading: answers the `held` events, then
/// every request until the network is quiet. Checks that exactly `reqs`
/// arrived, each once and byte-exact, and that no memory stays held.
fn reader_resumes(net: &mut Network, held: Vec<Event>, reqs: Vec<Bytes>) {
    let mut seen: Vec<Bytes> = Vec::new();
    let answer = |net: &mut Network, ev: Event, seen: &mut Vec<Bytes>| {
        if let Event::Request {
            port,
            peer,
            id,
            data,
            ..
        } = ev
        {
            seen.push(Bytes::copy_from_slice(&data));
            drop(data);
            respond(net, 0, port, peer, id, Bytes::from_static(b"k"));
        }
    };
    for ev in held {
        answer(net, ev, &mut seen);
    }
    net.run(Limits::default(), |net, h, ev| {
        if h == 0 {
            answer(net, ev, &mut seen);
        }
    })
    .unwrap();
    seen.sort();
    let mut want = reqs;
    want.sort();
    assert_eq!(seen, want);
    assert_eq!(
        net.endpoint(1).stats().timeouts + net.endpoint(2).stats().timeouts,
        0
    );
    assert_eq!(net.endpoint(0).rx_used(SERVER_PORT), 0);
}

#[test]
fn reader_that_stops__senders_wait_then_finish() {
    let config = Config {
        socket_rx_budget: 1 << 20,
        max_message_length: 1 << 20,
        ..Config::default()
    };
    let mut net = network(22, 3, &config);
    net.endpoint(0).open_socket(SERVER_PORT).unwrap();
    let reqs = requests_to_host_0(&mut net, 6, 400_000);
    // Memory stays bounded and the senders are held back, not failed.
    let held = stopped_reader(&mut net, 1 << 20);
    assert!(held.len() < 12, "not everything fits the budget");
    reader_resumes(&mut net, held, reqs);
}

#[test]
fn tiny_messages__count_against_the_budget_and_all_arrive() {
    // 64 KiB hold at most 63 messages of 10 bytes with their overhead.
    let budget = 64 << 10;
    let config = Config {
        socket_rx_budget: budget,
        max_rx_bytes_per_peer: budget,
        max_message_length: 32 << 10,
        ..Config::default()
    };
    let mut net = network(24, 3, &config);
    net.endpoint(0).open_socket(SERVER_PORT).unwrap();
    let reqs = requests_to_host_0(&mut net, 150, 10);
    let held = stopped_reader(&mut net, budget);
    let most = (budget / (10 + homa_proto::DELIVERED_OVERHEAD)) as usize + 1;
    assert!(held.len() <= most, "{} messages held", held.len());
    assert!(
        held.len() >= most - 2,
        "the budget was used: {}",
        held.len()
    );
    reader_resumes(&mut net, held, reqs);
}

#[test]
fn send_cap__blocked_sender_resumes_when_room_frees() {
    let config = Config {
        max_tx_bytes_per_socket: 100_000,
        ..Config::default()
    };
    let (mut net, port, dest) = client_and_server(23, &config);
    let now = net.now();
    let ep = net.endpoint(0);
    ep.send_request(now, port, dest, pattern(1, 60_000))
        .unwrap();
    assert_eq!(ep.tx_bytes(port), 60_000);
    assert_eq!(
        ep.send_request(now, port, dest, pattern(2, 60_000)),
        Err(homa_proto::Error::WouldBlock)
    );
    assert_eq!(ep.stats().sends_blocked, 1);
    // The first request's response frees its bytes: Writable, then the
    // retry succeeds.
    let mut writable = false;
    let mut done = 0;
    net.run(Limits::default(), |net, h, ev| match ev {
        Event::Request { port, peer, id, .. } => {
            respond(net, h, port, peer, id, Bytes::from_static(b"k"));
        }
        Event::Writable { port: p } => {
            assert_eq!((h, p), (0, port));
            writable = true;
            request(net, 0, port, dest, pattern(2, 60_000));
        }
        Event::Response { .. } => done += 1,
        other => panic!("{other:?}"),
    })
    .unwrap();
    assert!(writable);
    assert_eq!(done, 2);
    assert_eq!(net.endpoint(0).tx_bytes(port), 0);
}

#[test]
fn send_cap__one_message_may_exceed_an_empty_cap() {
    let config = Config {
        max_tx_bytes_per_socket: 1000,
        ..Config::default()
    };
    let mut net = network(24, 2, &config);
    let port = net.endpoint(0).open_socket(0).unwrap();
    let dest = net.addr(1, SERVER_PORT);
    let now = net.now();
    assert!(net
        .endpoint(0)
        .send_request(now, port, dest, pattern(1, 5000))
        .is_ok());
}

/// Requests delivered at host 1, by their first byte (the message tag).
fn delivered_tags(net: &mut Network) -> Vec<u8> {
    let mut tags = Vec::new();
    for ev in net.take_events(1) {
        if let Event::Request {
            port,
            peer,
            id,
            data,
            ..
        } = ev
        {
            tags.push(data[0]);
            respond(net, 1, port, peer, id, Bytes::from_static(b"k"));
        }
    }
    tags
}

#[test]
fn plug_release__exactly_the_released_epochs_in_order() {
    let config = Config::default();
    let (mut net, port, dest) = client_and_server(25, &config);
    let send = |net: &mut Network, tag: u8, len: usize| {
        let mut v = vec![tag; len];
        v[0] = tag;
        request(net, 0, port, dest, Bytes::from(v));
    };
    let settle = |net: &mut Network| {
        net.advance(Duration::from_millis(20));
        delivered_tags(net)
    };
    // Unplugged: goes at once.
    send(&mut net, 1, 100);
    assert_eq!(settle(&mut net), vec![1]);
    // plug, A, A', plug, B: nothing leaves.
    net.endpoint(0).plug(port).unwrap();
    send(&mut net, 2, 100);
    send(&mut net, 3, 200_000);
    net.endpoint(0).plug(port).unwrap();
    send(&mut net, 4, 100);
    assert_eq!(
        settle(&mut net),
        Vec::<u8>::new(),
        "held messages are invisible"
    );
    assert_eq!(
        net.endpoint(1)
            .stats()
            .received
            .packets_of(homa_proto::wire::PacketType::Data),
        1,
        "no DATA of a held message reached the server"
    );
    // release_one: the first epoch only.
    assert_eq!(net.endpoint(0).release_one(port).unwrap(), 2);
    let mut got = settle(&mut net);
    got.sort();
    assert_eq!(got, vec![2, 3]);
    // The open epoch is not released by release_one.
    assert_eq!(net.endpoint(0).release_one(port).unwrap(), 0);
    assert_eq!(settle(&mut net), Vec::<u8>::new());
    // plug, C: now B's epoch is closed; release_one releases B, not C.
    net.endpoint(0).plug(port).unwrap();
    send(&mut net, 5, 100);
    assert_eq!(net.endpoint(0).release_one(port).unwrap(), 1);
    assert_eq!(settle(&mut net), vec![4]);
    // release_all: C, and later sends go at once.
    assert_eq!(net.endpoint(0).release_all(port).unwrap(), 1);
    assert_eq!(settle(&mut net), vec![5]);
    send(&mut net, 6, 100);
    assert_eq!(settle(&mut net), vec![6]);
    // Nothing was lost or failed along the way.
    net.run(Limits::default(), |_, _, ev| {
        assert!(matches!(ev, Event::Response { .. }), "{ev:?}");
    })
    .unwrap();
    assert_eq!(net.endpoint(0).stats().timeouts, 0);
}

#[test]
fn plug__held_response_is_invisible_until_released() {
    let config = Config::default();
    let (mut net, port, dest) = client_and_server(26, &config);
    request(&mut net, 0, port, dest, pattern(1, 100));
    net.advance(Duration::from_millis(1));
    let ev = net.take_events(1).pop().unwrap();
    let Event::Request { peer, id, .. } = ev else {
        panic!()
    };
    // The server plugs before answering (e.g. until a checkpoint commits).
    net.endpoint(1).plug(SERVER_PORT).unwrap();
    respond(
        &mut net,
        1,
        SERVER_PORT,
        peer,
        id,
        Bytes::from_static(b"committed"),
    );
    // The client probes (RESEND) and gets BUSY, but no response bytes.
    net.advance(Duration::from_millis(50));
    assert!(net.take_events(0).is_empty());
    assert!(
        net.endpoint(1)
            .stats()
            .sent
            .packets_of(homa_proto::wire::PacketType::Busy)
            > 0
    );
    net.endpoint(1).release_all(SERVER_PORT).unwrap();
    net.advance(Duration::from_millis(1));
    let evs = net.take_events(0);
    assert!(matches!(&evs[..], [Event::Response { data, .. }] if &data[..] == b"committed"));
}
