//! Profiles end to end: `run --profile cpu` writes both views per case, their numbers agree with the
//! stage histograms, and `taskbench flame` re-renders and diffs them.

mod common;

use assert_cmd::prelude::*;
use common::taskbench;
use predicates::prelude::*;
use std::path::Path;
use taskbench::summary::Summary;

/// Runs a two-case local scenario with CPU profiling into `dir/run`.
fn profiled_run(dir: &Path) -> std::path::PathBuf {
    let scenario = dir.join("s.toml");
    std::fs::write(
        &scenario,
        r#"
            name = "prof"
            publishes = 400
            warmup = 10
            profile_sample = 0.5

            [[case]]
            name = "raw"
            backend = "unix"
            path = "raw"

            [[case]]
            name = "fresh"
            backend = "unix"
            path = "fresh"
        "#,
    )
    .unwrap();
    let out = dir.join("run");
    taskbench()
        .arg("run")
        .arg(&scenario)
        .args(["--profile", "cpu", "--out"])
        .arg(&out)
        .assert()
        .success()
        .stdout(
            predicate::str::contains("where the time of one publish goes")
                .and(predicate::str::contains("connect")),
        );
    out
}

fn folded_lines(path: &Path) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|line| {
            let (stack, n) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
            assert!(
                !stack.is_empty() && stack.split(';').all(|f| !f.is_empty()),
                "{line:?}"
            );
            (
                stack.to_string(),
                n.parse()
                    .unwrap_or_else(|_| panic!("{line:?}: count is not an integer")),
            )
        })
        .collect()
}

#[test]
fn profile_cpu_writes_both_views_and_they_agree_with_the_stages() {
    let dir = tempfile::tempdir().unwrap();
    let out = profiled_run(dir.path());
    let summary = Summary::read(&out).unwrap();
    for case in &summary.cases {
        let name = &case.name;
        for file in ["wall.folded", "wall.svg", "cpu.folded", "cpu.svg"] {
            assert!(out.join(format!("{name}.{file}")).exists(), "{name}.{file}");
        }
        let wall = folded_lines(&out.join(format!("{name}.wall.folded")));
        for (stage, timing) in &case.stages {
            let folded = wall
                .iter()
                .find(|(s, _)| *s == format!("publish;{stage}"))
                .map(|(_, n)| *n);
            assert_eq!(folded, Some(timing.total_ns), "{name}: {stage}");
        }
        // The whole wall profile is the summed latency of the case.
        let total: u64 = wall.iter().map(|(_, n)| n).sum();
        assert_eq!(total, case.latency_total_ns, "{name}");

        let cpu = folded_lines(&out.join(format!("{name}.cpu.folded")));
        assert!(
            cpu.iter().any(|(s, _)| s == "publish;send"),
            "{name}: {cpu:?}"
        );
        assert!(
            cpu.iter().all(|(s, _)| s.starts_with("publish")),
            "{name}: {cpu:?}"
        );
        let shares: f64 = case.breakdown.iter().map(|r| r.share).sum();
        assert!(
            (shares - 1.0).abs() < 1e-6,
            "{name}: shares add up to {shares}"
        );
    }
    let fresh_cpu = folded_lines(&out.join("fresh.cpu.folded"));
    assert!(fresh_cpu.iter().any(|(s, _)| s == "publish;connect"));
}

#[test]
fn flame_renders_a_diff_and_rerenders_with_options() {
    let dir = tempfile::tempdir().unwrap();
    let out = profiled_run(dir.path());
    taskbench()
        .arg("flame")
        .arg(&out)
        .args(["--diff", "raw", "fresh"])
        .assert()
        .success()
        .stdout(predicate::str::contains("diff-raw-fresh.svg"));
    let svg = std::fs::read_to_string(out.join("diff-raw-fresh.svg")).unwrap();
    assert!(svg.contains("fresh vs raw: ns of wall time per publish"));
    assert!(svg.contains("connect"), "the frame that grew is drawn");

    taskbench()
        .arg("flame")
        .arg(&out)
        .args([
            "--case",
            "fresh",
            "--view",
            "cpu",
            "--width",
            "640",
            "--title",
            "my title",
            "--flamechart",
        ])
        .assert()
        .success();
    let svg = std::fs::read_to_string(out.join("fresh.cpu.svg")).unwrap();
    assert!(svg.contains("my title") && svg.contains("width=\"640\""));
    taskbench()
        .arg("flame")
        .arg(&out)
        .args(["--diff", "cpu-less", "fresh"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no case named \"cpu-less\""));
}

#[test]
fn flame_errors_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    taskbench()
        .arg("flame")
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("is not a run folder").and(predicate::str::contains(
                "pass a folder `taskbench run` wrote",
            )),
        );

    // A run without --profile cpu has wall profiles only.
    let scenario = dir.path().join("s.toml");
    std::fs::write(
        &scenario,
        r#"
            name = "w"
            publishes = 50

            [[case]]
            name = "u"
            backend = "unix"
            path = "raw"
        "#,
    )
    .unwrap();
    let out = dir.path().join("run");
    taskbench()
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    assert!(out.join("u.wall.svg").exists() && !out.join("u.cpu.folded").exists());
    taskbench()
        .arg("flame")
        .arg(&out)
        .args(["--case", "u", "--view", "cpu"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("no cpu profile for case \"u\"")
                .and(predicate::str::contains("run with --profile cpu")),
        );
    // The pywall view is py-spy's, of celery and kombu cases only.
    taskbench()
        .arg("flame")
        .arg(&out)
        .args(["--case", "u", "--view", "pywall"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("no pywall profile for case \"u\"").and(
                predicate::str::contains("only a celery or kombu case run with --profile cpu"),
            ),
        );
}
