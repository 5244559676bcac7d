//! The README's commands, run as written: every fenced `sh` block is run
//! by bash (`-e`) in a scratch directory with the `homa` binary this test
//! run built first on `PATH` (what `cargo install` gives a user), on
//! loopback, bounded in time. The few lines that cannot run as written
//! inside `cargo test` are listed in [`EXEMPT`] with the reason and, where
//! it makes sense, a shortened stand-in that does run.
#![allow(non_snake_case)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const HOMA: &str = env!("CARGO_BIN_EXE_homa");

/// Seconds a block may take.
const BLOCK_LIMIT: u64 = 120;

/// `(README line, reason, stand-in run instead)`.
const EXEMPT: &[(&str, &str, Option<&str>)] = &[
    (
        "cargo install --path crates/homa-cli",
        "installs into ~/.cargo/bin; this test puts the binary cargo just built on PATH instead",
        None,
    ),
    (
        "cargo run --release -p homa-cli -- compare",
        "a minute or two, and cargo cannot run inside cargo test (the build directory is locked): the same command, shortened",
        Some("homa compare --reps 1 --duration 100ms --warmup 20ms"),
    ),
    (
        "cargo test --workspace --release",
        "the test suite itself",
        None,
    ),
    (
        "cargo test --workspace --release -- --ignored",
        "the root-only half of the test suite itself (.ci/run runs it)",
        None,
    ),
    (
        "cargo build --release -p homa-capi",
        "cargo cannot run inside cargo test; the library is built by this test run, and crates/homa-capi/tests/c_echo.rs compiles and runs the same echo pair with gcc",
        None,
    ),
    (
        "sudo homa rack --workload w4 --load 0.8",
        "needs root and about a minute: run shortened by readme__rack_command_shortened (ignored unless root)",
        None,
    ),
];

/// Lines of blocks that depend on an exempt line (the C echo pair needs
/// the library `cargo build` makes).
const EXEMPT_WITH: &[(&str, &str)] = &[
    ("gcc ", "cargo build --release -p homa-capi"),
    ("./echo_server ", "cargo build --release -p homa-capi"),
    ("./echo_client ", "cargo build --release -p homa-capi"),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The fenced `sh` blocks of the README, each as its lines.
fn sh_blocks() -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut cur: Option<Vec<String>> = None;
    for line in text.lines() {
        match (&mut cur, line.trim_end()) {
            (None, "```sh") => cur = Some(Vec::new()),
            (Some(_), "```") => blocks.push(cur.take().unwrap()),
            (Some(b), l) => b.push(l.to_string()),
            _ => {}
        }
    }
    blocks
}

#[test]
fn readme__sh_blocks_run_as_written() {
    let blocks = sh_blocks();
    assert!(blocks.len() >= 6, "the README lost its commands");
    let mut used = vec![false; EXEMPT.len()];
    let bin_dir = Path::new(HOMA).parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let scratch = std::env::temp_dir().join(format!("homa-readme-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let mut ran = 0;
    for block in &blocks {
        let mut script = Vec::new();
        for line in block {
            let l = line.trim();
            if let Some(i) = EXEMPT.iter().position(|(e, _, _)| *e == l) {
                used[i] = true;
                if let Some(stand_in) = EXEMPT[i].2 {
                    script.push(stand_in.to_string());
                }
                continue;
            }
            if let Some((_, dep)) = EXEMPT_WITH.iter().find(|(p, _)| l.starts_with(p)) {
                assert!(
                    block.iter().any(|b| b.trim() == *dep),
                    "{l:?} is exempt only next to {dep:?}"
                );
                continue;
            }
            script.push(line.clone());
        }
        if script.iter().all(|l| l.trim().is_empty()) {
            continue;
        }
        let text = script.join("\n");
        let t = Instant::now();
        let out = Command::new("timeout")
            .arg(BLOCK_LIMIT.to_string())
            .args(["bash", "-e", "-c", &text])
            .current_dir(&scratch)
            .env("PATH", &path)
            .output()
            .expect("bash and timeout are installed");
        assert!(
            out.status.success(),
            "README block failed ({:?} after {:.1} s):\n{text}\n--- stdout:\n{}\n--- stderr:\n{}",
            out.status,
            t.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(t.elapsed() < Duration::from_secs(BLOCK_LIMIT));
        ran += 1;
    }
    for (i, u) in used.iter().enumerate() {
        assert!(u, "exempt line no longer in the README: {:?}", EXEMPT[i].0);
    }
    // What the blocks promise exists.
    for f in [
        "w4.svg",
        "w3.svg",
        "w3.json",
        "w3-again.svg",
        "metrics.json",
    ] {
        assert!(scratch.join(f).exists(), "{f} not written");
    }
    assert!(ran >= 5, "only {ran} blocks ran");
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
#[ignore = "needs root (network namespaces) and the ip, tc, ethtool and sysctl commands"]
fn readme__rack_command_shortened() {
    let out = std::env::temp_dir().join(format!("homa-readme-rack-{}", std::process::id()));
    let o = Command::new(HOMA)
        .args([
            "rack",
            "--workload",
            "w4",
            "--load",
            "0.8",
            "--prefix",
            "hrreadme",
        ])
        .args([
            "--hosts",
            "2",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--base-duration",
            "300ms",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("tcp/homa"));
    let _ = std::fs::remove_dir_all(&out);
}
