//! What a case measured: per-publisher recorders (HDR histograms, error counts) and their merge into a
//! [`CaseResult`].
//!
//! `recorder.rs` holds the [`Recorder`] of one runtime thread, `slots.rs` the [`Recorders`] of a case (a
//! slot per thread) and the newest closed interval a progress view reads, `case_result.rs` the merged
//! [`CaseResult`] and its timeline, `events.rs` what a case's timed events (faults) did, `floor.rs` the
//! [`Floor`] measured beside a case.

mod case_result;
mod events;
mod floor;
mod recorder;
mod slots;

pub use case_result::{CaseResult, IntervalResult, StageResult, ThresholdResult};
pub use events::{EventResult, UNKNOWN_FATE, UnknownFate};
pub use floor::Floor;
pub use recorder::{ErrorCounts, Recorder};
pub use slots::{LatestInterval, Recorders};

use hdrhistogram::Histogram;

/// Largest latency a histogram tracks (10 minutes, in ns); longer values are clamped to it.
const HIGHEST_NS: u64 = 600_000_000_000;
/// HDR precision: 3 significant digits.
const SIGFIG: u8 = 3;

/// An empty latency histogram in nanoseconds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_NS, SIGFIG).expect("static histogram bounds are valid")
}
