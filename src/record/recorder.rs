//! The per-thread recorder: HDR histograms of one runtime thread's publishes, their stages and error
//! counts, and the thread's intervals of the timeline.

use super::slots::LatestSlot;
use super::{HIGHEST_NS, new_histogram};
use crate::error::{ErrorKind, PublishError};
use crate::stage::{STAGE_COUNT, Stage, StageClock};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Serializer as _, V2Serializer};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

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

/// One closed interval of one publisher: its latencies (V2-encoded, small) and failed publishes.
#[derive(Debug)]
pub(super) struct IntervalRecord {
    pub(super) index: u64,
    pub(super) encoded: Vec<u8>,
    pub(super) failed: u64,
}

/// A publisher's intervals: which one is open, when it ends, and the closed ones.
#[derive(Debug)]
pub(super) struct Intervals {
    pub(super) start: Instant,
    pub(super) length: Duration,
    /// The open interval's index and end: a publish ending at or after `end` closes it.
    index: u64,
    end: Instant,
    failed: u64,
    pub(super) closed: Vec<IntervalRecord>,
}

/// What the publishers of one runtime thread measured (see [`Recorders`](super::Recorders)).
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
    pub(super) stages: [Option<Histogram<u64>>; STAGE_COUNT],
    pub(super) stage_total_ns: [u64; STAGE_COUNT],
    pub schedule_lag: Option<Histogram<u64>>,
    /// How long failed and timed-out publishes took, made on the first failure.
    pub failed_latency: Option<Histogram<u64>>,
    pub ok: u64,
    pub warmup_ok: u64,
    pub errors: ErrorCounts,
    pub first_start: Option<Instant>,
    pub last_end: Option<Instant>,
    pub(super) intervals: Intervals,
    /// The wall clock when the measured publishes started (for the interval log).
    pub wall_start: Option<SystemTime>,
    /// Where a closed interval goes for the progress bar (see
    /// [`Recorders::keeping_latest`](super::Recorders::keeping_latest)), and this recorder's number there.
    latest: Option<(Arc<LatestSlot>, usize)>,
}

/// Far enough ahead that no publish ends after it: the one interval before [`Recorder::start_intervals`].
pub(super) const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

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

    /// A recorder for slot `id` of [`Recorders`](super::Recorders), offering its closed intervals to
    /// `latest` when the case keeps one.
    pub(super) fn in_slot(open_loop: bool, latest: Option<Arc<LatestSlot>>, id: usize) -> Self {
        Recorder {
            latest: latest.map(|l| (l, id)),
            ..Recorder::new(open_loop)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::CaseResult;

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
