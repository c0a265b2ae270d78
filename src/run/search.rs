//! `taskbench search` in-process: every case of a scenario searched in order on one async runtime (each
//! step a real case through `backend::run_case`), with the interrupt and callbacks per step and per case.
//! The search itself is `engine::search`; the run folder and the table are `report::search`.

use crate::backend;
use crate::engine::search::{
    Budget, CaseSearch, ErrorBudget, Plan, StepLengths, StepRun, search_case,
};
use crate::engine::{ProgressView, RunControl};
use crate::scenario::threshold::{Metric, Threshold};
use crate::scenario::{Case, Scenario};
use std::sync::Arc;

/// How to search, beyond what the scenario says.
pub struct SearchOptions {
    pub plan: Plan,
    pub lengths: StepLengths,
    /// Each case's budget, in the scenario's order (see [`case_budget`]).
    pub budgets: Vec<Budget>,
    /// Where a running step's progress goes.
    pub progress: Option<Arc<dyn ProgressView>>,
    /// End the search on Ctrl-C / SIGTERM (a second one exits with 130 at once).
    pub handle_signals: bool,
    pub control: RunControl,
}

/// A case's budget: the command line's latency thresholds, else the case's own (from the scenario); the
/// command line's error budget, else the case's `errors` threshold, else none at all (`== 0`). `None` when
/// neither sets a latency threshold.
pub fn case_budget(
    case: &Case,
    latency: &[Threshold],
    errors: Option<&ErrorBudget>,
) -> Option<Budget> {
    let latency: Vec<Threshold> = match latency {
        [] => case
            .thresholds
            .iter()
            .filter(|t| t.metric.quantile().is_some())
            .cloned()
            .collect(),
        given => given.to_vec(),
    };
    if latency.is_empty() {
        return None;
    }
    let errors = errors.cloned().unwrap_or_else(|| {
        case.thresholds
            .iter()
            .find(|t| t.metric == Metric::Errors)
            .map_or_else(ErrorBudget::default, |t| ErrorBudget::Count(t.clone()))
    });
    Some(Budget { latency, errors })
}

/// What a search measured: each case's, in order.
pub struct SearchOutcome {
    pub cases: Vec<CaseSearch>,
    pub interrupted: bool,
}

/// Searches every case of `scenario` in order, calling `on_step` after each step and `on_case` after each
/// case. Only a failure to start the async runtime is an error.
pub fn search(
    scenario: &Scenario,
    options: SearchOptions,
    on_step: &mut dyn FnMut(&Case, &StepRun),
    on_case: &mut dyn FnMut(&CaseSearch, &[CaseSearch]),
) -> std::io::Result<SearchOutcome> {
    super::runtime()?.block_on(async {
        let mut control = options.control;
        control.progress = options.progress;
        if options.handle_signals {
            super::handle_signals(&control.stop);
        }
        let mut cases: Vec<CaseSearch> = Vec::new();
        for (case, budget) in scenario.cases.iter().zip(&options.budgets) {
            if control.stopped() {
                break;
            }
            let found = search_case(
                case,
                options.plan,
                budget,
                options.lengths,
                &control,
                |step, control| async move { backend::run_case(&step, &control).await },
                &mut |row| on_step(case, row),
            )
            .await;
            cases.push(found);
            on_case(cases.last().expect("just pushed"), &cases);
        }
        Ok(SearchOutcome {
            interrupted: control.stopped(),
            cases,
        })
    })
}
