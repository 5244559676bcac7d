//! `homa-sim ... 2>&1 | head`: once the reader is gone, the simulator's
//! writes to stdout and stderr fail with `EPIPE`. That is no error: the run
//! ends normally, without a panic.
#![cfg(feature = "cli")]
#![allow(non_snake_case)]

use std::process::{Command, Stdio};

/// Runs `homa-sim <args>` with stdout (and, with `stderr`, stderr too) a
/// pipe whose reader has already gone away; its exit status and, when
/// stderr is still read, what it wrote there.
fn into_closed_pipe(args: &[&str], stderr: bool) -> (std::process::ExitStatus, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_homa-sim"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(c.stdout.take());
    if stderr {
        drop(c.stderr.take());
    }
    let o = c.wait_with_output().unwrap();
    (o.status, String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn homa_sim__quiet_when_its_reader_went_away() {
    let run: &[&str] = &[
        "-w",
        "w1",
        "-l",
        "0.5",
        "--duration",
        "1ms",
        "--no-progress",
    ];
    // A failing run writes its error to stderr too.
    let bad: &[&str] = &["-w", "w1", "-l=-1", "--duration", "1ms"];
    for (args, ok) in [(run, true), (bad, false)] {
        for stderr in [false, true] {
            let (status, err) = into_closed_pipe(args, stderr);
            assert_eq!(
                status.code(),
                Some(if ok { 0 } else { 2 }),
                "{args:?} (stderr closed too: {stderr}): {status}\n{err}"
            );
            assert!(
                !err.contains("panicked") && !err.contains("Broken pipe"),
                "{args:?}: {err}"
            );
        }
    }
}
