//! [`PythonPublisher`]: one publisher of a celery or kombu case, driving its harness one publish at a time
//! ("p", then the answer the harness measured), recovering from a publish the engine cancelled, sampling
//! the harness with py-spy over the measured publishes, and stopping for good when its harness dies.

use super::harness::{Harness, exit_status, log_tail};
use super::protocol::{self, Answer};
use super::target::Shared;
use super::turns::Turns;
use crate::engine::Publisher;
use crate::error::{ErrorKind, PublishError};
use crate::facts::HarnessDeath;
use crate::message::TaskMessage;
use crate::stage::StageClock;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// One publisher of a celery or kombu case: its harness process, one publish at a time.
pub struct PythonPublisher {
    harness: Option<Harness>,
    /// Why this publisher's harness is gone: every publish fails with it.
    dead: Option<PublishError>,
    shared: Arc<Shared>,
    /// Publishes asked for whose answer was not read yet (the engine cancelled them on publish_timeout).
    outstanding: u32,
    /// A write of a command was under way: if still set, it was cancelled part-way.
    writing: bool,
    /// The answer being read; a cancelled read keeps what it had.
    line: Vec<u8>,
    /// py-spy on this publisher's harness (`--profile cpu`, measured phase): the CPU sampler and the
    /// wall-clock one, taking turns.
    turns: Option<Turns>,
    worker: usize,
    /// The case's temporary directory (py-spy writes there).
    dir: Option<PathBuf>,
}

impl PythonPublisher {
    /// Worker `worker`'s publisher on `harness` (`None`: it was not started, and every publish fails);
    /// `dir` is the case's temporary directory.
    pub(super) fn new(
        harness: Option<Harness>,
        shared: Arc<Shared>,
        worker: usize,
        dir: Option<PathBuf>,
    ) -> Self {
        PythonPublisher {
            dead: harness.is_none().then(|| {
                PublishError::new(
                    ErrorKind::Harness,
                    format!("{} was not started", shared.label()),
                )
            }),
            harness,
            shared,
            outstanding: 0,
            writing: false,
            line: Vec::with_capacity(128),
            turns: None,
            worker,
            dir,
        }
    }

    /// Ends the harness (it is dead or out of step), records its death for the case's facts and remembers
    /// why; returns that error, the publisher's last (the engine asks no more of it: [`Publisher::gone`]).
    async fn bury(&mut self, why: &str) -> PublishError {
        let mut message = format!("{} {why}", self.shared.label());
        if let Some(mut h) = self.harness.take() {
            let _ = h.child.start_kill();
            let status = exit_status(&mut h.child).await;
            let last_output = self.shared.clean(&log_tail(&h.log_path));
            message = format!(
                "{} (pid {}) {why} ({status}); {last_output}",
                self.shared.label(),
                h.pid,
            );
            let after_s = self
                .shared
                .measuring_since
                .get()
                .map(|since| since.elapsed().as_secs_f64());
            self.shared
                .deaths
                .lock()
                .expect("not poisoned")
                .push(HarnessDeath {
                    pid: h.pid,
                    after_s,
                    how: format!("{why} ({status})"),
                    last_output,
                });
        }
        let e = PublishError::new(ErrorKind::Harness, self.shared.clean(&message));
        self.dead = Some(e.clone());
        e
    }

    /// Reads one answer line into `self.line` (without the newline). Cancel-safe: a cancelled read keeps
    /// the bytes it had in `self.line` and the next call goes on from there.
    async fn read_answer(&mut self) -> Result<(), PublishError> {
        let h = self.harness.as_mut().expect("checked by the caller");
        if self.line.last() == Some(&b'\n') {
            self.line.clear();
        }
        loop {
            match h.answers.read_until(b'\n', &mut self.line).await {
                Ok(0) => return Err(self.bury("exited in the middle of the case").await),
                Ok(_) if self.line.last() == Some(&b'\n') => {
                    self.line.pop();
                    // Mark the line complete so a later call starts afresh.
                    self.line.push(b'\n');
                    return Ok(());
                }
                Ok(_) => continue,
                Err(e) => return Err(self.bury(&format!("could not be read from: {e}")).await),
            }
        }
    }

    /// The answer in `self.line`, applied to `clock`.
    fn take_answer(&mut self, clock: &mut StageClock) -> Result<(), PublishError> {
        let line = &self.line[..self.line.len().saturating_sub(1)];
        let text = std::str::from_utf8(line).unwrap_or("");
        match protocol::answer(text) {
            Answer::Published { latency_ns, stages } => {
                clock.set_measured(latency_ns, stages);
                Ok(())
            }
            Answer::Failed { kind, message } => Err(PublishError::new(
                kind,
                self.shared
                    .clean(&format!("{}: {message}", self.shared.client)),
            )),
            Answer::Garbled => Err(self.garbled(text)),
        }
    }

    fn garbled(&self, text: &str) -> PublishError {
        PublishError::new(
            ErrorKind::Harness,
            self.shared.clean(&format!(
                "{} answered {:?}, which taskbench cannot read",
                self.shared.label(),
                text.chars().take(200).collect::<String>()
            )),
        )
    }
}

impl Publisher for PythonPublisher {
    async fn publish(
        &mut self,
        _batch: &[TaskMessage],
        clock: &mut StageClock,
    ) -> Result<(), PublishError> {
        if let Some(e) = &self.dead {
            return Err(e.clone());
        }
        if self.writing {
            return Err(self.bury("was cut off in the middle of a command").await);
        }
        // Answers to publishes the engine gave up on (publish_timeout): read and drop them first, so that
        // this publish gets its own answer.
        while self.outstanding > 0 {
            self.read_answer().await?;
            self.outstanding -= 1;
        }
        self.writing = true;
        let h = self.harness.as_mut().expect("not dead");
        if let Err(e) = h.commands.write_all(protocol::PUBLISH).await {
            self.writing = false;
            return Err(self
                .bury(&format!("stopped reading its commands ({e})"))
                .await);
        }
        self.writing = false;
        self.outstanding += 1;
        self.read_answer().await?;
        self.outstanding -= 1;
        self.take_answer(clock)
    }

    fn gone(&self) -> bool {
        self.dead.is_some()
    }

    async fn measuring(&mut self) {
        self.shared
            .measuring_since
            .get_or_init(std::time::Instant::now);
        let spy = self.shared.spy.lock().expect("not poisoned").clone();
        if let (Some(spy), Some(h), Some(dir)) = (spy, &self.harness, &self.dir) {
            self.turns = Some(Turns::start(spy, h.pid, dir.clone(), self.worker));
        }
    }

    async fn close(&mut self) {
        // The turn under way stops before the harness quits, so that the samples are of the publishes.
        if let Some(turns) = self.turns.take() {
            for (sampling, profile) in turns.stop().await {
                if let Err(why) = &profile {
                    tracing::warn!("no {}: {why}", sampling.profile_name());
                }
                self.shared
                    .profiles
                    .lock()
                    .expect("not poisoned")
                    .push((sampling, profile));
            }
        }
        let Some(mut h) = self.harness.take() else {
            return;
        };
        if let Some(stats) = h.quit().await {
            self.shared.stats.lock().expect("not poisoned").push(stats);
        }
        h.reap().await;
    }
}
