//! `--fail-if` expressions: `METRIC OP CHANGE` read and checked, with an error that says how to write one.

use super::Unit;
use crate::scenario::threshold::{Kind, Metric, Op, QuantityError, quantity};
use crate::stage::Stage;

/// A `--fail-if` expression: `METRIC OP CHANGE`, e.g. `p99 > +10%` or `throughput < -5000`.
#[derive(Debug, Clone, PartialEq)]
pub struct FailIf {
    pub text: String,
    pub metric: String,
    pub op: Op,
    pub bound: Bound,
}

/// What a `--fail-if` compares the change with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// A relative change, as a fraction (`+10%` is 0.1).
    Relative(f64),
    /// An absolute change in the metric's unit (ns for latencies).
    Absolute(f64),
}

/// The metrics `--fail-if` knows (a case's figures and `<stage>.mean`), and each one's unit.
fn metric_unit(metric: &str) -> Option<Unit> {
    match Metric::from_name(metric) {
        Some(m) => Some(Unit::of(m)),
        None => metric
            .strip_suffix(".mean")
            .and_then(Stage::from_name)
            .map(|_| Unit::Ns),
    }
}

/// Why a `--fail-if` expression cannot be read: what is wrong, and how to write one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "--fail-if {text:?}: {problem}\n  hint: write METRIC OP CHANGE, e.g. \"p99 > +10%\", \"throughput < -5%\", \"p50 > +200us\", \"errors > 0\"; metrics: throughput, p50, p90, p99, p999, max, errors, <stage>.mean (e.g. send.mean), blocked (AMQP flow control), harness_busy (Python clients), rss_growth_per_10k, cpu_per_publish, max_rate (taskbench search); OP: < <= > >= =="
)]
pub struct FailIfError {
    /// The expression as given.
    pub text: String,
    pub problem: FailIfProblem,
}

/// What is wrong with a `--fail-if` expression.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FailIfProblem {
    #[error("no metric")]
    NoMetric,
    #[error("unknown metric {0:?}")]
    UnknownMetric(String),
    #[error("no comparison operator after {0:?}")]
    NoOperator(String),
    #[error("no change after the operator")]
    NoChange,
    #[error("{0:?} is not a percentage")]
    NotAPercentage(String),
    #[error(transparent)]
    Quantity(#[from] QuantityError),
}

impl FailIf {
    /// Parses a `--fail-if` expression; the error says what is wrong and what is allowed.
    pub fn parse(text: &str) -> Result<FailIf, FailIfError> {
        let bad = |problem: FailIfProblem| FailIfError {
            text: text.to_string(),
            problem,
        };
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
            .unwrap_or(t.len());
        let (word, rest) = t.split_at(split);
        let metric = match word {
            "p99.9" => "p999".to_string(),
            w if Stage::from_name(w).is_some() => {
                format!("{w}.mean")
            }
            w => w.to_string(),
        };
        if metric.is_empty() {
            return Err(bad(FailIfProblem::NoMetric));
        }
        let unit = metric_unit(&metric)
            .ok_or_else(|| bad(FailIfProblem::UnknownMetric(word.to_string())))?;
        let (op, value) =
            Op::split(rest).ok_or_else(|| bad(FailIfProblem::NoOperator(word.to_string())))?;
        if value.is_empty() {
            return Err(bad(FailIfProblem::NoChange));
        }
        let bound = if let Some(pct) = value.strip_suffix('%') {
            let v = pct
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| bad(FailIfProblem::NotAPercentage(value.to_string())))?;
            Bound::Relative(v / 100.0)
        } else {
            let (sign, magnitude) = match value.strip_prefix('-') {
                Some(m) => (-1.0, m),
                None => (1.0, value.strip_prefix('+').unwrap_or(value)),
            };
            let kind = match unit {
                Unit::Ns => Kind::Duration,
                Unit::Bytes => Kind::Bytes,
                _ => Kind::Number,
            };
            Bound::Absolute(sign * quantity(magnitude, kind).map_err(|e| bad(e.into()))?)
        };
        Ok(FailIf {
            text: t.to_string(),
            metric,
            op,
            bound,
        })
    }
}
