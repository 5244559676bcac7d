//! `homa`: Homa over UDP from the command line, and a benchmark lab in the
//! manner of the kernel module's `cp_node` / `cp_vs_tcp`.
//!
//! ```text
//! homa server --bind 127.0.0.1:4000 [--protocol homa,tcp] [--metrics-listen 127.0.0.1:9100]
//! homa client --server 127.0.0.1:4000 --workload w3 --gbps 1 --duration 10s
//! homa plot a.json b.json --out plot.svg   # overlay client reports
//! homa rack --workload w4 --load 0.8       # Homa vs TCP in an emulated rack (root)
//! homa metrics --server 127.0.0.1:4000     # counters of a running server
//! homa sim -w w4 -l 0.8                    # the simulator (homa-sim's options)
//! homa compare                             # Homa against UDP and TCP on loopback
//! ```
//!
//! Modules: [`args`] (value parsers and checks), [`header`] (the 12-byte
//! message header), [`loadgen`] (the generator: workloads, arrivals, Homa
//! and TCP transports), [`client`] (options and reports of `homa client`),
//! [`server`] (Homa and TCP servers, metrics), [`prom`] (the Prometheus
//! endpoint), [`results`] (slowdown, size buckets), [`stats`]
//! (percentiles), [`plot`] (SVG plots), [`rack`] (the emulated rack),
//! [`sim`] (`homa sim`'s estimate and confirmation), [`progress`]
//! (progress bar).

#![warn(unreachable_pub)]

mod args;
// bench, compare and pin belong to the performance work; their `pub`
// items become `pub(crate)` there.
#[allow(unreachable_pub)]
mod bench;
mod client;
#[allow(unreachable_pub)]
mod compare;
mod header;
mod loadgen;
mod out;
#[allow(unreachable_pub)]
mod pin;
mod plot;
mod progress;
mod prom;
mod rack;
mod results;
mod server;
mod sim;
mod stats;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use bench::Polling;
use loadgen::Protocol;
use out::{errln, outln};

#[derive(Debug, Parser)]
#[command(
    name = "homa",
    version,
    about = "Homa over UDP: servers, load-generating clients, plots, an emulated rack, the simulator, a loopback comparison"
)]
struct Cli {
    /// Show the full error chain with a backtrace on failure (also with
    /// RUST_LIB_BACKTRACE=1).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve requests over Homa, TCP or both (cp_node server).
    Server(ServerArgs),
    /// Generate load: workloads W1-W5 or a fixed size, open or closed loop,
    /// over Homa and/or TCP, with RTT and slowdown by message size (cp_node
    /// client).
    Client(Box<client::ClientArgs>),
    /// Overlay the JSON reports of `homa client` in one plot (SVG).
    Plot(PlotArgs),
    /// Build an emulated rack in network namespaces and compare Homa with
    /// TCP on a workload. Needs root and the ip, tc, ethtool and sysctl
    /// commands; sets the machine-wide htb_hysteresis module
    /// parameter to 1 while it runs (restored after).
    #[command(
        long_about = "Build an emulated rack in network namespaces and compare Homa with TCP on a workload.\n\n\
Needs root and the `ip`, `tc`, `ethtool` and `sysctl` commands (iproute2, ethtool, procps). \
It creates network namespaces `<prefix>-sw`, `<prefix>-h1`.. and veth links, shapes the switch ports with htb, \
and sets the machine-wide htb module parameter `htb_hysteresis` to 1 while it runs; everything is \
deleted and `htb_hysteresis` restored at the end, on failure, Ctrl-C or SIGTERM (after SIGKILL, at the next run). \
Results go to target/homa-rack/<workload>-<load>/ (--out)."
    )]
    Rack(Box<rack::RackArgs>),
    /// Print the counters of a running `homa server` (JSON).
    Metrics(MetricsArgs),
    /// Run the datacenter simulator (the options of `homa-sim`); estimates
    /// the wall time first and asks before a long run.
    Sim(Box<sim::SimCmd>),
    /// Measure Homa against raw UDP and TCP on loopback.
    Compare(compare::CompareArgs),
}

