//! Checking a parsed scenario and planning its cases: every default filled in, every value checked against
//! what its backend and path allow, each error located at its key.

use super::raw::{RawCase, RawScenario, RawTask, RawThresholds, Settings};
use super::threshold::{Kind, Metric, Threshold};
use super::*;
use crate::message::TaskSpec;
use std::ops::Range;
use toml::Spanned;

/// Parses and checks scenario `text`; `file` names it in errors.
pub(super) fn scenario(
    text: &str,
    file: &str,
    overrides: &Overrides,
) -> Result<Scenario, ScenarioError> {
    let scenario_file = ScenarioFile { name: file, text };
    let raw: RawScenario = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        scenario_file.error(span, e.message().trim().to_string(), None)
    })?;

    let name = raw.name.get_ref().clone();
    check_file_name(&scenario_file, &raw.name, "scenario name")?;
    let task = task_spec(&scenario_file, raw.task.as_ref())?;
    let task_queue = raw
        .task
        .as_ref()
        .and_then(|t| t.queue.as_ref())
        .map(|q| q.span());
    let defaults = raw.settings();
    let no_thresholds = RawThresholds::default();
    let run_thresholds = raw.thresholds.as_ref().unwrap_or(&no_thresholds);

    let raw_cases = raw.case.as_deref().unwrap_or(&[]);
    if raw_cases.is_empty() {
        return Err(scenario_file.error(
            0..0,
            "the scenario has no cases".into(),
            Some("add at least one [[case]] with name, backend and path".into()),
        ));
    }
    let mut cases: Vec<Case> = Vec::with_capacity(raw_cases.len());
    for raw_case in raw_cases {
        let wide = RunWide {
            defaults,
            python: raw.python.as_ref(),
            task: &task,
            task_queue: task_queue.clone(),
            overrides,
            thresholds: run_thresholds,
        };
        let case = plan_case(&scenario_file, raw_case.get_ref(), wide)?;
        if cases.iter().any(|c| c.name == case.name) {
            return Err(scenario_file.error(
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
        shard: overrides.shard,
    })
}

/// The scenario file being planned, its name and text: turns a byte span of it into a file:line:column error.
struct ScenarioFile<'a> {
    /// What errors call the file (its path as given).
    name: &'a str,
    text: &'a str,
}

impl ScenarioFile<'_> {
    /// An error at `span`, about the scenario as a whole or a value that reads the same wherever it is set.
    fn error(&self, span: Range<usize>, message: String, hint: Option<String>) -> ScenarioError {
        let start = span.start.min(self.text.len());
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ScenarioError {
            file: self.name.to_string(),
            line,
            column,
            message,
            hint,
        }
    }
}

/// One `[[case]]` of the scenario file: errors at a key of that case, their message led by the case's name
/// (`case "NAME": ...`).
struct CaseLocator<'a> {
    /// The file the case is in, for errors about a value that do not name the case (a count or duration
    /// reads the same in a case as in the scenario's defaults).
    file: &'a ScenarioFile<'a>,
    /// The case's `name`.
    name: &'a str,
}

impl CaseLocator<'_> {
    /// An error at `span`, a key of this case, whose message names the case.
    fn error(&self, span: Range<usize>, message: String, hint: Option<String>) -> ScenarioError {
        self.file
            .error(span, format!("case {:?}: {message}", self.name), hint)
    }
}

fn check_file_name(
    file: &ScenarioFile,
    name: &Spanned<String>,
    what: &str,
) -> Result<(), ScenarioError> {
    let ok = !name.get_ref().is_empty()
        && name
            .get_ref()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.get_ref().starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(file.error(
            name.span(),
            format!("{what} {:?} cannot name a file", name.get_ref()),
            Some("use letters, digits, '-', '_' and '.' (it names files in the run folder)".into()),
        ))
    }
}

