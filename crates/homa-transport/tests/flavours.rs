//! The same scenario through the blocking and the tokio API: an echo
//! server, 64 concurrent calls of mixed sizes from one client socket, a call
//! to a port nobody listens on, a call whose deadline passes, and an abort.
#![allow(non_snake_case)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{free_port, pattern, HANG};
use homa_transport::{AsyncSocket, Config, Error, Socket};

const CALLS: u64 = 64;
const SIZES: [usize; 4] = [1, 1500, 60_000, 500_000];

fn size(i: u64) -> usize {
    SIZES[i as usize % SIZES.len()]
}

fn server_config() -> Config {
    let mut c = Config::default();
    c.server = Some(true);
    c
}

#[test]
fn scenario__blocking() {
    let server = Socket::bind_with("127.0.0.1:0", server_config()).unwrap();
    let silent = Socket::bind_with("127.0.0.1:0", server_config()).unwrap();
    let s = server.clone();
    let h = std::thread::spawn(move || {
        while let Ok(r) = s.recv_request() {
            s.reply(r.peer, r.id, r.body).unwrap();
        }
    });
    let client = Socket::bind("127.0.0.1:0").unwrap();
    let dest = server.local_addr();

    let calls: Vec<_> = (0..CALLS)
        .map(|i| {
            client
                .try_start_call_timeout(dest, pattern(size(i), i), HANG)
                .unwrap()
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        let resp = call.wait().unwrap();
        assert!(
            resp[..] == pattern(size(i as u64), i as u64)[..],
            "call {i}"
        );
    }

    let r = client.call_timeout(free_port("127.0.0.1"), &b"x"[..], HANG);
    assert!(matches!(r, Err(Error::PortUnreachable)), "{r:?}");

    let r = client.call_timeout(silent.local_addr(), &b"x"[..], Duration::from_millis(20));
    assert!(matches!(r, Err(Error::DeadlineExceeded)), "{r:?}");

    let call = client
        .try_start_call(silent.local_addr(), &b"x"[..])
        .unwrap();
    assert!(client.abort(call.id()));
    assert!(matches!(call.wait(), Err(Error::Aborted)));

    server.close();
    h.join().unwrap();
}

async fn scenario_async() {
    let server = AsyncSocket::bind_with("127.0.0.1:0", server_config()).unwrap();
    let silent = AsyncSocket::bind_with("127.0.0.1:0", server_config()).unwrap();
    let s = server.clone();
    let h = tokio::spawn(async move {
        while let Ok(r) = s.recv_request().await {
            s.reply(r.peer, r.id, r.body).await.unwrap();
        }
    });
    let client = AsyncSocket::bind("127.0.0.1:0").unwrap();
    let dest: SocketAddr = server.local_addr();

    let calls: Vec<_> = (0..CALLS)
        .map(|i| {
            client
                .try_start_call_timeout(dest, pattern(size(i), i), HANG)
                .unwrap()
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        let resp = call.await.unwrap();
        assert!(
            resp[..] == pattern(size(i as u64), i as u64)[..],
            "call {i}"
        );
    }

    let r = client
        .call_timeout(free_port("127.0.0.1"), &b"x"[..], HANG)
        .await;
    assert!(matches!(r, Err(Error::PortUnreachable)), "{r:?}");

    let r = client
        .call_timeout(silent.local_addr(), &b"x"[..], Duration::from_millis(20))
        .await;
    assert!(matches!(r, Err(Error::DeadlineExceeded)), "{r:?}");

    let call = client
        .try_start_call(silent.local_addr(), &b"x"[..])
        .unwrap();
    assert!(client.abort(call.id()));
    assert!(matches!(call.await, Err(Error::Aborted)));

    server.close();
    h.await.unwrap();
}

#[test]
fn scenario__tokio_current_thread() {
    common::current_thread().block_on(scenario_async());
}

#[test]
fn scenario__tokio_multi_thread() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(scenario_async());
}

#[test]
fn tokio__socket_outside_a_runtime_is_refused() {
    let r = AsyncSocket::bind("127.0.0.1:0");
    assert!(matches!(r, Err(Error::Io(_))), "{r:?}");
}

#[test]
fn tokio__ipv6_and_many_outstanding_calls() {
    let rt = common::current_thread();
    rt.block_on(async {
        // One thread runs 1000 client tasks and the server: the first
        // responses come only after all 1000 requests went out, which can
        // take longer than the 5 ms resend timer on a loaded machine, and
        // per-RPC RESENDs then snowball (see common::patient). This test is
        // about outstanding calls, not about loss recovery.
        let server = AsyncSocket::bind_with("[::1]:0", common::patient(server_config())).unwrap();
        let s = server.clone();
        tokio::spawn(async move {
            while let Ok(r) = s.recv_request().await {
                s.reply(r.peer, r.id, r.body).await.unwrap();
            }
        });
        let client = AsyncSocket::bind_with("[::1]:0", common::patient(Config::default())).unwrap();
        let calls: Vec<_> = (0..1000u64)
            .map(|i| {
                let c = client.clone();
                let dest = server.local_addr();
                tokio::spawn(async move { c.call_timeout(dest, pattern(100, i), HANG).await })
            })
            .collect();
        for (i, c) in calls.into_iter().enumerate() {
            let resp = c.await.unwrap().unwrap();
            assert!(resp[..] == pattern(100, i as u64)[..]);
        }
        server.close();
    });
}

#[test]
fn tokio__send_cap_refuses_start_call_and_call_waits() {
    let rt = common::current_thread();
    rt.block_on(async {
        let silent = AsyncSocket::bind_with("127.0.0.1:0", server_config()).unwrap();
        let mut config = Config::default();
        config.proto.max_tx_bytes_per_socket = 120_000;
        let client = AsyncSocket::bind_with("127.0.0.1:0", config).unwrap();
        let dest = silent.local_addr();
        let a = client.try_start_call(dest, pattern(50_000, 1)).unwrap();
        let _b = client.try_start_call(dest, pattern(50_000, 2)).unwrap();
        let r = client.try_start_call(dest, pattern(50_000, 3));
        assert!(matches!(r, Err(Error::WouldBlock)), "{r:?}");
        let r = client
            .call_timeout(dest, pattern(50_000, 3), Duration::from_millis(30))
            .await;
        assert!(matches!(r, Err(Error::DeadlineExceeded)), "{r:?}");
        // Dropping (aborting) one call frees room for a waiting call.
        let c2 = client.clone();
        let waiting =
            tokio::spawn(async move { c2.call_timeout(dest, pattern(50_000, 4), HANG).await });
        tokio::task::yield_now().await;
        drop(a);
        // The waiting request reaches the (silent) server.
        loop {
            let req = silent.recv_request().await.unwrap();
            if req.body[..] == pattern(50_000, 4)[..] {
                break;
            }
        }
        waiting.abort();
        assert!(client.stats().transport.send_cap_waits >= 2);
    });
}

#[test]
fn tokio__runtime_shutdown_fails_calls_with_a_clear_error() {
    let rt = common::current_thread();
    // A call to a server that never answers is outstanding when the
    // runtime that opened both sockets shuts down.
    let (client, silent, pending) = rt.block_on(async {
        let silent = AsyncSocket::bind_with("127.0.0.1:0", server_config()).unwrap();
        let client = AsyncSocket::bind("127.0.0.1:0").unwrap();
        let pending = client
            .try_start_call(silent.local_addr(), &b"hello"[..])
            .unwrap();
        (client, silent, pending)
    });
    drop(rt);
    // On another runtime, nothing hangs: everything fails with the reason.
    let rt = common::current_thread();
    rt.block_on(async {
        let r = tokio::time::timeout(HANG, pending).await.expect("hung");
        assert!(matches!(r, Err(Error::RuntimeShutdown)), "{r:?}");
        let dest = silent.local_addr();
        let r = tokio::time::timeout(HANG, client.call(dest, &b"again"[..]))
            .await
            .expect("hung");
        assert!(matches!(r, Err(Error::RuntimeShutdown)), "{r:?}");
        let r = tokio::time::timeout(HANG, silent.recv_request())
            .await
            .expect("hung");
        assert!(matches!(r, Err(Error::RuntimeShutdown)), "{r:?}");
        let e: std::io::Error = r.unwrap_err().into();
        assert!(e.to_string().contains("runtime"), "{e}");
    });
}

#[test]
fn tokio__multi_thread_runtime_shutdown_wakes_a_waiting_task() {
    // The caller waits on a runtime of its own while the socket's
    // runtime shuts down underneath it.
    let home = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (client, silent) = home.block_on(async {
        let silent = AsyncSocket::bind_with("127.0.0.1:0", server_config()).unwrap();
        let client = AsyncSocket::bind("127.0.0.1:0").unwrap();
        (client, silent)
    });
    let caller = std::thread::spawn(move || {
        let rt = common::current_thread();
        rt.block_on(async {
            tokio::time::timeout(HANG, client.call(silent.local_addr(), &b"x"[..]))
                .await
                .expect("hung")
        })
    });
    // Shut down while the call waits (or before it starts: either way it
    // must fail with the reason, never hang).
    std::thread::sleep(Duration::from_millis(20));
    home.shutdown_timeout(HANG);
    let r = caller.join().unwrap();
    assert!(matches!(r, Err(Error::RuntimeShutdown)), "{r:?}");
}

#[test]
fn tokio__a_recv_request_that_gave_up_leaves_the_wake_up_to_one_still_waiting() {
    // Each request wakes one registered waiter. A receive that timed out
    // used to stay registered and take that wake-up, leaving a task that
    // still waited asleep with the request queued.
    let rt = common::current_thread();
    rt.block_on(async {
        let server = AsyncSocket::bind_with("127.0.0.1:0", server_config()).unwrap();
        let s = server.clone();
        let waiting = tokio::spawn(async move { s.recv_request().await });
        tokio::task::yield_now().await;
        let gave_up = tokio::time::timeout(Duration::from_millis(10), server.recv_request()).await;
        assert!(gave_up.is_err(), "{gave_up:?}");
        let client = AsyncSocket::bind("127.0.0.1:0").unwrap();
        let _call = client
            .try_start_call(server.local_addr(), &b"for the waiting task"[..])
            .unwrap();
        let r = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the waiting task was never woken")
            .unwrap()
            .unwrap();
        assert_eq!(&r.body[..], b"for the waiting task");
    });
}
