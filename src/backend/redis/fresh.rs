//! The `fresh` path: a new connection for every publish, as Celery does with `broker_pool_limit = 0`.
//!
//! With the kombu handshake (the default) a publish sends what kombu sends on a new connection, each as its
//! own stage: PING (handshake), a MULTI of LLEN over the four priority lists (declare: kombu's `_size`), a
//! MULTI of the two binding SADDs (bind: kombu 5.7's `_queue_bind`), then the LPUSH (send), then the close.

use super::Endpoint;
use super::plain::Lpush;
use crate::error::{ErrorKind, PublishError};
use crate::message::TaskMessage;
use crate::stage::{Stage, StageClock};
use redis::Cmd;
use std::sync::Arc;

/// Commands sent as one round trip, encoded once, and how many replies they get.
struct Packed {
    bytes: Vec<u8>,
    replies: usize,
}

impl Packed {
    /// `commands`, wrapped in MULTI/EXEC if `transaction`.
    fn new(commands: &[Cmd], transaction: bool) -> Packed {
        let mut bytes = Vec::new();
        if transaction {
            redis::cmd("MULTI").write_packed_command(&mut bytes);
        }
        for cmd in commands {
            cmd.write_packed_command(&mut bytes);
        }
        if transaction {
            redis::cmd("EXEC").write_packed_command(&mut bytes);
        }
        Packed {
            bytes,
            replies: commands.len() + if transaction { 2 } else { 0 },
        }
    }
}

/// One publisher of the `fresh` path.
pub struct FreshPublisher {
    endpoint: Arc<Endpoint>,
    kombu_handshake: bool,
    ping: Packed,
    declare: Packed,
    bind: Packed,
    lpush: Lpush,
}

impl FreshPublisher {
    pub fn new(endpoint: Arc<Endpoint>, kombu_handshake: bool) -> Self {
        let llen: Vec<Cmd> = endpoint
            .lists
            .iter()
            .map(|list| redis::cmd("LLEN").arg(list).clone())
            .collect();
        let sadd: Vec<Cmd> = endpoint
            .binding_keys
            .iter()
            .map(|key| {
                redis::cmd("SADD")
                    .arg(key)
                    .arg(&endpoint.binding_member)
                    .clone()
            })
            .collect();
        FreshPublisher {
            kombu_handshake,
            ping: Packed::new(&[redis::cmd("PING")], false),
            declare: Packed::new(&llen, true),
            bind: Packed::new(&sadd, true),
            lpush: Lpush::new(&endpoint.list),
            endpoint,
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
        let mut conn = ep.connect_plain(clock).await?;
        if self.kombu_handshake {
            for (stage, packed, what) in [
                (Stage::Handshake, &self.ping, "PING failed on"),
                (Stage::Declare, &self.declare, "MULTI LLEN failed on"),
                (Stage::Bind, &self.bind, "MULTI SADD failed on"),
            ] {
                conn.queue_packed(&packed.bytes);
                clock
                    .time(stage, conn.round_trip(packed.replies))
                    .await
                    .map_err(|e| ep.error(ErrorKind::Server, what, &e))?;
            }
        }
        conn.queue_lpush(&mut self.lpush, message.envelope());
        clock
            .time(Stage::Send, conn.round_trip(1))
            .await
            .map_err(|e| ep.error(ErrorKind::Send, "LPUSH failed on", &e))?;
        clock.time_sync(Stage::Close, || drop(conn));
        Ok(())
    }
}
