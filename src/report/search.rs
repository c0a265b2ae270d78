//! What `taskbench search` writes and prints: search.json (every step, the answer and its bounds, the
//! stage breakdown at the answer and at the first failing step), the steps table, the progress line, and
//! the run folder (summary.json holds each case's confirmation, with its `max_rate`).

use super::{RunWriter, breakdown, table};
use crate::engine::search::{Budget, CaseSearch, Outcome, Plan, StepLengths, StepRun};
use crate::human::{human_count, human_ns, human_rate};
use crate::record::CaseResult;
use crate::scenario::Case;
use crate::scenario::threshold::Op;
use crate::summary::{BreakdownRow, Summary, breakdown as breakdown_rows};
use comfy_table::{CellAlignment, Table, presets};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// The file's name in the run folder.
pub const SEARCH_JSON: &str = "search.json";

/// search.json: the whole search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchFile {
    pub scenario: String,
    pub started_at: String,
    pub taskbench_version: String,
    pub plan: PlanSummary,
    pub interrupted: bool,
    pub cases: Vec<CaseSearchSummary>,
}

/// How the search was asked to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSummary {
    pub start_per_s: f64,
    pub max_per_s: f64,
    pub growth: f64,
    /// The gap between the highest passing and the lowest failing rate it stops at, as a fraction.
    pub precision: f64,
    pub step_s: f64,
    pub confirm_s: f64,
    /// How far the achieved rate may fall short of the offered one, as a fraction.
    pub shortfall_tolerance: f64,
}

/// One case's search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseSearchSummary {
    pub name: String,
    pub budget: String,
    /// The budget's latency thresholds as numbers (the curve in report.html draws the first).
    pub budget_latency: Vec<BudgetLimit>,
    /// `found`, `start_failed` or `not_confirmed`.
    pub outcome: String,
    /// The highest rate found and confirmed (publishes/s); `null` unless `outcome` is `found`.
    pub max_rate: Option<f64>,
    pub highest_pass: Option<f64>,
    pub lowest_fail: Option<f64>,
    /// (lowest_fail - highest_pass) / highest_pass, as reached.
    pub precision: Option<f64>,
    pub confirmed: Option<bool>,
    pub interrupted: bool,
    pub steps: Vec<StepSummary>,
    /// The stage breakdown of the confirmation at the answer, and of the first failing step.
    pub breakdown_at_answer: Vec<BreakdownRow>,
    pub first_failing_rate: Option<f64>,
    pub breakdown_at_first_failure: Vec<BreakdownRow>,
}

/// One latency threshold of a budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetLimit {
    /// `p50`, `p90`, `p99`, `p999` or `max`.
    pub metric: String,
    pub op: Op,
    pub limit_ns: f64,
}

/// One step's row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSummary {
    pub index: usize,
    /// `ramp`, `bisect` or `confirm`.
    pub phase: String,
    pub offered_per_s: f64,
    pub achieved_per_s: f64,
    pub schedule_lag_p99_ns: Option<u64>,
    pub p50_ns: Option<u64>,
    pub p90_ns: Option<u64>,
    pub p99_ns: Option<u64>,
    pub p999_ns: Option<u64>,
    pub max_ns: Option<u64>,
    pub publishes_ok: u64,
    pub errors: u64,
    pub delivered: Option<u64>,
    pub planned_s: f64,
    pub elapsed_s: f64,
    pub passed: bool,
    /// Why it failed, each as `{"kind", "text"}` (kinds: budget, errors, shortfall, backlog, delivery,
    /// generator_limited).
    pub reasons: Vec<Reason>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub kind: String,
    pub text: String,
}

impl StepSummary {
    /// The step's figure for a latency metric's name (ns).
    pub fn latency(&self, metric: &str) -> Option<u64> {
        match metric {
            "p50" => self.p50_ns,
            "p90" => self.p90_ns,
            "p99" => self.p99_ns,
            "p999" => self.p999_ns,
            "max" => self.max_ns,
            _ => None,
        }
    }

