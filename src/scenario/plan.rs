//! Checking a parsed scenario and planning its cases: every default filled in, every value checked against
//! what its backend and path allow, each error located at its key.

use super::raw::{RawCase, RawScenario, RawTask, Settings};
use super::*;
use crate::message::TaskSpec;
use std::ops::Range;
use toml::Spanned;

/// Parses and checks scenario `text`; `file` names it in errors.
pub(super) fn scenario(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
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
        let case = plan_case(
            &at,
            raw_case.get_ref(),
            defaults,
            raw.python.as_ref(),
            &task,
        )?;
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
    scenario_python: Option<&Spanned<String>>,
    task: &TaskSpec,
) -> Result<Case, ScenarioError> {
    check_file_name(at, &raw.name, "case name")?;
    let name = raw.name.get_ref().clone();
    let in_case = |msg: String| format!("case {name:?}: {msg}");

    let (backend, path) = backend_and_path(at, raw, &in_case)?;
    let python = python_client(at, raw, scenario_python, &in_case)?;

    let s = raw.settings().over(defaults);
    let load = load(at, s, backend, path)?;

    let options = match backend {
        Backend::Amqp => BackendOptions::Amqp(AmqpOptions {
            python,
            ..amqp_options(at, raw, &in_case)?
        }),
        Backend::Redis => BackendOptions::Redis(RedisOptions {
            python,
            ..redis_options(at, raw)?
        }),
        Backend::Unix | Backend::Fifo | Backend::Tcp => {
            let address = raw
                .address
                .as_ref()
                .map(|a| {
                    local_endpoint(at, backend, a).map_err(|mut e| {
                        e.message = in_case(e.message);
                        e
                    })
                })
                .transpose()?;
            BackendOptions::Local(LocalOptions { address })
        }
    };
    if let (Some(r), Some(b)) = (s.rate, &raw.batch)
        && options.batch() > 1
    {
        return Err(at.error(
            b.span(),
            in_case(format!(
                "`batch = {}` cannot be combined with `rate` ({})",
                options.batch(),
                r.get_ref()
            )),
            Some(
                "a batch pipelines back-to-back publishes; use batch with a closed loop (no rate)"
                    .into(),
            ),
        ));
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
    let concurrency = load.concurrency;
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
        publishes: load.publishes,
        warmup: load.warmup,
        concurrency,
        rate: load.rate,
        duration: load.duration,
        publish_timeout: load.publish_timeout,
        stage_timing: load.stage_timing,
        profile_sample: load.profile_sample,
        options,
        task: template,
    })
}

/// How hard and how long a case runs, from its settings (or the scenario's).
struct Load {
    publishes: Option<u64>,
    warmup: u64,
    concurrency: usize,
    rate: Option<f64>,
    duration: Option<Duration>,
    publish_timeout: Duration,
    stage_timing: bool,
    profile_sample: f64,
}

fn load(
    at: &Locator,
    s: Settings,
    backend: Backend,
    path: PathKind,
) -> Result<Load, ScenarioError> {
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
    Ok(Load {
        publishes,
        warmup,
        concurrency,
        rate,
        duration,
        publish_timeout,
        stage_timing: s.stage_timing.unwrap_or(true),
        profile_sample,
    })
}

/// The case's backend and path, checked against the catalog together with every backend-specific key the
/// case sets (does it apply to this backend and this path?).
fn backend_and_path(
    at: &Locator,
    raw: &RawCase,
    in_case: &dyn Fn(String) -> String,
) -> Result<(Backend, PathKind), ScenarioError> {
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
                let owners: Vec<&str> = crate::catalog::BACKENDS
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
    Ok((backend, path))
}

