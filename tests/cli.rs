//! The taskbench binary end to end, on the local backends (no broker needed).

mod common;

use assert_cmd::prelude::*;
use common::taskbench;
use predicates::prelude::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use taskbench::summary::{Mode, Summary};

/// The run folder's summary.json, read through the library's own type.
fn read_summary(dir: &Path) -> Summary {
    Summary::read(dir).unwrap()
}

fn write_scenario(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("scenario.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn quickstart_runs_every_case_and_its_counts_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    taskbench()
        .current_dir(manifest)
        .args([
            "run",
            "scenarios/quickstart.toml",
            "--publishes",
            "2000",
            "--out",
        ])
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains("throughput/s").and(predicate::str::contains("unix-raw")));

    let summary = read_summary(&out);
    assert_eq!(summary.scenario, "quickstart");
    assert_eq!(summary.taskbench_version, env!("CARGO_PKG_VERSION"));
    let cases = &summary.cases;
    let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "unix-raw",
            "tcp-raw",
            "fifo-raw",
            "unix-fresh",
            "tcp-fresh",
            "fifo-fresh"
        ]
    );
    for c in cases {
        let name = &c.name;
        assert_eq!(c.publishes_ok, 2000, "{name}");
        assert_eq!(
            c.delivered,
            Some(2000),
            "{name}: the sink got every publish"
        );
        assert!(c.errors.is_empty(), "{name}: {:?}", c.errors);
        let lat = &c.latency_ns;
        let (min, p50, p99, max) = (
            lat.min.unwrap(),
            lat.p50.unwrap(),
            lat.p99.unwrap(),
            lat.max.unwrap(),
        );
        assert!(min <= p50 && p50 <= p99 && p99 <= max, "{name}: {lat:?}");
        let expected_tput = 2000.0 / c.elapsed_s;
        assert!((c.throughput_per_s - expected_tput).abs() < 1e-6 * expected_tput);
        assert_eq!(c.stages["send"].count, 2000, "{name}");
        assert_eq!(c.stages["encode"].count, 2000, "{name}");
        assert!(!c.histogram.is_empty());
        assert!(out.join(format!("{name}.hgrm")).exists(), "{name}.hgrm");
    }
    let fresh = &cases[3].stages;
    assert_eq!(
        fresh["connect"].count, 2000,
        "fresh connects for every publish"
    );
    assert_eq!(fresh["close"].count, 2000);
}

#[test]
fn default_run_folder_is_results_scenario_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(
        dir.path(),
        r#"
            name = "tiny"
            publishes = 50
            warmup = 0

            [[case]]
            name = "u"
            backend = "unix"
            path = "raw"
        "#,
    );
    taskbench()
        .current_dir(dir.path())
        .arg("run")
        .arg(&scenario)
        .assert()
        .success();
    let runs: Vec<_> = std::fs::read_dir(dir.path().join("results/tiny"))
        .unwrap()
        .collect();
    assert_eq!(runs.len(), 1);
    let run = runs[0].as_ref().unwrap().path();
    let stamp = run.file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        stamp.len() == 20 && stamp.ends_with('Z') && !stamp.contains(':'),
        "{stamp}"
    );
    assert!(run.join("summary.json").exists() && run.join("u.hgrm").exists());
}

#[test]
fn json_format_prints_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(
        dir.path(),
        r#"
            name = "j"
            publishes = 100

            [[case]]
            name = "t"
            backend = "tcp"
            path = "raw"
        "#,
    );
    let out = taskbench()
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(dir.path().join("r"))
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    // Read untyped on purpose: this test pins the key names, the stable interface scripts read.
    let printed: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(printed["cases"][0]["publishes_ok"], 100);
    for key in ["scenario", "started_at", "taskbench_version", "cases"] {
        assert!(printed.get(key).is_some(), "{key}");
    }
    for key in [
        "name",
        "backend",
        "path",
        "publishes_ok",
        "errors",
        "delivered",
        "elapsed_s",
        "throughput_per_s",
        "latency_ns",
        "stages",
        "histogram",
    ] {
        assert!(printed["cases"][0].get(key).is_some(), "{key}");
    }
    // The nested keys DESIGN.md fixes, and the histogram decodes to the same count.
    let case = &printed["cases"][0];
    for key in ["min", "p50", "p90", "p99", "p999", "max", "mean"] {
        assert!(
            case["latency_ns"][key].as_u64().is_some(),
            "latency_ns.{key}"
        );
    }
    for key in ["count", "total_ns", "p50", "p99"] {
        assert!(
            case["stages"]["send"][key].as_u64().is_some(),
            "stages.send.{key}"
        );
    }
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(case["histogram"].as_str().unwrap())
        .unwrap();
    let h: hdrhistogram::Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .unwrap();
    assert_eq!(h.len(), 100);
    assert_eq!(
        h.value_at_quantile(0.5),
        case["latency_ns"]["p50"].as_u64().unwrap()
    );
    // The file in the run folder says the same as stdout.
    let file = std::fs::read_to_string(dir.path().join("r/summary.json")).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&file).unwrap(), printed);
}

