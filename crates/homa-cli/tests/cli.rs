//! The `homa` binary in separate processes: a server process and a client
//! process talking over loopback, a client process against a server in
//! this process, and `homa compare --json`.
#![allow(non_snake_case)]

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use homa_transport::{Config, Error, Socket};

mod common;

use common::{Server, HOMA};

fn client_json(server: SocketAddr, extra: &[&str]) -> serde_json::Value {
    let server = server.to_string();
    let mut args = vec!["--server", &server];
    args.extend_from_slice(extra);
    common::client(&args)
}

#[test]
fn client_and_server__in_separate_processes() {
    let server = Server::start(&[], 1);
    let r = client_json(
        server.addr(),
        &["--size", "3000", "--count", "300", "--concurrency", "3"],
    );
    assert_eq!(r["calls"], 300);
    assert_eq!(r["failed"], 0);
    assert_eq!(r["rtt"]["count"], 300);
    assert!(r["rtt"]["p50_us"].as_f64().unwrap() > 0.0);
    assert!(r["rtt"]["p999_us"].as_f64().unwrap() >= r["rtt"]["p50_us"].as_f64().unwrap());
}

#[test]
fn server_process__fixed_response_size_and_large_requests() {
    let server = Server::start(&["--response-size", "70000", "--threads", "2"], 1);
    let r = client_json(server.addr(), &["--size", "2000000", "--count", "5"]);
    assert_eq!(r["calls"], 5);
    // 5 × (2 000 000 request + 70 000 response) bytes moved.
    let gbps = r["gbps"].as_f64().unwrap();
    let secs = r["seconds"].as_f64().unwrap();
    let bytes = gbps * 1e9 / 8.0 * secs;
    assert!((bytes - 5.0 * 2_070_000.0).abs() < 1.0, "{bytes}");
}

#[test]
fn client_process__against_a_server_in_this_process() {
    let mut config = Config::default();
    config.server = Some(true);
    let sock = Socket::bind_with("127.0.0.1:0", config).unwrap();
    let s = sock.clone();
    let h = std::thread::spawn(move || {
        let mut n = 0u32;
        loop {
            match s.recv_request() {
                Ok(r) => {
                    let mut body = r.body.to_vec();
                    body.reverse();
                    s.reply(r.peer, r.id, body).unwrap();
                    n += 1;
                }
                Err(Error::Closed) => return n,
                Err(e) => panic!("{e}"),
            }
        }
    });
    // No base-RTT probe: the server counts exactly these 50.
    let r = client_json(
        sock.local_addr(),
        &["--size", "100", "--count", "50", "--base-rtt-us", "10"],
    );
    assert_eq!(r["calls"], 50);
    sock.close();
    assert_eq!(h.join().unwrap(), 50);
}

#[test]
fn client_process__reports_an_unreachable_server() {
    let free = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = Command::new(HOMA)
        .args(["client", "--server", &free.to_string(), "--count", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("destination port unreachable"), "{err}");
}

#[test]
fn compare__json_reports_every_transport() {
    let out = Command::new(HOMA)
        .args([
            "compare",
            "--reps",
            "1",
            "--duration",
            "40ms",
            "--warmup",
            "10ms",
            "--json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for t in ["udp", "udp_unconnected", "tcp", "homa"] {
        for key in ["p50_us", "p99_us", "p999_us"] {
            let x = &r["medians"][t][key];
            assert!(x.as_f64().unwrap() > 0.0, "{t}.{key} = {x}");
        }
    }
    for key in ["udp_gbps", "tcp_gbps", "homa_gbps"] {
        let x = &r["medians"]["bulk"][key];
        assert!(x.as_f64().unwrap() > 0.0, "bulk.{key} = {x}");
    }
    assert_eq!(r["reps"].as_array().unwrap().len(), 1);
    assert!(r["ratios"]["p50_vs_udp"].as_f64().unwrap() > 0.0);
    // Every latency figure comes from completed round trips.
    assert!(r["reps"][0]["homa_rtt"]["count"].as_u64().unwrap() > 0);
}
