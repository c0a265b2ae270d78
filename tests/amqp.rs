//! The `amqp` backend against the real RabbitMQ (TASKBENCH_AMQP_URL, default guest@127.0.0.1:5672): every
//! path with every confirm mode delivers messages a Celery worker decodes (checked field by field, header
//! types included, by consuming them back with lapin), the error cases give their own kinds with the
//! password hidden, and a real Celery worker executes what taskbench published.
//!
//! Each test uses its own queue names and deletes its queues and exchanges. The tests that need the broker
//! are `#[ignore]`d, so a plain `cargo test` lists them as ignored; `tests/run` runs them, and there,
//! without a broker, they say so and skip, unless TASKBENCH_REQUIRE_BROKERS=1 (then they fail).

mod common;

use common::rabbit_node::PrivateNode;

use lapin::options::{
    BasicGetOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::collections::HashSet;
use std::time::Duration;
use taskbench::engine::RunControl;
use taskbench::record::CaseResult;
use taskbench::stage::Stage;

/// The broker URL, or `None` (after reporting the skip) when nothing listens there.
fn broker() -> Option<String> {
    let url = common::amqp_url();
    let parsed: lapin::uri::AMQPUri = url.parse().expect("TASKBENCH_AMQP_URL parses");
    let addr = format!("{}:{}", parsed.authority.host, parsed.authority.port);
    if common::reachable(&addr) {
        Some(url)
    } else {
        common::skip_test(&format!("no RabbitMQ reachable at {addr}"));
        None
    }
}

/// A one-case scenario on queue `queue`; `extra` adds case keys.
fn case_toml(queue: &str, path: &str, publishes: u64, extra: &str) -> String {
    format!(
        r#"
            name = "amqp-test"
            publishes = {publishes}
            warmup = 0
            concurrency = 2

            [task]
            name = "tasks.add"
            args = [2, 2]
            queue = "{queue}"

            [[case]]
            name = "c"
            backend = "amqp"
            path = "{path}"
            {extra}
        "#
    )
}

/// Runs the single case of `toml` in-process.
async fn run(toml: &str) -> CaseResult {
    let scenario = taskbench::scenario::parse(toml, "test.toml").expect("test scenario parses");
    taskbench::backend::run_case(&scenario.cases[0], &RunControl::new()).await
}

async fn connect(url: &str) -> Connection {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("the test connects to the broker")
}

/// Takes every message out of `queue` (no ack) and deletes the queue and its exchange.
async fn drain_and_delete(url: &str, queue: &str) -> Vec<lapin::message::BasicGetMessage> {
    let conn = connect(url).await;
    let ch = conn.create_channel().await.unwrap();
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        out.push(m);
    }
    delete(&ch, queue).await;
    let _ = conn.close(200, "OK".into()).await;
    out
}

async fn delete(ch: &lapin::Channel, queue: &str) {
    let _ = ch
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await;
    let _ = ch
        .exchange_delete(queue.into(), ExchangeDeleteOptions::default())
        .await;
}

fn header<'a>(props: &'a BasicProperties, key: &str) -> &'a AMQPValue {
    props
        .headers()
        .as_ref()
        .expect("the message has headers")
        .inner()
        .get(key)
        .unwrap_or_else(|| panic!("header {key} is missing"))
}

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.chars().enumerate().all(|(i, c)| {
            matches!(i, 8 | 13 | 18 | 23) == (c == '-') && (c == '-' || c.is_ascii_hexdigit())
        })
}

