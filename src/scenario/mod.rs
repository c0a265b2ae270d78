//! Scenario files: parse the TOML, check every value, and plan the cases a run executes.
//!
//! Errors name the file, line and column of the offending key and say what is allowed; nothing here exits
//! the process, so every error is testable.

use crate::backend::{Backend, PathKind};
use crate::message::{TaskSpec, TaskTemplate};
use crate::sink::Endpoint;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

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
    pub options: CaseOptions,
    pub task: Arc<TaskTemplate>,
}

/// Publisher confirms on AMQP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confirm {
    Off,
    Each,
    Batch,
    /// Up to `confirm_window` messages unconfirmed; each message is done at its own ack.
    Window,
}

/// Backend-specific settings of a case (which apply where is in [`crate::backend::BACKENDS`]).
#[derive(Debug, Clone)]
pub struct CaseOptions {
    /// Where a local backend publishes instead of its embedded sink, already parsed.
    pub address: Option<Endpoint>,
    pub url: Option<String>,
    pub keep: bool,
    pub confirm: Confirm,
    pub confirm_batch: usize,
    pub confirm_window: usize,
    pub pool_size: usize,
    pub connections: usize,
    pub batch: usize,
    pub multiplexed: bool,
    pub kombu_handshake: bool,
}

impl Default for CaseOptions {
    fn default() -> Self {
        CaseOptions {
            address: None,
            url: None,
            keep: false,
            confirm: Confirm::Off,
            confirm_batch: 64,
            confirm_window: 64,
            pool_size: 10,
            connections: 1,
            batch: 1,
            multiplexed: false,
            kombu_handshake: true,
        }
    }
}

impl Case {
    /// Whether publishes are scheduled at a rate (open loop) rather than back to back.
    pub fn open_loop(&self) -> bool {
        self.rate.is_some()
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

/// Fields a scenario sets as defaults and a case may override, declared once for both tables.
macro_rules! with_settings {
    ($(#[$meta:meta])* struct $name:ident { $($field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        struct $name {
            $($field: $ty,)*
            publishes: Option<Spanned<i64>>,
            warmup: Option<Spanned<i64>>,
            concurrency: Option<Spanned<i64>>,
            rate: Option<Spanned<f64>>,
            duration: Option<Spanned<String>>,
            publish_timeout: Option<Spanned<String>>,
            stage_timing: Option<bool>,
            profile_sample: Option<Spanned<f64>>,
        }
        impl $name {
            fn settings(&self) -> Settings<'_> {
                Settings {
                    publishes: self.publishes.as_ref(),
                    warmup: self.warmup.as_ref(),
                    concurrency: self.concurrency.as_ref(),
                    rate: self.rate.as_ref(),
                    duration: self.duration.as_ref(),
                    publish_timeout: self.publish_timeout.as_ref(),
                    stage_timing: self.stage_timing,
                    profile_sample: self.profile_sample.as_ref(),
                }
            }
        }
    };
}

#[derive(Clone, Copy, Default)]
struct Settings<'a> {
    publishes: Option<&'a Spanned<i64>>,
    warmup: Option<&'a Spanned<i64>>,
    concurrency: Option<&'a Spanned<i64>>,
    rate: Option<&'a Spanned<f64>>,
    duration: Option<&'a Spanned<String>>,
    publish_timeout: Option<&'a Spanned<String>>,
    stage_timing: Option<bool>,
    profile_sample: Option<&'a Spanned<f64>>,
}

