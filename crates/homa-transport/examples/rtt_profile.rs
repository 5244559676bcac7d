//! Round trips between a client and a server socket driven by one thread,
//! for instruction-count profiling of the per-RPC work of the runtime and
//! the protocol (`valgrind --tool=callgrind`, `perf record`): no second
//! thread, no spinning, so every instruction counted belongs to an RPC.
//!
//! ```text
//! cargo build --release -p homa-transport --example rtt_profile
//! valgrind --tool=callgrind target/release/examples/rtt_profile 20000 100
//! ```
//!
//! Arguments: number of round trips (default 100 000), message size in
//! bytes (default 100) and the packets' MTU (default: the interface's,
//! 65 535 on loopback; `1500` profiles the per-packet path of a message
//! of many packets, as on an Ethernet link:
//! `rtt_profile 1000 58000 1500`). Prints the mean wall-clock time per
//! round trip, which includes four socket system calls per round trip
//! (more for messages of several packets) and, unlike `homa compare`, no
//! cross-core delivery. A fourth argument sets the link speed in Mbit/s
//! (the pacer's batch: `rtt_profile 300 58000 1500 100000` sends 62 kB
//! batches, as `homa compare` does, which the receiver keeps as chains of
//! its receive buffers).

use std::time::{Duration, Instant};

use homa_transport::{Config, Socket};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(100_000), |s| s.parse())?;
    let size: usize = args.next().map_or(Ok(100), |s| s.parse())?;
    let mtu: Option<u32> = args.next().map(|s| s.parse()).transpose()?;
    let link_mbps: Option<u32> = args.next().map(|s| s.parse()).transpose()?;
    let mut config = Config::default();
    if let Some(l) = link_mbps {
        config.proto.link_mbps = l;
    }
    if let Some(m) = mtu {
        config.mtu = homa_transport::Mtu::Fixed(m);
    }
    // No background thread: this thread is the only one in the sockets.
    config.background = None;
    config.server = Some(true);
    let server = Socket::bind_with("127.0.0.1:0", config.clone())?;
    config.server = Some(false);
    let client = Socket::bind_with("127.0.0.1:0", config)?;
    let dest = server.local_addr();
    let request = bytes::Bytes::from(vec![0x5a_u8; size]);
    let start = Instant::now();
    for _ in 0..n {
        let mut call = client.start_call_timeout(dest, request.clone(), Duration::from_secs(5))?;
        let req = loop {
            // Loopback delivers inside the client's sendmsg: the request
            // is queued by the time this reads.
            if let Some(r) = server.try_recv_request()? {
                break r;
            }
            // Only before the first request: the client learns the
            // server's incarnation (one round trip) and then sends.
            if let Some(r) = call.wait_timeout(Duration::from_micros(50)) {
                r?;
            }
        };
        server.reply(req.peer, req.id, req.body)?;
        let response = loop {
            if let Some(r) = call.wait_timeout(Duration::from_micros(50)) {
                break r?;
            }
            // A response longer than the server sends at once: the rest
            // goes out as the client's grants and the server's pacer
            // allow, so this thread drives the server too.
            if server.try_recv_request()?.is_some() {
                return Err("a request nobody sent".into());
            }
        };
        assert_eq!(response.len(), size);
    }
    let per = start.elapsed() / n.max(1) as u32;
    println!("{n} round trips of {size} bytes: {per:?} each");
    Ok(())
}
