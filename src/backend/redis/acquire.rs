//! The `acquire` path: a connection checked out of a bb8 pool for every publish and returned after it, as
//! Celery's `producer_or_acquire` does on every `delay()`.
//!
//! The pool's manager is bb8-redis's (connect; `PING` on every checkout, bb8's default `test_on_check_out`)
//! with taskbench's connection settings instead of redis-rs's 500 ms reply timeout, and with the last
//! connect error kept so a pool that cannot connect says why rather than "timed out".

use super::Endpoint;
use crate::message::TaskMessage;
use crate::record::PublishError;
use crate::stage::{Stage, StageClock};
use redis::aio::MultiplexedConnection;
use redis::{Cmd, RedisError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Opens and checks the pool's connections.
struct Manager {
    endpoint: Arc<Endpoint>,
    ping: Cmd,
}

impl bb8::ManageConnection for Manager {
    type Connection = MultiplexedConnection;
    type Error = RedisError;

    async fn connect(&self) -> Result<MultiplexedConnection, RedisError> {
        self.endpoint
            .client
            .get_multiplexed_async_connection_with_config(&self.endpoint.config)
            .await
    }

    async fn is_valid(&self, conn: &mut MultiplexedConnection) -> Result<(), RedisError> {
        match conn
            .send_packed_command(&self.ping)
            .await?
            .extract_error()?
        {
            redis::Value::SimpleString(s) if s == "PONG" => Ok(()),
            other => Err(RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "PING on checkout",
                format!("{other:?}"),
            ))),
        }
    }

    fn has_broken(&self, _: &mut MultiplexedConnection) -> bool {
        false
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
            .error("connect", "the pool cannot connect to", &e);
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
    last_error: LastError,
    timeout: Duration,
}

impl Pool {
    /// A pool of up to `size` connections; connections open on first use.
    pub fn new(endpoint: Arc<Endpoint>, size: usize, publish_timeout: Duration) -> Pool {
        let last_error = LastError::default();
        // Give up a little before the engine's publish_timeout, so the pool's reason is what gets counted.
        let timeout = publish_timeout.mul_f64(0.9).max(Duration::from_millis(1));
        let manager = Manager {
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
            last_error,
            timeout,
        }
    }
}

/// One publisher of the `acquire` path.
pub struct AcquirePublisher {
    endpoint: Arc<Endpoint>,
    pool: Pool,
    lpush: Cmd,
}

impl AcquirePublisher {
    pub fn new(endpoint: Arc<Endpoint>, pool: Pool) -> Self {
        AcquirePublisher {
            endpoint,
            pool,
            lpush: Cmd::new(),
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
                    return Err(self
                        .endpoint
                        .error("acquire", "the pool cannot connect to", &e));
                }
                Err(bb8::RunError::TimedOut) => {
                    return Err(self.pool.last_error.take().unwrap_or_else(|| {
                        PublishError::new(
                            "acquire",
                            format!(
                                "no pooled connection to redis at {} within {}",
                                self.endpoint.shown,
                                humantime::format_duration(self.pool.timeout)
                            ),
                        )
                    }));
                }
            };
            self.lpush.clear();
            self.lpush
                .arg("LPUSH")
                .arg(&self.endpoint.list)
                .arg(message.envelope());
            let sent = clock
                .time(Stage::Send, conn.send_packed_command(&self.lpush))
                .await
                .and_then(|v| v.extract_error());
            // A broken connection goes back too: the next checkout's PING finds it and bb8 replaces it.
            clock.time_sync(Stage::Release, || drop(conn));
            sent.map_err(|e| self.endpoint.error("send", "LPUSH failed on", &e))?;
        }
        Ok(())
    }
}
