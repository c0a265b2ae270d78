//! Where a publish's time goes: folded stacks (wall time from the stage clock, CPU time from tracing spans),
//! flamegraph SVGs and differential flamegraphs between cases.
//!
//! One instrumentation feeds every view: the [`crate::stage::StageClock`] call sites time each stage into
//! the histograms (and so the wall view), and, on sampled publishes, run the stage inside a `tracing` span
//! (the CPU view).

pub mod cpu;
pub mod flame;
pub mod folded;