#[test]
fn a_bad_scenario_exits_2_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    // Not indented: the error names the line and the column.
    let scenario = write_scenario(
        dir.path(),
        r#"name = "bad"
[[case]]
name = "c"
backend = "amqp"
path = "raw"
"#,
    );
    let shown = scenario.display().to_string();
    for cmd in ["run", "validate"] {
        taskbench()
            .arg(cmd)
            .arg(&scenario)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(format!(
                "{shown}:5:8: case \"c\": path `raw` is not supported on backend `amqp`"
            )));
    }
    assert!(
        !dir.path().join("results").exists(),
        "nothing is written for a bad scenario"
    );
}

#[test]
fn validate_lists_the_cases() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    taskbench()
        .current_dir(manifest)
        .args(["validate", "scenarios/open-loop.toml"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "unix-raw-20k: unix raw, until duration, open loop 20000/s x2",
        ));
}

#[test]
fn unknown_case_and_bad_flags_are_usage_errors() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    taskbench()
        .current_dir(manifest)
        .args(["run", "scenarios/quickstart.toml", "--case", "nope"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("no case named \"nope\"")
                .and(predicate::str::contains("cases: unix-raw, tcp-raw")),
        );
    taskbench()
        .args(["run", "x.toml", "--format", "xml"])
        .assert()
        .code(2);
    taskbench()
        .args(["run", "x.toml", "--publishes", "0"])
        .assert()
        .code(2);
    taskbench()
        .args(["sink", "--listen", "udp:1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "expected unix:PATH, fifo:PATH or tcp:IP:PORT",
        ));
}

/// A `taskbench sink` child process, stopped with SIGTERM.
struct SinkProcess(std::process::Child);

impl SinkProcess {
    fn start(listen: &str, ready: &Path) -> SinkProcess {
        let child = taskbench()
            .args(["sink", "--listen", listen])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready.exists() {
            assert!(Instant::now() < deadline, "sink did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        SinkProcess(child)
    }

    /// Stops the sink and returns what it printed.
    fn stop(self) -> String {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let out = self.0.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    }
}

#[test]
fn an_external_sink_receives_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ext.sock");
    let sink = SinkProcess::start(&format!("unix:{}", sock.display()), &sock);
    let scenario = write_scenario(
        dir.path(),
        &format!(
            r#"
                name = "ext"
                publishes = 300
                warmup = 20
                concurrency = 3

                [[case]]
                name = "u"
                backend = "unix"
                path = "raw"
                address = "{}"
            "#,
            sock.display()
        ),
    );
    taskbench()
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(dir.path().join("r"))
        .assert()
        .success();
    let summary = read_summary(&dir.path().join("r"));
    assert_eq!(summary.cases[0].publishes_ok, 300);
    assert_eq!(
        summary.cases[0].delivered, None,
        "an external sink's count is its own"
    );
    std::thread::sleep(Duration::from_millis(300));
    let printed = sink.stop();
    assert!(printed.starts_with("received 320 frames ("), "{printed}");
    assert!(printed.contains(" 0 bad, 0 partial"), "{printed}");
}

#[test]
fn a_stopped_external_sink_gives_counted_errors_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("gone.sock");
    let sink = SinkProcess::start(&format!("unix:{}", sock.display()), &sock);
    assert!(sink.stop().starts_with("received 0 frames"));
    let scenario = write_scenario(
        dir.path(),
        &format!(
            r#"
                name = "gone"
                publishes = 40
                warmup = 5

                [[case]]
                name = "u"
                backend = "unix"
                path = "raw"
                address = "{}"
            "#,
            sock.display()
        ),
    );
    taskbench()
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(dir.path().join("r"))
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "u: 40 unreachable errors: cannot connect to unix:",
        ));
    let summary = read_summary(&dir.path().join("r"));
    assert_eq!(summary.cases[0].publishes_ok, 0);
    assert_eq!(summary.cases[0].errors["unreachable"], 40);
}

