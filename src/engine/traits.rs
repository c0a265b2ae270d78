//! What the engine drives and reports to: the [`Publisher`] and [`Target`] traits a backend implements, and
//! the [`ProgressView`] a running case reports its progress to.

use crate::error::PublishError;
use crate::facts::CaseFacts;
use crate::message::TaskMessage;
use crate::record::{CaseResult, Recorder};
use crate::resources::{BrokerMemory, ResourceSample, Watched};
use crate::scenario::Case;
use crate::stage::StageClock;
use std::future::Future;
use std::time::Duration;

/// One publisher: a connection (or none yet) and the code path that pushes messages through it.
///
/// A publish may be cancelled at any await point (by `publish_timeout` or an interrupt); the next call must
/// notice and recover (e.g. drop a stream a frame was half written to).
pub trait Publisher: Send + 'static {
    /// How many messages one call to [`Publisher::publish`] carries (a pipeline); 1 for most paths.
    fn batch_size(&self) -> usize {
        1
    }

    /// Publishes every message of `batch`, timing each stage on `clock`; returns when all are done.
    fn publish(
        &mut self,
        batch: &[TaskMessage],
        clock: &mut StageClock,
    ) -> impl Future<Output = Result<(), PublishError>> + Send;

    /// Whether the publisher can publish no more (a Python publisher whose harness process died). The
    /// engine asks after a failed publish, counts that one failure and calls it no more; the case goes on
    /// with the others.
    fn gone(&self) -> bool {
        false
    }

    /// Called once after the warm-up and the start barrier, just before the first measured publish (a
    /// Python publisher attaches its profiler here, so imports and warm-up are not sampled).
    fn measuring(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Closes what the publisher holds, after its last publish (not timed).
    fn close(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Whether a message is done only after its publish call returned (a confirm window: at its own ack).
    /// The engine then records a call's stages only, and each message when [`Publisher::settled`] hands
    /// it over.
    fn deferred(&self) -> bool {
        false
    }

    /// A deferred publisher's messages settled since the last call, into `rec`: each one's latency (and
    /// `ok`) or its error.
    fn settled(&mut self, _rec: &mut Recorder) {}

    /// A deferred publisher waits up to `within` for every message it sent to settle (after the warm-up
    /// and after the last measured publish); what is still unsettled then counts as an error.
    fn settle_all(&mut self, _within: Duration) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// What a case publishes to: it sets the backend up, makes publishers, and counts what arrived.
pub trait Target: Send + 'static {
    type Publisher: Publisher;

    /// Gets the backend ready (start a sink, declare and measure a queue).
    fn prepare(&mut self) -> impl Future<Output = Result<(), PublishError>> + Send;

    /// A publisher for worker `worker`; it connects on its first publish.
    fn publisher(&self, worker: usize) -> Self::Publisher;

    /// After every publisher closed: how many messages arrived since `prepare`, or `None` if the backend
    /// cannot tell. `expected` publishes reported success, so a backend may wait for that many to land.
    fn delivered(
        &mut self,
        expected: u64,
    ) -> impl Future<Output = Result<Option<u64>, PublishError>> + Send;

    /// Cleans up (purge queues, stop the sink).
    fn finish(&mut self) -> impl Future<Output = ()> + Send;

    /// Things a reader of this case's numbers must know: the same words for every case on this path (a
    /// figure belongs in [`Target::facts`]).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }

    /// What the backend counted besides latency, read once the case has finished.
    fn facts(&self) -> CaseFacts {
        CaseFacts::default()
    }

    /// A CPU profile the target recorded itself (folded stacks in ns), after `finish`; `None` for targets
    /// whose publishers taskbench's spans profile.
    fn cpu_profile(&mut self) -> Option<String> {
        None
    }

    /// The processes besides taskbench's own that publish for this case (a Python client's harnesses),
    /// named for output, read once after `prepare` for the resource sampler.
    fn processes(&self) -> Vec<Watched> {
        Vec::new()
    }

    /// How to ask the broker for its memory as it reports it, read once after `prepare`; the probe is
    /// called once per interval while the case runs (never per publish). `Ok(None)` when the case has no
    /// broker, `Err` saying why its memory is not measured (not on this machine, not measured for this
    /// broker).
    fn broker_memory(&self) -> Result<Option<BrokerProbe>, String> {
        Ok(None)
    }

    /// A wall-clock profile the target sampled itself, waiting included (folded stacks in ns), after
    /// `finish`: py-spy's idle-inclusive samples of a celery or kombu case's harnesses, the `pywall` view;
    /// `None` for every other target.
    fn pywall_profile(&mut self) -> Option<String> {
        None
    }

    /// What carries out the case's timed events (`[[case.fault]]`, `[[case.event]]`); `None` when the target has none to
    /// carry out.
    fn events(&self) -> Option<std::sync::Arc<dyn super::CaseEvents>> {
        None
    }
}

/// Asks a broker for its memory: each call a new request, answered with the figure or why there is none.
pub type BrokerProbe = Box<
    dyn FnMut() -> std::pin::Pin<Box<dyn Future<Output = Result<BrokerMemory, String>> + Send>>
        + Send,
>;

/// Receives a running case's progress (the terminal shows it as a bar).
pub trait ProgressView: Send + Sync {
    /// A case starts; `total` measured publishes if bounded by count, `duration` if bounded by time.
    fn start(&self, case: &str, total: Option<u64>, duration: Option<Duration>);
    /// Measured publishes so far: `ok` succeeded, `failed` did not; and the latency of the newest interval
    /// of the timeline closed with successes in it (`None` until one is).
    fn update(&self, ok: u64, failed: u64, latest: Option<IntervalLatency>);
    /// The case ended.
    fn finish(&self);
}

/// The latency of a running case's newest closed interval with successes in it, as a progress view gets it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntervalLatency {
    /// The interval's index in the timeline (`CaseResult::timeline`).
    pub index: u64,
    /// The timeline's interval length.
    pub length: Duration,
    /// p99 of the interval's successful publishes (ns).
    pub p99: u64,
    /// How long ago the interval ended: under `length` while publishes keep ending, growing past it when
    /// nothing newer closed (a stall, or publishes that end seldom).
    pub ended_ago: Duration,
}

/// A running case as a live view (the metrics endpoint) sees it once per interval, from the engine's cold
/// per-interval path: counters any thread reads without a lock, the closed intervals' latencies and the
/// resource sampler's newest reading.
#[derive(Debug)]
pub struct LiveInterval<'a> {
    /// Measured publishes that succeeded and failed so far.
    pub ok: u64,
    pub failed: u64,
    /// Publishes claimed but not ended.
    pub in_flight: u64,
    /// Every successful measured publish of the intervals every thread has closed (ns); `None` before the
    /// first.
    pub latency: Option<&'a hdrhistogram::Histogram<u64>>,
    /// The processes the sampler watches, and its newest reading of them.
    pub processes: &'a [Watched],
    pub sample: &'a ResourceSample,
}

/// Receives a running case's figures once per interval and its final result (the metrics endpoint).
pub trait LiveView: Send + Sync {
    /// A case starts.
    fn start(&self, case: &Case);
    /// The case's figures at the end of an interval.
    fn interval(&self, case: &Case, live: &LiveInterval<'_>);
    /// The case ended with `result` (its final figures).
    fn finish(&self, result: &CaseResult);
}
