//! `taskbench compare`: two runs' summary.json case by case — throughput, latency percentiles, errors and
//! each stage's mean, with absolute and relative change — and the `--fail-if` checks that turn a
//! regression into exit status 1. The report's `--baseline` draws the same comparison.

mod fail_if;

pub use fail_if::{Bound, FailIf, FailIfError, FailIfProblem};

use crate::human::{human_count, human_ns};
use crate::scenario::threshold::Metric;
use crate::stage::Stage;
use crate::summary::{CaseSummary, Summary};
use comfy_table::{CellAlignment, Table, presets};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// What a figure counts, which decides how it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    PerSecond,
    Ns,
    Count,
    /// A share of a whole, 0 to 1, written as a percentage.
    Share,
    Bytes,
}

impl Unit {
    /// What `metric` counts.
    fn of(metric: Metric) -> Unit {
        match metric {
            Metric::Throughput | Metric::MaxRate => Unit::PerSecond,
            Metric::P50 | Metric::P90 | Metric::P99 | Metric::P999 | Metric::Max => Unit::Ns,
            Metric::Errors => Unit::Count,
            Metric::Blocked => Unit::Ns,
            Metric::HarnessBusy => Unit::Share,
            Metric::RssGrowthPer10k => Unit::Bytes,
            Metric::CpuPerPublish => Unit::Ns,
        }
    }

    fn show(self, v: f64) -> String {
        match self {
            Unit::Ns => human_ns(v.max(0.0).round() as u64),
            Unit::PerSecond | Unit::Count => human_count(v.max(0.0).round() as u64),
            Unit::Share => format!("{:.1}%", 100.0 * v),
            Unit::Bytes => crate::human::human_bytes_signed(v),
        }
    }

    fn show_signed(self, v: f64) -> String {
        let sign = if v < 0.0 { "-" } else { "+" };
        match self {
            // A change of a share is in percentage points, not a percentage of it.
            Unit::Share => format!("{sign}{:.1} pts", 100.0 * v.abs()),
            _ => format!("{sign}{}", self.show(v.abs())),
        }
    }
}

/// One figure of one case in both runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricChange {
    /// `throughput`, `p50`, `p90`, `p99`, `p999`, `max`, `errors`, or `<stage>.mean`.
    pub metric: String,
    pub unit: Unit,
    /// `null` when the run has no value (no successful publish, or the stage was not timed).
    pub base: Option<f64>,
    pub new: Option<f64>,
    /// new - base.
    pub change: Option<f64>,
    /// (new - base) / base, e.g. 0.1 for +10%; `null` when base is 0 and new is not (an unbounded change).
    pub relative: Option<f64>,
}

impl MetricChange {
    fn new(metric: impl Into<String>, unit: Unit, base: Option<f64>, new: Option<f64>) -> Self {
        let (change, relative) = match (base, new) {
            (Some(b), Some(n)) => {
                let relative = if b != 0.0 {
                    Some((n - b) / b)
                } else if n == 0.0 {
                    Some(0.0)
                } else {
                    None
                };
                (Some(n - b), relative)
            }
            _ => (None, None),
        };
        MetricChange {
            metric: metric.into(),
            unit,
            base,
            new,
            change,
            relative,
        }
    }

    /// The relative change for checking: an increase from zero is +infinity.
    fn relative_or_infinite(&self) -> Option<f64> {
        match (self.relative, self.change) {
            (Some(r), _) => Some(r),
            (None, Some(c)) => Some(if c > 0.0 {
                f64::INFINITY
            } else {
                f64::NEG_INFINITY
            }),
            (None, None) => None,
        }
    }

    /// The base value as the table writes it.
    pub fn show_base(&self) -> String {
        show(self.unit, self.base)
    }

    /// The new value as the table writes it.
    pub fn show_new(&self) -> String {
        show(self.unit, self.new)
    }

    /// The change, absolute and relative: `+1.14µs (+4.1%)`, `+3 (new)` from zero, `-` without values.
    pub fn change_text(&self) -> String {
        match self.change {
            None => "-".into(),
            Some(c) => {
                let rel = match self.relative {
                    Some(r) => format!("{:+.1}%", r * 100.0),
                    None => "new".into(),
                };
                format!("{} ({rel})", self.unit.show_signed(c))
            }
        }
    }
}

/// One case present in both runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseComparison {
    pub name: String,
    pub metrics: Vec<MetricChange>,
}

