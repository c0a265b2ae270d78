//! Scenario files: what a checked scenario is ([`Scenario`], [`Case`]), and [`load`] / [`parse`], which read
//! the TOML (`raw`: its shape) and check every value while planning the cases (`plan`).
//!
//! Errors name the file, line and column of the offending key and say what is allowed; nothing here exits
//! the process, so every error is testable.

mod plan;
mod raw;
pub mod threshold;
mod wire;

pub use wire::{CaseEvent, EventKind, Wire};

use crate::catalog::{Backend, Client, PathKind};
use crate::endpoint::Endpoint;
use crate::message::TaskTemplate;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Publishes per case when neither `publishes` nor `duration` is given.
pub const DEFAULT_PUBLISHES: u64 = 10_000;
/// Warm-up publishes per case when `warmup` is not given.
pub const DEFAULT_WARMUP: u64 = 100;
/// How long one publish may take before it counts as a `timeout` error.
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest `payload_bytes`: 16 MiB, RabbitMQ's default `max_message_size` since 4.0 (a default broker
/// refuses anything larger; Redis's `proto-max-bulk-len` is 512 MiB, but a kombu envelope carries the body
/// base64-encoded, a third larger). Every publisher holds its own prepared copy of the message.
pub const MAX_PAYLOAD_BYTES: usize = 16 << 20;
/// The longest AMQP queue name (and routing key): a short string of at most 255 bytes.
pub const MAX_AMQP_NAME: usize = 255;
/// Length of one interval of a case's timeline when `interval` is not given.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest `interval`: each closes with an encode and a reset on every publisher, off the timed path.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// Writes up to this size are atomic on a pipe (Linux `PIPE_BUF`), so FIFO frames never interleave.
pub const PIPE_BUF: usize = 4096;

/// A checked scenario, ready to run.
#[derive(Debug)]
pub struct Scenario {
    pub name: String,
    pub file: PathBuf,
    pub cases: Vec<Case>,
    /// The share of the load this process runs, when the scenario is split over several.
    pub shard: Option<Shard>,
    /// Measure each case's backend floor right before the case (`floor = true`, `run --floor`).
    pub floor: bool,
}

impl Scenario {
    /// Keeps only the cases called `names`, in the scenario's order (all of them when `names` is empty); an
    /// unknown name is an error that lists the cases there are.
    pub fn select(&mut self, names: &[String]) -> Result<(), UnknownCase> {
        if let Some(name) = names
            .iter()
            .find(|n| !self.cases.iter().any(|c| &c.name == *n))
        {
            return Err(UnknownCase {
                name: name.clone(),
                file: self.file.clone(),
                cases: self.cases.iter().map(|c| c.name.clone()).collect(),
            });
        }
        if !names.is_empty() {
            self.cases.retain(|c| names.contains(&c.name));
        }
        Ok(())
    }
}

/// A case `--case` asks for that the scenario does not have.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("no case named {name:?} in {}; cases: {}", file.display(), cases.join(", "))]
pub struct UnknownCase {
    pub name: String,
    pub file: PathBuf,
    /// The cases the scenario has.
    pub cases: Vec<String>,
}

/// Settings the command line imposes on every case (`--publishes`, `--concurrency`, ...), over the file's.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub publishes: Option<u64>,
    pub warmup: Option<u64>,
    pub concurrency: Option<usize>,
    /// Publishes per second (open loop); must be more than 0.
    pub rate: Option<f64>,
    /// A case runs until this, unbounded by count unless `publishes` (here or in the file) says otherwise.
    pub duration: Option<Duration>,
    /// Run only this shard's share of every case (`--shard I/N`).
    pub shard: Option<Shard>,
    /// Measure the floors whatever the scenario says (`--floor`).
    pub floor: bool,
}

