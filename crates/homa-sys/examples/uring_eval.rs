//! Evaluates io_uring against the system calls the datapath uses today
//! (issue 14 item 4), on loopback, without Homa on top: what the kernel
//! interface alone costs or saves.
//!
//! `uring_eval rtt [round_trips] [reps]`: 100-byte UDP ping-pong, client
//! pinned to CPU 0 and server to CPU 1, four ways per side:
//! * `busy`: `recvmsg` polled without blocking, `sendto` (homa-sys's
//!   `recv_batch` and `send`, the datapath's busy-polling path);
//! * `block`: a blocking `recvfrom` and `sendto`;
//! * `uring-wait`: a receive kept posted in a ring; the send and the wait
//!   for the next receive go in one `io_uring_enter`;
//! * `uring-spin`: the send submitted with one `io_uring_enter`, then the
//!   completion queue polled in user space (no system call to receive).
//!
//! `uring_eval bulk [megabytes] [reps]`: a sender (CPU 0) blasts 64 KB GSO
//! batches of 1400-byte datagrams, at most 4 MB ahead of the receiver
//! (no loss); the receiver (CPU 1, GRO on) takes them
//! with `recvmmsg` (`recv_batch`, 8 x 64 KB) or with a multishot io_uring
//! receive into provided buffers; and the sender with `MSG_ZEROCOPY`.
//! Throughput and CPU per GB on each side.
//!
//! Prints medians over `reps` interleaved repetitions; the figures and
//! what was concluded are in `docs/performance.md`.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use homa_sys::process::{pin_current_thread, thread_cpu_time};
use homa_sys::udp::{self, Dest, RecvBatch};
use io_uring::{cqueue, opcode, types, IoUring};

const RTT_SIZE: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    Busy,
    Block,
    UringWait,
    UringSpin,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Busy => "busy",
            Way::Block => "block",
            Way::UringWait => "uring-wait",
            Way::UringSpin => "uring-spin",
        }
    }
}

/// One side's figures for a run.
#[derive(Clone, Copy, Debug, Default)]
struct Side {
    /// CPU (user + system) per round trip, ns.
    cpu_ns: f64,
    /// System calls per round trip.
    syscalls: f64,
}

/// A socket on loopback, port chosen by the kernel.
fn socket() -> io::Result<UdpSocket> {
    udp::bind("127.0.0.1:0".parse().expect("literal address"), false)
}

/// `sockaddr` pointer and length of `dest` for io_uring's send.
fn raw_dest(dest: &Dest) -> (*const libc::sockaddr, libc::socklen_t) {
    use nix::sys::socket::SockaddrLike;
    match dest {
        Dest::V4(a) => (a.as_ptr().cast(), a.len()),
        Dest::V6(a) => (a.as_ptr().cast(), a.len()),
    }
}

/// Counts of one side's loop.
struct Count {
    syscalls: u64,
}