#[derive(Debug, clap::Args)]
struct ServerArgs {
    /// Address and port to serve on (further ports follow it).
    #[arg(long, default_value = "127.0.0.1:4000")]
    bind: SocketAddr,
    /// Transports, comma-separated: `homa,tcp` serves both on the same port
    /// number (UDP and TCP).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "homa")]
    protocol: Vec<Protocol>,
    /// Ports served, from the --bind port up.
    #[arg(long, default_value_t = 1, value_parser = args::positive_u16)]
    ports: u16,
    /// Threads per port (Homa) or runtime workers (TCP).
    #[arg(long, default_value_t = 1, value_parser = args::positive_usize)]
    threads: usize,
    /// Homa: give each of the --threads of a port its own socket on that
    /// port (SO_REUSEPORT: the kernel spreads the clients over them by
    /// flow hash; one lock per socket, one Homa per host through the host
    /// table) instead of sharing one socket.
    #[arg(long)]
    reuseport: bool,
    /// Homa: pin serving thread i of each port to CPU i
    /// (sched_setaffinity); with --reuseport also steer each datagram to
    /// socket i of its port when CPU i received it (a reuseport CBPF
    /// program) instead of the flow hash.
    #[arg(long)]
    pin: bool,
    /// Reply with this many bytes instead of what the request asks for
    /// (1 to the longest Homa message).
    #[arg(long, value_parser = args::message_length)]
    response_size: Option<u32>,
    /// How waiting threads wait (server and client default to adaptive;
    /// compare uses busy, rack block).
    #[arg(long, value_enum, default_value_t = Polling::Adaptive)]
    polling: Polling,
    /// Pin the server threads to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
    // Homa's settings.
    #[command(flatten)]
    homa: client::HomaKnobs,
    /// Serve the counters in the Prometheus text format over HTTP at this
    /// address (`http://ADDR/metrics`).
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Experiment name for the per-second lines.
    #[arg(long)]
    exp: Option<String>,
    /// No per-second lines.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, clap::Args)]
struct MetricsArgs {
    /// The server's address.
    #[arg(long, default_value = "127.0.0.1:4000")]
    server: SocketAddr,
    /// Transport the server speaks.
    #[arg(long, value_enum, default_value_t = Protocol::Homa)]
    protocol: Protocol,
    /// Give up after this long.
    #[arg(long, default_value = "5s", value_parser = args::positive_duration)]
    timeout: Duration,
}

#[derive(Debug, clap::Args)]
struct PlotArgs {
    /// JSON reports of `homa client --json-out` (a report or a list of
    /// reports each).
    #[arg(required = true)]
    reports: Vec<PathBuf>,
    /// Where to write the SVG.
    #[arg(short, long, default_value = "plot.svg")]
    out: PathBuf,
}

/// Fixes glibc's allocation thresholds for this process. Homa hands every
/// received message to the application in its own buffer; with glibc's
/// default *dynamic* thresholds, freeing a few concurrent megabyte-sized
/// messages trims the heap (`madvise`) and the next message faults every
/// page back in: 180 000 page faults for 1 GB received, half of the bulk
/// throughput on loopback. Fixed thresholds keep freed buffers for reuse.
/// (The baselines allocate nothing per message, so this changes nothing
/// for them.)
fn tune_allocator() {
    // Called before any thread starts. A refusal only costs throughput.
    let _ = homa_sys::process::tune_malloc(64 << 20, 256 << 20);
}

fn main() {
    tune_allocator();
    let cli = Cli::parse();
    let verbose = cli.verbose;
    if let Err(e) = run(cli) {
        // One line per cause; the backtrace only when asked for.
        let asked = verbose || std::env::var_os("RUST_LIB_BACKTRACE").is_some_and(|v| v != "0");
        if asked {
            errln!("homa: error: {e:?}");
        } else {
            errln!("homa: error: {e:#}");
        }
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    if let Command::Rack(_) = cli.command {
        // Before any thread starts: Ctrl-C and SIGTERM must remove the lab.
        homa_lab::install_signal_cleanup()?;
    }
    match cli.command {
        Command::Server(a) => {
            if let Some(cpu) = a.cpu {
                pin::pin_current_thread(cpu)?;
            }
            let mut protocols = a.protocol.clone();
            protocols.dedup();
            server::run_all(
                server::Options {
                    protocol: protocols[0],
                    bind: a.bind,
                    ports: a.ports,
                    threads: a.threads,
                    reuseport: a.reuseport,
                    pin: a.pin,
                    polling: a.polling,
                    homa: a.homa,
                    response_size: a.response_size,
                    report: !a.quiet,
                    exp: a.exp.unwrap_or_default(),
                    registry: None,
                },
                &protocols,
                a.metrics_listen,
            )
        }
        Command::Client(a) => client::main(&a),
        Command::Plot(a) => {
            let mut reports: Vec<client::Report> = Vec::new();
            for p in &a.reports {
                let text = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                let v: serde_json::Value = serde_json::from_slice(&text)
                    .with_context(|| format!("{}: not JSON", p.display()))?;
                let list = match v {
                    serde_json::Value::Array(l) => l,
                    one => vec![one],
                };
                for r in list {
                    reports.push(
                        serde_json::from_value(r).with_context(|| {
                            format!("{}: not a `homa client` report", p.display())
                        })?,
                    );
                }
            }
            std::fs::write(&a.out, plot::reports(&reports))
                .with_context(|| format!("writing {}", a.out.display()))?;
            errln!("wrote {}", a.out.display());
            Ok(())
        }
        Command::Rack(a) => rack::main(&a),
        Command::Metrics(a) => {
            let m = server::fetch_metrics(a.protocol, a.server, a.timeout)?;
            outln!("{}", serde_json::to_string_pretty(&m)?)?;
            Ok(())
        }
        Command::Sim(a) => sim::main(&a),
        Command::Compare(a) => {
            let report = compare::run(&a)?;
            if a.json {
                outln!("{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                compare::print_table(&report, a.targets)?;
            }
            Ok(())
        }
    }
}
