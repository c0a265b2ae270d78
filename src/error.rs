//! Why a publish failed: the error every publisher, the engine and the reports share, and the one
//! vocabulary of error kinds (the keys of `errors` in summary.json) across backends.

named_enum! {
    /// What kind of failure a publish (or a case's setup or delivery check) met. The names are a stable
    /// interface: summary.json and the table key errors by them, and docs/cli.md lists them.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum ErrorKind {
        /// A URL or setting the backend cannot use (an unparsable URL, an unknown scheme).
        Config => "config",
        /// The case could not be set up (the embedded sink did not start, a pool could not be built).
        Setup => "setup",
        /// No connection: refused, no such socket or host, timed out, or cut before the handshake finished.
        Unreachable => "unreachable",
        /// The broker refused the user or password, or the user may not use the resource.
        Auth => "auth",
        /// AMQP: the vhost does not exist or the user may not use it.
        Vhost => "vhost",
        /// AMQP: the queue or exchange exists with flags other than Celery's.
        DeclareConflict => "declare_conflict",
        /// AMQP: the queue was deleted during the case.
        QueueMissing => "queue_missing",
        /// An open connection dropped (closed by the broker or an operator, reset, or broken mid-publish).
        ConnectionLost => "connection_lost",
        /// AMQP: the broker closed the channel.
        ChannelClosed => "channel_closed",
        /// The broker answered with an error no other kind names (an AMQP error, a Redis error reply).
        Server => "server",
        /// Redis: the server is at `maxmemory`.
        Oom => "oom",
        /// AMQP: the broker blocked publishers (a memory or disk alarm) for longer than a publish may wait.
        Blocked => "blocked",
        /// AMQP: the broker nacked a confirmed publish.
        Nack => "nack",
        /// AMQP: a message sent in a confirm window was never confirmed (its channel dropped, or no ack came within `publish_timeout`).
        Unconfirmed => "unconfirmed",
        /// AMQP: a mandatory publish came back unroutable.
        Returned => "returned",
        /// No connection could be checked out of the pool.
        Pool => "pool",
        /// Writing the message failed in a way no other kind names.
        Send => "send",
        /// The delivery check after the case could not read the queue.
        Check => "check",
        /// A publish took longer than `publish_timeout`.
        Timeout => "timeout",
        /// The backend holds fewer messages than were reported published.
        DeliveryMismatch => "delivery_mismatch",
        /// A publisher panicked (a bug in taskbench: please report it).
        Panic => "panic",
        /// The Python harness of a `celery` or `kombu` case died, or answered something taskbench cannot read.
        Harness => "harness",
        /// TLS: the server's certificate was refused (not signed by a trusted CA, self-signed, expired, or for another host).
        TlsCertificate => "tls_certificate",
        /// TLS: the handshake failed otherwise (the server refused it, e.g. wanting a client certificate, or closed during it).
        TlsHandshake => "tls_handshake",
        /// TLS on one side only: a TLS URL to a plain port, or a plain URL to a TLS port.
        TlsMismatch => "tls_mismatch",
    }
}

impl ErrorKind {
    /// What the kind means, as the table of error kinds in docs/cli.md says it.
    pub const fn meaning(self) -> &'static str {
        match self {
            ErrorKind::Config => {
                "a URL or setting the backend cannot use (an unparsable URL, an unknown scheme)"
            }
            ErrorKind::Setup => {
                "the case could not be set up (the embedded sink did not start, a pool could not be built)"
            }
            ErrorKind::Unreachable => {
                "no connection: refused, no such socket or host, timed out, or cut before the handshake finished"
            }
            ErrorKind::Auth => {
                "the broker refused the user or password, or the user may not use the resource"
            }
            ErrorKind::Vhost => "AMQP: the vhost does not exist or the user may not use it",
            ErrorKind::DeclareConflict => {
                "AMQP: the queue or exchange exists with flags other than Celery's"
            }
            ErrorKind::QueueMissing => "AMQP: the queue was deleted during the case",
            ErrorKind::ConnectionLost => {
                "an open connection dropped (closed by the broker or an operator, reset, or broken mid-publish)"
            }
            ErrorKind::ChannelClosed => "AMQP: the broker closed the channel",
            ErrorKind::Server => {
                "the broker answered with an error no other kind names (an AMQP error, a Redis error reply)"
            }
            ErrorKind::Oom => "Redis: the server is at `maxmemory`",
            ErrorKind::Blocked => {
                "AMQP: the broker blocked publishers (a memory or disk alarm) for longer than a publish may wait"
            }
            ErrorKind::Nack => "AMQP: the broker nacked a confirmed publish",
            ErrorKind::Unconfirmed => {
                "AMQP: a message sent in a confirm window was never confirmed (its channel dropped, or no ack came within `publish_timeout`)"
            }
            ErrorKind::Returned => "AMQP: a mandatory publish came back unroutable",
            ErrorKind::Pool => "no connection could be checked out of the pool",
            ErrorKind::Send => "writing the message failed in a way no other kind names",
            ErrorKind::Check => "the delivery check after the case could not read the queue",
            ErrorKind::Timeout => "a publish took longer than `publish_timeout`",
            ErrorKind::DeliveryMismatch => {
                "the backend holds fewer messages than were reported published"
            }
            ErrorKind::Panic => "a publisher panicked (a bug in taskbench: please report it)",
            ErrorKind::Harness => {
                "the Python process of a `celery` or `kombu` case died or answered something taskbench cannot read"
            }
            ErrorKind::TlsCertificate => {
                "TLS: the server's certificate was refused (not signed by a trusted CA, self-signed, expired, or for another host)"
            }
            ErrorKind::TlsHandshake => {
                "TLS: the handshake failed otherwise (the server refused it, e.g. wanting a client certificate, or closed during it)"
            }
            ErrorKind::TlsMismatch => {
                "TLS on one side only: a TLS URL to a plain port, or a plain URL to a TLS port"
            }
        }
    }
}

/// Why a publish failed: its kind and a message for people (naming the broker, password hidden).
#[derive(Debug, Clone, PartialEq)]
pub struct PublishError {
    pub kind: ErrorKind,
    pub message: String,
}

impl PublishError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        PublishError {
            kind,
            message: message.into(),
        }
    }

    /// A publish that did not finish within `publish_timeout` (built only when one times out).
    pub fn timed_out(publish_timeout: std::time::Duration) -> Self {
        PublishError::new(
            ErrorKind::Timeout,
            format!(
                "a publish did not complete within publish_timeout ({})",
                humantime::format_duration(publish_timeout)
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_manual_lists_every_kind_with_its_meaning() {
        let manual = include_str!("../docs/cli.md");
        for kind in ErrorKind::ALL {
            let row = format!("| `{}` | {} |", kind.name(), kind.meaning());
            assert!(manual.contains(&row), "docs/cli.md lacks the row {row}");
        }
    }
}
