//! Scenario files: what a checked scenario is ([`Scenario`], [`Case`]), and [`load`] / [`parse`], which read
//! the TOML (`raw`: its shape) and check every value while planning the cases (`plan`).
//!
//! Errors name the file, line and column of the offending key and say what is allowed; nothing here exits
//! the process, so every error is testable.

mod plan;
mod raw;

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
/// Writes up to this size are atomic on a pipe (Linux `PIPE_BUF`), so FIFO frames never interleave.
pub const PIPE_BUF: usize = 4096;

/// A checked scenario, ready to run.
#[derive(Debug)]
pub struct Scenario {
    pub name: String,
    pub file: PathBuf,
    pub cases: Vec<Case>,
}

impl Scenario {
    /// Keeps only the cases called `names`, in the scenario's order (all of them when `names` is empty); an
    /// unknown name is an error that lists the cases there are.
    pub fn select(&mut self, names: &[String]) -> Result<(), String> {
        if let Some(name) = names
            .iter()
            .find(|n| !self.cases.iter().any(|c| &c.name == *n))
        {
            let all: Vec<&str> = self.cases.iter().map(|c| c.name.as_str()).collect();
            return Err(format!(
                "no case named {name:?} in {}; cases: {}",
                self.file.display(),
                all.join(", ")
            ));
        }
        if !names.is_empty() {
            self.cases.retain(|c| names.contains(&c.name));
        }
        Ok(())
    }

    /// Sets every case's measured publishes (`--publishes`).
    pub fn set_publishes(&mut self, publishes: u64) {
        for c in &mut self.cases {
            c.publishes = Some(publishes);
        }
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
    pub options: BackendOptions,
    pub task: Arc<TaskTemplate>,
}

/// Publisher confirms on AMQP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confirm {
    Off,
    Each,
    Batch,
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
    /// Connections in the pool (`acquire`).
    pub pool_size: usize,
    /// Connections the publishers share (`pooled`).
    pub connections: usize,
    /// Messages per pipelined publish call (`pooled`).
    pub batch: usize,
    /// Real Celery or kombu publishes instead of taskbench (`client`); `None` is taskbench.
    pub python: Option<PythonClient>,
}

impl Default for AmqpOptions {
    fn default() -> Self {
        AmqpOptions {
            url: None,
            keep: false,
            confirm: Confirm::Off,
            confirm_batch: 64,
            pool_size: 10,
            connections: 1,
            batch: 1,
            python: None,
        }
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
        }
    }
}

/// The interpreter used when neither the case nor the scenario names one and `TASKBENCH_PYTHON` is unset.
pub const DEFAULT_PYTHON: &str = "python3";

/// A broker case published by real Celery or kombu, one Python process per publisher (`client`).
#[derive(Debug, Clone, PartialEq)]
pub struct PythonClient {
    /// `Client::Celery` or `Client::Kombu`.
    pub client: Client,
    /// The interpreter whose Celery and kombu are measured: the case's `python`, else the scenario's,
    /// else `TASKBENCH_PYTHON`, else `python3`.
    pub python: PathBuf,
    /// `module:attribute` of the user's Celery app (`celery_app`); `None` builds a minimal app on the URL.
    pub celery_app: Option<String>,
    /// A directory put first on the harness's `sys.path` (`pythonpath`), to import `celery_app` from.
    pub pythonpath: Option<PathBuf>,
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
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: file.clone(),
        line: 0,
        column: 0,
        message: format!("cannot read the scenario: {e}"),
        hint: Some("pass the path of a scenario TOML file, e.g. scenarios/quickstart.toml".into()),
    })?;
    let mut scenario = parse(&text, &file)?;
    scenario.file = path.to_path_buf();
    Ok(scenario)
}

/// Parses and checks scenario `text`; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
    plan::scenario(text, file)
}

#[cfg(test)]
mod tests;
