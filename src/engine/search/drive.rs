//! Runs one case's search: each step the [`Search`] asks for as an open-loop case at its rate (warm-up,
//! then the step's length), watched by a [`StepWatch`] that ends a step early once its backlog grows, and
//! judged into a row. Any function that runs a case will do, so tests drive it on virtual time.

use super::observe::{Budget, Observation, Verdict, backlog_growing};
use super::{Answer, Phase, Plan, Probe, Search};
use crate::engine::{IntervalLatency, ProgressView, RunControl, Stop};
use crate::record::CaseResult;
use crate::scenario::Case;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long each kind of step runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLengths {
    pub step: Duration,
    pub confirm: Duration,
}

/// One step of a search, as its row shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRun {
    /// From 1, across the case's steps.
    pub index: usize,
    pub probe: Probe,
    /// How long it was planned to run.
    pub planned: Duration,
    pub observation: Observation,
    pub verdict: Verdict,
}

/// One case's search: its steps, the answer, and the results behind the answer and the first failure.
#[derive(Debug, Clone)]
pub struct CaseSearch {
    pub case: String,
    pub steps: Vec<StepRun>,
    pub answer: Answer,
    /// The confirmation's result at the answer (the last confirmation tried when none passed).
    pub at_answer: Option<CaseResult>,
    /// The first step that failed (its stage breakdown shows what grew first).
    pub first_failing: Option<CaseResult>,
    /// The search was interrupted: the answer is what was known then.
    pub interrupted: bool,
}

/// `case` as one step of a search: open loop at the probe's rate for the step's length (the warm-up the
/// scenario sets before it), with a timeline of ten intervals, so a backlog shows as it builds.
pub fn step_case(case: &Case, probe: Probe, lengths: StepLengths) -> Case {
    let length = match probe.phase {
        Phase::Confirm => lengths.confirm,
        Phase::Ramp | Phase::Bisect => lengths.step,
    };
    let mut step = case.clone();
    step.rate = Some(probe.rate);
    step.publishes = None;
    step.duration = Some(length);
    step.interval = (length / 10).max(Duration::from_millis(10));
    step
}

/// Searches `case`'s highest rate within `budget`: `run` runs one step (a case, under a control whose
/// stop the step's watcher may request); `on_step` sees each row as it is judged. An interrupt of
/// `control` ends the search with what is known.
pub async fn search_case<F, Fut>(
    case: &Case,
    plan: Plan,
    budget: &Budget,
    lengths: StepLengths,
    control: &RunControl,
    mut run: F,
    on_step: &mut dyn FnMut(&StepRun),
) -> CaseSearch
where
    F: FnMut(Case, RunControl) -> Fut,
    Fut: Future<Output = CaseResult>,
{
    let mut search = Search::new(plan);
    let mut out = CaseSearch {
        case: case.name.clone(),
        steps: Vec::new(),
        answer: search.answer(),
        at_answer: None,
        first_failing: None,
        interrupted: false,
    };
    while let Some(probe) = search.next() {
        if control.stopped() {
            out.interrupted = true;
            break;
        }
        let step = step_case(case, probe, lengths);
        let planned = step.duration.expect("a step has a length");
        let watch = Arc::new(StepWatch::new(
            probe.rate,
            planned,
            control.progress.clone(),
        ));
        let step_control = RunControl {
            stop: watch.stop.clone(),
            progress: Some(watch.clone()),
            trace_spans: false,
            live: control.live.clone(),
        };
        // The run's interrupt ends the step too.
        let (outer, inner) = (control.stop.clone(), watch.stop.clone());
        let forward = tokio::spawn(async move {
            outer.wait().await;
            inner.request();
        });
        let mut result = run(step, step_control).await;
        forward.abort();
        if control.stopped() {
            out.interrupted = true;
            break;
        }
        let stopped_early = watch.fired.load(Relaxed);
        result.interrupted = false;
        let observation = Observation::of(&result, probe.rate, planned, stopped_early);
        let verdict = observation.judge(budget);
        let passed = verdict.passed();
        let row = StepRun {
            index: out.steps.len() + 1,
            probe,
            planned,
            observation,
            verdict,
        };
        on_step(&row);
        out.steps.push(row);
        if !passed && out.first_failing.is_none() {
            out.first_failing = Some(result.clone());
        }
        if probe.phase == Phase::Confirm {
            out.at_answer = Some(result);
        }
        search.observe(passed);
    }
    out.answer = search.answer();
    out
}

/// Watches a running step: forwards its progress to the terminal's view and requests the step's stop once
/// the publishes due but not done grow through it ([`backlog_growing`]): a backlog building fails the step
/// early rather than after its whole length.
pub struct StepWatch {
    offered: f64,
    planned: Duration,
    inner: Option<Arc<dyn ProgressView>>,
    /// The step's own stop (the run's interrupt is forwarded to it).
    pub stop: Stop,
    /// The watcher ended the step.
    pub fired: AtomicBool,
    samples: Mutex<Vec<(f64, f64)>>,
}

impl StepWatch {
    pub fn new(offered: f64, planned: Duration, inner: Option<Arc<dyn ProgressView>>) -> Self {
        StepWatch {
            offered,
            planned,
            inner,
            stop: Stop::default(),
            fired: AtomicBool::new(false),
            samples: Mutex::new(Vec::new()),
        }
    }
}

impl ProgressView for StepWatch {
    fn start(&self, case: &str, total: Option<u64>, duration: Option<Duration>) {
        if let Some(v) = &self.inner {
            v.start(case, total, duration);
        }
    }

    fn update(&self, ok: u64, failed: u64, latest: Option<IntervalLatency>) {
        if let Some(v) = &self.inner {
            v.update(ok, failed, latest);
        }
        // The measured start, from the newest closed interval: unknown until one closed.
        let Some(latest) = latest else { return };
        let since = latest.length * (latest.index as u32 + 1) + latest.ended_ago;
        let t = since.as_secs_f64();
        let due = self.offered * t.min(self.planned.as_secs_f64());
        let mut samples = self.samples.lock().expect("not poisoned");
        samples.push((t, due - (ok + failed) as f64));
        if since >= self.planned.mul_f64(0.3)
            && backlog_growing(&samples, self.offered)
            && !self.fired.swap(true, Relaxed)
        {
            self.stop.request();
        }
    }

    fn finish(&self) {
        if let Some(v) = &self.inner {
            v.finish();
        }
    }
}
