//! [`PythonPublisher`]: one publisher of a celery or kombu case, driving its harness with `p` commands and
//! reading the answers the harness measured. In a closed loop it pipelines: the next command waits in the
//! pipe while the harness publishes, so the harness never waits for taskbench between publishes, and each
//! answer is handed to the engine's recorder as a deferred publish, one by one and exactly; in an open loop
//! each publish is one command sent at its intended start and its own answer. It also recovers from a
//! publish the engine cancelled, samples the harness with py-spy over the measured publishes (the cpu and
//! pywall samplers taking turns), and stops for good when its harness dies.

use super::harness::{Harness, exit_status, log_tail};
use super::protocol::{self, Answer};
use super::target::Shared;
use super::turns::Turns;
use crate::engine::Publisher;
use crate::error::{ErrorKind, PublishError};
use crate::facts::HarnessDeath;
use crate::message::TaskMessage;
use crate::record::{ErrorCounts, Recorder};
use crate::stage::StageClock;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// Closed loop: how much publishing the commands written and unanswered cover, at the harness's recent
/// latency: the publish in flight and the next ones, queued in the pipe. The harness writes its answers in
/// batches, at most 8 ms apart (harness.py's FLUSH_NS), and taskbench's thread may be slow to be scheduled
/// on a loaded machine: the harness should still find its next command waiting. At a stop the harness
/// finishes these, about this long, and each is recorded.
const AHEAD_NS: u64 = 24_000_000;
/// The fewest and the most commands kept unanswered in a closed loop.
const WINDOW_MIN: u64 = 2;
const WINDOW_MAX: u64 = 128;

