//! The `redis` backend: Celery tasks as kombu's Redis transport stores them, one `LPUSH` of the JSON envelope
//! per task, through the `fresh`, `acquire` and `pooled` paths (see docs/redis.md).
//!
//! [`RedisTarget`] measures the case's lists before and after (LLEN) and cleans up; each path has its own
//! publisher module. Publishers use [`plain::PlainConnection`]s (one request, one reply, on the publisher's
//! own task, as redis-py does), except `multiplexed = true`, which shares a redis-rs multiplexed connection;
//! the target's own checks use one too. No connection sends `CLIENT SETINFO` or `HELLO`. `connect.rs` turns the
//! URL into a client, with the TLS of a `rediss://` URL.

mod acquire;
pub mod blips;
mod connect;
mod fresh;
pub mod kombu;
mod plain;
mod pooled;

use super::backoff::{self, Backoff};
use super::url::{broker_url, redact};
use crate::backend::tls::{self, TokioTls};
use crate::catalog::PathKind;
use crate::engine::Stop;
use crate::engine::{BrokerProbe, Publisher, Target};
use crate::error::{ErrorKind, PublishError};
use crate::facts::CaseFacts;
use crate::message::TaskMessage;
use crate::resources::parse_redis_info;
use crate::scenario::{Case, RedisOptions};
use crate::stage::StageClock;
use connect::{Connecting, connection, host_of};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, RedisError, Value};
use std::sync::Arc;
use std::time::Duration;

/// The URL used when neither the case nor `TASKBENCH_REDIS_URL` gives one.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379/0";

/// What every publisher of a case shares: how to connect, and the keys kombu uses for the case's queue.
pub struct Endpoint {
    /// Where publishers connect: the server, or the wire proxy in front of it (`rtt`, faults).
    info: redis::ConnectionInfo,
    /// The TLS side of a `rediss://` URL's plain connections (redis-rs does its own for the others).
    tls: Option<TokioTls>,
    /// `tls_verify = false`: said in the notes.
    tls_note: Option<String>,
    client: Client,
    /// taskbench's own connection (lengths, cleanup) goes to the server itself.
    admin: Client,
    /// For publishers: connecting is bounded by `publish_timeout`, replies by the engine's timeout.
    config: AsyncConnectionConfig,
    /// The URL with its password hidden, for messages.
    shown: String,
    /// The list this case's priority goes to.
    list: String,
    /// All four lists of the queue, highest priority first.
    lists: [String; 4],
    binding_keys: [String; 2],
    binding_member: String,
    /// Set when the run is interrupted: a reconnect backoff stops waiting.
    stop: Stop,
}

