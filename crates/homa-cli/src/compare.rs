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
//! A tail measured on a busy machine measures the machine: the report
//! warns when the load average exceeds half the CPUs or when the P99.9 of
//! any transport varies more than 2x between repetitions.

use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::bench::{self, Cpus, Plan, Polling};
use crate::stats::{median, Latency};

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// Repetitions of the whole set; the table shows medians.
    #[arg(long, default_value_t = 5)]
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
    #[arg(long, default_value_t = 100)]
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
    /// Homa bulk calls kept outstanding on the client socket.
    #[arg(long, default_value_t = 4)]
    pub bulk_outstanding: usize,
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

/// One of the seven measurements.
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
    /// Link speed given to Homa's pacer, Mbit/s.
    pub link_mbps: u32,
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
    let load_before = crate::pin::load_average();
    let mut reps = Vec::new();
    let n = args.reps.max(1);
    let mut progress = crate::progress::Progress::new("compare", !(args.json || args.quiet));
    for i in 0..n {
        progress.update(i as f64, n as f64, "repetitions");
        let p = args.polling;
        let on = |m: Measurement| args.only.is_empty() || args.only.contains(&m);
        use Measurement as M;
        reps.push(Rep {
            udp_rtt: maybe(on(M::UdpRtt), || bench::udp_rtt(args.small, &plan, p, cpus))?,
            udp_unconnected_rtt: maybe(on(M::UdpUnconnectedRtt), || {
                bench::udp_rtt_unconnected(args.small, &plan, p, cpus)
            })?,
            tcp_rtt: maybe(on(M::TcpRtt), || bench::tcp_rtt(args.small, &plan, p, cpus))?,
            homa_rtt: maybe(on(M::HomaRtt), || {
                bench::homa_rtt(args.small, &plan, p, cpus, Some(args.link_mbps))
            })?,
            udp_gbps: maybe(on(M::UdpBulk), || bench::udp_bulk(&plan, p, cpus))?,
            tcp_gbps: maybe(on(M::TcpBulk), || {
                bench::tcp_bulk(args.bulk, &plan, p, cpus)
            })?,
            homa_gbps: maybe(on(M::HomaBulk), || {
                bench::homa_bulk(
                    args.bulk,
                    args.bulk_outstanding,
                    &plan,
                    p,
                    cpus,
                    Some(args.link_mbps),
                )
            })?,
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
        link_mbps: args.link_mbps,
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

/// Why the tails of this run may not be trusted: a load average above half
/// the CPUs (before or after), or a P99.9 that varied more than
/// [`TAIL_SPREAD`]x between repetitions.
pub fn noise_warnings(reps: &[Rep], load: &LoadAverage) -> Vec<String> {
    let mut w = Vec::new();
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
    };
    (medians, ratios)
}

fn maybe<T: Default>(on: bool, f: impl FnOnce() -> Result<T>) -> Result<T> {
    if on {
        f()
    } else {
        Ok(T::default())
    }
}

/// Prints the report as a table (with the targets if `targets`).
pub fn print_table(r: &Report, targets: bool) {
    let m = &r.medians;
    let load = |l: Option<f64>| l.map_or("?".to_string(), |v| format!("{v:.2}"));
    println!(
        "homa compare: loopback; client on CPU {}, server on CPU {}; polling {} (--polling); {} repetitions x {} ms; load average (1 min) {} before, {} after, {} CPUs",
        r.client_cpu,
        r.server_cpu,
        r.polling,
        r.reps.len(),
        r.duration_ms,
        load(r.load_avg.before),
        load(r.load_avg.after),
        r.load_avg.cpus,
    );
    println!(
        "{:<26}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
        "median of repetitions",
        "UDP conn",
        "UDP unc",
        "TCP",
        "Homa",
        "Homa/UDPc",
        "Homa/UDPu",
        "Homa/TCP"
    );
    let row = |name: String, v: [f64; 3], unc: Option<f64>| {
        // (0: not measured, see --only.)
        let unc = unc.filter(|&u| u > 0.0);
        let unc_v = unc.map_or("-".to_string(), |u| format!("{u:.2}"));
        let unc_r = unc.map_or("-".to_string(), |u| format!("{:.2}x", v[2] / u));
        println!(
            "{:<26}{:>10.2}{:>10}{:>10.2}{:>10.2}{:>9.2}x{:>10}{:>9.2}x",
            name,
            v[0],
            unc_v,
            v[1],
            v[2],
            v[2] / v[0],
            unc_r,
            v[2] / v[1]
        );
    };
    let s = r.small_bytes;
    let u = &m.udp_unconnected;
    row(
        format!("{s} B RTT P50 (us)"),
        [m.udp.p50_us, m.tcp.p50_us, m.homa.p50_us],
        Some(u.p50_us),
    );
    row(
        format!("{s} B RTT P99 (us)"),
        [m.udp.p99_us, m.tcp.p99_us, m.homa.p99_us],
        Some(u.p99_us),
    );
    row(
        format!("{s} B RTT P99.9 (us)"),
        [m.udp.p999_us, m.tcp.p999_us, m.homa.p999_us],
        Some(u.p999_us),
    );
    let mb = r.bulk_bytes as f64 / 1e6;
    row(
        format!("{mb} MB one-way (Gbit/s)"),
        [m.bulk.udp_gbps, m.bulk.tcp_gbps, m.bulk.homa_gbps],
        None,
    );
    println!(
        "UDP conn = raw UDP ping-pong, connected client (send/recv): the floor. UDP unc = the same with Homa's system calls on both sides (sendto with destination, TOS as socket option; recvmsg with source address and TOS/GRO control messages)"
    );
    println!(
        "bulk: UDP = GSO+GRO blast of 1472-byte datagrams (no reliability); TCP = one connection, length-prefixed; Homa = {} calls outstanding, 1-byte responses, pacer link {} Mbit/s",
        r.bulk_outstanding, r.link_mbps
    );
    if targets {
        if let Some(ts) = &r.targets {
            println!("targets of the project (against UDP conn):");
            for t in ts {
                println!(
                    "  {:<22} {:>6.2} (want {}) {}",
                    t.name,
                    t.ratio,
                    t.bound,
                    if t.met { "ok" } else { "MISS" }
                );
            }
        }
    }
    for w in &r.warnings {
        println!("warning: {w}");
    }
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
    }
}
