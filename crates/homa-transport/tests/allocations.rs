//! Heap allocations per round trip in the steady state, counted by a
//! global allocator: the runtime allocates nothing per RPC or per packet
//! (its transmit buffer, receive batch and call slots are reused); what
//! remains is the protocol's delivery of each received single-packet
//! message (one `Bytes` that returns its bytes to the receive budget when
//! dropped: two per round trip) plus its timers' occasional work.
//! A bulk transfer's receive buffers are recycled, not allocated per
//! datagram.
#![allow(non_snake_case)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use homa_transport::{Config, Socket};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// Allocations (and reallocations) of at least [`LARGE`] bytes: receive
/// buffers, not bookkeeping.
static LARGE_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// Half a 64 KiB receive buffer.
const LARGE: usize = 32 << 10;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        if layout.size() >= LARGE {
            LARGE_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        if new_size >= LARGE && new_size > layout.size() {
            LARGE_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The counter is global: the tests of this file run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// One thread drives a client and a server socket (no background
/// threads), as `examples/rtt_profile` does: every allocation counted
/// belongs to a round trip.
fn round_trips(client: &Socket, server: &Socket, n: usize, size: usize) {
    let dest = server.local_addr();
    let request = bytes::Bytes::from(vec![0x5a_u8; size]);
    for _ in 0..n {
        let mut call = client
            .start_call_timeout(dest, request.clone(), Duration::from_secs(5))
            .unwrap();
        let req = loop {
            if let Some(r) = server.try_recv_request().unwrap() {
                break r;
            }
            if let Some(r) = call.wait_timeout(Duration::from_micros(50)) {
                r.unwrap();
            }
        };
        server.reply(req.peer, req.id, req.body).unwrap();
        assert_eq!(call.wait().unwrap().len(), size);
    }
}

#[test]
fn small_round_trips__the_runtime_allocates_nothing_per_rpc() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut config = Config::default();
    config.background = None;
    let server = Socket::bind_with("127.0.0.1:0", config.clone().with_server(true)).unwrap();
    let client = Socket::bind_with("127.0.0.1:0", config.with_server(false)).unwrap();
    // Warm up: peers, tables and buffers reach their steady size.
    round_trips(&client, &server, 2_000, 100);
    let n = 20_000;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    round_trips(&client, &server, n, 100);
    let per = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / n as f64;
    println!("{per:.2} allocations per round trip");
    // Two are the protocol's (one per received message); one more per
    // round trip would be a per-RPC allocation, two a per-packet one.
    assert!(per < 2.9, "{per:.2} allocations per round trip");
}

/// Length of the requests of [`chained_requests`].
const REQUEST_LEN: usize = 1_000_000;

/// A client sends `warmup`, then `n` requests of [`REQUEST_LEN`] bytes of
/// 0xa5 to a server (both with `config`) that reads each as a chain
/// (`recv_request_message`), checks it and answers "ok". Returns how much
/// `counter` grew over the `n` requests, and the sockets' MTU.
fn chained_requests(config: Config, warmup: usize, n: usize, counter: &AtomicU64) -> (u64, usize) {
    let server = Socket::bind_with("127.0.0.1:0", config.clone().with_server(true)).unwrap();
    let client = Socket::bind_with("127.0.0.1:0", config).unwrap();
    let dest = server.local_addr();
    let mtu = server.offloads().mtu as usize;
    let request = bytes::Bytes::from(vec![0xa5_u8; REQUEST_LEN]);
    let s = server.clone();
    let serve = std::thread::spawn(move || {
        while let Ok(r) = s.recv_request_message() {
            assert_eq!(r.message.len(), REQUEST_LEN);
            assert!(r.message.chunks().all(|c| c.iter().all(|&b| b == 0xa5)));
            let (peer, id) = (r.peer, r.id);
            drop(r);
            if s.reply(peer, id, "ok").is_err() {
                break;
            }
        }
    });
    let transfer = |n: usize| {
        for _ in 0..n {
            let call = client
                .start_call_timeout(dest, request.clone(), Duration::from_secs(10))
                .unwrap();
            assert_eq!(&call.wait().unwrap()[..], b"ok");
        }
    };
    transfer(warmup);
    let before = counter.load(Ordering::Relaxed);
    transfer(n);
    let grew = counter.load(Ordering::Relaxed) - before;
    server.close();
    serve.join().unwrap();
    (grew, mtu)
}

/// Allocations of at least [`LARGE`] bytes while a client sends `n` 1 MB
/// requests to a server reading them as chains (`recv_request_message`),
/// after 8 to warm up; with the receive-buffer pool bounded at `pool`.
/// Returns the count and the number of datagrams the requests took.
fn bulk_large_allocations(pool: usize, n: usize) -> (u64, usize) {
    let mut config = Config::default().with_recv_pool(pool);
    // 64 kB packets, one per datagram, whatever the loopback's MTU.
    config.mtu = homa_transport::Mtu::Fixed(65_535);
    let (large, mtu) = chained_requests(config, 8, n, &LARGE_ALLOCATIONS);
    let len = REQUEST_LEN;
    // DATA payload per datagram: the MTU less IP, UDP and Homa headers.
    let datagrams = n * len.div_ceil(mtu - 84);
    println!(
        "pool {pool}: {large} allocations of >= {LARGE} bytes for {n} requests of {len} bytes \
         ({datagrams} datagrams at MTU {mtu})"
    );
    (large, datagrams)
}

/// 1 MB requests over loopback (64 kB packets, each kept in the buffer it
/// was received in and delivered as a chain). Without a pool every
/// datagram's slot gets a new 64 KiB buffer (16 per request: 512 for 32
/// requests, as before the pool existed). With the default pool, once the
/// first transfers have filled it, the buffers the application drops are
/// the ones the next datagrams are received into. What is left is one
/// 64 KiB allocation per request: its last packet (18 kB of 1 000 000
/// bytes) is handed over in a buffer trimmed to it, which cannot return
/// to the pool, so the slot needs one more buffer than came back.
#[test]
fn bulk_requests__receive_buffers_are_recycled_not_allocated() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = 32;
    let (without, datagrams) = bulk_large_allocations(0, n);
    assert!(
        without >= datagrams as u64,
        "{without} allocations without a pool for {datagrams} datagrams"
    );
    let (with, _) = bulk_large_allocations(Config::default().recv_pool, n);
    assert!(
        with <= n as u64 + 2,
        "{with} receive-buffer allocations with the pool for {n} requests"
    );
}

/// Allocations of any size per 1 MB request at MTU 1500 (708 packets in
/// GRO batches of up to 44), the server reading each request as a chain
/// of slices of its receive buffers (`recv_request_message`).
fn chain_allocations_per_request(n: usize) -> f64 {
    let mut config = Config::default();
    config.mtu = homa_transport::Mtu::Fixed(1500);
    // As `homa compare`: a paced batch is 43 packets (62 kB), so the
    // receiver's datagrams are GRO batches large enough to keep.
    config.proto.link_mbps = 100_000;
    let (all, _) = chained_requests(config, 4, n, &ALLOCATIONS);
    let per = all as f64 / n as f64;
    println!("{per:.1} allocations per 1 MB request at MTU 1500");
    per
}

/// A chained message's pieces are delivered as slices of their receive
/// buffers, each buffer wrapped once for the receive budget: the
/// allocations per request follow the GRO batches (one wrapper each) and
/// the chain's bookkeeping, not its 708 packets (92 per request counted,
/// 777 when each piece had a wrapper of its own).
#[test]
fn chained_delivery__allocates_per_receive_buffer_not_per_packet() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let per = chain_allocations_per_request(16);
    assert!(per < 300.0, "{per:.1} allocations per 1 MB request");
}
