//! The `amqp` backend: Celery task messages to RabbitMQ with lapin, through the `fresh`, `acquire` and
//! `pooled` paths, with publisher confirms `off`, `each` or `batch`.
//!
//! [`AmqpTarget`] declares the case's queue exactly as Celery does, notes how many messages it already
//! holds, hands out publishers, and after the case counts at the broker what arrived (then purges the queue
//! unless `keep = true`). The three paths live in [`publisher`] ([`fresh`], [`acquire`] and [`pooled`],
//! with its confirm [`window`]), the message encoding in [`wire`], the error kinds in [`error`].
//! `docs/amqp.md` explains the choices (the pool, confirm batches).

mod acquire;
pub mod blips;
mod connect;
mod error;
mod fresh;
mod pooled;
mod publisher;
mod window;
pub(crate) mod wire;

pub use publisher::AmqpPublisher;

use connect::{Transport, connect};

use super::backoff::{self, Backoff};
use super::url::{broker_url, redact};
use crate::catalog::PathKind;
use crate::engine::Stop;
use crate::engine::Target;
use crate::error::{ErrorKind, PublishError};
use crate::facts::{CaseFacts, FlowControl};
use crate::scenario::{AmqpOptions, Case, Confirm, QueueType};
use crate::settle::{Settle, SettleRules};
use crate::stage::{Stage, StageClock};
use error::{Doing, classify};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ExchangeKind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use wire::WireTemplate;

/// The broker URL when neither the case nor `TASKBENCH_AMQP_URL` gives one.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// How `delivered` waits for the queue's count: messages published without confirms may still be on their
/// way into the queue.
const SETTLE: SettleRules = SettleRules {
    poll: Duration::from_millis(50),
    quiet: Duration::from_millis(1000),
    limit: Duration::from_secs(10),
};
/// How long closing a channel or connection after the case may take (a blocked broker never answers).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// The least time taskbench's own connection gets to connect.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The broker's `connection.blocked`/`unblocked` on a case's watched connections (`acquire` and `pooled`):
/// how often, and for how long publishing was blocked. Updated by each connection's event listener, read
/// for the case's notes.
#[derive(Default)]
pub struct FlowStats {
    blocked: AtomicU64,
    unblocked: AtomicU64,
    /// Time from each connection.blocked to its connection.unblocked (or to the connection's end), summed.
    blocked_ns: AtomicU64,
    longest_ns: AtomicU64,
    /// The broker's reason for the first block (e.g. "low on memory").
    reason: Mutex<Option<String>>,
}

impl FlowStats {
    fn block(&self, reason: &str) {
        self.blocked.fetch_add(1, Relaxed);
        let mut first = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(reason.to_string());
        }
    }

    /// A block that started at `since` ended (`unblocked`: by connection.unblocked, else by the connection
    /// going away).
    fn unblock(&self, since: Instant, unblocked: bool) {
        let ns = since.elapsed().as_nanos() as u64;
        if unblocked {
            self.unblocked.fetch_add(1, Relaxed);
        }
        self.blocked_ns.fetch_add(ns, Relaxed);
        self.longest_ns.fetch_max(ns, Relaxed);
    }

    /// What the case's watched connections saw, for its facts.
    fn facts(&self) -> FlowControl {
        FlowControl {
            blocked: self.blocked.load(Relaxed),
            unblocked: self.unblocked.load(Relaxed),
            reason: self
                .reason
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            blocked_ns: self.blocked_ns.load(Relaxed),
            longest_blocked_ns: self.longest_ns.load(Relaxed),
        }
    }
}

