//! SVG charts of a `cairnd bench` run, drawn with plotters' SVG backend into a `String`.
//!
//! - [`throughput`]: committed tx/s against offered tx/s, one line per `protocol/workload`,
//!   with the y = x "offered" reference;
//! - [`latency`]: p50 (solid) and p99 (dashed) latency against committed tx/s.
//!
//! A protocol keeps its color across both charts and a workload its marker (filled or hollow).
//! Text is emitted as SVG `<text>` and laid out with plotters' built-in size estimate, so no
//! font library is involved. Neither function panics: NaN, infinite, negative and implausibly
//! large (> [`VALUE_MAX`]) values are left out, an empty chart says so, and a drawing error (or
//! a panic inside plotters) yields a minimal SVG holding the error text.

use std::collections::BTreeSet;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::report::{Row, thousands};

/// Chart size in pixels.
const SIZE: (u32, u32) = (960, 600);
/// Larger values (tx/s, ms) are not measurements and would overflow the axis arithmetic: they
/// are left out like NaN.
pub const VALUE_MAX: f64 = 1e12;
/// The latency axis is logarithmic when its positive values span more than this ratio.
const LOG_RATIO_MIN: f64 = 100.0;
/// One color per protocol, in sorted protocol order (cycled beyond six).
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];
const GREY: RGBColor = RGBColor(150, 150, 150);

#[derive(Clone, Copy, PartialEq)]
enum Marker {
    None,
    Filled,
    Hollow,
}

/// One line to draw, its points plottable and sorted by x.
struct Line {
    name: String,
    color: RGBColor,
    dashed: bool,
    marker: Marker,
    points: Vec<(f64, f64)>,
}

struct Axes<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    log_y: bool,
}

/// Committed tx/s against offered tx/s. Open-loop rows are plotted at their offered rate and
/// closed-loop rows left out, unless every row is closed-loop: then x is the in-flight count.
pub fn throughput(rows: &[Row]) -> String {
    let closed = rows
        .iter()
        .all(|r| r.offered_rate.is_none() && r.in_flight.is_some())
        && !rows.is_empty();
    let x_of = |r: &Row| {
        if closed {
            r.in_flight.map(|k| k as f64)
        } else {
            r.offered_rate
        }
    };
    let mut lines: Vec<Line> = series(rows)
        .into_iter()
        .map(|(name, color, marker, rows)| Line {
            points: points(
                rows.iter()
                    .filter_map(|r| Some((x_of(r)?, r.committed_tps))),
            ),
            name,
            color,
            dashed: false,
            marker,
        })
        .filter(|l| !l.points.is_empty())
        .collect();
    let end = lines
        .iter()
        .flat_map(|l| &l.points)
        .map(|&(x, y)| x.max(y))
        .fold(0.0, f64::max);
    if !closed && end > 0.0 {
        let points = vec![(0.0, 0.0), (end, end)];
        let (name, color, marker) = ("offered (y = x)".to_owned(), GREY, Marker::None);
        lines.push(Line {
            name,
            color,
            dashed: true,
            marker,
            points,
        });
    }
    let x_desc = if closed {
        "transactions in flight (closed loop)"
    } else {
        "offered tx/s"
    };
    let axes = Axes {
        title: "Committed throughput",
        x_desc,
        y_desc: "committed tx/s",
        log_y: false,
    };
    plot(&axes, lines)
}

/// One validator's soak samples: (validator, [(seconds, resident MB, disk MB)]).
pub type SoakSeries = (usize, Vec<(f64, f64, f64)>);