fn positive(
    file: &ScenarioFile,
    key: &str,
    v: &Spanned<i64>,
    min: i64,
) -> Result<u64, ScenarioError> {
    if *v.get_ref() < min {
        let allowed = if min == 0 {
            "zero or more"
        } else {
            "1 or more"
        };
        return Err(file.error(
            v.span(),
            format!("`{key}` must be {allowed}, not {}", v.get_ref()),
            None,
        ));
    }
    Ok(*v.get_ref() as u64)
}

fn parse_duration(
    file: &ScenarioFile,
    key: &str,
    v: &Spanned<String>,
) -> Result<Duration, ScenarioError> {
    match humantime::parse_duration(v.get_ref()) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(file.error(v.span(), format!("`{key}` must be longer than zero"), None)),
        Err(e) => Err(file.error(
            v.span(),
            format!("`{key}` = {:?} is not a duration: {e}", v.get_ref()),
            Some("write it like \"30s\", \"500ms\" or \"2m\"".into()),
        )),
    }
}

fn task_spec(file: &ScenarioFile, raw: Option<&RawTask>) -> Result<TaskSpec, ScenarioError> {
    let mut spec = TaskSpec::default();
    let Some(raw) = raw else { return Ok(spec) };
    if let Some(name) = &raw.name {
        if name.get_ref().is_empty() {
            return Err(file.error(name.span(), "task `name` is empty".into(), None));
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
        file,
        &mut spec,
        raw.queue.as_ref(),
        raw.priority.as_ref(),
        raw.payload_bytes.as_ref(),
    )?;
    Ok(spec)
}

fn apply_task_overrides(
    file: &ScenarioFile,
    spec: &mut TaskSpec,
    queue: Option<&Spanned<String>>,
    priority: Option<&Spanned<i64>>,
    payload_bytes: Option<&Spanned<i64>>,
) -> Result<(), ScenarioError> {
    if let Some(queue) = queue {
        if queue.get_ref().is_empty() {
            return Err(file.error(queue.span(), "`queue` is empty".into(), None));
        }
        spec.queue = queue.get_ref().clone();
    }
    if let Some(p) = priority {
        if !(0..=9).contains(p.get_ref()) {
            return Err(file.error(
                p.span(),
                format!("`priority` must be 0 to 9, not {}", p.get_ref()),
                None,
            ));
        }
        spec.priority = *p.get_ref() as u8;
    }
    if let Some(b) = payload_bytes {
        let bytes = positive(file, "payload_bytes", b, 1)?;
        if bytes > MAX_PAYLOAD_BYTES as u64 {
            return Err(file.error(
                b.span(),
                format!(
                    "`payload_bytes` = {bytes} is over the limit of {MAX_PAYLOAD_BYTES} bytes (16 MiB)"
                ),
                Some(
                    "16 MiB is RabbitMQ's default max_message_size: a default broker refuses larger messages"
                        .into(),
                ),
            ));
        }
        spec.payload_bytes = Some(bytes as usize);
    }
    Ok(())
}

/// What the scenario sets for every case, and the command line's overrides over it.
struct RunWide<'a> {
    defaults: Settings<'a>,
    python: Option<&'a Spanned<String>>,
    task: &'a TaskSpec,
    /// Where the scenario's `[task] queue` is, for errors about it.
    task_queue: Option<Range<usize>>,
    overrides: &'a Overrides,
    thresholds: &'a RawThresholds,
}

