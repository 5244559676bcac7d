//! Every call ends by its deadline, over real sockets, whatever the
//! protocol is doing: 150 client sockets (a thread each) send 64 kB - 1 MB
//! echo requests to one server whose application stops reading for longer
//! than the protocol's timeout. Calls wait for grants that do not come, for
//! receive memory, for BUSY peers; the runtime owns the deadline and each
//! call returns (with a response or `DeadlineExceeded`) by its deadline
//! plus a small bound.
//!
//! The test is bounded in time: a watchdog reports the calls still
//! outstanding well after their deadline instead of hanging.
#![allow(non_snake_case)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use common::pattern;
use homa_transport::{AsyncSocket, Config, Error, Socket};

/// How late a call may return after its deadline: scheduling on a loaded
/// 2-core machine running 150 client threads, not protocol time.
const BOUND: Duration = Duration::from_millis(1000);

/// The two 150-socket tests load the machine on their own: they take
/// turns instead of running at once.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

/// What one client thread saw.
#[derive(Debug, Default)]
struct Outcome {
    ok: u64,
    deadline: u64,
    other: Vec<String>,
    /// (elapsed, deadline) of calls that returned later than deadline + BOUND.
    late: Vec<(Duration, Duration)>,
}

/// An echo server whose application reads for `work`, stops reading for
/// `stall`, then reads again until the socket closes.
fn stalling_server(
    config: Config,
    work: Duration,
    stall: Duration,
) -> (Socket, thread::JoinHandle<u64>) {
    let server = Socket::bind_with("127.0.0.1:0", config).unwrap();
    let s = server.clone();
    let h = thread::spawn(move || {
        let start = Instant::now();
        let mut stalled = false;
        let mut served = 0;
        loop {
            if !stalled && start.elapsed() >= work {
                stalled = true;
                thread::sleep(stall);
            }
            match s.recv_request_timeout(Duration::from_millis(20)) {
                Ok(Some(r)) => {
                    // The client may have given up: a reply to an RPC the
                    // protocol has freed is refused, which is fine.
                    let _ = s.reply(r.peer, r.id, r.body);
                    served += 1;
                }
                Ok(None) => {}
                Err(Error::Closed) => return served,
                Err(e) => panic!("server: {e}"),
            }
        }
    });
    (server, h)
}

/// Runs `clients` threads, each with its own socket, calling `server` with
/// `deadline` until `run_for` has passed; returns their outcomes, or the
/// number of threads still inside a call when the watchdog gave up.
fn run_clients(
    server: SocketAddr,
    clients: usize,
    config: &Config,
    deadline: Duration,
    run_for: Duration,
) -> Result<Vec<Outcome>, (usize, Vec<String>)> {
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut sockets = Vec::new();
    for c in 0..clients {
        let sock = Socket::bind_with("127.0.0.1:0", config.clone()).unwrap();
        sockets.push(sock.clone());
        let tx = tx.clone();
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut out = Outcome::default();
            let mut i = 0u64;
            while start.elapsed() < run_for && !stop.load(Ordering::Relaxed) {
                // 64 kB - 1 MB, spread over the clients and their calls.
                let tag = (c as u64) << 32 | i;
                let len =
                    65_536 + (tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 44) as usize % 983_041;
                let req = pattern(len, tag);
                let t0 = Instant::now();
                let r = sock.call_timeout(server, req.clone(), deadline);
                let took = t0.elapsed();
                if took > deadline + BOUND {
                    out.late.push((took, deadline));
                }
                match r {
                    Ok(resp) => {
                        assert!(resp[..] == req[..], "echo of {len} bytes differs");
                        out.ok += 1;
                    }
                    Err(Error::DeadlineExceeded) => out.deadline += 1,
                    Err(e) => out.other.push(e.to_string()),
                }
                i += 1;
            }
            let _ = tx.send(out);
        });
    }
    drop(tx);
    // Every thread starts its last call before `run_for` and that call ends
    // by `deadline + BOUND`; give twice that before calling it a hang.
    let give_up = start + run_for + 2 * (deadline + BOUND);
    let mut outcomes = Vec::new();
    while outcomes.len() < clients {
        let left = give_up.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(o) => outcomes.push(o),
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                let stuck: Vec<String> = sockets
                    .iter()
                    .filter_map(|s| {
                        let m = s.metrics();
                        (m.calls_outstanding > 0).then(|| {
                            format!(
                                "{}: {} calls outstanding, {} B unsent, {} B granted unsent, {} silence resends, {} client rpcs",
                                m.local_addr,
                                m.calls_outstanding,
                                m.proto.tx_unsent,
                                m.proto.tx_granted_unsent,
                                m.proto.stats.resends_silence,
                                m.proto.client_rpcs,
                            )
                        })
                    })
                    .collect();
                return Err((clients - outcomes.len(), stuck));
            }
        }
    }
    Ok(outcomes)
}

