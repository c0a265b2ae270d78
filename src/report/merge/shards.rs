//! The shards to merge: each run folder's summary checked against the first (one scenario, the same cases
//! and settings, one count, each shard once), and each case's interval log read back and matched to its
//! timeline.

use crate::report::hlog;
use crate::summary::{CaseSummary, Summary};
use anyhow::{anyhow, bail};
use std::path::{Path, PathBuf};

/// The note every merged case leads with: which shards of how many were merged, from where, and which
/// are missing.
pub(super) fn merged_from(runs: &[(PathBuf, Summary)]) -> String {
    let count = runs[0].1.shard.expect("checked").count;
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
    note
}

/// Every run is a shard of the same scenario, with the same cases, out of the same count, each once.
pub(super) fn check_shards(runs: &[(PathBuf, Summary)]) -> anyhow::Result<()> {
    let Some((first_dir, first)) = runs.first() else {
        bail!("give the run folders of the shards to merge");
    };
    let mut seen: Vec<(u32, &Path)> = Vec::new();
    for (dir, s) in runs {
        let Some(shard) = s.shard else {
            bail!(
                "{} is not a shard (it was not run with --shard), so it cannot be merged",
                dir.display()
            );
        };
        if s.scenario != first.scenario {
            bail!(
                "{} ran scenario {:?} and {} ran {:?}: only shards of one scenario merge",
                first_dir.display(),
                first.scenario,
                dir.display(),
                s.scenario
            );
        }
        let names = |s: &Summary| s.cases.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        if names(s) != names(first) {
            bail!(
                "{} ran cases {:?} and {} ran {:?}: shards must run the same cases (the same --case)",
                first_dir.display(),
                names(first),
                dir.display(),
                names(s)
            );
        }
        for (a, b) in first.cases.iter().zip(&s.cases) {
            if let Some(why) = differs(a, b) {
                bail!(
                    "case {:?} ran with other settings in {} than in {} ({why}): shards must run the same scenario",
                    a.name,
                    dir.display(),
                    first_dir.display()
                );
            }
        }
        if shard.count != first.shard.expect("first is a shard").count {
            bail!(
                "{} is shard {shard} but {} is one of {}: shards of one run share a count",
                dir.display(),
                first_dir.display(),
                first.shard.expect("first is a shard").count
            );
        }
        if let Some((_, other)) = seen.iter().find(|(i, _)| *i == shard.index) {
            bail!(
                "shard {shard} is given twice ({} and {}): each shard's load is counted once",
                other.display(),
                dir.display()
            );
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

/// The interval histograms (V2-deflate encoded) of `part`, a shard's case, read from its run folder `dir`'s
/// `<case>.hlog`, one for each interval of `part`'s timeline, in its order (none when the timeline is
/// empty: the run wrote no log). An error names the file and says what is wrong with it: missing, not
/// readable, or not the log of that timeline (another count of intervals, or of publishes in one).
pub(super) fn shard_intervals(dir: &Path, part: &CaseSummary) -> anyhow::Result<Vec<Vec<u8>>> {
    if part.timeline.is_empty() {
        return Ok(Vec::new());
    }
    let file = format!("{}.hlog", part.name);
    let path = dir.join(&file);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("{file} is missing ({})", path.display());
        }
        Err(e) => bail!("{file} cannot be read ({}: {e})", path.display()),
    };
    let logged = hlog::read(&bytes)
        .map_err(|e| anyhow!("{file} cannot be read ({}: {e})", path.display()))?;
    let mismatch = |why: String| {
        anyhow!(
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
