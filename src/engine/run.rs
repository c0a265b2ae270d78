//! Runs one case: setup, the publishers, the delivery check and cleanup, each wait racing the interrupt,
//! with a ticker that shows progress while the publishers run.

use super::control::{RunControl, STOP_GRACE, Stop};
use super::events::{CaseEvents, EventMarks, run_schedule};
use super::publish_loop::{Shared, progress_totals, publish_loop};
use super::traits::{IntervalLatency, Target};
use super::watch::Watch;
use crate::error::{ErrorKind, PublishError};
use crate::record::{CaseResult, UNKNOWN_FATE, UnknownFate};
use crate::scenario::Case;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How often the progress view is refreshed.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// The newest closed interval's latency (see [`Recorders::latest_interval`]), once the measured run started.
fn interval_latency(shared: &Shared) -> Option<IntervalLatency> {
    let start = *shared.start.get()?;
    let latest = shared.recorders.latest_interval()?;
    let length = shared.interval;
    let end =
        start + Duration::from_nanos((length.as_nanos() as u64).saturating_mul(latest.index + 1));
    Some(IntervalLatency {
        index: latest.index,
        length,
        p99: latest.p99,
        ended_ago: Instant::now().saturating_duration_since(end),
    })
}

/// Runs `case` on `target` to the end and returns its merged result. Never panics on publisher failures.
///
/// Every wait races the interrupt: setup, the publishers (given [`STOP_GRACE`] to end their publish in flight,
/// then abandoned), the delivery check and the cleanup, so a stalled broker cannot hold the run.
pub async fn run_case<T: Target>(mut target: T, case: &Case, control: &RunControl) -> CaseResult {
    let stop = &control.stop;
    let setup_failed = match stop.or_grace(STOP_GRACE, target.prepare()).await {
        Some(Ok(())) => None,
        Some(Err(e)) => Some(CaseResult::failed_setup(case, e.kind, e.message)),
        None => Some(CaseResult {
            interrupted: true,
            ..CaseResult::empty(case)
        }),
    };
    if let Some(mut r) = setup_failed {
        finish(&mut target, stop, &mut r).await;
        return r;
    }
    let shared = Arc::new(Shared::new(case, control));
    let mut watch = Watch::new(
        case,
        target.processes(),
        target.broker_memory(),
        control.live.as_deref(),
    );
    if let Some(live) = &control.live {
        live.start(case);
    }

    if let Some(view) = &control.progress {
        view.start(&case.name, case.publishes, case.duration);
    }
    let ticker = control.progress.clone().map(|view| {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROGRESS_EVERY).await;
                let (ok, failed) = progress_totals(&shared.progress);
                view.update(ok, failed, interval_latency(&shared));
            }
        })
    });

    let mut workers = JoinSet::new();
    for w in 0..case.concurrency {
        if stop.requested() {
            break;
        }
        workers.spawn(publish_loop(target.publisher(w), shared.clone(), w));
    }
    let events = schedule_events(&target, &shared, stop);
    let mut panics = Vec::new();
    // The sampler runs beside the publishers (once per interval) and stops with them.
    let ended = {
        let joined = stop.or_grace(STOP_GRACE, join_workers(&mut workers, &mut panics));
        tokio::pin!(joined);
        let watching = watch.run(&shared);
        tokio::pin!(watching);
        tokio::select! {
            biased;
            out = &mut joined => out.is_some(),
            () = &mut watching => joined.await.is_some(),
        }
    };
    watch.sample(&shared).await;
    if !ended {
        // Interrupted, and a publish is still stuck (a stalled broker): abandon it where it waits.
        workers.abort_all();
        join_workers(&mut workers, &mut panics).await;
    }
    if let Some(t) = ticker {
        t.abort();
    }
    if let Some(view) = &control.progress {
        let (ok, failed) = progress_totals(&shared.progress);
        view.update(ok, failed, interval_latency(&shared));
        view.finish();
    }

    let mut result = CaseResult::merge(case, &mut shared.recorders.take_all());
    if let Some((schedule, sink, marks)) = events {
        schedule.abort();
        // An event's begin may be a blocking command (rabbitmqctl stop_app) that the abort cannot cut short:
        // wait for it to return, so an event is never ended before (or while) it begins.
        let _ = schedule.await;
        marks.end_unfinished(sink.as_ref());
        result.events = marks.results();
    }
    result.resources = watch.into_series();
    for p in panics {
        result.errors.add(
            &PublishError::new(ErrorKind::Panic, format!("a publisher panicked: {p}")),
            1,
        );
    }
    result.interrupted = control.stopped();
    let expected = result.publishes_ok + result.warmup_ok;
    // Abandoned publishes may or may not have arrived, so nothing can be checked after them.
    let checked = match ended {
        true => {
            stop.or_grace(STOP_GRACE, delivered(&mut target, expected))
                .await
        }
        false => None,
    };
    // A stop during the delivery check makes the case an interrupted one too.
    result.interrupted = control.stopped();
    count_delivered(&mut result, checked, expected);
    finish(&mut target, stop, &mut result).await;
    result.cpu_folded = target.cpu_profile();
    result.pywall_folded = target.pywall_profile();
    if let Some(live) = &control.live {
        live.finish(&result);
    }
    result
}

