//! `homa sim`: the simulator's own options ([`homa_sim::cli::SimArgs`];
//! `--duration` is simulated time and takes units: `100ms`, `2s`) plus an
//! estimate of the wall time before it starts. A short pilot run of the
//! same configuration measures how fast this machine simulates it; the
//! estimate scales that to the requested duration. Above
//! [`CONFIRM_ABOVE`] the command asks before going on (or needs `--yes`
//! when nobody can answer).

use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use homa_sim::cli::SimArgs;

use crate::out::{err, errln, out};

/// Estimated wall time above which `homa sim` asks for confirmation.
pub(crate) const CONFIRM_ABOVE: Duration = Duration::from_secs(120);

/// Simulated time of the pilot run.
const PILOT: Duration = Duration::from_millis(2);

/// `homa sim`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SimCmd {
    #[command(flatten)]
    args: SimArgs,
    /// Run without asking, however long the estimate.
    #[arg(long)]
    yes: bool,
}

/// Wall time the run of `a` should take, from a pilot of [`PILOT`]
/// simulated time (`None` when the run is no longer than a few pilots).
pub(crate) fn estimate(a: &SimArgs) -> Result<Option<Duration>> {
    if a.duration <= PILOT * 4 || a.references_only {
        return Ok(None);
    }
    let mut p = a.clone();
    p.duration = PILOT;
    p.warmup = Some(PILOT / 10);
    p.drain = Some(PILOT);
    p.capture = None;
    let cfg = p.config().map_err(|e| anyhow::anyhow!("{e}"))?;
    let t0 = Instant::now();
    let mut sim = homa_sim::Simulator::new(&cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    sim.run(|_| {}).map_err(|e| anyhow::anyhow!("{e}"))?;
    let wall = t0.elapsed().as_secs_f64();
    let scale = a.duration.as_secs_f64() / PILOT.as_secs_f64();
    Ok(Some(Duration::from_secs_f64(wall * scale)))
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{:.0} s", d.as_secs_f64()),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{:.1} h", s as f64 / 3600.0),
    }
}

/// `homa sim`: the estimate, the confirmation if needed, the run.
pub(crate) fn main(c: &SimCmd) -> Result<()> {
    let a = &c.args;
    if let Some(eta) = estimate(a)? {
        errln!(
            "homa sim: {} of simulated time; estimated wall time about {} on this machine (from a {} ms pilot run)",
            humantime::format_duration(a.duration),
            human(eta),
            PILOT.as_millis()
        );
        if eta > CONFIRM_ABOVE && !c.yes {
            if !std::io::stdin().is_terminal() {
                bail!(
                    "this would take about {}; pass --yes to run it anyway (or a shorter --duration, e.g. 100ms)",
                    human(eta)
                );
            }
            err!("continue? [y/N] ");
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            if !matches!(line.trim(), "y" | "Y" | "yes") {
                bail!("not run");
            }
        }
    }
    // The table is printed here, through crate::out, like every line of
    // this command.
    let quiet = SimArgs {
        quiet: true,
        ..a.clone()
    };
    let results = homa_sim::cli::execute(&quiet).map_err(|e| anyhow::anyhow!("homa sim: {e}"))?;
    if !a.quiet {
        out!("{}", homa_sim::report::table(&results))?;
    }
    Ok(())
}
