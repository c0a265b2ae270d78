//! `taskbench merge`: the run folders of a scenario's shards (`--shard I/N`) as one run folder, as if one
//! machine had run all the load: histograms added exactly (their V2 encodings), counts and errors summed,
//! throughput over the union of the shards' windows, timelines aligned on the wall clock with each
//! interval's histogram (from the shards' `.hlog` files) added exactly, folded stacks summed; then the usual
//! summary.json, .hgrm, .hlog, flamegraphs and report.html.

//!
//! `shards.rs` reads and checks the shards' run folders, `case.rs` merges one case's summaries, and
//! `timeline.rs` its timelines and interval logs; this file runs the merge and writes the merged folder.

mod case;
mod shards;
mod timeline;

use super::RunFolder;
use crate::human::human_count;
use crate::profile::{self, View, flame::SvgStyle, folded::Folded};
use crate::summary::{CaseSummary, Summary};
use anyhow::Context;
use std::path::{Path, PathBuf};

/// Merges the run folders `dirs` (one per shard) into `out`, which must be empty or not exist (or, with
/// `force`, hold only taskbench's files); returns the merged summary. Runs of different scenarios, runs that are not shards, and a shard given twice are
/// refused, saying why.
pub fn merge(
    dirs: &[PathBuf],
    out: &Path,
    force: bool,
    command_line: Vec<String>,
) -> anyhow::Result<Summary> {
    let runs: Vec<(PathBuf, Summary)> = dirs
        .iter()
        .map(|d| Summary::read(d).map(|s| (d.clone(), s)))
        .collect::<Result<_, _>>()?;
    shards::check_shards(&runs)?;
    let first = &runs[0].1;
    // Every field named (no `..first`): a field added to Summary fails to compile here until merge decides
    // what to do with it.
    let mut merged = Summary {
        scenario: first.scenario.clone(),
        scenario_file: first.scenario_file.clone(),
        started_at: runs
            .iter()
            .map(|(_, s)| s.started_at.clone())
            .min()
            .expect("at least one run"),
        taskbench_version: first.taskbench_version.clone(),
        environment: first.environment.clone(),
        shard: None,
        interrupted: runs.iter().any(|(_, s)| s.interrupted),
        cases: Vec::new(),
    };
    merged.environment.command_line = command_line;
    let note = shards::merged_from(&runs);
    let mut hlogs: Vec<Option<Vec<u8>>> = Vec::new();
    for i in 0..first.cases.len() {
        let (c, hlog) = merge_shards_case(&runs, i, &note)?;
        merged.cases.push(c);
        hlogs.push(hlog);
    }
    write_run_folder(&runs, &merged, &hlogs, out, force)?;
    Ok(merged)
}

/// Case `i` of every shard in `runs` as one case, its notes led by `note` (which shards were merged), and
/// its merged interval log when every shard's was read.
fn merge_shards_case(
    runs: &[(PathBuf, Summary)],
    i: usize,
    note: &str,
) -> anyhow::Result<(CaseSummary, Option<Vec<u8>>)> {
    let parts: Vec<&CaseSummary> = runs.iter().map(|(_, s)| &s.cases[i]).collect();
    let mut unlogged: Vec<String> = Vec::new();
    let logged: Vec<Option<Vec<Vec<u8>>>> = runs
        .iter()
        .map(|(dir, s)| match shards::shard_intervals(dir, &s.cases[i]) {
            Ok(intervals) => Some(intervals),
            Err(why) => {
                unlogged.push(format!("shard {}'s {why:#}", s.shard.expect("checked")));
                None
            }
        })
        .collect();
    let (mut c, hlog) = case::merge_case(&parts, &logged)?;
    c.notes.insert(0, note.to_string());
    if !unlogged.is_empty() {
        c.notes.push(format!(
            "{}: the timeline's p50 and p99 are null where that shard's intervals share one with \
             another shard's (counts and max stay exact), and no merged {}.hlog is written",
            unlogged.join("; "),
            c.name
        ));
    }
    Ok((c, hlog))
}

/// Writes the merged run folder `out`: the first shard's scenario.toml, each case's interval log (`hlogs`,
/// in case order), .hgrm and flamegraphs, then summary.json and report.html.
fn write_run_folder(
    runs: &[(PathBuf, Summary)],
    merged: &Summary,
    hlogs: &[Option<Vec<u8>>],
    out: &Path,
    force: bool,
) -> anyhow::Result<()> {
    let first_dir = &runs[0].0;
    let folder = RunFolder::create(Some(out), &merged.scenario, &merged.started_at, force)?;
    if let Ok(text) = std::fs::read_to_string(first_dir.join("scenario.toml")) {
        folder.write("scenario.toml", text.as_bytes())?;
    }
    for (c, hlog) in merged.cases.iter().zip(hlogs) {
        if let Some(hlog) = hlog {
            folder.write(&format!("{}.hlog", c.name), hlog)?;
        }
        let latency = c.decode_histogram()?;
        folder.write(
            &format!("{}.hgrm", c.name),
            super::hgrm::percentile_distribution(&latency).as_bytes(),
        )?;
        write_profiles(&folder, runs, c)?;
    }
    folder
        .write_summary(merged)
        .and_then(|()| folder.write_report(merged, None))
}

/// The flamegraphs of merged case `c`: each view's folded stacks summed over the shards in `runs` that
/// recorded it.
fn write_profiles(
    folder: &RunFolder,
    runs: &[(PathBuf, Summary)],
    c: &CaseSummary,
) -> anyhow::Result<()> {
    for view in View::ALL {
        let mut folded = Folded::default();
        let mut any = false;
        for (dir, _) in runs {
            let path = dir.join(format!("{}.{}.folded", c.name, view.name()));
            if let Ok(text) = std::fs::read_to_string(&path) {
                let part = Folded::parse(&text).with_context(|| path.display().to_string())?;
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
            )?;
        }
    }
    Ok(())
}

/// What `taskbench merge` prints: the side-by-side table of the merged cases, and where they are.
pub fn text(summary: &Summary, out: &Path) -> String {
    let mut s = super::table::comparison_of(&summary.cases);
    s.push_str(&format!("merged run: {}\n", out.display()));
    s
}
