//! `homa client`: options, the run with its per-second lines and progress
//! bar, and the final report (text table, JSON, RTT dump, SVG plot). The
//! generator itself is [`crate::loadgen`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use homa_workload::{SizeSpec, Variant};
use serde::{Deserialize, Serialize};

use crate::args;
use crate::bench::{self, Polling};
use crate::loadgen::{self, Plan, Protocol, Run, Stop};
use crate::out::{errln, out, outln};
use crate::plot;
use crate::progress::Progress;
use crate::results::{self, Ideal, Sample, Summary};
use crate::stats::{Latency, Recorder};

/// Which form of a named workload to draw from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VariantArg {
    /// The kernel benchmark's CDF, capped at 1 MB (cp_node's).
    CpNode,
    /// The full distribution (W4 reaches 10 MB, W5 29 MB).
    Raw,
}

impl VariantArg {
    /// `cp-node` or `raw`, as the option reads.
    pub fn name(self) -> &'static str {
        match self {
            VariantArg::CpNode => "cp-node",
            VariantArg::Raw => "raw",
        }
    }
}

impl From<VariantArg> for Variant {
    fn from(v: VariantArg) -> Variant {
        match v {
            VariantArg::CpNode => Variant::CpNode,
            VariantArg::Raw => Variant::Raw,
        }
    }
}

/// `homa client`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ClientArgs {
    /// Server addresses, comma-separated (or the option repeated).
    #[arg(
        long = "server",
        visible_alias = "servers",
        value_delimiter = ',',
        default_value = "127.0.0.1:4000"
    )]
    pub servers: Vec<SocketAddr>,
    /// Ports per server: each address also stands for the next n-1 ports.
    #[arg(long, default_value_t = 1, value_parser = args::positive_u16)]
    pub server_ports: u16,
    /// Transports, comma-separated. `homa,tcp` runs Homa, then TCP, against
    /// the same addresses (a `homa server --protocol homa,tcp` serves both)
    /// and overlays them in one plot.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "homa")]
    pub protocol: Vec<Protocol>,
    /// Request sizes: w1..w5, starve, or a fixed size in bytes (at most the
    /// longest Homa message, 16 MiB).
    #[arg(short, long, visible_alias = "size", default_value = "100", value_parser = args::workload)]
    pub workload: SizeSpec,
    /// Form of a named workload: cp-node (the kernel benchmark's, capped at
    /// 1 MB; the default here and in `homa rack`) or raw (the paper's
    /// uncapped CDF; the default of `homa sim`).
    #[arg(long, value_enum, default_value_t = VariantArg::CpNode)]
    pub variant: VariantArg,
    /// Open loop: Gbit/s of requests from this client (Poisson arrivals;
    /// cp_node's --gbps). 0: closed loop.
    #[arg(long, default_value_t = 0.0, value_parser = args::non_negative_f64)]
    pub gbps: f64,
    /// Most requests outstanding over all ports; in closed loop, always
    /// this many. In open loop an arrival that finds this many outstanding
    /// waits and counts as late.
    #[arg(long, visible_alias = "concurrency", default_value_t = 1, value_parser = args::positive_usize)]
    pub client_max: usize,
    /// Client ports: sockets, each on its own thread.
    #[arg(long, default_value_t = 1, value_parser = args::positive_usize)]
    pub ports: usize,
    /// Ask for 100-byte responses instead of echoed lengths.
    #[arg(long)]
    pub one_way: bool,
    /// Stop after this many RPCs (over all ports).
    #[arg(long, conflicts_with = "duration", value_parser = args::positive_u64)]
    pub count: Option<u64>,
    /// Length of the measurement after the warm-up (10s, 250ms; a plain
    /// number is seconds).
    #[arg(long, value_parser = args::positive_duration)]
    pub duration: Option<Duration>,
    /// Traffic before measuring (not measured).
    #[arg(long, default_value = "0s", value_parser = args::duration)]
    pub warmup: Duration,
    /// How long to wait for outstanding RPCs after the window.
    #[arg(long, default_value = "2s", value_parser = args::duration)]
    pub drain: Duration,
    /// TCP connections per client port and server address.
    #[arg(long, default_value_t = 1, value_parser = args::positive_usize)]
    pub tcp_conns: usize,
    /// This node's id (in message headers).
    #[arg(long, default_value_t = 0)]
    pub id: u8,
    /// How waiting Homa threads wait (TCP always sleeps in epoll). The
    /// default of server and client is adaptive; compare's is busy, rack's
    /// block (each says so in its output).
    #[arg(long, value_enum, default_value_t = Polling::Adaptive)]
    pub polling: Polling,
    /// Give up on an RPC this long after it was issued ("deadline
    /// exceeded"), also while the server still answers. Over Homa a call
    /// can fail sooner, with "peer timed out", after the protocol's
    /// timeout of silence from the server (nothing at all, not even BUSY;
    /// 1 s by default, whatever --timeout says): a live server answers the
    /// client's probes even while it computes, so that silence means it
    /// stopped answering. --resend-ms raises the protocol's timeout to at
    /// least ten resend intervals (--resend-ms 500: 5 s).
    #[arg(long, default_value = "10s", value_parser = args::positive_duration)]
    pub timeout: Duration,
    /// Pin the client threads to this CPU.
    #[arg(long)]
    pub cpu: Option<usize>,
    // Homa's settings (`--link-mbps` is also the slowdown denominator).
    #[command(flatten)]
    pub homa: HomaKnobs,
    /// Unloaded short-message RTT for slowdown, µs (default: measured by a
    /// probe of 200 sequential 100-byte RPCs before the run: the fastest).
    #[arg(long)]
    pub base_rtt_us: Option<f64>,
    /// Seed of sizes, destinations and gaps (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Experiment name for the per-second lines.
    #[arg(long)]
    pub exp: Option<String>,
    /// Print JSON instead of text (docs/json.md).
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// Write every measured RTT to this file (cp_node's dump_times format:
    /// `length rtt_us` per line; with several protocols, FILE-homa, FILE-tcp).
    #[arg(long)]
    pub dump_times: Option<PathBuf>,
    /// Write a plot (SVG): slowdown against message length, or for a fixed
    /// size the distribution (CDF) of the RTT; every protocol run overlaid.
    #[arg(long, visible_alias = "plot")]
    pub svg: Option<PathBuf>,
    /// No per-second lines and no progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// One failure reason of the calls of a run and how often it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ErrorCount {
    /// The error.
    pub message: String,
    /// Calls that failed with it.
    pub count: u64,
}

