//! The command-line front end (feature `cli`): the options of one
//! experiment as a `clap::Args` struct, and [`execute`], which runs it with a
//! progress bar and writes the results. The `homa-sim` binary is a thin
//! wrapper; the `homa` command can flatten [`SimArgs`] into its `sim`
//! subcommand and call [`execute`].

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant as WallClock;

use clap::ValueEnum;
use homa_workload::{SizeSpec, Variant};

use crate::config::parse_duration;
use crate::time::us;
use crate::{
    report, CaptureParams, Cutoffs, LoadModel, Mode, NicMode, Progress, Results, SimConfig,
    SimError, Simulator, Slowdown,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Why [`execute`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// Bad options or configuration.
    #[error(transparent)]
    Sim(#[from] SimError),
    /// A results file could not be written.
    #[error("{path}: {source}", path = .0.display(), source = .1)]
    Io(PathBuf, std::io::Error),
}

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// One-way messages, nothing back (the paper).
    OneWay,
    /// Requests answered by a minimal response (Linux-Homa-style RPCs).
    Request,
    /// Request/response with echoed responses.
    Rpc,
}

/// `--variant`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VariantArg {
    /// The kernel's tables, uncapped.
    Raw,
    /// The kernel benchmark's CDF, capped at 1 MB.
    CpNode,
    /// What the paper's simulator draws (W1's tail, W5 in 1442-byte packets).
    Paper,
}

/// `--cutoffs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CutoffsArg {
    /// Computed from the workload (the paper).
    Workload,
    /// homa-proto's automatic cutoffs.
    Auto,
}

/// `--nic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NicArg {
    /// Ask the endpoint for a packet when the link frees.
    Pull,
    /// Drain the endpoint into a FIFO NIC queue.
    Push,
}

/// `--load-model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoadArg {
    /// homa-proto's DATA packets on the wire (responses included).
    Data,
    /// homa-proto's DATA packets, responses not counted.
    DataRequests,
    /// The paper's DATA and GRANT bytes with its header sizes.
    Paper,
}

/// `--slowdown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SlowdownArg {
    /// This network's unloaded time with homa-proto's packets.
    Analytic,
    /// The paper's formula.
    Paper,
}

