//! Network distance and faults on the wire (`rtt`, `[[case.fault]]`) against real brokers, through the
//! binary: a blackhole and a reset each show in summary.json's timeline, its events and reconnect figures,
//! with the delivered check exact; the added rtt is at least what was asked (a lower bound, never flaky).
//! Each test runs a few seconds. The tests that need a broker or the venv are `#[ignore]`d: tests/run runs them.

mod common;

use std::path::Path;
use taskbench::summary::{CaseSummary, Summary};

/// Runs `scenario` (TOML text) with the binary into a fresh folder; returns the case's summary and stdout.
fn run(scenario: &str) -> (CaseSummary, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wire.toml");
    std::fs::write(&file, scenario).unwrap();
    let out = dir.path().join("run");
    let output = common::taskbench()
        .args([
            "run",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary = Summary::read(Path::new(&out))
        .unwrap_or_else(|e| panic!("{e}\nstdout: {stdout}\nstderr: {stderr}"));
    (summary.cases[0].clone(), stdout)
}

/// A scenario of one case on `backend` publishing to a queue of its own, with `keys` added to the case.
fn scenario(backend: &str, url: &str, keys: &str) -> String {
    let queue = common::unique("wire");
    format!(
        r#"name = "wire"
warmup = 10
interval = "250ms"
[task]
name = "tasks.add"
queue = "{queue}"
[[case]]
name = "c"
backend = "{backend}"
url = "{url}"
{keys}
"#
    )
}

/// Asserts what every fault must show: the event ran on time, it marks the timeline, each publisher
/// published again after it, and the delivered count is exact (unknown fates aside, never a mismatch).
fn check_fault(c: &CaseSummary, kind: &str) {
    let e = &c.events[0];
    assert_eq!(e.kind, kind);
    assert!(e.began_s.is_some() && e.ended_s.is_some(), "{e:?}");
    assert!(
        c.timeline
            .iter()
            .any(|i| i.events.iter().any(|k| k == kind)),
        "no interval shows the {kind}: {:?}",
        c.timeline
    );
    assert_eq!(e.reconnect_s.publishers, c.concurrency);
    assert_eq!(
        e.reconnect_s.published_again, c.concurrency,
        "every publisher published again: {e:?}"
    );
    assert!(
        !c.errors.contains_key("delivery_mismatch"),
        "{:?} {:?}",
        c.errors,
        c.error_messages
    );
    let unknown_arrived = c.unknown_fate.and_then(|u| u.delivered).unwrap_or(0);
    assert_eq!(
        c.delivered,
        Some(c.publishes_ok + unknown_arrived),
        "delivered = confirmed + those of unknown fate that arrived: {:?} {:?}",
        c.unknown_fate,
        c.errors
    );
}

fn redis_up() -> bool {
    let up = common::reachable("127.0.0.1:6379");
    if !up {
        common::skip_test("no Redis at 127.0.0.1:6379");
    }
    up
}

fn rabbit_up() -> bool {
    let up = common::reachable("127.0.0.1:5672");
    if !up {
        common::skip_test("no RabbitMQ at 127.0.0.1:5672");
    }
    up
}

#[test]
#[ignore = "needs Redis; tests/run runs it"]
fn a_redis_blackhole_stops_publishing_and_every_publisher_publishes_again() {
    if !redis_up() {
        return;
    }
    let (c, stdout) = run(&scenario(
        "redis",
        &common::redis_url(),
        r#"path = "pooled"
concurrency = 2
duration = "2500ms"
publish_timeout = "300ms"
[[case.fault]]
at = "750ms"
kind = "blackhole"
for = "1s""#,
    ));
    check_fault(&c, "blackhole");
    // Intervals wholly inside the blackhole: nothing succeeds.
    let e = &c.events[0];
    let (began, ended) = (e.began_s.unwrap(), e.ended_s.unwrap());
    let inside: Vec<_> = c
        .timeline
        .iter()
        .filter(|i| i.start_s >= began && i.start_s + i.length_s <= ended)
        .collect();
    assert!(!inside.is_empty());
    assert!(inside.iter().all(|i| i.ok == 0), "{inside:?}");
    assert!(c.errors.contains_key("timeout"), "{:?}", c.errors);
    assert!(
        c.unknown_fate.is_some_and(|u| u.publishes > 0),
        "{:?}",
        c.unknown_fate
    );
    assert!(
        stdout.contains("timeout"),
        "the table shows the errors: {stdout}"
    );
}

#[test]
#[ignore = "needs Redis; tests/run runs it"]
fn a_redis_reset_drops_every_connection_and_acquire_reconnects() {
    if !redis_up() {
        return;
    }
    let (c, _) = run(&scenario(
        "redis",
        &common::redis_url(),
        r#"path = "acquire"
concurrency = 2
pool_size = 2
duration = "2s"
[[case.fault]]
at = "700ms"
kind = "reset"
for = "300ms""#,
    ));
    check_fault(&c, "reset");
    // A connection dropped mid-publish fails that publish; one dropped while checked in is found dead by
    // bb8's PING on checkout and replaced, and the replacement waits out the reset. Either way the user
    // sees the reset: as errors, or as a publish that took most of its 300 ms.
    let errors = c.errors.values().sum::<u64>();
    let max = c.latency_ns.max.unwrap_or(0);
    assert!(
        errors > 0 || max >= 250_000_000,
        "the reset cost publishes (errors) or stalled one (max latency {max} ns): {:?}",
        c.errors
    );
}

#[test]
#[ignore = "needs RabbitMQ; tests/run runs it"]
fn a_rabbitmq_reset_with_confirms_counts_unconfirmed_publishes_as_unknown() {
    if !rabbit_up() {
        return;
    }
    let (c, _) = run(&scenario(
        "amqp",
        &common::amqp_url(),
        r#"path = "pooled"
confirm = "each"
concurrency = 2
duration = "2500ms"
[[case.fault]]
at = "700ms"
kind = "reset""#,
    ));
    check_fault(&c, "reset");
    assert!(c.errors.values().sum::<u64>() > 0, "{:?}", c.errors);
}

#[test]
#[ignore = "needs RabbitMQ; tests/run runs it"]
fn a_rabbitmq_blackhole_with_confirms_keeps_the_delivered_check_exact() {
    if !rabbit_up() {
        return;
    }
    let (c, _) = run(&scenario(
        "amqp",
        &common::amqp_url(),
        r#"path = "pooled"
confirm = "each"
concurrency = 2
duration = "2500ms"
publish_timeout = "400ms"
[[case.fault]]
at = "700ms"
kind = "blackhole"
for = "1s""#,
    ));
    check_fault(&c, "blackhole");
}

#[test]
#[ignore = "needs Redis; tests/run runs it"]
fn an_added_rtt_is_at_least_what_was_asked() {
    if !redis_up() {
        return;
    }
    let (c, stdout) = run(&scenario(
        "redis",
        &common::redis_url(),
        r#"path = "pooled"
publishes = 50
rtt = "2ms"
jitter = "1ms""#,
    ));
    // Every publish is one round trip: never under rtt minus the jitter (each way varies by half of it).
    let min = c.latency_ns.min.unwrap();
    assert!(min >= 1_000_000, "min latency {min} ns under 2ms - 1ms");
    assert_eq!(c.delivered, Some(50), "jitter never garbles the stream");
    assert!(stdout.contains("wire proxy"), "the notes say so: {stdout}");
    assert_eq!(c.settings.wire.unwrap().rtt_s, 0.002);
}

#[test]
#[ignore = "needs Redis and the venv with Celery; tests/run runs it"]
fn a_celery_delay_blocks_through_a_blackhole_until_it_ends() {
    if !redis_up() {
        return;
    }
    let Some(python) = common::celery_python() else {
        common::skip_test("no Python with Celery (TASKBENCH_PYTHON); run the suite with tests/run");
        return;
    };
    let (c, _) = run(&scenario(
        "redis",
        &common::redis_url(),
        &format!(
            r#"path = "pooled"
client = "celery"
python = "{}"
duration = "3s"
[[case.fault]]
at = "500ms"
kind = "blackhole"
for = "1s""#,
            python.display()
        ),
    ));
    check_fault(&c, "blackhole");
    // kombu's Redis transport has no socket timeout by default: delay() waits out the whole blackhole.
    let max = c.latency_ns.max.unwrap();
    assert!(max >= 500_000_000, "the longest delay() took {max} ns");
}
