//! `homa rack`: an emulated rack on one machine, and Homa against TCP in
//! it, in the manner of the kernel module's `cp_vs_tcp`.
//!
//! # The rack
//!
//! One network namespace per host (`h1`..`hN`, default 4) and one for the
//! top-of-rack switch (`sw`), which routes (a bridge would keep the
//! sender's socket charged for packets queued in the switch). Each host is
//! a veth pair away from the switch, `10.201.<i>.2/24` with the switch at
//! `.1`. Every switch port toward a host is shaped to the line rate
//! (`--rate-mbit`, default 1000) by htb with eight strict-priority classes
//! keyed on the IP precedence, i.e. on the DSCP bits where Homa puts its
//! priority ([`homa_lab::Lab::shape_priorities`]): the switch's output
//! queues are where Homa's scheduling and priorities matter. Host egress
//! is not shaped (a real host's NIC would be): Homa paces itself to the
//! link rate, TCP does not and queues in the switch like on real hardware.
//! GRO is on at the hosts, segmentation offload off on the switch's egress
//! (so packets are shaped and delivered one by one and coalesced again by
//! the receiving host's GRO).
//!
//! # The experiment
//!
//! For each protocol (Homa, then TCP): a `homa server` per host, then the
//! unloaded round trip (100-byte RPCs, one at a time, `h1` to a server of
//! its own in `h2`, which exits after), then a
//! `homa client` per host sending to every other host at once (all to all)
//! at the offered load, each process in its host's namespace. Each client
//! writes its RTTs (`dump_times` format) and a JSON report into the output
//! directory; the rack merges them per protocol and computes slowdown with
//! one denominator for both protocols: `base_rtt + length × 8 / rate`,
//! `base_rtt` the smaller of the two unloaded median RTTs.
//!
//! The load is the share of each host's downlink the RPCs take. By default
//! (`--load-basis wire`) it counts bytes as the switch's shaper does, with
//! Homa's packet headers ([`shaped_wire_bytes`]: Ethernet, IP, UDP,
//! DATA), the definition of homa-sim's load; `--load-basis message` counts
//! message bytes only, like cperf's `--gbps` (W1–W3 then overload the link
//! at 0.8: headers add 20–25% to their short messages). Every host's
//! client sends requests at the rate that, with the responses, loads every
//! downlink to `load` (echoed responses: half of it each way, cperf's
//! rule).
//!
//! Everything created is deleted at the end, on error, on Ctrl-C and on
//! SIGTERM (the [`homa_lab::Lab`] guarantees; child processes die with the
//! rack). The machine-wide `htb_hysteresis` setting is restored.
//!
//! # Homa's settings at emulated link speeds
//!
//! Homa's defaults (the kernel's) are sized for 25 Gbit/s NICs. The rack
//! passes its rate as `link_mbps` and stretches the time constants that
//! only make sense in link time ([`rack_knobs`]): the pacer's backlog,
//! the RESEND silence and the NEED_ACK delay.
//!
//! `--probe` first measures how close htb comes to strict priority on the
//! rack just built: 64-byte UDP pings from `h3` to `h2` (echoed back by
//! `h2`) while `h1` floods `h2`'s port at 1.25× the line rate with
//! precedence-0 traffic.
//!
//! `docs/benchmarks.md` explains the figures, why each setting is scaled
//! (what the protocol's defaults did at 1 Gbit/s), the limits of the
//! emulation, and the results measured so far.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use homa_lab::{Lab, Shaper};
use homa_workload::SizeSpec;
use serde::Serialize;

use crate::bench::Polling;
use crate::client::{HomaKnobs, VariantArg};
use crate::header::SHORT_RESPONSE_LEN;
use crate::loadgen::{self, Protocol};
use crate::out::{out, outln};
use crate::plot;
use crate::progress::Progress;
use crate::results::{self, Ideal, Sample, Summary};

/// `homa rack`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RackArgs {
    /// Hosts in the rack.
    #[arg(long, default_value_t = 4)]
    pub hosts: usize,
    /// Rate of every switch port toward a host, Mbit/s (also Homa's
    /// `link_mbps`).
    #[arg(long, default_value_t = 1000, value_parser = crate::args::positive_u64)]
    pub rate_mbit: u64,
    /// Workload: w1..w5, starve, or a fixed size in bytes.
    #[arg(short, long, default_value = "w4")]
    pub workload: SizeSpec,
    /// Form of a named workload.
    #[arg(long, value_enum, default_value_t = VariantArg::CpNode)]
    pub variant: VariantArg,
    /// Offered load: share of each host's downlink taken (see --load-basis),
    /// more than 0 and at most 1.
    #[arg(short, long, default_value_t = 0.8, value_parser = crate::args::link_share)]
    pub load: f64,
    /// What the load counts: wire bytes with Homa's packet headers (as the
    /// shaper counts them, and as homa-sim's load), or message bytes only
    /// (cperf's --gbps; W1-W3 then overload the link at 0.8: their headers
    /// add 20-25%).
    #[arg(long, value_enum, default_value_t = LoadBasis::Wire)]
    pub load_basis: LoadBasis,
    /// Measured per protocol (10s, 250ms; a plain number is seconds).
    #[arg(long, default_value = "10s", value_parser = crate::args::positive_duration)]
    pub duration: Duration,
    /// Load before measuring.
    #[arg(long, default_value = "2s", value_parser = crate::args::duration)]
    pub warmup: Duration,
    /// Protocols to run, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "homa,tcp")]
    pub protocols: Vec<Protocol>,
    /// 100-byte responses instead of echoed lengths.
    #[arg(long)]
    pub one_way: bool,
    /// Client ports (sockets, threads) per host.
    #[arg(long, default_value_t = 1)]
    pub client_ports: usize,
    /// Server ports per host.
    #[arg(long, default_value_t = 1)]
    pub server_ports: u16,
    /// Threads per server port (Homa) or server runtime workers (TCP).
    #[arg(long, default_value_t = 1)]
    pub server_threads: usize,
    /// Server processes and client processes per host (K): each client
    /// spreads its requests over the K servers of every other host, and
    /// the host's offered load is split over its K clients.
    #[arg(long, default_value_t = 1)]
    pub procs_per_host: usize,
    /// Homa processes of a host share one host table in shared memory
    /// (one pacer estimate, grant budget and ranking:
    /// `HOMA_HOST_SHARING=host`) instead of scheduling independently.
    #[arg(long, conflicts_with = "no_host_sharing")]
    pub host_sharing: bool,
    /// Homa processes of a host schedule independently (each its own
    /// pacer estimate, grant budget and ranking: `HOMA_HOST_SHARING=process`):
    /// the default, as in the library; `--host-sharing` turns sharing on.
    #[arg(long)]
    pub no_host_sharing: bool,
    /// Homa processes schedule alone and not even the sockets of one
    /// process share a table (`HOMA_HOST_SHARING=off`: the scheduling of
    /// the library before host sharing).
    #[arg(long, conflicts_with_all = ["host_sharing", "no_host_sharing"])]
    pub host_sharing_off: bool,
    /// TCP connections per client port and server port.
    #[arg(long, default_value_t = 8)]
    pub tcp_conns: usize,
    /// Most requests outstanding per client host.
    #[arg(long, default_value_t = 200)]
    pub client_max: usize,
    /// How waiting Homa threads wait. Block here (server and client default
    /// to adaptive): CPU is scarce, every host shares the machine's cores.
    #[arg(long, value_enum, default_value_t = Polling::Block)]
    pub polling: Polling,
    /// Unloaded RTT for slowdown, µs (default: measured).
    #[arg(long)]
    pub base_rtt_us: Option<f64>,
    /// Length of the unloaded RTT measurement per protocol.
    #[arg(long, default_value = "2s", value_parser = crate::args::positive_duration)]
    pub base_duration: Duration,
    /// Homa's settings, passed to every server and client of the rack. The
    /// link is --rate-mbit; unset time constants are scaled to it (module
    /// docs): --nic-backlog-us one 64 KB GSO batch at the port rate (at
    /// most 512 µs), --resend-ms the kernel's 5 ms at 25 Gbit/s scaled to
    /// the port rate (at most 1000), --need-ack-ms the kernel's 2 ms scaled
    /// the same way (at most 50).
    #[command(flatten)]
    pub homa: HomaKnobs,
    /// Bytes of queue per priority class at each switch port.
    #[arg(long, default_value_t = 1_000_000)]
    pub queue_bytes: u32,
    /// Measure how close the switch's priority classes come to strict
    /// priority before the workload.
    #[arg(long)]
    pub probe: bool,
    /// Only build the rack and probe its priorities (implies --probe).
    #[arg(long)]
    pub probe_only: bool,
    /// Nice value of the rack's processes (negative: ahead of other work on
    /// a shared machine; 0 leaves it alone).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub nice: i32,
    /// Prefix of the namespaces (`<prefix>-sw`, `<prefix>-h1`, ...).
    #[arg(long, default_value = "homa-rack")]
    pub prefix: String,
    /// Directory for results (created; default
    /// `target/homa-rack/<workload>-<load>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seed of the clients (host i uses seed + i).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the JSON report instead of the table.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// What `--load` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LoadBasis {
    /// Bytes on the wire with Homa's headers.
    Wire,
    /// Message bytes only.
    Message,
}