fn plan_case(file: &ScenarioFile, raw: &RawCase, wide: RunWide) -> Result<Case, ScenarioError> {
    let RunWide {
        defaults,
        python: scenario_python,
        task,
        task_queue,
        overrides,
        thresholds: run_thresholds,
    } = wide;
    check_file_name(file, &raw.name, "case name")?;
    let name = raw.name.get_ref().clone();
    let case = CaseLocator { file, name: &name };

    let (backend, path) = backend_and_path(&case, raw)?;
    let python = python_client(&case, raw, scenario_python)?;

    let s = raw.settings().over(defaults);
    let mut load = load(file, s, backend, path, overrides)?;
    if let Some(shard) = overrides.shard {
        load = sharded(&case, raw, load, shard)?;
    }

    let options = match backend {
        Backend::Amqp => BackendOptions::Amqp(AmqpOptions {
            python,
            ..amqp_options(&case, raw, path, load.rate)?
        }),
        Backend::Redis => BackendOptions::Redis(RedisOptions {
            python,
            ..redis_options(&case, raw)?
        }),
        Backend::Unix | Backend::Fifo | Backend::Tcp => {
            let address = raw
                .address
                .as_ref()
                .map(|a| local_endpoint(&case, backend, a))
                .transpose()?;
            BackendOptions::Local(LocalOptions { address })
        }
    };
    if let (Some(rate), Some(b)) = (load.rate, &raw.batch)
        && options.batch() > 1
    {
        let from = if overrides.rate.is_some() {
            "--rate"
        } else {
            "`rate`"
        };
        return Err(case.error(
            b.span(),
            format!(
                "`batch = {}` cannot be combined with {from} ({rate})",
                options.batch(),
            ),
            Some(
                "a batch pipelines back-to-back publishes; use batch with a closed loop (no rate)"
                    .into(),
            ),
        ));
    }
    let mut task = task.clone();
    apply_task_overrides(
        file,
        &mut task,
        raw.queue.as_ref(),
        raw.priority.as_ref(),
        raw.payload_bytes.as_ref(),
    )?;
    if let Some(shard) = overrides.shard {
        task.queue = format!("{}-shard-{}", task.queue, shard.index);
    }
    if backend == Backend::Amqp && task.queue.len() > MAX_AMQP_NAME {
        let span = raw
            .queue
            .as_ref()
            .map(|q| q.span())
            .or(task_queue)
            .unwrap_or(raw.backend.span());
        return Err(case.error(
            span,
            format!(
                "the queue name is {} bytes long; AMQP allows at most {MAX_AMQP_NAME}",
                task.queue.len()
            ),
            Some(
                "an AMQP queue name (and routing key) is a short string: use a shorter `queue`"
                    .into(),
            ),
        ));
    }
    let template = TaskTemplate::new(&task).map_err(|e| {
        let span = raw
            .payload_bytes
            .as_ref()
            .map_or(raw.name.span(), |p| p.span());
        case.error(span, e.to_string(), None)
    })?;
    let concurrency = load.concurrency;
    if backend == Backend::Fifo && concurrency > 1 && template.frame_len() > PIPE_BUF {
        return Err(case.error(
            raw.backend.span(),
            format!(
                "a {}-byte frame is larger than a pipe's atomic write ({PIPE_BUF} bytes), so {concurrency} publishers would interleave on the FIFO",
                template.frame_len()
            ),
            Some("use concurrency = 1 on fifo with large payloads, or a smaller payload_bytes".into()),
        ));
    }

    let thresholds = thresholds(&case, raw.thresholds.as_ref(), run_thresholds)?;

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
        interval: load.interval,
        options,
        task: template,
        thresholds,
    })
}

/// A case's thresholds: each metric from the case's `thresholds`, else the scenario's `[thresholds]`.
fn thresholds(
    case: &CaseLocator,
    of_case: Option<&RawThresholds>,
    run_wide: &RawThresholds,
) -> Result<Vec<Threshold>, ScenarioError> {
    let mut out = Vec::new();
    for metric in Metric::ALL {
        let (value, own) = match of_case.and_then(|c| c.get(metric)) {
            Some(v) => (v, true),
            None => match run_wide.get(metric) {
                Some(v) => (v, false),
                None => continue,
            },
        };
        let t = Threshold::parse(metric, value.get_ref()).map_err(|e| {
            let hint = match metric.kind() {
                Kind::Duration => format!(
                    "write it like {} = \"< 2ms\" (OP is <, <=, >, >=, ==; units ns, us, ms, s)",
                    metric.name()
                ),
                Kind::Number => format!(
                    "write it like {} = \"{}\" (OP is <, <=, >, >=, ==)",
                    metric.name(),
                    if metric == Metric::Errors {
                        "== 0"
                    } else {
                        "> 10000"
                    }
                ),
            };
            // A run-wide threshold is reported once, where it is written, without a case.
            if own {
                case.error(value.span(), e, Some(hint))
            } else {
                case.file.error(value.span(), e, Some(hint))
            }
        })?;
        out.push(t);
    }
    Ok(out)
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
    interval: Duration,
}

