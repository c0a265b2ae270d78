//! A case's distance, faults and broker-side events (`rtt`, `jitter`, `[[case.fault]]`, `[[case.event]]`): checked against its backend and its
//! duration, each error at its key.

use super::locator::CaseLocator;
use crate::catalog::Backend;
use crate::scenario::raw::{RawCase, Settings};
use crate::scenario::{CaseEvent, EventKind, ScenarioError, Wire};
use std::time::Duration;
use toml::Spanned;

/// A duration `key` that may be zero (`rtt = "0ms"` measures the proxy itself).
fn zero_or_more(
    case: &CaseLocator,
    key: &str,
    v: &Spanned<String>,
) -> Result<Duration, ScenarioError> {
    humantime::parse_duration(v.get_ref()).map_err(|e| {
        case.error(
            v.span(),
            format!("`{key}` = {:?} is not a duration: {e}", v.get_ref()),
            Some("write it like \"1ms\", \"500us\" or \"0ms\"".into()),
        )
    })
}

/// The case's wire (`rtt`, `jitter`, its own or the scenario's) and its timed events (faults and broker-side
/// events), in start order.
/// A fault needs no `rtt`: the case then goes through the proxy with none added.
pub(super) fn wire(
    case: &CaseLocator,
    raw: &RawCase,
    s: Settings,
    backend: Backend,
    duration: Option<Duration>,
) -> Result<(Option<Wire>, Vec<CaseEvent>), ScenarioError> {
    let local = backend.spec().local;
    let faults = raw.fault.as_deref().unwrap_or(&[]);
    let first_key = [s.rtt, s.jitter]
        .into_iter()
        .flatten()
        .next()
        .map(|v| v.span())
        .or_else(|| faults.first().map(|f| f.span()));
    if local && let Some(span) = first_key {
        return Err(case.error(
            span,
            format!(
                "`rtt`, `jitter` and `[[case.fault]]` apply to a broker's network; the {backend} backend is local"
            ),
            Some(
                "use them on amqp or redis cases (set a scenario-wide rtt on each broker case instead)"
                    .into(),
            ),
        ));
    }
    let rtt = s.rtt.map(|v| zero_or_more(case, "rtt", v)).transpose()?;
    let jitter = s
        .jitter
        .map(|v| zero_or_more(case, "jitter", v))
        .transpose()?;
    if let (None, Some(j)) = (rtt, s.jitter) {
        return Err(case.error(
            j.span(),
            "`jitter` needs an `rtt` to vary around".into(),
            Some("add rtt = \"1ms\" (or rtt = \"0ms\")".into()),
        ));
    }
    let mut events = faults
        .iter()
        .map(|f| fault(case, f, duration, Table::Fault))
        .collect::<Result<Vec<_>, _>>()?;
    let on_wire = !events.is_empty();
    events.extend(broker_events(case, raw, backend, duration)?);
    events.sort_by_key(|e| e.at);
    let wire = match (rtt, !on_wire) {
        (None, true) => None,
        (rtt, _) => Some(Wire {
            rtt: rtt.unwrap_or_default(),
            jitter: jitter.unwrap_or_default(),
        }),
    };
    Ok((wire, events))
}

/// Which table a timed event is written in: the wire's (`[[case.fault]]`) or the broker's (`[[case.event]]`).
#[derive(Clone, Copy, PartialEq)]
enum Table {
    Fault,
    Event,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Fault => "fault",
            Table::Event => "event",
        }
    }

    /// The kinds written in this table.
    fn kinds(self) -> Vec<&'static str> {
        EventKind::ALL
            .into_iter()
            .filter(|k| k.on_wire() == (self == Table::Fault))
            .map(EventKind::name)
            .collect()
    }
}

/// The case's broker-side events (`[[case.event]]`): only on a backend whose administration taskbench drives
/// (redis, amqp).
fn broker_events(
    case: &CaseLocator,
    raw: &RawCase,
    backend: Backend,
    duration: Option<Duration>,
) -> Result<Vec<CaseEvent>, ScenarioError> {
    let events = raw.event.as_deref().unwrap_or(&[]);
    if let Some(restart) = events
        .iter()
        .find(|e| e.get_ref().kind.get_ref().as_str() == EventKind::Restart.name())
        && backend == Backend::Redis
    {
        return Err(case.error(
            restart.span(),
            "a restart is carried out on amqp only: Redis has no command that stops it and starts it again".into(),
            Some(
                "on redis use kill-connections, or stop and start the server yourself; for the network, [[case.fault]] kind = \"reset\"".into(),
            ),
        ));
    }
    if let Some(first) = events.first()
        && backend.spec().local
    {
        return Err(case.error(
            first.span(),
            format!(
                "`[[case.event]]` is a broker-side event; the {backend} backend is local: there is no broker to act on"
            ),
            Some("use it on redis and amqp cases".into()),
        ));
    }
    events
        .iter()
        .map(|e| fault(case, e, duration, Table::Event))
        .collect()
}

/// One `[[case.fault]]` or `[[case.event]]`, which must end before the case's `duration` does.
fn fault(
    case: &CaseLocator,
    f: &Spanned<crate::scenario::raw::RawFault>,
    duration: Option<Duration>,
    table: Table,
) -> Result<CaseEvent, ScenarioError> {
    let f = f.get_ref();
    let kind = EventKind::from_name(f.kind.get_ref())
        .filter(|k| k.on_wire() == (table == Table::Fault))
        .ok_or_else(|| {
            case.error(
                f.kind.span(),
                format!(
                    "a{} {}'s `kind` is {:?}, which taskbench does not know",
                    if table == Table::Event { "n" } else { "" },
                    table.name(),
                    f.kind.get_ref()
                ),
                Some(format!(
                    "write one of: {} (in [[case.{}]])",
                    table.kinds().join(", "),
                    table.name()
                )),
            )
        })?;
    let at = zero_or_more(case, "at", &f.at)?;
    let length = f
        .length
        .as_ref()
        .map(|v| zero_or_more(case, "for", v))
        .transpose()?;
    let length = match (kind, length) {
        (EventKind::Blackhole, None | Some(Duration::ZERO)) => {
            let span = f.length.as_ref().map_or(f.kind.span(), |v| v.span());
            return Err(case.error(
                span,
                "a blackhole needs `for`, how long it lasts, longer than zero".into(),
                Some("write it like { at = \"5s\", kind = \"blackhole\", for = \"2s\" }".into()),
            ));
        }
        (EventKind::KillConnections, Some(l)) if !l.is_zero() => {
            let span = f.length.as_ref().map_or(f.kind.span(), |v| v.span());
            return Err(case.error(
                span,
                "kill-connections is an instant: it has no `for`".into(),
                Some("write it like { at = \"5s\", kind = \"kill-connections\" }".into()),
            ));
        }
        (_, length) => length.unwrap_or_default(),
    };
    if let Some(d) = duration
        && at + length >= d
    {
        return Err(case.error(
            f.at.span(),
            format!(
                "this {} ends at {} into the measured run, past the case's duration ({})",
                table.name(),
                humantime::format_duration(at + length),
                humantime::format_duration(d)
            ),
            Some(format!(
                "make `duration` longer, or the {} earlier or shorter, so the case sees what follows it",
                table.name()
            )),
        ));
    }
    Ok(CaseEvent { at, length, kind })
}
