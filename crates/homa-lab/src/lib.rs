//! # homa-lab
//!
//! Small network labs built from Linux network namespaces on one machine:
//! hosts, veth links, a routing "switch" namespace whose ports can be shaped
//! with strict-priority classes keyed on the IP precedence (the top three
//! bits of the TOS byte, where Homa puts its priority), random loss with
//! nftables, and code run inside a namespace from the current process.
//!
//! A [`Lab`] owns everything it creates and every machine-wide setting it
//! changes: dropping it (normally, or while a panic unwinds) deletes its
//! namespaces and restores the settings, and [`install_signal_cleanup`]
//! extends that to Ctrl-C and SIGTERM. Namespaces are named
//! `<prefix>-<name>`; a new lab first deletes leftovers with its prefix from
//! a run that was killed outright, and restores the machine-wide settings
//! that run recorded in `/run/homa-lab/<prefix>.restore`.
//!
//! Its system calls are `homa-sys`'s; it contains no `unsafe` code.
//!
//! Everything here needs root (`CAP_SYS_ADMIN` and `CAP_NET_ADMIN`) and the
//! `ip` and `tc` tools (`nft` for loss, `ethtool` for offload settings).
//! [`Lab::new`] returns [`Error::NotRoot`] (or [`Error::MissingTool`])
//! otherwise; tests that need a lab are `#[ignore = "needs root and ..."]`
//! and fail with that error when run where they cannot work.
//!
//! Programs started in a namespace with [`Lab::command`] die with the
//! thread that started them, and cleanup kills whatever still runs in the
//! lab's namespaces before deleting them.
//!
//! This crate does not: configure Homa, generate traffic, or measure; it
//! only builds and removes the network.

#![warn(missing_docs)]
#![warn(unreachable_pub)]
#![forbid(unsafe_code)]

use std::fs;
use std::io;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;

/// Errors building or using a lab.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Labs need root.
    #[error("network labs need root (euid 0)")]
    NotRoot,
    /// A tool the lab needs is not installed.
    #[error("required tool `{0}` not found in PATH")]
    MissingTool(&'static str),
    /// A command failed.
    #[error("`{cmd}` failed: {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// An I/O error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io(e) => e,
            other => io::Error::other(other),
        }
    }
}

/// Result of lab operations.
pub type Result<T> = core::result::Result<T, Error>;

/// What a signal handler must undo: namespaces to delete and files to
/// restore, for every live lab.
static REGISTRY: Mutex<Vec<Cleanup>> = Mutex::new(Vec::new());

#[derive(Debug, Clone, PartialEq, Eq)]
enum Cleanup {
    Namespace(String),
    Restore {
        path: String,
        value: String,
    },
    /// The file recording settings to restore after a run killed outright.
    StateFile(String),
    /// A directory the lab's processes write into (with its contents).
    Directory(String),
}

/// Where a lab records the original values of the machine-wide settings it
/// changed, so that a lab with the same prefix restores them after a run
/// that was killed outright (SIGKILL leaves no chance to clean up).
fn state_file(prefix: &str) -> String {
    format!("/run/homa-lab/{prefix}.restore")
}

/// Restores the settings a killed run with this prefix recorded.
fn restore_from_state_file(prefix: &str) {
    let path = state_file(prefix);
    if let Ok(text) = fs::read_to_string(&path) {
        for line in text.lines() {
            if let Some((setting, value)) = line.split_once('\t') {
                let _ = fs::write(setting, value);
            }
        }
        let _ = fs::remove_file(&path);
    }
}

fn register(c: Cleanup) {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner()).push(c);
}

fn unregister(c: &Cleanup) {
    let mut r = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = r.iter().position(|x| x == c) {
        r.remove(i);
    }
}

