//! Throughput, p99 and the client processes' resident memory over time: every case's intervals against seconds since its measured start, on a log
//! axis when the cases' figures span decades (a 1,000/s case and a 35,000/s one both readable), with a case
//! too short for a line (one or two intervals) drawn as bars over the intervals it lasted, named in place,
//! and each case's faults (`[[case.fault]]`) shaded over the time they lasted, labelled with their kind.

use super::legend::{self, Entry, Mark};
use super::palette::case_colour;
use super::{WIDTH, draw, latency_label};
use crate::summary::{CaseSummary, IntervalSummary};
use plotters::coord::Shift;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const HEIGHT: u32 = 360;
/// A case with at most this many points has no line worth the name: it is drawn as bars and labelled.
const SHORT: usize = 2;
/// Highest over lowest figure from which the throughput axis is logarithmic (the p99 axis always is).
const LOG_FROM_RATIO: f64 = 20.0;
/// Width of one character of a label at its font size, a little more than the average of sans-serif faces.
const CHAR_PX: f64 = 5.4;

/// Which figure of the timeline to draw.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Over {
    Throughput,
    P99,
    /// The resident memory of taskbench and the case's harnesses together, at each interval's end (MiB).
    Memory,
}

impl Over {
    fn value(self, i: &IntervalSummary) -> Option<f64> {
        match self {
            Over::Throughput => Some(i.throughput_per_s),
            Over::P99 => i.p99.map(|ns| ns as f64 / 1000.0),
            Over::Memory => i
                .resources
                .as_ref()
                .map(|r| r.rss_bytes.values().sum::<u64>() as f64 / (1024.0 * 1024.0)),
        }
    }

    fn label(self, y: f64) -> String {
        match self {
            Over::Throughput => crate::human::human_count(y.round().max(0.0) as u64),
            Over::P99 => latency_label(y),
            Over::Memory => format!("{y:.1} MiB"),
        }
    }
}

/// One case on a timeline chart.
struct Track<'a> {
    k: usize,
    name: &'a str,
    /// Each interval drawn: its start, its end (seconds) and its figure.
    intervals: Vec<(f64, f64, f64)>,
    /// Each interval's max (µs) at its middle, for the faint line of the p99 chart.
    maxes: Vec<(f64, f64)>,
    /// The middles of the intervals with failed publishes, at their figure (if any).
    errors: Vec<(f64, Option<f64>)>,
    /// How long the measured run lasted (s).
    length_s: f64,
    /// The case's events that began: when (s), until when (the case's end when it ended first), and kind.
    events: Vec<(f64, f64, &'a str)>,
}

impl<'a> Track<'a> {
    fn of(k: usize, c: &'a CaseSummary, what: Over) -> Track<'a> {
        let n = c.timeline.len();
        let middle = |i: &IntervalSummary| i.start_s + i.length_s / 2.0;
        // The partial last interval is left out of the throughput (a few publishes over a few microseconds
        // would read as a spike), unless it is most of an interval or the only one.
        let intervals = c
            .timeline
            .iter()
            .enumerate()
            .filter(|(j, i)| {
                what == Over::P99 || *j + 1 < n || i.length_s > 0.5 * c.timeline[0].length_s
            })
            .filter_map(|(_, i)| {
                what.value(i)
                    .map(|v| (i.start_s, i.start_s + i.length_s, v))
            })
            .collect();
        let maxes = match what {
            Over::P99 => c
                .timeline
                .iter()
                .filter_map(|i| i.max.map(|m| (middle(i), m as f64 / 1000.0)))
                .collect(),
            Over::Throughput | Over::Memory => Vec::new(),
        };
        let length_s = c.timeline.last().map_or(0.0, |i| i.start_s + i.length_s);
        Track {
            k,
            name: &c.name,
            intervals,
            maxes,
            errors: c
                .timeline
                .iter()
                .filter(|i| i.failed > 0)
                .map(|i| (middle(i), what.value(i)))
                .collect(),
            length_s,
            events: c
                .events
                .iter()
                .filter_map(|e| Some((e.began_s?, e.ended_s.unwrap_or(length_s), e.kind.as_str())))
                .collect(),
        }
    }

    fn points(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.intervals.iter().map(|&(s, e, v)| ((s + e) / 2.0, v))
    }

    fn short(&self) -> bool {
        !self.intervals.is_empty() && self.intervals.len() <= SHORT
    }
}

/// The figure axis: linear from zero, or logarithmic between two bounds.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Axis {
    Linear(f64),
    Log(f64, f64),
}

