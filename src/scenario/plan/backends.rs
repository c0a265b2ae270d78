//! A case's backend, path and backend-specific options: which keys apply to which backend and path (as the
//! catalog says), and each kind of backend's settings.

use super::locator::CaseLocator;
use super::tls::tls_options;
use super::url::check_url;
use super::value::positive;
use crate::catalog::{BACKENDS, Backend, BackendSpec, PathKind};
use crate::endpoint::Endpoint;
use crate::scenario::raw::RawCase;
use crate::scenario::{
    AmqpOptions, BackendOptions, Confirm, LocalOptions, Overrides, PythonClient, QueueType,
    RedisOptions, ScenarioError,
};
use toml::Spanned;

/// The case's backend and path, checked against the catalog together with every backend-specific key the
/// case sets (does it apply to this backend and this path?).
pub(super) fn backend_and_path(
    case: &CaseLocator,
    raw: &RawCase,
) -> Result<(Backend, PathKind), ScenarioError> {
    let backend = Backend::from_name(raw.backend.get_ref()).ok_or_else(|| {
        case.error(
            raw.backend.span(),
            format!("unknown backend {:?}", raw.backend.get_ref()),
            Some(format!("backends: {}", Backend::NAMES.join(", "))),
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
                let owners: Vec<&str> = BACKENDS
                    .iter()
                    .filter(|s| s.options.iter().any(|(k, _)| *k == key))
                    .map(BackendSpec::name)
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

/// The case's backend-specific settings, one struct per kind of backend; a pipelined `batch` cannot be given
/// a `rate` (the case's or `--rate`).
pub(super) fn backend_options(
    case: &CaseLocator,
    raw: &RawCase,
    backend: Backend,
    path: PathKind,
    python: Option<PythonClient>,
    rate: Option<f64>,
    overrides: &Overrides,
) -> Result<BackendOptions, ScenarioError> {
    let options = match backend {
        // Messages published into the app's own queue are left there: it is not taskbench's to purge.
        Backend::Amqp => {
            let o = amqp_options(case, raw, path, rate)?;
            BackendOptions::Amqp(AmqpOptions {
                keep: o.keep || into_app_queue(&python),
                python,
                ..o
            })
        }
        Backend::Redis => {
            let o = redis_options(case, raw)?;
            BackendOptions::Redis(RedisOptions {
                keep: o.keep || into_app_queue(&python),
                python,
                ..o
            })
        }
        Backend::Unix | Backend::Fifo | Backend::Tcp => {
            let address = raw
                .address
                .as_ref()
                .map(|a| local_endpoint(case, backend, a))
                .transpose()?;
            BackendOptions::Local(LocalOptions { address })
        }
    };
    if let (Some(rate), Some(b)) = (rate, &raw.batch)
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
    Ok(options)
}

/// Whether the case publishes into the queue its app routes the task to (`publish_to_routed_queue`).
fn into_app_queue(python: &Option<PythonClient>) -> bool {
    python.as_ref().is_some_and(|p| p.publish_to_routed_queue)
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
        tls: tls_options(case, raw, "amqps")?,
        ..AmqpOptions::default()
    };
    if let Some(c) = &raw.confirm {
        o.confirm = Confirm::from_name(c.get_ref()).ok_or_else(|| {
            case.error(
                c.span(),
                format!("unknown confirm mode {:?}", c.get_ref()),
                Some(format!("confirm is one of {}", Confirm::NAMES.join(", "))),
            )
        })?;
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
        o.queue_type = QueueType::from_name(t.get_ref()).ok_or_else(|| {
            case.error(
                t.span(),
                format!("unknown queue_type {:?}", t.get_ref()),
                Some("queue_type is classic (the default) or quorum".into()),
            )
        })?;
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
        tls: tls_options(case, raw, "rediss")?,
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
