//! The `pooled` path: every publisher keeps a connection for the whole case, so a publish is one LPUSH
//! round trip (or, with `batch = N`, N LPUSHes in one non-transactional pipeline round trip).
//!
//! By default each publisher holds its own plain connection: that is what a pooled producer per thread or
//! process is (and what redis-benchmark's clients are), and nothing but the server sits between a publisher
//! and its reply. With `multiplexed = true` all publishers share one redis-rs multiplexed connection, which
//! pipelines their concurrent requests onto one socket through a driver task. A publisher whose connection
//! breaks, or whose publish was cancelled mid-flight, reconnects on its next publish.

use super::plain::{Lpush, PlainConnection};
use super::{Endpoint, first_error, is_broken};
use crate::backend::backoff::Backoff;
use crate::error::{ErrorKind, PublishError};
use crate::message::TaskMessage;
use crate::stage::{Stage, StageClock};
use redis::aio::MultiplexedConnection;
use redis::{Cmd, Pipeline, RedisError};
use std::sync::Arc;

/// The one connection all publishers of a `multiplexed = true` case use, replaced when it breaks.
pub struct SharedConnection {
    /// (generation, connection); the lock is taken only to connect or reconnect, never per publish.
    current: tokio::sync::Mutex<(u64, Option<MultiplexedConnection>)>,
    /// Spaces the reconnect attempts, which the lock makes one at a time.
    backoff: Backoff,
}

impl SharedConnection {
    pub fn new(backoff: Backoff) -> Self {
        SharedConnection {
            current: tokio::sync::Mutex::new((0, None)),
            backoff,
        }
    }

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
            // A server that accepts and then drops every connection gets spaced reconnects too.
            self.backoff.failed();
        }
        if current.1.is_none() {
            if !self.backoff.wait().await {
                return Err(endpoint.not_reconnected());
            }
            let conn = endpoint.connect().await.inspect_err(|_| {
                self.backoff.failed();
            })?;
            current.0 += 1;
            current.1 = Some(conn);
        }
        Ok((current.0, current.1.clone().expect("set above")))
    }
}

/// What a pooled publisher sends through.
enum Link {
    Plain(PlainConnection),
    /// A clone of the shared connection, of this generation.
    Shared(MultiplexedConnection, u64),
}

/// One publisher of the `pooled` path.
pub struct PooledPublisher {
    endpoint: Arc<Endpoint>,
    shared: Option<Arc<SharedConnection>>,
    link: Option<Link>,
    /// The shared connection's generation that broke in this publisher's hands, to be replaced.
    broken: Option<u64>,
    batch: usize,
    plain_lpush: Lpush,
    /// For the shared connection.
    lpush: Cmd,
    /// Only for the shared connection with `batch > 1`.
    pipeline: Pipeline,
    /// Spaces this publisher's reconnect attempts to its own connection.
    backoff: Backoff,
}

impl PooledPublisher {
    pub fn new(
        endpoint: Arc<Endpoint>,
        shared: Option<Arc<SharedConnection>>,
        batch: usize,
    ) -> Self {
        PooledPublisher {
            plain_lpush: Lpush::new(&endpoint.list),
            backoff: endpoint.backoff(),
            endpoint,
            shared,
            link: None,
            broken: None,
            batch: batch.max(1),
            lpush: Cmd::new(),
            pipeline: Pipeline::with_capacity(batch),
        }
    }

    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// A connection: the shared one (its `connect` stage includes redis-rs's TLS handshake), or the
    /// publisher's own plain one (TCP, TLS and AUTH timed apart).
    async fn connect(&mut self, clock: &mut StageClock) -> Result<Link, PublishError> {
        match &self.shared {
            Some(shared) => {
                let (generation, conn) = clock
                    .time(
                        Stage::Connect,
                        shared.get(&self.endpoint, self.broken.take()),
                    )
                    .await?;
                Ok(Link::Shared(conn, generation))
            }
            None => {
                if !self.backoff.wait().await {
                    return Err(self.endpoint.not_reconnected());
                }
                Ok(Link::Plain(
                    self.endpoint.connect_plain(clock).await.inspect_err(|_| {
                        self.backoff.failed();
                    })?,
                ))
            }
        }
    }

    pub async fn publish(
        &mut self,
        batch: &[TaskMessage],
        clock: &mut StageClock,
    ) -> Result<(), PublishError> {
        // A plain connection whose last publish was cancelled part-way (publish_timeout) is out of step.
        if let Some(Link::Plain(conn)) = &self.link
            && conn.is_broken()
        {
            self.link = None;
        }
        if self.link.is_none() {
            self.link = Some(self.connect(clock).await?);
        }
        let ep = &*self.endpoint;
        let sent: Result<(), RedisError> = match self.link.as_mut().expect("connected above") {
            Link::Plain(conn) => {
                for message in batch {
                    conn.queue_lpush(&mut self.plain_lpush, message.envelope());
                }
                clock.time(Stage::Send, conn.round_trip(batch.len())).await
            }
            Link::Shared(conn, _) if batch.len() == 1 => {
                self.lpush.clear();
                self.lpush
                    .arg("LPUSH")
                    .arg(&ep.list)
                    .arg(batch[0].envelope());
                clock
                    .time(Stage::Send, conn.send_packed_command(&self.lpush))
                    .await
                    .and_then(|v| v.extract_error())
                    .map(drop)
            }
            Link::Shared(conn, _) => {
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
            }
        };
        match sent {
            Ok(()) => {
                self.backoff.succeeded();
                if let Some(shared) = &self.shared {
                    shared.backoff.succeeded();
                }
                Ok(())
            }
            Err(e) => {
                if is_broken(&e) {
                    match self.link.take() {
                        // The shared connection backs off once per broken generation, in `get`.
                        Some(Link::Shared(_, generation)) => self.broken = Some(generation),
                        // A server that accepts and then drops every connection gets spaced reconnects too.
                        Some(Link::Plain(_)) => {
                            self.backoff.failed();
                        }
                        None => {}
                    }
                }
                Err(ep.error(ErrorKind::Send, "LPUSH failed on", &e))
            }
        }
    }

    pub fn close(&mut self) {
        self.link = None;
    }
}
