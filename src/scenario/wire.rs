//! A broker case's distance and faults on the wire (`rtt`, `jitter`, `[[case.fault]]`), as planned: what the
//! wire proxy (the `wire` module) adds between the case and its broker, and the timed events the engine
//! schedules (`engine::events`).

use std::time::Duration;

/// The network a broker case's traffic crosses: added round-trip time and its jitter (`rtt`, `jitter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wire {
    /// Added to every round trip: half on the way to the broker, half on the way back.
    pub rtt: Duration,
    /// Each round trip varies by up to this much either way (each direction by half), never reordering
    /// the bytes of a connection.
    pub jitter: Duration,
}

named_enum! {
    /// What a timed event of a case does (`kind` of a `[[case.fault]]` or a `[[case.event]]`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum EventKind {
        /// Bytes are held both ways, silently: the broker seems to hang; they flow again when it ends.
        Blackhole => "blackhole",
        /// Every open connection is dropped at once (RST); new ones are dropped too while it lasts.
        Reset => "reset",
        /// A broker-side event (`[[case.event]]`): the broker closes its clients' connections, through its
        /// own administration (Redis `CLIENT KILL`, `rabbitmqctl`), as an operator would.
        #[serde(rename = "kill-connections")]
        KillConnections => "kill-connections",
        /// A broker-side event on RabbitMQ: the broker's application stops (`rabbitmqctl stop_app`: every
        /// connection closed, the port refusing) and starts again when it ends (`start_app`).
        Restart => "restart",
    }
}

impl EventKind {
    /// Whether the wire proxy carries it out (`[[case.fault]]`), rather than the broker (`[[case.event]]`).
    pub fn on_wire(self) -> bool {
        !matches!(self, EventKind::KillConnections | EventKind::Restart)
    }
}

/// A timed event of a case: `kind` from `at` (after the measured run started) for `length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaseEvent {
    pub at: Duration,
    /// How long it lasts (`for`); zero for an instant (a reset without `for`).
    pub length: Duration,
    pub kind: EventKind,
}
