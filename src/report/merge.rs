//! `taskbench merge`: the run folders of a scenario's shards (`--shard I/N`) as one run folder, as if one
//! machine had run all the load: histograms added exactly (their V2 encodings), counts and errors summed,
//! throughput over the union of the shards' windows, timelines aligned on the wall clock with each
//! interval's histogram (from the shards' `.hlog` files) added exactly, folded stacks summed; then the usual
//! summary.json, .hgrm, .hlog, flamegraphs and report.html.

use super::RunFolder;
use crate::human::human_count;
use crate::profile::{self, View, flame::SvgStyle, folded::Folded};
use crate::summary::{
    CaseSummary, IntervalSummary, LatencySummary, StageSummary, Summary, breakdown_of,
    decode_histogram, encode_histogram,
};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use indexmap::IndexMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// Merges the run folders `dirs` (one per shard) into `out`, which must be empty or not exist (or, with
/// `force`, hold only taskbench's files); returns the merged summary. Runs of different scenarios, runs that are not shards, and a shard given twice are
/// refused, saying why.
pub fn merge(
    dirs: &[PathBuf],
    out: &Path,
    force: bool,
    command_line: Vec<String>,
) -> Result<Summary, String> {
    let runs: Vec<(PathBuf, Summary)> = dirs
        .iter()
        .map(|d| Summary::read(d).map(|s| (d.clone(), s)))
        .collect::<Result<_, _>>()?;
    check_shards(&runs)?;
    let (first_dir, first) = &runs[0];
    let count = first.shard.expect("checked").count;
    let mut merged = Summary {
        started_at: runs
            .iter()
            .map(|(_, s)| s.started_at.clone())
            .min()
            .expect("at least one run"),
        shard: None,
        interrupted: runs.iter().any(|(_, s)| s.interrupted),
        cases: Vec::new(),
        ..first.clone()
    };
    merged.environment.command_line = command_line;
    let present: Vec<u32> = runs
        .iter()
        .map(|(_, s)| s.shard.expect("checked").index)
        .collect();
    let mut note = format!(
        "merged from {} of {count} shards ({})",
        runs.len(),
        runs.iter()
            .map(|(d, s)| format!("{} in {}", s.shard.expect("checked"), d.display()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let missing: Vec<String> = (0..count)
        .filter(|i| !present.contains(i))
        .map(|i| i.to_string())
        .collect();
    if !missing.is_empty() {
        note.push_str(&format!(
            "; shard {} missing: the figures cover only the shards given",
            missing.join(", ")
        ));
    }
    let mut hlogs: Vec<Option<Vec<u8>>> = Vec::new();
    for i in 0..first.cases.len() {
        let parts: Vec<&CaseSummary> = runs.iter().map(|(_, s)| &s.cases[i]).collect();
        let mut unlogged: Vec<String> = Vec::new();
        let logged: Vec<Option<Vec<Vec<u8>>>> = runs
            .iter()
            .map(|(dir, s)| match shard_intervals(dir, &s.cases[i]) {
                Ok(intervals) => Some(intervals),
                Err(why) => {
                    unlogged.push(format!("shard {}'s {why}", s.shard.expect("checked")));
                    None
                }
            })
            .collect();
        let (mut c, hlog) = merge_case(&parts, &logged)?;
        c.notes.insert(0, note.clone());
        if !unlogged.is_empty() {
            c.notes.push(format!(
                "{}: the timeline's p50 and p99 are null where that shard's intervals share one with \
                 another shard's (counts and max stay exact), and no merged {}.hlog is written",
                unlogged.join("; "),
                c.name
            ));
        }
        merged.cases.push(c);
        hlogs.push(hlog);
    }

    let folder = RunFolder::create(Some(out), &merged.scenario, &merged.started_at, force)
        .map_err(|e| format!("{e:#}"))?;
    if let Ok(text) = std::fs::read_to_string(first_dir.join("scenario.toml")) {
        folder
            .write("scenario.toml", text.as_bytes())
            .map_err(|e| format!("{e:#}"))?;
    }
    for (c, hlog) in merged.cases.iter().zip(&hlogs) {
        if let Some(hlog) = hlog {
            folder
                .write(&format!("{}.hlog", c.name), hlog)
                .map_err(|e| format!("{e:#}"))?;
        }
        let latency = c.decode_histogram()?;
        folder
            .write(
                &format!("{}.hgrm", c.name),
                super::hgrm::percentile_distribution(&latency).as_bytes(),
            )
            .map_err(|e| format!("{e:#}"))?;
        for view in View::ALL {
            let mut folded = Folded::default();
            let mut any = false;
            for (dir, _) in &runs {
                let path = dir.join(format!("{}.{}.folded", c.name, view.name()));
                if let Ok(text) = std::fs::read_to_string(&path) {
                    let part =
                        Folded::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                    folded.add_all(&part);
                    any = true;
                }
            }
            if any {
                let subtitle = format!(
                    "{} {}, {} publishes on {} shards",
                    c.backend,
                    c.path,
                    human_count(c.publishes_ok),
                    runs.len()
                );
                profile::write_profile(
                    &folder.dir,
                    &c.name,
                    view,
                    &folded,
                    &view.title(&c.name, c.publishes_ok),
                    &subtitle,
                    &SvgStyle::default(),
                )
                .map_err(|e| format!("{e:#}"))?;
            }
        }
    }
    folder
        .write_summary(&merged)
        .and_then(|()| folder.write_report(&merged, None))
        .map_err(|e| format!("{e:#}"))?;
    Ok(merged)
}

/// Every run is a shard of the same scenario, with the same cases, out of the same count, each once.
fn check_shards(runs: &[(PathBuf, Summary)]) -> Result<(), String> {
    let Some((first_dir, first)) = runs.first() else {
        return Err("give the run folders of the shards to merge".into());
    };
    let mut seen: Vec<(u32, &Path)> = Vec::new();
    for (dir, s) in runs {
        let Some(shard) = s.shard else {
            return Err(format!(
                "{} is not a shard (it was not run with --shard), so it cannot be merged",
                dir.display()
            ));
        };
        if s.scenario != first.scenario {
            return Err(format!(
                "{} ran scenario {:?} and {} ran {:?}: only shards of one scenario merge",
                first_dir.display(),
                first.scenario,
                dir.display(),
                s.scenario
            ));
        }
        let names = |s: &Summary| s.cases.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        if names(s) != names(first) {
            return Err(format!(
                "{} ran cases {:?} and {} ran {:?}: shards must run the same cases (the same --case)",
                first_dir.display(),
                names(first),
                dir.display(),
                names(s)
            ));
        }
        for (a, b) in first.cases.iter().zip(&s.cases) {
            if let Some(why) = differs(a, b) {
                return Err(format!(
                    "case {:?} ran with other settings in {} than in {} ({why}): shards must run the same scenario",
                    a.name,
                    dir.display(),
                    first_dir.display()
                ));
            }
        }
        if shard.count != first.shard.expect("first is a shard").count {
            return Err(format!(
                "{} is shard {shard} but {} is one of {}: shards of one run share a count",
                dir.display(),
                first_dir.display(),
                first.shard.expect("first is a shard").count
            ));
        }
        if let Some((_, other)) = seen.iter().find(|(i, _)| *i == shard.index) {
            return Err(format!(
                "shard {shard} is given twice ({} and {}): each shard's load is counted once",
                other.display(),
                dir.display()
            ));
        }
        seen.push((shard.index, dir));
    }
    Ok(())
}

/// What makes two shards' runs of a case different, beyond the share of the load each took.
fn differs(a: &CaseSummary, b: &CaseSummary) -> Option<&'static str> {
    let (x, y) = (&a.settings, &b.settings);
    if (a.backend, a.path, a.mode) != (b.backend, b.path, b.mode) {
        Some("backend, path or loop")
    } else if x.options != y.options {
        Some("backend options")
    } else if (x.duration_s, x.publish_timeout_s, x.stage_timing)
        != (y.duration_s, y.publish_timeout_s, y.stage_timing)
    {
        Some("duration, publish_timeout or stage timing")
    } else if (
        &x.task.name,
        &x.task.args,
        x.task.priority,
        x.task.body_bytes,
    ) != (
        &y.task.name,
        &y.task.args,
        y.task.priority,
        y.task.body_bytes,
    ) {
        Some("task")
    } else {
        None
    }
}

fn decode(what: &str, case: &str, text: Option<&str>) -> Result<Option<Histogram<u64>>, String> {
    text.map(|t| decode_histogram(t).map_err(|e| format!("case {case:?}: {what} {e}")))
        .transpose()
}

/// The interval histograms (V2-deflate encoded) of `part`, a shard's case, read from its run folder `dir`'s
/// `<case>.hlog`, one for each interval of `part`'s timeline, in its order (none when the timeline is
/// empty: the run wrote no log). An error names the file and says what is wrong with it: missing, not
/// readable, or not the log of that timeline (another count of intervals, or of publishes in one).
fn shard_intervals(dir: &Path, part: &CaseSummary) -> Result<Vec<Vec<u8>>, String> {
    if part.timeline.is_empty() {
        return Ok(Vec::new());
    }
    let file = format!("{}.hlog", part.name);
    let path = dir.join(&file);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("{file} is missing ({})", path.display()));
        }
        Err(e) => return Err(format!("{file} cannot be read ({}: {e})", path.display())),
    };
    let unreadable = |why: String| format!("{file} cannot be read ({}: {why})", path.display());
    let logged = super::hlog::read(&bytes).map_err(unreadable)?;
    let mismatch = |why: String| {
        format!(
            "{file} does not match the shard's summary.json ({}: {why})",
            path.display()
        )
    };
    if logged.len() != part.timeline.len() {
        return Err(mismatch(format!(
            "{} intervals where summary.json's timeline has {}",
            logged.len(),
            part.timeline.len()
        )));
    }
    let mut out = Vec::with_capacity(logged.len());
    for (n, (l, t)) in logged.into_iter().zip(&part.timeline).enumerate() {
        // The log's timestamps are written to the millisecond.
        let at = l.start.as_secs_f64();
        if l.count != t.ok || (at - t.start_s).abs() > 0.002 || l.tag.as_deref() != Some(&part.name)
        {
            return Err(mismatch(format!(
                "interval {} holds {} publishes from {at:.3} s tagged {:?} where summary.json's timeline \
                 has {} from {:.3} s of case {:?}",
                n + 1,
                l.count,
                l.tag.as_deref().unwrap_or(""),
                t.ok,
                t.start_s,
                part.name
            )));
        }
        out.push(l.encoded);
    }
    Ok(out)
}

