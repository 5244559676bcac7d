//! Host-wide scheduling (`homa_proto::host`, `docs/host-sharing.md`):
//! several endpoints of one host share a table, so together they respect
//! one `max_incoming`, rank their incoming messages together, pace against
//! one NIC estimate, and survive a participant that dies or writes garbage.
//!
//! Each "host" of the test network here is one *endpoint*; the endpoints
//! that join one [`Host`] table stand for the processes of one machine.
//! Every scenario that checks a sharing property also runs without the
//! table and checks that the property then fails, so the test could not
//! pass without the feature.
#![allow(non_snake_case)]

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use homa_proto::host::{words_for, HeapMemory};
use homa_proto::testnet::{Limits, Links, Network, Verdict};
use homa_proto::wire::PacketType;
use homa_proto::{Config, Endpoint, Event, Host, HostError, HostMemory, HostParams, Instant};

const RATE: u64 = 10_000_000_000;

fn config() -> Config {
    Config {
        link_mbps: (RATE / 1_000_000) as u32,
        max_incoming: 100_000,
        // One packet unscheduled, so nearly all incoming bytes are granted.
        unsched_from_rtt: false,
        unsched_bytes: 1,
        ..Config::default()
    }
}

fn lan(seed: u64, hosts: usize, config: &Config) -> Network {
    let mut net = network(seed, hosts, config);
    net.set_links(Links {
        rate_bps: RATE,
        hop_delay: Duration::from_micros(1),
    });
    for h in 0..hosts {
        net.endpoint(h).open_socket(SERVER_PORT).unwrap();
        net.endpoint(h).open_socket(0).unwrap();
    }
    net
}

/// A four-host LAN whose endpoints 0 and 1 have joined `host` (owners 1
/// and 2).
fn lan_with_two_joined(seed: u64, config: &Config, host: &Host) -> Network {
    let mut net = lan(seed, 4, config);
    for m in 0..2 {
        let now = net.now();
        net.endpoint(m)
            .join_host(now, host, m as u64 + 1, 0)
            .unwrap();
    }
    net
}

fn params(config: &Config, slots: u32) -> HostParams {
    HostParams::from_config(config, slots)
}

/// Joins endpoints `members` to one new table.
/// `config()` without FIFO grants (only the host's SRPT ranking grants).
fn no_fifo_grants() -> Config {
    Config {
        grant_fifo_fraction: 0,
        ..config()
    }
}

/// A fresh heap table for `slots` endpoints of `config`, with its memory
/// (for tests that write into it as a hostile or dead participant would).
fn raw_table(config: &Config, slots: u32) -> (HostParams, Arc<HeapMemory>, Host) {
    let p = params(config, slots);
    let mem = Arc::new(HeapMemory::new(p.words()));
    let host = Host::init(mem.clone(), &p).unwrap();
    (p, mem, host)
}

fn share(net: &mut Network, members: &[usize], p: &HostParams) -> Host {
    let host = Host::in_process(p);
    for &m in members {
        let now = net.now();
        net.endpoint(m)
            .join_host(now, &host, m as u64 + 1, 0)
            .unwrap();
    }
    host
}

fn request(net: &mut Network, from: usize, to: usize, len: usize) -> u64 {
    let now = net.now();
    let dest = net.addr(to, SERVER_PORT);
    net.endpoint(from)
        .send_request(now, 0x8000, dest, pattern(len as u64, len))
        .unwrap()
}

/// Runs until `expect` requests arrived complete (or the time limit);
/// servers answer with one byte. `watch` runs before every step. Returns
/// (server host, client id, time) per arrival.
fn serve(
    net: &mut Network,
    expect: usize,
    max_time: Duration,
    mut watch: impl FnMut(&Network),
) -> Vec<(usize, u64, Instant)> {
    let arrivals = Rc::new(RefCell::new(Vec::new()));
    let a2 = arrivals.clone();
    let a3 = arrivals.clone();
    let r = net.run_until(
        Limits {
            max_steps: 20_000_000,
            max_time,
        },
        move |net, h, ev| {
            if let Event::Request { port, peer, id, .. } = ev {
                a2.borrow_mut().push((h, id ^ 1, net.now()));
                respond(net, h, port, peer, id, Bytes::from_static(b"k"));
            }
        },
        move |net| {
            watch(net);
            a3.borrow().len() >= expect
        },
    );
    let v = arrivals.borrow().clone();
    if let Err(e) = r {
        panic!("{e}: {} of {expect} requests arrived", v.len());
    }
    v
}

// ----- the table itself ---------------------------------------------------