/// One of `count` processes that together run a scenario's load (`--shard INDEX/COUNT`, INDEX from 0, as a
/// Kubernetes Indexed Job numbers its pods). Each takes its share of every case's publishes, warm-up,
/// publishers and rate, and publishes to its own queue (`<queue>-shard-<INDEX>`), so that its delivery check
/// and cleanup see only its own messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// This shard's share of `total`: the shares of all shards add up to `total` exactly.
    pub fn share(self, total: u64) -> u64 {
        let (i, n, t) = (self.index as u128, self.count as u128, total as u128);
        (t * (i + 1) / n - t * i / n) as u64
    }
}

/// A `--shard` that is not `INDEX/COUNT` with `0 <= INDEX < COUNT`, as given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0:?} is not a shard: write INDEX/COUNT with 0 <= INDEX < COUNT, e.g. 0/3")]
pub struct NotAShard(pub String);

impl std::str::FromStr for Shard {
    type Err = NotAShard;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || NotAShard(s.to_string());
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// One (backend, path, options) combination, with every default filled in.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub backend: Backend,
    pub path: PathKind,
    /// Measured publishes; `None` runs until `duration`.
    pub publishes: Option<u64>,
    pub warmup: u64,
    pub concurrency: usize,
    /// Open loop when set: publishes per second across all publishers.
    pub rate: Option<f64>,
    pub duration: Option<Duration>,
    pub publish_timeout: Duration,
    pub stage_timing: bool,
    /// Share of publishes traced with spans under `--profile cpu` (0 < share <= 1).
    pub profile_sample: f64,
    /// Length of one interval of the timeline (interval histograms, `<case>.hlog`).
    pub interval: Duration,
    pub options: BackendOptions,
    pub task: Arc<TaskTemplate>,
    /// Budgets checked when the case ends (`[thresholds]`, overridden key by key by the case's own).
    pub thresholds: Vec<threshold::Threshold>,
    /// The distance between the case and its broker (`rtt`, `jitter`); `None`: connect directly.
    pub wire: Option<Wire>,
    /// Timed events in the measured run (`[[case.fault]]`), in the order of their start.
    pub events: Vec<CaseEvent>,
}

named_enum! {
    /// Publisher confirms on AMQP (`confirm`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Confirm {
        Off => "off",
        Each => "each",
        Batch => "batch",
        /// Up to `confirm_window` messages unconfirmed; each message is done at its own ack.
        Window => "window",
    }
}

/// A case's backend-specific settings, one struct per kind of backend (which key applies to which backend
/// and path is in [`crate::catalog::BACKENDS`]).
#[derive(Debug, Clone, PartialEq)]
pub enum BackendOptions {
    Amqp(AmqpOptions),
    Redis(RedisOptions),
    /// `unix`, `fifo` and `tcp`.
    Local(LocalOptions),
}

/// Settings of an `amqp` case.
#[derive(Debug, Clone, PartialEq)]
pub struct AmqpOptions {
    /// The broker URL; `None` means `TASKBENCH_AMQP_URL`, else the default.
    pub url: Option<String>,
    /// Leave what was published in the queue (no purge after the case).
    pub keep: bool,
    pub confirm: Confirm,
    /// Messages per confirm batch (`confirm = "batch"`).
    pub confirm_batch: usize,
    /// Most messages unconfirmed at once (`confirm = "window"`).
    pub confirm_window: usize,
    /// The kind of queue declared (`queue_type`).
    pub queue_type: QueueType,
    /// Connections in the pool (`acquire`).
    pub pool_size: usize,
    /// Connections the publishers share (`pooled`).
    pub connections: usize,
    /// Messages per pipelined publish call (`pooled`).
    pub batch: usize,
    /// Real Celery or kombu publishes instead of taskbench (`client`); `None` is taskbench.
    pub python: Option<PythonClient>,
    /// TLS settings, used with an `amqps://` URL.
    pub tls: TlsOptions,
}

impl Default for AmqpOptions {
    fn default() -> Self {
        AmqpOptions {
            url: None,
            keep: false,
            confirm: Confirm::Off,
            confirm_batch: 64,
            confirm_window: 64,
            queue_type: QueueType::Classic,
            pool_size: 10,
            connections: 1,
            batch: 1,
            python: None,
            tls: TlsOptions::default(),
        }
    }
}

