//! `report.html`: one self-contained page per run folder (no network: plots are inline SVG, flamegraphs
//! embedded as data URIs) with the side-by-side table and notes, every case's percentile spectrum,
//! throughput and p99 over time, the per-stage breakdown and the flamegraphs; with a baseline, the
//! comparison of `taskbench compare`. Rendered from summary.json (and the folder's flamegraph SVGs), so
//! `taskbench report` can redraw any run folder.

use crate::human::{human_count, human_ns};
use crate::report::compare::Comparison;
use crate::report::plot::{self, Over};
use crate::summary::{CaseSummary, Summary};
use base64::Engine as _;
use serde::Serialize;
use std::path::Path;

const TEMPLATE: &str = include_str!("templates/report.html");

/// Everything the template shows.
#[derive(Serialize)]
struct Page<'a> {
    scenario: &'a str,
    scenario_file: &'a str,
    started_at: &'a str,
    version: &'a str,
    interrupted: bool,
    cases: Vec<Row>,
    notes: Vec<String>,
    thresholds: Vec<ThresholdLine>,
    comparison: Option<CompareView>,
    spectrum: String,
    throughput: String,
    p99: String,
    stages: String,
    stage_legend: Vec<Swatch>,
    flames: Vec<Flame>,
}

#[derive(Serialize)]
struct Row {
    name: String,
    colour: String,
    backend: String,
    path: String,
    publishes: String,
    errors: String,
    throughput: String,
    p50: String,
    p90: String,
    p99: String,
    p999: String,
    max: String,
}

#[derive(Serialize)]
struct ThresholdLine {
    case: String,
    metric: String,
    expression: String,
    passed: bool,
    actual: String,
}

#[derive(Serialize)]
struct Flame {
    case: String,
    view: &'static str,
    data: String,
    height: u32,
}

#[derive(Serialize)]
struct Swatch {
    name: String,
    colour: String,
}

#[derive(Serialize)]
struct CompareRow {
    case: String,
    metric: String,
    base: String,
    new: String,
    change: String,
}

#[derive(Serialize)]
struct CompareView {
    base: String,
    rows: Vec<CompareRow>,
    notes: Vec<String>,
}

fn ns(v: Option<u64>) -> String {
    v.map_or("-".into(), human_ns)
}

fn row(i: usize, c: &CaseSummary) -> Row {
    let l = &c.latency_ns;
    Row {
        name: c.name.clone(),
        colour: plot::case_colour_css(i),
        backend: c.backend.to_string(),
        path: c.path.to_string(),
        publishes: human_count(c.publishes_ok),
        errors: human_count(c.errors.values().sum()),
        throughput: human_count(c.throughput_per_s.round() as u64),
        p50: ns(l.p50),
        p90: ns(l.p90),
        p99: ns(l.p99),
        p999: ns(l.p999),
        max: ns(l.max),
    }
}

/// The lines under the table: interruptions, errors by kind, open-loop lag and notes (as the terminal).
fn notes(cases: &[CaseSummary]) -> Vec<String> {
    let mut out = Vec::new();
    for c in cases {
        if c.interrupted {
            out.push(format!(
                "{}: interrupted; the numbers cover what ran",
                c.name
            ));
        }
        for (kind, n) in &c.errors {
            let message = c.error_messages.get(kind).map_or("", String::as_str);
            out.push(format!(
                "{}: {} {kind} error{}: {message}",
                c.name,
                human_count(*n),
                if *n == 1 { "" } else { "s" }
            ));
        }
        if let Some(lag) = &c.schedule_lag_ns
            && lag.max.is_some()
        {
            out.push(format!(
                "{}: open loop at {}/s: started late by p50 {}, p99 {}, max {}",
                c.name,
                human_count(c.rate.unwrap_or(0.0).round() as u64),
                ns(lag.p50),
                ns(lag.p99),
                ns(lag.max)
            ));
        }
    }
    let mut grouped: Vec<(&str, Vec<&str>)> = Vec::new();
    for c in cases {
        for note in &c.notes {
            match grouped.iter_mut().find(|(n, _)| n == note) {
                Some((_, names)) => names.push(&c.name),
                None => grouped.push((note, vec![&c.name])),
            }
        }
    }
    for (note, names) in grouped {
        out.push(format!("note ({}): {note}", names.join(", ")));
    }
    out
}

