//! `client = "celery"` and `client = "kombu"`: real Celery or kombu publish the case's task, one Python
//! process (the harness, `harness.py`, shipped inside the binary) per publisher, driven by the engine like
//! any other publisher (docs/python-clients.md).
//!
//! [`PythonTarget`] wraps the broker's own target (`AmqpTarget`, `RedisTarget`) for what happens around the
//! publishes: declaring or measuring the queue, the delivered count, purging. Its `prepare` starts one
//! harness per publisher and waits until each has imported Celery and built its client, so imports never
//! count. A [`PythonPublisher`] then asks its harness for one publish at a time ("p") and records the
//! latency and stage times the harness measured around Celery's own calls. A harness that dies costs the
//! publishes it was asked for, and every later one of its publisher, as `harness` errors.

pub mod probe;
pub mod spy;

use super::url::scrub;
use crate::catalog::Client;
use crate::engine::{Publisher, Target};
use crate::error::{ErrorKind, PublishError};
use crate::message::TaskMessage;
use crate::scenario::{Case, PythonClient, Scenario};
use crate::stage::{Stage, StageClock};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Runs every distinct interpreter (and `celery_app`) of the scenario's celery and kombu cases once;
/// returns what each has, or the first problem (nothing should run then). `profiling` (`--profile
/// cpu`) also needs py-spy for each.
pub fn check_interpreters(scenario: &Scenario, profiling: bool) -> Result<Vec<String>, String> {
    let mut seen: Vec<&PythonClient> = Vec::new();
    let mut found = Vec::new();
    for case in &scenario.cases {
        let Some(client) = case.options.python() else {
            continue;
        };
        if seen.iter().any(|c| {
            c.python == client.python
                && c.celery_app == client.celery_app
                && c.pythonpath == client.pythonpath
        }) {
            continue;
        }
        seen.push(client);
        let f = probe::probe(client).map_err(|e| format!("case {:?}: {e}", case.name))?;
        if profiling {
            spy::find(Some(f.executable.as_ref()))
                .map_err(|e| format!("case {:?}: {e}", case.name))?;
        }
        found.push(f.describe());
    }
    found.dedup();
    Ok(found)
}

/// The harness, written to a temporary file for every case that runs it.
pub const HARNESS: &str = include_str!("harness.py");
/// How long a harness may take to import Celery and build its client.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a harness may take to close its connections and exit after "q".
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of a dead harness's stderr an error message quotes.
const STDERR_TAIL: usize = 600;

/// What a harness said when it was ready.
#[derive(Debug, Clone, Deserialize)]
pub struct Ready {
    pub pid: u32,
    pub python: String,
    pub executable: String,
    pub celery: String,
    pub kombu: String,
    /// Stage name -> the functions timed as that stage.
    #[serde(default)]
    pub stages: BTreeMap<String, Vec<String>>,
}

/// A harness's counters after "q".
#[derive(Debug, Clone, Default, Deserialize)]
struct Stats {
    published: u64,
    #[serde(default)]
    stage_calls: u64,
    /// Time spent inside publish calls, warm-up included.
    #[serde(default)]
    busy_ns: u64,
    /// From the start of the first publish to the end of the last.
    #[serde(default)]
    span_ns: u64,
}

/// A harness's own failure report ("f {json}").
#[derive(Deserialize)]
struct Failure {
    kind: String,
    message: String,
}

/// One running harness process and its pipes.
struct Harness {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr_path: PathBuf,
    pid: u32,
}

/// What every publisher of a case shares.
struct Shared {
    client: Client,
    python: PathBuf,
    /// The broker URL as given to the harness (with its password: only ever passed on a pipe).
    url: String,
    stats: Mutex<Vec<Stats>>,
    /// `--profile cpu`: py-spy, once `prepare` found it.
    spy: Mutex<Option<PathBuf>>,
    /// What each harness's samplers recorded, or why one recorded nothing.
    profiles: Mutex<Vec<(spy::Sampling, Result<spy::Recorded, String>)>>,
}

