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

/// A profiled run whose two cases' CPU profiles are replaced by `raw` and `fresh` (folded text, in ns over
/// the case's publishes), so a diff's numbers are known.
fn run_with_cpu_profiles(dir: &Path, raw: &str, fresh: &str) -> std::path::PathBuf {
    let out = profiled_run(dir);
    let summary = Summary::read(&out).unwrap();
    for case in &summary.cases {
        assert_eq!(
            case.publishes_ok, 400,
            "{}: the numbers below assume 400",
            case.name
        );
    }
    std::fs::write(out.join("raw.cpu.folded"), raw).unwrap();
    std::fs::write(out.join("fresh.cpu.folded"), fresh).unwrap();
    out
}

/// The tooltip of every frame of an SVG whose name is `name`.
fn titles_of(svg: &str, name: &str) -> Vec<String> {
    let prefix = format!("<title>{name} ");
    svg.match_indices(&prefix)
        .map(|(at, _)| {
            let text = &svg[at + "<title>".len()..];
            text[..text.find("</title>").unwrap()].to_string()
        })
        .collect()
}

#[test]
fn a_diff_labels_each_frame_with_the_change_in_its_inclusive_time() {
    let dir = tempfile::tempdir().unwrap();
    // Per publish: 100 ns before; after, a new handler under send costs 25 ns more. Its own frame's self
    // time grew, and so did the inclusive time of send and publish above it, whose self time did not.
    let out = run_with_cpu_profiles(
        dir.path(),
        "publish;send 36000\npublish 4000\n",
        "publish;send 36000\npublish;send;signal;handler 10000\npublish 4000\n",
    );
    taskbench()
        .arg("flame")
        .arg(&out)
        .args(["--diff", "raw", "fresh", "--view", "cpu"])
        .assert()
        .success()
        .stdout(predicate::str::contains("diff-raw-fresh.cpu.svg"));
    let svg = std::fs::read_to_string(out.join("diff-raw-fresh.cpu.svg")).unwrap();
    assert!(
        svg.contains("red: the frame and what it called grew"),
        "the title says how to read it"
    );
    assert_eq!(
        titles_of(&svg, "send"),
        ["send +25.00% (inclusive +25.00%: 90ns → 115ns per publish; self +0.00%: 90ns → 90ns)"]
    );
    assert_eq!(
        titles_of(&svg, "handler"),
        ["handler +25.00% (inclusive +25.00%: 0ns → 25ns per publish; self +25.00%: 0ns → 25ns)"]
    );
    assert_eq!(
        titles_of(&svg, "publish"),
        [
            "publish +25.00% (inclusive +25.00%: 100ns → 125ns per publish; self +0.00%: 10ns → 10ns)"
        ]
    );
    // The frame's own label says it too, not only its tooltip.
    assert!(svg.contains(">publish +25.00%</text>"), "{svg}");
}

#[test]
fn a_diff_of_profiles_with_no_frames_in_common_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A celery case's CPU profile (Python frames) against a taskbench case's (spans): nothing to compare.
    let out = run_with_cpu_profiles(
        dir.path(),
        "publish;send 36000\npublish 4000\n",
        "(harness) 8000\ncelery_publisher.<locals>.publish (taskbench_harness.py:222);Task.apply_async (celery/app/task.py:587) 40000\n",
    );
    taskbench()
        .arg("flame")
        .arg(&out)
        .args(["--diff", "raw", "fresh", "--view", "cpu"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains(
                "cases \"raw\" (unix raw, taskbench's spans) and \"fresh\" (unix fresh, taskbench's spans) have \
                 no frames in common in the cpu view",
            )
            .and(predicate::str::contains("or compare their stages with --view wall")),
        );
    assert!(!out.join("diff-raw-fresh.cpu.svg").exists());
    // Their stages compare.
    taskbench()
        .arg("flame")
        .arg(&out)
        .args(["--diff", "raw", "fresh"])
        .assert()
        .success();
}
