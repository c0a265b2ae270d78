//! The three AMQP paths as one publisher, [`AmqpPublisher`]: `fresh` (everything per publish), `acquire` (a
//! channel checked out of a pool per publish) and `pooled` (a channel per publisher for the whole case),
//! each in its own file; and the send and confirm steps they share.
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

use super::Settings;
use super::acquire::AcquirePublisher;
use super::error::{self, Doing, classify};
use super::fresh::FreshPublisher;
use super::pooled::PooledPublisher;
use crate::engine::Publisher;
use crate::error::PublishError;
use crate::message::TaskMessage;
use crate::record::Recorder;
use crate::scenario::Confirm;
use crate::stage::{Stage, StageClock};
use lapin::{Channel, Confirmation, PublisherConfirm};
use std::sync::Arc;
use std::time::Duration;

pub(super) use super::acquire::{ChannelPool, channel_pool};
pub(super) use super::pooled::Slot;

/// One publisher of an AMQP case; the variant is the path.
pub enum AmqpPublisher {
    Fresh(FreshPublisher),
    Acquire(AcquirePublisher),
    Pooled(PooledPublisher),
}

impl AmqpPublisher {
    pub(super) fn fresh(s: Arc<Settings>) -> Self {
        AmqpPublisher::Fresh(FreshPublisher::new(s))
    }

    pub(super) fn acquire(s: Arc<Settings>, pool: ChannelPool) -> Self {
        AmqpPublisher::Acquire(AcquirePublisher::new(s, pool))
    }

    pub(super) fn pooled(s: Arc<Settings>, slot: Slot) -> Self {
        AmqpPublisher::Pooled(PooledPublisher::new(s, slot))
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
            p.close().await;
        }
    }

    fn deferred(&self) -> bool {
        matches!(self, AmqpPublisher::Pooled(p) if p.s.confirm == Confirm::Window)
    }

    fn settled(&mut self, rec: &mut Recorder) {
        if let AmqpPublisher::Pooled(p) = self {
            p.hand_over(rec);
        }
    }

    async fn settle_all(&mut self, within: Duration) {
        if let AmqpPublisher::Pooled(p) = self {
            p.settle_window(within).await;
        }
    }
}

/// Encodes `message`'s properties (the Encode stage) and returns its basic.publish, for the caller to await
/// as the Send stage (alone, or together with the rest of a pipelined batch).
#[inline]
pub(super) fn basic_publish<'a>(
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
pub(super) async fn send(
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
pub(super) async fn settle(confirm: PublisherConfirm, s: &Settings) -> Result<(), PublishError> {
    judge(confirm.await, s)
}

/// The broker's answer to one publish as success or an error of its kind.
#[inline]
pub(super) fn judge(answer: lapin::Result<Confirmation>, s: &Settings) -> Result<(), PublishError> {
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
pub(super) async fn settle_all(
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