#[test]
fn an_interrupt_keeps_what_was_measured_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(
        dir.path(),
        r#"
            name = "long"
            duration = "60s"
            rate = 2000

            [[case]]
            name = "first"
            backend = "unix"
            path = "raw"
            duration = "1s"

            [[case]]
            name = "second"
            backend = "unix"
            path = "raw"

            [[case]]
            name = "never"
            backend = "unix"
            path = "raw"
        "#,
    );
    let out_dir = dir.path().join("r");
    let child = taskbench()
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&out_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first case is written, then interrupt the second.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !out_dir.join("first.hgrm").exists() {
        assert!(Instant::now() < deadline, "first case never finished");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let summary = read_summary(&out_dir);
    assert!(summary.interrupted);
    let cases = &summary.cases;
    assert_eq!(cases.len(), 2, "the third case never started");
    assert!(cases[1].interrupted);
    assert!(cases[1].publishes_ok > 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("second: interrupted"));
}

#[test]
fn command_line_overrides_change_every_case() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(
        dir.path(),
        r#"
            name = "o"
            publishes = 50
            warmup = 5
            concurrency = 1

            [[case]]
            name = "a"
            backend = "unix"
            path = "raw"

            [[case]]
            name = "b"
            backend = "tcp"
            path = "raw"
            concurrency = 2
        "#,
    );
    let out = dir.path().join("r");
    taskbench()
        .arg("run")
        .arg(&scenario)
        .args(["-c", "3", "--warmup", "0", "--publishes", "90", "--out"])
        .arg(&out)
        .assert()
        .success();
    let summary = read_summary(&out);
    for c in &summary.cases {
        assert_eq!(c.concurrency, 3, "{c:?}");
        assert_eq!(c.warmup_ok, 0, "{c:?}");
        assert_eq!(c.publishes_ok, 90, "{c:?}");
        // The resolved settings are recorded, overrides applied.
        let settings = &c.settings;
        assert_eq!(
            (settings.concurrency, settings.warmup, settings.publishes),
            (3, 0, Some(90)),
            "{settings:?}"
        );
        assert_eq!(settings.task.name, "tasks.add");
        assert_eq!(settings.publish_timeout_s, 5.0);
    }
    // ... and how to run it again: the scenario as it was, the command line, the build and the machine.
    assert_eq!(
        std::fs::read_to_string(out.join("scenario.toml")).unwrap(),
        std::fs::read_to_string(&scenario).unwrap()
    );
    let env = &summary.environment;
    assert_eq!(
        &env.command_line[1..4],
        ["run", scenario.to_str().unwrap(), "-c"]
    );
    assert!(env.cores >= 1 && env.runtime_threads >= 1);
    assert!(!env.host.is_empty());
    assert_eq!(
        env.git_commit.len(),
        12,
        "built from this git checkout: {env:?}"
    );

    // --duration alone: the file's count no longer bounds a case that did not set one itself...
    let text = r#"
        name = "d"
        warmup = 0

        [[case]]
        name = "a"
        backend = "unix"
        path = "raw"
    "#;
    let scenario = write_scenario(dir.path(), text);
    let out = dir.path().join("d");
    taskbench()
        .arg("run")
        .arg(&scenario)
        .args(["--duration", "300ms", "--rate", "200", "--out"])
        .arg(&out)
        .assert()
        .success();
    let summary = read_summary(&out);
    let case = &summary.cases[0];
    assert_eq!(case.mode, Mode::Open);
    assert_eq!(case.rate, Some(200.0));
    // The open loop runs every publish due in the 300 ms, however late: one each 5 ms.
    assert_eq!(case.publishes_ok, 60, "{:?}", case.errors);
}

#[test]
fn bad_overrides_exit_2_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(
        dir.path(),
        r#"
            name = "b"

            [[case]]
            name = "r"
            backend = "redis"
            path = "pooled"
            batch = 8
        "#,
    );
    taskbench()
        .arg("run")
        .arg(&scenario)
        .args(["--rate", "100"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "`batch = 8` cannot be combined with --rate (100)",
        ));
    for (flag, value, says) in [
        ("--rate", "0", "is not a rate"),
        ("--duration", "soon", "is not a duration"),
        ("-c", "0", "invalid value '0'"),
    ] {
        taskbench()
            .arg("run")
            .arg(&scenario)
            .args([flag, value])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(says));
    }
}

