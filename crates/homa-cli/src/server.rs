//! The servers behind `homa server`, modelled on the kernel module's
//! `cp_node server`: Homa or TCP, several ports, several threads per port.
//!
//! A request that starts with the load generator's 12-byte header
//! ([`crate::header`]) gets a response of the length the header asks for
//! (the request's own, or 100 bytes for `short_response`), starting with
//! the response header; any other request is echoed unchanged, so plain
//! clients (e.g. `echo_client`) work too. `--response-size` forces a fixed
//! response length.
//!
//! # Metrics
//!
//! A request with the header's `metrics` flag (what `homa metrics` sends)
//! is answered with the server's counters as JSON after the response
//! header: requests and bytes per port and thread, and for Homa every
//! socket's `stats()` (datapath and protocol counters). Asking the server
//! itself, on the port it already serves, needs no extra port, works
//! through any network path the benchmark uses, and never disturbs the
//! benchmark beyond one small RPC.
//!
//! Homa ports are served by blocking [`Socket`]s, each with its own threads
//! (the transport's leader/follower driving: a waiting server thread reads
//! the socket itself). TCP ports are served by a multi-threaded tokio
//! runtime with one task per connection; requests on a connection are
//! answered in order.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use homa_transport::{Error as HomaError, Socket};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::bench::{self, Polling};
use crate::header::{self, Header, FLAG_METRICS, FLAG_RESPONSE, HEADER_LEN};
use crate::loadgen::Protocol;
use crate::out::errln;

/// What to serve.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Transport.
    pub protocol: Protocol,
    /// Address of the first port; the others follow it.
    pub bind: SocketAddr,
    /// Ports served.
    pub ports: u16,
    /// Threads per port (Homa) or runtime workers in all (TCP).
    pub threads: usize,
    /// Homa: one socket per thread on each port (`SO_REUSEPORT`).
    pub reuseport: bool,
    /// Homa: thread i of a port pinned to the i-th allowed CPU (and, with
    /// `reuseport`, datagrams steered to the socket of their CPU).
    pub pin: bool,
    /// How waiting Homa threads wait.
    pub polling: Polling,
    /// Homa settings.
    pub homa: crate::client::HomaKnobs,
    /// Answer every request with this many bytes.
    pub response_size: Option<u32>,
    /// Print a line per second with traffic.
    pub report: bool,
    /// Experiment name for the per-second lines.
    pub exp: String,
    /// Where the server registers its state for `--metrics-listen`.
    pub registry: Option<Registry>,
}

/// The servers of a process, for the Prometheus endpoint ([`crate::prom`]).
pub(crate) type Registry = Arc<Mutex<Vec<Arc<Shared>>>>;

