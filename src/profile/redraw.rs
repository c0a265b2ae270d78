//! `taskbench flame`: draws a run folder's flamegraphs again (another width, title, a flame chart), or a
//! differential flamegraph between two of its cases, from the folded stacks and summary.json it holds.

use super::diff;
use super::flame::{self, SvgStyle};
use super::folded::Folded;
use super::{View, write_profile};
use crate::human::human_count;
use crate::summary::{CaseSummary, Summary};
use anyhow::{Context, anyhow};
use std::path::{Path, PathBuf};

/// What to draw.
pub struct Redraw {
    /// A run folder written by `taskbench run`.
    pub dir: PathBuf,
    /// Only these cases (empty: every case that has a profile of `view`).
    pub cases: Vec<String>,
    /// Draw `diff-<BASE>-<CASE>.svg` instead: (BASE, CASE).
    pub diff: Option<(String, String)>,
    pub view: View,
    pub style: SvgStyle,
}

/// Draws what `what` asks for and returns the files written.
pub fn redraw(what: &Redraw) -> anyhow::Result<Vec<PathBuf>> {
    let summary = Summary::read(&what.dir)?;
    let case = |name: &str| summary.case(name);
    match &what.diff {
        Some((base, new)) => {
            let (base, new) = (case(base)?, case(new)?);
            Ok(vec![draw_diff(what, base, new)?])
        }
        None => {
            let selected: Vec<&CaseSummary> = if what.cases.is_empty() {
                summary
                    .cases
                    .iter()
                    .filter(|c| folded_path(&what.dir, c, what.view).exists())
                    .collect()
            } else {
                what.cases
                    .iter()
                    .map(|n| case(n))
                    .collect::<Result<_, _>>()?
            };
            if selected.is_empty() {
                anyhow::bail!(
                    "{} has no {} profiles to render",
                    what.dir.display(),
                    what.view.name()
                );
            }
            selected
                .into_iter()
                .map(|case| draw_case(what, case))
                .collect()
        }
    }
}

fn folded_path(dir: &Path, case: &CaseSummary, view: View) -> PathBuf {
    dir.join(format!("{}.{}.folded", case.name, view.name()))
}

/// "amqp pooled": what a case measured, for subtitles.
fn describe(case: &CaseSummary) -> String {
    format!("{} {}", case.backend, case.path)
}

/// What the frames of a case's `view` profile are, for messages.
fn frames_of(case: &CaseSummary, view: View) -> String {
    let what = match (view, case.facts.python.is_some()) {
        (View::Wall, _) => "stages",
        (_, true) => "Python frames",
        (_, false) => "taskbench's spans",
    };
    format!("{}, {what}", describe(case))
}

fn load(dir: &Path, case: &CaseSummary, view: View) -> anyhow::Result<Folded> {
    let path = folded_path(dir, case, view);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        let why = match view {
            View::Cpu => "run with --profile cpu",
            View::Wall => "its stage timing was off",
            View::PyWall => {
                "only a celery or kombu case run with --profile cpu has one (py-spy's idle-inclusive samples)"
            }
        };
        anyhow!(
            "no {} profile for case {:?} ({}: {e}); {why}",
            view.name(),
            case.name,
            path.display()
        )
    })?;
    Folded::parse(&text).with_context(|| path.display().to_string())
}

fn draw_case(what: &Redraw, case: &CaseSummary) -> anyhow::Result<PathBuf> {
    let folded = load(&what.dir, case, what.view)?;
    let title = what.view.title(&case.name, case.publishes_ok);
    let subtitle = format!(
        "{}, {} publishes",
        describe(case),
        human_count(case.publishes_ok)
    );
    write_profile(
        &what.dir,
        &case.name,
        what.view,
        &folded,
        &title,
        &subtitle,
        &what.style,
    )?;
    Ok(what
        .dir
        .join(format!("{}.{}.svg", case.name, what.view.name())))
}

fn draw_diff(what: &Redraw, base: &CaseSummary, case: &CaseSummary) -> anyhow::Result<PathBuf> {
    if base.publishes_ok == 0 || case.publishes_ok == 0 {
        anyhow::bail!(
            "case {:?} or {:?} has no successful publishes to compare",
            base.name,
            case.name
        );
    }
    let view = what.view;
    // Per publish, so cases of different lengths compare.
    let before = load(&what.dir, base, view)?.scaled(1.0 / base.publishes_ok as f64);
    let after = load(&what.dir, case, view)?.scaled(1.0 / case.publishes_ok as f64);
    if diff::frames_in_common(&before, &after).is_empty() {
        anyhow::bail!(
            "cases {:?} ({}) and {:?} ({}) have no frames in common in the {} view, so a diff would only say \
             that everything changed; diff two cases whose profiles hold the same kind of frames (two celery \
             or kombu cases, or two taskbench cases), or compare their stages with --view wall",
            base.name,
            frames_of(base, view),
            case.name,
            frames_of(case, view),
            view.name()
        );
    }
    let title = format!(
        "{} vs {}: ns of {} time per publish (red: the frame and what it called grew, blue: shrank)",
        case.name,
        base.name,
        view.name()
    );
    let subtitle = format!(
        "{} ({}) against {} ({}); tooltips: the change in inclusive and self time, % of {}'s total",
        case.name,
        describe(case),
        base.name,
        describe(base),
        base.name
    );
    let svg = flame::render_diff(&before, &after, &title, &subtitle, &what.style)?;
    let suffix = match view {
        View::Cpu => ".cpu",
        View::PyWall => ".pywall",
        View::Wall => "",
    };
    let path = what
        .dir
        .join(format!("diff-{}-{}{suffix}.svg", base.name, case.name));
    std::fs::write(&path, svg).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
