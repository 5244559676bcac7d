//! `homa compare`: Homa against raw UDP (the floor) and TCP on loopback, in
//! one run, same pinning, same polling policy; medians over repetitions.
//!
//! Two UDP floors for round trips:
//!
//! * **connected** (the floor): the client's socket is connected
//!   and uses `send`/`recv`. No transport that serves many peers from one
//!   socket can do that: the kernel skips the route lookup and the address
//!   copies.
//! * **unconnected**: both sides use exactly the system calls Homa's
//!   runtime uses on its fast path: `sendto` naming the destination (the
//!   TOS byte kept as a socket option), `recvmsg` asking for the source
//!   address and the control messages (TOS byte, GRO segment size). This
//!   is the floor for any multi-peer transport that marks packets by
//!   priority; the difference between the two floors is the kernel's
//!   price of multi-peer sockets, not Homa's.
//!
//! Ratios against both are reported. `--targets` adds the project's
//! performance targets (Homa's P50 within 1.15x of the connected UDP floor
//! and below 0.85x of TCP, P99 within 1.25x of UDP, bulk at least half of
//! UDP's and 0.6x TCP's), judged against the connected floor.
//!
//! Every measurement also reports the CPU time both sides spent in its
//! window (user plus system, `getrusage`; see `bench`'s module docs for
//! how the sides are told apart): per round trip, per RPC of the rate
//! measurement, and per GB of bulk. The rate measurement is closed-loop
//! 100-byte RPCs with `--rate-outstanding` (64) in flight, one client
//! thread and one server thread for every transport: Homa calls on one
//! socket, TCP requests pipelined on one connection, UDP datagrams with
//! Homa's system calls.
//!
//! A tail measured on a busy machine measures the machine: the report
//! warns when the load average exceeds half the CPUs or when the P99.9 of
//! any transport varies more than 2x between repetitions.
//!
//! UDP on loopback drops datagrams when a socket buffer is full (on a
//! loaded machine, a receiver descheduled for long): the UDP baselines
//! resend a ping unanswered for 200 ms and replace lost datagrams of the
//! rate measurement (see [`bench::Patience`]), count them
//! (`reps[].udp_lost`) and warn; only a peer silent for 5 s fails the run.

use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::bench::{self, Cpus, Plan, Polling};
use crate::out::outln;
use crate::stats::{median, Latency};

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// Repetitions of the whole set; the table shows medians.
    #[arg(long, default_value_t = 5, value_parser = crate::args::positive_usize)]
    pub reps: usize,
    /// Measurement window of each measurement (1s, 250ms).
    #[arg(long, default_value = "1s", value_parser = crate::args::positive_duration)]
    pub duration: Duration,
    /// Untimed warm-up before each measurement.
    #[arg(long, default_value = "200ms", value_parser = crate::args::duration)]
    pub warmup: Duration,
    /// How every transport's waiting threads wait. Busy here, so that the
    /// floors are the kernel's (server and client default to adaptive, rack
    /// to block).
    #[arg(long, value_enum, default_value_t = Polling::Busy)]
    pub polling: Polling,
    /// Size of the request/response messages, in bytes.
    #[arg(long, default_value_t = 100, value_parser = crate::args::message_length_usize)]
    pub small: usize,
    /// Size of the one-way bulk messages, in bytes.
    #[arg(long, default_value_t = 1_000_000)]
    pub bulk: usize,
    /// Link speed Homa's pacer assumes, in Mbit/s. Loopback has no NIC
    /// queue to protect (the kernel delivers inside `sendmsg`), so the
    /// default is a speed above anything loopback reaches here; the
    /// protocol's own default (25 000, a 25 Gbit/s NIC) makes the pacer cap
    /// Homa at 25 Gbit/s and cut GSO batches to 15 kB. 0 means unknown
    /// (no pacing, fixed unscheduled bytes).
    #[arg(long, default_value_t = 100_000)]
    pub link_mbps: u32,
    /// MTU of Homa's DATA packets: `auto` (the socket's interface: the
    /// loopback's 65 536, clamped to 65 535), `proto` (the protocol's
    /// default, 1500) or a number of bytes. The UDP bulk floor sends
    /// datagrams of the same payload size.
    #[arg(long, default_value = "auto", value_parser = parse_mtu)]
    pub homa_mtu: homa_transport::Mtu,
    /// Most transmit time Homa's pacer lets queue ahead of the link, µs
    /// (default: the protocol's, 5). At the loopback MTU one DATA packet
    /// takes 5.2 µs at 100 Gbit/s, so with the default every driver turn
    /// sends one packet; a larger allowance lets a turn send several,
    /// which go to the kernel in one `sendmmsg`.
    #[arg(long)]
    pub homa_backlog_us: Option<u64>,
    /// Homa bulk calls kept outstanding on the client socket.
    #[arg(long, default_value_t = 4, value_parser = crate::args::positive_usize)]
    pub bulk_outstanding: usize,
    /// Requests kept in flight by the rate measurement (every transport).
    #[arg(long, default_value_t = 64, value_parser = crate::args::positive_usize)]
    pub rate_outstanding: usize,
    /// CPU for the client (default: the first allowed CPU).
    #[arg(long)]
    pub client_cpu: Option<usize>,
    /// CPU for the server (default: the second allowed CPU).
    #[arg(long)]
    pub server_cpu: Option<usize>,
    /// Run only these measurements (for profiling); the others report 0.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Measurement>,
    /// Also judge the project's performance targets (ok/MISS per target).
    #[arg(long)]
    pub targets: bool,
    /// Print JSON instead of a table (docs/json.md).
    #[arg(long)]
    pub json: bool,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

