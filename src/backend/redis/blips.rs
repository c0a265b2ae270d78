//! A Redis case's broker-side events (`[[case.event]]`), done through the server's own administration as an
//! operator would: `kill-connections` is `CLIENT KILL TYPE normal SKIPME yes` on a connection of its own.

use super::{DEFAULT_URL, connection};
use crate::backend::companion::{Companion, Notes, blocking};
use crate::backend::url::{broker_url, redact};
use crate::engine::CaseEvents;
use crate::error::PublishError;
use crate::scenario::{Case, CaseEvent, EventKind, RedisOptions};
use std::time::Duration;

/// How long the administration connection and its command may take before the event is noted as not done.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Carries out a Redis case's broker-side events, and notes what each did.
pub struct RedisEvents {
    client: redis::Client,
    shown: String,
    notes: Notes,
}

impl RedisEvents {
    /// The administration of the server the case's `url` names (directly, never through the wire proxy).
    pub fn new(case: &Case, o: &RedisOptions) -> Result<RedisEvents, PublishError> {
        let url = broker_url(o.url.as_deref(), "TASKBENCH_REDIS_URL", DEFAULT_URL);
        let shown = redact(&url);
        let direct = connection(&url, &shown, &o.tls, case.publish_timeout / 2, None)?;
        Ok(RedisEvents {
            client: direct.client,
            shown,
            notes: Notes::default(),
        })
    }

    /// `CLIENT KILL TYPE normal SKIPME yes`: how many connections the server closed.
    fn kill_connections(&self) -> redis::RedisResult<i64> {
        let mut admin = self.client.get_connection_with_timeout(ADMIN_TIMEOUT)?;
        admin.set_read_timeout(Some(ADMIN_TIMEOUT))?;
        admin.set_write_timeout(Some(ADMIN_TIMEOUT))?;
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .arg("SKIPME")
            .arg("yes")
            .query(&mut admin)
    }

    fn note(&self, line: String) {
        self.notes.push(line);
    }
}

impl CaseEvents for RedisEvents {
    fn begin(&self, event: &CaseEvent) {
        if event.kind != EventKind::KillConnections {
            return;
        }
        let at = humantime::format_duration(event.at);
        match blocking(|| self.kill_connections()) {
            Ok(n) => self.note(format!(
                "kill-connections at {at}: CLIENT KILL TYPE normal closed {n} connection(s) on {} \
                 (every normal client of the server, not only this case's)",
                self.shown
            )),
            Err(e) => {
                tracing::warn!("kill-connections at {at} on {} failed: {e}", self.shown);
                self.note(format!(
                    "kill-connections at {at} was NOT done: CLIENT KILL on {} failed: {e}",
                    self.shown
                ));
            }
        }
    }

    fn end(&self, _event: &CaseEvent) {}
}

impl Companion for RedisEvents {
    fn notes(&self) -> Vec<String> {
        self.notes.all()
    }
}
