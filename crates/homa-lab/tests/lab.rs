//! Lab tests: they need root and `ip`/`tc` (and `nft`), so they are ignored
//! by default; CI runs them with `--ignored`.
#![allow(non_snake_case)]

use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::process::Command;
use std::time::Duration;

use homa_lab::{Lab, Shaper};

/// A lab, or a failure saying what the test needs (these tests are
/// ignored by default; CI runs them as root with the tools installed).
fn lab(prefix: &str) -> Lab {
    Lab::new(prefix).expect("this test needs root and the ip and tc tools")
}

fn netns_list() -> String {
    String::from_utf8(
        Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
}

/// Sends `n` datagrams with TOS `tos` from a thread inside `from` to
/// `to_addr`, and counts those a thread inside `to` receives.
fn blast(lab: &Lab, from: &str, to: &str, to_addr: &str, n: usize, tos: u8) -> usize {
    let bind = format!("{to_addr}:7777");
    let (tx, rx) = std::sync::mpsc::channel();
    let server = lab
        .in_namespace(to, move || {
            let s = UdpSocket::bind(bind).unwrap();
            // Room for every datagram even if this thread is not scheduled
            // until the sender is done (a busy machine), so that only the
            // lab's own drops lose datagrams (root: the FORCE variant).
            homa_sys::udp::set_buffer(s.as_fd(), homa_sys::udp::Buffer::Receive, 32 << 20).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(1000)))
                .unwrap();
            tx.send(()).unwrap();
            let mut buf = [0u8; 100];
            let mut got = 0;
            while s.recv(&mut buf).is_ok() {
                got += 1;
            }
            got
        })
        .unwrap();
    rx.recv().unwrap();
    let target = format!("{to_addr}:7777");
    lab.in_namespace(from, move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        homa_sys::udp::TosOption::Ipv4.set(s.as_fd(), tos).unwrap();
        for i in 0..n {
            s.send_to(&[i as u8; 64], &target).unwrap();
            if i % 64 == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    })
    .unwrap()
    .join()
    .unwrap();
    server.join().unwrap()
}

#[test]
#[ignore = "needs root and ip"]
fn lab__namespaces_link_and_vanish_on_drop() {
    let mut lab = lab("hl-basic");
    let a = lab.namespace("a").unwrap();
    let b = lab.namespace("b").unwrap();
    lab.link(&a, "10.71.0.1/24", &b, "10.71.0.2/24").unwrap();
    assert!(netns_list().contains("hl-basic-a"));
    assert_eq!(blast(&lab, &a, &b, "10.71.0.2", 100, 0), 100);
    drop(lab);
    assert!(!netns_list().contains("hl-basic-"), "namespaces removed");
}

#[test]
#[ignore = "needs root and ip"]
fn lab__leftovers_of_a_killed_run_are_removed() {
    let mut lab = lab("hl-stale");
    lab.namespace("x").unwrap();
    // Simulate a killed run: forget the lab without cleanup.
    std::mem::forget(lab);
    assert!(netns_list().contains("hl-stale-x"));
    let lab = Lab::new("hl-stale").unwrap();
    assert!(lab.existing().unwrap().is_empty());
}

#[test]
#[ignore = "needs root and ip and nft"]
fn random_loss__drops_about_the_configured_share() {
    let mut lab = lab("hl-loss");
    assert!(homa_lab::have_tool("nft"), "this test needs nft");
    let a = lab.namespace("a").unwrap();
    let b = lab.namespace("b").unwrap();
    lab.link(&a, "10.72.0.1/24", &b, "10.72.0.2/24").unwrap();
    lab.random_loss(&b, 20).unwrap();
    let got = blast(&lab, &a, &b, "10.72.0.2", 4000, 0);
    // 3200 expected; ±200 is more than 6 standard deviations.
    assert!((3000..=3400).contains(&got), "{got} of 4000 arrived");
    assert_eq!(lab.loss_count(&b).unwrap(), 4000 - got as u64);
}

