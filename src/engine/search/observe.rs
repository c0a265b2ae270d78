//! What one search step measured ([`Observation`]) and whether it passed: within the [`Budget`] (latency
//! thresholds and an error budget), and steady (the achieved rate kept up with the offered one, no backlog
//! grew through the step, the delivery check added up, the generator was not the bottleneck). Each failure
//! is a [`FailReason`], said in the step's row.

use crate::error::ErrorKind;
use crate::human::{human_count, human_ns, human_rate};
use crate::record::CaseResult;
use crate::resources;
use crate::scenario::threshold::{Metric, Op, Threshold, ThresholdError};
use std::fmt;
use std::time::Duration;

/// How far the achieved rate (and the backlog) may fall short of the offered rate: 5 %.
pub const SHORTFALL_TOLERANCE: f64 = 0.05;

/// The error budget: a share of the step's publishes (`< 0.1%`) or a count (`== 0`).
#[derive(Debug, Clone, PartialEq)]
pub enum ErrorBudget {
    /// A fraction of the publishes (0.001 for `0.1%`).
    Share {
        op: Op,
        value: f64,
        text: String,
    },
    Count(Threshold),
}

impl ErrorBudget {
    /// Reads `< 0.1%` (a share of the publishes) or `== 0` (a count).
    pub fn parse(text: &str) -> Result<ErrorBudget, ThresholdError> {
        let Some(share) = text.trim().strip_suffix('%') else {
            return Threshold::parse(Metric::Errors, text).map(ErrorBudget::Count);
        };
        let bad = |quantity| ThresholdError::Quantity {
            metric: Metric::Errors,
            text: text.to_string(),
            quantity,
        };
        let (op, value) = Op::split(share).ok_or_else(|| ThresholdError::NoOperator {
            metric: Metric::Errors,
            text: text.to_string(),
        })?;
        let value =
            crate::scenario::threshold::quantity(value, crate::scenario::threshold::Kind::Number)
                .map_err(bad)?;
        Ok(ErrorBudget::Share {
            op,
            value: value / 100.0,
            text: text.trim().to_string(),
        })
    }

    /// Whether `errors` of `attempted` publishes are within the budget.
    pub fn passes(&self, errors: u64, attempted: u64) -> bool {
        match self {
            ErrorBudget::Share { op, value, .. } => {
                op.holds(errors as f64 / attempted.max(1) as f64, *value)
            }
            ErrorBudget::Count(t) => t.passes(Some(errors as f64)),
        }
    }

    pub fn text(&self) -> &str {
        match self {
            ErrorBudget::Share { text, .. } => text,
            ErrorBudget::Count(t) => &t.text,
        }
    }
}

impl Default for ErrorBudget {
    /// No error at all: `== 0`.
    fn default() -> Self {
        ErrorBudget::Count(Threshold::parse(Metric::Errors, "== 0").expect("a valid threshold"))
    }
}

/// What a step must stay within: latency thresholds and the errors.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Budget {
    /// Latency thresholds (`p50` .. `max`), e.g. `p99 < 5ms`.
    pub latency: Vec<Threshold>,
    pub errors: ErrorBudget,
}

