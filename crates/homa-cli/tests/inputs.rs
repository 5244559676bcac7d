//! `homa client`'s inputs and failures as a user meets them: bad values
//! refused up front with one clear message, a failing run reported once,
//! its partial results and JSON still written, no backtrace unless asked.
#![allow(non_snake_case)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod common;

use common::{Server, HOMA};

fn homa(args: &[&str]) -> Output {
    Command::new(HOMA).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn client__bad_values_refused_up_front_with_one_message() {
    let cases: &[(&[&str], &str)] = &[
        (&["--workload", "100000000", "--duration", "2"], "too large"),
        (&["--workload", "4294967296", "--count", "1"], "too large"),
        (&["--client-max", "0", "--count", "1"], "at least 1"),
        (&["--ports", "0", "--count", "1"], "at least 1"),
        (&["--server-ports", "0", "--count", "1"], "at least 1"),
        (&["--tcp-conns", "0", "--count", "1"], "at least 1"),
        (&["--count", "0"], "at least 1"),
        (&["--duration", "0s"], "longer than zero"),
        (&["--duration", "ten"], "10s"),
        (&["--timeout", "0", "--count", "1"], "longer than zero"),
        (&["--gbps=-1", "--count", "1"], ">= 0"),
        (
            &["--workload", "w5", "--variant", "raw", "--count", "1"],
            "longest Homa message",
        ),
        (&[], "--count N or --duration D"),
        // An output that cannot be written used to fail after the run,
        // losing it.
        (
            &["--count", "1", "--json-out", "/nonexistent-homa-dir/x.json"],
            "/nonexistent-homa-dir/x.json",
        ),
        (
            &["--count", "1", "--svg", "/proc/no-such-dir/x.svg"],
            "/proc/no-such-dir/x.svg",
        ),
        // A range past the last port wrapped to 0 (ephemeral), 1, ...
        (
            &[
                "--server",
                "127.0.0.1:65534",
                "--server-ports",
                "4",
                "--count",
                "1",
            ],
            "past 65535",
        ),
    ];
    for (args, want) in cases {
        let t = Instant::now();
        let mut all = vec!["client", "--server", "127.0.0.1:9"];
        all.extend_from_slice(args);
        let o = homa(&all);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} accepted");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(
            err.lines().count() <= 4,
            "{args:?}: more than one message: {err}"
        );
        assert!(
            !err.contains("unknown workload") && !err.contains("1000000000.0"),
            "{args:?}: {err}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{args:?} was not refused up front"
        );
    }
}

#[test]
fn client__durations_take_units() {
    let server = Server::start(&["--quiet"], 1);
    let addr = server.addr().to_string();
    let r = common::client(&[
        "--quiet",
        "--server",
        &addr,
        "--duration",
        "300ms",
        "--warmup",
        "100ms",
        "--timeout",
        "2s",
        "--drain",
        "500ms",
    ]);
    assert!(r["calls"].as_u64().unwrap() > 0);
    assert!((r["seconds"].as_f64().unwrap() - 0.3).abs() < 1e-9);
}

