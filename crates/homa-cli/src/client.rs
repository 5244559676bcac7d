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
use serde::Serialize;

use crate::bench::{self, Polling};
use crate::loadgen::{self, Plan, Protocol, Run, Stop};
use crate::plot::{self, Series};
use crate::progress::Progress;
use crate::results::{self, Ideal, Sample, Summary};
use crate::stats::Latency;

/// Which form of a named workload to draw from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VariantArg {
    /// The kernel benchmark's CDF, capped at 1 MB (cp_node's).
    CpNode,
    /// The full distribution (W4 reaches 10 MB, W5 29 MB).
    Raw,
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
pub struct ClientArgs {
    /// Server addresses, comma-separated (or the option repeated).
    #[arg(
        long = "server",
        alias = "servers",
        value_delimiter = ',',
        default_value = "127.0.0.1:4000"
    )]
    pub servers: Vec<SocketAddr>,
    /// Ports per server: each address also stands for the next n-1 ports.
    #[arg(long, default_value_t = 1)]
    pub server_ports: u16,
    /// Transport.
    #[arg(long, value_enum, default_value_t = Protocol::Homa)]
    pub protocol: Protocol,
    /// Request sizes: w1..w5, starve, or a fixed size in bytes.
    #[arg(short, long, alias = "size", default_value = "100")]
    pub workload: SizeSpec,
    /// Form of a named workload.
    #[arg(long, value_enum, default_value_t = VariantArg::CpNode)]
    pub variant: VariantArg,
    /// Open loop: Gbit/s of requests from this client (Poisson arrivals;
    /// cp_node's --gbps). 0: closed loop.
    #[arg(long, default_value_t = 0.0)]
    pub gbps: f64,
    /// Most requests outstanding over all ports; in closed loop, always
    /// this many.
    #[arg(long, alias = "concurrency", default_value_t = 1)]
    pub client_max: usize,
    /// Client ports: sockets, each on its own thread.
    #[arg(long, default_value_t = 1)]
    pub ports: usize,
    /// Ask for 100-byte responses instead of echoed lengths.
    #[arg(long)]
    pub one_way: bool,
    /// Stop after this many RPCs (over all ports).
    #[arg(long, conflicts_with = "duration")]
    pub count: Option<u64>,
    /// Seconds of measurement (after the warm-up).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Seconds of traffic before measuring.
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// Seconds to wait for outstanding RPCs after the window.
    #[arg(long, default_value_t = 2.0)]
    pub drain: f64,
    /// TCP connections per client port and server address.
    #[arg(long, default_value_t = 1)]
    pub tcp_conns: usize,
    /// This node's id (in message headers).
    #[arg(long, default_value_t = 0)]
    pub id: u8,
    /// How waiting Homa threads wait (TCP always sleeps in epoll).
    #[arg(long, value_enum, default_value_t = Polling::Adaptive)]
    pub polling: Polling,
    /// Give up on an RPC after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Pin the client threads to this CPU.
    #[arg(long)]
    pub cpu: Option<usize>,
    // Homa's settings (`--link-mbps` is also the slowdown denominator).
    #[command(flatten)]
    pub homa: HomaKnobs,
    /// Unloaded short-message RTT for slowdown, µs (default: the smallest
    /// RTT of this run, an estimate).
    #[arg(long)]
    pub base_rtt_us: Option<f64>,
    /// Seed of sizes, destinations and gaps (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Experiment name for the per-second lines.
    #[arg(long)]
    pub exp: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// Write every measured RTT to this file (cp_node's dump_times format:
    /// `length rtt_us` per line).
    #[arg(long)]
    pub dump_times: Option<PathBuf>,
    /// Write a plot of slowdown against message size (SVG).
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// No per-second lines and no progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// The final report of a client.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
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
    /// Length of the measurement, s.
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
    /// Share of measured arrivals that waited for `client_max`.
    pub late_fraction: f64,
    /// Mean delay of an arrival behind its schedule, µs (open loop).
    pub lag_us_mean: f64,
    /// All RTTs (µs; percentiles in the kernel tools' convention, see
    /// [`results`]).
    pub rtt: Latency,
    /// Slowdown, short messages, buckets.
    pub summary: Summary,
    /// Homa: every client socket's counters at the end.
    pub sockets: Vec<serde_json::Value>,
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
pub struct HomaKnobs {
    /// Link speed, Mbit/s: Homa's pacer and, for `homa client`, the
    /// slowdown denominator (default 25000, Homa's default).
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
}

