//! What the process-level tests share: a `homa server` child and a `homa
//! client` run that returns its JSON report.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// The binary under test.
pub const HOMA: &str = env!("CARGO_BIN_EXE_homa");

/// A `homa server` child, killed on drop.
pub struct Server {
    /// The server process.
    pub child: Child,
    /// The address of each of its ports, in the order it printed them.
    pub addrs: Vec<SocketAddr>,
}

impl Server {
    /// Starts `homa server --bind 127.0.0.1:0 <args>` and reads the
    /// `listening on` line of each of its `ports` ports.
    pub fn start(args: &[&str], ports: usize) -> Server {
        Server::start_on("127.0.0.1:0", args, ports)
    }

    /// Starts `homa server --bind <bind> <args>` (e.g. again on the port
    /// of one that was killed) like [`Server::start`].
    pub fn start_on(bind: &str, args: &[&str], ports: usize) -> Server {
        let mut child = Command::new(HOMA)
            .args(["server", "--bind", bind])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start homa server");
        let mut r = BufReader::new(child.stdout.take().unwrap());
        let addrs = (0..ports)
            .map(|_| {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                line.trim()
                    .strip_prefix("listening on ")
                    .unwrap_or_else(|| panic!("unexpected line {line:?}"))
                    .parse()
                    .unwrap()
            })
            .collect();
        Server { child, addrs }
    }

    /// The first port's address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every port's address, comma-separated (the client's `--server`).
    pub fn list(&self) -> String {
        self.addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `homa client --json <args>` to success and returns its report.
pub fn client(args: &[&str]) -> serde_json::Value {
    let out = Command::new(HOMA)
        .args(["client", "--json"])
        .args(args)
        .output()
        .expect("run homa client");
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("client prints JSON")
}
