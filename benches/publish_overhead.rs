//! What the engine adds to every publish, without any I/O: encoding a message (fresh ids written into the
//! envelope) and stage timing (the clock's laps and the histogram records). End-to-end throughput on this
//! machine varies by +-15% between identical runs; this isolates the per-publish nanoseconds.
//!
//!     cargo bench --bench publish_overhead

use std::hint::black_box;
use std::time::{Duration, Instant};
use taskbench::message::{TaskMessage, TaskSpec, TaskTemplate};
use taskbench::record::Recorders;
use taskbench::stage::{Stage, StageClock};

const ROUNDS: u64 = 2_000_000;

/// One publish's engine-side work on the raw path: encode, a (no-op) send, and recording into the thread's
/// recorder, as the engine does.
fn publish(clock: &mut StageClock, recorders: &Recorders, message: &mut TaskMessage) {
    let t0 = tokio::time::Instant::now();
    clock.begin(t0);
    clock.time_sync(Stage::Encode, || message.renew());
    clock.time_sync(Stage::Send, || black_box(message.frame().len()));
    let t1 = clock.last_lap().unwrap_or_else(tokio::time::Instant::now);
    recorders.with(|rec| {
        rec.record_publish(&[t0], t1, Duration::ZERO, clock);
        rec.mark(t0, t1);
    });
}

fn measure(label: &str, stage_timing: bool) -> f64 {
    let template = TaskTemplate::new(&TaskSpec::default()).unwrap();
    let mut message = TaskMessage::new(template);
    let mut clock = StageClock::new(stage_timing);
    let recorders = Recorders::new(1, false);
    for _ in 0..ROUNDS / 10 {
        publish(&mut clock, &recorders, &mut message);
    }
    let start = Instant::now();
    for _ in 0..ROUNDS {
        publish(&mut clock, &recorders, &mut message);
    }
    let ns = start.elapsed().as_nanos() as f64 / ROUNDS as f64;
    println!("{label:<34} {ns:>7.1} ns per publish");
    ns
}

fn main() {
    let template = TaskTemplate::new(&TaskSpec::default()).unwrap();
    let mut message = TaskMessage::new(template);
    let start = Instant::now();
    for _ in 0..ROUNDS {
        message.renew();
        black_box(message.frame());
    }
    println!(
        "{:<34} {:>7.1} ns",
        "encode (renew ids in place)",
        start.elapsed().as_nanos() as f64 / ROUNDS as f64
    );

    let mut on = Vec::new();
    let mut off = Vec::new();
    for _ in 0..5 {
        off.push(measure("engine work, stage timing off", false));
        on.push(measure("engine work, stage timing on", true));
    }
    // What recording through the thread's slot (a thread-local read and an uncontended lock) costs.
    let recorders = Recorders::new(1, false);
    let start = Instant::now();
    for _ in 0..ROUNDS {
        recorders.with(|rec| black_box(rec.ok));
    }
    println!(
        "{:<34} {:>7.1} ns",
        "reaching the thread's recorder",
        start.elapsed().as_nanos() as f64 / ROUNDS as f64
    );
    on.sort_by(f64::total_cmp);
    off.sort_by(f64::total_cmp);
    println!(
        "median: stage timing adds {:.1} ns per publish",
        on[2] - off[2]
    );
}
