//! summary.json's types built from what a case measured: a [`CaseResult`] as a [`CaseSummary`], the
//! settings it ran with, its percentiles and its breakdown by stage.

use super::encode_histogram;
use super::schema::{
    BreakdownRow, CaseSettings, CaseSummary, Environment, EventSummary, FloorSummary,
    IntervalResources, IntervalSummary, LatencySummary, Mode, ReconnectSummary, ResourcesSummary,
    StageSummary, Summary, TaskSettings, ThresholdSummary, UnknownFateSummary, WireSettings,
};
use crate::backend::url::redact;
use crate::message::FRAME_PREFIX_LEN;
use crate::record::{CaseResult, EventResult, Floor, UnknownFate};
use crate::scenario::{BackendOptions, Case, Shard};
use hdrhistogram::Histogram;
use indexmap::IndexMap;
use serde_json::json;
use std::time::Duration;

impl CaseSettings {
    pub fn of(case: &Case) -> CaseSettings {
        let spec = case.task.spec();
        let url = |u: &Option<String>| json!(u.as_deref().map(redact));
        let options: IndexMap<String, serde_json::Value> = match &case.options {
            BackendOptions::Amqp(o) => [
                ("url", url(&o.url)),
                ("keep", json!(o.keep)),
                ("confirm", json!(o.confirm)),
                ("confirm_batch", json!(o.confirm_batch)),
                ("confirm_window", json!(o.confirm_window)),
                ("queue_type", json!(o.queue_type)),
                ("pool_size", json!(o.pool_size)),
                ("connections", json!(o.connections)),
                ("batch", json!(o.batch)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            BackendOptions::Redis(o) => [
                ("url", url(&o.url)),
                ("keep", json!(o.keep)),
                ("pool_size", json!(o.pool_size)),
                ("batch", json!(o.batch)),
                ("multiplexed", json!(o.multiplexed)),
                ("kombu_handshake", json!(o.kombu_handshake)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            BackendOptions::Local(o) => [(
                "address".to_string(),
                json!(o.address.as_ref().map(|a| a.to_string())),
            )]
            .into_iter()
            .collect(),
        };
        CaseSettings {
            publishes: case.publishes,
            warmup: case.warmup,
            concurrency: case.concurrency,
            rate: case.rate,
            duration_s: case.duration.map(|d| d.as_secs_f64()),
            publish_timeout_s: case.publish_timeout.as_secs_f64(),
            stage_timing: case.stage_timing,
            profile_sample: case.profile_sample,
            task: TaskSettings {
                name: spec.name.clone(),
                args: spec.args.clone(),
                kwargs: spec.kwargs.clone(),
                queue: spec.queue.clone(),
                priority: spec.priority,
                body_bytes: case.task.body().len(),
                envelope_bytes: case.task.frame_len() - FRAME_PREFIX_LEN,
            },
            options,
            wire: case.wire.map(|w| WireSettings {
                rtt_s: w.rtt.as_secs_f64(),
                jitter_s: w.jitter.as_secs_f64(),
            }),
        }
    }
}

/// Identifies the run in summary.json.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub scenario: String,
    pub scenario_file: String,
    pub started_at: String,
    pub environment: Environment,
    pub shard: Option<Shard>,
}

impl Summary {
    /// The summary of the cases run so far; `interrupted` if the run was cut short.
    pub fn new(info: &RunInfo, interrupted: bool, cases: &[CaseResult]) -> Summary {
        Summary {
            scenario: info.scenario.clone(),
            scenario_file: info.scenario_file.clone(),
            started_at: info.started_at.clone(),
            taskbench_version: env!("CARGO_PKG_VERSION").to_string(),
            environment: info.environment.clone(),
            shard: info.shard,
            interrupted,
            cases: cases.iter().map(CaseSummary::new).collect(),
        }
    }
}

impl CaseSummary {
    pub fn new(r: &CaseResult) -> CaseSummary {
        let mut errors = IndexMap::new();
        let mut error_messages = IndexMap::new();
        for (kind, n, message) in r.errors.by_kind() {
            errors.insert(kind.to_string(), n);
            error_messages.insert(kind.to_string(), message.to_string());
        }
        let stages = r
            .stages
            .iter()
            .map(|s| {
                let summary = StageSummary {
                    count: s.histogram.len(),
                    total_ns: s.total_ns,
                    p50: s.histogram.value_at_quantile(0.5),
                    p99: s.histogram.value_at_quantile(0.99),
                    histogram: Some(encode_histogram(&s.histogram)),
                };
                (s.stage.name().to_string(), summary)
            })
            .collect();
        CaseSummary {
            name: r.name.clone(),
            backend: r.backend,
            path: r.path,
            mode: if r.rate.is_some() {
                Mode::Open
            } else {
                Mode::Closed
            },
            concurrency: r.concurrency,
            rate: r.rate,
            publishes_ok: r.publishes_ok,
            warmup_ok: r.warmup_ok,
            errors,
            error_messages,
            delivered: r.delivered,
            elapsed_s: r.elapsed.as_secs_f64(),
            throughput_per_s: r.throughput(),
            latency_ns: LatencySummary::of(&r.latency),
            latency_total_ns: r.latency_total_ns,
            stages,
            breakdown: breakdown(r),
            schedule_lag_ns: r.schedule_lag.as_ref().map(LatencySummary::of),
            failed_latency_ns: LatencySummary::of(&r.failed_latency),
            histogram: encode_histogram(&r.latency),
            failed_histogram: Some(encode_histogram(&r.failed_latency)),
            started_unix_s: r
                .wall_start
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64()),
            interrupted: r.interrupted,
            notes: r.notes_with_facts(),
            facts: r.facts.clone(),
            settings: CaseSettings::of(&r.case),
            thresholds: r
                .thresholds
                .iter()
                .map(|t| ThresholdSummary {
                    metric: t.threshold.metric.name().to_string(),
                    expression: t.threshold.text.clone(),
                    op: t.threshold.op,
                    limit: t.threshold.value,
                    actual: t.actual,
                    passed: t.passed,
                })
                .collect(),
            timeline: r
                .timeline
                .iter()
                .map(|i| IntervalSummary {
                    start_s: i.start.as_secs_f64(),
                    length_s: i.length.as_secs_f64(),
                    ok: i.ok,
                    failed: i.failed,
                    throughput_per_s: i.throughput(),
                    p50: i.p50,
                    p99: i.p99,
                    max: i.max,
                    events: events_during(r, i.start, i.length),
                    resources: IntervalResources::at(&r.resources, i.start, i.length),
                })
                .collect(),
            events: r.events.iter().map(EventSummary::of).collect(),
            unknown_fate: r.unknown_fate.as_ref().map(UnknownFateSummary::of),
            resources: ResourcesSummary::of(&r.resources),
            max_rate: None,
            floor: r.floor.as_ref().map(|f| FloorSummary::of(f, r)),
        }
    }
}

/// The kinds of `r`'s events under way during the interval from `start` for `length`.
fn events_during(r: &CaseResult, start: Duration, length: Duration) -> Vec<String> {
    r.events
        .iter()
        .filter(|e| {
            let Some(began) = e.began else { return false };
            let ended = e.ended.unwrap_or(Duration::MAX);
            // An instant event (a reset without `for`) belongs to the interval it happened in.
            began < start + length && (ended > start || (ended == began && began >= start))
        })
        .map(|e| e.event.kind.name().to_string())
        .collect()
}

impl UnknownFateSummary {
    pub fn of(u: &UnknownFate) -> UnknownFateSummary {
        UnknownFateSummary {
            publishes: u.publishes,
            delivered: u.delivered,
        }
    }
}

impl EventSummary {
    /// The summary of one event as it happened, with its reconnect figures over the publishers.
    pub fn of(e: &EventResult) -> EventSummary {
        let again: Vec<f64> = e
            .published_again
            .iter()
            .flatten()
            .map(|d| d.as_secs_f64())
            .collect();
        EventSummary {
            kind: e.event.kind.name().to_string(),
            at_s: e.event.at.as_secs_f64(),
            for_s: e.event.length.as_secs_f64(),
            began_s: e.began.map(|d| d.as_secs_f64()),
            ended_s: e.ended.map(|d| d.as_secs_f64()),
            published_again_s: e
                .published_again
                .iter()
                .map(|d| d.map(|d| d.as_secs_f64()))
                .collect(),
            reconnect_s: ReconnectSummary {
                publishers: e.published_again.len(),
                published_again: again.len(),
                min: again.iter().copied().reduce(f64::min),
                mean: (!again.is_empty()).then(|| again.iter().sum::<f64>() / again.len() as f64),
                max: again.iter().copied().reduce(f64::max),
            },
        }
    }
}

impl LatencySummary {
    /// min, p50, p90, p99, p99.9, max and mean of `h`.
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            min: Some(h.min()),
            p50: Some(h.value_at_quantile(0.5)),
            p90: Some(h.value_at_quantile(0.9)),
            p99: Some(h.value_at_quantile(0.99)),
            p999: Some(h.value_at_quantile(0.999)),
            max: Some(h.max()),
            mean: Some(h.mean().round() as u64),
        }
    }
}

