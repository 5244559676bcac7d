//! The command-line front end (feature `cli`): the options of one
//! experiment as a `clap::Args` struct, and [`execute`], which runs it with a
//! progress bar and writes the results. The `homa-sim` binary is a thin
//! wrapper; the `homa` command can flatten [`SimArgs`] into its `sim`
//! subcommand and call [`execute`].

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant as WallClock;

use clap::ValueEnum;
use homa_workload::{SizeSpec, Variant};

use crate::config::parse_duration;
use crate::time::us;
use crate::{
    report, CaptureParams, Cutoffs, Mode, NicMode, Progress, Results, SimConfig, SimError,
    Simulator,
};

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
    /// One-way messages with minimal responses (the paper).
    OneWay,
    /// Request/response with echoed responses.
    Rpc,
}

/// `--variant`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VariantArg {
    /// Uncapped (the paper).
    Raw,
    /// The kernel benchmark's CDF, capped at 1 MB.
    CpNode,
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

/// Options of one simulated experiment (`homa-sim`, later `homa sim`).
///
/// Defaults reproduce the SIGCOMM 2018 setup: 144 hosts in 9 racks, 10/40
/// Gbit/s, 4 aggregation switches, W4 at 80% load.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Workload: w1..w5, starve, or a fixed size in bytes.
    #[arg(short, long, default_value = "w4")]
    pub workload: SizeSpec,
    /// Raw (uncapped, as the paper) or cp-node (capped at 1 MB).
    #[arg(long, value_enum, default_value = "raw")]
    pub variant: VariantArg,
    /// Offered load: fraction of host link rate taken by DATA packets.
    #[arg(short, long, default_value_t = 0.8)]
    pub load: f64,
    /// One-way messages (the paper) or request/response RPCs.
    #[arg(long, value_enum, default_value = "one-way")]
    pub mode: ModeArg,
    /// Response length in one-way mode.
    #[arg(long, default_value_t = 1)]
    pub response_bytes: u32,
    /// In one-way mode, do not count the minimal responses in the load.
    #[arg(long)]
    pub no_count_responses: bool,
    /// Messages arrive during this long (e.g. 100ms).
    #[arg(short, long, default_value = "100ms", value_parser = parse_duration)]
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
    /// Application <-> endpoint hand-off delay.
    #[arg(long, default_value = "500ns", value_parser = parse_duration)]
    pub host_delay: std::time::Duration,
    /// NIC think time.
    #[arg(long, default_value = "500ns", value_parser = parse_duration)]
    pub nic_delay: std::time::Duration,
    /// NIC model: pull (ask the endpoint when the link frees) or push.
    #[arg(long, value_enum, default_value = "pull")]
    pub nic: NicArg,

    /// IP MTU.
    #[arg(long, default_value_t = 1500)]
    pub mtu: u32,
    /// GSO batch size accepted by the NIC (0 = single packets).
    #[arg(long, default_value_t = 0)]
    pub gso_bytes: u32,
    /// Unscheduled bytes per message (RTTbytes).
    #[arg(long, default_value_t = 10_000)]
    pub unsched_bytes: u32,
    /// Derive unscheduled bytes from each peer's measured RTT instead.
    #[arg(long)]
    pub unsched_from_rtt: bool,
    /// Granted-ahead window per active message (0: dynamic).
    #[arg(long, default_value_t = 10_000)]
    pub grant_window: u32,
    /// Cap on granted-but-unreceived bytes per receiver.
    #[arg(long, default_value_t = 400_000)]
    pub max_incoming: u32,
    /// Priority levels (ablation: 1).
    #[arg(long, default_value_t = 8)]
    pub priorities: u8,
    /// Degree of overcommitment (ablation: 1) [default: scheduled levels].
    #[arg(long)]
    pub overcommit: Option<u32>,
    /// Disable FIFO grants (ablation; the 2018 paper had none).
    #[arg(long)]
    pub no_fifo_grants: bool,
    /// Unscheduled cutoffs: from the workload (paper) or automatic.
    #[arg(long, value_enum, default_value = "workload")]
    pub cutoffs: CutoffsArg,
    /// Levels for unscheduled bytes (the split ablation) [default: by bytes].
    #[arg(long)]
    pub unsched_levels: Option<u8>,
    /// Pacer allowance of queued NIC transmit time.
    #[arg(long, default_value = "5us", value_parser = parse_duration)]
    pub nic_backlog: std::time::Duration,
    /// Only generate the arrivals and compute the reference schedules (no
    /// network simulation).
    #[arg(long)]
    pub references_only: bool,
    /// Turn the sender's pacer off.
    #[arg(long)]
    pub no_pacer: bool,
    /// Sender's FIFO share, thousandths of its output to its oldest message.
    #[arg(long, default_value_t = 50)]
    pub sender_fifo: u32,

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
    let mut c = SimConfig::default();
    let t = &mut c.topology;
    t.racks = a.racks;
    t.hosts_per_rack = a.hosts_per_rack;
    t.aggs = a.aggs;
    t.host_link_bps = bps(a.host_gbps)?;
    t.fabric_link_bps = bps(a.fabric_gbps)?;
    t.link_delay = a.link_delay;
    t.switch_delay = a.switch_delay;
    t.switch_buffer = a.switch_buffer;
    c.host.host_delay = a.host_delay;
    c.host.nic_delay = a.nic_delay;
    c.host.nic = match a.nic {
        NicArg::Pull => NicMode::Pull,
        NicArg::Push => NicMode::Push,
    };
    let p = &mut c.proto;
    p.mtu = a.mtu;
    p.gso_bytes = a.gso_bytes;
    p.unsched_bytes = a.unsched_bytes;
    p.unsched_from_rtt = a.unsched_from_rtt;
    p.grant_window = a.grant_window;
    p.max_incoming = a.max_incoming;
    p.num_priorities = a.priorities;
    p.overcommit = a.overcommit;
    p.fifo_grants = !a.no_fifo_grants;
    p.max_nic_backlog = a.nic_backlog;
    p.pacer = !a.no_pacer;
    p.sender_fifo = a.sender_fifo;
    p.cutoffs = match a.cutoffs {
        CutoffsArg::Workload => Cutoffs::Workload {
            unsched_levels: a.unsched_levels,
        },
        CutoffsArg::Auto => {
            if a.unsched_levels.is_some() {
                return Err(SimError::Config(
                    "--unsched-levels needs --cutoffs workload",
                ));
            }
            Cutoffs::Auto
        }
    };
    let tr = &mut c.traffic;
    tr.workload = a.workload;
    tr.variant = match a.variant {
        VariantArg::Raw => Variant::Raw,
        VariantArg::CpNode => Variant::CpNode,
    };
    tr.load = a.load;
    tr.mode = match a.mode {
        ModeArg::OneWay => Mode::OneWay {
            response_bytes: a.response_bytes,
        },
        ModeArg::Rpc => Mode::Rpc,
    };
    tr.count_responses = !a.no_count_responses;
    c.run.duration = a.duration;
    c.run.warmup = a.warmup.unwrap_or(a.duration / 10);
    c.run.drain = a.drain.unwrap_or(a.duration);
    c.run.references_only = a.references_only;
    c.seed = a.seed;
    c.capture = a.capture.as_ref().map(|path| CaptureParams {
        path: path.clone(),
        hosts: a.capture_hosts.clone(),
        limit: a.capture_limit,
    });
    c.validate()?;
    Ok(c)
}