/// Checks one consumed message field by field against celery-wire.md; returns its task id.
fn check_celery_message(m: &lapin::message::BasicGetMessage, queue: &str) -> String {
    let d = &m.delivery;
    assert_eq!(d.exchange.as_str(), "", "published to the default exchange");
    assert_eq!(d.routing_key.as_str(), queue);
    assert_eq!(
        d.data,
        br#"[[2, 2], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]"#
            .to_vec(),
        "body"
    );
    let p = &d.properties;
    assert_eq!(
        p.content_type().as_ref().unwrap().as_str(),
        "application/json"
    );
    assert_eq!(p.content_encoding().as_ref().unwrap().as_str(), "utf-8");
    assert_eq!(p.delivery_mode(), &Some(2));
    assert_eq!(p.priority(), &Some(0));
    assert_eq!(p.expiration(), &None, "no expiration without expires");
    let reply_to = p.reply_to().as_ref().expect("reply_to is set").as_str();
    assert!(is_uuid(reply_to), "reply_to {reply_to:?} is a uuid");
    let id = p
        .correlation_id()
        .as_ref()
        .expect("correlation_id")
        .to_string();
    assert!(is_uuid(&id), "task id {id:?} is a uuid");

    let headers = p.headers().as_ref().unwrap();
    assert_eq!(
        headers.inner().len(),
        19,
        "Celery's 19 headers: {headers:?}"
    );
    assert_eq!(header(p, "lang"), &long_string("py"));
    assert_eq!(header(p, "task"), &long_string("tasks.add"));
    assert_eq!(header(p, "id"), &long_string(&id));
    assert_eq!(header(p, "root_id"), &long_string(&id));
    for key in [
        "shadow",
        "eta",
        "expires",
        "group",
        "group_index",
        "parent_id",
        "stamped_headers",
    ] {
        assert_eq!(header(p, key), &AMQPValue::Void, "{key} is void (V)");
    }
    assert_eq!(header(p, "retries"), &AMQPValue::LongInt(0), "retries is I");
    assert_eq!(header(p, "replaced_task_nesting"), &AMQPValue::LongInt(0));
    assert_eq!(
        header(p, "timelimit"),
        &AMQPValue::FieldArray(vec![AMQPValue::Void, AMQPValue::Void].into())
    );
    assert_eq!(header(p, "argsrepr"), &long_string("(2, 2)"));
    assert_eq!(header(p, "kwargsrepr"), &long_string("{}"));
    match header(p, "origin") {
        AMQPValue::LongString(s) => {
            let s = s.to_string();
            assert!(s.starts_with("gen") && s.contains('@'), "origin {s:?}");
        }
        other => panic!("origin is a long string, not {other:?}"),
    }
    assert_eq!(header(p, "ignore_result"), &AMQPValue::Boolean(false));
    assert_eq!(
        header(p, "stamps"),
        &AMQPValue::FieldTable(FieldTable::default())
    );
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ; tests/run runs it"]
async fn every_path_and_confirm_mode_delivers_exact_celery_messages() {
    let Some(url) = broker() else {
        return;
    };
    // (path, confirm, pipeline batch): every path x confirm mode, plus pooled pipelined.
    let mut combos = Vec::new();
    for path in ["fresh", "acquire", "pooled"] {
        for confirm in ["off", "each", "batch"] {
            combos.push((path, confirm, 1));
        }
    }
    combos.push(("pooled", "off", 16));
    combos.push(("pooled", "each", 16));
    combos.push(("pooled", "window", 1));
    for (path, confirm, pipeline) in combos {
        let queue = common::unique(&format!("tb-amqp-{path}-{confirm}"));
        let n = if path == "fresh" { 20 } else { 50 };
        // confirm_batch 8 over 50 publishes also exercises a short last batch.
        let mut extra = format!(
            r#"
                confirm = "{confirm}"
                confirm_batch = 8
                keep = true
                url = "{url}"
            "#
        );
        if pipeline > 1 {
            extra.push_str(&format!("\nbatch = {pipeline}"));
        }
        if confirm == "window" {
            // A window smaller than the case: publishes wait for room whenever the acks fall behind.
            extra.push_str("\nconfirm_window = 8");
        }
        let toml = case_toml(&queue, path, n, &extra);
        let r = run(&toml).await;
        let what = format!("{path}/{confirm}/batch={pipeline}");
        assert_eq!(r.errors.by_kind(), vec![], "{what}: no errors");
        assert_eq!(r.publishes_ok, n, "{what}");
        assert_eq!(
            r.delivered,
            Some(n),
            "{what}: the broker counted every publish"
        );
        // `each` and `batch` always wait for their confirms; `window` waits only when the window is full,
        // which depends on how fast the acks come back (confirm_window_records_every_message_once_at_its_own_ack
        // checks that wait with a window of 1).
        if confirm == "each" || confirm == "batch" {
            assert!(
                r.stages.iter().any(|s| s.stage == Stage::Confirm),
                "{what}: confirm stage timed"
            );
        }
        let messages = drain_and_delete(&url, &queue).await;
        assert_eq!(
            messages.len() as u64,
            n,
            "{what}: the queue holds exactly N messages"
        );
        let ids: HashSet<String> = messages
            .iter()
            .map(|m| check_celery_message(m, &queue))
            .collect();
        assert_eq!(ids.len() as u64, n, "{what}: every task id is different");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ; tests/run runs it"]
async fn fresh_path_times_every_stage_of_a_publish() {
    let Some(url) = broker() else {
        return;
    };
    let queue = common::unique("tb-amqp-stages");
    let r = run(&case_toml(
        &queue,
        "fresh",
        5,
        &format!(
            r#"
                confirm = "each"
                url = "{url}"
            "#
        ),
    ))
    .await;
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors.by_kind());
    let timed: Vec<Stage> = r.stages.iter().map(|s| s.stage).collect();
    for stage in [
        Stage::Connect,
        Stage::Channel,
        Stage::Declare,
        Stage::Bind,
        Stage::Encode,
        Stage::Send,
        Stage::Confirm,
        Stage::Close,
    ] {
        assert!(timed.contains(&stage), "{stage:?} timed: {timed:?}");
    }
    drain_and_delete(&url, &queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ; tests/run runs it"]
async fn queue_is_purged_after_the_case_unless_keep() {
    let Some(url) = broker() else {
        return;
    };
    let queue = common::unique("tb-amqp-purge");
    let r = run(&case_toml(
        &queue,
        "pooled",
        30,
        &format!(r#"url = "{url}""#),
    ))
    .await;
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors.by_kind());
    assert_eq!(r.delivered, Some(30));
    let left = drain_and_delete(&url, &queue).await;
    assert_eq!(
        left.len(),
        0,
        "keep = false purges the queue after the case"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ; tests/run runs it"]
async fn delivered_counts_only_this_cases_messages() {
    let Some(url) = broker() else {
        return;
    };
    let queue = common::unique("tb-amqp-baseline");
    let first = run(&case_toml(
        &queue,
        "pooled",
        10,
        &format!(
            r#"
                keep = true
                url = "{url}"
            "#
        ),
    ))
    .await;
    assert_eq!(first.delivered, Some(10));
    let second = run(&case_toml(
        &queue,
        "pooled",
        15,
        &format!(
            r#"
                keep = true
                url = "{url}"
            "#
        ),
    ))
    .await;
    assert_eq!(second.errors.total(), 0, "{:?}", second.errors.by_kind());
    assert_eq!(
        second.delivered,
        Some(15),
        "the 10 already queued are the baseline"
    );
    assert_eq!(drain_and_delete(&url, &queue).await.len(), 25);
}

/// The single error of a case that could not start, checked for kind and a message without the password.
fn assert_setup_error(r: &CaseResult, kind: &str, shown_url: &str) {
    let errors = r.errors.by_kind();
    assert_eq!(errors.len(), 1, "one kind of error: {errors:?}");
    let (got, _, message) = errors[0];
    assert_eq!(got.name(), kind, "{message}");
    assert!(
        message.contains(shown_url),
        "the message names the URL: {message}"
    );
    assert!(
        !message.contains("s3cret"),
        "the password never shows: {message}"
    );
    assert_eq!(r.publishes_ok, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_port_is_unreachable() {
    // No broker needed: nothing listens on port 1.
    let queue = common::unique("tb-amqp-port");
    let r = run(&case_toml(
        &queue,
        "pooled",
        5,
        r#"url = "amqp://guest:s3cret@127.0.0.1:1/%2f""#,
    ))
    .await;
    assert_setup_error(&r, "unreachable", "amqp://guest:***@127.0.0.1:1/%2f");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ; tests/run runs it"]
async fn wrong_password_is_an_auth_error() {
    let Some(url) = broker() else {
        return;
    };
    let mut parsed: lapin::uri::AMQPUri = url.parse().unwrap();
    parsed.authority.userinfo.password = "s3cret".into();
    let host = format!("{}:{}", parsed.authority.host, parsed.authority.port);
    let user = parsed.authority.userinfo.username.clone();
    let bad = format!("amqp://{user}:s3cret@{host}/%2f");
    let queue = common::unique("tb-amqp-auth");
    for path in ["fresh", "acquire", "pooled"] {
        let r = run(&case_toml(&queue, path, 5, &format!(r#"url = "{bad}""#))).await;
        assert_setup_error(&r, "auth", &format!("amqp://{user}:***@{host}/%2f"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ; tests/run runs it"]
async fn missing_vhost_is_a_vhost_error() {
    let Some(url) = broker() else {
        return;
    };
    let parsed: lapin::uri::AMQPUri = url.parse().unwrap();
    let a = &parsed.authority;
    let vhost = common::unique("tb-no-such-vhost");
    let bad = format!(
        "amqp://{}:{}@{}:{}/{vhost}",
        a.userinfo.username, a.userinfo.password, a.host, a.port
    );
    let queue = common::unique("tb-amqp-vhost");
    let r = run(&case_toml(
        &queue,
        "pooled",
        5,
        &format!(r#"url = "{bad}""#),
    ))
    .await;
    assert_setup_error(&r, "vhost", &taskbench::backend::url::redact(&bad));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ; tests/run runs it"]
async fn conflicting_declare_is_a_declare_conflict() {
    let Some(url) = broker() else {
        return;
    };
    let queue = common::unique("tb-amqp-conflict");
    // Someone declared the queue non-durable: Celery's durable redeclare gets 406 PRECONDITION_FAILED.
    let conn = connect(&url).await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let r = run(&case_toml(
        &queue,
        "pooled",
        5,
        &format!(r#"url = "{url}""#),
    ))
    .await;
    assert_setup_error(
        &r,
        "declare_conflict",
        &taskbench::backend::url::redact(&url),
    );
    let ch = conn.create_channel().await.unwrap();
    delete(&ch, &queue).await;
    let _ = conn.close(200, "OK".into()).await;
}

/// The broker connections whose client name contains `needle`: their PIDs (as rabbitmqctl prints them) and
/// how many channels each has open.
fn connections(needle: &str) -> Vec<(String, u64)> {
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "-q",
            "list_connections",
            "pid",
            "channels",
            "client_properties",
        ])
        .output();
    let Ok(out) = out else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let pid = fields.next()?.to_string();
            let channels = fields.next()?.parse().ok()?;
            Some((pid, channels))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ and rabbitmqctl; tests/run runs it"]
async fn pooled_reconnects_after_the_connection_drops() {
    let Some(url) = broker() else {
        return;
    };
    if std::process::Command::new("rabbitmqctl")
        .arg("-q")
        .arg("status")
        .output()
        .map_or(true, |o| !o.status.success())
    {
        common::skip_test("rabbitmqctl cannot reach the broker to close a connection");
        return;
    }
    let queue = common::unique("tb-amqp-drop");
    let toml = format!(
        r#"
            name = "drop"
            duration = "8s"
            rate = 500
            warmup = 0
            concurrency = 2

            [task]
            queue = "{queue}"

            [[case]]
            name = "c"
            backend = "amqp"
            path = "pooled"
            confirm = "each"
            keep = true
            url = "{url}"
        "#
    );
    let runner = tokio::spawn(async move { run(&toml).await });
    // Close the publishers' connection (found by its name, which carries the unique queue name).
    let needle = queue.clone();
    let closed = tokio::task::spawn_blocking(move || {
        // Several connections carry the case's name (the publishers', taskbench's own for the queue counts,
        // and on a loaded machine the setup's may still be open): the publishers' is the one with a channel
        // per publisher. Wait for it, then close it.
        let mut closed = 0;
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while closed == 0 && std::time::Instant::now() < until {
            for (pid, _) in connections(&needle).into_iter().filter(|(_, ch)| *ch >= 2) {
                let ok = std::process::Command::new("rabbitmqctl")
                    .args(["-q", "close_connection", &pid, "taskbench test: drop"])
                    .status()
                    .is_ok_and(|s| s.success());
                closed += ok as usize;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        closed
    })
    .await
    .unwrap();
    let r = runner.await.unwrap();
    drain_and_delete(&url, &queue).await;
    assert!(closed > 0, "found and closed the publishers' connection");
    let connects = r
        .stages
        .iter()
        .find(|s| s.stage == Stage::Connect)
        .map_or(0, |s| s.histogram.len());
    assert!(
        connects >= 2,
        "reconnected within the measured run (connects: {connects}; errors {:?}; {} ok)",
        r.errors.by_kind(),
        r.publishes_ok
    );
    for (kind, _, message) in r.errors.by_kind() {
        assert!(
            matches!(
                kind.name(),
                "connection_lost" | "channel_closed" | "delivery_mismatch"
            ),
            "unexpected error {kind}: {message}"
        );
        assert!(!message.contains(":guest@"), "no password in {message}");
    }
    // A drop noticed between two publishes is reconnected without losing one; one that catches a publish in
    // flight costs that publish (connection_lost or channel_closed above), so no error count is asserted.
    // 6 s at 500/s: publishing carried on after the drop.
    assert!(
        r.publishes_ok > 2000,
        "only {} publishes succeeded",
        r.publishes_ok
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ, Redis and the Celery venv; tests/run runs it"]
async fn a_celery_worker_executes_what_taskbench_published() {
    let Some(url) = broker() else { return };
    let Some(python) = common::celery_python() else {
        common::skip_test("no Celery venv (TASKBENCH_PYTHON); run the suite with tests/run");
        return;
    };
    let redis = common::redis_url();
    let redis_addr = redis
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    if !common::reachable(&redis_addr) {
        common::skip_test(&format!("no Redis at {redis_addr} to record executions"));
        return;
    }
    let queue = common::unique("tb-amqp-worker");
    let n = 40;
    // Publish first (keep = true), then let the worker drain the queue: the delivered count stays exact.
    for (path, confirm) in [("pooled", "batch"), ("acquire", "each"), ("fresh", "off")] {
        let r = run(&case_toml(
            &queue,
            path,
            n,
            &format!(
                r#"
                    confirm = "{confirm}"
                    keep = true
                    url = "{url}"
                "#
            ),
        ))
        .await;
        assert_eq!(r.errors.total(), 0, "{path}: {:?}", r.errors.by_kind());
    }
    let expected = 3 * n as usize;
    let mut worker = common::CeleryWorker::start(&python, &url, &queue, &redis);
    let queue2 = queue.clone();
    let records = tokio::task::spawn_blocking(move || {
        worker.wait_for_executions(&redis, &queue2, expected, Duration::from_secs(90))
    })
    .await
    .unwrap();
    assert_eq!(records.len(), expected, "every task ran once: {records:?}");
    let mut ids = HashSet::new();
    for rec in &records {
        assert_eq!(rec["task"], "tasks.add");
        assert_eq!(rec["args"], serde_json::json!([2, 2]));
        assert_eq!(rec["kwargs"], serde_json::json!({}));
        ids.insert(rec["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), expected, "every execution had its own task id");
    drain_and_delete(&url, &queue).await;
}

#[test]
#[ignore = "needs RabbitMQ; tests/run runs it"]
fn the_binary_never_prints_the_password_even_with_trace_logs() {
    let Some(url) = broker() else {
        return;
    };
    let parsed: lapin::uri::AMQPUri = url.parse().unwrap();
    let a = &parsed.authority;
    let bad = format!(
        "amqp://{}:s3cretpw@{}:{}/%2f",
        a.userinfo.username, a.host, a.port
    );
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("pw.toml");
    let queue = common::unique("tb-amqp-pw");
    std::fs::write(
        &scenario,
        case_toml(&queue, "pooled", 5, &format!(r#"url = "{bad}""#)),
    )
    .unwrap();
    let out = common::taskbench()
        .env("RUST_LOG", "trace")
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "the run finished with errors");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("auth error"), "{all}");
    assert!(all.contains(":***@"), "the URL is shown redacted: {all}");
    assert!(!all.contains("s3cretpw"), "the password leaked: {all}");
    let summary = std::fs::read_to_string(dir.path().join("out/summary.json")).unwrap();
    assert!(
        !summary.contains("s3cretpw"),
        "the password leaked into summary.json"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ; tests/run runs it"]
async fn a_queue_deleted_mid_case_gives_returned_messages() {
    let Some(url) = broker() else {
        return;
    };
    let queue = common::unique("tb-amqp-returned");
    let toml = format!(
        r#"
            name = "ret"
            duration = "3s"
            rate = 300
            warmup = 0

            [task]
            queue = "{queue}"

            [[case]]
            name = "c"
            backend = "amqp"
            path = "pooled"
            confirm = "each"
            url = "{url}"
        "#
    );
    let runner = tokio::spawn(async move { run(&toml).await });
    // The queue goes once the case has published into it, however long its start took on a loaded
    // machine (a fixed second raced it).
    let conn = connect(&url).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let probe = conn.create_channel().await.unwrap();
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let held = probe
            .queue_declare(queue.as_str().into(), passive, FieldTable::default())
            .await
            .map_or(0, |q| q.message_count());
        if held >= 120 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ch = conn.create_channel().await.unwrap();
    ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    let r = runner.await.unwrap();
    delete(&ch, &queue).await;
    let _ = conn.close(200, "OK".into()).await;
    let errors = r.errors.by_kind();
    let returned = errors.iter().find(|(k, _, _)| k.name() == "returned");
    assert!(
        returned.is_some_and(|(_, n, _)| *n > 10),
        "publishes after the delete come back as returned: {errors:?}"
    );
    assert!(
        errors.iter().any(|(k, _, _)| k.name() == "queue_missing"),
        "counting the queue at the end finds it gone: {errors:?}"
    );
    assert!(
        r.publishes_ok > 100,
        "publishes before the delete succeeded: {} ok, {errors:?}",
        r.publishes_ok
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ; tests/run runs it"]
async fn pooled_reconnects_to_a_dead_broker_at_a_bounded_rate() {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(url) = broker() else { return };
    let parsed: lapin::uri::AMQPUri = url.parse().unwrap();
    let proxy = common::DeadlyProxy::start(format!(
        "{}:{}",
        parsed.authority.host, parsed.authority.port
    ))
    .await;
    let via_proxy = format!(
        "amqp://{}:{}@127.0.0.1:{}/{}",
        parsed.authority.userinfo.username,
        parsed.authority.userinfo.password,
        proxy.port,
        urlencode_vhost(&parsed.vhost)
    );
    let queue = common::unique("tb-dead-amqp");
    let toml = format!(
        r#"
            name = "amqp-dead"
            duration = "4s"
            rate = 500
            warmup = 0
            concurrency = 2
            publish_timeout = "500ms"

            [task]
            queue = "{queue}"

            [[case]]
            name = "c"
            backend = "amqp"
            path = "pooled"
            url = "{via_proxy}"
        "#
    );
    // Dead from 0.5 s to 2.5 s of a 4 s case (open loop, to leave the other tests some CPU).
    let outage = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        proxy.kill();
        let died = std::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let dead_for = died.elapsed();
        proxy.revive();
        dead_for
    };
    let (r, dead_for) = tokio::join!(run(&toml), outage);
    let attempts = proxy.attempts_while_dead.load(Relaxed);
    let failed: u64 = r
        .errors
        .by_kind()
        .iter()
        .filter(|e| !matches!(e.0.name(), "delivery_mismatch" | "check"))
        .map(|e| e.1)
        .sum();
    eprintln!(
        "{attempts} connect attempts and {failed} errors in {dead_for:?} dead: {:?}",
        r.errors.by_kind()
    );
    let per_s = |n: u64| n as f64 / dead_for.as_secs_f64();
    assert!(attempts >= 1, "it tried to reconnect");
    assert!(
        per_s(attempts) <= 20.0,
        "{attempts} attempts in {dead_for:?}"
    );
    assert!(
        per_s(failed) <= 20.0,
        "{failed} errors in {dead_for:?}: {:?}",
        r.errors.by_kind()
    );
    assert!(
        r.publishes_ok > 0 && r.delivered.unwrap_or(0) > 0,
        "published before and after: {} ok, delivered {:?}",
        r.publishes_ok,
        r.delivered
    );
    assert!(
        !proxy.forwards.lock().unwrap().is_empty(),
        "it connected again after the broker came back"
    );
    let conn = connect(&url).await;
    let ch = conn.create_channel().await.unwrap();
    delete(&ch, &queue).await;
}

/// `vhost` as the path of an AMQP URL.
fn urlencode_vhost(vhost: &str) -> String {
    vhost.replace('%', "%25").replace('/', "%2f")
}

/// A one-publisher window case on `queue`: `publishes` measured after `warmup`, `extra` adds case keys.
fn window_toml(
    queue: &str,
    url: &str,
    publishes: u64,
    warmup: u64,
    window: usize,
    extra: &str,
) -> String {
    format!(
        r#"
            name = "amqp-window"
            publishes = {publishes}
            warmup = {warmup}
            concurrency = 1

            [task]
            name = "tasks.add"
            args = [2, 2]
            queue = "{queue}"

            [[case]]
            name = "c"
            backend = "amqp"
            path = "pooled"
            confirm = "window"
            confirm_window = {window}
            url = "{url}"
            {extra}
        "#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ; tests/run runs it"]
async fn confirm_window_records_every_message_once_at_its_own_ack() {
    let Some(url) = broker() else {
        return;
    };
    for window in [1, 16, 256] {
        let queue = common::unique(&format!("tb-amqp-window-{window}"));
        // The warm-up's acks must not reach the measured histogram; 2 publishers share the connection.
        let toml = window_toml(&queue, &url, 600, 50, window, "")
            .replace("concurrency = 1", "concurrency = 2");
        let r = run(&toml).await;
        assert_eq!(
            r.errors.total(),
            0,
            "window {window}: {:?}",
            r.errors.by_kind()
        );
        assert_eq!(r.publishes_ok, 600, "window {window}: every message acked");
        assert_eq!(
            r.latency.len(),
            600,
            "window {window}: one latency per message, from its send to its own ack"
        );
        assert_eq!(
            r.warmup_ok, 50,
            "window {window}: the warm-up's acks counted apart"
        );
        assert_eq!(r.delivered, Some(600), "window {window}");
        assert!(r.latency.min() > 0, "window {window}");
        if window == 1 {
            // Every publish after the first waits for the previous ack: the confirm stage.
            assert!(
                r.stages.iter().any(|s| s.stage == Stage::Confirm),
                "window 1 waits for room: {:?}",
                r.stages.iter().map(|s| s.stage).collect::<Vec<_>>()
            );
        }
        assert!(
            r.notes.iter().any(|n| n.contains("confirm = window")),
            "{:?}",
            r.notes
        );
        drain_and_delete(&url, &queue).await;
    }
}

/// Counts the basic.ack frames lapin receives (its trace of every frame), and those with `multiple` set.
#[derive(Default, Clone)]
struct AckCounter {
    acks: std::sync::Arc<std::sync::atomic::AtomicU64>,
    multiple: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for AckCounter {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Frame(String);
        impl tracing::field::Visit for Frame {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "frame" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut frame = Frame(String::new());
        event.record(&mut frame);
        if frame.0.contains("Ack(Ack") {
            use std::sync::atomic::Ordering::Relaxed;
            self.acks.fetch_add(1, Relaxed);
            if frame.0.contains("multiple: true") {
                self.multiple.fetch_add(1, Relaxed);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ; tests/run runs it"]
async fn confirm_window_counts_every_message_of_a_multiple_ack() {
    use std::sync::atomic::Ordering::Relaxed;
    use tracing_subscriber::layer::SubscriberExt;
    let Some(url) = broker() else {
        return;
    };
    // lapin traces every frame it handles on its I/O thread, so the counter has to be the global subscriber.
    let counter = AckCounter::default();
    let subscriber = tracing_subscriber::registry().with(tracing_subscriber::Layer::with_filter(
        counter.clone(),
        tracing_subscriber::filter::Targets::new()
            .with_target("lapin::channels", tracing::Level::TRACE),
    ));
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        panic!("another test set the global tracing subscriber");
    }
    let queue = common::unique("tb-amqp-window-multiple");
    let n = 5000;
    let r = run(&window_toml(&queue, &url, n, 0, 256, "")).await;
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors.by_kind());
    assert_eq!(r.publishes_ok, n);
    assert_eq!(r.latency.len(), n, "one latency per message");
    let (acks, multiple) = (counter.acks.load(Relaxed), counter.multiple.load(Relaxed));
    assert!(
        multiple > 0 && acks < n,
        "RabbitMQ acked {n} persistent messages with {acks} basic.ack frames, {multiple} of them \
         `multiple`: a test of ranges needs some"
    );
    eprintln!("{n} messages, {acks} basic.ack frames, {multiple} with multiple = true");
    drain_and_delete(&url, &queue).await;
}

/// Runs `rabbitmqctl ARGS`; `Err` says why it could not.
fn rabbitmqctl(args: &[&str]) -> Result<(), String> {
    match std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "rabbitmqctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run rabbitmqctl: {e}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ and rabbitmqctl; tests/run runs it"]
async fn confirm_window_counts_nacks_per_message() {
    let Some(url) = broker() else {
        return;
    };
    // A queue that holds 100 messages and nacks the rest. taskbench declares Celery's queue (durable, no
    // arguments), and RabbitMQ refuses that declare on a queue declared with `x-max-length` (inequivalent
    // arguments: the case would fail as `declare_conflict`). A policy sets the same limits without
    // arguments, so the limit is applied to exactly this test's queue, and cleared after.
    let queue = common::unique("tb-amqp-window-nack");
    let policy = queue.clone();
    let pattern = format!("^{queue}$");
    if let Err(why) = rabbitmqctl(&[
        "-q",
        "set_policy",
        "--apply-to",
        "queues",
        &policy,
        &pattern,
        r#"{"max-length": 100, "overflow": "reject-publish"}"#,
    ]) {
        common::skip_test(&why);
        return;
    }
    let r = run(&window_toml(&queue, &url, 300, 0, 16, "")).await;
    let cleared = rabbitmqctl(&["-q", "clear_policy", &policy]);
    let conn = connect(&url).await;
    let ch = conn.create_channel().await.unwrap();
    delete(&ch, &queue).await;
    let _ = conn.close(200, "OK".into()).await;
    cleared.expect("clearing the test's policy");
    let errors = r.errors.by_kind();
    assert_eq!(r.publishes_ok, 100, "the first 100 fit: {errors:?}");
    assert_eq!(r.latency.len(), 100, "only acked messages have a latency");
    let nacked = errors.iter().find(|(k, _, _)| k.name() == "nack");
    assert!(
        nacked.is_some_and(|(_, n, _)| *n == 200),
        "the other 200 are a nack each: {errors:?}"
    );
    assert_eq!(r.delivered, Some(100), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs rabbitmq-server for a private node; tests/run runs it"]
async fn a_memory_alarm_on_a_private_node_is_counted_and_timed() {
    // Never the shared broker: other tests publish to it, and an alarm blocks every publisher on a node.
    let node = match PrivateNode::start() {
        Ok(node) => node,
        Err(why) => return common::skip_test(&why),
    };
    let toml = |duration: &str| {
        format!(
            r#"
                name = "alarm"
                duration = "{duration}"
                rate = 200
                warmup = 0
                publish_timeout = "2s"

                [task]
                queue = "tb-alarm"

                [[case]]
                name = "c"
                backend = "amqp"
                path = "pooled"
                url = "{}"
            "#,
            node.url()
        )
    };
    let flow = |r: &CaseResult| {
        r.facts
            .flow_control
            .clone()
            .unwrap_or_else(|| panic!("flow-control facts on a pooled path: {:?}", r.facts))
    };

    let quiet = run(&toml("1s")).await;
    assert_eq!(quiet.errors.total(), 0, "{:?}", quiet.errors.by_kind());
    assert_eq!(flow(&quiet).blocked, 0, "{:?}", flow(&quiet));
    assert!(
        quiet
            .notes_with_facts()
            .iter()
            .any(|n| n.starts_with("flow control: connection.blocked 0 times")),
        "a case without a block says so: {:?}",
        quiet.notes_with_facts()
    );

    // Long enough for both rabbitmqctl runs (each starts an Erlang VM: a second or more, several on a
    // loaded machine) and the 1.5 s between them, with time left for the unblock to arrive.
    let case = toml("10s");
    let runner = tokio::spawn(async move { run(&case).await });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let ctl = |args: &'static [&'static str]| {
        let ctl = node.ctl();
        tokio::task::spawn_blocking(move || ctl.run(args))
    };
    // No block can begin before the alarm is raised.
    let raising = std::time::Instant::now();
    ctl(&["set_vm_memory_high_watermark", "0.000001"])
        .await
        .unwrap()
        .expect("raising the alarm");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ctl(&["set_vm_memory_high_watermark", "0.4"])
        .await
        .unwrap()
        .expect("clearing the alarm");
    let r = runner.await.unwrap();
    let alarm_to_end = raising.elapsed();
    let seen = flow(&r);
    eprintln!("{}: {seen:?}", common::test_name());
    assert_eq!((seen.blocked, seen.unblocked), (1, 1), "{seen:?}");
    assert!(
        seen.reason
            .as_deref()
            .is_some_and(|r| r.contains("low on memory")),
        "the broker's reason: {seen:?}"
    );
    // How long rabbitmqctl takes to raise and clear the alarm is the machine's business; the block lies
    // between raising the alarm and the end of the case, on the same clock.
    let blocked = Duration::from_nanos(seen.blocked_ns);
    assert!(
        blocked > Duration::ZERO && blocked <= alarm_to_end,
        "blocked for a while, within the {alarm_to_end:?} from raising the alarm to the case's end: {seen:?}"
    );
    assert_eq!(
        seen.longest_blocked_ns, seen.blocked_ns,
        "one block: {seen:?}"
    );
    assert!(r.publishes_ok > 200, "publishing went on after the alarm");
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ; tests/run runs it"]
async fn quorum_queues_are_declared_as_celery_declares_them_on_every_path() {
    let Some(url) = broker() else {
        return;
    };
    for (path, confirm) in [("pooled", "each"), ("acquire", "batch"), ("fresh", "each")] {
        let queue = common::unique(&format!("tb-quorum-{path}"));
        let n = if path == "fresh" { 20 } else { 200 };
        let r = run(&case_toml(
            &queue,
            path,
            n,
            &format!(
                r#"
                    url = "{url}"
                    queue_type = "quorum"
                    confirm = "{confirm}"
                    keep = true
                "#
            ),
        ))
        .await;
        assert_eq!(r.errors.total(), 0, "{path}: {:?}", r.errors.by_kind());
        assert_eq!(
            r.delivered,
            Some(n),
            "{path}: every confirmed message is in the queue"
        );
        // The broker says what it declared: a quorum queue.
        let out = std::process::Command::new("rabbitmqctl")
            .args(["-q", "list_queues", "name", "type"])
            .output();
        let listed = out
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let line = listed
            .lines()
            .find(|l| l.split_whitespace().next() == Some(queue.as_str()));
        if let Some(line) = line {
            assert!(line.contains("quorum"), "{path}: {line}");
        } else if !listed.is_empty() {
            panic!("{path}: {queue} not listed by rabbitmqctl: {listed}");
        }
        assert_eq!(
            drain_and_delete(&url, &queue).await.len(),
            n as usize,
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ; tests/run runs it"]
async fn a_quorum_case_on_an_existing_classic_queue_is_a_declare_conflict() {
    let Some(url) = broker() else {
        return;
    };
    let queue = common::unique("tb-quorum-conflict");
    let classic = run(&case_toml(
        &queue,
        "pooled",
        5,
        &format!(
            r#"
                url = "{url}"
                keep = true
            "#
        ),
    ))
    .await;
    assert_eq!(classic.errors.total(), 0, "{:?}", classic.errors.by_kind());
    let r = run(&case_toml(
        &queue,
        "pooled",
        5,
        &format!(
            r#"
                url = "{url}"
                queue_type = "quorum"
            "#
        ),
    ))
    .await;
    let kinds: Vec<&str> = r.errors.by_kind().iter().map(|e| e.0.name()).collect();
    assert_eq!(kinds, ["declare_conflict"], "{:?}", r.errors.by_kind());
    drain_and_delete(&url, &queue).await;
}