impl<'a> Settings<'a> {
    /// `self` where set, else `defaults`.
    fn over(self, defaults: Settings<'a>) -> Settings<'a> {
        Settings {
            publishes: self.publishes.or(defaults.publishes),
            warmup: self.warmup.or(defaults.warmup),
            concurrency: self.concurrency.or(defaults.concurrency),
            rate: self.rate.or(defaults.rate),
            duration: self.duration.or(defaults.duration),
            publish_timeout: self.publish_timeout.or(defaults.publish_timeout),
            stage_timing: self.stage_timing.or(defaults.stage_timing),
            profile_sample: self.profile_sample.or(defaults.profile_sample),
        }
    }
}

with_settings! {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawScenario {
        name: Spanned<String>,
        task: Option<RawTask>,
        case: Option<Vec<Spanned<RawCase>>>,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    name: Option<Spanned<String>>,
    args: Option<Spanned<Vec<Value>>>,
    kwargs: Option<Map<String, Value>>,
    queue: Option<Spanned<String>>,
    payload_bytes: Option<Spanned<i64>>,
    priority: Option<Spanned<i64>>,
}

with_settings! {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawCase {
        name: Spanned<String>,
        backend: Spanned<String>,
        path: Spanned<String>,
        queue: Option<Spanned<String>>,
        priority: Option<Spanned<i64>>,
        payload_bytes: Option<Spanned<i64>>,
        address: Option<Spanned<String>>,
        url: Option<Spanned<String>>,
        keep: Option<Spanned<bool>>,
        confirm: Option<Spanned<String>>,
        confirm_batch: Option<Spanned<i64>>,
        confirm_window: Option<Spanned<i64>>,
        pool_size: Option<Spanned<i64>>,
        connections: Option<Spanned<i64>>,
        batch: Option<Spanned<i64>>,
        multiplexed: Option<Spanned<bool>>,
        kombu_handshake: Option<Spanned<bool>>,
    }
}

impl RawCase {
    /// The backend-specific keys this case sets, with where they are.
    fn backend_keys(&self) -> Vec<(&'static str, Range<usize>)> {
        fn at<T>(
            key: &'static str,
            v: &Option<Spanned<T>>,
        ) -> Option<(&'static str, Range<usize>)> {
            v.as_ref().map(|s| (key, s.span()))
        }
        [
            at("address", &self.address),
            at("url", &self.url),
            at("keep", &self.keep),
            at("confirm", &self.confirm),
            at("confirm_batch", &self.confirm_batch),
            at("confirm_window", &self.confirm_window),
            at("pool_size", &self.pool_size),
            at("connections", &self.connections),
            at("batch", &self.batch),
            at("multiplexed", &self.multiplexed),
            at("kombu_handshake", &self.kombu_handshake),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

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
    let at = Locator { text, file };
    let raw: RawScenario = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        at.error(span, e.message().trim().to_string(), None)
    })?;

    let name = raw.name.get_ref().clone();
    check_file_name(&at, &raw.name, "scenario name")?;
    let task = task_spec(&at, raw.task.as_ref())?;
    let defaults = raw.settings();

    let raw_cases = raw.case.as_deref().unwrap_or(&[]);
    if raw_cases.is_empty() {
        return Err(at.error(
            0..0,
            "the scenario has no cases".into(),
            Some("add at least one [[case]] with name, backend and path".into()),
        ));
    }
    let mut cases: Vec<Case> = Vec::with_capacity(raw_cases.len());
    for raw_case in raw_cases {
        let case = plan_case(&at, raw_case.get_ref(), defaults, &task)?;
        if cases.iter().any(|c| c.name == case.name) {
            return Err(at.error(
                raw_case.get_ref().name.span(),
                format!("case name {:?} is used twice", case.name),
                Some("give every case its own name".into()),
            ));
        }
        cases.push(case);
    }
    Ok(Scenario {
        name,
        file: PathBuf::from(file),
        cases,
    })
}

/// Turns byte spans into file:line:column errors.
struct Locator<'a> {
    text: &'a str,
    file: &'a str,
}

impl Locator<'_> {
    fn error(&self, span: Range<usize>, message: String, hint: Option<String>) -> ScenarioError {
        let start = span.start.min(self.text.len());
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ScenarioError {
            file: self.file.to_string(),
            line,
            column,
            message,
            hint,
        }
    }
}

fn check_file_name(at: &Locator, name: &Spanned<String>, what: &str) -> Result<(), ScenarioError> {
    let ok = !name.get_ref().is_empty()
        && name
            .get_ref()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.get_ref().starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(at.error(
            name.span(),
            format!("{what} {:?} cannot name a file", name.get_ref()),
            Some("use letters, digits, '-', '_' and '.' (it names files in the run folder)".into()),
        ))
    }
}

