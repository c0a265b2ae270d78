//! The `fresh` path: a new connection for every publish, as Celery does with `broker_pool_limit = 0`.
//!
//! With the kombu handshake (the default) a publish sends what kombu sends on a new connection, each as its
//! own stage: PING (handshake), a MULTI of LLEN over the four priority lists (declare: kombu's `_size`), a
//! MULTI of the two binding SADDs (bind: kombu 5.7's `_queue_bind`), then the LPUSH (send), then the close.

use super::{Endpoint, first_error};
use crate::message::TaskMessage;
use crate::record::PublishError;
use crate::stage::{Stage, StageClock};
use redis::{Cmd, Pipeline};
use std::sync::Arc;

/// One publisher of the `fresh` path.
pub struct FreshPublisher {
    endpoint: Arc<Endpoint>,
    kombu_handshake: bool,
    /// The handshake's commands, built once.
    ping: Cmd,
    declare: Pipeline,
    bind: Pipeline,
    lpush: Cmd,
}

impl FreshPublisher {
    pub fn new(endpoint: Arc<Endpoint>, kombu_handshake: bool) -> Self {
        let mut declare = redis::pipe();
        declare.atomic();
        for list in &endpoint.lists {
            declare.cmd("LLEN").arg(list);
        }
        let mut bind = redis::pipe();
        bind.atomic();
        for key in &endpoint.binding_keys {
            bind.cmd("SADD").arg(key).arg(&endpoint.binding_member);
        }
        FreshPublisher {
            endpoint,
            kombu_handshake,
            ping: redis::cmd("PING"),
            declare,
            bind,
            lpush: Cmd::new(),
        }
    }

    pub async fn publish(
        &mut self,
        batch: &[TaskMessage],
        clock: &mut StageClock,
    ) -> Result<(), PublishError> {
        for message in batch {
            self.publish_one(message, clock).await?;
        }
        Ok(())
    }

    async fn publish_one(
        &mut self,
        message: &TaskMessage,
        clock: &mut StageClock,
    ) -> Result<(), PublishError> {
        let ep = &*self.endpoint;
        // Dropped (and so closed) on every way out, a cancellation included.
        let mut conn = clock.time(Stage::Connect, ep.connect()).await?;
        if self.kombu_handshake {
            clock
                .time(Stage::Handshake, conn.send_packed_command(&self.ping))
                .await
                .and_then(|v| v.extract_error())
                .map_err(|e| ep.error("handshake", "PING failed on", &e))?;
            let n = self.declare.len();
            clock
                .time(
                    Stage::Declare,
                    conn.send_packed_commands(&self.declare, n + 1, 1),
                )
                .await
                .and_then(first_error)
                .map_err(|e| ep.error("declare", "MULTI LLEN failed on", &e))?;
            let n = self.bind.len();
            clock
                .time(Stage::Bind, conn.send_packed_commands(&self.bind, n + 1, 1))
                .await
                .and_then(first_error)
                .map_err(|e| ep.error("bind", "MULTI SADD failed on", &e))?;
        }
        self.lpush.clear();
        self.lpush
            .arg("LPUSH")
            .arg(&ep.list)
            .arg(message.envelope());
        clock
            .time(Stage::Send, conn.send_packed_command(&self.lpush))
            .await
            .and_then(|v| v.extract_error())
            .map_err(|e| ep.error("send", "LPUSH failed on", &e))?;
        clock.time_sync(Stage::Close, || drop(conn));
        Ok(())
    }
}
