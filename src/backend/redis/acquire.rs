//! The `acquire` path: a connection checked out of a bb8 pool for every publish and returned after it, as
//! Celery's `producer_or_acquire` does on every `delay()`.
//!
//! The pool's manager does what bb8-redis's does (connect; `PING` on every checkout, bb8's default
//! `test_on_check_out`), but pools plain connections, as kombu's pool holds redis-py connections, and
//! knows a connection whose publish was cancelled part-way is broken. The last connect error is kept so a
//! pool that cannot connect says why rather than "timed out".

use super::Endpoint;
use super::plain::{Lpush, PlainConnection};
use crate::backend::backoff::Backoff;
use crate::error::{ErrorKind, PublishError};
use crate::message::TaskMessage;
use crate::stage::{Stage, StageClock};
use redis::{Cmd, RedisError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Opens and checks the pool's connections.
struct Manager {
    endpoint: Arc<Endpoint>,
    ping: Cmd,
    /// Spaces the pool's connect attempts while the server is down (or drops every connection).
    backoff: Arc<Backoff>,
}

impl bb8::ManageConnection for Manager {
    type Connection = PlainConnection;
    type Error = RedisError;

    async fn connect(&self) -> Result<PlainConnection, RedisError> {
        if !self.backoff.wait().await {
            return Err(RedisError::from((
                redis::ErrorKind::Io,
                "the run was interrupted while waiting to reconnect",
            )));
        }
        // A connect alone does not reset the backoff (a server may accept and drop every connection): a
        // successful publish does.
        PlainConnection::connect(
            &self.endpoint.info,
            self.endpoint.tls.as_ref(),
            &mut crate::stage::StageClock::new(false),
        )
        .await
        .inspect_err(|_| {
            self.backoff.failed();
        })
    }

    async fn is_valid(&self, conn: &mut PlainConnection) -> Result<(), RedisError> {
        conn.queue(&self.ping);
        conn.round_trip(1).await.inspect_err(|_| {
            self.backoff.failed();
        })
    }

    fn has_broken(&self, conn: &mut PlainConnection) -> bool {
        conn.is_broken()
    }
}

/// Keeps the pool's latest connect or check error (the pool only reports "timed out" to a waiting get).
#[derive(Clone, Default)]
struct LastError(Arc<Mutex<Option<PublishError>>>);

impl LastError {
    fn take(&self) -> Option<PublishError> {
        self.0.lock().ok()?.take()
    }
}

/// A [`bb8::ErrorSink`] that files errors under [`LastError`].
#[derive(Clone)]
struct ErrorKeeper {
    endpoint: Arc<Endpoint>,
    last: LastError,
}

impl std::fmt::Debug for ErrorKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ErrorKeeper")
    }
}

impl bb8::ErrorSink<RedisError> for ErrorKeeper {
    fn sink(&self, e: RedisError) {
        let error = self
            .endpoint
            .error(ErrorKind::Unreachable, "the pool cannot connect to", &e);
        if let Ok(mut last) = self.last.0.lock() {
            *last = Some(error);
        }
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<RedisError>> {
        Box::new(self.clone())
    }
}

/// The case's pool, shared by its publishers.
#[derive(Clone)]
pub struct Pool {
    pool: bb8::Pool<Manager>,
    backoff: Arc<Backoff>,
    last_error: LastError,
    timeout: Duration,
}

impl Pool {
    /// A pool of up to `size` connections; connections open on first use.
    pub fn new(endpoint: Arc<Endpoint>, size: usize, publish_timeout: Duration) -> Pool {
        let last_error = LastError::default();
        // Give up a little before the engine's publish_timeout, so the pool's reason is what gets counted.
        let timeout = publish_timeout.mul_f64(0.9).max(Duration::from_millis(1));
        let backoff = Arc::new(endpoint.backoff());
        let manager = Manager {
            backoff: backoff.clone(),
            endpoint: endpoint.clone(),
            ping: redis::cmd("PING"),
        };
        let pool = bb8::Pool::builder()
            .max_size(size.min(u32::MAX as usize) as u32)
            .connection_timeout(timeout)
            .error_sink(Box::new(ErrorKeeper {
                endpoint,
                last: last_error.clone(),
            }))
            .build_unchecked(manager);
        Pool {
            pool,
            backoff,
            last_error,
            timeout,
        }
    }
}

/// One publisher of the `acquire` path.
pub struct AcquirePublisher {
    endpoint: Arc<Endpoint>,
    pool: Pool,
    lpush: Lpush,
}

impl AcquirePublisher {
    pub fn new(endpoint: Arc<Endpoint>, pool: Pool) -> Self {
        AcquirePublisher {
            lpush: Lpush::new(&endpoint.list),
            endpoint,
            pool,
        }
    }

    pub async fn publish(
        &mut self,
        batch: &[TaskMessage],
        clock: &mut StageClock,
    ) -> Result<(), PublishError> {
        for message in batch {
            let mut conn = match clock.time(Stage::Acquire, self.pool.pool.get()).await {
                Ok(conn) => conn,
                Err(bb8::RunError::User(e)) => {
                    return Err(self.endpoint.error(
                        ErrorKind::Pool,
                        "the pool cannot connect to",
                        &e,
                    ));
                }
                Err(bb8::RunError::TimedOut) => {
                    return Err(self.pool.last_error.take().unwrap_or_else(|| {
                        PublishError::new(
                            ErrorKind::Pool,
                            format!(
                                "no pooled connection to redis at {} within {}",
                                self.endpoint.shown,
                                humantime::format_duration(self.pool.timeout)
                            ),
                        )
                    }));
                }
            };
            conn.queue_lpush(&mut self.lpush, message.envelope());
            let sent = clock.time(Stage::Send, conn.round_trip(1)).await;
            // bb8 drops a connection that is out of step (has_broken); one the server closed goes back,
            // and the next checkout's PING finds it and bb8 replaces it.
            clock.time_sync(Stage::Release, || drop(conn));
            sent.map_err(|e| self.endpoint.error(ErrorKind::Send, "LPUSH failed on", &e))?;
            self.pool.backoff.succeeded();
        }
        Ok(())
    }
}