/// A case's timed events under way: the schedule's task, what carries them out, and what happened.
type ScheduledEvents = (
    tokio::task::JoinHandle<()>,
    Arc<dyn CaseEvents>,
    Arc<EventMarks>,
);

/// Starts the case's timed events on the target's [`CaseEvents`], if it has both.
fn schedule_events<T: Target>(
    target: &T,
    shared: &Arc<Shared>,
    stop: &Stop,
) -> Option<ScheduledEvents> {
    let marks = shared.marks.clone()?;
    let sink = target.events()?;
    let s = shared.clone();
    let start = Arc::new(move || s.start.get().copied());
    let schedule = tokio::spawn(run_schedule(
        sink.clone(),
        marks.clone(),
        start,
        stop.clone(),
    ));
    Some((schedule, sink, marks))
}

/// Adds the delivery check's outcome to `result`: what arrived, a shortfall or surplus against the `expected`
/// successful publishes (warm-up included) as `delivery_mismatch` errors, or a note that it was skipped
/// (`checked` is `None` after an interrupt) or failed (`delivered is not verified: ...`, beside its error).
fn count_delivered(
    result: &mut CaseResult,
    checked: Option<Result<Option<u64>, PublishError>>,
    expected: u64,
) {
    match checked {
        None => result.notes.push(
            "the delivery check was skipped: the run was interrupted before it finished".into(),
        ),
        Some(Ok(Some(arrived))) => {
            result.delivered = Some(arrived.saturating_sub(result.warmup_ok));
            // Publishes that failed after they may have been sent count on neither side.
            let unknown: u64 = result
                .errors
                .by_kind()
                .iter()
                .filter(|(k, _, _)| UNKNOWN_FATE.contains(k))
                .map(|(_, n, _)| n)
                .sum();
            if unknown > 0 {
                result.unknown_fate = Some(UnknownFate {
                    publishes: unknown,
                    delivered: Some(arrived.saturating_sub(expected).min(unknown)),
                });
            }
            if arrived < expected || arrived > expected + unknown {
                let missing = if arrived < expected {
                    expected - arrived
                } else {
                    arrived - expected - unknown
                };
                let besides = match unknown {
                    0 => String::new(),
                    n => format!(
                        " (and {n} failed publishes whose fate is unknown may have arrived)"
                    ),
                };
                result.errors.add(
                    &PublishError::new(ErrorKind::DeliveryMismatch,
                        format!(
                            "the backend received {arrived} messages but {expected} publishes (warm-up included) reported success{besides}"
                        ),
                    ),
                    missing,
                );
            }
        }
        Some(Ok(None)) => {}
        Some(Err(e)) => {
            // The error's count may merge into earlier ones of its kind (a broker that died fails the
            // publishes and the check alike), so the reason is said where `delivered` is read.
            result
                .notes
                .push(format!("delivered is not verified: {}", e.message));
            result.errors.add(&e, 1);
        }
    }
}