impl Shared {
    fn label(&self) -> String {
        format!("the {} harness ({})", self.client, self.python.display())
    }

    /// A message from or about a harness, safe to print.
    fn clean(&self, text: &str) -> String {
        scrub(text, &self.url)
    }

    /// Every harness's samples of one kind, summed (folded text in ns); `None` when none recorded any.
    fn profile(&self, sampling: spy::Sampling) -> Option<String> {
        let profiles = self.profiles.lock().expect("not poisoned");
        let texts: Vec<String> = profiles
            .iter()
            .filter(|(s, _)| *s == sampling)
            .filter_map(|(_, r)| r.as_ref().ok().map(|r| r.folded.clone()))
            .collect();
        (!texts.is_empty()).then(|| spy::merge(&texts))
    }
}

/// The tail of a harness's stderr, for error messages.
fn stderr_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let text = text.trim();
    if text.is_empty() {
        return "nothing on stderr".into();
    }
    let start = text
        .char_indices()
        .rev()
        .nth(STDERR_TAIL)
        .map_or(0, |(i, _)| i);
    let tail: String = text[start..]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    format!("stderr ends: {tail}")
}

/// The harness configuration: the first line on its stdin.
fn config_line(case: &Case, client: &PythonClient, url: &str) -> String {
    let spec = case.task.spec();
    // The body taskbench sends carries the args as published (payload padding included).
    let (args, kwargs) = match serde_json::from_slice::<serde_json::Value>(case.task.body()) {
        Ok(serde_json::Value::Array(parts)) if parts.len() == 3 => {
            (parts[0].clone(), parts[1].clone())
        }
        _ => (serde_json::json!(spec.args), serde_json::json!(spec.kwargs)),
    };
    let config = serde_json::json!({
        "client": client.client.name(),
        "path": case.path.name(),
        "url": url,
        "queue": spec.queue,
        "task": spec.name,
        "args": args,
        "kwargs": kwargs,
        "priority": spec.priority,
        "stage_timing": case.stage_timing,
        "celery_app": client.celery_app,
        "pythonpath": client.pythonpath,
    });
    let mut line = config.to_string();
    line.push('\n');
    line
}

/// Starts one harness and waits for its ready line.
async fn start(
    script: &Path,
    stderr_path: PathBuf,
    shared: &Shared,
    config: &str,
) -> Result<(Harness, Ready), PublishError> {
    let setup = |message: String| PublishError::new(ErrorKind::Setup, shared.clean(&message));
    let stderr = std::fs::File::create(&stderr_path)
        .map_err(|e| setup(format!("cannot create {}: {e}", stderr_path.display())))?;
    let mut command = Command::new(&shared.python);
    command
        .arg("-u")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| {
        setup(format!(
            "cannot run python {:?}: {e}; set `python` in the scenario, or TASKBENCH_PYTHON, to an interpreter with Celery installed (tests/run makes target/celery-venv/bin/python)",
            shared.python.display().to_string()
        ))
    })?;
    let pid = child.id().unwrap_or(0);
    let stdin = child.stdin.take().expect("stdin is piped");
    let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut harness = Harness {
        child,
        stdin,
        stdout,
        stderr_path,
        pid,
    };
    let handshake = async {
        harness.stdin.write_all(config.as_bytes()).await.ok();
        let mut line = Vec::new();
        harness.stdout.read_until(b'\n', &mut line).await.ok();
        line
    };
    let line = tokio::time::timeout(READY_TIMEOUT, handshake)
        .await
        .map_err(|_| {
            setup(format!(
                "{} (pid {pid}) was not ready within {}; {}",
                shared.label(),
                humantime::format_duration(READY_TIMEOUT),
                stderr_tail(&harness.stderr_path)
            ))
        })?;
    let text = String::from_utf8_lossy(&line);
    let text = text.trim_end();
    if let Some(json) = text.strip_prefix("r ") {
        let ready: Ready = serde_json::from_str(json).map_err(|e| {
            setup(format!(
                "{} sent a ready line taskbench cannot read: {e}",
                shared.label()
            ))
        })?;
        return Ok((harness, ready));
    }
    if let Some(json) = text.strip_prefix("f ")
        && let Ok(f) = serde_json::from_str::<Failure>(json)
    {
        let kind = ErrorKind::from_name(&f.kind).unwrap_or(ErrorKind::Setup);
        return Err(PublishError::new(
            kind,
            shared.clean(&format!("{}: {}", shared.label(), f.message)),
        ));
    }
    let status = exit_status(&mut harness.child).await;
    Err(setup(format!(
        "{} (pid {pid}) {status} before it was ready; {}",
        shared.label(),
        stderr_tail(&harness.stderr_path)
    )))
}

