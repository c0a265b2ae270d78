//! The engine: drives a case's publishers in a closed or open loop and records every publish.
//!
//! It knows nothing of backends (it sees a [`Target`] and its [`Publisher`]s) nor of reporting (it returns a
//! [`CaseResult`] and reports progress through [`ProgressView`]).
//!
//! The rooms: `traits` (what a backend implements and a progress view receives), `control` (the interrupt
//! and the run's control), `run` (one case from setup to cleanup), `publish_loop` (one publisher's warm-up
//! and measured publishes, the hot path), `schedule` (the open loop's intended start times), `events` (a case's timed
//! events, begun and ended on time, and the publishers' reconnect figures after them), `watch` (once per
//! interval: the resource sampler and the live view, off the publishers' path) and `search` (`taskbench
//! search`: the highest rate a case sustains under a budget, as a pure state machine and its driver).
//!
//! [`CaseResult`]: crate::record::CaseResult

mod control;
mod events;
#[cfg(test)]
pub(crate) mod fake;
mod publish_loop;
mod run;
mod schedule;
pub mod search;
mod traits;
mod watch;

pub use control::{RunControl, STOP_GRACE, Stop};
pub use events::CaseEvents;
pub use run::run_case;
pub use schedule::{OpenLoopSchedule, ScheduledStart, intended_offset};
pub use traits::{
    BrokerProbe, IntervalLatency, LiveInterval, LiveView, ProgressView, Publisher, Target,
};

#[cfg(test)]
mod tests;
