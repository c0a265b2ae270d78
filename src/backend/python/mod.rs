//! `client = "celery"` and `client = "kombu"`: real Celery or kombu publish the case's task, one Python
//! process (the harness, `harness.py`, shipped inside the binary) per publisher, driven by the engine like
//! any other publisher (docs/python-clients.md).
//!
//! [`PythonTarget`] wraps the broker's own target (`AmqpTarget`, `RedisTarget`) for what happens around the
//! publishes: declaring or measuring the queue, the delivered count, purging. Its `prepare` starts one
//! harness per publisher and waits until each has imported Celery and built its client, so imports never
//! count. A [`PythonPublisher`] then asks its harness for one publish at a time ("p", on a channel of the
//! harness's own, never its stdout, which is the app's and goes to a log) and records the latency and stage
//! times the harness measured around Celery's own calls. A harness that dies costs the publish in flight,
//! one `harness` error; its publisher then stops and the others go on.
//!
//! The rooms: `target` (the case, its harnesses started before it), `publisher` (one harness driven one
//! publish at a time), `protocol` (the lines exchanged with a harness), `harness` (the process: start,
//! quit, how it ended), `notes` (what the case's numbers come with), `probe` and `spy`.

mod harness;
mod notes;
pub mod probe;
mod protocol;
mod publisher;
pub mod spy;
mod target;
mod turns;

pub use harness::HARNESS;
pub use protocol::Ready;
pub use publisher::PythonPublisher;
pub use target::{Broker, PythonTarget};

use crate::message::TaskTemplate;
use crate::scenario::{AppRoute, Case, PythonClient, Scenario};
use probe::TaskQuery;

/// What [`check_interpreters`] found: a line per interpreter, and a note per case whose app routes its task.
#[derive(Debug, Default)]
pub struct Checked {
    /// `Python 3.11.7 (/path/python): celery 5.7.0, kombu 5.7.0`, once per interpreter.
    pub found: Vec<String>,
    /// Where each routed case's app sends its task and where taskbench publishes it instead.
    pub routes: Vec<String>,
}

/// The queue taskbench publishes a task to when the app routes it to `routed`: a queue of its own, so that
/// the app's workers never get taskbench's messages (`taskbench.<routed>`, with the shard's suffix).
pub fn derived_queue(routed: &str, shard: Option<crate::scenario::Shard>) -> String {
    match shard {
        Some(s) => format!("taskbench.{routed}-shard-{}", s.index),
        None => format!("taskbench.{routed}"),
    }
}

/// Runs every distinct interpreter (and `celery_app`) of the scenario's celery and kombu cases once, and
/// asks each app about the tasks its cases publish: a task the app does not have is an error (unless the
/// case sets `unregistered_task`); a task the app routes is published to [`derived_queue`] (or, with
/// `publish_to_routed_queue`, to the routed queue itself), which becomes the case's queue, counted after
/// it. A case whose harnesses (one per publisher, each the size of the probe once it had loaded the app)
/// cannot fit in the machine's available memory is refused with the figures. Returns what each interpreter
/// has, or the first problem (nothing should run then). `profiling`
/// (`--profile cpu`) also needs py-spy for each. `backend::run_case` expects a scenario that passed here.
pub fn check_interpreters(scenario: &mut Scenario, profiling: bool) -> Result<Checked, String> {
    // One probe per interpreter and app, asked about every task its cases publish.
    let mut groups: Vec<(PythonClient, Vec<TaskQuery>)> = Vec::new();
    for case in &scenario.cases {
        let Some(client) = case.options.python() else {
            continue;
        };
        let index = match groups.iter().position(|(c, _)| same_app(c, client)) {
            Some(i) => i,
            None => {
                groups.push((client.clone(), Vec::new()));
                groups.len() - 1
            }
        };
        let query = task_query(case);
        if client.celery_app.is_some() && !groups[index].1.contains(&query) {
            groups[index].1.push(query);
        }
    }
    let mut checked = Checked::default();
    let mut probed = Vec::with_capacity(groups.len());
    for (client, tasks) in &groups {
        let name = scenario
            .cases
            .iter()
            .find(|c| c.options.python().is_some_and(|p| same_app(p, client)))
            .map_or("", |c| c.name.as_str());
        let f = probe::probe(client, tasks).map_err(|e| format!("case {name:?}: {e}"))?;
        if profiling {
            spy::find(Some(f.executable.as_ref())).map_err(|e| format!("case {name:?}: {e}"))?;
        }
        checked.found.push(f.describe());
        probed.push(f);
    }
    checked.found.dedup();
    let shard = scenario.shard;
    let available = crate::host::available_memory();
    for case in &mut scenario.cases {
        let Some(client) = case.options.python() else {
            continue;
        };
        let group = groups
            .iter()
            .position(|(c, _)| same_app(c, client))
            .expect("every client was grouped");
        // One harness per publisher, each holding what the probe held with the app loaded.
        if let (Some(rss), Some(available)) = (probed[group].rss, available)
            && let Some(why) = probe::too_big_for_memory(
                &case.name,
                case.concurrency,
                rss,
                available,
                client.celery_app.as_deref(),
            )
        {
            return Err(why);
        }
        let routed = match &client.celery_app {
            None => None,
            Some(app) => {
                let query = task_query(case);
                let at = groups[group].1.iter().position(|q| *q == query);
                let answer = at
                    .and_then(|i| probed[group].routes.get(i))
                    .ok_or_else(|| {
                        format!(
                            "case {:?}: the app {app} was not asked about its task",
                            case.name
                        )
                    })?;
                app_route(case, app, &probed[group].tasks, answer)?
            }
        };
        if let Some(note) = plan_route(case, routed, shard)? {
            checked.routes.push(note);
        }
    }
    Ok(checked)
}

