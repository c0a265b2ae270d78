//! One publisher's loop, closed or open: the warm-up, the start barrier, then measured publishes claimed from
//! the count every publisher shares, until the count, the duration or an interrupt ends them; and
//! [`Shared`], what the loops of one case share.
//!
//! This is the hot path: nothing here allocates, locks, formats or makes a syscall per publish, beyond what
//! the publisher itself does and the thread's recorder (an uncontended lock) takes.

use super::control::{RunControl, Stop};
use super::events::EventMarks;
use super::schedule::{OpenLoopSchedule, ScheduledStart};
use super::traits::Publisher;
use crate::error::{ErrorKind, PublishError};
use crate::message::{TaskMessage, TaskTemplate};
use crate::record::{Recorder, Recorders};
use crate::scenario::Case;
use crate::stage::spans;
use crate::stage::{Stage, StageClock};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Duration;
use tokio::sync::Barrier;
use tokio::time::Instant;
use tracing::Instrument;

/// A counter on its own cache line, so publishers never contend on it.
#[repr(align(128))]
#[derive(Default)]
struct PaddedCounter(AtomicU64);

/// One publisher's progress, on its own cache line: measured publishes done, and how many of them failed.
#[repr(align(128))]
#[derive(Default)]
pub(super) struct Progress {
    done: AtomicU64,
    failed: AtomicU64,
}

/// (succeeded, failed) over every publisher.
pub(super) fn progress_totals(progress: &[Progress]) -> (u64, u64) {
    progress.iter().fold((0, 0), |(ok, failed), p| {
        let done = p.done.load(Relaxed);
        let f = p.failed.load(Relaxed);
        (ok + done.saturating_sub(f), failed + f)
    })
}

/// What the publishers of one case share; read-mostly.
pub(super) struct Shared {
    warmup_next: PaddedCounter,
    warmup_total: u64,
    /// Claimed on every publish: on its own cache line, away from the read-mostly fields.
    next: PaddedCounter,
    total: u64,
    barrier: Barrier,
    pub(super) start: OnceLock<Instant>,
    duration: Option<Duration>,
    /// Open loop: nanoseconds between scheduled publishes.
    interval_ns: Option<f64>,
    publish_timeout: Duration,
    /// Length of the timeline's intervals.
    pub(super) interval: Duration,
    stage_timing: bool,
    /// Trace one publish call in this many with spans, when profiling.
    trace_every: Option<u64>,
    stop: Stop,
    pub(super) progress: Vec<Progress>,
    template: Arc<TaskTemplate>,
    /// Where every publisher records: one recorder per runtime thread.
    pub(super) recorders: Recorders,
    /// The case's timed events, when it has any: each publisher notes its first success after one ended.
    pub(super) marks: Option<Arc<EventMarks>>,
}

impl Shared {
    /// What the publishers of `case` share, under `control`.
    pub(super) fn new(case: &Case, control: &RunControl) -> Shared {
        Shared {
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
                // Only a view reads the closed intervals: without one, closing an interval costs no more.
                match control.progress.is_some() || control.live.is_some() {
                    true => recorders.keeping_latest(),
                    false => recorders,
                }
            },
            marks: (!case.events.is_empty())
                .then(|| Arc::new(EventMarks::new(&case.events, case.concurrency))),
        }
    }
}

impl Shared {
    /// Measured publishes claimed and not yet ended (read without a lock, once per interval).
    pub(super) fn in_flight(&self) -> u64 {
        let claimed = self.next.0.load(Relaxed).min(self.total);
        let done: u64 = self.progress.iter().map(|p| p.done.load(Relaxed)).sum();
        claimed.saturating_sub(done)
    }
}

