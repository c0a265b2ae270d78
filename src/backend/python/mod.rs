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

pub use harness::HARNESS;
pub use protocol::Ready;
pub use publisher::PythonPublisher;
pub use target::{Broker, PythonTarget};

use crate::scenario::{PythonClient, Scenario};

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