impl Axis {
    fn fit(values: impl Iterator<Item = f64>, what: Over) -> Axis {
        let (lo, hi) = values
            .filter(|v| *v > 0.0)
            .fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if hi <= 0.0 {
            return match what {
                Over::Throughput | Over::Memory => Axis::Linear(1.0),
                Over::P99 => Axis::Log(0.1, 10.0),
            };
        }
        if what == Over::P99 || hi / lo >= LOG_FROM_RATIO {
            Axis::Log(lo / 1.5, hi * 1.5)
        } else {
            Axis::Linear(hi * 1.1)
        }
    }

    /// Where a figure the axis cannot show (zero on a log axis) is drawn: at the bottom.
    fn floor(self) -> f64 {
        match self {
            Axis::Linear(_) => 0.0,
            Axis::Log(lo, _) => lo,
        }
    }

    fn top(self) -> f64 {
        match self {
            Axis::Linear(hi) | Axis::Log(_, hi) => hi,
        }
    }
}

/// Throughput, or p99 (with each interval's max as a faint line), per interval of every case, against
/// seconds since the case's measured start; intervals with failed publishes are marked with a red cross.
pub fn over_time(cases: &[CaseSummary], what: Over) -> anyhow::Result<String> {
    let tracks: Vec<Track> = cases
        .iter()
        .enumerate()
        .map(|(k, c)| Track::of(k, c, what))
        .collect();
    let x_max = tracks.iter().map(|t| t.length_s).fold(0.001f64, f64::max);
    let axis = Axis::fit(
        tracks.iter().flat_map(|t| {
            t.intervals
                .iter()
                .map(|i| i.2)
                .chain(t.maxes.iter().map(|m| m.1))
        }),
        what,
    );
    let mut entries = legend::of_cases(
        tracks
            .iter()
            .filter(|t| !t.intervals.is_empty())
            .map(|t| (t.k, t.name)),
    );
    if tracks.iter().any(|t| !t.errors.is_empty()) {
        entries.push(Entry {
            label: "interval with errors".into(),
            colour: RED,
            mark: Mark::Cross,
        });
    }
    let (caption, desc) = match what {
        Over::Throughput => ("Throughput over time", "publishes/s"),
        Over::P99 => ("p99 (and, faint, max) latency over time", "latency"),
        Over::Memory => (
            "Resident memory over time (taskbench and the case's harnesses)",
            "RSS",
        ),
    };
    draw(WIDTH, HEIGHT, |root| {
        let area = legend::beside(root, &entries)?;
        let mut builder = ChartBuilder::on(&area);
        builder
            .caption(caption, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(80);
        match axis {
            Axis::Linear(hi) => {
                let chart = builder.build_cartesian_2d(0f64..x_max, 0f64..hi)?;
                paint(&area, chart, what, desc, &tracks, axis)
            }
            Axis::Log(lo, hi) => {
                let chart = builder.build_cartesian_2d(0f64..x_max, (lo..hi).log_scale())?;
                paint(&area, chart, what, desc, &tracks, axis)
            }
        }
    })
}

/// The mesh, the faults' shading, every case's line (or bars, when short), the error crosses and the
/// short cases' names.
fn paint<'a, Y>(
    area: &DrawingArea<SVGBackend<'a>, Shift>,
    mut chart: ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    what: Over,
    desc: &str,
    tracks: &[Track],
    axis: Axis,
) -> anyhow::Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let floor = axis.floor();
    chart
        .configure_mesh()
        .x_desc("seconds since the case started")
        .y_desc(desc)
        .y_label_formatter(&|y| what.label(*y))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()?;
    shade_events(area, &mut chart, tracks, axis)?;
    for t in tracks {
        let faint = case_colour(t.k).mix(0.4);
        chart.draw_series(LineSeries::new(
            t.maxes.iter().map(|&(x, y)| (x, y.max(floor))),
            faint.stroke_width(1),
        ))?;
    }
    for t in tracks {
        let colour = case_colour(t.k);
        let points: Vec<(f64, f64)> = t.points().map(|(x, y)| (x, y.max(floor))).collect();
        chart.draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?;
        let dot = if t.short() {
            // Each interval as what it is: the figure held over the time it covers.
            chart.draw_series(t.intervals.iter().map(|&(s, e, v)| {
                PathElement::new(
                    vec![(s, v.max(floor)), (e, v.max(floor))],
                    colour.stroke_width(3),
                )
            }))?;
            4
        } else {
            2
        };
        chart.draw_series(points.iter().map(|&p| Circle::new(p, dot, colour.filled())))?;
    }
    let crosses: Vec<(f64, f64)> = tracks
        .iter()
        .flat_map(|t| &t.errors)
        .map(|&(x, y)| (x, y.unwrap_or(floor).max(floor)))
        .collect();
    chart.draw_series(
        crosses
            .iter()
            .map(|&p| Cross::new(p, 6, RED.stroke_width(2))),
    )?;
    let labels = short_labels(&chart, tracks, floor);
    draw_labels(area, &labels)
}

