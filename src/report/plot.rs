//! The report's plots as SVG strings, drawn with plotters' SVG backend: the latency percentile spectrum of
//! every case, throughput and p99 over time, and the per-stage breakdown as stacked bars.

use crate::summary::CaseSummary;
use plotters::coord::Shift;
use plotters::prelude::*;

/// One case's line: its index (for its colour), its name, and its points.
type Series<'a> = (usize, &'a str, Vec<(f64, f64)>);

/// Plot size in px (the SVG scales to the page width).
const WIDTH: u32 = 1100;
const HEIGHT: u32 = 440;
/// Quantile steps per halving of the distance to 100%, as HdrHistogram's percentile output uses.
const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// Colour-blind-safe colours (Okabe-Ito, then Tol's muted), one per case, in case order.
const CASE_COLOURS: [RGBColor; 12] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(136, 34, 85),
    RGBColor(68, 170, 153),
    RGBColor(153, 153, 51),
    RGBColor(51, 34, 136),
    RGBColor(170, 68, 153),
];

/// The colour of case number `i`.
pub fn case_colour(i: usize) -> RGBColor {
    CASE_COLOURS[i % CASE_COLOURS.len()]
}

/// Where a breakdown row goes in a bar: stages in `Stage::ALL` order, then the time outside stages.
pub fn stage_order(stage: &str) -> usize {
    crate::stage::Stage::ALL
        .iter()
        .position(|s| s.name() == stage)
        .unwrap_or(crate::stage::STAGE_COUNT)
}

