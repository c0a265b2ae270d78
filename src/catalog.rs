//! What taskbench can measure: the backends, the paths, and the one table of which paths and case keys
//! each backend takes. Scenario checking, dispatch and reporting all read this table; it imports nothing
//! of the crate.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a task goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// RabbitMQ over AMQP 0-9-1.
    Amqp,
    /// Redis lists, kombu's Redis transport.
    Redis,
    /// A Unix domain stream socket, raw frames.
    Unix,
    /// A named pipe, raw frames.
    Fifo,
    /// A TCP stream, raw frames.
    Tcp,
}

/// How each publish reaches the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathKind {
    /// A new connection for every publish, closed after it.
    Fresh,
    /// A connection checked out of a pool for every publish and returned after it.
    Acquire,
    /// One connection/channel per publisher for the whole case.
    Pooled,
    /// Frames straight onto one long-lived local stream per publisher.
    Raw,
}

/// What a backend accepts: its paths, and the case keys that mean something for it.
pub struct BackendSpec {
    pub backend: Backend,
    pub name: &'static str,
    pub paths: &'static [PathKind],
    /// Case keys specific to this backend, each with the paths it applies to (empty = all paths).
    pub options: &'static [(&'static str, &'static [PathKind])],
    /// Whether the backend is local (raw frames to a sink) rather than a broker.
    pub local: bool,
}

use PathKind::{Acquire, Fresh, Pooled, Raw};

/// Who publishes a broker case: taskbench's own Rust publishers, or real Celery or kombu in Python
/// processes (the `client` case key; only `amqp` and `redis` take it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Client {
    Taskbench,
    Celery,
    Kombu,
}

impl Client {
    pub const ALL: [Client; 3] = [Client::Taskbench, Client::Celery, Client::Kombu];

    /// The name used in scenario files and output.
    pub const fn name(self) -> &'static str {
        match self {
            Client::Taskbench => "taskbench",
            Client::Celery => "celery",
            Client::Kombu => "kombu",
        }
    }

    /// The client called `name` in scenario files.
    pub fn from_name(name: &str) -> Option<Client> {
        Client::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The backend keys a `client = "celery"` or `"kombu"` case takes (the others tune taskbench's own
/// publishers). `python`, `celery_app` and `pythonpath` apply only to such cases, `celery_app` only to celery.
pub const PYTHON_CLIENT_KEYS: &[&str] = &[
    "url",
    "keep",
    "client",
    "python",
    "celery_app",
    "pythonpath",
];

/// The backend keys that mean something only with a Python client.
pub const PYTHON_ONLY_KEYS: &[&str] = &["python", "celery_app", "pythonpath"];

const LOCAL_OPTIONS: &[(&str, &[PathKind])] = &[("address", &[])];

/// The table of backends: the single definition everything else reads.
pub const BACKENDS: &[BackendSpec] = &[
    BackendSpec {
        backend: Backend::Amqp,
        name: "amqp",
        paths: &[Fresh, Acquire, Pooled],
        options: &[
            ("url", &[]),
            ("keep", &[]),
            ("confirm", &[]),
            ("confirm_batch", &[]),
            ("confirm_window", &[Pooled]),
            ("queue_type", &[]),
            ("pool_size", &[Acquire]),
            ("connections", &[Pooled]),
            ("batch", &[Pooled]),
            ("client", &[]),
            ("python", &[]),
            ("celery_app", &[]),
            ("pythonpath", &[]),
        ],
        local: false,
    },
    BackendSpec {
        backend: Backend::Redis,
        name: "redis",
        paths: &[Fresh, Acquire, Pooled],
        options: &[
            ("url", &[]),
            ("keep", &[]),
            ("pool_size", &[Acquire]),
            ("batch", &[Pooled]),
            ("multiplexed", &[Pooled]),
            ("kombu_handshake", &[Fresh]),
            ("client", &[]),
            ("python", &[]),
            ("celery_app", &[]),
            ("pythonpath", &[]),
        ],
        local: false,
    },
    BackendSpec {
        backend: Backend::Unix,
        name: "unix",
        paths: &[Fresh, Raw],
        options: LOCAL_OPTIONS,
        local: true,
    },
    BackendSpec {
        backend: Backend::Fifo,
        name: "fifo",
        paths: &[Fresh, Raw],
        options: LOCAL_OPTIONS,
        local: true,
    },
    BackendSpec {
        backend: Backend::Tcp,
        name: "tcp",
        paths: &[Fresh, Raw],
        options: LOCAL_OPTIONS,
        local: true,
    },
];

impl Backend {
    /// This backend's row in [`BACKENDS`].
    pub fn spec(self) -> &'static BackendSpec {
        BACKENDS
            .iter()
            .find(|s| s.backend == self)
            .expect("every backend has a row in BACKENDS")
    }

    /// The backend called `name` in scenario files.
    pub fn from_name(name: &str) -> Option<Backend> {
        BACKENDS.iter().find(|s| s.name == name).map(|s| s.backend)
    }

    /// Names of all backends, for error messages.
    pub fn names() -> Vec<&'static str> {
        BACKENDS.iter().map(|s| s.name).collect()
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.spec().name)
    }
}

impl PathKind {
    /// Every path.
    pub const ALL: [PathKind; 4] = [Fresh, Acquire, Pooled, Raw];

    /// The name used in scenario files and output.
    pub const fn name(self) -> &'static str {
        match self {
            Fresh => "fresh",
            Acquire => "acquire",
            Pooled => "pooled",
            Raw => "raw",
        }
    }

    /// The path called `name` in scenario files.
    pub fn from_name(name: &str) -> Option<PathKind> {
        PathKind::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for PathKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_backend_has_one_row_and_names_round_trip() {
        for b in [
            Backend::Amqp,
            Backend::Redis,
            Backend::Unix,
            Backend::Fifo,
            Backend::Tcp,
        ] {
            assert_eq!(BACKENDS.iter().filter(|s| s.backend == b).count(), 1);
            assert_eq!(Backend::from_name(b.spec().name), Some(b));
        }
        for p in PathKind::ALL {
            assert_eq!(PathKind::from_name(p.name()), Some(p));
        }
    }

    #[test]
    fn raw_is_local_only() {
        for s in BACKENDS {
            assert_eq!(s.paths.contains(&Raw), s.local, "{}", s.name);
        }
    }
}