impl Endpoint {
    fn new(
        case: &Case,
        o: &RedisOptions,
        stop: Stop,
        via: Option<&str>,
    ) -> Result<Endpoint, PublishError> {
        let url = broker_url(o.url.as_deref(), "TASKBENCH_REDIS_URL", DEFAULT_URL);
        let shown = redact(&url);
        // A TLS handshake gets half the publish's time. Through the wire proxy, publishers connect to the
        // proxy and their TLS still checks the server's own name.
        let handshake = case.publish_timeout / 2;
        let direct = connection(&url, &shown, &o.tls, handshake, None)?;
        let admin = direct.client.clone();
        let Connecting {
            info,
            client,
            tls,
            tls_note,
        } = match via {
            Some(via) => {
                let name = host_of(&direct.info);
                connection(via, &shown, &o.tls, handshake, name.as_deref())?
            }
            None => direct,
        };
        let spec = case.task.spec();
        Ok(Endpoint {
            info,
            tls,
            tls_note,
            client,
            admin,
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(case.publish_timeout))
                .set_response_timeout(None),
            shown,
            list: kombu::list_for(&spec.queue, spec.priority),
            lists: kombu::lists(&spec.queue),
            binding_keys: kombu::binding_keys(&spec.queue),
            binding_member: kombu::binding_member(&spec.queue),
            stop,
        })
    }

    /// A reconnect backoff for one publisher, or for everyone sharing a connection or pool.
    fn backoff(&self) -> Backoff {
        Backoff::new(backoff::RECONNECT, self.stop.clone())
    }

    /// The error of a publish that needed a connection, when the run was interrupted during the backoff.
    fn not_reconnected(&self) -> PublishError {
        PublishError::new(
            ErrorKind::Unreachable,
            format!(
                "cannot connect to redis at {}: the run was interrupted while waiting to reconnect",
                self.shown
            ),
        )
    }

    /// Opens a plain connection for a publisher, timing its stages on `clock`.
    async fn connect_plain(
        &self,
        clock: &mut StageClock,
    ) -> Result<plain::PlainConnection, PublishError> {
        plain::PlainConnection::connect(&self.info, self.tls.as_ref(), clock)
            .await
            .map_err(|e| self.connect_error(&e))
    }

    /// Opens a multiplexed connection for publishers to share.
    async fn connect(&self) -> Result<MultiplexedConnection, PublishError> {
        self.client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
            .map_err(|e| self.connect_error(&e))
    }

    /// Whether the server is on this machine (a Unix socket or a loopback address).
    fn is_local(&self) -> bool {
        match self.info.addr() {
            redis::ConnectionAddr::Unix(_) => true,
            redis::ConnectionAddr::Tcp(host, _) | redis::ConnectionAddr::TcpTls { host, .. } => {
                host == "localhost"
                    || host
                        .trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            _ => false,
        }
    }

    /// Opens a connection for setup and checks, whose replies time out after `timeout`.
    async fn connect_admin(
        &self,
        timeout: Duration,
    ) -> Result<MultiplexedConnection, PublishError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        self.admin
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.connect_error(&e))
    }

    /// The error of `prepare`'s PING: a plain connection closed before any answer is `tls_mismatch` when
    /// the port answers a TLS handshake, else what it looks like.
    async fn probe_error(&self, e: &RedisError) -> PublishError {
        if let (Some(found), ConnectionAddr::Tcp(host, port)) =
            (tls::find(e, "redis"), self.info.addr())
            && found.unconfirmed
            && tls::speaks_tls(host, *port).await
        {
            return found.to_error(&self.shown);
        }
        self.connect_error(e)
    }

    /// A [`PublishError`] for a failed connect: `auth` if the server refused the password, else `connect`
    /// (refused, no such socket, timed out, cut during AUTH/SELECT).
    fn connect_error(&self, e: &RedisError) -> PublishError {
        self.error(ErrorKind::Unreachable, "cannot connect to", e)
    }

    /// A [`PublishError`] for `e`, of the kind the error says it is, else `default`; `doing` says what
    /// failed ("cannot connect to", "LPUSH failed on").
    fn error(&self, default: ErrorKind, doing: &str, e: &RedisError) -> PublishError {
        // (A plain connection closed before any answer is a TLS port only if `prepare`'s probe says so.)
        if let Some(tls) = tls::find(e, "redis").filter(|t| !t.unconfirmed) {
            return tls.to_error(&self.shown);
        }
        let kind = match (default, error_kind(e)) {
            // A connect that failed for any reason but the password is a connect error.
            (ErrorKind::Unreachable, Some(ErrorKind::Auth)) => ErrorKind::Auth,
            (ErrorKind::Unreachable, _) => ErrorKind::Unreachable,
            // Counting a queue timed out: a `check` error, whose message names what was counted (a
            // `timeout` means a publish).
            (ErrorKind::Check, Some(ErrorKind::Timeout)) => ErrorKind::Check,
            (_, kind) => kind.unwrap_or(default),
        };
        let hint = match kind {
            ErrorKind::Auth => "; check the password in the URL (redis://:PASSWORD@host:port/db)",
            ErrorKind::Oom => "; the server is at maxmemory: free memory or raise maxmemory",
            _ => "",
        };
        PublishError::new(kind, format!("{doing} redis at {}: {e}{hint}", self.shown))
    }
}

