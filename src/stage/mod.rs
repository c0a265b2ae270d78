//! Stages of one publish and the clock that times them: the single call site every view of a publish reads.
//!
//! A publisher wraps each part of a publish in [`StageClock::time`] (async) or [`StageClock::time_sync`].
//! The clock accumulates wall time per stage for the publish in flight (the engine hands the totals to the
//! recorder when the publish ends), and on a sampled publish runs the stage inside its `tracing` span: the
//! histograms, the wall flamegraph and the CPU flamegraph all come from these same calls.

pub mod spans;
use std::future::Future;
use tokio::time::Instant;
use tracing::Instrument;

named_enum! {
    /// A named part of one publish. The order here is the order stages are listed in output.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum Stage {
        /// Open a connection (TCP/Unix connect, AMQP handshake, Redis connect), the TLS handshake excepted.
        Connect => "connect",
        /// The TLS handshake after the TCP connect (`amqps://`, `rediss://`), before the protocol's own.
        Tls => "tls",
        /// A client greeting after connecting (kombu's PING on Redis).
        Handshake => "handshake",
        /// Open an AMQP channel.
        Channel => "channel",
        /// Declare exchange/queue (AMQP) or the queue-length check kombu does (Redis).
        Declare => "declare",
        /// Bind the queue (AMQP binding, kombu's binding SADD on Redis).
        Bind => "bind",
        /// Check a connection or producer out of a pool.
        Acquire => "acquire",
        /// A Python client's own option and header assembly around the publish: what Celery's
        /// `apply_async` (with `send_task` and its message sender) and kombu's `Producer.publish` do between
        /// the calls timed as other stages (docs/python-clients.md).
        Options => "options",
        /// Ask the app's router where the task goes (Celery's `Router.route`).
        Route => "route",
        /// Build the message for this publish (fresh task id, envelope).
        Encode => "encode",
        /// Render the task's arguments as text for the message's `argsrepr`/`kwargsrepr` headers (Celery's
        /// `saferepr`).
        Argsrepr => "argsrepr",
        /// Run the publish signals' handlers, the user's own included (Celery's `before_task_publish` and
        /// `after_task_publish`).
        Signals => "signals",
        /// Put the message on the wire (and, where the protocol answers, read the reply).
        Send => "send",
        /// Wait for the broker's publisher confirm.
        Confirm => "confirm",
        /// Return a connection or producer to its pool.
        Release => "release",
        /// Close a channel or connection opened for this publish.
        Close => "close",
        /// Build the handle the client returns for the published task (Celery's `AsyncResult`).
        Result => "result",
    }
}

/// How many stages there are; arrays indexed by stage have this length.
pub const STAGE_COUNT: usize = Stage::COUNT;

// `StageClock::touched` holds one bit per stage.
const _: () = assert!(STAGE_COUNT <= u32::BITS as usize);

impl Stage {
    /// Position in [`Stage::ALL`], for indexing per-stage arrays.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Accumulates the wall time of each stage of the publish in flight.
///
/// Stages are timed as laps: a stage runs from the end of the previous one (or the publish's start, given to
/// [`StageClock::begin`]) to its own end, so each stage costs one clock read, and the little code between two
/// stages counts toward the second.
#[derive(Debug)]
pub struct StageClock {
    enabled: bool,
    elapsed_ns: [u64; STAGE_COUNT],
    touched: u32,
    lap: Option<Instant>,
    traced: bool,
    /// The latency of the publish in flight as another process measured it ([`StageClock::set_measured`]).
    measured: Option<u64>,
}

impl StageClock {
    /// A clock that times stages when `enabled`, and otherwise only runs them.
    pub fn new(enabled: bool) -> Self {
        StageClock {
            enabled,
            elapsed_ns: [0; STAGE_COUNT],
            touched: 0,
            lap: None,
            traced: false,
            measured: None,
        }
    }

    /// Replaces what was timed for the publish in flight with what another process measured (a Python
    /// harness): the publish's latency, and the nanoseconds of each stage (kept only when stage timing is
    /// on). The engine then records `latency_ns` instead of its own reading, and reads its own end time.
    pub fn set_measured(
        &mut self,
        latency_ns: u64,
        stages: impl IntoIterator<Item = (Stage, u64)>,
    ) {
        self.elapsed_ns = [0; STAGE_COUNT];
        self.touched = 0;
        if self.enabled {
            for (stage, ns) in stages {
                self.elapsed_ns[stage.index()] += ns;
                self.touched |= 1 << stage.index();
            }
        }
        self.lap = None;
        self.measured = Some(latency_ns);
    }

    /// The latency [`StageClock::set_measured`] gave the publish in flight, once.
    #[inline]
    pub fn take_measured(&mut self) -> Option<u64> {
        self.measured.take()
    }

    /// Whether the stages of the current publish also run inside `tracing` spans (a sampled publish).
    #[inline]
    pub fn set_traced(&mut self, traced: bool) {
        self.traced = traced;
    }

    /// Marks the start of a publish at `at` (a time the caller already read), so its first stage costs
    /// one clock read.
    #[inline]
    pub fn begin(&mut self, at: Instant) {
        if self.enabled {
            self.lap = Some(at);
        }
    }

