//! summary.json, the machine-readable record of a run, as types: one definition that `run` writes and
//! `flame` (and any later reader) reads back, so a renamed key is a compile error, not a silent zero.
//!
//! The keys listed in docs/output.md are a stable interface: add fields, never rename them.
//!
//! `schema.rs` holds the serde types, `from_result.rs` builds them from a finished case's
//! [`CaseResult`](crate::record::CaseResult), and `json.rs` reads and writes the file (and the base64
//! histograms inside it); `resources.rs` holds the processes' and broker's figures.

mod from_result;
mod json;
mod resources;
mod schema;

pub use from_result::{RunInfo, breakdown, breakdown_of};
pub use json::{HistogramError, SummaryError, decode_histogram, encode_histogram};
pub use schema::{
    BreakdownRow, CaseSettings, CaseSummary, Environment, EventSummary, FloorSummary,
    IntervalResources, IntervalSummary, LatencySummary, Mode, ReconnectSummary, ResourcesSummary,
    StageSummary, Summary, TaskSettings, ThresholdSummary, UnknownFateSummary, WireSettings,
};

#[cfg(test)]
mod tests;