impl HomaKnobs {
    /// The knobs that are set, as command-line options.
    pub fn args(&self) -> Vec<String> {
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
        v
    }
}

/// Homa socket configuration: `bench::homa_config` plus the knobs.
pub fn homa_config(polling: Polling, server: bool, k: &HomaKnobs) -> homa_transport::Config {
    let mut c = bench::homa_config(polling, server, k.link_mbps);
    if let Some(us) = k.nic_backlog_us {
        c.proto.max_nic_backlog = Duration::from_micros(us);
    }
    if let Some(ms) = k.resend_ms {
        let d = Duration::from_secs_f64(ms.max(0.1) / 1e3);
        c.proto.resend_after = d;
        c.proto.resend_interval = d;
        // Give up only after several RESENDs went unanswered (and remember
        // finished requests for longer than that, as the protocol requires).
        c.proto.timeout = c.proto.timeout.max(d * 10);
        c.proto.done_id_lifetime = c.proto.done_id_lifetime.max(c.proto.timeout * 2);
    }
    if let Some(ms) = k.need_ack_ms {
        c.proto.need_ack_after = Duration::from_secs_f64(ms.max(0.1) / 1e3);
    }
    if let Some(b) = k.unsched_bytes {
        c.proto.unsched_bytes = b.max(1);
        c.proto.unsched_from_rtt = false;
    }
    c
}

/// Builds the generator's plan from the options.
pub fn plan(a: &ClientArgs) -> Result<Plan> {
    if a.count.is_none() && a.duration.is_none() {
        bail!("give --count or --duration");
    }
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
            warmup: Duration::from_secs_f64(a.warmup.max(0.0)),
            window: Duration::from_secs_f64(d.max(0.0)),
        },
        (None, None) => unreachable!("checked above"),
    };
    Ok(Plan {
        protocol: a.protocol,
        targets: loadgen::targets(&a.servers, a.server_ports),
        sizes,
        one_way: a.one_way,
        rate_per_port,
        max_per_port: a.client_max.div_ceil(ports).max(1),
        ports,
        stop,
        drain: Duration::from_secs_f64(a.drain.max(0.0)),
        node: a.id,
        homa: homa_config(a.polling, false, &a.homa),
        tcp_conns: a.tcp_conns,
        timeout: Duration::from_secs_f64(a.timeout),
        seed: a.seed.unwrap_or_else(|| default_seed(a.id)),
    })
}

