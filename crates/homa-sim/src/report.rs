//! Presenting [`Results`]: a text table for people, CSV for scripts, an SVG
//! plot of slowdown against message size. All three are pure functions of
//! the results, so identical runs give identical files.

use core::fmt::Write as _;

use crate::results::{Results, Summary};
use crate::svg::{Plot, Series, COLORS};

fn f(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}")
    } else {
        "-".into()
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// Human-readable bytes: 1234567 -> "1.23 MB".
pub fn bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1e6 {
        format!("{:.2} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} KB", b / 1e3)
    } else {
        format!("{b:.0} B")
    }
}

fn summary_line(s: &Summary) -> String {
    format!(
        "n {}  P50 {}  P99 {}  P99.9 {}  mean {}  (P50 {} us, P99 {} us)",
        s.count,
        f(s.p50),
        f(s.p99),
        f(s.p999),
        f(s.mean),
        f(s.p50_us),
        f(s.p99_us)
    )
}

/// One-line title of a run.
pub fn title(r: &Results) -> String {
    format!(
        "{} ({}), {} profile, {}, load {:.2}, {} hosts{}, seed {}",
        r.workload,
        r.variant,
        r.profile,
        r.mode,
        r.utilization.offered,
        r.hosts,
        endpoints(r),
        r.seed
    )
}

/// ", K endpoints per host" when there are several.
fn endpoints(r: &Results) -> String {
    if r.endpoints_per_host > 1 {
        format!(", {} endpoints per host", r.endpoints_per_host)
    } else {
        String::new()
    }
}