    pub fn of(row: &StepRun) -> StepSummary {
        let o = &row.observation;
        StepSummary {
            index: row.index,
            phase: row.probe.phase.name().into(),
            offered_per_s: o.offered,
            achieved_per_s: o.achieved,
            schedule_lag_p99_ns: o.lag_p99,
            p50_ns: o.p50,
            p90_ns: o.p90,
            p99_ns: o.p99,
            p999_ns: o.p999,
            max_ns: o.max,
            publishes_ok: o.publishes_ok,
            errors: o.errors,
            delivered: o.delivered,
            planned_s: row.planned.as_secs_f64(),
            elapsed_s: o.elapsed.as_secs_f64(),
            passed: row.verdict.passed(),
            reasons: row
                .verdict
                .reasons
                .iter()
                .map(|r| Reason {
                    kind: r.kind().into(),
                    text: r.to_string(),
                })
                .collect(),
        }
    }
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Found => "found",
        Outcome::StartFailed => "start_failed",
        Outcome::NotConfirmed => "not_confirmed",
    }
}

impl CaseSearchSummary {
    pub fn of(s: &CaseSearch, budget: &Budget) -> CaseSearchSummary {
        let a = s.answer;
        let found = a.outcome == Outcome::Found && !s.interrupted;
        let first_failing_rate = s
            .steps
            .iter()
            .find(|r| !r.verdict.passed())
            .map(|r| r.probe.rate);
        CaseSearchSummary {
            name: s.case.clone(),
            budget: budget.text(),
            budget_latency: budget
                .latency
                .iter()
                .map(|t| BudgetLimit {
                    metric: t.metric.name().into(),
                    op: t.op,
                    limit_ns: t.value,
                })
                .collect(),
            outcome: outcome_name(a.outcome).into(),
            max_rate: a.highest_pass.filter(|_| found),
            highest_pass: a.highest_pass,
            lowest_fail: a.lowest_fail,
            precision: a.precision,
            confirmed: a.confirmed,
            interrupted: s.interrupted,
            steps: s.steps.iter().map(StepSummary::of).collect(),
            breakdown_at_answer: s.at_answer.as_ref().map(breakdown_rows).unwrap_or_default(),
            first_failing_rate,
            breakdown_at_first_failure: s
                .first_failing
                .as_ref()
                .map(breakdown_rows)
                .unwrap_or_default(),
        }
    }
}

/// The result summary.json holds for a searched case: its confirmation at the answer, else its first
/// failing step.
fn representative(s: &CaseSearch) -> Option<&CaseResult> {
    s.at_answer.as_ref().or(s.first_failing.as_ref())
}

/// Writes a search's run folder as it goes: after each case, its answer's files, summary.json (each
/// case's confirmation with `max_rate`), search.json and report.html.
pub struct SearchWriter {
    pub run: RunWriter,
    pub file: SearchFile,
}

impl SearchWriter {
    pub fn new(run: RunWriter, plan: Plan, lengths: StepLengths) -> SearchWriter {
        let file = SearchFile {
            scenario: run.info.scenario.clone(),
            started_at: run.info.started_at.clone(),
            taskbench_version: env!("CARGO_PKG_VERSION").to_string(),
            plan: PlanSummary {
                start_per_s: plan.start,
                max_per_s: plan.max,
                growth: plan.growth,
                precision: plan.precision,
                step_s: lengths.step.as_secs_f64(),
                confirm_s: lengths.confirm.as_secs_f64(),
                shortfall_tolerance: crate::engine::search::SHORTFALL_TOLERANCE,
            },
            interrupted: false,
            cases: Vec::new(),
        };
        SearchWriter { run, file }
    }

    /// Writes what the cases searched so far found; `budget` is the one of the case that just ended.
    pub fn case_ended(&mut self, so_far: &[CaseSearch], budget: &Budget, interrupted: bool) {
        let last = so_far.last().expect("a case just ended");
        self.file.cases.push(CaseSearchSummary::of(last, budget));
        self.file.interrupted = interrupted;
        let results: Vec<CaseResult> = so_far.iter().filter_map(representative).cloned().collect();
        let mut summary = Summary::new(&self.run.info, interrupted, &results);
        for case in &mut summary.cases {
            case.max_rate = self
                .file
                .cases
                .iter()
                .find(|c| c.name == case.name)
                .and_then(|c| c.max_rate);
        }
        let written = representative(last)
            .map_or(Ok(()), |r| self.run.folder.write_case(r, None))
            .and_then(|()| self.run.folder.write_summary(&summary))
            .and_then(|()| self.write_search_json())
            .and_then(|()| self.run.folder.write_report(&summary, None));
        if let Err(e) = written {
            eprintln!("error: {e:#}");
            self.run.failed = true;
        }
    }

