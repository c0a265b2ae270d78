//! `floor = true` / `run --floor`: each case's backend floor, measured right before it, with the case's p50
//! and throughput as ratios to it in summary.json, the table and report.html; and a floor that cannot be
//! measured says why instead of measuring a stand-in.

mod common;

use common::taskbench;
use serde_json::Value;
use std::path::Path;

/// Runs `scenario` (text) with `args` after `run`; returns the summary's cases, stdout and the exit code.
fn run(dir: &Path, scenario: &str, args: &[&str]) -> (Vec<Value>, String, Option<i32>) {
    let file = dir.join("floor.toml");
    std::fs::write(&file, scenario).unwrap();
    let out = dir.join("out");
    let done = taskbench()
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&done.stdout).into_owned();
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("summary.json"))
            .unwrap_or_else(|e| panic!("{e}\n{stdout}\n{}", String::from_utf8_lossy(&done.stderr))),
    )
    .unwrap();
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let cases = summary["cases"].as_array().unwrap().clone();
    for c in &cases {
        if c.get("floor").is_some() {
            assert!(
                html.contains("Against the floor"),
                "report.html shows the floors"
            );
        }
    }
    (cases, stdout, done.status.code())
}

/// Checks a measured floor of `units` units, and the case's ratios against it.
fn check_measured_floor(case: &Value, units: u64) {
    let name = &case["name"];
    let f = &case["floor"];
    assert_eq!(f["unavailable"], Value::Null, "{name}: {f}");
    assert_eq!(f["units"], units, "{name}: {f}");
    let floor_p50 = f["latency_ns"]["p50"].as_f64().unwrap();
    let floor_tput = f["throughput_per_s"].as_f64().unwrap();
    assert!(floor_p50 > 0.0 && floor_tput > 0.0, "{name}: {f}");
    let p50 = case["latency_ns"]["p50"].as_f64().unwrap();
    let tput = case["throughput_per_s"].as_f64().unwrap();
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs();
    assert!(
        close(f["p50_ratio"].as_f64().unwrap(), p50 / floor_p50),
        "{name}: {f}"
    );
    assert!(
        close(f["throughput_ratio"].as_f64().unwrap(), tput / floor_tput),
        "{name}: {f}"
    );
}

#[test]
fn a_floor_run_on_the_local_backends_writes_each_floor_and_the_ratios() {
    let dir = tempfile::tempdir().unwrap();
    let (cases, stdout, code) = run(
        dir.path(),
        "name = \"floor\"\npublishes = 500\nwarmup = 10\nfloor = true\n\
         [[case]]\nname = \"unix-raw\"\nbackend = \"unix\"\npath = \"raw\"\n\
         [[case]]\nname = \"tcp-fresh\"\nbackend = \"tcp\"\npath = \"fresh\"\n\
         [[case]]\nname = \"fifo-raw\"\nbackend = \"fifo\"\npath = \"raw\"\n",
        &[],
    );
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(cases.len(), 3);
    for c in &cases {
        check_measured_floor(c, 500);
        assert_eq!(
            c["delivered"], 500,
            "the floor wrote nowhere near the case's sink"
        );
    }
    assert!(
        stdout.contains("Floors (measured right before each case"),
        "{stdout}"
    );
    assert!(stdout.contains("p50 / floor"), "{stdout}");
    let unix_row = stdout
        .lines()
        .skip_while(|l| !l.starts_with("Floors"))
        .find(|l| l.trim_start().starts_with("unix-raw"))
        .unwrap_or_else(|| panic!("no unix-raw row under Floors:\n{stdout}"));
    let ratio = format!("{:.2}x", cases[0]["floor"]["p50_ratio"].as_f64().unwrap());
    assert!(unix_row.contains(&ratio), "{unix_row} shows {ratio}");
}