/// Options of one simulated experiment (`homa-sim`, `homa sim`).
///
/// Options left out take the profile's value: the default (Linux-Homa-like)
/// profile, or the SIGCOMM 2018 paper's setup with `--paper`. The topology
/// is the paper's in both: 144 hosts in 9 racks, 10/40 Gbit/s, 4
/// aggregation switches.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Start from the paper's setup by definition (one-way messages, its
    /// load accounting and slowdown, per-packet host delays, its priority
    /// split, no FIFO grants, W1 with its tail); other options override it.
    #[arg(long)]
    pub paper: bool,
    /// Workload: w1..w5, starve, or a fixed size in bytes.
    #[arg(short, long, default_value = "w4")]
    pub workload: SizeSpec,
    /// Size tables [default: raw; paper with --paper].
    #[arg(long, value_enum)]
    pub variant: Option<VariantArg>,
    /// Offered load: fraction of host link rate, counted per --load-model.
    #[arg(short, long, default_value_t = 0.8)]
    pub load: f64,
    /// Which bytes count in the load [default: data; paper with --paper].
    #[arg(long, value_enum)]
    pub load_model: Option<LoadArg>,
    /// Messages [default: request; one-way with --paper].
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// Response length in request mode.
    #[arg(long, default_value_t = 1)]
    pub response_bytes: u32,
    /// Slowdown denominator [default: analytic; paper with --paper].
    #[arg(long, value_enum)]
    pub slowdown: Option<SlowdownArg>,
    /// Messages arrive during this long (e.g. 100ms).
    #[arg(short, long, default_value = "100ms", value_parser = positive_duration)]
    pub duration: std::time::Duration,
    /// Messages created earlier are not measured [default: duration/10].
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<std::time::Duration>,
    /// Extra time for measured messages to finish [default: duration].
    #[arg(long, value_parser = parse_duration)]
    pub drain: Option<std::time::Duration>,
    /// Seed of every random choice.
    #[arg(short, long, default_value_t = 1)]
    pub seed: u64,

    /// Racks (ToR switches).
    #[arg(long, default_value_t = 9)]
    pub racks: u32,
    /// Hosts per rack.
    #[arg(long, default_value_t = 16)]
    pub hosts_per_rack: u32,
    /// Aggregation switches.
    #[arg(long, default_value_t = 4)]
    pub aggs: u32,
    /// Host link rate, Gbit/s.
    #[arg(long, default_value_t = 10.0)]
    pub host_gbps: f64,
    /// ToR-aggregation link rate, Gbit/s.
    #[arg(long, default_value_t = 40.0)]
    pub fabric_gbps: f64,
    /// Propagation delay per link.
    #[arg(long, default_value = "0ns", value_parser = parse_duration)]
    pub link_delay: std::time::Duration,
    /// Switch forwarding delay.
    #[arg(long, default_value = "250ns", value_parser = parse_duration)]
    pub switch_delay: std::time::Duration,
    /// Shared buffer per switch in bytes (drops beyond) [default: unlimited].
    #[arg(long)]
    pub switch_buffer: Option<u64>,
    /// Application <-> endpoint hand-off delay [default: 500ns; 0 with --paper].
    #[arg(long, value_parser = parse_duration)]
    pub host_delay: Option<std::time::Duration>,
    /// Per-packet delay out of and into each host [default: 0; 500ns with --paper].
    #[arg(long, value_parser = parse_duration)]
    pub packet_delay: Option<std::time::Duration>,
    /// NIC think time.
    #[arg(long, default_value = "500ns", value_parser = parse_duration)]
    pub nic_delay: std::time::Duration,
    /// NIC model: pull (ask the endpoint when the link frees) or push.
    #[arg(long, value_enum, default_value = "pull")]
    pub nic: NicArg,
    /// Independent Homa endpoints per host (K processes: each its own
    /// scheduler and pacer at the full link rate); model processes with
    /// `--nic push --pacer true`.
    #[arg(long, default_value_t = 1)]
    pub endpoints_per_host: u32,
    /// The endpoints of a host coordinate through one shared host table
    /// (one pacer estimate, one max_incoming budget, one SRPT ranking).
    #[arg(long)]
    pub host_sharing: bool,

    /// IP MTU.
    #[arg(long)]
    pub mtu: Option<u32>,
    /// GSO batch size accepted by the NIC (0 = single packets).
    #[arg(long)]
    pub gso_bytes: Option<u32>,
    /// Unscheduled bytes per message [default: 10000; 9328 with --paper].
    #[arg(long)]
    pub unsched_bytes: Option<u32>,
    /// Derive unscheduled bytes from each peer's measured RTT instead.
    #[arg(long)]
    pub unsched_from_rtt: bool,
    /// Granted-ahead window per active message, 0: dynamic [default: as
    /// --unsched-bytes].
    #[arg(long)]
    pub grant_window: Option<u32>,
    /// Cap on granted-but-unreceived bytes per receiver.
    #[arg(long)]
    pub max_incoming: Option<u32>,
    /// Priority levels (ablation: 1).
    #[arg(long)]
    pub priorities: Option<u8>,
    /// Degree of overcommitment [default: scheduled levels of the split].
    #[arg(long)]
    pub overcommit: Option<u32>,
    /// FIFO grants, thousandths of scheduled bandwidth [default: 50; 0 with --paper].
    #[arg(long)]
    pub fifo_grants: Option<u32>,
    /// Disable FIFO grants (same as --fifo-grants 0).
    #[arg(long)]
    pub no_fifo_grants: bool,
    /// Unscheduled cutoffs: from the workload (paper) or automatic.
    #[arg(long, value_enum, default_value = "workload")]
    pub cutoffs: CutoffsArg,
    /// Levels for unscheduled bytes [default: by bytes; the paper's table
    /// with --paper].
    #[arg(long)]
    pub unsched_levels: Option<u8>,
    /// Pacer allowance of queued NIC transmit time.
    #[arg(long, value_parser = parse_duration)]
    pub nic_backlog: Option<std::time::Duration>,
    /// Only generate the arrivals and compute the reference schedules (no
    /// network simulation).
    #[arg(long)]
    pub references_only: bool,
    /// Skip the matching reference (saves about a tenth of a heavy run).
    #[arg(long)]
    pub no_matching: bool,
    /// Estimate what a rack-parallel (PDES) simulation of this run would
    /// gain, from its own events (adds a few percent to the run's time).
    #[arg(long)]
    pub pdes_estimate: bool,
    /// Pacer on or off [default: on; off with --paper].
    #[arg(long)]
    pub pacer: Option<bool>,
    /// Turn the sender's pacer off (same as --pacer false).
    #[arg(long)]
    pub no_pacer: bool,
    /// Sender's FIFO share, thousandths of its output to its oldest message
    /// [default: 50; 0 with --paper].
    #[arg(long)]
    pub sender_fifo: Option<u32>,
    /// Senders serve granted bytes in the order their receivers asked for
    /// them (the message whose grant has waited longest first) instead of
    /// SRPT: an ablation, not Homa's sender.
    #[arg(long)]
    pub sender_grant_order: bool,

    /// Write NAME.txt, NAME.csv and NAME.svg (NAME from --name) into this
    /// directory.
    #[arg(short, long)]
    pub out: Option<PathBuf>,
    /// File name stem for --out [default: WORKLOAD-LOAD%-MODE-sSEED].
    #[arg(long)]
    pub name: Option<String>,
    /// Also write the CSV here.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Also write the SVG plot here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Write the Homa packets the --capture-hosts send and receive to this
    /// pcap file (host h is 10.0.0.1 + h; simulated time; open with
    /// tools/wireshark/homa.lua).
    #[arg(long, value_name = "FILE.pcap")]
    pub capture: Option<PathBuf>,
    /// Hosts to capture, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0", requires = "capture")]
    pub capture_hosts: Vec<u32>,
    /// At most this many packets are written to the capture.
    #[arg(long, default_value_t = CaptureParams::DEFAULT_LIMIT, requires = "capture")]
    pub capture_limit: u64,
    /// Do not print the results table on stdout.
    #[arg(short, long)]
    pub quiet: bool,
    /// No progress bar on stderr.
    #[arg(long)]
    pub no_progress: bool,
}

