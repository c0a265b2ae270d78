//! Engine behaviour on virtual time (tokio paused clock) with the fake publisher.

use super::fake::{FakeTarget, Script};
use super::*;
use crate::error::ErrorKind;
use crate::record::CaseResult;
use crate::scenario::{self, Case};
use crate::stage::Stage;
use std::sync::Arc;
use std::time::Duration;

/// A unix/raw case with `extra` scenario settings (no warm-up unless `extra` sets one).
fn case(extra: &str) -> Case {
    let warmup = if extra.contains("warmup") {
        ""
    } else {
        "warmup = 0"
    };
    scenario::parse(
        &format!("name = \"t\"\n{warmup}\n{extra}\n[[case]]\nname = \"c\"\nbackend = \"unix\"\npath = \"raw\"\n"),
        "t.toml",
    )
    .unwrap()
    .cases
    .remove(0)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn closed_loop_records_each_publish_and_its_stages() {
    let script = Script {
        stages: vec![(Stage::Connect, ms(2)), (Stage::Send, ms(8))],
        ..Script::default()
    };
    let r = run_case(
        FakeTarget::new(script),
        &case("publishes = 100\nwarmup = 7"),
        &RunControl::new(),
    )
    .await;
    assert_eq!(r.publishes_ok, 100);
    assert_eq!(r.warmup_ok, 7, "warm-up publishes are counted apart");
    assert_eq!(r.latency.len(), 100, "warm-up publishes are not recorded");
    assert_eq!(r.delivered, Some(100));
    assert_eq!(r.errors.total(), 0);
    assert_eq!(r.elapsed, ms(1000));
    assert!((r.throughput() - 100.0).abs() < 1e-9);
    let p50 = r.latency.value_at_quantile(0.5);
    assert!((9_995_000..=10_005_000).contains(&p50), "p50 {p50}");
    let names: Vec<&str> = r.stages.iter().map(|s| s.stage.name()).collect();
    assert_eq!(names, ["connect", "encode", "send"]);
    assert_eq!(r.stages[2].total_ns, 100 * 8_000_000);
    assert_eq!(r.stages[0].total_ns, 100 * 2_000_000);
}

#[tokio::test(start_paused = true)]
async fn concurrency_splits_the_count() {
    let script = Script {
        stages: vec![(Stage::Send, ms(1))],
        ..Script::default()
    };
    let r = run_case(
        FakeTarget::new(script),
        &case("publishes = 100\nconcurrency = 4"),
        &RunControl::new(),
    )
    .await;
    assert_eq!(r.publishes_ok, 100);
    assert_eq!(r.elapsed, ms(25), "four publishers share the work");
}

#[tokio::test(start_paused = true)]
async fn stage_timing_off_records_no_stages() {
    let script = Script {
        stages: vec![(Stage::Send, ms(1))],
        ..Script::default()
    };
    let r = run_case(
        FakeTarget::new(script),
        &case("publishes = 10\nstage_timing = false"),
        &RunControl::new(),
    )
    .await;
    assert_eq!(r.publishes_ok, 10);
    assert!(r.stages.is_empty());
    let p50 = r.latency.value_at_quantile(0.5);
    assert!(
        (999_000..=1_001_000).contains(&p50),
        "latency is still measured: p50 {p50}"
    );
}

#[tokio::test(start_paused = true)]
async fn errors_are_counted_by_kind_and_never_abort_the_case() {
    let script = Script {
        stages: vec![(Stage::Send, ms(1))],
        fail_every: Some(4),
        ..Script::default()
    };
    let r = run_case(
        FakeTarget::new(script),
        &case("publishes = 100"),
        &RunControl::new(),
    )
    .await;
    assert_eq!(r.publishes_ok, 75);
    assert_eq!(
        r.errors.by_kind(),
        vec![(ErrorKind::Send, 25, "scripted failure #4")]
    );
    assert_eq!(r.delivered, Some(75));
}

#[tokio::test(start_paused = true)]
async fn a_publish_over_the_timeout_is_a_timeout_error() {
    let script = Script {
        stages: vec![(Stage::Send, ms(10))],
        stall: Some((3, Duration::from_secs(60))),
        ..Script::default()
    };
    let r = run_case(
        FakeTarget::new(script),
        &case("publishes = 5\npublish_timeout = \"1s\""),
        &RunControl::new(),
    )
    .await;
    assert_eq!(r.publishes_ok, 4);
    assert_eq!(
        r.errors.by_kind(),
        vec![(
            ErrorKind::Timeout,
            1,
            "a publish did not complete within publish_timeout (1s)"
        )]
    );
    // The stall is visible in the failures' own histogram, not lost with the publish.
    assert_eq!(r.failed_latency.len(), 1);
    assert!(
        r.failed_latency
            .equivalent(r.failed_latency.max(), 1_000_000_000),
        "the timed-out publish took its whole timeout: {}",
        r.failed_latency.max()
    );
    assert!(r.latency.max() < 20_000_000, "successes stay apart");
}

#[tokio::test(start_paused = true)]
async fn a_delivery_shortfall_is_an_error() {
    let script = Script {
        stages: vec![(Stage::Send, ms(1))],
        lose: 3,
        ..Script::default()
    };
    let r = run_case(
        FakeTarget::new(script),
        &case("publishes = 50\nwarmup = 5"),
        &RunControl::new(),
    )
    .await;
    assert_eq!(r.delivered, Some(47));
    assert_eq!(
        r.errors.by_kind(),
        vec![(
            ErrorKind::DeliveryMismatch,
            3,
            "the backend received 52 messages but 55 publishes (warm-up included) reported success"
        )]
    );
}

#[tokio::test(start_paused = true)]
async fn duration_stops_a_case_early() {
    let script = Script {
        stages: vec![(Stage::Send, ms(1))],
        ..Script::default()
    };
    let r = run_case(
        FakeTarget::new(script),
        &case("publishes = 100000\nduration = \"50ms\""),
        &RunControl::new(),
    )
    .await;
    assert_eq!(r.publishes_ok, 50);
    assert_eq!(r.elapsed, ms(50));
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_ends_the_case_with_what_was_measured() {
    let script = Script {
        stages: vec![(Stage::Send, ms(1))],
        ..Script::default()
    };
    let control = RunControl::new();
    let stop = control.stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(ms(30)).await;
        stop.request();
    });
    let r = run_case(
        FakeTarget::new(script),
        &case("publishes = 100000"),
        &control,
    )
    .await;
    assert!(r.interrupted);
    assert!(
        (29..=31).contains(&r.publishes_ok),
        "{} publishes",
        r.publishes_ok
    );
    assert_eq!(r.delivered, Some(r.publishes_ok));
}

