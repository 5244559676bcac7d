//! A small SVG line-plot writer: axes (linear or log10), ticks, grid, a
//! legend, and one polyline with markers per series. Enough for slowdown
//! against message size; no dependencies, deterministic output. The
//! simulator's reports and the `homa` command's benchmark plots both draw
//! with it.

use core::fmt::Write as _;

/// One line on a plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// `(x, y)` points, drawn in order.
    pub points: Vec<(f64, f64)>,
    /// CSS colour.
    pub color: String,
    /// Dashed line.
    pub dashed: bool,
}

/// A line plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Plot {
    /// Title above the plot.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Logarithmic x axis (decades).
    pub x_log: bool,
    /// Logarithmic y axis (decades, with minor lines at 2x and 5x): for
    /// series that differ by orders of magnitude.
    pub y_log: bool,
    /// The legend in a column right of the plot instead of inside its
    /// top-left corner (the picture is wider by [`LEGEND_WIDTH`]).
    pub legend_right: bool,
    /// The lines.
    pub series: Vec<Series>,
    /// Lowest y shown (the axis starts here; with a log axis, at the
    /// decade at or below it or below the lowest point).
    pub y_min: f64,
}

/// Extra width of a plot whose legend is right of it.
pub const LEGEND_WIDTH: f64 = 150.0;

const W: f64 = 720.0;
const H: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

/// A palette for successive series.
pub const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Short label for a byte count: 10, 1K, 10M.
pub fn size_label(v: f64) -> String {
    let units = [(1e9, "G"), (1e6, "M"), (1e3, "K")];
    for (u, s) in units {
        if v >= u {
            let x = v / u;
            return if x.fract() == 0.0 {
                format!("{x:.0}{s}")
            } else {
                format!("{x:.1}{s}")
            };
        }
    }
    format!("{v:.0}")
}

/// A "nice" step (1, 2 or 5 times a power of ten) giving about `n` ticks
/// over `span`.
fn nice_step(span: f64, n: f64) -> f64 {
    let raw = (span / n).max(f64::MIN_POSITIVE);
    let p = 10f64.powf(raw.log10().floor());
    let m = raw / p;
    let f = if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    };
    f * p
}