/// "exited with status 1", "was killed by signal 9", or "is still running", after waiting up to a second.
async fn exit_status(child: &mut Child) -> String {
    match tokio::time::timeout(Duration::from_secs(1), child.wait()).await {
        Ok(Ok(status)) => {
            use std::os::unix::process::ExitStatusExt;
            match (status.code(), status.signal()) {
                (Some(code), _) => format!("exited with status {code}"),
                (None, Some(signal)) => format!("was killed by signal {signal}"),
                _ => format!("ended ({status})"),
            }
        }
        Ok(Err(e)) => format!("could not be waited for ({e})"),
        Err(_) => "stopped answering".into(),
    }
}

/// A broker's own target, as a Python client case uses it: for the queue around the publishes, and for
/// what to say about the broker (not about taskbench's publishers, which do not run).
pub trait Broker: Target {
    fn broker_notes(&self) -> Vec<String>;
}

impl Broker for super::amqp::AmqpTarget {
    fn broker_notes(&self) -> Vec<String> {
        super::amqp::AmqpTarget::broker_notes(self)
    }
}

impl Broker for super::redis::RedisTarget {
    fn broker_notes(&self) -> Vec<String> {
        super::redis::RedisTarget::broker_notes(self)
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
        let path_note = match (client.client, case.path.name()) {
            (Client::Celery, "fresh") => "celery fresh: task.apply_async with broker_pool_limit = 0, so every call opens a connection and closes it",
            (Client::Celery, "acquire") => "celery acquire: task.apply_async as shipped, a producer checked out of the app's pool and returned on every call (what delay() does)",
            (Client::Celery, _) => "celery pooled: one producer acquired once and passed to every task.apply_async(producer=...)",
            (_, "fresh") => "kombu fresh: a Connection and a Producer per publish, closed after it",
            (_, "acquire") => "kombu acquire: kombu.pools.producers[connection].acquire() around every publish",
            _ => "kombu pooled: one Producer on one connection kept for the whole case",
        }
        .to_string();
        PythonTarget {
            inner,
            config: config_line(case, client, &url),
            shared: Arc::new(Shared {
                client: client.client,
                python: client.python.clone(),
                url,
                stats: Mutex::new(Vec::new()),
                spy: Mutex::new(None),
                profiles: Mutex::new(Vec::new()),
            }),
            profile,
            open_loop: case.open_loop(),
            concurrency: case.concurrency,
            dir: None,
            harnesses: Mutex::new(Vec::new()),
            ready: Vec::new(),
            path_note,
        }
    }