/// The kind of a redis error, when it says which: auth, timeout, oom, connection (dropped), server (an
/// error reply). `None` for errors only the caller can name (a refused connect).
fn error_kind(e: &RedisError) -> Option<ErrorKind> {
    // A pipeline's or transaction's error replies come as a list: the first one names the kind.
    let replies = e.clone().into_server_errors();
    let code = e.code().or_else(|| {
        replies
            .as_deref()
            .and_then(|r| r.first())
            .map(|(_, s)| s.code())
    });
    if e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(code, Some("NOAUTH" | "WRONGPASS"))
    {
        Some(ErrorKind::Auth)
    } else if e.is_timeout() {
        Some(ErrorKind::Timeout)
    } else if code == Some("OOM") {
        Some(ErrorKind::Oom)
    } else if e.is_connection_refusal() {
        None
    } else if e.is_connection_dropped() || e.is_io_error() || e.is_unrecoverable_error() {
        Some(ErrorKind::ConnectionLost)
    } else if code.is_some() {
        Some(ErrorKind::Server)
    } else {
        None
    }
}

/// Whether the connection that returned `e` must be replaced (rather than reused after an error reply).
fn is_broken(e: &RedisError) -> bool {
    e.is_connection_dropped() || e.is_io_error() || e.is_unrecoverable_error() || e.is_timeout()
}

/// The first error reply among `values` (the replies of a pipeline), as an error.
fn first_error(values: Vec<Value>) -> Result<(), RedisError> {
    for v in values {
        v.extract_error()?;
    }
    Ok(())
}

/// A case on Redis.
pub struct RedisTarget {
    path: PathKind,
    batch: usize,
    multiplexed: bool,
    kombu_handshake: bool,
    pool_size: usize,
    keep: bool,
    publish_timeout: Duration,
    endpoint: Arc<Endpoint>,
    admin: Option<MultiplexedConnection>,
    /// LLEN of each list at `prepare`.
    before: [u64; 4],
    /// Whether each binding set existed at `prepare` (if so, `finish` leaves it).
    bindings_existed: [bool; 2],
    /// `prepare` measured the lists: there is something to clean up.
    prepared: bool,
    pool: Option<acquire::Pool>,
    shared: Option<Arc<pooled::SharedConnection>>,
}

impl RedisTarget {
    /// A case on Redis; `stop` is the run's interrupt flag (it ends reconnect backoffs early).
    pub fn new(case: &Case, o: &RedisOptions, stop: Stop) -> Result<Self, PublishError> {
        Self::via(case, o, stop, None)
    }

    /// A case on Redis whose publishers connect to `via` (the wire proxy's URL) when given; taskbench's own
    /// connection (lengths, cleanup) still goes to the server directly.
    pub fn via(
        case: &Case,
        o: &RedisOptions,
        stop: Stop,
        via: Option<&str>,
    ) -> Result<Self, PublishError> {
        Ok(RedisTarget {
            path: case.path,
            batch: if case.path == PathKind::Pooled {
                o.batch
            } else {
                1
            },
            multiplexed: o.multiplexed,
            kombu_handshake: o.kombu_handshake,
            pool_size: o.pool_size,
            keep: o.keep,
            publish_timeout: case.publish_timeout,
            endpoint: Arc::new(Endpoint::new(case, o, stop, via)?),
            admin: None,
            before: [0; 4],
            bindings_existed: [false; 2],
            prepared: false,
            pool: None,
            shared: None,
        })
    }

    /// LLEN of the queue's four lists, in one round trip; reconnects once if the connection broke (a
    /// dropped connection mid-case must not cost the delivery check).
    async fn lengths(&mut self) -> Result<[u64; 4], PublishError> {
        let mut pipe = redis::pipe();
        for list in &self.endpoint.lists {
            pipe.cmd("LLEN").arg(list);
        }
        let mut retried = false;
        loop {
            if self.admin.is_none() {
                self.admin = Some(self.endpoint.connect_admin(self.publish_timeout).await?);
            }
            let admin = self.admin.as_mut().expect("connected above");
            match pipe.query_async(admin).await {
                Ok(lengths) => return Ok(lengths),
                Err(e) if is_broken(&e) && !retried => {
                    self.admin = None;
                    retried = true;
                }
                Err(e) => {
                    if is_broken(&e) {
                        self.admin = None;
                    }
                    return Err(self.endpoint.error(
                        ErrorKind::Check,
                        "counting the queue (LLEN) failed on",
                        &e,
                    ));
                }
            }
        }
    }
}

