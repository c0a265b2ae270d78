//! summary.json, the machine-readable record of a run, as types: one definition that `run` writes and
//! `flame` (and any later reader) reads back, so a renamed key is a compile error, not a silent zero.
//!
//! The keys listed in docs/output.md (and DESIGN) are a stable interface: add fields, never rename them.

use crate::backend::url::redact;
use crate::catalog::{Backend, PathKind};
use crate::message::FRAME_PREFIX_LEN;
use crate::record::CaseResult;
use crate::scenario::threshold::Op;
use crate::scenario::{BackendOptions, Case, Shard};
use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::Path;

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

impl CaseSettings {
    pub fn of(case: &Case) -> CaseSettings {
        let spec = case.task.spec();
        let url = |u: &Option<String>| json!(u.as_deref().map(redact));
        let options: IndexMap<String, serde_json::Value> = match &case.options {
            BackendOptions::Amqp(o) => [
                ("url", url(&o.url)),
                ("keep", json!(o.keep)),
                ("confirm", json!(o.confirm)),
                ("confirm_batch", json!(o.confirm_batch)),
                ("confirm_window", json!(o.confirm_window)),
                ("queue_type", json!(o.queue_type)),
                ("pool_size", json!(o.pool_size)),
                ("connections", json!(o.connections)),
                ("batch", json!(o.batch)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            BackendOptions::Redis(o) => [
                ("url", url(&o.url)),
                ("keep", json!(o.keep)),
                ("pool_size", json!(o.pool_size)),
                ("batch", json!(o.batch)),
                ("multiplexed", json!(o.multiplexed)),
                ("kombu_handshake", json!(o.kombu_handshake)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            BackendOptions::Local(o) => [(
                "address".to_string(),
                json!(o.address.as_ref().map(|a| a.to_string())),
            )]
            .into_iter()
            .collect(),
        };
        CaseSettings {
            publishes: case.publishes,
            warmup: case.warmup,
            concurrency: case.concurrency,
            rate: case.rate,
            duration_s: case.duration.map(|d| d.as_secs_f64()),
            publish_timeout_s: case.publish_timeout.as_secs_f64(),
            stage_timing: case.stage_timing,
            profile_sample: case.profile_sample,
            task: TaskSettings {
                name: spec.name.clone(),
                args: spec.args.clone(),
                kwargs: spec.kwargs.clone(),
                queue: spec.queue.clone(),
                priority: spec.priority,
                body_bytes: case.task.body().len(),
                envelope_bytes: case.task.frame_len() - FRAME_PREFIX_LEN,
            },
            options,
        }
    }
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
    pub notes: Vec<String>,
    /// Everything the case ran with.
    pub settings: CaseSettings,
    /// The case's thresholds as checked when it ended (absent from summaries before 0.2.0).
    #[serde(default)]
    pub thresholds: Vec<ThresholdSummary>,
    /// The measured run interval by interval (`interval` long each; absent from summaries before 0.2.0).
    #[serde(default)]
    pub timeline: Vec<IntervalSummary>,
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

/// Identifies the run in summary.json.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub scenario: String,
    pub scenario_file: String,
    pub started_at: String,
    pub environment: Environment,
    pub shard: Option<Shard>,
}

impl Summary {
    /// The summary of the cases run so far; `interrupted` if the run was cut short.
    pub fn new(info: &RunInfo, interrupted: bool, cases: &[CaseResult]) -> Summary {
        Summary {
            scenario: info.scenario.clone(),
            scenario_file: info.scenario_file.clone(),
            started_at: info.started_at.clone(),
            taskbench_version: env!("CARGO_PKG_VERSION").to_string(),
            environment: info.environment.clone(),
            shard: info.shard,
            interrupted,
            cases: cases.iter().map(CaseSummary::new).collect(),
        }
    }

    /// Reads the summary.json of the run folder `dir`; the error says which file and what is wrong.
    pub fn read(dir: &Path) -> Result<Summary, String> {
        let path = dir.join("summary.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "{} is not a run folder ({}: {e}); pass a folder `taskbench run` wrote",
                dir.display(),
                path.display()
            )
        })?;
        serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}: not a summary this taskbench ({}) can read: {e}",
                path.display(),
                env!("CARGO_PKG_VERSION")
            )
        })
    }

    /// The case called `name`; the error lists the cases there are.
    pub fn case(&self, name: &str) -> Result<&CaseSummary, String> {
        self.cases.iter().find(|c| c.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.cases.iter().map(|c| c.name.as_str()).collect();
            format!(
                "no case named {name:?} in the run of {}; cases: {}",
                self.scenario,
                names.join(", ")
            )
        })
    }

    /// As pretty JSON with a final newline, the way it is written to disk and stdout.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a summary serialises");
        text.push('\n');
        text
    }
}

