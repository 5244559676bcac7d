//! Plots of slowdown against message size for the benchmark commands:
//! both axes logarithmic (slowdowns of Homa and TCP differ by orders of
//! magnitude), one line per series, the legend right of the plot. Drawn by
//! the simulator's SVG writer ([`homa_sim::svg`]); the same input always
//! gives the same bytes.

use homa_sim::svg::{self, Plot};

use crate::results::Bucket;

/// One line of a plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// CSS colour.
    pub color: &'static str,
    /// Dashed line.
    pub dashed: bool,
    /// `(x, y)` points with positive coordinates, drawn in order.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// Slowdown at percentile `which` (50 or 99; else 99.9) of each bucket
    /// against its largest length.
    pub fn slowdown(
        label: &str,
        color: &'static str,
        dashed: bool,
        buckets: &[Bucket],
        which: u32,
    ) -> Series {
        let points = buckets
            .iter()
            .map(|b| {
                let y = match which {
                    50 => b.slowdown.p50,
                    99 => b.slowdown.p99,
                    _ => b.slowdown.p999,
                };
                (f64::from(b.max_length), y)
            })
            .collect();
        Series {
            label: label.to_string(),
            color,
            dashed,
            points,
        }
    }
}

/// Colours of Homa and TCP (the kernel scripts' blue and green).
pub const HOMA_COLOR: &str = "#1759BB";
/// See [`HOMA_COLOR`].
pub const TCP_COLOR: &str = "#00B000";

/// Renders a log-log plot of the series (with
/// [`homa_sim::svg`], the simulator's plotter); points that are not finite
/// and positive are skipped.
pub fn render(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    Plot {
        title: title.to_string(),
        x_label: x_label.to_string(),
        y_label: y_label.to_string(),
        x_log: true,
        y_log: true,
        legend_right: true,
        y_min: 1.0,
        series: series
            .iter()
            .map(|s| svg::Series {
                label: s.label.clone(),
                points: s.points.clone(),
                color: s.color.to_string(),
                dashed: s.dashed,
            })
            .collect(),
    }
    .render()
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    #[test]
    fn render__draws_every_series_and_skips_bad_points() {
        let a = Series {
            label: "homa P99".into(),
            color: HOMA_COLOR,
            dashed: false,
            points: vec![(100.0, 1.5), (1e4, 3.0), (1e6, f64::NAN)],
        };
        let b = Series {
            label: "tcp <P99>".into(),
            color: TCP_COLOR,
            dashed: true,
            points: vec![(100.0, 40.0), (1e6, 0.0)],
        };
        let svg = render("w4 & co", "message length (bytes)", "slowdown", &[a, b]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 3, "NaN and 0 skipped");
        assert!(svg.contains("w4 &amp; co") && svg.contains("tcp &lt;P99&gt;"));
        assert!(svg.contains(">10K<") && svg.contains(">100<"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        // Empty input still gives a valid frame.
        let e = render("", "x", "y", &[]);
        assert!(e.contains("</svg>"));
    }
}