    async fn start_all(&mut self) -> Result<(), PublishError> {
        let dir = tempfile::Builder::new()
            .prefix("taskbench-harness-")
            .tempdir()
            .map_err(|e| {
                PublishError::new(
                    ErrorKind::Setup,
                    format!("cannot make a temporary directory: {e}"),
                )
            })?;
        let script = dir.path().join("taskbench_harness.py");
        std::fs::write(&script, HARNESS).map_err(|e| {
            PublishError::new(
                ErrorKind::Setup,
                format!("cannot write {}: {e}", script.display()),
            )
        })?;
        let starts = (0..self.concurrency).map(|w| {
            start(
                &script,
                dir.path().join(format!("stderr-{w}.txt")),
                &self.shared,
                &self.config,
            )
        });
        let started = futures_util::future::join_all(starts).await;
        self.dir = Some(dir);
        let mut harnesses = Vec::with_capacity(self.concurrency);
        for s in started {
            let (harness, ready) = s?;
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
            let spy = spy::find(executable.as_deref())
                .map_err(|e| PublishError::new(ErrorKind::Setup, self.shared.clean(&e)))?;
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
        PythonPublisher {
            dead: harness.is_none().then(|| {
                PublishError::new(
                    ErrorKind::Harness,
                    format!("{} was not started", self.shared.label()),
                )
            }),
            harness,
            shared: self.shared.clone(),
            outstanding: 0,
            writing: false,
            line: Vec::with_capacity(128),
            samplers: Vec::new(),
            worker,
            dir: self.dir.as_ref().map(|d| d.path().to_path_buf()),
        }
    }

    async fn delivered(&mut self, expected: u64) -> Result<Option<u64>, PublishError> {
        self.inner.delivered(expected).await
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
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = self.inner.broker_notes();
        if let Some(r) = self.ready.first() {
            let pids: Vec<String> = self.ready.iter().map(|r| r.pid.to_string()).collect();
            notes.push(format!(
                "client {}: Celery {}, kombu {}, Python {} ({}); one harness process per publisher (pid {})",
                self.shared.client,
                r.celery,
                r.kombu,
                r.python,
                r.executable,
                pids.join(", ")
            ));
            notes.push(self.path_note.clone());
            notes.push("latency is measured inside Python (time.perf_counter_ns around the apply_async or publish call) and recorded exactly; throughput also pays the pipe round trip to the harness".into());
            if !r.stages.is_empty() {
                let map: Vec<String> = r
                    .stages
                    .iter()
                    .map(|(stage, fns)| format!("{stage} = {}", fns.join(" + ")))
                    .collect();
                notes.push(format!(
                    "stages timed in Python (exclusive: a timed call inside another counts only in its own stage): {}",
                    map.join("; ")
                ));
            }
        } else {
            notes.push(format!(
                "client {} ({})",
                self.shared.client,
                self.shared.python.display()
            ));
        }
        let profiles = self.shared.profiles.lock().expect("not poisoned");
        for (sampling, p) in profiles.iter() {
            if let Err(why) = p {
                notes.push(format!("no {}: {why}", sampling.profile_name()));
            }
        }
        if self.profile {
            notes.push(format!(
                "--profile cpu: two py-spy processes sampled each harness at {} Hz over the measured publishes only (attached after warm-up), {} ns per sample: one pausing it for each sample and leaving idle samples out (the cpu view, Python frames on CPU), one with --nonblocking --idle (the pywall view, Python frames on the wall clock, waiting on the broker included)",
                spy::RATE_HZ,
                spy::NS_PER_SAMPLE
            ));
            for sampling in [spy::Sampling::Cpu, spy::Sampling::Wall] {
                let (samples, errors) = profiles
                    .iter()
                    .filter(|(s, _)| *s == sampling)
                    .filter_map(|(_, r)| r.as_ref().ok())
                    .fold((0, 0), |(n, e), r| (n + r.samples, e + r.errors));
                if samples + errors > 0 {
                    let kept = match sampling {
                        spy::Sampling::Wall if errors > 0 => format!(
                            ", drawn as the frame {}: the harness's stack changed while py-spy read it, so it was running Python, not waiting",
                            spy::UNREADABLE
                        ),
                        _ => String::new(),
                    };
                    notes.push(format!(
                        "{}: py-spy took {samples} samples and failed {errors} ({:.1}%){kept}",
                        sampling.profile_name(),
                        100.0 * errors as f64 / (samples + errors) as f64
                    ));
                }
            }
        }
        drop(profiles);
        let stats = self.shared.stats.lock().expect("not poisoned");
        let published: u64 = stats.iter().map(|s| s.published).sum();
        let calls: u64 = stats.iter().map(|s| s.stage_calls).sum();
        let (busy, span): (u64, u64) = stats
            .iter()
            .fold((0, 0), |(b, s), x| (b + x.busy_ns, s + x.span_ns));
        if span > 0 && !self.open_loop {
            notes.push(format!(
                "the harnesses were inside the publish call {:.0}% of the time from their first publish to their last (warm-up included); the rest was waiting for the next command: the pipe round trip and the engine",
                100.0 * busy as f64 / span as f64
            ));
        }
        if published > 0 && calls > 0 {
            notes.push(format!(
                "{:.1} timed calls per publish (warm-up included)",
                calls as f64 / published as f64
            ));
        }
        notes
    }
}

/// One publisher of a celery or kombu case: its harness process, one publish at a time.
pub struct PythonPublisher {
    harness: Option<Harness>,
    /// Why this publisher's harness is gone: every publish fails with it.
    dead: Option<PublishError>,
    shared: Arc<Shared>,
    /// Publishes asked for whose answer was not read yet (the engine cancelled them on publish_timeout).
    outstanding: u32,
    /// A write of a command was under way: if still set, it was cancelled part-way.
    writing: bool,
    /// The answer being read; a cancelled read keeps what it had.
    line: Vec<u8>,
    /// py-spy attached to this publisher's harness (`--profile cpu`, measured phase): the CPU sampler and
    /// the wall-clock one.
    samplers: Vec<spy::Sampler>,
    worker: usize,
    /// The case's temporary directory (py-spy writes there).
    dir: Option<PathBuf>,
}

impl PythonPublisher {
    /// Ends the harness (it is dead or out of step) and remembers why; returns that error.
    async fn bury(&mut self, why: &str) -> PublishError {
        let mut message = format!("{} {why}", self.shared.label());
        if let Some(mut h) = self.harness.take() {
            let _ = h.child.start_kill();
            let status = exit_status(&mut h.child).await;
            message = format!(
                "{} (pid {}) {why} ({status}); {}",
                self.shared.label(),
                h.pid,
                stderr_tail(&h.stderr_path)
            );
        }
        let e = PublishError::new(ErrorKind::Harness, self.shared.clean(&message));
        self.dead = Some(e.clone());
        e
    }