fn bps(gbps: f64) -> Result<u64, SimError> {
    if gbps > 0.0 && gbps.is_finite() {
        Ok((gbps * 1e9).round() as u64)
    } else {
        Err(SimError::Config("link rates must be positive"))
    }
}

impl SimArgs {
    /// The configuration these options describe.
    pub fn config(&self) -> Result<SimConfig, SimError> {
        config(self)
    }
}

fn config(a: &SimArgs) -> Result<SimConfig, SimError> {
    let mut c = if a.paper {
        SimConfig::paper(a.workload)
    } else {
        SimConfig::default()
    };
    let t = &mut c.topology;
    t.racks = a.racks;
    t.hosts_per_rack = a.hosts_per_rack;
    t.aggs = a.aggs;
    t.host_link_bps = bps(a.host_gbps)?;
    t.fabric_link_bps = bps(a.fabric_gbps)?;
    t.link_delay = a.link_delay;
    t.switch_delay = a.switch_delay;
    t.switch_buffer = a.switch_buffer;
    let h = &mut c.host;
    if let Some(d) = a.host_delay {
        h.host_delay = d;
    }
    if let Some(d) = a.packet_delay {
        h.tx_delay = d;
        h.rx_delay = d;
    }
    h.nic_delay = a.nic_delay;
    h.endpoints = a.endpoints_per_host;
    h.host_sharing = a.host_sharing;
    h.nic = match a.nic {
        NicArg::Pull => NicMode::Pull,
        NicArg::Push => NicMode::Push,
    };
    let e = &mut c.proto.endpoint;
    let set = |v: Option<u32>, field: &mut u32| {
        if let Some(v) = v {
            *field = v;
        }
    };
    set(a.mtu, &mut e.mtu);
    set(a.gso_bytes, &mut e.max_gso_bytes);
    if let Some(u) = a.unsched_bytes {
        e.unsched_bytes = u;
        e.window = u;
    }
    set(a.grant_window, &mut e.window);
    set(a.max_incoming, &mut e.max_incoming);
    e.unsched_from_rtt |= a.unsched_from_rtt;
    if let Some(p) = a.priorities {
        e.num_priorities = p;
    }
    if let Some(o) = a.overcommit {
        if o == 0 || o > 8 {
            return Err(SimError::Config("overcommitment must be 1..=8"));
        }
        e.max_overcommit = o;
        c.proto.overcommit_from_split = false;
    }
    set(a.fifo_grants, &mut e.grant_fifo_fraction);
    if a.no_fifo_grants {
        e.grant_fifo_fraction = 0;
    }
    if let Some(d) = a.nic_backlog {
        e.max_nic_backlog = d;
    }
    if let Some(p) = a.pacer {
        e.pacer = p;
    }
    if a.no_pacer {
        e.pacer = false;
    }
    set(a.sender_fifo, &mut e.pacer_fifo_fraction);
    if a.sender_grant_order {
        e.pacer_grant_order = true;
    }
    match a.cutoffs {
        CutoffsArg::Workload => {
            if let Some(l) = a.unsched_levels {
                c.proto.cutoffs = Cutoffs::Workload {
                    unsched_levels: Some(l),
                };
            }
        }
        CutoffsArg::Auto => {
            if a.unsched_levels.is_some() {
                return Err(SimError::Config(
                    "--unsched-levels needs --cutoffs workload",
                ));
            }
            c.proto.cutoffs = Cutoffs::Endpoint;
            c.proto.endpoint.unsched_cutoffs = None;
        }
    }
    let tr = &mut c.traffic;
    tr.workload = a.workload;
    if let Some(v) = a.variant {
        tr.variant = match v {
            VariantArg::Raw => Variant::Raw,
            VariantArg::CpNode => Variant::CpNode,
            VariantArg::Paper => Variant::Paper,
        };
    }
    tr.load = a.load;
    if let Some(m) = a.mode {
        tr.mode = match m {
            ModeArg::OneWay => Mode::OneWay,
            ModeArg::Request => Mode::Request {
                response_bytes: a.response_bytes,
            },
            ModeArg::Rpc => Mode::Rpc,
        };
    } else if let Mode::Request { .. } = tr.mode {
        tr.mode = Mode::Request {
            response_bytes: a.response_bytes,
        };
    }
    if let Some(l) = a.load_model {
        tr.load_model = match l {
            LoadArg::Data => LoadModel::Data {
                count_responses: true,
            },
            LoadArg::DataRequests => LoadModel::Data {
                count_responses: false,
            },
            LoadArg::Paper => LoadModel::Paper,
        };
    }
    if let Some(s) = a.slowdown {
        c.slowdown = match s {
            SlowdownArg::Analytic => Slowdown::Analytic,
            SlowdownArg::Paper => Slowdown::Paper,
        };
    }
    c.run.duration = a.duration;
    c.run.warmup = a.warmup.unwrap_or(a.duration / 10);
    c.run.drain = a.drain.unwrap_or(a.duration);
    c.run.references_only = a.references_only;
    c.run.matching = !a.no_matching;
    c.run.pdes_estimate = a.pdes_estimate;
    c.seed = a.seed;
    c.capture = a.capture.as_ref().map(|path| CaptureParams {
        path: path.clone(),
        hosts: a.capture_hosts.clone(),
        limit: a.capture_limit,
    });
    c.validate()?;
    Ok(c)
}