/// The figures of one case compared, in output order: throughput, p50, p90, p99, p99.9, max, errors, the
/// mean of every stage either run timed, in stage order, then the facts' `blocked` and `harness_busy`
/// and a search's `max_rate`, where either run has them.
pub fn compare_case(base: &CaseSummary, new: &CaseSummary) -> CaseComparison {
    let latencies = Metric::ALL.into_iter().filter(|m| m.quantile().is_some());
    let figures = std::iter::once(Metric::Throughput)
        .chain(latencies)
        .chain([Metric::Errors]);
    let mut metrics: Vec<MetricChange> = figures
        .map(|m| MetricChange::new(m.name(), Unit::of(m), figure(base, m), figure(new, m)))
        .collect();
    let mean = |c: &CaseSummary, stage: &str| {
        c.stages
            .get(stage)
            .filter(|s| s.count > 0)
            .map(|s| s.total_ns as f64 / s.count as f64)
    };
    for stage in Stage::NAMES {
        let (b, n) = (mean(base, stage), mean(new, stage));
        if b.is_some() || n.is_some() {
            metrics.push(MetricChange::new(format!("{stage}.mean"), Unit::Ns, b, n));
        }
    }
    // The facts' figures, where either run has them.
    for m in [
        Metric::Blocked,
        Metric::HarnessBusy,
        Metric::RssGrowthPer10k,
        Metric::CpuPerPublish,
        Metric::MaxRate,
    ] {
        let (b, n) = (figure(base, m), figure(new, m));
        if b.is_some() || n.is_some() {
            metrics.push(MetricChange::new(m.name(), Unit::of(m), b, n));
        }
    }
    CaseComparison {
        name: new.name.clone(),
        metrics,
    }
}

/// A case's figure for `metric`; a latency is `None` when no publish succeeded.
fn figure(case: &CaseSummary, metric: Metric) -> Option<f64> {
    let l = &case.latency_ns;
    let ns = match metric {
        Metric::Throughput => return Some(case.throughput_per_s),
        Metric::Errors => return Some(case.errors.values().sum::<u64>() as f64),
        Metric::Blocked => return case.facts.blocked_ns(),
        Metric::HarnessBusy => return case.facts.harness_busy(),
        Metric::RssGrowthPer10k => return case.resources.as_ref()?.rss_growth_per_10k(),
        Metric::CpuPerPublish => return case.resources.as_ref()?.cpu_per_publish_ns(),
        Metric::MaxRate => return case.max_rate,
        Metric::P50 => l.p50,
        Metric::P90 => l.p90,
        Metric::P99 => l.p99,
        Metric::P999 => l.p999,
        Metric::Max => l.max,
    };
    ns.map(|v| v as f64)
}

/// The outcome of one `--fail-if` on one case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub expression: String,
    pub case: String,
    /// The metric the expression names (`p99.9` reads `p999`, a bare stage name `<stage>.mean`).
    pub metric: String,
    /// The change the expression compared (relative as a fraction, or absolute); `null` when the case has
    /// no value for the metric in one of the runs (then it cannot fail).
    pub observed: Option<f64>,
    /// The expression holds: a regression.
    pub failed: bool,
}

/// Two runs compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub base: String,
    pub new: String,
    pub cases: Vec<CaseComparison>,
    /// Cases only one of the runs has (not compared).
    pub only_in_base: Vec<String>,
    pub only_in_new: Vec<String>,
    pub checks: Vec<Check>,
}

