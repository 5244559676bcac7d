//! CPU pinning (`sched_setaffinity`, through `homa_sys::process`) so
//! client and server of a measurement each own one core, the same for
//! every transport.

use anyhow::{Context, Result};

pub use homa_sys::process::allowed_cpus;

/// Pins the calling thread (and threads it creates later) to `cpu`.
pub fn pin_current_thread(cpu: usize) -> Result<()> {
    homa_sys::process::pin_current_thread(cpu).with_context(|| format!("sched_setaffinity({cpu})"))
}

/// The client and server CPUs: the given ones, else the first two allowed
/// (both the same when only one is allowed).
pub fn choose(client: Option<usize>, server: Option<usize>) -> (usize, usize) {
    let cpus = allowed_cpus();
    let first = cpus.first().copied().unwrap_or(0);
    let second = cpus.get(1).copied().unwrap_or(first);
    (client.unwrap_or(first), server.unwrap_or(second))
}

/// The 1-minute load average, if readable.
pub fn load_average() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    s.split_whitespace().next()?.parse().ok()
}