/// `parts` (the same case from every shard) as one case, with `logged[k]` the interval histograms of
/// `parts[k]`'s timeline (see [`shard_intervals`]; `None` when they could not be read); and the merged
/// interval log when every shard's was read.
fn merge_case(
    parts: &[&CaseSummary],
    logged: &[Option<Vec<Vec<u8>>>],
) -> Result<(CaseSummary, Option<Vec<u8>>), String> {
    let first = parts[0];
    let name = first.name.as_str();
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
                format!(
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
        for n in &p.notes {
            if !notes.contains(n) {
                notes.push(n.clone());
            }
        }
    }
    errors.sort_by(|ka, a, kb, b| b.cmp(a).then(ka.cmp(kb)));
    let publishes_ok: u64 = parts.iter().map(|p| p.publishes_ok).sum();
    let latency_total_ns: u64 = parts.iter().map(|p| p.latency_total_ns).sum();
    // The union of the shards' measured windows, on the wall clock.
    let windows: Vec<(f64, f64)> = parts
        .iter()
        .filter_map(|p| p.started_unix_s.map(|s| (s, s + p.elapsed_s)))
        .collect();
    let (start, elapsed_s) = if windows.len() == parts.len() {
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
    };
    let stage_rows: Vec<(&str, &Histogram<u64>, u64)> = stages
        .iter()
        .map(|(k, (h, t))| (k.as_str(), h, *t))
        .collect();
    let breakdown = breakdown_of(&stage_rows, latency_total_ns, publishes_ok);
    let mut settings = first.settings.clone();
    settings.publishes = parts
        .iter()
        .map(|p| p.settings.publishes)
        .sum::<Option<u64>>();
    settings.warmup = parts.iter().map(|p| p.settings.warmup).sum();
    settings.concurrency = parts.iter().map(|p| p.settings.concurrency).sum();
    settings.rate = parts.iter().map(|p| p.settings.rate).sum::<Option<f64>>();
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
    let case = CaseSummary {
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
        stages: stages
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
            .collect(),
        breakdown,
        // Schedule lag is a per-shard figure without a histogram to merge; each shard's summary has it.
        schedule_lag_ns: None,
        failed_latency_ns: LatencySummary::of(&failed),
        histogram: encode_histogram(&latency),
        failed_histogram: Some(encode_histogram(&failed)),
        started_unix_s: start,
        interrupted: parts.iter().any(|p| p.interrupted),
        thresholds: Vec::new(),
        timeline: merged_timeline.intervals,
        notes,
        settings,
        ..first.clone()
    };
    Ok((case, merged_timeline.hlog))
}

