//! The three AMQP paths as publishers: `fresh` (everything per publish), `acquire` (a channel checked out
//! of a pool per publish) and `pooled` (a channel per publisher for the whole case).
//!
//! Confirms: `off` sends and moves on; `each` waits for every message's ack before the publish returns;
//! `batch` makes one call of [`Publisher::publish`] carry `confirm_batch` messages (see
//! [`Publisher::batch_size`]): they go out together, then the call waits for all their acks, so every
//! message counts as done only once the broker acked it, and its latency runs to its batch's last ack.
//! `pooled` also pipelines with `batch = N` (confirms or not): a call's messages are handed to lapin before
//! any write is awaited, so its I/O thread writes them together.
//!
//! Cancellation (`publish_timeout`, interrupts) can stop a publish at any await. lapin queues a message's
//! frames in one step, so a cancelled publish never leaves half a message on the wire; what it may leave
//! is a channel with confirms nobody waits for. Every path therefore marks its channel dirty while a
//! publish is in flight and throws a still-dirty channel away on the next publish (pooled) or when the
//! pool recycles it (acquire).

use super::error::{self, Doing, classify};
use super::{Live, Settings, close_channel, close_connection, connect, declare, open_channel};
use crate::backend::backoff::Backoff;
use crate::engine::Publisher;
use crate::error::{ErrorKind, PublishError};
use crate::message::TaskMessage;
use crate::record::{ErrorCounts, Recorder};
use crate::scenario::Confirm;
use crate::stage::{Stage, StageClock};
use deadpool::managed::{self, Metrics, Object, PoolError, RecycleError, RecycleResult};
use lapin::{Channel, Confirmation, PublisherConfirm};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::Instant;

/// One publisher of an AMQP case; the variant is the path.
pub enum AmqpPublisher {
    Fresh(FreshPublisher),
    Acquire(AcquirePublisher),
    Pooled(PooledPublisher),
}

impl AmqpPublisher {
    pub(super) fn fresh(s: Arc<Settings>) -> Self {
        AmqpPublisher::Fresh(FreshPublisher { s })
    }

    pub(super) fn acquire(s: Arc<Settings>, pool: ChannelPool) -> Self {
        let pending = Vec::with_capacity(s.confirm_batch);
        AmqpPublisher::Acquire(AcquirePublisher { s, pool, pending })
    }

    pub(super) fn pooled(s: Arc<Settings>, slot: Slot) -> Self {
        let pending = Vec::with_capacity(s.confirm_batch);
        // Boxed: the publisher enum stays small.
        let window = Box::new(Window::new(if s.confirm == Confirm::Window {
            s.confirm_window
        } else {
            0
        }));
        AmqpPublisher::Pooled(PooledPublisher {
            s,
            slot,
            channel: None,
            pending,
            window,
            dirty: false,
        })
    }
}

impl Publisher for AmqpPublisher {
    fn batch_size(&self) -> usize {
        match self {
            AmqpPublisher::Fresh(_) => 1,
            AmqpPublisher::Acquire(AcquirePublisher { s, .. })
            | AmqpPublisher::Pooled(PooledPublisher { s, .. }) => {
                let confirms = match s.confirm {
                    Confirm::Batch => s.confirm_batch,
                    _ => 1,
                };
                confirms.max(s.pipeline)
            }
        }
    }

    async fn publish(
        &mut self,
        batch: &[TaskMessage],
        clock: &mut StageClock,
    ) -> Result<(), PublishError> {
        match self {
            AmqpPublisher::Fresh(p) => p.publish(batch, clock).await,
            AmqpPublisher::Acquire(p) => p.publish(batch, clock).await,
            AmqpPublisher::Pooled(p) => p.publish(batch, clock).await,
        }
    }

    async fn close(&mut self) {
        if let AmqpPublisher::Pooled(p) = self {
            p.pending.clear();
            p.window.abandon(&p.s, "the publisher closed");
            if let Some((_, channel)) = p.channel.take() {
                close_channel(&channel).await;
            }
        }
    }

    fn deferred(&self) -> bool {
        matches!(self, AmqpPublisher::Pooled(p) if p.s.confirm == Confirm::Window)
    }

    fn settled(&mut self, rec: &mut Recorder) {
        if let AmqpPublisher::Pooled(p) = self {
            p.window.hand_over(rec);
        }
    }

