//! Long `fresh` runs on the local backends, with the embedded and the standalone sink: every publish arrives
//! and none fails, however long the case runs.
//!
//! A `fresh` publisher opens a connection per publish, and a sink that accepts faster than it reads and
//! closes piles connections up until the process runs out of descriptors (`Too many open files`) or the
//! listen backlog fills (`Resource temporarily unavailable`). With the usual `ulimit -n` that took seconds of
//! a release build; here the processes run with a limit of [`DESCRIPTORS`], where the pile-up reached it
//! within a second of the test build on every try (before the sink bounded the connections it holds).

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The descriptor limit (`ulimit -n`, soft and hard) the processes under test run with: room for the
/// runtime, the run's files and four publishers with their sink (run/preflight.rs asks 73), little more.
const DESCRIPTORS: u32 = 80;
/// Long enough to have failed before, at [`DESCRIPTORS`], on every try.
const DURATION: &str = "2s";
/// Publishers per case: four publishers' connections outran a standalone sink of the test build, where
/// one did not.
const PUBLISHERS: u32 = 4;

/// taskbench with `args`, under `ulimit -n` [`DESCRIPTORS`].
fn limited_taskbench(args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -n {DESCRIPTORS} && exec \"$0\" \"$@\""))
        .arg(assert_cmd::cargo::cargo_bin("taskbench"))
        .args(args);
    cmd
}

/// A one-case-per-backend `fresh` scenario; `address` gives a case its external sink.
fn scenario(dir: &Path, cases: &[(&str, Option<&str>)]) -> std::path::PathBuf {
    let mut text = format!(
        "name = \"local-fresh\"\nduration = \"{DURATION}\"\nwarmup = 100\nconcurrency = {PUBLISHERS}\n"
    );
    for (backend, address) in cases {
        text += &format!(
            "[[case]]\nname = \"{backend}-fresh\"\nbackend = \"{backend}\"\npath = \"fresh\"\n"
        );
        if let Some(address) = address {
            text += &format!("address = \"{address}\"\n");
        }
    }
    let path = dir.join("scenario.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `scenario` under the limit; returns its summary's cases after checking it exited 0.
fn run(scenario: &Path, out: &Path) -> Vec<Value> {
    let done = limited_taskbench(&["run", "--out"])
        .arg(out)
        .arg(scenario)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "{:?}\n{stdout}\n{}",
        done.status,
        String::from_utf8_lossy(&done.stderr)
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    summary["cases"].as_array().unwrap().clone()
}

/// The case's successful publishes, after checking it had no error.
fn published_without_errors(case: &Value) -> u64 {
    let name = &case["name"];
    assert_eq!(case["errors"], serde_json::json!({}), "{name}");
    let ok = case["publishes_ok"].as_u64().unwrap();
    assert!(ok > 0, "{name} published nothing");
    ok
}

#[test]
fn fresh_cases_on_the_embedded_sink_lose_nothing_and_fail_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario(dir.path(), &[("unix", None), ("tcp", None), ("fifo", None)]);
    let cases = run(&scenario, &dir.path().join("run"));
    assert_eq!(cases.len(), 3);
    for case in &cases {
        let ok = published_without_errors(case);
        assert_eq!(
            case["delivered"], ok,
            "{}: the sink got every publish",
            case["name"]
        );
    }
}

/// A `taskbench sink` under the limit, stopped with SIGINT.
struct StandaloneSink {
    child: Child,
    /// Where it listens, as it printed it (`unix:PATH`, `tcp:IP:PORT`, `fifo:PATH`).
    endpoint: String,
}

impl StandaloneSink {
    fn start(listen: &str) -> StandaloneSink {
        let mut child = limited_taskbench(&["sink", "--listen", listen])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // "taskbench sink listening on ENDPOINT (Ctrl-C to stop)", once it listens.
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let endpoint = line
            .strip_prefix("taskbench sink listening on ")
            .and_then(|rest| rest.split_once(' '))
            .unwrap_or_else(|| panic!("the sink did not start: {line:?}"))
            .0
            .to_string();
        StandaloneSink { child, endpoint }
    }

    /// The `address` a case gives for this sink (the endpoint without its `kind:`).
    fn address(&self) -> &str {
        self.endpoint.split_once(':').unwrap().1
    }

    /// Stops the sink; returns the frames it received.
    fn stop(self) -> u64 {
        use nix::sys::signal::{Signal, kill};
        kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            Signal::SIGINT,
        )
        .unwrap();
        let out = self.child.wait_with_output().unwrap();
        let printed = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "{:?}: {printed}", out.status);
        assert!(printed.contains(" 0 bad, 0 partial"), "{printed}");
        printed
            .strip_prefix("received ")
            .and_then(|rest| rest.split_once(' '))
            .and_then(|(frames, _)| frames.parse().ok())
            .unwrap_or_else(|| panic!("{printed:?}"))
    }
}

#[test]
fn fresh_cases_on_a_standalone_sink_lose_nothing_and_fail_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let listen = [
        format!("unix:{}", dir.path().join("sink.sock").display()),
        "tcp:127.0.0.1:0".to_string(),
        format!("fifo:{}", dir.path().join("sink.fifo").display()),
    ];
    for listen in listen {
        let sink = StandaloneSink::start(&listen);
        let backend = listen.split_once(':').unwrap().0;
        let scenario = scenario(dir.path(), &[(backend, Some(sink.address()))]);
        let out = dir.path().join(format!("run-{backend}"));
        let cases = run(&scenario, &out);
        let ok = published_without_errors(&cases[0]);
        // The warm-up's publishes arrive too.
        assert_eq!(
            sink.stop(),
            ok + 100,
            "{backend}: the sink got every publish"
        );
    }
}
