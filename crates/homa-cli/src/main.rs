//! `homa`: Homa over UDP from the command line, and a benchmark lab in the
//! manner of the kernel module's `cp_node` / `cp_vs_tcp`.
//!
//! ```text
//! homa server --bind 127.0.0.1:4000 [--protocol tcp] [--ports 2 --threads 2]
//! homa client --server 127.0.0.1:4000 --workload w3 --gbps 1 --duration 10
//! homa rack --workload w4 --load 0.8      # Homa vs TCP in an emulated rack (root)
//! homa metrics --server 127.0.0.1:4000    # counters of a running server
//! homa sim -w w4 -l 0.8                   # the simulator (homa-sim's options)
//! homa compare                            # the loopback table the README shows
//! ```
//!
//! Modules: [`header`] (the 12-byte message header), [`loadgen`] (the
//! generator: workloads, arrivals, Homa and TCP transports), [`client`]
//! (options and reports of `homa client`), [`server`] (Homa and TCP servers,
//! metrics), [`results`] (slowdown, percentiles, size buckets), [`plot`]
//! (SVG), [`rack`] (the emulated rack), [`progress`] (progress bar).

mod bench;
mod client;
mod compare;
mod header;
mod loadgen;
mod pin;
mod plot;
mod progress;
mod rack;
mod results;
mod server;
mod stats;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};

use bench::Polling;
use loadgen::Protocol;

#[derive(Debug, Parser)]
#[command(
    name = "homa",
    version,
    about = "Homa over UDP: servers, load-generating clients, an emulated rack, the simulator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve requests over Homa or TCP (cp_node server).
    Server(ServerArgs),
    /// Generate load: workloads W1-W5 or a fixed size, open or closed loop,
    /// over Homa or TCP, with RTT and slowdown by message size (cp_node client).
    Client(Box<client::ClientArgs>),
    /// Build an emulated rack in network namespaces and compare Homa with
    /// TCP on a workload (needs root).
    Rack(Box<rack::RackArgs>),
    /// Print the counters of a running `homa server`.
    Metrics(MetricsArgs),
    /// Run the datacenter simulator (the options of `homa-sim`).
    Sim(Box<homa_sim::cli::SimArgs>),
    /// Measure Homa against raw UDP and TCP on loopback.
    Compare(compare::CompareArgs),
}

#[derive(Debug, clap::Args)]
struct ServerArgs {
    /// Address and port to serve on (further ports follow it).
    #[arg(long, default_value = "127.0.0.1:4000")]
    bind: SocketAddr,
    /// Transport.
    #[arg(long, value_enum, default_value_t = Protocol::Homa)]
    protocol: Protocol,
    /// Ports served, from the --bind port up.
    #[arg(long, default_value_t = 1)]
    ports: u16,
    /// Threads per port (Homa) or runtime workers (TCP).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Reply with this many bytes instead of what the request asks for.
    #[arg(long)]
    response_size: Option<u32>,
    /// How waiting threads wait.
    #[arg(long, value_enum, default_value_t = Polling::Adaptive)]
    polling: Polling,
    /// Pin the server threads to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
    // Homa's settings.
    #[command(flatten)]
    homa: client::HomaKnobs,
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
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
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
    // SAFETY: mallopt only adjusts allocator parameters; called before any
    // thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

fn main() -> Result<()> {
    tune_allocator();
    let cli = Cli::parse();
    if let Command::Rack(_) = cli.command {
        // Before any thread starts: Ctrl-C and SIGTERM must remove the lab.
        homa_lab::install_signal_cleanup()?;
    }
    match cli.command {
        Command::Server(a) => {
            if let Some(cpu) = a.cpu {
                pin::pin_current_thread(cpu)?;
            }
            server::run(server::Options {
                protocol: a.protocol,
                bind: a.bind,
                ports: a.ports,
                threads: a.threads,
                polling: a.polling,
                homa: a.homa,
                response_size: a.response_size,
                report: !a.quiet,
                exp: a.exp.unwrap_or_else(|| a.protocol.name().to_string()),
            })
        }
        Command::Client(a) => client::main(&a),
        Command::Rack(a) => rack::main(&a),
        Command::Metrics(a) => {
            let m =
                server::fetch_metrics(a.protocol, a.server, Duration::from_secs_f64(a.timeout))?;
            println!("{}", serde_json::to_string_pretty(&m)?);
            Ok(())
        }
        Command::Sim(a) => match homa_sim::cli::execute(&a) {
            Ok(_) => Ok(()),
            Err(e) => {
                eprintln!("homa sim: {e}");
                std::process::exit(2);
            }
        },
        Command::Compare(a) => {
            let report = compare::run(&a)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                compare::print_table(&report);
            }
            Ok(())
        }
    }
}
