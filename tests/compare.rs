//! `taskbench compare` end to end on two real runs of the broker-free local backends (unix and tcp, raw),
//! its three formats and its exit codes: 0 without a regression, 1 when a --fail-if holds, 2 for a bad
//! expression or a folder that is not a run.

mod common;

use assert_cmd::prelude::*;
use common::taskbench;
use predicates::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use taskbench::summary::{CaseSummary, Summary};

/// Two runs of unix-raw and tcp-raw (made once for every test here), and a third of tcp-raw only, under
/// cargo's target tmp dir (a static is never dropped, so a TempDir would not clean up either).
fn runs() -> &'static (PathBuf, PathBuf, PathBuf, PathBuf) {
    static RUNS: OnceLock<(PathBuf, PathBuf, PathBuf, PathBuf)> = OnceLock::new();
    RUNS.get_or_init(|| {
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("compare-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let run = |name: &str, cases: &[&str]| {
            let out = dir.join(name);
            common::quickstart_run(&out, 2000, cases);
            out
        };
        let a = run("a", &["unix-raw", "tcp-raw"]);
        let b = run("b", &["unix-raw", "tcp-raw"]);
        let c = run("c", &["tcp-raw"]);
        (dir, a, b, c)
    })
}

fn compare(base: &Path, new: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    taskbench()
        .arg("compare")
        .arg(base)
        .arg(new)
        .args(extra)
        .assert()
}

#[test]
fn two_runs_compare_case_by_case_in_the_terminal() {
    let (_, a, b, _) = runs();
    let out = compare(a, b, &["--fail-if", "p99 > +1000000%"])
        .code(0)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    for word in [
        "unix-raw",
        "tcp-raw",
        "throughput",
        "p50",
        "p99",
        "p999",
        "errors",
        "send.mean",
        "encode.mean",
        "pass: p99 > +1000000%",
    ] {
        assert!(text.contains(word), "{word} missing from:\n{text}");
    }
}

#[test]
fn json_holds_both_values_and_both_changes() {
    let (_, a, b, _) = runs();
    let out = compare(a, b, &["--format", "json"])
        .code(0)
        .get_output()
        .stdout
        .clone();
    // compare's own JSON, read by its key names: the interface a CI script reads.
    let v: Value = serde_json::from_slice(&out).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    let (sa, sb) = (Summary::read(a).unwrap(), Summary::read(b).unwrap());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (ca, cb) = (sa.case(name).unwrap(), sb.case(name).unwrap());
        let metric = |m: &str| {
            case["metrics"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["metric"] == m)
                .unwrap_or_else(|| panic!("{name}: no {m}"))
                .clone()
        };
        let tp = metric("throughput");
        let (base, new) = (ca.throughput_per_s, cb.throughput_per_s);
        assert_eq!(tp["base"].as_f64().unwrap(), base);
        assert_eq!(tp["new"].as_f64().unwrap(), new);
        assert!((tp["change"].as_f64().unwrap() - (new - base)).abs() < 1e-6);
        assert!((tp["relative"].as_f64().unwrap() - (new - base) / base).abs() < 1e-9);
        let p99 = metric("p99");
        assert_eq!(p99["base"].as_f64(), ca.latency_ns.p99.map(|ns| ns as f64));
        assert_eq!(p99["new"].as_f64(), cb.latency_ns.p99.map(|ns| ns as f64));
        assert_eq!(metric("errors")["change"].as_f64(), Some(0.0));
        let send = metric("send.mean");
        let mean =
            |c: &CaseSummary| c.stages["send"].total_ns as f64 / c.stages["send"].count as f64;
        assert!((send["base"].as_f64().unwrap() - mean(ca)).abs() < 1e-6);
        assert!((send["new"].as_f64().unwrap() - mean(cb)).abs() < 1e-6);
    }
}

#[test]
fn markdown_is_a_table_for_a_pull_request() {
    let (_, a, b, _) = runs();
    compare(a, b, &["--format", "markdown"]).code(0).stdout(
        predicate::str::contains("| case | metric | base | new | change |")
            .and(predicate::str::contains("| unix-raw | p99 |"))
            .and(predicate::str::contains("| tcp-raw | throughput |")),
    );
}

#[test]
fn a_regression_exits_1_and_says_which_case() {
    let (_, a, b, _) = runs();
    // A run against itself changes by exactly zero: `> +0%` holds for nothing, `>= +0%` for every case.
    compare(
        a,
        a,
        &["--fail-if", "p99 > +0%", "--fail-if", "throughput < -0%"],
    )
    .code(0)
    .stdout(predicate::str::contains("pass: p99 > +0%"));
    compare(a, a, &["--fail-if", "p99 >= +0%"]).code(1).stdout(
        predicate::str::contains("FAIL: p99 >= +0%: unix-raw")
            .and(predicate::str::contains("tcp-raw")),
    );
    // Two real runs: any throughput at all is more than -100%, so this always fails, and an absolute bound
    // in the metric's unit works the same way.
    compare(a, b, &["--fail-if", "throughput > -100%"]).code(1);
    compare(a, b, &["--fail-if", "p50 > -1s", "--format", "json"])
        .code(1)
        .stdout(predicate::str::contains("\"failed\": true"));
    compare(a, b, &["--fail-if", "errors > 0"]).code(0);
}

#[test]
fn bad_expressions_and_folders_exit_2_with_a_clear_message() {
    let (dir, a, b, c) = runs();
    for (expr, why) in [
        ("p98 > +10%", "unknown metric \"p98\""),
        ("p99 10%", "no comparison operator"),
        ("p99 > ten%", "not a percentage"),
        ("p99 >", "no change after the operator"),
        ("throughput < 5ms", "is not a number"),
    ] {
        compare(a, b, &["--fail-if", expr])
            .code(2)
            .stderr(predicate::str::contains(why).and(predicate::str::contains("hint:")));
    }
    compare(a, &dir.join("nothing"), &[])
        .code(2)
        .stderr(predicate::str::contains("is not a run folder"));
    // Cases only in one run are listed, not compared; with nothing in common there is nothing to compare.
    compare(a, c, &[]).code(0).stdout(predicate::str::contains(
        "only in base (not compared): unix-raw",
    ));
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let mut summary = Summary::read(c).unwrap();
    summary.cases[0].name = "other".into();
    std::fs::write(empty.join("summary.json"), summary.to_json()).unwrap();
    compare(a, &empty, &[])
        .code(2)
        .stderr(predicate::str::contains("no case is in both runs"));
}