impl Target for RedisTarget {
    type Publisher = RedisPublisher;

    fn broker_memory(&self) -> Result<Option<BrokerProbe>, String> {
        if !self.endpoint.is_local() {
            return Err(format!(
                "Redis at {} is not on this machine: its memory is not measured",
                self.endpoint.shown
            ));
        }
        let Some(admin) = self.admin.clone() else {
            return Err("Redis's memory is not measured: no connection to ask it on".into());
        };
        Ok(Some(Box::new(move || {
            let mut admin = admin.clone();
            Box::pin(async move {
                let info: String = redis::cmd("INFO")
                    .arg("memory")
                    .query_async(&mut admin)
                    .await
                    .map_err(|e| format!("Redis's INFO memory failed: {e}"))?;
                parse_redis_info(&info)
                    .ok_or_else(|| "Redis's INFO memory has no used_memory".into())
            })
        })))
    }

    async fn prepare(&mut self) -> Result<(), PublishError> {
        // One PING on a publisher's kind of connection first: a TLS mismatch or a refused certificate
        // then says so (redis-rs's own connection would only time out or see a broken pipe). Any other
        // failure is left to the checks below, as before.
        let ep = &self.endpoint;
        let probe = async {
            let mut untimed = StageClock::new(false);
            let mut conn =
                plain::PlainConnection::connect(&ep.info, ep.tls.as_ref(), &mut untimed).await?;
            conn.queue(&redis::cmd("PING"));
            conn.round_trip(1).await
        };
        if let Ok(Err(e)) = tokio::time::timeout(self.publish_timeout, probe).await {
            let e = ep.probe_error(&e).await;
            if matches!(
                e.kind,
                ErrorKind::TlsCertificate | ErrorKind::TlsHandshake | ErrorKind::TlsMismatch
            ) {
                return Err(e);
            }
        }
        self.before = self.lengths().await?;
        self.prepared = true;
        let admin = self.admin.as_mut().expect("lengths connected");
        let mut pipe = redis::pipe();
        for key in &self.endpoint.binding_keys {
            pipe.cmd("EXISTS").arg(key);
        }
        self.bindings_existed = pipe.query_async(admin).await.map_err(|e| {
            self.endpoint
                .error(ErrorKind::Check, "EXISTS failed on", &e)
        })?;
        match self.path {
            PathKind::Acquire => {
                self.pool = Some(acquire::Pool::new(
                    self.endpoint.clone(),
                    self.pool_size,
                    self.publish_timeout,
                ));
            }
            PathKind::Pooled if self.multiplexed => {
                self.shared = Some(Arc::new(pooled::SharedConnection::new(
                    self.endpoint.backoff(),
                )));
            }
            _ => {}
        }
        Ok(())
    }

    fn publisher(&self, _worker: usize) -> RedisPublisher {
        let endpoint = self.endpoint.clone();
        match self.path {
            PathKind::Acquire => RedisPublisher::Acquire(acquire::AcquirePublisher::new(
                endpoint,
                self.pool.clone().expect("prepare made the pool"),
            )),
            PathKind::Pooled => RedisPublisher::Pooled(pooled::PooledPublisher::new(
                endpoint,
                self.shared.clone(),
                self.batch,
            )),
            _ => RedisPublisher::Fresh(fresh::FreshPublisher::new(endpoint, self.kombu_handshake)),
        }
    }

    async fn delivered(&mut self, _expected: u64) -> Result<Option<u64>, PublishError> {
        let after = self.lengths().await?;
        let arrived = after
            .iter()
            .zip(self.before)
            .map(|(a, b)| a.saturating_sub(b))
            .sum();
        Ok(Some(arrived))
    }

