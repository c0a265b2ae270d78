//! The publishers: one module per backend, each with an [`crate::engine::Target`] implementation, and the
//! dispatch from a case to the one that runs it.
//!
//! Adding a backend touches the catalog, the scenario, this module and its tests: ARCHITECTURE.md's
//! "Where to add" lists every step, in order.

pub mod amqp;
pub mod backoff;
pub mod companion;
pub mod floor;
pub mod local;
pub mod python;
pub mod redis;
pub mod tls;
pub mod url;
pub mod wired;

use crate::engine::{self, RunControl};
use crate::error::{ErrorKind, PublishError};
use crate::record::CaseResult;
use crate::scenario::{BackendOptions, Case, PythonClient};
use companion::Accompanied;
use std::sync::Arc;

/// Runs one case to the end on its backend and returns what was measured.
pub async fn run_case(case: &Case, control: &RunControl) -> CaseResult {
    match &case.options {
        BackendOptions::Local(o) => match local::LocalTarget::new(case, o) {
            Ok(target) => engine::run_case(target, case, control).await,
            Err(e) => CaseResult::failed_setup(case, ErrorKind::Setup, e.to_string()),
        },
        BackendOptions::Redis(o) => {
            let url = url::broker_url(o.url.as_deref(), "TASKBENCH_REDIS_URL", redis::DEFAULT_URL);
            let target =
                |via: Option<&str>| redis::RedisTarget::via(case, o, control.stop.clone(), via);
            let broker = match case.events.iter().any(|e| !e.kind.on_wire()) {
                false => None,
                true => match redis::blips::RedisEvents::new(case, o) {
                    Ok(b) => Some(Arc::new(b) as Arc<dyn companion::Companion>),
                    Err(e) => return CaseResult::failed_setup(case, e.kind, e.message),
                },
            };
            on_broker(target, o.python.as_ref(), url, broker, case, control).await
        }
        BackendOptions::Amqp(o) => {
            let url = url::broker_url(o.url.as_deref(), "TASKBENCH_AMQP_URL", amqp::DEFAULT_URL);
            let target =
                |via: Option<&str>| amqp::AmqpTarget::via(case, o, control.stop.clone(), via);
            let broker = match case.events.iter().any(|e| !e.kind.on_wire()) {
                false => None,
                true => match amqp::blips::AmqpEvents::new(case) {
                    Ok(b) => Some(Arc::new(b) as Arc<dyn companion::Companion>),
                    Err(e) => return CaseResult::failed_setup(case, e.kind, e.message),
                },
            };
            on_broker(target, o.python.as_ref(), url, broker, case, control).await
        }
    }
}

/// A broker case: taskbench's own publishers on the target `make` builds, or, with a Python `client`, real
/// Celery or kombu publishing to the case's `url` while the target declares, counts and purges the queue.
/// The `broker`'s events (`[[case.event]]`) happen beside. With a `wire` (`rtt`, faults), publishers and Python clients go through a [`wired`] proxy; the target's
/// own checks go to the broker directly.
async fn on_broker<T: python::Broker>(
    make: impl FnOnce(Option<&str>) -> Result<T, PublishError>,
    client: Option<&PythonClient>,
    url: String,
    broker: Option<Arc<dyn companion::Companion>>,
    case: &Case,
    control: &RunControl,
) -> CaseResult {
    let Some(wire) = case.wire else {
        return match (make(None), client) {
            (Ok(target), None) => run(target, broker, case, control).await,
            (Ok(target), Some(client)) => {
                let target =
                    python::PythonTarget::new(target, case, client, url, control.trace_spans);
                run(target, broker, case, control).await
            }
            (Err(e), _) => CaseResult::failed_setup(case, e.kind, e.message),
        };
    };
    let (proxy, via) = match wired::through_proxy(&url, wire) {
        Ok(p) => p,
        Err(e) => return CaseResult::failed_setup(case, e.kind, e.message),
    };
    match (client, make(client.is_none().then_some(via.as_str()))) {
        (None, Ok(inner)) => {
            run(
                Accompanied {
                    inner,
                    companion: proxy,
                },
                broker,
                case,
                control,
            )
            .await
        }
        (Some(client), Ok(target)) => {
            let inner = python::PythonTarget::new(target, case, client, via, control.trace_spans);
            run(
                Accompanied {
                    inner,
                    companion: proxy,
                },
                broker,
                case,
                control,
            )
            .await
        }
        (_, Err(e)) => CaseResult::failed_setup(case, e.kind, e.message),
    }
}

/// Runs the case on `target`, with the `broker`'s events (`[[case.event]]`) beside the target's own.
async fn run<T: engine::Target>(
    target: T,
    broker: Option<Arc<dyn companion::Companion>>,
    case: &Case,
    control: &RunControl,
) -> CaseResult {
    match broker {
        Some(broker) => {
            engine::run_case(
                Accompanied {
                    inner: target,
                    companion: broker,
                },
                case,
                control,
            )
            .await
        }
        None => engine::run_case(target, case, control).await,
    }
}