/// A text report: summary lines and the per-bucket table.
pub fn table(r: &Results) -> String {
    let mut s = String::new();
    let m = &r.messages;
    let u = &r.utilization;
    let b = &r.buffers;
    let c = &r.conservation;
    let _ = writeln!(s, "homa-sim: {}", title(r));
    let _ = writeln!(
        s,
        "load counted as {}; slowdown = completion time / {} unloaded time",
        r.load_model, r.slowdown.0
    );
    let _ = writeln!(
        s,
        "messages: generated {}, excluded (created in the warm-up) {}, measured {}, completed {}, \
         incomplete {} ({}), failed {} ({:.1}/s per host)",
        m.generated,
        m.warmup,
        m.measured,
        m.completed,
        m.incomplete,
        bytes(m.incomplete_bytes),
        m.failed,
        r.rate_per_host
    );
    let _ = writeln!(
        s,
        "arrivals for {:.1} us, then a drain of {:.1} us; incomplete messages count in the \
         percentiles at their age at the end (a lower bound)",
        r.arrivals_end_us,
        (r.end_us - r.arrivals_end_us).max(0.0)
    );
    let _ = writeln!(
        s,
        "utilisation of host downlinks: DATA {} (offered {}, generated {}, ideal {}, matching {}), all \
         packets {}, goodput {}; idle with a message pending {} (with grants outstanding {})",
        pct(u.data),
        pct(u.offered),
        pct(u.generated),
        pct(u.ideal),
        pct(u.greedy),
        pct(u.total),
        pct(u.goodput),
        pct(u.wasted),
        pct(u.wasted_granted)
    );
    let _ = writeln!(
        s,
        "max switch buffer: ToR {}, aggregation {}; max port queue: downlink {}, uplink {}, agg {}, NIC {}",
        bytes(b.max_tor),
        bytes(b.max_agg),
        bytes(b.max_downlink_queue),
        bytes(b.max_uplink_queue),
        bytes(b.max_agg_queue),
        bytes(b.max_nic_queue)
    );
    let _ = writeln!(
        s,
        "shortest 10% (<= {} B): {}",
        r.short_rule.size,
        summary_line(&r.short)
    );
    let _ = writeln!(s, "all messages: {}", summary_line(&r.all));
    let _ = writeln!(
        s,
        "with the {} unloaded time instead: shortest 10% P99 {}, all P99 {}",
        r.slowdown.1,
        f(r.alt_short.p99),
        f(r.alt_all.p99)
    );
    let _ = writeln!(
        s,
        "{:>21} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>10}",
        "size (bytes)",
        "share",
        "count",
        "P50",
        "P99",
        "P99.9",
        "mean",
        "P50 us",
        "P99 us",
        "incomplete"
    );
    for k in &r.buckets {
        let st = &k.stats;
        let _ = writeln!(
            s,
            "{:>10} - {:>8} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>10}",
            k.above,
            k.upto,
            pct(k.share),
            st.count,
            f(st.p50),
            f(st.p99),
            f(st.p999),
            f(st.mean),
            f(st.p50_us),
            f(st.p99_us),
            if k.incomplete > 0 {
                format!("{} ({})", k.incomplete, bytes(k.incomplete_bytes))
            } else {
                "0".to_string()
            }
        );
    }
    let total: u64 = r.downlink_prio_bytes.iter().sum::<u64>().max(1);
    let prios: Vec<String> = (0..8)
        .rev()
        .filter(|&i| r.downlink_prio_bytes[i] > 0)
        .map(|i| {
            format!(
                "{i}: {}",
                pct(r.downlink_prio_bytes[i] as f64 / total as f64)
            )
        })
        .collect();
    let _ = writeln!(s, "downlink bytes by priority: {}", prios.join(", "));
    let _ = writeln!(
        s,
        "packets: injected {}, delivered {}, dropped {}, in flight {} ({})",
        c.injected_packets,
        c.delivered_packets,
        c.dropped_packets,
        c.in_flight_packets,
        if c.balanced() {
            "balanced"
        } else {
            "UNBALANCED"
        }
    );
    let _ = writeln!(s, "simulated {:.1} us, {} events", r.end_us, r.events);
    if let Some(p) = &r.pdes {
        let share = |n: u64| 100.0 * n as f64 / p.events.max(1) as f64;
        let kinds: Vec<String> = p
            .kinds
            .iter()
            .map(|(k, n)| format!("{k} {:.1}%", share(*n)))
            .collect();
        let _ = writeln!(s, "events by kind: {}", kinds.join(", "));
        let speedup: Vec<String> = p
            .speedup
            .iter()
            .map(|(n, x)| format!("{n}: {x:.2}"))
            .collect();
        let _ = writeln!(
            s,
            "rack-parallel estimate: {} LPs (racks), lookahead {:.3} us, \
             {} windows with events ({:.1} events each), {:.1}% of events cross LPs; \
             speed-up on N cores before barrier costs: {}",
            p.lps,
            p.window_us,
            p.windows,
            p.events as f64 / p.windows.max(1) as f64,
            share(p.crossing),
            speedup.join(", ")
        );
    }
    let samples: Vec<String> = r
        .backlog
        .iter()
        .map(|(t, b, i, g)| format!("{:.1}:{:.0}/{:.0}/{:.0}", t / 1e3, b, i, g))
        .collect();
    let _ = writeln!(
        s,
        "unfinished work per host (ms: us of link time, actual/ideal/matching): {}",
        samples.join(" ")
    );
    let _ = writeln!(s, "protocol: {}", r.protocol);
    let pc = &r.protocol_counters;
    let _ = writeln!(
        s,
        "protocol activity: grants {} (fifo {}), retransmitted {}, resends {}, timeouts {}, \
         need_acks {}, cutoffs {}, beyond grant {}, no buffer {}, duplicates {}, \
         sends blocked {}, pacer held {:.1} ms",
        pc.grants,
        pc.fifo_grants,
        pc.data_retransmitted,
        pc.resends,
        pc.timeouts,
        pc.need_acks,
        pc.cutoffs_sent,
        pc.beyond_grant,
        pc.no_buffer_space,
        pc.duplicate_data,
        pc.sends_blocked,
        pc.throttled_nanos as f64 / 1e6
    );
    let ic = &r.idle_causes;
    if ic.idle > 0 {
        let n = ic.samples.max(1) as f64;
        let senders: Vec<String> = ic
            .senders
            .iter()
            .enumerate()
            .filter(|(_, &v)| v > 0)
            .map(|(i, &v)| format!("{i}: {}", pct(v as f64 / ic.idle as f64)))
            .collect();
        let _ = writeln!(
            s,
            "idle with grants outstanding (sampled, share of downlink time): {}: data in the \
             network {} (queued in the fabric {}), sender sending other data {} (to a queued downlink {}), sender idle {}, grant in transit {}, \
             other {}; with a message not granted to {}; with a message not yet started by its \
             sender {}; senders owing: {}",
            pct(ic.idle as f64 / n),
            pct(ic.in_network as f64 / n),
            pct(ic.queued_in_fabric as f64 / n),
            pct(ic.sender_busy as f64 / n),
            pct(ic.sender_feeding_queue as f64 / n),
            pct(ic.sender_idle as f64 / n),
            pct(ic.grant_in_transit as f64 / n),
            pct(ic.other as f64 / n),
            pct(ic.inactive_candidate as f64 / n),
            pct(ic.unstarted_message as f64 / n),
            senders.join(", ")
        );
        let bp: Vec<String> = (0..8)
            .rev()
            .filter(|&i| ic.sender_busy_prio[i] > 0)
            .map(|i| format!("{i}: {}", pct(ic.sender_busy_prio[i] as f64 / n)))
            .collect();
        let _ = writeln!(s, "busy senders' packet priorities: {}", bp.join(", "));
        let _ = writeln!(
            s,
            "idle with nothing partially received while a sender had not started a message for \
             the host: {}",
            pct(ic.idle_unknown_work as f64 / n)
        );
    }
    s
}