/// Runs the client: per-second lines and the progress bar on stderr while
/// it runs; returns the report and the measured samples.
pub fn run(a: &ClientArgs) -> Result<(Report, Vec<Sample>)> {
    if let Some(cpu) = a.cpu {
        crate::pin::pin_current_thread(cpu)?;
    }
    let plan = plan(a)?;
    let exp = a
        .exp
        .clone()
        .unwrap_or_else(|| format!("{}_{}", a.protocol.name(), a.workload));
    let total = match plan.stop {
        Stop::Time { warmup, window } => (warmup + window).as_secs_f64(),
        Stop::Count(_) => 0.0,
    };
    let run = Arc::new(Run::new(plan));
    let handles = loadgen::spawn_ports(&run)?;
    let mut progress = Progress::new(&exp, !a.quiet);
    let (mut cursors, mut outs) = (Vec::new(), Vec::new());
    let mut tick = run.start + Duration::from_secs(1);
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(20));
        let now = Instant::now();
        if now < tick {
            continue;
        }
        let secs = (now - tick + Duration::from_secs(1)).as_secs_f64();
        tick = now + Duration::from_secs(1);
        let iv = loadgen::interval(&run, &mut cursors, &mut outs);
        if !a.quiet {
            progress.line(&format!(
                "{exp} clients: {:.2} Kops/sec, {:.3} Gbps out, {:.3} Gbps in, RTT (us) P50 {:.1} P99 {:.1} P99.9 {:.1}, avg. req. length {:.0} bytes, outstanding {}",
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
    if let Some(e) = run.fatal_error() {
        bail!("{e}");
    }
    loadgen::count_unfinished(&run);
    let recs = loadgen::measured(&run);
    let seconds = match run.plan.stop {
        Stop::Time { window, .. } => window.as_secs_f64(),
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
    let base_rtt_us = a.base_rtt_us.unwrap_or_else(|| {
        samples
            .iter()
            .map(|s| s.rtt_us)
            .fold(f64::INFINITY, f64::min)
            .min(1e9)
    });
    let ideal = Ideal {
        base_rtt_us,
        link_mbps: f64::from(a.homa.link_mbps.unwrap_or(25_000)),
    };
    let sum =
        |f: &dyn Fn(&Run, usize) -> u64| (0..run.ports.len()).map(|i| f(&run, i)).sum::<u64>();
    let issued = sum(&|r, i| r.ports[i].issued.load(Ordering::Relaxed));
    let out_bytes: u64 = recs.iter().map(|r| u64::from(r.length)).sum();
    let in_bytes: u64 = recs.iter().map(|r| u64::from(r.response)).sum();
    let calls = recs.len() as u64;
    let summary = results::summarize(&samples, ideal);
    let report = Report {
        exp,
        protocol: a.protocol,
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
        late_fraction: if issued > 0 {
            sum(&|r, i| r.ports[i].late.load(Ordering::Relaxed)) as f64 / issued as f64
        } else {
            0.0
        },
        lag_us_mean: if issued > 0 {
            sum(&|r, i| r.ports[i].lag_ns.load(Ordering::Relaxed)) as f64 / issued as f64 / 1e3
        } else {
            0.0
        },
        rtt: summary.rtt_us.into(),
        summary,
        sockets: run
            .ports
            .iter()
            .filter_map(|p| p.socket.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect(),
    };
    Ok((report, samples))
}

/// `homa client`: runs and writes everything asked for.
pub fn main(a: &ClientArgs) -> Result<()> {
    let (report, samples) = run(a)?;
    if let Some(p) = &a.dump_times {
        let comment = format!(
            "RTTs of {} RPCs, {} {} (client node {})",
            report.calls,
            report.protocol.name(),
            report.workload,
            report.node
        );
        std::fs::write(p, results::write_rtts(&samples, &comment))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(p) = &a.json_out {
        std::fs::write(p, &json).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &a.svg {
        let b = &report.summary.buckets;
        let color = match report.protocol {
            Protocol::Homa => plot::HOMA_COLOR,
            Protocol::Tcp => plot::TCP_COLOR,
        };
        let svg = plot::render(
            &format!("{}: slowdown by message size", report.exp),
            "message length (bytes)",
            "slowdown",
            &[
                Series::slowdown("P50", color, true, b, 50),
                Series::slowdown("P99", color, false, b, 99),
            ],
        );
        std::fs::write(p, svg).with_context(|| format!("writing {}", p.display()))?;
    }
    if a.json {
        println!("{json}");
    } else {
        print_report(&report, &samples);
    }
    if report.calls == 0 {
        bail!("no call succeeded");
    }
    Ok(())
}

fn print_report(r: &Report, samples: &[Sample]) {
    println!(
        "{}: {} RPCs in {:.2} s ({:.2} Kops/s, {:.3} Gbit/s out, {:.3} Gbit/s in), {} failed, {} unfinished, {:.1}% late",
        r.exp,
        r.calls,
        r.seconds,
        r.calls_per_sec / 1e3,
        r.gbps_out,
        r.gbps_in,
        r.failed,
        r.unfinished,
        r.late_fraction * 100.0
    );
    println!(
        "rtt: p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, mean {:.1} us",
        r.rtt.p50_us, r.rtt.p99_us, r.rtt.p999_us, r.rtt.mean_us
    );
    let s = &r.summary;
    println!(
        "slowdown (base RTT {:.1} us, link {:.0} Mbit/s): mean {:.2}; short messages (<= {} B, {:.1}%): RTT P50 {:.1} P99 {:.1} us, slowdown P50 {:.2} P99 {:.2}",
        s.ideal.base_rtt_us,
        s.ideal.link_mbps,
        s.slowdown.mean,
        s.short.max_length,
        s.short.fraction * 100.0,
        s.short.rtt_us.p50,
        s.short.rtt_us.p99,
        s.short.slowdown.p50,
        s.short.slowdown.p99
    );
    println!(
        "throughput: {:.0} calls/s, {:.3} Gbit/s (request + response bytes)",
        r.calls_per_sec, r.gbps
    );
    if !samples.is_empty() {
        print!("{}", results::table(samples, s.ideal, 15));
    }
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
        };
        let args = k.args();
        assert_eq!(args.len(), 8);
        let parsed = Opts::try_parse_from(std::iter::once("x".to_string()).chain(args)).unwrap();
        assert_eq!(parsed.homa, k);
        assert!(HomaKnobs::default().args().is_empty());
    }
}
