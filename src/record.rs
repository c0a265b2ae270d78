//! What a case measured: per-publisher recorders (HDR histograms, error counts) and their merge into a
//! [`CaseResult`].

use crate::catalog::{Backend, PathKind};
use crate::error::{ErrorKind, PublishError};
use crate::scenario::Case;
use crate::scenario::threshold::{Metric, Threshold};
use crate::stage::{STAGE_COUNT, Stage, StageClock};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{
    Deserializer, Serializer as _, V2DeflateSerializer, V2Serializer,
};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// Largest latency a histogram tracks (10 minutes, in ns); longer values are clamped to it.
const HIGHEST_NS: u64 = 600_000_000_000;
/// HDR precision: 3 significant digits.
const SIGFIG: u8 = 3;

/// An empty latency histogram in nanoseconds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_NS, SIGFIG).expect("static histogram bounds are valid")
}

/// Errors by kind, keeping the first message of each kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorCounts {
    kinds: Vec<(ErrorKind, u64, String)>,
}

impl ErrorCounts {
    /// Counts `n` errors like `e`.
    pub fn add(&mut self, e: &PublishError, n: u64) {
        match self.kinds.iter_mut().find(|(k, _, _)| *k == e.kind) {
            Some((_, count, _)) => *count += n,
            None => self.kinds.push((e.kind, n, e.message.clone())),
        }
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &ErrorCounts) {
        for (kind, n, message) in &other.kinds {
            self.add(
                &PublishError {
                    kind: *kind,
                    message: message.clone(),
                },
                *n,
            );
        }
    }

    /// All errors.
    pub fn total(&self) -> u64 {
        self.kinds.iter().map(|(_, n, _)| n).sum()
    }

    /// (kind, count, first message), most frequent first.
    pub fn by_kind(&self) -> Vec<(ErrorKind, u64, &str)> {
        let mut v: Vec<_> = self
            .kinds
            .iter()
            .map(|(k, n, m)| (*k, *n, m.as_str()))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.name().cmp(b.0.name())));
        v
    }
}

/// One stage's merged timings over a case.
#[derive(Debug, Clone)]
pub struct StageResult {
    pub stage: Stage,
    pub histogram: Histogram<u64>,
    pub total_ns: u64,
}

/// One closed interval of one publisher: its latencies (V2-encoded, small) and failed publishes.
#[derive(Debug)]
struct IntervalRecord {
    index: u64,
    encoded: Vec<u8>,
    failed: u64,
}

/// A publisher's intervals: which one is open, when it ends, and the closed ones.
#[derive(Debug)]
struct Intervals {
    start: Instant,
    length: Duration,
    /// The open interval's index and end: a publish ending at or after `end` closes it.
    index: u64,
    end: Instant,
    failed: u64,
    closed: Vec<IntervalRecord>,
}

/// What the publishers of one runtime thread measured (see [`Recorders`]).
///
/// Latencies are recorded into the open interval's histogram only (one record per publish, as without
/// intervals); when a publish ends past the interval's end (one comparison of an instant the engine has
/// already read), the interval is added to the case's histogram, encoded and reset, off the timed part of
/// the loop.
#[derive(Debug)]
pub struct Recorder {
    /// The open interval's latencies; [`Recorder::finish`] adds the last one to `latency`.
    current: Histogram<u64>,
    /// Every measured latency of the closed intervals (all of them after [`Recorder::finish`]).
    pub latency: Histogram<u64>,
    /// Sum of all recorded latencies (ns): exact, for per-stage shares and the wall profile.
    pub latency_total_ns: u64,
    stages: [Option<Histogram<u64>>; STAGE_COUNT],
    stage_total_ns: [u64; STAGE_COUNT],
    pub schedule_lag: Option<Histogram<u64>>,
    /// How long failed and timed-out publishes took, made on the first failure.
    pub failed_latency: Option<Histogram<u64>>,
    pub ok: u64,
    pub warmup_ok: u64,
    pub errors: ErrorCounts,
    pub first_start: Option<Instant>,
    pub last_end: Option<Instant>,
    intervals: Intervals,
    /// The wall clock when the measured publishes started (for the interval log).
    pub wall_start: Option<SystemTime>,
    /// Where a closed interval goes for the progress bar (see [`Recorders::keeping_latest`]), and this
    /// recorder's number there.
    latest: Option<(Arc<LatestSlot>, usize)>,
}

