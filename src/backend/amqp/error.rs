//! lapin errors as taskbench error kinds, each with a message that names the broker (password hidden) and
//! says what to check.
//!
//! Kinds: `unreachable`, `auth`, `vhost`, `declare_conflict`, `queue_missing`, `connection_lost`,
//! `channel_closed`, `nack`, `returned`, `unconfirmed`, `blocked`, `server` (any other broker error).
//! `timeout` comes from the engine.

use crate::error::{ErrorKind as Kind, PublishError};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::{Error, ErrorKind};
use std::io;

/// What the publisher was doing when lapin failed; it decides the kind of an ambiguous error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Doing {
    Connect,
    Channel,
    Declare,
    Publish,
    Confirm,
}

impl Doing {
    fn what(self) -> &'static str {
        match self {
            Doing::Connect => "connecting",
            Doing::Channel => "opening a channel",
            Doing::Declare => "declaring the exchange, queue and binding",
            Doing::Publish => "publishing",
            Doing::Confirm => "waiting for the publisher confirm",
        }
    }
}

/// The broker's AMQP error in `e`, if it is one.
fn amqp_kind(e: &Error) -> Option<&AMQPErrorKind> {
    match e.kind() {
        ErrorKind::ProtocolError(err) => Some(err.kind()),
        _ => None,
    }
}

/// Classifies lapin error `e`, raised while `doing` something against broker `url` (already redacted).
pub fn classify(e: &Error, doing: Doing, url: &str) -> PublishError {
    let what = doing.what();
    let (kind, hint): (Kind, &str) = match (amqp_kind(e), e.kind()) {
        (Some(AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)), _) if doing == Doing::Connect => {
            (
                Kind::Auth,
                "; check the user name and password in the URL (TASKBENCH_AMQP_URL or the case's `url`)",
            )
        }
        (Some(AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)), _) => (
            Kind::Auth,
            "; the user lacks permission on this vhost or resource",
        ),
        (Some(AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED)), _)
        | (Some(AMQPErrorKind::Hard(AMQPHardError::INVALIDPATH)), _) => (
            Kind::Vhost,
            "; the vhost in the URL does not exist or the user may not use it (`rabbitmqctl list_vhosts`; \
             the default vhost is written %2f)",
        ),
        (Some(AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)), _) => (
            Kind::DeclareConflict,
            "; the queue or exchange exists with other flags than Celery's (durable direct exchange, durable \
             queue without arguments): delete it or use another queue name",
        ),
        (Some(AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)), _) => (
            Kind::QueueMissing,
            "; the queue is gone (deleted during the case?)",
        ),
        (Some(AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED)), _) => (
            Kind::ConnectionLost,
            "; the broker closed the connection (an operator, a restart, or `rabbitmqctl close_connection`)",
        ),
        (Some(_), _) if doing == Doing::Connect => (Kind::Server, ""),
        (Some(AMQPErrorKind::Hard(_)), _) => (Kind::Server, "; the broker closed the connection"),
        (Some(AMQPErrorKind::Soft(_)), _) => {
            (Kind::ChannelClosed, "; the broker closed the channel")
        }
        (None, ErrorKind::IOError(io)) if doing == Doing::Connect => match io.kind() {
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::NotFound
            | io::ErrorKind::TimedOut
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::AddrNotAvailable => (
                Kind::Unreachable,
                "; is RabbitMQ running there? (`rabbitmq-server -detached`, then `rabbitmqctl await_startup`)",
            ),
            // RabbitMQ drops the socket during the handshake on bad credentials with some auth mechanisms.
            io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::UnexpectedEof => (
                Kind::Auth,
                "; the broker closed the connection during the handshake: usually a wrong user or password, \
                 or a vhost the user may not use",
            ),
            _ => (
                Kind::Unreachable,
                "; is an AMQP 0-9-1 broker (RabbitMQ) listening there?",
            ),
        },
        (None, _) if doing == Doing::Connect => (
            Kind::Unreachable,
            "; is an AMQP 0-9-1 broker (RabbitMQ) listening there?",
        ),
        (None, ErrorKind::InvalidChannelState(..)) if doing != Doing::Connect => (
            Kind::ChannelClosed,
            "; the channel was closed (by the broker after an error, or with its connection)",
        ),
        (None, _) => (
            Kind::ConnectionLost,
            "; the connection to the broker dropped; the publisher reconnects on its next publish",
        ),
    };
    PublishError::new(kind, format!("{what} on {url} failed: {e}{hint}"))
}

/// A connection that is blocked by the broker (memory or disk alarm) for longer than a publish may wait.
pub fn blocked(url: &str, waited: std::time::Duration) -> PublishError {
    PublishError::new(
        Kind::Blocked,
        format!(
            "the broker at {url} blocked publishers (connection.blocked: a memory or disk alarm) and did not \
             unblock within {}; see `rabbitmqctl status` (alarms) and `rabbitmq-diagnostics alarms`",
            humantime::format_duration(waited)
        ),
    )
}

/// A confirm-window message whose channel was dropped (or that was waited for too long) before its confirm
/// arrived: whether the broker took it is unknown.
pub fn unconfirmed(url: &str, why: &str) -> PublishError {
    PublishError::new(
        Kind::Unconfirmed,
        format!(
            "a message published to {url} was never confirmed: {why}; the delivered count tells whether the \
             broker took it"
        ),
    )
}

/// The broker refused to take a message (basic.nack).
pub fn nack(url: &str, queue: &str) -> PublishError {
    PublishError::new(
        Kind::Nack,
        format!("the broker at {url} nacked a message for queue {queue:?} (it could not store it)"),
    )
}

/// The broker returned a mandatory message it could not route.
pub fn returned(url: &str, queue: &str, reply: &str) -> PublishError {
    PublishError::new(
        Kind::Returned,
        format!(
            "the broker at {url} returned a message for queue {queue:?} as unroutable ({reply}): the queue \
             does not exist (deleted during the case?)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_connect_is_unreachable_and_names_the_redacted_url() {
        let e = Error::from(io::Error::from(io::ErrorKind::ConnectionRefused));
        let p = classify(&e, Doing::Connect, "amqp://guest:***@127.0.0.1:1/%2f");
        assert_eq!(p.kind, Kind::Unreachable);
        assert!(
            p.message.contains("amqp://guest:***@127.0.0.1:1/%2f"),
            "{}",
            p.message
        );
    }

    #[test]
    fn io_error_while_publishing_is_a_lost_connection() {
        let e = Error::from(io::Error::from(io::ErrorKind::BrokenPipe));
        assert_eq!(classify(&e, Doing::Publish, "u").kind, Kind::ConnectionLost);
    }
}
