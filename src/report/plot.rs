//! The report's plots as SVG strings, drawn with plotters' SVG backend: the latency percentile spectrum of
//! every case and the per-stage breakdown as stacked bars here; throughput and p99 over time in `timeline`,
//! the legends beside the plots in `legend`, the colours in `palette`.

mod legend;
mod palette;
mod search;
mod sweep;
mod timeline;

pub use palette::{case_colour_css, stage_colour_css, stage_order};
pub use search::search_curve;
pub use sweep::sweep_curve;
pub use timeline::{Over, over_time};

use crate::summary::CaseSummary;
use palette::{case_colour, stage_colour};
use plotters::coord::Shift;
use plotters::prelude::*;

/// One case's line: its index (for its colour), its name, and its points.
type Series<'a> = (usize, &'a str, Vec<(f64, f64)>);

/// Plot size in px (the SVG scales to the page width).
const WIDTH: u32 = 1100;
const HEIGHT: u32 = 440;
/// Quantile steps per halving of the distance to 100%, as HdrHistogram's percentile output uses.
const TICKS_PER_HALF_DISTANCE: u32 = 5;

fn draw(
    width: u32,
    height: u32,
    paint: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE)?;
        paint(&root)?;
        root.present()?;
    }
    // Scale with the page instead of a fixed pixel size (plotters writes the viewBox itself).
    Ok(svg.replacen(
        &format!("width=\"{width}\" height=\"{height}\""),
        "width=\"100%\" preserveAspectRatio=\"xMinYMin meet\"",
        1,
    ))
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
pub fn spectrum(cases: &[CaseSummary]) -> anyhow::Result<String> {
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
    let entries = legend::of_cases(series.iter().map(|s| (s.0, s.1)));
    draw(WIDTH, HEIGHT, |root| {
        let area = legend::beside(root, &entries)?;
        let mut chart = ChartBuilder::on(&area)
            .caption("Latency by percentile", ("sans-serif", 20))
            .margin(12)
            .margin_right(36)
            .x_label_area_size(42)
            .y_label_area_size(70)
            .build_cartesian_2d((1f64..x_top).log_scale(), (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency")
            .x_label_formatter(&|x| percentile_label(*x))
            .y_label_formatter(&|y| latency_label(*y))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()?;
        for (i, _, points) in &series {
            chart.draw_series(LineSeries::new(
                points.iter().copied(),
                case_colour(*i).stroke_width(2),
            ))?;
        }
        Ok(())
    })
}

/// Each case's breakdown as one bar of 100%: a segment per stage (and the time outside stages), labelled
/// with its share and mean when wide enough.
pub fn stages(cases: &[CaseSummary]) -> anyhow::Result<String> {
    let with_rows: Vec<&CaseSummary> = cases.iter().filter(|c| !c.breakdown.is_empty()).collect();
    let n = with_rows.len().max(1);
    let height = 90 + 46 * n as u32;
    // Room for the longest case name left of its bar (at least the 150 px the HTML legend is indented by).
    let longest = with_rows.iter().map(|c| c.name.chars().count()).max();
    let name_px = (longest.unwrap_or(0) as f64 * 7.0 + 24.0).clamp(150.0, 400.0) as u32;
    draw(WIDTH, height, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Where the time of one publish goes", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(name_px)
            .build_cartesian_2d(0f64..100f64, 0f64..n as f64)?;
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
            .draw()?;
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
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(left, bottom), (left + width, top)],
                    colour.filled(),
                )))?;
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
                    chart.draw_series(std::iter::once(Text::new(
                        label,
                        (left + 0.6, (top + bottom) / 2.0 + 0.12),
                        ("sans-serif", 13).into_font().color(&WHITE),
                    )))?;
                }
                left += width;
            }
        }
        Ok(())
    })
}
