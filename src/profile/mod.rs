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

/// The root frame a Python harness's samples between publishes fold into (`backend::python::spy`).
pub const HARNESS_FRAME: &str = "(harness)";

/// A Python profile's stacks without those of the harness between publishes (`(harness)`), and the share
/// of the samples those were; `None` when it has none (every profile but a celery or kombu case's).
pub fn publish_only(folded: &Folded) -> Option<(Folded, f64)> {
    let is_harness = |stack: &str| stack.split(';').next() == Some(HARNESS_FRAME);
    let harness: u64 = folded
        .stacks()
        .filter(|(stack, _)| is_harness(stack))
        .map(|(_, n)| n)
        .sum();
    if harness == 0 {
        return None;
    }
    let mut publish = Folded::default();
    for (stack, n) in folded.stacks().filter(|(stack, _)| !is_harness(stack)) {
        publish.add(stack, n);
    }
    Some((publish, harness as f64 / folded.total().max(1) as f64))
}

/// Writes `<case>.<view>.folded` and `<case>.<view>.svg` into the run folder `dir`. A Python view's SVG
/// leaves the harness's time between publishes out ([`publish_only`]), so that its shares are of the
/// publish; the subtitle says how much was left out, and the folded file keeps it.
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
    let svg = match publish_only(folded) {
        Some((publish, harness)) => {
            let subtitle = format!(
                "{subtitle}; {HARNESS_FRAME} (the harness between publishes, {:.1}% of the samples) left out: shares are of the publish",
                harness * 100.0
            );
            flame::render(&publish, title, &subtitle, style)
        }
        None => flame::render(folded, title, subtitle, style),
    }
    .with_context(|| format!("cannot render the {view} flamegraph of {case}"))?;
    let svg_path = dir.join(format!("{case}.{view}.svg"));
    std::fs::write(&svg_path, svg).with_context(|| format!("cannot write {}", svg_path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_python_profile_is_drawn_without_the_harness_between_publishes() {
        let folded = Folded::parse(
            "(harness);serve (h.py:1) 300\n(harness) 100\npublish (h.py:9);apply_async (t.py:2) 500\n(unreadable) 100\n",
        )
        .unwrap();
        let (publish, harness) = publish_only(&folded).expect("a Python profile");
        assert_eq!(
            publish.to_text(),
            "(unreadable) 100\npublish (h.py:9);apply_async (t.py:2) 500\n"
        );
        assert!((harness - 0.4).abs() < 1e-9, "{harness}");
        let rust = Folded::parse("publish;send 10\n").unwrap();
        assert_eq!(publish_only(&rust), None, "nothing to leave out");
    }

    #[test]
    fn the_svg_says_what_it_left_out_and_the_folded_file_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let folded = Folded::parse("(harness) 250\npublish (h.py:9) 750\n").unwrap();
        write_profile(
            dir.path(),
            "c",
            View::Cpu,
            &folded,
            "t",
            "sub",
            &SvgStyle::default(),
        )
        .unwrap();
        let text = std::fs::read_to_string(dir.path().join("c.cpu.folded")).unwrap();
        assert!(text.contains("(harness) 250"), "{text}");
        let svg = std::fs::read_to_string(dir.path().join("c.cpu.svg")).unwrap();
        assert!(
            svg.contains("(the harness between publishes, 25.0% of the samples) left out"),
            "no subtitle"
        );
        assert!(!svg.contains("<title>(harness)"), "the harness is drawn");
    }
}
