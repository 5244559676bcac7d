//! The measurements `homa compare` (and `homa client`) run: request/response
//! round trips and one-way bulk throughput, over raw UDP (the floor), TCP
//! and Homa, each with a server thread pinned to one CPU and the client on
//! another.
//!
//! The server side is a thread of the same process, not a child process:
//! the kernel path of a loopback datagram or segment is the same either
//! way, pinning each side with `sched_setaffinity` is exact for threads,
//! and nothing (process start-up, IPC for results) differs between the
//! transports. Every transport gets the same treatment: fresh sockets per
//! measurement, the same warm-up, the same measurement window, the same
//! polling policy.
//!
//! ## CPU time
//!
//! Every measurement also returns the CPU time (user plus system, as
//! `getrusage` accounts it) spent during its window, per side ([`Window`]):
//! the client is the measuring thread (`RUSAGE_THREAD`, read by itself at
//! both ends of the window); the server is the rest of the process over the
//! same window (`RUSAGE_SELF` minus the client thread): the server thread,
//! plus any thread a transport runs for itself (Homa's background threads,
//! one per socket, client's included) and the progress line's ticker (one
//! wake-up per 500 ms). Both sides together are exact; the split charges
//! the client socket's background thread to the server, which errs against
//! Homa. Busy-polling sides spin through the whole window, so with
//! `--polling busy` CPU per round trip is about the wall time of a round
//! trip per side: the informative figures are the rate row's (64
//! outstanding) and the other polling policies'.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use homa_sys::process::{process_cpu_time, thread_cpu_time, CpuTime};
use homa_sys::udp::{self, Buffer, Dest, RecvBatch, TosOption};
use homa_sys::wait;
use homa_transport::{Config, Error as HomaError, Socket};

use crate::pin::pin_current_thread;
use crate::stats::Latency;

/// How waiting threads wait, for every transport alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Polling {
    /// Every waiting thread spins on non-blocking receives and never sleeps
    /// (Homa: `busy_poll` without limit).
    Busy,
    /// Spin for 50 µs after the last data, then sleep until more arrives
    /// (Homa's default `busy_poll`; the baselines do the same with `poll`).
    Adaptive,
    /// Every waiting thread sleeps in the kernel until data arrives (Homa:
    /// `busy_poll` zero).
    Block,
}

/// How long `Adaptive` spins after the last data.
const ADAPTIVE_SPIN: Duration = Duration::from_micros(50);

/// What a baseline does when a non-blocking receive finds nothing.
struct Idle {
    polling: Polling,
    last: Instant,
}

impl Idle {
    fn new(polling: Polling) -> Idle {
        Idle {
            polling,
            last: Instant::now(),
        }
    }

    /// Data arrived: an adaptive waiter spins again for a while.
    fn data(&mut self) {
        self.last = Instant::now();
    }

    /// Nothing to read on `fd`: spin once, or sleep until it is readable
    /// (at most 50 ms, so stop flags are noticed).
    fn wait(&mut self, fd: BorrowedFd<'_>) {
        let sleep = match self.polling {
            Polling::Busy => false,
            Polling::Adaptive => self.last.elapsed() >= ADAPTIVE_SPIN,
            Polling::Block => true,
        };
        if sleep {
            let _ = wait::poll([(fd, false)], Some(Duration::from_millis(50)));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Where client and server run.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Cpus {
    /// CPU of the client (the measuring thread).
    pub client: usize,
    /// CPU of the server thread.
    pub server: usize,
}

/// How long to warm up and to measure.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Untimed traffic before measuring.
    pub warmup: Duration,
    /// The measurement window.
    pub measure: Duration,
}

/// How long a Homa call of a measurement may take before it fails (Homa
/// recovers lost packets itself: a call this late means a stuck peer).
const STUCK: Duration = Duration::from_secs(2);

/// How a UDP baseline copes with a lost datagram. UDP on loopback drops
/// datagrams when a socket buffer is full (the receiver was descheduled on
/// a loaded machine): after `resend` without an answer the baseline takes
/// what it sent for lost, counts it and sends again; only after
/// `give_up` losses in a row does it fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patience {
    /// Silence after which a datagram is taken for lost.
    pub resend: Duration,
    /// Losses in a row after which the peer is taken for gone.
    pub give_up: u32,
}

impl Patience {
    /// The ping-pongs': a ping unanswered for 200 ms is sent again; 25 in
    /// a row (5 s of silence) end the measurement.
    pub const PING: Patience = Patience {
        resend: Duration::from_millis(200),
        give_up: 25,
    };
    /// The UDP rate measurement's: after 50 ms without an echo every
    /// datagram in flight is taken for lost and the window refilled; 100
    /// in a row (5 s) end the measurement.
    pub const RATE: Patience = Patience {
        resend: Duration::from_millis(50),
        give_up: 100,
    };

    /// The error after `misses` losses in a row, if that is too many.
    fn check(&self, misses: u32, what: &str) -> Result<()> {
        if misses >= self.give_up {
            bail!(
                "{what}: no echo after {misses} sends in a row, {} ms apart: the echo thread is stuck or gone (single losses are resent and reported, not fatal)",
                self.resend.as_millis()
            );
        }
        Ok(())
    }
}

/// A send error that means only that this datagram did not go (a full
/// buffer): the baseline treats it as a loss, not as a failure.
fn dropped(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted | io::ErrorKind::TimedOut
    ) || matches!(
        e.raw_os_error(),
        // ICMP errors about an earlier datagram (its receiver had gone: a
        // client that closed with echoes in flight at the end of a phase)
        // are reported on a later call; they are about that datagram.
        Some(
            libc::ENOBUFS
                | libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
        )
    )
}

/// CPU time of one measurement's window, per side.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SideCpu {
    /// The measuring (client) thread.
    pub client: CpuTime,
    /// The rest of the process: the server thread and the transports' own
    /// threads.
    pub server: CpuTime,
}

