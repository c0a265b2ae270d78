//! What a case's timed events did: when each began and ended, and how long after it ended each publisher
//! published again; and the publishes whose fate a fault left unknown.

use crate::error::ErrorKind;
use crate::scenario::CaseEvent;
use std::time::Duration;

/// One timed event of a case (`[[case.fault]]`), as it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct EventResult {
    pub event: CaseEvent,
    /// When it began and ended, from the start of the measured run; `None` when the case ended first.
    pub began: Option<Duration>,
    pub ended: Option<Duration>,
    /// Per publisher: how long after the event ended its first successful publish ended; `None` when it
    /// never published again.
    pub published_again: Vec<Option<Duration>>,
}

/// Failed publishes that may or may not have reached the backend (sent, never confirmed): a publish that
/// timed out, lost its connection or channel, was never confirmed, or whose Python harness died before
/// answering (it writes its answers in batches, so it may have published a few it never reported). The
/// delivery check counts them between the successes and the successes plus these, neither as successes nor
/// as losses.
pub const UNKNOWN_FATE: [ErrorKind; 6] = [
    ErrorKind::Timeout,
    ErrorKind::ConnectionLost,
    ErrorKind::ChannelClosed,
    ErrorKind::Unconfirmed,
    ErrorKind::Send,
    ErrorKind::Harness,
];

/// The publishes whose fate is unknown, and how many of them the delivery check found arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UnknownFate {
    pub publishes: u64,
    /// Of `publishes`, how many the backend holds (beyond every success); `None` when it cannot tell.
    pub delivered: Option<u64>,
}