fn thresholds(cases: &[CaseSummary]) -> Vec<ThresholdLine> {
    let mut out = Vec::new();
    for c in cases {
        for t in &c.thresholds {
            let actual = match t.actual {
                None => "nothing measured".to_string(),
                Some(a) if matches!(t.metric.as_str(), "throughput" | "errors") => {
                    human_count(a.round() as u64)
                }
                Some(a) => human_ns(a.round() as u64),
            };
            out.push(ThresholdLine {
                case: c.name.clone(),
                metric: t.metric.clone(),
                expression: t.expression.clone(),
                passed: t.passed,
                actual,
            });
        }
    }
    out
}

/// The height an SVG declares (inferno writes it in px), for the embedding frame.
fn svg_height(svg: &str) -> u32 {
    let Some(root) = svg.find("<svg") else {
        return 400;
    };
    let tag = &svg[root..svg[root..].find('>').map_or(svg.len(), |e| root + e)];
    tag.split("height=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|h| h.trim_end_matches("px").parse::<f64>().ok())
        .map_or(400, |h| h.ceil() as u32)
}

/// Each case's flamegraph SVGs in `dir` (wall, then CPU, then Python wall-clock), as data URIs.
fn flames(dir: &Path, cases: &[CaseSummary]) -> Vec<Flame> {
    let mut out = Vec::new();
    for c in cases {
        for (suffix, view) in [
            ("wall", "wall time per stage"),
            ("cpu", "CPU time per span"),
            (
                "pywall",
                "wall-clock time per Python frame, waiting included",
            ),
        ] {
            let path = dir.join(format!("{}.{suffix}.svg", c.name));
            if let Ok(svg) = std::fs::read_to_string(&path) {
                out.push(Flame {
                    case: c.name.clone(),
                    view,
                    height: svg_height(&svg),
                    data: format!(
                        "data:image/svg+xml;base64,{}",
                        base64::engine::general_purpose::STANDARD.encode(svg.as_bytes())
                    ),
                });
            }
        }
    }
    out
}

fn comparison(base_label: &str, base: &Summary, summary: &Summary) -> CompareView {
    let c = Comparison::new(base_label, base, "this run", summary, &[]);
    let mut rows = Vec::new();
    for case in &c.cases {
        for m in &case.metrics {
            rows.push(CompareRow {
                case: case.name.clone(),
                metric: m.metric.clone(),
                base: m.show_base(),
                new: m.show_new(),
                change: m.change_text(),
            });
        }
    }
    let mut notes = Vec::new();
    if !c.only_in_base.is_empty() {
        notes.push(format!(
            "only in the baseline: {}",
            c.only_in_base.join(", ")
        ));
    }
    if !c.only_in_new.is_empty() {
        notes.push(format!("only in this run: {}", c.only_in_new.join(", ")));
    }
    CompareView {
        base: base_label.to_string(),
        rows,
        notes,
    }
}

/// The report of the run in `dir` whose summary is `summary`; with `baseline` (its label and summary),
/// the comparison against it too.
pub fn render(
    dir: &Path,
    summary: &Summary,
    baseline: Option<(&str, &Summary)>,
) -> Result<String, String> {
    let cases = &summary.cases;
    let mut stage_legend: Vec<Swatch> = Vec::new();
    for c in cases {
        for r in &c.breakdown {
            if !stage_legend.iter().any(|s| s.name == r.stage) {
                stage_legend.push(Swatch {
                    name: r.stage.clone(),
                    colour: plot::stage_colour_css(&r.stage),
                });
            }
        }
    }
    stage_legend.sort_by_key(|s| plot::stage_order(&s.name));
    let has_stages = !stage_legend.is_empty();
    let page = Page {
        scenario: &summary.scenario,
        scenario_file: &summary.scenario_file,
        started_at: &summary.started_at,
        version: &summary.taskbench_version,
        interrupted: summary.interrupted,
        cases: cases.iter().enumerate().map(|(i, c)| row(i, c)).collect(),
        notes: notes(cases),
        thresholds: thresholds(cases),
        comparison: baseline.map(|(label, base)| comparison(label, base, summary)),
        spectrum: plot::spectrum(cases)?,
        throughput: plot::over_time(cases, Over::Throughput)?,
        p99: plot::over_time(cases, Over::P99)?,
        stages: if has_stages {
            plot::stages(cases)?
        } else {
            String::new()
        },
        stage_legend,
        flames: flames(dir, cases),
    };
    let mut env = minijinja::Environment::new();
    env.add_template("report.html", TEMPLATE)
        .map_err(|e| format!("the report template: {e}"))?;
    env.get_template("report.html")
        .and_then(|t| t.render(minijinja::value::Serde(&page)))
        .map_err(|e| format!("cannot render report.html: {e}"))
}