#[test]
fn run_floor_asks_for_the_floors_the_scenario_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = "name = \"no-floor\"\npublishes = 100\nwarmup = 0\n\
                    [[case]]\nname = \"unix-raw\"\nbackend = \"unix\"\npath = \"raw\"\n";
    let (cases, stdout, _) = run(dir.path(), scenario, &[]);
    assert!(cases[0].get("floor").is_none(), "no floor unless asked");
    assert!(!stdout.contains("Floors"), "{stdout}");
    let (cases, _, code) = run(dir.path(), scenario, &["--floor", "--force"]);
    assert_eq!(code, Some(0));
    check_measured_floor(&cases[0], 100);
}

#[test]
fn an_amqp_floor_with_batch_or_window_confirms_says_it_is_not_measured_instead_of_measuring_a_stand_in()
 {
    let dir = tempfile::tempdir().unwrap();
    // No broker answers on port 1: the cases fail to connect; their floors are not attempted.
    let case = |confirm: &str| {
        format!(
            "[[case]]\nname = \"{confirm}\"\nbackend = \"amqp\"\npath = \"pooled\"\nconfirm = \"{confirm}\"\n\
             url = \"amqp://guest:guest@127.0.0.1:1/%2f\"\n"
        )
    };
    let (cases, stdout, code) = run(
        dir.path(),
        &(format!(
            "name = \"amqp-floor\"\npublishes = 10\nwarmup = 0\nfloor = true\npublish_timeout = \"2s\"\n{}{}",
            case("batch"),
            case("window")
        ) + "[[case]]\nname = \"pipelined\"\nbackend = \"amqp\"\npath = \"pooled\"\nconfirm = \"each\"\nbatch = 8\n\
               url = \"amqp://guest:guest@127.0.0.1:1/%2f\"\n"),
        &[],
    );
    assert_eq!(code, Some(1), "{stdout}");
    for (c, confirm) in cases.iter().zip(["batch", "window"]) {
        let f = &c["floor"];
        assert_eq!(f["units"], 0);
        assert_eq!(f["p50_ratio"], Value::Null);
        let why = f["unavailable"].as_str().unwrap();
        assert!(
            why.starts_with(&format!(
                "not measured: confirm = \"{confirm}\" times each message"
            )),
            "{why}"
        );
        assert!(
            stdout.contains(&format!("{confirm}: no floor: not measured")),
            "the table says so: {stdout}"
        );
    }
    let why = cases[2]["floor"]["unavailable"].as_str().unwrap();
    assert!(
        why.starts_with("not measured: batch = 8 sends that many messages per publish call"),
        "{why}"
    );
}

#[test]
fn an_unreachable_amqp_floor_says_why_with_the_url_and_no_password() {
    let dir = tempfile::tempdir().unwrap();
    let (cases, stdout, code) = run(
        dir.path(),
        "name = \"amqp-floor\"\npublishes = 10\nwarmup = 0\nfloor = true\npublish_timeout = \"2s\"\n\
         [[case]]\nname = \"amqp\"\nbackend = \"amqp\"\npath = \"pooled\"\nconfirm = \"each\"\n\
         url = \"amqp://guest:sekrit@127.0.0.1:1/%2f\"\n",
        &[],
    );
    assert_eq!(code, Some(1), "{stdout}");
    let why = cases[0]["floor"]["unavailable"].as_str().unwrap();
    assert!(
        why.starts_with("the floor failed: amqp://guest:***@127.0.0.1:1/%2f: "),
        "{why}"
    );
    assert!(!stdout.contains("sekrit") && !why.contains("sekrit"));
}

/// RabbitMQ, for the AMQP floor's tests; `None` (the test skips) when none is reachable.
async fn rabbitmq() -> Option<lapin::Connection> {
    let url = common::amqp_url();
    let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await;
    if conn.is_err() {
        common::skip_test(&format!("no RabbitMQ reachable at {url}"));
    }
    conn.ok()
}

/// [`run`] from an async test, in a directory of its own.
async fn run_blocking(scenario: String) -> (Vec<Value>, String, Option<i32>) {
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        run(dir.path(), &scenario, &[])
    })
    .await
    .unwrap()
}