/// Ports the servers use.
fn first_port(p: Protocol) -> u16 {
    match p {
        Protocol::Homa => 4000,
        Protocol::Tcp => 5000,
    }
}

/// `HOMA_HOST_SHARING` for the rack's Homa processes.
fn sharing_mode(a: &RackArgs) -> &'static str {
    if a.host_sharing {
        "host"
    } else if a.host_sharing_off {
        "off"
    } else {
        "process"
    }
}

/// A built rack: the lab and the host namespaces with their addresses.
struct Rack {
    lab: Lab,
    sw: String,
    hosts: Vec<(String, String)>,
    switch_ports: Vec<String>,
    /// `HOMA_HOST_DIR` of the Homa processes with `--host-sharing`: the
    /// lab's directory, deleted with it (each host namespace's table would
    /// otherwise stay in `/dev/shm` after the run).
    host_dir: Option<std::path::PathBuf>,
}

impl Rack {
    fn build(a: &RackArgs) -> Result<Rack> {
        if a.hosts < 2 || a.hosts > 200 {
            bail!("--hosts must be 2..=200");
        }
        if a.procs_per_host == 0 || a.procs_per_host * usize::from(a.server_ports) > 500 {
            bail!("--procs-per-host must be 1.. and --procs-per-host x --server-ports at most 500");
        }
        let mut lab = Lab::new(&a.prefix).map_err(|e| anyhow!("{e}"))?;
        let sw = lab.namespace("sw")?;
        lab.sysctl(&sw, "net.ipv4.ip_forward", "1")?;
        let mut shaper = Shaper::new(a.rate_mbit);
        shaper.queue_bytes = a.queue_bytes;
        let mut hosts = Vec::new();
        let mut switch_ports = Vec::new();
        for i in 1..=a.hosts {
            let h = lab.namespace(&format!("h{i}"))?;
            let addr = format!("10.201.{i}.2");
            let gw = format!("10.201.{i}.1");
            let (h_if, sw_if) = lab.link(&h, &format!("{addr}/24"), &sw, &format!("{gw}/24"))?;
            lab.ip(&h, &["route", "add", "default", "via", &gw])?;
            lab.offloads(&h, &h_if, true, true)?;
            lab.offloads(&sw, &sw_if, false, true)?;
            lab.shape_priorities(&sw, &sw_if, &shaper)?;
            hosts.push((h, addr));
            switch_ports.push(sw_if);
        }
        let host_dir = if a.host_sharing {
            Some(lab.shm_dir()?)
        } else {
            None
        };
        Ok(Rack {
            lab,
            sw,
            hosts,
            switch_ports,
            host_dir,
        })
    }
}

/// Sets the nice value of what `c` starts (no-op for 0).
fn with_nice(c: &mut std::process::Command, nice: i32) {
    homa_sys::process::nice_on_exec(c, nice);
}

/// Child processes, killed (and reaped) when dropped.
#[derive(Default)]
struct Procs(Vec<(String, Child)>);

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Reads the `listening on` lines a server prints first.
fn wait_listening(c: &mut Child, ports: u16, what: &str) -> Result<()> {
    let out = c
        .stdout
        .take()
        .ok_or_else(|| anyhow!("{what}: no stdout"))?;
    let mut r = BufReader::new(out);
    for _ in 0..ports.max(1) {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 || !line.starts_with("listening on") {
            bail!("{what} did not start (see its log)");
        }
    }
    Ok(())
}

fn log_file(out: &Path, name: &str) -> Result<std::fs::File> {
    let p = out.join(name);
    std::fs::File::create(&p).with_context(|| format!("creating {}", p.display()))
}

/// CPU time of the whole machine, for the busy share of a phase.
#[derive(Debug, Clone, Copy, Default)]
struct CpuTimes {
    busy: u64,
    total: u64,
}

fn cpu_times() -> CpuTimes {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = s.lines().next().unwrap_or("");
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    CpuTimes {
        busy: total.saturating_sub(idle),
        total,
    }
}

fn children_cpu_secs() -> f64 {
    homa_sys::process::children_cpu_time().map_or(0.0, |d| d.as_secs_f64())
}

fn load_average() -> f64 {
    crate::pin::load_average().unwrap_or(0.0)
}

/// Bytes, packets and drops of one priority class summed over the
/// switch's ports.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub(crate) struct ClassStats {
    /// IP precedence (Homa priority level).
    pub precedence: u8,
    /// Bytes sent.
    pub bytes: u64,
    /// Packets sent (GSO super-packets count once).
    pub packets: u64,
    /// Packets dropped (queue full).
    pub dropped: u64,
}