#[test]
#[ignore = "needs root and ip and tc"]
fn shaper__classifies_by_ip_precedence_and_restores_htb_setting() {
    let mut lab = lab("hl-shape");
    let hyst = "/sys/module/sch_htb/parameters/htb_hysteresis";
    let before = std::fs::read_to_string(hyst).ok();
    let h = lab.namespace("h").unwrap();
    let sw = lab.namespace("sw").unwrap();
    let (_, sw_if) = lab.link(&h, "10.73.0.1/24", &sw, "10.73.0.2/24").unwrap();
    // Shape the switch's port back toward the host; traffic from the switch
    // namespace to the host goes through it.
    lab.shape_priorities(&sw, &sw_if, &Shaper::new(100))
        .unwrap();
    assert_eq!(blast(&lab, &sw, &h, "10.73.0.1", 50, 0xe0), 50);
    assert_eq!(blast(&lab, &sw, &h, "10.73.0.1", 30, 0x20), 30);
    let out = lab
        .exec(&sw, "tc", &["-s", "class", "show", "dev", &sw_if])
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let sent = |class: &str| -> u64 {
        let i = text.find(&format!("class htb {class} ")).unwrap();
        let rest = &text[i..];
        let j = rest.find("Sent ").unwrap();
        rest[j + 5..].split(' ').nth(2).unwrap().parse().unwrap()
    };
    assert!(sent("1:17") >= 50, "precedence 7 class:\n{text}");
    assert!(sent("1:11") >= 30, "precedence 1 class:\n{text}");
    if before.is_some() {
        assert_eq!(std::fs::read_to_string(hyst).unwrap().trim(), "1");
    }
    drop(lab);
    if let Some(b) = before {
        assert_eq!(
            std::fs::read_to_string(hyst).unwrap().trim(),
            b.trim(),
            "restored"
        );
    }
}

#[test]
#[ignore = "needs root and ip"]
fn set_global__restored_on_drop_and_after_a_killed_run() {
    let mut lab = lab("hl-global");
    let path = std::env::temp_dir().join(format!("hl-global-{}", std::process::id()));
    let p = path.to_str().unwrap().to_string();
    std::fs::write(&path, "original\n").unwrap();
    lab.set_global(&p, "changed").unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "changed");
    drop(lab);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "original");
    // A run killed outright: the next lab with the prefix restores it.
    let mut lab = Lab::new("hl-global").unwrap();
    lab.set_global(&p, "changed").unwrap();
    std::mem::forget(lab);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "changed");
    let lab = Lab::new("hl-global").unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "original");
    drop(lab);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "original");
    let _ = std::fs::remove_file(&path);
}

#[test]
#[ignore = "needs root and ip"]
fn cleanup__kills_what_still_runs_in_the_namespaces() {
    let mut lab = lab("hl-procs");
    let ns = lab.namespace("a").unwrap();
    let mut child = lab
        .command(&ns, "sleep")
        .unwrap()
        .arg("30")
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(child.try_wait().unwrap().is_none(), "running");
    drop(lab);
    // Reaped here: killed by the cleanup, not by us.
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(!netns_list().contains("hl-procs-"));
}

/// SIGTERM to a process holding a lab removes the lab before it exits
/// (the `hold` example, with `install_signal_cleanup`).
#[test]
#[ignore = "needs root and ip"]
fn signal_cleanup__sigterm_removes_the_lab_and_exits_130() {
    use std::io::{BufRead, BufReader};
    assert!(homa_lab::is_root(), "this test needs root");
    // target/<profile>/deps/<test> -> target/<profile>/examples/hold
    let exe = std::env::current_exe().unwrap();
    let hold = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/hold");
    assert!(
        hold.is_file(),
        "build the examples first: {}",
        hold.display()
    );
    let mut child = Command::new(hold)
        .arg("hl-signal")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready hl-signal-held");
    assert!(netns_list().contains("hl-signal-held"));
    homa_sys::process::terminate(child.id() as i32).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(!netns_list().contains("hl-signal-held"), "{}", netns_list());
}
