//! `taskbench search`'s logic: the highest open-loop rate a case sustains under a latency budget.
//!
//! [`Search`] is a pure state machine (observations in, the next rate out, no clock): it ramps the rate
//! geometrically until a step fails, bisects between the highest passing and the lowest failing rate down to
//! the precision, then confirms the answer with a longer step, which must pass or the search steps down.
//! `observe` turns a step's [`CaseResult`](crate::record::CaseResult) into an [`Observation`] and judges it
//! against the [`Budget`] (and whether it described a steady state); `drive` runs the steps of one case
//! through any function that runs a case, so the tests drive it on virtual time with the fake target.

mod drive;
mod observe;

pub use drive::{CaseSearch, StepLengths, StepRun, StepWatch, search_case, step_case};
pub use observe::{
    Budget, ErrorBudget, FailReason, Observation, SHORTFALL_TOLERANCE, Verdict, backlog_growing,
};

/// Which part of the search a step belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Rising geometrically until a step fails.
    Ramp,
    /// Halving the gap between the highest passing and the lowest failing rate.
    Bisect,
    /// The longer run at the answer.
    Confirm,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Ramp => "ramp",
            Phase::Bisect => "bisect",
            Phase::Confirm => "confirm",
        }
    }
}

/// How to search: where to start, how fast to rise, where to stop, how close to get.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// The first step's rate (publishes per second).
    pub start: f64,
    /// The highest rate tried; reaching it without a failure ends the search there.
    pub max: f64,
    /// Each ramp step's rate is the last one's times this.
    pub growth: f64,
    /// The search ends when the lowest failing rate is within this fraction above the highest passing one.
    pub precision: f64,
    /// How many times a failed confirmation steps down (by the precision) before the search gives up.
    pub confirm_attempts: u32,
}

impl Plan {
    /// A plan from `start` to `max` to within `precision`, doubling on the ramp, with three confirmations.
    pub fn new(start: f64, max: f64, precision: f64) -> Plan {
        Plan {
            start,
            max,
            growth: 2.0,
            precision,
            confirm_attempts: 3,
        }
    }
}

/// The step the search wants run next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    pub rate: f64,
    pub phase: Phase,
}

/// How a search ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// A rate passed and its confirmation passed.
    Found,
    /// Even the start rate failed.
    StartFailed,
    /// Every confirmation failed (the answer's steps passed, the longer runs did not).
    NotConfirmed,
}

/// The search's answer and its bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Answer {
    pub outcome: Outcome,
    /// The highest rate that passed (the confirmed one when `outcome` is `Found`; `None` after a failed
    /// confirmation, whose rate no longer counts as passing).
    pub highest_pass: Option<f64>,
    /// The lowest rate that failed; `None` when `--max` was reached without a failure.
    pub lowest_fail: Option<f64>,
    /// The gap between them as a fraction of the highest passing rate; `None` without both.
    pub precision: Option<f64>,
    /// Whether the answer's confirmation passed (`None` when none ran).
    pub confirmed: Option<bool>,
}

/// Where a search is, and what it knows.
#[derive(Debug, Clone)]
pub struct Search {
    plan: Plan,
    next: Option<Probe>,
    highest_pass: Option<f64>,
    lowest_fail: Option<f64>,
    confirmed: Option<bool>,
    confirms_failed: u32,
    done: Option<Outcome>,
}

impl Search {
    /// A search that starts at `plan.start`.
    pub fn new(plan: Plan) -> Search {
        Search {
            next: Some(Probe {
                rate: plan.start.min(plan.max),
                phase: Phase::Ramp,
            }),
            plan,
            highest_pass: None,
            lowest_fail: None,
            confirmed: None,
            confirms_failed: 0,
            done: None,
        }
    }

    /// The step to run next; `None` once the search is over (see [`Search::answer`]).
    pub fn next(&self) -> Option<Probe> {
        self.next
    }

    /// The answer so far (final once [`Search::next`] is `None`).
    pub fn answer(&self) -> Answer {
        Answer {
            outcome: self.done.unwrap_or(Outcome::NotConfirmed),
            highest_pass: self.highest_pass,
            lowest_fail: self.lowest_fail,
            precision: self.gap(),
            confirmed: self.confirmed,
        }
    }

    /// The relative gap between the highest passing and the lowest failing rate.
    fn gap(&self) -> Option<f64> {
        match (self.highest_pass, self.lowest_fail) {
            (Some(p), Some(f)) if p > 0.0 => Some((f - p) / p),
            _ => None,
        }
    }

    /// Takes the outcome of the step [`Search::next`] asked for, and decides the one after it.
    pub fn observe(&mut self, passed: bool) {
        let Some(probe) = self.next else { return };
        self.next = match probe.phase {
            Phase::Ramp | Phase::Bisect => self.after_step(probe.rate, passed),
            Phase::Confirm => self.after_confirm(probe.rate, passed),
        };
    }

    fn after_step(&mut self, rate: f64, passed: bool) -> Option<Probe> {
        if passed {
            self.highest_pass = Some(self.highest_pass.map_or(rate, |p| p.max(rate)));
        } else {
            self.lowest_fail = Some(self.lowest_fail.map_or(rate, |f| f.min(rate)));
        }
        match (self.highest_pass, self.lowest_fail) {
            (None, Some(_)) => self.end(Outcome::StartFailed),
            // Still rising: the next ramp step, or the answer at the top.
            (Some(pass), None) if pass >= self.plan.max => self.confirm(pass),
            (Some(pass), None) => Some(Probe {
                rate: (pass * self.plan.growth).min(self.plan.max),
                phase: Phase::Ramp,
            }),
            (Some(pass), Some(_)) if self.gap().is_some_and(|g| g <= self.plan.precision) => {
                self.confirm(pass)
            }
            (Some(pass), Some(fail)) => Some(Probe {
                rate: (pass + fail) / 2.0,
                phase: Phase::Bisect,
            }),
            (None, None) => unreachable!("a step was just observed"),
        }
    }

    fn confirm(&self, rate: f64) -> Option<Probe> {
        Some(Probe {
            rate,
            phase: Phase::Confirm,
        })
    }

    fn end(&mut self, outcome: Outcome) -> Option<Probe> {
        self.done = Some(outcome);
        None
    }

    /// A passing confirmation ends the search; a failing one makes its rate the lowest failing and steps
    /// down by the precision, below the start rate meaning the start failed too.
    fn after_confirm(&mut self, rate: f64, passed: bool) -> Option<Probe> {
        self.confirmed = Some(passed);
        if passed {
            self.highest_pass = Some(rate);
            return self.end(Outcome::Found);
        }
        self.confirms_failed += 1;
        self.lowest_fail = Some(self.lowest_fail.map_or(rate, |f| f.min(rate)));
        let lower = rate / (1.0 + self.plan.precision);
        self.highest_pass = None;
        if self.confirms_failed >= self.plan.confirm_attempts {
            return self.end(Outcome::NotConfirmed);
        }
        if lower < self.plan.start {
            return self.end(Outcome::StartFailed);
        }
        self.confirm(lower)
    }
}

#[cfg(test)]
mod tests;