/// The rows of `r`'s breakdown, largest share first: the text answer to "where does the time go", the same
/// numbers the wall flamegraph draws.
pub fn breakdown(r: &CaseResult) -> Vec<BreakdownRow> {
    let stages: Vec<(&str, &Histogram<u64>, u64)> = r
        .stages
        .iter()
        .map(|s| (s.stage.name(), &s.histogram, s.total_ns))
        .collect();
    breakdown_of(&stages, r.latency_total_ns, r.publishes_ok)
}

/// The breakdown rows of stages (name, histogram, summed ns) over `publishes_ok` publishes whose latencies
/// add up to `latency_total_ns`.
pub fn breakdown_of(
    stages: &[(&str, &Histogram<u64>, u64)],
    latency_total_ns: u64,
    publishes_ok: u64,
) -> Vec<BreakdownRow> {
    let in_stages: u64 = stages.iter().map(|s| s.2).sum();
    // In a pipelined batch each publish is charged the whole call, while its latency starts at its own
    // encode, so the stages can add up to a little more than the latency: shares are of the larger.
    let total = latency_total_ns.max(in_stages).max(1) as f64;
    let mut rows: Vec<BreakdownRow> = stages
        .iter()
        .map(|(stage, h, total_ns)| BreakdownRow {
            stage: stage.to_string(),
            count: h.len(),
            mean_ns: total_ns / h.len().max(1),
            p50: Some(h.value_at_quantile(0.5)),
            p99: Some(h.value_at_quantile(0.99)),
            share: *total_ns as f64 / total,
        })
        .collect();
    let outside = latency_total_ns.saturating_sub(in_stages);
    if !rows.is_empty() && outside > 0 {
        rows.push(BreakdownRow {
            stage: "(outside stages)".into(),
            count: publishes_ok,
            mean_ns: outside / publishes_ok.max(1),
            p50: None,
            p99: None,
            share: outside as f64 / total,
        });
    }
    rows.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.stage.cmp(&b.stage)));
    rows
}

impl FloorSummary {
    /// `floor`'s figures, and `case`'s as ratios to them.
    pub fn of(floor: &Floor, case: &CaseResult) -> FloorSummary {
        let latency_ns = LatencySummary::of(&floor.latency);
        let case_p50 = (!case.latency.is_empty()).then(|| case.latency.value_at_quantile(0.5));
        let throughput = floor.throughput();
        FloorSummary {
            client: floor.client.clone(),
            units: floor.units,
            elapsed_s: floor.elapsed.as_secs_f64(),
            throughput_per_s: throughput,
            latency_ns,
            p50_ratio: case_p50
                .zip(latency_ns.p50)
                .map(|(c, f)| c as f64 / f.max(1) as f64),
            throughput_ratio: (throughput > 0.0).then(|| case.throughput() / throughput),
            unavailable: floor.unavailable.clone(),
        }
    }
}