/// Far enough ahead that no publish ends after it: the one interval before [`Recorder::start_intervals`].
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl Recorder {
    pub fn new(open_loop: bool) -> Self {
        let now = Instant::now();
        Recorder {
            current: new_histogram(),
            latency: new_histogram(),
            latency_total_ns: 0,
            stages: Default::default(),
            stage_total_ns: [0; STAGE_COUNT],
            schedule_lag: open_loop.then(new_histogram),
            failed_latency: None,
            ok: 0,
            warmup_ok: 0,
            errors: ErrorCounts::default(),
            first_start: None,
            last_end: None,
            intervals: Intervals {
                start: now,
                length: NEVER,
                index: 0,
                end: now + NEVER,
                failed: 0,
                closed: Vec::new(),
            },
            wall_start: None,
            latest: None,
        }
    }

    /// Starts interval 0 at `start` (the measured run's start, shared by every publisher): each interval
    /// is `length` long. Only the first call counts: the publishers sharing the recorder all make it.
    pub fn start_intervals(&mut self, start: Instant, length: Duration) {
        if self.wall_start.is_some() {
            return;
        }
        self.intervals.start = start;
        self.intervals.length = length;
        self.intervals.index = 0;
        self.intervals.end = start + length;
        self.wall_start = Some(SystemTime::now());
        if let Some((latest, id)) = &self.latest {
            latest.rolled(*id, None, 0);
        }
    }

    /// Closes the open interval if `at` is past its end; the engine calls it with each publish's end.
    #[inline]
    pub fn roll(&mut self, at: Instant) {
        if at >= self.intervals.end {
            self.rotate(at);
        }
    }

    /// Closes the open interval and opens the one `at` falls in (intervals nothing ended in are skipped:
    /// the merge shows them as empty).
    #[cold]
    #[inline(never)]
    fn rotate(&mut self, at: Instant) {
        let iv = &self.intervals;
        let next = ((at.saturating_duration_since(iv.start).as_nanos()
            / iv.length.as_nanos().max(1)) as u64)
            .max(iv.index + 1);
        if let Some((latest, id)) = &self.latest {
            let closed = (!self.current.is_empty()).then_some((iv.index, &self.current));
            latest.rolled(*id, closed, next);
        }
        self.close_interval();
        let iv = &mut self.intervals;
        iv.index = next;
        let ns = (iv.length.as_nanos() as u64).saturating_mul(iv.index + 1);
        iv.end = iv.start + Duration::from_nanos(ns);
    }

    /// Adds the open interval to the case's histogram and keeps it encoded.
    fn close_interval(&mut self) {
        let iv = &mut self.intervals;
        if self.current.is_empty() && iv.failed == 0 {
            return;
        }
        self.latency.add(&self.current).expect("same bounds");
        let mut encoded = Vec::new();
        V2Serializer::new()
            .serialize(&self.current, &mut encoded)
            .expect("serialising into memory cannot fail");
        iv.closed.push(IntervalRecord {
            index: iv.index,
            encoded,
            failed: iv.failed,
        });
        iv.failed = 0;
        self.current.reset();
    }

    /// Records a failed publish call of `n` publishes that took `took` (from its intended start in an open
    /// loop) and ended `at`: counted as errors like `e` in the interval `at` falls in, its duration kept
    /// apart from the successes' latency.
    pub fn record_failure(&mut self, e: &PublishError, n: u64, took: Duration, at: Instant) {
        self.roll(at);
        self.errors.add(e, n);
        self.intervals.failed += n;
        let ns = (took.as_nanos() as u64).clamp(1, HIGHEST_NS);
        let _ = self
            .failed_latency
            .get_or_insert_with(new_histogram)
            .record_n(ns, n);
    }

    /// Closes the last interval: `latency` then holds every measured publish. The last interval ends with
    /// the case, not with a publish past it, so it is not offered to the latest-interval slot.
    pub fn finish(&mut self) {
        self.close_interval();
    }

    /// Records one successful publish's latency.
    #[inline]
    pub fn record_latency(&mut self, ns: u64) {
        self.current.saturating_record(ns.max(1));
        self.latency_total_ns += ns;
        self.ok += 1;
    }

    /// Records `ns` spent in `stage` by a call that carried `publishes` publishes (a pipelined batch).
    /// Every publish of a batch waits for the whole call, so each is charged the whole `ns`.
    #[inline]
    pub fn record_stage(&mut self, stage: Stage, ns: u64, publishes: u64) {
        let i = stage.index();
        let h = self.stages[i].get_or_insert_with(new_histogram);
        let _ = h.record_n(ns.clamp(1, HIGHEST_NS), publishes);
        self.stage_total_ns[i] += ns * publishes;
    }

    /// Records a successful publish call: each of its publishes' latency from its own start (plus any time
    /// it spent `queued` in an open loop) to `end`, or the latency another process measured and put on the
    /// clock (plus `queued`), and the stages `clock` timed. The engine's one way of
    /// recording a publish (the overhead micro-benchmark calls it too).
    #[inline]
    pub fn record_publish(
        &mut self,
        starts: &[Instant],
        end: Instant,
        queued: Duration,
        clock: &mut StageClock,
    ) {
        self.roll(end);
        match clock.take_measured() {
            // Measured by the process that published (a Python harness): recorded exactly as it came.
            Some(ns) => {
                for _ in starts {
                    self.record_latency(queued.as_nanos() as u64 + ns);
                }
            }
            None => {
                for s in starts {
                    self.record_latency(
                        (queued + end.saturating_duration_since(*s)).as_nanos() as u64
                    );
                }
            }
        }
        let n = starts.len() as u64;
        clock.drain(|stage, ns| self.record_stage(stage, ns, n));
    }

    /// Records how late an open-loop publish started against its schedule.
    #[inline]
    pub fn record_lag(&mut self, ns: u64) {
        if let Some(h) = &mut self.schedule_lag {
            h.saturating_record(ns.max(1));
        }
    }

    /// Notes the span of measured time this publisher covered.
    #[inline]
    pub fn mark(&mut self, start: Instant, end: Instant) {
        if self.first_start.is_none() {
            self.first_start = Some(start);
        }
        self.last_end = Some(end);
    }
}

