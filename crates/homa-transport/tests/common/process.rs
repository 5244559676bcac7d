//! Example programs run as separate processes by the tests.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};

/// The path of example `name`, built next to the test binary (`cargo test`
/// builds the examples; a single `--test` target does not).
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/<profile>/examples/<name>
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("examples").join(name))
        .unwrap();
    assert!(
        path.is_file(),
        "{} not built: run `cargo build --release -p homa-transport --examples` first",
        path.display()
    );
    path
}

/// A running example program whose standard output is read line by line.
pub struct Process {
    pub child: Child,
    out: BufReader<ChildStdout>,
}

impl Process {
    /// Spawns `cmd` (stdout piped) with `spawn`, e.g. `Lab::spawn` to start
    /// it in a namespace, and waits for its `listening on` line.
    pub fn start<E: std::fmt::Debug>(
        mut cmd: Command,
        spawn: impl FnOnce(&mut Command) -> Result<Child, E>,
    ) -> Process {
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = spawn(&mut cmd).unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut p = Process { child, out };
        p.wait_line("listening on");
        p
    }

    /// Reads lines until one starts with `prefix`; returns the rest of it.
    pub fn wait_line(&mut self, prefix: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.out.read_line(&mut line).unwrap();
            assert!(n > 0, "the process exited before printing {prefix:?}");
            if let Some(rest) = line.trim_end().strip_prefix(prefix) {
                return rest.trim().to_string();
            }
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