/// What every publisher of a case needs to know; built once, shared read-only.
pub struct Settings {
    /// Where publishers connect: the broker, or the wire proxy in front of it (`rtt`, faults).
    uri: AMQPUri,
    /// The host and port publishers connect to (the broker, or the wire proxy in front of it: `rtt`,
    /// faults), and the TLS client of an `amqps://` URL, which checks the broker's own name either way.
    transport: Arc<Transport>,
    /// Where taskbench's own connection (declare, count, purge) connects: always the broker itself.
    admin_transport: Arc<Transport>,
    /// The URL with its password hidden: the only form that is ever printed.
    url: String,
    queue: String,
    /// The queue as the routing key (and exchange and binding names) lapin wants.
    routing_key: ShortString,
    /// The queue's declare arguments: `x-queue-type` for a quorum queue, else none.
    queue_arguments: FieldTable,
    /// The default exchange "".
    exchange: ShortString,
    path: PathKind,
    confirm: Confirm,
    confirm_batch: usize,
    /// `confirm = "window"`: messages a channel may have unconfirmed.
    confirm_window: usize,
    /// `pooled`: messages one publish call pipelines (sent together, then awaited together).
    pipeline: usize,
    publish_options: BasicPublishOptions,
    wire: WireTemplate,
    /// Leave the queue's messages after the case (`keep = true`) instead of purging them.
    keep: bool,
    /// How long a publish waits for a blocked connection to unblock before it fails as `blocked`.
    blocked_wait: Duration,
    /// How long taskbench's own connection may take to connect (a host that never answers).
    admin_timeout: Duration,
    /// Set when the run is interrupted: a reconnect backoff stops waiting.
    stop: Stop,
    /// connection.blocked/unblocked seen by the case's connections.
    flow: Arc<FlowStats>,
}

impl Settings {
    fn new(
        case: &Case,
        o: &AmqpOptions,
        stop: Stop,
        via: Option<&str>,
    ) -> Result<Settings, PublishError> {
        let raw = broker_url(o.url.as_deref(), "TASKBENCH_AMQP_URL", DEFAULT_URL);
        let url = redact(&raw);
        let parse = |raw: &str| raw.parse::<AMQPUri>();
        let admin_uri = parse(&raw).map_err(|e| {
            PublishError::new(
                ErrorKind::Config,
                format!(
                    "{url} is not an AMQP URL: {e}; write it like {}",
                    redact(DEFAULT_URL)
                ),
            )
        })?;
        let uri: AMQPUri = parse(via.unwrap_or(&raw)).map_err(|e| {
            PublishError::new(
                ErrorKind::Config,
                format!(
                    "{url} is not an AMQP URL: {e}; write it like {}",
                    redact(DEFAULT_URL)
                ),
            )
        })?;
        // A TLS handshake gets half the publish's time, as a blocked connection does. Through the wire
        // proxy, the TCP connection goes to the proxy and TLS still checks the broker's own name.
        let name = &admin_uri.authority.host;
        let handshake = case.publish_timeout / 2;
        // The publishers' connections carry the case's name (what `kill-connections` closes); taskbench's own
        // connection, which counts and purges the queue, a name of its own.
        let transport = Arc::new(
            Transport::new(&uri, name, &o.tls, &url, handshake)?.named(case.connection_name()),
        );
        let admin_transport = Arc::new(
            Transport::new(&admin_uri, name, &o.tls, &url, handshake)?
                .named(format!("{} (counting)", case.connection_name())),
        );
        let queue = case.task.spec().queue.clone();
        let routing_key = ShortString::try_new(queue.clone()).map_err(|e| {
            PublishError::new(
                ErrorKind::Setup,
                format!("queue name {queue:?} is too long for AMQP: {e}"),
            )
        })?;
        let confirm = o.confirm;
        Ok(Settings {
            uri,
            transport,
            admin_transport,
            url,
            routing_key,
            queue_arguments: queue_arguments(o.queue_type),
            exchange: ShortString::default(),
            path: case.path,
            confirm,
            confirm_batch: o.confirm_batch.max(1),
            confirm_window: o.confirm_window.max(1),
            pipeline: o.batch.max(1),
            // With confirms on, an unroutable message comes back with its confirm and counts as `returned`;
            // without, the broker would drop it silently either way (and the delivered count shows it).
            publish_options: BasicPublishOptions {
                mandatory: confirm != Confirm::Off,
                immediate: false,
            },
            wire: WireTemplate::new(&case.task),
            queue,
            keep: o.keep,
            blocked_wait: case.publish_timeout / 2,
            admin_timeout: case.publish_timeout.max(ADMIN_TIMEOUT),
            stop,
            flow: Arc::default(),
        })
    }

