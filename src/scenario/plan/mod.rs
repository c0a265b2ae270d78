//! Checking a parsed scenario and planning its cases: every default filled in, every value checked against
//! what its backend and path allow, each error located at its key.
//!
//! A case is planned in parts, one file each: its load (`load`), its backend, path and options (`backends`,
//! with `url` and `python_client`, which also holds the Python settings set once for the whole file), the task
//! it publishes (`task`: `[task]` or one of the named `[tasks]`); errors point into the file through a
//! [`locator::CaseLocator`].

mod backends;
mod load;
mod locator;
pub(super) mod python_client;
mod task;
mod tls;
mod url;
mod value;
mod wire;

use super::raw::{RawCase, RawScenario, RawThresholds, Settings};
use super::threshold::{Kind, Metric, Threshold};
use super::{Case, Overrides, Scenario, ScenarioError};
use locator::{CaseLocator, ScenarioFile};
use python_client::ScenarioPython;
use std::path::PathBuf;
use task::ScenarioTasks;
use value::check_file_name;

/// Parses and checks scenario `text`; `file` names it in errors.
pub(super) fn scenario(
    text: &str,
    file: &str,
    overrides: &Overrides,
) -> Result<Scenario, ScenarioError> {
    let scenario_file = ScenarioFile::new(file, text);
    let raw: RawScenario = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        scenario_file.error(span, e.message().trim().to_string(), None)
    })?;

    let name = raw.name.get_ref().clone();
    check_file_name(&scenario_file, &raw.name, "scenario name")?;
    let tasks = task::scenario_tasks(&scenario_file, raw.task.as_ref(), raw.tasks.as_ref())?;
    let python = ScenarioPython {
        python: raw.python.as_ref(),
        celery_app: raw.celery_app.as_ref(),
        pythonpath: raw.pythonpath.as_ref(),
    };
    python.check(&scenario_file)?;
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
            python,
            tasks: &tasks,
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
    python.check_used(&scenario_file, &cases)?;
    Ok(Scenario {
        name,
        file: PathBuf::from(file),
        cases,
        shard: overrides.shard,
        floor: overrides.floor || raw.floor.unwrap_or(false),
    })
}

/// What the scenario sets for every case, and the command line's overrides over it.
struct RunWide<'a> {
    defaults: Settings<'a>,
    python: ScenarioPython<'a>,
    tasks: &'a ScenarioTasks,
    overrides: &'a Overrides,
    thresholds: &'a RawThresholds,
}

/// Plans one `[[case]]`: its own settings over the run-wide ones, each part checked where it applies.
fn plan_case(file: &ScenarioFile, raw: &RawCase, wide: RunWide) -> Result<Case, ScenarioError> {
    let RunWide {
        defaults,
        python: scenario_python,
        tasks,
        overrides,
        thresholds: run_thresholds,
    } = wide;
    check_file_name(file, &raw.name, "case name")?;
    let name = raw.name.get_ref().clone();
    let case = file.case(&name);

    let (backend, path) = backends::backend_and_path(&case, raw)?;
    let python = python_client::python_client(&case, raw, scenario_python)?;

    let s = raw.settings().over(defaults);
    let mut load = load::load(file, s, backend, path, overrides)?;
    if let Some(shard) = overrides.shard {
        load = load::sharded(&case, raw, load, shard)?;
    }
    let options =
        backends::backend_options(&case, raw, backend, path, python, load.rate, overrides)?;
    let concurrency = load.concurrency;
    let template = task::case_task(
        &case,
        raw,
        tasks.of_case(&case, raw)?,
        backend,
        concurrency,
        overrides.shard,
    )?;

    let thresholds = thresholds(&case, raw.thresholds.as_ref(), run_thresholds)?;
    let (wire, events) = wire::wire(&case, raw, s, backend, load.duration)?;

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
        wire,
        events,
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
                Kind::Bytes => format!(
                    "write it like {} = \"< 1MiB\" (OP is <, <=, >, >=, ==; units B, KB, MB, GB, KiB, MiB, GiB)",
                    metric.name()
                ),
                Kind::Number => format!(
                    "write it like {} = \"{}\" (OP is <, <=, >, >=, ==)",
                    metric.name(),
                    match metric {
                        Metric::Errors => "== 0",
                        Metric::HarnessBusy => "> 0.9",
                        _ => "> 10000",
                    }
                ),
            };
            // A run-wide threshold is reported once, where it is written, without a case.
            if own {
                case.error(value.span(), e.to_string(), Some(hint))
            } else {
                case.file.error(value.span(), e.to_string(), Some(hint))
            }
        })?;
        out.push(t);
    }
    Ok(out)
}