/// Parses `tc -s qdisc show` of a shaped port: the leaf `bfifo` qdiscs
/// `2p:` under classes `1:1p`.
fn parse_leaf_qdiscs(text: &str) -> Vec<ClassStats> {
    let mut out = Vec::new();
    let mut cur: Option<u8> = None;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with("qdisc ") {
            cur = l
                .split_whitespace()
                .skip_while(|w| *w != "parent")
                .nth(1)
                .and_then(|p| p.strip_prefix("1:1"))
                .and_then(|p| p.parse().ok());
        } else if let (Some(p), Some(rest)) = (cur, l.strip_prefix("Sent ")) {
            let w: Vec<&str> = rest
                .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
                .filter(|w| !w.is_empty())
                .collect();
            let num = |i: usize| w.get(i).and_then(|x| x.parse().ok()).unwrap_or(0);
            out.push(ClassStats {
                precedence: p,
                bytes: num(0),
                packets: num(2),
                dropped: num(5),
            });
            cur = None;
        }
    }
    out
}

fn switch_stats(rack: &Rack) -> [ClassStats; 8] {
    let mut acc = [ClassStats::default(); 8];
    for (i, c) in acc.iter_mut().enumerate() {
        c.precedence = i as u8;
    }
    for dev in &rack.switch_ports {
        if let Ok(o) = rack
            .lab
            .exec(&rack.sw, "tc", &["-s", "qdisc", "show", "dev", dev])
        {
            for c in parse_leaf_qdiscs(&String::from_utf8_lossy(&o.stdout)) {
                let a = &mut acc[usize::from(c.precedence.min(7))];
                a.bytes += c.bytes;
                a.packets += c.packets;
                a.dropped += c.dropped;
            }
        }
    }
    acc
}

fn stats_delta(after: &[ClassStats; 8], before: &[ClassStats; 8]) -> Vec<ClassStats> {
    after
        .iter()
        .zip(before)
        .map(|(a, b)| ClassStats {
            precedence: a.precedence,
            bytes: a.bytes - b.bytes,
            packets: a.packets - b.packets,
            dropped: a.dropped - b.dropped,
        })
        .collect()
}

/// The unloaded RTT of one protocol.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Base {
    /// Protocol.
    pub protocol: Protocol,
    /// Median RTT of 100-byte RPCs, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// Samples.
    pub count: u64,
}

/// One protocol's loaded run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ProtocolRun {
    /// Protocol.
    pub protocol: Protocol,
    /// Measured RPCs completed, all hosts.
    pub calls: u64,
    /// Failed RPCs.
    pub failed: u64,
    /// RPCs unfinished at the end.
    pub unfinished: u64,
    /// Completed RPCs per second, all hosts.
    pub kops: f64,
    /// Message bytes received per host (requests and responses), Gbit/s:
    /// the achieved downlink load is this over the rate.
    pub gbps_per_host: f64,
    /// Share of arrivals that waited for `client_max`, averaged over hosts.
    pub late_fraction: f64,
    /// Busy share of the machine's CPUs during the run.
    pub cpu_busy: f64,
    /// CPU seconds of the rack's processes (servers and clients).
    pub process_cpu_s: f64,
    /// Per priority class at the switch ports: bytes, packets, drops.
    pub switch: Vec<ClassStats>,
    /// Hosts whose server exited during the run (the run is invalid).
    pub servers_exited: Vec<usize>,
    /// Slowdown and RTT summary.
    pub summary: Summary,
}

/// TCP's figures over Homa's.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Ratios {
    /// Short-message P50 RTT.
    pub short_p50: f64,
    /// Short-message P99 RTT.
    pub short_p99: f64,
    /// Short-message mean slowdown.
    pub short_mean_slowdown: f64,
    /// Mean slowdown of all messages.
    pub mean_slowdown: f64,
}

/// The htb priority check (`--probe`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Probe {
    /// Precedence-7 pings, idle port: P50, P99 µs.
    pub idle_us: (f64, f64),
    /// Precedence-7 pings while precedence 0 floods the port.
    pub prio_us: (f64, f64),
    /// Precedence-0 pings in the flood (a FIFO).
    pub fifo_us: (f64, f64),
    /// Flood rate offered, Mbit/s.
    pub flood_mbit: f64,
    /// Precedence-0 traffic the port carried during the pings, Mbit/s.
    pub served_mbit: f64,
}

/// Everything `homa rack` measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RackReport {
    /// Hosts.
    pub hosts: usize,
    /// Homa (and TCP) server and client processes per host.
    pub procs_per_host: usize,
    /// The Homa processes of a host shared one host table.
    pub host_sharing: bool,
    /// `HOMA_HOST_SHARING` of the Homa processes: `host`, `process` or
    /// `off`.
    pub sharing_mode: &'static str,
    /// Port rate, Mbit/s.
    pub rate_mbit: u64,
    /// Workload.
    pub workload: String,
    /// Its form.
    pub variant: VariantArg,
    /// Offered load.
    pub load: f64,
    /// Responses of 100 bytes.
    pub one_way: bool,
    /// Seconds measured per protocol.
    pub duration: f64,
    /// Requests per host, Gbit/s (the clients' `--gbps`).
    pub gbps_per_client: f64,
    /// Offered RPCs per second per host.
    pub kops_per_client: f64,
    /// Offered downlink load in message bytes.
    pub message_load: f64,
    /// Offered downlink load in wire bytes with Homa's headers.
    pub wire_load_homa: f64,
    /// Unloaded RTTs measured.
    pub base: Vec<Base>,
    /// The slowdown denominator's base RTT, µs.
    pub base_rtt_us: f64,
    /// Loaded runs.
    pub runs: Vec<ProtocolRun>,
    /// TCP over Homa, if both ran.
    pub ratios: Option<Ratios>,
    /// The priority check, if run.
    pub probe: Option<Probe>,
    /// 1-minute load average before and after.
    pub load_avg: (f64, f64),
}

/// `homa rack`.
pub(crate) fn main(a: &RackArgs) -> Result<()> {
    if !homa_lab::is_root() {
        bail!("homa rack builds network namespaces and needs root (and the ip, tc, ethtool and sysctl commands)");
    }
    if a.homa.link_mbps.is_some() {
        bail!("homa rack: the link speed is --rate-mbit (--link-mbps is for client and server)");
    }
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("target/homa-rack/{}-{}", a.workload, a.load)));
    // The directories this run creates, deepest first: a failed run
    // removes those it left empty.
    let created: Vec<PathBuf> = out
        .ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
        .map(Path::to_path_buf)
        .collect();
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let out = std::fs::canonicalize(&out)?;
    let result = Rack::build(a).and_then(|rack| {
        let r = experiment(&rack, a, &out);
        drop(rack);
        r
    });
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            // A failed run leaves its logs for diagnosis, but no empty
            // directory of its own making (remove_dir fails on others).
            for d in &created {
                if std::fs::remove_dir(d).is_err() {
                    break;
                }
            }
            return Err(e);
        }
    };
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(out.join("rack.json"), &json)?;
    if a.json {
        outln!("{json}")?;
    } else {
        out!("{}", text_report(&report))?;
        outln!("results in {}", out.display())?;
    }
    Ok(())
}