/// A stage's colour as CSS, for the legend under the bars.
pub fn stage_colour_css(stage: &str) -> String {
    let RGBColor(r, g, b) = stage_colour(stage);
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// A case's colour as CSS.
pub fn case_colour_css(i: usize) -> String {
    let RGBColor(r, g, b) = case_colour(i);
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// The colour of a stage (or of the time outside stages) in the breakdown bars.
fn stage_colour(stage: &str) -> RGBColor {
    match stage {
        "connect" => RGBColor(0, 114, 178),
        "handshake" => RGBColor(86, 180, 233),
        "channel" => RGBColor(0, 158, 115),
        "declare" => RGBColor(153, 153, 51),
        "bind" => RGBColor(68, 170, 153),
        "acquire" => RGBColor(204, 121, 167),
        "encode" => RGBColor(230, 159, 0),
        "send" => RGBColor(213, 94, 0),
        "confirm" => RGBColor(136, 34, 85),
        "release" => RGBColor(170, 68, 153),
        "close" => RGBColor(51, 34, 136),
        _ => RGBColor(170, 170, 170),
    }
}

fn draw(
    width: u32,
    height: u32,
    paint: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<(), String>,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        paint(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    // Scale with the page instead of a fixed pixel size.
    Ok(svg.replacen(
        &format!("width=\"{width}\" height=\"{height}\""),
        &format!(
            "width=\"100%\" viewBox=\"0 0 {width} {height}\" preserveAspectRatio=\"xMinYMin meet\""
        ),
        1,
    ))
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Latency in ns as the axes write it.
fn latency_label(us: f64) -> String {
    crate::human::human_ns((us * 1000.0).round().max(0.0) as u64)
}

/// Whether `v` is a power of ten (to label only those ticks of a log axis).
fn power_of_ten(v: f64) -> bool {
    let l = v.log10();
    (l - l.round()).abs() < 1e-9
}

/// A percentile for a 1/(1-p) axis value: 10 -> "90%", 1000 -> "99.9%".
fn percentile_label(x: f64) -> String {
    if !power_of_ten(x) {
        return String::new();
    }
    let nines = x.log10().round() as usize;
    match nines {
        0 => "0%".into(),
        1 => "90%".into(),
        n => format!("99.{}%", "9".repeat(n - 2)),
    }
}

/// Every case's latency distribution on one plot, HdrHistogram's percentile-spectrum style: x is the
/// percentile on a 1/(1-p) log scale, y the latency (log scale, so microseconds and milliseconds share it).
pub fn spectrum(cases: &[CaseSummary]) -> Result<String, String> {
    let mut series: Vec<Series> = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let h = c.decode_histogram()?;
        if h.is_empty() {
            continue;
        }
        let mut points = Vec::new();
        for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            let q = v.quantile_iterated_to();
            let us = h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0;
            // The last point (q = 1) has no finite 1/(1-q): put it one count beyond the one before.
            let x = if q < 1.0 {
                1.0 / (1.0 - q)
            } else {
                h.len() as f64
            };
            points.push((x.max(1.0), us.max(0.001)));
        }
        series.push((i, &c.name, points));
    }
    let max_x = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.0))
        .fold(10.0, f64::max);
    let x_top = 10f64.powf(max_x.log10().ceil()).min(1e7);
    let (lo, hi) = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.1))
        .fold((f64::MAX, 0.0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let (lo, hi) = if hi > 0.0 {
        (lo / 1.5, hi * 1.5)
    } else {
        (0.1, 10.0)
    };
    draw(WIDTH, HEIGHT, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Latency by percentile", ("sans-serif", 20))
            .margin(12)
            .margin_right(36)
            .x_label_area_size(42)
            .y_label_area_size(70)
            .build_cartesian_2d((1f64..x_top).log_scale(), (lo..hi).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency")
            .x_label_formatter(&|x| percentile_label(*x))
            .y_label_formatter(&|y| latency_label(*y))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()
            .map_err(err)?;
        for (i, name, points) in &series {
            case_line(&mut chart, *i, name, points)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .draw()
            .map_err(err)
    })
}

/// Which figure of the timeline to draw.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Over {
    Throughput,
    P99,
}

/// Throughput, or p99 (with each interval's max as a faint line), per interval of every case, against
/// seconds since the case's measured start; intervals with failed publishes are marked with a red cross.
pub fn over_time(cases: &[CaseSummary], what: Over) -> Result<String, String> {
    let value = |i: &crate::summary::IntervalSummary| match what {
        Over::Throughput => Some(i.throughput_per_s),
        Over::P99 => i.p99.map(|ns| ns as f64 / 1000.0),
    };
    let mut series = Vec::new();
    let mut errors = Vec::new();
    let mut maxes: Vec<Series> = Vec::new();
    for (k, c) in cases.iter().enumerate() {
        // Points at each interval's middle; the partial last interval is left out of the throughput
        // (a few publishes over a few microseconds would read as a spike).
        let n = c.timeline.len();
        let points: Vec<(f64, f64)> = c
            .timeline
            .iter()
            .enumerate()
            .filter(|(j, i)| {
                what == Over::P99 || *j + 1 < n || i.length_s > 0.5 * c.timeline[0].length_s
            })
            .filter_map(|(_, i)| value(i).map(|v| (i.start_s + i.length_s / 2.0, v)))
            .collect();
        for i in c.timeline.iter().filter(|i| i.failed > 0) {
            let y = value(i).unwrap_or(0.0);
            errors.push((i.start_s + i.length_s / 2.0, y));
        }
        series.push((k, c.name.as_str(), points));
        if what == Over::P99 {
            let points = c
                .timeline
                .iter()
                .filter_map(|i| {
                    i.max
                        .map(|m| (i.start_s + i.length_s / 2.0, m as f64 / 1000.0))
                })
                .collect();
            maxes.push((k, c.name.as_str(), points));
        }
    }
    let x_max = cases
        .iter()
        .flat_map(|c| c.timeline.last().map(|i| i.start_s + i.length_s))
        .fold(0.001f64, f64::max);
    let ys = series
        .iter()
        .chain(&maxes)
        .flat_map(|s| s.2.iter().map(|p| p.1));
    let (caption, desc) = match what {
        Over::Throughput => ("Throughput over time", "publishes/s"),
        Over::P99 => ("p99 (and, faint, max) latency over time", "latency"),
    };
    draw(WIDTH, 340, |root| {
        let builder = |root| {
            let mut b = ChartBuilder::on(root);
            b.caption(caption, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(80);
            b
        };
        match what {
            Over::Throughput => {
                let hi = ys.fold(1.0f64, f64::max) * 1.1;
                let mut chart = builder(root)
                    .build_cartesian_2d(0f64..x_max, 0f64..hi)
                    .map_err(err)?;
                chart
                    .configure_mesh()
                    .x_desc("seconds since the case started")
                    .y_desc(desc)
                    .y_label_formatter(&|y| crate::human::human_count(y.round() as u64))
                    .label_style(("sans-serif", 13))
                    .axis_desc_style(("sans-serif", 14))
                    .light_line_style(RGBColor(238, 238, 238))
                    .draw()
                    .map_err(err)?;
                lines(&mut chart, &series, &errors)
            }
            Over::P99 => {
                let (lo, hi) = ys.fold((f64::MAX, 0.0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
                let (lo, hi) = if hi > 0.0 {
                    (lo / 1.5, hi * 1.5)
                } else {
                    (0.1, 10.0)
                };
                let mut chart = builder(root)
                    .build_cartesian_2d(0f64..x_max, (lo..hi).log_scale())
                    .map_err(err)?;
                chart
                    .configure_mesh()
                    .x_desc("seconds since the case started")
                    .y_desc(desc)
                    .y_label_formatter(&|y| latency_label(*y))
                    .label_style(("sans-serif", 13))
                    .axis_desc_style(("sans-serif", 14))
                    .light_line_style(RGBColor(238, 238, 238))
                    .draw()
                    .map_err(err)?;
                for (k, _, points) in &maxes {
                    let faint = case_colour(*k).mix(0.4);
                    chart
                        .draw_series(LineSeries::new(
                            points.iter().copied(),
                            faint.stroke_width(1),
                        ))
                        .map_err(err)?;
                }
                let errors: Vec<(f64, f64)> = errors.iter().map(|&(x, y)| (x, y.max(lo))).collect();
                lines(&mut chart, &series, &errors)
            }
        }
    })
}

/// Case `k`'s line, in its colour, with its legend entry.
fn case_line<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    k: usize,
    name: &str,
    points: &[(f64, f64)],
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let colour = case_colour(k);
    chart
        .draw_series(LineSeries::new(
            points.iter().copied(),
            colour.stroke_width(2),
        ))
        .map_err(err)?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    Ok(())
}

/// The case lines of a timeline chart, the error crosses, and the legend.
fn lines<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    series: &[Series],
    errors: &[(f64, f64)],
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (k, name, points) in series {
        case_line(chart, *k, name, points)?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&p| Circle::new(p, 2, case_colour(*k).filled())),
            )
            .map_err(err)?;
    }
    if !errors.is_empty() {
        chart
            .draw_series(
                errors
                    .iter()
                    .map(|&p| Cross::new(p, 6, RED.stroke_width(2))),
            )
            .map_err(err)?
            .label("interval with errors")
            .legend(|(x, y)| Cross::new((x + 10, y), 5, RED.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .draw()
        .map_err(err)
}

/// Each case's breakdown as one bar of 100%: a segment per stage (and the time outside stages), labelled
/// with its share and mean when wide enough.
pub fn stages(cases: &[CaseSummary]) -> Result<String, String> {
    let with_rows: Vec<&CaseSummary> = cases.iter().filter(|c| !c.breakdown.is_empty()).collect();
    let n = with_rows.len().max(1);
    let height = 90 + 46 * n as u32;
    draw(WIDTH, height, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Where the time of one publish goes", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(150)
            .build_cartesian_2d(0f64..100f64, 0f64..n as f64)
            .map_err(err)?;
        let names: Vec<String> = with_rows.iter().map(|c| c.name.clone()).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc("share of summed latency (%)")
            .y_labels(n * 2 + 1)
            .y_label_formatter(&|y| {
                // Label each bar at its middle (k + 0.5), counted from the top.
                let k = (n as f64 - y - 0.5).round();
                if ((n as f64 - y - 0.5) - k).abs() < 1e-6 && k >= 0.0 {
                    names.get(k as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()
            .map_err(err)?;
        for (k, c) in with_rows.iter().enumerate() {
            let top = n as f64 - k as f64 - 0.15;
            let bottom = n as f64 - k as f64 - 0.85;
            let mut left = 0.0;
            // Stages in the order a publish goes through them, the time outside stages last.
            let mut rows: Vec<_> = c.breakdown.iter().collect();
            rows.sort_by_key(|r| stage_order(&r.stage));
            for r in rows {
                let width = (r.share * 100.0).clamp(0.0, 100.0 - left);
                let colour = stage_colour(&r.stage);
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(left, bottom), (left + width, top)],
                        colour.filled(),
                    )))
                    .map_err(err)?;
                // The longest label that fits the segment (about 0.8% of the axis per character).
                let labels = [
                    format!(
                        "{} {:.0}% {}",
                        r.stage,
                        r.share * 100.0,
                        crate::human::human_ns(r.mean_ns)
                    ),
                    format!("{} {:.0}%", r.stage, r.share * 100.0),
                    format!("{:.0}%", r.share * 100.0),
                ];
                if let Some(label) = labels
                    .into_iter()
                    .find(|l| width >= l.chars().count() as f64 * 0.8 + 1.0)
                {
                    chart
                        .draw_series(std::iter::once(Text::new(
                            label,
                            (left + 0.6, (top + bottom) / 2.0 + 0.12),
                            ("sans-serif", 13).into_font().color(&WHITE),
                        )))
                        .map_err(err)?;
                }
                left += width;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::CaseResult;
    use crate::summary::IntervalSummary;

    /// A case whose timeline is 1 ms at p99 every 100 ms, except `stall` (its max, in ns) in interval 5.
    fn case(stall: Option<u64>) -> CaseSummary {
        let planned = crate::scenario::parse(
            "name = \"t\"\n[[case]]\nname = \"c\"\nbackend = \"unix\"\npath = \"raw\"\n",
            "t.toml",
        )
        .unwrap()
        .cases
        .remove(0);
        let mut c = CaseSummary::new(&CaseResult::empty(&planned));
        c.timeline = (0..10)
            .map(|i| IntervalSummary {
                start_s: i as f64 * 0.1,
                length_s: 0.1,
                ok: 100,
                failed: 0,
                throughput_per_s: 1000.0,
                p50: Some(500_000),
                p99: Some(1_000_000),
                max: Some(if i == 5 {
                    stall.unwrap_or(1_200_000)
                } else {
                    1_200_000
                }),
            })
            .collect();
        c
    }

    #[test]
    fn a_stall_in_the_timeline_reaches_the_p99_plots_axis() {
        // The 500 ms stall's max is drawn: the latency axis grows to label it; without it, it stays in ms.
        let stalled = over_time(&[case(Some(500_000_000))], Over::P99).unwrap();
        let calm = over_time(&[case(None)], Over::P99).unwrap();
        let label = |svg: &str, text: &str| svg.contains(&format!(">\n{text}\n</text>"));
        assert!(label(&stalled, "100ms"), "the axis reaches the stall");
        assert!(label(&calm, "1.00ms"), "both draw the p99 of 1 ms");
        assert!(!label(&calm, "100ms"), "no stall, no 100 ms label");
        assert!(stalled.contains("<svg") && stalled.contains("</svg>"));
    }
}