/// Sends one datagram and takes one, `n` times, the way `way` says. The
/// client sends first; the server answers.
fn ping_pong(
    way: Way,
    sock: &UdpSocket,
    peer: SocketAddr,
    n: usize,
    client: bool,
    rtts: &mut Vec<u32>,
) -> io::Result<Count> {
    let dest = Dest::new(peer, false).expect("IPv4 peer");
    let payload = [7u8; RTT_SIZE];
    let mut syscalls = 0u64;
    match way {
        Way::Busy | Way::Block => {
            sock.set_nonblocking(way == Way::Busy)?;
            let mut batch = RecvBatch::new(1, 2048);
            for _ in 0..n {
                let start = Instant::now();
                if client {
                    udp::send(sock.as_fd(), &dest, None, None, &payload)?;
                    syscalls += 1;
                }
                let mut buf = [0u8; 2048];
                loop {
                    syscalls += 1;
                    if way == Way::Block {
                        // recv_batch never blocks (MSG_DONTWAIT): a plain
                        // blocking recvfrom.
                        sock.recv_from(&mut buf)?;
                        break;
                    }
                    match udp::recv_batch(sock.as_fd(), &mut batch, 1) {
                        Ok(1) => break,
                        Ok(_) => continue,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                }
                if client {
                    rtts.push(start.elapsed().as_nanos() as u32);
                } else {
                    udp::send(sock.as_fd(), &dest, None, None, &payload)?;
                    syscalls += 1;
                }
            }
        }
        Way::UringWait | Way::UringSpin => {
            sock.set_nonblocking(true)?;
            let mut ring = IoUring::new(64)?;
            let fd = types::Fd(sock.as_raw_fd());
            let mut rbuf = vec![0u8; 2048];
            let (addr, addr_len) = raw_dest(&dest);
            const RECV: u64 = 1;
            const SEND: u64 = 2;
            let recv = opcode::Recv::new(fd, rbuf.as_mut_ptr(), rbuf.len() as u32)
                .build()
                .user_data(RECV);
            let send = opcode::Send::new(fd, payload.as_ptr(), RTT_SIZE as u32)
                .dest_addr(addr)
                .dest_addr_len(addr_len)
                .build()
                .user_data(SEND);
            // SAFETY (every push below): the buffers and the address
            // outlive the ring, and nothing is left posted when it closes:
            // each receive is posted just before it is awaited and
            // awaited to completion, and the last send is reaped.
            let mut sends = 0u64;
            let mut posted = false;
            for i in 0..n {
                let start = Instant::now();
                if client {
                    unsafe { ring.submission().push(&send).expect("ring has room") };
                    sends += 1;
                }
                if !posted {
                    unsafe { ring.submission().push(&recv).expect("ring has room") };
                }
                let mut got = false;
                while !got {
                    if way == Way::UringWait {
                        // One enter: submit, and wait for the receive and
                        // every send not yet reaped.
                        syscalls += 1;
                        ring.submit_and_wait(1 + sends as usize)?;
                    } else if !ring.submission().is_empty() {
                        syscalls += 1;
                        ring.submit()?;
                    }
                    for cqe in ring.completion() {
                        if cqe.result() < 0 {
                            return Err(io::Error::from_raw_os_error(-cqe.result()));
                        }
                        match cqe.user_data() {
                            RECV => got = true,
                            _ => sends -= 1,
                        }
                    }
                }
                posted = false;
                if client {
                    rtts.push(start.elapsed().as_nanos() as u32);
                } else {
                    // The answer and the next receive go in one enter: the
                    // next wait's, or now when spinning.
                    unsafe { ring.submission().push(&send).expect("ring has room") };
                    sends += 1;
                    if i + 1 < n {
                        unsafe { ring.submission().push(&recv).expect("ring has room") };
                        posted = true;
                    }
                    if way == Way::UringSpin {
                        syscalls += 1;
                        ring.submit()?;
                    }
                }
            }
            while sends > 0 {
                syscalls += 1;
                ring.submit_and_wait(1)?;
                for cqe in ring.completion() {
                    if cqe.user_data() == SEND {
                        sends -= 1;
                    }
                }
            }
            drop(ring);
            drop(rbuf);
        }
    }
    Ok(Count { syscalls })
}

/// One ping-pong run: P50 ns, P99 ns, client, server.
type RttRun = (u32, u32, Side, Side);

/// One run of `n` round trips.
fn rtt_run(way: Way, n: usize) -> io::Result<RttRun> {
    let a = socket()?;
    let b = socket()?;
    let (aa, ba) = (a.local_addr()?, b.local_addr()?);
    let warm = n / 10;
    let server = std::thread::spawn(move || -> io::Result<Side> {
        let _ = pin_current_thread(1);
        let mut none = Vec::new();
        ping_pong(way, &b, aa, warm, false, &mut none)?;
        let t0 = thread_cpu_time()?;
        let c = ping_pong(way, &b, aa, n, false, &mut none)?;
        let cpu = thread_cpu_time()?.since(t0);
        Ok(Side {
            cpu_ns: cpu.nanos_per(n as u64),
            syscalls: c.syscalls as f64 / n as f64,
        })
    });
    let _ = pin_current_thread(0);
    let mut rtts = Vec::with_capacity(n);
    ping_pong(way, &a, ba, warm, true, &mut rtts)?;
    rtts.clear();
    let t0 = thread_cpu_time()?;
    let c = ping_pong(way, &a, ba, n, true, &mut rtts)?;
    let cpu = thread_cpu_time()?.since(t0);
    let srv = server.join().expect("server thread")?;
    rtts.sort_unstable();
    let p = |q: f64| rtts[((rtts.len() as f64 * q) as usize).min(rtts.len() - 1)];
    let cli = Side {
        cpu_ns: cpu.nanos_per(n as u64),
        syscalls: c.syscalls as f64 / n as f64,
    };
    Ok((p(0.5), p(0.99), cli, srv))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn rtt(n: usize, reps: usize) -> io::Result<()> {
    let ways = [Way::Busy, Way::UringSpin, Way::Block, Way::UringWait];
    let mut runs: Vec<Vec<RttRun>> = vec![Vec::new(); ways.len()];
    for _ in 0..reps {
        for (i, &w) in ways.iter().enumerate() {
            runs[i].push(rtt_run(w, n)?);
        }
    }
    println!(
        "{:<11} {:>8} {:>8} {:>13} {:>13} {:>12} {:>12}",
        "way", "P50 us", "P99 us", "cli CPU ns", "srv CPU ns", "cli calls", "srv calls"
    );
    for (i, w) in ways.iter().enumerate() {
        let r = &runs[i];
        let m = |f: &dyn Fn(&RttRun) -> f64| median(r.iter().map(f).collect());
        println!(
            "{:<11} {:>8.2} {:>8.2} {:>13.0} {:>13.0} {:>12.2} {:>12.2}",
            w.name(),
            m(&|x| x.0 as f64 / 1e3),
            m(&|x| x.1 as f64 / 1e3),
            m(&|x| x.2.cpu_ns),
            m(&|x| x.3.cpu_ns),
            m(&|x| x.2.syscalls),
            m(&|x| x.3.syscalls),
        );
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rx {
    Recvmmsg,
    UringMulti,
}

/// How the bulk sender sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tx {
    /// `sendmsg` with a `UDP_SEGMENT` control message (the datapath's).
    Copy,
    /// `sendto(MSG_ZEROCOPY)` with the socket's `UDP_SEGMENT`, completions
    /// drained from the error queue. (Raw libc calls: evaluation only.)
    ZeroCopy,
}

/// `sock_extended_err` origin of a zero-copy completion (linux/errqueue.h).
const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;
/// Its code when the kernel copied the data after all.
const SO_EE_CODE_ZEROCOPY_COPIED: u8 = 1;

/// Drains `MSG_ZEROCOPY` completions; returns (notifications, of which the
/// kernel reported it copied anyway).
fn drain_zerocopy(fd: i32) -> (u64, u64) {
    let (mut n, mut copied) = (0, 0);
    loop {
        let mut control = [0u64; 16];
        // SAFETY: a zeroed msghdr with only a control buffer we own.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: fd is open; msg points at live buffers.
        let r = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
        if r < 0 {
            return (n, copied);
        }
        // SAFETY: walking the control buffer the kernel filled.
        let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !c.is_null() {
            // SAFETY: as above; IP_RECVERR carries a sock_extended_err.
            unsafe {
                if (*c).cmsg_level == libc::SOL_IP && (*c).cmsg_type == libc::IP_RECVERR {
                    let e = libc::CMSG_DATA(c) as *const libc::sock_extended_err;
                    if (*e).ee_origin == SO_EE_ORIGIN_ZEROCOPY {
                        // ee_info..ee_data: the range of sends completed.
                        let k = u64::from((*e).ee_data.wrapping_sub((*e).ee_info)) + 1;
                        n += k;
                        if (*e).ee_code & SO_EE_CODE_ZEROCOPY_COPIED != 0 {
                            copied += k;
                        }
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
    }
}

/// One bulk run's figures.
#[derive(Clone, Copy, Debug, Default)]
struct Bulk {
    gbps: f64,
    rx_cpu_ms_per_gb: f64,
    tx_cpu_ms_per_gb: f64,
    received: u64,
    rx_calls_per_mb: f64,
    /// Zero-copy sends the kernel said it copied anyway, of those reported.
    zc_copied: (u64, u64),
}

/// One bulk run.
fn bulk_run(rx: Rx, txw: Tx, megabytes: usize) -> io::Result<Bulk> {
    const SEG: usize = 1400;
    const BATCH: usize = 46 * SEG;
    let tx = socket()?;
    let rxs = socket()?;
    udp::set_buffer(rxs.as_fd(), udp::Buffer::Receive, 32 << 20)?;
    udp::set_buffer(tx.as_fd(), udp::Buffer::Send, 4 << 20)?;
    if !udp::enable_gro(rxs.as_fd()) {
        return Err(io::Error::other("UDP_GRO refused"));
    }
    let to = rxs.local_addr()?;
    let total = (megabytes as u64) << 20;
    // The sender keeps at most WINDOW bytes ahead of what the receiver
    // has taken, so the socket buffer never overflows: a loss would end
    // the run in a quiet wait that is not receive work.
    const WINDOW: u64 = 4 << 20;
    let taken = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let taken_tx = taken.clone();
    // The sender sleeps while the window is full (so its CPU time is send
    // work only); the receiver wakes it.
    let parked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let parked_tx = parked.clone();
    let sender = std::thread::spawn(move || -> io::Result<(Duration, (u64, u64))> {
        let _ = pin_current_thread(0);
        let dest = Dest::new(to, false).expect("IPv4");
        let data = vec![1u8; BATCH];
        let fd = tx.as_raw_fd();
        if txw == Tx::ZeroCopy {
            let one: libc::c_int = 1;
            // SAFETY: setsockopt with an int option on an open socket.
            let r = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_ZEROCOPY,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as _,
                )
            };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
            udp::set_gso_segment(tx.as_fd(), SEG as u16)?;
        }
        let (addr, addr_len) = raw_dest(&dest);
        let mut sent = 0u64;
        let mut sends = 0u64;
        let mut zc = (0, 0);
        let t0 = thread_cpu_time()?;
        while sent < total {
            use std::sync::atomic::Ordering::SeqCst;
            while sent >= taken_tx.load(SeqCst) + WINDOW {
                parked_tx.store(true, SeqCst);
                if sent >= taken_tx.load(SeqCst) + WINDOW {
                    std::thread::park_timeout(Duration::from_millis(1));
                }
            }
            let r = match txw {
                Tx::Copy => udp::send(tx.as_fd(), &dest, None, Some(SEG as u16), &data),
                Tx::ZeroCopy => {
                    // SAFETY: `data` outlives every send: it is never
                    // written and lives until the thread ends, after the
                    // completions are drained.
                    let r = unsafe {
                        libc::sendto(
                            fd,
                            data.as_ptr().cast(),
                            data.len(),
                            libc::MSG_ZEROCOPY,
                            addr,
                            addr_len,
                        )
                    };
                    if r < 0 {
                        Err(io::Error::last_os_error())
                    } else {
                        Ok(r as usize)
                    }
                }
            };
            match r {
                Ok(n) => {
                    sent += n as u64;
                    sends += 1;
                    if txw == Tx::ZeroCopy && sends % 8 == 0 {
                        let (n, c) = drain_zerocopy(fd);
                        zc = (zc.0 + c, zc.1 + n);
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    if txw == Tx::ZeroCopy {
                        let (n, c) = drain_zerocopy(fd);
                        zc = (zc.0 + c, zc.1 + n);
                    }
                    std::thread::yield_now()
                }
                Err(e) => return Err(e),
            }
        }
        let cpu = thread_cpu_time()?.since(t0).total();
        if txw == Tx::ZeroCopy {
            let (n, c) = drain_zerocopy(fd);
            zc = (zc.0 + c, zc.1 + n);
        }
        Ok((cpu, zc))
    });
    let sender_thread = sender.thread().clone();
    let wake = |got: u64| {
        use std::sync::atomic::Ordering::SeqCst;
        taken.store(got, SeqCst);
        if parked.swap(false, SeqCst) {
            sender_thread.unpark();
        }
    };
    let _ = pin_current_thread(1);
    rxs.set_nonblocking(true)?;
    let quiet = Duration::from_millis(200);
    let mut got = 0u64;
    let mut calls = 0u64;
    let mut first: Option<(Instant, homa_sys::process::CpuTime)> = None;
    let mut last = Instant::now();
    let mut last_cpu = thread_cpu_time()?;
    match rx {
        Rx::Recvmmsg => {
            let mut batch = RecvBatch::new(8, 65536);
            loop {
                calls += 1;
                let n = match udp::recv_batch(rxs.as_fd(), &mut batch, 8) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                    Err(e) => return Err(e),
                };
                if n > 0 {
                    let now = Instant::now();
                    first.get_or_insert_with(|| (now, thread_cpu_time().unwrap_or_default()));
                    for i in 0..n {
                        got += batch.get(i).0.len as u64;
                    }
                    wake(got);
                    last = now;
                    if got >= total {
                        last_cpu = thread_cpu_time()?;
                        break;
                    }
                } else if first.is_some() && last.elapsed() > quiet {
                    break;
                }
            }
        }
        Rx::UringMulti => {
            const NBUF: u16 = 64;
            const BUF: usize = 65536;
            let mut bufs = vec![0u8; NBUF as usize * BUF];
            let mut ring = IoUring::new(256)?;
            let fd = types::Fd(rxs.as_raw_fd());
            let provide = |bufs: &mut Vec<u8>, bid: u16, n: u16| {
                opcode::ProvideBuffers::new(
                    bufs[bid as usize * BUF..].as_mut_ptr(),
                    BUF as i32,
                    n,
                    0,
                    bid,
                )
                .build()
                .user_data(2)
            };
            let arm = opcode::RecvMulti::new(fd, 0).build().user_data(1);
            // SAFETY: `bufs` outlives the ring (dropped after it below).
            unsafe {
                ring.submission()
                    .push(&provide(&mut bufs, 0, NBUF))
                    .expect("room");
                ring.submission().push(&arm).expect("room");
            }
            calls += 1;
            ring.submit_and_wait(1)?;
            let mut done = false;
            while !done {
                let mut back: Vec<u16> = Vec::new();
                let mut rearm = false;
                for cqe in ring.completion() {
                    if cqe.user_data() != 1 {
                        continue;
                    }
                    let res = cqe.result();
                    if res > 0 {
                        let now = Instant::now();
                        first.get_or_insert_with(|| (now, thread_cpu_time().unwrap_or_default()));
                        got += res as u64;
                        wake(got);
                        last = now;
                    } else if res < 0 && res != -libc::ENOBUFS {
                        return Err(io::Error::from_raw_os_error(-res));
                    }
                    if let Some(bid) = cqueue::buffer_select(cqe.flags()) {
                        back.push(bid);
                    }
                    if !cqueue::more(cqe.flags()) {
                        rearm = true;
                    }
                }
                for bid in back {
                    // SAFETY: as above.
                    unsafe {
                        ring.submission()
                            .push(&provide(&mut bufs, bid, 1))
                            .expect("room");
                    }
                }
                if rearm {
                    // SAFETY: as above.
                    unsafe { ring.submission().push(&arm).expect("room") };
                }
                if got >= total {
                    last_cpu = thread_cpu_time()?;
                    done = true;
                } else if first.is_some() && last.elapsed() > quiet {
                    done = true;
                }
                if !ring.submission().is_empty() {
                    calls += 1;
                    ring.submit()?;
                }
            }
            drop(ring);
            drop(bufs);
        }
    }
    let (tx_cpu, zc_copied) = sender.join().expect("sender thread")?;
    let Some((t0, c0)) = first else {
        return Err(io::Error::other("nothing received"));
    };
    if got < total {
        last_cpu = thread_cpu_time()?;
        // The quiet wait is not work: take the CPU up to the last arrival
        // as well as we can (it spun; the wait is charged, so say so).
    }
    let secs = last.duration_since(t0).as_secs_f64().max(1e-9);
    let cpu = last_cpu.since(c0).total().as_secs_f64();
    Ok(Bulk {
        gbps: got as f64 * 8.0 / secs / 1e9,
        rx_cpu_ms_per_gb: cpu * 1e3 / (got as f64 / 1e9),
        tx_cpu_ms_per_gb: tx_cpu.as_secs_f64() * 1e3 / (total as f64 / 1e9),
        received: got,
        rx_calls_per_mb: calls as f64 / (got as f64 / (1 << 20) as f64),
        zc_copied,
    })
}

fn bulk(megabytes: usize, reps: usize) -> io::Result<()> {
    let ways = [
        (Rx::Recvmmsg, Tx::Copy, "recvmmsg / sendmsg"),
        (Rx::UringMulti, Tx::Copy, "ring multi / sendmsg"),
        (Rx::Recvmmsg, Tx::ZeroCopy, "recvmmsg / zerocopy"),
    ];
    let mut runs: Vec<Vec<Bulk>> = vec![Vec::new(); ways.len()];
    for _ in 0..reps {
        for (i, &(rx, tx, _)) in ways.iter().enumerate() {
            runs[i].push(bulk_run(rx, tx, megabytes)?);
        }
    }
    println!(
        "{:<21} {:>7} {:>10} {:>10} {:>9} {:>9} {:>14}",
        "receive / send", "Gbit/s", "rx ms/GB", "tx ms/GB", "complete", "rx calls", "zc copied/all"
    );
    for (i, &(_, tx, name)) in ways.iter().enumerate() {
        let r = &runs[i];
        let lost = r
            .iter()
            .filter(|x| x.received < (megabytes as u64) << 20)
            .count();
        let m = |f: &dyn Fn(&Bulk) -> f64| median(r.iter().map(f).collect());
        let zc = r
            .iter()
            .fold((0, 0), |a, x| (a.0 + x.zc_copied.0, a.1 + x.zc_copied.1));
        println!(
            "{:<21} {:>7.2} {:>10.0} {:>10.0} {:>8}% {:>9.1} {:>14}",
            name,
            m(&|x| x.gbps),
            m(&|x| x.rx_cpu_ms_per_gb),
            m(&|x| x.tx_cpu_ms_per_gb),
            100 * (reps - lost) / reps,
            m(&|x| x.rx_calls_per_mb),
            if tx == Tx::ZeroCopy {
                format!("{}/{}", zc.0, zc.1)
            } else {
                "-".into()
            },
        );
    }
    println!("(complete: runs that got every byte; rx calls: receive system calls per MB; the sender sleeps while 4 MB are unread)");
    Ok(())
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    match args.first().map(String::as_str) {
        Some("rtt") => rtt(num(1, 200_000), num(2, 3)),
        Some("bulk") => bulk(num(1, 2000), num(2, 3)),
        _ => {
            eprintln!("usage: uring_eval rtt [round_trips] [reps] | bulk [megabytes] [reps]");
            std::process::exit(2);
        }
    }
}
