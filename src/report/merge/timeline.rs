//! A case's merged timeline: the shards' intervals on one wall-clock grid, their counts added and their
//! histograms (from the shards' .hlog files) added exactly, and the merged interval log.

use crate::report::hlog;
use crate::summary::{CaseSummary, IntervalSummary};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use std::time::{Duration, UNIX_EPOCH};

/// A merged timeline: its intervals, its interval log (when every shard's intervals were added) and what a
/// reader must know about it.
#[derive(Default)]
pub(super) struct MergedTimeline {
    pub(super) intervals: Vec<IntervalSummary>,
    pub(super) hlog: Option<Vec<u8>>,
    pub(super) notes: Vec<String>,
}

/// The shards' timelines of case `name` on one wall-clock grid from `start` (the earliest shard's measured
/// start), with the first shard's interval length. Each shard interval goes whole into the grid interval
/// its own start falls in (a start within a millionth of an interval below a grid boundary counts as on it): shards started together (`--start-at`) share the grid to within their start's
/// jitter, while the intervals of shards started apart straddle it, and their publishes are counted up to
/// one interval early. Counts are added and the histograms of the shard intervals in one grid interval
/// (`logged`, from the shards' .hlog files) too, so p50, p99 and max are those of the sum; where a shard's
/// histograms are missing (`None`), a grid interval it shares with another shard's has p50 and p99 null
/// (its max, the largest, stays exact), and no interval log is written.
pub(super) fn timeline(
    name: &str,
    parts: &[&CaseSummary],
    logged: &[Option<Vec<Vec<u8>>>],
    start: f64,
) -> MergedTimeline {
    let mut merged = MergedTimeline::default();
    // The interval length: the longest first interval (a one-interval timeline's is cut at its end).
    let length = parts
        .iter()
        .filter_map(|p| p.timeline.first().map(|i| i.length_s))
        .fold(0.0f64, f64::max);
    if !(length > 0.0 && length.is_finite()) {
        return merged;
    }
    let mut grid = grid(parts, start, length);
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    let mut log = None;
    if logged.iter().all(Option::is_some) {
        match Duration::try_from_secs_f64(start) {
            Ok(since_epoch) => {
                match hlog::begin(name, UNIX_EPOCH + since_epoch, &mut out, &mut serializer) {
                    Ok(l) => log = Some(l),
                    Err(e) => merged.notes.push(format!("no merged {name}.hlog: {e:#}")),
                }
            }
            Err(_) => merged.notes.push(format!(
                "no merged {name}.hlog: the shards' start ({start} s since the epoch) is not a time"
            )),
        }
    }
    // Added up in an auto-resizing histogram: a shard's log written with other bounds still adds.
    let mut sum = crate::record::new_histogram();
    sum.auto(true);
    let mut failed_to_add = false;
    for (m, from) in &mut grid {
        sum.reset();
        let mut exact = true;
        for &(k, j) in from.iter() {
            let added = logged[k]
                .as_ref()
                .and_then(|intervals| intervals.get(j))
                .and_then(|encoded| {
                    Deserializer::new()
                        .deserialize::<u64, _>(&mut encoded.as_slice())
                        .ok()
                })
                .is_some_and(|h| sum.add(&h).is_ok());
            if !added && logged[k].is_some() {
                failed_to_add = true;
            }
            exact &= added;
        }
        if exact {
            let q = |q: f64| (!sum.is_empty()).then(|| sum.value_at_quantile(q));
            (m.p50, m.p99) = (q(0.5), q(0.99));
            m.max = (!sum.is_empty()).then(|| sum.max());
        } else if let [(k, j)] = from[..] {
            // One shard interval alone: its own percentiles are the grid interval's.
            let i = &parts[k].timeline[j];
            (m.p50, m.p99) = (i.p50, i.p99);
        }
        m.throughput_per_s = m.ok as f64 / m.length_s;
        if let Some(l) = &mut log {
            let written = match (
                exact,
                Duration::try_from_secs_f64(m.start_s),
                Duration::try_from_secs_f64(m.length_s),
            ) {
                (true, Ok(at), Ok(length)) => hlog::write(l, name, &sum, at, length),
                (false, _, _) => Err(anyhow::anyhow!("an interval's histograms did not add up")),
                _ => Err(anyhow::anyhow!(
                    "an interval's start or length is not a time"
                )),
            };
            if let Err(e) = written {
                merged.notes.push(format!("no merged {name}.hlog: {e:#}"));
                log = None;
            }
        }
    }
    if failed_to_add {
        merged.notes.push(
            "a shard's interval histogram did not decode or add: the grid intervals it is in have p50 \
             and p99 null where it shares one with another shard's"
                .into(),
        );
    }
    let complete = log.is_some() && !grid.is_empty();
    drop(log);
    merged.hlog = complete.then_some(out);
    merged.intervals = grid.into_iter().map(|(m, _)| m).collect();
    merged
}

/// The grid of `length`-long intervals from `start` that the shard intervals of `parts` fall in, each with
/// the counts and largest max of its shard intervals added and which they are, as (shard, interval)
/// indices into `parts` and their timelines.
fn grid(
    parts: &[&CaseSummary],
    start: f64,
    length: f64,
) -> Vec<(IntervalSummary, Vec<(usize, usize)>)> {
    // Each grid interval with the shard intervals in it, as (shard, interval) indices.
    let mut grid: Vec<(IntervalSummary, Vec<(usize, usize)>)> = Vec::new();
    for (k, p) in parts.iter().enumerate() {
        let Some(own) = p.started_unix_s else {
            continue;
        };
        // The shard's start from the earliest first: an offset added to seconds since the epoch loses its
        // sub-microseconds (the earliest shard's second interval fell into the first), a difference does not.
        let from_start = own - start;
        for (j, i) in p.timeline.iter().enumerate() {
            let at = from_start + i.start_s;
            let index = ((at / length) + 1e-6).floor().max(0.0) as usize;
            while grid.len() <= index {
                let k = grid.len() as f64;
                grid.push((
                    IntervalSummary {
                        start_s: k * length,
                        length_s: length,
                        ok: 0,
                        failed: 0,
                        throughput_per_s: 0.0,
                        p50: None,
                        p99: None,
                        max: None,
                        events: Vec::new(),
                        // A shard's processes are its own machine's: not added up.
                        resources: None,
                    },
                    Vec::new(),
                ));
            }
            let (m, from) = &mut grid[index];
            m.ok += i.ok;
            m.failed += i.failed;
            m.max = m.max.max(i.max);
            for e in &i.events {
                if !m.events.contains(e) {
                    m.events.push(e.clone());
                }
            }
            from.push((k, j));
        }
    }
    grid
}