impl CaseSummary {
    pub fn new(r: &CaseResult) -> CaseSummary {
        let mut errors = IndexMap::new();
        let mut error_messages = IndexMap::new();
        for (kind, n, message) in r.errors.by_kind() {
            errors.insert(kind.to_string(), n);
            error_messages.insert(kind.to_string(), message.to_string());
        }
        let stages = r
            .stages
            .iter()
            .map(|s| {
                let summary = StageSummary {
                    count: s.histogram.len(),
                    total_ns: s.total_ns,
                    p50: s.histogram.value_at_quantile(0.5),
                    p99: s.histogram.value_at_quantile(0.99),
                    histogram: Some(encode_histogram(&s.histogram)),
                };
                (s.stage.name().to_string(), summary)
            })
            .collect();
        CaseSummary {
            name: r.name.clone(),
            backend: r.backend,
            path: r.path,
            mode: if r.rate.is_some() {
                Mode::Open
            } else {
                Mode::Closed
            },
            concurrency: r.concurrency,
            rate: r.rate,
            publishes_ok: r.publishes_ok,
            warmup_ok: r.warmup_ok,
            errors,
            error_messages,
            delivered: r.delivered,
            elapsed_s: r.elapsed.as_secs_f64(),
            throughput_per_s: r.throughput(),
            latency_ns: LatencySummary::of(&r.latency),
            latency_total_ns: r.latency_total_ns,
            stages,
            breakdown: breakdown(r),
            schedule_lag_ns: r.schedule_lag.as_ref().map(LatencySummary::of),
            failed_latency_ns: LatencySummary::of(&r.failed_latency),
            histogram: encode_histogram(&r.latency),
            failed_histogram: Some(encode_histogram(&r.failed_latency)),
            started_unix_s: r
                .wall_start
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64()),
            interrupted: r.interrupted,
            notes: r.notes.clone(),
            settings: CaseSettings::of(&r.case),
            thresholds: r
                .thresholds
                .iter()
                .map(|t| ThresholdSummary {
                    metric: t.threshold.metric.name().to_string(),
                    expression: t.threshold.text.clone(),
                    op: t.threshold.op,
                    limit: t.threshold.value,
                    actual: t.actual,
                    passed: t.passed,
                })
                .collect(),
            timeline: r
                .timeline
                .iter()
                .map(|i| IntervalSummary {
                    start_s: i.start.as_secs_f64(),
                    length_s: i.length.as_secs_f64(),
                    ok: i.ok,
                    failed: i.failed,
                    throughput_per_s: i.throughput(),
                    p50: i.p50,
                    p99: i.p99,
                    max: i.max,
                })
                .collect(),
        }
    }

    /// The latency histogram, decoded from `histogram`.
    pub fn decode_histogram(&self) -> Result<Histogram<u64>, String> {
        decode_histogram(&self.histogram)
            .map_err(|e| format!("case {:?}: `histogram` {e}", self.name))
    }
}

impl LatencySummary {
    /// min, p50, p90, p99, p99.9, max and mean of `h`.
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            min: Some(h.min()),
            p50: Some(h.value_at_quantile(0.5)),
            p90: Some(h.value_at_quantile(0.9)),
            p99: Some(h.value_at_quantile(0.99)),
            p999: Some(h.value_at_quantile(0.999)),
            max: Some(h.max()),
            mean: Some(h.mean().round() as u64),
        }
    }
}

/// The rows of `r`'s breakdown, largest share first: the text answer to "where does the time go", the same
/// numbers the wall flamegraph draws.
pub fn breakdown(r: &CaseResult) -> Vec<BreakdownRow> {
    let stages: Vec<(&str, &Histogram<u64>, u64)> = r
        .stages
        .iter()
        .map(|s| (s.stage.name(), &s.histogram, s.total_ns))
        .collect();
    breakdown_of(&stages, r.latency_total_ns, r.publishes_ok)
}

/// The breakdown rows of stages (name, histogram, summed ns) over `publishes_ok` publishes whose latencies
/// add up to `latency_total_ns`.
pub fn breakdown_of(
    stages: &[(&str, &Histogram<u64>, u64)],
    latency_total_ns: u64,
    publishes_ok: u64,
) -> Vec<BreakdownRow> {
    let in_stages: u64 = stages.iter().map(|s| s.2).sum();
    // In a pipelined batch each publish is charged the whole call, while its latency starts at its own
    // encode, so the stages can add up to a little more than the latency: shares are of the larger.
    let total = latency_total_ns.max(in_stages).max(1) as f64;
    let mut rows: Vec<BreakdownRow> = stages
        .iter()
        .map(|(stage, h, total_ns)| BreakdownRow {
            stage: stage.to_string(),
            count: h.len(),
            mean_ns: total_ns / h.len().max(1),
            p50: Some(h.value_at_quantile(0.5)),
            p99: Some(h.value_at_quantile(0.99)),
            share: *total_ns as f64 / total,
        })
        .collect();
    let outside = latency_total_ns.saturating_sub(in_stages);
    if !rows.is_empty() && outside > 0 {
        rows.push(BreakdownRow {
            stage: "(outside stages)".into(),
            count: publishes_ok,
            mean_ns: outside / publishes_ok.max(1),
            p50: None,
            p99: None,
            share: outside as f64 / total,
        });
    }
    rows.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.stage.cmp(&b.stage)));
    rows
}