/// The recorders of one case, shared by its publishers: one per runtime thread, not one per publisher, so a
/// publisher costs what its connection costs and not a set of histograms (a latency histogram alone is
/// ~240 KB; ten thousand publishers each with their own took gigabytes).
///
/// A publisher records into the slot of the thread it runs on. A thread runs one task at a time and records
/// without awaiting, so a slot's lock is only ever contended when two threads share a slot (more threads
/// than slots), and correct either way.
pub struct Recorders {
    slots: Box<[RecorderSlot]>,
    open_loop: bool,
    /// When the measured run started and how long its intervals are: every recorder's timeline starts
    /// there, whichever thread it belongs to and whenever it is first used.
    intervals: OnceLock<(Instant, Duration)>,
    /// The newest closed interval, for a progress view ([`Recorders::keeping_latest`]).
    latest: Option<Arc<LatestSlot>>,
}

/// The newest interval a thread closed with successes in it, merged over the threads that have closed it so
/// far, and which interval each recorder has open: an interval is complete when none has it open any more.
/// A recorder reports here only from its cold `rotate` (when a publish of its own ends past its interval,
/// off the timed part of the loop, like the interval's encode) and once when its intervals start: the lock
/// is taken once per interval per thread, never per publish.
#[derive(Debug)]
struct LatestSlot(Mutex<Latest>);

#[derive(Debug)]
struct Latest {
    /// The newest interval offered, merged over the recorders that have closed it.
    held: Option<(u64, Histogram<u64>)>,
    /// Each recorder's open interval (by its slot in [`Recorders`]); `u64::MAX` before its first.
    open: Vec<u64>,
    /// The newest interval found complete: what [`Recorders::latest_interval`] answers.
    shown: Option<LatestInterval>,
}

impl LatestSlot {
    fn new(recorders: usize) -> Self {
        LatestSlot(Mutex::new(Latest {
            held: None,
            open: vec![u64::MAX; recorders],
            shown: None,
        }))
    }

    /// Recorder `id` closed interval `closed` (its index and histogram, when it had successes) and opened
    /// `next`. A closed interval newer than the one held replaces it, the same one adds to it, an older one
    /// (a thread that rolled over after another had already closed a later interval) is dropped: the slot
    /// holds the newest interval, not a mix.
    fn rolled(&self, id: usize, closed: Option<(u64, &Histogram<u64>)>, next: u64) {
        let mut latest = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((index, interval)) = closed {
            match &mut latest.held {
                Some((i, _)) if *i > index => {}
                Some((i, merged)) => {
                    if *i < index {
                        merged.reset();
                        *i = index;
                    }
                    merged.add(interval).expect("same bounds");
                }
                None => {
                    let mut merged = new_histogram();
                    merged.add(interval).expect("same bounds");
                    latest.held = Some((index, merged));
                }
            }
        }
        if let Some(open) = latest.open.get_mut(id) {
            *open = next;
        }
    }

    /// The held interval once no recorder has it open (then every thread that recorded into it has added its
    /// part), else the newest one that was complete before.
    fn read(&self) -> Option<LatestInterval> {
        let mut guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let latest = &mut *guard;
        if let Some((index, h)) = &latest.held
            && !latest.open.contains(index)
            && latest
                .shown
                .is_none_or(|s| s.index < *index || s.ok != h.len())
        {
            latest.shown = Some(LatestInterval {
                index: *index,
                ok: h.len(),
                p99: h.value_at_quantile(0.99),
            });
        }
        latest.shown
    }
}