/// One publisher of a celery or kombu case: its harness process and the commands it has in flight.
pub struct PythonPublisher {
    harness: Option<Harness>,
    /// Why this publisher's harness is gone: every publish fails with it.
    dead: Option<PublishError>,
    shared: Arc<Shared>,
    /// Commands written whose answers count (oldest first), then `dropped` newer ones whose answers are
    /// read and thrown away: their publish was counted already (cancelled by the engine, or given up
    /// waiting for by `settle_all`).
    owed: u32,
    dropped: u32,
    /// Set while a publish call runs: still set when the next call begins, the engine cancelled that call
    /// (publish_timeout), and `wrote_own` says whether its command was written.
    in_call: bool,
    wrote_own: bool,
    /// A write of a command was under way: if still set, it was cancelled part-way.
    writing: bool,
    /// The answer being read; a cancelled read keeps what it had.
    line: Vec<u8>,
    /// Pipelined: the answers read and not yet handed to the engine (`settled`), the first `answered` of
    /// `clocks` (each holding one publish's latency and stages), and their errors. The engine takes them
    /// after every call, which reads one answer once the window is full, so the pool grows to a few clocks
    /// early in the case and never again.
    clocks: Vec<StageClock>,
    answered: usize,
    errors: ErrorCounts,
    /// Pipelined: answered successes of the warm-up not yet handed over; the warm-up ends at `measuring`.
    warm_ok: u64,
    /// Pipelined: the harness's recent latency (ns, a moving average of its answers), and how many
    /// commands cover [`AHEAD_NS`] at it.
    recent_ns: u64,
    window: u32,
    warm: bool,
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
            owed: 0,
            dropped: 0,
            in_call: false,
            wrote_own: false,
            writing: false,
            line: Vec::with_capacity(128),
            clocks: Vec::new(),
            answered: 0,
            errors: ErrorCounts::default(),
            warm_ok: 0,
            recent_ns: AHEAD_NS,
            window: WINDOW_MIN as u32,
            warm: true,
            turns: None,
            worker,
            dir,
        }
    }

    /// Ends the harness (it is dead or out of step), records its death for the case's facts and remembers
    /// why; returns that error, the publisher's last (the engine asks no more of it: [`Publisher::gone`]).
    async fn bury(&mut self, why: &str) -> PublishError {
        let mut message = format!("{} {why}", self.shared.label());
        // Dead from here on, also if this call is cancelled while it waits for the exit below.
        self.dead = Some(PublishError::new(
            ErrorKind::Harness,
            self.shared.clean(&message),
        ));
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
        let text = text_of(&self.line);
        match protocol::answer(text) {
            Answer::Published { latency_ns, stages } => {
                clock.set_measured(latency_ns, stages);
                Ok(())
            }
            Answer::Failed { kind, message } => Err(self.failed(kind, &message)),
            Answer::Garbled => Err(self.garbled(text)),
        }
    }

    fn failed(&self, kind: ErrorKind, message: &str) -> PublishError {
        PublishError::new(
            kind,
            self.shared
                .clean(&format!("{}: {message}", self.shared.client)),
        )
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

    /// Reads the oldest unanswered command's answer: an owed one is kept for [`Publisher::settled`], a
    /// dropped one thrown away.
    async fn next_answer(&mut self) -> Result<(), PublishError> {
        self.read_answer().await?;
        if self.owed == 0 {
            self.dropped -= 1;
            return Ok(());
        }
        self.owed -= 1;
        let text = text_of(&self.line);
        let answer = protocol::answer(text);
        self.recent_ns = match answer {
            Answer::Published { latency_ns, .. } => (self.recent_ns * 7 + latency_ns) / 8,
            // A failing publish may take long (a broker gone): queue the fewest behind it until publishes
            // succeed again, so that a stop is not held by a queue of failures.
            _ => AHEAD_NS / WINDOW_MIN,
        };
        self.window = (AHEAD_NS / self.recent_ns.max(1)).clamp(WINDOW_MIN, WINDOW_MAX) as u32;
        let failure = match answer {
            Answer::Published { latency_ns, .. }
                if latency_ns > self.shared.publish_timeout.as_nanos() as u64 =>
            {
                // What the engine would have cancelled, had the publish been its call alone.
                Some(PublishError::timed_out(self.shared.publish_timeout))
            }
            Answer::Published { .. } if self.warm => {
                self.warm_ok += 1;
                None
            }
            Answer::Published { latency_ns, stages } => {
                if self.answered == self.clocks.len() {
                    self.clocks.push(StageClock::new(true));
                }
                self.clocks[self.answered].set_measured(latency_ns, stages);
                self.answered += 1;
                None
            }
            Answer::Failed { kind, message } => Some(self.failed(kind, &message)),
            Answer::Garbled => Some(self.garbled(text)),
        };
        if let Some(e) = failure {
            self.errors.add(&e, 1);
        }
        Ok(())
    }

    /// If the engine cancelled the last call (publish_timeout), it counted that call's publish: the answer
    /// to its command, if written, is no one's now. It is the newest command written, so it joins the
    /// dropped ones (there were none: see `call`).
    fn forget_cancelled(&mut self) {
        if self.in_call && self.wrote_own {
            self.owed -= 1;
            self.dropped += 1;
        }
        self.in_call = false;
        self.wrote_own = false;
    }

    /// One call's work; `pipelined`: return once the window has room, else once this command's own answer
    /// is in.
    async fn call(&mut self, clock: &mut StageClock, pipelined: bool) -> Result<(), PublishError> {
        // Answers to publishes already counted (the engine cancelled them, or settle_all gave up on them)
        // come first: read them, and keep those still owed, so this publish gets its own answer.
        while self.dropped > 0 {
            self.next_answer().await?;
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
        self.owed += 1;
        self.wrote_own = true;
        if pipelined {
            // This call's own publish is handed over later (`settled`); the clock holds nothing of it.
            clock.discard();
            while self.owed >= self.window {
                self.next_answer().await?;
            }
            return Ok(());
        }
        self.read_answer().await?;
        self.owed -= 1;
        self.take_answer(clock)
    }
}

/// A complete answer line (its newline kept as the mark of completeness) as text, without the newline.
fn text_of(line: &[u8]) -> &str {
    std::str::from_utf8(&line[..line.len().saturating_sub(1)]).unwrap_or("")
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
        self.forget_cancelled();
        self.in_call = true;
        let pipelined = self.shared.pipelined;
        let out = self.call(clock, pipelined).await;
        if let (Err(e), true) = (&out, self.dead.is_some() && pipelined) {
            // The harness died: the commands it was given before this call's own are lost with it.
            let lost = self.owed - u32::from(self.wrote_own);
            if lost > 0 {
                self.errors.add(e, u64::from(lost));
            }
            (self.owed, self.dropped) = (0, 0);
        }
        self.in_call = false;
        out
    }

    fn deferred(&self) -> bool {
        self.shared.pipelined
    }

    fn settled(&mut self, rec: &mut Recorder) {
        if self.warm_ok > 0 {
            // The warm-up's successes (the engine hands them a recorder of their own): counted, not timed.
            rec.ok += std::mem::take(&mut self.warm_ok);
        }
        for clock in &mut self.clocks[..self.answered] {
            rec.record_latency(clock.take_measured().unwrap_or(0));
            clock.drain(|stage, ns| rec.record_stage(stage, ns, 1));
        }
        self.answered = 0;
        if self.errors.total() > 0 {
            rec.errors.merge(&std::mem::take(&mut self.errors));
        }
    }

    async fn settle_all(&mut self, within: Duration) {
        self.forget_cancelled();
        if self.dead.is_some() || self.owed == 0 {
            return;
        }
        let answers = async {
            while self.owed > 0 {
                self.next_answer().await?;
            }
            Ok::<(), PublishError>(())
        };
        let out = tokio::time::timeout(within, answers).await;
        if self.owed > 0 {
            // Given up on (or lost with the harness): each is an error, and its late answer is dropped.
            let e = match out {
                Ok(Err(e)) => e,
                _ => PublishError::timed_out(within),
            };
            self.errors.add(&e, u64::from(self.owed));
            if self.dead.is_none() {
                self.dropped += self.owed;
            }
            self.owed = 0;
        }
    }

    fn gone(&self) -> bool {
        self.dead.is_some()
    }

    async fn measuring(&mut self) {
        self.warm = false;
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
