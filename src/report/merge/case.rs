//! One case merged over the shards: histograms added exactly, counts and errors summed, throughput over
//! the union of the shards' windows, settings summed where each shard took a share of the load.

use super::timeline::{MergedTimeline, timeline};
use crate::facts::CaseFacts;
use crate::summary::{
    CaseSettings, CaseSummary, LatencySummary, Mode, StageSummary, SummaryError,
    UnknownFateSummary, breakdown_of, decode_histogram, encode_histogram,
};
use anyhow::anyhow;
use hdrhistogram::Histogram;
use indexmap::IndexMap;

/// The histogram `text` (if any) of case `case`, which holds it in `field`.
fn decode(
    field: &'static str,
    case: &str,
    text: Option<&str>,
) -> Result<Option<Histogram<u64>>, SummaryError> {
    text.map(|t| {
        decode_histogram(t).map_err(|error| SummaryError::BadHistogram {
            case: case.to_string(),
            field,
            error,
        })
    })
    .transpose()
}

/// `parts` (the same case from every shard) as one case, with `logged[k]` the interval histograms of
/// `parts[k]`'s timeline (see [`shard_intervals`](super::shards::shard_intervals); `None` when they could
/// not be read); and the merged interval log when every shard's was read.
pub(super) fn merge_case(
    parts: &[&CaseSummary],
    logged: &[Option<Vec<Vec<u8>>>],
) -> anyhow::Result<(CaseSummary, Option<Vec<u8>>)> {
    let first = parts[0];
    let name = first.name.as_str();
    let Added {
        latency,
        failed,
        errors,
        messages,
        stages,
        mut notes,
    } = add_parts(parts, name)?;
    let publishes_ok: u64 = parts.iter().map(|p| p.publishes_ok).sum();
    let latency_total_ns: u64 = parts.iter().map(|p| p.latency_total_ns).sum();
    let (start, elapsed_s) = measured_window(parts, &mut notes);
    let stage_rows: Vec<(&str, &Histogram<u64>, u64)> = stages
        .iter()
        .map(|(k, (h, t))| (k.as_str(), h, *t))
        .collect();
    let breakdown = breakdown_of(&stage_rows, latency_total_ns, publishes_ok);
    let settings = merged_settings(parts);
    if parts.iter().any(|p| !p.thresholds.is_empty()) {
        notes.push(
            "thresholds were checked per shard (see each shard's summary.json), not on the merged figures"
                .into(),
        );
    }
    let merged_timeline = match start {
        Some(start) => timeline(name, parts, logged, start),
        None => MergedTimeline::default(),
    };
    notes.extend(merged_timeline.notes);
    let facts = CaseFacts::merged(parts.iter().map(|p| &p.facts), first.mode == Mode::Open);
    notes.extend(facts.notes());
    // Every field named (no `..first`): a field added to CaseSummary fails to compile here until merge
    // decides what to do with it.
    let case = CaseSummary {
        name: first.name.clone(),
        backend: first.backend,
        path: first.path,
        mode: first.mode,
        concurrency: settings.concurrency,
        rate: settings.rate,
        publishes_ok,
        warmup_ok: parts.iter().map(|p| p.warmup_ok).sum(),
        errors,
        error_messages: messages,
        delivered: parts.iter().map(|p| p.delivered).sum::<Option<u64>>(),
        elapsed_s,
        throughput_per_s: if elapsed_s > 0.0 {
            publishes_ok as f64 / elapsed_s
        } else {
            0.0
        },
        latency_ns: LatencySummary::of(&latency),
        latency_total_ns,
        stages: stage_summaries(&stages),
        breakdown,
        // Schedule lag is a per-shard figure without a histogram to merge; each shard's summary has it.
        schedule_lag_ns: None,
        failed_latency_ns: LatencySummary::of(&failed),
        histogram: encode_histogram(&latency),
        failed_histogram: Some(encode_histogram(&failed)),
        started_unix_s: start,
        interrupted: parts.iter().any(|p| p.interrupted),
        notes,
        facts,
        settings,
        thresholds: Vec::new(),
        timeline: merged_timeline.intervals,
        // Each shard measured its own machine's floor; their ratios do not add up.
        floor: None,
        // Every shard ran the same events on its own clock; the first shard's stand for them.
        events: first.events.clone(),
        unknown_fate: parts.iter().filter_map(|p| p.unknown_fate).reduce(|a, b| {
            UnknownFateSummary {
                publishes: a.publishes + b.publishes,
                delivered: a.delivered.zip(b.delivered).map(|(x, y)| x + y),
            }
        }),
        // Each shard's processes ran on its own machine: their memory and CPU do not add up to one case's.
        resources: None,
        // A search is one process's answer; shards of a run have none.
        max_rate: None,
    };
    Ok((case, merged_timeline.hlog))
}