    async fn settle_all(&mut self, within: Duration) {
        if let AmqpPublisher::Pooled(p) = self {
            let s = &*p.s;
            let window = &mut p.window;
            let all = async {
                while !window.pending.is_empty() {
                    window.settle_oldest(s).await;
                }
            };
            if tokio::time::timeout(within, all).await.is_err() {
                let why = format!("no confirm within {}", humantime::format_duration(within));
                p.window.abandon(s, &why);
            }
        }
    }
}

/// Encodes `message`'s properties (the Encode stage) and returns its basic.publish, for the caller to await
/// as the Send stage (alone, or together with the rest of a pipelined batch).
#[inline]
fn basic_publish<'a>(
    channel: &'a Channel,
    s: &'a Settings,
    message: &'a TaskMessage,
    clock: &mut StageClock,
) -> impl Future<Output = lapin::Result<PublisherConfirm>> + use<'a> {
    let properties = clock.time_sync(Stage::Encode, || s.wire.properties(message.id()));
    channel.basic_publish(
        s.exchange.clone(),
        s.routing_key.clone(),
        s.publish_options,
        message.body(),
        properties,
    )
}

/// Publishes `message` on `channel` (Encode: its properties; Send: basic.publish until lapin wrote it).
#[inline]
async fn send(
    channel: &Channel,
    s: &Settings,
    message: &TaskMessage,
    clock: &mut StageClock,
) -> Result<PublisherConfirm, PublishError> {
    let publish = basic_publish(channel, s, message, clock);
    clock
        .time(Stage::Send, publish)
        .await
        .map_err(|e| classify(&e, Doing::Publish, &s.url))
}

/// Waits for the broker's answer to one publish; an ack is success, anything else an error of its kind.
#[inline]
async fn settle(confirm: PublisherConfirm, s: &Settings) -> Result<(), PublishError> {
    judge(confirm.await, s)
}

/// The broker's answer to one publish as success or an error of its kind.
#[inline]
fn judge(answer: lapin::Result<Confirmation>, s: &Settings) -> Result<(), PublishError> {
    match answer {
        Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => Ok(()),
        Ok(Confirmation::Ack(Some(returned))) => Err(error::returned(
            &s.url,
            &s.queue,
            returned.reply_text.as_str(),
        )),
        Ok(Confirmation::Nack(_)) => Err(error::nack(&s.url, &s.queue)),
        Err(e) => Err(classify(&e, Doing::Confirm, &s.url)),
    }
}

/// Settles every confirm in `pending` (the Confirm stage of a batch), leaving it empty.
async fn settle_all(
    pending: &mut Vec<PublisherConfirm>,
    s: &Settings,
    clock: &mut StageClock,
) -> Result<(), PublishError> {
    clock
        .time(Stage::Confirm, async {
            let mut outcome = Ok(());
            for confirm in pending.drain(..) {
                if let Err(e) = settle(confirm, s).await {
                    // Keep waiting for the rest, so the channel holds no stale confirms; report the first.
                    if outcome.is_ok() {
                        outcome = Err(e);
                    }
                }
            }
            outcome
        })
        .await
}

/// Connects, opens a channel, declares, publishes, (confirms), closes: all per publish.
pub struct FreshPublisher {
    s: Arc<Settings>,
}

impl FreshPublisher {
    async fn publish(
        &mut self,
        batch: &[TaskMessage],
        clock: &mut StageClock,
    ) -> Result<(), PublishError> {
        let s = &*self.s;
        for message in batch {
            // A cancelled publish drops `live`, and lapin closes a dropped connection.
            let live = clock.time(Stage::Connect, connect(s, false)).await?;
            let channel = clock.time(Stage::Channel, open_channel(&live, s)).await?;
            declare(&channel, s, clock).await?;
            let confirm = send(&channel, s, message, clock).await?;
            if s.confirms() {
                clock.time(Stage::Confirm, settle(confirm, s)).await?;
            } else {
                let _ = confirm.await;
            }
            clock
                .time(Stage::Close, async {
                    let _ = channel.close(200, "OK".into()).await;
                    let _ = live.connection.close(200, "OK".into()).await;
                })
                .await;
        }
        Ok(())
    }
}

/// A connection and its channel, as the `acquire` pool holds them (kombu's pool: a connection per entry,
/// its default channel bound to the producer).
pub struct PooledChannel {
    live: Live,
    channel: Channel,
    /// A publish is (or was, if cancelled) in flight: not safe to hand out again.
    dirty: bool,
}

