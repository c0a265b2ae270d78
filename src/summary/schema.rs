//! summary.json's shape: one serde type per object in the file, from the whole run down to a case's
//! timeline interval.

use crate::catalog::{Backend, PathKind};
use crate::facts::CaseFacts;
use crate::scenario::Shard;
use crate::scenario::threshold::Op;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

pub use super::resources::{IntervalResources, ResourcesSummary};

/// A whole run: what ran, when, and every case finished so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub scenario: String,
    pub scenario_file: String,
    /// RFC 3339, UTC, seconds.
    pub started_at: String,
    pub taskbench_version: String,
    /// Where and how the run ran: enough to run it again the same way.
    pub environment: Environment,
    /// Which share of the load this run was (`--shard`); `null` for a whole run.
    pub shard: Option<Shard>,
    /// The run was interrupted (Ctrl-C / SIGTERM): the last case is partial, later ones did not run.
    pub interrupted: bool,
    pub cases: Vec<CaseSummary>,
}

/// The machine and the command behind a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub host: String,
    /// Cores this process may use.
    pub cores: usize,
    /// Async runtime worker threads (`TOKIO_WORKER_THREADS`, else one per core).
    pub runtime_threads: usize,
    /// The git commit taskbench was built from (empty if built outside a git checkout).
    pub git_commit: String,
    /// The command line, as given.
    pub command_line: Vec<String>,
    pub os: String,
}

impl Environment {
    /// This process's environment.
    pub fn current(command_line: Vec<String>) -> Environment {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Environment {
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            cores,
            runtime_threads: std::env::var("TOKIO_WORKER_THREADS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(cores),
            git_commit: env!("TASKBENCH_GIT_COMMIT").to_string(),
            command_line,
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        }
    }
}

/// Everything a case ran with, resolved (defaults filled in, overrides applied, passwords hidden).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseSettings {
    /// Measured publishes; `null` when bounded by `duration_s` only.
    pub publishes: Option<u64>,
    pub warmup: u64,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub duration_s: Option<f64>,
    pub publish_timeout_s: f64,
    pub stage_timing: bool,
    pub profile_sample: f64,
    pub task: TaskSettings,
    /// The backend's keys, as a scenario would write them (`url` with its password hidden; `null` for
    /// "from the environment or the default").
    pub options: IndexMap<String, serde_json::Value>,
    /// The network the case crossed (`rtt`, `jitter`); absent when it connected directly (added in
    /// [Unreleased]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire: Option<WireSettings>,
}

/// A case's `rtt` and `jitter`, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WireSettings {
    pub rtt_s: f64,
    pub jitter_s: f64,
}

/// The task a case published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSettings {
    pub name: String,
    pub args: Vec<serde_json::Value>,
    pub kwargs: serde_json::Map<String, serde_json::Value>,
    pub queue: String,
    pub priority: u8,
    /// The message body's size, and the whole kombu envelope's (what a Redis LPUSH carries).
    pub body_bytes: usize,
    pub envelope_bytes: usize,
}

/// Open loop (a rate) or closed loop (back to back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Open,
    Closed,
}

/// One case's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseSummary {
    pub name: String,
    pub backend: Backend,
    pub path: PathKind,
    pub mode: Mode,
    pub concurrency: usize,
    /// Publishes per second scheduled across all publishers (open loop).
    pub rate: Option<f64>,
    pub publishes_ok: u64,
    pub warmup_ok: u64,
    /// Error kind -> count, most frequent first.
    pub errors: IndexMap<String, u64>,
    /// Error kind -> the first message of that kind.
    pub error_messages: IndexMap<String, String>,
    /// Measured publishes the backend confirmed it holds; `null` when it cannot tell.
    pub delivered: Option<u64>,
    pub elapsed_s: f64,
    pub throughput_per_s: f64,
    pub latency_ns: LatencySummary,
    /// Sum of every measured latency (ns), exact.
    pub latency_total_ns: u64,
    /// Stage name -> its timings, in stage order.
    pub stages: IndexMap<String, StageSummary>,
    pub breakdown: Vec<BreakdownRow>,
    /// How late open-loop publishes started against their schedule.
    pub schedule_lag_ns: Option<LatencySummary>,
    /// How long the failed and timed-out publishes took (all `null` when none failed): a stall shows here
    /// even when every publish it caught failed.
    pub failed_latency_ns: LatencySummary,
    /// The latency histogram: base64 of its HdrHistogram V2-deflate encoding (lossless).
    pub histogram: String,
    /// The failed publishes' durations, encoded the same way (absent from summaries before 0.2.0).
    #[serde(default)]
    pub failed_histogram: Option<String>,
    /// When the measured publishes started, in seconds since the Unix epoch (absent before 0.2.0): shards'
    /// windows line up on it.
    #[serde(default)]
    pub started_unix_s: Option<f64>,
    pub interrupted: bool,
    /// What a reader must know, as sentences: the path's explanations, then [`CaseFacts::notes`].
    pub notes: Vec<String>,
    /// The figures behind the notes as typed fields (absent from summaries of 0.2.0 and before).
    #[serde(default, skip_serializing_if = "CaseFacts::is_empty")]
    pub facts: CaseFacts,
    /// Everything the case ran with.
    pub settings: CaseSettings,
    /// The case's thresholds as checked when it ended (absent from summaries before 0.2.0).
    #[serde(default)]
    pub thresholds: Vec<ThresholdSummary>,
    /// The measured run interval by interval (`interval` long each; absent from summaries before 0.2.0).
    #[serde(default)]
    pub timeline: Vec<IntervalSummary>,
    /// The case's timed events (`[[case.fault]]`) as they happened, with each publisher's reconnect figure
    /// (absent without any; added in [Unreleased]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventSummary>,
    /// Failed publishes that may or may not have arrived (sent, never confirmed), and how many did (absent
    /// when none; added in [Unreleased]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_fate: Option<UnknownFateSummary>,
    /// What the case's processes and broker held and used, sampled once per interval (absent from
    /// summaries before [Unreleased] and for a case that never started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourcesSummary>,
    /// `taskbench search`: the highest rate found and confirmed under the budget, publishes per second
    /// (the case's figures are its confirmation's). Absent from a run's summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rate: Option<f64>,
    /// The backend's floor, measured right before the case (`floor = true`, `run --floor`); absent when
    /// not asked for, from merged runs, and from summaries before [Unreleased].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<FloorSummary>,
}

