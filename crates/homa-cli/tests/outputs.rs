//! What operators and readers get out: the Prometheus endpoint of `homa
//! server`, and the plots of `homa client` and `homa plot` (Homa and TCP
//! overlaid; a CDF for a fixed size).
#![allow(non_snake_case)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

mod common;

use common::{Server, HOMA};

/// `GET /metrics` over plain HTTP/1.0; the body.
fn scrape(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "{head}"
    );
    assert!(
        head.to_lowercase().contains("content-type: text/plain"),
        "{head}"
    );
    body.to_string()
}

/// A sample: name, labels, value.
type Sample = (String, String, f64);

/// Parses the text format: `name{labels} value` samples and the `# TYPE`
/// (name, type) of every family.
fn parse(text: &str) -> (Vec<Sample>, Vec<(String, String)>) {
    let (mut samples, mut types) = (Vec::new(), Vec::new());
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let mut w = t.split_whitespace();
            types.push((w.next().unwrap().to_string(), w.next().unwrap().to_string()));
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "bad metric name {name:?}"
        );
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        samples.push((name.to_string(), labels.to_string(), v));
    }
    (samples, types)
}

/// The next line of `r`, which must start with `prefix`, without it.
fn line_after(r: &mut impl BufRead, prefix: &str) -> String {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    line.trim()
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"))
        .to_string()
}

