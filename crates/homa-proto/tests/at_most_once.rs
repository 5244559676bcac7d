//! At-most-once on the deterministic network (issue 12.2, 12.7, 12.8,
//! 12.10): a request is handed to a server application at most once, across
//! server restarts and replays too; a client whose request may have run
//! learns it with a precise error; ordinary loss is still recovered
//! transparently; the record of finished requests never refuses a request
//! that did not run; refusals by limits make the client wait, not time out.
#![allow(non_snake_case)]

mod common;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use homa_proto::testnet::{Network, Verdict};
use homa_proto::wire::{PacketType, Repr};
use homa_proto::{Config, Event, Instant, Rng, RpcError};

/// How one client RPC ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Ok(Bytes),
    Failed(RpcError),
}

/// Runs the network for `limit` of simulated time, with servers that count
/// every delivered request per (host, client, client id) and answer it with
/// [`response_for`] when `on_request` says so (else they hold it).
struct Harness {
    ran: HashMap<(usize, SocketAddr, u64), u32>,
    ends: HashMap<u64, (End, Instant)>,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            ran: HashMap::new(),
            ends: HashMap::new(),
        }
    }

    fn run(
        &mut self,
        net: &mut Network,
        limit: Duration,
        mut on_request: impl FnMut(&mut Network, usize) -> bool,
    ) {
        self.run_with(net, limit, |net, h, port, peer, id, data| {
            if on_request(net, h) {
                respond(net, h, port, peer, id, response_for(data));
            }
        });
    }

    /// As [`Harness::run`], with `handle(net, host, port, peer, id, data)`
    /// doing what it likes with each delivered request (counted first).
    fn run_with(
        &mut self,
        net: &mut Network,
        limit: Duration,
        mut handle: impl FnMut(&mut Network, usize, u16, SocketAddr, u64, &Bytes),
    ) {
        let until = net.now() + limit;
        while net.now() < until {
            let mut any = false;
            for h in 0..net.host_count() {
                for ev in net.take_events(h) {
                    any = true;
                    match ev {
                        Event::Request {
                            port,
                            peer,
                            id,
                            data,
                            ..
                        } => {
                            *self.ran.entry((h, peer, id ^ 1)).or_insert(0) += 1;
                            handle(net, h, port, peer, id, &data);
                        }
                        Event::Response { id, data, .. } => {
                            self.ends.insert(id, (End::Ok(data), net.now()));
                        }
                        Event::Failed { id, error, .. } => {
                            self.ends.insert(id, (End::Failed(error), net.now()));
                        }
                        other => panic!("{other:?}"),
                    }
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

    /// Executions of requests with client id `id` on any host.
    fn runs(&self, id: u64) -> u32 {
        self.ran
            .iter()
            .filter(|(k, _)| k.2 == id)
            .map(|(_, n)| n)
            .sum()
    }
}

#[test]
fn server_restart_after_running_a_request__never_runs_it_again_and_client_learns() {
    // The server runs the request, then crashes before the response leaves
    // and restarts on the same address 6-100 ms later. With and without an
    // ICMP port-unreachable while it is down. Many seeds, request sizes and
    // gaps.
    let config = Config::default();
    let mut outcomes: HashMap<String, u32> = HashMap::new();
    for seed in 0..24u64 {
        let icmp = seed % 2 == 1;
        let mut rng = Rng::new(seed);
        let (mut net, cport, server) = client_and_server(12020 + seed, &config);
        // Warm up: the client learns the first incarnation.
        request(&mut net, 0, cport, server, pattern(0, 10));
        let mut h = Harness::new();
        h.run(&mut net, Duration::from_millis(50), |_, _| true);
        let len = 1 + rng.below(300_000) as usize;
        let id = request(&mut net, 0, cport, server, pattern(seed, len));
        // Run until the server's application has it; it never answers.
        h.run(&mut net, Duration::from_millis(200), |_, _| false);
        assert_eq!(
            h.runs(id),
            1,
            "seed {seed}: delivered once before the crash"
        );
        net.restart_host(1, config.clone());
        let down = Duration::from_millis(6 + rng.below(95));
        let down_until = net.now() + down;
        // While down, nothing listens: packets to it are lost, or answered
        // by ICMP.
        let unreachable = Rc::new(RefCell::new(Vec::new()));
        let u2 = unreachable.clone();
        net.set_filter(move |d, _| {
            if d.dst == server {
                u2.borrow_mut().push(d.src);
                return Verdict::Drop;
            }
            Verdict::Deliver
        });
        while net.now() < down_until {
            h.run(&mut net, Duration::from_micros(200), |_, _| true);
            if icmp {
                for _ in unreachable.borrow_mut().drain(..) {
                    let now = net.now();
                    net.endpoint(0)
                        .handle_unreachable(now, server, homa_proto::Unreachable::Port);
                }
            }
        }
        net.clear_filter();
        net.endpoint(1).open_socket(SERVER_PORT).unwrap();
        h.run(&mut net, config.timeout * 3, |_, _| true);
        assert_eq!(
            h.runs(id),
            1,
            "seed {seed}: the request ran again after the restart"
        );
        let (end, _) = h
            .ends
            .get(&id)
            .unwrap_or_else(|| panic!("seed {seed}: the call never ended"));
        assert_eq!(
            *end,
            End::Failed(RpcError::OutcomeUnknown),
            "seed {seed} (icmp {icmp}, {len} B, down {down:?})"
        );
        *outcomes.entry(format!("{end:?}")).or_insert(0) += 1;
        // A new call to the restarted server works (after learning its
        // incarnation transparently).
        let id2 = request(&mut net, 0, cport, server, pattern(99, 100));
        h.run(&mut net, config.timeout, |_, _| true);
        assert!(
            matches!(h.ends.get(&id2), Some((End::Ok(_), _))),
            "seed {seed}"
        );
        assert_eq!(net.rpcs_alive(), 0);
    }
    eprintln!("server restart after running: {outcomes:?}");
}

#[test]
fn replayed_request_datagrams_after_a_restart__never_run() {
    let config = Config::default();
    let (mut net, cport, server) = client_and_server(12021, &config);
    type Captured = Vec<(SocketAddr, Vec<u8>)>;
    let captured: Rc<RefCell<Captured>> = Rc::default();
    let cap = captured.clone();
    net.set_filter(move |d, _| {
        if d.dst == server && d.packet_type() == Some(PacketType::Data) {
            cap.borrow_mut().push((d.src, d.data.clone()));
        }
        Verdict::Deliver
    });
    for i in 0..20u64 {
        request(
            &mut net,
            0,
            cport,
            server,
            pattern(i, 1 + (i as usize * 7919) % 60_000),
        );
    }
    let mut h = Harness::new();
    h.run(&mut net, Duration::from_millis(100), |_, _| true);
    assert_eq!(h.ran.len(), 20);
    net.clear_filter();
    let packets = captured.borrow().clone();
    assert!(packets.len() >= 20);
    // Replayed to the same server: nothing runs twice.
    for (src, bytes) in &packets {
        net.inject(*src, server, bytes.clone());
    }
    h.run(&mut net, Duration::from_millis(50), |_, _| true);
    assert!(
        h.ran.values().all(|&n| n == 1),
        "replay ran a request again"
    );
    // The server restarts; every captured datagram is replayed, three times,
    // in a shuffled order.
    net.restart_host(1, config.clone());
    net.endpoint(1).open_socket(SERVER_PORT).unwrap();
    let mut rng = Rng::new(5);
    for _ in 0..3 {
        let mut order = packets.clone();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for (src, bytes) in order {
            net.inject(src, server, bytes);
        }
        h.run(&mut net, Duration::from_millis(20), |_, _| true);
    }
    let s = net.endpoint(1).stats();
    eprintln!(
        "replay after restart: {} datagrams, {} refused, {} delivered",
        3 * packets.len(),
        s.refused_incarnation,
        s.requests_delivered
    );
    assert_eq!(
        s.requests_delivered, 0,
        "a replayed request ran after the restart"
    );
    assert!(s.refused_incarnation > 0);
    assert_eq!(net.endpoint(1).rpc_count(), 0, "no state kept for replays");
}

#[test]
fn ordinary_loss__still_retried_transparently() {
    // The server never got the request (every copy of its DATA lost for a
    // while): no error, it runs once.
    let config = Config::default();
    let (mut net, cport, server) = client_and_server(12022, &config);
    request(&mut net, 0, cport, server, pattern(0, 10));
    let mut h = Harness::new();
    h.run(&mut net, Duration::from_millis(10), |_, _| true);
    let lose = Rc::new(Cell::new(true));
    let l2 = lose.clone();
    net.set_filter(move |d, _| {
        if l2.get() && d.dst == server && d.packet_type() == Some(PacketType::Data) {
            Verdict::Drop
        } else {
            Verdict::Deliver
        }
    });
    let id = request(&mut net, 0, cport, server, pattern(1, 200_000));
    h.run(&mut net, Duration::from_millis(30), |_, _| true);
    lose.set(false);
    h.run(&mut net, config.timeout, |_, _| true);
    assert!(matches!(h.ends.get(&id), Some((End::Ok(_), _))));
    assert_eq!(h.runs(id), 1);
}

#[test]
fn restart_before_the_request__retried_transparently_on_the_new_server() {
    // The client knows the old incarnation; the server restarted well before
    // the request was created: the refusal shows an uptime longer than the
    // request's age, so no earlier incarnation can have seen it.
    let config = Config::default();
    let (mut net, cport, server) = client_and_server(12023, &config);
    request(&mut net, 0, cport, server, pattern(0, 10));
    let mut h = Harness::new();
    h.run(&mut net, Duration::from_millis(10), |_, _| true);
    net.restart_host(1, config.clone());
    net.endpoint(1).open_socket(SERVER_PORT).unwrap();
    // Something reaches the new server first (it starts its uptime clock),
    // 30 ms before the requests are made.
    net.inject(net.addr(0, 0x9999), server, vec![0u8; 4]);
    net.advance(Duration::from_millis(30));
    let ids: Vec<u64> = (0..5)
        .map(|i| request(&mut net, 0, cport, server, pattern(i, 50_000)))
        .collect();
    h.run(&mut net, config.timeout, |_, _| true);
    for id in ids {
        assert!(
            matches!(h.ends.get(&id), Some((End::Ok(_), _))),
            "{:?}",
            h.ends.get(&id)
        );
        assert_eq!(h.runs(id), 1);
    }
    assert!(net.endpoint(0).stats().requests_rebound >= 1);
}

#[test]
fn first_contact__costs_one_round_trip() {
    let config = Config::default();
    let (mut net, cport, server) = client_and_server(12024, &config);
    let mut h = Harness::new();
    let mut times = Vec::new();
    for i in 0..3 {
        let start = net.now();
        let id = request(&mut net, 0, cport, server, pattern(i, 100));
        h.run(&mut net, Duration::from_millis(10), |_, _| true);
        let (end, at) = h.ends.get(&id).cloned().unwrap();
        assert!(matches!(end, End::Ok(_)));
        times.push(at - start);
    }
    let rtt = times[1];
    eprintln!(
        "first contact: first RPC {:?}, then {:?} and {:?}",
        times[0], times[1], times[2]
    );
    assert_eq!(times[1], times[2], "later RPCs need no handshake");
    // One more round trip (two 28/37-byte control packets) for the first.
    assert!(times[0] <= rtt * 2 + Duration::from_micros(1), "{times:?}");
    assert!(times[0] > rtt + rtt / 2, "{times:?}");
    let c = net.endpoint(0).stats();
    assert_eq!((c.incarnation_probes, c.incarnations_learned), (1, 1));
}

#[test]
fn lost_request_then_5000_later_rpcs__all_complete() {
    // One request loses every packet for 20 ms; meanwhile 5000 later RPCs
    // from the same client socket complete (more than the 4096 finished ids
    // the server keeps per client). The lost one must still run, once.
    let config = Config::default();
    let (mut net, cport, server) = client_and_server(12081, &config);
    request(&mut net, 0, cport, server, pattern(0, 10));
    let mut h = Harness::new();
    h.run(&mut net, Duration::from_millis(5), |_, _| true);
    let lost = Rc::new(Cell::new(0u64));
    let until = Rc::new(Cell::new(Instant::MAX));
    let (l2, u2) = (lost.clone(), until.clone());
    let clock = Rc::new(Cell::new(Instant::ZERO));
    let c2 = clock.clone();
    net.set_filter(move |d, _| {
        let to_server = d.dst == server && d.packet_type() == Some(PacketType::Data);
        if to_server && c2.get() < u2.get() {
            let (repr, _) = Repr::parse_with_payload(&d.data).unwrap();
            if repr.sender_id == l2.get() {
                return Verdict::Drop;
            }
        }
        Verdict::Deliver
    });
    let victim = request(&mut net, 0, cport, server, pattern(1, 500));
    lost.set(victim);
    until.set(net.now() + Duration::from_millis(20));
    // 5000 more, 64 at a time.
    let mut next = 2u64;
    let mut outstanding = 0usize;
    let mut done = 0usize;
    while done < 5000 {
        while outstanding < 64 && next < 5002 {
            request(&mut net, 0, cport, server, pattern(next, 200));
            next += 1;
            outstanding += 1;
        }
        clock.set(net.now());
        let before = h.ends.len();
        h.run(&mut net, Duration::from_micros(50), |_, _| true);
        let finished = h.ends.len() - before;
        done += finished;
        outstanding -= finished.min(outstanding);
        assert!(
            net.now() < Instant::ZERO + Duration::from_secs(5),
            "stalled at {done}"
        );
    }
    clock.set(Instant::MAX);
    h.run(&mut net, config.timeout * 2, |_, _| true);
    let s = net.endpoint(1).stats();
    eprintln!(
        "lost request then 5000: victim {:?}; server: {} stale, {} held back (record full)",
        h.ends
            .get(&victim)
            .map(|e| &e.0)
            .map(|e| matches!(e, End::Ok(_))),
        s.stale_requests,
        s.done_ids_full
    );
    assert!(
        matches!(h.ends.get(&victim), Some((End::Ok(_), _))),
        "the lost request completes: {:?}",
        h.ends.get(&victim)
    );
    assert_eq!(h.runs(victim), 1);
    assert!(
        h.ends.values().all(|(e, _)| matches!(e, End::Ok(_))),
        "every rpc completes"
    );
    assert!(h.ran.values().all(|&n| n == 1));
}

#[test]
fn outstanding_4200_against_the_4096_limit__all_complete() {
    let config = Config::default();
    let (mut net, cport, server) = client_and_server(12082, &config);
    request(&mut net, 0, cport, server, pattern(0, 10));
    let mut h = Harness::new();
    h.run(&mut net, Duration::from_millis(5), |_, _| true);
    h.ran.clear();
    // The requests reach the server in a shuffled order (up to 2 ms late):
    // those refused by the limit are not the newest ones.
    net.set_filter(move |d, rng| {
        if d.dst == server && d.packet_type() == Some(PacketType::Data) {
            Verdict::Delay(Duration::from_nanos(rng.below(2_000_000)))
        } else {
            Verdict::Deliver
        }
    });
    let ids: Vec<u64> = (1..=4200)
        .map(|i| request(&mut net, 0, cport, server, pattern(i, 100)))
        .collect();
    // The application takes 3 ms to start answering: 4096 requests are
    // open at the server, the rest wait for room.
    h.run(&mut net, Duration::from_millis(3), |_, _| false);
    let held: Vec<(SocketAddr, u64)> = h.ran.keys().map(|k| (k.1, k.2)).collect();
    for (peer, cid) in held {
        respond(
            &mut net,
            1,
            SERVER_PORT,
            peer,
            cid ^ 1,
            Bytes::from_static(b"k"),
        );
    }
    h.run(&mut net, config.timeout * 3, |_, _| true);
    let s = net.endpoint(1).stats();
    let failed: Vec<_> = ids
        .iter()
        .filter(|id| !matches!(h.ends.get(id), Some((End::Ok(_), _))))
        .collect();
    eprintln!(
        "4200 outstanding: {} not completed; server: {} held back by the limit, {} stale",
        failed.len(),
        s.rpc_limit,
        s.stale_requests
    );
    assert!(s.rpc_limit > 0, "the limit was reached");
    assert!(failed.is_empty(), "{} rpcs did not complete", failed.len());
    assert!(h.ran.values().all(|&n| n == 1));
}

#[test]
fn refused_by_the_rpc_limit_while_the_application_stalls__clients_wait() {
    // max_rpcs_per_peer 8; the server application holds every request for
    // two seconds (twice the timeout), then answers: the 59 requests beyond
    // the limit wait and complete, none times out.
    let config = Config {
        max_rpcs_per_peer: 8,
        ..Config::default()
    };
    let (mut net, cport, server) = client_and_server(12010, &config);
    let ids: Vec<u64> = (0..67)
        .map(|i| request(&mut net, 0, cport, server, pattern(i, 1000)))
        .collect();
    let mut h = Harness::new();
    h.run(&mut net, Duration::from_secs(2), |_, _| false);
    assert!(
        h.ends.is_empty(),
        "nothing ends while the server is alive: {:?}",
        h.ends
    );
    // The application answers what it holds and everything after.
    let pending: Vec<(SocketAddr, u64)> = h.ran.keys().map(|k| (k.1, k.2)).collect();
    for (peer, cid) in pending {
        respond(
            &mut net,
            1,
            SERVER_PORT,
            peer,
            cid ^ 1,
            Bytes::from_static(b"late"),
        );
    }
    h.run(&mut net, Duration::from_secs(5), |_, _| true);
    let ok = ids
        .iter()
        .filter(|id| matches!(h.ends.get(id), Some((End::Ok(_), _))))
        .count();
    eprintln!(
        "rpc limit 8, application stalled 2 s: {ok} of 67 completed; server held back {} times",
        net.endpoint(1).stats().rpc_limit
    );
    assert_eq!(ok, 67);
    assert!(h.ran.values().all(|&n| n == 1));
}

#[test]
fn assume_incarnation__skips_the_first_contact_round_trip() {
    let config = Config::default();
    let (mut net, cport, server) = client_and_server(12_025, &config);
    let inc = net.endpoint(1).incarnation();
    let now = net.now();
    net.endpoint(0).assume_incarnation(now, server, inc);
    let start = net.now();
    let id = request(&mut net, 0, cport, server, pattern(1, 100));
    let mut h = Harness::new();
    h.run(&mut net, Duration::from_millis(5), |_, _| true);
    let (end, at) = h.ends.get(&id).cloned().unwrap();
    assert!(matches!(end, End::Ok(_)));
    assert_eq!(at - start, Duration::from_micros(10), "one round trip");
    assert_eq!(net.endpoint(0).stats().incarnation_probes, 0);
    // A wrong value is refused and corrected, not run twice.
    net.restart_host(1, config.clone());
    net.endpoint(1).open_socket(SERVER_PORT).unwrap();
    net.advance(Duration::from_millis(1));
    let now = net.now();
    net.endpoint(0).assume_incarnation(now, server, inc ^ 0xFF);
    let id = request(&mut net, 0, cport, server, pattern(2, 100));
    h.run(&mut net, Duration::from_millis(5), |_, _| true);
    assert!(matches!(h.ends.get(&id), Some((End::Ok(_), _))));
    assert_eq!(h.runs(id), 1);
}

#[test]
fn shared_address__a_request_one_server_ran_never_runs_on_another() {
    // SO_REUSEPORT: two server endpoints serve one address, both up long
    // before the request. The first runs the request and holds it; then
    // the kernel sends the client's datagrams to the other (the group
    // changed, or the datagrams are steered by the CPU that received
    // them). The other's refusal must not read as "a new incarnation that
    // cannot have seen the request": the call fails with OutcomeUnknown
    // and the request never runs there.
    let config = Config {
        shared_address: true,
        ..Config::default()
    };
    for (seed, len) in [(12100u64, 100usize), (12101, 150_000)] {
        let mut net = Network::new(seed);
        let client = net.add_host(config.clone());
        let a = net.add_host(config.clone());
        let ip = net.host(a).addr;
        let b = net.add_host_at(ip, config.clone());
        for h in [a, b] {
            net.endpoint(h).open_socket(SERVER_PORT).unwrap();
            net.endpoint(h).start(Instant::ZERO);
        }
        let cport = net.endpoint(client).open_socket(0).unwrap();
        let server = net.addr(a, SERVER_PORT);
        net.advance(Duration::from_millis(100));
        let mut h = Harness::new();
        let id = request(&mut net, client, cport, server, pattern(seed, len));
        h.run(&mut net, Duration::from_millis(20), |_, _| false);
        assert_eq!(h.ran.get(&(a, net.addr(client, cport), id)), Some(&1));
        net.steer(ip, b);
        h.run(&mut net, config.timeout * 2, |_, _| true);
        assert_eq!(h.runs(id), 1, "length {len}: ran on both servers");
        assert_eq!(
            h.ends.get(&id).map(|e| &e.0),
            Some(&End::Failed(RpcError::OutcomeUnknown)),
            "length {len}"
        );
        assert_eq!(net.endpoint(client).stats().requests_rebound, 0);
    }
}

/// A one-packet request of `len` bytes from client id `sender_id`, bound
/// to `incarnation`, that states itself as the client's oldest unfinished
/// request (as a client's first request does).
fn forged_request(sport: u16, incarnation: u64, sender_id: u64, len: u32) -> Vec<u8> {
    let mut bytes = Repr {
        sport,
        dport: SERVER_PORT,
        sender_id,
        incarnation,
        body: homa_proto::wire::Body::Data(homa_proto::wire::DataHeader {
            message_length: len,
            incoming: len,
            oldest_live: 1,
            ..Default::default()
        }),
    }
    .to_vec();
    bytes.extend(std::iter::repeat_n(0x33, len as usize));
    bytes
}

/// Three 100-byte requests from the client of `client_and_server` that
/// complete, their DATA packets captured (for replays later); returns the
/// request ids and the captures.
fn three_captured_requests(
    net: &mut Network,
    h: &mut Harness,
    cport: u16,
    server: SocketAddr,
) -> (Vec<u64>, Vec<Vec<u8>>) {
    let client = net.addr(0, cport);
    let captured: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
    let c = captured.clone();
    net.set_filter(move |d, _| {
        if d.src == client && d.packet_type() == Some(PacketType::Data) {
            c.borrow_mut().push(d.data.clone());
        }
        Verdict::Deliver
    });
    let ids: Vec<u64> = (0..3)
        .map(|i| request(net, 0, cport, server, pattern(i, 100)))
        .collect();
    h.run(net, Duration::from_millis(20), |_, _| true);
    for id in &ids {
        assert!(matches!(h.ends.get(id), Some((End::Ok(_), _))));
    }
    net.clear_filter();
    let captured = captured.borrow().clone();
    (ids, captured)
}

/// Forges `n` requests from the client at `client`, each starting a new
/// client run (ids 2^41 apart, far from `near` and from each other).
fn forge_new_runs(
    net: &mut Network,
    h: &mut Harness,
    client: SocketAddr,
    server: SocketAddr,
    near: u64,
    n: u64,
) {
    let inc = net.endpoint(1).incarnation();
    for k in 0..n {
        let id = near.wrapping_add((k + 1) << 41);
        net.inject(client, server, forged_request(client.port(), inc, id, 10));
        h.run(net, Duration::from_millis(2), |_, _| true);
    }
}

/// Replays `captured` from `client` and checks that each of `ids` still
/// ran once.
fn replay_expecting_no_second_run(
    net: &mut Network,
    h: &mut Harness,
    client: SocketAddr,
    server: SocketAddr,
    captured: Vec<Vec<u8>>,
    ids: &[u64],
) {
    for d in captured {
        net.inject(client, server, d);
    }
    h.run(net, Duration::from_millis(50), |_, _| true);
    for id in ids {
        assert_eq!(h.runs(*id), 1, "request {id} ran again");
    }
}

#[test]
fn forged_client_runs_then_a_replay__the_replayed_requests_never_run_again() {
    // An outside test: packets forged from the client's address, each
    // starting a "new client run" (ids far from the client's and from each
    // other), then a replay of the client's captured requests. The record
    // kept four earlier runs, so the fifth forged run pushed out the one
    // that covered the real requests, and they ran again.
    let config = Config::default();
    for forged in [4u64, 5, 8, 20] {
        let (mut net, cport, server) = client_and_server(12200 + forged, &config);
        let client = net.addr(0, cport);
        let mut h = Harness::new();
        let (ids, captured) = three_captured_requests(&mut net, &mut h, cport, server);
        forge_new_runs(&mut net, &mut h, client, server, ids[0], forged);
        replay_expecting_no_second_run(&mut net, &mut h, client, server, captured, &ids);
        // The real client goes on (a renewed record is a new incarnation
        // for it: its next request rebinds).
        let next = request(&mut net, 0, cport, server, pattern(9, 100));
        h.run(&mut net, Duration::from_millis(50), |_, _| true);
        assert!(
            matches!(h.ends.get(&next), Some((End::Ok(_), _))),
            "{forged}: {:?}",
            h.ends.get(&next)
        );
        assert_eq!(h.runs(next), 1);
        let renewed = net.endpoint(1).stats().records_renewed;
        assert_eq!(renewed, u64::from(forged > 4), "{forged} forged runs");
    }
}

#[test]
fn client_restarted_six_times_on_one_address__a_late_copy_of_its_first_run_never_runs() {
    // No forgery: the client process restarts on the same address while
    // the server keeps its peer state, then a copy of a request from its
    // first run arrives late.
    let config = Config::default();
    let (mut net, cport, server) = client_and_server(12230, &config);
    let client = net.addr(0, cport);
    let first: Rc<RefCell<Option<Vec<u8>>>> = Rc::default();
    let f = first.clone();
    net.set_filter(move |d, _| {
        if d.src == client && d.packet_type() == Some(PacketType::Data) {
            f.borrow_mut().get_or_insert_with(|| d.data.clone());
        }
        Verdict::Deliver
    });
    let mut h = Harness::new();
    let mut ids = Vec::new();
    for run in 0..7u64 {
        if run > 0 {
            net.restart_host(0, config.clone());
            net.endpoint(0).open_socket(cport).unwrap();
        }
        let id = request(&mut net, 0, cport, server, pattern(run, 100));
        h.run(&mut net, Duration::from_millis(20), |_, _| true);
        assert!(
            matches!(h.ends.get(&id), Some((End::Ok(_), _))),
            "run {run}"
        );
        ids.push(id);
    }
    let copy = first.borrow().clone().unwrap();
    net.inject(client, server, copy);
    h.run(&mut net, Duration::from_millis(50), |_, _| true);
    assert_eq!(h.runs(ids[0]), 1, "the first run's request ran again");
    assert!(net.endpoint(1).stats().records_renewed >= 1);
}

#[test]
fn forged_client_runs__the_renewed_record_survives_the_peers_collection() {
    // As above, but the server collects the client's peer state (idle)
    // before the replay: what it keeps must still refuse the requests.
    let config = Config {
        peer_idle: Duration::from_millis(50),
        ..Config::default()
    };
    let (mut net, cport, server) = client_and_server(12240, &config);
    let client = net.addr(0, cport);
    let mut h = Harness::new();
    let (ids, captured) = three_captured_requests(&mut net, &mut h, cport, server);
    forge_new_runs(&mut net, &mut h, client, server, ids[0], 6);
    assert_eq!(net.endpoint(1).stats().records_renewed, 1);
    h.run(&mut net, Duration::from_secs(3), |_, _| true);
    assert!(net.endpoint(1).stats().peers_collected >= 1);
    replay_expecting_no_second_run(&mut net, &mut h, client, server, captured, &ids);
}

#[test]
fn renewed_record_pushed_out_while_making_room_for_its_own_client__a_request_never_runs_twice() {
    // A review of the renewal found this: the peer table (max_peers 2) and
    // the table of collected peers are full; client C, whose record was
    // renewed (value R) and then collected, sends request X bound to R.
    // X passed the incarnation check against C's kept record; making room
    // for C collected another peer, which pushed C's kept record out, and
    // X was admitted under a fresh record (the endpoint's own value) that
    // did not record it. Discarded by the application (it ran), X was
    // refused at C's next probe with the endpoint's long uptime, rebound
    // and run again. X must be refused instead when its record is gone.
    let config = Config {
        max_peers: 2,
        peer_idle: Duration::from_millis(50),
        ..Config::default()
    };
    let mut net = network(12_320, 5, &config);
    let srv = 1;
    net.endpoint(srv).open_socket(SERVER_PORT).unwrap();
    let server = net.addr(srv, SERVER_PORT);
    let ports: Vec<u16> = (0..5)
        .map(|h| {
            if h == srv {
                0
            } else {
                net.endpoint(h).open_socket(0).unwrap()
            }
        })
        .collect();
    let (c, d) = (0usize, 2usize);
    let caddr = net.addr(c, ports[c]);
    let mut h = Harness::new();
    let ok = |net: &mut Network, h: &mut Harness, host: usize, tag: u64, run: Duration| {
        let id = request(net, host, ports[host], server, pattern(tag, 100));
        h.run(net, run, |_, _| true);
        assert!(
            matches!(h.ends.get(&id), Some((End::Ok(_), _))),
            "{tag}: {:?}",
            h.ends.get(&id)
        );
        id
    };
    let first = ok(&mut net, &mut h, c, 1, Duration::from_millis(20));
    forge_new_runs(&mut net, &mut h, caddr, server, first, 6);
    assert_eq!(net.endpoint(srv).stats().records_renewed, 1);
    // C learns R (its next request is refused by R and rebound), goes
    // idle and is collected; then D.
    ok(&mut net, &mut h, c, 2, Duration::from_millis(50));
    h.run(&mut net, Duration::from_secs(3), |_, _| true);
    ok(&mut net, &mut h, d, 3, Duration::from_millis(20));
    h.run(&mut net, Duration::from_millis(300), |_, _| true);
    assert_eq!(net.endpoint(srv).retired_peer_count(), 2, "C and D kept");
    for x in [3usize, 4] {
        ok(&mut net, &mut h, x, 4 + x as u64, Duration::from_millis(5));
    }
    // X: taken by the application and discarded (it counts as run).
    let x = request(&mut net, c, ports[c], server, pattern(9, 100));
    h.run_with(
        &mut net,
        Duration::from_millis(200),
        |net, host, port, peer, id, data| {
            if peer == caddr && id ^ 1 == x {
                net.endpoint(host).discard_request(port, peer, id).unwrap();
            } else {
                respond(net, host, port, peer, id, response_for(data));
            }
        },
    );
    assert!(h.runs(x) <= 1, "X ran {} times", h.runs(x));
}

#[test]
fn abandon_after_a_renewal__the_client_hears_abandoned() {
    // A request admitted before its client's record is renewed, then
    // abandoned by the application: the refusal must carry the value the
    // request was bound to, or the client takes it for another
    // incarnation's and fails the call OutcomeUnknown instead of Abandoned.
    let config = Config::default();
    let (mut net, cport, server) = client_and_server(12_330, &config);
    let caddr = net.addr(0, cport);
    let mut h = Harness::new();
    let first = request(&mut net, 0, cport, server, pattern(1, 100));
    h.run(&mut net, Duration::from_millis(20), |_, _| true);
    let x = request(&mut net, 0, cport, server, pattern(2, 100));
    let held: Rc<Cell<Option<(u16, SocketAddr, u64)>>> = Rc::default();
    let until = net.now() + Duration::from_millis(5);
    while net.now() < until && held.get().is_none() {
        for ev in net.take_events(1) {
            if let Event::Request { port, peer, id, .. } = ev {
                held.set(Some((port, peer, id)));
            }
        }
        if !net.step() {
            break;
        }
    }
    let (port, peer, id) = held.get().expect("X delivered");
    forge_new_runs(&mut net, &mut h, caddr, server, first, 6);
    assert_eq!(net.endpoint(1).stats().records_renewed, 1);
    net.endpoint(1).abandon_request(port, peer, id).unwrap();
    h.run(&mut net, Duration::from_millis(20), |_, _| true);
    assert_eq!(
        h.ends.get(&x).map(|e| &e.0),
        Some(&End::Failed(RpcError::Abandoned))
    );
}