/// CSV: `# key=value` summary lines, then one row per size bucket.
pub fn csv(r: &Results) -> String {
    let mut s = String::new();
    let m = &r.messages;
    let u = &r.utilization;
    let b = &r.buffers;
    let ic = &r.idle_causes;
    let share = |v: u64| format!("{:.4}", v as f64 / ic.samples.max(1) as f64);
    let kv: Vec<(&str, String)> = vec![
        ("profile", r.profile.clone()),
        ("workload", r.workload.clone()),
        ("variant", r.variant.clone()),
        ("mode", r.mode.clone()),
        ("load_model", r.load_model.clone()),
        ("slowdown", r.slowdown.0.clone()),
        ("seed", r.seed.to_string()),
        ("hosts", r.hosts.to_string()),
        ("offered_load", format!("{:.4}", u.offered)),
        ("rate_per_host", format!("{:.3}", r.rate_per_host)),
        ("generated_load", format!("{:.4}", u.generated)),
        ("utilization_data", format!("{:.4}", u.data)),
        ("utilization_ideal", format!("{:.4}", u.ideal)),
        ("utilization_matching", format!("{:.4}", u.greedy)),
        ("utilization_total", format!("{:.4}", u.total)),
        ("goodput", format!("{:.4}", u.goodput)),
        ("wasted", format!("{:.4}", u.wasted)),
        ("wasted_granted", format!("{:.4}", u.wasted_granted)),
        ("idle_data_in_network", share(ic.in_network)),
        ("idle_sender_busy", share(ic.sender_busy)),
        ("idle_sender_busy_to_queue", share(ic.sender_feeding_queue)),
        ("idle_sender_idle", share(ic.sender_idle)),
        ("idle_grant_in_transit", share(ic.grant_in_transit)),
        ("idle_candidate_not_granted", share(ic.inactive_candidate)),
        (
            "retransmitted",
            r.protocol_counters.data_retransmitted.to_string(),
        ),
        ("timeouts", r.protocol_counters.timeouts.to_string()),
        ("generated", m.generated.to_string()),
        ("warmup", m.warmup.to_string()),
        ("measured", m.measured.to_string()),
        ("completed", m.completed.to_string()),
        ("incomplete", m.incomplete.to_string()),
        ("incomplete_bytes", m.incomplete_bytes.to_string()),
        ("failed", m.failed.to_string()),
        ("short_cutoff", r.short_rule.size.to_string()),
        ("short_p50", format!("{:.4}", r.short.p50)),
        ("short_p99", format!("{:.4}", r.short.p99)),
        ("all_p50", format!("{:.4}", r.all.p50)),
        ("all_p99", format!("{:.4}", r.all.p99)),
        ("alt_short_p99", format!("{:.4}", r.alt_short.p99)),
        ("alt_all_p99", format!("{:.4}", r.alt_all.p99)),
        ("max_tor_buffer", b.max_tor.to_string()),
        ("max_agg_buffer", b.max_agg.to_string()),
        ("max_downlink_queue", b.max_downlink_queue.to_string()),
        ("max_uplink_queue", b.max_uplink_queue.to_string()),
        ("max_agg_queue", b.max_agg_queue.to_string()),
        ("max_nic_queue", b.max_nic_queue.to_string()),
        (
            "dropped_packets",
            r.conservation.dropped_packets.to_string(),
        ),
        ("events", r.events.to_string()),
        ("arrivals_end_us", format!("{:.3}", r.arrivals_end_us)),
        ("end_us", format!("{:.3}", r.end_us)),
        ("protocol", r.protocol.clone()),
    ];
    for (k, v) in kv {
        let _ = writeln!(s, "# {k}={v}");
    }
    if r.endpoints_per_host > 1 {
        let _ = writeln!(s, "# endpoints_per_host={}", r.endpoints_per_host);
    }
    let _ = writeln!(
        s,
        "above,upto,share,count,p50,p99,p999,mean,p50_us,p99_us,incomplete,incomplete_bytes"
    );
    for k in &r.buckets {
        let st = &k.stats;
        let _ = writeln!(
            s,
            "{},{},{:.6},{},{:.4},{:.4},{:.4},{:.4},{:.3},{:.3},{},{}",
            k.above,
            k.upto,
            k.share,
            st.count,
            st.p50,
            st.p99,
            st.p999,
            st.mean,
            st.p50_us,
            st.p99_us,
            k.incomplete,
            k.incomplete_bytes
        );
    }
    s
}

