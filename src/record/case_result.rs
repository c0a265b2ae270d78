//! The case result: every recorder of a case merged into one [`CaseResult`], with its stages, its
//! thresholds as checked, and its timeline interval by interval.

use super::events::{EventResult, UnknownFate};
use super::new_histogram;
use super::recorder::{ErrorCounts, NEVER, Recorder};
use crate::catalog::{Backend, PathKind};
use crate::error::{ErrorKind, PublishError};
use crate::facts::CaseFacts;
use crate::resources::{self, ResourceSeries};
use crate::scenario::Case;
use crate::scenario::threshold::{Metric, Threshold};
use crate::stage::{STAGE_COUNT, Stage};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

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
    /// Things a reader of the numbers must know (e.g. what latency means on this path): the same words
    /// for every case on the same path, so a run says each once.
    pub notes: Vec<String>,
    /// What the backend counted besides latency; the sentences for its figures come from
    /// [`CaseFacts::notes`].
    pub facts: CaseFacts,
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
    /// The backend's floor measured right before the case (scenario `floor = true`, `run --floor`).
    pub floor: Option<super::Floor>,
    /// The case's timed events (`[[case.fault]]`) as they happened; empty without any.
    pub events: Vec<EventResult>,
    /// Failed publishes whose fate is unknown (sent, never confirmed), when there were any.
    pub unknown_fate: Option<UnknownFate>,
    /// What the case's processes (and broker) held and used, sampled once per interval.
    pub resources: ResourceSeries,
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

/// One stage's merged timings over a case.
#[derive(Debug, Clone)]
pub struct StageResult {
    pub stage: Stage,
    pub histogram: Histogram<u64>,
    pub total_ns: u64,
}

impl CaseResult {
    /// Every sentence a reader gets about the case, as summary.json's `notes` has them: the path's notes,
    /// then the facts' ([`CaseFacts::notes`]).
    pub fn notes_with_facts(&self) -> Vec<String> {
        self.notes
            .iter()
            .cloned()
            .chain(self.facts.notes())
            .collect()
    }

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
            facts: CaseFacts::default(),
            thresholds: Vec::new(),
            timeline: Vec::new(),
            wall_start: None,
            cpu_folded: None,
            pywall_folded: None,
            floor: None,
            events: Vec::new(),
            unknown_fate: None,
            resources: ResourceSeries::default(),
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
            Metric::Blocked => self.facts.blocked_ns(),
            Metric::HarnessBusy => self.facts.harness_busy(),
            Metric::RssGrowthPer10k => resources::largest_growth(&self.resources.process_figures()),
            Metric::CpuPerPublish => resources::cpu_per_publish(&self.resources.process_figures()),
            Metric::MaxRate => None,
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

    #[test]
    fn thresholds_bound_the_facts_a_case_has_and_fail_those_it_lacks() {
        let case = crate::scenario::parse(
            r#"
                name = "t"
                [thresholds]
                blocked = "< 1s"
                harness_busy = "> 0.9"
                [[case]]
                name = "c"
                backend = "unix"
                path = "raw"
            "#,
            "t.toml",
        )
        .unwrap()
        .cases
        .remove(0);
        let mut r = CaseResult::empty(&case);
        r.facts.flow_control = Some(crate::facts::FlowControl {
            blocked: 1,
            blocked_ns: 2_000_000_000,
            ..Default::default()
        });
        r.check_thresholds(&case.thresholds);
        let outcome: Vec<(&str, Option<f64>, bool)> = r
            .thresholds
            .iter()
            .map(|t| (t.threshold.metric.name(), t.actual, t.passed))
            .collect();
        assert_eq!(
            outcome,
            [("blocked", Some(2e9), false), ("harness_busy", None, false)],
            "a 2 s block fails `< 1s`; a case without harnesses has no busy share to pass with"
        );
        assert_eq!(Metric::Blocked.show(2e9), "2.00s");
        assert_eq!(Metric::HarnessBusy.show(0.934), "93.4%");
    }
}