/// A point of the RTT distribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct CdfPoint {
    /// Round-trip time, µs.
    pub rtt_us: f64,
    /// Share of the RPCs that took at most `rtt_us`.
    pub fraction: f64,
}

/// The final report of a client (one protocol).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Report {
    /// Experiment name.
    pub exp: String,
    /// Transport.
    pub protocol: Protocol,
    /// Workload name or fixed size.
    pub workload: String,
    /// Workload form.
    pub variant: VariantArg,
    /// 100-byte responses.
    pub one_way: bool,
    /// Node id.
    pub node: u8,
    /// Server addresses (after port expansion).
    pub servers: Vec<SocketAddr>,
    /// Client ports.
    pub ports: usize,
    /// Requests outstanding at most.
    pub client_max: usize,
    /// Requested Gbit/s of requests (0: closed loop).
    pub gbps_target: f64,
    /// Length of the measurement, s (of a run stopped by `error`: the
    /// part of the window before it stopped).
    pub seconds: f64,
    /// Measured RPCs completed.
    pub calls: u64,
    /// Measured RPCs that failed.
    pub failed: u64,
    /// Measured RPCs still outstanding at the end.
    pub unfinished: u64,
    /// Completed RPCs per second.
    pub calls_per_sec: f64,
    /// Request plus response bytes of completed RPCs, Gbit/s.
    pub gbps: f64,
    /// Request bytes, Gbit/s.
    pub gbps_out: f64,
    /// Response bytes, Gbit/s.
    pub gbps_in: f64,
    /// Open loop: share of measured arrivals that were late (found
    /// `client_max` requests outstanding and waited for one to finish).
    pub late_fraction: f64,
    /// Open loop: mean delay of an arrival behind its Poisson schedule, µs.
    pub lag_us_mean: f64,
    /// CPU time (user + system, every thread of the client process,
    /// warm-up included) per completed call, µs; 0 when nothing completed.
    pub cpu_us_per_rpc: f64,
    /// All RTTs, µs ([`crate::stats`] percentiles).
    pub rtt: Latency,
    /// The RTT distribution: at most about 200 points, every 0.5% and the
    /// tail.
    pub rtt_cdf: Vec<CdfPoint>,
    /// Where the slowdown's base RTT came from: `measured` (the probe
    /// before the run), `lowered` (the run's fastest RPC, less its
    /// transfer time, beat the probe: see the warnings) or `given`
    /// (`--base-rtt-us`).
    pub base_rtt_source: String,
    /// Where the slowdown's link speed came from, in words.
    pub link_source: String,
    /// Slowdown, short messages, buckets.
    pub summary: Summary,
    /// Why the run stopped early, if it did (the figures cover what had
    /// finished).
    pub error: Option<String>,
    /// Failures of single calls by reason.
    pub errors: Vec<ErrorCount>,
    /// Warnings about the run (e.g. the client fell behind its schedule).
    pub warnings: Vec<String>,
    /// Homa: every client socket's counters at the end (as `homa metrics`
    /// shows them).
    pub sockets: Vec<serde_json::Value>,
}

impl Report {
    /// Whether the requests all had one size (the plot is then a CDF).
    pub(crate) fn fixed_size(&self) -> bool {
        self.workload.parse::<u32>().is_ok()
    }
}

fn default_seed(node: u8) -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (u64::from(std::process::id()) << 20) ^ (u64::from(node) << 56)
}

