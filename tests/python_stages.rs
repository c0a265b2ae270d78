//! The stages of a real Celery and kombu publish: the breakdown names nearly all of it (what no timed
//! function holds, `(outside stages)`, stays a sliver), and a user's `before_task_publish` handler is timed
//! as the `signals` stage and named in the case's facts. They need the Celery venv (TASKBENCH_PYTHON) and a
//! broker, so they are `#[ignore]`d: `tests/run` runs them.

mod common;

use std::path::{Path, PathBuf};
use taskbench::engine::RunControl;
use taskbench::record::CaseResult;
use taskbench::stage::Stage;

/// The most of a stock publish's summed latency `(outside stages)` may hold. It was 36-39% before Celery's
/// option assembly, routing, argsrepr, signals and result were timed, about 1% after
/// (docs/measurements.md); the margin is for a loaded machine, where the harness's own call grows.
const OUTSIDE_BOUND: f64 = 0.10;

/// The venv's Python and whether `backend`'s broker is reachable; `None` after reporting the skip.
fn python_and_broker(backend: &str) -> Option<PathBuf> {
    let Some(python) = common::celery_python() else {
        common::skip_test("no Python with Celery (TASKBENCH_PYTHON); run the suite with tests/run");
        return None;
    };
    let url = broker_url(backend);
    let addr = if backend == "amqp" {
        let parsed: lapin::uri::AMQPUri = url.parse().unwrap();
        format!("{}:{}", parsed.authority.host, parsed.authority.port)
    } else {
        url.trim_start_matches("redis://")
            .split('/')
            .next()
            .unwrap()
            .to_string()
    };
    if !common::reachable(&addr) {
        common::skip_test(&format!("no {backend} broker reachable at {addr}"));
        return None;
    }
    Some(python)
}

fn broker_url(backend: &str) -> String {
    if backend == "amqp" {
        common::amqp_url()
    } else {
        common::redis_url()
    }
}

/// A one-case scenario of `publishes` publishes of `tasks.add` on `backend`; `case` adds case keys.
fn scenario(python: &Path, backend: &str, publishes: u64, case: &str) -> String {
    format!(
        r#"
            name = "py-stages"
            python = "{}"
            publishes = {publishes}
            warmup = 20

            [task]
            name = "tasks.add"
            args = [2, 2]
            queue = "{}"

            [[case]]
            name = "c"
            backend = "{backend}"
            url = "{}"
            {case}
        "#,
        python.display(),
        common::unique(&format!("tb-stages-{backend}")),
        broker_url(backend)
    )
}

/// Runs the first case of `toml` in-process, after the check `taskbench run` makes first.
async fn run(toml: &str) -> CaseResult {
    let mut scenario =
        taskbench::scenario::parse(toml, "test.toml").unwrap_or_else(|e| panic!("{e}\n{toml}"));
    taskbench::backend::python::check_interpreters(&mut scenario, false)
        .unwrap_or_else(|e| panic!("{e}\n{toml}"));
    taskbench::backend::run_case(&scenario.cases[0], &RunControl::new()).await
}

/// The share of the summed latency the breakdown shows as `(outside stages)` (0 when it has no such row).
fn outside_share(r: &CaseResult) -> f64 {
    taskbench::summary::breakdown(r)
        .iter()
        .find(|row| row.stage == "(outside stages)")
        .map_or(0.0, |row| row.share)
}

/// A few hundred stock publishes of `client` on `path`: every one succeeds, and what no timed function
/// holds stays under the bound.
async fn little_is_outside_stages(backend: &str, client: &str, path: &str) {
    let Some(python) = python_and_broker(backend) else {
        return;
    };
    let r = run(&scenario(
        &python,
        backend,
        300,
        &format!("path = \"{path}\"\nclient = \"{client}\""),
    ))
    .await;
    let rows = taskbench::summary::breakdown(&r);
    let what = format!("{backend} {client} {path}: {rows:#?}\n{:?}", r.notes);
    assert_eq!(r.errors.total(), 0, "{what}");
    assert_eq!(r.publishes_ok, 300, "{what}");
    let share = outside_share(&r);
    assert!(
        share <= OUTSIDE_BOUND,
        "{what}\n(outside stages) is {:.1}% of the latency, over {:.0}%: a part of the publish is in no stage",
        share * 100.0,
        OUTSIDE_BOUND * 100.0
    );
    let has = |s: Stage| r.stages.iter().any(|x| x.stage == s);
    assert!(has(Stage::Options), "{what}: no options stage");
    if client == "celery" {
        for stage in [Stage::Route, Stage::Argsrepr, Stage::Signals, Stage::Result] {
            assert!(has(stage), "{what}: no {} stage", stage.name());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Celery venv and RabbitMQ; tests/run runs it"]
async fn a_stock_celery_publish_is_nearly_all_in_named_stages() {
    little_is_outside_stages("amqp", "celery", "acquire").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Celery venv and Redis; tests/run runs it"]
async fn a_stock_kombu_publish_is_nearly_all_in_named_stages() {
    little_is_outside_stages("redis", "kombu", "pooled").await;
}

/// A user's app whose `before_task_publish` handler takes 2 ms per publish.
fn app_with_a_publish_handler(dir: &Path) {
    std::fs::write(
        dir.join("signalapp.py"),
        "import time\nfrom celery import Celery\nfrom celery.signals import before_task_publish\n\n\
         app = Celery('signalapp')\n\n\
         @app.task(name='tasks.add')\ndef add(x, y):\n    return x + y\n\n\
         @before_task_publish.connect\ndef stamp_trace_id(headers=None, **kwargs):\n    \
         time.sleep(0.002)\n    headers['trace_id'] = 'x'\n",
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Celery venv and Redis; tests/run runs it"]
async fn a_before_task_publish_handler_is_timed_as_the_signals_stage_and_named() {
    let Some(python) = python_and_broker("redis") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    app_with_a_publish_handler(dir.path());
    let r = run(&scenario(
        &python,
        "redis",
        30,
        &format!(
            "path = \"acquire\"\nclient = \"celery\"\ncelery_app = \"signalapp:app\"\npythonpath = \"{}\"",
            dir.path().display()
        ),
    ))
    .await;
    let what = format!("{:#?}\n{:?}", taskbench::summary::breakdown(&r), r.notes);
    assert_eq!(r.errors.total(), 0, "{what}");
    let signals = r
        .stages
        .iter()
        .find(|s| s.stage == Stage::Signals)
        .unwrap_or_else(|| panic!("no signals stage: {what}"));
    // The handler sleeps 2 ms in each of the 30 publishes: at least that much is the stage's.
    assert!(
        signals.total_ns >= 30 * 2_000_000,
        "the handler's sleep is not in the signals stage ({} ns): {what}",
        signals.total_ns
    );
    let python = r.facts.python.as_ref().expect("a Python case has facts");
    let named = python.stages.get("signals").cloned().unwrap_or_default();
    assert!(
        named
            .iter()
            .any(|f| f == "before_task_publish: signalapp.stamp_trace_id"),
        "the handler is not named in the signals stage's functions: {named:?}"
    );
    let notes = python.notes();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("before_task_publish: signalapp.stamp_trace_id")),
        "the notes do not name the handler: {notes:?}"
    );
}
