//! The floor of a case's backend: the simplest client doing the same unit of work as one publish, with no
//! taskbench machinery (no runtime, no ids renewed, no stage clock, no recorder), on a plain thread. `run`
//! measures it right before each case when the scenario asks (`floor = true`, `run --floor`), so every
//! case's p50 and throughput can be read as a ratio to what the machine did at that moment.
//!
//! - local backends (`local.rs`): a bare loop writing the case's frame with one `write()` each to a reader
//!   thread over the same transport (a Unix socket pair, a loopback TCP connection, a FIFO);
//! - `redis` (`redis.rs`): a blocking socket writing one `LPUSH` of the case's envelope and reading its
//!   reply, to a list of its own that it deletes after;
//! - `amqp` (`amqp.rs`): a blocking socket speaking AMQP with lapin's codec: one `basic.publish` of the
//!   case's message to a queue of its own, its confirm read as the case's `confirm` says.

mod amqp;
mod local;
mod redis;

use crate::engine::Stop;
use crate::record::{Floor, new_histogram};
use crate::scenario::{BackendOptions, Case};
use std::io;
use std::time::{Duration, Instant};

/// Measures the floor of `case`'s backend: as many units as the case's warm-up and publishes (or for its
/// duration), one at a time, ended early by `stop`.
pub async fn measure(case: &Case, stop: &Stop) -> Floor {
    let plan = Plan {
        warmup: case.warmup,
        units: case.publishes,
        duration: case.duration,
        stop: stop.clone(),
    };
    let (client, work): (&str, Work) = match &case.options {
        BackendOptions::Local(_) => {
            let frame = crate::message::TaskMessage::new(case.task.clone())
                .frame()
                .to_vec();
            let backend = case.backend;
            (
                local::CLIENT,
                Box::new(move |plan| local::measure(backend, &frame, plan)),
            )
        }
        BackendOptions::Redis(o) => {
            let target = redis::FloorTarget::of(case, o);
            (redis::CLIENT, Box::new(move |plan| target?.measure(plan)))
        }
        BackendOptions::Amqp(o) => {
            if let Some(why) = amqp::not_measured(o) {
                return Floor::unavailable("none", why);
            }
            let target = amqp::FloorTarget::of(case, o);
            (
                amqp::client(o.confirm),
                Box::new(move |plan| target?.measure(plan)),
            )
        }
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("taskbench-floor".into())
        .spawn(move || {
            let _ = tx.send(work(plan));
        });
    let measured = match spawned {
        Ok(_) => rx.await.unwrap_or_else(|_| {
            Err(io::Error::other(
                "the floor's thread ended without a result",
            ))
        }),
        Err(e) => Err(e),
    };
    match measured {
        Ok(m) => Floor {
            client: client.to_string(),
            units: m.units,
            elapsed: m.elapsed,
            latency: m.latency,
            unavailable: None,
        },
        Err(e) => Floor::unavailable(client, format!("the floor failed: {e}")),
    }
}

/// A floor loop, run on its own thread.
type Work = Box<dyn FnOnce(Plan) -> io::Result<Measured> + Send>;

/// How much work the floor does.
struct Plan {
    warmup: u64,
    units: Option<u64>,
    duration: Option<Duration>,
    stop: Stop,
}

/// What a floor loop measured.
struct Measured {
    units: u64,
    elapsed: Duration,
    latency: hdrhistogram::Histogram<u64>,
}

impl Plan {
    /// Runs `unit` `warmup` times untimed, then times each of the measured units: until `units` are done,
    /// the duration is over, or a stop is asked for.
    fn run(&self, mut unit: impl FnMut() -> io::Result<()>) -> io::Result<Measured> {
        for _ in 0..self.warmup {
            if self.stop.requested() {
                break;
            }
            unit()?;
        }
        let mut latency = new_histogram();
        let limit = self.units.unwrap_or(u64::MAX);
        let start = Instant::now();
        let deadline = self.duration.map(|d| start + d);
        let mut units = 0;
        let mut last = start;
        while units < limit && !self.stop.requested() {
            unit()?;
            let end = Instant::now();
            latency.saturating_record((end - last).as_nanos() as u64);
            units += 1;
            last = end;
            if deadline.is_some_and(|d| end >= d) {
                break;
            }
        }
        Ok(Measured {
            units,
            elapsed: last - start,
            latency,
        })
    }
}
