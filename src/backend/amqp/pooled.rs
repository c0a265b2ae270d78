//! The `pooled` path: a [`Slot`] (one connection shared by several publishers, reconnecting with a backoff)
//! and the [`PooledPublisher`] that keeps one channel on it for the whole case, pipelining a batch's
//! messages or keeping a confirm window.

use super::error::{Doing, classify};
use super::publisher::{basic_publish, send, settle_all};
use super::window::Window;
use super::{Live, Settings, close_channel, close_connection, connect, declare, open_channel};
use crate::backend::backoff::Backoff;
use crate::error::{ErrorKind, PublishError};
use crate::message::TaskMessage;
use crate::record::Recorder;
use crate::scenario::Confirm;
use crate::stage::{Stage, StageClock};
use lapin::{Channel, PublisherConfirm};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

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
        let live = match connect(s, &s.transport, true, clock).await {
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

/// Keeps one channel on its slot's connection for the whole case.
pub struct PooledPublisher {
    pub(super) s: Arc<Settings>,
    slot: Slot,
    channel: Option<(Arc<Live>, Channel)>,
    pending: Vec<PublisherConfirm>,
    window: Box<Window>,
    dirty: bool,
}

impl PooledPublisher {
    pub(super) fn new(s: Arc<Settings>, slot: Slot) -> Self {
        let pending = Vec::with_capacity(s.confirm_batch);
        // Boxed: the publisher enum stays small.
        let window = Box::new(Window::new(if s.confirm == Confirm::Window {
            s.confirm_window
        } else {
            0
        }));
        PooledPublisher {
            s,
            slot,
            channel: None,
            pending,
            window,
            dirty: false,
        }
    }

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

    pub(super) async fn publish(
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

    /// Drops what is in flight (an unsettled window message counts as `unconfirmed`) and closes the channel.
    pub(super) async fn close(&mut self) {
        self.pending.clear();
        self.window.abandon(&self.s, "the publisher closed");
        if let Some((_, channel)) = self.channel.take() {
            close_channel(&channel).await;
        }
    }

    /// Hands the window's settled messages to the engine's recorder.
    pub(super) fn hand_over(&mut self, rec: &mut Recorder) {
        self.window.hand_over(rec);
    }

    /// Waits up to `within` for every message in the window to settle; the rest counts as unconfirmed.
    pub(super) async fn settle_window(&mut self, within: Duration) {
        let s = &*self.s;
        let window = &mut self.window;
        let all = async {
            while !window.pending.is_empty() {
                window.settle_oldest(s).await;
            }
        };
        if tokio::time::timeout(within, all).await.is_err() {
            let why = format!("no confirm within {}", humantime::format_duration(within));
            self.window.abandon(s, &why);
        }
    }
}
