//! The benchmark commands' plots (`homa client --svg`, `homa plot`, `homa
//! rack`), drawn by the simulator's plotter ([`homa_sim::svg`], plotters'
//! SVG backend) so that every tool's plots look alike: slowdown against
//! message length on log-log axes (P50 dashed, P99 solid, one colour per
//! protocol), or, for a fixed message size, the distribution (CDF) of the
//! RTT. Titles carry the workload, the load, the base RTT and the link.

use homa_sim::svg::{Plot, Series};

use crate::client::{CdfPoint, Report};
use crate::loadgen::Protocol;
use crate::results::Bucket;

/// Colours of Homa and TCP (the kernel scripts' blue and green).
pub(crate) const HOMA_COLOR: &str = "#1759BB";
/// See [`HOMA_COLOR`].
pub(crate) const TCP_COLOR: &str = "#00A000";

/// The colour of a protocol.
pub(crate) fn color(p: Protocol) -> &'static str {
    match p {
        Protocol::Homa => HOMA_COLOR,
        Protocol::Tcp => TCP_COLOR,
    }
}

/// Slowdown at P50 (dashed) and P99 (solid) of each bucket against its
/// largest length, labelled `<name> P50` and `<name> P99`.
pub(crate) fn slowdown_series(name: &str, color: &str, buckets: &[Bucket]) -> Vec<Series> {
    let pick = |f: fn(&Bucket) -> f64| -> Vec<(f64, f64)> {
        buckets
            .iter()
            .map(|b| (f64::from(b.max_length), f(b)))
            .collect()
    };
    vec![
        Series {
            label: format!("{name} P50"),
            points: pick(|b| b.slowdown.p50),
            color: color.to_string(),
            dashed: true,
        },
        Series {
            label: format!("{name} P99"),
            points: pick(|b| b.slowdown.p99),
            color: color.to_string(),
            dashed: false,
        },
    ]
}

/// A slowdown plot (log-log) of the series.
pub(crate) fn slowdown(title: &str, series: Vec<Series>) -> String {
    Plot::slowdown(title, series).render()
}

/// A CDF plot of RTTs: x log (µs), y the share of RPCs from 0 to 1.
pub(crate) fn cdf(title: &str, runs: &[(String, &str, &[CdfPoint])]) -> String {
    Plot {
        title: title.to_string(),
        x_label: "round-trip time (us)".into(),
        y_label: "share of RPCs with RTT <= x".into(),
        x_log: true,
        y_log: false,
        legend_right: true,
        y_min: 0.0,
        series: runs
            .iter()
            .map(|(label, color, pts)| Series {
                label: label.clone(),
                points: pts.iter().map(|p| (p.rtt_us, p.fraction)).collect(),
                color: color.to_string(),
                dashed: false,
            })
            .collect(),
    }
    .render()
}

/// The load of a report, in words.
fn load_of(r: &Report) -> String {
    if r.gbps_target > 0.0 {
        format!("open loop {} Gbit/s", r.gbps_target)
    } else {
        format!("closed loop, {} outstanding", r.client_max)
    }
}

/// The title of a plot of client reports: workload, load, base RTT and
/// link; what differs between the reports is left to the legend.
pub(crate) fn title(reports: &[Report]) -> String {
    let Some(r) = reports.first() else {
        return String::new();
    };
    let same = |f: &dyn Fn(&Report) -> String| reports.iter().all(|x| f(x) == f(r));
    let workload = |r: &Report| {
        if r.fixed_size() {
            format!("{} B requests", r.workload)
        } else {
            format!("{} ({})", r.workload, r.variant.name())
        }
    };
    let base = |r: &Report| format!("base RTT {:.1} us", r.summary.ideal.base_rtt_us);
    let link = |r: &Report| {
        let loopback = if r.link_source.starts_with("loopback") {
            " (loopback)"
        } else {
            ""
        };
        format!(
            "link {} Gbit/s{loopback}",
            r.summary.ideal.link_mbps / 1000.0
        )
    };
    let part = |f: &dyn Fn(&Report) -> String, differs: &str| {
        if same(f) {
            f(r)
        } else {
            differs.to_string()
        }
    };
    format!(
        "{}, {}; {}, {}",
        part(&workload, "workloads as in the legend"),
        part(&load_of, "loads as in the legend"),
        part(&base, "base RTTs differ"),
        part(&link, "links differ")
    )
}