/// Parses `--homa-mtu`.
fn parse_mtu(s: &str) -> Result<homa_transport::Mtu, String> {
    use homa_proto::config::{MAX_MTU, MIN_MTU};
    match s {
        "auto" => Ok(homa_transport::Mtu::Auto),
        "proto" => Ok(homa_transport::Mtu::Proto),
        n => match n.parse::<u32>() {
            Ok(m) if (MIN_MTU..=MAX_MTU).contains(&m) => Ok(homa_transport::Mtu::Fixed(m)),
            _ => Err(format!("auto, proto or {MIN_MTU}..={MAX_MTU}")),
        },
    }
}

/// One of the ten measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Measurement {
    /// UDP ping-pong, connected client.
    UdpRtt,
    /// UDP ping-pong with a multi-peer transport's system calls.
    UdpUnconnectedRtt,
    /// TCP ping-pong.
    TcpRtt,
    /// Homa calls.
    HomaRtt,
    /// UDP GSO/GRO blast.
    UdpBulk,
    /// TCP stream.
    TcpBulk,
    /// Homa bulk calls.
    HomaBulk,
    /// UDP small-RPC rate (Homa's system calls).
    UdpRate,
    /// TCP small-RPC rate (pipelined on one connection).
    TcpRate,
    /// Homa small-RPC rate.
    HomaRate,
}

/// CPU time (user plus system) of one measurement per operation, per side;
/// the unit is in the name of the field holding it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    /// The client thread.
    pub client: f64,
    /// The rest of the process: the server thread and the transport's own
    /// threads.
    pub server: f64,
}

impl Cpu {
    /// Both sides together.
    pub fn both(&self) -> f64 {
        self.client + self.server
    }

    fn of(cpu: &bench::SideCpu, ops: u64, unit_ns: f64) -> Cpu {
        let (c, s) = cpu.nanos_per(ops);
        Cpu {
            client: c / unit_ns,
            server: s / unit_ns,
        }
    }
}

/// CPU time of every measurement of a repetition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuCosts {
    /// Connected UDP ping-pong, µs per round trip.
    pub udp_rtt_us: Cpu,
    /// Unconnected UDP ping-pong, µs per round trip.
    pub udp_unconnected_rtt_us: Cpu,
    /// TCP ping-pong, µs per round trip.
    pub tcp_rtt_us: Cpu,
    /// Homa calls, µs per round trip.
    pub homa_rtt_us: Cpu,
    /// UDP rate measurement, µs per RPC.
    pub udp_rate_us: Cpu,
    /// TCP rate measurement, µs per RPC.
    pub tcp_rate_us: Cpu,
    /// Homa rate measurement, µs per RPC.
    pub homa_rate_us: Cpu,
    /// UDP GSO+GRO blast, ms per GB received.
    pub udp_bulk_ms_per_gb: Cpu,
    /// TCP stream, ms per GB received.
    pub tcp_bulk_ms_per_gb: Cpu,
    /// Homa bulk calls, ms per GB received.
    pub homa_bulk_ms_per_gb: Cpu,
}

/// Small-RPC rates, thousands of RPCs per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    /// UDP datagrams echoed, Homa's system calls.
    pub udp_krps: f64,
    /// TCP requests pipelined on one connection.
    pub tcp_krps: f64,
    /// Homa calls on one socket.
    pub homa_krps: f64,
}

/// Datagrams the UDP baselines of a repetition took for lost and sent
/// again (warm-ups included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UdpLost {
    /// Pings of the connected ping-pong (their round trips are left out of
    /// `udp_rtt`).
    pub rtt: u64,
    /// Pings of the unconnected ping-pong (left out of
    /// `udp_unconnected_rtt`).
    pub unconnected_rtt: u64,
    /// Datagrams of the rate measurement (replaced).
    pub rate: u64,
}

impl UdpLost {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.rtt + self.unconnected_rtt + self.rate
    }
}

/// One repetition's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rep {
    /// Raw UDP ping-pong, connected client.
    pub udp_rtt: Latency,
    /// Raw UDP ping-pong with a multi-peer transport's system calls.
    pub udp_unconnected_rtt: Latency,
    /// TCP ping-pong.
    pub tcp_rtt: Latency,
    /// Homa calls.
    pub homa_rtt: Latency,
    /// UDP GSO+GRO bulk floor, Gbit/s.
    pub udp_gbps: f64,
    /// TCP bulk, Gbit/s.
    pub tcp_gbps: f64,
    /// Homa bulk, Gbit/s.
    pub homa_gbps: f64,
    /// Small-RPC rates with `rate_outstanding` in flight.
    pub rates: Rates,
    /// CPU time of every measurement.
    pub cpu: CpuCosts,
    /// Datagrams the UDP baselines lost (0 in reports written before the
    /// field existed, whose baselines failed on a loss).
    #[serde(default)]
    pub udp_lost: UdpLost,
}