#[test]
fn what_cannot_run_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(
        dir.path(),
        r#"
            name = "big"

            [[case]]
            name = "many"
            backend = "unix"
            path = "raw"
            concurrency = 10000000
        "#,
    );
    for command in ["validate", "run"] {
        taskbench()
            .current_dir(dir.path())
            .arg(command)
            .arg(&scenario)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(
                "10,000,000 publishers need about 20,000,065 file descriptors",
            ));
    }
    assert!(
        !dir.path().join("results").exists(),
        "nothing ran, no run folder"
    );
    let scenario = write_scenario(
        dir.path(),
        r#"
            name = "long"
            publishes = 1000000000000

            [[case]]
            name = "l"
            backend = "unix"
            path = "raw"
        "#,
    );
    taskbench()
        .arg("validate")
        .arg(&scenario)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "note: case \"l\": 1,000,000,000,000 publishes even at 1,000,000/s take 11days",
        ));
}

#[test]
fn three_shards_split_the_load_and_start_together() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(
        dir.path(),
        r#"
            name = "sharded"
            publishes = 3001
            warmup = 0
            concurrency = 3

            [[case]]
            name = "u"
            backend = "unix"
            path = "raw"
        "#,
    );
    // --start-at to the millisecond, as it is written.
    let epoch = std::time::UNIX_EPOCH;
    let start_at_ms = std::time::SystemTime::now()
        .duration_since(epoch)
        .unwrap()
        .as_millis() as u64
        + 1500;
    let start_at =
        humantime::format_rfc3339_millis(epoch + Duration::from_millis(start_at_ms)).to_string();
    let shards: Vec<_> = (0..3)
        .map(|i| {
            taskbench()
                .current_dir(dir.path())
                .arg("run")
                .arg(&scenario)
                .args(["--start-at", &start_at])
                .env("TASKBENCH_SHARD", format!("{i}/3"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut shard in shards {
        assert!(shard.wait().unwrap().success());
    }
    let runs: Vec<_> = std::fs::read_dir(dir.path().join("results/sharded"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 3, "{runs:?}");
    let mut total = 0;
    let mut indexes = Vec::new();
    for run in &runs {
        let name = run.file_name().unwrap().to_str().unwrap().to_string();
        let summary = read_summary(run);
        let shard = summary
            .shard
            .expect("a shard's run says which shard it was");
        assert_eq!(shard.count, 3);
        assert!(
            name.ends_with(&format!("-shard-{}-of-3", shard.index)),
            "{name}"
        );
        indexes.push(shard.index);
        let case = &summary.cases[0];
        let started = case.started_unix_s.unwrap();
        assert!(
            started >= start_at_ms as f64 / 1000.0,
            "shard {} started at {started}, before --start-at {start_at}",
            shard.index
        );
        total += case.publishes_ok;
        assert_eq!(case.settings.concurrency, 1);
        assert_eq!(case.delivered, Some(case.publishes_ok));
    }
    indexes.sort();
    assert_eq!(indexes, [0, 1, 2]);
    assert_eq!(
        total, 3001,
        "the shards' publishes add up to the scenario's"
    );
}

/// A scenario whose run logs at debug level (lapin's, connecting to a port nothing listens on).
fn logging_scenario(dir: &Path) -> std::path::PathBuf {
    write_scenario(
        dir,
        r#"
            name = "logs"
            publishes = 2
            warmup = 0
            publish_timeout = "200ms"

            [[case]]
            name = "a"
            backend = "amqp"
            path = "fresh"
            url = "amqp://127.0.0.1:1/%2f"
        "#,
    )
}

#[test]
fn log_lines_on_a_redirected_stderr_have_no_colour() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = logging_scenario(dir.path());
    for (n, verbosity) in ["-v", "-vv"].iter().enumerate() {
        let out = taskbench()
            .arg(verbosity)
            .arg("run")
            .arg(&scenario)
            .arg("--out")
            .arg(dir.path().join(format!("r{n}")))
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if *verbosity == "-vv" {
            assert!(stderr.contains("DEBUG"), "-vv logs something: {stderr}");
        }
        assert!(!stderr.contains("\x1b["), "{verbosity}: {stderr:?}");
    }
}

#[test]
fn log_lines_on_a_terminal_are_coloured_unless_no_color() {
    // `script` runs the command on a pseudo-terminal, so stderr is a terminal.
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        common::skip_test("no `script` (util-linux) to give taskbench a terminal");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let scenario = logging_scenario(dir.path());
    let bin = taskbench();
    let bin = Path::new(bin.get_program());
    for (n, no_color) in [None, Some("1")].iter().enumerate() {
        let command = format!(
            "{} -vv run {} --out {}",
            bin.display(),
            scenario.display(),
            dir.path().join(format!("t{n}")).display()
        );
        let mut script = std::process::Command::new("script");
        script
            .args(["-qec", &command, "/dev/null"])
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null());
        match no_color {
            Some(v) => script.env("NO_COLOR", v),
            None => script.env_remove("NO_COLOR"),
        };
        let out = script.output().unwrap();
        let seen = String::from_utf8_lossy(&out.stdout);
        assert!(seen.contains("DEBUG"), "{seen}");
        let coloured = seen
            .lines()
            .filter(|l| l.contains("DEBUG"))
            .any(|l| l.contains("\x1b["));
        assert_eq!(
            coloured,
            no_color.is_none(),
            "NO_COLOR={no_color:?}: {seen:?}"
        );
    }
}

#[test]
fn out_on_a_non_empty_folder_is_refused_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let one = write_scenario(
        dir.path(),
        r#"
            name = "one"
            publishes = 20
            warmup = 0

            [[case]]
            name = "old"
            backend = "unix"
            path = "raw"
        "#,
    );
    let out = dir.path().join("r");
    taskbench()
        .arg("run")
        .arg(&one)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    assert!(out.join("old.hgrm").exists());

    let two = dir.path().join("two.toml");
    std::fs::write(
        &two,
        r#"
            name = "two"
            publishes = 20
            warmup = 0

            [[case]]
            name = "new"
            backend = "unix"
            path = "raw"
        "#,
    )
    .unwrap();
    taskbench()
        .arg("run")
        .arg(&two)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "error: the run folder {} is not empty (it holds old.hgrm); pick another --out, or pass --force",
            out.display()
        )));
    assert!(!out.join("new.hgrm").exists(), "nothing was written");

    taskbench()
        .arg("run")
        .arg(&two)
        .arg("--out")
        .arg(&out)
        .arg("--force")
        .assert()
        .success();
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "new.hgrm",
            "new.hlog",
            "new.wall.folded",
            "new.wall.svg",
            "report.html",
            "scenario.toml",
            "summary.json"
        ]
    );
    assert_eq!(read_summary(&out).scenario, "two");

    // A folder holding anyone else's file is never cleared, not even with --force.
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    taskbench()
        .arg("run")
        .arg(&one)
        .arg("--out")
        .arg(&out)
        .arg("--force")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "error: the run folder {} holds notes.txt, which taskbench did not write, so --force leaves it alone; pick another --out",
            out.display()
        )));
    assert!(out.join("new.hgrm").exists() && out.join("notes.txt").exists());

    // --force never replaces the very scenario being run with its own copy (it would delete it).
    std::fs::remove_file(out.join("notes.txt")).unwrap();
    taskbench()
        .arg("run")
        .arg(out.join("scenario.toml"))
        .arg("--out")
        .arg(&out)
        .arg("--force")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "error: the scenario {} is the run folder's scenario.toml, which --force would replace; pick another --out",
            out.join("scenario.toml").display()
        )));
    assert!(out.join("scenario.toml").exists());

    // An empty existing folder is fine.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    taskbench()
        .arg("run")
        .arg(&one)
        .arg("--out")
        .arg(&empty)
        .assert()
        .success();
}

