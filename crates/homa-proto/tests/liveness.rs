//! Liveness on the deterministic network: every RPC ends, and a peer that
//! is alive is never reported as timed out.
//!
//! * a server whose application stops reading for longer than `timeout`,
//!   then resumes: every call completes (issue 12.1);
//! * a client application holding its responses, so that its receive budget
//!   is full: nothing times out while the server is alive (12.3);
//! * a server application holding requests for a long time keeps answering
//!   RESENDs (12.4);
//! * a request to a socket that does not serve fails at once (12.5);
//! * a server restart while the client receives its response, with a delayed
//!   copy of the request reaching the new server: no BUSY/RESEND livelock,
//!   every RPC ends within the documented bound (12.9).
#![allow(non_snake_case)]

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use homa_proto::testnet::{Network, Verdict};
use homa_proto::wire::PacketType;
use homa_proto::{Config, Event, Instant, Rng, RpcError};

/// Steps the network until `until`, handing every event to `app`.
fn run_until_time(
    net: &mut Network,
    until: Instant,
    mut app: impl FnMut(&mut Network, usize, Event),
) {
    while net.now() < until {
        let mut any = false;
        for h in 0..net.host_count() {
            for ev in net.take_events(h) {
                any = true;
                app(net, h, ev);
            }
        }
        if any {
            continue;
        }
        match net.next_event_time() {
            Some(t) if t <= until => {
                net.step();
            }
            _ => {
                net.advance(until - net.now());
                break;
            }
        }
    }
}

#[test]
fn stalled_server__every_call_completes_after_the_application_resumes() {
    // 40 clients keep 64 KB - 1 MB requests going to one server; its
    // application stops reading at 5 ms for three times the timeout (the
    // receive budget fills and senders are held back), then resumes.
    let config = Config {
        socket_rx_budget: 8 << 20,
        max_rx_bytes_per_peer: 8 << 20,
        max_message_length: 1 << 20,
        ..Config::default()
    };
    stalled_server(config.clone(), config.timeout * 3, None);
}

#[test]
fn stalled_server_and_descheduled_clients__every_call_completes() {
    // As above, and while the server's application stalls every client
    // endpoint is descheduled for one and a half timeouts (a client thread
    // whose timer was not armed, in the issue): its own silence clock must
    // not count the time it did not run, and the server, which gave up on
    // the silent clients' requests, makes them send again.
    let config = Config {
        socket_rx_budget: 8 << 20,
        max_rx_bytes_per_peer: 8 << 20,
        max_message_length: 1 << 20,
        ..Config::default()
    };
    let pause = (config.timeout / 2, config.timeout * 3 / 2);
    stalled_server(config.clone(), config.timeout * 3, Some(pause));
}