#[test]
fn client__aborted_run_writes_its_json_and_no_backtrace() {
    let free = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let dir = std::env::temp_dir().join(format!("homa-abort-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("r.json");
    let o = Command::new(HOMA)
        .env("RUST_BACKTRACE", "1")
        .args(["client", "--server", &free, "--count", "5", "--json-out"])
        .arg(&json)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(err.contains("destination port unreachable"), "{err}");
    assert!(!err.to_lowercase().contains("backtrace"), "{err}");
    assert_eq!(
        err.matches("destination port unreachable").count(),
        1,
        "{err}"
    );
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("JSON written")).unwrap();
    assert!(r["error"].as_str().unwrap().contains("unreachable"), "{r}");
    assert_eq!(r["calls"], 0);
    // Asked for: the backtrace.
    let o = homa(&["-v", "client", "--server", &free, "--count", "5"]);
    assert!(stderr(&o).contains("acktrace"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn client__failed_calls_reported_once_and_counted() {
    // A server whose application never answers: every call hits --timeout.
    let mut c = homa_transport::Config::default();
    c.server = Some(true);
    let silent = homa_transport::Socket::bind_with("127.0.0.1:0", c).unwrap();
    let held = silent.clone();
    std::thread::spawn(move || {
        let mut keep = Vec::new();
        while let Ok(r) = held.recv_request() {
            keep.push(r);
        }
    });
    let o = homa(&[
        "client",
        "--server",
        &silent.local_addr().to_string(),
        "--count",
        "12",
        "--client-max",
        "4",
        "--timeout",
        "100ms",
        "--base-rtt-us",
        "10",
        "--quiet",
    ]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert_eq!(
        err.matches("call failed: deadline exceeded").count(),
        1,
        "{err}"
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("12 calls failed: deadline exceeded"), "{out}");
    silent.close();
}

#[test]
fn client__open_loop_that_falls_behind_says_so() {
    let server = Server::start(&["--quiet"], 1);
    let o = homa(&[
        "client",
        "--server",
        &server.addr().to_string(),
        "--workload",
        "w4",
        "--gbps",
        "5",
        "--client-max",
        "1",
        "--duration",
        "500ms",
        "--quiet",
        "--base-rtt-us",
        "10",
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("fell behind its schedule") && err.contains("late"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("% late (waited for --client-max)"));
}

#[test]
fn client__slowdown_from_a_measured_base_rtt_and_a_named_link() {
    let server = Server::start(&["--quiet"], 1);
    let r = common::client(&[
        "--quiet",
        "--server",
        &server.addr().to_string(),
        "--count",
        "50",
    ]);
    // Measured, or lowered to the run's fastest RPC when that was faster.
    let source = r["base_rtt_source"].as_str().unwrap();
    assert!(source == "measured" || source == "lowered", "{r}");
    assert!(
        r["link_source"].as_str().unwrap().starts_with("loopback"),
        "{r}"
    );
    let base = r["summary"]["ideal"]["base_rtt_us"].as_f64().unwrap();
    assert!(base > 0.0 && base < 1e6, "{base}");
    assert_eq!(r["summary"]["ideal"]["link_mbps"], 100_000.0);
    let given = common::client(&[
        "--quiet",
        "--server",
        &server.addr().to_string(),
        "--count",
        "5",
        "--base-rtt-us",
        "7",
        "--link-mbps",
        "1000",
    ]);
    assert_eq!(given["base_rtt_source"], "given");
    assert_eq!(given["summary"]["ideal"]["base_rtt_us"], 7.0);
    assert_eq!(given["link_source"], "given (--link-mbps)");
}

#[test]
fn rack__help_names_its_requirements() {
    let o = homa(&["rack", "--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    for word in [
        "root",
        "`ip`",
        "`tc`",
        "`ethtool`",
        "`sysctl`",
        "htb_hysteresis",
        "restored",
    ] {
        assert!(help.contains(word), "{word} missing from: {help}");
    }
}

#[test]
fn sim__long_runs_estimated_and_refused_without_yes() {
    // 60 s of simulated W4 takes hours here: refused when nobody can say yes.
    let o = Command::new(HOMA)
        .args([
            "sim",
            "-w",
            "w4",
            "-d",
            "60s",
            "--hosts-per-rack",
            "4",
            "--racks",
            "2",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("estimated wall time"), "{err}");
    assert!(err.contains("--yes"), "{err}");
}

#[test]
fn rack__failed_run_leaves_no_empty_directory() {
    // Two hosts at least: refused after the output directory would be
    // made (or, without root, before).
    let cwd = std::env::temp_dir().join(format!("homa-rack-cwd-{}", std::process::id()));
    std::fs::create_dir_all(&cwd).unwrap();
    let o = Command::new(HOMA)
        .args(["rack", "--hosts", "1", "--prefix", "hrfail"])
        .current_dir(&cwd)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let left: Vec<_> = std::fs::read_dir(&cwd)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let _ = std::fs::remove_dir_all(&cwd);
}

#[test]
fn client__stops_when_its_server_went_away() {
    // The server dies (SIGKILL) half a second into a 30 s run of 100 B
    // calls: each call after that fails at once (its request was sent to a
    // port nothing listens on), and the client gives up instead of issuing
    // failing calls for the rest of the run.
    let mut server = Server::start(&["--quiet"], 1);
    let addr = server.addr().to_string();
    let client = Command::new(HOMA)
        .args([
            "client",
            "--server",
            &addr,
            "--duration",
            "30s",
            "--client-max",
            "4",
            "--timeout",
            "500ms",
            "--base-rtt-us",
            "10",
            "--quiet",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let o = client.wait_with_output().unwrap();
    let took = t0.elapsed();
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("giving up"), "{err}");
    assert!(took < Duration::from_secs(20), "ran {took:?} of its 30 s");
    // The report covers the time it ran, and its failures by reason add
    // up to the failed calls.
    let out = String::from_utf8_lossy(&o.stdout);
    let head = out.lines().next().unwrap_or_default();
    let field = |before: &str, after: &str| -> f64 {
        let rest = head.split_once(before).unwrap_or_else(|| panic!("{out}")).1;
        let v = rest.split_once(after).unwrap_or_else(|| panic!("{out}")).0;
        v.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let seconds = field(" RPCs in ", " s ");
    assert!(seconds < 20.0, "{out}");
    let failed = field("), ", " failed");
    let by_reason: f64 = out
        .lines()
        .filter_map(|l| l.trim_start().split_once(" calls failed: "))
        .map(|(n, _)| n.parse::<f64>().unwrap())
        .sum();
    assert_eq!(by_reason, failed, "{out}");
}

#[test]
fn client__rides_out_a_server_restart() {
    // The server is killed 1.5 s into a 6 s run and a new one serves the
    // same port 100 ms later. The calls of the gap fail (500 kB requests
    // wait for grants: "destination port unreachable" when not completely
    // sent, else "outcome unknown"): each counts
    // as a failed call by reason, and the run goes on to its end. It used
    // to stop at the first "destination port unreachable" (exit 1) and
    // report its rate over the whole 6 s, with failures by reason that did
    // not add up to the failed calls.
    let mut server = Server::start(&["--quiet"], 1);
    let addr = server.addr().to_string();
    let client = Command::new(HOMA)
        .args([
            "client",
            "--server",
            &addr,
            "--duration",
            "6s",
            "--workload",
            "500000",
            "--client-max",
            "4",
            "--timeout",
            "500ms",
            "--base-rtt-us",
            "10",
            "--json",
            "--quiet",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let _again = Server::start_on(&addr, &["--quiet"], 1);
    let o = client.wait_with_output().unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON report");
    assert!(r["error"].is_null(), "{r}");
    assert_eq!(r["seconds"].as_f64(), Some(6.0), "{r}");
    let by_reason: u64 = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["count"].as_u64().unwrap())
        .sum();
    assert_eq!(by_reason, r["failed"].as_u64().unwrap(), "{r}");
    assert!(r["calls"].as_u64().unwrap() > 100, "{r}");
}

#[test]
fn server_rack_and_sim__bad_port_ranges_loads_and_outputs_refused_up_front() {
    // `homa server --bind 127.0.0.1:65535 --ports 5` listened on 65535, an
    // ephemeral port, then 1, 2, 3; `homa rack --load 0` ran closed loop at
    // full load and reported load 0.00.
    let cases: &[(&[&str], &str)] = &[
        (
            &["server", "--bind", "127.0.0.1:65535", "--ports", "5"],
            "past 65535",
        ),
        (&["rack", "--load", "0"], "more than 0"),
        (&["rack", "--load", "3"], "at most 1"),
        (&["rack", "--load", "nan"], "more than 0"),
        // Values that were taken and then did nothing useful.
        (&["sim", "-d", "0s"], "longer than zero"),
        (
            &["server", "--response-size", "20000000"],
            "longest Homa message",
        ),
        (&["compare", "--reps", "0"], "at least 1"),
        (&["compare", "--rate-outstanding", "0"], "at least 1"),
        (&["compare", "--small", "0"], "longest Homa message"),
        (&["rack", "--rate-mbit", "0"], "at least 1"),
        // The simulation ran to its end before its output failed.
        (
            &["sim", "--svg", "/proc/no-such-dir/x.svg"],
            "/proc/no-such-dir/x.svg",
        ),
        (&["sim", "--out", "/proc/no-such-dir"], "/proc/no-such-dir"),
    ];
    for (args, want) in cases {
        let t = Instant::now();
        let o = homa(args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} accepted");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(t.elapsed() < Duration::from_secs(5), "{args:?}");
    }
}