#[test]
fn validate_refuses_what_cannot_run_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let long_queue = "q".repeat(300);
    // The case's last key (line 6 of the file) is what each refuses.
    for (backend, path, key, message) in [
        (
            "redis",
            "pooled",
            r#"url = "http://127.0.0.1:6379/0""#.to_string(),
            r#"s.toml:6:7: case "c": `url` has the scheme "http", which the redis backend cannot use"#,
        ),
        (
            "amqp",
            "fresh",
            r#"url = "redis://127.0.0.1/0""#.to_string(),
            r#"s.toml:6:7: case "c": `url` has the scheme "redis", which the amqp backend cannot use"#,
        ),
        (
            "amqp",
            "fresh",
            r#"url = "amqp:///%2f""#.to_string(),
            r#"s.toml:6:7: case "c": `url` names no host"#,
        ),
        (
            "amqp",
            "fresh",
            format!(r#"queue = "{long_queue}""#),
            r#"s.toml:6:9: case "c": the queue name is 300 bytes long; AMQP allows at most 255"#,
        ),
        (
            "unix",
            "raw",
            "payload_bytes = 50000000".to_string(),
            "s.toml:6:17: `payload_bytes` = 50000000 is over the limit of 16777216 bytes (16 MiB)",
        ),
    ] {
        let file = dir.path().join("s.toml");
        // Not indented: the error names the line and the column.
        let text = format!(
            r#"name = "t"
[[case]]
name = "c"
backend = "{backend}"
path = "{path}"
{key}
"#
        );
        std::fs::write(&file, text).unwrap();
        for cmd in ["validate", "run"] {
            taskbench()
                .current_dir(dir.path())
                .args([cmd, "s.toml"])
                .assert()
                .code(2)
                .stderr(predicate::str::contains(format!("error: {message}")));
        }
    }
}