/// The case's `client` and, for celery or kombu, its interpreter and app; checks that the case sets only keys
/// its client takes. `None` for taskbench's own publishers (and for local backends, which have no client).
fn python_client(
    at: &Locator,
    raw: &RawCase,
    scenario_python: Option<&Spanned<String>>,
    in_case: &dyn Fn(String) -> String,
) -> Result<Option<PythonClient>, ScenarioError> {
    use crate::catalog::{PYTHON_CLIENT_KEYS, PYTHON_ONLY_KEYS};
    let client = match &raw.client {
        None => Client::Taskbench,
        Some(c) => Client::from_name(c.get_ref()).ok_or_else(|| {
            let names: Vec<&str> = Client::ALL.iter().map(|c| c.name()).collect();
            at.error(
                c.span(),
                in_case(format!("unknown client {:?}", c.get_ref())),
                Some(format!("client is one of {}", names.join(", "))),
            )
        })?,
    };
    let keys = raw.backend_keys();
    if client == Client::Taskbench {
        if let Some((key, span)) = keys.iter().find(|(k, _)| PYTHON_ONLY_KEYS.contains(k)) {
            return Err(at.error(
                span.clone(),
                in_case(format!("`{key}` applies only to a celery or kombu client")),
                Some("add client = \"celery\" or client = \"kombu\" to the case".into()),
            ));
        }
        return Ok(None);
    }
    if let Some((key, span)) = keys.iter().find(|(k, _)| !PYTHON_CLIENT_KEYS.contains(k)) {
        return Err(at.error(
            span.clone(),
            in_case(format!(
                "`{key}` tunes taskbench's own publishers and does not apply to client `{client}`"
            )),
            Some(format!(
                "a {client} case takes {}; configure Celery itself through celery_app",
                PYTHON_CLIENT_KEYS.join(", ")
            )),
        ));
    }
    let celery_app = match &raw.celery_app {
        Some(a) if client != Client::Celery => {
            return Err(at.error(
                a.span(),
                in_case(format!(
                    "`celery_app` applies only to client `celery`, not `{client}`"
                )),
                None,
            ));
        }
        Some(a) => {
            let ok = a
                .get_ref()
                .split_once(':')
                .is_some_and(|(m, attr)| !m.is_empty() && !attr.is_empty());
            if !ok {
                return Err(at.error(
                    a.span(),
                    in_case(format!("celery_app {:?} is not `module:attribute`", a.get_ref())),
                    Some("e.g. celery_app = \"proj.celery:app\" (with pythonpath = the directory proj is in)".into()),
                ));
            }
            Some(a.get_ref().clone())
        }
        None => None,
    };
    let nonempty = |v: &Spanned<String>, key: &str| {
        if v.get_ref().is_empty() {
            Err(at.error(v.span(), in_case(format!("`{key}` is empty")), None))
        } else {
            Ok(v.get_ref().clone())
        }
    };
    let python = match raw.python.as_ref().or(scenario_python) {
        Some(p) => nonempty(p, "python")?,
        None => std::env::var("TASKBENCH_PYTHON")
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DEFAULT_PYTHON.to_string()),
    };
    // A relative pythonpath is relative to the scenario file, so a scenario and its app can move together.
    let pythonpath = raw
        .pythonpath
        .as_ref()
        .map(|p| nonempty(p, "pythonpath"))
        .transpose()?
        .map(|p| {
            let p = PathBuf::from(p);
            match Path::new(at.file).parent() {
                Some(dir) if p.is_relative() && !dir.as_os_str().is_empty() => dir.join(p),
                _ => p,
            }
        });
    Ok(Some(PythonClient {
        client,
        python: PathBuf::from(python),
        celery_app,
        pythonpath,
    }))
}

/// An `amqp` case's settings (the keys were checked to apply to its backend and path).
fn amqp_options(
    at: &Locator,
    raw: &RawCase,
    in_case: &dyn Fn(String) -> String,
) -> Result<AmqpOptions, ScenarioError> {
    let mut o = AmqpOptions {
        url: raw.url.as_ref().map(|u| u.get_ref().clone()),
        keep: raw.keep.as_ref().is_some_and(|k| *k.get_ref()),
        ..AmqpOptions::default()
    };
    if let Some(c) = &raw.confirm {
        o.confirm = match c.get_ref().as_str() {
            "off" => Confirm::Off,
            "each" => Confirm::Each,
            "batch" => Confirm::Batch,
            other => {
                return Err(at.error(
                    c.span(),
                    in_case(format!("unknown confirm mode {other:?}")),
                    Some("confirm is one of off, each, batch".into()),
                ));
            }
        };
    }
    if let Some(v) = &raw.confirm_batch {
        o.confirm_batch = positive(at, "confirm_batch", v, 1)? as usize;
    }
    if let Some(v) = &raw.pool_size {
        o.pool_size = positive(at, "pool_size", v, 1)? as usize;
    }
    if let Some(v) = &raw.connections {
        o.connections = positive(at, "connections", v, 1)? as usize;
    }
    if let Some(v) = &raw.batch {
        o.batch = positive(at, "batch", v, 1)? as usize;
    }
    Ok(o)
}

/// A `redis` case's settings (the keys were checked to apply to its backend and path).
fn redis_options(at: &Locator, raw: &RawCase) -> Result<RedisOptions, ScenarioError> {
    let mut o = RedisOptions {
        url: raw.url.as_ref().map(|u| u.get_ref().clone()),
        keep: raw.keep.as_ref().is_some_and(|k| *k.get_ref()),
        ..RedisOptions::default()
    };
    if let Some(v) = &raw.pool_size {
        o.pool_size = positive(at, "pool_size", v, 1)? as usize;
    }
    if let Some(v) = &raw.batch {
        o.batch = positive(at, "batch", v, 1)? as usize;
    }
    if let Some(v) = &raw.multiplexed {
        o.multiplexed = *v.get_ref();
    }
    if let Some(v) = &raw.kombu_handshake {
        o.kombu_handshake = *v.get_ref();
    }
    Ok(o)
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