impl Plot {
    /// The SVG document.
    pub fn render(&self) -> String {
        let shown = |&(x, y): &(f64, f64)| {
            x.is_finite() && y.is_finite() && (!self.x_log || x > 0.0) && (!self.y_log || y > 0.0)
        };
        let pts = self.series.iter().flat_map(|s| s.points.iter());
        let finite: Vec<(f64, f64)> = pts.copied().filter(shown).collect();
        let (mut x0, mut x1) = finite
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                (a.min(p.0), b.max(p.0))
            });
        let y_hi = finite.iter().fold(self.y_min, |a, p| a.max(p.1));
        if !x0.is_finite() {
            (x0, x1) = (1.0, 10.0);
        }
        if self.x_log {
            x0 = 10f64.powf(x0.log10().floor());
            x1 = 10f64.powf(x1.log10().ceil()).max(x0 * 10.0);
        } else if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        let ystep = nice_step((y_hi - self.y_min).max(1e-9), 6.0);
        let (y0, y1) = if self.y_log {
            let lo = finite
                .iter()
                .map(|p| p.1)
                .chain((self.y_min > 0.0).then_some(self.y_min))
                .fold(f64::INFINITY, f64::min);
            let lo = if lo.is_finite() { lo } else { 1.0 };
            let y0 = 10f64.powf(lo.log10().floor());
            (y0, 10f64.powf(y_hi.log10().ceil()).max(y0 * 10.0))
        } else {
            let y0 = self.y_min;
            (y0, ((y_hi / ystep).ceil() * ystep).max(y0 + ystep))
        };
        let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
        let width = if self.legend_right {
            W + LEGEND_WIDTH
        } else {
            W
        };
        let fx = |x: f64| {
            let t = if self.x_log {
                (x.log10() - x0.log10()) / (x1.log10() - x0.log10())
            } else {
                (x - x0) / (x1 - x0)
            };
            LEFT + t * pw
        };
        let fy = |y: f64| {
            let t = if self.y_log {
                (y.log10() - y0.log10()) / (y1.log10() - y0.log10())
            } else {
                (y - y0) / (y1 - y0)
            };
            TOP + ph - t * ph
        };

        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{H}" viewBox="0 0 {width} {H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="{width}" height="{H}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
            LEFT + pw / 2.0,
            esc(&self.title)
        );
        // Grid and ticks: the axis start, then multiples of the step; on a
        // log axis every decade, and lighter lines at 2x and 5x.
        let first = (y0 / ystep).floor() * ystep + ystep;
        let yticks: Vec<f64> = if self.y_log {
            let (a, b) = (y0.log10().round() as i32, y1.log10().round() as i32);
            for e in a..b {
                for m in [2.0, 5.0] {
                    let py = fy(m * 10f64.powi(e));
                    let _ = writeln!(
                        s,
                        r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#eee"/>"##,
                        LEFT + pw
                    );
                }
            }
            (a..=b).map(|e| 10f64.powi(e)).collect()
        } else {
            core::iter::once(y0)
                .chain(
                    (0..)
                        .map(|k| first + f64::from(k) * ystep)
                        .take_while(|&y| y <= y1 + ystep * 1e-6),
                )
                .collect()
        };
        for y in yticks {
            let py = fy(y);
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/>"##,
                LEFT + pw
            );
            let label = if self.y_log && y < 1.0 {
                format!("{y}")
            } else if (self.y_log || ystep >= 1.0) && y.fract() == 0.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.1}")
            };
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"#,
                LEFT - 6.0,
                py + 4.0
            );
        }
        let xticks: Vec<f64> = if self.x_log {
            let (a, b) = (x0.log10().round() as i32, x1.log10().round() as i32);
            (a..=b).map(|e| 10f64.powi(e)).collect()
        } else {
            let step = nice_step(x1 - x0, 8.0);
            let mut v = Vec::new();
            let mut x = (x0 / step).ceil() * step;
            while x <= x1 + step * 1e-6 {
                v.push(x);
                x += step;
            }
            v
        };
        for x in xticks {
            let px = fx(x);
            let _ = writeln!(
                s,
                r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#ddd"/>"##,
                TOP + ph
            );
            let label = if self.x_log {
                size_label(x)
            } else {
                format!("{x}")
            };
            let _ = writeln!(
                s,
                r#"<text x="{px:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
                TOP + ph + 18.0
            );
        }
        let _ = writeln!(
            s,
            r#"<rect x="{LEFT}" y="{TOP}" width="{pw:.1}" height="{ph:.1}" fill="none" stroke="black"/>"#
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + pw / 2.0,
            H - 15.0,
            esc(&self.x_label)
        );
        let _ = writeln!(
            s,
            r#"<text transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            TOP + ph / 2.0,
            esc(&self.y_label)
        );
        // Series.
        for (i, ser) in self.series.iter().enumerate() {
            let visible: Vec<(f64, f64)> = ser.points.iter().copied().filter(shown).collect();
            let path: Vec<String> = visible
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", fx(x), fy(y)))
                .collect();
            let dash = if ser.dashed {
                r#" stroke-dasharray="6,4""#
            } else {
                ""
            };
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{}" stroke-width="2"{dash} points="{}"/>"#,
                ser.color,
                path.join(" ")
            );
            for &(x, y) in &visible {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                    fx(x),
                    fy(y),
                    ser.color
                );
            }
            let ly = TOP + 16.0 + 18.0 * i as f64;
            let lx = if self.legend_right {
                LEFT + pw + 12.0
            } else {
                LEFT + 12.0
            };
            let _ = writeln!(
                s,
                r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="2"{dash}/>"#,
                lx + 24.0,
                ser.color
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                lx + 30.0,
                ly + 4.0,
                esc(&ser.label)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;

    #[test]
    fn size_label__units() {
        assert_eq!(size_label(10.0), "10");
        assert_eq!(size_label(1000.0), "1K");
        assert_eq!(size_label(1500.0), "1.5K");
        assert_eq!(size_label(1e7), "10M");
    }

    #[test]
    fn nice_step__one_two_five() {
        assert_eq!(nice_step(10.0, 5.0), 2.0);
        assert_eq!(nice_step(100.0, 5.0), 20.0);
        assert_eq!(nice_step(3.0, 6.0), 0.5);
    }

    #[test]
    fn render__well_formed_and_escaped() {
        let p = Plot {
            title: "a < b".into(),
            x_label: "size".into(),
            y_label: "slowdown".into(),
            x_log: true,
            y_log: false,
            legend_right: false,
            y_min: 1.0,
            series: vec![Series {
                label: "P99".into(),
                points: vec![(10.0, 1.5), (1e6, 4.0), (f64::NAN, 2.0)],
                color: COLORS[0].into(),
                dashed: false,
            }],
        };
        let svg = p.render();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("a &lt; b"));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains(">1M<"));
        assert_eq!(svg, p.render());
    }

    #[test]
    fn render__log_y_decades_and_legend_right() {
        let p = Plot {
            title: String::new(),
            x_label: "size".into(),
            y_label: "slowdown".into(),
            x_log: true,
            y_log: true,
            legend_right: true,
            y_min: 1.0,
            series: vec![Series {
                label: "tcp".into(),
                points: vec![(10.0, 0.5), (1e3, 40.0), (1e4, 0.0), (1e5, -1.0)],
                color: COLORS[1].into(),
                dashed: true,
            }],
        };
        let svg = p.render();
        assert_eq!(svg.matches("<circle").count(), 2, "0 and -1 skipped");
        // Decades from 0.1 (below the lowest point) to 100.
        for label in [">0.1<", ">1<", ">10<", ">100<"] {
            assert!(svg.contains(label), "{label}");
        }
        assert!(!svg.contains(">1000<"));
        assert_eq!(svg.matches(r##"stroke="#eee""##).count(), 6, "2x, 5x");
        let width = W + LEGEND_WIDTH;
        assert!(svg.contains(&format!(r#"width="{width}""#)));
        assert!(svg.contains(&format!(
            r#"<text x="{:.1}""#,
            LEFT + (W - LEFT - RIGHT) + 42.0
        )));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }
}