/// Requests a stop after `after` (virtual time) and returns when run_case returned, measured from the stop.
async fn stop_after(script: Script, case: &Case, after: Duration) -> (CaseResult, Duration) {
    let control = RunControl::new();
    let stop = control.stop.clone();
    let stopped_at = std::sync::Arc::new(std::sync::OnceLock::new());
    let at = stopped_at.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        at.set(tokio::time::Instant::now()).unwrap();
        stop.request();
    });
    let r = run_case(FakeTarget::new(script), case, &control).await;
    let took = tokio::time::Instant::now() - *stopped_at.get().expect("stopped");
    (r, took)
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_ends_a_stalled_publish_within_the_grace() {
    // A publish stalled for an hour (a SIGSTOPped broker) with a two-hour publish_timeout.
    let script = Script {
        stages: vec![(Stage::Send, ms(1))],
        stall: Some((5, Duration::from_secs(3600))),
        ..Script::default()
    };
    let c = case("publishes = 1000\nwarmup = 0\npublish_timeout = \"2h\"\nconcurrency = 2");
    let (r, took) = stop_after(script, &c, Duration::from_secs(1)).await;
    assert!(took <= STOP_GRACE + ms(10), "ended {took:?} after the stop");
    assert!(r.interrupted);
    assert_eq!(r.publishes_ok, 8, "both publishers' first four");
    assert_eq!(
        r.errors.total(),
        0,
        "an abandoned publish is no error: {:?}",
        r.errors
    );
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("delivery check was skipped")),
        "{:?}",
        r.notes
    );
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_during_an_open_loop_sleep_sends_nothing_more() {
    let script = Script {
        stages: vec![(Stage::Send, ms(1))],
        ..Script::default()
    };
    // One publish every 10 s: the first at once, the next due long after the stop at 1 s.
    let c = case(
        "publishes = 10
warmup = 0
rate = 0.1",
    );
    let (r, took) = stop_after(script, &c, Duration::from_secs(1)).await;
    assert!(took <= STOP_GRACE + ms(10), "ended {took:?} after the stop");
    assert_eq!(r.publishes_ok, 1, "no publish after the signal");
    assert!(r.interrupted);
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_during_setup_skips_the_case() {
    let script = Script {
        prepare_takes: Some(Duration::from_secs(3600)),
        ..Script::default()
    };
    let (r, took) = stop_after(script, &case("publishes = 10"), ms(500)).await;
    assert!(took <= STOP_GRACE + ms(10), "ended {took:?} after the stop");
    assert!(r.interrupted && r.publishes_ok == 0 && r.errors.total() == 0);
}

#[tokio::test(start_paused = true)]
async fn open_loop_follows_the_rate() {
    let script = Script {
        stages: vec![(Stage::Send, ms(1))],
        ..Script::default()
    };
    let r = run_case(
        FakeTarget::new(script),
        &case("publishes = 100\nrate = 100"),
        &RunControl::new(),
    )
    .await;
    assert_eq!(r.publishes_ok, 100);
    // 100 publishes 10 ms apart: the last starts at 990 ms and takes 1 ms.
    assert_eq!(r.elapsed, ms(991));
    assert!(
        r.latency.equivalent(r.latency.max(), r.latency.min()),
        "an unloaded open loop sees only service time"
    );
    let lag = r.schedule_lag.as_ref().unwrap();
    assert_eq!(lag.len(), 100);
    assert!(
        lag.max() <= 1,
        "on virtual time every publish starts on schedule"
    );
}

#[tokio::test(start_paused = true)]
async fn open_loop_counts_a_stall_against_every_publish_it_delays() {
    // One publish per 10 ms, each taking 1 ms, but the 10th stalls for 500 ms. A closed loop would record one
    // slow publish; measured from their intended starts, the 55 publishes queued behind it are slow too.
    let script = Script {
        stages: vec![(Stage::Send, ms(1))],
        stall: Some((10, ms(500))),
        ..Script::default()
    };
    let r = run_case(
        FakeTarget::new(script),
        &case("publishes = 200\nrate = 100"),
        &RunControl::new(),
    )
    .await;
    assert_eq!(r.publishes_ok, 200);
    let slow = r.latency.count_between(5_000_000, u64::MAX);
    assert_eq!(slow, 56, "the stalled publish and the 55 behind it");
    assert!(r.latency.max() >= 500_000_000);
    let lag = r.schedule_lag.as_ref().unwrap();
    assert!(
        (490_000_000..=492_000_000).contains(&lag.max()),
        "lag {}",
        lag.max()
    );
}

#[tokio::test(start_paused = true)]
async fn a_publisher_panicking_in_warm_up_is_an_error_not_a_hang() {
    let script = Script {
        stages: vec![(Stage::Send, ms(1))],
        panic_on: Some(2),
        ..Script::default()
    };
    let r = run_case(
        FakeTarget::new(script),
        &case("publishes = 40\nwarmup = 10\nconcurrency = 2"),
        &RunControl::new(),
    )
    .await;
    let panics = r.errors.by_kind();
    assert_eq!(panics.len(), 1, "{panics:?}");
    assert_eq!(panics[0].0, ErrorKind::Panic);
    assert_eq!(
        panics[0].2,
        "the publisher panicked: scripted panic in call 2"
    );
    assert_eq!(panics[0].1, 2, "one call per publisher panicked");
    assert_eq!(
        r.publishes_ok, 0,
        "both publishers panicked in warm-up and stopped"
    );
}

#[tokio::test(start_paused = true)]
async fn a_publisher_panicking_mid_case_stops_while_the_others_finish() {
    let script = Script {
        stages: vec![(Stage::Send, ms(1))],
        panic_on: Some(5),
        ..Script::default()
    };
    let r = run_case(
        FakeTarget::new(script),
        &case("publishes = 100\nconcurrency = 1"),
        &RunControl::new(),
    )
    .await;
    assert_eq!(r.publishes_ok, 4);
    assert_eq!(r.errors.by_kind()[0].0, ErrorKind::Panic);
}

#[tokio::test(start_paused = true)]
async fn a_publisher_gone_costs_one_error_and_the_others_take_the_rest() {
    // Its later calls would fail at once, without yielding: asked again, it would count errors in a loop
    // that starves the other publisher. Gone mid-case (worker 0's 5th call), or in the warm-up.
    for (gone_on, warmup) in [((0, 5), 0), ((1, 2), 10)] {
        let script = Script {
            stages: vec![(Stage::Send, ms(1))],
            gone_on: Some(gone_on),
            ..Script::default()
        };
        let r = run_case(
            FakeTarget::new(script),
            &case(&format!(
                "publishes = 100\nconcurrency = 2\nwarmup = {warmup}"
            )),
            &RunControl::new(),
        )
        .await;
        let by_kind = r.errors.by_kind();
        assert_eq!(
            (by_kind[0].0, r.errors.total()),
            (ErrorKind::Harness, 1),
            "{by_kind:?}"
        );
        let ok = if warmup == 0 { 99 } else { 100 };
        assert_eq!(r.publishes_ok, ok, "gone on {gone_on:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn open_loop_charges_a_timed_out_publish_to_those_behind_it() {
    // 10 ms apart, 1 ms each; the 5th hangs and is cut at publish_timeout (200 ms): the ~20 publishes due
    // meanwhile queue behind it, with stage timing on or off alike.
    for timing in ["true", "false"] {
        let script = Script {
            stages: vec![(Stage::Send, ms(1))],
            stall: Some((5, Duration::from_secs(60))),
            ..Script::default()
        };
        let r = run_case(
            FakeTarget::new(script),
            &case(&format!(
                "publishes = 60\nrate = 100\npublish_timeout = \"200ms\"\nstage_timing = {timing}"
            )),
            &RunControl::new(),
        )
        .await;
        assert_eq!(r.errors.by_kind()[0].0, ErrorKind::Timeout);
        assert_eq!(r.publishes_ok, 59);
        let slow = r.latency.count_between(50_000_000, u64::MAX);
        assert!(
            (15..=21).contains(&slow),
            "stage_timing = {timing}: {slow} publishes over 50 ms"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn batches_split_the_count_and_charge_each_publish_the_call() {
    let script = Script {
        stages: vec![(Stage::Send, ms(4))],
        batch: 4,
        ..Script::default()
    };
    let r = run_case(
        FakeTarget::new(script),
        &case("publishes = 10"),
        &RunControl::new(),
    )
    .await;
    assert_eq!(r.publishes_ok, 10, "calls of 4, 4 and 2");
    assert_eq!(r.delivered, Some(10));
    let send = r.stages.iter().find(|s| s.stage == Stage::Send).unwrap();
    assert_eq!(send.histogram.len(), 10);
    assert_eq!(
        send.total_ns,
        10 * 4_000_000,
        "every publish of a call waited for the whole call"
    );
    assert_eq!(r.elapsed, ms(12));
}

#[tokio::test(start_paused = true)]
async fn a_deferred_publisher_records_each_message_when_it_settles() {
    // Calls take 1 ms; each message settles 50 ms after its call (a confirm window's ack).
    let script = Script {
        stages: vec![(Stage::Send, ms(1))],
        settle_after: Some(ms(50)),
        ..Script::default()
    };
    let r = run_case(
        FakeTarget::new(script),
        &case("publishes = 100\nwarmup = 5"),
        &RunControl::new(),
    )
    .await;
    assert_eq!(r.publishes_ok, 100);
    assert_eq!(
        r.warmup_ok, 5,
        "the warm-up settles apart, before the barrier"
    );
    assert_eq!(
        r.latency.len(),
        100,
        "one latency per message, none for the warm-up"
    );
    for ns in [r.latency.min(), r.latency.max()] {
        assert!(
            (49_900_000..=50_100_000).contains(&ns),
            "each from its send to its own settling, not to its call's end: {ns}"
        );
    }
    let send = r.stages.iter().find(|s| s.stage == Stage::Send).unwrap();
    assert_eq!(
        send.histogram.len(),
        100,
        "the calls' stages are still recorded"
    );
    assert!(
        r.elapsed >= ms(100 + 50),
        "the last messages' settling is measured time: {:?}",
        r.elapsed
    );
}

/// A progress view that keeps the interval latency of every update.
#[derive(Default)]
struct Recording(std::sync::Mutex<Vec<IntervalLatency>>);

impl ProgressView for Recording {
    fn start(&self, _case: &str, _total: Option<u64>, _duration: Option<Duration>) {}
    fn update(&self, _ok: u64, _failed: u64, latest: Option<IntervalLatency>) {
        self.0.lock().unwrap().extend(latest);
    }
    fn finish(&self) {}
}

/// Runs `case` with a [`Recording`] view; returns the result and every interval latency the view got.
async fn run_watched(script: Script, case: &Case) -> (CaseResult, Vec<IntervalLatency>) {
    let view = Arc::new(Recording::default());
    let control = RunControl {
        progress: Some(view.clone()),
        ..RunControl::new()
    };
    let r = run_case(FakeTarget::new(script), case, &control).await;
    let seen = std::mem::take(&mut *view.0.lock().unwrap());
    (r, seen)
}

#[tokio::test(start_paused = true)]
async fn the_view_gets_each_closed_intervals_p99_as_the_timeline_records_it() {
    // 10 ms publishes, 40 ms from the 36th call on (the 31st measured); the warm-up's 3rd call stalls
    // for 500 ms, which must never show: the warm-up is not measured.
    let script = Script {
        stages: vec![(Stage::Send, ms(10))],
        stall: Some((3, ms(500))),
        slower_from: Some((36, ms(30))),
        ..Script::default()
    };
    let (r, seen) = run_watched(
        script,
        &case("publishes = 60\nwarmup = 5\ninterval = \"250ms\""),
    )
    .await;
    assert_eq!(r.publishes_ok, 60);
    let p99s: Vec<Option<u64>> = r.timeline.iter().map(|i| i.p99).collect();
    assert!(
        p99s.iter().any(|p| p.is_some_and(|p| p < 20_000_000))
            && p99s.iter().any(|p| p.is_some_and(|p| p > 35_000_000)),
        "the intervals differ: {p99s:?}"
    );
    assert!(!seen.is_empty());
    for l in &seen {
        let recorded = &r.timeline[l.index as usize];
        assert_eq!(Some(l.p99), recorded.p99, "interval {}: {l:?}", l.index);
        assert_eq!(l.length, ms(250));
        // Publishes kept ending: an interval is the latest from its close until a publish (40 ms at most)
        // ends past the next one.
        assert!(l.ended_ago <= l.length + ms(40), "{l:?}");
        assert!(l.p99 < 100_000_000, "not the warm-up's stall: {l:?}");
    }
    // Every interval but the last (it closes with the case, not past it) was shown, in order.
    let mut shown: Vec<u64> = seen.iter().map(|l| l.index).collect();
    assert!(shown.is_sorted(), "{shown:?}");
    shown.dedup();
    assert_eq!(shown, (0..r.timeline.len() as u64 - 1).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn during_a_stall_the_view_keeps_the_last_p99_and_sees_it_age() {
    // 10 ms publishes; the 30th (starting at 290 ms) stalls for 2 s. Interval 0 (to 250 ms) closed; interval 1
    // holds four publishes that cannot close until the stall ends at 2.31 s, in interval 9.
    let script = Script {
        stages: vec![(Stage::Send, ms(10))],
        stall: Some((30, Duration::from_secs(2))),
        ..Script::default()
    };
    let (r, seen) = run_watched(script, &case("publishes = 60\ninterval = \"250ms\"")).await;
    let during: Vec<&IntervalLatency> = seen.iter().filter(|l| l.index == 0).collect();
    let oldest = during.iter().map(|l| l.ended_ago).max().unwrap();
    assert!(
        (ms(1900)..=ms(2100)).contains(&oldest),
        "interval 0 stayed the latest through the stall, ageing: {oldest:?}"
    );
    let stall = seen
        .iter()
        .find(|l| l.index == 9)
        .expect("the interval the stall ended in is shown once closed");
    assert_eq!(Some(stall.p99), r.timeline[9].p99);
    assert!(stall.p99 >= 2_000_000_000, "{stall:?}");
}

#[tokio::test(start_paused = true)]
async fn a_publisher_that_never_waits_lets_the_others_on_its_thread_run() {
    // Publishes that are done at their first poll, as raw local writes are while the kernel has room.
    let target = FakeTarget::new(Script::default());
    let arrived = target.arrived.clone();
    let total = 20 * 1024;
    // Another task on the same (single) thread notes what it sees whenever it gets a turn.
    let seen = tokio::spawn(async move {
        let mut seen = Vec::new();
        loop {
            let now = arrived.load(std::sync::atomic::Ordering::Relaxed);
            seen.push(now);
            if now >= total {
                return seen;
            }
            tokio::task::yield_now().await;
        }
    });
    let r = run_case(
        target,
        &case(&format!("publishes = {total}")),
        &RunControl::new(),
    )
    .await;
    assert_eq!(r.publishes_ok, total);
    let seen = seen.await.unwrap();
    let during = seen.iter().filter(|&&n| n > 0 && n < total).count();
    assert!(
        during >= 10,
        "the other task ran only {during} times while 20 x 1024 publishes were made: {seen:?}"
    );
}
