//! What a case measured: per-publisher recorders (HDR histograms, error counts) and their merge into a
//! [`CaseResult`].

use crate::catalog::{Backend, PathKind};
use crate::error::{ErrorKind, PublishError};
use crate::scenario::Case;
use crate::stage::{STAGE_COUNT, Stage, StageClock};
use hdrhistogram::Histogram;
use std::time::Duration;
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

/// What one publisher measured. Lives on its own task: no sharing, no locks.
#[derive(Debug)]
pub struct Recorder {
    pub latency: Histogram<u64>,
    /// Sum of all recorded latencies (ns): exact, for per-stage shares and the wall profile.
    pub latency_total_ns: u64,
    stages: [Option<Histogram<u64>>; STAGE_COUNT],
    stage_total_ns: [u64; STAGE_COUNT],
    pub schedule_lag: Option<Histogram<u64>>,
    pub ok: u64,
    pub warmup_ok: u64,
    pub errors: ErrorCounts,
    pub first_start: Option<Instant>,
    pub last_end: Option<Instant>,
}

impl Recorder {
    pub fn new(open_loop: bool) -> Self {
        Recorder {
            latency: new_histogram(),
            latency_total_ns: 0,
            stages: Default::default(),
            stage_total_ns: [0; STAGE_COUNT],
            schedule_lag: open_loop.then(new_histogram),
            ok: 0,
            warmup_ok: 0,
            errors: ErrorCounts::default(),
            first_start: None,
            last_end: None,
        }
    }

    /// Records one successful publish's latency.
    #[inline]
    pub fn record_latency(&mut self, ns: u64) {
        self.latency.saturating_record(ns.max(1));
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

/// Everything measured for one case, merged over its publishers.
#[derive(Debug, Clone)]
pub struct CaseResult {
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
    pub interrupted: bool,
    /// Things a reader of the numbers must know (e.g. what latency means on this path).
    pub notes: Vec<String>,
    /// A CPU profile of the case recorded outside taskbench's own spans, as folded stacks in ns: py-spy's
    /// samples of a celery or kombu case's Python harnesses (`--profile cpu`).
    pub cpu_folded: Option<String>,
}

impl CaseResult {
    /// An empty result for `case`.
    pub fn empty(case: &Case) -> Self {
        CaseResult {
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
            interrupted: false,
            notes: Vec::new(),
            cpu_folded: None,
        }
    }

    /// A case that could not start: one error of `kind`.
    pub fn failed_setup(case: &Case, kind: ErrorKind, message: String) -> Self {
        let mut r = CaseResult::empty(case);
        r.errors.add(&PublishError::new(kind, message), 1);
        r
    }

    /// Merges the publishers' recorders of one case.
    pub fn merge(case: &Case, recorders: &[Recorder]) -> Self {
        let mut r = CaseResult::empty(case);
        let mut stages: [Option<Histogram<u64>>; STAGE_COUNT] = Default::default();
        let mut stage_total_ns = [0u64; STAGE_COUNT];
        let mut first: Option<Instant> = None;
        let mut last: Option<Instant> = None;
        for rec in recorders {
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
        let r = CaseResult::merge(&case, &[a, b]);
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
