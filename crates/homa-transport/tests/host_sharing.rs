//! One Homa per host, wired through real processes on loopback: sockets
//! of two processes join one host table in shared memory (a private
//! directory, not `/dev/shm`, so the tests never meet a real host table),
//! see each other in their metrics and keep their granted-but-unreceived
//! bytes under one `max_incoming` together; a process killed with SIGKILL
//! drops out within the liveness bound while the other keeps completing
//! RPCs; a garbage file under the table's name is refused. The protocol's
//! own behaviour (ranking, budgets, garbage in the table) is tested
//! deterministically in `homa_proto::host`.
//!
//! The second process is this test binary itself, run with
//! `HOMA_HOST_TEST_CHILD` set (see [`host_child`]).
#![allow(non_snake_case)]

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::process::Process;
use common::{echo_server, pattern, HANG};
use homa_transport::{Config, Error, HostSharing, Socket};

const CHILD: &str = "HOMA_HOST_TEST_CHILD";

/// A fresh private directory for a test's host table.
fn private_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("homa-host-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A small budget and small unscheduled prefixes, so that the budget is
/// what limits the granted bytes: both processes use these.
const MAX_INCOMING: u32 = 100_000;
const UNSCHED: u32 = 10_000;

fn small_budget(c: Config) -> Config {
    c.with_proto(|p| {
        p.max_incoming = MAX_INCOMING;
        p.unsched_bytes = UNSCHED;
        // (Neither RTT-sized unscheduled prefixes nor FIFO grants, which
        // the budget does not bound.)
        p.unsched_from_rtt = false;
        p.grant_fifo_fraction = 0;
    })
}

fn host_config(dir: &Path) -> Config {
    small_budget(Config::default())
        .with_host_sharing(HostSharing::Host)
        .with_host_dir(dir)
}

/// A child process, killed (SIGKILL) when dropped: a failing test never
/// leaves it behind.
struct Child(Option<Process>);

impl Child {
    fn kill(mut self) {
        if let Some(p) = self.0.take() {
            p.kill();
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            p.kill();
        }
    }
}

/// Starts this binary as an echo server sharing the table in `dir`.
fn child(dir: &Path) -> (Child, std::net::SocketAddr) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "host_child",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env(CHILD, "1")
    .env("HOMA_HOST_DIR", dir)
    .env("HOMA_HOST_SHARING", "host");
    let mut p = Process::start(cmd, |c| c.spawn());
    let addr = p.wait_line("addr").parse().unwrap();
    (Child(Some(p)), addr)
}

/// Largest participants and host incoming bytes a socket's metrics show
/// while `busy` runs (sampled every 100 µs by another thread).
fn watch<T>(s: &Socket, busy: impl FnOnce() -> T) -> (T, u32, u64) {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|sc| {
        let w = sc.spawn(|| {
            let (mut p, mut inc) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let h = s.metrics().host.unwrap_or_default();
                p = p.max(h.view.participants);
                inc = inc.max(h.view.host_incoming);
                std::thread::sleep(Duration::from_micros(100));
            }
            (p, inc)
        });
        let t = busy();
        stop.store(true, std::sync::atomic::Ordering::Release);
        let (p, inc) = w.join().unwrap();
        (t, p, inc)
    })
}

/// In a child (`HOMA_HOST_TEST_CHILD` set): an echo server whose
/// `metrics` request is answered with the largest participant count and
/// host incoming bytes its socket showed. Otherwise, a test of
/// process-wide sharing: two sockets of this process with
/// `HostSharing::Process` join one table and see each other while they
/// exchange messages (an idle participant lapses), and one after the other
/// closed.
#[test]
fn host_child() {
    if std::env::var_os(CHILD).is_none() {
        // Parameters no other test uses, so the table is this test's.
        let cfg = small_budget(Config::default())
            .with_host_sharing(HostSharing::Process)
            .with_proto(|p| p.max_incoming = MAX_INCOMING - 1);
        let (b, h) = echo_server("127.0.0.1:0", cfg.clone());
        let a = Socket::bind_with("127.0.0.1:0", cfg).unwrap();
        let (ha, hb) = (a.metrics().host.unwrap(), b.metrics().host.unwrap());
        assert_eq!(ha.mode, HostSharing::Process);
        assert_ne!(ha.view.slot, hb.view.slot);
        let (_, p, _) = watch(&a, || {
            for i in 0..4 {
                let r = a.call_timeout(b.local_addr(), pattern(1 << 20, i), HANG);
                assert_eq!(r.unwrap().len(), 1 << 20);
            }
        });
        assert_eq!(p, 2, "participants while both received");
        b.close();
        assert_eq!(h.join().unwrap(), 4);
        assert_eq!(a.metrics().host.unwrap().view.participants, 1);
        return;
    }
    let s = Socket::bind_with(
        "127.0.0.1:0",
        small_budget(Config::default()).with_server(true),
    )
    .unwrap();
    // (libtest has printed "test host_child ... " without a newline.)
    println!("\nlistening on {}", s.local_addr());
    println!("addr {}", s.local_addr());
    let seen = std::sync::Mutex::new((0u32, 0u64));
    let note = || {
        let h = s.metrics().host.unwrap_or_default();
        let mut m = seen.lock().unwrap();
        *m = (m.0.max(h.view.participants), m.1.max(h.view.host_incoming));
        *m
    };
    std::thread::scope(|sc| {
        sc.spawn(|| loop {
            note();
            std::thread::sleep(Duration::from_micros(100));
        });
        // Ends the process should its parent vanish without killing it.
        while let Some(r) = s.recv_request_timeout(Duration::from_secs(60)).unwrap() {
            let m = note();
            if &r.body[..] == b"metrics" {
                s.reply(r.peer, r.id, format!("{} {}", m.0, m.1).into_bytes())
                    .unwrap();
            } else {
                s.reply(r.peer, r.id, r.body).unwrap();
            }
        }
        std::process::exit(0);
    });
}

