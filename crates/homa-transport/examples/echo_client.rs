//! Sends requests of growing size to an echo server and checks each
//! response.
//!
//! ```text
//! cargo run --release -p homa-transport --example echo_client -- 127.0.0.1:4000
//! ```

use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A SocketAddr or a host name ("localhost:4000"), resolved once.
    let server = std::net::ToSocketAddrs::to_socket_addrs(
        &std::env::args()
            .nth(1)
            .unwrap_or_else(|| "127.0.0.1:4000".into()),
    )?
    .next()
    .ok_or("the server address resolved to nothing")?;
    let socket = homa_transport::Socket::bind("0.0.0.0:0")?;
    for size in [1usize, 100, 1_000, 10_000, 100_000, 1_000_000] {
        let request: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let start = Instant::now();
        let response = socket.call_timeout(server, request.clone(), Duration::from_secs(10))?;
        let rtt = start.elapsed();
        if response[..] != request[..] {
            return Err(format!("{size}-byte echo came back different").into());
        }
        println!("{size:>9} bytes: {:>8.1} us", rtt.as_secs_f64() * 1e6);
    }
    Ok(())
}