/// The newest complete interval of a running case with successes in it (see
/// [`Recorders::latest_interval`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatestInterval {
    /// Its number from the start of the measured run: the index of its entry in [`CaseResult::timeline`].
    pub index: u64,
    /// Successful publishes in it.
    pub ok: u64,
    /// Their p99 latency (ns).
    pub p99: u64,
}

/// One slot, on its own cache line so threads never share one by accident.
#[repr(align(128))]
struct RecorderSlot(Mutex<Option<Recorder>>);

static NEXT_THREAD_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's slot number, handed out in order the first time a thread records.
    static THREAD_SLOT: usize = NEXT_THREAD_SLOT.fetch_add(1, Relaxed);
}

impl Recorders {
    /// Recorders for publishers on up to `threads` threads (more still work, sharing slots).
    pub fn new(threads: usize, open_loop: bool) -> Self {
        Recorders {
            slots: (0..threads.max(1) * 2)
                .map(|_| RecorderSlot(Mutex::new(None)))
                .collect(),
            open_loop,
            intervals: OnceLock::new(),
            latest: None,
        }
    }

    /// Also keeps the newest closed interval for [`Recorders::latest_interval`] (a progress view reads it):
    /// at each interval's close a thread then takes one more lock and adds the interval to it. Without this,
    /// closing an interval costs what it did before.
    pub fn keeping_latest(mut self) -> Self {
        self.latest = Some(Arc::new(LatestSlot::new(self.slots.len())));
        self
    }

    /// The newest interval with successes in it that every thread has closed, merged over them; `None` until
    /// one is (and always without [`Recorders::keeping_latest`]). The warm-up is never in it, nor the last
    /// interval (it closes with the case).
    ///
    /// A thread closes an interval when one of its own publishes ends past it. At an interval's turn this
    /// answers the interval before until the last thread holding publishes of the new one has rolled over;
    /// a thread that does not (its publishers moved to another thread, or stalled) holds back that one
    /// interval only: the next one every thread has closed is answered instead. When nothing ends at all (a
    /// stall), the answer stays the interval before the stall.
    pub fn latest_interval(&self) -> Option<LatestInterval> {
        self.latest.as_ref()?.read()
    }

    /// Starts every recorder's intervals at `start` (the measured run's start), each `length` long; the
    /// first call counts.
    pub fn start_intervals(&self, start: Instant, length: Duration) {
        let _ = self.intervals.set((start, length));
    }

    /// Runs `f` on the recorder of the calling thread (made on first use). `f` must not block.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&mut Recorder) -> R) -> R {
        let id = THREAD_SLOT.with(|s| *s) % self.slots.len();
        let mut guard = self.slots[id]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let rec = guard.get_or_insert_with(|| Recorder {
            latest: self.latest.clone().map(|l| (l, id)),
            ..Recorder::new(self.open_loop)
        });
        if rec.wall_start.is_none()
            && let Some(&(start, length)) = self.intervals.get()
        {
            rec.start_intervals(start, length);
        }
        f(rec)
    }

    /// Takes every recorder that was used, leaving the slots empty.
    pub fn take_all(&self) -> Vec<Recorder> {
        self.slots
            .iter()
            .filter_map(|s| s.0.lock().unwrap_or_else(PoisonError::into_inner).take())
            .collect()
    }
}

/// Everything measured for one case, merged over its publishers.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case as planned: every setting it ran with.
    pub case: Arc<Case>,
    pub name: String,
    pub backend: Backend,
    pub path: PathKind,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub publishes_ok: u64,
    pub warmup_ok: u64,
    pub errors: ErrorCounts,
    /// Measured publishes the backend confirmed it holds; `None` when it cannot tell.
    pub delivered: Option<u64>,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
    /// Sum of all measured latencies (ns).
    pub latency_total_ns: u64,
    pub stages: Vec<StageResult>,
    pub schedule_lag: Option<Histogram<u64>>,
    /// How long the failed and timed-out measured publishes took (empty when none failed).
    pub failed_latency: Histogram<u64>,
    pub interrupted: bool,
    /// Things a reader of the numbers must know (e.g. what latency means on this path).
    pub notes: Vec<String>,
    /// The case's thresholds as checked when it ended (empty until [`CaseResult::check_thresholds`]).
    pub thresholds: Vec<ThresholdResult>,
    /// The measured run interval by interval (`interval` long each, the last one to the case's end).
    pub timeline: Vec<IntervalResult>,
    /// The wall clock when the measured publishes started.
    pub wall_start: Option<SystemTime>,
    /// A CPU profile of the case recorded outside taskbench's own spans, as folded stacks in ns: py-spy's
    /// samples of a celery or kombu case's Python harnesses (`--profile cpu`).
    pub cpu_folded: Option<String>,
    /// A wall-clock profile of the case, waiting included, recorded outside taskbench's stage clock, as
    /// folded stacks in ns: py-spy's idle-inclusive samples of a celery or kombu case's harnesses
    /// (`--profile cpu`; the `pywall` view).
    pub pywall_folded: Option<String>,
}

