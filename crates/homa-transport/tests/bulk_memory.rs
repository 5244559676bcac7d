//! Memory under churn of multi-packet messages: the receive side stores a
//! message of up to about a megabyte contiguously (reserved at its length
//! and handed to the application as it is), the send side refers to the
//! message's own bytes. Neither may keep memory per message: after a
//! warm-up, a long run of 1 MB echoes leaves the resident set where it
//! was.
#![allow(non_snake_case)]

mod common;

use bytes::Bytes;
use common::{echo_server, pattern, HANG};
use homa_transport::{Config, Socket};

/// Resident set of this process, bytes (`/proc/self/statm`).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn echo__one_megabyte_churn_keeps_the_resident_set_flat() {
    let (server, h) = echo_server("127.0.0.1:0", Config::default());
    let client = Socket::bind("127.0.0.1:0").unwrap();
    let dest = server.local_addr();
    let req = Bytes::from(pattern(1_000_000, 1));
    let echo = |n: usize| {
        for _ in 0..n {
            // Four calls in flight, as `homa compare`'s bulk row.
            let calls: Vec<_> = (0..4)
                .map(|_| client.start_call_timeout(dest, req.clone(), HANG).unwrap())
                .collect();
            for c in calls {
                let resp = c.wait().unwrap();
                assert!(resp == req, "echo differs");
            }
        }
    };
    echo(50);
    let before = rss();
    // 200 rounds of four 1 MB echoes: 800 MB received by each side.
    echo(200);
    let after = rss();
    let grown = after.saturating_sub(before);
    assert!(
        grown < 32 << 20,
        "resident set grew by {grown} bytes ({before} -> {after})"
    );
    server.close();
    assert_eq!(h.join().unwrap(), 4 * 250);
}