/// The child's (participants, largest host incoming it saw).
fn child_view(client: &Socket, child: std::net::SocketAddr) -> (u32, u64) {
    let r = client.call_timeout(child, b"metrics", HANG).unwrap();
    let t = String::from_utf8(r.to_vec()).unwrap();
    let mut it = t.split(' ').map(|x| x.parse::<u64>().unwrap());
    (it.next().unwrap() as u32, it.next().unwrap())
}

#[test]
fn two_processes__share_one_table_and_one_budget() {
    let dir = private_dir("share");
    let (child, addr) = child(&dir);
    let client = Socket::bind_with("127.0.0.1:0", host_config(&dir)).unwrap();
    let h = client.metrics().host.unwrap();
    assert_eq!(h.mode, HostSharing::Host);
    let path = h.path.clone().unwrap();
    assert!(path.starts_with(&dir), "{}", path.display());
    // Private to the user.
    let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");

    // Both processes receive at once (the child requests, this process
    // responses): 4 echo calls of 1 MB in flight.
    let mut saw_others = false;
    let (_, seen_here, most) = watch(&client, || {
        for round in 0..3 {
            let calls: Vec<_> = (0..4)
                .map(|i| {
                    client
                        .start_call_timeout(addr, pattern(1 << 20, round * 8 + i), HANG)
                        .unwrap()
                })
                .collect();
            for c in calls {
                while !c.is_done() {
                    let h = client.metrics().host.unwrap_or_default();
                    saw_others |= h.view.host_incoming > h.view.own_incoming;
                }
                assert_eq!(c.wait().unwrap().len(), 1 << 20);
            }
        }
    });
    assert_eq!(seen_here, 2, "participants seen here");
    let (participants, child_most) = child_view(&client, addr);
    eprintln!("host incoming: largest seen here {most}, by the child {child_most}");
    // The budget bounds granted bytes; the unscheduled prefixes of the 8
    // messages that may be arriving (4 requests there, 4 responses here)
    // come on top, as in the kernel.
    let max_incoming = u64::from(MAX_INCOMING) + 8 * u64::from(UNSCHED);
    // One budget: this process counted the child's granted bytes.
    assert!(saw_others, "never saw the child's incoming bytes");
    assert_eq!(participants, 2, "participants seen by the child");
    assert!(
        most <= max_incoming,
        "this process saw {most} > {max_incoming}"
    );
    assert!(
        child_most <= max_incoming,
        "the child saw {child_most} > {max_incoming}"
    );
    assert!(most + child_most > 0, "nobody was granted anything");
    child.kill();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigkill__the_survivor_keeps_completing_rpcs_and_sees_one_participant() {
    let dir = private_dir("kill");
    let (child, addr) = child(&dir);
    let client = Socket::bind_with("127.0.0.1:0", host_config(&dir)).unwrap();
    let off = small_budget(Config::default()).with_host_sharing(HostSharing::Off);
    let (server, h) = echo_server("127.0.0.1:0", off);
    // Kill the child while it receives: its published incoming bytes stay
    // in the table until it is taken for dead.
    let pending: Vec<_> = (0..4)
        .map(|i| {
            client
                .start_call_timeout(addr, pattern(1 << 20, i), Duration::from_secs(2))
                .unwrap()
        })
        .collect();
    let ((), p, _) = watch(&client, || std::thread::sleep(Duration::from_millis(20)));
    assert_eq!(p, 2, "the child took part");
    child.kill();
    let killed = Instant::now();
    for c in pending {
        let _ = c.wait();
    }
    // The survivor keeps completing RPCs that need grants.
    for i in 0..5 {
        let r = client.call_timeout(
            server.local_addr(),
            pattern(1 << 20, 100 + i),
            Duration::from_secs(10),
        );
        assert_eq!(r.unwrap().len(), 1 << 20);
    }
    // And sees itself alone once the liveness bound (20 ms) has passed.
    loop {
        let p = client.metrics().host.unwrap().view.participants;
        if p == 1 {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(2),
            "still {p} participants"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    server.close();
    assert_eq!(h.join().unwrap(), 5);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn waiter__the_other_process_change_releases_a_held_back_socket() {
    // Two receivers on one table, one per process: the child's echo
    // server, and `server` here, the only socket of this process on the
    // table. Their senders do not share (`Off`). Both receive 1 MB
    // requests at once under a 100 kB host budget, so each is held back by
    // the other's granted bytes; what releases `server` without a packet
    // of its own is the child's publish (its incoming bytes fell), which
    // wakes this process's waiter through the futex on the shared
    // generation word.
    let dir = private_dir("waiter");
    let (child, addr) = child(&dir);
    let (server, h) = echo_server("127.0.0.1:0", host_config(&dir));
    let off = small_budget(Config::default()).with_host_sharing(HostSharing::Off);
    let to_child = Socket::bind_with("127.0.0.1:0", off.clone()).unwrap();
    let to_here = Socket::bind_with("127.0.0.1:0", off).unwrap();
    // Whether the two processes' transfers overlap is up to the
    // scheduler: rounds run until this process's socket was held back and
    // released by the waiter (at most 30 s; without the waiter, never).
    let t = Instant::now();
    let mut rounds = 0;
    let m = loop {
        let calls: Vec<_> = (0..4)
            .flat_map(|i| {
                let n = rounds * 8 + i * 2;
                [
                    to_child.start_call_timeout(addr, pattern(1 << 20, n), HANG),
                    to_here.start_call_timeout(server.local_addr(), pattern(1 << 20, n + 1), HANG),
                ]
            })
            .map(Result::unwrap)
            .collect();
        for c in calls {
            assert_eq!(c.wait().unwrap().len(), 1 << 20);
        }
        rounds += 1;
        let m = server.metrics().host.unwrap();
        let released = m.view.event_rechecks > 0 && m.waiter_rechecks > 0;
        if released || t.elapsed() > Duration::from_secs(30) {
            break m;
        }
    };
    eprintln!(
        "{rounds} rounds of 8 MB in {:?}; server here: {m:?}",
        t.elapsed()
    );
    assert!(m.view.limited_passes > 0, "never held back: {m:?}");
    assert!(
        m.view.event_rechecks > 0 && m.waiter_rechecks > 0,
        "a change of the child never released this process's socket: {m:?}"
    );
    server.close();
    assert_eq!(h.join().unwrap(), 4 * rounds);
    child.kill();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn garbage_table__refused_when_asked_for_and_never_opened_by_default() {
    let dir = private_dir("garbage");
    let path = homa_transport::host::host_table_path(Some(&dir)).unwrap();
    let words = homa_proto::host::HostParams::from_config(
        &homa_proto::Config::default(),
        homa_transport::host::HOST_SLOTS,
    )
    .words();
    let garbage: Vec<u8> = (0..words * 8).map(|i| (i * 31 + 7) as u8).collect();
    std::fs::write(&path, garbage).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();

    let e = Socket::bind_with("127.0.0.1:0", host_config(&dir)).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::HostSharing(_)), "{text}");
    assert!(text.contains("not a Homa host table"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");

    // Not asked for: the default is process-wide sharing, which never
    // opens the file (HOMA_HOST_SHARING must not be set for this test).
    if std::env::var_os("HOMA_HOST_SHARING").is_none() {
        let cfg = Config::default().with_host_dir(&dir);
        let s = Socket::bind_with("127.0.0.1:0", cfg).unwrap();
        assert_eq!(s.metrics().host.unwrap().mode, HostSharing::Process);
    }
    // A table open to other users is refused too.
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, vec![0u8; words * 8]).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let e = Socket::bind_with("127.0.0.1:0", host_config(&dir)).unwrap_err();
    assert!(e.to_string().contains("mode 0666"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two sockets serve one port (`SO_REUSEPORT`), each with its own
/// endpoint and thread: the kernel spreads 32 clients over both, every
/// call completes, and both sockets join this process's table.
#[test]
fn reuse_port__two_sockets_serve_one_port() {
    let cfg = Config::default()
        .with_reuse_port(true)
        .with_host_sharing(HostSharing::Process);
    let (a, ha) = echo_server("127.0.0.1:0", cfg.clone());
    let (b, hb) = echo_server(&a.local_addr().to_string(), cfg);
    assert_eq!(a.local_addr(), b.local_addr());
    let (ma, mb) = (a.metrics().host.unwrap(), b.metrics().host.unwrap());
    assert_eq!(ma.mode, HostSharing::Process);
    assert_ne!(ma.view.slot, mb.view.slot);
    let clients: Vec<Socket> = (0..32)
        .map(|_| Socket::bind("127.0.0.1:0").unwrap())
        .collect();
    for (i, c) in clients.iter().enumerate() {
        let r = c.call_timeout(a.local_addr(), pattern(2000, i as u64), HANG);
        assert_eq!(r.unwrap().len(), 2000);
    }
    a.close();
    b.close();
    let (na, nb) = (ha.join().unwrap(), hb.join().unwrap());
    assert_eq!(na + nb, 32);
    assert!(na > 0 && nb > 0, "one socket served all: {na} / {nb}");
}