    /// Whether the broker acks every message (publisher confirms are on).
    fn confirms(&self) -> bool {
        self.confirm != Confirm::Off
    }
}

/// One AMQP connection and what taskbench tracks about it.
pub struct Live {
    connection: Connection,
    /// Set while the broker has blocked this connection (connection.blocked).
    blocked: Arc<AtomicBool>,
    /// Whether Celery's exchange, queue and binding were declared on this connection (kombu declares once
    /// per connection).
    declared: tokio::sync::OnceCell<()>,
}

impl Live {
    /// Waits (bounded) for a blocked connection to unblock; `Ok` at once when it is not blocked.
    #[inline]
    async fn unblocked(&self, s: &Settings) -> Result<(), PublishError> {
        if !self.blocked.load(Relaxed) {
            return Ok(());
        }
        let deadline = Instant::now() + s.blocked_wait;
        while self.blocked.load(Relaxed) {
            if Instant::now() >= deadline {
                return Err(error::blocked(&s.url, s.blocked_wait));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    fn connected(&self) -> bool {
        self.connection.status().connected()
    }
}

/// Opens a channel, in confirm mode when the case wants confirms.
async fn open_channel(live: &Live, s: &Settings) -> Result<Channel, PublishError> {
    let channel = live
        .connection
        .create_channel()
        .await
        .map_err(|e| classify(&e, Doing::Channel, &s.url))?;
    if s.confirms() {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| classify(&e, Doing::Channel, &s.url))?;
    }
    Ok(channel)
}

/// The arguments Celery declares a queue of `queue_type` with.
pub(crate) fn queue_arguments(queue_type: QueueType) -> FieldTable {
    let mut args = FieldTable::default();
    if queue_type == QueueType::Quorum {
        args.insert(
            "x-queue-type".into(),
            lapin::types::AMQPValue::LongString("quorum".into()),
        );
    }
    args
}

/// Declares what Celery declares for a queue, with exactly its flags: exchange `<queue>` (direct,
/// durable), queue `<queue>` (durable, the arguments of its `queue_type`), binding `<queue>` -> `<queue>`
/// with key `<queue>`. Returns the queue's message count.
async fn declare(
    channel: &Channel,
    s: &Settings,
    clock: &mut StageClock,
) -> Result<u32, PublishError> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    let count = clock
        .time(Stage::Declare, async {
            channel
                .exchange_declare(
                    s.routing_key.clone(),
                    ExchangeKind::Direct,
                    durable,
                    FieldTable::default(),
                )
                .await?;
            channel
                .queue_declare(
                    s.routing_key.clone(),
                    QueueDeclareOptions::durable(),
                    s.queue_arguments.clone(),
                )
                .await
        })
        .await
        .map_err(|e| classify(&e, Doing::Declare, &s.url))?
        .message_count();
    clock
        .time(
            Stage::Bind,
            channel.queue_bind(
                s.routing_key.clone(),
                s.routing_key.clone(),
                s.routing_key.clone(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await
        .map_err(|e| classify(&e, Doing::Declare, &s.url))?;
    Ok(count)
}

/// A case on RabbitMQ.
pub struct AmqpTarget {
    s: Arc<Settings>,
    /// taskbench's own connection for declaring, counting and purging the queue (not timed).
    admin: Option<(Live, Channel)>,
    /// Messages in the queue when the case started.
    baseline: u64,
    /// `prepare` reached the broker and declared the queue (so there is something to count and purge).
    prepared: bool,
    /// `pooled`: the shared connections.
    slots: Arc<[publisher::Slot]>,
    /// `acquire`: the pool every publish checks a channel out of.
    pool: Option<publisher::ChannelPool>,
    pool_size: usize,
    connections: usize,
}

impl AmqpTarget {
    /// A case on RabbitMQ; `stop` is the run's interrupt flag (it ends reconnect backoffs early).
    pub fn new(case: &Case, o: &AmqpOptions, stop: Stop) -> Result<AmqpTarget, PublishError> {
        Self::via(case, o, stop, None)
    }

    /// A case on RabbitMQ whose publishers connect to `via` (the wire proxy's URL) when given; taskbench's
    /// own connection (declare, delivered count, purge) still goes to the broker directly.
    pub fn via(
        case: &Case,
        o: &AmqpOptions,
        stop: Stop,
        via: Option<&str>,
    ) -> Result<AmqpTarget, PublishError> {
        let s = Arc::new(Settings::new(case, o, stop, via)?);
        let connections = o.connections.max(1);
        let pool_size = o.pool_size.max(1);
        let slots = if s.path == PathKind::Pooled {
            (0..connections)
                .map(|_| publisher::Slot::new(Backoff::new(backoff::RECONNECT, s.stop.clone())))
                .collect()
        } else {
            Arc::from([])
        };
        let pool = (s.path == PathKind::Acquire)
            .then(|| publisher::channel_pool(s.clone(), pool_size))
            .transpose()?;
        Ok(AmqpTarget {
            s,
            admin: None,
            baseline: 0,
            prepared: false,
            slots,
            pool,
            pool_size,
            connections,
        })
    }

    /// The admin channel, reopened if the broker closed it.
    async fn admin_channel(&mut self) -> Result<&Channel, PublishError> {
        let usable = self
            .admin
            .as_ref()
            .is_some_and(|(live, ch)| live.connected() && ch.status().connected());
        if !usable {
            let s = &self.s;
            let live = tokio::time::timeout(
                s.admin_timeout,
                connect(s, &s.admin_transport, false, &mut StageClock::new(false)),
            )
                .await
                .map_err(|_| {
                    PublishError::new(ErrorKind::Unreachable,
                        format!(
                            "connecting to {} got no answer within {}; is the host right and RabbitMQ running?",
                            s.url,
                            humantime::format_duration(s.admin_timeout)
                        ),
                    )
                })??;
            let channel = open_channel_plain(&live, &self.s).await?;
            self.admin = Some((live, channel));
        }
        Ok(&self.admin.as_ref().expect("opened above").1)
    }

    /// The queue's message count now (a passive declare).
    async fn count(&mut self) -> Result<u64, PublishError> {
        let s = self.s.clone();
        let channel = self.admin_channel().await?;
        let queue = channel
            .queue_declare(
                s.routing_key.clone(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| classify(&e, Doing::Declare, &s.url))?;
        Ok(queue.message_count() as u64)
    }
}

/// Closes `channel`, giving up after [`CLOSE_TIMEOUT`] (dropping it then closes it without waiting).
async fn close_channel(channel: &Channel) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, channel.close(200, "OK".into())).await;
}

/// Closes `live`'s connection, giving up after [`CLOSE_TIMEOUT`].
async fn close_connection(live: &Live) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, live.connection.close(200, "OK".into())).await;
}

/// A channel without confirm mode (taskbench's own bookkeeping).
async fn open_channel_plain(live: &Live, s: &Settings) -> Result<Channel, PublishError> {
    live.connection
        .create_channel()
        .await
        .map_err(|e| classify(&e, Doing::Channel, &s.url))
}

impl AmqpTarget {
    /// What a reader must know about the broker and queue, whoever publishes (taskbench or a Python client).
    pub fn broker_notes(&self) -> Vec<String> {
        let mut notes = vec![format!("broker {}, queue {:?}", self.s.url, self.s.queue)];
        notes.extend(self.s.transport.notes());
        notes
    }
}

impl Target for AmqpTarget {
    type Publisher = AmqpPublisher;

