//! `homa`: run a Homa server or client over UDP, or compare Homa with raw
//! UDP and TCP on loopback.
//!
//! ```text
//! homa server --bind 127.0.0.1:4000
//! homa client --server 127.0.0.1:4000 --size 100 --duration 2
//! homa compare            # the table the README shows
//! ```

mod bench;
mod compare;
mod pin;
mod stats;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use homa_transport::{Error as HomaError, Socket};

use bench::Polling;
use stats::Latency;

#[derive(Debug, Parser)]
#[command(
    name = "homa",
    version,
    about = "Homa over UDP: server, client and comparisons"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Answer requests: echo them, or reply with a fixed size.
    Server(ServerArgs),
    /// Send requests of a fixed size and report round-trip times.
    Client(ClientArgs),
    /// Measure Homa against raw UDP and TCP on loopback.
    Compare(compare::CompareArgs),
}

#[derive(Debug, clap::Args)]
struct ServerArgs {
    /// Address and port to serve on.
    #[arg(long, default_value = "127.0.0.1:4000")]
    bind: SocketAddr,
    /// Reply with this many bytes instead of echoing the request.
    #[arg(long)]
    response_size: Option<usize>,
    /// Threads serving the socket.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// How waiting threads wait.
    #[arg(long, value_enum, default_value_t = Polling::Adaptive)]
    polling: Polling,
    /// Pin the server threads to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
    /// Link speed for Homa's pacer, Mbit/s (default: the protocol's).
    #[arg(long)]
    link_mbps: Option<u32>,
}

#[derive(Debug, clap::Args)]
struct ClientArgs {
    /// The server's address.
    #[arg(long, default_value = "127.0.0.1:4000")]
    server: SocketAddr,
    /// Request size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Stop after this many calls (over all threads).
    #[arg(long, conflicts_with = "duration")]
    count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Calls in flight: this many threads calling on one socket.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// How waiting threads wait.
    #[arg(long, value_enum, default_value_t = Polling::Adaptive)]
    polling: Polling,
    /// Give up on a call after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Pin the client threads to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
    /// Link speed for Homa's pacer, Mbit/s (default: the protocol's).
    #[arg(long)]
    link_mbps: Option<u32>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Fixes glibc's allocation thresholds for this process. Homa hands every
/// received message to the application in its own buffer; with glibc's
/// default *dynamic* thresholds, freeing a few concurrent megabyte-sized
/// messages trims the heap (`madvise`) and the next message faults every
/// page back in: 180 000 page faults for 1 GB received, half of the bulk
/// throughput on loopback. Fixed thresholds keep freed buffers for reuse.
/// (The baselines allocate nothing per message, so this changes nothing
/// for them.)
fn tune_allocator() {
    // SAFETY: mallopt only adjusts allocator parameters; called before any
    // thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

fn main() -> Result<()> {
    tune_allocator();
    match Cli::parse().command {
        Command::Server(a) => server(a),
        Command::Client(a) => client(a),
        Command::Compare(a) => {
            let report = compare::run(&a)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                compare::print_table(&report);
            }
            Ok(())
        }
    }
}

fn server(a: ServerArgs) -> Result<()> {
    if let Some(cpu) = a.cpu {
        pin::pin_current_thread(cpu)?;
    }
    let sock = Socket::bind_with(a.bind, bench::homa_config(a.polling, true, a.link_mbps))
        .with_context(|| format!("binding {}", a.bind))?;
    println!("listening on {}", sock.local_addr());
    std::io::stdout().flush()?;
    let fixed = a
        .response_size
        .map(|n| Bytes::from(vec![0x5a_u8; n.max(1)]));
    let threads: Vec<_> = (0..a.threads.max(1))
        .map(|_| {
            let (sock, fixed) = (sock.clone(), fixed.clone());
            std::thread::spawn(move || -> Result<()> {
                loop {
                    match sock.recv_request() {
                        Ok(r) => match sock.reply(r.peer, r.id, fixed.clone().unwrap_or(r.body)) {
                            Ok(()) | Err(HomaError::Closed) => {}
                            Err(e) => return Err(e.into()),
                        },
                        Err(HomaError::Closed) => return Ok(()),
                        Err(e) => return Err(e.into()),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("server thread panicked"))??;
    }
    Ok(())
}

#[derive(Debug, serde::Serialize)]
struct ClientReport {
    server: SocketAddr,
    size: usize,
    concurrency: usize,
    calls: u64,
    failed: u64,
    seconds: f64,
    calls_per_sec: f64,
    /// Request plus response bytes, in Gbit/s.
    gbps: f64,
    rtt: Latency,
}

fn client(a: ClientArgs) -> Result<()> {
    if a.count.is_none() && a.duration.is_none() {
        bail!("give --count or --duration");
    }
    if let Some(cpu) = a.cpu {
        pin::pin_current_thread(cpu)?;
    }
    let sock = Socket::bind_with(
        "0.0.0.0:0".parse()?,
        bench::homa_config(a.polling, false, a.link_mbps),
    )?;
    let request = Bytes::from(vec![0x5a_u8; a.size.max(1)]);
    let deadline = a
        .duration
        .map(|d| Instant::now() + Duration::from_secs_f64(d));
    let remaining = Arc::new(std::sync::atomic::AtomicU64::new(
        a.count.unwrap_or(u64::MAX),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let resp_bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let timeout = Duration::from_secs_f64(a.timeout);
    let start = Instant::now();
    let threads: Vec<_> = (0..a.concurrency.max(1))
        .map(|_| {
            let (sock, request) = (sock.clone(), request.clone());
            let (remaining, stop, samples) = (remaining.clone(), stop.clone(), samples.clone());
            let (resp_bytes, failed) = (resp_bytes.clone(), failed.clone());
            let server = a.server;
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    if remaining
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
                        .is_err()
                    {
                        break;
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    let t = Instant::now();
                    match sock.call_timeout(server, request.clone(), timeout) {
                        Ok(r) => {
                            mine.push(t.elapsed().as_nanos() as u64);
                            resp_bytes.fetch_add(r.len() as u64, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            eprintln!("call failed: {e}");
                            if matches!(e, HomaError::PortUnreachable | HomaError::Closed) {
                                stop.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                }
                samples
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(mine);
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let samples = std::mem::take(&mut *samples.lock().unwrap_or_else(|p| p.into_inner()));
    let calls = samples.len() as u64;
    let bytes = calls * a.size as u64 + resp_bytes.load(Ordering::Relaxed);
    let report = ClientReport {
        server: a.server,
        size: a.size,
        concurrency: a.concurrency,
        calls,
        failed: failed.load(Ordering::Relaxed),
        seconds,
        calls_per_sec: calls as f64 / seconds,
        gbps: bytes as f64 * 8.0 / seconds / 1e9,
        rtt: Latency::from_nanos(samples),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} calls of {} bytes to {} in {:.2} s, concurrency {} ({} failed)",
            report.calls,
            report.size,
            report.server,
            report.seconds,
            report.concurrency,
            report.failed
        );
        println!(
            "rtt: p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, mean {:.1} us",
            report.rtt.p50_us, report.rtt.p99_us, report.rtt.p999_us, report.rtt.mean_us
        );
        println!(
            "throughput: {:.0} calls/s, {:.3} Gbit/s (request + response bytes)",
            report.calls_per_sec, report.gbps
        );
    }
    if report.calls == 0 {
        bail!("no call succeeded");
    }
    Ok(())
}