/// Homa settings `homa client` and `homa server` expose (the protocol's
/// defaults are the kernel's, sized for 25 Gbit/s links; an emulated
/// 1 Gbit/s rack needs its time constants stretched). `homa rack` passes
/// them on to its clients and servers ([`HomaKnobs::args`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, clap::Args)]
pub(crate) struct HomaKnobs {
    /// Link speed, Mbit/s: Homa's pacer and, for `homa client`, the
    /// slowdown denominator (default: for `homa client` 100000 on
    /// loopback, else the speed of the interface toward the first server,
    /// else 25000, Homa's default; for `homa server` 25000).
    #[arg(long)]
    pub link_mbps: Option<u32>,
    /// Homa: most transmit time the pacer lets queue ahead of the link, µs
    /// (the protocol's default is 5, sized for 25 Gbit/s NICs; at 1 Gbit/s
    /// that is less than a packet).
    #[arg(long)]
    pub nic_backlog_us: Option<u64>,
    /// Homa: silence before a RESEND and between RESENDs, ms (the
    /// protocol's default is 5, the kernel's, sized for 25 Gbit/s links);
    /// the RPC timeout becomes at least ten of these.
    #[arg(long)]
    pub resend_ms: Option<f64>,
    /// Homa: time after a response is sent before the server asks for an
    /// acknowledgement, ms (protocol default 2, the kernel's).
    #[arg(long)]
    pub need_ack_ms: Option<f64>,
    /// Homa: bytes of each message sent before any grant, for every peer
    /// (default: one measured round trip at the link rate).
    #[arg(long)]
    pub unsched_bytes: Option<u32>,
    /// Homa: cap on granted-but-not-received bytes (`max_incoming`; the
    /// protocol's default is 400000). With host sharing every process of
    /// the host must use the same value.
    #[arg(long)]
    pub max_incoming: Option<u32>,
}

impl HomaKnobs {
    /// The knobs that are set, as command-line options.
    pub(crate) fn args(&self) -> Vec<String> {
        let mut v = Vec::new();
        let mut opt = |name: &str, value: Option<String>| {
            if let Some(x) = value {
                v.push(format!("--{name}"));
                v.push(x);
            }
        };
        opt("link-mbps", self.link_mbps.map(|x| x.to_string()));
        opt("nic-backlog-us", self.nic_backlog_us.map(|x| x.to_string()));
        opt("resend-ms", self.resend_ms.map(|x| x.to_string()));
        opt("need-ack-ms", self.need_ack_ms.map(|x| x.to_string()));
        opt("unsched-bytes", self.unsched_bytes.map(|x| x.to_string()));
        opt("max-incoming", self.max_incoming.map(|x| x.to_string()));
        v
    }
}

/// Homa socket configuration: `bench::homa_config` plus the knobs.
pub(crate) fn homa_config(polling: Polling, server: bool, k: &HomaKnobs) -> homa_transport::Config {
    let mut c = bench::homa_config(polling, server, k.link_mbps);
    if let Some(us) = k.nic_backlog_us {
        c.proto.max_nic_backlog = Duration::from_micros(us);
    }
    if let Some(ms) = k.resend_ms {
        let d = Duration::from_secs_f64(ms.max(0.1) / 1e3);
        c.proto.resend_after = d;
        c.proto.resend_interval = d;
        // Give up only after several RESENDs went unanswered.
        c.proto.timeout = c.proto.timeout.max(d * 10);
    }
    if let Some(ms) = k.need_ack_ms {
        c.proto.need_ack_after = Duration::from_secs_f64(ms.max(0.1) / 1e3);
    }
    if let Some(b) = k.unsched_bytes {
        c.proto.unsched_bytes = b.max(1);
        c.proto.unsched_from_rtt = false;
    }
    if let Some(b) = k.max_incoming {
        c.proto.max_incoming = b.max(1);
    }
    c
}

/// The link speed slowdown is computed against, and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Link {
    /// Mbit/s.
    pub mbps: u32,
    /// In words, for the report.
    pub source: String,
}

/// What loopback is assumed to carry (the same as `homa compare`'s pacer):
/// there is no NIC, so no real link speed exists.
pub(crate) const LOOPBACK_MBPS: u32 = 100_000;

/// The link of a run: `--link-mbps` if given; on loopback an assumed
/// [`LOOPBACK_MBPS`]; else the speed of the interface the first server is
/// routed through (`/sys/class/net/IF/speed`), else Homa's default.
pub(crate) fn link(a: &ClientArgs) -> Link {
    if let Some(m) = a.homa.link_mbps {
        return Link {
            mbps: m,
            source: "given (--link-mbps)".into(),
        };
    }
    if a.servers.iter().all(|s| s.ip().is_loopback()) {
        return Link {
            mbps: LOOPBACK_MBPS,
            source: format!(
                "loopback: no physical link, {} Gbit/s assumed (give --link-mbps)",
                LOOPBACK_MBPS / 1000
            ),
        };
    }
    if let Some((iface, mbps)) = a.servers.first().and_then(|s| interface_speed(s.ip())) {
        return Link {
            mbps,
            source: format!("the speed of {iface}, the interface toward the first server"),
        };
    }
    let d = homa_proto::Config::default().link_mbps;
    Link {
        mbps: d,
        source: format!(
            "unknown (the interface does not report a speed): Homa's default {} Gbit/s assumed (give --link-mbps)",
            d / 1000
        ),
    }
}