/// A soak (`soak.rs`): each validator's resident memory (solid) and disk use (dashed), MB,
/// over seconds.
pub fn soak(series: &[SoakSeries]) -> String {
    let mut lines = Vec::new();
    for (v, pts) in series {
        let color = PALETTE[v % PALETTE.len()];
        for (what, dashed) in [("RSS", false), ("disk", true)] {
            lines.push(Line {
                name: format!("validator {v} {what}"),
                color,
                dashed,
                marker: Marker::None,
                points: points(
                    pts.iter()
                        .map(|&(t, rss, disk)| (t, if dashed { disk } else { rss })),
                ),
            });
        }
    }
    let axes = Axes {
        title: "Soak: resident memory and disk per validator",
        x_desc: "seconds",
        y_desc: "MB (RSS solid, disk dashed)",
        log_y: false,
    };
    plot(&axes, lines)
}

/// p50 (solid) and p99 (dashed) latency against committed tx/s; the latency axis is
/// logarithmic when it spans more than two decades.
pub fn latency(rows: &[Row]) -> String {
    let mut lines = Vec::new();
    for (name, color, marker, rows) in series(rows) {
        for (quantile, dashed) in [("p50", false), ("p99", true)] {
            let y_of = |r: &Row| {
                if dashed {
                    r.latency_ms.p99
                } else {
                    r.latency_ms.p50
                }
            };
            let points = points(rows.iter().map(|r| (r.committed_tps, y_of(r))));
            let name = format!("{name} {quantile}");
            lines.push(Line {
                name,
                color,
                dashed,
                marker,
                points,
            });
        }
    }
    lines.retain(|l| !l.points.is_empty());
    let positive = || {
        lines
            .iter()
            .flat_map(|l| &l.points)
            .map(|p| p.1)
            .filter(|&y| y > 0.0)
    };
    let log_y =
        positive().fold(0.0, f64::max) > LOG_RATIO_MIN * positive().fold(f64::MAX, f64::min);
    let y_desc = if log_y {
        "latency ms (log scale)"
    } else {
        "latency ms"
    };
    let axes = Axes {
        title: "Commit latency",
        x_desc: "committed tx/s",
        y_desc,
        log_y,
    };
    plot(&axes, lines)
}