/// Kills (SIGKILL) every process inside namespace `ns` and waits up to a
/// second for them to go. A lab's namespaces hold only what the lab
/// started, and a namespace outlives `ip netns del` while any process
/// still runs in it.
fn kill_namespace_processes(ns: &str) {
    for _ in 0..100 {
        let pids = Command::new("ip")
            .args(["netns", "pids", ns])
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        let pids: Vec<i32> = pids
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            let _ = homa_sys::process::kill(pid);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn run_cleanup(c: &Cleanup) {
    match c {
        Cleanup::Namespace(ns) => {
            kill_namespace_processes(ns);
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        Cleanup::Restore { path, value } => {
            let _ = fs::write(path, value);
        }
        Cleanup::StateFile(path) => {
            let _ = fs::remove_file(path);
        }
        Cleanup::Directory(path) => {
            let _ = fs::remove_dir_all(path);
        }
    }
}

/// Makes SIGINT and SIGTERM undo every live lab before the process exits
/// (status 130): a thread waits for them (`signal-hook`) and runs the
/// cleanups. Call it early in `main`.
pub fn install_signal_cleanup() -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("homa-lab-signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                let all: Vec<Cleanup> = REGISTRY
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .drain(..)
                    .collect();
                for c in all.iter().rev() {
                    run_cleanup(c);
                }
                eprintln!("interrupted: lab removed");
                std::process::exit(130);
            }
        })?;
    Ok(())
}

/// True if the process runs as root.
pub fn is_root() -> bool {
    homa_sys::process::is_root()
}

/// True if `tool` is an executable in `PATH`.
pub fn have_tool(tool: &str) -> bool {
    have(tool)
}