#[test]
fn stalled_server__150_clients_every_call_ends_by_its_deadline() {
    let _turn = heavy();
    let mut server_config = Config::default();
    server_config.server = Some(true);
    // Scaled down from the reported case (deadlines 20 s, stall 5 s,
    // timeout 1 s): the stall is longer than the protocol's timeout, so the
    // server abandons RPCs whose clients still wait for grants.
    server_config.proto.timeout = Duration::from_millis(500);
    server_config.proto.done_id_lifetime = Duration::from_secs(5);
    server_config.proto.socket_rx_budget = 16 << 20;
    let mut client_config = Config::default();
    client_config.proto.timeout = Duration::from_millis(500);
    client_config.proto.done_id_lifetime = Duration::from_secs(5);
    let (server, h) = stalling_server(
        server_config,
        Duration::from_millis(700),
        Duration::from_millis(2500),
    );
    let deadline = Duration::from_secs(2);
    let r = run_clients(
        server.local_addr(),
        150,
        &client_config,
        deadline,
        Duration::from_secs(4),
    );
    server.close();
    let outcomes = match r {
        Ok(o) => o,
        Err((n, stuck)) => panic!(
            "{n} client threads still inside a call long after its {deadline:?} deadline:\n{}",
            stuck.join("\n")
        ),
    };
    let late: Vec<_> = outcomes.iter().flat_map(|o| o.late.iter()).collect();
    let ok: u64 = outcomes.iter().map(|o| o.ok).sum();
    let expired: u64 = outcomes.iter().map(|o| o.deadline).sum();
    let other: Vec<_> = outcomes.iter().flat_map(|o| o.other.iter()).collect();
    println!(
        "{ok} ok, {expired} deadline exceeded, {} other errors: {other:?}",
        other.len()
    );
    assert!(late.is_empty(), "calls past deadline + {BOUND:?}: {late:?}");
    // The server answered before and after its stall.
    assert!(ok > 0);
    let served = h.join().unwrap();
    assert!(served > 0);
}

/// Threads parked behind the one driving a socket bound their own sleep by
/// their call's deadline: eight threads share one client socket, the
/// server's application never answers.
#[test]
fn parked_callers__each_ends_by_its_own_deadline() {
    let mut config = Config::default();
    config.server = Some(true);
    let server = Socket::bind_with("127.0.0.1:0", config).unwrap();
    let client = Socket::bind("127.0.0.1:0").unwrap();
    let dest = server.local_addr();
    let threads: Vec<_> = (0..8u64)
        .map(|i| {
            let c = client.clone();
            thread::spawn(move || {
                // Deadlines 100-800 ms, so they expire one by one while
                // the others are parked or driving.
                let deadline = Duration::from_millis(100 * (i + 1));
                let t0 = Instant::now();
                let r = c.call_timeout(dest, pattern(1000, i), deadline);
                (
                    r.map(|b| b.len()).map_err(|e| e.to_string()),
                    t0.elapsed(),
                    deadline,
                )
            })
        })
        .collect();
    for t in threads {
        let (r, took, deadline) = t.join().unwrap();
        assert_eq!(r, Err(Error::DeadlineExceeded.to_string()));
        assert!(took >= deadline, "{took:?} < {deadline:?}");
        assert!(took <= deadline + BOUND, "{took:?} for {deadline:?}");
    }
    assert_eq!(client.metrics().calls_outstanding, 0);
    assert_eq!(client.metrics().proto.client_rpcs, 0);
}

/// The tokio API under the stalled-server load: 100 client sockets, one
/// task each, on a two-thread runtime.
#[test]
fn stalled_server__tokio_clients_every_call_ends_by_its_deadline() {
    let _turn = heavy();
    let mut server_config = Config::default();
    server_config.server = Some(true);
    server_config.proto.timeout = Duration::from_millis(500);
    server_config.proto.done_id_lifetime = Duration::from_secs(5);
    server_config.proto.socket_rx_budget = 16 << 20;
    let (server, h) = stalling_server(
        server_config,
        Duration::from_millis(700),
        Duration::from_millis(2500),
    );
    let dest = server.local_addr();
    let deadline = Duration::from_secs(2);
    let run_for = Duration::from_secs(4);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let outcomes: Vec<Outcome> = rt.block_on(async move {
        let start = Instant::now();
        let tasks: Vec<_> = (0..100u64)
            .map(|c| {
                tokio::spawn(async move {
                    let mut config = Config::default();
                    config.proto.timeout = Duration::from_millis(500);
                    config.proto.done_id_lifetime = Duration::from_secs(5);
                    let sock = AsyncSocket::bind_with("127.0.0.1:0", config).unwrap();
                    let mut out = Outcome::default();
                    let mut i = 0u64;
                    while start.elapsed() < run_for {
                        let tag = c << 32 | i;
                        let len = 65_536
                            + (tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 44) as usize % 983_041;
                        let req = pattern(len, tag);
                        let t0 = Instant::now();
                        let r = sock.call_timeout(dest, req.clone(), deadline).await;
                        let took = t0.elapsed();
                        if took > deadline + BOUND {
                            out.late.push((took, deadline));
                        }
                        match r {
                            Ok(resp) => {
                                assert!(resp[..] == req[..]);
                                out.ok += 1;
                            }
                            Err(Error::DeadlineExceeded) => out.deadline += 1,
                            Err(e) => out.other.push(e.to_string()),
                        }
                        i += 1;
                    }
                    out
                })
            })
            .collect();
        let give_up = run_for + 2 * (deadline + BOUND);
        let mut outcomes = Vec::new();
        for t in tasks {
            let left = give_up.saturating_sub(start.elapsed());
            match tokio::time::timeout(left, t).await {
                Ok(o) => outcomes.push(o.unwrap()),
                Err(_) => panic!("a client task is still inside a call long after its deadline"),
            }
        }
        outcomes
    });
    server.close();
    let late: Vec<_> = outcomes.iter().flat_map(|o| o.late.iter()).collect();
    assert!(late.is_empty(), "calls past deadline + {BOUND:?}: {late:?}");
    assert!(outcomes.iter().map(|o| o.ok).sum::<u64>() > 0);
    assert!(h.join().unwrap() > 0);
}