/// The progress bar on stderr (`indicatif`): simulated time against the
/// arrivals' end, events and events per second; drawn only on a terminal,
/// a line every 10 s otherwise.
struct Bar {
    bar: Option<ProgressBar>,
    start: WallClock,
    last_line: Option<WallClock>,
}

impl Bar {
    fn new(enabled: bool, arrivals_end: u64) -> Bar {
        let tty = std::io::stderr().is_terminal();
        let bar = (enabled && tty).then(|| {
            let b = ProgressBar::with_draw_target(
                Some(arrivals_end.max(1)),
                ProgressDrawTarget::stderr_with_hz(5),
            );
            b.set_style(
                ProgressStyle::with_template("[{bar:30}] {msg} | {elapsed}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            b
        });
        Bar {
            bar,
            start: WallClock::now(),
            // Lines only when enabled and not on a terminal.
            last_line: (enabled && !tty).then(WallClock::now),
        }
    }

    fn message(&self, p: &Progress) -> String {
        let wall = self.start.elapsed().as_secs_f64();
        let phase = if p.now >= p.arrivals_end {
            format!(", draining, {} outstanding", p.outstanding)
        } else {
            String::new()
        };
        format!(
            "{:.3}/{:.3} ms simulated | {:.1} M events | {:.2} M events/s{}",
            us(p.now) / 1e3,
            us(p.arrivals_end) / 1e3,
            p.events as f64 / 1e6,
            p.events as f64 / wall.max(1e-9) / 1e6,
            phase
        )
    }

    fn update(&mut self, p: &Progress) {
        if let Some(b) = &self.bar {
            b.set_position(p.now.min(p.arrivals_end));
            b.set_message(self.message(p));
        } else if let Some(last) = self.last_line {
            // Not a terminal: a plain line every 10 s.
            if last.elapsed().as_secs_f64() >= 10.0 {
                note(format_args!("{}", self.message(p)));
                self.last_line = Some(WallClock::now());
            }
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }
}

/// [`parse_duration`], refusing zero (a run of no time measures nothing;
/// it used to print nothing at all).
fn positive_duration(s: &str) -> Result<std::time::Duration, SimError> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(SimError::Config(
            "the run's duration must be longer than zero",
        )),
        d => Ok(d),
    }
}

/// Fails unless a file can be written at `path`: checked before a run,
/// so that a bad output path does not cost the run (it used to fail only
/// once the results were in, and they were lost). Opens the file for
/// writing without truncating it, and removes it again if it did not
/// exist.
pub fn check_writable(path: &std::path::Path) -> Result<(), CliError> {
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| CliError::Io(path.to_path_buf(), e))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Runs the experiment `a` describes: progress on stderr, the table on
/// stdout (unless `--quiet`), files as asked, and a performance line on
/// stderr (wall time and events per second, which are not part of the
/// deterministic results).
pub fn execute(a: &SimArgs) -> Result<Results, CliError> {
    let cfg = config(a)?;
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).map_err(|e| CliError::Io(dir.clone(), e))?;
        check_writable(&dir.join(".homa-sim-write-check"))?;
    }
    for path in [&a.csv, &a.svg].into_iter().flatten() {
        check_writable(path)?;
    }
    let mut sim = Simulator::new(&cfg)?;
    let mut bar = Bar::new(!a.no_progress, crate::time::ps(cfg.run.duration));
    let start = WallClock::now();
    let results = sim.run(|p| bar.update(p))?;
    let wall = start.elapsed().as_secs_f64();
    bar.finish();
    if let (Some(s), Some(c)) = (sim.capture_stats(), &cfg.capture) {
        note(format_args!(
            "capture: {} packets of host(s) {:?} written to {}{}",
            s.written,
            c.hosts,
            c.path.display(),
            if s.beyond_limit > 0 {
                format!(" ({} more beyond --capture-limit)", s.beyond_limit)
            } else {
                String::new()
            }
        ));
    }
    let table = report::table(&results);
    let csv = report::csv(&results);
    let svg = report::plot(&[("", &results)]);
    if !a.quiet {
        print_stdout(&table)?;
    }
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).map_err(|e| CliError::Io(dir.clone(), e))?;
        let name = a.name.clone().unwrap_or_else(|| {
            format!(
                "{}-{:.0}-{}-s{}",
                results.workload,
                cfg.traffic.load * 100.0,
                results.mode,
                cfg.seed
            )
        });
        for (ext, body) in [("txt", &table), ("csv", &csv), ("svg", &svg)] {
            let path = dir.join(format!("{name}.{ext}"));
            std::fs::write(&path, body).map_err(|e| CliError::Io(path.clone(), e))?;
        }
    }
    if let Some(path) = &a.csv {
        std::fs::write(path, &csv).map_err(|e| CliError::Io(path.clone(), e))?;
    }
    if let Some(path) = &a.svg {
        std::fs::write(path, &svg).map_err(|e| CliError::Io(path.clone(), e))?;
    }
    note(format_args!(
        "wall time {:.1} s, {} events, {:.2} M events/s, {:.1} us simulated per wall second",
        wall,
        results.events,
        results.events as f64 / wall / 1e6,
        results.end_us / wall
    ));
    note(format_args!("{}", sim.event_counts().per_data_packet()));
    Ok(results)
}

/// Writes a line to stderr, ignoring errors: a reader that went away
/// (`homa-sim ... 2>&1 | head`) is no reason to stop the run, let alone to
/// panic as `eprintln!` does, and there is nowhere else to report it.
pub fn note(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Writes `text` to stdout. A reader that went away (`homa-sim | head`,
/// `EPIPE`) is success, as for the `homa` command: the run goes on to
/// write its files and ends normally. Other errors (a full disk) are
/// returned.
fn print_stdout(text: &str) -> Result<(), CliError> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    match o.write_all(text.as_bytes()).and_then(|()| o.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::Io(PathBuf::from("stdout"), e))
        }
        _ => Ok(()),
    }
}
