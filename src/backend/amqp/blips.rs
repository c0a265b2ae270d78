//! An AMQP case's broker-side events (`[[case.event]]`), done with RabbitMQ's own administration as an
//! operator would: `kill-connections` closes, through `rabbitmqctl`, every connection that carries the case's
//! name (taskbench's publishers and the Python clients alike), as `rabbitmqctl close_connection` would, in one
//! call (`rabbitmqctl eval`), so the connections go at once and not a second apart; `restart` stops the
//! broker's application (`rabbitmqctl stop_app`) and starts it again when the event ends (`start_app`).

use crate::backend::companion::{Companion, Notes, blocking};
use crate::engine::CaseEvents;
use crate::error::{ErrorKind, PublishError};
use crate::scenario::{Case, CaseEvent, EventKind};
use std::process::{Command, Output};

/// The program that reaches the broker's node: `rabbitmqctl` on the PATH, or this variable's (a wrapper
/// that runs `rabbitmqctl -n NODE`, or the one inside the broker's container).
pub const RABBITMQCTL_VAR: &str = "TASKBENCH_RABBITMQCTL";

/// What the connections are closed with: the reason a client sees (CONNECTION_FORCED).
const REASON: &str = "taskbench kill-connections";

/// Carries out an AMQP case's broker-side events, and notes what each did.
pub struct AmqpEvents {
    program: String,
    /// The `connection_name` of the case's publishing connections.
    name: String,
    notes: Notes,
}

impl AmqpEvents {
    /// The administration of the broker's node, checked before the case starts: a `rabbitmqctl` that cannot
    /// reach the node is a setup error now rather than an event that silently does nothing later.
    pub fn new(case: &Case) -> Result<AmqpEvents, PublishError> {
        let program = std::env::var(RABBITMQCTL_VAR).unwrap_or_else(|_| "rabbitmqctl".into());
        let events = AmqpEvents {
            program,
            name: case.connection_name(),
            notes: Notes::default(),
        };
        match blocking(|| events.eval("ok.")) {
            Ok(out) if out.trim() == "ok" => Ok(events),
            Ok(out) => Err(events.unreachable(&format!("it printed {:?}", out.trim()))),
            Err(e) => Err(events.unreachable(&e)),
        }
    }

    fn unreachable(&self, why: &str) -> PublishError {
        PublishError::new(
            ErrorKind::Setup,
            format!(
                "kill-connections on amqp closes the case's connections with `{} eval`, which failed: {why}; \
                 run taskbench where rabbitmqctl reaches the broker's node, or set {RABBITMQCTL_VAR} to a \
                 program that does (e.g. a script running `rabbitmqctl -n rabbit@HOST \"$@\"`)",
                self.program
            ),
        )
    }

    /// Runs `expression` on the broker's node; what it printed, or why it failed.
    fn eval(&self, expression: &str) -> Result<String, String> {
        self.ctl(&["eval", expression])
    }

    /// Runs `rabbitmqctl ARGS`; what it printed, or why it failed.
    fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.program)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.program))?;
        match out {
            Output { status, stdout, .. } if status.success() => {
                Ok(String::from_utf8_lossy(&stdout).into_owned())
            }
            Output { status, stderr, .. } => Err(format!(
                "{status}: {}",
                String::from_utf8_lossy(&stderr).trim()
            )),
        }
    }

    /// Closes every connection of the cluster named as the case's: how many.
    fn kill_connections(&self) -> Result<usize, String> {
        let out = self.eval(&close_named(&self.name))?;
        out.trim()
            .parse()
            .map_err(|_| format!("rabbitmqctl printed {:?}", out.trim()))
    }

    fn note(&self, line: String) {
        self.notes.push(line);
    }

    fn not_done(&self, what: &str, e: &str) {
        tracing::warn!("{what} failed: {e}");
        self.note(format!("{what} was NOT done: {} failed: {e}", self.program));
    }
}

/// How long since `began`, for a note.
fn since(began: std::time::Instant) -> String {
    crate::human::human_ns(began.elapsed().as_nanos() as u64)
}

/// The Erlang expression that closes every connection whose client properties carry `connection_name` =
/// `name`, and prints how many it closed. The name goes in as bytes, so no character of it needs quoting.
fn close_named(name: &str) -> String {
    let bytes: Vec<String> = name.bytes().map(|b| b.to_string()).collect();
    format!(
        "Name = list_to_binary([{}]), \
         Props = fun(P) -> try proplists:get_value(client_properties, rabbit_reader:info(P, [client_properties]), []) \
         catch _:_ -> [] end end, \
         Mine = [P || P <- rabbit_networking:connections(), lists:member({{<<\"connection_name\">>, longstr, Name}}, Props(P))], \
         [rabbit_networking:close_connection(P, \"{REASON}\") || P <- Mine], \
         length(Mine).",
        bytes.join(",")
    )
}

impl CaseEvents for AmqpEvents {
    fn begin(&self, event: &CaseEvent) {
        let at = humantime::format_duration(event.at);
        // The command starts an Erlang VM: what it does happens somewhere in the time it took, and the event
        // (and the reconnect figures counted from its end) lasts at least as long.
        let began = std::time::Instant::now();
        let took = || format!("rabbitmqctl took {}", since(began));
        match event.kind {
            EventKind::KillConnections => match blocking(|| self.kill_connections()) {
                Ok(0) => self.note(format!(
                    "kill-connections at {at}: rabbitmqctl found no connection named {:?} to close (is it \
                     talking to the node the case publishes to?)",
                    self.name
                )),
                Ok(n) => self.note(format!(
                    "kill-connections at {at}: rabbitmqctl closed {n} connection(s) named {:?} (the case's \
                     publishers; taskbench's own counting connection is left open); {}, and the event lasts \
                     as long",
                    self.name,
                    took()
                )),
                Err(e) => self.not_done(&format!("kill-connections at {at}"), &e),
            },
            EventKind::Restart => match blocking(|| self.ctl(&["stop_app"])) {
                Ok(_) => self.note(format!(
                    "restart at {at}: rabbitmqctl stop_app stopped the broker's application (every client's \
                     connection closed, the port refusing); {}",
                    took()
                )),
                Err(e) => self.not_done(&format!("restart at {at}: stop_app"), &e),
            },
            _ => {}
        }
    }

    fn end(&self, event: &CaseEvent) {
        if event.kind != EventKind::Restart {
            return;
        }
        let at = humantime::format_duration(event.at + event.length);
        let began = std::time::Instant::now();
        match blocking(|| self.ctl(&["start_app"])) {
            Ok(_) => self.note(format!(
                "restart at {at}: rabbitmqctl start_app started it again in {}",
                since(began)
            )),
            // A broker left stopped fails every case after this one: say it loudly.
            Err(e) => self.not_done(
                &format!("restart: start_app at {at} (the broker may be left STOPPED)"),
                &e,
            ),
        }
    }
}

impl Companion for AmqpEvents {
    fn notes(&self) -> Vec<String> {
        self.notes.all()
    }
}

#[cfg(test)]
mod tests {
    use super::close_named;

    #[test]
    fn the_name_goes_in_as_bytes_so_quotes_cannot_break_the_expression() {
        let e = close_named("taskbench \"c\" q");
        assert!(
            e.starts_with("Name = list_to_binary([116,97,115,107"),
            "{e}"
        );
        assert!(!e.contains("\"c\""), "{e}");
        assert!(e.ends_with("length(Mine)."), "{e}");
    }
}
