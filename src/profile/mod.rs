//! Where a publish's time goes: folded stacks (wall time from the stage clock, CPU time from tracing spans),
//! flamegraph SVGs and differential flamegraphs between cases.
//!
//! One instrumentation feeds every view: the [`crate::stage::StageClock`] call sites time each stage into
//! the histograms (and so the wall view), and, on sampled publishes, run the stage inside a `tracing` span
//! (the CPU view).

pub mod cpu;
pub mod flame;
pub mod folded;
pub mod spans;

use crate::scenario::Case;

/// Trace one publish in this many when CPU profiling: `1 / profile_sample`, at least 1.
pub fn sample_interval(case: &Case) -> u64 {
    (1.0 / case.profile_sample).round().max(1.0) as u64
}