/// Shades of a protocol's colour, for several reports of it in one plot.
fn shades(p: Protocol) -> &'static [&'static str] {
    match p {
        Protocol::Homa => &[HOMA_COLOR, "#E07B00", "#8E44AD", "#C0392B", "#2C3E50"],
        Protocol::Tcp => &[TCP_COLOR, "#B8860B", "#16A085", "#7F8C8D", "#D35400"],
    }
}

/// Legend names and colours of overlaid reports: the protocol alone when
/// it appears once; else each of its reports also named by what sets it
/// apart (its experiment name, or its load) and drawn in its own colour.
/// (Two saved runs of one workload at two loads came out with the same
/// two colours and the same legend twice.)
fn legend(reports: &[Report]) -> Vec<(String, &'static str)> {
    reports
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let same_protocol: Vec<&Report> = reports
                .iter()
                .filter(|x| x.protocol == r.protocol)
                .collect();
            // The k-th report of its protocol gets the k-th shade.
            let k = reports[..i]
                .iter()
                .filter(|x| x.protocol == r.protocol)
                .count();
            let shades = shades(r.protocol);
            let color = shades[k % shades.len()];
            if same_protocol.len() == 1 {
                return (r.protocol.name().to_string(), color);
            }
            let unique = |f: &dyn Fn(&Report) -> String| {
                same_protocol.iter().filter(|x| f(x) == f(r)).count() == 1
            };
            let name = if unique(&|x| x.exp.clone()) {
                r.exp.clone()
            } else if unique(&load_of) {
                format!("{} {}", r.protocol.name(), load_of(r))
            } else {
                format!("{} #{}", r.protocol.name(), i + 1)
            };
            (name, color)
        })
        .collect()
}

/// The plot of client reports, overlaid: a CDF of the RTT if every report
/// used one fixed size, else slowdown against length.
pub(crate) fn reports(reports: &[Report]) -> String {
    let title = title(reports);
    let legend = legend(reports);
    if !reports.is_empty() && reports.iter().all(Report::fixed_size) {
        let runs: Vec<(String, &str, &[CdfPoint])> = reports
            .iter()
            .zip(&legend)
            .map(|(r, (name, color))| (name.clone(), *color, r.rtt_cdf.as_slice()))
            .collect();
        return cdf(&format!("RTT distribution: {title}"), &runs);
    }
    let series = reports
        .iter()
        .zip(&legend)
        .flat_map(|(r, (name, color))| slowdown_series(name, color, &r.summary.buckets))
        .collect();
    slowdown(&format!("Slowdown: {title}"), series)
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;
    use crate::results::Spread;

    fn bucket(max_length: u32, p50: f64, p99: f64) -> Bucket {
        Bucket {
            max_length,
            cum_frac: 0.5,
            rtt_us: Spread::default(),
            slowdown: Spread {
                count: 10,
                p50,
                p99,
                p999: p99,
                mean: p50,
            },
        }
    }

    #[test]
    fn slowdown_series__dashed_median_solid_tail() {
        let s = slowdown_series(
            "homa",
            HOMA_COLOR,
            &[bucket(100, 1.5, 3.0), bucket(10_000, 2.0, 9.0)],
        );
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].label.as_str(), s[0].dashed), ("homa P50", true));
        assert_eq!((s[1].label.as_str(), s[1].dashed), ("homa P99", false));
        assert_eq!(s[1].points, vec![(100.0, 3.0), (10_000.0, 9.0)]);
        let svg = slowdown("t", s);
        assert!(svg.contains("homa P99") && svg.contains("slowdown"));
    }
}