impl Comparison {
    /// Reads the run folders `base` and `new` and compares them with the `--fail-if` expressions
    /// `fail_if`; an error (a bad expression, a folder without a summary, no case in both) says why.
    pub fn of_runs(base: &Path, new: &Path, fail_if: &[String]) -> anyhow::Result<Comparison> {
        let fail_if = fail_if
            .iter()
            .map(|e| FailIf::parse(e))
            .collect::<Result<Vec<_>, _>>()?;
        let (base_run, new_run) = (Summary::read(base)?, Summary::read(new)?);
        let comparison = Comparison::new(
            &base.display().to_string(),
            &base_run,
            &new.display().to_string(),
            &new_run,
            &fail_if,
        );
        if comparison.cases.is_empty() {
            let names = |s: &Summary| match s.cases.len() {
                0 => "no cases".to_string(),
                _ => s
                    .cases
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            anyhow::bail!(
                "no case is in both runs ({} has {}; {} has {})",
                base.display(),
                names(&base_run),
                new.display(),
                names(&new_run)
            );
        }
        Ok(comparison)
    }

    /// Compares every case present in both runs, in the new run's order, and evaluates `fail_if` on each.
    pub fn new(
        base_label: &str,
        base: &Summary,
        new_label: &str,
        new: &Summary,
        fail_if: &[FailIf],
    ) -> Comparison {
        let cases: Vec<CaseComparison> = new
            .cases
            .iter()
            .filter_map(|n| {
                base.cases
                    .iter()
                    .find(|b| b.name == n.name)
                    .map(|b| compare_case(b, n))
            })
            .collect();
        let in_other = |s: &Summary, name: &str| s.cases.iter().any(|c| c.name == name);
        let mut checks = Vec::new();
        for f in fail_if {
            for case in &cases {
                let m = case.metrics.iter().find(|m| m.metric == f.metric);
                let observed = m.and_then(|m| match f.bound {
                    Bound::Relative(_) => m.relative_or_infinite(),
                    Bound::Absolute(_) => m.change,
                });
                let bound = match f.bound {
                    Bound::Relative(v) | Bound::Absolute(v) => v,
                };
                checks.push(Check {
                    expression: f.text.clone(),
                    case: case.name.clone(),
                    metric: f.metric.clone(),
                    observed,
                    failed: observed.is_some_and(|o| f.op.holds(o, bound)),
                });
            }
        }
        Comparison {
            base: base_label.to_string(),
            new: new_label.to_string(),
            cases,
            only_in_base: base
                .cases
                .iter()
                .filter(|c| !in_other(new, &c.name))
                .map(|c| c.name.clone())
                .collect(),
            only_in_new: new
                .cases
                .iter()
                .filter(|c| !in_other(base, &c.name))
                .map(|c| c.name.clone())
                .collect(),
            checks,
        }
    }

    /// Whether some `--fail-if` found a regression.
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.failed)
    }

    /// The terminal table: one row per case and figure, then the checks.
    pub fn text(&self) -> String {
        let mut table = Table::new();
        table.load_style(presets::NOTHING);
        table.set_header(["case", "metric", "base", "new", "change"]);
        for case in &self.cases {
            for (i, m) in case.metrics.iter().enumerate() {
                table.add_row([
                    if i == 0 {
                        case.name.clone()
                    } else {
                        String::new()
                    },
                    m.metric.clone(),
                    show(m.unit, m.base),
                    show(m.unit, m.new),
                    m.change_text(),
                ]);
            }
        }
        for i in 2..5 {
            if let Some(col) = table.column_mut(i) {
                col.set_cell_alignment(CellAlignment::Right);
            }
        }
        let mut out = format!("base: {}\nnew:  {}\n", self.base, self.new);
        out.push_str(&table.trim_fmt());
        out.push('\n');
        out.push_str(&self.notes_and_checks(""));
        out
    }

    /// A GitHub-flavoured markdown table, for a pull request.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "Comparing `{}` (base) with `{}` (new)\n\n| case | metric | base | new | change |\n|---|---|---:|---:|---:|\n",
            self.base, self.new
        );
        for case in &self.cases {
            for m in &case.metrics {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} |",
                    case.name,
                    m.metric,
                    show(m.unit, m.base),
                    show(m.unit, m.new),
                    m.change_text()
                );
            }
        }
        let rest = self.notes_and_checks("- ");
        if !rest.is_empty() {
            out.push('\n');
            out.push_str(&rest);
        }
        out
    }

    /// As pretty JSON with a final newline.
    pub fn json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a comparison serialises");
        text.push('\n');
        text
    }

    /// The lines under the table: cases not compared, and each `--fail-if` with what failed.
    fn notes_and_checks(&self, bullet: &str) -> String {
        let mut out = String::new();
        if !self.only_in_base.is_empty() {
            let _ = writeln!(
                out,
                "{bullet}only in base (not compared): {}",
                self.only_in_base.join(", ")
            );
        }
        if !self.only_in_new.is_empty() {
            let _ = writeln!(
                out,
                "{bullet}only in new (not compared): {}",
                self.only_in_new.join(", ")
            );
        }
        let mut expressions: Vec<&str> = Vec::new();
        for c in &self.checks {
            if !expressions.contains(&c.expression.as_str()) {
                expressions.push(&c.expression);
            }
        }
        for e in expressions {
            let failed: Vec<String> = self
                .checks
                .iter()
                .filter(|c| c.expression == e && c.failed)
                .map(|c| {
                    let m = self
                        .cases
                        .iter()
                        .find(|k| k.name == c.case)
                        .and_then(|k| k.metrics.iter().find(|m| m.metric == c.metric));
                    match m {
                        Some(m) => format!(
                            "{} {} -> {}, {}",
                            c.case,
                            show(m.unit, m.base),
                            show(m.unit, m.new),
                            m.change_text()
                        ),
                        None => c.case.clone(),
                    }
                })
                .collect();
            if failed.is_empty() {
                let _ = writeln!(out, "{bullet}pass: {e}");
            } else {
                let _ = writeln!(out, "{bullet}FAIL: {e}: {}", failed.join("; "));
            }
        }
        out
    }
}