/// The rows of each `protocol/workload` series, sorted by name, with the protocol's color and
/// the workload's marker (the first workload in sorted order filled, the others hollow).
fn series(rows: &[Row]) -> Vec<(String, RGBColor, Marker, Vec<&Row>)> {
    let protocols: Vec<&str> = rows
        .iter()
        .map(|r| r.protocol.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let workloads: Vec<&str> = rows
        .iter()
        .map(|r| r.workload.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut out = Vec::new();
    for (p, protocol) in protocols.iter().enumerate() {
        for (w, workload) in workloads.iter().enumerate() {
            let rows: Vec<&Row> = rows
                .iter()
                .filter(|r| r.protocol == *protocol && r.workload == *workload)
                .collect();
            if !rows.is_empty() {
                let marker = if w == 0 {
                    Marker::Filled
                } else {
                    Marker::Hollow
                };
                out.push((
                    format!("{protocol}/{workload}"),
                    PALETTE[p % PALETTE.len()],
                    marker,
                    rows,
                ));
            }
        }
    }
    out
}

/// The plottable points (both coordinates finite, in 0..=VALUE_MAX), sorted by x.
fn points(points: impl Iterator<Item = (f64, f64)>) -> Vec<(f64, f64)> {
    let plottable = |v: f64| v.is_finite() && (0.0..=VALUE_MAX).contains(&v);
    let mut out: Vec<_> = points
        .filter(|&(x, y)| plottable(x) && plottable(y))
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// Draws `lines` on fitted axes and returns the SVG, or an error SVG.
fn plot(axes: &Axes<'_>, mut lines: Vec<Line>) -> String {
    if axes.log_y {
        lines
            .iter_mut()
            .for_each(|l| l.points.retain(|p| p.1 > 0.0));
    }
    let all = || lines.iter().flat_map(|l| &l.points);
    let x_max = all().map(|p| p.0).fold(0.0, f64::max);
    let y_max = all().map(|p| p.1).fold(0.0, f64::max);
    let x = 0.0..padded(x_max);
    let mut svg = String::new();
    let drawn = catch_unwind(AssertUnwindSafe(|| {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        if axes.log_y {
            let y_min = all().map(|p| p.1).fold(f64::MAX, f64::min);
            draw(
                &root,
                axes,
                &lines,
                x,
                (y_min / 1.5..y_max * 1.5).log_scale(),
            )?;
        } else {
            draw(&root, axes, &lines, x, 0.0..padded(y_max))?;
        }
        root.present()
    }));
    match drawn {
        Ok(Ok(())) => svg,
        Ok(Err(e)) => error_svg(&e.to_string()),
        Err(_) => error_svg("plotters panicked"),
    }
}

/// The axis end for values up to `max`: 5% headroom, 1 for an empty or all-zero axis.
fn padded(max: f64) -> f64 {
    if max > 0.0 { max * 1.05 } else { 1.0 }
}

/// Axes, mesh, lines and legend (or a "no plottable rows" note) on a white background.
fn draw<Y>(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    axes: &Axes<'_>,
    lines: &[Line],
    x: Range<f64>,
    y: Y,
) -> Result<(), DrawingAreaErrorKind<std::io::Error>>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(root)
        .caption(axes.title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc(axes.x_desc)
        .y_desc(axes.y_desc)
        .x_label_formatter(&|v| axis_label(*v))
        .y_label_formatter(&|v| axis_label(*v))
        .light_line_style(WHITE)
        .draw()?;
    for line in lines {
        draw_line(&mut chart, line)?;
    }
    if lines.is_empty() {
        let (w, h) = SIZE;
        let at = (w as i32 / 2 - 80, h as i32 / 2);
        root.draw(&Text::new("no plottable rows", at, ("sans-serif", 20)))?;
    } else {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    Ok(())
}

/// One line, its legend entry (24 pixels of the line, the marker in the middle) and its markers.
fn draw_line<'a, 'b: 'a, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, Y>>,
    line: &Line,
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    let stroke = ShapeStyle {
        color: line.color.to_rgba(),
        filled: false,
        stroke_width: 2,
    };
    let points = line.points.iter().copied();
    let series = if line.dashed {
        chart.draw_series(DashedLineSeries::new(points, 8, 5, stroke))?
    } else {
        chart.draw_series(LineSeries::new(points, stroke))?
    };
    let (dash, gap) = if line.dashed { (6, 4) } else { (24, 0) };
    let radius = if line.marker == Marker::None { 0 } else { 4 };
    let dot = marker_style(line.color, line.marker);
    series.label(line.name.as_str()).legend(move |at| {
        EmptyElement::at(at)
            + DashedPathElement::new(vec![(0, 0), (24, 0)], dash, gap, stroke)
            + Circle::new((12, 0), radius, dot)
    });
    if line.marker != Marker::None {
        chart.draw_series(line.points.iter().map(|&p| Circle::new(p, 4, dot)))?;
    }
    Ok(())
}

fn marker_style(color: RGBColor, marker: Marker) -> ShapeStyle {
    ShapeStyle {
        color: color.to_rgba(),
        filled: marker == Marker::Filled,
        stroke_width: 2,
    }
}

/// An axis tick: thousands separators from 1,000 up, else at most three decimals.
fn axis_label(v: f64) -> String {
    if v.abs() >= 1000.0 {
        return thousands(v);
    }
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A minimal valid SVG that shows `message`.
fn error_svg(message: &str) -> String {
    let escaped = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\">\
         <text x=\"16\" y=\"32\" font-family=\"sans-serif\">chart failed: {escaped}</text></svg>\n",
        SIZE.0, SIZE.1
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::tests::{report, row};

    fn assert_svg(svg: &str) {
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(!svg.contains("chart failed"), "{svg}");
    }

    #[test]
    fn throughput_draws_every_series_and_the_offered_line() {
        let svg = throughput(&report().rows);
        assert_svg(&svg);
        for name in [
            "hotstuff/transfer",
            "pbft/raw",
            "raft/transfer",
            "offered (y = x)",
        ] {
            assert!(svg.contains(name), "{name}");
        }
        assert!(svg.contains("offered tx/s") && svg.contains("committed tx/s"));
        assert!(svg.contains("Committed throughput"));
    }

    #[test]
    fn throughput_plots_closed_loop_against_in_flight() {
        let rows: Vec<Row> = [8, 64]
            .into_iter()
            .map(|k| Row {
                offered_rate: None,
                in_flight: Some(k),
                load: "closed".into(),
                ..row("raft", "raw", 1.0, 1.0)
            })
            .collect();
        let svg = throughput(&rows);
        assert_svg(&svg);
        assert!(svg.contains("transactions in flight") && svg.contains("raft/raw"));
        assert!(!svg.contains("offered (y = x)"));
    }

    #[test]
    fn latency_draws_p50_and_p99_of_every_series() {
        let svg = latency(&report().rows);
        assert_svg(&svg);
        for name in [
            "hotstuff/transfer p50",
            "hotstuff/transfer p99",
            "pbft/raw p99",
            "raft/raw p50",
        ] {
            assert!(svg.contains(name), "{name}");
        }
        assert!(svg.contains("latency ms") && !svg.contains("log scale"));
    }

    #[test]
    fn latency_goes_logarithmic_beyond_two_decades() {
        let mut rows = report().rows;
        rows[0].latency_ms.p50 = 0.5;
        rows[1].latency_ms.p99 = 900.0;
        rows[2].latency_ms.p50 = 0.0;
        let svg = latency(&rows);
        assert_svg(&svg);
        assert!(svg.contains("latency ms (log scale)"));
    }

    #[test]
    fn charts_survive_zero_one_and_many_rows() {
        let many: Vec<Row> = (0..500)
            .map(|i| {
                row(
                    ["hotstuff", "pbft", "raft", "x"][i % 4],
                    "raw",
                    i as f64,
                    i as f64,
                )
            })
            .collect();
        for rows in [&[][..], &report().rows[..1], &many[..]] {
            for svg in [throughput(rows), latency(rows)] {
                assert_svg(&svg);
            }
        }
        assert!(throughput(&[]).contains("no plottable rows"));
        assert!(latency(&report().rows[..1]).contains("hotstuff/transfer p99"));
    }

    #[test]
    fn charts_survive_nan_infinite_huge_negative_and_zero_values() {
        let mut rows = report().rows;
        rows[0].committed_tps = f64::NAN;
        rows[1].offered_rate = Some(f64::INFINITY);
        rows[2].latency_ms.p99 = 1e300;
        rows[3].committed_tps = f64::MAX;
        rows[4].latency_ms.p50 = -3.0;
        rows[5].offered_rate = Some(f64::NAN);
        for svg in [throughput(&rows), latency(&rows)] {
            assert_svg(&svg);
            assert!(svg.contains("pbft/transfer"));
        }
        let zeros: Vec<Row> = report()
            .rows
            .into_iter()
            .map(|r| Row {
                committed_tps: 0.0,
                offered_rate: Some(0.0),
                latency_ms: Default::default(),
                ..r
            })
            .collect();
        let nans: Vec<Row> = zeros
            .iter()
            .map(|r| Row {
                committed_tps: f64::NAN,
                ..r.clone()
            })
            .collect();
        for rows in [&zeros, &nans] {
            for svg in [throughput(rows), latency(rows)] {
                assert_svg(&svg);
            }
        }
    }

    #[test]
    fn error_svg_is_valid_and_escaped() {
        let svg = error_svg("a <b> & c");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt;b&gt; &amp; c"));
    }

    #[test]
    fn axis_labels_are_short() {
        assert_eq!(axis_label(12_500.0), "12,500");
        assert_eq!(axis_label(2.5), "2.5");
        assert_eq!(axis_label(0.001), "0.001");
        assert_eq!(axis_label(0.0), "0");
    }
}