    /// Reads one answer line into `self.line` (without the newline). Cancel-safe: a cancelled read keeps
    /// the bytes it had in `self.line` and the next call goes on from there.
    async fn read_answer(&mut self) -> Result<(), PublishError> {
        let h = self.harness.as_mut().expect("checked by the caller");
        if self.line.last() == Some(&b'\n') {
            self.line.clear();
        }
        loop {
            match h.stdout.read_until(b'\n', &mut self.line).await {
                Ok(0) => return Err(self.bury("exited in the middle of the case").await),
                Ok(_) if self.line.last() == Some(&b'\n') => {
                    self.line.pop();
                    // Mark the line complete so a later call starts afresh.
                    self.line.push(b'\n');
                    return Ok(());
                }
                Ok(_) => continue,
                Err(e) => return Err(self.bury(&format!("could not be read from: {e}")).await),
            }
        }
    }

    /// The answer in `self.line`, applied to `clock`.
    fn take_answer(&mut self, clock: &mut StageClock) -> Result<(), PublishError> {
        let line = &self.line[..self.line.len().saturating_sub(1)];
        let text = std::str::from_utf8(line).unwrap_or("");
        let mut words = text.split(' ');
        match words.next() {
            Some("o") => {
                let latency = words.next().and_then(|w| w.parse::<u64>().ok());
                let Some(latency) = latency else {
                    return Err(self.garbled(text));
                };
                let stages = words.filter_map(|w| {
                    let (name, ns) = w.split_once('=')?;
                    let stage = Stage::ALL.into_iter().find(|s| s.name() == name)?;
                    Some((stage, ns.parse::<u64>().ok()?))
                });
                clock.set_measured(latency, stages);
                Ok(())
            }
            Some("e") => {
                let kind = words
                    .next()
                    .and_then(ErrorKind::from_name)
                    .unwrap_or(ErrorKind::Send);
                let rest: Vec<&str> = words.collect();
                Err(PublishError::new(
                    kind,
                    self.shared
                        .clean(&format!("{}: {}", self.shared.client, rest.join(" "))),
                ))
            }
            _ => Err(self.garbled(text)),
        }
    }