#[test]
fn flame_refuses_a_width_out_of_range() {
    for width in ["0", "15", "100001"] {
        taskbench()
            .args(["flame", "/nonexistent", "--width", width])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(format!(
                "invalid value '{width}' for '--width <WIDTH>': {width} is not in 16..=100000"
            )));
    }
}

#[test]
fn a_stopped_sink_first_drains_the_connections_queued_for_it() {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("drain.sock");
    let child = taskbench()
        .args(["sink", "--listen"])
        .arg(format!("unix:{}", sock.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "sink did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Stopped, the sink accepts nothing: every connection below waits in the listen queue (1,000 fit in
    // the kernel's default somaxconn of 4096), as a `fresh` run's last ones do when the sink is stopped
    // right after it.
    let frame = {
        let payload = b"{\"task\": \"tasks.add\"}";
        let mut f = (payload.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(payload);
        f
    };
    use nix::sys::signal::{Signal, kill};
    kill(pid, Signal::SIGSTOP).unwrap();
    const N: usize = 1000;
    for _ in 0..N {
        let mut s = UnixStream::connect(&sock).unwrap();
        s.write_all(&frame).unwrap();
    }
    kill(pid, Signal::SIGINT).unwrap();
    kill(pid, Signal::SIGCONT).unwrap();
    // Returns once the drain has ended: one that did not end would hang here.
    let out = child.wait_with_output().unwrap();
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{:?}: {printed} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.starts_with(&format!("received {N} frames (")),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("on {N} connections, 0 bad, 0 partial")),
        "{printed}"
    );
}

#[test]
fn thresholds_pass_or_fail_the_run_and_are_in_summary_json() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(
        dir.path(),
        r#"
            name = "budgets"
            warmup = 10
            publishes = 500

            [thresholds]
            p99 = "< 10s"
            errors = "== 0"

            [[case]]
            name = "met"
            backend = "tcp"
            path = "raw"

            [[case]]
            name = "missed"
            backend = "unix"
            path = "raw"

            [case.thresholds]
            throughput = "> 1_000_000_000_000"
        "#,
    );
    let out = dir.path().join("run");
    taskbench()
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("threshold met: p99 < 10s: pass (is ")
                .and(predicate::str::contains(
                    "threshold met: errors == 0: pass (is 0)",
                ))
                .and(predicate::str::contains(
                    "threshold missed: throughput > 1_000_000_000_000: FAIL (is ",
                )),
        );
    let summary = read_summary(&out);
    let met = &summary.cases[0].thresholds;
    assert_eq!(met.len(), 2, "{met:?}");
    assert_eq!(met[0].metric, "p99");
    assert!(met[0].passed);
    assert_eq!(
        met[0].actual,
        summary.cases[0].latency_ns.p99.map(|ns| ns as f64)
    );
    let missed = &summary.cases[1].thresholds;
    assert_eq!(missed[1].metric, "throughput");
    assert!(!missed[1].passed);
    assert_eq!(missed[1].limit, 1e12);

    // Without the failing case, every threshold holds: exit 0.
    taskbench()
        .arg("run")
        .arg(&scenario)
        .args(["--case", "met", "--out"])
        .arg(dir.path().join("run2"))
        .assert()
        .code(0);
}

