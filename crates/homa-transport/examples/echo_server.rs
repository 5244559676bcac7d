//! Answers every request with its own bytes.
//!
//! ```text
//! cargo run --release -p homa-transport --example echo_server -- 127.0.0.1:4000
//! ```
//!
//! Prints `listening on <addr>` once ready (tests wait for that line).

use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4000".into());
    // Accept requests even on an ephemeral port (port 0 alone would make a
    // client-only socket).
    let mut config = homa_transport::Config::default();
    config.server = Some(true);
    let socket = homa_transport::Socket::bind_with(addr, config)?;
    println!("listening on {}", socket.local_addr());
    std::io::stdout().flush()?;
    loop {
        let request = socket.recv_request()?;
        socket.reply(request.peer, request.id, request.body)?;
    }
}
