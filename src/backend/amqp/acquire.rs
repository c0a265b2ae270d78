//! The `acquire` path: a connection and its channel checked out of a deadpool pool for every publish and
//! returned after it (kombu's producer pool), with the pool's manager that creates and recycles them.

use super::publisher::{send, settle, settle_all};
use super::{Live, Settings, connect, declare, open_channel};
use crate::error::{ErrorKind, PublishError};
use crate::message::TaskMessage;
use crate::scenario::Confirm;
use crate::stage::{Stage, StageClock};
use deadpool::managed::{self, Metrics, Object, PoolError, RecycleError, RecycleResult};
use lapin::{Channel, PublisherConfirm};
use std::sync::Arc;

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
        let live = connect(
            &self.s,
            &self.s.transport,
            true,
            &mut StageClock::new(false),
        )
        .await?;
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
    pub(super) s: Arc<Settings>,
    pool: ChannelPool,
    pending: Vec<PublisherConfirm>,
}

impl AcquirePublisher {
    pub(super) fn new(s: Arc<Settings>, pool: ChannelPool) -> Self {
        let pending = Vec::with_capacity(s.confirm_batch);
        AcquirePublisher { s, pool, pending }
    }

    pub(super) async fn publish(
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
