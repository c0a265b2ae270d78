//! Where a publish's time goes: folded stacks (wall time from the stage clock, CPU time from tracing spans),
//! flamegraph SVGs and differential flamegraphs between cases, and the files they are kept in.
//!
//! One instrumentation feeds every view: the [`crate::stage::StageClock`] call sites time each stage into
//! the histograms (and so the wall view), and, on sampled publishes, run the stage inside a `tracing` span
//! (the CPU view).

pub mod cpu;
pub mod diff;
pub mod flame;
pub mod folded;
pub mod redraw;
pub mod top;

use crate::human::human_count;
use anyhow::Context;
use flame::SvgStyle;
use folded::Folded;
use std::path::Path;

named_enum! {
    /// Which profile of a case: wall time per stage, CPU (busy) time per span (or, on a celery or kombu case,
    /// per Python frame), or wall-clock time per Python frame with the waiting included (`pywall`, celery and
    /// kombu cases only). The name is the one in file names (`<case>.<view>.folded`) and on the command
    /// line; the order is the order a run folder lists them in.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum View {
        Wall => "wall",
        Cpu => "cpu",
        /// py-spy's idle-inclusive samples of a celery or kombu case's harnesses. Its own name, not `wall`:
        /// `<case>.wall.*` is the stage clock's view on every case, Python ones included, and stays so.
        PyWall => "pywall",
    }
}

impl View {
    /// A flamegraph's title for case `case`, saying what its numbers mean.
    pub fn title(self, case: &str, publishes: u64) -> String {
        let what = match self {
            View::Cpu => "CPU (busy) time per span",
            View::Wall => "wall time per stage",
            View::PyWall => "wall-clock time per Python frame, waiting included",
        };
        format!(
            "{case}: ns of {what}, summed over {} publishes",
            human_count(publishes)
        )
    }
}

/// Writes `<case>.<view>.folded` and `<case>.<view>.svg` into the run folder `dir`.
pub fn write_profile(
    dir: &Path,
    case: &str,
    view: View,
    folded: &Folded,
    title: &str,
    subtitle: &str,
    style: &SvgStyle,
) -> anyhow::Result<()> {
    let view = view.name();
    let folded_path = dir.join(format!("{case}.{view}.folded"));
    std::fs::write(&folded_path, folded.to_text())
        .with_context(|| format!("cannot write {}", folded_path.display()))?;
    let svg = flame::render(folded, title, subtitle, style)
        .with_context(|| format!("cannot render the {view} flamegraph of {case}"))?;
    let svg_path = dir.join(format!("{case}.{view}.svg"));
    std::fs::write(&svg_path, svg).with_context(|| format!("cannot write {}", svg_path.display()))
}