    /// Whether stage times are being taken.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Runs `work` as `stage` of the current publish.
    pub async fn time<F: Future>(&mut self, stage: Stage, work: F) -> F::Output {
        if self.traced {
            // Laps as on every publish, so stages still add up to the latency; a traced publish's stages
            // include the spans' own cost (the traced share is small, see profile_sample).
            let start = self.enabled.then(|| self.lap.unwrap_or_else(Instant::now));
            let out = work.instrument(spans::stage_span(stage)).await;
            if let Some(start) = start {
                self.end_lap(stage, start);
            }
            return out;
        }
        let start = self.enabled.then(|| self.lap.unwrap_or_else(Instant::now));
        let out = work.await;
        if let Some(start) = start {
            self.end_lap(stage, start);
        }
        out
    }

    /// Runs synchronous `work` as `stage` of the current publish.
    pub fn time_sync<R>(&mut self, stage: Stage, work: impl FnOnce() -> R) -> R {
        if self.traced {
            let start = self.enabled.then(|| self.lap.unwrap_or_else(Instant::now));
            let out = spans::stage_span(stage).in_scope(work);
            if let Some(start) = start {
                self.end_lap(stage, start);
            }
            return out;
        }
        let start = self.enabled.then(|| self.lap.unwrap_or_else(Instant::now));
        let out = work();
        if let Some(start) = start {
            self.end_lap(stage, start);
        }
        out
    }

    #[inline]
    fn end_lap(&mut self, stage: Stage, start: Instant) {
        let end = Instant::now();
        self.elapsed_ns[stage.index()] += end.saturating_duration_since(start).as_nanos() as u64;
        self.touched |= 1 << stage.index();
        self.lap = Some(end);
    }

    /// When the last stage of the current publish ended, if stages are being timed.
    #[inline]
    pub fn last_lap(&self) -> Option<Instant> {
        self.lap
    }

    /// Hands over the stages timed since the last call, as (stage, nanoseconds), and resets the clock.
    pub fn drain(&mut self, mut each: impl FnMut(Stage, u64)) {
        let mut touched = self.touched;
        while touched != 0 {
            let i = touched.trailing_zeros() as usize;
            touched &= touched - 1;
            each(Stage::ALL[i], self.elapsed_ns[i]);
            self.elapsed_ns[i] = 0;
        }
        self.touched = 0;
        self.lap = None;
        self.measured = None;
    }

    /// Forgets the stages timed since the last drain (a failed publish records none).
    pub fn discard(&mut self) {
        self.drain(|_, _| {});
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_list_matches_indices() {
        for (i, stage) in Stage::ALL.iter().enumerate() {
            assert_eq!(stage.index(), i, "{} out of place", stage.name());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn clock_accumulates_per_stage_and_resets() {
        let mut clock = StageClock::new(true);
        clock
            .time(
                Stage::Send,
                tokio::time::sleep(std::time::Duration::from_millis(3)),
            )
            .await;
        clock
            .time(
                Stage::Send,
                tokio::time::sleep(std::time::Duration::from_millis(2)),
            )
            .await;
        clock.time_sync(Stage::Encode, || ());
        let mut seen = Vec::new();
        clock.drain(|s, ns| seen.push((s, ns)));
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].0, Stage::Encode);
        assert_eq!(seen[1], (Stage::Send, 5_000_000));
        let mut again = 0;
        clock.drain(|_, _| again += 1);
        assert_eq!(again, 0, "drain resets the clock");
    }

    #[tokio::test(start_paused = true)]
    async fn laps_start_where_the_publish_began() {
        let mut clock = StageClock::new(true);
        let publish_start = Instant::now();
        tokio::time::sleep(std::time::Duration::from_millis(4)).await;
        clock.begin(publish_start);
        clock
            .time(
                Stage::Connect,
                tokio::time::sleep(std::time::Duration::from_millis(1)),
            )
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        clock
            .time(
                Stage::Send,
                tokio::time::sleep(std::time::Duration::from_millis(3)),
            )
            .await;
        let mut seen = Vec::new();
        clock.drain(|s, ns| seen.push((s, ns / 1_000_000)));
        assert_eq!(
            seen,
            [(Stage::Connect, 5), (Stage::Send, 5)],
            "gaps count toward the next stage"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_measured_publish_replaces_what_was_timed_here() {
        let mut clock = StageClock::new(true);
        clock.begin(Instant::now());
        clock.time_sync(Stage::Encode, || ());
        clock.set_measured(900, [(Stage::Acquire, 100), (Stage::Send, 500)]);
        assert_eq!(clock.last_lap(), None, "the engine reads its own end time");
        assert_eq!(clock.take_measured(), Some(900));
        assert_eq!(clock.take_measured(), None);
        let mut seen = Vec::new();
        clock.drain(|s, ns| seen.push((s, ns)));
        assert_eq!(seen, [(Stage::Acquire, 100), (Stage::Send, 500)]);
    }

    #[tokio::test]
    async fn disabled_clock_records_nothing() {
        let mut clock = StageClock::new(false);
        clock.begin(Instant::now());
        assert_eq!(
            clock.last_lap(),
            None,
            "the engine must read its own end time"
        );
        clock.time(Stage::Send, async {}).await;
        let mut n = 0;
        clock.drain(|_, _| n += 1);
        assert_eq!(n, 0);
    }
}
