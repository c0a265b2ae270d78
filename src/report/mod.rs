//! Reporting: the run folder (summary.json, one .hgrm and flamegraphs per case), the side-by-side table,
//! progress bars, and what `validate` lists.
//!
//! Reads [`CaseResult`]s; never reaches back into the engine or backends.

pub mod breakdown;
pub mod hgrm;
pub mod progress;
pub mod table;

use crate::human::human_count;
use crate::message::FRAME_PREFIX_LEN;
use crate::profile::{self, View, flame::SvgStyle, folded::Folded};
use crate::record::CaseResult;
use crate::run::{CaseEnd, RunOutcome};
use crate::scenario::Scenario;
use crate::summary::{RunInfo, Summary};
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
    /// Creates the run folder for `scenario` (see [`RunFolder::create`]).
    pub fn create(out: Option<&Path>, scenario: &Scenario) -> anyhow::Result<RunWriter> {
        let info = RunInfo {
            scenario: scenario.name.clone(),
            scenario_file: scenario.file.display().to_string(),
            started_at: crate::run::timestamp(),
        };
        let folder = RunFolder::create(out, &info.scenario, &info.started_at)?;
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
            .and_then(|()| self.folder.write_summary(&summary));
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
        out.push_str(&format!("results: {}\n", self.folder.dir.display()));
        out
    }
}

/// The folder one run writes into.
pub struct RunFolder {
    pub dir: PathBuf,
}

impl RunFolder {
    /// Creates `out`, or `results/<scenario>/<UTC timestamp>/` when no `out` is given.
    pub fn create(
        out: Option<&Path>,
        scenario: &str,
        started_at: &str,
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
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the run folder {}", dir.display()))?;
        Ok(RunFolder { dir })
    }

    /// Writes the files of one finished case: `<case>.hgrm`, the wall profile when stages were timed, and
    /// the CPU profile when one was recorded.
    pub fn write_case(&self, result: &CaseResult, cpu: Option<&Folded>) -> anyhow::Result<()> {
        self.write(
            &format!("{}.hgrm", result.name),
            hgrm::percentile_distribution(&result.latency).as_bytes(),
        )?;
        let subtitle = format!(
            "{} {}, {} publishes",
            result.backend,
            result.path,
            human_count(result.publishes_ok)
        );
        let wall = (!result.stages.is_empty()).then(|| Folded::wall(result));
        for (view, folded) in [(View::Wall, wall.as_ref()), (View::Cpu, cpu)] {
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
        Ok(())
    }

    /// Writes one file of the run folder.
    pub fn write(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let path = self.dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
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
