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
//! Ratios against both are reported; the targets of the issue are judged
//! against the connected floor.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::bench::{self, Cpus, Plan, Polling};
use crate::stats::{median, Latency};

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// Repetitions of the whole set; the table shows medians.
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Measurement window of each measurement, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub duration_ms: u64,
    /// Untimed warm-up before each measurement, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub warmup_ms: u64,
    /// How every transport's waiting threads wait.
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
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
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
#[derive(Debug, Clone, Serialize)]
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

/// Medians over repetitions.
#[derive(Debug, Clone, Serialize)]
pub struct Medians {
    /// P50 RTT of each transport (µs): udp, tcp, homa.
    pub p50_us: [f64; 3],
    /// P99 RTT (µs).
    pub p99_us: [f64; 3],
    /// P99.9 RTT (µs).
    pub p999_us: [f64; 3],
    /// Bulk throughput (Gbit/s).
    pub gbps: [f64; 3],
    /// The unconnected UDP floor's P50, P99 and P99.9 RTT (µs).
    pub udp_unconnected_us: [f64; 3],
}

/// The whole result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Polling policy used by every transport.
    pub polling: Polling,
    /// Pinning.
    pub cpus: Cpus,
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
    /// 1-minute load average before and after the run.
    pub load_avg: [Option<f64>; 2],
    /// Every repetition.
    pub reps: Vec<Rep>,
    /// Medians of the repetitions.
    pub medians: Medians,
    /// Homa/UDP and Homa/TCP ratios of the medians: p50, p99, bulk.
    pub ratios: Ratios,
}

/// Ratios of the medians.
#[derive(Debug, Clone, Serialize)]
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