#[test]
fn open__refuses_foreign_corrupt_or_mismatched_tables() {
    let p = HostParams::default();
    let mem = Arc::new(HeapMemory::new(p.words()));
    let dynmem = || mem.clone() as Arc<dyn HostMemory>;
    assert_eq!(Host::open(dynmem(), &p).unwrap_err(), HostError::NotReady);
    Host::init(dynmem(), &p).unwrap();
    Host::open(dynmem(), &p).unwrap();
    // Other parameters.
    let other = HostParams {
        max_incoming: p.max_incoming * 2,
        ..p.clone()
    };
    let e = Host::open(dynmem(), &other).unwrap_err();
    assert!(
        matches!(
            e,
            HostError::Params {
                name: "max_incoming",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("max_incoming"), "{e}");
    // Other layout.
    let other = HostParams {
        slots: p.slots + 1,
        ..p.clone()
    };
    let e = Host::open(dynmem(), &other).unwrap_err();
    assert!(matches!(e, HostError::Layout { .. }), "{e}");
    // Memory of the wrong size.
    let small: Arc<dyn HostMemory> = Arc::new(HeapMemory::new(p.words() - 1));
    assert!(matches!(
        Host::open(small, &p).unwrap_err(),
        HostError::Layout { .. }
    ));
    // Not ours: another magic, or another version.
    let w = mem.words();
    let magic = w[0].load(Ordering::Relaxed);
    w[0].store(0x1234, Ordering::Relaxed);
    let e = Host::open(dynmem(), &p).unwrap_err();
    assert!(matches!(e, HostError::Foreign { magic: 0x1234, .. }), "{e}");
    assert!(e.to_string().contains("not a Homa host table"), "{e}");
    w[0].store(magic, Ordering::Relaxed);
    w[1].store(99, Ordering::Relaxed);
    assert!(matches!(
        Host::open(dynmem(), &p).unwrap_err(),
        HostError::Foreign { version: 99, .. }
    ));
    // init on a table that is not zeroed does not overwrite it.
    assert!(Host::init(dynmem(), &p).is_err());
    assert_eq!(words_for(p.slots, p.candidates_per_slot), p.words());
}

#[test]
fn join_host__full_until_a_participant_stops_heartbeating() {
    let c = config();
    let p = params(&c, 2);
    let host = Host::in_process(&p);
    let mut eps: Vec<Endpoint> = (0..3)
        .map(|i| Endpoint::new(c.clone(), i).unwrap())
        .collect();
    let t0 = Instant::from_micros(10);
    eps[0].join_host(t0, &host, 1, 0).unwrap();
    eps[1].join_host(t0, &host, 2, 0).unwrap();
    assert_eq!(
        eps[2].join_host(t0, &host, 3, 0),
        Err(HostError::Full { slots: 2 })
    );
    assert_eq!(eps[0].host_view().unwrap().participants, 2);
    // Still live just before the bound, dead after it.
    let t1 = t0 + p.liveness;
    assert!(eps[2].join_host(t1, &host, 3, 0).is_err());
    let t2 = t1 + Duration::from_nanos(1);
    eps[2].join_host(t2, &host, 3, 0).unwrap();
    // A participant that leaves frees its slot at once.
    eps[2].leave_host();
    assert!(eps[2].host_view().is_none());
    eps[2].join_host(t2, &host, 3, 0).unwrap();
}

// ----- grants ---------------------------------------------------------------

/// Receivers 0 and 1, senders 2..=6 each sending two 400 kB requests to
/// each receiver. Returns the largest sum of the receivers'
/// granted-but-not-received bytes seen at any step.
fn two_receivers(joined: bool) -> i64 {
    let c = no_fifo_grants();
    let mut net = lan(71, 7, &c);
    if joined {
        share(&mut net, &[0, 1], &params(&c, 4));
    }
    for s in 2..=6 {
        for r in 0..2 {
            request(&mut net, s, r, 400_000);
            request(&mut net, s, r, 400_000);
        }
    }
    let worst = Cell::new(0i64);
    serve(&mut net, 20, Duration::from_secs(1), |net| {
        let sum = net.host(0).endpoint.total_incoming() + net.host(1).endpoint.total_incoming();
        worst.set(worst.get().max(sum));
    });
    worst.get()
}

#[test]
fn grants__two_endpoints_sharing_a_host_never_exceed_max_incoming_together() {
    let max = config().max_incoming as i64;
    // Unscheduled bytes are not the receivers' to refuse: one packet of
    // each of the 20 messages.
    let unsched = 20 * 1500;
    let shared = two_receivers(true);
    let alone = two_receivers(false);
    eprintln!("largest host incoming: shared {shared}, independent {alone}, max_incoming {max}");
    assert!(shared <= max + unsched, "{shared} > {max} + {unsched}");
    assert!(
        alone > max * 3 / 2,
        "independent endpoints each use the whole budget: {alone}"
    );
}

/// Endpoint 0 receives a 16 MB request from host 2; after 200 µs host 2's
/// DATA to it is held (at the host's one downlink, behind endpoint 1's
/// higher-level traffic: endpoint 1 then receives an 8 MB request from
/// host 3, which ranks first on the host). Arrival levels are reported, as
/// the UDP runtime does. `max_incoming` leaves room for endpoint 1's
/// grants beside the bytes held. Returns endpoint 0's silence RESENDs after
/// 7 ms, and how long endpoint 1's request kept the downlink busy by then.
fn queued_behind_the_other_participant(joined: bool) -> (u64, Duration) {
    let c = Config {
        max_incoming: 1_000_000,
        ..config()
    };
    let mut net = lan(91, 4, &c);
    net.set_report_levels(true);
    if joined {
        share(&mut net, &[0, 1], &params(&c, 4));
    }
    request(&mut net, 2, 0, 16_000_000);
    net.advance(Duration::from_micros(200));
    let (x, a) = (net.addr(2, 0).ip(), net.addr(0, 0).ip());
    net.set_filter(move |d, _| {
        if d.src.ip() == x && d.dst.ip() == a && d.packet_type() == Some(PacketType::Data) {
            Verdict::Hold
        } else {
            Verdict::Deliver
        }
    });
    request(&mut net, 3, 1, 8_000_000);
    net.advance(Duration::from_millis(7));
    let busy = net.port_stats(1).busy;
    (net.endpoint(0).stats().resends_silence, busy)
}

#[test]
fn resend__granted_bytes_queued_behind_another_participants_traffic_are_not_asked_for() {
    let (shared, busy) = queued_behind_the_other_participant(true);
    let (alone, busy_alone) = queued_behind_the_other_participant(false);
    eprintln!(
        "endpoint 0's silence RESENDs: shared {shared} (endpoint 1's downlink busy {busy:?}), \
         independent {alone} ({busy_alone:?})"
    );
    // The other participant's request kept the downlink busy for longer
    // than `resend_after`: the held bytes were queued, not lost.
    assert!(busy > Duration::from_millis(6), "{busy:?}");
    assert_eq!(shared, 0, "the host's downlink was busy at a higher level");
    assert!(
        alone > 0,
        "alone, an endpoint sees only its own packets and asks after resend_after"
    );
}

/// Endpoint 0 receives a 2 MB request from host 2, endpoint 1 a 300 kB
/// one from host 3 (started 20 µs earlier). Returns the bytes endpoint 0
/// had received when endpoint 1's request completed.
fn shortest_first(joined: bool) -> u32 {
    let c = Config {
        grant_fifo_fraction: 0,
        max_overcommit: 1,
        ..config()
    };
    let mut net = lan(72, 4, &c);
    if joined {
        share(&mut net, &[0, 1], &params(&c, 4));
    }
    request(&mut net, 3, 1, 300_000);
    net.advance(Duration::from_micros(20));
    request(&mut net, 2, 0, 2_000_000);
    let at_short = Rc::new(Cell::new(None));
    let a2 = at_short.clone();
    let done = Rc::new(Cell::new(0));
    let d2 = done.clone();
    net.run_until(
        Limits {
            max_steps: 10_000_000,
            max_time: Duration::from_secs(1),
        },
        move |net, h, ev| {
            if let Event::Request { port, peer, id, .. } = ev {
                d2.set(d2.get() + 1);
                if h == 1 {
                    let got = net
                        .endpoint(0)
                        .incoming_messages()
                        .map(|m| m.received)
                        .max();
                    a2.set(Some(got.unwrap_or(u32::MAX)));
                }
                respond(net, h, port, peer, id, Bytes::from_static(b"k"));
            }
        },
        // The long message must complete too: once the short one is done,
        // endpoint 0 learns it from the table (its re-check timer), not
        // from its own packets (none arrive: it had granted nothing).
        |_| done.get() == 2,
    )
    .unwrap();
    at_short.get().unwrap()
}

#[test]
fn grants__the_shortest_message_across_endpoints_is_granted_first() {
    let shared = shortest_first(true);
    let alone = shortest_first(false);
    eprintln!(
        "long message's bytes when the short one completed: shared {shared}, independent {alone}"
    );
    // Shared: the long message got its unscheduled packet and at most one
    // window granted before the short one was published (none here: it
    // started later); independent: it streamed all along.
    assert!(shared <= 60_000, "{shared}");
    assert!(alone >= 200_000, "{alone}");
}

/// Endpoints 0 and 1 share a host table whose re-check timer is as long
/// as it allows (`liveness`), with one overcommitment slot for the host:
/// endpoint 1 receives 300 kB, and 20 µs later endpoint 0 starts receiving
/// 2 MB, which the shorter message holds back.
fn long_behind_short() -> (Network, Host) {
    let c = Config {
        grant_fifo_fraction: 0,
        max_overcommit: 1,
        ..config()
    };
    let mut net = lan(72, 4, &c);
    let mut p = params(&c, 4);
    p.recheck = p.liveness;
    let host = share(&mut net, &[0, 1], &p);
    request(&mut net, 3, 1, 300_000);
    net.advance(Duration::from_micros(20));
    request(&mut net, 2, 0, 2_000_000);
    (net, host)
}

/// `shortest_first` with the endpoints' own re-check timer set as long as
/// the table allows (`liveness`), driven step by step; with `events`, the
/// loop does what a runtime's waiter does: after every step, an endpoint
/// whose [`Endpoint::host_wait`] is over ([`Host::wait_over`]) gets
/// [`Endpoint::host_recheck`]. Returns when the long message completed and
/// endpoint 0's host figures then.
fn shortest_first_by_events(events: bool) -> (Instant, homa_proto::HostView) {
    let (mut net, host) = long_behind_short();
    let deadline = net.now() + Duration::from_secs(1);
    loop {
        for h in 0..4 {
            for ev in net.take_events(h) {
                if let Event::Request { port, peer, id, .. } = ev {
                    if h == 0 {
                        let view = net.endpoint(0).host_view().unwrap();
                        return (net.now(), view);
                    }
                    respond(&mut net, h, port, peer, id, Bytes::from_static(b"k"));
                }
            }
        }
        if events {
            for h in 0..2 {
                let now = net.now();
                let ep = net.endpoint(h);
                if ep.host_wait().is_some_and(|w| host.wait_over(w)) {
                    ep.host_recheck(now);
                }
            }
        }
        assert!(
            net.step() && net.now() < deadline,
            "stalled at {:?}",
            net.now()
        );
    }
}

#[test]
fn recheck__a_held_back_endpoint_is_released_by_the_change_without_a_timer() {
    let (by_event, ev) = shortest_first_by_events(true);
    let (by_timer, tv) = shortest_first_by_events(false);
    eprintln!("long message done: by event {by_event:?} {ev:?}, by timer {by_timer:?} {tv:?}");
    // The short message's completion (its endpoint's candidates left the
    // table: a releasing change) moved the generation; the waiter's
    // re-check granted the long message at once, before any host timer
    // of endpoint 0 found anything to do.
    assert!(ev.event_rechecks >= 1, "{ev:?}");
    assert_eq!(ev.timer_rechecks, 0, "{ev:?}");
    // Without the waiter only endpoint 0's own timer (its heartbeat, a
    // quarter of `liveness`) releases it, milliseconds later.
    assert_eq!(tv.event_rechecks, 0, "{tv:?}");
    assert!(tv.timer_rechecks >= 1, "{tv:?}");
    assert!(by_event + Duration::from_millis(2) < by_timer);
}

#[test]
fn recheck__a_wake_up_that_is_not_a_grant_does_not_keep_the_wait_over() {
    let (mut net, host) = long_behind_short();
    // Endpoint 0's long message is held back by endpoint 1's shorter one.
    let deadline = net.now() + Duration::from_millis(50);
    let token = loop {
        if let Some(t) = net.endpoint(0).host_wait() {
            if !host.wait_over(t) {
                break t;
            }
        }
        assert!(
            net.step() && net.now() < deadline,
            "endpoint 0 never held back"
        );
    };
    // A wake-up of its slot that is not a grant's (a waiter's kick; a
    // yield's or a hostile write does the same): the wait reads as over,
    // the runtime pokes the endpoint, and there is nothing to pass for.
    host.slot_kick(token, 0);
    assert!(host.wait_over(token));
    let now = net.now();
    let ep = net.endpoint(0);
    assert!(!ep.host_recheck(now), "a kick is not a release");
    // The endpoint absorbed it: its wait no longer reads as over (else the
    // waiter would poke it, and it would republish the same wait, at every
    // look until its next pass).
    let after = ep.host_wait().expect("still held back");
    assert!(!host.wait_over(after), "{token:#x} -> {after:#x}");
    // A grant wake-up still ends the wait: endpoint 1's message completes
    // and endpoint 0's long message finishes.
    let done = serve(&mut net, 2, Duration::from_secs(1), |_| {});
    assert_eq!(done.len(), 2, "{done:?}");
}

// ----- a dead or hostile participant -------------------------------------

/// Slot `s` of a table with `p`'s layout: the word index of its field `i`
/// (0 heartbeat, 1 owner, 2 incoming, 3 candidate count, 4 paced message,
/// 5 its stamp, 9 yield, 11.. candidates), after the 24 header words.
fn slot_word(p: &HostParams, s: u32, i: usize) -> usize {
    24 + s as usize * (11 + p.candidates_per_slot as usize) + i
}

/// Sets slot `s`'s bit in the header's occupancy bitmap (word 14), as a
/// claim does: a forged participant the others must see.
fn occupy(w: &[std::sync::atomic::AtomicU64], s: u32) {
    w[14].fetch_or(1 << s, Ordering::Relaxed);
}

#[test]
fn liveness__a_participant_that_stops_heartbeating_frees_its_share_after_the_bound() {
    let c = no_fifo_grants();
    let (p, mem, host) = raw_table(&c, 4);
    // A participant in slot 3 holds the whole budget, then dies (never
    // heartbeats again).
    let w = mem.words();
    w[slot_word(&p, 3, 0)].store(1, Ordering::Relaxed);
    occupy(w, 3);
    w[slot_word(&p, 3, 2)].store(c.max_incoming as u64, Ordering::Relaxed);
    let mut net = lan(73, 2, &c);
    let now = net.now();
    net.endpoint(1).join_host(now, &host, 9, 0).unwrap();
    request(&mut net, 0, 1, 1_000_000);
    let arr = serve(&mut net, 1, Duration::from_secs(1), |_| {});
    let done = arr[0].2;
    eprintln!("1 MB behind a dead participant completed at {done:?}");
    // Nothing could be granted until the dead share expired...
    assert!(done > Instant::ZERO + p.liveness, "{done:?}");
    // ... and then the message ran at line rate (1 MB at 10 Gbit/s: 0.8 ms).
    assert!(
        done < Instant::ZERO + p.liveness + Duration::from_millis(3),
        "{done:?}"
    );
}

/// Endpoints 0 and 1 share a table that `vandal` scribbles on before every
/// step; hosts 2 and 3 send them 30 requests of mixed sizes. Returns the
/// completion time of the last.
fn under_vandal(
    seed: u64,
    vandal: impl FnMut(&[std::sync::atomic::AtomicU64], Instant, &mut homa_proto::Rng),
) -> Instant {
    under_vandal_with(seed, config(), vandal)
}

fn under_vandal_with(
    seed: u64,
    c: Config,
    mut vandal: impl FnMut(&[std::sync::atomic::AtomicU64], Instant, &mut homa_proto::Rng),
) -> Instant {
    let (_, mem, host) = raw_table(&c, 4);
    let mut net = lan_with_two_joined(seed, &c, &host);
    let mut rng = homa_proto::Rng::new(seed);
    for i in 0..30 {
        let len = [500, 20_000, 150_000, 600_000][i % 4];
        request(&mut net, 2 + i % 2, (i / 2) % 2, len);
    }
    let arr = serve(&mut net, 30, Duration::from_secs(2), |net| {
        vandal(mem.words(), net.now(), &mut rng)
    });
    assert_eq!(arr.len(), 30);
    // Both endpoints still answer to the table afterwards.
    assert!(net.endpoint(0).host_view().is_some());
    arr.iter().map(|a| a.2).max().unwrap()
}

#[test]
fn garbage__a_participant_claiming_everything_makes_scheduling_unfair_not_stalled() {
    let p = params(&config(), 4);
    let last = under_vandal(74, |w, now, _| {
        // Slot 3 keeps heartbeating and claims the whole budget and the
        // best candidates.
        w[slot_word(&p, 3, 0)].store(now.as_nanos().max(1), Ordering::Relaxed);
        occupy(w, 3);
        w[slot_word(&p, 3, 2)].store(u64::MAX, Ordering::Relaxed);
        w[slot_word(&p, 3, 3)].store(u64::MAX, Ordering::Relaxed);
        for i in 0..p.candidates_per_slot as usize {
            w[slot_word(&p, 3, 11 + i)].store(0, Ordering::Relaxed);
        }
        // And the shared NIC estimate says "busy forever".
        w[10].store(u64::MAX, Ordering::Relaxed);
    });
    eprintln!("hostile slot: all 30 requests done at {last:?}");
}

#[test]
fn garbage__a_participant_claiming_everything_cannot_stop_grants_even_without_fifo_grants() {
    // No FIFO grants: only the starvation rule (a pass alone after
    // `liveness` of being held back) lets the scheduled bytes through.
    let c = no_fifo_grants();
    let p = params(&c, 4);
    let last = under_vandal_with(75, c, |w, now, _| {
        w[slot_word(&p, 3, 0)].store(now.as_nanos().max(1), Ordering::Relaxed);
        occupy(w, 3);
        w[slot_word(&p, 3, 2)].store(u64::MAX, Ordering::Relaxed);
        w[slot_word(&p, 3, 3)].store(u64::MAX, Ordering::Relaxed);
        for i in 0..p.candidates_per_slot as usize {
            w[slot_word(&p, 3, 11 + i)].store(0, Ordering::Relaxed);
        }
    });
    eprintln!("hostile slot, no FIFO grants: all 30 requests done at {last:?}");
    assert!(last > Instant::ZERO + p.liveness, "they were held back");
}

#[test]
fn garbage__random_words_anywhere_in_the_table_neither_panic_nor_stall() {
    for seed in 0..4 {
        let last = under_vandal(80 + seed, |w, _, rng| {
            for _ in 0..4 {
                let i = (rng.next_u64() % w.len() as u64) as usize;
                let v = match rng.next_u64() % 4 {
                    0 => 0,
                    1 => u64::MAX,
                    2 => rng.next_u64() % 1_000_000,
                    _ => rng.next_u64(),
                };
                w[i].store(v, Ordering::Relaxed);
            }
        });
        eprintln!("random garbage (seed {seed}): all 30 requests done at {last:?}");
    }
}

// ----- the pacer ---------------------------------------------------------------

/// Worst bytes handed to the NICs of `hosts` in any 500 µs window.
fn worst_window(net: &Network, hosts: &[usize]) -> u64 {
    let log: Vec<(Instant, u64)> = net
        .nic_log()
        .iter()
        .filter(|e| hosts.contains(&e.1))
        .map(|e| (e.0, e.2))
        .collect();
    let window = Duration::from_micros(500);
    let (mut j, mut sum, mut worst) = (0, 0u64, 0u64);
    for i in 0..log.len() {
        while j < log.len() && log[j].0 < log[i].0 + window {
            sum += log[j].1;
            j += 1;
        }
        worst = worst.max(sum);
        sum -= log[i].1;
    }
    worst
}

/// Bytes one 500 µs window may carry at the link rate, plus the backlog
/// allowance and a packet.
fn window_limit(c: &Config) -> u64 {
    RATE / 8 / 2000 + c.max_nic_backlog.as_nanos() as u64 * RATE / 8 / 1_000_000_000 + 1600
}

/// Endpoints 0 and 1 (one host's processes) each send 4 MB to receivers
/// 2 and 3.
fn two_senders(joined: bool) -> u64 {
    let c = config();
    let mut net = lan(75, 4, &c);
    if joined {
        share(&mut net, &[0, 1], &params(&c, 4));
    }
    net.record_nic();
    for s in 0..2 {
        for r in 2..4 {
            request(&mut net, s, r, 2_000_000);
        }
    }
    serve(&mut net, 4, Duration::from_secs(1), |_| {});
    worst_window(&net, &[0, 1])
}

#[test]
fn pacer__two_endpoints_on_one_host_table_stay_under_one_nic_estimate() {
    let limit = window_limit(&config());
    let shared = two_senders(true);
    let alone = two_senders(false);
    eprintln!("worst 500 us window: shared {shared}, independent {alone}, one link {limit}");
    assert!(shared <= limit, "{shared} > {limit}");
    assert!(
        shared as f64 >= 0.9 * (RATE / 8 / 2000) as f64,
        "link used: {shared}"
    );
    assert!(
        alone > limit * 3 / 2,
        "independent endpoints each pace at the full rate: {alone}"
    );
}

#[test]
fn pacer__one_endpoint_paces_all_its_sockets_under_one_estimate() {
    let c = config();
    let mut net = lan(76, 3, &c);
    net.record_nic();
    // Three client sockets on endpoint 0, each sending to both receivers.
    let ports: Vec<u16> = (0..3)
        .map(|_| net.endpoint(0).open_socket(0).unwrap())
        .collect();
    for &port in &ports {
        for r in 1..3 {
            let now = net.now();
            let dest = net.addr(r, SERVER_PORT);
            net.endpoint(0)
                .send_request(now, port, dest, pattern(7, 1_000_000))
                .unwrap();
        }
    }
    serve(&mut net, 6, Duration::from_secs(1), |_| {});
    let worst = worst_window(&net, &[0]);
    let limit = window_limit(&c);
    eprintln!("worst 500 us window of one endpoint with 3 sockets: {worst}, limit {limit}");
    assert!(worst <= limit, "{worst} > {limit}");
}

#[test]
fn host_view__reports_the_host_figures() {
    let c = config();
    let mut net = lan(77, 4, &c);
    share(&mut net, &[0, 1], &params(&c, 4));
    request(&mut net, 2, 0, 1_000_000);
    request(&mut net, 3, 1, 1_000_000);
    net.advance(Duration::from_micros(100));
    let v0 = net.endpoint(0).host_view().unwrap();
    let v1 = net.endpoint(1).host_view().unwrap();
    assert_eq!(v0.participants, 2);
    assert_ne!(v0.slot, v1.slot);
    assert!(v0.own_incoming > 0 && v1.own_incoming > 0, "{v0:?} {v1:?}");
    assert!(
        v0.host_incoming >= v0.own_incoming + v1.own_incoming / 2,
        "{v0:?} {v1:?}"
    );
    assert!(
        v0.host_incoming <= c.max_incoming as u64 + 2 * 1500,
        "{v0:?}"
    );
}

/// Endpoint 0 streams 3 MB to host 2; 200 µs later endpoint 1 (same
/// host) sends 200 kB to host 3. Returns endpoint 0's bytes handed to the
/// NIC while endpoint 1 was sending, over endpoint 1's bytes.
fn long_then_short_sender(joined: bool) -> f64 {
    let c = config();
    let mut net = lan(78, 4, &c);
    if joined {
        share(&mut net, &[0, 1], &params(&c, 4));
    }
    net.record_nic();
    request(&mut net, 0, 2, 3_000_000);
    net.advance(Duration::from_micros(200));
    request(&mut net, 1, 3, 200_000);
    serve(&mut net, 2, Duration::from_secs(1), |_| {});
    if joined {
        // The long sender's turns that sent no paced data are counted, and
        // some of them were yields to the shorter message.
        let v = net.endpoint(0).host_view().unwrap();
        eprintln!(
            "long sender: pacer re-waits {}, yields {}",
            v.pacer_rewaits, v.pacer_yields
        );
        assert!(
            v.pacer_yields > 0 && v.pacer_rewaits >= v.pacer_yields,
            "{v:?}"
        );
    }
    let log = net.nic_log();
    // Endpoint 1's DATA: its hand-offs larger than a control packet.
    let b: Vec<_> = log.iter().filter(|e| e.1 == 1 && e.2 > 200).collect();
    let (t0, t1) = (b.first().unwrap().0, b.last().unwrap().0);
    let b_bytes: u64 = b.iter().map(|e| e.2).sum();
    let a_bytes: u64 = log
        .iter()
        .filter(|e| e.1 == 0 && e.0 >= t0 && e.0 <= t1)
        .map(|e| e.2)
        .sum();
    a_bytes as f64 / b_bytes as f64
}

#[test]
fn pacer__the_shortest_outgoing_message_of_the_host_goes_first() {
    let shared = long_then_short_sender(true);
    let alone = long_then_short_sender(false);
    eprintln!("long sender's bytes while the short one sent, per short byte: shared {shared:.2}, independent {alone:.2}");
    assert!(shared < 0.2, "{shared}");
    assert!(alone > 0.8, "{alone}");
}

/// A participant that keeps the shared NIC estimate just under the
/// plausibility bound (`liveness` ahead) and publishes a shorter paced
/// message of its own, forever: endpoint 0's paced message still
/// completes, by its own estimate after each `liveness` of holding.
#[test]
fn garbage__a_participant_keeping_the_link_busy_slows_paced_data_but_cannot_stop_it() {
    let c = config();
    let (p, mem, host) = raw_table(&c, 4);
    let mut net = lan(79, 2, &c);
    let now = net.now();
    net.endpoint(0).join_host(now, &host, 1, 0).unwrap();
    request(&mut net, 0, 1, 40_000);
    let liveness = p.liveness.as_nanos() as u64;
    let arr = serve(&mut net, 1, Duration::from_secs(5), |net| {
        let w = mem.words();
        let now = net.now().as_nanos();
        w[10].store(now + liveness - 1000, Ordering::Relaxed);
        w[slot_word(&p, 3, 0)].store(now.max(1), Ordering::Relaxed);
        occupy(w, 3);
        w[slot_word(&p, 3, 4)].store(1, Ordering::Relaxed);
        w[slot_word(&p, 3, 5)].store(now, Ordering::Relaxed);
    });
    eprintln!(
        "40 kB under a hostile NIC estimate completed at {:?}",
        arr[0].2
    );
    assert!(arr[0].2 > Instant::ZERO + p.liveness, "it was held");
}

#[test]
fn garbage__a_lone_participant_held_back_by_a_hostile_slot_still_finishes() {
    // One honest endpoint and a hostile slot that keeps heartbeating and
    // claims the whole budget, never bumping the generation word: nothing
    // else on the table changes, so only the starvation rule can let the
    // scheduled bytes through.
    let c = no_fifo_grants();
    let (p, mem, host) = raw_table(&c, 4);
    let mut net = lan(91, 2, &c);
    let now = net.now();
    net.endpoint(1).join_host(now, &host, 9, 0).unwrap();
    request(&mut net, 0, 1, 1_000_000);
    let arr = serve(&mut net, 1, Duration::from_secs(2), |net| {
        let w = mem.words();
        w[slot_word(&p, 3, 0)].store(net.now().as_nanos().max(1), Ordering::Relaxed);
        occupy(w, 3);
        w[slot_word(&p, 3, 2)].store(u64::MAX, Ordering::Relaxed);
    });
    let done = arr[0].2;
    eprintln!("1 MB behind a hostile slot completed at {done:?}");
    assert!(done > Instant::ZERO + p.liveness, "{done:?}");
}

#[test]
fn pacer__an_endpoint_whose_idle_slot_was_taken_publishes_in_a_slot_of_its_own() {
    let c = config();
    let (p, mem, host) = raw_table(&c, 2);
    let mut net = lan(95, 2, &c);
    let now = net.now();
    // Endpoint 0 joins (slot 0) and stays idle: its slot lapses.
    net.endpoint(0).join_host(now, &host, 2, 0).unwrap();
    assert_eq!(net.endpoint(0).host_view().unwrap().slot, 0);
    net.advance(p.liveness * 2);
    // Endpoint 1 joins and takes the lapsed slot 0.
    let now = net.now();
    net.endpoint(1).join_host(now, &host, 4, 0).unwrap();
    assert_eq!(net.endpoint(1).host_view().unwrap().slot, 0);
    // Endpoint 0 starts a long paced message: it must publish it in a slot
    // of its own, not in endpoint 1's.
    request(&mut net, 0, 1, 1_000_000);
    let w = mem.words();
    let tx = |s| w[slot_word(&p, s, 4)].load(Ordering::Relaxed);
    // Until the first grants make it sendable (it then queues in the pacer).
    for _ in 0..10_000 {
        if tx(0) != 0 || tx(1) != 0 {
            break;
        }
        net.step();
    }
    assert_eq!(
        tx(0),
        0,
        "endpoint 0 published its paced message in endpoint 1's slot"
    );
    assert_ne!(tx(1), 0, "endpoint 0 published nothing");
    assert_eq!(net.endpoint(0).host_view().unwrap().slot, 1);
    assert_eq!(net.endpoint(1).host_view().unwrap().slot, 0);
}

// ----- the wake rule -------------------------------------------------------

/// Two endpoints of one host receive 200 kB requests from two senders at
/// once, both held back by the shared `max_incoming` most of the time; the
/// loop does what a runtime's waiter does (an endpoint whose wait is over
/// gets [`Endpoint::host_recheck`]: a poke). Returns (RPCs, pokes, pokes
/// after which the endpoint granted nothing, futex wake-ups asked for,
/// when the last request arrived).
fn wake_storm(seed: u64) -> (u64, u64, u64, u64, Instant) {
    let c = no_fifo_grants();
    let p = HostParams {
        // Only events re-check: the timer is the fallback.
        recheck: Duration::from_millis(20),
        ..params(&c, 4)
    };
    let mem = Arc::new(CountingWakes::new(p.words()));
    let host = Host::init(mem.clone(), &p).unwrap();
    let mut net = lan_with_two_joined(seed, &c, &host);
    // A waiter sleeps all along (counted, lease to the end): every
    // generation move asks for a futex wake-up.
    host.wait_begin(0, u64::MAX / 2);
    let n = 24;
    for i in 0..n {
        request(&mut net, 2 + i % 2, (i / 2) % 2, 200_000);
    }
    let (mut pokes, mut useless) = (0u64, 0u64);
    let mut poked: [Option<u64>; 2] = [None, None];
    let mut done = 0;
    let deadline = net.now() + Duration::from_secs(2);
    while done < n {
        for h in 0..4 {
            for ev in net.take_events(h) {
                if let Event::Request { port, peer, id, .. } = ev {
                    done += 1;
                    respond(&mut net, h, port, peer, id, Bytes::from_static(b"k"));
                }
            }
        }
        for (h, was) in poked.iter_mut().enumerate() {
            let grants = net.endpoint(h).stats().grants;
            if let Some(before) = was.take() {
                useless += (grants == before) as u64;
            }
            let now = net.now();
            let ep = net.endpoint(h);
            if ep.host_wait().is_some_and(|w| host.wait_over(w)) {
                pokes += 1;
                ep.host_recheck(now);
                *was = Some(grants);
            }
        }
        assert!(
            net.step() && net.now() < deadline,
            "stalled at {:?} after {done} of {n} requests",
            net.now()
        );
    }
    let wakes = mem.wakes.load(Ordering::Relaxed);
    (n as u64, pokes, useless, wakes, net.now())
}

/// Table memory that counts the futex wake-ups publishers ask for.
struct CountingWakes {
    mem: HeapMemory,
    wakes: std::sync::atomic::AtomicU64,
}

impl CountingWakes {
    fn new(words: usize) -> CountingWakes {
        CountingWakes {
            mem: HeapMemory::new(words),
            wakes: Default::default(),
        }
    }
}

impl HostMemory for CountingWakes {
    fn words(&self) -> &[std::sync::atomic::AtomicU64] {
        self.mem.words()
    }
    fn wake(&self, _: &std::sync::atomic::AtomicU64) {
        self.wakes.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn wake__held_back_endpoints_are_woken_only_when_it_can_help() {
    let (rpcs, pokes, useless, wakes, end) = wake_storm(91);
    eprintln!(
        "{rpcs} RPCs done at {end:?}: {pokes} pokes ({:.2} per RPC, {useless} granted nothing), \
         {wakes} futex wake-ups ({:.2} per RPC)",
        pokes as f64 / rpcs as f64,
        wakes as f64 / rpcs as f64
    );
    // A poke that grants nothing is a wake-up for nobody: at most one in
    // ten, and fewer wake-ups than RPCs.
    assert!(useless * 10 <= pokes, "{useless} of {pokes} pokes useless");
    assert!(wakes <= rpcs, "{wakes} wake-ups for {rpcs} RPCs");
    assert!(pokes <= 2 * rpcs, "{pokes} pokes for {rpcs} RPCs");
}

/// Endpoint 0 streams 3 MB to host 2, filling the host's shared NIC
/// estimate; 200 µs later endpoint 1 (same table) sends a 300-byte request
/// to host 3. Returns how long after the send the short request's DATA
/// was handed to the NIC, and the shared backlog it found.
fn short_behind_a_full_estimate() -> (Duration, u64) {
    let c = config();
    let mut net = lan(80, 4, &c);
    share(&mut net, &[0, 1], &params(&c, 4));
    net.record_nic();
    request(&mut net, 0, 2, 3_000_000);
    net.advance(Duration::from_micros(200));
    let backlog = net.endpoint(1).host_view().unwrap().link_backlog_ns;
    let sent = net.now();
    request(&mut net, 1, 3, 300);
    serve(&mut net, 2, Duration::from_secs(1), |_| {});
    let first = net
        .nic_log()
        .iter()
        .find(|e| e.1 == 1 && e.0 >= sent)
        .map(|e| e.0)
        .unwrap();
    (first.saturating_duration_since(sent), backlog)
}

#[test]
fn pacer__a_short_message_is_not_held_by_the_host_estimate_another_participant_filled() {
    let (waited, backlog) = short_behind_a_full_estimate();
    eprintln!("300 B request behind {backlog} ns of the other participant's paced data: handed to the NIC after {waited:?}");
    assert!(
        backlog > 0,
        "the other participant filled the shared estimate"
    );
    assert_eq!(waited, Duration::ZERO);
}

// ----- the yielding pacer ----------------------------------------------------

/// What [`yielding_sender`] saw of endpoint 0, the sender that yields.
#[derive(Debug)]
struct Yielder {
    /// Its driver's turns without a packet for it while endpoint 1's
    /// message was sending: its own deadline passing; and pokes (a
    /// runtime's waiter) until it sent again.
    timer_turns: usize,
    pokes: usize,
    /// Its bytes handed to the NIC while endpoint 1's message was
    /// sending, over endpoint 1's.
    share: f64,
    /// From endpoint 1's last DATA hand-off to endpoint 0's next one.
    resumed_after: Duration,
    /// When endpoint 0's message arrived complete.
    done: Instant,
    view: homa_proto::HostView,
}

/// Endpoint 0 streams 3 MB to host 2; 200 µs later endpoint 1 (the same
/// table: the same host) sends 200 kB to host 3, and endpoint 0 yields the
/// link to it. Driven step by step; with `waiter`, the table says the
/// driver has a waiter and the loop does what the waiter does (an endpoint
/// whose [`Endpoint::host_wait`] is over gets [`Endpoint::host_recheck`]).
///
/// The network hands every endpoint the chance to transmit at every step;
/// a runtime's driver turns only when a packet arrives, when the deadline
/// it read at its last turn passes, or when it is poked. Endpoint 0's
/// turns are counted that way: its deadline is the one it reported after
/// its last such turn.
///
/// With `stall`, endpoint 1 stops (paused for a second: a stalled or dead
/// process whose slot is still live) that long after its request started.
fn yielding_sender(waiter: bool, stall: Option<Duration>) -> Yielder {
    let c = config();
    let mut net = lan(81, 4, &c);
    let p = HostParams {
        waiter,
        ..params(&c, 4)
    };
    let host = share(&mut net, &[0, 1], &p);
    net.record_nic();
    request(&mut net, 0, 2, 3_000_000);
    net.advance(Duration::from_micros(200));
    let short_at = net.now();
    request(&mut net, 1, 3, 200_000);
    let mut stalled = false;
    let (mut timer_turns, mut pokes) = (Vec::new(), Vec::new());
    let mut done = None;
    let mut arrivals = 0;
    let (mut rx0, mut due, mut token) = (0, None, None);
    let deadline = net.now() + Duration::from_secs(1);
    while done.is_none() || arrivals < 2 - stall.is_some() as usize {
        for h in 0..4 {
            for ev in net.take_events(h) {
                if let Event::Request { port, peer, id, .. } = ev {
                    arrivals += 1;
                    if h == 2 {
                        done = Some(net.now());
                    }
                    respond(&mut net, h, port, peer, id, Bytes::from_static(b"k"));
                }
            }
        }
        if let Some(d) = stall {
            if !stalled && net.now() >= short_at + d {
                stalled = true;
                net.pause_host(1, Duration::from_secs(1));
            }
        }
        // A poke: the wait endpoint 0 reported at its last turn is over
        // (the waiter would wake it).
        let mut turn = false;
        if waiter && token.is_some_and(|w| host.wait_over(w)) {
            pokes.push(net.now());
            let now = net.now();
            net.endpoint(0).host_recheck(now);
            turn = true;
        }
        let rx = net.endpoint(0).stats().received.total_packets();
        turn |= rx != rx0;
        rx0 = rx;
        if due.is_some_and(|d| d <= net.now()) {
            timer_turns.push(net.now());
            turn = true;
        }
        // (Its output collected first: what it asks for after this turn.)
        net.next_event_time();
        if turn || due.is_none() {
            due = net.endpoint(0).poll_timeout();
        }
        if turn || token.is_none() {
            token = net.endpoint(0).host_wait();
        }
        assert!(
            net.step() && net.now() < deadline,
            "stalled at {:?}",
            net.now()
        );
    }
    let view = net.endpoint(0).host_view().unwrap();
    let log = net.nic_log();
    let b: Vec<_> = log.iter().filter(|e| e.1 == 1 && e.2 > 200).collect();
    let (t0, t1) = (b.first().unwrap().0, b.last().unwrap().0);
    let b_bytes: u64 = b.iter().map(|e| e.2).sum();
    let during = |t: &Instant| *t >= t0 && *t <= t1;
    let a_bytes: u64 = log
        .iter()
        .filter(|e| e.1 == 0 && during(&e.0))
        .map(|e| e.2)
        .sum();
    let resumed = log
        .iter()
        .find(|e| e.1 == 0 && e.0 > t1)
        .map(|e| e.0)
        .unwrap();
    Yielder {
        timer_turns: timer_turns.iter().filter(|t| during(t)).count(),
        pokes: pokes.iter().filter(|t| during(t) || **t <= resumed).count(),
        share: a_bytes as f64 / b_bytes as f64,
        resumed_after: resumed.saturating_duration_since(t1),
        done: done.unwrap(),
        view,
    }
}

#[test]
fn pacer__a_yielding_sender_sleeps_until_the_better_message_leaves() {
    let with = yielding_sender(true, None);
    let without = yielding_sender(false, None);
    eprintln!("yielding sender, with a waiter: {with:?}");
    eprintln!("yielding sender, polling (each drain to the allowance): {without:?}");
    // The shorter message still goes first either way.
    assert!(
        with.share < 0.2 && without.share < 0.2,
        "{with:?} {without:?}"
    );
    assert!(with.view.pacer_yields > 0, "{:?}", with.view);
    // Polling, the yielding sender wakes each time the shared estimate
    // drains to the allowance while the better message sends...
    assert!(without.timer_turns >= 15, "{without:?}");
    // ... with a waiter it sleeps until the message left the table (its
    // withdrawal pokes it: also when it briefly ran out of grants) or the
    // fallback, about when the message would have been sent at the link
    // rate: a third of the turns at most.
    assert!(with.pokes >= 1, "{with:?}");
    assert!(
        (with.timer_turns + with.pokes) * 3 <= without.timer_turns,
        "{with:?} {without:?}"
    );
    // And the link was not left idle for it: the long message completes
    // no later (within a few microseconds) than when polling.
    assert!(
        with.done <= without.done + Duration::from_micros(5),
        "{:?} {:?}",
        with.done,
        without.done
    );
}

#[test]
fn pacer__a_yielder_whose_better_participant_stalls_resumes_within_the_bound() {
    let c = config();
    // Endpoint 1 stops 60 µs into its 200 kB message (160 µs at the link
    // rate) and never withdraws it.
    let stall = Some(Duration::from_micros(60));
    let with = yielding_sender(true, stall);
    let without = yielding_sender(false, stall);
    eprintln!("better participant stalled, with a waiter: {with:?}");
    eprintln!("better participant stalled, polling: {without:?}");
    // The yielder's fallback passed with the stalled participant's
    // message unchanged: it stopped yielding to it...
    assert!(with.view.pacer_stalls >= 1, "{:?}", with.view);
    assert_eq!(without.view.pacer_stalls, 0, "{:?}", without.view);
    // ... and lost at most one fallback period: the stalled message's
    // transmit time at the link rate (at most its 200 kB: 162 µs) plus
    // one backlog allowance, against a sender that looks at every drain.
    let fallback = Duration::from_nanos(200_000 * 8080 / c.link_mbps as u64) + c.max_nic_backlog;
    assert!(
        with.done <= without.done + fallback,
        "{:?} {:?}",
        with.done,
        without.done
    );
    let b = c.max_nic_backlog;
    assert!(with.resumed_after <= b * 5, "{with:?}");
    assert!(without.resumed_after <= b * 2, "{without:?}");
}