fn have(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// Runs a command, failing with its stderr.
fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(Error::Command {
            cmd: format!("{cmd:?}"),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

/// Strict-priority shaping of one interface's egress (see
/// [`Lab::shape_priorities`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Shaper {
    /// Line rate in Mbit/s.
    pub rate_mbit: u64,
    /// Burst of the root class, in bytes: smaller bursts let the top
    /// class preempt sooner (16 KiB measured ~80 µs waits, 64 KiB ~300 µs).
    pub root_burst: u32,
    /// Burst of each leaf class, in bytes (htb needs ~64 KiB to reach its
    /// rate with GSO-sized packets).
    pub leaf_burst: u32,
    /// Rate guaranteed to precedence 7 (control and the shortest
    /// messages), in Mbit/s; it preempts the others quickly.
    pub top_rate_mbit: u64,
    /// Byte limit of each leaf queue (`bfifo`; a packet-count limit would
    /// count a 64 KB GSO packet as one).
    pub queue_bytes: u32,
}

impl Shaper {
    /// Defaults measured on the development machines: 16 KiB
    /// root burst, 64 KiB leaf bursts, 10% of the line guaranteed to the
    /// top precedence, 1 MB of queue per class.
    pub fn new(rate_mbit: u64) -> Shaper {
        Shaper {
            rate_mbit,
            root_burst: 16 * 1024,
            leaf_burst: 64 * 1024,
            top_rate_mbit: (rate_mbit / 10).max(1),
            queue_bytes: 1_000_000,
        }
    }
}

/// A set of network namespaces and the settings changed for them; all of
/// it is undone on drop.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    cleanups: Vec<Cleanup>,
    next_if: u32,
}

impl Lab {
    /// A new, empty lab whose namespaces are named `<prefix>-<name>`.
    /// Namespaces left over with that prefix (from a killed run) are
    /// deleted first.
    pub fn new(prefix: &str) -> Result<Lab> {
        if !is_root() {
            return Err(Error::NotRoot);
        }
        for tool in ["ip", "tc"] as [&'static str; 2] {
            if !have(tool) {
                return Err(Error::MissingTool(tool));
            }
        }
        let lab = Lab {
            prefix: prefix.to_string(),
            cleanups: Vec::new(),
            next_if: 0,
        };
        for ns in lab.existing()? {
            run_cleanup(&Cleanup::Namespace(ns));
        }
        // What a run killed outright left in memory-backed files.
        run_cleanup(&Cleanup::Directory(lab.shm_dir_path()));
        restore_from_state_file(prefix);
        Ok(lab)
    }

    fn shm_dir_path(&self) -> String {
        format!("/dev/shm/homa-lab-{}", self.prefix)
    }

    /// A directory in `/dev/shm` (mode 0700) for files the lab's processes
    /// share through memory, such as Homa's host tables (point
    /// `HOMA_HOST_DIR` at it): deleted with the lab, and at the start of
    /// the next lab with this prefix after a run killed outright. Without
    /// it every host namespace of every run left its table behind (a
    /// table is named after its namespace, which the next run does not
    /// reuse).
    pub fn shm_dir(&mut self) -> Result<std::path::PathBuf> {
        use std::os::unix::fs::DirBuilderExt;
        let path = self.shm_dir_path();
        if !self.cleanups.contains(&Cleanup::Directory(path.clone())) {
            fs::DirBuilder::new().mode(0o700).create(&path)?;
            self.track(Cleanup::Directory(path.clone()));
        }
        Ok(path.into())
    }

    /// Namespaces with this lab's prefix that exist now.
    pub fn existing(&self) -> Result<Vec<String>> {
        let out = run(Command::new("ip").args(["netns", "list"]))?;
        let want = format!("{}-", self.prefix);
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&want))
            .map(str::to_string)
            .collect())
    }

    /// The full name of the lab's namespace `name`.
    pub fn ns_name(&self, name: &str) -> String {
        format!("{}-{}", self.prefix, name)
    }

    fn track(&mut self, c: Cleanup) {
        register(c.clone());
        self.cleanups.push(c);
    }

    /// Creates namespace `name` (loopback up). Returns its full name.
    pub fn namespace(&mut self, name: &str) -> Result<String> {
        let ns = self.ns_name(name);
        run(Command::new("ip").args(["netns", "add", &ns]))?;
        self.track(Cleanup::Namespace(ns.clone()));
        self.ip(&ns, &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs `ip -n <ns> <args>`.
    pub fn ip(&self, ns: &str, args: &[&str]) -> Result<Output> {
        run(Command::new("ip").arg("-n").arg(ns).args(args))
    }

    /// Runs a program inside namespace `ns` and waits for it.
    pub fn exec(&self, ns: &str, program: &str, args: &[&str]) -> Result<Output> {
        run(Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args))
    }

    /// A command that runs `program` inside namespace `ns`, for the caller
    /// to add arguments and stdio to and spawn. The child enters the
    /// namespace itself before exec (so its pid is the program's, and
    /// killing the [`Child`] kills the program), and is killed if the
    /// thread that spawned it dies (`PR_SET_PDEATHSIG`), so a lab process
    /// killed outright leaves no programs behind. The lab's cleanup also
    /// kills whatever still runs in its namespaces.
    pub fn command(&self, ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Result<Command> {
        let file = fs::File::open(format!("/var/run/netns/{ns}"))?;
        let mut c = Command::new(program);
        homa_sys::process::command_in_netns(&mut c, file, true);
        Ok(c)
    }

    /// Starts a program inside namespace `ns` (stdio inherited unless set
    /// on `cmd`). The child enters the namespace itself before exec, so
    /// its pid is the program's: killing the [`Child`] kills the program
    /// (`ip netns exec` would fork and leave it running).
    pub fn spawn(&self, ns: &str, cmd: &mut Command) -> Result<Child> {
        let file = fs::File::open(format!("/var/run/netns/{ns}"))?;
        homa_sys::process::command_in_netns(cmd, file, false);
        Ok(cmd.spawn()?)
    }

    /// Connects namespaces `a` and `b` with a veth pair and gives each end
    /// an address (CIDR notation, e.g. `10.0.0.1/24`). Returns the interface
    /// names in `a` and `b`.
    pub fn link(
        &mut self,
        a: &str,
        a_addr: &str,
        b: &str,
        b_addr: &str,
    ) -> Result<(String, String)> {
        self.next_if += 1;
        let (ia, ib) = (
            format!("hl{}a", self.next_if),
            format!("hl{}b", self.next_if),
        );
        run(Command::new("ip").args([
            "link", "add", &ia, "netns", a, "type", "veth", "peer", "name", &ib, "netns", b,
        ]))?;
        for (ns, dev, addr) in [(a, &ia, a_addr), (b, &ib, b_addr)] {
            if !addr.is_empty() {
                let family = if addr.contains(':') { "-6" } else { "-4" };
                self.ip(ns, &[family, "addr", "add", addr, "dev", dev, "nodad"])
                    .or_else(|_| self.ip(ns, &[family, "addr", "add", addr, "dev", dev]))?;
            }
            self.ip(ns, &["link", "set", dev, "up"])?;
        }
        Ok((ia, ib))
    }

    /// Sets a sysctl inside namespace `ns` (namespaced sysctls vanish with
    /// the namespace).
    pub fn sysctl(&self, ns: &str, key: &str, value: &str) -> Result<()> {
        self.exec(ns, "sysctl", &["-q", "-w", &format!("{key}={value}")])?;
        Ok(())
    }

    /// Writes a machine-wide setting (a `/proc` or `/sys` file), restoring
    /// its old value when the lab goes away.
    pub fn set_global(&mut self, path: &str, value: &str) -> Result<()> {
        let old = fs::read_to_string(path)?.trim().to_string();
        if old != value {
            self.record_original(path, &old);
        }
        fs::write(path, value)?;
        if old != value {
            self.track(Cleanup::Restore {
                path: path.to_string(),
                value: old,
            });
        }
        Ok(())
    }

    /// Appends `path`'s original value to the lab's state file (best
    /// effort: without `/run` the setting is still restored on drop and on
    /// signals, only not after SIGKILL).
    fn record_original(&mut self, path: &str, old: &str) {
        use std::io::Write as _;
        let file = state_file(&self.prefix);
        if !self
            .cleanups
            .iter()
            .any(|c| matches!(c, Cleanup::StateFile(_)))
        {
            if fs::create_dir_all("/run/homa-lab").is_err() {
                return;
            }
            // Tracked before the restores, so removed after them.
            self.track(Cleanup::StateFile(file.clone()));
        }
        if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(&file) {
            let _ = writeln!(f, "{path}\t{old}");
        }
    }

    /// Drops `percent`% of UDP packets arriving in namespace `ns`, at
    /// random (nftables `numgen random`).
    pub fn random_loss(&self, ns: &str, percent: u32) -> Result<()> {
        if !have("nft") {
            return Err(Error::MissingTool("nft"));
        }
        self.exec(ns, "nft", &["add", "table", "inet", "homalab"])?;
        self.exec(
            ns,
            "nft",
            &[
                "add",
                "chain",
                "inet",
                "homalab",
                "input",
                "{ type filter hook input priority 0; }",
            ],
        )?;
        let rule = format!("meta l4proto udp numgen random mod 100 < {percent} counter drop");
        let mut args = vec!["add", "rule", "inet", "homalab", "input"];
        args.extend(rule.split(' '));
        self.exec(ns, "nft", &args)?;
        Ok(())
    }

    /// Packets [`Lab::random_loss`] has dropped in namespace `ns` so far.
    pub fn loss_count(&self, ns: &str) -> Result<u64> {
        let out = self.exec(ns, "nft", &["list", "chain", "inet", "homalab", "input"])?;
        let text = String::from_utf8_lossy(&out.stdout);
        let n = text
            .split("counter packets ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Ok(n)
    }

    /// Shapes the egress of interface `dev` in namespace `ns` to the line
    /// rate with eight strict-priority htb classes, one per IP precedence
    /// (TOS bits 7..5): class `1:1p` has htb priority `7 - p`, so
    /// precedence 7 is served first. IPv4 is classified with u32 filters on
    /// the TOS byte; everything else falls into precedence 0. Also switches
    /// htb to hysteresis mode machine-wide (restored on drop): without it
    /// htb fires a timer per packet at 1 Gbit/s and saturates a core
    /// before its queues form.
    pub fn shape_priorities(&mut self, ns: &str, dev: &str, s: &Shaper) -> Result<()> {
        let hyst = "/sys/module/sch_htb/parameters/htb_hysteresis";
        if fs::metadata(hyst).is_ok() {
            self.set_global(hyst, "1")?;
        }
        let tc = |args: &[&str]| -> Result<()> {
            self.exec(ns, "tc", args)?;
            Ok(())
        };
        let rate = format!("{}mbit", s.rate_mbit);
        tc(&[
            "qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb", "default", "10",
        ])?;
        // An htb class: `rate` guaranteed, up to `ceil`, bursts of `burst`
        // bytes, then any extra arguments.
        let add_class =
            |parent: &str, id: &str, rate: &str, ceil: &str, burst: u32, extra: &[&str]| {
                let burst = burst.to_string();
                let mut args = vec![
                    "class", "add", "dev", dev, "parent", parent, "classid", id, "htb", "rate",
                    rate, "ceil", ceil, "burst", &burst, "cburst", &burst,
                ];
                args.extend_from_slice(extra);
                tc(&args)
            };
        add_class("1:", "1:1", &rate, &rate, s.root_burst, &[])?;
        for p in 0..8u32 {
            let leaf = format!("1:1{p}");
            let guaranteed = if p == 7 {
                format!("{}mbit", s.top_rate_mbit)
            } else {
                "1mbit".to_string()
            };
            let prio = (7 - p).to_string();
            add_class(
                "1:1",
                &leaf,
                &guaranteed,
                &rate,
                s.leaf_burst,
                &["prio", &prio],
            )?;
            tc(&[
                "qdisc",
                "add",
                "dev",
                dev,
                "parent",
                &leaf,
                "handle",
                &format!("{}:", 20 + p),
                "bfifo",
                "limit",
                &s.queue_bytes.to_string(),
            ])?;
            let tos = format!("0x{:02x}", p << 5);
            tc(&[
                "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32",
                "match", "ip", "tos", &tos, "0xe0", "flowid", &leaf,
            ])?;
        }
        Ok(())
    }

    /// Sets an interface's offloads with ethtool: segmentation offload
    /// (TSO/GSO) on or off (off on a routing switch's egress, so GSO
    /// super-packets are shaped and delivered packet by packet), receive
    /// GRO on (veth defaults to off; without it the receiving host gets no
    /// coalesced batches), and UDP GRO forwarding as asked (needed for
    /// UDP batches to coalesce on veth).
    pub fn offloads(&self, ns: &str, dev: &str, tso: bool, gro_forwarding: bool) -> Result<()> {
        if !have("ethtool") {
            return Err(Error::MissingTool("ethtool"));
        }
        let onoff = |b: bool| if b { "on" } else { "off" };
        self.exec(
            ns,
            "ethtool",
            &["-K", dev, "tso", onoff(tso), "gso", onoff(tso)],
        )?;
        self.exec(
            ns,
            "ethtool",
            &[
                "-K",
                dev,
                "gro",
                "on",
                "rx-gro-list",
                "off",
                "rx-udp-gro-forwarding",
                onoff(gro_forwarding),
            ],
        )
        .or_else(|_| self.exec(ns, "ethtool", &["-K", dev, "gro", "on"]))?;
        Ok(())
    }

    /// Runs `f` on a new thread that has entered namespace `ns`: sockets it
    /// creates live in that namespace. Returns the thread's handle.
    pub fn in_namespace<T, F>(&self, ns: &str, f: F) -> Result<std::thread::JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let path = format!("/var/run/netns/{ns}");
        let file = fs::File::open(&path)?;
        let handle = std::thread::Builder::new()
            .name(format!("in-{ns}"))
            .spawn(move || {
                homa_sys::process::enter_netns(&file)
                    .unwrap_or_else(|e| panic!("setns into {path}: {e}"));
                drop(file);
                f()
            })?;
        Ok(handle)
    }

    /// Deletes everything the lab created and restores what it changed
    /// (also done on drop).
    pub fn cleanup(&mut self) {
        for c in self.cleanups.drain(..).rev() {
            run_cleanup(&c);
            unregister(&c);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.cleanup();
    }
}
