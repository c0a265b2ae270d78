//! What taskbench can measure: the backends, the paths, and the one table of which paths and case keys
//! each backend takes. Scenario checking, dispatch and reporting all read this table; it imports nothing
//! of the crate.

use serde::{Deserialize, Serialize};

named_enum! {
    /// Where a task goes. Each has one row in [`BACKENDS`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Backend {
        /// RabbitMQ over AMQP 0-9-1.
        Amqp => "amqp",
        /// Redis lists, kombu's Redis transport.
        Redis => "redis",
        /// A Unix domain stream socket, raw frames.
        Unix => "unix",
        /// A named pipe, raw frames.
        Fifo => "fifo",
        /// A TCP stream, raw frames.
        Tcp => "tcp",
    }
}

named_enum! {
    /// How each publish reaches the backend.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum PathKind {
        /// A new connection for every publish, closed after it.
        Fresh => "fresh",
        /// A connection checked out of a pool for every publish and returned after it.
        Acquire => "acquire",
        /// One connection/channel per publisher for the whole case.
        Pooled => "pooled",
        /// Frames straight onto one long-lived local stream per publisher.
        Raw => "raw",
    }
}

/// What a backend accepts: its paths, and the case keys that mean something for it.
pub struct BackendSpec {
    pub backend: Backend,
    pub paths: &'static [PathKind],
    /// Case keys specific to this backend, each with the paths it applies to (empty = all paths).
    pub options: &'static [(&'static str, &'static [PathKind])],
    /// Whether the backend is local (raw frames to a sink) rather than a broker.
    pub local: bool,
}

use PathKind::{Acquire, Fresh, Pooled, Raw};

named_enum! {
    /// Who publishes a broker case: taskbench's own Rust publishers, or real Celery or kombu in Python
    /// processes (the `client` case key; only `amqp` and `redis` take it).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Client {
        Taskbench => "taskbench",
        Celery => "celery",
        Kombu => "kombu",
    }
}

/// The backend keys a `client = "celery"` or `"kombu"` case takes (the others tune taskbench's own
/// publishers). `python`, `celery_app` and `pythonpath` apply only to such cases; `celery_app`,
/// `unregistered_task` and `publish_to_routed_queue` only to celery, the last two with a `celery_app`.
pub const PYTHON_CLIENT_KEYS: &[&str] = &[
    "url",
    "keep",
    "client",
    "python",
    "celery_app",
    "pythonpath",
    "unregistered_task",
    "publish_to_routed_queue",
    "tls_ca",
    "tls_cert",
    "tls_key",
    "tls_verify",
];

/// The TLS keys of a broker case (every path, and the Python clients), used with an `amqps://` or
/// `rediss://` URL.
const TLS_OPTIONS: [(&str, &[PathKind]); 4] = [
    ("tls_ca", &[]),
    ("tls_cert", &[]),
    ("tls_key", &[]),
    ("tls_verify", &[]),
];

/// The backend keys that mean something only with a Python client.
pub const PYTHON_ONLY_KEYS: &[&str] = &[
    "python",
    "celery_app",
    "pythonpath",
    "unregistered_task",
    "publish_to_routed_queue",
];

const LOCAL_OPTIONS: &[(&str, &[PathKind])] = &[("address", &[])];

/// The table of backends: the single definition everything else reads.
pub const BACKENDS: &[BackendSpec] = &[
    BackendSpec {
        backend: Backend::Amqp,
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
            ("unregistered_task", &[]),
            ("publish_to_routed_queue", &[]),
            TLS_OPTIONS[0],
            TLS_OPTIONS[1],
            TLS_OPTIONS[2],
            TLS_OPTIONS[3],
        ],
        local: false,
    },
    BackendSpec {
        backend: Backend::Redis,
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
            ("unregistered_task", &[]),
            ("publish_to_routed_queue", &[]),
            TLS_OPTIONS[0],
            TLS_OPTIONS[1],
            TLS_OPTIONS[2],
            TLS_OPTIONS[3],
        ],
        local: false,
    },
    BackendSpec {
        backend: Backend::Unix,
        paths: &[Fresh, Raw],
        options: LOCAL_OPTIONS,
        local: true,
    },
    BackendSpec {
        backend: Backend::Fifo,
        paths: &[Fresh, Raw],
        options: LOCAL_OPTIONS,
        local: true,
    },
    BackendSpec {
        backend: Backend::Tcp,
        paths: &[Fresh, Raw],
        options: LOCAL_OPTIONS,
        local: true,
    },
];

impl BackendSpec {
    /// The backend's name, as in scenario files and output.
    pub const fn name(&self) -> &'static str {
        self.backend.name()
    }
}

impl Backend {
    /// This backend's row in [`BACKENDS`].
    pub fn spec(self) -> &'static BackendSpec {
        BACKENDS
            .iter()
            .find(|s| s.backend == self)
            .expect("every backend has a row in BACKENDS")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_backend_has_one_row() {
        for b in Backend::ALL {
            assert_eq!(BACKENDS.iter().filter(|s| s.backend == b).count(), 1, "{b}");
        }
        assert_eq!(BACKENDS.len(), Backend::COUNT);
    }

    #[test]
    fn names_are_what_serde_writes() {
        let serde_name = |v: serde_json::Value| v.as_str().unwrap().to_string();
        for b in Backend::ALL {
            assert_eq!(serde_name(serde_json::to_value(b).unwrap()), b.name());
        }
        for p in PathKind::ALL {
            assert_eq!(serde_name(serde_json::to_value(p).unwrap()), p.name());
        }
        for c in Client::ALL {
            assert_eq!(serde_name(serde_json::to_value(c).unwrap()), c.name());
        }
    }

    #[test]
    fn raw_is_local_only() {
        for s in BACKENDS {
            assert_eq!(s.paths.contains(&Raw), s.local, "{}", s.name());
        }
    }
}