/// Each event of every case shaded over the time it lasted in the case's colour (an instant one, a reset,
/// as a line), its kind written at its top left (with the case's name when several cases had events).
fn shade_events<'a, Y>(
    area: &DrawingArea<SVGBackend<'a>, Shift>,
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    tracks: &[Track],
    axis: Axis,
) -> anyhow::Result<()>
where
    Y: Ranged<ValueType = f64>,
{
    let named = tracks.iter().filter(|t| !t.events.is_empty()).count() > 1;
    let font = ("sans-serif", 13)
        .into_font()
        .color(&RGBColor(60, 60, 60))
        .pos(Pos::new(HPos::Left, VPos::Center));
    let (bottom, top) = (axis.floor(), axis.top());
    let mut j = 0;
    for t in tracks {
        let colour = case_colour(t.k);
        for &(began, ended, kind) in &t.events {
            if ended > began {
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(began, bottom), (ended, top)],
                    colour.mix(0.15).filled(),
                )))?;
            } else {
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(began, bottom), (began, top)],
                    colour.mix(0.6).stroke_width(2),
                )))?;
            }
            let (x, y) = chart.backend_coord(&(began, top));
            let text = match named {
                true => format!("{kind} ({})", t.name),
                false => kind.to_string(),
            };
            // Events close together write their kinds on different rows.
            area.draw(&Text::new(
                text,
                (x + 4, y + 10 + 15 * (j % 3)),
                font.clone(),
            ))?;
            j += 1;
        }
    }
    Ok(())
}

/// The name of a short case, placed by its bars (pixels).
struct Label {
    text: String,
    k: usize,
    /// The point of its bars it names (a leader line joins them when the label had to move).
    anchor: (i32, i32),
    x: i32,
    /// The label's middle, and where it was before labels were pushed apart.
    y: i32,
    home_y: i32,
    width: i32,
}

/// Each short case's name and length right of its bars (or above their start when the plot's right edge is
/// too near), pushed apart vertically so that no two overlap.
fn short_labels<'a, Y>(
    chart: &ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    tracks: &[Track],
    floor: f64,
) -> Vec<Label>
where
    Y: Ranged<ValueType = f64>,
{
    let (xs, ys) = chart.plotting_area().get_pixel_range();
    let mut labels: Vec<Label> = tracks
        .iter()
        .filter(|t| t.short())
        .map(|t| {
            let (start, _, _) = t.intervals[0];
            let (_, end, v) = t.intervals[t.intervals.len() - 1];
            let (x0, y) = chart.backend_coord(&(start, v.max(floor)));
            let (x1, _) = chart.backend_coord(&(end, v.max(floor)));
            let text = format!(
                "{} ({})",
                t.name,
                crate::human::human_ns((t.length_s * 1e9).round() as u64)
            );
            let width = (text.chars().count() as f64 * CHAR_PX).ceil() as i32;
            let (anchor, x, home_y) = if x1 + 8 + width <= xs.end {
                ((x1, y), x1 + 8, y)
            } else {
                let x = (x0 + 4).min(xs.end - width).max(xs.start);
                ((x, y), x, y - 12)
            };
            Label {
                text,
                k: t.k,
                anchor,
                x,
                y: home_y,
                home_y,
                width,
            }
        })
        .collect();
    labels.sort_by_key(|l| l.y);
    let gap = 15;
    for j in 1..labels.len() {
        labels[j].y = labels[j].y.max(labels[j - 1].y + gap);
    }
    // Labels pushed below the plot go back up, keeping their order.
    let mut bottom = ys.end - 8;
    for l in labels.iter_mut().rev() {
        l.y = l.y.min(bottom);
        bottom = l.y - gap;
    }
    labels
}