fn same_app(a: &PythonClient, b: &PythonClient) -> bool {
    a.python == b.python && a.celery_app == b.celery_app && a.pythonpath == b.pythonpath
}

fn task_query(case: &Case) -> TaskQuery {
    let (args, kwargs) = protocol::published_args(case);
    TaskQuery {
        name: case.task.spec().name.clone(),
        args,
        kwargs,
    }
}

/// The queue `app` routes `case`'s task to, or why the case cannot publish it.
fn app_route(
    case: &Case,
    app: &str,
    tasks: &[String],
    answer: &probe::ProbedTask,
) -> Result<Option<String>, String> {
    let client = case.options.python().expect("a Python case");
    let task = &case.task.spec().name;
    if !answer.registered && !client.unregistered_task {
        return Err(format!(
            "case {:?}: the app {app} has no task {task:?}; its tasks: {} (set unregistered_task = true in the case to publish it by name, as send_task does)",
            case.name,
            if tasks.is_empty() {
                "none".to_string()
            } else {
                tasks.join(", ")
            }
        ));
    }
    if let Some(why) = &answer.error {
        return Err(format!(
            "case {:?}: the app {app} cannot route {task:?}: {why}",
            case.name
        ));
    }
    Ok(answer.routed_queue.clone())
}

/// Records where the app routes `case`'s task and sets the queue the case publishes to (and counts):
/// taskbench's own [`derived_queue`], or the routed queue when the case asks for it. A note says which.
fn plan_route(
    case: &mut Case,
    routed: Option<String>,
    shard: Option<crate::scenario::Shard>,
) -> Result<Option<String>, String> {
    let python = match &mut case.options {
        crate::scenario::BackendOptions::Amqp(o) => o.python.as_mut(),
        crate::scenario::BackendOptions::Redis(o) => o.python.as_mut(),
        crate::scenario::BackendOptions::Local(_) => None,
    }
    .expect("a Python case");
    python.route = Some(AppRoute {
        routed_queue: routed.clone(),
    });
    let Some(routed) = routed else {
        return Ok(None);
    };
    let into_app_queue = python.publish_to_routed_queue;
    let app = python.celery_app.clone().unwrap_or_default();
    let queue = if into_app_queue {
        routed.clone()
    } else {
        derived_queue(&routed, shard)
    };
    let mut spec = case.task.spec().clone();
    spec.queue = queue.clone();
    case.task = TaskTemplate::new(&spec).map_err(|e| format!("case {:?}: {e}", case.name))?;
    let task = &spec.name;
    Ok(Some(if into_app_queue {
        format!(
            "case {:?}: the app {app} routes {task} to queue {routed:?}; taskbench publishes into {routed:?} itself (publish_to_routed_queue = true), counts there and leaves its messages there",
            case.name
        )
    } else {
        format!(
            "case {:?}: the app {app} routes {task} to queue {routed:?}; taskbench publishes to its own queue {queue:?} instead (after the app's router ran) and counts there; publish_to_routed_queue = true publishes into {routed:?}",
            case.name
        )
    }))
}
