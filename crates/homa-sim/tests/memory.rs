//! Bounded memory: a long run keeps nothing per message. The peak resident
//! set of this process (its own test binary, so no other test shares it)
//! after a run ten times longer grows by far less than per-message records
//! would take: one second of 8 hosts of W1 is 28 M messages, which per-message
//! samples (32 bytes) and reference arrivals (2 x 32 bytes) alone would
//! hold in 2.6 GB.

#![allow(non_snake_case)]

use core::time::Duration;

use homa_sim::SimConfig;
use homa_workload::Workload;

/// Peak resident set of this process, in kB (Linux).
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn run(duration: Duration) -> u64 {
    let mut cfg = SimConfig::paper(Workload::W1.into());
    cfg.topology.racks = 2;
    cfg.topology.hosts_per_rack = 4;
    cfg.topology.aggs = 2;
    cfg.run.duration = duration;
    cfg.run.warmup = duration / 10;
    cfg.run.drain = Duration::from_millis(1);
    let r = homa_sim::run(&cfg).unwrap();
    assert!(r.messages.completed > 0);
    r.messages.generated
}

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "needs Linux (/proc/self/status) to read the peak resident set"
)]
fn memory__long_run_stays_flat() {
    let short = run(Duration::from_millis(10));
    let before = peak_rss_kb().expect("/proc/self/status has VmHWM");
    let long = run(Duration::from_millis(100));
    let after = peak_rss_kb().unwrap();
    assert!(long > 9 * short, "{short} {long}");
    let grown_kb = after.saturating_sub(before);
    // Per-message records would add 96 bytes for each of the extra
    // messages; allow a tenth of that.
    let per_message_kb = (long - short) * 96 / 1024;
    eprintln!(
        "{short} then {long} messages: peak RSS {before} -> {after} kB (+{grown_kb} kB; \
         per-message records would be {per_message_kb} kB)"
    );
    assert!(
        grown_kb < per_message_kb / 10,
        "+{grown_kb} kB for {} more messages",
        long - short
    );
}
