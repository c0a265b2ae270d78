//! `confirm = "window"` on the `pooled` path: the messages a channel sent and the broker has not confirmed
//! yet, settled as their acks come in and handed to the engine's recorder.

use super::Settings;
use super::error;
use super::publisher::judge;
use crate::record::{ErrorCounts, Recorder};
use lapin::{Confirmation, PublisherConfirm};
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::time::Instant;

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
    pub(super) pending: VecDeque<(Instant, PublisherConfirm)>,
    /// Latencies (ns) of the acked messages not yet handed to the engine.
    acked_ns: Vec<u64>,
    /// Errors of the settled messages not yet handed to the engine, per message.
    errors: ErrorCounts,
}

impl Window {
    pub(super) fn new(size: usize) -> Window {
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
    pub(super) async fn settle_oldest(&mut self, s: &Settings) {
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
    pub(super) fn reap(&mut self, s: &Settings, mut seen: Option<Instant>) {
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
    pub(super) fn abandon(&mut self, s: &Settings, why: &str) {
        self.reap(s, None);
        if !self.pending.is_empty() {
            let lost = self.pending.len() as u64;
            self.pending.clear();
            self.errors.add(&error::unconfirmed(&s.url, why), lost);
        }
    }

    /// Hands the settled messages to the engine's recorder.
    pub(super) fn hand_over(&mut self, rec: &mut Recorder) {
        for ns in self.acked_ns.drain(..) {
            rec.record_latency(ns);
        }
        if self.errors.total() > 0 {
            rec.errors.merge(&std::mem::take(&mut self.errors));
        }
    }
}