/// The Homa settings every server and client of the rack gets: the port
/// rate as the link speed, and each time constant as given, else the
/// protocol's default stretched to the port rate (the defaults are the
/// kernel's, sized for its 25 Gbit/s link):
///
/// * pacer backlog: one GSO batch (`max_gso_bytes`) at the port rate, at
///   least the default and at most 512 µs (a batch crosses the switch's
///   shaper as one unit, so it is also the longest a higher-priority
///   packet waits behind it);
/// * RESEND silence: the default scaled to the same bytes of link time,
///   at most 1 s;
/// * NEED_ACK delay: scaled the same way, at most 50 ms.
fn rack_knobs(a: &RackArgs) -> Result<HomaKnobs> {
    let d = homa_proto::Config::default();
    let rate = a.rate_mbit.max(1);
    // How much longer the same bytes take on the port than on the default link.
    let stretch = f64::from(d.link_mbps) / rate as f64;
    let scaled_ms = |default: Duration, max_ms: f64| {
        let ms = default.as_secs_f64() * 1e3;
        (ms * stretch).clamp(ms, max_ms.max(ms))
    };
    let h = &a.homa;
    Ok(HomaKnobs {
        link_mbps: Some(u32::try_from(a.rate_mbit).context("--rate-mbit")?),
        nic_backlog_us: Some(h.nic_backlog_us.unwrap_or_else(|| {
            let min = d.max_nic_backlog.as_micros() as u64;
            (u64::from(d.max_gso_bytes) * 8 / rate).clamp(min, min.max(512))
        })),
        resend_ms: Some(
            h.resend_ms
                .unwrap_or_else(|| scaled_ms(d.resend_after, 1000.0)),
        ),
        need_ack_ms: Some(
            h.need_ack_ms
                .unwrap_or_else(|| scaled_ms(d.need_ack_after, 50.0)),
        ),
        unsched_bytes: h.unsched_bytes,
        max_incoming: h.max_incoming,
    })
}

/// Bytes of Ethernet header the switch's shaper counts per packet (htb
/// counts frames without preamble, CRC and gap).
const SHAPED_ETH_HEADER: u32 = 14;

/// Bytes on the downlink of a message of `len` bytes as the switch's
/// shaper counts them: homa-proto's wire bytes of its DATA packets, less
/// the Ethernet framing htb does not see (preamble, CRC, gap).
fn shaped_wire_bytes(c: &homa_proto::Config, len: u32) -> f64 {
    let unshaped = homa_proto::config::ETH_OVERHEAD - SHAPED_ETH_HEADER;
    (c.message_wire_bytes(len, false) - u64::from(c.data_packets(len, false) * unshaped)) as f64
}

/// Mean bytes one RPC puts on the downlinks: message bytes (request and
/// response), and wire bytes as the switch's shaper counts them
/// ([`shaped_wire_bytes`]).
fn bytes_per_rpc(a: &RackArgs) -> (f64, f64) {
    let sizes = loadgen::request_sizes(&a.workload.dist(a.variant.into()));
    let c = homa_proto::Config::default();
    let wire = |len: u32| shaped_wire_bytes(&c, len);
    let (req, req_wire) = (sizes.mean(), sizes.expectation(wire));
    let (resp, resp_wire) = if a.one_way {
        (f64::from(SHORT_RESPONSE_LEN), wire(SHORT_RESPONSE_LEN))
    } else {
        (req, req_wire)
    };
    (req + resp, req_wire + resp_wire)
}

/// What each host offers: RPCs per second, Gbit/s of requests (the
/// clients' `--gbps`), and the downlink load in message bytes and in wire
/// bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Offered {
    per_sec: f64,
    gbps: f64,
    message_load: f64,
    wire_load: f64,
}

fn offered(a: &RackArgs) -> Offered {
    let (msg, wire) = bytes_per_rpc(a);
    let rate = a.rate_mbit as f64 * 1e6;
    let per_rpc = match a.load_basis {
        LoadBasis::Wire => wire,
        LoadBasis::Message => msg,
    };
    let per_sec = homa_workload::rate_for_load(a.load, rate, per_rpc);
    let req_mean = loadgen::request_sizes(&a.workload.dist(a.variant.into())).mean();
    Offered {
        per_sec,
        gbps: per_sec * req_mean * 8.0 / 1e9,
        message_load: per_sec * msg * 8.0 / rate,
        wire_load: per_sec * wire * 8.0 / rate,
    }
}

fn experiment(rack: &Rack, a: &RackArgs, out: &Path) -> Result<RackReport> {
    let load_start = load_average();
    let homa = std::env::current_exe()?;
    let mut progress = Progress::new("rack", !a.quiet);
    let probe = if a.probe || a.probe_only {
        progress.line("probing the switch's priority classes ...");
        Some(probe(rack, a.rate_mbit)?)
    } else {
        None
    };
    let off = offered(a);
    let (kops, gbps) = (off.per_sec, off.gbps);
    let mut report = RackReport {
        hosts: a.hosts,
        procs_per_host: a.procs_per_host.max(1),
        host_sharing: a.host_sharing,
        sharing_mode: sharing_mode(a),
        rate_mbit: a.rate_mbit,
        workload: a.workload.to_string(),
        variant: a.variant,
        load: a.load,
        one_way: a.one_way,
        duration: a.duration.as_secs_f64(),
        gbps_per_client: gbps,
        kops_per_client: kops / 1e3,
        message_load: off.message_load,
        wire_load_homa: off.wire_load,
        base: Vec::new(),
        base_rtt_us: 0.0,
        runs: Vec::new(),
        ratios: None,
        probe,
        load_avg: (load_start, 0.0),
    };
    if a.probe_only {
        report.load_avg.1 = load_average();
        return Ok(report);
    }
    progress.line(&format!(
        "rack: {} hosts, {} Mbit/s ports, {} at load {:.2}: {:.2} Kops/s and {:.3} Gbit/s of requests per host",
        a.hosts, a.rate_mbit, a.workload, a.load, kops / 1e3, gbps
    ));
    if kops > 3_000.0 {
        progress.line(&format!(
            "warning: {:.1} Kops/s per host may be more than the machine can generate (a 2-vCPU machine sustains ~5 in all); consider a lower --rate-mbit",
            kops / 1e3
        ));
    }
    let mut samples = Vec::new();
    for &p in &a.protocols {
        let (base, run_samples, run) = protocol_phase(rack, a, out, &homa, p, gbps, &mut progress)?;
        report.base.push(base);
        samples.push(run_samples);
        report.runs.push(run);
    }
    progress.finish();
    let base = a.base_rtt_us.unwrap_or_else(|| {
        report
            .base
            .iter()
            .map(|b| b.p50_us)
            .fold(f64::INFINITY, f64::min)
    });
    report.base_rtt_us = base;
    let ideal = Ideal {
        base_rtt_us: base,
        link_mbps: a.rate_mbit as f64,
    };
    for (run, s) in report.runs.iter_mut().zip(&samples) {
        run.summary = results::summarize(s, ideal);
        std::fs::write(
            out.join(format!("{}-table.txt", run.protocol.name())),
            results::table(s, ideal, 20),
        )?;
    }
    let find = |p: Protocol| report.runs.iter().find(|r| r.protocol == p);
    if let (Some(h), Some(t)) = (find(Protocol::Homa), find(Protocol::Tcp)) {
        let (hs, ts) = (&h.summary, &t.summary);
        report.ratios = Some(Ratios {
            short_p50: ts.short.rtt_us.p50 / hs.short.rtt_us.p50,
            short_p99: ts.short.rtt_us.p99 / hs.short.rtt_us.p99,
            short_mean_slowdown: ts.short.slowdown.mean / hs.short.slowdown.mean,
            mean_slowdown: ts.slowdown.mean / hs.slowdown.mean,
        });
    }
    let series = report
        .runs
        .iter()
        .flat_map(|r| {
            plot::slowdown_series(
                r.protocol.name(),
                plot::color(r.protocol),
                &r.summary.buckets,
            )
        })
        .collect();
    std::fs::write(
        out.join("slowdown.svg"),
        plot::slowdown(
            &format!(
                "Slowdown: {} ({}), load {:.2}, {} hosts; base RTT {:.1} us, link {} Mbit/s (htb)",
                a.workload,
                a.variant.name(),
                a.load,
                a.hosts,
                base,
                a.rate_mbit
            ),
            series,
        ),
    )?;
    report.load_avg.1 = load_average();
    Ok(report)
}