fn positive(at: &Locator, key: &str, v: &Spanned<i64>, min: i64) -> Result<u64, ScenarioError> {
    if *v.get_ref() < min {
        let allowed = if min == 0 {
            "zero or more"
        } else {
            "1 or more"
        };
        return Err(at.error(
            v.span(),
            format!("`{key}` must be {allowed}, not {}", v.get_ref()),
            None,
        ));
    }
    Ok(*v.get_ref() as u64)
}

fn parse_duration(at: &Locator, key: &str, v: &Spanned<String>) -> Result<Duration, ScenarioError> {
    match humantime::parse_duration(v.get_ref()) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(at.error(v.span(), format!("`{key}` must be longer than zero"), None)),
        Err(e) => Err(at.error(
            v.span(),
            format!("`{key}` = {:?} is not a duration: {e}", v.get_ref()),
            Some("write it like \"30s\", \"500ms\" or \"2m\"".into()),
        )),
    }
}

fn task_spec(at: &Locator, raw: Option<&RawTask>) -> Result<TaskSpec, ScenarioError> {
    let mut spec = TaskSpec::default();
    let Some(raw) = raw else { return Ok(spec) };
    if let Some(name) = &raw.name {
        if name.get_ref().is_empty() {
            return Err(at.error(name.span(), "task `name` is empty".into(), None));
        }
        spec.name = name.get_ref().clone();
    }
    if let Some(args) = &raw.args {
        spec.args = args.get_ref().clone();
    }
    if let Some(kwargs) = &raw.kwargs {
        spec.kwargs = kwargs.clone();
    }
    apply_task_overrides(
        at,
        &mut spec,
        raw.queue.as_ref(),
        raw.priority.as_ref(),
        raw.payload_bytes.as_ref(),
    )?;
    Ok(spec)
}

fn apply_task_overrides(
    at: &Locator,
    spec: &mut TaskSpec,
    queue: Option<&Spanned<String>>,
    priority: Option<&Spanned<i64>>,
    payload_bytes: Option<&Spanned<i64>>,
) -> Result<(), ScenarioError> {
    if let Some(queue) = queue {
        if queue.get_ref().is_empty() {
            return Err(at.error(queue.span(), "`queue` is empty".into(), None));
        }
        spec.queue = queue.get_ref().clone();
    }
    if let Some(p) = priority {
        if !(0..=9).contains(p.get_ref()) {
            return Err(at.error(
                p.span(),
                format!("`priority` must be 0 to 9, not {}", p.get_ref()),
                None,
            ));
        }
        spec.priority = *p.get_ref() as u8;
    }
    if let Some(b) = payload_bytes {
        spec.payload_bytes = Some(positive(at, "payload_bytes", b, 1)? as usize);
    }
    Ok(())
}