/// deadpool's manager for [`PooledChannel`]s: creates (connect, channel, declare) and recycles.
pub struct ChannelManager {
    s: Arc<Settings>,
}

impl managed::Manager for ChannelManager {
    type Type = PooledChannel;
    type Error = PublishError;

    async fn create(&self) -> Result<PooledChannel, PublishError> {
        let live = connect(&self.s, true).await?;
        let channel = open_channel(&live, &self.s).await?;
        declare(&channel, &self.s, &mut StageClock::new(false)).await?;
        let _ = live.declared.set(());
        Ok(PooledChannel {
            live,
            channel,
            dirty: false,
        })
    }

    async fn recycle(&self, obj: &mut PooledChannel, _: &Metrics) -> RecycleResult<PublishError> {
        if obj.dirty {
            return Err(RecycleError::message(
                "a publish on it was cancelled mid-way",
            ));
        }
        if !(obj.live.connected() && obj.channel.status().connected()) {
            return Err(RecycleError::message("its channel or connection closed"));
        }
        Ok(())
    }
}

/// The pool of the `acquire` path.
pub type ChannelPool = managed::Pool<ChannelManager>;

/// A pool of `size` connection+channel pairs for the case.
pub(super) fn channel_pool(s: Arc<Settings>, size: usize) -> Result<ChannelPool, PublishError> {
    managed::Pool::builder(ChannelManager { s })
        .max_size(size)
        .build()
        .map_err(|e| {
            PublishError::new(
                ErrorKind::Setup,
                format!("cannot build the channel pool: {e}"),
            )
        })
}

fn pool_error(e: PoolError<PublishError>, s: &Settings) -> PublishError {
    match e {
        PoolError::Backend(e) => e,
        other => PublishError::new(
            ErrorKind::Pool,
            format!("the channel pool for {} failed: {other:?}", s.url),
        ),
    }
}

/// Checks a channel out of the pool for every publish and returns it after.
pub struct AcquirePublisher {
    s: Arc<Settings>,
    pool: ChannelPool,
    pending: Vec<PublisherConfirm>,
}

impl AcquirePublisher {
    async fn publish(
        &mut self,
        batch: &[TaskMessage],
        clock: &mut StageClock,
    ) -> Result<(), PublishError> {
        let s = &*self.s;
        // A cancelled batch leaves confirms behind; they belong to channels already back in the pool.
        self.pending.clear();
        for message in batch {
            let mut pooled = clock
                .time(Stage::Acquire, self.pool.get())
                .await
                .map_err(|e| pool_error(e, s))?;
            pooled.live.unblocked(s).await?;
            pooled.dirty = true;
            let confirm = match send(&pooled.channel, s, message, clock).await {
                Ok(confirm) => confirm,
                Err(e) => {
                    // Broken: leave it out of the pool.
                    drop(Object::take(pooled));
                    return Err(e);
                }
            };
            match s.confirm {
                Confirm::Off => {
                    let _ = confirm.await;
                }
                // Celery's confirm_publish waits for the ack before the producer goes back to the pool.
                // Window needs pooled (the scenario says so); anywhere else it is `each`.
                Confirm::Each | Confirm::Window => {
                    clock.time(Stage::Confirm, settle(confirm, s)).await?
                }
                Confirm::Batch => self.pending.push(confirm),
            }
            pooled.dirty = false;
            clock.time_sync(Stage::Release, || drop(pooled));
        }
        if !self.pending.is_empty() {
            settle_all(&mut self.pending, s, clock).await?;
        }
        Ok(())
    }
}

/// One shared connection of a `pooled` case; publishers on it each open their own channel. Reconnects
/// (once, for all its publishers) after the connection dropped, with a backoff between failed attempts.
#[derive(Clone)]
pub struct Slot {
    live: Arc<tokio::sync::Mutex<Option<Arc<Live>>>>,
    backoff: Arc<Backoff>,
}

impl Slot {
    pub fn new(backoff: Backoff) -> Slot {
        Slot {
            live: Arc::default(),
            backoff: Arc::new(backoff),
        }
    }