    fn broker_memory(&self) -> Result<Option<crate::engine::BrokerProbe>, String> {
        Err(
            "RabbitMQ's memory is not measured: taskbench does not read its management interface"
                .into(),
        )
    }

    async fn prepare(&mut self) -> Result<(), PublishError> {
        let s = self.s.clone();
        let channel = self.admin_channel().await?;
        let mut untimed = StageClock::new(false);
        let count = declare(channel, &s, &mut untimed).await?;
        self.baseline = count as u64;
        self.prepared = true;
        Ok(())
    }

    fn publisher(&self, worker: usize) -> AmqpPublisher {
        match self.s.path {
            PathKind::Fresh => AmqpPublisher::fresh(self.s.clone()),
            PathKind::Acquire => AmqpPublisher::acquire(
                self.s.clone(),
                self.pool.clone().expect("acquire cases have a pool"),
            ),
            _ => AmqpPublisher::pooled(
                self.s.clone(),
                self.slots[worker % self.slots.len()].clone(),
            ),
        }
    }

    async fn delivered(&mut self, expected: u64) -> Result<Option<u64>, PublishError> {
        let mut settle = Settle::new(SETTLE);
        loop {
            let arrived = self.count().await?.saturating_sub(self.baseline);
            if settle.done(arrived, expected) {
                return Ok(Some(arrived));
            }
            tokio::time::sleep(settle.rules.poll).await;
        }
    }