/// Runs the comparison.
pub fn run(args: &CompareArgs) -> Result<Report> {
    let (client, server) = crate::pin::choose(args.client_cpu, args.server_cpu);
    let cpus = Cpus { client, server };
    let plan = Plan {
        warmup: Duration::from_millis(args.warmup_ms),
        measure: Duration::from_millis(args.duration_ms),
    };
    let load_before = crate::pin::load_average();
    let mut reps = Vec::new();
    for i in 0..args.reps.max(1) {
        if !args.json {
            eprint!("\rrepetition {}/{} ...", i + 1, args.reps.max(1));
        }
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
    if !args.json {
        eprintln!();
    }
    let (medians, ratios) = summarize(&reps);
    Ok(Report {
        polling: args.polling,
        cpus,
        small_bytes: args.small,
        bulk_bytes: args.bulk,
        bulk_outstanding: args.bulk_outstanding,
        link_mbps: args.link_mbps,
        duration_ms: args.duration_ms,
        load_avg: [load_before, crate::pin::load_average()],
        reps,
        medians,
        ratios,
    })
}

/// Medians of the repetitions and the ratios of the medians.
fn summarize(reps: &[Rep]) -> (Medians, Ratios) {
    let col = |f: &dyn Fn(&Rep) -> f64| median(&reps.iter().map(f).collect::<Vec<_>>());
    let medians = Medians {
        p50_us: [
            col(&|r| r.udp_rtt.p50_us),
            col(&|r| r.tcp_rtt.p50_us),
            col(&|r| r.homa_rtt.p50_us),
        ],
        p99_us: [
            col(&|r| r.udp_rtt.p99_us),
            col(&|r| r.tcp_rtt.p99_us),
            col(&|r| r.homa_rtt.p99_us),
        ],
        p999_us: [
            col(&|r| r.udp_rtt.p999_us),
            col(&|r| r.tcp_rtt.p999_us),
            col(&|r| r.homa_rtt.p999_us),
        ],
        gbps: [
            col(&|r| r.udp_gbps),
            col(&|r| r.tcp_gbps),
            col(&|r| r.homa_gbps),
        ],
        udp_unconnected_us: [
            col(&|r| r.udp_unconnected_rtt.p50_us),
            col(&|r| r.udp_unconnected_rtt.p99_us),
            col(&|r| r.udp_unconnected_rtt.p999_us),
        ],
    };
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let m = &medians;
    let ratios = Ratios {
        p50_vs_udp: ratio(m.p50_us[2], m.p50_us[0]),
        p50_vs_tcp: ratio(m.p50_us[2], m.p50_us[1]),
        p99_vs_udp: ratio(m.p99_us[2], m.p99_us[0]),
        p99_vs_tcp: ratio(m.p99_us[2], m.p99_us[1]),
        bulk_vs_udp: ratio(m.gbps[2], m.gbps[0]),
        bulk_vs_tcp: ratio(m.gbps[2], m.gbps[1]),
        p50_vs_udp_unconnected: ratio(m.p50_us[2], m.udp_unconnected_us[0]),
        p99_vs_udp_unconnected: ratio(m.p99_us[2], m.udp_unconnected_us[1]),
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

fn mark(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISS"
    }
}

/// Prints the report as a table.
pub fn print_table(r: &Report) {
    let m = &r.medians;
    let q = &r.ratios;
    let load = |l: Option<f64>| l.map_or("?".to_string(), |v| format!("{v:.2}"));
    println!(
        "homa compare: loopback, client cpu {}, server cpu {}, polling {:?}, {} reps x {} ms, load {} -> {}",
        r.cpus.client,
        r.cpus.server,
        r.polling,
        r.reps.len(),
        r.duration_ms,
        load(r.load_avg[0]),
        load(r.load_avg[1]),
    );
    println!(
        "{:<26}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
        "median of reps", "UDP conn", "UDP unc", "TCP", "Homa", "/UDPconn", "/UDPunc", "/TCP"
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
    let u = m.udp_unconnected_us;
    row(format!("{s} B RTT P50 (us)"), m.p50_us, Some(u[0]));
    row(format!("{s} B RTT P99 (us)"), m.p99_us, Some(u[1]));
    row(format!("{s} B RTT P99.9 (us)"), m.p999_us, Some(u[2]));
    let mb = r.bulk_bytes as f64 / 1e6;
    row(format!("{mb} MB one-way (Gbit/s)"), m.gbps, None);
    println!(
        "targets: P50 <= 1.15x UDP [{}] and <= 0.85x TCP [{}]; P99 <= 1.25x UDP [{}]; bulk >= 0.5x UDP [{}] and >= 0.6x TCP [{}]",
        mark(q.p50_vs_udp <= 1.15),
        mark(q.p50_vs_tcp <= 0.85),
        mark(q.p99_vs_udp <= 1.25),
        mark(q.bulk_vs_udp >= 0.5),
        mark(q.bulk_vs_tcp >= 0.6),
    );
    println!(
        "UDP conn = connected client (send/recv); UDP unc = Homa's system calls on both sides (sendto with destination, TOS as socket option; recvmsg with source address and TOS/GRO control messages); targets judged against UDP conn"
    );
    println!(
        "bulk: UDP = GSO+GRO blast of 1472-byte datagrams (no reliability); TCP = one connection, length-prefixed; Homa = {} calls outstanding, 1-byte responses, pacer link {} Mbit/s",
        r.bulk_outstanding, r.link_mbps
    );
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
        assert_eq!(m.p50_us, [16.0, 32.0, 22.0]);
        assert_eq!(m.udp_unconnected_us, [20.0, 12.0, 12.0]);
        assert_eq!(r.p50_vs_udp, 22.0 / 16.0);
        assert_eq!(r.p50_vs_udp_unconnected, 22.0 / 20.0);
        assert_eq!(r.p99_vs_udp_unconnected, 15.0 / 12.0);
        assert_eq!(r.p50_vs_tcp, 22.0 / 32.0);
        assert_eq!(r.bulk_vs_udp, 48.0 / 40.0);
    }
}