/// Draws a progress bar on stderr: simulated time, events, events/s.
struct Bar {
    start: WallClock,
    last: Option<WallClock>,
    tty: bool,
    enabled: bool,
}

impl Bar {
    fn update(&mut self, p: &Progress, last: bool) {
        if !self.enabled {
            return;
        }
        let now = WallClock::now();
        let interval = if self.tty { 0.2 } else { 10.0 };
        if !last
            && self
                .last
                .is_some_and(|t| (now - t).as_secs_f64() < interval)
        {
            return;
        }
        self.last = Some(now);
        let wall = (now - self.start).as_secs_f64();
        let rate = p.events as f64 / wall.max(1e-9);
        let frac = (p.now as f64 / p.arrivals_end.max(1) as f64).min(1.0);
        let width = 30;
        let done = (frac * width as f64) as usize;
        let phase = if p.now >= p.arrivals_end {
            format!(" draining, {} outstanding", p.outstanding)
        } else {
            String::new()
        };
        let line = format!(
            "[{}{}] {:.3}/{:.3} ms simulated | {:.1} M events | {:.2} M events/s | {:.0} s{}",
            "=".repeat(done),
            " ".repeat(width - done),
            us(p.now) / 1e3,
            us(p.arrivals_end) / 1e3,
            p.events as f64 / 1e6,
            rate / 1e6,
            wall,
            phase
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r{line}\x1b[K");
            if last {
                let _ = writeln!(err);
            }
        } else {
            let _ = writeln!(err, "{line}");
        }
    }
}

/// Runs the experiment `a` describes: progress on stderr, the table on
/// stdout (unless `--quiet`), files as asked, and a performance line on
/// stderr (wall time and events per second, which are not part of the
/// deterministic results).
pub fn execute(a: &SimArgs) -> Result<Results, CliError> {
    let cfg = config(a)?;
    let mut sim = Simulator::new(&cfg)?;
    let mut bar = Bar {
        start: WallClock::now(),
        last: None,
        tty: std::io::stderr().is_terminal(),
        enabled: !a.no_progress,
    };
    let start = WallClock::now();
    let results = sim.run(|p| bar.update(p, false))?;
    let wall = start.elapsed().as_secs_f64();
    bar.update(
        &Progress {
            now: (results.end_us * 1e6) as u64,
            arrivals_end: crate::time::ps(cfg.run.duration),
            hard_end: 0,
            events: results.events,
            completed: results.messages.completed,
            outstanding: results.messages.incomplete,
        },
        true,
    );
    if let (Some(s), Some(c)) = (sim.capture_stats(), &cfg.capture) {
        eprintln!(
            "capture: {} packets of host(s) {:?} written to {}{}",
            s.written,
            c.hosts,
            c.path.display(),
            if s.beyond_limit > 0 {
                format!(" ({} more beyond --capture-limit)", s.beyond_limit)
            } else {
                String::new()
            }
        );
    }
    let table = report::table(&results);
    let csv = report::csv(&results);
    let svg = report::plot(&[("", &results)]);
    if !a.quiet {
        print!("{table}");
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
    eprintln!(
        "wall time {:.1} s, {} events, {:.2} M events/s, {:.1} us simulated per wall second",
        wall,
        results.events,
        results.events as f64 / wall / 1e6,
        results.end_us / wall
    );
    Ok(results)
}
