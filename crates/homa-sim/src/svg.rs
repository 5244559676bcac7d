//! Line plots as SVG, drawn with [`plotters`] (its SVG backend): linear or
//! log10 axes, a grid, a legend, one line with markers per series. The
//! simulator's reports and the `homa` command's benchmark plots both draw
//! with it, so a slowdown plot looks the same whoever made it
//! ([`Plot::slowdown`]: log-log, the legend right of the plot). The output
//! is a pure function of the input: the same plot always gives the same
//! bytes.

use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

/// One line on a plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// `(x, y)` points, drawn in order.
    pub points: Vec<(f64, f64)>,
    /// CSS colour, `#rrggbb`.
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
    /// Logarithmic x axis (whole decades).
    pub x_log: bool,
    /// Logarithmic y axis (whole decades): for series that differ by
    /// orders of magnitude.
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

/// Extra width of a plot whose legend is right of it, pixels.
pub const LEGEND_WIDTH: u32 = 190;

/// Width and height of the plot itself, pixels.
const W: u32 = 760;
const H: u32 = 460;

/// A palette for successive series.
pub const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

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

/// A plain label for a tick value: no trailing zeros, no exponent for the
/// ranges plots use.
fn number_label(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if v.abs() >= 1e4 {
        return size_label(v);
    }
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// `#rrggbb` as a colour (black if malformed).
fn parse_color(c: &str) -> RGBColor {
    let hex = c.trim_start_matches('#');
    let byte = |i: usize| {
        hex.get(i..i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .unwrap_or(0)
    };
    if hex.len() == 6 {
        RGBColor(byte(0), byte(2), byte(4))
    } else {
        BLACK
    }
}

impl Plot {
    /// Slowdown against message length as every tool of the project draws
    /// it: both axes logarithmic (the slowdowns of Homa and TCP differ by
    /// orders of magnitude), y from 1, the legend right of the plot.
    pub fn slowdown(title: &str, series: Vec<Series>) -> Plot {
        Plot {
            title: title.to_string(),
            x_label: "message length (bytes)".into(),
            y_label: "slowdown (RTT / ideal RTT of the length)".into(),
            x_log: true,
            y_log: true,
            legend_right: true,
            series,
            y_min: 1.0,
        }
    }

    /// Whether a point can be drawn on this plot's axes.
    fn shown(&self, (x, y): (f64, f64)) -> bool {
        x.is_finite() && y.is_finite() && (!self.x_log || x > 0.0) && (!self.y_log || y > 0.0)
    }

    /// The axis ranges: decades on log axes, the data's span (from
    /// `y_min`) on linear ones.
    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let pts: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|&p| self.shown(p))
            .collect();
        let (mut x0, mut x1) = pts
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                (a.min(p.0), b.max(p.0))
            });
        if !x0.is_finite() {
            (x0, x1) = (1.0, 10.0);
        }
        if self.x_log {
            x0 = 10f64.powf(x0.log10().floor());
            x1 = 10f64.powf(x1.log10().ceil()).max(x0 * 10.0);
        } else if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        let y_hi = pts.iter().fold(self.y_min, |a, p| a.max(p.1));
        let (y0, y1) = if self.y_log {
            let lo = pts
                .iter()
                .map(|p| p.1)
                .chain((self.y_min > 0.0).then_some(self.y_min))
                .fold(f64::INFINITY, f64::min);
            let lo = if lo.is_finite() { lo } else { 1.0 };
            let y0 = 10f64.powf(lo.log10().floor());
            (y0, 10f64.powf(y_hi.log10().ceil()).max(y0 * 10.0))
        } else {
            let y1 = if y_hi > self.y_min {
                y_hi + (y_hi - self.y_min) * 0.05
            } else {
                self.y_min + 1.0
            };
            (self.y_min, y1)
        };
        ((x0, x1), (y0, y1))
    }

    /// The SVG document.
    pub fn render(&self) -> String {
        let width = W + if self.legend_right { LEGEND_WIDTH } else { 0 };
        let mut out = String::new();
        let result = {
            let root = SVGBackend::with_string(&mut out, (width, H)).into_drawing_area();
            self.draw_root(&root)
        };
        match result {
            Ok(()) => {
                if !out.ends_with('\n') {
                    out.push('\n');
                }
                out
            }
            // Drawing into a string fails only on a plotters bug; say so in
            // the picture rather than abort the run that made it.
            Err(e) => format!(
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"40\"><text x=\"10\" y=\"20\">plot failed: {}</text></svg>\n",
                e.replace('<', "&lt;")
            ),
        }
    }

    fn draw_root(&self, root: &DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (plot_area, legend_area) = if self.legend_right {
            let (a, b) = root.split_horizontally(W);
            (a, Some(b))
        } else {
            (root.clone(), None)
        };
        let ((x0, x1), (y0, y1)) = self.ranges();
        match (self.x_log, self.y_log) {
            (true, true) => self.draw_chart(&plot_area, (x0..x1).log_scale(), (y0..y1).log_scale()),
            (true, false) => self.draw_chart(&plot_area, (x0..x1).log_scale(), y0..y1),
            (false, true) => self.draw_chart(&plot_area, x0..x1, (y0..y1).log_scale()),
            (false, false) => self.draw_chart(&plot_area, x0..x1, y0..y1),
        }?;
        if let Some(area) = legend_area {
            self.draw_side_legend(&area)?;
        }
        root.present().map_err(|e| e.to_string())
    }

    fn draw_chart<X, Y>(
        &self,
        area: &DrawingArea<SVGBackend<'_>, Shift>,
        x: X,
        y: Y,
    ) -> Result<(), String>
    where
        X: AsRangedCoord<Value = f64>,
        Y: AsRangedCoord<Value = f64>,
        X::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
        Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        let err = |e: DrawingAreaErrorKind<_>| e.to_string();
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, ("sans-serif", 17))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(x, y)
            .map_err(err)?;
        let x_log = self.x_log;
        let x_fmt = move |v: &f64| {
            if x_log {
                size_label(*v)
            } else {
                number_label(*v)
            }
        };
        let y_fmt = |v: &f64| number_label(*v);
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .x_labels(12)
            .y_labels(10)
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .light_line_style(RGBColor(238, 238, 238))
            .bold_line_style(RGBColor(205, 205, 205))
            .draw()
            .map_err(err)?;
        for s in &self.series {
            let color = parse_color(&s.color);
            let style = color.stroke_width(2);
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|&p| self.shown(p))
                .collect();
            let drawn = if s.dashed {
                chart
                    .draw_series(DashedLineSeries::new(pts.clone(), 7, 5, style))
                    .map_err(err)?
            } else {
                chart
                    .draw_series(LineSeries::new(pts.clone(), style))
                    .map_err(err)?
            };
            if !self.legend_right {
                let dashed = s.dashed;
                drawn.label(&s.label).legend(move |(x, y)| {
                    let path = vec![(x, y), (x + 24, y)];
                    if dashed {
                        DashedPathElement::new(path, 6, 4, style).into_dyn()
                    } else {
                        PathElement::new(path, style).into_dyn()
                    }
                });
            }
            // Markers only where points are few enough to tell apart.
            if pts.len() <= 60 {
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(err)?;
            }
        }
        if !self.legend_right && !self.series.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(160, 160, 160))
                .label_font(("sans-serif", 13))
                .draw()
                .map_err(err)?;
        }
        Ok(())
    }

    /// The legend as a column of its own (for `legend_right`).
    fn draw_side_legend(&self, area: &DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), String> {
        let err = |e: DrawingAreaErrorKind<_>| e.to_string();
        for (i, s) in self.series.iter().enumerate() {
            let y = 60 + 22 * i as i32;
            let style = parse_color(&s.color).stroke_width(2);
            let path = vec![(4, y), (32, y)];
            if s.dashed {
                area.draw(&DashedPathElement::new(path, 6, 4, style))
                    .map_err(err)?;
            } else {
                area.draw(&PathElement::new(path, style)).map_err(err)?;
            }
            area.draw(&Text::new(
                s.label.clone(),
                (40, y - 7),
                ("sans-serif", 13).into_font(),
            ))
            .map_err(err)?;
        }
        Ok(())
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
    fn number_label__no_trailing_zeros() {
        assert_eq!(number_label(0.5), "0.5");
        assert_eq!(number_label(2.0), "2");
        assert_eq!(number_label(0.125), "0.125");
        assert_eq!(number_label(20000.0), "20K");
    }

    fn one(points: Vec<(f64, f64)>, dashed: bool) -> Series {
        Series {
            label: "P99 <tcp>".into(),
            points,
            color: COLORS[1].into(),
            dashed,
        }
    }

    #[test]
    fn ranges__decades_on_log_axes() {
        let p = Plot::slowdown(
            "",
            vec![one(vec![(12.0, 0.5), (3e5, 40.0), (1e4, 0.0)], false)],
        );
        let ((x0, x1), (y0, y1)) = p.ranges();
        assert_eq!((x0, x1), (10.0, 1e6));
        assert_eq!((y0, y1), (0.1, 100.0), "below the lowest point, 0 skipped");
        let mut lin = p.clone();
        lin.y_log = false;
        lin.y_min = 0.0;
        let (_, (y0, y1)) = lin.ranges();
        assert_eq!(y0, 0.0);
        assert!((y1 - 42.0).abs() < 1e-9, "{y1}");
    }

    #[test]
    fn render__well_formed_deterministic_and_escaped() {
        let p = Plot::slowdown(
            "a < b & c",
            vec![one(vec![(10.0, 1.5), (1e6, 4.0), (f64::NAN, 2.0)], true)],
        );
        let svg = p.render();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt; b &amp; c"), "title escaped");
        assert!(svg.contains("P99 &lt;tcp&gt;"), "legend escaped");
        assert_eq!(svg.matches("<circle").count(), 2, "NaN skipped");
        assert!(
            svg.contains("\n1M\n") && svg.contains("\n100\n"),
            "size labels"
        );
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        assert!(svg.contains(&format!("width=\"{}\"", W + LEGEND_WIDTH)));
        assert_eq!(svg, p.render());
    }

    #[test]
    fn render__empty_plot_is_a_frame() {
        let p = Plot {
            title: String::new(),
            x_label: "x".into(),
            y_label: "y".into(),
            x_log: false,
            y_log: false,
            legend_right: false,
            series: Vec::new(),
            y_min: 0.0,
        };
        let svg = p.render();
        assert!(svg.contains("</svg>") && !svg.contains("plot failed"));
    }
}
