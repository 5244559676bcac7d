//! A live server always answers, over real sockets: while its application
//! holds requests (computes for many protocol timeouts, or keeps a hundred
//! 1 MB requests unanswered) the socket is still driven, RESENDs are
//! answered with BUSY and no caller sees `PeerTimeout`, also with the CPU
//! starved by the application's own threads and by hogs.
//!
//! The reported case, unscaled: the default 1 s protocol timeout, requests
//! held for 10 s. (Scaled down to a 300 ms timeout and 3 s holds, the
//! 100 x 1 MB case still lost 2-3 of 100 calls to `PeerTimeout` in 2 of 3
//! runs on a loaded machine, load average 12 besides the test's own hogs;
//! not yet diagnosed.)
#![allow(non_snake_case)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::pattern;
use homa_proto::wire::PacketType;
use homa_transport::{Config, Socket};

const HOLD: Duration = Duration::from_secs(10);
/// Far beyond what the run needs: only `PeerTimeout` may end a call early.
const DEADLINE: Duration = Duration::from_secs(60);

/// The two tests load the machine on their own: they take turns.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

fn config(server: bool) -> Config {
    let mut c = Config::default();
    c.server = Some(server);
    c.proto.done_id_lifetime = Duration::from_secs(30);
    // Memory is not what this test is about: everything held fits.
    c.proto.socket_rx_budget = 512 << 20;
    c.proto.max_rx_bytes_per_peer = 512 << 20;
    c
}

/// Threads spinning on the CPU until dropped.
struct Hogs(Arc<AtomicBool>, Vec<thread::JoinHandle<()>>);

impl Hogs {
    fn start(n: usize) -> Hogs {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = Arc::clone(&stop);
                thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        Hogs(stop, threads)
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        for t in self.1.drain(..) {
            let _ = t.join();
        }
    }
}

/// The client's and the server's view of the run: every call succeeded,
/// no RPC timed out, and the server answered the clients' RESENDs.
fn check(clients: &[Socket], server: &Socket) {
    for c in clients {
        let m = c.metrics();
        assert_eq!(m.proto.stats.timeouts, 0, "client {}", m.local_addr);
        assert_eq!(m.calls_outstanding, 0);
    }
    let busy_received: u64 = clients
        .iter()
        .map(|c| {
            c.metrics()
                .proto
                .stats
                .received
                .packets_of(PacketType::Busy)
        })
        .sum();
    let s = server.metrics().proto.stats;
    assert_eq!(s.timeouts, 0, "the server gave up on RPCs it holds");
    // The clients asked while the application held their requests, and
    // heard back.
    assert!(s.received.packets_of(PacketType::Resend) > 0, "{s:?}");
    assert!(s.sent.packets_of(PacketType::Busy) > 0, "{s:?}");
    assert!(busy_received > 0);
}

/// Length and a checksum of a message.
fn digest(m: &[u8]) -> Vec<u8> {
    let sum = m.iter().fold(0u64, |h, &b| h.rotate_left(5) ^ u64::from(b));
    [(m.len() as u64).to_le_bytes(), sum.to_le_bytes()].concat()
}

#[test]
fn computing_server__answers_resends_while_four_handlers_spin_for_ten_timeouts() {
    let _turn = heavy();
    let server = Socket::bind_with("127.0.0.1:0", config(true)).unwrap();
    let dest = server.local_addr();
    // Four handler threads each take one request and compute for HOLD on
    // the CPU: the machine's two cores are oversubscribed by the
    // application itself.
    let handlers: Vec<_> = (0..4)
        .map(|_| {
            let s = server.clone();
            thread::spawn(move || {
                let r = s.recv_request().unwrap();
                let t0 = Instant::now();
                while t0.elapsed() < HOLD {
                    std::hint::spin_loop();
                }
                s.reply(r.peer, r.id, r.body).unwrap();
            })
        })
        .collect();
    let clients: Vec<Socket> = (0..4)
        .map(|_| Socket::bind_with("127.0.0.1:0", config(false)).unwrap())
        .collect();
    let calls: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let c = c.clone();
            thread::spawn(move || {
                let req = pattern(1000, i as u64);
                let r = c.call_timeout(dest, req.clone(), DEADLINE);
                (r.map(|b| b[..] == req[..]), i)
            })
        })
        .collect();
    for c in calls {
        let (r, i) = c.join().unwrap();
        match r {
            Ok(same) => assert!(same, "call {i}: echo differs"),
            Err(e) => panic!("call {i} failed: {e}"),
        }
    }
    for h in handlers {
        h.join().unwrap();
    }
    check(&clients, &server);
}

#[test]
fn holding_server__answers_resends_while_it_holds_100_1mb_requests() {
    let _turn = heavy();
    let server = Socket::bind_with("127.0.0.1:0", config(true)).unwrap();
    let dest = server.local_addr();
    const N: usize = 100;
    // One application thread takes every request and answers each HOLD
    // after it arrived; meanwhile two hogs keep both cores busy.
    let s = server.clone();
    let app = thread::spawn(move || {
        let mut held = std::collections::VecDeque::new();
        let mut answered = 0;
        while answered < N {
            let first_due = held.front().map(|&(t, _): &(Instant, _)| t + HOLD);
            if let Some(due) = first_due.filter(|&d| d <= Instant::now()) {
                let _ = due;
                let (_, r): (Instant, homa_transport::Request) = held.pop_front().unwrap();
                // A short answer (a digest of the request): the responses
                // need no grants, so only the held requests are at stake.
                s.reply(r.peer, r.id, digest(&r.body)).unwrap();
                answered += 1;
                continue;
            }
            let wait = first_due.map_or(Duration::from_millis(100), |d| {
                d.saturating_duration_since(Instant::now())
            });
            match s.recv_request_timeout(wait) {
                Ok(Some(r)) => held.push_back((Instant::now(), r)),
                Ok(None) => {}
                Err(e) => panic!("server: {e}"),
            }
        }
    });
    let _hogs = Hogs::start(2);
    let clients: Vec<Socket> = (0..4)
        .map(|_| Socket::bind_with("127.0.0.1:0", config(false)).unwrap())
        .collect();
    let waiters: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(c, sock)| {
            let sock = sock.clone();
            thread::spawn(move || {
                let calls: Vec<_> = (0..N / 4)
                    .map(|i| {
                        let tag = (c * 1000 + i) as u64;
                        let call = sock
                            .start_call_timeout(dest, pattern(1_000_000, tag), DEADLINE)
                            .unwrap();
                        (call, tag)
                    })
                    .collect();
                let mut failed = Vec::new();
                for (call, tag) in calls {
                    match call.wait() {
                        Ok(b) => assert_eq!(b[..], digest(&pattern(1_000_000, tag))[..]),
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                failed
            })
        })
        .collect();
    let failed: Vec<String> = waiters
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {N} calls failed: {:?}",
        failed.len(),
        failed
    );
    app.join().unwrap();
    check(&clients, &server);
}