/// The name of process `k` (of `k_procs`) on host `h` in file names:
/// `h3`, or `h3p2` with several processes per host.
fn proc_tag(h: usize, k: usize, k_procs: usize) -> String {
    if k_procs > 1 {
        format!("h{h}p{}", k + 1)
    } else {
        format!("h{h}")
    }
}

/// Runs one protocol: servers, unloaded RTT, loaded run; returns the base,
/// the merged samples and the run's figures (summary filled in later).
#[allow(clippy::too_many_arguments)]
fn protocol_phase(
    rack: &Rack,
    a: &RackArgs,
    out: &Path,
    homa: &Path,
    p: Protocol,
    gbps: f64,
    progress: &mut Progress,
) -> Result<(Base, Vec<Sample>, ProtocolRun)> {
    let name = p.name();
    let port = first_port(p);
    // Results of an earlier run in the same directory must not be mistaken
    // for this one's.
    for entry in std::fs::read_dir(out)?.flatten() {
        let f = entry.file_name();
        if f.to_string_lossy().starts_with(&format!("{name}-")) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    // Every server and client of the rack gets the same Homa settings.
    let knobs = rack_knobs(a)?;
    let mut homa_args = vec![
        "--polling".to_string(),
        format!("{:?}", a.polling).to_lowercase(),
    ];
    homa_args.extend(knobs.args());
    let k_procs = a.procs_per_host.max(1);
    // Process k of a host serves `server_ports` ports from this one.
    let port_of = |k: usize| port + (k as u16) * a.server_ports.max(1);
    let sharing = sharing_mode(a);
    let mut procs = Procs::default();
    for (i, (ns, addr)) in rack.hosts.iter().enumerate() {
        for k in 0..k_procs {
            let tag = proc_tag(i + 1, k, k_procs);
            let mut c = rack.lab.command(ns, homa)?;
            c.args(["server", "--protocol", name, "--quiet"])
                .args(["--bind", &format!("{addr}:{}", port_of(k))])
                .args(["--ports", &a.server_ports.to_string()])
                .args(["--threads", &a.server_threads.to_string()])
                .args(&homa_args)
                .env("HOMA_HOST_SHARING", sharing)
                .stdout(Stdio::piped())
                .stderr(log_file(out, &format!("{name}-{tag}-server.log"))?);
            if let Some(d) = &rack.host_dir {
                c.env("HOMA_HOST_DIR", d);
            }
            with_nice(&mut c, a.nice);
            let mut child = c.spawn().context("starting a server")?;
            wait_listening(&mut child, a.server_ports, &format!("{name} server {tag}"))?;
            procs.0.push((format!("server {tag}"), child));
        }
    }

    // Unloaded RTT: h1 -> h2, one 100-byte RPC at a time, against a server
    // of its own that exits after: a Homa receiver computes its priority
    // cutoffs from the sizes it receives, and a workload server that had
    // answered the pings would start the workload with cutoffs for 100-byte
    // messages until 1 000 of the workload's arrived (13 s at 200 Mbit/s
    // with two processes per host).
    progress.line(&format!("{name}: measuring the unloaded RTT ..."));
    let base_port = port_of(k_procs);
    let mut base_server = Procs::default();
    let mut c = rack.lab.command(&rack.hosts[1].0, homa)?;
    c.args(["server", "--protocol", name, "--quiet"])
        .args(["--bind", &format!("{}:{base_port}", rack.hosts[1].1)])
        .args(&homa_args)
        .env("HOMA_HOST_SHARING", "process")
        .stdout(Stdio::piped())
        .stderr(log_file(out, &format!("{name}-base-server.log"))?);
    with_nice(&mut c, a.nice);
    let mut child = c.spawn().context("starting the unloaded RTT's server")?;
    wait_listening(&mut child, 1, &format!("{name} unloaded RTT's server"))?;
    base_server.0.push(("base server".to_string(), child));
    let base_json = out.join(format!("{name}-base.json"));
    let mut c = rack.lab.command(&rack.hosts[0].0, homa)?;
    c.args(["client", "--protocol", name, "--quiet", "--workload", "100"])
        .args(["--server", &format!("{}:{base_port}", rack.hosts[1].1)])
        .args(["--client-max", "1", "--warmup", "0.3"])
        .args(["--duration", &a.base_duration.as_secs_f64().to_string()])
        .args(["--base-rtt-us", "1"])
        .args(&homa_args)
        .arg("--json-out")
        .arg(&base_json)
        .stdout(log_file(out, &format!("{name}-base.log"))?)
        .stderr(log_file(out, &format!("{name}-base.err"))?);
    with_nice(&mut c, a.nice);
    let st = c.status().context("running the unloaded client")?;
    if !st.success() {
        let err = std::fs::read_to_string(out.join(format!("{name}-base.err"))).unwrap_or_default();
        bail!("{name}: the unloaded client failed ({st}):\n{err}");
    }
    drop(base_server);
    let bj: serde_json::Value = serde_json::from_slice(&std::fs::read(&base_json)?)?;
    let base = Base {
        protocol: p,
        p50_us: bj["rtt"]["p50_us"].as_f64().unwrap_or(0.0),
        p99_us: bj["rtt"]["p99_us"].as_f64().unwrap_or(0.0),
        count: bj["calls"].as_u64().unwrap_or(0),
    };
    progress.line(&format!(
        "{name}: unloaded RTT P50 {:.1} us, P99 {:.1} us",
        base.p50_us, base.p99_us
    ));

    // The loaded run: every host a client of every other host.
    let cpu0 = cpu_times();
    let child_cpu0 = children_cpu_secs();
    let sw0 = switch_stats(rack);
    let mut clients = Procs::default();
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let mut client_tags = Vec::new();
    for (i, (ns, _)) in rack.hosts.iter().enumerate() {
        for k in 0..k_procs {
            let servers: Vec<String> = rack
                .hosts
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .flat_map(|(_, (_, addr))| {
                    (0..k_procs).map(move |k| format!("{addr}:{}", port_of(k)))
                })
                .collect();
            let h = i + 1;
            let tag = proc_tag(h, k, k_procs);
            // Distinct ids and seeds per client process.
            let id = h * k_procs + k;
            let mut c = rack.lab.command(ns, homa)?;
            c.args(["client", "--protocol", name, "--quiet"])
                .args(["--server", &servers.join(",")])
                .args(["--server-ports", &a.server_ports.to_string()])
                .args(["--ports", &a.client_ports.to_string()])
                .args(["--workload", &a.workload.to_string()])
                .args(["--variant", a.variant.name()])
                .args(["--gbps", &format!("{}", gbps / k_procs as f64)])
                .args(["--client-max", &a.client_max.to_string()])
                .args(["--duration", &a.duration.as_secs_f64().to_string()])
                .args(["--warmup", &a.warmup.as_secs_f64().to_string()])
                .args(["--base-rtt-us", "1"])
                .args(["--tcp-conns", &a.tcp_conns.to_string()])
                .args(["--id", &id.to_string()])
                .args(["--seed", &(seed.wrapping_add(id as u64)).to_string()])
                .args(&homa_args)
                .env("HOMA_HOST_SHARING", sharing)
                .args(["--exp", &format!("{name}-{tag}")])
                .arg("--json-out")
                .arg(out.join(format!("{name}-{tag}.json")))
                .arg("--dump-times")
                .arg(out.join(format!("{name}-{tag}.rtts")))
                .stdout(log_file(out, &format!("{name}-{tag}-client.log"))?)
                .stderr(log_file(out, &format!("{name}-{tag}-client.err"))?);
            if a.one_way {
                c.arg("--one-way");
            }
            if let Some(d) = &rack.host_dir {
                c.env("HOMA_HOST_DIR", d);
            }
            clients.0.push((
                format!("client {tag}"),
                c.spawn().context("starting a client")?,
            ));
            client_tags.push(tag);
        }
    }
    let total = (a.warmup + a.duration).as_secs_f64();
    let start = Instant::now();
    let limit = Duration::from_secs_f64(total + 60.0);
    let mut statuses = vec![None; clients.0.len()];
    while statuses.iter().any(Option::is_none) {
        for (k, (_, c)) in clients.0.iter_mut().enumerate() {
            if statuses[k].is_none() {
                statuses[k] = c.try_wait()?;
            }
        }
        if start.elapsed() > limit {
            bail!(
                "{name}: clients did not finish within {:.0} s",
                limit.as_secs_f64()
            );
        }
        progress.update(
            start.elapsed().as_secs_f64(),
            total,
            &format!("{name} {}", a.workload),
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    progress.finish();
    let cpu1 = cpu_times();
    let sw1 = switch_stats(rack);
    for (k, st) in statuses.iter().enumerate() {
        let st = st.expect("all finished");
        if !st.success() {
            let tag = &client_tags[k];
            let log = std::fs::read_to_string(out.join(format!("{name}-{tag}-client.err")))
                .unwrap_or_default();
            bail!("{name}: client {tag} failed ({st}):\n{log}");
        }
    }
    drop(clients);
    // A server that died during the run invalidates it: say so.
    let mut servers_exited = Vec::new();
    for (k, (what, c)) in procs.0.iter_mut().enumerate() {
        if let Ok(Some(st)) = c.try_wait() {
            let tag = what.trim_start_matches("server ");
            let log = std::fs::read_to_string(out.join(format!("{name}-{tag}-server.log")))
                .unwrap_or_default();
            progress.line(&format!(
                "{name}: the server {tag} exited during the run ({st}): {}",
                log.lines().next().unwrap_or("")
            ));
            servers_exited.push(k + 1);
        }
    }
    // The servers' counters, asked over their own protocol.
    for (i, (ns, addr)) in rack.hosts.iter().enumerate() {
        for k in 0..k_procs {
            let tag = proc_tag(i + 1, k, k_procs);
            let server: SocketAddr = format!("{addr}:{}", port_of(k)).parse()?;
            let m = rack
                .lab
                .in_namespace(ns, move || {
                    crate::server::fetch_metrics(p, server, Duration::from_secs(2))
                        .map_err(|e| e.to_string())
                })?
                .join()
                .map_err(|_| anyhow!("metrics thread panicked"))?;
            match m {
                Ok(v) => std::fs::write(
                    out.join(format!("{name}-{tag}-server-metrics.json")),
                    serde_json::to_string_pretty(&v)?,
                )?,
                Err(e) => progress.line(&format!("{name}: no metrics from {tag}: {e}")),
            }
        }
    }
    drop(procs);
    let process_cpu_s = children_cpu_secs() - child_cpu0;

    let mut samples = Vec::new();
    let (mut calls, mut failed, mut unfinished) = (0u64, 0u64, 0u64);
    let (mut gbps_total, mut late) = (0.0, 0.0);
    for tag in &client_tags {
        let text = std::fs::read_to_string(out.join(format!("{name}-{tag}.rtts")))?;
        samples.extend(results::parse_rtts(&text).map_err(|e| anyhow!("{name}-{tag}.rtts: {e}"))?);
        let j: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(format!("{name}-{tag}.json")))?)?;
        calls += j["calls"].as_u64().unwrap_or(0);
        failed += j["failed"].as_u64().unwrap_or(0);
        unfinished += j["unfinished"].as_u64().unwrap_or(0);
        gbps_total += j["gbps"].as_f64().unwrap_or(0.0);
        late += j["late_fraction"].as_f64().unwrap_or(0.0);
    }
    let n = rack.hosts.len() as f64;
    let run = ProtocolRun {
        protocol: p,
        calls,
        failed,
        unfinished,
        kops: calls as f64 / a.duration.as_secs_f64().max(1e-9) / 1e3,
        // Each host receives, on average, what one client sends plus
        // what it gets back.
        gbps_per_host: gbps_total / n,
        late_fraction: late / (n * k_procs as f64),
        cpu_busy: (cpu1.busy - cpu0.busy) as f64 / (cpu1.total - cpu0.total).max(1) as f64,
        process_cpu_s,
        switch: stats_delta(&sw1, &sw0),
        servers_exited,
        summary: results::summarize(
            &[],
            Ideal {
                base_rtt_us: 1.0,
                link_mbps: 1.0,
            },
        ),
    };
    progress.line(&format!(
        "{name}: {} RPCs ({:.2} Kops/s), {:.3} Gbit/s per host, machine CPU {:.0}% busy",
        run.calls,
        run.kops,
        run.gbps_per_host,
        run.cpu_busy * 100.0
    ));
    Ok((base, samples, run))
}

/// The comparison as text.
pub(crate) fn text_report(r: &RackReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "homa rack: {} hosts, {} Mbit/s ports, {} ({}), load {:.2}{}, {} s per protocol",
        r.hosts,
        r.rate_mbit,
        r.workload,
        r.variant.name(),
        r.load,
        if r.one_way { ", one-way" } else { "" },
        r.duration
    );
    if r.procs_per_host > 1 {
        let _ = writeln!(
            s,
            "{} server and {} client processes per host; Homa's {}",
            r.procs_per_host,
            r.procs_per_host,
            match r.sharing_mode {
                "host" =>
                    "share one host table per host (one pacer estimate, grant budget and ranking)",
                "off" => "schedule independently, each socket alone (--host-sharing-off)",
                _ => "schedule independently (without --host-sharing)",
            }
        );
    }
    let _ = writeln!(
        s,
        "offered per host: {:.2} Kops/s, {:.3} Gbit/s of requests; downlink load {:.2} in message bytes, {:.2} with Homa's headers",
        r.kops_per_client, r.gbps_per_client, r.message_load, r.wire_load_homa
    );
    if let Some(p) = &r.probe {
        let _ = writeln!(
            s,
            "priority check ({:.0} Mbit/s flood at precedence 0, port carried {:.0}): prec-7 pings idle P50/P99 {:.0}/{:.0} us, in the flood {:.0}/{:.0} us; prec-0 pings in the flood {:.0}/{:.0} us",
            p.flood_mbit, p.served_mbit, p.idle_us.0, p.idle_us.1, p.prio_us.0, p.prio_us.1, p.fifo_us.0, p.fifo_us.1
        );
    }
    for b in &r.base {
        let _ = writeln!(
            s,
            "unloaded 100 B RTT {}: P50 {:.1} us, P99 {:.1} us",
            b.protocol.name(),
            b.p50_us,
            b.p99_us
        );
    }
    if r.runs.is_empty() {
        return s;
    }
    let short = &r.runs[0].summary.short;
    let _ = writeln!(
        s,
        "slowdown = RTT / ({:.1} us + length x 8 / {} Mbit/s); short messages: <= {} B ({:.1}% of RPCs)",
        r.base_rtt_us, r.rate_mbit, short.max_length, short.fraction * 100.0
    );
    let _ = writeln!(
        s,
        "{:<9} {:>10} {:>10} {:>8} {:>8} {:>8} | {:>8} {:>9} {:>9} {:>7} {:>6} {:>6}",
        "",
        "short P50",
        "short P99",
        "slowdn",
        "slowdn",
        "slowdn",
        "all avg",
        "Kops/s",
        "Gb/s/host",
        "drops",
        "late%",
        "CPU%"
    );
    let _ = writeln!(
        s,
        "{:<9} {:>10} {:>10} {:>8} {:>8} {:>8} | {:>8} {:>9} {:>9} {:>7} {:>6} {:>6}",
        "", "RTT us", "RTT us", "P50", "P99", "avg", "slowdn", "", "", "", "", ""
    );
    for run in &r.runs {
        let m = &run.summary;
        let drops: u64 = run.switch.iter().map(|c| c.dropped).sum();
        let _ = writeln!(
            s,
            "{:<9} {:>10.1} {:>10.1} {:>8.2} {:>8.2} {:>8.2} | {:>8.2} {:>9.2} {:>9.3} {:>7} {:>6.1} {:>6.0}",
            run.protocol.name(),
            m.short.rtt_us.p50,
            m.short.rtt_us.p99,
            m.short.slowdown.p50,
            m.short.slowdown.p99,
            m.short.slowdown.mean,
            m.slowdown.mean,
            run.kops,
            run.gbps_per_host,
            drops,
            run.late_fraction * 100.0,
            run.cpu_busy * 100.0
        );
    }
    if let Some(x) = &r.ratios {
        let _ = writeln!(
            s,
            "{:<9} {:>9.1}x {:>9.1}x {:>8} {:>8} {:>7.1}x | {:>7.1}x",
            "tcp/homa", x.short_p50, x.short_p99, "", "", x.short_mean_slowdown, x.mean_slowdown
        );
    }
    for run in &r.runs {
        if !run.servers_exited.is_empty() {
            let _ = writeln!(
                s,
                "{}: INVALID RUN, the server exited on hosts {:?}",
                run.protocol.name(),
                run.servers_exited
            );
        }
        if run.failed + run.unfinished > 0 {
            let _ = writeln!(
                s,
                "{}: {} RPCs failed, {} unfinished",
                run.protocol.name(),
                run.failed,
                run.unfinished
            );
        }
    }
    let _ = writeln!(
        s,
        "load average {:.2} before, {:.2} after",
        r.load_avg.0, r.load_avg.1
    );
    s
}

