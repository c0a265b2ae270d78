//! `taskbench run --sweep concurrency=...` end to end on the broker-free `unix` backend: one run per level
//! (named `<case>-c<N>` in summary.json), sweep.json with each level's figures and the USL fit, the table
//! and its warning, and every bad sweep refused with exit 2 before anything runs.

mod common;

use assert_cmd::prelude::*;
use common::taskbench;
use predicates::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A scenario of two unix/raw cases (and `extra` lines in the second case), written into `dir`.
fn scenario(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("sweep.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"sweep\"\nwarmup = 50\npublishes = 400\n\
             [[case]]\nname = \"a\"\nbackend = \"unix\"\npath = \"raw\"\n\
             [[case]]\nname = \"b\"\nbackend = \"unix\"\npath = \"raw\"\n{extra}\n"
        ),
    )
    .unwrap();
    path
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_sweep_runs_each_case_per_level_and_writes_sweep_json_with_the_fit() {
    let dir = tempfile::tempdir().unwrap();
    let toml = scenario(dir.path(), "");
    let out = dir.path().join("run");
    let output = taskbench()
        .arg("run")
        .arg(&toml)
        .args(["--sweep", "concurrency=1,2,4,8"])
        .arg("--out")
        .arg(&out)
        .assert()
        .code(0)
        .get_output()
        .clone();
    let stdout = String::from_utf8(output.stdout).unwrap();
    for word in [
        "concurrency sweep of a:",
        "throughput/s",
        "USL fit/s",
        "USL: σ (contention)",
        "R²",
    ] {
        assert!(stdout.contains(word), "{word:?} in\n{stdout}");
    }

    let summary = json(&out.join("summary.json"));
    let names: Vec<&str> = summary["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "a-c1", "a-c2", "a-c4", "a-c8", "b-c1", "b-c2", "b-c4", "b-c8"
        ],
        "each case's levels together"
    );
    for (c, n) in summary["cases"]
        .as_array()
        .unwrap()
        .iter()
        .zip([1, 2, 4, 8, 1, 2, 4, 8])
    {
        assert_eq!(c["concurrency"], n, "{c}");
    }

    let sweep = json(&out.join("sweep.json"));
    assert_eq!(sweep["parameter"], "concurrency");
    assert_eq!(sweep["levels"], serde_json::json!([1, 2, 4, 8]));
    assert_eq!(sweep["interrupted"], false);
    let cases = sweep["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    assert_eq!(cases[1]["name"], "b");
    assert_eq!(cases[1]["points"][3]["run_case"], "b-c8");
    assert_eq!(cases[0]["name"], "a");
    let points = cases[0]["points"].as_array().unwrap();
    assert_eq!(points.len(), 4);
    for (p, n) in points.iter().zip([1, 2, 4, 8]) {
        assert_eq!(p["concurrency"], n);
        assert_eq!(p["run_case"], format!("a-c{n}"));
        assert_eq!(p["publishes_ok"], 400);
        assert_eq!(p["errors"], 0);
        assert!(p["throughput_per_s"].as_f64().unwrap() > 0.0, "{p}");
        assert!(p["fitted_per_s"].as_f64().unwrap() > 0.0, "{p}");
        assert!(p["p99_ns"].as_u64().unwrap() > 0, "{p}");
    }
    let fit = &cases[0]["fit"];
    for key in ["sigma", "kappa", "lambda", "r_squared"] {
        assert!(fit[key].is_number(), "{key} in {fit}");
    }
    // A loaded machine's throughputs may or may not follow the law: whether it warns must match R².
    let r2 = fit["r_squared"].as_f64().unwrap();
    assert_eq!(
        cases[0]["warning"].is_string(),
        r2 < 0.9,
        "R² {r2}: {}",
        cases[0]["warning"]
    );
}

#[test]
fn three_levels_are_fitted_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let toml = scenario(dir.path(), "");
    let out = dir.path().join("run");
    taskbench()
        .arg("run")
        .arg(&toml)
        .args(["--sweep", "concurrency=1,2,3", "--case", "b"])
        .arg("--out")
        .arg(&out)
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "warning: only 3 levels: a fit of three coefficients needs at least 4",
        ));
    let sweep = json(&out.join("sweep.json"));
    assert!(
        sweep["cases"][0]["warning"]
            .as_str()
            .unwrap()
            .contains("only 3 levels")
    );
    let report = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        report.contains("Concurrency sweep: b"),
        "the sweep's section"
    );
    // --force replaces sweep.json as a file taskbench wrote; a plain run leaves no stale one behind.
    taskbench()
        .arg("run")
        .arg(&toml)
        .args(["--case", "b", "--force"])
        .arg("--out")
        .arg(&out)
        .assert()
        .code(0);
    assert!(!out.join("sweep.json").exists());
    let report = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(!report.contains("Concurrency sweep"));
}

#[test]
fn bad_sweeps_exit_2_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let toml = scenario(dir.path(), "");
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    let open_toml = scenario(&open, "rate = 1000");
    let bad = |toml: &Path, args: &[&str], says: &str| {
        taskbench()
            .arg("run")
            .arg(toml)
            .args(args)
            .arg("--out")
            .arg(dir.path().join("never"))
            .assert()
            .code(2)
            .stderr(predicate::str::contains(says));
    };
    bad(
        &toml,
        &["--sweep", "foo"],
        "is not a sweep: write PARAMETER=LEVELS",
    );
    bad(
        &toml,
        &["--sweep", "rate=1,2"],
        "\"rate\" cannot be swept: only concurrency",
    );
    bad(
        &toml,
        &["--sweep", "concurrency=0,2"],
        "concurrency level 0",
    );
    bad(
        &toml,
        &["--sweep", "concurrency=1,two"],
        "\"two\" in \"concurrency=1,two\" is not a concurrency",
    );
    bad(
        &toml,
        &["--sweep", "concurrency=4"],
        "has one level: a sweep needs two or more",
    );
    bad(
        &toml,
        &["--sweep", "concurrency=2,2"],
        "level 2 is given twice",
    );
    bad(
        &toml,
        &["--sweep", "concurrency=1,2", "--concurrency", "4"],
        "cannot be used with",
    );
    bad(
        &toml,
        &["--sweep", "concurrency=1,2", "--rate", "100"],
        "cannot be used with",
    );
    bad(
        &toml,
        &["--sweep", "concurrency=1,2", "--case", "nope"],
        "nope",
    );
    bad(
        &open_toml,
        &["--sweep", "concurrency=1,2"],
        "case \"b\" is an open loop (`rate`",
    );
    assert!(!dir.path().join("never").exists(), "nothing ran");
}
