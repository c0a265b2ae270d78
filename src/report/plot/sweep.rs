//! A concurrency sweep's curve: each level's measured throughput against its concurrency (points), and the
//! throughput the fitted Universal Scalability Law predicts (a line), with its peak marked.

use super::{HEIGHT, WIDTH, draw};
use crate::human::{human_count, human_rate};
use crate::report::sweep::SweepCase;
use plotters::prelude::*;

const MEASURED: RGBColor = RGBColor(21, 101, 192);
const FITTED: RGBColor = RGBColor(120, 120, 120);
const PEAK: RGBColor = RGBColor(198, 40, 40);

/// The curve of one case's sweep; empty without a measured level.
pub fn sweep_curve(c: &SweepCase) -> anyhow::Result<String> {
    let points: Vec<(f64, f64)> = c
        .points
        .iter()
        .map(|p| (p.concurrency as f64, p.throughput_per_s))
        .collect();
    if points.is_empty() {
        return Ok(String::new());
    }
    let n_max = points.iter().map(|p| p.0).fold(1.0, f64::max);
    let peak = c
        .fit
        .and_then(|f| f.peak_concurrency.zip(f.peak_throughput))
        .filter(|(n, _)| *n <= n_max * 2.0);
    let x_max = n_max.max(peak.map_or(0.0, |p| p.0)) * 1.05;
    let fitted: Vec<(f64, f64)> = c.fit.map_or_else(Vec::new, |f| {
        (0..=200)
            .map(|i| 1.0 + (x_max - 1.0) * f64::from(i) / 200.0)
            .map(|n| (n, f.throughput(n)))
            .collect()
    });
    let y_max = points
        .iter()
        .chain(&fitted)
        .map(|p| p.1)
        .fold(0.0, f64::max)
        * 1.15;
    let caption = format!("{}: throughput by concurrency", c.name);
    draw(WIDTH, HEIGHT, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(caption, ("sans-serif", 20))
            .margin(12)
            .margin_right(36)
            .x_label_area_size(42)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max.max(1.0))?;
        chart
            .configure_mesh()
            .x_desc("concurrency (publishers)")
            .y_desc("publishes/s")
            .y_label_formatter(&|y| human_count(y.round().max(0.0) as u64))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()?;
        if !fitted.is_empty() {
            chart.draw_series(DashedLineSeries::new(fitted, 8, 5, FITTED.stroke_width(2)))?;
        }
        if let Some((n, x)) = peak {
            chart.draw_series(std::iter::once(Circle::new(
                (n, x),
                6,
                PEAK.stroke_width(2),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("USL peak {n:.1}: {}/s", human_rate(x)),
                (n, x * 1.05),
                ("sans-serif", 14).into_font().color(&PEAK),
            )))?;
        }
        chart.draw_series(LineSeries::new(points.clone(), MEASURED.stroke_width(1)))?;
        chart.draw_series(
            points
                .iter()
                .map(|&(n, x)| Circle::new((n, x), 5, MEASURED.filled())),
        )?;
        Ok(())
    })
}