/// A broker case's TLS settings (`tls_ca`, `tls_cert`, `tls_key`, `tls_verify`), used when its URL is
/// `amqps://` or `rediss://`. Paths are as planned: a relative one is relative to the scenario file.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsOptions {
    /// PEM certificates to trust instead of the system's (`tls_ca`).
    pub ca: Option<std::path::PathBuf>,
    /// The client certificate (PEM) the broker asks for (`tls_cert`), with its key (`tls_key`).
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
    /// Check the server's certificate and name (`tls_verify`, on unless turned off).
    pub verify: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            ca: None,
            cert: None,
            key: None,
            verify: true,
        }
    }
}

impl TlsOptions {
    /// Whether any TLS key was set (they mean something only with a TLS URL).
    pub fn is_set(&self) -> bool {
        *self != TlsOptions::default()
    }
}

/// Whether `url` asks for TLS (`amqps://`, `rediss://`, `valkeys://`).
pub fn is_tls_url(url: &str) -> bool {
    url.split_once("://").is_some_and(|(scheme, _)| {
        ["amqps", "rediss", "valkeys"].contains(&scheme.to_ascii_lowercase().as_str())
    })
}

named_enum! {
    /// What kind of RabbitMQ queue a case declares (`queue_type`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum QueueType {
        /// A classic queue, as Celery declares by default.
        Classic => "classic",
        /// A quorum queue (replicated, durable; `x-queue-type = quorum`), as Celery 5.5+ declares with
        /// `task_queues = [Queue(..., queue_arguments={"x-queue-type": "quorum"})]`.
        Quorum => "quorum",
    }
}

/// Settings of a `redis` case.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisOptions {
    /// The server URL; `None` means `TASKBENCH_REDIS_URL`, else the default.
    pub url: Option<String>,
    /// Leave what was published in the lists (no delete after the case).
    pub keep: bool,
    /// Connections in the pool (`acquire`).
    pub pool_size: usize,
    /// LPUSHes per pipelined publish call (`pooled`).
    pub batch: usize,
    /// Publishers share one multiplexed connection (`pooled`).
    pub multiplexed: bool,
    /// Do kombu's connection handshake on every publish (`fresh`).
    pub kombu_handshake: bool,
    /// Real Celery or kombu publishes instead of taskbench (`client`); `None` is taskbench.
    pub python: Option<PythonClient>,
    /// TLS settings, used with a `rediss://` URL.
    pub tls: TlsOptions,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            url: None,
            keep: false,
            pool_size: 10,
            batch: 1,
            multiplexed: false,
            kombu_handshake: true,
            python: None,
            tls: TlsOptions::default(),
        }
    }
}

pub use plan::python_client::{DefaultPython, default_python};

/// The interpreter used when neither the case nor the scenario names one, none beside taskbench imports
/// Celery and `TASKBENCH_PYTHON` is unset ([`default_python`]).
pub const DEFAULT_PYTHON: &str = "python3";

/// A broker case published by real Celery or kombu, one Python process per publisher (`client`).
#[derive(Debug, Clone, PartialEq)]
pub struct PythonClient {
    /// `Client::Celery` or `Client::Kombu`.
    pub client: Client,
    /// The interpreter whose Celery and kombu are measured: the case's `python`, else the scenario's,
    /// else [`default_python`]: the one beside taskbench if it imports Celery, `TASKBENCH_PYTHON`, `python3`.
    pub python: PathBuf,
    /// `module:attribute` of the user's Celery app (`celery_app`); `None` builds a minimal app on the URL.
    pub celery_app: Option<String>,
    /// A directory put first on the harness's `sys.path` (`pythonpath`), to import `celery_app` from.
    pub pythonpath: Option<PathBuf>,
    /// Publish the task by name even though `celery_app` has no such task (`unregistered_task`), as
    /// `send_task` does; otherwise a name the app lacks is an error.
    pub unregistered_task: bool,
    /// Publish into the queue the app routes the task to (`publish_to_routed_queue`), which the app's
    /// workers consume, instead of taskbench's own queue derived from it.
    pub publish_to_routed_queue: bool,
    /// Where the app routes the case's task, once `backend::python::check_interpreters` asked it; `None`
    /// until then.
    pub route: Option<AppRoute>,
}

