//! A small SVG writer for slowdown against message size: both axes
//! logarithmic (slowdowns of Homa and TCP differ by orders of magnitude),
//! one polyline with markers per series, a legend. No dependencies;
//! the same input always gives the same bytes.

use std::fmt::Write as _;

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

const W: f64 = 760.0;
const H: f64 = 460.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 55.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `10`, `1K`, `10M` for powers of ten.
fn size_label(v: f64) -> String {
    for (u, s) in [(1e9, "G"), (1e6, "M"), (1e3, "K")] {
        if v >= u {
            return format!("{}{s}", (v / u).round());
        }
    }
    format!("{v:.0}")
}

/// Renders a log-log plot of the series; points that are not finite and
/// positive are skipped.
pub fn render(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let ok = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite() && x > 0.0 && y > 0.0;
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(ok)
        .collect();
    let (mut x0, mut x1, mut y0, mut y1) = (10.0f64, 1e6f64, 1.0f64, 10.0f64);
    if !pts.is_empty() {
        x0 = pts.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
        x1 = pts.iter().map(|p| p.0).fold(0.0, f64::max);
        y0 = pts
            .iter()
            .map(|p| p.1)
            .fold(f64::INFINITY, f64::min)
            .min(1.0);
        y1 = pts.iter().map(|p| p.1).fold(0.0, f64::max);
    }
    // Whole decades.
    let (dx0, mut dx1) = (x0.log10().floor(), x1.log10().ceil());
    let (dy0, mut dy1) = (y0.log10().floor(), y1.log10().ceil());
    if dx1 <= dx0 {
        dx1 = dx0 + 1.0;
    }
    if dy1 <= dy0 {
        dy1 = dy0 + 1.0;
    }
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let px = |x: f64| LEFT + (x.log10() - dx0) / (dx1 - dx0) * pw;
    let py = |y: f64| TOP + ph - (y.log10() - dy0) / (dy1 - dy0) * ph;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        LEFT + pw / 2.0,
        esc(title)
    );
    // Grid and ticks: x decades.
    let mut d = dx0;
    while d <= dx1 + 1e-9 {
        let x = px(10f64.powf(d));
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph + 16.0,
            size_label(10f64.powf(d))
        );
        d += 1.0;
    }
    // y: decades, and 2x/5x minor lines.
    let mut d = dy0;
    while d <= dy1 + 1e-9 {
        let v = 10f64.powf(d);
        let y = py(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ccc"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0,
            if v >= 1.0 {
                format!("{v:.0}")
            } else {
                format!("{v}")
            }
        );
        for m in [2.0f64, 5.0] {
            if d + m.log10() < dy1 {
                let y = py(v * m);
                let _ = writeln!(
                    s,
                    r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/>"##,
                    LEFT + pw
                );
            }
        }
        d += 1.0;
    }
    let _ = writeln!(
        s,
        r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        H - 14.0,
        esc(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">{}</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0,
        esc(y_label)
    );
    for (i, se) in series.iter().enumerate() {
        let dash = if se.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let coords: Vec<String> = se
            .points
            .iter()
            .filter(|p| ok(p))
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        if !coords.is_empty() {
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{}" stroke-width="2"{dash} points="{}"/>"#,
                se.color,
                coords.join(" ")
            );
            for c in &coords {
                let (cx, cy) = c.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(
                    s,
                    r#"<circle cx="{cx}" cy="{cy}" r="2.5" fill="{}"/>"#,
                    se.color
                );
            }
        }
        let ly = TOP + 10.0 + 20.0 * i as f64;
        let lx = LEFT + pw + 12.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 24.0,
            se.color,
            lx + 30.0,
            ly + 4.0,
            esc(&se.label)
        );
    }
    s.push_str("</svg>\n");
    s
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