fn plan_case(
    at: &Locator,
    raw: &RawCase,
    defaults: Settings,
    task: &TaskSpec,
) -> Result<Case, ScenarioError> {
    check_file_name(at, &raw.name, "case name")?;
    let name = raw.name.get_ref().clone();
    let in_case = |msg: String| format!("case {name:?}: {msg}");

    let backend = Backend::from_name(raw.backend.get_ref()).ok_or_else(|| {
        at.error(
            raw.backend.span(),
            in_case(format!("unknown backend {:?}", raw.backend.get_ref())),
            Some(format!("backends: {}", Backend::names().join(", "))),
        )
    })?;
    let spec = backend.spec();
    let path = PathKind::from_name(raw.path.get_ref()).ok_or_else(|| {
        at.error(
            raw.path.span(),
            in_case(format!("unknown path {:?}", raw.path.get_ref())),
            Some(format!("paths on {backend}: {}", path_names(spec.paths))),
        )
    })?;
    if !spec.paths.contains(&path) {
        return Err(at.error(
            raw.path.span(),
            in_case(format!(
                "path `{path}` is not supported on backend `{backend}`"
            )),
            Some(format!("paths on {backend}: {}", path_names(spec.paths))),
        ));
    }
    for (key, span) in raw.backend_keys() {
        match spec.options.iter().find(|(k, _)| *k == key) {
            None => {
                let owners: Vec<&str> = crate::backend::BACKENDS
                    .iter()
                    .filter(|s| s.options.iter().any(|(k, _)| *k == key))
                    .map(|s| s.name)
                    .collect();
                return Err(at.error(
                    span,
                    in_case(format!("`{key}` does not apply to backend `{backend}`")),
                    Some(format!("`{key}` is for backend {}", owners.join(", "))),
                ));
            }
            Some((_, paths)) if !paths.is_empty() && !paths.contains(&path) => {
                return Err(at.error(
                    span,
                    in_case(format!("`{key}` does not apply to path `{path}`")),
                    Some(format!("`{key}` is for path {}", path_names(paths))),
                ));
            }
            Some(_) => {}
        }
    }

    let s = raw.settings().over(defaults);
    let duration = s
        .duration
        .map(|d| parse_duration(at, "duration", d))
        .transpose()?;
    let publishes = match s.publishes {
        Some(p) => Some(positive(at, "publishes", p, 1)?),
        None if duration.is_some() => None,
        None => Some(DEFAULT_PUBLISHES),
    };
    let warmup = s
        .warmup
        .map(|w| positive(at, "warmup", w, 0))
        .transpose()?
        .unwrap_or(DEFAULT_WARMUP);
    let concurrency = s
        .concurrency
        .map(|c| positive(at, "concurrency", c, 1))
        .transpose()?
        .unwrap_or(1) as usize;
    let rate = match s.rate {
        Some(r) if !(r.get_ref().is_finite() && *r.get_ref() > 0.0) => {
            return Err(at.error(
                r.span(),
                format!(
                    "`rate` must be more than 0 publishes per second, not {}",
                    r.get_ref()
                ),
                None,
            ));
        }
        r => r.map(|r| *r.get_ref()),
    };
    let profile_sample = match s.profile_sample {
        Some(p) if !(*p.get_ref() > 0.0 && *p.get_ref() <= 1.0) => {
            return Err(at.error(
                p.span(),
                format!(
                    "`profile_sample` must be more than 0 and at most 1, not {}",
                    p.get_ref()
                ),
                Some("it is the share of publishes traced, e.g. 0.01 for one in a hundred".into()),
            ));
        }
        Some(p) => *p.get_ref(),
        None => default_profile_sample(backend, path),
    };
    let publish_timeout = s
        .publish_timeout
        .map(|d| parse_duration(at, "publish_timeout", d))
        .transpose()?
        .unwrap_or(DEFAULT_PUBLISH_TIMEOUT);

    let mut options = CaseOptions {
        url: raw.url.as_ref().map(|u| u.get_ref().clone()),
        keep: raw.keep.as_ref().is_some_and(|k| *k.get_ref()),
        ..CaseOptions::default()
    };
    if let Some(c) = &raw.confirm {
        options.confirm = match c.get_ref().as_str() {
            "off" => Confirm::Off,
            "each" => Confirm::Each,
            "batch" => Confirm::Batch,
            "window" => Confirm::Window,
            other => {
                return Err(at.error(
                    c.span(),
                    in_case(format!("unknown confirm mode {other:?}")),
                    Some("confirm is one of off, each, batch, window".into()),
                ));
            }
        };
    }
    if let Some(v) = &raw.confirm_batch {
        options.confirm_batch = positive(at, "confirm_batch", v, 1)? as usize;
    }
    if let Some(v) = &raw.confirm_window {
        options.confirm_window = positive(at, "confirm_window", v, 1)? as usize;
    }
    if let Some(c) = &raw.confirm
        && options.confirm == Confirm::Window
    {
        // A window's messages finish at their own acks, after their publish call: only a channel kept
        // across publishes can hold them, and the open loop's queueing would not be in their latency.
        let why = if path != PathKind::Pooled {
            Some(format!("needs path = \"pooled\", not {path}"))
        } else {
            s.rate
                .map(|r| format!("cannot be combined with `rate` ({})", r.get_ref()))
        };
        if let Some(why) = why {
            return Err(at.error(
                c.span(),
                in_case(format!("`confirm = \"window\"` {why}")),
                Some("a confirm window keeps one channel's unconfirmed messages across back-to-back publishes; use it on pooled with a closed loop".into()),
            ));
        }
    }
    if let Some(v) = &raw.pool_size {
        options.pool_size = positive(at, "pool_size", v, 1)? as usize;
    }
    if let Some(v) = &raw.connections {
        options.connections = positive(at, "connections", v, 1)? as usize;
    }
    if let Some(v) = &raw.batch {
        options.batch = positive(at, "batch", v, 1)? as usize;
    }
    if let Some(v) = &raw.multiplexed {
        options.multiplexed = *v.get_ref();
    }
    if let Some(v) = &raw.kombu_handshake {
        options.kombu_handshake = *v.get_ref();
    }
    if let (Some(r), Some(b)) = (s.rate, &raw.batch)
        && options.batch > 1
    {
        return Err(at.error(
            b.span(),
            in_case(format!(
                "`batch = {}` cannot be combined with `rate` ({})",
                options.batch,
                r.get_ref()
            )),
            Some(
                "a batch pipelines back-to-back publishes; use batch with a closed loop (no rate)"
                    .into(),
            ),
        ));
    }
    if let Some(a) = &raw.address {
        let endpoint = local_endpoint(at, backend, a).map_err(|mut e| {
            e.message = in_case(e.message);
            e
        })?;
        options.address = Some(endpoint);
    }

    let mut task = task.clone();
    apply_task_overrides(
        at,
        &mut task,
        raw.queue.as_ref(),
        raw.priority.as_ref(),
        raw.payload_bytes.as_ref(),
    )?;
    let template = TaskTemplate::new(&task).map_err(|e| {
        let span = raw
            .payload_bytes
            .as_ref()
            .map_or(raw.name.span(), |p| p.span());
        at.error(span, in_case(e.to_string()), None)
    })?;
    if backend == Backend::Fifo && concurrency > 1 && template.frame_len() > PIPE_BUF {
        return Err(at.error(
            raw.backend.span(),
            in_case(format!(
                "a {}-byte frame is larger than a pipe's atomic write ({PIPE_BUF} bytes), so {concurrency} publishers would interleave on the FIFO",
                template.frame_len()
            )),
            Some("use concurrency = 1 on fifo with large payloads, or a smaller payload_bytes".into()),
        ));
    }

    Ok(Case {
        name,
        backend,
        path,
        publishes,
        warmup,
        concurrency,
        rate,
        duration,
        publish_timeout,
        stage_timing: s.stage_timing.unwrap_or(true),
        profile_sample,
        options,
        task: template,
    })
}