    fn garbled(&self, text: &str) -> PublishError {
        PublishError::new(
            ErrorKind::Harness,
            self.shared.clean(&format!(
                "{} answered {:?}, which taskbench cannot read",
                self.shared.label(),
                text.chars().take(200).collect::<String>()
            )),
        )
    }
}

impl Publisher for PythonPublisher {
    async fn publish(
        &mut self,
        _batch: &[TaskMessage],
        clock: &mut StageClock,
    ) -> Result<(), PublishError> {
        if let Some(e) = &self.dead {
            return Err(e.clone());
        }
        if self.writing {
            return Err(self.bury("was cut off in the middle of a command").await);
        }
        // Answers to publishes the engine gave up on (publish_timeout): read and drop them first, so that
        // this publish gets its own answer.
        while self.outstanding > 0 {
            self.read_answer().await?;
            self.outstanding -= 1;
        }
        self.writing = true;
        let h = self.harness.as_mut().expect("not dead");
        if let Err(e) = h.stdin.write_all(b"p\n").await {
            self.writing = false;
            return Err(self
                .bury(&format!("stopped reading its commands ({e})"))
                .await);
        }
        self.writing = false;
        self.outstanding += 1;
        self.read_answer().await?;
        self.outstanding -= 1;
        self.take_answer(clock)
    }

    async fn measuring(&mut self) {
        let spy = self.shared.spy.lock().expect("not poisoned").clone();
        if let (Some(spy), Some(h), Some(dir)) = (spy, &self.harness, &self.dir) {
            for (sampling, file) in [
                (spy::Sampling::Cpu, format!("py-spy-{}.txt", self.worker)),
                (
                    spy::Sampling::Wall,
                    format!("py-spy-wall-{}.txt", self.worker),
                ),
            ] {
                match spy::Sampler::attach(&spy, h.pid, dir.join(file), sampling) {
                    Ok(sampler) => self.samplers.push(sampler),
                    Err(e) => {
                        tracing::warn!("no {}: {e}", sampling.profile_name());
                        self.shared
                            .profiles
                            .lock()
                            .expect("not poisoned")
                            .push((sampling, Err(e)));
                    }
                }
            }
        }
    }

    async fn close(&mut self) {
        // Both samplers stop together, so that they cover the same stretch of the harness's time.
        let samplers = std::mem::take(&mut self.samplers);
        let stops = samplers.into_iter().map(|sampler| async move {
            let sampling = sampler.sampling();
            (sampling, sampler.stop().await)
        });
        for (sampling, profile) in futures_util::future::join_all(stops).await {
            if let Err(why) = &profile {
                tracing::warn!("no {}: {why}", sampling.profile_name());
            }
            self.shared
                .profiles
                .lock()
                .expect("not poisoned")
                .push((sampling, profile));
        }
        let Some(mut h) = self.harness.take() else {
            return;
        };
        let shared = self.shared.clone();
        let quit = async {
            h.stdin.write_all(b"q\n").await.ok()?;
            let mut line = Vec::new();
            loop {
                line.clear();
                if h.stdout.read_until(b'\n', &mut line).await.ok()? == 0 {
                    return None;
                }
                if let Some(json) = line.strip_prefix(b"s ") {
                    return serde_json::from_slice::<Stats>(json).ok();
                }
            }
        };
        if let Ok(Some(stats)) = tokio::time::timeout(QUIT_TIMEOUT, quit).await {
            shared.stats.lock().expect("not poisoned").push(stats);
        }
        if tokio::time::timeout(QUIT_TIMEOUT, h.child.wait())
            .await
            .is_err()
        {
            let _ = h.child.start_kill();
            let _ = h.child.wait().await;
        }
    }
}