/// What the shards' parts of a case add up to: histograms, error counts and first messages, stages
/// (histogram and summed ns), and their notes, each once.
struct Added {
    latency: Histogram<u64>,
    failed: Histogram<u64>,
    errors: IndexMap<String, u64>,
    messages: IndexMap<String, String>,
    stages: IndexMap<String, (Histogram<u64>, u64)>,
    notes: Vec<String>,
}

/// Adds up `parts`, the shards' summaries of case `name`; errors come most frequent first.
fn add_parts(parts: &[&CaseSummary], name: &str) -> anyhow::Result<Added> {
    let mut latency = crate::record::new_histogram();
    let mut failed = crate::record::new_histogram();
    let mut errors: IndexMap<String, u64> = IndexMap::new();
    let mut messages: IndexMap<String, String> = IndexMap::new();
    let mut stages: IndexMap<String, (Histogram<u64>, u64)> = IndexMap::new();
    let mut notes: Vec<String> = Vec::new();
    for p in parts {
        latency.add(p.decode_histogram()?).expect("same bounds");
        if let Some(h) = decode("failed_histogram", name, p.failed_histogram.as_deref())? {
            failed.add(h).expect("same bounds");
        }
        for (kind, n) in &p.errors {
            *errors.entry(kind.clone()).or_default() += n;
        }
        for (kind, m) in &p.error_messages {
            messages.entry(kind.clone()).or_insert_with(|| m.clone());
        }
        for (stage, s) in &p.stages {
            let h = decode("stage histogram", name, s.histogram.as_deref())?.ok_or_else(|| {
                anyhow!(
                    "case {name:?}: stage {stage:?} has no histogram (a summary.json from before 0.2.0); \
                     run the shards again with this taskbench"
                )
            })?;
            let entry = stages
                .entry(stage.clone())
                .or_insert_with(|| (crate::record::new_histogram(), 0));
            entry.0.add(h).expect("same bounds");
            entry.1 += s.total_ns;
        }
        // The sentences of a shard's figures are said again from the merged figures.
        let figures = p.facts.notes();
        for n in &p.notes {
            if !notes.contains(n) && !figures.contains(n) {
                notes.push(n.clone());
            }
        }
    }
    errors.sort_by(|ka, a, kb, b| b.cmp(a).then(ka.cmp(kb)));
    Ok(Added {
        latency,
        failed,
        errors,
        messages,
        stages,
        notes,
    })
}

/// When the merged case's measured publishes started (`None` when a shard did not record it, saying so in
/// `notes`) and how long they took: the union of the shards' measured windows, on the wall clock.
fn measured_window(parts: &[&CaseSummary], notes: &mut Vec<String>) -> (Option<f64>, f64) {
    let windows: Vec<(f64, f64)> = parts
        .iter()
        .filter_map(|p| p.started_unix_s.map(|s| (s, s + p.elapsed_s)))
        .collect();
    if windows.len() == parts.len() {
        let start = windows.iter().map(|w| w.0).fold(f64::MAX, f64::min);
        let end = windows.iter().map(|w| w.1).fold(f64::MIN, f64::max);
        // Never shorter than a shard's own window: shards that started together (`--start-at`) span the
        // same seconds, and `end - start` in seconds since the epoch rounds off a shard's elapsed time.
        let longest = parts.iter().map(|p| p.elapsed_s).fold(0.0, f64::max);
        (Some(start), (end - start).max(longest))
    } else {
        notes.push(
            "a shard did not record when it started: the elapsed time is the longest shard's"
                .into(),
        );
        (None, parts.iter().map(|p| p.elapsed_s).fold(0.0, f64::max))
    }
}

/// The settings the merged case ran with: the first shard's, with the shares of the load (publishes,
/// warm-up, concurrency, rate) summed over the shards.
fn merged_settings(parts: &[&CaseSummary]) -> CaseSettings {
    let first = parts[0];
    let mut settings = first.settings.clone();
    settings.publishes = parts
        .iter()
        .map(|p| p.settings.publishes)
        .sum::<Option<u64>>();
    settings.warmup = parts.iter().map(|p| p.settings.warmup).sum();
    settings.concurrency = parts.iter().map(|p| p.settings.concurrency).sum();
    settings.rate = parts.iter().map(|p| p.settings.rate).sum::<Option<f64>>();
    settings
}

/// Each stage's summary from its merged histogram and summed ns, in the order the stages came.
fn stage_summaries(
    stages: &IndexMap<String, (Histogram<u64>, u64)>,
) -> IndexMap<String, StageSummary> {
    stages
        .iter()
        .map(|(k, (h, total_ns))| {
            let s = StageSummary {
                count: h.len(),
                total_ns: *total_ns,
                p50: h.value_at_quantile(0.5),
                p99: h.value_at_quantile(0.99),
                histogram: Some(encode_histogram(h)),
            };
            (k.clone(), s)
        })
        .collect()
}
