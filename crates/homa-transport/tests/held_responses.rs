//! Receive memory pressure only slows senders, over real sockets (issue
//! 12.3). A tokio client starts many calls at once and keeps every
//! response until all are done (as `join_all` does): together they exceed
//! the default 64 MB receive budget, so once the budget is full of held
//! responses the remaining calls wait for memory that only the
//! application can free. They must wait and end by their deadline
//! (`DeadlineExceeded`); none may fail with `PeerTimeout`, since the server
//! is alive all along. Before the fix, 336 of 1000 x 100 KB calls and 133
//! of 200 x 1 MB calls failed with `PeerTimeout` after about a second.
//! Dropping each response on arrival, the same calls all succeed.
#![allow(non_snake_case)]

mod common;

use std::time::Duration;

use common::pattern;
use homa_transport::{AsyncSocket, Config, Error};

/// How long the calls that wait for held memory may wait.
const DEADLINE: Duration = Duration::from_secs(3);
/// Long enough for every call of a run that frees its memory.
const GENEROUS: Duration = Duration::from_secs(60);

async fn run(
    client: &AsyncSocket,
    dest: std::net::SocketAddr,
    n: u64,
    len: usize,
    hold: bool,
) -> (u64, Vec<Error>) {
    let deadline = if hold { DEADLINE } else { GENEROUS };
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move {
                c.call_timeout(dest, pattern(len, i), deadline)
                    .await
                    // Dropping on arrival keeps only a length.
                    .map(|b| {
                        if hold {
                            Some(b)
                        } else {
                            assert_eq!(&b[..], &pattern(len, i)[..]);
                            None
                        }
                    })
            })
        })
        .collect();
    let mut held = Vec::new();
    let mut failed = Vec::new();
    let mut ok = 0;
    for (i, c) in calls.into_iter().enumerate() {
        match c.await.unwrap() {
            Ok(b) => {
                ok += 1;
                if let Some(b) = b {
                    assert_eq!(&b[..], &pattern(len, i as u64)[..], "call {i}");
                    held.push(b);
                }
            }
            Err(e) => failed.push(e),
        }
    }
    (ok, failed)
}

fn held_responses(n: u64, len: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut sc = Config::default();
        sc.server = Some(true);
        let server = AsyncSocket::bind_with("127.0.0.1:0", sc).unwrap();
        let dest = server.local_addr();
        let s = server.clone();
        tokio::spawn(async move {
            while let Ok(r) = s.recv_request().await {
                let _ = s.reply(r.peer, r.id, r.body).await;
            }
        });
        let client = AsyncSocket::bind("127.0.0.1:0").unwrap();
        // Held: the budget fills with responses; the rest wait, bounded by
        // their deadline, and are never blamed on the live server.
        let (ok, failed) = run(&client, dest, n, len, true).await;
        eprintln!(
            "held: {ok} of {n} completed, {} waited until their deadline",
            failed.len()
        );
        assert!(ok > 0, "nothing completed");
        for e in &failed {
            assert!(
                matches!(e, Error::DeadlineExceeded),
                "a call failed with {e:?}"
            );
        }
        let m = client.metrics().proto.stats;
        assert_eq!(m.timeouts, 0, "the client declared its live server dead");
        // Dropped on arrival: everything completes.
        let (ok, failed) = run(&client, dest, n, len, false).await;
        assert!(
            failed.is_empty(),
            "{} failed: {:?}",
            failed.len(),
            &failed[..failed.len().min(5)]
        );
        assert_eq!(ok, n);
        assert_eq!(client.metrics().proto.stats.timeouts, 0);
    });
}

#[test]
fn held_responses__1000_x_100kb_wait_none_blames_the_server() {
    held_responses(1000, 100_000);
}

#[test]
fn held_responses__200_x_1mb_wait_none_blames_the_server() {
    held_responses(200, 1_000_000);
}
