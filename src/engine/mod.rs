//! The engine: drives a case's publishers in a closed or open loop and records every publish.
//!
//! It knows nothing of backends (it sees a [`Target`] and its [`Publisher`]s) nor of reporting (it returns a
//! [`CaseResult`] and reports progress through [`ProgressView`]).
//!
//! The rooms: `traits` (what a backend implements and a progress view receives), `control` (the interrupt
//! and the run's control), `run` (one case from setup to cleanup), `publish_loop` (one publisher's warm-up
//! and measured publishes, the hot path), `schedule` (the open loop's intended start times) and `search`
//! (`taskbench search`: the highest rate a case sustains under a budget, as a pure state machine and its
//! driver).
//!
//! [`CaseResult`]: crate::record::CaseResult

mod control;
#[cfg(test)]
pub(crate) mod fake;
mod publish_loop;
mod run;
mod schedule;
pub mod search;
mod traits;

pub use control::{RunControl, STOP_GRACE, Stop};
pub use run::run_case;
pub use schedule::{OpenLoopSchedule, ScheduledStart, intended_offset};
pub use traits::{IntervalLatency, ProgressView, Publisher, Target};

#[cfg(test)]
mod tests;