fn show(unit: Unit, v: Option<f64>) -> String {
    v.map_or("-".into(), |v| unit.show(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::CaseFacts;
    use crate::scenario::threshold::Op;

    #[test]
    fn fail_if_expressions_parse_or_say_why_not() {
        let f = FailIf::parse("p99 > +10%").unwrap();
        assert_eq!(
            (f.metric.as_str(), f.op, f.bound),
            ("p99", Op::Gt, Bound::Relative(0.1))
        );
        let f = FailIf::parse("throughput<-5%").unwrap();
        assert_eq!((f.op, f.bound), (Op::Lt, Bound::Relative(-0.05)));
        let f = FailIf::parse("p99.9 >= +200us").unwrap();
        assert_eq!(
            (f.metric.as_str(), f.bound),
            ("p999", Bound::Absolute(200_000.0))
        );
        assert_eq!(FailIf::parse("send > 1ms").unwrap().metric, "send.mean");
        assert_eq!(
            FailIf::parse("errors > 0").unwrap().bound,
            Bound::Absolute(0.0)
        );
        let e = FailIf::parse("p98 > +10%").unwrap_err();
        assert_eq!(e.problem, FailIfProblem::UnknownMetric("p98".into()));
        assert!(
            e.to_string().starts_with(
                "--fail-if \"p98 > +10%\": unknown metric \"p98\"\n  hint: write METRIC OP CHANGE"
            ),
            "{e}"
        );
        let e = FailIf::parse("p99 +10%").unwrap_err();
        assert!(e.to_string().contains("no comparison operator"), "{e}");
        let e = FailIf::parse("p99 > ten%").unwrap_err();
        assert!(e.to_string().contains("not a percentage"), "{e}");
        let e = FailIf::parse("p99 > 3 parsecs").unwrap_err();
        assert!(
            e.to_string()
                .contains(": \"3 parsecs\" is not a duration (write it like 2ms"),
            "{e}"
        );
    }

    #[test]
    fn changes_from_zero_are_unbounded() {
        let m = MetricChange::new("errors", Unit::Count, Some(0.0), Some(3.0));
        assert_eq!((m.change, m.relative), (Some(3.0), None));
        assert_eq!(m.relative_or_infinite(), Some(f64::INFINITY));
        assert_eq!(m.change_text(), "+3 (new)");
        let m = MetricChange::new("p99", Unit::Ns, Some(2000.0), Some(2500.0));
        assert_eq!(m.relative, Some(0.25));
        assert_eq!(m.change_text(), "+500ns (+25.0%)");
    }

    fn with_facts(facts: CaseFacts) -> CaseSummary {
        let planned = crate::scenario::test_case("c");
        let mut c = CaseSummary::new(&crate::record::CaseResult::empty(&planned));
        c.facts = facts;
        c
    }

    #[test]
    fn facts_are_figures_compare_shows_and_fail_if_checks() {
        use crate::facts::{FlowControl, PythonFacts};
        let python = |busy_ns| PythonFacts {
            busy_ns,
            span_ns: 1000,
            ..PythonFacts::default()
        };
        let base = with_facts(CaseFacts {
            python: Some(python(900).with_shares(false)),
            flow_control: Some(FlowControl::default()),
            ..CaseFacts::default()
        });
        let new = with_facts(CaseFacts {
            python: Some(python(700).with_shares(false)),
            flow_control: Some(FlowControl {
                blocked: 1,
                blocked_ns: 2_000_000_000,
                ..FlowControl::default()
            }),
            ..CaseFacts::default()
        });
        let c = compare_case(&base, &new);
        let busy = c
            .metrics
            .iter()
            .find(|m| m.metric == "harness_busy")
            .unwrap();
        assert_eq!(
            (busy.show_base(), busy.show_new()),
            ("90.0%".into(), "70.0%".into())
        );
        assert_eq!(busy.change_text(), "-20.0 pts (-22.2%)");
        let blocked = c.metrics.iter().find(|m| m.metric == "blocked").unwrap();
        assert_eq!(blocked.show_new(), "2.00s");

        let f = FailIf::parse("blocked > 0").unwrap();
        assert_eq!(
            (f.metric.as_str(), f.bound),
            ("blocked", Bound::Absolute(0.0))
        );
        let f = FailIf::parse("harness_busy < -10%").unwrap();
        assert_eq!(f.bound, Bound::Relative(-0.1));
        let without = compare_case(
            &with_facts(CaseFacts::default()),
            &with_facts(CaseFacts::default()),
        );
        assert!(
            !without
                .metrics
                .iter()
                .any(|m| m.metric == "blocked" || m.metric == "harness_busy"),
            "a case without the facts has no such figures"
        );
    }
}