/// Where a celery case's app routes its task, as the app answered before the run.
#[derive(Debug, Clone, PartialEq)]
pub struct AppRoute {
    /// The queue the app's routing (the task's own `queue` option, `task_routes`) sends the task to; `None`
    /// when nothing routes it (the case then publishes to its `[task] queue`, as without an app).
    pub routed_queue: Option<String>,
}

impl BackendOptions {
    /// The Python client of a broker case, if it is not taskbench's own.
    pub fn python(&self) -> Option<&PythonClient> {
        match self {
            BackendOptions::Amqp(o) => o.python.as_ref(),
            BackendOptions::Redis(o) => o.python.as_ref(),
            BackendOptions::Local(_) => None,
        }
    }

    /// Who publishes: taskbench, celery or kombu.
    pub fn client(&self) -> Client {
        self.python().map_or(Client::Taskbench, |p| p.client)
    }
}

/// Settings of a `unix`, `fifo` or `tcp` case.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LocalOptions {
    /// Where to publish instead of the embedded sink, already parsed.
    pub address: Option<Endpoint>,
}

impl BackendOptions {
    /// Messages per publish call: `batch` where the backend pipelines, else 1.
    pub fn batch(&self) -> usize {
        match self {
            BackendOptions::Amqp(o) => o.batch,
            BackendOptions::Redis(o) => o.batch,
            BackendOptions::Local(_) => 1,
        }
    }
}

impl Case {
    /// Whether publishes are scheduled at a rate (open loop) rather than back to back.
    pub fn open_loop(&self) -> bool {
        self.rate.is_some()
    }

    /// Trace one publish in this many when CPU profiling: `1 / profile_sample`, at least 1.
    pub fn sample_interval(&self) -> u64 {
        (1.0 / self.profile_sample).round().max(1.0) as u64
    }

    /// The name the case's publishing connections carry at an AMQP broker (`connection_name` in the client
    /// properties, shown by `rabbitmqctl list_connections client_properties` and the management UI), for
    /// taskbench's own publishers and the Python clients alike: how `kill-connections` finds them.
    pub fn connection_name(&self) -> String {
        format!("taskbench {} {}", self.name, self.task.spec().queue)
    }
}

/// A scenario that cannot be run, with where and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioError {
    pub file: String,
    /// 1-based; 0 when the error is about the file as a whole.
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioError {}

/// Reads and checks the scenario at `path`.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    load_with(path, &Overrides::default())
}

/// Reads and checks the scenario at `path`, with the command line's `overrides` over every case.
pub fn load_with(path: &Path, overrides: &Overrides) -> Result<Scenario, ScenarioError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: file.clone(),
        line: 0,
        column: 0,
        message: format!("cannot read the scenario: {e}"),
        hint: Some("pass the path of a scenario TOML file, e.g. scenarios/quickstart.toml".into()),
    })?;
    let mut scenario = plan::scenario(&text, &file, overrides)?;
    scenario.file = path.to_path_buf();
    Ok(scenario)
}

/// A planned case for unit tests: `name`, on the unix raw path, every setting at its default.
#[cfg(test)]
pub fn test_case(name: &str) -> Case {
    let text =
        format!("name = \"t\"\n[[case]]\nname = \"{name}\"\nbackend = \"unix\"\npath = \"raw\"\n");
    parse(&text, "t.toml")
        .expect("a valid case")
        .cases
        .remove(0)
}

/// Parses and checks scenario `text`; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
    plan::scenario(text, file, &Overrides::default())
}

#[cfg(test)]
mod tests;