/// RTT percentiles of one transport, µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Tail {
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
}

/// Bulk throughput of each transport, Gbit/s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Bulk {
    /// UDP GSO+GRO blast.
    pub udp_gbps: f64,
    /// TCP stream.
    pub tcp_gbps: f64,
    /// Homa calls.
    pub homa_gbps: f64,
}

/// Medians over repetitions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Medians {
    /// UDP ping-pong, connected client.
    pub udp: Tail,
    /// UDP ping-pong with a multi-peer transport's system calls.
    pub udp_unconnected: Tail,
    /// TCP ping-pong.
    pub tcp: Tail,
    /// Homa calls.
    pub homa: Tail,
    /// Bulk throughput.
    pub bulk: Bulk,
    /// Small-RPC rates.
    pub rates: Rates,
    /// CPU time of every measurement (each figure the median of its own).
    pub cpu: CpuCosts,
}

/// The 1-minute load average around the run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct LoadAverage {
    /// Before the first measurement (`null` if unknown).
    pub before: Option<f64>,
    /// After the last.
    pub after: Option<f64>,
    /// CPUs of the machine.
    pub cpus: usize,
}

/// A target of the project and whether this run met it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    /// What is compared, e.g. `homa P50 / UDP P50`.
    pub name: String,
    /// The ratio measured.
    pub ratio: f64,
    /// The bound, e.g. `<= 1.15`.
    pub bound: String,
    /// Whether the ratio is within the bound.
    pub met: bool,
}

/// The whole result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Polling policy used by every transport (`busy`, `adaptive`, `block`).
    pub polling: String,
    /// CPU of the client (the measuring thread).
    pub client_cpu: usize,
    /// CPU of the server thread.
    pub server_cpu: usize,
    /// Request/response size.
    pub small_bytes: usize,
    /// Bulk message size.
    pub bulk_bytes: usize,
    /// Homa bulk calls outstanding.
    pub bulk_outstanding: usize,
    /// Requests in flight in the rate measurement.
    pub rate_outstanding: usize,
    /// Link speed given to Homa's pacer, Mbit/s.
    pub link_mbps: u32,
    /// MTU of Homa's DATA packets in this run (as its sockets chose it);
    /// the UDP bulk floor's datagrams carry `homa_mtu - 28` bytes. 0 in
    /// reports written before the field existed (they used 1500).
    #[serde(default)]
    pub homa_mtu: u32,
    /// The pacer's NIC backlog allowance in this run, µs. 0 in reports
    /// written before the field existed (they used the protocol's 5).
    #[serde(default)]
    pub homa_backlog_us: u64,
    /// Measurement window per measurement, ms.
    pub duration_ms: u64,
    /// Load average around the run.
    pub load_avg: LoadAverage,
    /// Every repetition.
    pub reps: Vec<Rep>,
    /// Medians of the repetitions.
    pub medians: Medians,
    /// Homa/UDP and Homa/TCP ratios of the medians: p50, p99, bulk.
    pub ratios: Ratios,
    /// The project's targets, judged (only with `--targets`).
    pub targets: Option<Vec<Target>>,
    /// Why the figures may not be trusted (busy machine, unstable tails).
    pub warnings: Vec<String>,
}

/// Ratios of the medians.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ratios {
    /// Homa P50 / UDP P50.
    pub p50_vs_udp: f64,
    /// Homa P50 / TCP P50.
    pub p50_vs_tcp: f64,
    /// Homa P99 / UDP P99.
    pub p99_vs_udp: f64,
    /// Homa P99 / TCP P99.
    pub p99_vs_tcp: f64,
    /// Homa bulk / UDP bulk.
    pub bulk_vs_udp: f64,
    /// Homa bulk / TCP bulk.
    pub bulk_vs_tcp: f64,
    /// Homa P50 / unconnected UDP P50.
    pub p50_vs_udp_unconnected: f64,
    /// Homa P99 / unconnected UDP P99.
    pub p99_vs_udp_unconnected: f64,
    /// Homa RPC rate / TCP RPC rate.
    pub rate_vs_tcp: f64,
    /// Homa CPU per round trip / TCP's (both sides).
    pub cpu_rtt_vs_tcp: f64,
    /// Homa CPU per RPC in the rate measurement / TCP's (both sides).
    pub cpu_rate_vs_tcp: f64,
    /// Homa CPU per GB / TCP's (both sides).
    pub cpu_bulk_vs_tcp: f64,
}

/// The name of a polling policy as the option reads.
pub fn polling_name(p: Polling) -> &'static str {
    match p {
        Polling::Busy => "busy",
        Polling::Adaptive => "adaptive",
        Polling::Block => "block",
    }
}