/// The interface an IPv4 address is routed through (longest prefix of
/// `/proc/net/route`) and its speed in Mbit/s, if it reports one.
fn interface_speed(ip: std::net::IpAddr) -> Option<(String, u32)> {
    let std::net::IpAddr::V4(v4) = ip else {
        return None;
    };
    let dest = u32::from_le_bytes(v4.octets());
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    let mut best: Option<(u32, String)> = None;
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let (Ok(net), Ok(mask)) = (u32::from_str_radix(f[1], 16), u32::from_str_radix(f[7], 16))
        else {
            continue;
        };
        if dest & mask == net
            && best
                .as_ref()
                .is_none_or(|(m, _)| mask.count_ones() > m.count_ones())
        {
            best = Some((mask, f[0].to_string()));
        }
    }
    let iface = best?.1;
    let speed: i64 = std::fs::read_to_string(format!("/sys/class/net/{iface}/speed"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (speed > 0).then_some((iface, speed as u32))
}

/// Checks what the options cannot say on their own: the workload's longest
/// request against the longest Homa message.
pub(crate) fn validate(a: &ClientArgs) -> Result<()> {
    if a.count.is_none() && a.duration.is_none() {
        bail!("give --count N or --duration D (e.g. --duration 10s)");
    }
    for s in &a.servers {
        crate::args::port_range(*s, a.server_ports, "--server with --server-ports")?;
    }
    // Output files: a path that cannot be written must not cost the run.
    for path in [&a.json_out, &a.svg, &a.dump_times].into_iter().flatten() {
        homa_sim::cli::check_writable(path)?;
    }
    let dist = a.workload.dist(a.variant.into());
    let max = crate::args::max_message_length();
    if dist.max_length() > max {
        bail!(
            "{} ({}) has requests of up to {} bytes, more than the longest Homa message ({max} bytes); use --variant cp-node",
            a.workload,
            a.variant.name(),
            dist.max_length()
        );
    }
    if a.servers.is_empty() {
        bail!("give at least one --server");
    }
    Ok(())
}

/// Builds the generator's plan for one protocol from the options.
pub(crate) fn plan(a: &ClientArgs, protocol: Protocol, link_mbps: u32) -> Result<Plan> {
    validate(a)?;
    let sizes = loadgen::request_sizes(&a.workload.dist(a.variant.into()));
    let ports = a.ports.max(1);
    let rate_per_port = if a.gbps > 0.0 {
        Some(a.gbps * 1e9 / 8.0 / sizes.mean() / ports as f64)
    } else {
        None
    };
    let stop = match (a.count, a.duration) {
        (Some(c), _) => Stop::Count(c),
        (None, Some(d)) => Stop::Time {
            warmup: a.warmup,
            window: d,
        },
        (None, None) => unreachable!("checked by validate"),
    };
    let mut knobs = a.homa;
    knobs.link_mbps = Some(link_mbps);
    Ok(Plan {
        protocol,
        targets: loadgen::targets(&a.servers, a.server_ports),
        sizes,
        one_way: a.one_way,
        rate_per_port,
        max_per_port: a.client_max.div_ceil(ports).max(1),
        ports,
        stop,
        drain: a.drain,
        node: a.id,
        homa: homa_config(a.polling, false, &knobs),
        tcp_conns: a.tcp_conns,
        timeout: a.timeout,
        seed: a.seed.unwrap_or_else(|| default_seed(a.id)),
    })
}

/// RPCs of the base-RTT probe.
const PROBE_CALLS: u64 = 200;

/// The unloaded RTT of one protocol: [`PROBE_CALLS`] 100-byte echo RPCs one
/// at a time to the first server, before any load, the client spinning
/// while it waits; the fastest, µs (the floor: on a busy machine or with
/// sleeping threads the median of unloaded RPCs can exceed loaded ones, and
/// slowdowns would fall below 1).
pub(crate) fn probe_base_rtt(a: &ClientArgs, protocol: Protocol, link_mbps: u32) -> Result<f64> {
    let mut plan = plan(a, protocol, link_mbps)?;
    plan.targets.truncate(1);
    plan.sizes = loadgen::request_sizes(
        &homa_workload::SizeDist::fixed(100).map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    plan.one_way = false;
    plan.rate_per_port = None;
    plan.max_per_port = 1;
    plan.ports = 1;
    plan.stop = Stop::Count(PROBE_CALLS);
    plan.drain = Duration::from_secs(1);
    // The probe's client spins while it waits: with one call outstanding a
    // sleeping client pays a thread wake-up per RPC that a loaded run does
    // not (it is always busy), and the base would exceed loaded RTTs.
    plan.homa.busy_poll = Duration::from_secs(3600);
    let run = Arc::new(Run::new(plan));
    for h in loadgen::spawn_ports(&run)? {
        h.join()
            .map_err(|_| anyhow::anyhow!("probe thread panicked"))?;
    }
    if let Some(e) = run.fatal_error() {
        bail!("{e}");
    }
    let rtts: Vec<f64> = loadgen::measured(&run)
        .iter()
        .map(|r| r.rtt_ns as f64 / 1000.0)
        .collect();
    if rtts.is_empty() {
        // Why, when calls failed (no single failure stops a run: a server
        // that is not there fails all of them).
        let why: Vec<String> = run
            .error_counts()
            .into_iter()
            .map(|(m, n)| format!("{n} calls failed: {m}"))
            .collect();
        let why = if why.is_empty() {
            String::new()
        } else {
            format!(": {}", why.join("; "))
        };
        bail!("the base-RTT probe got no response{why} (give --base-rtt-us to skip it)");
    }
    Ok(rtts.iter().copied().fold(f64::INFINITY, f64::min))
}

/// A finished (or aborted) run of one protocol.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The report.
    pub report: Report,
    /// Every measured RTT.
    pub samples: Vec<Sample>,
}

/// The RTT distribution of `samples` for the report: every 0.5% and the
/// tail (99.9, 99.99 and 100%), as [`crate::stats`] percentiles (the same
/// values the report's P50/P99/P99.9 are).
pub(crate) fn rtt_cdf(samples: &[Sample]) -> Vec<CdfPoint> {
    let mut r = Recorder::new();
    for s in samples {
        r.record((s.rtt_us.max(0.0) * 1e3).round() as u64);
    }
    let n = r.count();
    if n == 0 {
        return Vec::new();
    }
    let mut fracs: Vec<f64> = (1..200).map(|i| f64::from(i) / 200.0).collect();
    fracs.extend([0.999, 0.9999, 1.0]);
    let mut out: Vec<CdfPoint> = Vec::new();
    for f in fracs {
        // The nearest rank: the `k`-th smallest of `n`.
        let k = ((f * n as f64).ceil() as usize).clamp(1, n);
        let p = CdfPoint {
            rtt_us: r.quantile(f) as f64 / 1e3,
            fraction: k as f64 / n as f64,
        };
        if out.last().is_none_or(|l| l.fraction < p.fraction) {
            out.push(p);
        }
    }
    out
}

/// Runs one protocol: per-second lines and the progress bar on stderr
/// while it runs. A run that stops on a fatal error still returns what it
/// measured, with the error in the report.
pub(crate) fn run(
    a: &ClientArgs,
    protocol: Protocol,
    ideal: Ideal,
    base_rtt_source: &str,
    link: &Link,
) -> Result<Outcome> {
    if let Some(cpu) = a.cpu {
        crate::pin::pin_current_thread(cpu)?;
    }
    let plan = plan(a, protocol, link.mbps)?;
    let exp = a
        .exp
        .clone()
        .unwrap_or_else(|| format!("{}_{}", protocol.name(), a.workload));
    let total = match plan.stop {
        Stop::Time { warmup, window } => (warmup + window).as_secs_f64(),
        Stop::Count(_) => 0.0,
    };
    let run = Arc::new(Run::new(plan));
    let cpu = homa_sys::process::CpuMeter::process()?;
    let handles = loadgen::spawn_ports(&run)?;
    let mut progress = Progress::new(&exp, !a.quiet && total > 0.0);
    let (mut cursors, mut outs) = (Vec::new(), Vec::new());
    let mut tick = run.start + Duration::from_secs(1);
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(20));
        for line in run.take_new_errors() {
            progress.line(&line);
        }
        let now = Instant::now();
        if now < tick {
            continue;
        }
        let secs = (now - tick + Duration::from_secs(1)).as_secs_f64();
        tick = now + Duration::from_secs(1);
        let iv = loadgen::interval(&run, &mut cursors, &mut outs);
        if !a.quiet {
            progress.line(&format!(
                "{exp} clients: {:.2} Kops/s, {:.3} Gbit/s out, {:.3} Gbit/s in, RTT (us) P50 {:.1} P99 {:.1} P99.9 {:.1}, avg. request {:.0} bytes, outstanding {}",
                iv.calls as f64 / secs / 1e3,
                iv.bytes_out as f64 * 8.0 / secs / 1e9,
                iv.bytes_in as f64 * 8.0 / secs / 1e9,
                iv.rtt_us.p50,
                iv.rtt_us.p99,
                iv.rtt_us.p999,
                if iv.calls > 0 { iv.request_bytes as f64 / iv.calls as f64 } else { 0.0 },
                iv.outstanding,
            ));
            let elapsed = (now - run.start).as_secs_f64();
            progress.update(elapsed, total, "");
        }
    }
    progress.finish();
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))?;
    }
    for line in run.take_new_errors() {
        errln!("{line}");
    }
    let mut out = outcome(a, protocol, &run, ideal, base_rtt_source, link);
    out.report.cpu_us_per_rpc = cpu.micros_per(out.report.calls)?;
    Ok(out)
}