/// 40 clients, four 64 KB - 1 MB requests each, one at a time; the server
/// application stops reading at 5 ms for `stall`; with `pause = (after,
/// length)`, every client host is descheduled `after` into the stall for
/// `length`.
fn stalled_server(config: Config, stall: Duration, pause: Option<(Duration, Duration)>) {
    let (clients, per_client, stall_from_us) = (40, 4, 5_000);
    let mut net = network(1201, clients + 1, &config);
    net.endpoint(0).open_socket(SERVER_PORT).unwrap();
    let server = net.addr(0, SERVER_PORT);
    let mut rng = Rng::new(121);
    let mut ports = vec![0u16; clients + 1];
    let mut todo: Vec<Vec<Bytes>> = vec![Vec::new(); clients + 1];
    for c in 1..=clients {
        ports[c] = net.endpoint(c).open_socket(0).unwrap();
        for _ in 0..per_client {
            let len = 65_536 + rng.below(1_000_000 - 65_536) as usize;
            todo[c].push(pattern(rng.next_u64(), len));
        }
    }
    let mut outstanding: HashMap<(usize, u64), (Bytes, Instant)> = HashMap::new();
    for c in 1..=clients {
        let req = todo[c].pop().unwrap();
        let id = request(&mut net, c, ports[c], server, req.clone());
        outstanding.insert((c, id), (response_for(&req), net.now()));
    }
    let stall_from = Instant::from_micros(stall_from_us);
    let stall_to = stall_from + stall;
    let held: Rc<RefCell<Vec<Event>>> = Rc::default();
    let mut completed = 0;
    let mut failed: Vec<(usize, RpcError, Instant)> = Vec::new();
    let mut served = 0;
    let mut app = |net: &mut Network, h: usize, ev: Event| match ev {
        Event::Request { .. } if h == 0 && net.now() >= stall_from && net.now() < stall_to => {
            // The application is not reading: the request stays queued
            // (its bytes count against the receive budget).
            held.borrow_mut().push(ev);
        }
        Event::Request {
            port,
            peer,
            id,
            data,
            ..
        } => {
            served += 1;
            respond(net, h, port, peer, id, response_for(&data));
        }
        Event::Response { id, data, .. } => {
            let (want, _) = outstanding.remove(&(h, id)).expect("known rpc");
            assert!(data == want, "response bytes differ");
            completed += 1;
            if let Some(req) = todo[h].pop() {
                let id = request(net, h, ports[h], server, req.clone());
                outstanding.insert((h, id), (response_for(&req), net.now()));
            }
        }
        Event::Failed { id, error, .. } => {
            outstanding.remove(&(h, id)).expect("known rpc");
            failed.push((h, error, net.now()));
        }
        other => panic!("{other:?}"),
    };
    if let Some((after, length)) = pause {
        run_until_time(&mut net, stall_from + after, &mut app);
        for c in 1..=clients {
            net.pause_host(c, length);
        }
    }
    run_until_time(&mut net, stall_to, &mut app);
    assert!(
        held.borrow().len() >= 2,
        "the stall held requests back: {}",
        held.borrow().len()
    );
    if pause.is_none() {
        assert_eq!(
            net.endpoint(0).stats().timeouts,
            0,
            "server gave up on a live client"
        );
    }
    // The application resumes: it answers what it holds, then everything
    // runs to completion.
    for ev in held.take() {
        app(&mut net, 0, ev);
    }
    let bound = stall_to + Duration::from_secs(5);
    run_until_time(&mut net, bound, &mut app);
    let s = net.endpoint(0).stats().clone();
    eprintln!(
        "stalled server: {completed} completed, {served} served, failures {failed:?}, server: timeouts {}, waited {}, busy sent {}",
        s.timeouts,
        s.messages_waited,
        s.sent.packets_of(PacketType::Busy),
    );
    assert!(failed.is_empty(), "calls failed: {failed:?}");
    assert_eq!(completed, clients * per_client, "every call completes");
    assert!(outstanding.is_empty());
    assert_eq!(net.rpcs_alive(), 0, "no rpc left anywhere");
}