/// Runs the comparison.
pub fn run(args: &CompareArgs) -> Result<Report> {
    let (client, server) = crate::pin::choose(args.client_cpu, args.server_cpu);
    let cpus = Cpus { client, server };
    let plan = Plan {
        warmup: args.warmup,
        measure: args.duration,
    };
    let homa = bench::HomaKnobs {
        link_mbps: Some(args.link_mbps),
        mtu: args.homa_mtu,
        nic_backlog: args.homa_backlog_us.map(Duration::from_micros),
    };
    // The MTU Homa's sockets choose here (they bind 127.0.0.1): the UDP
    // floor's datagrams get the same payload size as Homa's DATA packets.
    let homa_mtu = bench::homa_mtu(homa)?;
    let udp_segment = bench::udp_segment_for(homa_mtu);
    let load_before = crate::pin::load_average();
    let mut reps = Vec::new();
    let n = args.reps.max(1);
    let mut progress = crate::progress::Progress::new("compare", !(args.json || args.quiet));
    for i in 0..n {
        progress.update(i as f64, n as f64, "repetitions");
        let p = args.polling;
        let on = |m: Measurement| args.only.is_empty() || args.only.contains(&m);
        use Measurement as M;
        let small = args.small;
        let rtt = |on: bool, f: &dyn Fn() -> Result<bench::Rtt>| -> Result<(Latency, Cpu, u64)> {
            if !on {
                return Ok(Default::default());
            }
            let r = f()?;
            let cpu = Cpu::of(&r.cpu, r.latency.count as u64, 1e3);
            Ok((r.latency, cpu, r.lost))
        };
        let thr = |on: bool,
                   f: &dyn Fn() -> Result<bench::Throughput>,
                   unit: f64,
                   cpu_unit_ns: f64|
         -> Result<(f64, Cpu, u64)> {
            if !on {
                return Ok(Default::default());
            }
            let t = f()?;
            Ok((
                t.per_sec() * unit,
                Cpu::of(&t.cpu, t.ops, cpu_unit_ns),
                t.lost,
            ))
        };
        let (gbps, krps) = (8.0 / 1e9, 1e-3);
        // ms per GB: ns per byte / 1e6 x 1e9 = ns per byte x 1e3.
        let per_gb = 1e-3;
        let link = homa;
        let k = args.rate_outstanding;
        let (udp_rtt, udp_rtt_cpu, lost_rtt) =
            rtt(on(M::UdpRtt), &|| bench::udp_rtt(small, &plan, p, cpus))?;
        let (udp_unconnected_rtt, udp_unc_cpu, lost_unc) = rtt(on(M::UdpUnconnectedRtt), &|| {
            bench::udp_rtt_unconnected(small, &plan, p, cpus)
        })?;
        let (tcp_rtt, tcp_rtt_cpu, _) =
            rtt(on(M::TcpRtt), &|| bench::tcp_rtt(small, &plan, p, cpus))?;
        let (homa_rtt, homa_rtt_cpu, _) = rtt(on(M::HomaRtt), &|| {
            bench::homa_rtt(small, &plan, p, cpus, link)
        })?;
        let (udp_gbps, udp_bulk_cpu, _) = thr(
            on(M::UdpBulk),
            &|| bench::udp_bulk(udp_segment, &plan, p, cpus),
            gbps,
            per_gb,
        )?;
        let (tcp_gbps, tcp_bulk_cpu, _) = thr(
            on(M::TcpBulk),
            &|| bench::tcp_bulk(args.bulk, &plan, p, cpus),
            gbps,
            per_gb,
        )?;
        let (homa_gbps, homa_bulk_cpu, _) = thr(
            on(M::HomaBulk),
            &|| bench::homa_bulk(args.bulk, args.bulk_outstanding, &plan, p, cpus, link),
            gbps,
            per_gb,
        )?;
        let (udp_krps, udp_rate_cpu, lost_rate) = thr(
            on(M::UdpRate),
            &|| bench::udp_rate(small, k, &plan, p, cpus),
            krps,
            1e3,
        )?;
        let (tcp_krps, tcp_rate_cpu, _) = thr(
            on(M::TcpRate),
            &|| bench::tcp_rate(small, k, &plan, p, cpus),
            krps,
            1e3,
        )?;
        let (homa_krps, homa_rate_cpu, _) = thr(
            on(M::HomaRate),
            &|| bench::homa_rate(small, k, &plan, p, cpus, link),
            krps,
            1e3,
        )?;
        reps.push(Rep {
            udp_rtt,
            udp_unconnected_rtt,
            tcp_rtt,
            homa_rtt,
            udp_gbps,
            tcp_gbps,
            homa_gbps,
            rates: Rates {
                udp_krps,
                tcp_krps,
                homa_krps,
            },
            cpu: CpuCosts {
                udp_rtt_us: udp_rtt_cpu,
                udp_unconnected_rtt_us: udp_unc_cpu,
                tcp_rtt_us: tcp_rtt_cpu,
                homa_rtt_us: homa_rtt_cpu,
                udp_rate_us: udp_rate_cpu,
                tcp_rate_us: tcp_rate_cpu,
                homa_rate_us: homa_rate_cpu,
                udp_bulk_ms_per_gb: udp_bulk_cpu,
                tcp_bulk_ms_per_gb: tcp_bulk_cpu,
                homa_bulk_ms_per_gb: homa_bulk_cpu,
            },
            udp_lost: UdpLost {
                rtt: lost_rtt,
                unconnected_rtt: lost_unc,
                rate: lost_rate,
            },
        });
    }
    progress.finish();
    let (medians, ratios) = summarize(&reps);
    let load_avg = LoadAverage {
        before: load_before,
        after: crate::pin::load_average(),
        cpus: online_cpus(),
    };
    let warnings = noise_warnings(&reps, &load_avg);
    Ok(Report {
        polling: polling_name(args.polling).to_string(),
        client_cpu: cpus.client,
        server_cpu: cpus.server,
        small_bytes: args.small,
        bulk_bytes: args.bulk,
        bulk_outstanding: args.bulk_outstanding,
        rate_outstanding: args.rate_outstanding,
        link_mbps: args.link_mbps,
        homa_mtu,
        homa_backlog_us: args.homa_backlog_us.unwrap_or_else(default_backlog_us),
        duration_ms: args.duration.as_millis() as u64,
        load_avg,
        targets: args.targets.then(|| targets(&ratios)),
        reps,
        medians,
        ratios,
        warnings,
    })
}

