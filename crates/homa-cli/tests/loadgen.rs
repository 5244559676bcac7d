//! The load generator end to end on loopback: `homa server` and `homa
//! client` processes over Homa and TCP with a real workload, the files the
//! client writes, one-way mode, and `homa metrics`.
#![allow(non_snake_case)]

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{Server, HOMA};

/// `homa server --quiet --protocol <protocol> --ports <ports>`.
fn server(protocol: &str, ports: usize) -> Server {
    let ports_arg = ports.to_string();
    Server::start(
        &["--quiet", "--protocol", protocol, "--ports", &ports_arg],
        ports,
    )
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("homa-loadgen-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// `homa client --json --quiet <args>`.
fn client(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--quiet"];
    all.extend_from_slice(args);
    common::client(&all)
}

/// Runs W3 open loop against a two-port server and checks the report, the
/// RTT dump and the plot.
fn workload_run(protocol: &str) {
    let server = server(protocol, 2);
    let (rtts, svg, json) = (
        tmp(&format!("{protocol}.rtts")),
        tmp(&format!("{protocol}.svg")),
        tmp(&format!("{protocol}.json")),
    );
    let r = client(&[
        "--protocol",
        protocol,
        "--server",
        &server.list(),
        "--workload",
        "w3",
        "--gbps",
        "0.02",
        "--ports",
        "2",
        "--client-max",
        "50",
        "--tcp-conns",
        "2",
        "--duration",
        "1",
        "--warmup",
        "0.2",
        "--link-mbps",
        "10000",
        "--base-rtt-us",
        "20",
        "--dump-times",
        rtts.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
        "--json-out",
        json.to_str().unwrap(),
    ]);
    let calls = r["calls"].as_u64().unwrap();
    // 0.02 Gbit/s of ~2.6 KB requests is ~1000 per second.
    assert!((500..=1500).contains(&calls), "{calls} calls");
    assert_eq!(r["failed"], 0);
    assert_eq!(r["protocol"], protocol);
    assert_eq!(r["servers"].as_array().unwrap().len(), 2);
    let s = &r["summary"];
    assert_eq!(s["ideal"]["base_rtt_us"], 20.0);
    assert_eq!(s["rtt_us"]["count"].as_u64().unwrap(), calls);
    assert!(s["buckets"].as_array().unwrap().len() >= 2);
    assert!(s["short"]["max_length"].as_u64().unwrap() >= 12);
    assert!(
        s["short"]["rtt_us"]["p99"].as_f64().unwrap()
            >= s["short"]["rtt_us"]["p50"].as_f64().unwrap()
    );
    // Echo: as many bytes back as out.
    let (o, i) = (
        r["gbps_out"].as_f64().unwrap(),
        r["gbps_in"].as_f64().unwrap(),
    );
    assert!((o - i).abs() < 1e-9, "{o} {i}");
    // The dump holds every measured RPC, lengths from the workload.
    let text = std::fs::read_to_string(&rtts).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len() as u64, calls);
    for l in &lines {
        let len: u32 = l.split_whitespace().next().unwrap().parse().unwrap();
        assert!((12..=1_000_000).contains(&len), "{l}");
    }
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<polyline"));
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(written["calls"], r["calls"]);
}

#[test]
fn client__homa_workload_open_loop() {
    workload_run("homa");
}

#[test]
fn client__tcp_workload_open_loop() {
    workload_run("tcp");
}

#[test]
fn client__one_way_responses_are_100_bytes() {
    for protocol in ["homa", "tcp"] {
        let server = server(protocol, 1);
        let r = client(&[
            "--protocol",
            protocol,
            "--server",
            &server.list(),
            "--workload",
            "5000",
            "--one-way",
            "--count",
            "50",
            "--client-max",
            "4",
        ]);
        assert_eq!(r["calls"], 50, "{protocol}");
        let (o, i) = (
            r["gbps_out"].as_f64().unwrap(),
            r["gbps_in"].as_f64().unwrap(),
        );
        assert!((o / i - 50.0).abs() < 1e-6, "{protocol}: {o} {i}");
    }
}

#[test]
fn metrics__report_a_running_servers_counters() {
    for protocol in ["homa", "tcp"] {
        let server = server(protocol, 1);
        client(&[
            "--protocol",
            protocol,
            "--server",
            &server.list(),
            "--workload",
            "3000",
            "--count",
            "20",
            // No base-RTT probe: the server counts exactly these 20.
            "--base-rtt-us",
            "10",
        ]);
        let out = Command::new(HOMA)
            .args([
                "metrics",
                "--protocol",
                protocol,
                "--server",
                &server.list(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(m["protocol"], protocol);
        assert_eq!(
            m["requests"], 20,
            "{protocol}: the metrics request is counted after its reply"
        );
        assert_eq!(m["bytes_in"], 60_000);
        if protocol == "homa" {
            let s = &m["sockets"][0];
            assert!(s["transport"]["packets_received"].as_u64().unwrap() >= 60);
            assert!(s["proto"]["requests_delivered"].as_u64().unwrap() >= 20);
            assert!(s["lock_per_rpc"]["hold_ns"].as_f64().unwrap() > 0.0, "{s}");
            assert!(s["transport"]["lock_acquired"].as_u64().unwrap() >= 20);
            assert!(s["host"]["participants"].as_u64().unwrap() >= 1, "{s}");
        }
    }
}

#[test]
fn metrics__a_plain_echo_server_is_told_apart() {
    // A Homa server that echoes everything unchanged (not a `homa server`).
    let mut config = homa_transport::Config::default();
    config.server = Some(true);
    let sock = homa_transport::Socket::bind_with("127.0.0.1:0", config).unwrap();
    let s = sock.clone();
    std::thread::spawn(move || {
        while let Ok(r) = s.recv_request() {
            let _ = s.reply(r.peer, r.id, r.body);
        }
    });
    let out = Command::new(HOMA)
        .args(["metrics", "--server", &sock.local_addr().to_string()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("does not answer metrics"), "{err}");
    sock.close();
}

/// Resident memory of a process, kB.
fn rss_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// The TCP server frames requests by a length the peer writes: a header
/// claiming 2 GiB must cost no memory (the server once allocated and
/// zeroed the claimed length before reading a byte of the body), and the
/// server keeps serving other connections.
#[test]
fn server__tcp_length_from_the_peer_is_not_an_allocation() {
    let server = server("tcp", 1);
    let mut s = std::net::TcpStream::connect(server.addrs[0]).unwrap();
    let mut h = [0u8; 12];
    h[0..4].copy_from_slice(&i32::MAX.to_le_bytes());
    s.write_all(&h).unwrap();
    s.write_all(&[0u8; 1 << 20]).unwrap();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(1) {
        let rss = rss_kb(server.child.id());
        assert!(rss < 256 * 1024, "server resident memory {rss} kB");
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = client(&[
        "--protocol",
        "tcp",
        "--server",
        &server.list(),
        "--workload",
        "3000",
        "--count",
        "20",
    ]);
    assert_eq!(r["calls"], 20);
}