/// The case's settings, else the scenario's, else the defaults, with the command line's `overrides` over all.
/// A file's values are checked even when overridden, so a scenario that runs with overrides also runs
/// without them.
fn load(
    file: &ScenarioFile,
    s: Settings,
    backend: Backend,
    path: PathKind,
    overrides: &Overrides,
) -> Result<Load, ScenarioError> {
    let duration = s
        .duration
        .map(|d| parse_duration(file, "duration", d))
        .transpose()?;
    let duration = overrides.duration.or(duration);
    let publishes = s
        .publishes
        .map(|p| positive(file, "publishes", p, 1))
        .transpose()?;
    let publishes = match (overrides.publishes, publishes) {
        (Some(n), _) | (None, Some(n)) => Some(n),
        (None, None) if duration.is_some() => None,
        (None, None) => Some(DEFAULT_PUBLISHES),
    };
    let warmup = s
        .warmup
        .map(|w| positive(file, "warmup", w, 0))
        .transpose()?;
    let warmup = overrides.warmup.or(warmup).unwrap_or(DEFAULT_WARMUP);
    let concurrency = s
        .concurrency
        .map(|c| positive(file, "concurrency", c, 1))
        .transpose()?
        .map(|c| c as usize);
    let concurrency = overrides.concurrency.or(concurrency).unwrap_or(1);
    let rate = match s.rate {
        Some(r) if !(r.get_ref().is_finite() && *r.get_ref() > 0.0) => {
            return Err(file.error(
                r.span(),
                format!(
                    "`rate` must be more than 0 publishes per second, not {}",
                    r.get_ref()
                ),
                None,
            ));
        }
        r => overrides.rate.or(r.map(|r| *r.get_ref())),
    };
    let profile_sample = match s.profile_sample {
        Some(p) if !(*p.get_ref() > 0.0 && *p.get_ref() <= 1.0) => {
            return Err(file.error(
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
        .map(|d| parse_duration(file, "publish_timeout", d))
        .transpose()?
        .unwrap_or(DEFAULT_PUBLISH_TIMEOUT);
    let interval = s
        .interval
        .map(|d| parse_duration(file, "interval", d))
        .transpose()?
        .unwrap_or(DEFAULT_INTERVAL);
    if interval < MIN_INTERVAL {
        let d = s.interval.expect("only a set interval can be this short");
        return Err(file.error(
            d.span(),
            format!(
                "`interval` must be at least {}",
                humantime::format_duration(MIN_INTERVAL)
            ),
            Some("it is the length of one point of the timeline, e.g. \"1s\" or \"250ms\"".into()),
        ));
    }
    Ok(Load {
        publishes,
        interval,
        warmup,
        concurrency,
        rate,
        duration,
        publish_timeout,
        stage_timing: s.stage_timing.unwrap_or(true),
        profile_sample,
    })
}

/// `load`'s share for `shard`: publishes, warm-up and publishers split so the shards add up exactly, the
/// rate divided; every shard needs a publisher and a publish of its own.
fn sharded(
    case: &CaseLocator,
    raw: &RawCase,
    mut load: Load,
    shard: Shard,
) -> Result<Load, ScenarioError> {
    let count = shard.count as u64;
    let too_few = |what: &str, n: u64| {
        case.error(
            raw.name.span(),
            format!("{n} {what} cannot be split over {count} shards (--shard {shard})"),
            Some(format!(
                "give the case at least {count} {what}, or run fewer shards"
            )),
        )
    };
    if (load.concurrency as u64) < count {
        return Err(too_few(
            "publishers (`concurrency`)",
            load.concurrency as u64,
        ));
    }
    if let Some(p) = load.publishes {
        if p < count {
            return Err(too_few("publishes", p));
        }
        load.publishes = Some(shard.share(p));
    }
    load.concurrency = shard.share(load.concurrency as u64) as usize;
    load.warmup = shard.share(load.warmup);
    load.rate = load.rate.map(|r| r / shard.count as f64);
    Ok(load)
}

/// The case's backend and path, checked against the catalog together with every backend-specific key the
/// case sets (does it apply to this backend and this path?).
fn backend_and_path(
    case: &CaseLocator,
    raw: &RawCase,
) -> Result<(Backend, PathKind), ScenarioError> {
    let backend = Backend::from_name(raw.backend.get_ref()).ok_or_else(|| {
        case.error(
            raw.backend.span(),
            format!("unknown backend {:?}", raw.backend.get_ref()),
            Some(format!("backends: {}", Backend::names().join(", "))),
        )
    })?;
    let spec = backend.spec();
    let path = PathKind::from_name(raw.path.get_ref()).ok_or_else(|| {
        case.error(
            raw.path.span(),
            format!("unknown path {:?}", raw.path.get_ref()),
            Some(format!("paths on {backend}: {}", path_names(spec.paths))),
        )
    })?;
    if !spec.paths.contains(&path) {
        return Err(case.error(
            raw.path.span(),
            format!("path `{path}` is not supported on backend `{backend}`"),
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
                return Err(case.error(
                    span,
                    format!("`{key}` does not apply to backend `{backend}`"),
                    Some(format!("`{key}` is for backend {}", owners.join(", "))),
                ));
            }
            Some((_, paths)) if !paths.is_empty() && !paths.contains(&path) => {
                return Err(case.error(
                    span,
                    format!("`{key}` does not apply to path `{path}`"),
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
    case: &CaseLocator,
    raw: &RawCase,
    scenario_python: Option<&Spanned<String>>,
) -> Result<Option<PythonClient>, ScenarioError> {
    use crate::catalog::{PYTHON_CLIENT_KEYS, PYTHON_ONLY_KEYS};
    let client = match &raw.client {
        None => Client::Taskbench,
        Some(c) => Client::from_name(c.get_ref()).ok_or_else(|| {
            let names: Vec<&str> = Client::ALL.iter().map(|c| c.name()).collect();
            case.error(
                c.span(),
                format!("unknown client {:?}", c.get_ref()),
                Some(format!("client is one of {}", names.join(", "))),
            )
        })?,
    };
    let keys = raw.backend_keys();
    if client == Client::Taskbench {
        if let Some((key, span)) = keys.iter().find(|(k, _)| PYTHON_ONLY_KEYS.contains(k)) {
            return Err(case.error(
                span.clone(),
                format!("`{key}` applies only to a celery or kombu client"),
                Some("add client = \"celery\" or client = \"kombu\" to the case".into()),
            ));
        }
        return Ok(None);
    }
    if let Some((key, span)) = keys.iter().find(|(k, _)| !PYTHON_CLIENT_KEYS.contains(k)) {
        return Err(case.error(
            span.clone(),
            format!(
                "`{key}` tunes taskbench's own publishers and does not apply to client `{client}`"
            ),
            Some(format!(
                "a {client} case takes {}; configure Celery itself through celery_app",
                PYTHON_CLIENT_KEYS.join(", ")
            )),
        ));
    }
    let celery_app = match &raw.celery_app {
        Some(a) if client != Client::Celery => {
            return Err(case.error(
                a.span(),
                format!("`celery_app` applies only to client `celery`, not `{client}`"),
                None,
            ));
        }
        Some(a) => {
            let ok = a
                .get_ref()
                .split_once(':')
                .is_some_and(|(m, attr)| !m.is_empty() && !attr.is_empty());
            if !ok {
                return Err(case.error(
                    a.span(),
                    format!("celery_app {:?} is not `module:attribute`", a.get_ref()),
                    Some("e.g. celery_app = \"proj.celery:app\" (with pythonpath = the directory proj is in)".into()),
                ));
            }
            Some(a.get_ref().clone())
        }
        None => None,
    };
    let nonempty = |v: &Spanned<String>, key: &str| {
        if v.get_ref().is_empty() {
            Err(case.error(v.span(), format!("`{key}` is empty"), None))
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
            match Path::new(case.file.name).parent() {
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
    case: &CaseLocator,
    raw: &RawCase,
    path: PathKind,
    rate: Option<f64>,
) -> Result<AmqpOptions, ScenarioError> {
    if let Some(url) = &raw.url {
        check_url(case, Backend::Amqp, url)?;
    }
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
            "window" => Confirm::Window,
            other => {
                return Err(case.error(
                    c.span(),
                    format!("unknown confirm mode {other:?}"),
                    Some("confirm is one of off, each, batch, window".into()),
                ));
            }
        };
        if o.confirm == Confirm::Window {
            // A window's messages finish at their own acks, after their publish call: only a channel kept
            // across publishes can hold them, and the open loop's queueing would not be in their latency.
            let why = if path != PathKind::Pooled {
                Some(format!("needs path = \"pooled\", not {path}"))
            } else {
                rate.map(|r| format!("cannot be combined with `rate` ({r})"))
            };
            if let Some(why) = why {
                return Err(case.error(
                    c.span(),
                    format!("`confirm = \"window\"` {why}"),
                    Some("a confirm window keeps one channel's unconfirmed messages across back-to-back publishes; use it on pooled with a closed loop".into()),
                ));
            }
        }
    }
    if let Some(t) = &raw.queue_type {
        o.queue_type = match t.get_ref().as_str() {
            "classic" => QueueType::Classic,
            "quorum" => QueueType::Quorum,
            other => {
                return Err(case.error(
                    t.span(),
                    format!("unknown queue_type {other:?}"),
                    Some("queue_type is classic (the default) or quorum".into()),
                ));
            }
        };
    }
    if let Some(v) = &raw.confirm_window {
        o.confirm_window = positive(case.file, "confirm_window", v, 1)? as usize;
    }
    if let Some(v) = &raw.confirm_batch {
        o.confirm_batch = positive(case.file, "confirm_batch", v, 1)? as usize;
    }
    if let Some(v) = &raw.pool_size {
        o.pool_size = positive(case.file, "pool_size", v, 1)? as usize;
    }
    if let Some(v) = &raw.connections {
        o.connections = positive(case.file, "connections", v, 1)? as usize;
    }
    if let Some(v) = &raw.batch {
        o.batch = positive(case.file, "batch", v, 1)? as usize;
        if o.batch > 1 && o.confirm == Confirm::Window {
            // A window's failed batch would count its messages both as the call's errors and as
            // unconfirmed: refused until the window accounts a partial batch once.
            return Err(case.error(
                v.span(),
                format!(
                    "`batch = {}` cannot be combined with `confirm = \"window\"`",
                    o.batch
                ),
                Some(
                    "a confirm window already keeps many messages in flight; use batch = 1".into(),
                ),
            ));
        }
    }
    Ok(o)
}

/// A `redis` case's settings (the keys were checked to apply to its backend and path).
fn redis_options(case: &CaseLocator, raw: &RawCase) -> Result<RedisOptions, ScenarioError> {
    if let Some(url) = &raw.url {
        check_url(case, Backend::Redis, url)?;
    }
    let mut o = RedisOptions {
        url: raw.url.as_ref().map(|u| u.get_ref().clone()),
        keep: raw.keep.as_ref().is_some_and(|k| *k.get_ref()),
        ..RedisOptions::default()
    };
    if let Some(v) = &raw.pool_size {
        o.pool_size = positive(case.file, "pool_size", v, 1)? as usize;
    }
    if let Some(v) = &raw.batch {
        o.batch = positive(case.file, "batch", v, 1)? as usize;
    }
    if let Some(v) = &raw.multiplexed {
        o.multiplexed = *v.get_ref();
    }
    if let Some(v) = &raw.kombu_handshake {
        o.kombu_handshake = *v.get_ref();
    }
    Ok(o)
}

/// Schemes the redis backend connects with: a host (`redis://`, `valkey://`) or a socket path.
const REDIS_SCHEMES: &[&str] = &["redis", "valkey", "redis+unix", "valkey+unix", "unix"];
/// Schemes for a socket path rather than a host.
const SOCKET_SCHEMES: &[&str] = &["redis+unix", "valkey+unix", "unix"];
/// TLS schemes: the client libraries accept them, but taskbench is built without TLS.
const TLS_SCHEMES: &[&str] = &["rediss", "valkeys", "amqps"];

/// Checks a case's broker `url` as far as it can be known without connecting: a scheme the backend uses, a
/// host (or socket path), and whatever else the backend's client library refuses. Messages never repeat
/// the URL (it may hold a password); the error points at it.
fn check_url(
    case: &CaseLocator,
    backend: Backend,
    url: &Spanned<String>,
) -> Result<(), ScenarioError> {
    let value = url.get_ref().as_str();
    let (schemes, a_url, example): (&[&str], &str, &str) = match backend {
        Backend::Amqp => (
            &["amqp"],
            "an AMQP URL",
            "\"amqp://guest:guest@127.0.0.1:5672/%2f\"",
        ),
        _ => (
            REDIS_SCHEMES,
            "a Redis URL",
            "\"redis://127.0.0.1:6379/0\" or \"redis+unix:///run/redis.sock?db=0\"",
        ),
    };
    let fail = |message: String, hint: String| Err(case.error(url.span(), message, Some(hint)));
    let Some((scheme, rest)) = value.split_once("://") else {
        return fail(
            format!("`url` is not {a_url}: it has no scheme://"),
            format!("write it like {example}"),
        );
    };
    let scheme = scheme.to_ascii_lowercase();
    if TLS_SCHEMES.contains(&scheme.as_str()) {
        return fail(
            format!("`url` uses {scheme}://, TLS, which this taskbench is built without"),
            format!("connect without TLS, like {example}"),
        );
    }
    if !schemes.contains(&scheme.as_str()) {
        return fail(
            format!(
                "`url` has the scheme {scheme:?}, which the {backend} backend cannot use; it takes {}",
                schemes.join(", ")
            ),
            format!("write it like {example}"),
        );
    }
    if SOCKET_SCHEMES.contains(&scheme.as_str()) {
        let path = rest.split(['?', '#']).next().unwrap_or("");
        if !path.starts_with('/') || path.len() < 2 {
            return fail(
                format!("`url` names no socket path: {scheme}:// takes an absolute path"),
                format!("write it like \"{scheme}:///run/redis.sock?db=0\""),
            );
        }
    } else {
        let authority = rest.split('/').next().unwrap_or("");
        let host_port = authority.rsplit('@').next().unwrap_or("");
        let host = if host_port.starts_with('[') {
            host_port
                .split(']')
                .next()
                .unwrap_or("")
                .trim_start_matches('[')
        } else {
            host_port.split([':', '?', '#']).next().unwrap_or("")
        };
        if host.is_empty() {
            return fail(
                "`url` names no host".into(),
                format!("write it like {example}"),
            );
        }
    }
    // Whatever else the client library refuses (a bad port, database number or query value).
    let refused = match backend {
        Backend::Amqp => value.parse::<lapin::uri::AMQPUri>().err(),
        _ => redis::IntoConnectionInfo::into_connection_info(value)
            .err()
            // "Invalid database number - InvalidClientConfig": the kind adds nothing for a user.
            .map(|e| {
                e.to_string()
                    .split(" - ")
                    .next()
                    .unwrap_or_default()
                    .to_string()
            }),
    };
    match refused {
        Some(e) => fail(
            format!(
                "`url` is not valid as {a_url}: {}",
                e.replace(value, "<url>")
            ),
            format!("write it like {example}"),
        ),
        None => Ok(()),
    }
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
    case: &CaseLocator,
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
        case.error(
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