/// One interval of a case, merged over its publishers: publishes that ended in it.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalResult {
    /// From the start of the measured run.
    pub start: Duration,
    pub length: Duration,
    pub ok: u64,
    pub failed: u64,
    /// p50, p90, p99 and max of the interval's latencies (ns); `None` when none succeeded.
    pub p50: Option<u64>,
    pub p90: Option<u64>,
    pub p99: Option<u64>,
    pub max: Option<u64>,
    /// The interval's latency histogram, HdrHistogram V2-deflate encoded (what an interval log holds).
    pub histogram: Vec<u8>,
}

impl IntervalResult {
    /// Successful publishes per second in the interval.
    pub fn throughput(&self) -> f64 {
        let s = self.length.as_secs_f64();
        if s > 0.0 { self.ok as f64 / s } else { 0.0 }
    }

    /// The interval's latency histogram, decoded.
    pub fn decode(&self) -> Histogram<u64> {
        Deserializer::new()
            .deserialize(&mut self.histogram.as_slice())
            .expect("taskbench encoded it")
    }
}

/// One threshold checked against a finished case.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdResult {
    pub threshold: Threshold,
    /// The case's figure (ns, publishes/s or a count); `None` when it has none (nothing succeeded).
    pub actual: Option<f64>,
    pub passed: bool,
}

impl CaseResult {
    /// An empty result for `case`.
    pub fn empty(case: &Case) -> Self {
        CaseResult {
            case: Arc::new(case.clone()),
            name: case.name.clone(),
            backend: case.backend,
            path: case.path,
            concurrency: case.concurrency,
            rate: case.rate,
            publishes_ok: 0,
            warmup_ok: 0,
            errors: ErrorCounts::default(),
            delivered: None,
            elapsed: Duration::ZERO,
            latency: new_histogram(),
            latency_total_ns: 0,
            stages: Vec::new(),
            schedule_lag: None,
            failed_latency: new_histogram(),
            interrupted: false,
            notes: Vec::new(),
            thresholds: Vec::new(),
            timeline: Vec::new(),
            wall_start: None,
            cpu_folded: None,
            pywall_folded: None,
        }
    }

    /// A case that could not start: one error of `kind`.
    pub fn failed_setup(case: &Case, kind: ErrorKind, message: String) -> Self {
        let mut r = CaseResult::empty(case);
        r.errors.add(&PublishError::new(kind, message), 1);
        r
    }

    /// Merges the publishers' recorders of one case, closing their last intervals.
    pub fn merge(case: &Case, recorders: &mut [Recorder]) -> Self {
        for rec in recorders.iter_mut() {
            rec.finish();
        }
        let mut r = CaseResult::empty(case);
        let mut stages: [Option<Histogram<u64>>; STAGE_COUNT] = Default::default();
        let mut stage_total_ns = [0u64; STAGE_COUNT];
        let mut first: Option<Instant> = None;
        let mut last: Option<Instant> = None;
        for rec in recorders.iter() {
            r.latency.add(&rec.latency).expect("same bounds");
            r.latency_total_ns += rec.latency_total_ns;
            r.publishes_ok += rec.ok;
            r.warmup_ok += rec.warmup_ok;
            r.errors.merge(&rec.errors);
            for (i, h) in rec.stages.iter().enumerate() {
                if let Some(h) = h {
                    stages[i]
                        .get_or_insert_with(new_histogram)
                        .add(h)
                        .expect("same bounds");
                    stage_total_ns[i] += rec.stage_total_ns[i];
                }
            }
            if let Some(failed) = &rec.failed_latency {
                r.failed_latency.add(failed).expect("same bounds");
            }
            if let Some(lag) = &rec.schedule_lag {
                r.schedule_lag
                    .get_or_insert_with(new_histogram)
                    .add(lag)
                    .expect("same bounds");
            }
            first = match (first, rec.first_start) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            last = match (last, rec.last_end) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        if let (Some(first), Some(last)) = (first, last) {
            r.elapsed = last.saturating_duration_since(first);
        }
        r.wall_start = recorders.iter().filter_map(|rec| rec.wall_start).min();
        r.timeline = timeline(recorders, last);
        r.stages = Stage::ALL
            .iter()
            .zip(stages)
            .zip(stage_total_ns)
            .filter_map(|((stage, h), total_ns)| {
                h.map(|histogram| StageResult {
                    stage: *stage,
                    histogram,
                    total_ns,
                })
            })
            .collect();
        r
    }

    /// Wall time of all publishes spent in stages (ns).
    pub fn stages_total_ns(&self) -> u64 {
        self.stages.iter().map(|s| s.total_ns).sum()
    }

    /// Latency spent outside every stage (ns): queueing in an open loop; zero when the stages cover it
    /// (in a pipelined batch they can add up to more than the latency, as each publish is charged the call).
    pub fn outside_stages_ns(&self) -> u64 {
        self.latency_total_ns.saturating_sub(self.stages_total_ns())
    }

    /// Measured publishes per second.
    pub fn throughput(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.publishes_ok as f64 / s
        } else {
            0.0
        }
    }