/// Runs a server per protocol (Homa and TCP can share a port number: one is
/// UDP, the other TCP) and, with `metrics_listen`, the Prometheus endpoint;
/// returns when one of them fails.
pub(crate) fn run_all(
    base: Options,
    protocols: &[Protocol],
    metrics_listen: Option<SocketAddr>,
) -> Result<()> {
    let registry: Registry = Arc::new(Mutex::new(Vec::new()));
    if let Some(addr) = metrics_listen {
        let r = Arc::clone(&registry);
        let bound = crate::prom::spawn(addr, move || {
            let servers = r.lock().unwrap_or_else(|e| e.into_inner()).clone();
            crate::prom::render(&servers)
        })?;
        errln!("metrics on http://{bound}/metrics");
    }
    let mut base = base;
    if protocols.len() > 1 && base.bind.port() == 0 {
        // One port number for both: clients give one address.
        base.bind.set_port(free_port_for_both(base.bind)?);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    for &p in protocols {
        let mut o = base.clone();
        o.protocol = p;
        if base.exp.is_empty() {
            o.exp = p.name().to_string();
        }
        o.registry = Some(Arc::clone(&registry));
        let tx = tx.clone();
        std::thread::Builder::new()
            .name(format!("{}-server", p.name()))
            .spawn(move || {
                let r = run(o).with_context(|| format!("{} server", p.name()));
                let _ = tx.send(r);
            })?;
    }
    drop(tx);
    // The first server to stop decides (they run until killed otherwise).
    rx.recv().unwrap_or(Ok(()))
}

/// Counters of one serving thread (Homa) or port (TCP).
#[derive(Debug, Default)]
struct Counter {
    requests: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    reply_failed: AtomicU64,
}

impl Counter {
    fn add(&self, bytes_in: usize, bytes_out: usize) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes_in as u64, Ordering::Relaxed);
        self.bytes_out
            .fetch_add(bytes_out as u64, Ordering::Relaxed);
    }

    fn json(&self) -> Value {
        json!({
            "requests": self.requests.load(Ordering::Relaxed),
            "bytes_in": self.bytes_in.load(Ordering::Relaxed),
            "bytes_out": self.bytes_out.load(Ordering::Relaxed),
            "reply_failed": self.reply_failed.load(Ordering::Relaxed),
        })
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("protocol", &self.opts.protocol)
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

/// A port free for both UDP and TCP on `addr`'s IP (it could be taken
/// again before the servers bind it; they then fail with "address in
/// use").
fn free_port_for_both(addr: SocketAddr) -> Result<u16> {
    for _ in 0..100 {
        let t = std::net::TcpListener::bind(addr)?;
        let mut a = addr;
        a.set_port(t.local_addr()?.port());
        if std::net::UdpSocket::bind(a).is_ok() {
            return Ok(a.port());
        }
    }
    bail!("no port free for both UDP and TCP on {}", addr.ip())
}

/// State every serving thread of one protocol shares.
pub(crate) struct Shared {
    opts: Options,
    started: Instant,
    addrs: Vec<SocketAddr>,
    counters: Vec<Counter>,
    sockets: Mutex<Vec<Socket>>,
}

impl Shared {
    /// The state of a server with `counters` serving threads, with the
    /// per-second reporter started if asked for.
    fn start(
        opts: Options,
        addrs: Vec<SocketAddr>,
        counters: usize,
        sockets: Vec<Socket>,
    ) -> Arc<Shared> {
        let shared = Arc::new(Shared {
            counters: (0..counters).map(|_| Counter::default()).collect(),
            sockets: Mutex::new(sockets),
            addrs,
            started: Instant::now(),
            opts,
        });
        if shared.opts.report {
            let s = Arc::clone(&shared);
            std::thread::spawn(move || reporter(s));
        }
        if let Some(r) = &shared.opts.registry {
            r.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Arc::clone(&shared));
        }
        shared
    }

    /// `homa` or `tcp`.
    pub(crate) fn protocol_name(&self) -> &'static str {
        self.opts.protocol.name()
    }

    /// Seconds since the server started.
    pub(crate) fn uptime_secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Per serving thread (Homa) or port (TCP): requests, bytes in, bytes
    /// out, failed replies.
    pub(crate) fn thread_counters(&self) -> Vec<(u64, u64, u64, u64)> {
        self.counters
            .iter()
            .map(|c| {
                (
                    c.requests.load(Ordering::Relaxed),
                    c.bytes_in.load(Ordering::Relaxed),
                    c.bytes_out.load(Ordering::Relaxed),
                    c.reply_failed.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Every Homa socket's metrics.
    pub(crate) fn socket_metrics(&self) -> Vec<homa_transport::Metrics> {
        self.sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(Socket::metrics)
            .collect()
    }

    fn totals(&self) -> (u64, u64, u64) {
        self.counters.iter().fold((0, 0, 0), |(r, i, o), c| {
            (
                r + c.requests.load(Ordering::Relaxed),
                i + c.bytes_in.load(Ordering::Relaxed),
                o + c.bytes_out.load(Ordering::Relaxed),
            )
        })
    }

    /// The metrics document.
    fn metrics(&self) -> Value {
        let (requests, bytes_in, bytes_out) = self.totals();
        let sockets: Vec<Value> = self
            .sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(socket_metrics)
            .collect();
        json!({
            "protocol": self.opts.protocol.name(),
            "exp": self.opts.exp,
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "addrs": self.addrs,
            "requests": requests,
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            "per_thread": self.counters.iter().map(Counter::json).collect::<Vec<_>>(),
            "sockets": sockets,
        })
    }
}

/// One Homa socket's counters as JSON, with its host table's figures
/// (`host`: mode, participants, host and own incoming bytes; null when
/// host sharing is off).
pub(crate) fn socket_metrics(s: &Socket) -> Value {
    let m = s.metrics();
    let mut v = stats_json(s.local_addr(), &s.stats(), s.offloads());
    v["host"] = serde_json::to_value(&m.host).unwrap_or(Value::Null);
    v
}

/// A Homa socket's counters (`stats()`) and offloads as JSON.
pub(crate) fn stats_json(
    addr: SocketAddr,
    st: &homa_transport::Stats,
    o: homa_transport::Offloads,
) -> Value {
    let t = &st.transport;
    json!({
        "addr": addr,
        "offloads": {"gso": o.gso, "gro": o.gro, "recv_buffer": o.recv_buffer, "send_buffer": o.send_buffer},
        "transport": {
            "send_calls": t.send_calls,
            "packets_sent": t.packets_sent,
            "gso_sends": t.gso_sends,
            "batched_sends": t.batched_sends,
            "send_blocked": t.send_blocked,
            "write_wakeups": t.write_wakeups,
            "send_errors": t.send_errors,
            "gso_fallbacks": t.gso_fallbacks,
            "recv_calls": t.recv_calls,
            "recv_empty": t.recv_empty,
            "driver_wakeups": t.driver_wakeups,
            "spins": t.spins,
            "packets_received": t.packets_received,
            "gro_batches": t.gro_batches,
            "packets_with_level": t.packets_with_level,
            "bad_datagrams": t.bad_datagrams,
            "queued_errors": t.queued_errors,
            "requests_dropped": t.requests_dropped,
            "send_cap_waits": t.send_cap_waits,
            "lock_acquired": t.lock_acquired,
            "lock_contended": t.lock_contended,
            "lock_wait_ns": t.lock_wait_ns,
            "lock_hold_ns": t.lock_hold_ns,
        },
        // The serial section per request served (server sockets) or
        // response received (client sockets).
        "lock_per_rpc": {
            "wait_ns": per_rpc(t.lock_wait_ns, st.proto.requests_delivered + st.proto.responses_delivered),
            "hold_ns": per_rpc(t.lock_hold_ns, st.proto.requests_delivered + st.proto.responses_delivered),
        },
        "proto": serde_json::to_value(&st.proto).unwrap_or(Value::Null),
    })
}

/// `total / rpcs`, 0 without RPCs.
fn per_rpc(total: u64, rpcs: u64) -> f64 {
    if rpcs == 0 {
        0.0
    } else {
        total as f64 / rpcs as f64
    }
}

/// The header of a received message, read from its first piece (the
/// header is 12 bytes; a message's first packet carries far more): `None`
/// unless it parses and its length is the message's.
fn header_of(m: &homa_transport::Message) -> Option<Header> {
    let first = m.chunks().next()?;
    Header::read(first).filter(|h| h.length as usize == m.len())
}

/// The response to a request whose header (if it has one) is `h`, metrics
/// requests aside. A response of header and zeroes is built in a reused
/// buffer (`zeros`) or, for an echo of a request that arrived in one piece
/// nothing else holds, in the request's own buffer (the 12 header bytes
/// rewritten): the request's bytes are never copied. A request without a
/// header is echoed as it came (made contiguous).
fn response(
    opts: &Options,
    h: Option<Header>,
    body: homa_transport::Message,
    zeros: &mut header::ZeroPool,
) -> Bytes {
    match h {
        Some(h) => {
            let len = opts.response_size.unwrap_or_else(|| h.response_length());
            let rh = h.response(len);
            if len as usize == body.len() && body.is_contiguous() {
                if let Ok(mut m) = body.into_bytes().try_into_mut() {
                    rh.write(&mut m);
                    return m.freeze();
                }
            }
            zeros.message(rh, len)
        }
        None => match opts.response_size {
            Some(n) => vec![0x5a; n.max(1) as usize].into(),
            None => body.into_bytes(),
        },
    }
}

/// The response to a metrics request with header `h`.
fn metrics_response(shared: &Shared, h: Header) -> Vec<u8> {
    let body = serde_json::to_vec(&shared.metrics()).unwrap_or_default();
    let len = (HEADER_LEN + body.len()) as u32;
    let mut v = h.response(len).to_bytes().to_vec();
    v.extend_from_slice(&body);
    v
}

/// Runs the server until killed. Prints `listening on ADDR` per port
/// first (the line scripts wait for).
pub(crate) fn run(opts: Options) -> Result<()> {
    crate::args::port_range(opts.bind, opts.ports, "--bind with --ports")?;
    match opts.protocol {
        Protocol::Homa => run_homa(opts),
        Protocol::Tcp => run_tcp(opts),
    }
}

fn port_addr(base: SocketAddr, i: u16) -> SocketAddr {
    let mut a = base;
    if a.port() != 0 {
        a.set_port(a.port() + i);
    }
    a
}

/// Prints `listening on ADDR` per port. Nobody may be reading (a script
/// that read what it waited for and closed the pipe): that is no reason
/// to stop serving, so write errors are ignored.
fn print_listening(addrs: &[SocketAddr]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for a in addrs {
        let _ = writeln!(out, "listening on {a}");
    }
    let _ = out.flush();
    Ok(())
}

/// Prints the per-second server lines (when there was traffic) until the
/// process ends. Output errors are ignored: nobody may be reading.
/// The CPU figure is the whole process's (user + system, every thread:
/// also another protocol's server in the same process) per request served
/// in the interval.
fn reporter(shared: Arc<Shared>) {
    let mut last = (0, 0, 0);
    let mut t = Instant::now();
    let mut cpu = homa_sys::process::CpuMeter::process().ok();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = Instant::now();
        let secs = (now - t).as_secs_f64();
        t = now;
        let cur = shared.totals();
        let (r, i, o) = (cur.0 - last.0, cur.1 - last.1, cur.2 - last.2);
        last = cur;
        let cpu_us = cpu.as_ref().and_then(|m| m.micros_per(r).ok());
        cpu = homa_sys::process::CpuMeter::process().ok();
        if r == 0 {
            continue;
        }
        let _ = writeln!(
            std::io::stdout(),
            "{} servers: {:.2} Kops/s, {:.3} Gbit/s in, {:.3} Gbit/s out, avg. request {:.0} bytes, cpu {}",
            shared.opts.exp,
            r as f64 / secs / 1e3,
            i as f64 * 8.0 / secs / 1e9,
            o as f64 * 8.0 / secs / 1e9,
            i as f64 / r as f64,
            cpu_us.map_or_else(|| "unknown".to_string(), |c| format!("{c:.2} us per request (process)")),
        );
    }
}

fn run_homa(opts: Options) -> Result<()> {
    let threads = opts.threads.max(1);
    // Every serving thread's socket (with --reuseport its own, else its
    // port's), port by port.
    let mut sockets = Vec::new();
    let mut distinct = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..opts.ports.max(1) {
        let mut a = port_addr(opts.bind, i);
        let cfg = crate::client::homa_config(opts.polling, true, &opts.homa)
            .with_reuse_port(opts.reuseport)
            .with_reuse_port_by_cpu(opts.reuseport && opts.pin);
        let s = Socket::bind_with(a, cfg.clone()).with_context(|| format!("binding {a}"))?;
        a = s.local_addr();
        addrs.push(a);
        sockets.push(s.clone());
        distinct.push(s.clone());
        for _ in 1..threads {
            if opts.reuseport {
                let t = Socket::bind_with(a, cfg.clone())
                    .with_context(|| format!("binding {a} again"))?;
                sockets.push(t.clone());
                distinct.push(t);
            } else {
                sockets.push(s.clone());
            }
        }
    }
    print_listening(&addrs)?;
    let shared = Shared::start(opts, addrs, sockets.len(), distinct);
    let mut handles = Vec::new();
    for (n, sock) in sockets.into_iter().enumerate() {
        {
            let shared = Arc::clone(&shared);
            handles.push(std::thread::spawn(move || -> Result<()> {
                let counter = &shared.counters[n];
                if shared.opts.pin {
                    // Thread i of its port on CPU i: with --reuseport, the
                    // CPU steering sends it what CPU i received.
                    crate::pin::pin_current_thread(n % threads)?;
                }
                let mut zeros = header::ZeroPool::default();
                loop {
                    let r = match sock.recv_request_message() {
                        Ok(r) => r,
                        Err(HomaError::Closed) => return Ok(()),
                        Err(e) => return Err(e.into()),
                    };
                    let len = r.message.len();
                    let resp = match header_of(&r.message) {
                        Some(h) if h.has(FLAG_METRICS) => metrics_response(&shared, h).into(),
                        h => response(&shared.opts, h, r.message, &mut zeros),
                    };
                    counter.add(len, resp.len());
                    match sock.reply(r.peer, r.id, resp) {
                        Ok(()) => {}
                        Err(HomaError::Closed) => return Ok(()),
                        // The RPC ended between the request and the reply
                        // (the client gave up, the peer timed out or is
                        // unreachable): that request only, keep serving.
                        Err(e) => {
                            counter.reply_failed.fetch_add(1, Ordering::Relaxed);
                            if counter
                                .reply_failed
                                .load(Ordering::Relaxed)
                                .is_power_of_two()
                            {
                                errln!("reply to {} failed: {e}", r.peer);
                            }
                        }
                    }
                }
            }));
        }
    }
    for h in handles {
        h.join().map_err(|_| anyhow!("server thread panicked"))??;
    }
    Ok(())
}

fn run_tcp(opts: Options) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut listeners = Vec::new();
        for i in 0..opts.ports.max(1) {
            let a = port_addr(opts.bind, i);
            let l = tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("binding {a}"))?;
            listeners.push(l);
        }
        let addrs = listeners
            .iter()
            .map(|l| l.local_addr())
            .collect::<std::io::Result<Vec<_>>>()?;
        print_listening(&addrs)?;
        let shared = Shared::start(opts, addrs, listeners.len(), Vec::new());
        let mut tasks = Vec::new();
        for (p, l) in listeners.into_iter().enumerate() {
            let shared = Arc::clone(&shared);
            tasks.push(tokio::spawn(async move {
                loop {
                    let (s, _) = match l.accept().await {
                        Ok(x) => x,
                        Err(e) => {
                            errln!("accept: {e}");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let _ = s.set_nodelay(true);
                    tokio::spawn(tcp_conn(s, Arc::clone(&shared), p));
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
        Ok(())
    })
}

/// Serves one TCP connection: requests framed by the header's length,
/// answered in order. Neither the request's body nor the response is ever
/// held whole ([`header::read_message`], [`header::write_message`]): a
/// length claimed by the peer costs no memory.
async fn tcp_conn(s: tokio::net::TcpStream, shared: Arc<Shared>, port: usize) {
    let (mut rd, mut wr) = s.into_split();
    let mut scratch = vec![0u8; header::CHUNK];
    let mut first = Vec::new();
    while let Ok(h) = header::read_message(&mut rd, &mut scratch).await {
        let counter = &shared.counters[port];
        let sent = if h.has(FLAG_METRICS) {
            let m = metrics_response(&shared, h);
            counter.add(h.length as usize, m.len());
            wr.write_all(&m).await
        } else {
            let len = shared
                .opts
                .response_size
                .unwrap_or_else(|| h.response_length())
                .max(HEADER_LEN as u32);
            counter.add(h.length as usize, len as usize);
            header::write_message(&mut wr, h.response(len), &mut first).await
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Longest metrics response `homa metrics` reads over TCP (Homa's own
/// limit on message length bounds it over Homa).
const MAX_METRICS_LEN: usize = 16 << 20;

/// `homa metrics`: asks a running server for its metrics; returns the
/// JSON text.
pub(crate) fn fetch_metrics(
    protocol: Protocol,
    server: SocketAddr,
    timeout: Duration,
) -> Result<Value> {
    let req = header::message(
        Header {
            flags: FLAG_METRICS,
            ..Header::default()
        },
        HEADER_LEN as u32,
    );
    let body: Vec<u8> = match protocol {
        Protocol::Homa => {
            let any: SocketAddr = if server.is_ipv6() {
                "[::]:0".parse()?
            } else {
                "0.0.0.0:0".parse()?
            };
            // A one-off query joins no host table (its settings may differ
            // from the table's, and it schedules nothing worth sharing).
            let cfg = bench::homa_config(Polling::Block, false, None)
                .with_host_sharing(homa_transport::HostSharing::Off);
            let sock = Socket::bind_with(any, cfg)?;
            sock.call_timeout(server, req, timeout)
                .with_context(|| format!("asking {server}"))?
                .to_vec()
        }
        Protocol::Tcp => {
            use std::io::Read;
            let mut s = std::net::TcpStream::connect_timeout(&server, timeout)
                .with_context(|| format!("connecting to {server}"))?;
            s.set_read_timeout(Some(timeout))?;
            s.write_all(&req)?;
            let mut hb = [0u8; HEADER_LEN];
            s.read_exact(&mut hb)?;
            let h = Header::read(&hb).ok_or_else(|| anyhow!("bad response header"))?;
            if h.length as usize > MAX_METRICS_LEN {
                bail!("a {} byte metrics response: not a `homa server`?", h.length);
            }
            let mut v = hb.to_vec();
            v.resize(h.length as usize, 0);
            s.read_exact(&mut v[HEADER_LEN..])?;
            v
        }
    };
    let h = Header::of_message(&body)
        .ok_or_else(|| anyhow!("the server answered without a header: not a `homa server`?"))?;
    if !(h.has(FLAG_METRICS) && h.has(FLAG_RESPONSE)) {
        return Err(anyhow!(
            "the server does not answer metrics requests (it echoed)"
        ));
    }
    serde_json::from_slice(&body[HEADER_LEN..]).context("parsing the metrics")
}