/// Whether queue `name` exists: a passive declare, on a channel of its own (a failed one closes it).
async fn queue_exists(conn: &lapin::Connection, name: &str) -> bool {
    let channel = conn.create_channel().await.unwrap();
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    channel
        .queue_declare(name.into(), passive, Default::default())
        .await
        .is_ok()
}

/// Deletes what a test left on the broker: the queues `names`, and the exchange the case declared for its
/// queue `queue`.
async fn delete_queues(conn: &lapin::Connection, names: &[&str], queue: &str) {
    let channel = conn.create_channel().await.unwrap();
    for name in names {
        let _ = channel
            .queue_delete((*name).into(), Default::default())
            .await;
    }
    let _ = channel
        .exchange_delete(queue.into(), Default::default())
        .await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ; tests/run runs it"]
async fn an_amqp_floor_publishes_to_its_own_queue_and_deletes_it() {
    let Some(conn) = rabbitmq().await else { return };
    let url = common::amqp_url();
    let queue = common::unique("floor");
    let floor_queue = format!("{queue}.taskbench-floor");
    let (cases, stdout, code) = run_blocking(format!(
        "name = \"amqp-floor\"\npublishes = 300\nwarmup = 20\nfloor = true\n\
         [task]\nname = \"tasks.add\"\nqueue = \"{queue}\"\n\
         [[case]]\nname = \"off\"\nbackend = \"amqp\"\npath = \"pooled\"\nconfirm = \"off\"\nurl = \"{url}\"\n\
         [[case]]\nname = \"each\"\nbackend = \"amqp\"\npath = \"pooled\"\nconfirm = \"each\"\nurl = \"{url}\"\n"
    ))
    .await;
    let (case_queue, floor_left) = (
        queue_exists(&conn, &queue).await,
        queue_exists(&conn, &floor_queue).await,
    );
    delete_queues(&conn, &[&queue, &floor_queue], &queue).await;
    assert!(case_queue, "the case's queue is there");
    assert!(!floor_left, "the floor deleted its queue {floor_queue}");
    assert_eq!(code, Some(0), "{stdout}");
    for c in &cases {
        check_measured_floor(c, 300);
        assert_eq!(
            c["delivered"], 300,
            "the floor's publishes are not in the case's queue: {c}"
        );
    }
    assert!(
        cases[1]["floor"]["client"]
            .as_str()
            .unwrap()
            .ends_with("read its confirm"),
        "{}",
        cases[1]["floor"]
    );
}

#[tokio::test]
#[ignore = "needs RabbitMQ; tests/run runs it"]
async fn an_amqp_floor_that_fails_says_why_and_still_deletes_its_queue() {
    let Some(conn) = rabbitmq().await else { return };
    let url = common::amqp_url();
    let queue = common::unique("floor-fails");
    let floor_queue = format!("{queue}.taskbench-floor");
    // A queue of that name with other flags (not durable): the floor's declare fails on it, after the
    // floor's connection was open.
    let channel = conn.create_channel().await.unwrap();
    channel
        .queue_declare(
            floor_queue.as_str().into(),
            lapin::options::QueueDeclareOptions::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let (cases, stdout, code) = run_blocking(format!(
        "name = \"amqp-floor\"\npublishes = 20\nwarmup = 0\nfloor = true\n\
         [task]\nname = \"tasks.add\"\nqueue = \"{queue}\"\n\
         [[case]]\nname = \"each\"\nbackend = \"amqp\"\npath = \"pooled\"\nconfirm = \"each\"\nurl = \"{url}\"\n"
    ))
    .await;
    let floor_left = queue_exists(&conn, &floor_queue).await;
    delete_queues(&conn, &[&queue, &floor_queue], &queue).await;
    assert_eq!(code, Some(0), "the case itself ran: {stdout}");
    let why = cases[0]["floor"]["unavailable"].as_str().unwrap();
    assert!(
        why.contains("RabbitMQ closed the channel while taskbench waited for queue.declare-ok: 406 PRECONDITION_FAILED"),
        "{why}"
    );
    assert!(!floor_left, "the floor deleted the queue after its failure");
    assert_eq!(cases[0]["delivered"], 20, "the case is untouched");
}

#[tokio::test]
#[ignore = "needs RabbitMQ; tests/run runs it"]
async fn an_amqp_floor_refused_its_login_says_so_without_the_password() {
    if rabbitmq().await.is_none() {
        return;
    }
    let parsed: lapin::uri::AMQPUri = common::amqp_url().parse().unwrap();
    let bad = format!(
        "amqp://{}:not-the-password@{}:{}/%2f",
        parsed.authority.userinfo.username, parsed.authority.host, parsed.authority.port
    );
    let (cases, stdout, code) = run_blocking(format!(
        "name = \"amqp-floor\"\npublishes = 10\nwarmup = 0\nfloor = true\npublish_timeout = \"5s\"\n\
         [[case]]\nname = \"c\"\nbackend = \"amqp\"\npath = \"pooled\"\nconfirm = \"each\"\nurl = \"{bad}\"\n"
    ))
    .await;
    assert_eq!(code, Some(1), "{stdout}");
    let why = cases[0]["floor"]["unavailable"].as_str().unwrap();
    assert!(why.contains("ACCESS_REFUSED"), "the broker's reason: {why}");
    assert!(!why.contains("not-the-password") && !stdout.contains("not-the-password"));
    assert!(
        stdout.contains("Floors (measured right before each case, one client, closed loop):"),
        "no empty list of clients when no floor was measured: {stdout}"
    );
}

#[test]
fn an_unreachable_redis_floor_says_why_with_the_url_and_no_password() {
    let dir = tempfile::tempdir().unwrap();
    let (cases, stdout, code) = run(
        dir.path(),
        "name = \"redis-floor\"\npublishes = 10\nwarmup = 0\nfloor = true\npublish_timeout = \"2s\"\n\
         [[case]]\nname = \"redis\"\nbackend = \"redis\"\npath = \"pooled\"\nurl = \"redis://:sekrit@127.0.0.1:1/0\"\n",
        &[],
    );
    assert_eq!(code, Some(1), "{stdout}");
    let why = cases[0]["floor"]["unavailable"].as_str().unwrap();
    assert!(
        why.starts_with("the floor failed: redis://:***@127.0.0.1:1/0: "),
        "{why}"
    );
    assert!(!stdout.contains("sekrit") && !why.contains("sekrit"));
}

#[test]
#[ignore = "needs Redis; tests/run runs it"]
fn a_redis_floor_pushes_to_its_own_list_and_deletes_it() {
    let url = common::redis_url();
    let Ok(client) = redis::Client::open(url.as_str()) else {
        return common::skip_test(&format!("{url} is not a redis URL"));
    };
    let Ok(mut conn) = client.get_connection() else {
        return common::skip_test(&format!("no Redis reachable at {url}"));
    };
    let queue = common::unique("floor");
    let dir = tempfile::tempdir().unwrap();
    let (cases, stdout, code) = run(
        dir.path(),
        &format!(
            "name = \"redis-floor\"\npublishes = 300\nwarmup = 20\nfloor = true\n\
             [task]\nname = \"tasks.add\"\nqueue = \"{queue}\"\n\
             [[case]]\nname = \"redis-pooled\"\nbackend = \"redis\"\npath = \"pooled\"\nurl = \"{url}\"\n"
        ),
        &[],
    );
    assert_eq!(code, Some(0), "{stdout}");
    check_measured_floor(&cases[0], 300);
    assert_eq!(
        cases[0]["delivered"], 300,
        "the floor's pushes are not in the case's queue"
    );
    let left: u64 = redis::cmd("EXISTS")
        .arg(format!("{queue}.taskbench-floor"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(left, 0, "the floor's list is deleted");
}

#[test]
fn a_floor_that_is_not_true_or_false_is_refused_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "name = \"bad\"\nfloor = \"yes\"\n[[case]]\nname = \"u\"\nbackend = \"unix\"\npath = \"raw\"\n",
    )
    .unwrap();
    let done = taskbench().arg("validate").arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.toml:2:"), "{stderr}");
    assert!(stderr.contains("expected a boolean"), "{stderr}");
}