/// CPUs online (`/sys/devices/system/cpu/online`, e.g. `0-1`), which the
/// load average counts against; 1 if unreadable.
fn online_cpus() -> usize {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    let n: usize = text
        .trim()
        .split(',')
        .filter_map(|r| match r.split_once('-') {
            Some((a, b)) => Some(b.parse::<usize>().ok()? + 1 - a.parse::<usize>().ok()?),
            None => r.parse::<usize>().ok().map(|_| 1),
        })
        .sum();
    n.max(1)
}

/// Largest over smallest P99.9 between repetitions above which a tail is
/// called unstable.
const TAIL_SPREAD: f64 = 2.0;

/// Why the figures of this run may not be trusted: a load average above
/// half the CPUs (before or after), a P99.9 that varied more than
/// [`TAIL_SPREAD`]x between repetitions, or UDP datagrams lost.
pub fn noise_warnings(reps: &[Rep], load: &LoadAverage) -> Vec<String> {
    let mut w = Vec::new();
    let lost = reps.iter().fold(UdpLost::default(), |a, r| UdpLost {
        rtt: a.rtt + r.udp_lost.rtt,
        unconnected_rtt: a.unconnected_rtt + r.udp_lost.unconnected_rtt,
        rate: a.rate + r.udp_lost.rate,
    });
    if lost.total() > 0 {
        w.push(format!(
            "UDP lost datagrams on loopback (a socket buffer overflowed while a side was descheduled): {} pings of the connected ping-pong, {} of the unconnected one, {} datagrams of the rate measurement, over all repetitions (reps[].udp_lost in --json); each lost ping was sent again after {} ms and its round trip left out of the UDP figures, lost rate datagrams were replaced; the UDP floors of this run are less exact: rerun on a quiet machine",
            lost.rtt,
            lost.unconnected_rtt,
            lost.rate,
            bench::Patience::PING.resend.as_millis()
        ));
    }
    let busy = [load.before, load.after]
        .into_iter()
        .flatten()
        .fold(0.0f64, f64::max);
    if busy > load.cpus as f64 / 2.0 {
        w.push(format!(
            "the machine is busy (1-minute load average up to {busy:.2} on {} CPUs): other work competes with the measured threads, so P99 and P99.9 measure the machine more than the transports; rerun on a quiet machine",
            load.cpus
        ));
    }
    type Column = (&'static str, fn(&Rep) -> f64);
    let columns: [Column; 4] = [
        ("UDP", |r| r.udp_rtt.p999_us),
        ("UDP unconnected", |r| r.udp_unconnected_rtt.p999_us),
        ("TCP", |r| r.tcp_rtt.p999_us),
        ("Homa", |r| r.homa_rtt.p999_us),
    ];
    if reps.len() > 1 {
        for (name, f) in columns {
            let v: Vec<f64> = reps.iter().map(f).filter(|x| *x > 0.0).collect();
            let (lo, hi) = v
                .iter()
                .fold((f64::INFINITY, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
            if v.len() > 1 && hi > lo * TAIL_SPREAD {
                w.push(format!(
                    "{name} P99.9 varied from {lo:.1} to {hi:.1} us between repetitions ({:.1}x): treat the P99.9 figures as noise",
                    hi / lo
                ));
            }
        }
    }
    w
}

/// The project's targets against this run's ratios.
pub fn targets(q: &Ratios) -> Vec<Target> {
    let t = |name: &str, ratio: f64, le: bool, bound: f64| Target {
        name: name.to_string(),
        ratio,
        bound: format!("{} {bound}", if le { "<=" } else { ">=" }),
        met: if le { ratio <= bound } else { ratio >= bound },
    };
    vec![
        t("Homa P50 / UDP P50", q.p50_vs_udp, true, 1.15),
        t("Homa P50 / TCP P50", q.p50_vs_tcp, true, 0.85),
        t("Homa P99 / UDP P99", q.p99_vs_udp, true, 1.25),
        t("Homa bulk / UDP bulk", q.bulk_vs_udp, false, 0.5),
        t("Homa bulk / TCP bulk", q.bulk_vs_tcp, false, 0.6),
    ]
}

/// Medians of the repetitions and the ratios of the medians.
fn summarize(reps: &[Rep]) -> (Medians, Ratios) {
    let col = |f: &dyn Fn(&Rep) -> f64| median(&reps.iter().map(f).collect::<Vec<_>>());
    let tail = |f: &dyn Fn(&Rep) -> &Latency| Tail {
        p50_us: col(&|r| f(r).p50_us),
        p99_us: col(&|r| f(r).p99_us),
        p999_us: col(&|r| f(r).p999_us),
    };
    let medians = Medians {
        udp: tail(&|r| &r.udp_rtt),
        udp_unconnected: tail(&|r| &r.udp_unconnected_rtt),
        tcp: tail(&|r| &r.tcp_rtt),
        homa: tail(&|r| &r.homa_rtt),
        bulk: Bulk {
            udp_gbps: col(&|r| r.udp_gbps),
            tcp_gbps: col(&|r| r.tcp_gbps),
            homa_gbps: col(&|r| r.homa_gbps),
        },
        rates: Rates {
            udp_krps: col(&|r| r.rates.udp_krps),
            tcp_krps: col(&|r| r.rates.tcp_krps),
            homa_krps: col(&|r| r.rates.homa_krps),
        },
        cpu: {
            let cpu = |f: &dyn Fn(&CpuCosts) -> Cpu| Cpu {
                client: col(&|r| f(&r.cpu).client),
                server: col(&|r| f(&r.cpu).server),
            };
            CpuCosts {
                udp_rtt_us: cpu(&|c| c.udp_rtt_us),
                udp_unconnected_rtt_us: cpu(&|c| c.udp_unconnected_rtt_us),
                tcp_rtt_us: cpu(&|c| c.tcp_rtt_us),
                homa_rtt_us: cpu(&|c| c.homa_rtt_us),
                udp_rate_us: cpu(&|c| c.udp_rate_us),
                tcp_rate_us: cpu(&|c| c.tcp_rate_us),
                homa_rate_us: cpu(&|c| c.homa_rate_us),
                udp_bulk_ms_per_gb: cpu(&|c| c.udp_bulk_ms_per_gb),
                tcp_bulk_ms_per_gb: cpu(&|c| c.tcp_bulk_ms_per_gb),
                homa_bulk_ms_per_gb: cpu(&|c| c.homa_bulk_ms_per_gb),
            }
        },
    };
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let m = &medians;
    let ratios = Ratios {
        p50_vs_udp: ratio(m.homa.p50_us, m.udp.p50_us),
        p50_vs_tcp: ratio(m.homa.p50_us, m.tcp.p50_us),
        p99_vs_udp: ratio(m.homa.p99_us, m.udp.p99_us),
        p99_vs_tcp: ratio(m.homa.p99_us, m.tcp.p99_us),
        bulk_vs_udp: ratio(m.bulk.homa_gbps, m.bulk.udp_gbps),
        bulk_vs_tcp: ratio(m.bulk.homa_gbps, m.bulk.tcp_gbps),
        p50_vs_udp_unconnected: ratio(m.homa.p50_us, m.udp_unconnected.p50_us),
        p99_vs_udp_unconnected: ratio(m.homa.p99_us, m.udp_unconnected.p99_us),
        rate_vs_tcp: ratio(m.rates.homa_krps, m.rates.tcp_krps),
        cpu_rtt_vs_tcp: ratio(m.cpu.homa_rtt_us.both(), m.cpu.tcp_rtt_us.both()),
        cpu_rate_vs_tcp: ratio(m.cpu.homa_rate_us.both(), m.cpu.tcp_rate_us.both()),
        cpu_bulk_vs_tcp: ratio(
            m.cpu.homa_bulk_ms_per_gb.both(),
            m.cpu.tcp_bulk_ms_per_gb.both(),
        ),
    };
    (medians, ratios)
}

/// The protocol's pacer backlog allowance, µs (what runs without
/// `--homa-backlog-us`, and reports written before the field existed, used).
fn default_backlog_us() -> u64 {
    homa_proto::Config::default().max_nic_backlog.as_micros() as u64
}

/// Prints the report as a table (with the targets if `targets`).
pub fn print_table(r: &Report, targets: bool) -> std::io::Result<()> {
    let m = &r.medians;
    let load = |l: Option<f64>| l.map_or("?".to_string(), |v| format!("{v:.2}"));
    outln!(
        "homa compare: loopback; client on CPU {}, server on CPU {}; polling {} (--polling); {} repetitions x {} ms; load average (1 min) {} before, {} after, {} CPUs",
        r.client_cpu,
        r.server_cpu,
        r.polling,
        r.reps.len(),
        r.duration_ms,
        load(r.load_avg.before),
        load(r.load_avg.after),
        r.load_avg.cpus,
    )?;
    outln!(
        "{:<30}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
        "median of repetitions",
        "UDP conn",
        "UDP unc",
        "TCP",
        "Homa",
        "Homa/UDPc",
        "Homa/UDPu",
        "Homa/TCP"
    )?;
    // Columns: UDP connected, UDP unconnected, TCP, Homa; 0 or absent is
    // "not measured" (see --only) and prints "-", as do ratios against it.
    let row = |name: String, v: [Option<f64>; 4]| {
        let v = v.map(|x| x.filter(|&x| x > 0.0));
        let cell = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.2}"));
        let ratio = |b: Option<f64>| match (v[3], b) {
            (Some(h), Some(b)) => format!("{:.2}x", h / b),
            _ => "-".to_string(),
        };
        outln!(
            "{:<30}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
            name,
            cell(v[0]),
            cell(v[1]),
            cell(v[2]),
            cell(v[3]),
            ratio(v[0]),
            ratio(v[1]),
            ratio(v[2]),
        )
    };
    let s = r.small_bytes;
    let u = &m.udp_unconnected;
    let all = |a: f64, b: f64, c: f64, d: f64| [Some(a), Some(b), Some(c), Some(d)];
    row(
        format!("{s} B RTT P50 (us)"),
        all(m.udp.p50_us, u.p50_us, m.tcp.p50_us, m.homa.p50_us),
    )?;
    row(
        format!("{s} B RTT P99 (us)"),
        all(m.udp.p99_us, u.p99_us, m.tcp.p99_us, m.homa.p99_us),
    )?;
    row(
        format!("{s} B RTT P99.9 (us)"),
        all(m.udp.p999_us, u.p999_us, m.tcp.p999_us, m.homa.p999_us),
    )?;
    let mb = r.bulk_bytes as f64 / 1e6;
    row(
        format!("{mb} MB one-way (Gbit/s)"),
        [
            Some(m.bulk.udp_gbps),
            None,
            Some(m.bulk.tcp_gbps),
            Some(m.bulk.homa_gbps),
        ],
    )?;
    let k = r.rate_outstanding;
    let q = &m.rates;
    row(
        format!("{s} B x{k} rate (K RPC/s)"),
        [None, Some(q.udp_krps), Some(q.tcp_krps), Some(q.homa_krps)],
    )?;
    let c = &m.cpu;
    type Side = fn(&Cpu) -> f64;
    let sides: [(&str, Side); 3] = [
        ("both", Cpu::both),
        ("client", |c| c.client),
        ("server", |c| c.server),
    ];
    for (side, f) in sides {
        row(
            format!("CPU RTT {side} (us/RPC)"),
            all(
                f(&c.udp_rtt_us),
                f(&c.udp_unconnected_rtt_us),
                f(&c.tcp_rtt_us),
                f(&c.homa_rtt_us),
            ),
        )?;
    }
    for (side, f) in sides {
        row(
            format!("CPU x{k} {side} (us/RPC)"),
            [
                None,
                Some(f(&c.udp_rate_us)),
                Some(f(&c.tcp_rate_us)),
                Some(f(&c.homa_rate_us)),
            ],
        )?;
    }
    for (side, f) in sides {
        row(
            format!("CPU bulk {side} (ms/GB)"),
            [
                Some(f(&c.udp_bulk_ms_per_gb)),
                None,
                Some(f(&c.tcp_bulk_ms_per_gb)),
                Some(f(&c.homa_bulk_ms_per_gb)),
            ],
        )?;
    }
    outln!(
        "UDP conn = raw UDP ping-pong, connected client (send/recv): the floor. UDP unc = the same with Homa's system calls on both sides (sendto with destination, TOS as socket option; recvmsg with source address and TOS/GRO control messages)"
    )?;
    outln!(
        "bulk: UDP = GSO+GRO blast of {}-byte datagrams, Homa's DATA packet size (no reliability); TCP = one connection, length-prefixed; Homa = {} calls outstanding, 1-byte responses, MTU {}, pacer link {} Mbit/s, backlog {} µs",
        bench::udp_segment_for(if r.homa_mtu == 0 { 1500 } else { r.homa_mtu }),
        r.bulk_outstanding,
        r.homa_mtu,
        r.link_mbps,
        if r.homa_backlog_us == 0 {
            default_backlog_us()
        } else {
            r.homa_backlog_us
        }
    )?;
    outln!(
        "rate: one client thread keeps {} requests of {s} B in flight against one server thread (UDP unc: datagrams; TCP: pipelined on one connection; Homa: calls on one socket). CPU: user+system in the measurement window; client = the measuring thread, server = the rest of the process (server thread, Homa's background threads); with busy polling both sides spin, so RTT CPU is about the RTT per side",
        r.rate_outstanding
    )?;
    if targets {
        if let Some(ts) = &r.targets {
            outln!("targets of the project (against UDP conn):")?;
            for t in ts {
                outln!(
                    "  {:<22} {:>6.2} (want {}) {}",
                    t.name,
                    t.ratio,
                    t.bound,
                    if t.met { "ok" } else { "MISS" }
                )?;
            }
        }
    }
    for w in &r.warnings {
        outln!("warning: {w}")?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    fn lat(p50: f64, p99: f64) -> Latency {
        Latency {
            count: 1,
            p50_us: p50,
            p99_us: p99,
            p999_us: p99,
            mean_us: p50,
        }
    }

    #[test]
    fn summarize__medians_and_ratios_against_both_floors() {
        let rep = |k: f64| Rep {
            udp_rtt: lat(8.0 * k, 10.0),
            udp_unconnected_rtt: lat(10.0 * k, 12.0),
            tcp_rtt: lat(16.0 * k, 20.0),
            homa_rtt: lat(11.0 * k, 15.0),
            udp_gbps: 40.0,
            tcp_gbps: 30.0,
            homa_gbps: 24.0 * k,
            rates: Rates {
                udp_krps: 300.0,
                tcp_krps: 150.0,
                homa_krps: 100.0 * k,
            },
            cpu: CpuCosts {
                tcp_rate_us: Cpu {
                    client: 4.0,
                    server: 4.0,
                },
                homa_rate_us: Cpu {
                    client: 2.0 * k,
                    server: 3.0,
                },
                tcp_bulk_ms_per_gb: Cpu {
                    client: 100.0,
                    server: 100.0,
                },
                homa_bulk_ms_per_gb: Cpu {
                    client: 150.0,
                    server: 150.0 * k,
                },
                ..CpuCosts::default()
            },
            udp_lost: UdpLost::default(),
        };
        let (m, r) = summarize(&[rep(1.0), rep(3.0), rep(2.0)]);
        assert_eq!(
            [m.udp.p50_us, m.tcp.p50_us, m.homa.p50_us],
            [16.0, 32.0, 22.0]
        );
        assert_eq!(
            m.udp_unconnected,
            Tail {
                p50_us: 20.0,
                p99_us: 12.0,
                p999_us: 12.0
            }
        );
        assert_eq!(r.p50_vs_udp, 22.0 / 16.0);
        assert_eq!(r.p50_vs_udp_unconnected, 22.0 / 20.0);
        assert_eq!(r.p99_vs_udp_unconnected, 15.0 / 12.0);
        assert_eq!(r.p50_vs_tcp, 22.0 / 32.0);
        assert_eq!(r.bulk_vs_udp, 48.0 / 40.0);
        assert_eq!(m.rates.homa_krps, 200.0);
        assert_eq!(r.rate_vs_tcp, 200.0 / 150.0);
        // Each side's median is taken on its own: 4 + 3 against 4 + 4.
        assert_eq!(m.cpu.homa_rate_us.both(), 7.0);
        assert_eq!(r.cpu_rate_vs_tcp, 7.0 / 8.0);
        assert_eq!(r.cpu_bulk_vs_tcp, 450.0 / 200.0);
        assert!(r.cpu_rtt_vs_tcp.is_nan(), "not measured: no ratio");
        let t = targets(&r);
        assert_eq!(t.len(), 5);
        assert!(!t[0].met, "22/16 is above 1.15");
        assert!(t[1].met, "22/32 is below 0.85");
    }

    #[test]
    fn noise_warnings__busy_machine_and_unstable_tails() {
        let rep = |p999: f64| Rep {
            udp_rtt: lat(8.0, 10.0),
            udp_unconnected_rtt: lat(8.0, 10.0),
            tcp_rtt: lat(8.0, 10.0),
            homa_rtt: Latency {
                p999_us: p999,
                ..lat(8.0, 10.0)
            },
            udp_gbps: 1.0,
            tcp_gbps: 1.0,
            homa_gbps: 1.0,
            rates: Rates::default(),
            cpu: CpuCosts::default(),
            udp_lost: UdpLost::default(),
        };
        let quiet = LoadAverage {
            before: Some(0.1),
            after: Some(0.3),
            cpus: 2,
        };
        assert!(noise_warnings(&[rep(20.0), rep(30.0)], &quiet).is_empty());
        let w = noise_warnings(&[rep(20.0), rep(90.0)], &quiet);
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("Homa P99.9 varied from 20.0 to 90.0"),
            "{w:?}"
        );
        let busy = LoadAverage {
            after: Some(3.1),
            ..quiet
        };
        let w = noise_warnings(&[rep(20.0)], &busy);
        assert!(w[0].contains("load average up to 3.10 on 2 CPUs"), "{w:?}");
        // Lost datagrams mark the run, summed over repetitions.
        let lossy = |rtt, rate| Rep {
            udp_lost: UdpLost {
                rtt,
                unconnected_rtt: 0,
                rate,
            },
            ..rep(20.0)
        };
        let w = noise_warnings(&[lossy(1, 0), lossy(2, 5)], &quiet);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("3 pings of the connected ping-pong, 0 of the unconnected one, 5 datagrams of the rate"),
            "{w:?}"
        );
    }

    #[test]
    fn rep__reads_reports_written_before_udp_lost() {
        let mut v = serde_json::to_value(Rep {
            udp_lost: UdpLost {
                rtt: 1,
                unconnected_rtt: 2,
                rate: 3,
            },
            udp_rtt: lat(1.0, 2.0),
            udp_unconnected_rtt: lat(1.0, 2.0),
            tcp_rtt: lat(1.0, 2.0),
            homa_rtt: lat(1.0, 2.0),
            udp_gbps: 1.0,
            tcp_gbps: 1.0,
            homa_gbps: 1.0,
            rates: Rates::default(),
            cpu: CpuCosts::default(),
        })
        .unwrap();
        assert_eq!(v["udp_lost"]["rate"], 3);
        v.as_object_mut().unwrap().remove("udp_lost");
        let r: Rep = serde_json::from_value(v).unwrap();
        assert_eq!(r.udp_lost, UdpLost::default());
    }
}
