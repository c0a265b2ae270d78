//! The task a case publishes: the scenario's `[task]`, or the named task of `[tasks]` the case picks with
//! `task = "NAME"`, with the case's own queue, priority and payload over it, checked against what the case's
//! backend can carry.

use super::locator::{CaseLocator, ScenarioFile};
use super::value::positive;
use crate::catalog::Backend;
use crate::message::{TaskSpec, TaskTemplate};
use crate::scenario::raw::{RawCase, RawTask, RawTasks};
use crate::scenario::{MAX_AMQP_NAME, MAX_PAYLOAD_BYTES, PIPE_BUF, ScenarioError, Shard};
use indexmap::IndexMap;
use std::ops::Range;
use std::sync::Arc;
use toml::Spanned;

/// A task the scenario defines, and where its `queue` is written (for errors about the queue).
pub(super) struct ScenarioTask {
    pub(super) spec: TaskSpec,
    pub(super) queue: Option<Range<usize>>,
}

/// The tasks a scenario defines: `[task]`, which a case publishes unless it names another, and the named
/// tasks of `[tasks]`, in file order.
pub(super) struct ScenarioTasks {
    /// `[task]`, or taskbench's default task when the file has none.
    default: ScenarioTask,
    /// Whether the file has a `[task]`.
    default_written: bool,
    named: IndexMap<String, ScenarioTask>,
}

/// The scenario's `[task]` and `[tasks.NAME]` tables, each checked.
pub(super) fn scenario_tasks(
    file: &ScenarioFile,
    task: Option<&RawTask>,
    tasks: Option<&RawTasks>,
) -> Result<ScenarioTasks, ScenarioError> {
    let planned = |base: TaskSpec, raw: Option<&RawTask>| -> Result<ScenarioTask, ScenarioError> {
        Ok(ScenarioTask {
            spec: task_spec(file, base, raw)?,
            queue: raw.and_then(|t| t.queue.as_ref()).map(|q| q.span()),
        })
    };
    let mut named = IndexMap::new();
    for (key, raw) in tasks.map(|t| &t.0).into_iter().flatten() {
        // A named task is one of the user's: it has a name of its own, and no arguments unless it says so
        // (`tasks.add`'s [2, 2] would not fit it).
        if raw.get_ref().name.is_none() {
            return Err(file.error(
                raw.span(),
                format!("[tasks.{key}] has no `name`"),
                Some(format!(
                    "give it the Celery name of the task to publish, e.g. name = \"proj.tasks.{key}\""
                )),
            ));
        }
        let base = TaskSpec {
            args: Vec::new(),
            ..TaskSpec::default()
        };
        named.insert(key.clone(), planned(base, Some(raw.get_ref()))?);
    }
    Ok(ScenarioTasks {
        default: planned(TaskSpec::default(), task)?,
        default_written: task.is_some(),
        named,
    })
}

impl ScenarioTasks {
    /// The task case `raw` publishes: the named task its `task` picks, else `[task]`. A case of a scenario
    /// with named tasks and no `[task]` must pick one, so it never publishes the default `tasks.add` unasked.
    pub(super) fn of_case(
        &self,
        case: &CaseLocator,
        raw: &RawCase,
    ) -> Result<&ScenarioTask, ScenarioError> {
        let keys = || {
            self.named
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Some(key) = &raw.task else {
            if self.named.is_empty() || self.default_written {
                return Ok(&self.default);
            }
            return Err(case.error(
                raw.name.span(),
                "names no `task`, and the scenario has no [task] to fall back on".into(),
                Some(format!(
                    "add task = \"NAME\" to the case, NAME one of {}; or a [task] table for the cases that name none",
                    keys()
                )),
            ));
        };
        if let Some(task) = self.named.get(&key.get_ref().0) {
            return Ok(task);
        }
        if self.named.is_empty() {
            return Err(case.error(
                key.span(),
                format!("`task = {:?}` names a task, but the scenario has no [tasks]", key.get_ref().0),
                Some(format!(
                    "define it as [tasks.{}] with its Celery name (name = \"...\") and args; or remove `task` to publish [task]",
                    key.get_ref().0
                )),
            ));
        }
        // The Celery name of a named task, written where its key belongs.
        let by_celery_name = self
            .named
            .iter()
            .find(|(_, t)| t.spec.name == key.get_ref().0);
        let hint = match by_celery_name {
            Some((k, _)) => format!(
                "`task` takes the key of a [tasks.KEY] table, not the Celery name: [tasks.{k}] has name = {:?}, so write task = {k:?}",
                key.get_ref().0
            ),
            None => format!("tasks: {}", keys()),
        };
        Err(case.error(
            key.span(),
            format!("no task {:?} in [tasks]", key.get_ref().0),
            Some(hint),
        ))
    }
}

/// A `[task]` or `[tasks.KEY]` table, over `spec`.
fn task_spec(
    file: &ScenarioFile,
    mut spec: TaskSpec,
    raw: Option<&RawTask>,
) -> Result<TaskSpec, ScenarioError> {
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

/// The task case `raw` publishes: `scenario_task` (see [`ScenarioTasks::of_case`]) with the case's own keys
/// over it, to the shard's own queue when sharded; its queue name must fit AMQP, and on a FIFO with several
/// publishers a frame must fit one atomic pipe write.
pub(super) fn case_task(
    case: &CaseLocator,
    raw: &RawCase,
    scenario_task: &ScenarioTask,
    backend: Backend,
    concurrency: usize,
    shard: Option<Shard>,
) -> Result<Arc<TaskTemplate>, ScenarioError> {
    let mut task = scenario_task.spec.clone();
    apply_task_overrides(
        case.file,
        &mut task,
        raw.queue.as_ref(),
        raw.priority.as_ref(),
        raw.payload_bytes.as_ref(),
    )?;
    if let Some(shard) = shard {
        task.queue = format!("{}-shard-{}", task.queue, shard.index);
    }
    if backend == Backend::Amqp && task.queue.len() > MAX_AMQP_NAME {
        let span = raw
            .queue
            .as_ref()
            .map(|q| q.span())
            .or(scenario_task.queue.clone())
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
    Ok(template)
}

/// Sets the `queue`, `priority` and `payload_bytes` that are given over `spec`.
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