/// How long a delivery check may take before it counts as a `check` error.
const DELIVERY_CHECK_LIMIT: Duration = Duration::from_secs(60);

/// The backend's count of what arrived, bounded by [`DELIVERY_CHECK_LIMIT`].
async fn delivered<T: Target>(target: &mut T, expected: u64) -> Result<Option<u64>, PublishError> {
    match tokio::time::timeout(DELIVERY_CHECK_LIMIT, target.delivered(expected)).await {
        Ok(out) => out,
        Err(_) => Err(PublishError::new(
            ErrorKind::Check,
            format!(
                "the delivery check (counting what arrived at the backend) did not finish within {}",
                humantime::format_duration(DELIVERY_CHECK_LIMIT)
            ),
        )),
    }
}

/// Cleans up after a case (cut short by an interrupt, noted) and adds the backend's notes and facts.
async fn finish<T: Target>(target: &mut T, stop: &Stop, result: &mut CaseResult) {
    if stop.or_grace(STOP_GRACE, target.finish()).await.is_none() {
        result.notes.push(
            "cleanup was cut short by the interrupt: the backend may still hold this case's messages"
                .into(),
        );
    }
    result.notes.extend(target.notes());
    result.facts = target.facts();
}

/// Waits for every publisher task; a panic is kept as a message, a task abandoned at an interrupt is not.
async fn join_workers(workers: &mut JoinSet<()>, panics: &mut Vec<String>) {
    while let Some(joined) = workers.join_next().await {
        if let Err(e) = joined
            && e.is_panic()
        {
            panics.push(e.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_delivery_check_says_why_in_the_notes() {
        let case = crate::scenario::parse(
            "name = \"d\"\n[[case]]\nname = \"c\"\nbackend = \"unix\"\npath = \"raw\"\n",
            "d.toml",
        )
        .unwrap()
        .cases
        .remove(0);
        let mut result = CaseResult::empty(&case);
        let why = PublishError::new(ErrorKind::Unreachable, "connection refused (os error 111)");
        count_delivered(&mut result, Some(Err(why)), 10);
        assert_eq!(result.delivered, None);
        assert_eq!(
            result.notes,
            ["delivered is not verified: connection refused (os error 111)"]
        );
        assert_eq!(result.errors.total(), 1);
    }

    #[test]
    fn publishes_of_unknown_fate_count_on_neither_side_of_the_delivered_check() {
        let case = crate::scenario::test_case("c");
        let check = |arrived: u64| {
            let mut result = CaseResult::empty(&case);
            result.publishes_ok = 10;
            let timeout = PublishError::new(ErrorKind::Timeout, "a publish did not complete");
            result.errors.add(&timeout, 5);
            count_delivered(&mut result, Some(Ok(Some(arrived))), 10);
            let mismatch = result
                .errors
                .by_kind()
                .iter()
                .find(|(k, _, _)| *k == ErrorKind::DeliveryMismatch)
                .map_or(0, |(_, n, _)| *n);
            (result.unknown_fate, mismatch)
        };
        let fate = |delivered| {
            Some(UnknownFate {
                publishes: 5,
                delivered: Some(delivered),
            })
        };
        assert_eq!(check(10), (fate(0), 0));
        assert_eq!(check(13), (fate(3), 0));
        assert_eq!(check(15), (fate(5), 0));
        // More than every success and every unknown one: a surplus; fewer than the successes: a loss.
        assert_eq!(check(16), (fate(5), 1));
        assert_eq!(check(8), (fate(0), 2));
    }
}
