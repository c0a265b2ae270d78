//! `report.html`: one self-contained page per run folder (no network: plots are inline SVG, flamegraphs
//! embedded as data URIs) with the side-by-side table and what went wrong, every case's percentile
//! spectrum, throughput and p99 over time (faults shaded), the faults and how soon each publisher published
//! again after them, the per-stage breakdown, the notes (each said once, folded
//! away) and the flamegraphs; with a baseline, the comparison of `taskbench compare`. Rendered from
//! summary.json (and the folder's flamegraph SVGs), so `taskbench report` can redraw any run folder.

mod figures;
mod notes;

use crate::human::{human_count, human_ns};
use crate::report::compare::Comparison;
use crate::report::faults::{self, EventRow};
use crate::report::plot::{self, Over};
use crate::summary::{CaseSummary, Summary};
use anyhow::Context;
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
    /// Whether any case has thresholds (the table shows their column).
    thresholds: bool,
    problems: Vec<String>,
    note_groups: Vec<notes::NoteGroup>,
    /// How many notes the groups hold.
    note_count: usize,
    comparison: Option<CompareView>,
    /// Every case that has a floor: the floor and the case's ratios to it.
    floors: Vec<FloorRow>,
    spectrum: String,
    throughput: String,
    p99: String,
    /// Resident memory over time; empty when no case was sampled.
    memory: String,
    /// Every case's faults, with their publishers' reconnect figures.
    faults: Vec<EventRow>,
    /// Each case's publishes of unknown fate, as a sentence naming the case.
    unknown_fates: Vec<String>,
    stages: String,
    stage_legend: Vec<Swatch>,
    flames: Vec<Flame>,
    /// `taskbench search`: each case's curve, answer and breakdowns (from search.json).
    searches: Vec<SearchView>,
    /// `run --sweep`: each case's curve and fit (from sweep.json).
    sweeps: Vec<SweepView>,
}

#[derive(Serialize)]
struct SweepView {
    name: String,
    curve: String,
    /// The fit's line and any warning, as on the terminal.
    fit: String,
}

/// The sweep views of a run folder with a sweep.json (none without one).
fn sweeps(dir: &Path) -> anyhow::Result<Vec<SweepView>> {
    use crate::report::sweep::{SWEEP_JSON, SweepFile};
    let Ok(text) = std::fs::read_to_string(dir.join(SWEEP_JSON)) else {
        return Ok(Vec::new());
    };
    let file: SweepFile = serde_json::from_str(&text)
        .with_context(|| format!("cannot read {}", dir.join(SWEEP_JSON).display()))?;
    file.cases
        .iter()
        .map(|c| {
            Ok(SweepView {
                name: c.name.clone(),
                curve: plot::sweep_curve(c)?,
                fit: c.fit_line(),
            })
        })
        .collect()
}

#[derive(Serialize)]
struct SearchView {
    name: String,
    answer: String,
    curve: String,
    first_failing_rate: String,
    /// Stage, then mean and share at the answer and at the first failing step.
    stages: Vec<[String; 5]>,
}

