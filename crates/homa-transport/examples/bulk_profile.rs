//! One-way bulk messages between a client thread and a server thread, each
//! pinned to its own CPU, for profiling the bulk path (`perf record -e
//! cpu-clock -g`) and for trying protocol settings on it without
//! rebuilding: `homa compare`'s Homa bulk measurement with knobs.
//!
//! ```text
//! cargo build --release -p homa-transport --example bulk_profile
//! target/release/examples/bulk_profile [size] [outstanding] [seconds] [knob=value...]
//! ```
//!
//! Defaults: 1 000 000-byte requests answered with one byte, 4 calls
//! outstanding, 2 seconds, busy polling, `link_mbps` 100 000 (as `homa
//! compare`). Knobs (protocol configuration fields): `link_mbps`,
//! `pacer` (0/1), `max_incoming`, `window`, `max_overcommit`,
//! `unsched_bytes` (fixes it for every peer), `max_gso_bytes`,
//! `max_nic_backlog_us`, `recv_batch`, `gso` (0/1), `mtu` (0: the
//! interface's, the default; else that MTU), `sndbuf` / `rcvbuf` (the
//! sockets' `SO_SNDBUF` / `SO_RCVBUF` requests, bytes), `recv_pool` (idle
//! receive buffers kept for reuse; 0: none), `busy_poll_us` (0:
//! threads sleep until data arrives, so CPU time and instruction counts
//! are work, not spinning). Prints Gbit/s and the CPU time
//! per GB of each side, then per megabyte received: each side's system
//! calls (sends, of which `sendmmsg` batches of several transmits,
//! receives), the packets they carried, and the GRANTs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use homa_sys::process::{process_cpu_time, thread_cpu_time};
use homa_transport::{Config, Socket};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn configure(c: &mut Config, knob: &str) -> Res<()> {
    let (k, v) = knob.split_once('=').ok_or("knob=value")?;
    let n: u64 = v.parse()?;
    let p = &mut c.proto;
    match k {
        "link_mbps" => p.link_mbps = n as u32,
        "pacer" => p.pacer = n != 0,
        "max_incoming" => p.max_incoming = n as u32,
        "window" => p.window = n as u32,
        "max_overcommit" => p.max_overcommit = n as u32,
        "unsched_bytes" => {
            p.unsched_bytes = n as u32;
            p.unsched_from_rtt = false;
        }
        "max_gso_bytes" => p.max_gso_bytes = n as u32,
        "max_nic_backlog_us" => p.max_nic_backlog = Duration::from_micros(n),
        "recv_batch" => c.recv_batch = n as usize,
        "gso" => c.gso = n != 0,
        "mtu" => {
            c.mtu = match n {
                0 => homa_transport::Mtu::Auto,
                m => homa_transport::Mtu::Fixed(m as u32),
            }
        }
        "busy_poll_us" => c.busy_poll = Duration::from_micros(n),
        "sndbuf" => c.send_buffer = n as usize,
        "rcvbuf" => c.recv_buffer = n as usize,
        "recv_pool" => c.recv_pool = n as usize,
        _ => return Err(format!("unknown knob {k}").into()),
    }
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: f64| args.get(i).map_or(Ok(d), |s| s.parse::<f64>());
    let size = num(0, 1e6)? as usize;
    let outstanding = num(1, 4.0)? as usize;
    let secs = num(2, 2.0)?;
    let mut config = Config::default();
    config.busy_poll = Duration::from_secs(3600);
    config.proto.link_mbps = 100_000;
    for knob in args.iter().skip(3) {
        configure(&mut config, knob)?;
    }
    let cpus = homa_sys::process::allowed_cpus();
    let (client_cpu, server_cpu) = (cpus[0], *cpus.get(1).unwrap_or(&cpus[0]));
    let received = Arc::new(AtomicU64::new(0));
    let server = Socket::bind_with("127.0.0.1:0", config.clone().with_server(true))?;
    let dest = server.local_addr();
    let (s, r) = (server.clone(), Arc::clone(&received));
    let h = std::thread::spawn(move || {
        homa_sys::process::pin_current_thread(server_cpu).expect("pin");
        // As `homa compare`'s bulk server: the request as the buffers it
        // arrived in, counted, not copied.
        while let Ok(req) = s.recv_request_message() {
            r.fetch_add(req.message.len() as u64, Ordering::Relaxed);
            if s.reply(req.peer, req.id, Bytes::from_static(b"k")).is_err() {
                break;
            }
        }
    });
    homa_sys::process::pin_current_thread(client_cpu)?;
    let client = Socket::bind_with("127.0.0.1:0", config.with_server(false))?;
    let msg = Bytes::from(vec![0x5a_u8; size]);
    let mut calls = std::collections::VecDeque::new();
    let mut step = || -> Res<()> {
        while calls.len() < outstanding.max(1) {
            calls.push_back(client.start_call_timeout(
                dest,
                msg.clone(),
                Duration::from_secs(10),
            )?);
        }
        calls.pop_front().expect("a call").wait()?;
        Ok(())
    };
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(200) {
        step()?;
    }
    let (c0, p0, b0) = (
        thread_cpu_time()?,
        process_cpu_time()?,
        received.load(Ordering::Relaxed),
    );
    let (cs0, ss0) = (client.stats(), server.stats());
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < secs {
        step()?;
    }
    let bytes = received.load(Ordering::Relaxed) - b0;
    let elapsed = t0.elapsed().as_secs_f64();
    let client_cpu = thread_cpu_time()?.since(c0);
    let all = process_cpu_time()?.since(p0);
    let gb = bytes as f64 / 1e9;
    let ms_per_gb = |d: Duration| d.as_secs_f64() * 1e3 / gb;
    println!(
        "{size} B x{outstanding}: {:.2} Gbit/s; CPU ms/GB: client {:.0}, rest {:.0}",
        bytes as f64 * 8.0 / elapsed / 1e9,
        ms_per_gb(client_cpu.total()),
        ms_per_gb(all.total().saturating_sub(client_cpu.total())),
    );
    let (cs, ss) = (client.stats(), server.stats());
    let mb = bytes as f64 / 1e6;
    let per_mb = |a: u64, b: u64| (a - b) as f64 / mb;
    let grant = homa_proto::wire::PacketType::Grant.index();
    println!(
        "per MB: client sends {:.1} (GSO {:.1}, batched {:.1}), packets {:.0}, receives {:.1}; \
         server receives {:.1} (GRO batches {:.1}), packets {:.0}, sends {:.1}, GRANTs {:.1}",
        per_mb(cs.transport.send_calls, cs0.transport.send_calls),
        per_mb(cs.transport.gso_sends, cs0.transport.gso_sends),
        per_mb(cs.transport.batched_sends, cs0.transport.batched_sends),
        per_mb(cs.transport.packets_sent, cs0.transport.packets_sent),
        per_mb(cs.transport.recv_calls, cs0.transport.recv_calls),
        per_mb(ss.transport.recv_calls, ss0.transport.recv_calls),
        per_mb(ss.transport.gro_batches, ss0.transport.gro_batches),
        per_mb(
            ss.transport.packets_received,
            ss0.transport.packets_received
        ),
        per_mb(ss.transport.send_calls, ss0.transport.send_calls),
        per_mb(ss.proto.sent.packets[grant], ss0.proto.sent.packets[grant]),
    );
    let resend = homa_proto::wire::PacketType::Resend.index();
    println!(
        "MTU {}; per MB: RESENDs sent by the server {:.2}, DATA packets retransmitted by the client {:.2}",
        client.offloads().mtu,
        per_mb(
            ss.proto.sent.packets[resend],
            ss0.proto.sent.packets[resend]
        ),
        per_mb(cs.proto.data_retransmitted, cs0.proto.data_retransmitted),
    );
    drop(calls);
    server.close();
    let _ = h.join();
    Ok(())
}