    async fn finish(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.close();
        }
        for slot in self.slots.iter() {
            slot.close().await;
        }
        if self.prepared && !self.s.keep {
            let s = self.s.clone();
            if let Ok(channel) = self.admin_channel().await
                && let Err(e) = channel
                    .queue_purge(s.routing_key.clone(), QueuePurgeOptions::default())
                    .await
            {
                tracing::warn!("purging queue {:?} on {} failed: {e}", s.queue, s.url);
            }
        }
        if let Some((live, channel)) = self.admin.take() {
            close_channel(&channel).await;
            close_connection(&live).await;
        }
    }

    fn facts(&self) -> CaseFacts {
        // Only the acquire and pooled paths watch their connections for connection.blocked.
        let watched = matches!(self.s.path, PathKind::Acquire | PathKind::Pooled);
        CaseFacts {
            flow_control: watched.then(|| self.s.flow.facts()),
            ..CaseFacts::default()
        }
    }

    fn notes(&self) -> Vec<String> {
        let s = &self.s;
        let mut notes = self.broker_notes();
        if s.transport.is_tls() {
            notes.push("TLS (amqps://): the tls stage is the TLS handshake alone, after the TCP connect; the connect stage is the TCP connect and the AMQP handshake".into());
        }
        match (s.confirm, s.path) {
            (Confirm::Off, _) => notes.push(
                "confirm = off: latency is time-to-socket (basic.publish handed to the socket), not time-to-broker; \
                 the delivered count is the only proof the broker took the messages"
                    .into(),
            ),
            (Confirm::Each, _) => notes.push(
                "confirm = each: latency runs to the broker's ack of every message (Celery's confirm_publish)".into(),
            ),
            (Confirm::Batch, PathKind::Fresh) => notes.push(
                "confirm = batch on fresh: the connection closes after every publish, so every message waits for its own ack (as confirm = each)".into(),
            ),
            (Confirm::Batch, _) => notes.push(format!(
                "confirm = batch: {} messages are published back to back, then their acks are awaited; every message's latency runs from its start to the last ack of its batch",
                s.confirm_batch
            )),
            (Confirm::Window, _) => notes.push(format!(
                "confirm = window: up to {} messages unconfirmed per channel, the next sent as acks arrive; every message's latency runs from its send to its own ack (seen at the latest at the end of the next publish); the confirm stage is the wait for room in the window",
                s.confirm_window
            )),
        }
        match s.path {
            PathKind::Acquire => {
                notes.push(format!(
                    "acquire: a pool of up to {} connections, each with one channel, checked out per publish; the acquire stage includes connecting when the pool grows",
                    self.pool_size
                ));
            }
            PathKind::Pooled => {
                notes.push(format!(
                    "pooled: one channel per publisher on {} shared connection(s), declared once per connection",
                    self.connections
                ));
                // (A window with batch > 1 is refused by the scenario.)
                if s.pipeline > 1 {
                    notes.push(format!(
                        "batch = {}: each publisher hands lapin {} messages at once and waits until all are written; every message's latency runs to the end of its batch",
                        s.pipeline, s.pipeline
                    ));
                }
            }
            _ => {}
        }
        notes
    }
}