/// A client issues `count` RPCs with `len`-byte responses and its
/// application holds every response for five timeouts, then drops them
/// all: nothing fails, the calls beyond the budget wait, then complete.
fn held_responses(count: usize, len: usize, seed: u64) {
    // (The server answers everything at once: room for all responses under
    // its send cap.)
    let config = Config {
        max_tx_bytes_per_socket: 1 << 30,
        ..Config::default()
    };
    let (mut net, cport, server) = client_and_server(seed, &config);
    let mut ids = Vec::new();
    for i in 0..count {
        ids.push(request(&mut net, 0, cport, server, pattern(i as u64, 100)));
    }
    let mut held: Vec<Bytes> = Vec::new();
    let mut failures = Vec::new();
    let hold = Instant::ZERO + config.timeout * 5;
    run_until_time(&mut net, hold, |net, h, ev| match ev {
        Event::Request { port, peer, id, .. } => {
            respond(net, h, port, peer, id, pattern(id, len));
        }
        Event::Response { data, .. } => held.push(data),
        Event::Failed { id, error, .. } => failures.push((id, error)),
        other => panic!("{other:?}"),
    });
    let budget = config.socket_rx_budget;
    eprintln!(
        "{count} x {len} B held responses: {} arrived ({} KiB held, budget {} KiB), {} failed, client waits {}, server rpcs {}",
        held.len(),
        net.endpoint(0).rx_used(cport) / 1024,
        budget / 1024,
        failures.len(),
        net.endpoint(0).metrics().waiting_for_memory,
        net.endpoint(1).rpc_count(),
    );
    assert!(
        failures.is_empty(),
        "{} calls failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        held.len() < count,
        "the budget was reached: {} of {count} arrived",
        held.len()
    );
    assert!(net.endpoint(0).rx_used(cport) <= budget);
    // The rest wait, alive on both sides: the server kept every response.
    assert_eq!(net.endpoint(0).rpc_count(), count - held.len());
    assert!(net.endpoint(1).rpc_count() >= count - held.len());
    // The application lets go: everything else arrives.
    let held_count = held.len();
    held.clear();
    let mut more = 0;
    run_until_time(&mut net, hold + config.timeout * 5, |net, h, ev| match ev {
        Event::Response { .. } => more += 1,
        Event::Request { port, peer, id, .. } => {
            respond(net, h, port, peer, id, pattern(id, len));
        }
        other => panic!("{other:?}"),
    });
    assert_eq!(more, ids.len() - held_count, "every other call completed");
    assert_eq!(net.rpcs_alive(), 0);
}

#[test]
fn held_responses__1000_x_100kb_wait_and_none_times_out() {
    held_responses(1000, 100_000, 12031);
}

#[test]
fn held_responses__200_x_1mb_wait_and_none_times_out() {
    held_responses(200, 1_000_000, 12032);
}

#[test]
fn server_application_holds_requests__it_answers_every_resend() {
    // One request held for ten seconds (ten timeouts), and 100 requests of
    // 1 MB held for three seconds (more than the receive budget).
    for (count, len, hold) in [(1usize, 1000usize, 10u64), (100, 1_000_000, 3)] {
        let config = Config::default();
        let (mut net, cport, server) = client_and_server(1204 + count as u64, &config);
        for i in 0..count {
            request(&mut net, 0, cport, server, pattern(i as u64, len));
        }
        let held: RefCell<Vec<Event>> = RefCell::default();
        let (mut ok, mut failed) = (0, Vec::new());
        let until = Instant::ZERO + Duration::from_secs(hold);
        let mut app = |net: &mut Network, h: usize, ev: Event| match ev {
            Event::Request { .. } if net.now() < until => held.borrow_mut().push(ev),
            Event::Request { port, peer, id, .. } => {
                respond(net, h, port, peer, id, Bytes::from_static(b"done"));
            }
            Event::Response { .. } => ok += 1,
            Event::Failed { error, .. } => failed.push(error),
            other => panic!("{other:?}"),
        };
        run_until_time(&mut net, until, &mut app);
        let s = net.endpoint(1).stats();
        let resends_in = s.received.packets_of(PacketType::Resend);
        // BUSY, or RPC_UNKNOWN for the first probe (the incarnation).
        let busy_out =
            s.sent.packets_of(PacketType::Busy) + s.sent.packets_of(PacketType::RpcUnknown);
        for ev in held.take() {
            if let Event::Request { port, peer, id, .. } = ev {
                respond(&mut net, 1, port, peer, id, Bytes::from_static(b"done"));
            }
        }
        run_until_time(&mut net, until + Duration::from_secs(2), &mut app);
        eprintln!(
            "{count} x {len} B held {hold} s: {resends_in} RESENDs in, {busy_out} BUSY out, {ok} ok, failed {failed:?}"
        );
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!(ok, count);
        assert!(resends_in > 0, "the client probed");
        assert!(busy_out >= resends_in, "every RESEND answered");
    }
}

