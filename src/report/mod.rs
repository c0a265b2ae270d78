//! Reporting: the run folder (summary.json, one .hgrm per case), the side-by-side table, progress bars.
//!
//! Reads [`CaseResult`]s; never reaches back into the engine or backends.

pub mod breakdown;
pub mod hgrm;
pub mod progress;
pub mod summary;
pub mod table;

use crate::human::human_count;
use crate::profile::flame::{self, SvgStyle};
use crate::profile::folded::Folded;
use crate::record::CaseResult;
use anyhow::Context;
use std::path::{Path, PathBuf};

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
        if !result.stages.is_empty() {
            let wall = Folded::wall(result);
            let title = flame_title("wall", &result.name, result.publishes_ok);
            self.write_profile(
                &result.name,
                "wall",
                &wall,
                &title,
                &subtitle,
                &SvgStyle::default(),
            )?;
        }
        if let Some(cpu) = cpu {
            let title = flame_title("cpu", &result.name, result.publishes_ok);
            self.write_profile(
                &result.name,
                "cpu",
                cpu,
                &title,
                &subtitle,
                &SvgStyle::default(),
            )?;
        }
        Ok(())
    }

    /// Writes `<case>.<view>.folded` and `<case>.<view>.svg`.
    pub fn write_profile(
        &self,
        case: &str,
        view: &str,
        folded: &Folded,
        title: &str,
        subtitle: &str,
        style: &SvgStyle,
    ) -> anyhow::Result<()> {
        self.write(
            &format!("{case}.{view}.folded"),
            folded.to_text().as_bytes(),
        )?;
        let svg = flame::render(folded, title, subtitle, style)
            .with_context(|| format!("cannot render the {view} flamegraph of {case}"))?;
        self.write(&format!("{case}.{view}.svg"), &svg)
    }

    /// Writes one file of the run folder.
    pub fn write(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let path = self.dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Writes (or rewrites, after each case) summary.json.
    pub fn write_summary(&self, summary: &serde_json::Value) -> anyhow::Result<()> {
        let path = self.dir.join("summary.json");
        let tmp = self.dir.join(".summary.json.tmp");
        let mut text = serde_json::to_string_pretty(summary).expect("summary serialises");
        text.push('\n');
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// A flamegraph's title, saying what its numbers mean, for `view` (wall or cpu) of case `name`.
pub fn flame_title(view: &str, name: &str, publishes: u64) -> String {
    let what = if view == "cpu" {
        "CPU (busy) time per span"
    } else {
        "wall time per stage"
    };
    format!(
        "{name}: ns of {what}, summed over {} publishes",
        human_count(publishes)
    )
}