fn draw_labels(area: &DrawingArea<SVGBackend, Shift>, labels: &[Label]) -> anyhow::Result<()> {
    let font = ("sans-serif", 13)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for l in labels {
        let colour = case_colour(l.k);
        if (l.y - l.home_y).abs() > 4 {
            area.draw(&PathElement::new(
                vec![l.anchor, (l.x - 2, l.y)],
                colour.mix(0.6).stroke_width(1),
            ))?;
        }
        area.draw(&Rectangle::new(
            [(l.x - 3, l.y - 8), (l.x + l.width + 3, l.y + 8)],
            WHITE.mix(0.85).filled(),
        ))?;
        area.draw(&Text::new(l.text.clone(), (l.x, l.y), font.clone()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::CaseResult;

    /// A case `name` of `n` intervals of 0.1 s at `rate` publishes/s, 1 ms at p99, except `stall` (its max,
    /// in ns) in interval 5.
    fn case(name: &str, n: usize, rate: f64, stall: Option<u64>) -> CaseSummary {
        let planned = crate::scenario::test_case(name);
        let mut c = CaseSummary::new(&CaseResult::empty(&planned));
        c.timeline = (0..n)
            .map(|i| IntervalSummary {
                start_s: i as f64 * 0.1,
                length_s: 0.1,
                ok: (rate / 10.0) as u64,
                failed: 0,
                throughput_per_s: rate,
                p50: Some(500_000),
                p99: Some(1_000_000),
                max: Some(if i == 5 {
                    stall.unwrap_or(1_200_000)
                } else {
                    1_200_000
                }),
                events: Vec::new(),
                resources: None,
            })
            .collect();
        c
    }

    /// Whether the SVG has a text element reading `text`.
    fn has_text(svg: &str, text: &str) -> bool {
        svg.contains(&format!(">\n{text}\n</text>"))
    }

    #[test]
    fn a_stall_in_the_timeline_reaches_the_p99_plots_axis() {
        // The 500 ms stall's max is drawn: the latency axis grows to label it; without it, it stays in ms.
        let stalled = over_time(&[case("c", 10, 1000.0, Some(500_000_000))], Over::P99).unwrap();
        let calm = over_time(&[case("c", 10, 1000.0, None)], Over::P99).unwrap();
        assert!(has_text(&stalled, "100ms"), "the axis reaches the stall");
        assert!(has_text(&calm, "1.00ms"), "both draw the p99 of 1 ms");
        assert!(!has_text(&calm, "100ms"), "no stall, no 100 ms label");
        assert!(stalled.contains("<svg") && stalled.contains("</svg>"));
    }

    #[test]
    fn throughput_spanning_decades_is_drawn_on_a_log_axis_that_labels_both() {
        let fast_and_slow = [
            case("slow", 10, 1_000.0, None),
            case("fast", 1, 35_000.0, None),
        ];
        let svg = over_time(&fast_and_slow, Over::Throughput).unwrap();
        assert!(has_text(&svg, "1,000") && has_text(&svg, "10,000"), "{svg}");
        let alike = [case("a", 10, 1_000.0, None), case("b", 10, 2_000.0, None)];
        let svg = over_time(&alike, Over::Throughput).unwrap();
        assert!(
            has_text(&svg, "0"),
            "within a decade the axis starts at zero"
        );
        assert_eq!(
            Axis::fit([1_000.0, 35_000.0].into_iter(), Over::Throughput),
            Axis::Log(1_000.0 / 1.5, 35_000.0 * 1.5)
        );
        assert_eq!(
            Axis::fit([1_000.0, 2_000.0, 0.0].into_iter(), Over::Throughput),
            Axis::Linear(2_200.0)
        );
    }

    #[test]
    fn a_short_case_is_named_in_the_plot_and_a_long_one_only_in_the_legend() {
        let svg = over_time(
            &[
                case("long", 10, 1_000.0, None),
                case("short", 1, 35_000.0, None),
            ],
            Over::Throughput,
        )
        .unwrap();
        assert!(has_text(&svg, "short (100ms)"), "the short case's label");
        assert!(!svg.contains(">\nlong ("), "no label for a line");
        assert!(has_text(&svg, "long") && has_text(&svg, "short"), "legend");
        // The short case's bar is a 3 px line over its interval.
        assert!(svg.contains("stroke-width=\"3\""));
    }
}
