//! The engine: drives a case's publishers in a closed or open loop and records every publish.
//!
//! It knows nothing of backends (it sees a [`Target`] and its [`Publisher`]s) nor of reporting (it returns a
//! [`CaseResult`] and reports progress through [`ProgressView`]).

#[cfg(test)]
pub(crate) mod fake;

use crate::error::{ErrorKind, PublishError};
use crate::message::{TaskMessage, TaskTemplate};
use crate::record::{CaseResult, Recorder, Recorders};
use crate::scenario::Case;
use crate::stage::spans;
use crate::stage::{Stage, StageClock};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{Barrier, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

/// How often the progress view is refreshed.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// One publisher: a connection (or none yet) and the code path that pushes messages through it.
///
/// A publish may be cancelled at any await point (by `publish_timeout` or an interrupt); the next call must
/// notice and recover (e.g. drop a stream a frame was half written to).
pub trait Publisher: Send + 'static {
    /// How many messages one call to [`Publisher::publish`] carries (a pipeline); 1 for most paths.
    fn batch_size(&self) -> usize {
        1
    }

    /// Publishes every message of `batch`, timing each stage on `clock`; returns when all are done.
    fn publish(
        &mut self,
        batch: &[TaskMessage],
        clock: &mut StageClock,
    ) -> impl Future<Output = Result<(), PublishError>> + Send;

    /// Called once after the warm-up and the start barrier, just before the first measured publish (a
    /// Python publisher attaches its profiler here, so imports and warm-up are not sampled).
    fn measuring(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Closes what the publisher holds, after its last publish (not timed).
    fn close(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Whether a message is done only after its publish call returned (a confirm window: at its own ack).
    /// The engine then records a call's stages only, and each message when [`Publisher::settled`] hands
    /// it over.
    fn deferred(&self) -> bool {
        false
    }

    /// A deferred publisher's messages settled since the last call, into `rec`: each one's latency (and
    /// `ok`) or its error.
    fn settled(&mut self, _rec: &mut Recorder) {}

    /// A deferred publisher waits up to `within` for every message it sent to settle (after the warm-up
    /// and after the last measured publish); what is still unsettled then counts as an error.
    fn settle_all(&mut self, _within: Duration) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// What a case publishes to: it sets the backend up, makes publishers, and counts what arrived.
pub trait Target: Send + 'static {
    type Publisher: Publisher;

    /// Gets the backend ready (start a sink, declare and measure a queue).
    fn prepare(&mut self) -> impl Future<Output = Result<(), PublishError>> + Send;

    /// A publisher for worker `worker`; it connects on its first publish.
    fn publisher(&self, worker: usize) -> Self::Publisher;

    /// After every publisher closed: how many messages arrived since `prepare`, or `None` if the backend
    /// cannot tell. `expected` publishes reported success, so a backend may wait for that many to land.
    fn delivered(
        &mut self,
        expected: u64,
    ) -> impl Future<Output = Result<Option<u64>, PublishError>> + Send;

    /// Cleans up (purge queues, stop the sink).
    fn finish(&mut self) -> impl Future<Output = ()> + Send;

    /// Things a reader of this case's numbers must know.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }

    /// A CPU profile the target recorded itself (folded stacks in ns), after `finish`; `None` for targets
    /// whose publishers taskbench's spans profile.
    fn cpu_profile(&mut self) -> Option<String> {
        None
    }

    /// A wall-clock profile the target sampled itself, waiting included (folded stacks in ns), after
    /// `finish`: py-spy's idle-inclusive samples of a celery or kombu case's harnesses, the `pywall` view;
    /// `None` for every other target.
    fn pywall_profile(&mut self) -> Option<String> {
        None
    }
}

/// Receives a running case's progress (the terminal shows it as a bar).
pub trait ProgressView: Send + Sync {
    /// A case starts; `total` measured publishes if bounded by count, `duration` if bounded by time.
    fn start(&self, case: &str, total: Option<u64>, duration: Option<Duration>);
    /// Measured publishes so far: `ok` succeeded, `failed` did not; and the latency of the newest interval
    /// of the timeline closed with successes in it (`None` until one is).
    fn update(&self, ok: u64, failed: u64, latest: Option<IntervalLatency>);
    /// The case ended.
    fn finish(&self);
}

/// The latency of a running case's newest closed interval with successes in it, as a progress view gets it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntervalLatency {
    /// The interval's index in the timeline (`CaseResult::timeline`).
    pub index: u64,
    /// The timeline's interval length.
    pub length: Duration,
    /// p99 of the interval's successful publishes (ns).
    pub p99: u64,
    /// How long ago the interval ended: under `length` while publishes keep ending, growing past it when
    /// nothing newer closed (a stall, or publishes that end seldom).
    pub ended_ago: Duration,
}

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

/// The interrupt: a flag the publish loops read between publishes, and a wake-up for the few places that
/// wait on it (one waiter per case, never one per publish).
#[derive(Clone, Default)]
pub struct Stop(Arc<StopInner>);

#[derive(Default)]
struct StopInner {
    flag: AtomicBool,
    wake: Notify,
}

impl Stop {
    /// Asks the run to stop: the running case ends within [`STOP_GRACE`] and no other starts.
    pub fn request(&self) {
        self.0.flag.store(true, Relaxed);
        self.0.wake.notify_waiters();
    }

    /// Whether a stop was asked for.
    #[inline]
    pub fn requested(&self) -> bool {
        self.0.flag.load(Relaxed)
    }

    /// Resolves once a stop is asked for (at once if it already was).
    pub async fn wait(&self) {
        let woken = self.0.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if self.requested() {
            return;
        }
        woken.await;
    }

    /// Runs `work` to its end, unless a stop comes first: then `work` gets `grace` more to finish (its
    /// output is `None` if it did not).
    pub async fn or_grace<F: Future>(&self, grace: Duration, work: F) -> Option<F::Output> {
        tokio::pin!(work);
        tokio::select! {
            biased;
            out = &mut work => Some(out),
            () = self.wait() => tokio::time::timeout(grace, work).await.ok(),
        }
    }
}

/// How long the work in flight (publishes, a delivery check, cleanup) may go on after an interrupt before it
/// is abandoned: the run ends well within a second of Ctrl-C, whatever a stalled broker does.
pub const STOP_GRACE: Duration = Duration::from_millis(300);

/// Shared by every case of a run: the interrupt and where progress goes.
#[derive(Clone)]
pub struct RunControl {
    pub stop: Stop,
    pub progress: Option<Arc<dyn ProgressView>>,
    /// Trace sampled publishes with spans (`--profile cpu`); a subscriber must be collecting them.
    pub trace_spans: bool,
}

impl RunControl {
    pub fn new() -> Self {
        RunControl {
            stop: Stop::default(),
            progress: None,
            trace_spans: false,
        }
    }

    pub fn stopped(&self) -> bool {
        self.stop.requested()
    }
}

impl Default for RunControl {
    fn default() -> Self {
        Self::new()
    }
}

/// A counter on its own cache line, so publishers never contend on it.
#[repr(align(128))]
#[derive(Default)]
struct PaddedCounter(AtomicU64);

/// One publisher's progress, on its own cache line: measured publishes done, and how many of them failed.
#[repr(align(128))]
#[derive(Default)]
struct Progress {
    done: AtomicU64,
    failed: AtomicU64,
}

/// (succeeded, failed) over every publisher.
fn progress_totals(progress: &[Progress]) -> (u64, u64) {
    progress.iter().fold((0, 0), |(ok, failed), p| {
        let done = p.done.load(Relaxed);
        let f = p.failed.load(Relaxed);
        (ok + done.saturating_sub(f), failed + f)
    })
}

/// What the publishers of one case share; read-mostly.
struct Shared {
    warmup_next: PaddedCounter,
    warmup_total: u64,
    /// Claimed on every publish: on its own cache line, away from the read-mostly fields.
    next: PaddedCounter,
    total: u64,
    barrier: Barrier,
    start: OnceLock<Instant>,
    duration: Option<Duration>,
    /// Open loop: nanoseconds between scheduled publishes.
    interval_ns: Option<f64>,
    publish_timeout: Duration,
    /// Length of the timeline's intervals.
    interval: Duration,
    stage_timing: bool,
    /// Trace one publish call in this many with spans, when profiling.
    trace_every: Option<u64>,
    stop: Stop,
    progress: Vec<Progress>,
    template: Arc<TaskTemplate>,
    /// Where every publisher records: one recorder per runtime thread.
    recorders: Recorders,
}

/// Claims up to `want` consecutive indices below `total`; returns (first index, how many).
#[inline]
fn claim(next: &AtomicU64, total: u64, want: usize) -> (u64, usize) {
    let first = next.fetch_add(want as u64, Relaxed);
    if first >= total {
        return (first, 0);
    }
    (first, (total - first).min(want as u64) as usize)
}

/// When publish `i` of an open loop is due, counted from the schedule's start.
pub fn intended_offset(i: u64, interval_ns: f64) -> Duration {
    Duration::from_nanos((i as f64 * interval_ns) as u64)
}

/// Runs one publish call, turning a panic in the publisher into a `panic` error instead of losing the worker
/// (and, before the barrier, hanging the others).
async fn unwind_safe<F: Future<Output = Result<(), PublishError>>>(
    publish: F,
) -> Result<(), PublishError> {
    use futures_util::FutureExt;
    match std::panic::AssertUnwindSafe(publish).catch_unwind().await {
        Ok(out) => out,
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(PublishError::new(
                ErrorKind::Panic,
                format!("the publisher panicked: {why}"),
            ))
        }
    }
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
    let shared = Arc::new(Shared {
        warmup_next: PaddedCounter::default(),
        warmup_total: case.warmup,
        next: PaddedCounter::default(),
        total: case.publishes.unwrap_or(u64::MAX),
        barrier: Barrier::new(case.concurrency),
        start: OnceLock::new(),
        duration: case.duration,
        interval_ns: case.rate.map(|r| 1e9 / r),
        publish_timeout: case.publish_timeout,
        interval: case.interval,
        stage_timing: case.stage_timing,
        trace_every: control.trace_spans.then(|| case.sample_interval()),
        stop: control.stop.clone(),
        progress: (0..case.concurrency).map(|_| Progress::default()).collect(),
        template: case.task.clone(),
        recorders: {
            let recorders = Recorders::new(runtime_threads(), case.rate.is_some());
            // Only a view reads the newest interval: without one, closing an interval costs no more.
            match control.progress {
                Some(_) => recorders.keeping_latest(),
                None => recorders,
            }
        },
    });

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
    let mut panics = Vec::new();
    let ended = stop
        .or_grace(STOP_GRACE, join_workers(&mut workers, &mut panics))
        .await
        .is_some();
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
    match checked {
        None => result.notes.push(
            "the delivery check was skipped: the run was interrupted before it finished".into(),
        ),
        Some(Ok(Some(arrived))) => {
            result.delivered = Some(arrived.saturating_sub(result.warmup_ok));
            if arrived != expected {
                let missing = expected.abs_diff(arrived);
                result.errors.add(
                    &PublishError::new(ErrorKind::DeliveryMismatch,
                        format!(
                            "the backend received {arrived} messages but {expected} publishes (warm-up included) reported success"
                        ),
                    ),
                    missing,
                );
            }
        }
        Some(Ok(None)) => {}
        Some(Err(e)) => result.errors.add(&e, 1),
    }
    finish(&mut target, stop, &mut result).await;
    result.cpu_folded = target.cpu_profile();
    result.pywall_folded = target.pywall_profile();
    result
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

/// Cleans up after a case (cut short by an interrupt, noted) and adds the backend's notes.
async fn finish<T: Target>(target: &mut T, stop: &Stop, result: &mut CaseResult) {
    if stop.or_grace(STOP_GRACE, target.finish()).await.is_none() {
        result.notes.push(
            "cleanup was cut short by the interrupt: the backend may still hold this case's messages"
                .into(),
        );
    }
    result.notes.extend(target.notes());
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

/// One publisher's loop: warm-up, wait for the others, then measured publishes until the count, the
/// duration or an interrupt ends it.
async fn publish_loop<P: Publisher>(mut publisher: P, shared: Arc<Shared>, worker: usize) {
    let batch = publisher.batch_size().max(1);
    let mut messages: Vec<TaskMessage> = (0..batch)
        .map(|_| TaskMessage::new(shared.template.clone()))
        .collect();
    let mut starts = vec![Instant::now(); batch];
    let mut clock = StageClock::new(shared.stage_timing);
    let recorders = &shared.recorders;
    let deferred = publisher.deferred();

    // Set when the publisher panicked: it publishes no more (the others go on).
    let mut broken = false;

    // Warm-up: connect, fill caches; nothing recorded but what arrived.
    while !shared.stop.requested() {
        let (_, n) = claim(&shared.warmup_next.0, shared.warmup_total, batch);
        if n == 0 {
            break;
        }
        for m in &mut messages[..n] {
            m.renew();
        }
        let out = tokio::time::timeout(
            shared.publish_timeout,
            unwind_safe(publisher.publish(&messages[..n], &mut clock)),
        )
        .await;
        if let Ok(Err(e)) = &out
            && e.kind == ErrorKind::Panic
        {
            // The publisher is broken: count it, and still reach the barrier so the others go on.
            recorders.with(|rec| rec.errors.add(e, n as u64));
            broken = true;
            break;
        }
        if let Ok(Ok(())) = out
            && !deferred
        {
            recorders.with(|rec| rec.warmup_ok += n as u64);
        }
        clock.discard();
    }
    if deferred {
        // The warm-up's messages settle into a recorder of their own, never into the measured histogram.
        publisher.settle_all(shared.publish_timeout).await;
        let mut warm = Recorder::new(false);
        publisher.settled(&mut warm);
        recorders.with(|rec| rec.warmup_ok += warm.ok);
    }

    shared.barrier.wait().await;
    if !broken {
        publisher.measuring().await;
    }
    let start = *shared.start.get_or_init(Instant::now);
    recorders.start_intervals(start, shared.interval);
    let deadline = shared.duration.map(|d| start + d);
    let mut done = 0u64;
    let mut failed = 0u64;
    let mut measured = false;
    // Open loop: when this publisher would have been free had every publish started on schedule.
    let mut free_at = start;

    while !broken && !shared.stop.requested() {
        let (first, n) = claim(&shared.next.0, shared.total, batch);
        if n == 0 {
            break;
        }
        let mut t0 = Instant::now();
        // Open loop: time the publish spent queued behind earlier ones, counted into its latency.
        let mut queued = Duration::ZERO;
        let mut slot = None;
        let mut lag = None;
        if let Some(interval_ns) = shared.interval_ns {
            let intended = start + intended_offset(first, interval_ns);
            if deadline.is_some_and(|d| intended >= d) {
                break;
            }
            if t0 < intended {
                tokio::time::sleep_until(intended).await;
                if shared.stop.requested() {
                    break;
                }
                t0 = Instant::now();
            }
            lag = Some(t0.saturating_duration_since(intended).as_nanos() as u64);
            // Lindley's recursion on the measured service times: a publish starts at its intended time, or
            // when the previous one would have finished if nothing had started late. Slow publishes delay
            // the ones behind them (no coordinated omission); the timer's own lateness delays nothing.
            let virtual_start = intended.max(free_at);
            queued = virtual_start - intended;
            slot = Some(virtual_start);
        } else if deadline.is_some_and(|d| t0 >= d) {
            break;
        }

        // Sampled on the shared claim index, so the traced share is exact whatever the concurrency.
        let traced = shared
            .trace_every
            .is_some_and(|every| (first / batch as u64).is_multiple_of(every));
        let span = traced.then(spans::publish_span);
        clock.set_traced(traced);
        clock.begin(t0);
        starts[0] = t0;
        {
            let _in_publish = span.as_ref().map(|s| s.enter());
            for (k, m) in messages[..n].iter_mut().enumerate() {
                if k > 0 {
                    starts[k] = Instant::now();
                }
                clock.time_sync(Stage::Encode, || m.renew());
            }
        }

        let publish = unwind_safe(publisher.publish(&messages[..n], &mut clock));
        let out = match span {
            Some(span) => {
                tokio::time::timeout_at(t0 + shared.publish_timeout, publish.instrument(span)).await
            }
            // timeout_at from t0 saves the clock read `timeout` would make.
            None => tokio::time::timeout_at(t0 + shared.publish_timeout, publish).await,
        };
        // A successful publish ends with its last stage (one clock read fewer with stage timing on); a failed
        // or cancelled one ends now, whatever stage it stopped in.
        let t1 = match (&out, clock.last_lap()) {
            (Ok(Ok(())), Some(end)) => end,
            _ => Instant::now(),
        };
        if let Some(virtual_start) = slot {
            free_at = virtual_start + (t1 - t0);
        }
        recorders.with(|rec| {
            if let Some(lag) = lag {
                rec.record_lag(lag);
            }
            match &out {
                Ok(Ok(())) if deferred => {
                    clock.drain(|stage, ns| rec.record_stage(stage, ns, n as u64))
                }
                Ok(Ok(())) => rec.record_publish(&starts[..n], t1, queued, &mut clock),
                Ok(Err(e)) => rec.record_failure(e, n as u64, queued + (t1 - t0), t1),
                Err(_) => rec.record_failure(
                    &timeout_error(shared.publish_timeout),
                    n as u64,
                    queued + (t1 - t0),
                    t1,
                ),
            }
            if deferred {
                // The acks that came in count in the interval they arrived in.
                rec.roll(t1);
                publisher.settled(rec);
            }
            rec.mark(t0, t1);
        });
        measured = true;
        if let Ok(Err(e)) = &out {
            broken = e.kind == ErrorKind::Panic;
        }
        if !matches!(out, Ok(Ok(()))) {
            clock.discard();
        }
        done += n as u64;
        if !matches!(out, Ok(Ok(()))) {
            failed += n as u64;
            shared.progress[worker].failed.store(failed, Relaxed);
        }
        shared.progress[worker].done.store(done, Relaxed);
        if broken {
            break;
        }
    }
    if deferred && !broken && measured {
        // The last messages' acks are part of the measured time.
        publisher.settle_all(shared.publish_timeout).await;
        let now = Instant::now();
        recorders.with(|rec| {
            rec.roll(now);
            publisher.settled(rec);
            rec.mark(now, now);
        });
    }
    publisher.close().await;
}

/// A publish that did not finish within `publish_timeout` (built only when one times out).
fn timeout_error(publish_timeout: Duration) -> PublishError {
    PublishError::new(
        ErrorKind::Timeout,
        format!(
            "a publish did not complete within publish_timeout ({})",
            humantime::format_duration(publish_timeout)
        ),
    )
}

/// The runtime's worker threads (one recorder each), or the cores when not on a multi-thread runtime.
fn runtime_threads() -> usize {
    tokio::runtime::Handle::try_current()
        .map(|h| h.metrics().num_workers())
        .unwrap_or_else(|_| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

#[cfg(test)]
mod tests;
