//! The JSON of `homa client` and `homa compare` against its documentation
//! (`docs/json.md`): every field printed is documented, every documented
//! field is printed by one of the runs here.
#![allow(non_snake_case)]

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use homa_transport::{Config, Socket};
use serde_json::Value;

mod common;

use common::{Server, HOMA};

/// The documented field paths of one `## ` section of docs/json.md.
fn documented(section: &str) -> BTreeSet<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/json.md"))
        .expect("docs/json.md");
    let start = doc
        .find(&format!("## `{section}`"))
        .unwrap_or_else(|| panic!("no section {section}"));
    let rest = &doc[start + 3..];
    let body = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    body.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect()
}

/// Every field path of `v` (`a.b`, `a[]`, `a[].b`); the elements of
/// `sockets[]` are opaque.
fn paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                paths(x, &p, out);
            }
        }
        Value::Array(a) => {
            let p = format!("{prefix}[]");
            out.insert(p.clone());
            if prefix != "sockets" {
                for x in a.iter().filter(|x| x.is_object() || x.is_array()) {
                    paths(x, &p, out);
                }
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

fn check(section: &str, outputs: &[Value]) {
    let doc = documented(section);
    let mut seen = BTreeSet::new();
    for o in outputs {
        paths(o, "", &mut seen);
    }
    let undocumented: Vec<_> = seen.difference(&doc).collect();
    assert!(
        undocumented.is_empty(),
        "{section}: printed but not in docs/json.md: {undocumented:?}"
    );
    let unseen: Vec<_> = doc.difference(&seen).collect();
    assert!(
        unseen.is_empty(),
        "{section}: in docs/json.md but never printed: {unseen:?}"
    );
}

fn run_json(args: &[&str]) -> Value {
    let out = Command::new(HOMA)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn client__json_fields_are_the_documented_ones() {
    let server = Server::start(&["--quiet", "--protocol", "homa,tcp"], 2);
    let addr = server.addr().to_string();
    // Both protocols, a workload with several buckets.
    let both = run_json(&[
        "client",
        "--json",
        "--quiet",
        "--server",
        &addr,
        "--protocol",
        "homa,tcp",
        "--workload",
        "w3",
        "--count",
        "600",
        "--client-max",
        "4",
    ]);
    let runs = both
        .as_array()
        .expect("several protocols: an array")
        .clone();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["protocol"], "homa");
    assert_eq!(runs[1]["protocol"], "tcp");
    // Calls that fail: a server whose application never answers.
    let mut c = Config::default();
    c.server = Some(true);
    let silent = Socket::bind_with("127.0.0.1:0", c).unwrap();
    let held = silent.clone();
    std::thread::spawn(move || {
        let mut keep = Vec::new();
        while let Ok(r) = held.recv_request() {
            keep.push(r);
        }
    });
    let failing = run_json(&[
        "client",
        "--json",
        "--quiet",
        "--server",
        &silent.local_addr().to_string(),
        "--count",
        "3",
        "--timeout",
        "100ms",
        "--base-rtt-us",
        "10",
    ]);
    assert_eq!(failing["failed"], 3);
    assert_eq!(failing["errors"][0]["count"], 3);
    silent.close();
    let mut all = runs;
    all.push(failing);
    check("homa client", &all);
}

#[test]
fn compare__json_fields_are_the_documented_ones() {
    let r = run_json(&[
        "compare",
        "--reps",
        "2",
        "--duration",
        "30ms",
        "--warmup",
        "10ms",
        "--json",
        "--targets",
    ]);
    assert_eq!(r["targets"].as_array().unwrap().len(), 5);
    check("homa compare", &[r]);
}