impl Budget {
    /// The budget as one line: `p99 < 5ms, errors < 0.1%`.
    pub fn text(&self) -> String {
        self.latency
            .iter()
            .map(|t| format!("{} {}", t.metric, t.text))
            .chain(std::iter::once(format!("errors {}", self.errors.text())))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What one step measured, as the search judges it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observation {
    /// Publishes per second scheduled.
    pub offered: f64,
    /// Successful publishes per second over the step (its planned length, or longer when it overran).
    pub achieved: f64,
    /// How long the measured publishes took, first start to last end.
    pub elapsed: Duration,
    /// p99 of how late publishes started against their schedule (ns).
    pub lag_p99: Option<u64>,
    /// p50, p90, p99, p99.9 and max latency (ns); `None` when nothing succeeded.
    pub p50: Option<u64>,
    pub p90: Option<u64>,
    pub p99: Option<u64>,
    pub p999: Option<u64>,
    pub max: Option<u64>,
    pub publishes_ok: u64,
    /// Failed publishes, a delivery shortfall included.
    pub errors: u64,
    /// Publishes the backend confirmed it holds; `None` when it cannot tell.
    pub delivered: Option<u64>,
    /// Publishes the delivery check could not account for.
    pub undelivered: u64,
    /// Publishes due but not done grew through the step (a backlog building).
    pub backlog_growing: bool,
    /// The step was ended early because of that backlog.
    pub stopped_early: bool,
    /// taskbench (or a Python harness) was saturated: the step measured the generator, not the target.
    pub generator_limited: bool,
}

impl Observation {
    /// The observation of a step planned to last `planned` at `offered` publishes per second.
    /// `stopped_early` says the step's watcher ended it on a growing backlog.
    pub fn of(result: &CaseResult, offered: f64, planned: Duration, stopped_early: bool) -> Self {
        let q = |q: f64| (!result.latency.is_empty()).then(|| result.latency.value_at_quantile(q));
        // Over the planned length, or the real one when the step ran over it or was ended early.
        let span = match stopped_early {
            true => result.elapsed,
            false => result.elapsed.max(planned),
        }
        .as_secs_f64();
        let undelivered = result
            .errors
            .by_kind()
            .iter()
            .find(|(kind, _, _)| *kind == ErrorKind::DeliveryMismatch)
            .map_or(0, |(_, n, _)| *n);
        let mut done = 0u64;
        let samples: Vec<(f64, f64)> = result
            .timeline
            .iter()
            .map(|iv| {
                done += iv.ok + iv.failed;
                let t = (iv.start + iv.length).as_secs_f64();
                let due = offered * t.min(planned.as_secs_f64());
                (t, due - done as f64)
            })
            .collect();
        Observation {
            offered,
            achieved: result.publishes_ok as f64 / span.max(1e-9),
            elapsed: result.elapsed,
            lag_p99: result
                .schedule_lag
                .as_ref()
                .filter(|h| !h.is_empty())
                .map(|h| h.value_at_quantile(0.99)),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: (!result.latency.is_empty()).then(|| result.latency.max()),
            publishes_ok: result.publishes_ok,
            errors: result.errors.total(),
            delivered: result.delivered,
            undelivered,
            backlog_growing: stopped_early || backlog_growing(&samples, offered),
            stopped_early,
            // The resource sampler's verdict: taskbench or a Python harness had a thread at a whole core.
            generator_limited: !resources::saturated(&result.resources.process_figures())
                .is_empty(),
        }
    }

    /// The figure a latency threshold bounds (ns).
    pub fn latency(&self, metric: Metric) -> Option<f64> {
        match metric {
            Metric::P50 => self.p50,
            Metric::P90 => self.p90,
            Metric::P99 => self.p99,
            Metric::P999 => self.p999,
            Metric::Max => self.max,
            _ => None,
        }
        .map(|v| v as f64)
    }

    /// Whether the step passed, and if not every reason why.
    pub fn judge(&self, budget: &Budget) -> Verdict {
        let mut reasons = Vec::new();
        if self.generator_limited {
            reasons.push(FailReason::GeneratorLimited);
        }
        for t in &budget.latency {
            let actual = self.latency(t.metric);
            if !t.passes(actual) {
                reasons.push(FailReason::Budget {
                    metric: t.metric,
                    budget: t.text.clone(),
                    actual,
                });
            }
        }
        // Counted against what was attempted; the delivery shortfall is its own reason.
        let failed = self.errors - self.undelivered;
        let attempted = self.publishes_ok + failed;
        if !budget.errors.passes(failed, attempted) {
            reasons.push(FailReason::Errors {
                errors: failed,
                attempted,
                budget: budget.errors.text().to_string(),
            });
        }
        if self.undelivered > 0 {
            reasons.push(FailReason::Delivery {
                missing: self.undelivered,
            });
        }
        if self.backlog_growing {
            reasons.push(FailReason::Backlog {
                stopped_early: self.stopped_early,
            });
        }
        if self.achieved < self.offered * (1.0 - SHORTFALL_TOLERANCE) {
            reasons.push(FailReason::Shortfall {
                achieved: self.achieved,
                offered: self.offered,
            });
        }
        Verdict { reasons }
    }
}

/// Whether a backlog grew through a step: `samples` are (seconds since the measured start, publishes due
/// but not done then). It did when, over the second half of the samples, it rose by more than the
/// tolerance's share of the offered rate per second, and ended above that share of everything due.
pub fn backlog_growing(samples: &[(f64, f64)], offered: f64) -> bool {
    if samples.len() < 4 {
        return false;
    }
    let half = &samples[samples.len() / 2..];
    let n = half.len() as f64;
    let (mt, mb) = (
        half.iter().map(|s| s.0).sum::<f64>() / n,
        half.iter().map(|s| s.1).sum::<f64>() / n,
    );
    let var: f64 = half.iter().map(|s| (s.0 - mt).powi(2)).sum();
    if var <= 0.0 {
        return false;
    }
    let slope = half.iter().map(|s| (s.0 - mt) * (s.1 - mb)).sum::<f64>() / var;
    let (t_last, last) = *samples.last().expect("four or more");
    slope > SHORTFALL_TOLERANCE * offered && last > SHORTFALL_TOLERANCE * offered * t_last
}

/// Why a step failed.
#[derive(Debug, Clone, PartialEq)]
pub enum FailReason {
    /// A latency threshold: its figure (`None` when nothing succeeded) and the budget as written.
    Budget {
        metric: Metric,
        budget: String,
        actual: Option<f64>,
    },
    /// More errors than the error budget allows.
    Errors {
        errors: u64,
        attempted: u64,
        budget: String,
    },
    /// The achieved rate fell short of the offered one beyond [`SHORTFALL_TOLERANCE`].
    Shortfall { achieved: f64, offered: f64 },
    /// Publishes due but not done grew through the step.
    Backlog { stopped_early: bool },
    /// The delivery check did not add up.
    Delivery { missing: u64 },
    /// The generator (taskbench or a Python harness) was saturated, so the step says nothing of the target.
    GeneratorLimited,
}

impl FailReason {
    /// A one-word name for JSON and filters: `budget`, `errors`, `shortfall`, `backlog`, `delivery`,
    /// `generator_limited`.
    pub fn kind(&self) -> &'static str {
        match self {
            FailReason::Budget { .. } => "budget",
            FailReason::Errors { .. } => "errors",
            FailReason::Shortfall { .. } => "shortfall",
            FailReason::Backlog { .. } => "backlog",
            FailReason::Delivery { .. } => "delivery",
            FailReason::GeneratorLimited => "generator_limited",
        }
    }
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::Budget {
                metric,
                budget,
                actual: Some(a),
            } => write!(f, "{metric} {} over budget {budget}", human_ns(*a as u64)),
            FailReason::Budget { metric, .. } => write!(f, "{metric}: no publish succeeded"),
            FailReason::Errors {
                errors,
                attempted,
                budget,
            } => write!(
                f,
                "{} errors of {} over budget {budget}",
                human_count(*errors),
                human_count(*attempted)
            ),
            FailReason::Shortfall { achieved, offered } => write!(
                f,
                "achieved {}/s of {}/s offered",
                human_rate(*achieved),
                human_rate(*offered)
            ),
            FailReason::Backlog {
                stopped_early: true,
            } => write!(f, "backlog growing (stopped early)"),
            FailReason::Backlog { .. } => write!(f, "backlog grew through the step"),
            FailReason::Delivery { missing } => write!(
                f,
                "delivery check: {} publishes unaccounted for",
                human_count(*missing)
            ),
            FailReason::GeneratorLimited => write!(f, "generator-limited (taskbench saturated)"),
        }
    }
}

/// A step's verdict: passed when there is no reason to fail it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    pub reasons: Vec<FailReason>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.reasons.is_empty()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.passed() {
            return write!(f, "pass");
        }
        let texts: Vec<String> = self.reasons.iter().map(ToString::to_string).collect();
        write!(f, "{}", texts.join("; "))
    }
}
