//! `taskbench merge`: the run folders of a scenario's shards (`--shard I/N`) as one run folder, as if one
//! machine had run all the load: histograms added exactly (their V2 encodings), counts and errors summed,
//! throughput over the union of the shards' windows, timelines aligned on the wall clock, folded stacks
//! summed; then the usual summary.json, .hgrm, flamegraphs and report.html.

use super::RunFolder;
use crate::human::human_count;
use crate::profile::{self, View, flame::SvgStyle, folded::Folded};
use crate::summary::{
    CaseSummary, IntervalSummary, LatencySummary, StageSummary, Summary, breakdown_of,
    decode_histogram, encode_histogram,
};
use hdrhistogram::Histogram;
use indexmap::IndexMap;
use std::path::{Path, PathBuf};

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
    for i in 0..first.cases.len() {
        let parts: Vec<&CaseSummary> = runs.iter().map(|(_, s)| &s.cases[i]).collect();
        let mut c = merge_case(&parts)?;
        c.notes.insert(0, note.clone());
        merged.cases.push(c);
    }

    let folder = RunFolder::create(Some(out), &merged.scenario, &merged.started_at, force)
        .map_err(|e| format!("{e:#}"))?;
    if let Ok(text) = std::fs::read_to_string(first_dir.join("scenario.toml")) {
        folder
            .write("scenario.toml", text.as_bytes())
            .map_err(|e| format!("{e:#}"))?;
    }
    for c in &merged.cases {
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

/// `parts` (the same case from every shard) as one case.
fn merge_case(parts: &[&CaseSummary]) -> Result<CaseSummary, String> {
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
                    "case {name:?}: stage {stage:?} has no histogram (a summary.json from before 0.3); \
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
        (Some(start), end - start)
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
    Ok(CaseSummary {
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
        timeline: start.map_or_else(Vec::new, |start| timeline(parts, start)),
        notes,
        settings,
        ..first.clone()
    })
}

/// The shards' timelines on one wall-clock grid from `start`, with the first shard's interval length:
/// counts added, the max the largest; p50 and p99 only where one shard alone contributed (the shards'
/// .hlog files hold each interval's histogram for an exact merge).
fn timeline(parts: &[&CaseSummary], start: f64) -> Vec<IntervalSummary> {
    // The interval length: the longest first interval (a one-interval timeline's is cut at its end).
    let length = parts
        .iter()
        .filter_map(|p| p.timeline.first().map(|i| i.length_s))
        .fold(0.0f64, f64::max);
    if length <= 0.0 {
        return Vec::new();
    }
    let mut out: Vec<(IntervalSummary, usize)> = Vec::new();
    for p in parts {
        let Some(own) = p.started_unix_s else {
            continue;
        };
        for i in &p.timeline {
            let at = own + i.start_s - start;
            let index = ((at / length) + 1e-9).floor().max(0.0) as usize;
            while out.len() <= index {
                let k = out.len() as f64;
                out.push((
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
                    0,
                ));
            }
            let (m, shards) = &mut out[index];
            m.ok += i.ok;
            m.failed += i.failed;
            m.max = m.max.max(i.max);
            *shards += 1;
            (m.p50, m.p99) = if *shards == 1 {
                (i.p50, i.p99)
            } else {
                (None, None)
            };
        }
    }
    out.into_iter()
        .map(|(mut m, _)| {
            m.throughput_per_s = m.ok as f64 / m.length_s;
            m
        })
        .collect()
}

/// What `taskbench merge` prints: the side-by-side table of the merged cases, and where they are.
pub fn text(summary: &Summary, out: &Path) -> String {
    let mut s = super::table::comparison_of(&summary.cases);
    s.push_str(&format!("merged run: {}\n", out.display()));
    s
}