/// Slowdown (P50 and P99) against message size for one or more runs, as
/// [`slowdown_plot`] draws it (SVG).
pub fn plot(runs: &[(&str, &Results)]) -> String {
    slowdown_plot(runs).render()
}

/// Slowdown (P50 and P99) against message size, log-log like every
/// slowdown plot of the project ([`Plot::slowdown`]), for one or more runs;
/// each run's points sit at its buckets' upper bounds. Titled with the
/// first run's workload, load, base RTT and link ([`plot_title`]).
pub fn slowdown_plot(runs: &[(&str, &Results)]) -> Plot {
    let mut series = Vec::new();
    for (i, (label, r)) in runs.iter().enumerate() {
        let color = COLORS[i % COLORS.len()].to_string();
        let pick = |g: fn(&Summary) -> f64| -> Vec<(f64, f64)> {
            r.buckets
                .iter()
                .filter(|b| b.stats.count > 0)
                .map(|b| (f64::from(b.upto), g(&b.stats)))
                .collect()
        };
        let name = if label.is_empty() {
            String::new()
        } else {
            format!("{label} ")
        };
        series.push(Series {
            label: format!("{name}P99"),
            points: pick(|s| s.p99),
            color: color.clone(),
            dashed: false,
        });
        series.push(Series {
            label: format!("{name}P50"),
            points: pick(|s| s.p50),
            color,
            dashed: true,
        });
    }
    let title = match runs.first() {
        Some((_, r)) => plot_title(r),
        None => "Slowdown".to_string(),
    };
    let mut p = Plot::slowdown(&title, series);
    p.x_label = "message length (bytes, size bucket's upper bound)".into();
    p.y_label = format!("slowdown ({} unloaded time)", slowdown_name(runs));
    p
}

/// Which unloaded time the plotted slowdowns divide by.
fn slowdown_name(runs: &[(&str, &Results)]) -> &'static str {
    match runs.first() {
        Some((_, r)) if r.slowdown.0 == "paper" => "the paper's",
        _ => "this network's",
    }
}

/// The plot's title: workload, load, base RTT and link (as the `homa`
/// command's plots), then the profile and the network.
pub fn plot_title(r: &Results) -> String {
    format!(
        "homa-sim {} ({}), load {:.2}; base RTT {:.1} us, link {} Gbit/s; {} profile, {}, {} hosts{}",
        r.workload,
        r.variant,
        r.utilization.offered,
        r.base_rtt_us,
        r.link_gbps,
        r.profile,
        r.mode,
        r.hosts,
        endpoints(r)
    )
}