#[test]
fn a_bad_threshold_is_a_scenario_error_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    // Not indented: the error names the line and the column.
    let scenario = write_scenario(
        dir.path(),
        r#"name = "bad"
[[case]]
name = "c"
backend = "tcp"
path = "raw"
thresholds = { p99 = "below 2ms" }
"#,
    );
    taskbench()
        .arg("run")
        .arg(&scenario)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "scenario.toml:6:22: case \"c\": threshold `p99` = \"below 2ms\" has no comparison operator",
        ));
}

/// Runs 1.2 s of tcp-raw at 5,000/s in 200 ms intervals into `dir/run`.
fn timeline_run(dir: &Path) -> std::path::PathBuf {
    let scenario = write_scenario(
        dir,
        r#"
            name = "over-time"
            warmup = 100
            duration = "1200ms"
            interval = "200ms"
            rate = 5000.0

            [[case]]
            name = "tcp-raw"
            backend = "tcp"
            path = "raw"
        "#,
    );
    let out = dir.join("run");
    taskbench()
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    out
}

#[test]
fn the_timeline_is_in_summary_json_and_the_hlog() {
    let dir = tempfile::tempdir().unwrap();
    let out = timeline_run(dir.path());
    let summary = read_summary(&out);
    let case = &summary.cases[0];
    let timeline = &case.timeline;
    // The open loop runs every publish scheduled in the 1.2 s, however late: 5,000/s for 1.2 s.
    assert_eq!(case.publishes_ok, 6000, "{:?}", case.errors);
    // 200 ms intervals: the last scheduled publish starts 1.1998 s in, so it ends in the 6th or later (on
    // a loaded machine the late publishes end further on).
    assert!(timeline.len() >= 6, "{} intervals", timeline.len());
    let ok: u64 = timeline.iter().map(|i| i.ok).sum();
    assert_eq!(ok, case.publishes_ok);
    for (k, i) in timeline.iter().enumerate() {
        assert!((i.start_s - 0.2 * k as f64).abs() < 1e-9, "{i:?}");
        assert_eq!(i.failed, 0);
        if k + 1 < timeline.len() {
            assert!(
                (i.throughput_per_s - i.ok as f64 / 0.2).abs() < 1e-6,
                "{i:?}"
            );
            if i.ok > 0 {
                let (p50, p99, max) = (i.p50.unwrap(), i.p99.unwrap(), i.max.unwrap());
                assert!(p50 <= p99 && p99 <= max, "{i:?}");
            }
        }
    }
    // No publish starts before its turn on the schedule (1,000 per 200 ms), so by the end of each interval
    // at most 1,000 per interval so far have ended; a stall on a loaded machine only moves publishes later.
    let mut ended = 0;
    for (k, i) in timeline.iter().enumerate() {
        ended += i.ok;
        assert!(
            ended <= 1000 * (k as u64 + 1),
            "{ended} publishes ended in the first {} intervals: {timeline:?}",
            k + 1
        );
    }

    let hlog = out.join("tcp-raw.hlog");
    let text = std::fs::read_to_string(&hlog).unwrap();
    assert!(
        text.starts_with("#[Histogram log format version 1.3]"),
        "{text}"
    );
    assert!(text.contains("#[StartTime: "), "{text}");
}

#[test]
#[ignore = "needs the Celery venv (Python hdrhistogram); tests/run runs it"]
fn hdrhistograms_python_reader_reads_the_hlog_as_the_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let out = timeline_run(dir.path());
    let summary = read_summary(&out);
    let timeline = &summary.cases[0].timeline;
    let Some(read) = common::read_hlog_with_python(&out.join("tcp-raw.hlog")) else {
        return;
    };
    let intervals = read["intervals"].as_array().unwrap();
    assert_eq!(intervals.len(), timeline.len(), "{read}");
    let start_ms = read["start_time_sec"].as_f64().unwrap() * 1000.0;
    for (py, ours) in intervals.iter().zip(timeline) {
        assert_eq!(py["tag"], "tcp-raw");
        assert_eq!(py["count"].as_u64(), Some(ours.ok), "{py} vs {ours:?}");
        let offset = py["start_ms"].as_f64().unwrap() - start_ms;
        assert!(
            (offset - ours.start_s * 1000.0).abs() < 1.5,
            "{py} vs {ours:?}"
        );
        assert_eq!(py["p50"].as_u64(), ours.p50, "{py} vs {ours:?}");
        assert_eq!(py["max"].as_u64(), ours.max, "{py} vs {ours:?}");
        // The Python package rounds a percentile's rank where HdrHistogram's Rust (and Java) code takes the
        // ceiling, so its p99 may be the value one publish below: never above, never below the median.
        let (a, b) = (py["p99"].as_u64().unwrap(), ours.p99.unwrap());
        assert!(
            a <= b && a >= ours.p50.unwrap(),
            "p99: python {a}, taskbench {b}"
        );
    }
}