    /// The slot's connection, connecting (Connect stage) when there is none or it dropped: at once the
    /// first time and after a working connection dropped, else after the backoff's wait (the lock makes
    /// the publishers on the slot wait their turn, so the broker sees one attempt at a time).
    async fn live(&self, s: &Settings, clock: &mut StageClock) -> Result<Arc<Live>, PublishError> {
        let mut held = self.live.lock().await;
        if let Some(live) = held.as_ref().filter(|l| l.connected()) {
            return Ok(live.clone());
        }
        *held = None;
        if !self.backoff.wait().await {
            return Err(PublishError::new(
                ErrorKind::Unreachable,
                format!(
                    "cannot connect to {}: the run was interrupted while waiting to reconnect",
                    s.url
                ),
            ));
        }
        let live = match clock.time(Stage::Connect, connect(s, true)).await {
            Ok(live) => Arc::new(live),
            Err(e) => {
                self.backoff.failed();
                return Err(e);
            }
        };
        self.backoff.succeeded();
        *held = Some(live.clone());
        Ok(live)
    }

    /// Closes the connection, after the case.
    pub async fn close(&self) {
        if let Some(live) = self.live.lock().await.take() {
            close_connection(&live).await;
        }
    }
}

/// `confirm = "window"`: the messages of one channel sent and not yet confirmed, and what settled since the
/// engine last collected it.
///
/// A message's latency runs from its send (the start of its publish, after any wait for room) to the
/// moment the publisher sees its own ack: the window is checked after every send and awaited when full, so
/// an ack is seen at the latest at the end of the next publish call. lapin resolves each message's confirm
/// by its delivery tag, `multiple` acks and nacks one by one over their whole range, so a message is counted
/// exactly once: acked (latency, ok), nacked (`nack`), returned (`returned`), or lost with its channel.
pub struct Window {
    /// Sent and unconfirmed, oldest first: when each was sent, and its confirm.
    pending: VecDeque<(Instant, PublisherConfirm)>,
    /// Latencies (ns) of the acked messages not yet handed to the engine.
    acked_ns: Vec<u64>,
    /// Errors of the settled messages not yet handed to the engine, per message.
    errors: ErrorCounts,
}

impl Window {
    fn new(size: usize) -> Window {
        // Room for a window's worth up front (bounded: a huge confirm_window grows as it fills).
        let size = size.min(4096);
        Window {
            pending: VecDeque::with_capacity(size),
            acked_ns: Vec::with_capacity(size),
            errors: ErrorCounts::default(),
        }
    }

    /// Counts one settled message.
    #[inline]
    fn count(
        &mut self,
        sent: Instant,
        seen: Instant,
        answer: lapin::Result<Confirmation>,
        s: &Settings,
    ) {
        match judge(answer, s) {
            Ok(()) => self
                .acked_ns
                .push(seen.saturating_duration_since(sent).as_nanos() as u64),
            Err(e) => self.errors.add(&e, 1),
        }
    }

    /// Waits for the oldest message's confirm, then takes every later one already settled.
    async fn settle_oldest(&mut self, s: &Settings) {
        let Some((_, confirm)) = self.pending.front_mut() else {
            return;
        };
        let answer = confirm.await;
        let seen = Instant::now();
        let (sent, _) = self.pending.pop_front().expect("the front was there");
        self.count(sent, seen, answer, s);
        self.reap(s, Some(seen));
    }

    /// Takes the settled messages off the front of the window without waiting (one poll of the oldest when
    /// none is); `seen` is the time to stamp them with, read once when the first is found if `None`.
    #[inline]
    fn reap(&mut self, s: &Settings, mut seen: Option<Instant>) {
        let mut cx = Context::from_waker(Waker::noop());
        while let Some((_, confirm)) = self.pending.front_mut() {
            let Poll::Ready(answer) = Pin::new(confirm).poll(&mut cx) else {
                break;
            };
            let at = *seen.get_or_insert_with(Instant::now);
            let (sent, _) = self.pending.pop_front().expect("the front was there");
            self.count(sent, at, answer, s);
        }
    }

    /// The channel is being dropped: what already settled is counted, the rest is an `unconfirmed` error
    /// each (`why` says what happened).
    fn abandon(&mut self, s: &Settings, why: &str) {
        self.reap(s, None);
        if !self.pending.is_empty() {
            let lost = self.pending.len() as u64;
            self.pending.clear();
            self.errors.add(&error::unconfirmed(&s.url, why), lost);
        }
    }