/// Lowers a measured base RTT that the runs beat: the unloaded probe's
/// fastest RPC must not be slower than a loaded one (less its transfer
/// time), or slowdowns fall below 1. That happens when the probe ran on a
/// busy machine (an outside test saw a base of 3 984 us against a run
/// whose fastest RPC took 9.5 us: slowdown P50 0.003). The reports of all
/// protocols keep one base, so that their slowdowns compare; each says so.
fn lower_base(outcomes: &mut [Outcome], ideal: Ideal) {
    let samples: Vec<Sample> = outcomes
        .iter()
        .flat_map(|o| o.samples.iter().copied())
        .collect();
    let Some(floor) = ideal.floor_of(&samples) else {
        return;
    };
    if floor >= ideal.base_rtt_us {
        return;
    }
    let lowered = Ideal {
        base_rtt_us: floor,
        ..ideal
    };
    for o in outcomes {
        o.report.summary = results::summarize(&o.samples, lowered);
        o.report.base_rtt_source = "lowered".to_string();
        // A run has more RPCs than the probe: a slightly faster one is
        // chance; a base twice the run's floor is a probe that was held up.
        if floor < ideal.base_rtt_us / 2.0 {
            o.report.warnings.push(format!(
                "the unloaded probe's fastest RPC ({:.1} us) was slower than an RPC of the run ({floor:.1} us, less its transfer time): the machine was busy while the probe ran; the slowdowns use the run's",
                ideal.base_rtt_us
            ));
        }
    }
}

