//! The `pooled` path: every publisher keeps a connection for the whole case, so a publish is one LPUSH
//! round trip (or, with `batch = N`, N LPUSHes in one non-transactional pipeline round trip).
//!
//! By default each publisher holds its own connection: that is what a pooled producer per thread or process
//! is, and it keeps publishers from queueing behind each other on one socket. With `multiplexed = true` all
//! publishers share one multiplexed connection (redis-rs pipelines their requests onto it). A publisher whose
//! connection breaks, or whose publish was cancelled mid-flight, reconnects on its next publish.

use super::{Endpoint, first_error, is_broken};
use crate::message::TaskMessage;
use crate::record::PublishError;
use crate::stage::{Stage, StageClock};
use redis::aio::MultiplexedConnection;
use redis::{Cmd, Pipeline};
use std::sync::Arc;

/// The one connection all publishers of a `multiplexed = true` case use, replaced when it breaks.
#[derive(Default)]
pub struct SharedConnection {
    /// (generation, connection); the lock is taken only to connect or reconnect, never per publish.
    current: tokio::sync::Mutex<(u64, Option<MultiplexedConnection>)>,
}

impl SharedConnection {
    /// The shared connection, connecting it if there is none, or replacing it if it is still generation
    /// `broken` (a publisher found it broken).
    async fn get(
        &self,
        endpoint: &Endpoint,
        broken: Option<u64>,
    ) -> Result<(u64, MultiplexedConnection), PublishError> {
        let mut current = self.current.lock().await;
        if broken.is_some_and(|g| g == current.0) {
            current.1 = None;
        }
        if current.1.is_none() {
            let conn = endpoint.connect().await?;
            current.0 += 1;
            current.1 = Some(conn);
        }
        Ok((current.0, current.1.clone().expect("set above")))
    }
}

/// One publisher of the `pooled` path.
pub struct PooledPublisher {
    endpoint: Arc<Endpoint>,
    shared: Option<Arc<SharedConnection>>,
    conn: Option<MultiplexedConnection>,
    /// Generation of the shared connection `conn` is a clone of.
    generation: u64,
    /// The connection broke: replace it (not just re-clone it) before the next publish.
    broken: bool,
    /// A publish is on the wire; still set at the next call means it was cancelled part-way.
    in_flight: bool,
    batch: usize,
    lpush: Cmd,
    pipeline: Pipeline,
}

impl PooledPublisher {
    pub fn new(
        endpoint: Arc<Endpoint>,
        shared: Option<Arc<SharedConnection>>,
        batch: usize,
    ) -> Self {
        PooledPublisher {
            endpoint,
            shared,
            conn: None,
            generation: 0,
            broken: false,
            in_flight: false,
            batch: batch.max(1),
            lpush: Cmd::new(),
            pipeline: Pipeline::with_capacity(batch),
        }
    }

    pub fn batch_size(&self) -> usize {
        self.batch
    }

    async fn connect(&mut self) -> Result<MultiplexedConnection, PublishError> {
        let broken = std::mem::take(&mut self.broken).then_some(self.generation);
        match &self.shared {
            Some(shared) => {
                let (generation, conn) = shared.get(&self.endpoint, broken).await?;
                self.generation = generation;
                Ok(conn)
            }
            None => self.endpoint.connect().await,
        }
    }

    pub async fn publish(
        &mut self,
        batch: &[TaskMessage],
        clock: &mut StageClock,
    ) -> Result<(), PublishError> {
        if std::mem::take(&mut self.in_flight) {
            // Cancelled mid-publish (publish_timeout): a connection that did not answer in time is suspect.
            // A shared one is only re-cloned; its other users decide for themselves.
            self.conn = None;
            self.broken = self.shared.is_none();
        }
        if self.conn.is_none() {
            let conn = clock.time(Stage::Connect, self.connect()).await?;
            self.conn = Some(conn);
        }
        let conn = self.conn.as_mut().expect("connected above");
        let ep = &*self.endpoint;
        self.in_flight = true;
        let sent = if let [message] = batch {
            self.lpush.clear();
            self.lpush
                .arg("LPUSH")
                .arg(&ep.list)
                .arg(message.envelope());
            clock
                .time(Stage::Send, conn.send_packed_command(&self.lpush))
                .await
                .and_then(|v| v.extract_error())
                .map(drop)
        } else {
            self.pipeline.clear();
            for message in batch {
                self.pipeline
                    .cmd("LPUSH")
                    .arg(&ep.list)
                    .arg(message.envelope());
            }
            clock
                .time(
                    Stage::Send,
                    conn.send_packed_commands(&self.pipeline, 0, batch.len()),
                )
                .await
                .and_then(first_error)
        };
        self.in_flight = false;
        sent.map_err(|e| {
            if is_broken(&e) {
                self.conn = None;
                self.broken = true;
            }
            ep.error("send", "LPUSH failed on", &e)
        })
    }

    pub fn close(&mut self) {
        self.conn = None;
    }
}
