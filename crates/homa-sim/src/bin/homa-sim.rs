//! `homa-sim`: runs one simulated experiment and writes its results.
//!
//! Everything but argument parsing lives in the `homa_sim` library
//! (`homa_sim::cli`), so that the `homa` command can offer the same as
//! `homa sim`.

use clap::Parser;
use homa_sim::cli::{execute, note, SimArgs};

/// Simulate Homa (the real homa-proto code) on a datacenter network.
///
/// Defaults reproduce the SIGCOMM 2018 setup: 144 hosts in 9 racks, 10/40
/// Gbit/s links, 4 aggregation switches, W4 at 80% load for 100 ms.
#[derive(Debug, Parser)]
#[command(name = "homa-sim", version)]
struct Cli {
    #[command(flatten)]
    args: SimArgs,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = execute(&cli.args) {
        note(format_args!("homa-sim: {e}"));
        std::process::exit(2);
    }
}
