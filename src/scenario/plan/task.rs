//! The task a case publishes: the scenario's `[task]`, the case's own queue, priority and payload over it,
//! checked against what the case's backend can carry.

use super::locator::{CaseLocator, ScenarioFile};
use super::value::positive;
use crate::catalog::Backend;
use crate::message::{TaskSpec, TaskTemplate};
use crate::scenario::raw::{RawCase, RawTask};
use crate::scenario::{MAX_AMQP_NAME, MAX_PAYLOAD_BYTES, PIPE_BUF, ScenarioError, Shard};
use std::ops::Range;
use std::sync::Arc;
use toml::Spanned;

/// The scenario's `[task]`: what every case publishes unless it says otherwise.
pub(super) fn task_spec(
    file: &ScenarioFile,
    raw: Option<&RawTask>,
) -> Result<TaskSpec, ScenarioError> {
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

/// The task case `raw` publishes: `scenario_task` with the case's own keys over it, to the shard's own
/// queue when sharded; its queue name must fit AMQP, and on a FIFO with several publishers a frame must fit
/// one atomic pipe write. `scenario_queue` is where the scenario's `[task] queue` is, for errors about it.
pub(super) fn case_task(
    case: &CaseLocator,
    raw: &RawCase,
    scenario_task: &TaskSpec,
    scenario_queue: Option<Range<usize>>,
    backend: Backend,
    concurrency: usize,
    shard: Option<Shard>,
) -> Result<Arc<TaskTemplate>, ScenarioError> {
    let mut task = scenario_task.clone();
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
            .or(scenario_queue)
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
