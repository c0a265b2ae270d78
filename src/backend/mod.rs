//! The publishers: one module per backend, each with an [`crate::engine::Target`] implementation, and the
//! dispatch from a case to the one that runs it.
//!
//! Adding a backend touches the catalog, the scenario, this module and its tests: ARCHITECTURE.md's
//! "Where to add" lists every step, in order.

pub mod amqp;
pub mod backoff;
pub mod floor;
pub mod local;
pub mod python;
pub mod redis;
pub mod url;

use crate::engine::{self, RunControl};
use crate::error::{ErrorKind, PublishError};
use crate::record::CaseResult;
use crate::scenario::{BackendOptions, Case, PythonClient};

/// Runs one case to the end on its backend and returns what was measured.
pub async fn run_case(case: &Case, control: &RunControl) -> CaseResult {
    match &case.options {
        BackendOptions::Local(o) => match local::LocalTarget::new(case, o) {
            Ok(target) => engine::run_case(target, case, control).await,
            Err(e) => CaseResult::failed_setup(case, ErrorKind::Setup, e.to_string()),
        },
        BackendOptions::Redis(o) => {
            let target = redis::RedisTarget::new(case, o, control.stop.clone());
            let url =
                || url::broker_url(o.url.as_deref(), "TASKBENCH_REDIS_URL", redis::DEFAULT_URL);
            on_broker(target, o.python.as_ref(), url, case, control).await
        }
        BackendOptions::Amqp(o) => {
            let target = amqp::AmqpTarget::new(case, o, control.stop.clone());
            let url = || url::broker_url(o.url.as_deref(), "TASKBENCH_AMQP_URL", amqp::DEFAULT_URL);
            on_broker(target, o.python.as_ref(), url, case, control).await
        }
    }
}

/// A broker case: taskbench's own publishers on `target`, or, with a Python `client`, real Celery or kombu
/// publishing to the case's URL while `target` declares, counts and purges the queue.
async fn on_broker<T: python::Broker>(
    target: Result<T, PublishError>,
    client: Option<&PythonClient>,
    url: impl FnOnce() -> String,
    case: &Case,
    control: &RunControl,
) -> CaseResult {
    match (target, client) {
        (Ok(target), None) => engine::run_case(target, case, control).await,
        (Ok(target), Some(client)) => {
            let target =
                python::PythonTarget::new(target, case, client, url(), control.trace_spans);
            engine::run_case(target, case, control).await
        }
        (Err(e), _) => CaseResult::failed_setup(case, e.kind, e.message),
    }
}