/// The search views of a run folder with a search.json (none without one, or when it cannot be read).
fn searches(dir: &Path) -> anyhow::Result<Vec<SearchView>> {
    use crate::report::search::{SEARCH_JSON, SearchFile, answer_line};
    let Ok(text) = std::fs::read_to_string(dir.join(SEARCH_JSON)) else {
        return Ok(Vec::new());
    };
    let file: SearchFile = serde_json::from_str(&text)
        .with_context(|| format!("cannot read {}", dir.join(SEARCH_JSON).display()))?;
    let mut out = Vec::new();
    for c in &file.cases {
        let mut names: Vec<&str> = Vec::new();
        for r in c
            .breakdown_at_answer
            .iter()
            .chain(&c.breakdown_at_first_failure)
        {
            if !names.contains(&r.stage.as_str()) {
                names.push(&r.stage);
            }
        }
        let cell = |rows: &[crate::summary::BreakdownRow], stage: &str| {
            rows.iter()
                .find(|r| r.stage == stage)
                .map_or(["-".to_string(), "-".to_string()], |r| {
                    [human_ns(r.mean_ns), format!("{:.1}%", 100.0 * r.share)]
                })
        };
        let stages = names
            .iter()
            .map(|stage| {
                let [a_mean, a_share] = cell(&c.breakdown_at_answer, stage);
                let [f_mean, f_share] = cell(&c.breakdown_at_first_failure, stage);
                [stage.to_string(), a_mean, a_share, f_mean, f_share]
            })
            .collect();
        out.push(SearchView {
            name: c.name.clone(),
            answer: answer_line(c),
            curve: plot::search_curve(c)?,
            first_failing_rate: c
                .first_failing_rate
                .map_or("-".into(), crate::human::human_rate),
            stages,
        });
    }
    Ok(out)
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
    /// The thresholds in a word, or the failed ones.
    thresholds: String,
    thresholds_failed: bool,
}

#[derive(Serialize)]
struct FloorRow {
    case: String,
    /// What the floor client did, or why there is no floor.
    client: String,
    p50: String,
    throughput: String,
    p50_ratio: String,
    throughput_ratio: String,
}

fn floor_row(c: &CaseSummary) -> Option<FloorRow> {
    let f = c.floor.as_ref()?;
    let ratio = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.2}x"));
    Some(FloorRow {
        case: c.name.clone(),
        client: match &f.unavailable {
            Some(why) => format!("no floor: {why}"),
            None => f.client.clone(),
        },
        p50: ns(f.latency_ns.p50),
        throughput: if f.unavailable.is_some() {
            "-".into()
        } else {
            human_count(f.throughput_per_s.round() as u64)
        },
        p50_ratio: ratio(f.p50_ratio),
        throughput_ratio: ratio(f.throughput_ratio),
    })
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
    let (thresholds, thresholds_failed) = notes::thresholds(c);
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
        thresholds,
        thresholds_failed,
    }
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
) -> anyhow::Result<String> {
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
    let note_groups = notes::grouped(cases);
    let page = Page {
        scenario: &summary.scenario,
        scenario_file: &summary.scenario_file,
        started_at: &summary.started_at,
        version: &summary.taskbench_version,
        interrupted: summary.interrupted,
        cases: cases.iter().enumerate().map(|(i, c)| row(i, c)).collect(),
        thresholds: cases.iter().any(|c| !c.thresholds.is_empty()),
        problems: notes::problems(cases),
        note_count: note_groups.iter().map(|g| g.notes.len()).sum(),
        note_groups,
        comparison: baseline.map(|(label, base)| comparison(label, base, summary)),
        floors: cases.iter().filter_map(floor_row).collect(),
        spectrum: plot::spectrum(cases)?,
        throughput: plot::over_time(cases, Over::Throughput)?,
        p99: plot::over_time(cases, Over::P99)?,
        memory: match cases.iter().any(|c| c.resources.is_some()) {
            true => plot::over_time(cases, Over::Memory)?,
            false => String::new(),
        },
        faults: cases
            .iter()
            .flat_map(|c| c.events.iter().map(|e| EventRow::of(&c.name, e)))
            .collect(),
        unknown_fates: cases
            .iter()
            .filter_map(|c| {
                Some(format!(
                    "{}: {}",
                    c.name,
                    faults::unknown_fate(c.unknown_fate.as_ref()?)
                ))
            })
            .collect(),
        stages: if has_stages {
            plot::stages(cases)?
        } else {
            String::new()
        },
        stage_legend,
        flames: flames(dir, cases),
        searches: searches(dir)?,
        sweeps: sweeps(dir)?,
    };
    let mut env = minijinja::Environment::new();
    env.add_template("report.html", TEMPLATE)
        .context("the report template")?;
    env.get_template("report.html")
        .and_then(|t| t.render(minijinja::value::Serde(&page)))
        .context("cannot render report.html")
}
