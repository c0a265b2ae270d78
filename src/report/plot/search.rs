//! A search's rate-latency curve: each step's latency (the budget's first metric) against its offered rate,
//! passing steps filled and failing ones hollow, with the budget as a dashed line and the answer marked.

use super::{HEIGHT, WIDTH, draw, latency_label};
use crate::human::human_count;
use crate::report::search::CaseSearchSummary;
use plotters::prelude::*;

const PASS: RGBColor = RGBColor(46, 125, 50);
const FAIL: RGBColor = RGBColor(198, 40, 40);
const BUDGET: RGBColor = RGBColor(120, 120, 120);
const ANSWER: RGBColor = RGBColor(21, 101, 192);

/// The curve of one case's search; empty when no step has the budget's latency.
pub fn search_curve(c: &CaseSearchSummary) -> anyhow::Result<String> {
    let Some(budget) = c.budget_latency.first() else {
        return Ok(String::new());
    };
    let metric = budget.metric.as_str();
    // (rate, latency in µs, passed), by rate.
    let mut points: Vec<(f64, f64, bool)> = c
        .steps
        .iter()
        .filter_map(|s| {
            s.latency(metric)
                .map(|ns| (s.offered_per_s, (ns as f64 / 1000.0).max(0.001), s.passed))
        })
        .collect();
    if points.is_empty() {
        return Ok(String::new());
    }
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let limit_us = budget.limit_ns / 1000.0;
    let x_max = points.iter().map(|p| p.0).fold(0.0, f64::max) * 1.1;
    let (lo, hi) = points
        .iter()
        .map(|p| p.1)
        .chain([limit_us])
        .fold((f64::MAX, 0.0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let caption = format!(
        "{}: {metric} by offered rate (budget {metric} {} {})",
        c.name,
        budget.op,
        latency_label(limit_us)
    );
    draw(WIDTH, HEIGHT, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(caption, ("sans-serif", 20))
            .margin(12)
            .margin_right(36)
            .x_label_area_size(42)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, (lo / 1.5..hi * 1.5).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("offered rate (publishes/s)")
            .y_desc(metric)
            .x_label_formatter(&|x| human_count(x.round().max(0.0) as u64))
            .y_label_formatter(&|y| latency_label(*y))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()?;
        chart.draw_series(DashedLineSeries::new(
            [(0.0, limit_us), (x_max, limit_us)],
            8,
            5,
            BUDGET.stroke_width(2),
        ))?;
        if let Some(rate) = c.max_rate {
            chart.draw_series(LineSeries::new(
                [(rate, lo / 1.5), (rate, hi * 1.5)],
                ANSWER.stroke_width(2),
            ))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("max rate {}/s", crate::human::human_rate(rate)),
                (rate, hi),
                ("sans-serif", 14).into_font().color(&ANSWER),
            )))?;
        }
        chart.draw_series(LineSeries::new(
            points.iter().map(|p| (p.0, p.1)),
            BUDGET.stroke_width(1),
        ))?;
        chart.draw_series(points.iter().map(|&(x, y, passed)| {
            let style = if passed {
                PASS.filled()
            } else {
                FAIL.stroke_width(2)
            };
            Circle::new((x, y), 5, style)
        }))?;
        Ok(())
    })
}