// ----- the priority probe -------------------------------------------------

fn set_tos(s: &UdpSocket, tos: u8) -> std::io::Result<()> {
    homa_sys::udp::TosOption::Ipv4.set(s.as_fd(), tos)
}

/// `n` pings from `h3` to `to` with TOS byte `tos`, one every 500 µs;
/// returns their (P50, P99) RTT in µs.
fn pings(rack: &Rack, to: SocketAddr, tos: u8, n: usize) -> Result<(f64, f64)> {
    let from = &rack.hosts[2].0;
    let h = rack
        .lab
        .in_namespace(from, move || -> std::io::Result<Vec<f64>> {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            set_tos(&s, tos)?;
            s.set_read_timeout(Some(Duration::from_millis(200)))?;
            let mut rtts = Vec::with_capacity(n);
            let mut buf = [0u8; 64];
            for i in 0..n {
                let t = Instant::now();
                buf[..8].copy_from_slice(&(i as u64).to_le_bytes());
                s.send_to(&buf, to)?;
                // Wait for this ping's echo; drop stale ones.
                loop {
                    match s.recv(&mut buf) {
                        Ok(_)
                            if u64::from_le_bytes(buf[..8].try_into().unwrap_or_default())
                                == i as u64 =>
                        {
                            rtts.push(t.elapsed().as_secs_f64() * 1e6);
                            break;
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            Ok(rtts)
        })?;
    let v = h.join().map_err(|_| anyhow!("ping thread panicked"))??;
    if v.is_empty() {
        bail!("no ping came back");
    }
    let s = results::Spread::of(v);
    Ok((s.p50, s.p99))
}

/// Measures precedence-7 and precedence-0 pings through `h2`'s switch
/// port while `h1` floods it at precedence 0 (needs three hosts).
fn probe(rack: &Rack, rate_mbit: u64) -> Result<Probe> {
    if rack.hosts.len() < 3 {
        bail!("the priority probe needs at least 3 hosts");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let echo_addr: SocketAddr = format!("{}:7000", rack.hosts[1].1).parse()?;
    let sink_addr: SocketAddr = format!("{}:7001", rack.hosts[1].1).parse()?;
    // Echo (answers at the ping's precedence) and sink, in h2.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let st = Arc::clone(&stop);
    let echo = rack
        .lab
        .in_namespace(&rack.hosts[1].0, move || -> std::io::Result<()> {
            let e = UdpSocket::bind(echo_addr)?;
            let sink = UdpSocket::bind(sink_addr)?;
            e.set_read_timeout(Some(Duration::from_millis(20)))?;
            sink.set_nonblocking(true)?;
            let _ = ready_tx.send(());
            let mut buf = vec![0u8; 65536];
            while !st.load(Ordering::Relaxed) {
                while sink.recv(&mut buf).is_ok() {}
                if let Ok((n, from)) = e.recv_from(&mut buf) {
                    e.send_to(&buf[..n], from)?;
                }
            }
            Ok(())
        })?;
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .map_err(|_| anyhow!("echo server did not start"))?;
    let idle = pings(rack, echo_addr, 0xe0, 1000)?;
    // The flood: 1400-byte datagrams at 1.25x the line rate, sent as UDP
    // GSO batches of 32 (the switch segments them after its shaper), paced
    // every 200 µs.
    let flood_mbit = rate_mbit as f64 * 1.25;
    let st = Arc::clone(&stop);
    let flood = rack
        .lab
        .in_namespace(&rack.hosts[0].0, move || -> std::io::Result<()> {
            const SEG: usize = 1400;
            const BATCH: usize = 32;
            let s = UdpSocket::bind("0.0.0.0:0")?;
            set_tos(&s, 0)?;
            let gso = homa_sys::udp::set_gso_segment(s.as_fd(), SEG as u16).is_ok();
            let batch = if gso { BATCH } else { 1 };
            let buf = vec![0u8; SEG * batch];
            let per_sec = flood_mbit * 1e6 / 8.0 / SEG as f64;
            let start = Instant::now();
            let mut sent = 0.0;
            while !st.load(Ordering::Relaxed) {
                let due = start.elapsed().as_secs_f64() * per_sec;
                while sent < due {
                    let _ = s.send_to(&buf, sink_addr);
                    sent += batch as f64;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            Ok(())
        })?;
    std::thread::sleep(Duration::from_millis(300));
    let sw0 = switch_stats(rack);
    let t0 = Instant::now();
    let prio = pings(rack, echo_addr, 0xe0, 2000);
    let fifo = pings(rack, echo_addr, 0x00, 400);
    let secs = t0.elapsed().as_secs_f64();
    let d = stats_delta(&switch_stats(rack), &sw0);
    stop.store(true, Ordering::Relaxed);
    let _ = flood.join();
    let _ = echo.join();
    Ok(Probe {
        idle_us: idle,
        prio_us: prio?,
        fifo_us: fifo?,
        flood_mbit,
        served_mbit: d[0].bytes as f64 * 8.0 / secs / 1e6,
    })
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    #[test]
    fn parse_leaf_qdiscs__reads_bytes_packets_drops() {
        let text =
            "qdisc htb 1: root refcnt 2 r2q 10 default 0x10 direct_packets_stat 0 direct_qlen 1000
 Sent 123 bytes 4 pkt (dropped 0, overlimits 9 requeues 0)
 backlog 0b 0p requeues 0
qdisc bfifo 20: parent 1:10 limit 1000000b
 Sent 5000 bytes 40 pkt (dropped 7, overlimits 0 requeues 0)
 backlog 0b 0p requeues 0
qdisc bfifo 27: parent 1:17 limit 1000000b
 Sent 900 bytes 9 pkt (dropped 0, overlimits 0 requeues 0)
 backlog 0b 0p requeues 0
";
        let v = parse_leaf_qdiscs(text);
        assert_eq!(
            v,
            vec![
                ClassStats {
                    precedence: 0,
                    bytes: 5000,
                    packets: 40,
                    dropped: 7
                },
                ClassStats {
                    precedence: 7,
                    bytes: 900,
                    packets: 9,
                    dropped: 0
                }
            ]
        );
    }

    fn args_for_tests() -> RackArgs {
        RackArgs {
            hosts: 4,
            rate_mbit: 1000,
            workload: SizeSpec::Fixed(1000),
            variant: VariantArg::CpNode,
            load: 0.8,
            load_basis: LoadBasis::Message,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            protocols: vec![Protocol::Homa],
            one_way: false,
            client_ports: 1,
            procs_per_host: 1,
            host_sharing: false,
            no_host_sharing: false,
            host_sharing_off: false,
            server_ports: 1,
            server_threads: 1,
            tcp_conns: 1,
            client_max: 1,
            polling: Polling::Block,
            base_rtt_us: None,
            base_duration: Duration::from_secs(1),
            queue_bytes: 1,
            homa: HomaKnobs::default(),
            probe: false,
            probe_only: false,
            nice: 0,
            prefix: "x".into(),
            out: None,
            seed: None,
            json: false,
            quiet: true,
        }
    }

    #[test]
    fn offered__echo_halves_the_rate() {
        let mut a = args_for_tests();
        a.workload = SizeSpec::Fixed(1000);
        a.load_basis = LoadBasis::Message;
        // Message basis: 0.8 Gbit/s down per host = 0.4 of requests + 0.4
        // of responses.
        let o = offered(&a);
        assert!((o.gbps - 0.4).abs() < 1e-12);
        assert!((o.per_sec - 50_000.0).abs() < 1e-6);
        // 1000-byte messages: one packet each, 98 header bytes.
        assert!((o.wire_load - 0.8 * 1.098).abs() < 1e-12);
        a.one_way = true;
        let o = offered(&a);
        assert!((o.gbps - 0.8 * 1000.0 / 1100.0).abs() < 1e-12);
        // Wire basis: the headers count toward the 0.8.
        a.one_way = false;
        a.load_basis = LoadBasis::Wire;
        let o = offered(&a);
        assert!((o.wire_load - 0.8).abs() < 1e-12);
        assert!((o.message_load - 0.8 / 1.098).abs() < 1e-12);
    }

    #[test]
    fn rack_knobs__defaults_stretched_to_the_port_rate() {
        let mut a = args_for_tests();
        let k = rack_knobs(&a).unwrap();
        // 1 Gbit/s: 64 000-byte GSO batch = 512 µs; 5 ms and 2 ms x 25.
        assert_eq!(k.link_mbps, Some(1000));
        assert_eq!(k.nic_backlog_us, Some(512));
        assert_eq!(k.resend_ms, Some(125.0));
        assert_eq!(k.need_ack_ms, Some(50.0));
        // At the protocol's own link speed, its own defaults (the batch
        // fits in 20 µs).
        a.rate_mbit = 25_000;
        let k = rack_knobs(&a).unwrap();
        assert_eq!(
            (k.nic_backlog_us, k.resend_ms, k.need_ack_ms),
            (Some(20), Some(5.0), Some(2.0))
        );
        // Slow ports: capped.
        a.rate_mbit = 10;
        let k = rack_knobs(&a).unwrap();
        assert_eq!(
            (k.nic_backlog_us, k.resend_ms, k.need_ack_ms),
            (Some(512), Some(1000.0), Some(50.0))
        );
        // Given values win.
        a.homa.resend_ms = Some(7.0);
        a.homa.nic_backlog_us = Some(9);
        let k = rack_knobs(&a).unwrap();
        assert_eq!((k.nic_backlog_us, k.resend_ms), (Some(9), Some(7.0)));
    }

    #[test]
    fn shaped_wire_bytes__headers_per_packet_without_framing() {
        let c = homa_proto::Config::default();
        // One packet: IP 20 + UDP 8 + DATA 56 + Ethernet 14 = 98 bytes.
        assert_eq!(shaped_wire_bytes(&c, 1000), 1098.0);
        assert_eq!(shaped_wire_bytes(&c, 0), 98.0);
        // 1416 message bytes fill a 1500-byte packet; one more needs two.
        assert_eq!(shaped_wire_bytes(&c, 1416), 1514.0);
        assert_eq!(shaped_wire_bytes(&c, 1417), 1417.0 + 2.0 * 98.0);
    }
}