    /// Whether anything went wrong (an error, or a delivery count that does not add up).
    pub fn failed(&self) -> bool {
        self.errors.total() > 0
    }

    /// The figure a threshold on `metric` bounds.
    pub fn metric(&self, metric: Metric) -> Option<f64> {
        match metric {
            Metric::Throughput => Some(self.throughput()),
            Metric::Errors => Some(self.errors.total() as f64),
            Metric::Max if !self.latency.is_empty() => Some(self.latency.max() as f64),
            m => m
                .quantile()
                .filter(|_| !self.latency.is_empty())
                .map(|q| self.latency.value_at_quantile(q) as f64),
        }
    }

    /// Checks `thresholds` against what the case measured, keeping each outcome.
    pub fn check_thresholds(&mut self, thresholds: &[Threshold]) {
        self.thresholds = thresholds
            .iter()
            .map(|t| {
                let actual = self.metric(t.metric);
                ThresholdResult {
                    threshold: t.clone(),
                    actual,
                    passed: t.passes(actual),
                }
            })
            .collect();
    }

    /// Whether some threshold failed.
    pub fn thresholds_failed(&self) -> bool {
        self.thresholds.iter().any(|t| !t.passed)
    }
}

/// The publishers' intervals merged index by index, from interval 0 to the last one anything ended in;
/// an interval in which nothing ended (a stall) is there, empty.
fn timeline(recorders: &[Recorder], last_end: Option<Instant>) -> Vec<IntervalResult> {
    // Every recorder that measured started its intervals at the same instant, with the same length.
    let Some(first) = recorders.iter().find(|rec| rec.wall_start.is_some()) else {
        return Vec::new();
    };
    let (start, length) = (first.intervals.start, first.intervals.length);
    let Some(last_index) = recorders
        .iter()
        .filter_map(|rec| rec.intervals.closed.last().map(|i| i.index))
        .max()
    else {
        return Vec::new();
    };
    if length >= NEVER {
        return Vec::new();
    }
    let end = last_end.unwrap_or(start);
    let mut cursors = vec![0usize; recorders.len()];
    let mut merged = new_histogram();
    let mut out = Vec::with_capacity(last_index as usize + 1);
    for index in 0..=last_index {
        merged.reset();
        let mut failed = 0;
        for (rec, cursor) in recorders.iter().zip(cursors.iter_mut()) {
            while let Some(iv) = rec
                .intervals
                .closed
                .get(*cursor)
                .filter(|i| i.index == index)
            {
                let h: Histogram<u64> = Deserializer::new()
                    .deserialize(&mut iv.encoded.as_slice())
                    .expect("encoded by close_interval");
                merged.add(&h).expect("same bounds");
                failed += iv.failed;
                *cursor += 1;
            }
        }
        let offset = Duration::from_nanos((length.as_nanos() as u64).saturating_mul(index));
        // The last interval ends with the case.
        let length = if index == last_index {
            length
                .min(end.saturating_duration_since(start + offset))
                .max(Duration::from_nanos(1))
        } else {
            length
        };
        let q = |q: f64| (!merged.is_empty()).then(|| merged.value_at_quantile(q));
        let mut histogram = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&merged, &mut histogram)
            .expect("serialising into memory cannot fail");
        out.push(IntervalResult {
            start: offset,
            length,
            ok: merged.len(),
            failed,
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            max: (!merged.is_empty()).then(|| merged.max()),
            histogram,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_recorders_adds_counts_and_keeps_quantiles() {
        let mut a = Recorder::new(false);
        let mut b = Recorder::new(false);
        for v in 1..=1000u64 {
            a.record_latency(v * 1000);
        }
        for v in 1001..=2000u64 {
            b.record_latency(v * 1000);
        }
        a.record_stage(Stage::Send, 500, 1);
        b.record_stage(Stage::Send, 700, 1);
        b.record_stage(Stage::Encode, 3200, 32);
        a.errors
            .add(&PublishError::new(ErrorKind::Timeout, "first"), 2);
        b.errors
            .add(&PublishError::new(ErrorKind::Timeout, "second"), 3);
        b.errors.add(&PublishError::new(ErrorKind::Send, "x"), 7);
        let t0 = Instant::now();
        a.mark(t0, t0 + Duration::from_millis(10));
        b.mark(
            t0 + Duration::from_millis(5),
            t0 + Duration::from_millis(20),
        );

        let case = crate::scenario::parse(
            "name = \"t\"\n[[case]]\nname = \"c\"\nbackend = \"unix\"\npath = \"raw\"\n",
            "t.toml",
        )
        .unwrap()
        .cases
        .remove(0);
        let r = CaseResult::merge(&case, &mut [a, b]);
        assert_eq!(r.publishes_ok, 2000);
        assert_eq!(r.latency.len(), 2000);
        let p50 = r.latency.value_at_quantile(0.5);
        assert!((999_000..=1_001_000).contains(&p50), "p50 {p50}");
        assert_eq!(r.elapsed, Duration::from_millis(20));
        assert_eq!(r.throughput(), 100_000.0);
        assert_eq!(r.errors.total(), 12);
        assert_eq!(
            r.errors.by_kind(),
            vec![(ErrorKind::Send, 7, "x"), (ErrorKind::Timeout, 5, "first")]
        );
        let send = r.stages.iter().find(|s| s.stage == Stage::Send).unwrap();
        assert_eq!((send.histogram.len(), send.total_ns), (2, 1200));
        let encode = r.stages.iter().find(|s| s.stage == Stage::Encode).unwrap();
        assert_eq!(
            encode.histogram.len(),
            32,
            "a batch stage counts once per publish"
        );
        assert!(
            encode
                .histogram
                .equivalent(encode.histogram.value_at_quantile(0.5), 3200),
            "each publish of a batch waits for the whole call"
        );
        assert_eq!(encode.total_ns, 3200 * 32);
        assert_eq!(
            r.stages[0].stage,
            Stage::Encode,
            "stages come in Stage::ALL order"
        );
    }
}

#[cfg(test)]
mod interval_tests {
    use super::*;

    #[test]
    fn intervals_merge_by_index_and_a_stall_leaves_an_empty_one() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut a = Recorder::new(false);
        let mut b = Recorder::new(false);
        a.start_intervals(t0, ms(100));
        b.start_intervals(t0, ms(100));
        // a: 10 publishes of 1 ms in interval 0, nothing in 1 and 2 (stalled), one 250 ms publish ending in 3.
        for i in 0..10 {
            a.roll(t0 + ms(5 * i + 1));
            a.record_latency(1_000_000);
        }
        a.roll(t0 + ms(310));
        a.record_latency(250_000_000);
        a.mark(t0, t0 + ms(310));
        // b: 5 publishes in interval 0, a failure in 1.
        for i in 0..5 {
            b.roll(t0 + ms(10 * i + 1));
            b.record_latency(2_000_000);
        }
        b.record_failure(
            &PublishError::new(ErrorKind::Send, "x"),
            2,
            ms(10),
            t0 + ms(150),
        );
        b.mark(t0, t0 + ms(150));

        let case = crate::scenario::parse(
            "name = \"t\"\n[[case]]\nname = \"c\"\nbackend = \"unix\"\npath = \"raw\"\n",
            "t.toml",
        )
        .unwrap()
        .cases
        .remove(0);
        let r = CaseResult::merge(&case, &mut [a, b]);
        assert_eq!(
            r.latency.len(),
            16,
            "every latency is in the case's histogram"
        );
        let counts: Vec<(u64, u64)> = r.timeline.iter().map(|i| (i.ok, i.failed)).collect();
        assert_eq!(counts, [(15, 0), (0, 2), (0, 0), (1, 0)]);
        assert_eq!(r.timeline[3].start, ms(300));
        assert_eq!(
            r.timeline[3].length,
            ms(10),
            "the last interval ends with the case"
        );
        assert!(r.timeline[0].max.unwrap() < 2_100_000);
        assert!(r.timeline[2].p99.is_none());
        assert!(
            r.timeline[3].max.unwrap() >= 249_000_000,
            "the stall ends in interval 3"
        );
        assert_eq!(r.timeline[0].decode().len(), 15);
        assert_eq!(r.timeline[0].throughput(), 150.0);
    }
}

#[cfg(test)]
mod latest_tests {
    use super::*;

    /// Two threads' recorders (slots 0 and 1 of `recorders`), their intervals 100 ms long from `t0`.
    fn two(recorders: &Recorders, t0: Instant) -> (Recorder, Recorder) {
        let make = |id| {
            let mut r = Recorder {
                latest: recorders.latest.clone().map(|l| (l, id)),
                ..Recorder::new(false)
            };
            r.start_intervals(t0, Duration::from_millis(100));
            r
        };
        (make(0), make(1))
    }

    fn publish(rec: &mut Recorder, at: Instant, ns: u64) {
        rec.roll(at);
        rec.record_latency(ns);
    }

    fn latest(recorders: &Recorders) -> Option<(u64, u64)> {
        recorders.latest_interval().map(|l| (l.index, l.ok))
    }

    #[test]
    fn an_interval_is_answered_once_every_thread_has_closed_it() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let recorders = Recorders::new(1, false).keeping_latest();
        let (mut a, mut b) = two(&recorders, t0);
        // Interval 0: a 99 publishes of 1 ms, b one of 50 ms.
        for i in 0..99 {
            publish(&mut a, t0 + ms(i / 2), 1_000_000);
        }
        publish(&mut b, t0 + ms(60), 50_000_000);
        assert_eq!(latest(&recorders), None, "nothing closed yet");

        // a's first publish of interval 1 closes its interval 0; b still holds its part of it.
        publish(&mut a, t0 + ms(101), 3_000_000);
        assert_eq!(latest(&recorders), None, "b has not rolled over");
        publish(&mut b, t0 + ms(102), 3_000_000);
        let l = recorders.latest_interval().unwrap();
        assert_eq!((l.index, l.ok), (0, 100), "both parts");
        assert!(l.p99 < 1_010_000, "99 of 100 took 1 ms: {l:?}");

        // a goes on into interval 2, b stalls in interval 1: interval 1 is held back, interval 0 answered.
        publish(&mut a, t0 + ms(150), 4_000_000);
        publish(&mut a, t0 + ms(201), 1_000_000);
        assert_eq!(
            latest(&recorders),
            Some((0, 100)),
            "b still has interval 1 open"
        );
        // a closes interval 2, which b never had open: answered, and b's interval 1 is skipped.
        publish(&mut a, t0 + ms(301), 1_000_000);
        assert_eq!(latest(&recorders), Some((2, 1)));
        // b's stalled publish ends in interval 3: its interval 1 is older than the one held, and dropped.
        publish(&mut b, t0 + ms(310), 200_000_000);
        assert_eq!(latest(&recorders), Some((2, 1)));

        // finish() closes the last intervals with the case, not past them: not offered.
        a.finish();
        b.finish();
        assert_eq!(latest(&recorders), Some((2, 1)));
        // Everything still reached the case's own histograms.
        assert_eq!(a.latency.len() + b.latency.len(), 106);
    }

    #[test]
    fn a_thread_that_never_started_or_stopped_early_holds_nothing_back() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let recorders = Recorders::new(2, false).keeping_latest();
        let (mut a, mut b) = two(&recorders, t0);
        // b's publishers are done after interval 0 (a case split unevenly): it stays at 0 for good.
        publish(&mut b, t0 + ms(10), 1_000_000);
        for at in [20, 120, 220] {
            publish(&mut a, t0 + ms(at), 2_000_000);
        }
        assert_eq!(
            latest(&recorders),
            Some((1, 1)),
            "interval 0 waits for b, 1 does not"
        );
        // Slots 2 and 3, whose threads never recorded, are not waited for.
        assert_eq!(recorders.slots.len(), 4);
    }

    #[test]
    fn an_interval_with_failures_only_is_not_offered_and_nothing_is_kept_unless_asked() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let recorders = Recorders::new(1, false).keeping_latest();
        let (mut a, _) = two(&recorders, t0);
        publish(&mut a, t0 + ms(10), 1_000_000);
        let e = PublishError::new(ErrorKind::Send, "x");
        a.record_failure(&e, 1, ms(1), t0 + ms(110));
        a.record_failure(&e, 1, ms(1), t0 + ms(210));
        assert_eq!(
            latest(&recorders),
            None,
            "the other recorder has interval 0 open"
        );

        let plain = Recorders::new(1, false);
        plain.start_intervals(t0, ms(100));
        plain.with(|rec| publish(rec, t0 + ms(10), 1_000_000));
        plain.with(|rec| publish(rec, t0 + ms(110), 1_000_000));
        assert_eq!(latest(&plain), None);
        let kept = Recorders::new(1, false).keeping_latest();
        kept.start_intervals(t0, ms(100));
        kept.with(|rec| publish(rec, t0 + ms(10), 1_000_000));
        kept.with(|rec| rec.record_failure(&e, 1, ms(1), t0 + ms(110)));
        kept.with(|rec| rec.record_failure(&e, 1, ms(1), t0 + ms(210)));
        assert_eq!(
            latest(&kept),
            Some((0, 1)),
            "via with(); interval 1 had no success"
        );
    }
}