impl SideCpu {
    /// Both sides, user plus system, in ns per `ops` operations: (client,
    /// server).
    pub fn nanos_per(&self, ops: u64) -> (f64, f64) {
        (self.client.nanos_per(ops), self.server.nanos_per(ops))
    }
}

/// The CPU clocks at the start of a measurement window; read on the client
/// thread at both ends.
pub struct Window {
    client: CpuTime,
    process: CpuTime,
}

impl Window {
    /// Opens the window (call on the measuring thread).
    pub fn open() -> Result<Window> {
        Ok(Window {
            client: thread_cpu_time()?,
            process: process_cpu_time()?,
        })
    }

    /// Closes the window: what each side spent since it opened.
    pub fn close(self) -> Result<SideCpu> {
        let client = thread_cpu_time()?.since(self.client);
        let all = process_cpu_time()?.since(self.process);
        Ok(SideCpu {
            client,
            server: CpuTime {
                user: all.user.saturating_sub(client.user),
                system: all.system.saturating_sub(client.system),
            },
        })
    }
}

/// Round trips: their latency and the CPU their window cost.
#[derive(Debug, Clone)]
pub struct Rtt {
    /// Round-trip times.
    pub latency: Latency,
    /// CPU time of the measurement window.
    pub cpu: SideCpu,
    /// UDP only: pings taken for lost and sent again (warm-up included);
    /// the round trips that needed a resend are not in `latency`.
    pub lost: u64,
}

/// Throughput: what moved and the CPU its window cost.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Operations (RPCs or bytes) completed in the window.
    pub ops: u64,
    /// Length of the window, seconds.
    pub secs: f64,
    /// CPU time of the window.
    pub cpu: SideCpu,
    /// UDP rate only: datagrams taken for lost and replaced (warm-up
    /// included).
    pub lost: u64,
}

