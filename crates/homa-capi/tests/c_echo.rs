//! The C echo server and client (`c/`) compiled with gcc against the
//! library this crate builds, run as two processes on loopback.
#![allow(non_snake_case)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The directory holding `libhoma_capi.so` for this build profile: the
/// test executable lives in `<target>/<profile>/deps/`, where `cargo test`
/// leaves the library too; `cargo build` also copies it one level up.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap().to_path_buf();
    let candidates = [deps.clone(), deps.parent().unwrap().to_path_buf()];
    candidates
        .iter()
        .find(|d| d.join("libhoma_capi.so").exists())
        .unwrap_or_else(|| panic!("no libhoma_capi.so in {} or its parent", deps.display()))
        .clone()
}

fn gcc(src: &str, out: &Path) {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = lib_dir();
    let st = Command::new("gcc")
        .args([
            "-std=c11",
            "-O1",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-D_POSIX_C_SOURCE=200809L",
        ])
        .arg("-I")
        .arg(crate_dir.join("include"))
        .arg(crate_dir.join("c").join(src))
        .arg("-o")
        .arg(out)
        .arg("-L")
        .arg(&lib)
        .arg("-lhoma_capi")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .status()
        .expect("gcc is installed");
    assert!(st.success(), "gcc {src} failed");
}

#[test]
fn c_echo__server_and_client_on_loopback() {
    let dir = std::env::temp_dir().join(format!("homa-capi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (server_bin, client_bin) = (dir.join("echo_server"), dir.join("echo_client"));
    gcc("echo_server.c", &server_bin);
    gcc("echo_client.c", &client_bin);
    let mut server = Command::new(&server_bin)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("server said {line:?}"))
        .to_string();
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let out = Command::new(&client_bin)
        .args([addr.as_str(), "200", dead.as_str()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("ok 200"), "{text}");
    assert!(text.contains("destination port unreachable"), "{text}");
    assert!(
        server.wait().unwrap().success(),
        "the server exits after quit"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
