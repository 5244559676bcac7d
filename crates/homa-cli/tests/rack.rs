//! A short `homa rack` run: builds a two-host rack, runs Homa and TCP,
//! collects every host's results, and leaves nothing behind. Needs root
//! and `ip`, `tc`, `ethtool`: ignored by default, run by CI (`--ignored`),
//! failing with the reason where it cannot work.
#![allow(non_snake_case)]

use std::process::Command;

const HOMA: &str = env!("CARGO_BIN_EXE_homa");
const PREFIX: &str = "hrsmoke";

fn netns_list() -> String {
    String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip netns list")
            .stdout,
    )
    .to_string()
}

#[test]
#[ignore = "needs root, ip, tc and ethtool"]
fn rack__smoke_both_protocols_and_cleanup() {
    assert!(
        homa_lab::is_root(),
        "this test needs root (network namespaces)"
    );
    for tool in ["ip", "tc", "ethtool"] {
        assert!(homa_lab::have_tool(tool), "this test needs `{tool}`");
    }
    let hyst = "/sys/module/sch_htb/parameters/htb_hysteresis";
    let before = std::fs::read_to_string(hyst).ok();
    let out = std::env::temp_dir().join(format!("homa-rack-smoke-{}", std::process::id()));
    let o = Command::new(HOMA)
        .args(["rack", "--json", "--quiet", "--prefix", PREFIX])
        .args(["--hosts", "2", "--rate-mbit", "100", "--workload", "w3"])
        .args(["--load", "0.2", "--duration", "1", "--warmup", "0.3"])
        .args(["--base-duration", "0.5"])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run homa rack");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "homa rack failed:\n{stderr}");
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("rack prints JSON");
    let runs = r["runs"].as_array().unwrap();
    let names: Vec<&str> = runs
        .iter()
        .map(|x| x["protocol"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["homa", "tcp"]);
    for run in runs {
        let p = run["protocol"].as_str().unwrap();
        assert!(run["calls"].as_u64().unwrap() > 20, "{p}: {run}");
        assert!(
            run["summary"]["short"]["rtt_us"]["count"].as_u64().unwrap() > 0,
            "{p}"
        );
        // Every host's client wrote its results.
        for h in 1..=2 {
            assert!(out.join(format!("{p}-h{h}.rtts")).exists(), "{p}-h{h}.rtts");
            assert!(out.join(format!("{p}-h{h}.json")).exists());
            assert!(out.join(format!("{p}-h{h}-server-metrics.json")).exists());
        }
        // The unloaded RTT's pings (h1 to h2) went to a server of their own:
        // h2's workload server did not answer them (a Homa receiver would
        // have computed its priority cutoffs from them).
        let served = |h: usize| -> u64 {
            let f = out.join(format!("{p}-h{h}-server-metrics.json"));
            let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
            m["requests"].as_u64().unwrap()
        };
        let pings = r["base"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["protocol"].as_str() == Some(p))
            .and_then(|b| b["count"].as_u64())
            .unwrap();
        assert!(pings > 100, "{p}: {pings} pings");
        assert!(
            served(2) < served(1) + pings / 2,
            "{p}: h2's server answered {} requests, h1's {}, pings {pings}",
            served(2),
            served(1)
        );
        // Homa used its priority levels; TCP only precedence 0.
        let levels = run["switch"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["packets"].as_u64().unwrap() > 0)
            .count();
        if p == "homa" {
            assert!(levels >= 2, "{}", run["switch"]);
        } else {
            assert_eq!(levels, 1, "{}", run["switch"]);
        }
    }
    assert_eq!(r["base"].as_array().unwrap().len(), 2);
    assert!(r["base_rtt_us"].as_f64().unwrap() > 0.0);
    assert!(r["ratios"]["short_p99"].as_f64().unwrap() > 0.0);
    assert!(out.join("slowdown.svg").exists());
    assert!(
        !netns_list().contains(&format!("{PREFIX}-")),
        "namespaces left:\n{}",
        netns_list()
    );
    if let Some(b) = before {
        assert_eq!(
            std::fs::read_to_string(hyst).unwrap().trim(),
            b.trim(),
            "htb_hysteresis restored"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// Files in `/dev/shm` whose names start with `homa`.
fn shm_homa_files() -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("homa"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
#[ignore = "needs root, ip, tc and ethtool"]
fn rack__host_sharing_leaves_no_table_in_dev_shm() {
    // Each host namespace's Homa processes share a host table, a file in
    // `/dev/shm` named after the namespace; every run used to leave one per
    // host (the next run's namespaces have other names).
    assert!(
        homa_lab::is_root(),
        "this test needs root (network namespaces)"
    );
    let before = shm_homa_files();
    let out = std::env::temp_dir().join(format!("homa-rack-shm-{}", std::process::id()));
    let o = Command::new(HOMA)
        .args(["rack", "--json", "--quiet", "--prefix", "hrshm"])
        .args(["--hosts", "2", "--rate-mbit", "100", "--workload", "w3"])
        .args(["--load", "0.2", "--duration", "0.5", "--warmup", "0.2"])
        .args([
            "--base-duration",
            "0.3",
            "--protocols",
            "homa",
            "--host-sharing",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run homa rack");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "homa rack failed:\n{stderr}");
    // The hosts' servers used host-wide tables, in the lab's directory.
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("homa-h1-server-metrics.json")).unwrap())
            .unwrap();
    let host = &m["sockets"][0]["host"];
    assert_eq!(host["mode"], "host", "{m}");
    let path = host["path"].as_str().unwrap();
    assert!(path.starts_with("/dev/shm/homa-lab-hrshm/"), "{path}");
    assert!(!std::path::Path::new(path).exists(), "{path} left");
    let after = shm_homa_files();
    let left: Vec<&String> = after.iter().filter(|f| !before.contains(f)).collect();
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
    let _ = std::fs::remove_dir_all(&out);
}