#[test]
fn each_case_publishes_the_named_task_it_picks_and_an_unknown_one_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"name = "tasks"
publishes = 50
warmup = 0
[tasks.email]
name = "shop.tasks.send_email"
args = ["a@example.com"]
[tasks.charge]
name = "shop.tasks.charge"
args = [42]
queue = "charges"
[[case]]
name = "email"
backend = "unix"
path = "raw"
task = "email"
[[case]]
name = "charge"
backend = "tcp"
path = "raw"
task = "charge"
"#;
    let scenario = write_scenario(dir.path(), text);
    let out = dir.path().join("run");
    taskbench()
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let summary = read_summary(&out);
    let published: Vec<(&str, &str, &str, u64)> = summary
        .cases
        .iter()
        .map(|c| {
            let t = &c.settings.task;
            (
                c.name.as_str(),
                t.name.as_str(),
                t.queue.as_str(),
                c.delivered.unwrap(),
            )
        })
        .collect();
    assert_eq!(
        published,
        [
            ("email", "shop.tasks.send_email", "taskbench", 50),
            ("charge", "shop.tasks.charge", "charges", 50)
        ]
    );

    let bad = write_scenario(
        dir.path(),
        &text.replace("task = \"charge\"", "task = \"refund\""),
    );
    taskbench()
        .arg("validate")
        .arg(&bad)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "{}:20:8: case \"charge\": no task \"refund\" in [tasks]\n  hint: tasks: email, charge",
            bad.display()
        )));
}

#[test]
fn completions_for_each_shell_complete_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = taskbench().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        for subcommand in ["validate", "compare", "completions"] {
            assert!(
                script.contains(subcommand),
                "the {shell} script does not complete {subcommand}:\n{script}"
            );
        }
    }
    taskbench()
        .args(["completions", "tcsh"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid value 'tcsh'"));
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let out = taskbench().arg("--version").output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let expected = format!("taskbench {} (commit ", env!("CARGO_PKG_VERSION"));
    let commit = line
        .trim_end()
        .strip_prefix(&expected)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{line:?} is not `{expected}COMMIT)`"));
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{commit:?} is neither a short commit nor \"unknown\""
    );
}

#[test]
fn man_prints_the_page_and_writes_one_per_command() {
    taskbench()
        .arg("man")
        .assert()
        .success()
        .stdout(predicate::str::starts_with(".ie").and(predicate::str::contains(".TH taskbench 1")))
        .stdout(predicate::str::contains("validate"));
    let dir = tempfile::tempdir().unwrap();
    taskbench()
        .args(["man", "--out"])
        .arg(dir.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("taskbench-run.1"));
    let run_page = std::fs::read_to_string(dir.path().join("taskbench-run.1")).unwrap();
    assert!(run_page.contains("concurrency"), "{run_page}");
}

#[test]
fn init_refuses_an_existing_file_a_bad_app_spec_and_a_missing_interpreter() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.toml");
    std::fs::write(&file, "kept").unwrap();
    taskbench()
        .args(["init", "--celery-app", "shop.celery:app", "-o"])
        .arg(&file)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "exists; pass --force to replace it",
        ));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "kept");
    taskbench()
        .args(["init", "--celery-app", "shop.celery", "-o"])
        .arg(dir.path().join("other.toml"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not MODULE:ATTRIBUTE"));
    taskbench()
        .args(["init", "--celery-app", "shop.celery:app", "--python"])
        .arg(dir.path().join("no-python"))
        .arg("-o")
        .arg(dir.path().join("other.toml"))
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("cannot run python")
                .and(predicate::str::contains("pass --python")),
        );
    assert!(!dir.path().join("other.toml").exists());
}
