//! `homa sim`: the simulator's own options ([`homa_sim::cli::SimArgs`];
//! `--duration` is simulated time and takes units: `100ms`, `2s`) plus an
//! estimate of the wall time before it starts. A short pilot run of the
//! same configuration measures how fast this machine simulates it; the
//! estimate scales that to the requested duration, faster than linearly
//! (a loaded network fills for a long time: [`GROWTH`]). Above
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

/// Wall time one pilot of `pilot` simulated time (and as long a drain)
/// of the configuration `a` takes.
fn pilot(a: &SimArgs, pilot: Duration) -> Result<f64> {
    let mut p = a.clone();
    p.duration = pilot;
    p.warmup = Some(pilot / 10);
    p.drain = Some(pilot);
    p.capture = None;
    let cfg = p.config().map_err(|e| anyhow::anyhow!("{e}"))?;
    let t0 = Instant::now();
    let mut sim = homa_sim::Simulator::new(&cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    sim.run(|_| {}).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(t0.elapsed().as_secs_f64())
}

/// How the wall time of a run grows with its simulated time: as its
/// power 1.25. A network under load fills for a long time and each
/// simulated millisecond costs more than the last: W4 at 0.8 simulated
/// 20, 17, 15, 13 and 8 ms per wall second in runs of 2, 4, 8, 16 and
/// 100 ms (2026-12-08), so linear scaling from a 2 ms pilot said 8 s for
/// a 100 ms run that took 20 s; the power fits those runs (and errs on
/// the long side for lighter loads). A second pilot to measure the power
/// per configuration was tried: two short pilots on a busy machine gave
/// powers of 1.1 to 1.6, too noisy to keep.
const GROWTH: f64 = 1.25;

/// Wall time of a run `scale` times as long (in simulated time) as a
/// pilot that took `w1`.
pub(crate) fn extrapolate(w1: f64, scale: f64) -> f64 {
    w1 * scale.max(1.0).powf(GROWTH)
}

/// Wall time the run of `a` should take, from a pilot of [`PILOT`]
/// simulated time (`None` when the run is no longer than a few pilots).
pub(crate) fn estimate(a: &SimArgs) -> Result<Option<Duration>> {
    if a.duration <= PILOT * 4 || a.references_only {
        return Ok(None);
    }
    let w1 = pilot(a, PILOT)?;
    let scale = a.duration.as_secs_f64() / PILOT.as_secs_f64();
    Ok(Some(Duration::from_secs_f64(extrapolate(w1, scale))))
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

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    #[test]
    fn extrapolate__faster_than_linear() {
        // The 2 ms pilot of W4 at 0.8 (0.21 s) and the 100 ms run it
        // should predict (20 s; linear scaling said 10).
        let e = extrapolate(0.21, 50.0);
        assert!((15.0..35.0).contains(&e), "{e}");
        assert_eq!(extrapolate(2.0, 1.0), 2.0);
    }
}
