//! Reporting: the run folder (summary.json, report.html, one .hgrm, .hlog and flamegraphs per case), the side-by-side table,
//! progress bars, and what `validate` lists.
//!
//! Reads [`CaseResult`]s; never reaches back into the engine or backends.

pub mod breakdown;
pub mod compare;
pub mod faults;
pub mod hgrm;
pub mod hlog;
pub mod html;
pub mod merge;
pub mod metrics;
pub mod plot;
pub mod progress;
mod resources_table;
pub mod search;
pub mod sweep;
pub mod table;
pub mod usl;

use crate::backend::url::redact;
use crate::human::human_count;
use crate::message::FRAME_PREFIX_LEN;
use crate::profile::{self, View, flame::SvgStyle, folded::Folded};
use crate::record::CaseResult;
use crate::run::{CaseEnd, RunOutcome};
use crate::scenario::Scenario;
use crate::summary::{Environment, RunInfo, Summary};
use anyhow::Context;
use std::path::{Path, PathBuf};

/// Writes a run folder as the run goes: each case's files and summary.json as soon as the case ends, so an
/// interrupt or a crash later loses nothing already measured.
pub struct RunWriter {
    pub folder: RunFolder,
    pub info: RunInfo,
    /// A file could not be written (the error was printed on stderr).
    pub failed: bool,
}

impl RunWriter {
    /// Creates the run folder for `scenario` (see [`RunFolder::create`]) and copies the scenario file into
    /// it as `scenario.toml`, so the folder holds what it takes to run it again; `command_line` is recorded.
    /// `force` lets it replace the files of an earlier run in `out`.
    pub fn create(
        out: Option<&Path>,
        scenario: &Scenario,
        command_line: Vec<String>,
        force: bool,
    ) -> anyhow::Result<RunWriter> {
        let info = RunInfo {
            scenario: scenario.name.clone(),
            scenario_file: scenario.file.display().to_string(),
            started_at: crate::run::timestamp(),
            environment: Environment::current(command_line),
            shard: scenario.shard,
        };
        let name = match scenario.shard {
            Some(s) => format!("{}-shard-{}-of-{}", info.started_at, s.index, s.count),
            None => info.started_at.clone(),
        };
        if force
            && let Some(out) = out
            && same_file(&out.join("scenario.toml"), &scenario.file)
        {
            anyhow::bail!(
                "the scenario {} is the run folder's scenario.toml, which --force would replace; pick \
                 another --out",
                scenario.file.display()
            );
        }
        let folder = RunFolder::create(out, &info.scenario, &name, force)?;
        if let Ok(text) = std::fs::read_to_string(&scenario.file) {
            let copy = folder.dir.join("scenario.toml");
            std::fs::write(&copy, without_passwords(&text))
                .with_context(|| format!("cannot copy the scenario to {}", copy.display()))?;
        }
        Ok(RunWriter {
            folder,
            info,
            failed: false,
        })
    }

    /// Writes the files of the case that just ended and the summary so far.
    pub fn case_ended(&mut self, end: CaseEnd) {
        let summary = Summary::new(&self.info, end.interrupted, end.so_far);
        let written = self
            .folder
            .write_case(end.result, end.cpu)
            .and_then(|()| self.folder.write_summary(&summary))
            .and_then(|()| self.folder.write_report(&summary, None));
        if let Err(e) = written {
            eprintln!("error: {e:#}");
            self.failed = true;
        }
    }

    /// What `taskbench run` prints at the end: the tables and the folder, or summary.json.
    pub fn final_output(&self, outcome: &RunOutcome, json: bool) -> String {
        if json {
            return Summary::new(&self.info, outcome.interrupted, &outcome.results).to_json();
        }
        let mut out = table::comparison(&outcome.results);
        out.push_str(&breakdown::table(&outcome.results));
        out.push_str(&breakdown::python_frames(&outcome.results));
        out.push_str(&format!("results: {}\n", self.folder.dir.display()));
        out
    }
}