/// The report of `run` (finished, or never started when `run` failed
/// before its ports did).
fn outcome(
    a: &ClientArgs,
    protocol: Protocol,
    run: &Run,
    ideal: Ideal,
    base_rtt_source: &str,
    link: &Link,
) -> Outcome {
    let exp = a
        .exp
        .clone()
        .unwrap_or_else(|| format!("{}_{}", protocol.name(), a.workload));
    loadgen::count_unfinished(run);
    let recs = loadgen::measured(run);
    // The time actually measured: a run stopped by a fatal error covers
    // its window up to then.
    let seconds = match run.plan.stop {
        Stop::Time { warmup, window } => run
            .stopped_after()
            .map_or(window, |t| t.saturating_sub(warmup).min(window))
            .as_secs_f64(),
        Stop::Count(_) => recs
            .iter()
            .map(|r| r.done_ns)
            .max()
            .map_or(0.0, |n| n as f64 / 1e9),
    }
    .max(1e-9);
    let samples: Vec<Sample> = recs
        .iter()
        .map(|r| Sample {
            length: r.length,
            rtt_us: r.rtt_ns as f64 / 1000.0,
        })
        .collect();
    let sum = |f: &dyn Fn(&Run, usize) -> u64| (0..run.ports.len()).map(|i| f(run, i)).sum::<u64>();
    let issued = sum(&|r, i| r.ports[i].issued.load(Ordering::Relaxed));
    let out_bytes: u64 = recs.iter().map(|r| u64::from(r.length)).sum();
    let in_bytes: u64 = recs.iter().map(|r| u64::from(r.response)).sum();
    let calls = recs.len() as u64;
    let summary = results::summarize(&samples, ideal);
    let late_fraction = if issued > 0 {
        sum(&|r, i| r.ports[i].late.load(Ordering::Relaxed)) as f64 / issued as f64
    } else {
        0.0
    };
    let lag_us_mean = if issued > 0 {
        sum(&|r, i| r.ports[i].lag_ns.load(Ordering::Relaxed)) as f64 / issued as f64 / 1e3
    } else {
        0.0
    };
    let mut warnings = Vec::new();
    if a.gbps > 0.0 && late_fraction > 0.01 {
        warnings.push(format!(
            "the client fell behind its schedule: {:.1}% of requests were late (found --client-max {} requests outstanding and waited for one to finish; mean lag behind the Poisson schedule {:.1} us). The offered {} Gbit/s was not met and the run was partly closed loop: raise --client-max (or --ports)",
            late_fraction * 100.0,
            a.client_max,
            lag_us_mean,
            a.gbps
        ));
    }
    let report = Report {
        exp,
        protocol,
        workload: a.workload.to_string(),
        variant: a.variant,
        one_way: a.one_way,
        node: a.id,
        servers: run.plan.targets.iter().map(|t| t.addr).collect(),
        ports: run.plan.ports,
        client_max: a.client_max,
        gbps_target: a.gbps,
        seconds,
        calls,
        failed: sum(&|r, i| r.ports[i].failed.load(Ordering::Relaxed)),
        unfinished: sum(&|r, i| r.ports[i].unfinished.load(Ordering::Relaxed)),
        calls_per_sec: calls as f64 / seconds,
        gbps: (out_bytes + in_bytes) as f64 * 8.0 / seconds / 1e9,
        gbps_out: out_bytes as f64 * 8.0 / seconds / 1e9,
        gbps_in: in_bytes as f64 * 8.0 / seconds / 1e9,
        late_fraction,
        lag_us_mean,
        cpu_us_per_rpc: 0.0,
        rtt: summary.rtt_us.into(),
        rtt_cdf: rtt_cdf(&samples),
        base_rtt_source: base_rtt_source.to_string(),
        link_source: link.source.clone(),
        summary,
        error: run.fatal_error(),
        errors: run
            .error_counts()
            .into_iter()
            .map(|(message, count)| ErrorCount { message, count })
            .collect(),
        warnings,
        sockets: run
            .ports
            .iter()
            .filter_map(|p| p.socket.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect(),
    };
    Outcome { report, samples }
}

/// `path` with `-<protocol>` before its extension (several protocols
/// write one file each).
fn per_protocol(path: &std::path::Path, p: Protocol, several: bool) -> PathBuf {
    if !several {
        return path.to_path_buf();
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(e) => format!("{stem}-{}.{}", p.name(), e.to_string_lossy()),
        None => format!("{stem}-{}", p.name()),
    };
    path.with_file_name(name)
}

/// `homa client`: probes the base RTT, runs every protocol asked for and
/// writes everything asked for, also when a run stops on an error.
pub(crate) fn main(a: &ClientArgs) -> Result<()> {
    validate(a)?;
    let mut protocols = a.protocol.clone();
    protocols.dedup();
    if protocols.is_empty() {
        bail!("give --protocol homa, tcp or homa,tcp");
    }
    let link = link(a);
    let mut probe_error: Vec<(Protocol, String)> = Vec::new();
    let (base, base_src) = match a.base_rtt_us {
        Some(b) if b > 0.0 && b.is_finite() => (b, "given"),
        Some(b) => bail!("--base-rtt-us {b}: must be a positive number of microseconds"),
        None => {
            let mut best = f64::INFINITY;
            for &p in &protocols {
                match probe_base_rtt(a, p, link.mbps) {
                    Ok(b) => best = best.min(b),
                    Err(e) => probe_error.push((p, format!("probing the unloaded RTT: {e:#}"))),
                }
            }
            // No probe answered: the runs will not start either.
            (if best.is_finite() { best } else { 0.0 }, "measured")
        }
    };
    let ideal = Ideal {
        base_rtt_us: base,
        link_mbps: f64::from(link.mbps),
    };
    let several = protocols.len() > 1;
    let mut outcomes = Vec::new();
    let mut failure = None;
    for &p in &protocols {
        let o = match probe_error.iter().find(|(q, _)| *q == p) {
            // The run cannot start: its report says why (and the JSON is
            // written all the same).
            Some((_, e)) => {
                let r = Run::new(plan(a, p, link.mbps)?);
                r.fail(e.clone());
                outcome(a, p, &r, ideal, base_src, &link)
            }
            None => run(a, p, ideal, base_src, &link)?,
        };
        if let Some(path) = &a.dump_times {
            let path = per_protocol(path, p, several);
            let comment = format!(
                "RTTs of {} RPCs, {} {} (client node {})",
                o.report.calls,
                p.name(),
                o.report.workload,
                o.report.node
            );
            std::fs::write(&path, results::write_rtts(&o.samples, &comment))
                .with_context(|| format!("writing {}", path.display()))?;
        }
        if let Some(e) = &o.report.error {
            failure = Some(format!("the {} run: {e}", p.name()));
        } else if o.report.calls == 0 {
            failure = Some(format!("the {} run: no call succeeded", p.name()));
        }
        outcomes.push(o);
        if failure.is_some() {
            break;
        }
    }
    if base_src == "measured" {
        lower_base(&mut outcomes, ideal);
    }
    let reports: Vec<&Report> = outcomes.iter().map(|o| &o.report).collect();
    let json = if several {
        serde_json::to_string_pretty(&reports)?
    } else {
        serde_json::to_string_pretty(reports[0])?
    };
    if let Some(p) = &a.json_out {
        std::fs::write(p, &json).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &a.svg {
        let owned: Vec<Report> = reports.iter().map(|r| (*r).clone()).collect();
        std::fs::write(p, plot::reports(&owned))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if a.json {
        outln!("{json}")?;
    } else {
        for o in &outcomes {
            print_report(&o.report, &o.samples)?;
        }
        if protocols.contains(&Protocol::Homa) {
            outln!(
                "Homa threads waited with --polling {} (the default of server and client; compare spins: busy, rack sleeps: block)",
                crate::compare::polling_name(a.polling)
            )?;
        }
    }
    for r in &reports {
        for w in &r.warnings {
            errln!("warning: {}: {w}", r.protocol.name());
        }
    }
    if let Some(f) = failure {
        bail!("{f} (the figures above cover the calls that finished)");
    }
    Ok(())
}

fn print_report(r: &Report, samples: &[Sample]) -> std::io::Result<()> {
    outln!(
        "{}: {} RPCs in {:.2} s ({:.2} Kops/s, {:.3} Gbit/s out, {:.3} Gbit/s in), {} failed, {} unfinished{}",
        r.exp,
        r.calls,
        r.seconds,
        r.calls_per_sec / 1e3,
        r.gbps_out,
        r.gbps_in,
        r.failed,
        r.unfinished,
        if r.gbps_target > 0.0 {
            format!(", {:.1}% late (waited for --client-max)", r.late_fraction * 100.0)
        } else {
            String::new()
        }
    )?;
    for e in &r.errors {
        outln!("  {} calls failed: {}", e.count, e.message)?;
    }
    if r.calls == 0 {
        return Ok(());
    }
    outln!(
        "rtt: p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, mean {:.1} us",
        r.rtt.p50_us,
        r.rtt.p99_us,
        r.rtt.p999_us,
        r.rtt.mean_us
    )?;
    let s = &r.summary;
    outln!(
        "slowdown = RTT / (base RTT + length x 8 / link): base RTT {:.1} us ({}), link {:.1} Gbit/s ({})",
        s.ideal.base_rtt_us,
        match r.base_rtt_source.as_str() {
            "given" => "given",
            "lowered" => "the run's fastest RPC: the unloaded probe was slower",
            _ => "measured: the fastest of 200 unloaded 100-byte RPCs",
        },
        s.ideal.link_mbps / 1000.0,
        r.link_source
    )?;
    outln!(
        "slowdown: mean {:.2}; short messages (<= {} B, {:.1}%): RTT P50 {:.1} P99 {:.1} us, slowdown P50 {:.2} P99 {:.2}",
        s.slowdown.mean,
        s.short.max_length,
        s.short.fraction * 100.0,
        s.short.rtt_us.p50,
        s.short.rtt_us.p99,
        s.short.slowdown.p50,
        s.short.slowdown.p99
    )?;
    outln!(
        "throughput: {:.0} calls/s, {:.3} Gbit/s (request + response bytes)",
        r.calls_per_sec,
        r.gbps
    )?;
    outln!(
        "cpu: {:.2} us per RPC (user + system, every thread of the client process, warm-up included)",
        r.cpu_us_per_rpc
    )?;
    if !samples.is_empty() {
        out!("{}", results::table(samples, s.ideal, 15))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Opts {
        #[command(flatten)]
        homa: HomaKnobs,
    }

    #[test]
    fn homa_knobs__args_parse_back() {
        let k = HomaKnobs {
            link_mbps: Some(1000),
            nic_backlog_us: Some(512),
            resend_ms: Some(125.5),
            need_ack_ms: None,
            unsched_bytes: Some(9000),
            max_incoming: Some(800_000),
        };
        let args = k.args();
        assert_eq!(args.len(), 10);
        let parsed = Opts::try_parse_from(std::iter::once("x".to_string()).chain(args)).unwrap();
        assert_eq!(parsed.homa, k);
        assert!(HomaKnobs::default().args().is_empty());
    }

    #[derive(Debug, Parser)]
    struct Client {
        #[command(flatten)]
        a: ClientArgs,
    }

    #[test]
    fn lower_base__a_probe_slower_than_the_run_gives_way_to_the_run() {
        let a = Client::try_parse_from(["x", "--server", "127.0.0.1:9", "--count", "3"])
            .unwrap()
            .a;
        let link = Link {
            mbps: 1000,
            source: "given".into(),
        };
        let report = |base: f64| {
            let ideal = Ideal {
                base_rtt_us: base,
                link_mbps: 1000.0,
            };
            let run = Run::new(plan(&a, Protocol::Homa, link.mbps).unwrap());
            let mut o = outcome(&a, Protocol::Homa, &run, ideal, "measured", &link);
            // 100 B at 1 Gbit/s is 0.8 us on the wire; 10 kB 80 us.
            o.samples = vec![
                Sample {
                    length: 100,
                    rtt_us: 9.5,
                },
                Sample {
                    length: 10_000,
                    rtt_us: 95.0,
                },
                Sample {
                    length: 100,
                    rtt_us: 30.0,
                },
            ];
            o.report.summary = results::summarize(&o.samples, ideal);
            let mut all = [o];
            lower_base(&mut all, ideal);
            let [o] = all;
            o
        };
        // The busy probe (3 984 us, as an outside test saw): lowered.
        let o = report(3984.0);
        assert!((o.report.summary.ideal.base_rtt_us - 8.7).abs() < 1e-9);
        assert_eq!(o.report.base_rtt_source, "lowered");
        assert_eq!(o.report.warnings.len(), 1);
        assert!(
            o.report.summary.slowdown.p50 >= 1.0,
            "{:?}",
            o.report.summary.slowdown
        );
        // Slightly above the run's floor: lowered without a warning.
        let o = report(9.0);
        assert_eq!(o.report.base_rtt_source, "lowered");
        assert!(o.report.warnings.is_empty());
        // A probe at or below the run's floor stands.
        let o = report(5.0);
        assert_eq!(o.report.summary.ideal.base_rtt_us, 5.0);
        assert_eq!(o.report.base_rtt_source, "measured");
        assert!(o.report.warnings.is_empty());
    }

    #[test]
    fn rtt_cdf__same_percentiles_as_the_report() {
        // RTTs of 1.000, 1.001, ... 1000.999 ms: far above the histogram's
        // exact range, so a second convention would show.
        let samples: Vec<Sample> = (0..1_000_000u32)
            .step_by(997)
            .map(|i| Sample {
                length: 100,
                rtt_us: 1000.0 + f64::from(i),
            })
            .collect();
        let cdf = rtt_cdf(&samples);
        let spread = results::Spread::of(samples.iter().map(|s| s.rtt_us).collect());
        let at = |q: f64| {
            cdf.iter()
                .find(|p| p.fraction >= q)
                .map(|p| p.rtt_us)
                .unwrap()
        };
        assert_eq!(at(0.5), spread.p50);
        assert_eq!(at(0.99), spread.p99);
        assert_eq!(at(0.999), spread.p999);
        assert_eq!(cdf.last().unwrap().fraction, 1.0);
        assert!(cdf.windows(2).all(|w| w[0].rtt_us <= w[1].rtt_us));
    }
}