/// A histogram from base64 of its V2-deflate encoding; the error says which step failed.
pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("is not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("does not decode: {e:?}"))
}

/// An HDR histogram as base64 of its V2-deflate encoding (lossless; merge runs by decoding and adding).
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .expect("serialising into memory cannot fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::{FakeTarget, Script};
    use crate::engine::{RunControl, run_case};
    use crate::stage::Stage;
    use std::time::Duration;

    #[test]
    fn histogram_round_trips_through_base64() {
        let mut h = crate::record::new_histogram();
        for v in [1_000u64, 2_000, 3_000_000] {
            h.record(v).unwrap();
        }
        let case = CaseSummary {
            histogram: encode_histogram(&h),
            ..scripted_summary_case()
        };
        assert_eq!(case.decode_histogram().unwrap(), h);
    }

    fn scripted_summary_case() -> CaseSummary {
        let case = crate::scenario::parse(
            "name = \"t\"\n[[case]]\nname = \"c\"\nbackend = \"unix\"\npath = \"raw\"\n",
            "t.toml",
        )
        .unwrap()
        .cases
        .remove(0);
        CaseSummary::new(&CaseResult::empty(&case))
    }

    /// A deterministic run (virtual time) of two cases, one failing every fifth publish.
    async fn scripted_run() -> Summary {
        let scenario = crate::scenario::parse(
            "name = \"pinned\"\nwarmup = 2\npublishes = 40\ninterval = \"50ms\"\n\
             [thresholds]\nerrors = \"== 0\"\n\
             [[case]]\nname = \"ok\"\nbackend = \"unix\"\npath = \"fresh\"\nthresholds = { p99 = \"< 5ms\" }\n\
             [[case]]\nname = \"flaky\"\nbackend = \"tcp\"\npath = \"raw\"\nrate = 1000.0\n",
            "pinned.toml",
        )
        .unwrap();
        let ms = Duration::from_millis;
        let mut results = Vec::new();
        for (case, fail_every) in scenario.cases.iter().zip([None, Some(5)]) {
            let script = Script {
                stages: vec![(Stage::Connect, ms(2)), (Stage::Send, ms(1))],
                fail_every,
                ..Script::default()
            };
            let mut result = run_case(FakeTarget::new(script), case, &RunControl::new()).await;
            result.check_thresholds(&case.thresholds);
            results.push(result);
        }
        let info = RunInfo {
            scenario: "pinned".into(),
            scenario_file: "pinned.toml".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            environment: Environment {
                host: "pinned-host".into(),
                cores: 2,
                runtime_threads: 2,
                git_commit: "0123456789ab".into(),
                command_line: vec!["taskbench".into(), "run".into(), "pinned.toml".into()],
                os: "linux x86_64".into(),
            },
            shard: None,
        };
        Summary::new(&info, false, &results)
    }

    #[tokio::test(start_paused = true)]
    async fn the_whole_schema_is_pinned() {
        let summary = scripted_run().await;
        let mut value = serde_json::to_value(&summary).unwrap();
        value["taskbench_version"] = "[version]".into();
        for case in value["cases"].as_array_mut().unwrap() {
            case["histogram"] = "[histogram]".into();
            case["failed_histogram"] = "[histogram]".into();
            case["started_unix_s"] = "[wall clock]".into();
            for stage in case["stages"].as_object_mut().unwrap().values_mut() {
                stage["histogram"] = "[histogram]".into();
            }
            // The envelope carries `origin` (gen<pid>@<host>), whose length varies from run to run.
            case["settings"]["task"]["envelope_bytes"] = "[envelope bytes]".into();
        }
        insta::assert_snapshot!(serde_json::to_string_pretty(&value).unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn what_is_written_reads_back_the_same() {
        let summary = scripted_run().await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("summary.json"), summary.to_json()).unwrap();
        let back = Summary::read(dir.path()).unwrap();
        assert_eq!(back, summary);
        let flaky = back.case("flaky").unwrap();
        assert_eq!(flaky.errors["send"], 8, "{flaky:?}");
        assert_eq!(
            flaky.decode_histogram().unwrap().len(),
            flaky.publishes_ok,
            "the histogram holds every measured publish"
        );
        assert!(back.case("nope").unwrap_err().contains("cases: ok, flaky"));
    }

    #[test]
    fn a_summary_missing_a_key_is_refused_with_its_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("summary.json"),
            r#"{"scenario": "x", "cases": []}"#,
        )
        .unwrap();
        let e = Summary::read(dir.path()).unwrap_err();
        assert!(e.contains("summary.json"), "{e}");
        assert!(e.contains("missing field `scenario_file`"), "{e}");
        let e = Summary::read(&dir.path().join("nothing-here")).unwrap_err();
        assert!(e.contains("is not a run folder"), "{e}");
    }
}