/// The report's file name in a run folder.
pub const REPORT: &str = "report.html";

/// Re-renders `dir`/report.html from its summary.json, against `baseline`'s when given; returns the path.
pub fn rerender(dir: &Path, baseline: Option<&Path>) -> anyhow::Result<PathBuf> {
    let summary = Summary::read(dir)?;
    let base = baseline.map(Summary::read).transpose()?;
    let label = baseline.map(|b| b.display().to_string());
    let folder = RunFolder {
        dir: dir.to_path_buf(),
    };
    folder.write_report(&summary, label.as_deref().zip(base.as_ref()))?;
    Ok(dir.join(REPORT))
}

/// The folder one run writes into.
pub struct RunFolder {
    pub dir: PathBuf,
}

impl RunFolder {
    /// Creates `out`, or `results/<scenario>/<UTC timestamp>/` when no `out` is given. An `out` that
    /// already holds anything is refused, so one folder never mixes two runs' files; with `force`, the files
    /// taskbench writes there ([`is_run_file`]) are removed first and anything else is left alone.
    pub fn create(
        out: Option<&Path>,
        scenario: &str,
        started_at: &str,
        force: bool,
    ) -> anyhow::Result<RunFolder> {
        let dir = match out {
            Some(out) => out.to_path_buf(),
            None => {
                let base = Path::new("results").join(scenario);
                let stamp = started_at.replace(':', "-");
                let mut dir = base.join(&stamp);
                let mut n = 2;
                while dir.exists() {
                    dir = base.join(format!("{stamp}-{n}"));
                    n += 1;
                }
                dir
            }
        };
        let held = entries(&dir)?;
        if let Some(first) = held.first() {
            if !force {
                anyhow::bail!(
                    "the run folder {} is not empty (it holds {first}); pick another --out, or pass --force \
                     to replace the files an earlier run wrote there",
                    dir.display()
                );
            }
            // Only a folder of taskbench's files is cleared: `--out ~ --force` must not delete anyone's SVGs.
            if let Some(foreign) = held.iter().find(|name| !is_run_file(&dir, name)) {
                anyhow::bail!(
                    "the run folder {} holds {foreign}, which taskbench did not write, so --force leaves it \
                     alone; pick another --out",
                    dir.display()
                );
            }
            for name in &held {
                let path = dir.join(name);
                std::fs::remove_file(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the run folder {}", dir.display()))?;
        Ok(RunFolder { dir })
    }

    /// Writes the files of one finished case: `<case>.hgrm`, the wall profile when stages were timed, the
    /// CPU profile when one was recorded, and the Python wall-clock profile when the case's target sampled
    /// one (`CaseResult::pywall_folded`).
    pub fn write_case(&self, result: &CaseResult, cpu: Option<&Folded>) -> anyhow::Result<()> {
        self.write(
            &format!("{}.hgrm", result.name),
            hgrm::percentile_distribution(&result.latency).as_bytes(),
        )?;
        if !result.timeline.is_empty() {
            self.write(
                &format!("{}.hlog", result.name),
                &hlog::interval_log(result)?,
            )?;
        }
        let subtitle = format!(
            "{} {}, {} publishes",
            result.backend,
            result.path,
            human_count(result.publishes_ok)
        );
        let wall = (!result.stages.is_empty()).then(|| Folded::wall(result));
        let pywall = result
            .pywall_folded
            .as_deref()
            .map(Folded::parse)
            .transpose();
        for (view, folded) in [
            (View::Wall, wall.as_ref()),
            (View::Cpu, cpu),
            (View::PyWall, pywall.as_ref().ok().and_then(Option::as_ref)),
        ] {
            if let Some(folded) = folded {
                let title = view.title(&result.name, result.publishes_ok);
                profile::write_profile(
                    &self.dir,
                    &result.name,
                    view,
                    folded,
                    &title,
                    &subtitle,
                    &SvgStyle::default(),
                )?;
            }
        }
        if let Err(e) = pywall {
            return Err(e).with_context(|| {
                format!("the pywall profile of {} could not be read", result.name)
            });
        }
        Ok(())
    }

    /// Writes one file of the run folder.
    pub fn write(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let path = self.dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Writes (or rewrites, after each case) report.html from `summary` and the folder's flamegraphs.
    pub fn write_report(
        &self,
        summary: &Summary,
        baseline: Option<(&str, &Summary)>,
    ) -> anyhow::Result<()> {
        let html = html::render(&self.dir, summary, baseline)?;
        self.write(REPORT, html.as_bytes())
    }

    /// Writes (or rewrites, after each case) summary.json.
    pub fn write_summary(&self, summary: &Summary) -> anyhow::Result<()> {
        let path = self.dir.join("summary.json");
        let tmp = self.dir.join(".summary.json.tmp");
        std::fs::write(&tmp, summary.to_json())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Whether `a` and `b` are the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// `text` of a scenario file with the password of every URL in it hidden, as everywhere else taskbench
/// writes: each `scheme://...` up to the next quote, whitespace or end of line goes through [`redact`].
/// The whole file, not the cases' parsed URLs: a case left out by `--case`, a URL written with TOML
/// escapes and one in a comment are all in the copy.
fn without_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let start = rest[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |p| p + 1);
        let end = rest[i..]
            .find(['"', '\'', '\n', '\r', ' ', '\t'])
            .map_or(rest.len(), |p| i + p);
        out.push_str(&rest[..start]);
        out.push_str(&redact(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Whether `name` in `dir` is a file taskbench writes into a run folder: summary.json (and its temporary
/// file), the scenario's copy, report.html, `<case>.hgrm` and `.hlog`, folded stacks and flamegraphs
/// (`taskbench flame`'s `diff-*.svg` too).
fn is_run_file(dir: &Path, name: &str) -> bool {
    let named = matches!(
        name,
        "summary.json"
            | ".summary.json.tmp"
            | "scenario.toml"
            | search::SEARCH_JSON
            | sweep::SWEEP_JSON
    ) || [".hgrm", ".hlog", ".folded", ".svg", ".html"]
        .iter()
        .any(|ext| name.len() > ext.len() && name.ends_with(ext));
    named && std::fs::symlink_metadata(dir.join(name)).is_ok_and(|m| m.is_file())
}

/// The names of `dir`'s entries, sorted (none when `dir` does not exist).
fn entries(dir: &Path) -> anyhow::Result<Vec<String>> {
    let read = match std::fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read the run folder {}", dir.display()));
        }
    };
    let mut names = Vec::new();
    for entry in read {
        let entry =
            entry.with_context(|| format!("cannot read the run folder {}", dir.display()))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// What `taskbench validate` prints: the scenario and one line per case.
pub fn listing(scenario: &Scenario) -> String {
    let mut out = format!(
        "{}: scenario {:?} is valid, {} case(s):\n",
        scenario.file.display(),
        scenario.name,
        scenario.cases.len()
    );
    for c in &scenario.cases {
        let count = c
            .publishes
            .map_or("until duration".to_string(), |n| format!("{n} publishes"));
        let mode = c
            .rate
            .map_or(format!("closed loop x{}", c.concurrency), |r| {
                format!("open loop {r}/s x{}", c.concurrency)
            });
        let client = c
            .options
            .python()
            .map_or(String::new(), |p| format!(" (client {})", p.client));
        out.push_str(&format!(
            "  {}: {} {}{client}, {count}, {mode}, body {} B, envelope {} B\n",
            c.name,
            c.backend,
            c.path,
            c.task.body().len(),
            c.task.frame_len() - FRAME_PREFIX_LEN
        ));
    }
    out
}
