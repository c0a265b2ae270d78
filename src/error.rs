//! Why a publish failed: the error every publisher, the engine and the reports share, and the one
//! vocabulary of error kinds (the keys of `errors` in summary.json) across backends.

use std::fmt;

/// What kind of failure a publish (or a case's setup or delivery check) met. The names are a stable
/// interface: summary.json and the table key errors by them, and the README lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    Url,
    Config,
    Setup,
    Sink,
    Unreachable,
    Connect,
    Auth,
    Vhost,
    DeclareConflict,
    QueueMissing,
    ConnectionLost,
    Connection,
    ChannelClosed,
    Amqp,
    Server,
    Oom,
    Blocked,
    Nack,
    Returned,
    Pool,
    Acquire,
    Send,
    Check,
    Timeout,
    DeliveryMismatch,
    Panic,
}

impl ErrorKind {
    /// Every kind.
    pub const ALL: [ErrorKind; 26] = [
        ErrorKind::Url,
        ErrorKind::Config,
        ErrorKind::Setup,
        ErrorKind::Sink,
        ErrorKind::Unreachable,
        ErrorKind::Connect,
        ErrorKind::Auth,
        ErrorKind::Vhost,
        ErrorKind::DeclareConflict,
        ErrorKind::QueueMissing,
        ErrorKind::ConnectionLost,
        ErrorKind::Connection,
        ErrorKind::ChannelClosed,
        ErrorKind::Amqp,
        ErrorKind::Server,
        ErrorKind::Oom,
        ErrorKind::Blocked,
        ErrorKind::Nack,
        ErrorKind::Returned,
        ErrorKind::Pool,
        ErrorKind::Acquire,
        ErrorKind::Send,
        ErrorKind::Check,
        ErrorKind::Timeout,
        ErrorKind::DeliveryMismatch,
        ErrorKind::Panic,
    ];

    /// The stable name, as in summary.json.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorKind::Url => "url",
            ErrorKind::Config => "config",
            ErrorKind::Setup => "setup",
            ErrorKind::Sink => "sink",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Connect => "connect",
            ErrorKind::Auth => "auth",
            ErrorKind::Vhost => "vhost",
            ErrorKind::DeclareConflict => "declare_conflict",
            ErrorKind::QueueMissing => "queue_missing",
            ErrorKind::ConnectionLost => "connection_lost",
            ErrorKind::Connection => "connection",
            ErrorKind::ChannelClosed => "channel_closed",
            ErrorKind::Amqp => "amqp",
            ErrorKind::Server => "server",
            ErrorKind::Oom => "oom",
            ErrorKind::Blocked => "blocked",
            ErrorKind::Nack => "nack",
            ErrorKind::Returned => "returned",
            ErrorKind::Pool => "pool",
            ErrorKind::Acquire => "acquire",
            ErrorKind::Send => "send",
            ErrorKind::Check => "check",
            ErrorKind::Timeout => "timeout",
            ErrorKind::DeliveryMismatch => "delivery_mismatch",
            ErrorKind::Panic => "panic",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_name() {
        let mut names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::ALL.len());
    }
}
