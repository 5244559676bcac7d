//! Heap allocations per round trip in the steady state, counted by a
//! global allocator: the runtime allocates nothing per RPC or per packet
//! (its transmit buffer, receive batch and call slots are reused); what
//! remains is the protocol's delivery of each received single-packet
//! message (one `Bytes` that returns its bytes to the receive budget when
//! dropped: two per round trip) plus its timers' occasional work.
#![allow(non_snake_case)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use homa_transport::{Config, Socket};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
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