    fn write_search_json(&self) -> anyhow::Result<()> {
        let mut text = serde_json::to_string_pretty(&self.file).expect("search.json serialises");
        text.push('\n');
        self.run.folder.write(SEARCH_JSON, text.as_bytes())
    }

    /// What `taskbench search` prints at the end: each case's steps and answer, the breakdowns, the folder.
    pub fn final_output(&self, cases: &[CaseSearch]) -> String {
        let mut out = String::new();
        for c in &self.file.cases {
            out.push_str(&steps_table(c));
            out.push_str(&answer_line(c));
        }
        // Only confirmed answers: a failed confirmation's figures are no answer's.
        let answers: Vec<CaseResult> = cases
            .iter()
            .filter(|c| c.answer.outcome == Outcome::Found && !c.interrupted)
            .filter_map(|c| c.at_answer.clone())
            .collect();
        if !answers.is_empty() {
            out.push_str("\nat the answer:\n");
            out.push_str(&table::comparison(&answers));
            out.push_str(&breakdown::table(&answers));
        }
        let _ = writeln!(out, "results: {}", self.run.folder.dir.display());
        out
    }
}

/// The line printed as each step is judged: `c step 3 ramp 400/s: achieved 399/s, p99 1.2ms: pass`.
pub fn progress_line(case: &Case, row: &StepRun) -> String {
    let o = &row.observation;
    format!(
        "search {}: step {} {} {}/s: achieved {}/s, p99 {}: {}",
        case.name,
        row.index,
        row.probe.phase.name(),
        human_rate(o.offered),
        human_rate(o.achieved),
        o.p99.map_or("-".into(), human_ns),
        row.verdict
    )
}

/// The table of one case's steps.
pub fn steps_table(c: &CaseSearchSummary) -> String {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    t.set_header([
        "step",
        "phase",
        "offered/s",
        "achieved/s",
        "lag p99",
        "p50",
        "p99",
        "p99.9",
        "max",
        "errors",
        "delivered",
        "took",
        "result",
    ]);
    let ns = |v: Option<u64>| v.map_or("-".into(), human_ns);
    for s in &c.steps {
        let result = match s.passed {
            true => "pass".to_string(),
            false => s
                .reasons
                .iter()
                .map(|r| r.text.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        };
        t.add_row([
            s.index.to_string(),
            s.phase.clone(),
            human_rate(s.offered_per_s),
            human_rate(s.achieved_per_s),
            ns(s.schedule_lag_p99_ns),
            ns(s.p50_ns),
            ns(s.p99_ns),
            ns(s.p999_ns),
            ns(s.max_ns),
            human_count(s.errors),
            s.delivered.map_or("-".into(), human_count),
            format!("{:.2}s", s.elapsed_s),
            result,
        ]);
    }
    for i in 2..12 {
        if let Some(col) = t.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    format!("{} (budget {}):\n{}\n", c.name, c.budget, t.trim_fmt())
}

/// The answer in one line.
pub fn answer_line(c: &CaseSearchSummary) -> String {
    let rate = |v: Option<f64>| v.map_or("-".into(), human_rate);
    let within = c
        .precision
        .map_or(String::new(), |p| format!(", within {:.1}%", 100.0 * p));
    let head = match (c.outcome.as_str(), c.interrupted) {
        (_, true) => "interrupted: no answer".to_string(),
        ("found", _) => format!("max rate {}/s (confirmed)", rate(c.max_rate)),
        ("start_failed", _) => "no rate passes: even the start rate fails".to_string(),
        _ => "no answer: every confirmation failed".to_string(),
    };
    format!(
        "{}: {head}; highest passing {}/s, lowest failing {}/s{within}; budget {}\n",
        c.name,
        rate(c.highest_pass),
        rate(c.lowest_fail),
        c.budget
    )
}
