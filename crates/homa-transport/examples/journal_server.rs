//! A server that records every request it executes in a journal before
//! answering it: the at-most-once demonstration the test suite kills and
//! restarts (`tests/netns_restart.rs`).
//!
//! ```text
//! cargo run --release -p homa-transport --example journal_server -- 127.0.0.1:4000 /tmp/journal 50
//! ```
//!
//! Arguments: the address to serve on, the journal file (appended to, one
//! line per executed request: the request's bytes as text), and the
//! service time in milliseconds spent after executing a request and
//! before answering it (default 50). Prints `listening on <addr>` once
//! ready and `executed <request>` after each journal write (both flushed
//! at once, so a supervisor can kill the process between the execution
//! and the response).

use std::fs::OpenOptions;
use std::io::Write;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:4000".into());
    let journal = args.next().unwrap_or_else(|| "journal".into());
    let service = Duration::from_millis(args.next().map_or(Ok(50), |s| s.parse())?);
    let mut config = homa_transport::Config::default();
    config.server = Some(true);
    let socket = homa_transport::Socket::bind_with(addr, config)?;
    let mut journal = OpenOptions::new().create(true).append(true).open(journal)?;
    let mut out = std::io::stdout();
    writeln!(out, "listening on {}", socket.local_addr())?;
    out.flush()?;
    loop {
        let request = socket.recv_request()?;
        let text = String::from_utf8_lossy(&request.body).into_owned();
        // The side effect that must happen at most once per request.
        writeln!(journal, "{text}")?;
        journal.flush()?;
        writeln!(out, "executed {text}")?;
        out.flush()?;
        std::thread::sleep(service);
        socket.reply(request.peer, request.id, request.body)?;
    }
}