#[test]
fn request_to_a_socket_that_does_not_serve__fails_at_once() {
    let config = Config::default();
    let mut net = network(1205, 2, &config);
    let cport = net.endpoint(0).open_socket(0).unwrap();
    // Host 1 has only a client socket.
    let other = net.endpoint(1).open_socket(0).unwrap();
    let dest = net.addr(1, other);
    request(&mut net, 0, cport, dest, pattern(1, 100));
    let mut outcome = None;
    run_until_time(
        &mut net,
        Instant::ZERO + config.timeout * 2,
        |net, _, ev| {
            if let Event::Failed { error, .. } = ev {
                outcome = Some((error, net.now()));
            }
        },
    );
    let (error, at) = outcome.expect("the call ends");
    assert_eq!(format!("{error:?}"), "NotServer");
    assert!(at < Instant::from_micros(100), "failed fast: {at:?}");
}

#[test]
fn restart_while_receiving_response_with_delayed_request_copy__no_livelock() {
    // The client is receiving a long response when the server restarts; a
    // copy of the request, delayed in the network, reaches the new server.
    let config = Config::default();
    let (mut net, cport, server) = client_and_server(1209, &config);
    let client = net.addr(0, cport);
    let captured: Rc<RefCell<Option<Vec<u8>>>> = Rc::default();
    let cap = captured.clone();
    net.set_filter(move |d, _| {
        if d.src == client && d.packet_type() == Some(PacketType::Data) {
            cap.borrow_mut().get_or_insert_with(|| d.data.clone());
        }
        Verdict::Deliver
    });
    // A request of four packets: the delayed copy of its first packet makes
    // the new server expect the other three.
    request(&mut net, 0, cport, server, pattern(1, 5000));
    // Serve with a 5 MB response; restart the server after 300 µs, while
    // the response is arriving.
    let mut responded = false;
    run_until_time(&mut net, Instant::from_micros(300), |net, h, ev| {
        if let Event::Request { port, peer, id, .. } = ev {
            respond(net, h, port, peer, id, pattern(2, 5_000_000));
            responded = true;
        }
    });
    assert!(responded);
    assert!(
        net.endpoint(0)
            .stats()
            .received
            .packets_of(PacketType::Data)
            > 0
    );
    assert_eq!(net.endpoint(0).rpc_count(), 1, "the response is arriving");
    net.restart_host(1, config.clone());
    net.endpoint(1).open_socket(SERVER_PORT).unwrap();
    net.clear_filter();
    // The delayed copy of the request arrives at the new server.
    let copy = captured.borrow().clone().expect("request captured");
    net.inject(client, server, copy);
    let mut events = Vec::new();
    let mut runs = 0;
    let bound = net.now() + config.timeout * 2 + config.tick * 2;
    run_until_time(
        &mut net,
        Instant::ZERO + Duration::from_secs(30),
        |net, h, ev| {
            let name = format!("{ev:?}").chars().take(60).collect::<String>();
            events.push((h, net.now(), name));
            if let Event::Request { port, peer, id, .. } = ev {
                runs += 1;
                respond(net, h, port, peer, id, Bytes::from_static(b"again"));
            }
        },
    );
    let sent: u64 = (0..2)
        .map(|h| net.endpoint(h).stats().sent.total_packets())
        .sum();
    eprintln!("events after the restart: {events:?}; {sent} packets sent in all");
    assert_eq!(runs, 0, "the new server never ran the old request");
    assert_eq!(net.rpcs_alive(), 0, "every rpc ended");
    let failed_at = events
        .iter()
        .find(|(h, _, e)| *h == 0 && e.starts_with("Failed"))
        .map(|e| e.1)
        .expect("the client's rpc fails");
    assert!(
        failed_at <= bound,
        "failed at {failed_at:?}, bound {bound:?}"
    );
}