    async fn finish(&mut self) {
        self.pool = None;
        self.shared = None;
        if self.keep || !self.prepared {
            return;
        }
        if self.admin.is_none() {
            match self.endpoint.connect_admin(self.publish_timeout).await {
                Ok(admin) => self.admin = Some(admin),
                Err(e) => {
                    tracing::warn!("cannot clean up: {}", e.message);
                    return;
                }
            }
        }
        let admin = self.admin.as_mut().expect("connected above");
        let endpoint = &self.endpoint;
        let mut pipe = redis::pipe();
        for (list, before) in endpoint.lists.iter().zip(self.before) {
            if before == 0 {
                pipe.cmd("DEL").arg(list).ignore();
            } else {
                // The list held messages before the case: remove only what was pushed since (LPUSH adds at
                // the head), and leave the rest to whoever owns them.
                pipe.cmd("LTRIM")
                    .arg(list)
                    .arg(-(before as i64))
                    .arg(-1)
                    .ignore();
            }
        }
        for (key, existed) in endpoint.binding_keys.iter().zip(self.bindings_existed) {
            if !existed {
                pipe.cmd("SREM")
                    .arg(key)
                    .arg(&endpoint.binding_member)
                    .ignore();
            }
        }
        if let Err(e) = pipe.query_async::<()>(admin).await {
            tracing::warn!("cleaning up {}: {e}", endpoint.shown);
        }
    }

    fn facts(&self) -> CaseFacts {
        self.broker_facts()
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = self.broker_notes();
        if self.endpoint.tls.is_some() {
            notes.push(if self.multiplexed {
                "TLS (rediss://): the shared multiplexed connection is redis-rs's, which does TCP and TLS in one call: its connect stage includes the TLS handshake".into()
            } else {
                "TLS (rediss://): the tls stage is the TLS handshake alone, after the TCP connect; the connect stage is the TCP connect and AUTH/SELECT".into()
            });
        }
        notes.push(match self.path {
            PathKind::Fresh if self.kombu_handshake => "fresh: every publish opens a connection, sends kombu's PING, MULTI LLEN x4 and binding MULTI SADD x2, LPUSHes and closes".to_string(),
            PathKind::Fresh => "fresh without the kombu handshake: connect, LPUSH, close".to_string(),
            PathKind::Acquire => format!(
                "acquire: a bb8 pool of {} connections; acquire includes the pool's PING on checkout",
                self.pool_size
            ),
            _ if self.multiplexed => "pooled: all publishers share one multiplexed connection".to_string(),
            _ => "pooled: every publisher holds its own connection".to_string(),
        });
        if self.batch > 1 {
            notes.push(format!(
                "batch = {}: that many LPUSHes per pipeline round trip; each publish's latency runs from its own start to the pipeline's reply, and a failed pipeline counts all its publishes as failed",
                self.batch
            ));
        }
        notes
    }
}

impl RedisTarget {
    /// What a reader must know about the server and lists, whoever publishes (taskbench or a Python
    /// client): where they are.
    pub fn broker_notes(&self) -> Vec<String> {
        let mut notes = vec![format!(
            "redis at {}, list {:?}",
            self.endpoint.shown, self.endpoint.list
        )];
        notes.extend(self.endpoint.tls_note.clone());
        notes
    }

    /// What the lists held before the case (left in place), whoever publishes.
    pub fn broker_facts(&self) -> CaseFacts {
        let held: u64 = self.before.iter().sum();
        CaseFacts {
            queue_held_before: (held > 0).then_some(held),
            ..CaseFacts::default()
        }
    }
}

/// One publisher on Redis, on the case's path.
// One per worker, made once and never moved on the hot path: its size does not matter, an indirection would.
#[allow(clippy::large_enum_variant)]
pub enum RedisPublisher {
    Fresh(fresh::FreshPublisher),
    Acquire(acquire::AcquirePublisher),
    Pooled(pooled::PooledPublisher),
}

impl Publisher for RedisPublisher {
    fn batch_size(&self) -> usize {
        match self {
            RedisPublisher::Pooled(p) => p.batch_size(),
            _ => 1,
        }
    }

    async fn publish(
        &mut self,
        batch: &[TaskMessage],
        clock: &mut StageClock,
    ) -> Result<(), PublishError> {
        match self {
            RedisPublisher::Fresh(p) => p.publish(batch, clock).await,
            RedisPublisher::Acquire(p) => p.publish(batch, clock).await,
            RedisPublisher::Pooled(p) => p.publish(batch, clock).await,
        }
    }

    async fn close(&mut self) {
        if let RedisPublisher::Pooled(p) = self {
            p.close();
        }
    }
}