/// The runtime's worker threads (one recorder each), or the cores when not on a multi-thread runtime.
fn runtime_threads() -> usize {
    tokio::runtime::Handle::try_current()
        .map(|h| h.metrics().num_workers())
        .unwrap_or_else(|_| std::thread::available_parallelism().map_or(1, |n| n.get()))
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

/// Publishes done at their first poll (never waiting) after which a publisher's loop yields to the runtime.
/// Such a publisher would otherwise never let the other tasks on its thread run. tokio's own streams yield
/// once per 128 operations, but each yield on a multi-thread runtime wakes a parked worker, which then often
/// takes the publisher over: at that rate the raw unix path's one publisher moved between the two threads of
/// a 2-core machine thousands of times a second (docs/benchmarks.md, "How the raw path reaches the socket").
/// 1,024 raw publishes take about 1.5 ms here.
const PUBLISHES_PER_YIELD: u32 = 1024;

/// Counts the publishes a loop made without waiting, and yields to the runtime between two publishes (never
/// inside one, whose latency it would add to) once they reach [`PUBLISHES_PER_YIELD`].
#[derive(Default)]
struct YieldTurns {
    unwaited: u32,
}

impl YieldTurns {
    /// After a publish: `waited` if it had to wait (and so already let the others run).
    #[inline]
    async fn after_publish(&mut self, waited: bool) {
        if waited {
            self.unwaited = 0;
            return;
        }
        self.unwaited += 1;
        if self.unwaited >= PUBLISHES_PER_YIELD {
            self.unwaited = 0;
            tokio::task::yield_now().await;
        }
    }
}

/// One publisher's reusable state, made once before its first publish: a batch of messages (renewed in
/// place for every call), when each message of the current call started, and the stage clock.
struct Batch {
    messages: Vec<TaskMessage>,
    starts: Vec<Instant>,
    clock: StageClock,
}

impl Batch {
    /// Starts a call at `t0`: renews the first `n` messages with fresh ids (the Encode stage), noting when
    /// each started.
    #[inline]
    fn encode(&mut self, n: usize, t0: Instant, span: Option<&tracing::Span>) {
        self.clock.begin(t0);
        self.starts[0] = t0;
        let _in_publish = span.map(|s| s.enter());
        for (k, m) in self.messages[..n].iter_mut().enumerate() {
            if k > 0 {
                self.starts[k] = Instant::now();
            }
            self.clock.time_sync(Stage::Encode, || m.renew());
        }
    }
}

/// One publisher's loop: warm-up, wait for the others, then measured publishes until the count, the
/// duration or an interrupt ends it.
pub(super) async fn publish_loop<P: Publisher>(
    mut publisher: P,
    shared: Arc<Shared>,
    worker: usize,
) {
    let size = publisher.batch_size().max(1);
    let mut batch = Batch {
        messages: (0..size)
            .map(|_| TaskMessage::new(shared.template.clone()))
            .collect(),
        starts: vec![Instant::now(); size],
        clock: StageClock::new(shared.stage_timing),
    };
    let deferred = publisher.deferred();

    // Set when the publisher panicked or is gone: it publishes no more (the others go on).
    let broken = warm_up(&mut publisher, &shared, &mut batch).await;

    shared.barrier.wait().await;
    if !broken {
        publisher.measuring().await;
    }
    let start = *shared.start.get_or_init(Instant::now);
    shared.recorders.start_intervals(start, shared.interval);
    let settle = !broken && measure(&mut publisher, &shared, worker, &mut batch, start).await;
    if deferred && settle {
        // The last messages' acks are part of the measured time.
        publisher.settle_all(shared.publish_timeout).await;
        let now = Instant::now();
        shared.recorders.with(|rec| {
            rec.roll(now);
            publisher.settled(rec);
            rec.mark(now, now);
        });
    }
    publisher.close().await;
}

/// The warm-up: connect, fill caches; nothing recorded but what arrived. Returns whether the publisher
/// panicked or is gone (it publishes no more).
async fn warm_up<P: Publisher>(publisher: &mut P, shared: &Shared, batch: &mut Batch) -> bool {
    let Batch {
        messages, clock, ..
    } = batch;
    let recorders = &shared.recorders;
    let deferred = publisher.deferred();
    let mut broken = false;
    let mut turns = YieldTurns::default();
    while !shared.stop.requested() {
        let (_, n) = claim(&shared.warmup_next.0, shared.warmup_total, messages.len());
        if n == 0 {
            break;
        }
        for m in &mut messages[..n] {
            m.renew();
        }
        let out = tokio::time::timeout(
            shared.publish_timeout,
            unwind_safe(publisher.publish(&messages[..n], clock)),
        )
        .await;
        if let Ok(Err(e)) = &out
            && (e.kind == ErrorKind::Panic || publisher.gone())
        {
            // The publisher is broken or gone: count it, and still reach the barrier so the others go on.
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
        // Whether it waited is not known here: it counts as not having waited.
        turns.after_publish(false).await;
    }
    if deferred {
        // The warm-up's messages settle into a recorder of their own, never into the measured histogram.
        publisher.settle_all(shared.publish_timeout).await;
        let mut warm = Recorder::new(false);
        publisher.settled(&mut warm);
        recorders.with(|rec| rec.warmup_ok += warm.ok);
    }
    broken
}

/// The measured publishes, from `start`. Returns whether any was made and the publisher still works at the
/// end (so a deferred publisher's last messages are worth waiting for).
async fn measure<P: Publisher>(
    publisher: &mut P,
    shared: &Shared,
    worker: usize,
    batch: &mut Batch,
    start: Instant,
) -> bool {
    let size = batch.messages.len();
    let recorders = &shared.recorders;
    let deferred = publisher.deferred();
    let deadline = shared.duration.map(|d| start + d);
    let mut schedule = shared
        .interval_ns
        .map(|interval_ns| OpenLoopSchedule::new(start, interval_ns));
    let mut done = 0u64;
    let mut failed = 0u64;
    let mut measured = false;
    let mut broken = false;
    // Timed events that ended and this publisher has published after (see `EventMarks::published`).
    let mut events_seen = 0;
    let mut turns = YieldTurns::default();

    while !shared.stop.requested() {
        let (first, n) = claim(&shared.next.0, shared.total, size);
        if n == 0 {
            break;
        }
        // Open loop: where the publish sits on the schedule, and how late it really started.
        let (t0, slot, lag) = match &schedule {
            Some(schedule) => match due(schedule, first, deadline, &shared.stop).await {
                Some((t0, slot, lag)) => (t0, Some(slot), Some(lag)),
                None => break,
            },
            None => {
                let t0 = Instant::now();
                if deadline.is_some_and(|d| t0 >= d) {
                    break;
                }
                (t0, None, None)
            }
        };
        // Open loop: the time the publish spent queued behind earlier ones, counted into its latency.
        let queued = slot.map_or(Duration::ZERO, |slot| slot.queued());

        // Sampled on the shared claim index, so the traced share is exact whatever the concurrency.
        let traced = shared
            .trace_every
            .is_some_and(|every| (first / size as u64).is_multiple_of(every));
        let span = traced.then(spans::publish_span);
        batch.clock.set_traced(traced);
        batch.encode(n, t0, span.as_ref());

        // Whether the publish had to wait (and so let the others on its thread run); a traced one counts as not.
        let mut waited = false;
        let out = {
            // Pinned where it is made: the wrappers below hold a pointer to it, not a copy (a publisher's
            // future can be hundreds of bytes, and each move is a memcpy on every publish).
            let publish = std::pin::pin!(publisher.publish(&batch.messages[..n], &mut batch.clock));
            let mut publish = std::pin::pin!(unwind_safe(publish));
            let deadline = t0 + shared.publish_timeout;
            match span {
                Some(span) => tokio::time::timeout_at(deadline, publish.instrument(span)).await,
                // A publish that is done at its first poll (a local write with room in the buffer) never
                // needed its timer: the timeout is armed only when it has to wait, still from t0.
                None => {
                    match std::future::poll_fn(|cx| Poll::Ready(publish.as_mut().poll(cx))).await {
                        Poll::Ready(out) => Ok(out),
                        Poll::Pending => {
                            waited = true;
                            tokio::time::timeout_at(deadline, publish).await
                        }
                    }
                }
            }
        };
        // A successful publish ends with its last stage (one clock read fewer with stage timing on); a failed
        // or cancelled one ends now, whatever stage it stopped in.
        let t1 = match (&out, batch.clock.last_lap()) {
            (Ok(Ok(())), Some(end)) => end,
            _ => Instant::now(),
        };
        if let (Some(schedule), Some(slot)) = (&mut schedule, slot) {
            schedule.served(slot, t1 - t0);
        }
        // A deferred publisher's call returns once its window has room, not when a message succeeded: only
        // the successes it hands over say it published again after an event.
        let succeeded = recorders.with(|rec| {
            if let Some(lag) = lag {
                rec.record_lag(lag);
            }
            let clock = &mut batch.clock;
            match &out {
                Ok(Ok(())) if deferred => {
                    clock.drain(|stage, ns| rec.record_stage(stage, ns, n as u64))
                }
                Ok(Ok(())) => rec.record_publish(&batch.starts[..n], t1, queued, clock),
                Ok(Err(e)) => rec.record_failure(e, n as u64, queued + (t1 - t0), t1),
                Err(_) => rec.record_failure(
                    &PublishError::timed_out(shared.publish_timeout),
                    n as u64,
                    queued + (t1 - t0),
                    t1,
                ),
            }
            let succeeded = if deferred {
                // The acks that came in count in the interval they arrived in.
                rec.roll(t1);
                let before = rec.ok;
                publisher.settled(rec);
                rec.ok > before
            } else {
                matches!(out, Ok(Ok(())))
            };
            rec.mark(t0, t1);
            succeeded
        });
        if let (Some(marks), true) = (&shared.marks, succeeded) {
            marks.published(worker, &mut events_seen, t1 - start);
        }
        measured = true;
        if let Ok(Err(e)) = &out {
            // A publisher that panicked or is gone publishes no more: asking it again would only count
            // the same failure in a loop that never yields (and starve the others on its thread).
            broken = e.kind == ErrorKind::Panic || publisher.gone();
        }
        if !matches!(out, Ok(Ok(()))) {
            batch.clock.discard();
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
        turns.after_publish(waited).await;
    }
    measured && !broken
}

/// Open loop: waits until publish `first` is due. Returns when it started, its place on the schedule and
/// how late it started (ns); `None` if it is due at or past the deadline, or an interrupt came meanwhile.
#[inline]
async fn due(
    schedule: &OpenLoopSchedule,
    first: u64,
    deadline: Option<Instant>,
    stop: &Stop,
) -> Option<(Instant, ScheduledStart, u64)> {
    let mut t0 = Instant::now();
    let intended = schedule.intended(first);
    if deadline.is_some_and(|d| intended >= d) {
        return None;
    }
    if t0 < intended {
        tokio::time::sleep_until(intended).await;
        if stop.requested() {
            return None;
        }
        t0 = Instant::now();
    }
    let lag = t0.saturating_duration_since(intended).as_nanos() as u64;
    Some((t0, schedule.start_of(intended), lag))
}