#[test]
fn server__prometheus_endpoint_scraped_and_parsed() {
    let mut child = Command::new(HOMA)
        .args([
            "server",
            "--bind",
            "127.0.0.1:0",
            "--quiet",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Both pipes stay open while the server runs (it may write more).
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let server = line_after(&mut out, "listening on ");
    let metrics = line_after(&mut err, "metrics on http://");
    let metrics = metrics.strip_suffix("/metrics").unwrap().to_string();
    common::client(&[
        "--server",
        &server,
        "--workload",
        "3000",
        "--count",
        "20",
        "--base-rtt-us",
        "10",
    ]);
    let (samples, types) = parse(&scrape(&metrics));
    let get = |name: &str, labels: &str| {
        samples
            .iter()
            .find(|(n, l, _)| n == name && l.contains(labels))
            .map(|s| s.2)
            .unwrap_or_else(|| panic!("no {name}{{{labels}}}"))
    };
    assert_eq!(get("homa_server_requests_total", "protocol=\"homa\""), 20.0);
    assert_eq!(get("homa_server_bytes_in_total", "thread=\"0\""), 60_000.0);
    assert!(get("homa_proto_requests_delivered_total", "socket=") >= 20.0);
    assert!(get("homa_proto_packets_received_total", "type=\"DATA\"") >= 60.0);
    assert!(get("homa_transport_packets_received_total", "socket=") >= 60.0);
    assert!(get("homa_server_uptime_seconds", "homa") > 0.0);
    // The serial section and the host table (the server joins one by
    // default; it counts itself).
    assert!(get("homa_transport_lock_acquired_total", "socket=") >= 20.0);
    assert!(get("homa_transport_lock_hold_ns_total", "socket=") > 0.0);
    assert!(get("homa_host_participants", "socket=") >= 1.0);
    assert!(
        types.contains(&("homa_server_requests".into(), "counter".into())),
        "{types:?}"
    );
    assert!(
        types.contains(&("homa_proto_server_rpcs".into(), "gauge".into())),
        "{types:?}"
    );
    // Every sample belongs to a declared family.
    for (name, _, _) in &samples {
        assert!(
            types
                .iter()
                .any(|(t, _)| name == t || name.strip_suffix("_total") == Some(t)),
            "{name} has no # TYPE"
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("homa-outputs-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn client__homa_and_tcp_overlaid_in_one_plot() {
    let server = Server::start(&["--quiet", "--protocol", "homa,tcp"], 2);
    let addr = server.addr().to_string();
    let (svg, json) = (tmp("w3.svg"), tmp("w3.json"));
    common::client(&[
        "--quiet",
        "--server",
        &addr,
        "--protocol",
        "homa,tcp",
        "--workload",
        "w3",
        "--count",
        "400",
        "--client-max",
        "4",
        "--svg",
        svg.to_str().unwrap(),
        "--json-out",
        json.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&svg).unwrap();
    for label in [
        "homa P50",
        "homa P99",
        "tcp P50",
        "tcp P99",
        "Slowdown: w3 (cp-node)",
        "base RTT",
        "link 100 Gbit/s (loopback)",
        "message length (bytes)",
    ] {
        assert!(text.contains(label), "{label} missing");
    }
    // A fixed size: the RTT distribution instead of two dots.
    let cdf = tmp("fixed.svg");
    common::client(&[
        "--quiet",
        "--server",
        &addr,
        "--protocol",
        "homa,tcp",
        "--workload",
        "1000",
        "--count",
        "300",
        "--svg",
        cdf.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&cdf).unwrap();
    assert!(
        text.contains("RTT distribution: 1000 B requests"),
        "CDF title"
    );
    assert!(text.contains("round-trip time (us)") && text.contains("share of RPCs"));
    // `homa plot` overlays saved reports the same way.
    let out = tmp("replot.svg");
    let o = Command::new(HOMA)
        .args([
            "plot",
            json.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("homa P99") && text.contains("tcp P99"));
    // The same runs "at another load" overlaid: each report is told apart
    // in the legend by its load and drawn in its own colour, and the title
    // does not claim the first one's load for all (they came out with one
    // title, the same legend twice and two colours).
    let mut other: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for r in other.as_array_mut().unwrap() {
        r["gbps_target"] = serde_json::json!(0.4);
    }
    let json2 = tmp("w3-0.4.json");
    std::fs::write(&json2, other.to_string()).unwrap();
    let both = tmp("both.svg");
    let o = Command::new(HOMA)
        .args(["plot", json.to_str().unwrap(), json2.to_str().unwrap()])
        .args(["--out", both.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&both).unwrap();
    for label in [
        "homa closed loop, 4 outstanding P99",
        "homa open loop 0.4 Gbit/s P99",
        "tcp open loop 0.4 Gbit/s P50",
        "loads as in the legend",
    ] {
        assert!(text.contains(label), "{label} missing");
    }
    let colors = ["#1759BB", "#E07B00", "#00A000", "#B8860B"];
    for c in colors {
        assert!(text.to_uppercase().contains(c), "colour {c} missing");
    }
    let bad = tmp("bad.json");
    std::fs::write(&bad, "{\"calls\": 1}").unwrap();
    let o = Command::new(HOMA)
        .args(["plot", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a `homa client` report"));
}

/// Runs `homa <args>` with stdout a pipe whose reader has already gone
/// away, as after `homa ... | head` once head exited (with `both`, stderr
/// too: `2>&1 | head`); the exit status and what it wrote to stderr (when
/// that is still read).
fn into_closed_pipe(args: &[&str], both: bool) -> (std::process::ExitStatus, String) {
    let mut c = Command::new(HOMA)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(c.stdout.take());
    if both {
        drop(c.stderr.take());
    }
    let o = c.wait_with_output().unwrap();
    (o.status, String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn every_command__quiet_when_its_reader_went_away() {
    // `homa metrics | head` panicked ("failed printing to stdout: Broken
    // pipe") with a backtrace: a closed pipe is no error for any command.
    let server = Server::start(&["--quiet"], 1);
    let addr = server.addr().to_string();
    let client = [
        "client",
        "--server",
        &addr,
        "--count",
        "50",
        "--base-rtt-us",
        "10",
    ];
    let client_json = [&client[..], &["--json"]].concat();
    let runs: [&[&str]; 4] = [
        &["metrics", "--server", &addr],
        &client,
        &client_json,
        &[
            "sim",
            "-w",
            "w1",
            "-l",
            "0.5",
            "--duration",
            "1ms",
            "--no-progress",
        ],
    ];
    for args in runs {
        for both in [false, true] {
            let (status, err) = into_closed_pipe(args, both);
            assert!(
                status.success(),
                "{args:?} (stderr closed too: {both}): {status}\n{err}"
            );
            assert!(
                !err.contains("panicked") && !err.contains("Broken pipe"),
                "{args:?}: {err}"
            );
        }
    }
}
