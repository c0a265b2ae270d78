//! Once per timeline interval while a case runs, off the publishers' path: the resource sampler's reading
//! of the processes that publish (taskbench, a Python client's harnesses) and of the broker, and the live
//! view's update. Nothing here runs per publish: it reads counters the publishers already keep, the
//! closed intervals the recorders already hand over, and /proc.

use super::publish_loop::{Shared, progress_totals};
use super::traits::{BrokerProbe, LiveInterval, LiveView};
use crate::resources::{ResourceSample, ResourceSeries, Sampler, Watched};
use crate::scenario::Case;
use std::time::Duration;
use tokio::time::Instant;

/// How long a broker may take to say how much memory it holds before the interval's reading goes without.
const BROKER_WAIT: Duration = Duration::from_millis(500);

/// How often the start of the measured run is looked for during the warm-up.
const START_POLL: Duration = Duration::from_millis(20);

/// The sampler of one case and what it read so far.
pub(super) struct Watch<'a> {
    sampler: Sampler,
    pub(super) series: ResourceSeries,
    case: &'a Case,
    live: Option<&'a dyn LiveView>,
    broker: Option<BrokerProbe>,
}

impl<'a> Watch<'a> {
    /// Watches taskbench's own process and `others` (a Python client's harnesses), and the broker through
    /// `broker` (see [`Target::broker_memory`](super::Target::broker_memory)).
    pub(super) fn new(
        case: &'a Case,
        others: Vec<Watched>,
        broker: Result<Option<BrokerProbe>, String>,
        live: Option<&'a dyn LiveView>,
    ) -> Self {
        let mut watched = vec![Watched {
            name: "taskbench".into(),
            pid: std::process::id(),
        }];
        watched.extend(others);
        Watch {
            series: ResourceSeries {
                processes: watched.clone(),
                samples: Vec::new(),
                broker_unmeasured: broker.as_ref().err().cloned(),
            },
            sampler: Sampler::new(watched),
            case,
            live,
            broker: broker.ok().flatten(),
        }
    }

    /// Reads every process and the broker now and hands the reading to the live view (once the measured
    /// run started).
    pub(super) async fn sample(&mut self, shared: &Shared) {
        let processes = self.sampler.read();
        let asked = self.broker.as_mut().map(|probe| probe());
        let answer = match asked {
            Some(asked) => Some(tokio::time::timeout(BROKER_WAIT, asked).await),
            None => None,
        };
        let broker = match answer {
            None => None,
            Some(Ok(Ok(b))) => Some(b),
            Some(Ok(Err(why))) => {
                self.series.broker_unmeasured.get_or_insert(why);
                None
            }
            Some(Err(_)) => {
                self.series.broker_unmeasured.get_or_insert(format!(
                    "the broker did not report its memory within {}",
                    humantime::format_duration(BROKER_WAIT)
                ));
                None
            }
        };
        let (ok, failed) = progress_totals(&shared.progress);
        let at = shared
            .start
            .get()
            .map(|s| Instant::now().saturating_duration_since(*s));
        self.series.samples.push(ResourceSample {
            at,
            publishes: ok + failed,
            processes,
            broker,
        });
        if let (Some(view), Some(_)) = (self.live, at) {
            let latency = shared.recorders.closed_latency();
            view.interval(
                self.case,
                &LiveInterval {
                    ok,
                    failed,
                    in_flight: shared.in_flight(),
                    latency: latency.as_ref(),
                    processes: self.sampler.watched(),
                    sample: self.series.samples.last().expect("pushed above"),
                },
            );
        }
    }

    /// Samples once per interval until dropped: during the warm-up every `interval` (those readings are
    /// not measured), then at the measured run's start and at the end of each of its intervals.
    pub(super) async fn run(&mut self, shared: &Shared) {
        let interval = shared.interval;
        let start = loop {
            self.sample(shared).await;
            let next = Instant::now() + interval;
            while Instant::now() < next && shared.start.get().is_none() {
                tokio::time::sleep(START_POLL.min(interval)).await;
            }
            if let Some(start) = shared.start.get() {
                break *start;
            }
        };
        self.sample(shared).await;
        for k in 1u32.. {
            tokio::time::sleep_until(start + interval * k).await;
            self.sample(shared).await;
        }
    }

    /// The series, once the case ended (a reading at the end taken by the caller); a broker measured at
    /// some reading needs no reason why not.
    pub(super) fn into_series(mut self) -> ResourceSeries {
        if self.series.samples.iter().any(|s| s.broker.is_some()) {
            self.series.broker_unmeasured = None;
        }
        self.series
    }
}