/// A merged timeline: its intervals, its interval log (when every shard's intervals were added) and what a
/// reader must know about it.
#[derive(Default)]
struct MergedTimeline {
    intervals: Vec<IntervalSummary>,
    hlog: Option<Vec<u8>>,
    notes: Vec<String>,
}

/// The shards' timelines of case `name` on one wall-clock grid from `start` (the earliest shard's measured
/// start), with the first shard's interval length. Each shard interval goes whole into the grid interval
/// its own start falls in (a start within a millionth of an interval below a grid boundary counts as on it): shards started together (`--start-at`) share the grid to within their start's
/// jitter, while the intervals of shards started apart straddle it, and their publishes are counted up to
/// one interval early. Counts are added and the histograms of the shard intervals in one grid interval
/// (`logged`, from the shards' .hlog files) too, so p50, p99 and max are those of the sum; where a shard's
/// histograms are missing (`None`), a grid interval it shares with another shard's has p50 and p99 null
/// (its max, the largest, stays exact), and no interval log is written.
fn timeline(
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
                    },
                    Vec::new(),
                ));
            }
            let (m, from) = &mut grid[index];
            m.ok += i.ok;
            m.failed += i.failed;
            m.max = m.max.max(i.max);
            from.push((k, j));
        }
    }

    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    let mut log = None;
    if logged.iter().all(Option::is_some) {
        match Duration::try_from_secs_f64(start) {
            Ok(since_epoch) => {
                match super::hlog::begin(name, UNIX_EPOCH + since_epoch, &mut out, &mut serializer)
                {
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
                (true, Ok(at), Ok(length)) => super::hlog::write(l, name, &sum, at, length),
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

/// What `taskbench merge` prints: the side-by-side table of the merged cases, and where they are.
pub fn text(summary: &Summary, out: &Path) -> String {
    let mut s = super::table::comparison_of(&summary.cases);
    s.push_str(&format!("merged run: {}\n", out.display()));
    s
}
