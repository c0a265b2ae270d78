//! [`PythonTarget`]: a broker case published by real Celery or kombu. It wraps the broker's own target for
//! the queue around the publishes, starts one harness per publisher before the case, and hands each
//! publisher its harness; `Shared` is what the case's publishers share. What the harnesses print goes to a
//! log file each, in a folder that is kept (and named in the case's facts) when any printed something.

use super::harness::{self, HARNESS, Harness};
use super::notes;
use super::protocol::{self, Ready, Stats};
use super::publisher::PythonPublisher;
use super::spy;
use crate::backend::amqp::AmqpTarget;
use crate::backend::redis::RedisTarget;
use crate::backend::url::scrub;
use crate::catalog::Client;
use crate::engine::BrokerProbe;
use crate::engine::Target;
use crate::error::{ErrorKind, PublishError};
use crate::facts::{CaseFacts, HarnessDeath};
use crate::resources::Watched;
use crate::scenario::{Case, PythonClient};
use futures_util::{StreamExt, TryStreamExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// What every publisher of a case shares.
pub(super) struct Shared {
    pub(super) client: Client,
    pub(super) python: PathBuf,
    /// The queue the harnesses publish to (and the delivered count is taken of).
    pub(super) queue: String,
    /// Where the app routes the task (`None`: nothing routes it).
    pub(super) routed_queue: Option<String>,
    /// The broker URL as given to the harness (with its password: only ever passed on a pipe).
    url: String,
    pub(super) stats: Mutex<Vec<Stats>>,
    /// `--profile cpu`: py-spy, once `prepare` found it.
    pub(super) spy: Mutex<Option<PathBuf>>,
    /// What each harness's samplers recorded, or why one recorded nothing.
    pub(super) profiles: Mutex<Vec<(spy::Sampling, Result<spy::Recorded, spy::SpyError>)>>,
    /// Harnesses that died during the case, as their publishers found them.
    pub(super) deaths: Mutex<Vec<HarnessDeath>>,
    /// When the measured publishes began (the first publisher to reach them sets it).
    pub(super) measuring_since: OnceLock<Instant>,
    /// Closed loop: each publisher keeps its harness's next command queued behind the publish in flight
    /// (`PythonPublisher`'s pipelining); an open loop sends one command per intended start.
    pub(super) pipelined: bool,
    /// The case's `publish_timeout`: a pipelined publish whose harness measured more counts as a timeout.
    pub(super) publish_timeout: std::time::Duration,
}

impl Shared {
    pub(super) fn label(&self) -> String {
        format!("the {} harness ({})", self.client, self.python.display())
    }

    /// A message from or about a harness, safe to print.
    pub(super) fn clean(&self, text: &str) -> String {
        scrub(text, &self.url)
    }

    /// Every harness's samples of one kind, summed (folded text in ns); `None` when none recorded any.
    pub(super) fn profile(&self, sampling: spy::Sampling) -> Option<String> {
        let profiles = self.profiles.lock().expect("not poisoned");
        let texts: Vec<String> = profiles
            .iter()
            .filter(|(s, _)| *s == sampling)
            .filter_map(|(_, r)| r.as_ref().ok().map(|r| r.folded.clone()))
            .collect();
        (!texts.is_empty()).then(|| spy::merge(&texts))
    }
}

/// A broker's own target, as a Python client case uses it: for the queue around the publishes, and for
/// what to say about the broker (not about taskbench's publishers, which do not run).
pub trait Broker: Target {
    fn broker_notes(&self) -> Vec<String>;

    /// What the broker's queue showed, whoever published (not the figures of taskbench's own
    /// publishers, which do not run).
    fn broker_facts(&self) -> CaseFacts {
        CaseFacts::default()
    }
}

impl Broker for AmqpTarget {
    fn broker_notes(&self) -> Vec<String> {
        AmqpTarget::broker_notes(self)
    }
}

impl Broker for RedisTarget {
    fn broker_notes(&self) -> Vec<String> {
        RedisTarget::broker_notes(self)
    }

    fn broker_facts(&self) -> CaseFacts {
        RedisTarget::broker_facts(self)
    }
}

/// A broker case published by real Celery or kombu. `T` is the broker's own target, which prepares,
/// counts and cleans up the queue exactly as for taskbench's own publishers.
pub struct PythonTarget<T: Broker> {
    inner: T,
    shared: Arc<Shared>,
    config: String,
    concurrency: usize,
    dir: Option<tempfile::TempDir>,
    /// The harnesses' logs (`harness-<worker>.log`: their stdout and stderr) while the case runs.
    log_dir: Option<tempfile::TempDir>,
    /// Where the logs were kept after the case, when any harness printed something.
    kept_logs: Option<PathBuf>,
    harnesses: Mutex<Vec<Option<Harness>>>,
    ready: Vec<Ready>,
    path_note: String,
    profile: bool,
    /// Open loop: the harnesses wait for the schedule, so their busy share says nothing about the pipe.
    open_loop: bool,
}

impl<T: Broker> PythonTarget<T> {
    /// `url` is the case's broker URL, resolved (with its password, which only the harness sees).
    /// `profile`: sample the harnesses with py-spy over the measured publishes (`--profile cpu`).
    pub fn new(inner: T, case: &Case, client: &PythonClient, url: String, profile: bool) -> Self {
        let path_note = notes::path_note(client.client, case.path.name()).to_string();
        PythonTarget {
            inner,
            config: protocol::config_line(case, client, &url),
            shared: Arc::new(Shared {
                client: client.client,
                python: client.python.clone(),
                queue: case.task.spec().queue.clone(),
                routed_queue: client.route.as_ref().and_then(|r| r.routed_queue.clone()),
                url,
                stats: Mutex::new(Vec::new()),
                spy: Mutex::new(None),
                profiles: Mutex::new(Vec::new()),
                deaths: Mutex::new(Vec::new()),
                measuring_since: OnceLock::new(),
                pipelined: !case.open_loop(),
                publish_timeout: case.publish_timeout,
            }),
            profile,
            open_loop: case.open_loop(),
            concurrency: case.concurrency,
            dir: None,
            log_dir: None,
            kept_logs: None,
            harnesses: Mutex::new(Vec::new()),
            ready: Vec::new(),
            path_note,
        }
    }

    async fn start_all(&mut self) -> Result<(), PublishError> {
        let temp_dir = |prefix: &str| {
            tempfile::Builder::new()
                .prefix(prefix)
                .tempdir()
                .map_err(|e| {
                    PublishError::new(
                        ErrorKind::Setup,
                        format!("cannot make a temporary directory: {e}"),
                    )
                })
        };
        let dir = temp_dir("taskbench-harness-")?;
        let log_dir = temp_dir("taskbench-harness-logs-")?;
        let script = dir.path().join("taskbench_harness.py");
        std::fs::write(&script, HARNESS).map_err(|e| {
            PublishError::new(
                ErrorKind::Setup,
                format!("cannot write {}: {e}", script.display()),
            )
        })?;
        // In bounded batches (harness::starting_at_once); the first failure stops the starting, and the
        // harnesses already started are killed as they drop.
        let starts = (0..self.concurrency).map(|w| {
            harness::start(
                &script,
                log_dir.path().join(format!("harness-{w}.log")),
                &self.shared,
                &self.config,
                self.concurrency,
            )
        });
        let started: Result<Vec<_>, _> = futures_util::stream::iter(starts)
            .buffered(harness::starting_at_once())
            .try_collect()
            .await;
        self.dir = Some(dir);
        self.log_dir = Some(log_dir);
        let mut harnesses = Vec::with_capacity(self.concurrency);
        for (harness, ready) in started? {
            harnesses.push(Some(harness));
            self.ready.push(ready);
        }
        *self.harnesses.lock().expect("not poisoned") = harnesses;
        Ok(())
    }
}

impl<T: Broker> Target for PythonTarget<T> {
    type Publisher = PythonPublisher;

    async fn prepare(&mut self) -> Result<(), PublishError> {
        self.inner.prepare().await?;
        self.start_all().await?;
        if self.profile {
            let executable = self.ready.first().map(|r| PathBuf::from(&r.executable));
            let spy = spy::find(executable.as_deref()).map_err(|e| {
                PublishError::new(ErrorKind::Setup, self.shared.clean(&e.to_string()))
            })?;
            *self.shared.spy.lock().expect("not poisoned") = Some(spy);
        }
        Ok(())
    }

    fn publisher(&self, worker: usize) -> PythonPublisher {
        let harness = self
            .harnesses
            .lock()
            .expect("not poisoned")
            .get_mut(worker)
            .and_then(Option::take);
        PythonPublisher::new(
            harness,
            self.shared.clone(),
            worker,
            self.dir.as_ref().map(|d| d.path().to_path_buf()),
        )
    }

    async fn delivered(&mut self, expected: u64) -> Result<Option<u64>, PublishError> {
        self.inner.delivered(expected).await
    }

    fn processes(&self) -> Vec<Watched> {
        self.ready
            .iter()
            .enumerate()
            .map(|(w, r)| Watched {
                name: format!("harness-{w}"),
                pid: r.pid,
            })
            .collect()
    }

    fn broker_memory(&self) -> Result<Option<BrokerProbe>, String> {
        self.inner.broker_memory()
    }

    fn cpu_profile(&mut self) -> Option<String> {
        self.shared.profile(spy::Sampling::Cpu)
    }

    fn pywall_profile(&mut self) -> Option<String> {
        self.shared.profile(spy::Sampling::Wall)
    }

    async fn finish(&mut self) {
        // Harnesses never handed to a publisher (a setup failure) are killed as they drop.
        self.harnesses.lock().expect("not poisoned").clear();
        self.inner.finish().await;
        self.dir = None;
        if let Some(logs) = self.log_dir.take()
            && printed_anything(logs.path())
        {
            self.kept_logs = Some(logs.keep());
        }
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = self.inner.broker_notes();
        notes.extend(notes::case_notes(
            &self.ready,
            &self.path_note,
            self.profile,
        ));
        notes
    }

    fn facts(&self) -> CaseFacts {
        let mut python = notes::case_facts(&self.ready, &self.shared, self.open_loop);
        python.logs = self.kept_logs.as_ref().map(|d| d.display().to_string());
        CaseFacts {
            python: Some(python),
            ..self.inner.broker_facts()
        }
    }
}

/// Whether any log in `dir` holds something.
fn printed_anything(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.metadata().is_ok_and(|m| m.len() > 0))
    })
}
