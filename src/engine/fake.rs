//! A deterministic test double for the engine: publishes take scripted (virtual) time per stage.

use super::{Publisher, Target};
use crate::error::{ErrorKind, PublishError};
use crate::message::TaskMessage;
use crate::record::Recorder;
use crate::stage::{Stage, StageClock};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Scripted behaviour shared by a fake target's publishers.
#[derive(Clone, Default)]
pub struct Script {
    /// Stages every publish goes through, with how long each takes.
    pub stages: Vec<(Stage, Duration)>,
    /// The publish with this (1-based, per publisher) number takes this much longer in its last stage.
    pub stall: Option<(u64, Duration)>,
    /// From the call with this (1-based, per publisher) number on, the last stage takes this much longer.
    pub slower_from: Option<(u64, Duration)>,
    /// Every n-th publish of a publisher fails.
    pub fail_every: Option<u64>,
    /// Messages per publish call.
    pub batch: usize,
    /// The backend reports this many fewer arrivals than there were.
    pub lose: u64,
    /// The publish call with this (1-based, per publisher) number panics.
    pub panic_on: Option<u64>,
    /// (worker, call): that worker's publisher fails that call, at once, and is gone from then on (as a
    /// Python publisher whose harness died), answering any later call with the same failure at once.
    pub gone_on: Option<(usize, u64)>,
    /// Setting the backend up takes this long.
    pub prepare_takes: Option<Duration>,
    /// Deferred (a confirm window): every message settles this long after its call returned.
    pub settle_after: Option<Duration>,
}

pub struct FakeTarget {
    pub script: Script,
    pub arrived: Arc<AtomicU64>,
}

impl FakeTarget {
    pub fn new(script: Script) -> Self {
        FakeTarget {
            script,
            arrived: Arc::new(AtomicU64::new(0)),
        }
    }
}

pub struct FakePublisher {
    script: Script,
    arrived: Arc<AtomicU64>,
    worker: usize,
    count: u64,
    gone: bool,
    /// Deferred messages not yet handed over: (sent, settles at).
    unsettled: VecDeque<(tokio::time::Instant, tokio::time::Instant)>,
}

impl Publisher for FakePublisher {
    fn gone(&self) -> bool {
        self.gone
    }

    fn deferred(&self) -> bool {
        self.script.settle_after.is_some()
    }

    fn settled(&mut self, rec: &mut Recorder) {
        let now = tokio::time::Instant::now();
        while let Some(&(sent, at)) = self.unsettled.front() {
            if at > now {
                break;
            }
            self.unsettled.pop_front();
            rec.record_latency((at - sent).as_nanos() as u64);
        }
    }

    async fn settle_all(&mut self, within: Duration) {
        if let Some(&(_, at)) = self.unsettled.back() {
            tokio::time::sleep_until(at.min(tokio::time::Instant::now() + within)).await;
        }
    }

    fn batch_size(&self) -> usize {
        self.script.batch.max(1)
    }

    async fn publish(
        &mut self,
        batch: &[TaskMessage],
        clock: &mut StageClock,
    ) -> Result<(), PublishError> {
        self.count += 1;
        self.gone |= self.script.gone_on == Some((self.worker, self.count));
        if self.gone {
            return Err(PublishError::new(ErrorKind::Harness, "scripted death"));
        }
        if self.script.panic_on == Some(self.count) {
            panic!("scripted panic in call {}", self.count);
        }
        let last = self.script.stages.len().saturating_sub(1);
        for (i, (stage, took)) in self.script.stages.iter().enumerate() {
            let mut took = *took;
            if i == last && self.script.stall.is_some_and(|(n, _)| n == self.count) {
                took += self.script.stall.unwrap().1;
            }
            if i == last
                && let Some((from, more)) = self.script.slower_from
                && self.count >= from
            {
                took += more;
            }
            clock.time(*stage, tokio::time::sleep(took)).await;
        }
        if self
            .script
            .fail_every
            .is_some_and(|n| self.count.is_multiple_of(n))
        {
            return Err(PublishError::new(
                ErrorKind::Send,
                format!("scripted failure #{}", self.count),
            ));
        }
        self.arrived.fetch_add(batch.len() as u64, Relaxed);
        if let Some(after) = self.script.settle_after {
            let now = tokio::time::Instant::now();
            self.unsettled
                .extend(batch.iter().map(|_| (now, now + after)));
        }
        Ok(())
    }
}

impl Target for FakeTarget {
    type Publisher = FakePublisher;

    async fn prepare(&mut self) -> Result<(), PublishError> {
        if let Some(d) = self.script.prepare_takes {
            tokio::time::sleep(d).await;
        }
        Ok(())
    }

    fn publisher(&self, worker: usize) -> FakePublisher {
        FakePublisher {
            script: self.script.clone(),
            arrived: self.arrived.clone(),
            worker,
            count: 0,
            gone: false,
            unsettled: VecDeque::new(),
        }
    }

    async fn delivered(&mut self, _expected: u64) -> Result<Option<u64>, PublishError> {
        Ok(Some(self.arrived.load(Relaxed) - self.script.lose))
    }

    async fn finish(&mut self) {}
}