    /// Hands the settled messages to the engine's recorder.
    fn hand_over(&mut self, rec: &mut Recorder) {
        for ns in self.acked_ns.drain(..) {
            rec.record_latency(ns);
        }
        if self.errors.total() > 0 {
            rec.errors.merge(&std::mem::take(&mut self.errors));
        }
    }
}

/// Keeps one channel on its slot's connection for the whole case.
pub struct PooledPublisher {
    s: Arc<Settings>,
    slot: Slot,
    channel: Option<(Arc<Live>, Channel)>,
    pending: Vec<PublisherConfirm>,
    window: Box<Window>,
    dirty: bool,
}

impl PooledPublisher {
    /// A usable channel: the one held, or a new one (reconnecting the slot if needed).
    async fn channel(&mut self, clock: &mut StageClock) -> Result<(), PublishError> {
        if std::mem::take(&mut self.dirty) {
            // The last publish was cancelled mid-way: its confirms are unknown, start clean.
            self.channel = None;
            self.pending.clear();
            self.window.abandon(
                &self.s,
                "a publish on its channel was cancelled (publish_timeout)",
            );
        }
        if let Some((live, channel)) = &self.channel {
            if channel.status().connected() && live.connected() {
                return Ok(());
            }
            self.channel = None;
            self.window
                .abandon(&self.s, "its channel or connection closed");
        }
        let s = &*self.s;
        let live = self.slot.live(s, clock).await?;
        let channel = clock.time(Stage::Channel, open_channel(&live, s)).await?;
        live.declared
            .get_or_try_init(|| async { declare(&channel, s, clock).await.map(|_| ()) })
            .await?;
        self.channel = Some((live, channel));
        Ok(())
    }

    async fn publish(
        &mut self,
        batch: &[TaskMessage],
        clock: &mut StageClock,
    ) -> Result<(), PublishError> {
        self.channel(clock).await?;
        let s = &*self.s;
        let (live, channel) = self.channel.as_ref().expect("opened above");
        live.unblocked(s).await?;
        self.dirty = true;
        if s.confirm == Confirm::Window {
            let window = &mut self.window;
            for message in batch {
                // Room first: a message's latency starts at its send, not while it waits for a place.
                while window.pending.len() >= s.confirm_window {
                    clock.time(Stage::Confirm, window.settle_oldest(s)).await;
                }
                let sent = clock.last_lap().unwrap_or_else(Instant::now);
                match send(channel, s, message, clock).await {
                    Ok(confirm) => window.pending.push_back((sent, confirm)),
                    Err(e) => {
                        self.channel = None;
                        self.window.abandon(s, "publishing on its channel failed");
                        self.dirty = false;
                        return Err(e);
                    }
                }
            }
            window.reap(s, None);
            self.dirty = false;
            return Ok(());
        }
        if batch.len() > 1 {
            // Pipelined (`batch = N`, or a confirm batch, whose messages are all awaited together anyway):
            // every message's frames are queued before any write is awaited, so lapin's io loop writes
            // them together.
            let sends: Vec<_> = batch
                .iter()
                .map(|m| basic_publish(channel, s, m, clock))
                .collect();
            let sent = clock
                .time(Stage::Send, futures_util::future::join_all(sends))
                .await;
            for result in sent {
                match result {
                    Ok(confirm) if s.confirms() => self.pending.push(confirm),
                    Ok(confirm) => {
                        let _ = confirm.await;
                    }
                    Err(e) => {
                        self.channel = None;
                        self.pending.clear();
                        self.dirty = false;
                        return Err(classify(&e, Doing::Publish, &s.url));
                    }
                }
            }
        } else {
            for message in batch {
                let confirm = match send(channel, s, message, clock).await {
                    Ok(confirm) => confirm,
                    Err(e) => {
                        self.channel = None;
                        self.pending.clear();
                        self.dirty = false;
                        return Err(e);
                    }
                };
                if s.confirms() {
                    self.pending.push(confirm);
                } else {
                    let _ = confirm.await;
                }
            }
        }
        let settled = if self.pending.is_empty() {
            Ok(())
        } else {
            settle_all(&mut self.pending, s, clock).await
        };
        self.dirty = false;
        if let Err(e) = &settled
            && matches!(
                e.kind,
                ErrorKind::ConnectionLost | ErrorKind::ChannelClosed | ErrorKind::Server
            )
        {
            self.channel = None;
        }
        settled
    }
}