/// One timed event of a case, as it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventSummary {
    /// `blackhole` or `reset` (a `[[case.fault]]`), `kill-connections` or `restart` (a `[[case.event]]`).
    pub kind: String,
    /// When it was scheduled to begin, and for how long (`at`, `for`), in seconds.
    pub at_s: f64,
    pub for_s: f64,
    /// When it began and ended, from the start of the measured run; `null` when the case ended first.
    pub began_s: Option<f64>,
    pub ended_s: Option<f64>,
    /// Per publisher: seconds from the event's end to the end of its first successful publish after it;
    /// `null` for a publisher that never published again.
    pub published_again_s: Vec<Option<f64>>,
    /// Over the publishers: how many published again, and the fastest, mean and slowest of them.
    pub reconnect_s: ReconnectSummary,
}

/// How long the publishers took to publish again after an event ended, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReconnectSummary {
    pub publishers: usize,
    pub published_again: usize,
    pub min: Option<f64>,
    pub mean: Option<f64>,
    pub max: Option<f64>,
}

/// Publishes whose fate is unknown: failed after they may have been sent (a timeout, a lost connection,
/// never confirmed).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UnknownFateSummary {
    pub publishes: u64,
    /// How many of them the backend holds; `null` when it cannot tell.
    pub delivered: Option<u64>,
}

/// One interval of a case's timeline: the publishes that ended in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalSummary {
    /// From the start of the measured run, in seconds.
    pub start_s: f64,
    /// The interval's length (the last one ends with the case).
    pub length_s: f64,
    pub ok: u64,
    pub failed: u64,
    /// Successful publishes per second in the interval.
    pub throughput_per_s: f64,
    /// Latency of the interval's successful publishes (ns); `null` when none succeeded.
    pub p50: Option<u64>,
    pub p99: Option<u64>,
    pub max: Option<u64>,
    /// The kinds of the case's timed events under way during the interval (absent when none; added in
    /// [Unreleased]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// The processes' memory and busiest threads at the interval's end (absent before [Unreleased]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<IntervalResources>,
}

/// One threshold of a case and whether the case met it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdSummary {
    /// `p50`, `p90`, `p99`, `p999`, `max`, `throughput` or `errors`.
    pub metric: String,
    /// As written in the scenario, e.g. `< 2ms`.
    pub expression: String,
    pub op: Op,
    /// The bound: ns for latencies, publishes/s for throughput, a count for errors.
    pub limit: f64,
    /// The case's figure in the same unit; `null` when it has none (nothing succeeded).
    pub actual: Option<f64>,
    pub passed: bool,
}

/// Percentiles of a histogram in ns; every field `null` when it holds nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub min: Option<u64>,
    pub p50: Option<u64>,
    pub p90: Option<u64>,
    pub p99: Option<u64>,
    pub p999: Option<u64>,
    pub max: Option<u64>,
    pub mean: Option<u64>,
}

/// One stage's timings over a case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageSummary {
    pub count: u64,
    pub total_ns: u64,
    pub p50: u64,
    pub p99: u64,
    /// The stage's histogram, base64 of its V2-deflate encoding, so shards merge exactly (absent from
    /// summaries before 0.2.0).
    #[serde(default)]
    pub histogram: Option<String>,
}

/// One line of a case's breakdown: how its latency divides between stages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakdownRow {
    /// A stage name, or `(outside stages)` for the rest of the latency.
    pub stage: String,
    pub count: u64,
    pub mean_ns: u64,
    /// `None` for the time outside stages, which has no histogram.
    pub p50: Option<u64>,
    pub p99: Option<u64>,
    /// Share of the case's summed latency, 0..=1.
    pub share: f64,
}

/// The floor of a case's backend: the simplest client doing the same unit of work, measured right before
/// the case, and the case's figures as ratios to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FloorSummary {
    /// What the floor client did.
    pub client: String,
    /// Units of work measured (after the warm-up); 0 when `unavailable`.
    pub units: u64,
    pub elapsed_s: f64,
    pub throughput_per_s: f64,
    pub latency_ns: LatencySummary,
    /// The case's p50 over the floor's (1.0: as fast as the bare client; 3.0: three times its latency);
    /// `null` when either has none.
    pub p50_ratio: Option<f64>,
    /// The case's throughput over the floor's (1.0: the floor's rate; 0.5: half of it); `null` when the
    /// floor has none.
    pub throughput_ratio: Option<f64>,
    /// Why there is no floor (no plain client for the backend, or it failed); `null` when measured.
    pub unavailable: Option<String>,
}