/// Share of publishes traced for `--profile cpu` when the scenario does not say. Tracing one publish costs
/// about 8 µs here (bench/profile.sh), under 5% only of a broker's `fresh` path (milliseconds per publish);
/// elsewhere one publish in a hundred is traced and the profile scaled up.
fn default_profile_sample(backend: Backend, path: PathKind) -> f64 {
    if path == PathKind::Fresh && !backend.spec().local {
        1.0
    } else {
        0.01
    }
}

/// The endpoint a local backend's `address` names (backend-specific options are checked before, so only
/// unix, fifo and tcp get here).
fn local_endpoint(
    at: &Locator,
    backend: Backend,
    a: &Spanned<String>,
) -> Result<Endpoint, ScenarioError> {
    let value = a.get_ref();
    let endpoint = match backend {
        Backend::Tcp => value.parse().ok().map(Endpoint::Tcp),
        _ if value.is_empty() => None,
        Backend::Fifo => Some(Endpoint::Fifo(value.into())),
        _ => Some(Endpoint::Unix(value.into())),
    };
    endpoint.ok_or_else(|| {
        let hint = match backend {
            Backend::Tcp => "a tcp address is HOST:PORT with an IP, e.g. \"127.0.0.1:7878\"",
            _ => "the address is the path of the socket or FIFO a `taskbench sink` listens on",
        };
        at.error(
            a.span(),
            format!("address {value:?} is not valid for backend `{backend}`"),
            Some(hint.into()),
        )
    })
}

fn path_names(paths: &[PathKind]) -> String {
    paths
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