impl Throughput {
    /// Operations per second.
    pub fn per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.ops as f64 / self.secs
        } else {
            0.0
        }
    }
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A baseline server's loop: until `stop`, a non-blocking `recv` into
/// `buf` on socket `fd`, and `on` for what arrived; waits as `polling`
/// says when nothing is there.
fn serve<T>(
    stop: &AtomicBool,
    polling: Polling,
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    mut recv: impl FnMut(&mut [u8]) -> io::Result<T>,
    mut on: impl FnMut(&[u8], T) -> io::Result<()>,
) -> Result<()> {
    let mut idle = Idle::new(polling);
    while !stop.load(Ordering::Relaxed) {
        match recv(buf) {
            Ok(x) => {
                on(buf, x)?;
                idle.data();
            }
            Err(e) if would_block(&e) => idle.wait(fd),
            // An error about an earlier echo (see `dropped`): the server
            // goes on.
            Err(e) if dropped(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Runs `op` (one round trip; `false` if it needed a resend, which leaves
/// it out of the samples) repeatedly: untimed during the warm-up, then
/// timed until the window closes. Returns the round-trip times in ns and
/// the CPU time of the window.
fn time_round_trips(
    plan: &Plan,
    mut op: impl FnMut() -> Result<bool>,
) -> Result<(Vec<u64>, SideCpu)> {
    let start = Instant::now();
    while start.elapsed() < plan.warmup {
        op()?;
    }
    let mut samples = Vec::with_capacity(1 << 18);
    let window = Window::open()?;
    let begin = Instant::now();
    loop {
        let t = Instant::now();
        let clean = op()?;
        let end = Instant::now();
        if clean {
            samples.push((end - t).as_nanos() as u64);
        }
        if end - begin >= plan.measure {
            return Ok((samples, window.close()?));
        }
    }
}

/// Turns what [`time_round_trips`] returned into an [`Rtt`], with `lost`
/// pings.
fn rtt_of(r: Result<(Vec<u64>, SideCpu)>, lost: u64) -> Result<Rtt> {
    let (samples, cpu) = r?;
    Ok(Rtt {
        latency: Latency::from_nanos(samples),
        cpu,
        lost,
    })
}

/// Runs `step` (which completes some operations and says how many)
/// repeatedly: untimed during the warm-up, then counted until the window
/// closes.
fn count_ops(plan: &Plan, mut step: impl FnMut() -> Result<u64>) -> Result<Throughput> {
    let start = Instant::now();
    while start.elapsed() < plan.warmup {
        step()?;
    }
    let window = Window::open()?;
    let t0 = Instant::now();
    let mut ops = 0;
    while t0.elapsed() < plan.measure {
        ops += step()?;
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok(Throughput {
        ops,
        secs,
        cpu: window.close()?,
        lost: 0,
    })
}

/// What the Homa measurements of `homa compare` set besides the polling
/// policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HomaKnobs {
    /// The pacer's link speed (`None`: the protocol's default).
    pub link_mbps: Option<u32>,
    /// How the sockets choose their MTU.
    pub mtu: homa_transport::Mtu,
    /// The pacer's NIC backlog allowance (`None`: the protocol's default).
    pub nic_backlog: Option<Duration>,
}

/// [`homa_config`] with [`HomaKnobs`].
pub fn homa_config_with(polling: Polling, server: bool, k: HomaKnobs) -> Config {
    let mut c = homa_config(polling, server, k.link_mbps).with_mtu(k.mtu);
    if let Some(b) = k.nic_backlog {
        c.proto.max_nic_backlog = b;
    }
    c
}

/// Homa configuration for a polling policy and, if given, a link speed
/// for the pacer (Mbit/s).
pub fn homa_config(polling: Polling, server: bool, link_mbps: Option<u32>) -> Config {
    let mut c = Config::default();
    c.busy_poll = match polling {
        // The baselines spin without limit; so does Homa here. (Its default,
        // 50 µs then sleep, pays a ~30 µs wake-up whenever the peer is
        // descheduled for longer, which a spinning baseline never does.)
        Polling::Busy => Duration::from_secs(3600),
        Polling::Adaptive => ADAPTIVE_SPIN,
        Polling::Block => Duration::ZERO,
    };
    c.server = Some(server);
    if let Some(l) = link_mbps {
        c.proto.link_mbps = l;
    }
    c
}

/// Starts a server thread pinned to `cpu` and waits until it is ready.
fn spawn_server<T: Send + 'static>(
    cpu: usize,
    f: impl FnOnce(mpsc::Sender<T>) -> Result<()> + Send + 'static,
) -> Result<(T, thread::JoinHandle<Result<()>>)> {
    let (tx, rx) = mpsc::channel();
    let h = thread::Builder::new()
        .name("bench-server".into())
        .spawn(move || {
            pin_current_thread(cpu)?;
            f(tx)
        })?;
    match rx.recv() {
        Ok(v) => Ok((v, h)),
        Err(_) => Err(h
            .join()
            .map_err(|_| anyhow!("server thread panicked"))?
            .err()
            .unwrap_or_else(|| anyhow!("server thread ended early"))),
    }
}

fn join(h: thread::JoinHandle<Result<()>>) -> Result<()> {
    h.join().map_err(|_| anyhow!("server thread panicked"))?
}

// ----- round trips -----------------------------------------------------

// ----- UDP ping-pong that survives loss ---------------------------------

/// The bytes of a ping that identify it (its sequence number, as much of
/// it as the ping holds).
type Tag = [u8; 8];

/// The first bytes of `data`, as many as a [`Tag`] holds.
fn tag_of(data: &[u8]) -> Tag {
    let mut t = Tag::default();
    let k = data.len().min(t.len());
    t[..k].copy_from_slice(&data[..k]);
    t
}

/// The client socket of a UDP ping-pong.
trait PingSocket {
    /// Sends one ping.
    fn send_ping(&mut self, ping: &[u8]) -> io::Result<()>;
    /// One non-blocking receive: the echo's length and [`Tag`].
    fn recv_echo(&mut self) -> io::Result<(usize, Tag)>;
    /// The socket, to wait on.
    fn fd(&self) -> BorrowedFd<'_>;
}

/// A connected client socket (`send`/`recv`).
struct Connected {
    sock: UdpSocket,
    buf: Vec<u8>,
}

impl PingSocket for Connected {
    fn send_ping(&mut self, ping: &[u8]) -> io::Result<()> {
        self.sock.send(ping).map(drop)
    }

    fn recv_echo(&mut self) -> io::Result<(usize, Tag)> {
        let n = self.sock.recv(&mut self.buf)?;
        Ok((n, tag_of(&self.buf[..n])))
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// An [`Unconnected`] client socket and where its pings go.
struct Toward {
    sock: Unconnected,
    dest: SocketAddr,
}

impl PingSocket for Toward {
    fn send_ping(&mut self, ping: &[u8]) -> io::Result<()> {
        self.sock.send(ping, self.dest)
    }

    fn recv_echo(&mut self) -> io::Result<(usize, Tag)> {
        let (n, _) = self.sock.recv()?;
        let (_, data) = self.sock.batch.get(0);
        Ok((n, tag_of(&data[..n.min(data.len())])))
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.sock.sock.as_fd()
    }
}

/// The client side of a UDP ping-pong of `size`-byte pings on `sock`.
///
/// Each ping carries its sequence number in its first bytes (up to 8), so
/// that an echo arriving after its ping was resent (late, not lost) is
/// told apart from the current ping's and skipped. A ping unanswered for
/// `patience.resend` is counted lost and sent again; the round trip that
/// needed it is left out of the samples (the figures stay those of round
/// trips the kernel completed; [`Rtt::lost`] says how many did not).
fn ping_pong(
    sock: &mut impl PingSocket,
    size: usize,
    plan: &Plan,
    polling: Polling,
    patience: Patience,
) -> Result<Rtt> {
    let mut ping = vec![0x5a_u8; size];
    let k = size.min(Tag::default().len());
    let mut idle = Idle::new(polling);
    let (mut seq, mut lost) = (0u64, 0u64);
    let r = time_round_trips(plan, || {
        seq += 1;
        let tag = tag_of(&seq.to_le_bytes()[..k]);
        ping[..k].copy_from_slice(&tag[..k]);
        let mut misses = 0;
        loop {
            match sock.send_ping(&ping) {
                Ok(()) => {}
                // Not sent: as good as lost; the wait below runs out.
                Err(e) if dropped(&e) => {}
                Err(e) => return Err(e).context("udp ping-pong: send"),
            }
            idle.data();
            let t = Instant::now();
            loop {
                match sock.recv_echo() {
                    Ok((n, got)) if n == size && got == tag => return Ok(misses == 0),
                    // The echo of an earlier ping, sent again.
                    Ok((n, _)) if n == size => {}
                    Ok((n, _)) => bail!("udp echo of {n} bytes, sent {size}"),
                    Err(e) if would_block(&e) || e.kind() == io::ErrorKind::Interrupted => {
                        if t.elapsed() >= patience.resend {
                            break;
                        }
                        idle.wait(sock.fd());
                    }
                    Err(e) => return Err(e).context("udp ping-pong: receive"),
                }
            }
            misses += 1;
            lost += 1;
            patience.check(misses, "udp ping-pong")?;
        }
    });
    rtt_of(r, lost)
}

/// Raw UDP ping-pong: the floor for a request/response exchange. The
/// client's socket is connected (`send`/`recv`), the server's is not
/// (`recvfrom`/`sendto`). A lost datagram is resent ([`ping_pong`]).
pub fn udp_rtt(size: usize, plan: &Plan, polling: Polling, cpus: Cpus) -> Result<Rtt> {
    let stop = Arc::new(AtomicBool::new(false));
    let st = Arc::clone(&stop);
    let (addr, h) = spawn_server(cpus.server, move |ready| {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        sock.set_nonblocking(true)?;
        ready.send(sock.local_addr()?)?;
        serve(
            &st,
            polling,
            sock.as_fd(),
            &mut vec![0u8; 1 << 16],
            |b| sock.recv_from(b),
            |b, (n, from)| match sock.send_to(&b[..n], from) {
                // An echo that did not go is a loss the client resends.
                Err(e) if dropped(&e) => Ok(()),
                r => r.map(drop),
            },
        )
    })?;
    pin_current_thread(cpus.client)?;
    let r = connected_ping_pong(addr, size, plan, polling, Patience::PING);
    stop.store(true, Ordering::Relaxed);
    join(h)?;
    r
}

/// [`ping_pong`] from a socket connected to the echo server at `addr`.
fn connected_ping_pong(
    addr: SocketAddr,
    size: usize,
    plan: &Plan,
    polling: Polling,
    patience: Patience,
) -> Result<Rtt> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.connect(addr)?;
    sock.set_nonblocking(true)?;
    let mut c = Connected {
        sock,
        buf: vec![0u8; 1 << 16],
    };
    ping_pong(&mut c, size, plan, polling, patience)
}

/// A UDP socket used the way a multi-peer transport (Homa's runtime) must
/// use one, with the runtime's own system-call helpers (`homa_sys::udp`):
/// never connected, each send a `sendto` naming the destination (the TOS
/// byte set once as a socket option, as the runtime keeps it), each
/// receive the runtime's `recvmsg` asking for the source address and the
/// control messages (TOS byte, GRO segment size; the error queue enabled),
/// into a reused buffer.
struct Unconnected {
    sock: UdpSocket,
    batch: RecvBatch,
}

/// The TOS byte Homa gives a short message's DATA (level 6).
const SHORT_TOS: u8 = 6 << 5;

impl Unconnected {
    fn bind() -> Result<Unconnected> {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        sock.set_nonblocking(true)?;
        let fd = sock.as_fd();
        udp::enable_errors(fd, false)?;
        udp::enable_recv_tos(fd, false)?;
        TosOption::Ipv4.set(fd, SHORT_TOS)?;
        if !udp::enable_gro(fd) {
            bail!("UDP_GRO refused");
        }
        Ok(Unconnected {
            sock,
            batch: RecvBatch::new(1, 1 << 16),
        })
    }

    /// One non-blocking receive, as the runtime's sparse-traffic turn
    /// does it: length and source of the datagram, its bytes in the batch.
    fn recv(&mut self) -> io::Result<(usize, SocketAddr)> {
        if udp::recv_batch(self.sock.as_fd(), &mut self.batch, 1)? == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let (meta, _) = self.batch.get(0);
        std::hint::black_box((meta.tos, meta.segment));
        let src = meta
            .src
            .ok_or_else(|| io::Error::other("datagram from a non-IP source"))?;
        Ok((meta.len, src))
    }

    /// The runtime's send: the destination encoded for the socket, then a
    /// plain `sendto` (no control message is needed).
    fn send(&self, data: &[u8], to: SocketAddr) -> io::Result<()> {
        let dest = Dest::new(to, false).ok_or_else(|| io::Error::other("IPv6 destination"))?;
        udp::send(self.sock.as_fd(), &dest, None, None, data).map(drop)
    }
}

/// A UDP echo server thread with a multi-peer transport's system calls
/// (see [`Unconnected`]), until `stop`.
fn unconnected_echo(
    polling: Polling,
    cpus: Cpus,
    stop: Arc<AtomicBool>,
) -> Result<(SocketAddr, thread::JoinHandle<Result<()>>)> {
    spawn_server(cpus.server, move |ready| {
        let mut sock = Unconnected::bind()?;
        ready.send(sock.sock.local_addr()?)?;
        let mut idle = Idle::new(polling);
        while !stop.load(Ordering::Relaxed) {
            match sock.recv() {
                Ok((n, from)) => {
                    // Echo the bytes from the receive buffer, encoding the
                    // destination per send as the runtime does.
                    let (_, data) = sock.batch.get(0);
                    match sock.send(&data[..n], from) {
                        // An echo that did not go is a loss the client
                        // deals with.
                        Err(e) if dropped(&e) => {}
                        r => r?,
                    }
                    idle.data();
                }
                Err(e) if would_block(&e) => idle.wait(sock.sock.as_fd()),
                // An error about an earlier echo (see `dropped`; this
                // socket reads its error queue, as the runtime's does).
                Err(e) if dropped(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    })
}

/// Raw UDP ping-pong with the system calls of a multi-peer transport on
/// both sides (see [`Unconnected`]): the floor for any transport that
/// serves many peers from one socket and marks packets by priority.
pub fn udp_rtt_unconnected(size: usize, plan: &Plan, polling: Polling, cpus: Cpus) -> Result<Rtt> {
    let stop = Arc::new(AtomicBool::new(false));
    let (addr, h) = unconnected_echo(polling, cpus, Arc::clone(&stop))?;
    pin_current_thread(cpus.client)?;
    let r = Unconnected::bind().and_then(|sock| {
        let mut t = Toward { sock, dest: addr };
        ping_pong(&mut t, size, plan, polling, Patience::PING)
    });
    stop.store(true, Ordering::Relaxed);
    join(h)?;
    r
}

/// Reads exactly `buf.len()` bytes from a non-blocking socket, waiting as
/// `idle` says. `Ok(false)` on a clean end of stream before the first byte.
fn read_full(s: &mut TcpStream, buf: &mut [u8], idle: &mut Idle) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                got += n;
                idle.data();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => idle.wait(s.as_fd()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Writes all of `buf` to a non-blocking socket.
fn write_full(s: &mut TcpStream, buf: &[u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match s.write(&buf[done..]) {
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait::writable(s.as_fd(), Some(Duration::from_millis(50)))?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A length-prefixed message: 4-byte big-endian length, then the bytes.
fn framed(payload_len: usize) -> Vec<u8> {
    let mut v = (payload_len as u32).to_be_bytes().to_vec();
    v.resize(4 + payload_len, 0x5a);
    v
}

/// Reads one framed message into `buf` (grown as needed); `None` at EOF.
fn read_message(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    idle: &mut Idle,
) -> io::Result<Option<usize>> {
    let mut len = [0u8; 4];
    if !read_full(s, &mut len, idle)? {
        return Ok(None);
    }
    let n = u32::from_be_bytes(len) as usize;
    buf.resize(n, 0);
    read_full(s, &mut buf[..n], idle)?;
    Ok(Some(n))
}

fn tcp_pair(polling: Polling, cpus: Cpus) -> Result<(TcpStream, thread::JoinHandle<Result<()>>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (_, h) = spawn_server(cpus.server, move |ready| {
        ready.send(())?;
        let (mut conn, _) = listener.accept()?;
        conn.set_nodelay(true)?;
        conn.set_nonblocking(true)?;
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let mut idle = Idle::new(polling);
        while let Some(n) = read_message(&mut conn, &mut buf, &mut idle)? {
            out.clear();
            out.extend_from_slice(&(n as u32).to_be_bytes());
            out.extend_from_slice(&buf[..n]);
            write_full(&mut conn, &out)?;
        }
        Ok(())
    })?;
    let conn = TcpStream::connect(addr)?;
    conn.set_nodelay(true)?;
    conn.set_nonblocking(true)?;
    Ok((conn, h))
}

/// TCP round trips: one connection, `TCP_NODELAY`, length-prefixed echo.
pub fn tcp_rtt(size: usize, plan: &Plan, polling: Polling, cpus: Cpus) -> Result<Rtt> {
    let (mut conn, h) = tcp_pair(polling, cpus)?;
    pin_current_thread(cpus.client)?;
    let msg = framed(size);
    let mut buf = Vec::new();
    let mut idle = Idle::new(polling);
    let r = time_round_trips(plan, || {
        write_full(&mut conn, &msg)?;
        idle.data();
        match read_message(&mut conn, &mut buf, &mut idle)? {
            Some(n) if n == size => Ok(true),
            other => bail!("tcp echo: {other:?}"),
        }
    });
    drop(conn);
    join(h)?;
    rtt_of(r, 0)
}

/// A Homa echo server thread; returns its address and a handle to close it.
fn homa_server(
    cpus: Cpus,
    polling: Polling,
    homa: HomaKnobs,
    response: Option<Bytes>,
    received: Arc<AtomicU64>,
) -> Result<(Socket, thread::JoinHandle<Result<()>>)> {
    let (sock, h) = spawn_server(cpus.server, move |ready| {
        let sock = Socket::bind_with("127.0.0.1:0", homa_config_with(polling, true, homa))?;
        ready.send(sock.clone())?;
        loop {
            // The request as received: a bulk request is a chain of the
            // receive buffers it arrived in, counted without a copy (TCP's
            // receiver reads each byte once, into its buffer, too).
            match sock.recv_request_message() {
                Ok(r) => {
                    received.fetch_add(r.message.len() as u64, Ordering::Relaxed);
                    let body = match &response {
                        Some(b) => b.clone(),
                        None => r.message.into_bytes(),
                    };
                    match sock.reply(r.peer, r.id, body) {
                        // Closed between the request and the reply: done.
                        Ok(()) | Err(HomaError::Closed) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(HomaError::Closed) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    })?;
    Ok((sock, h))
}

/// A Homa server thread ([`homa_server`]) and, on this thread pinned to
/// the client CPU, a client socket: `(server, handle, dest, client)`.
fn homa_pair(
    cpus: Cpus,
    polling: Polling,
    homa: HomaKnobs,
    response: Option<Bytes>,
    received: Arc<AtomicU64>,
) -> Result<(Socket, thread::JoinHandle<Result<()>>, SocketAddr, Socket)> {
    let (server, h) = homa_server(cpus, polling, homa, response, received)?;
    let dest = server.local_addr();
    pin_current_thread(cpus.client)?;
    let client = Socket::bind_with("127.0.0.1:0", homa_config_with(polling, false, homa))?;
    Ok((server, h, dest, client))
}

/// Homa round trips: one outstanding call at a time.
pub fn homa_rtt(
    size: usize,
    plan: &Plan,
    polling: Polling,
    cpus: Cpus,
    homa: HomaKnobs,
) -> Result<Rtt> {
    let (server, h, dest, client) = homa_pair(cpus, polling, homa, None, Arc::default())?;
    let msg = Bytes::from(vec![0x5a_u8; size]);
    let r = time_round_trips(plan, || {
        let resp = client.call_timeout(dest, msg.clone(), STUCK)?;
        if resp.len() != size {
            bail!("homa echo of {} bytes, sent {size}", resp.len());
        }
        Ok(true)
    });
    server.close();
    join(h)?;
    rtt_of(r, 0)
}

// ----- small-RPC rate ----------------------------------------------------
//
// One client thread keeps `outstanding` requests in flight against one
// server thread, for every transport: each completed response is replaced
// by a new request at once (closed loop). The count is of responses
// received in the window.

/// UDP with the runtime's system calls (see [`Unconnected`]): the client
/// keeps `outstanding` datagrams in flight and sends one more per echo.
/// A datagram lost on loopback (receive buffer full) would shrink the
/// window for good, so each datagram carries its sequence number (its
/// first bytes, up to 8) and the client keeps the window full: the single
/// echo thread answers in order, so an echo that skips sequence numbers
/// means those datagrams were lost (counted in [`Throughput::lost`] and
/// replaced), and after [`Patience::RATE`]'s 50 ms without any echo every
/// datagram in flight is taken for lost. An echo of one written off
/// (late, not lost) still counts as a response.
pub fn udp_rate(
    size: usize,
    outstanding: usize,
    plan: &Plan,
    polling: Polling,
    cpus: Cpus,
) -> Result<Throughput> {
    let stop = Arc::new(AtomicBool::new(false));
    let (addr, h) = unconnected_echo(polling, cpus, Arc::clone(&stop))?;
    pin_current_thread(cpus.client)?;
    let r = udp_rate_against(addr, size, outstanding, plan, polling, Patience::RATE);
    stop.store(true, Ordering::Relaxed);
    join(h)?;
    r
}

/// The client side of [`udp_rate`] against the echo server at `addr`.
fn udp_rate_against(
    addr: SocketAddr,
    size: usize,
    outstanding: usize,
    plan: &Plan,
    polling: Polling,
    patience: Patience,
) -> Result<Throughput> {
    let mut sock = Unconnected::bind()?;
    let mut msg = vec![0x5a_u8; size];
    // Sequence numbers travel as their low `k` bytes (none in an empty
    // datagram: then only silence reveals a loss).
    let k = size.min(Tag::default().len());
    let mask = u64::MAX.checked_shr(64 - 8 * k as u32).unwrap_or(0);
    let mut idle = Idle::new(polling);
    // In flight: sequence numbers `oldest..next`.
    let (mut oldest, mut next) = (0u64, 0u64);
    let (mut lost, mut misses) = (0u64, 0);
    let mut r = count_ops(plan, || {
        while next - oldest < outstanding.max(1) as u64 {
            msg[..k].copy_from_slice(&next.to_le_bytes()[..k]);
            match sock.send(&msg, addr) {
                // Not sent: as good as lost; the next echo skips it.
                Ok(()) => {}
                Err(e) if dropped(&e) => {}
                Err(e) => return Err(e).context("udp rate: send"),
            }
            next += 1;
        }
        idle.data();
        let t = Instant::now();
        loop {
            match sock.recv() {
                Ok((n, _)) if n == size => {
                    let (_, data) = sock.batch.get(0);
                    let seq = u64::from_le_bytes(tag_of(&data[..n.min(data.len())]));
                    let skipped = seq.wrapping_sub(oldest) & mask;
                    if skipped < next - oldest {
                        lost += skipped;
                        oldest += skipped + 1;
                    }
                    misses = 0;
                    return Ok(1);
                }
                Ok((n, _)) => bail!("udp echo of {n} bytes, sent {size}"),
                Err(e) if would_block(&e) || e.kind() == io::ErrorKind::Interrupted => {
                    if t.elapsed() > patience.resend {
                        lost += next - oldest;
                        oldest = next;
                        misses += 1;
                        patience.check(misses, "udp rate")?;
                        return Ok(0);
                    }
                    idle.wait(sock.sock.as_fd());
                }
                Err(e) => return Err(e).context("udp rate: receive"),
            }
        }
    });
    if let Ok(t) = &mut r {
        t.lost = lost;
    }
    r
}

/// TCP: one connection, `TCP_NODELAY`, `outstanding` length-prefixed
/// requests pipelined on it (the server answers in order); one more
/// request per response.
pub fn tcp_rate(
    size: usize,
    outstanding: usize,
    plan: &Plan,
    polling: Polling,
    cpus: Cpus,
) -> Result<Throughput> {
    let (mut conn, h) = tcp_pair(polling, cpus)?;
    pin_current_thread(cpus.client)?;
    let msg = framed(size);
    let mut buf = Vec::new();
    let mut idle = Idle::new(polling);
    let mut in_flight = 0;
    let r = count_ops(plan, || {
        while in_flight < outstanding.max(1) {
            write_full(&mut conn, &msg)?;
            in_flight += 1;
        }
        idle.data();
        match read_message(&mut conn, &mut buf, &mut idle)? {
            Some(n) if n == size => {
                in_flight -= 1;
                Ok(1)
            }
            other => bail!("tcp echo: {other:?}"),
        }
    });
    // Take the responses still in flight, so that the server never writes
    // to a closed connection.
    while r.is_ok() && in_flight > 0 {
        read_message(&mut conn, &mut buf, &mut idle)?;
        in_flight -= 1;
    }
    drop(conn);
    join(h)?;
    r
}

/// Homa: `outstanding` calls in flight on one client socket, the oldest
/// waited for and replaced.
pub fn homa_rate(
    size: usize,
    outstanding: usize,
    plan: &Plan,
    polling: Polling,
    cpus: Cpus,
    homa: HomaKnobs,
) -> Result<Throughput> {
    let (server, h, dest, client) = homa_pair(cpus, polling, homa, None, Arc::default())?;
    let msg = Bytes::from(vec![0x5a_u8; size]);
    let mut calls = std::collections::VecDeque::new();
    let r = count_ops(plan, || {
        while calls.len() < outstanding.max(1) {
            calls.push_back(client.start_call_timeout(dest, msg.clone(), STUCK)?);
        }
        let call = calls.pop_front().expect("at least one call");
        let resp = call.wait()?;
        if resp.len() != size {
            bail!("homa echo of {} bytes, sent {size}", resp.len());
        }
        Ok(1)
    });
    drop(calls);
    server.close();
    join(h)?;
    r
}

// ----- one-way bulk ----------------------------------------------------

/// Runs `send` (which must keep sending until told to stop) while a
/// receiver counts bytes into `counter`; returns the bytes the receiver
/// counted over the measurement window, and the window's CPU time.
fn rate_of(
    plan: &Plan,
    counter: &AtomicU64,
    stop: &AtomicBool,
    mut step: impl FnMut() -> Result<()>,
) -> Result<Throughput> {
    let start = Instant::now();
    while start.elapsed() < plan.warmup {
        step()?;
    }
    let window = Window::open()?;
    let b0 = counter.load(Ordering::Relaxed);
    let t0 = Instant::now();
    while t0.elapsed() < plan.measure {
        step()?;
    }
    let b1 = counter.load(Ordering::Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    let cpu = window.close()?;
    stop.store(true, Ordering::Relaxed);
    Ok(Throughput {
        ops: b1 - b0,
        secs,
        cpu,
        lost: 0,
    })
}

/// The MTU Homa's sockets choose on 127.0.0.1 with these knobs (a socket
/// is opened to ask).
pub fn homa_mtu(k: HomaKnobs) -> Result<u32> {
    let sock = Socket::bind_with("127.0.0.1:0", homa_config_with(Polling::Block, false, k))?;
    let mtu = sock.offloads().mtu;
    sock.close();
    Ok(mtu)
}

/// Bytes of UDP payload of a Homa DATA packet at `mtu` over IPv4: the
/// UDP floor's datagram size.
pub fn udp_segment_for(mtu: u32) -> usize {
    use homa_proto::config::{IPV4_HEADER_LEN, UDP_HEADER_LEN};
    (mtu - IPV4_HEADER_LEN - UDP_HEADER_LEN) as usize
}

/// Most bytes of one GSO send (one UDP datagram's worth).
const MAX_GSO_SEND: usize = 65_507;

/// The UDP bulk floor: a sender blasting GSO batches of `segment`-byte
/// datagrams (Homa's DATA packet size in the same run) at a GRO receiver
/// that only counts bytes; each send as many whole datagrams as fit in
/// 64 kB, at most 44. No reliability, no flow control: what arrives is the
/// ceiling for any protocol over UDP sockets here. Datagrams the receiver
/// had no room for are simply not counted (no loss can stop or hang the
/// blast: a send that fails or blocks for long is skipped, and the window
/// ends on time).
pub fn udp_bulk(segment: usize, plan: &Plan, polling: Polling, cpus: Cpus) -> Result<Throughput> {
    let segment = segment.clamp(1, MAX_GSO_SEND);
    let per_send = (MAX_GSO_SEND / segment).clamp(1, 44);
    let counter = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (c, st) = (Arc::clone(&counter), Arc::clone(&stop));
    let (addr, h) = spawn_server(cpus.server, move |ready| {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        // (16 MB of buffer as the kernel counts it: it doubles the request.)
        udp::set_buffer(sock.as_fd(), Buffer::Receive, 16 << 20)?;
        if !udp::enable_gro(sock.as_fd()) {
            bail!("UDP_GRO refused");
        }
        sock.set_nonblocking(true)?;
        ready.send(sock.local_addr()?)?;
        serve(
            &st,
            polling,
            sock.as_fd(),
            &mut vec![0u8; 1 << 16],
            |b| sock.recv(b),
            |_, n| {
                c.fetch_add(n as u64, Ordering::Relaxed);
                Ok(())
            },
        )
    })?;
    pin_current_thread(cpus.client)?;
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.connect(addr)?;
    udp::set_buffer(sock.as_fd(), Buffer::Send, 8 << 20)?;
    // A send blocked on a full send buffer must not outlast the window.
    sock.set_write_timeout(Some(Duration::from_millis(50)))?;
    if per_send > 1 {
        udp::set_gso_segment(sock.as_fd(), segment as u16).context("UDP_SEGMENT")?;
    }
    let batch = vec![0x5a_u8; segment * per_send];
    let r = rate_of(plan, &counter, &stop, || {
        match sock.send(&batch) {
            Ok(_) => Ok(()),
            // The receiver fell behind and ICMP or buffer errors surfaced,
            // or the send buffer stayed full: this batch is lost.
            Err(e) if dropped(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    });
    stop.store(true, Ordering::Relaxed);
    join(h)?;
    r
}

/// TCP bulk: one connection carrying `size`-byte length-prefixed messages
/// back to back; the receiver reads each whole message.
pub fn tcp_bulk(size: usize, plan: &Plan, polling: Polling, cpus: Cpus) -> Result<Throughput> {
    let counter = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr: SocketAddr = listener.local_addr()?;
    let c = Arc::clone(&counter);
    let (_, h) = spawn_server(cpus.server, move |ready| {
        ready.send(())?;
        let (mut conn, _) = listener.accept()?;
        conn.set_nonblocking(true)?;
        let mut buf = Vec::new();
        let mut idle = Idle::new(polling);
        while let Some(n) = read_message(&mut conn, &mut buf, &mut idle)? {
            c.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(())
    })?;
    pin_current_thread(cpus.client)?;
    let mut conn = TcpStream::connect(addr)?;
    conn.set_nodelay(true)?;
    let msg = framed(size);
    let r = rate_of(plan, &counter, &stop, || Ok(conn.write_all(&msg)?));
    drop(conn);
    join(h)?;
    r
}

/// Homa bulk: `size`-byte requests answered with one byte, `outstanding`
/// calls in flight on one socket; the server counts request bytes.
pub fn homa_bulk(
    size: usize,
    outstanding: usize,
    plan: &Plan,
    polling: Polling,
    cpus: Cpus,
    homa: HomaKnobs,
) -> Result<Throughput> {
    let counter = Arc::new(AtomicU64::new(0));
    let stop = AtomicBool::new(false);
    let (server, h, dest, client) = homa_pair(
        cpus,
        polling,
        homa,
        Some(Bytes::from_static(b"k")),
        Arc::clone(&counter),
    )?;
    let msg = Bytes::from(vec![0x5a_u8; size]);
    let mut calls = std::collections::VecDeque::new();
    let r = rate_of(plan, &counter, &stop, || {
        while calls.len() < outstanding.max(1) {
            calls.push_back(client.start_call_timeout(dest, msg.clone(), STUCK * 5)?);
        }
        let call = calls.pop_front().expect("at least one call");
        call.wait()?;
        Ok(())
    });
    drop(calls);
    server.close();
    join(h)?;
    r
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    /// The unconnected echo server (its socket reads its error queue, as
    /// the runtime's does) survives an echo to a client that had closed:
    /// the ICMP error comes back on its next receive. (The README's `homa
    /// compare` failed with "Connection refused" so, at 5 repetitions.)
    #[test]
    fn unconnected_echo__survives_a_client_that_closed() {
        let stop = Arc::new(AtomicBool::new(false));
        let cpus = Cpus {
            client: 0,
            server: 0,
        };
        let (addr, h) = unconnected_echo(Polling::Block, cpus, Arc::clone(&stop)).unwrap();
        for _ in 0..20 {
            // A client that sends and leaves before its echo comes back.
            let gone = UdpSocket::bind("127.0.0.1:0").unwrap();
            gone.send_to(b"ping", addr).unwrap();
            drop(gone);
        }
        std::thread::sleep(Duration::from_millis(50));
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        c.send_to(b"still there?", addr).unwrap();
        let mut buf = [0u8; 64];
        let n = c
            .recv(&mut buf)
            .expect("an echo from a server that is still up");
        assert_eq!(&buf[..n], b"still there?");
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap().unwrap();
    }

    /// An echo server whose socket reports an ICMP error about an earlier
    /// echo (its client closed with echoes in flight) goes on serving: the
    /// README's `homa compare` once ended with "Connection refused" so.
    #[test]
    fn serve__goes_on_after_an_error_about_an_earlier_datagram() {
        let stop = AtomicBool::new(false);
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut calls = 0;
        let mut echoed = 0;
        let r = serve(
            &stop,
            Polling::Busy,
            sock.as_fd(),
            &mut [0u8; 16],
            |_| {
                calls += 1;
                match calls {
                    1 => Err(io::Error::from_raw_os_error(libc::ECONNREFUSED)),
                    2 => Err(io::Error::from_raw_os_error(libc::EHOSTUNREACH)),
                    _ => Ok(calls),
                }
            },
            |_, n| {
                echoed += 1;
                if n >= 4 {
                    stop.store(true, Ordering::Relaxed);
                }
                Ok(())
            },
        );
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(echoed, 2);
    }

    /// A UDP echo thread that drops the first `drop_first` datagrams it
    /// receives, then echoes (all of them with `drop_first` `usize::MAX`),
    /// until `stop`; it returns how many it dropped.
    fn lossy_echo(
        drop_first: usize,
        stop: Arc<AtomicBool>,
    ) -> (SocketAddr, thread::JoinHandle<usize>) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let h = thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            let mut dropped = 0;
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if dropped < drop_first {
                    dropped += 1;
                } else {
                    sock.send_to(&buf[..n], from).unwrap();
                }
            }
            dropped
        });
        (addr, h)
    }

    /// The losses fall in the warm-up (each costs up to 70 ms: 20 ms of
    /// patience, a 50 ms sleep), then round trips are measured.
    const PLAN: Plan = Plan {
        warmup: Duration::from_millis(400),
        measure: Duration::from_millis(50),
    };

    /// Long enough for any patience to run out first.
    const LONG: Plan = Plan {
        warmup: Duration::ZERO,
        measure: Duration::from_secs(10),
    };

    const QUICK: Patience = Patience {
        resend: Duration::from_millis(20),
        give_up: 10,
    };

    #[test]
    fn ping_pong__resends_lost_pings_and_counts_them() {
        for size in [100, 3, 0] {
            let stop = Arc::new(AtomicBool::new(false));
            let (addr, h) = lossy_echo(3, Arc::clone(&stop));
            let r = connected_ping_pong(addr, size, &PLAN, Polling::Block, QUICK);
            stop.store(true, Ordering::Relaxed);
            assert_eq!(h.join().unwrap(), 3);
            let r = r.unwrap_or_else(|e| panic!("{size} B: {e:#}"));
            // (More if the echo thread was descheduled for 20 ms.)
            assert!(r.lost >= 3, "{size} B: {} lost", r.lost);
            assert!(r.latency.count > 0, "{size} B: no round trip measured");
        }
    }

    #[test]
    fn ping_pong__unconnected_resends_lost_pings_too() {
        let stop = Arc::new(AtomicBool::new(false));
        let (addr, h) = lossy_echo(2, Arc::clone(&stop));
        let mut t = Toward {
            sock: Unconnected::bind().unwrap(),
            dest: addr,
        };
        let r = ping_pong(&mut t, 100, &PLAN, Polling::Adaptive, QUICK);
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
        let r = r.unwrap();
        assert!(r.lost >= 2, "{} lost", r.lost);
        assert!(r.latency.count > 0);
    }

    #[test]
    fn ping_pong__gives_up_on_a_silent_peer_with_a_clear_message() {
        let stop = Arc::new(AtomicBool::new(false));
        let (addr, h) = lossy_echo(usize::MAX, Arc::clone(&stop));
        let t0 = Instant::now();
        let r = connected_ping_pong(addr, 100, &LONG, Polling::Block, QUICK);
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
        let e = format!("{:#}", r.unwrap_err());
        assert!(
            e.contains("udp ping-pong: no echo after 10 sends in a row"),
            "{e}"
        );
        assert!(t0.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn udp_rate__replaces_lost_datagrams_and_counts_them() {
        // The first 6 of 4 outstanding: a whole window lost (written off
        // after the silence), then 2 of the refill (skipped by the echoes
        // that follow them).
        let stop = Arc::new(AtomicBool::new(false));
        let (addr, h) = lossy_echo(6, Arc::clone(&stop));
        let r = udp_rate_against(addr, 100, 4, &PLAN, Polling::Block, QUICK);
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
        let r = r.unwrap();
        assert!(r.lost >= 6, "{} lost", r.lost);
        assert!(r.ops > 100, "the window stayed open: {} echoes", r.ops);
        // A silent peer: a clear failure, not a hang.
        let stop = Arc::new(AtomicBool::new(false));
        let (addr, h) = lossy_echo(usize::MAX, Arc::clone(&stop));
        let r = udp_rate_against(addr, 100, 4, &LONG, Polling::Block, QUICK);
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
        let e = format!("{:#}", r.unwrap_err());
        assert!(e.contains("udp rate: no echo after 10 sends"), "{e}");
    }

    #[test]
    fn udp_segment_is_the_payload_of_a_homa_data_packet() {
        // A DATA packet's UDP payload: its 56-byte header and the message
        // bytes `max_seg_data` gives it.
        for mtu in [1500, 9000, homa_proto::config::MAX_MTU] {
            let c = homa_proto::Config {
                mtu,
                ..Default::default()
            };
            assert_eq!(udp_segment_for(mtu) as u32, c.max_seg_data(false) + 56);
        }
        assert_eq!(udp_segment_for(homa_proto::config::MAX_MTU), 65_507);
    }
}
