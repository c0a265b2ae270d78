//! `taskbench merge` end to end: three shards run as three processes, merged into one run folder whose
//! counts add up and whose histogram is exactly the shards' together; and the merges it refuses.

mod common;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use taskbench::summary::decode_histogram;

fn taskbench() -> Command {
    Command::cargo_bin("taskbench").unwrap()
}

fn summary(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

const SCENARIO: &str = "name = \"sharded\"\npublishes = 3001\nwarmup = 0\nconcurrency = 3\n\
    [[case]]\nname = \"unix\"\nbackend = \"unix\"\npath = \"raw\"\n\
    [[case]]\nname = \"tcp\"\nbackend = \"tcp\"\npath = \"fresh\"\npublishes = 600\n";

/// Runs shard `i` of `n` of `text` into `dir/shard-i`.
fn shard(dir: &Path, text: &str, i: u32, n: u32) -> PathBuf {
    let scenario = dir.join(format!("scenario-{i}.toml"));
    std::fs::write(&scenario, text).unwrap();
    let out = dir.join(format!("shard-{i}"));
    taskbench()
        .arg("run")
        .arg(&scenario)
        .args(["--shard", &format!("{i}/{n}"), "--out"])
        .arg(&out)
        .assert()
        .success();
    out
}

#[test]
fn three_shards_merge_into_one_run_that_adds_up_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let shards: Vec<PathBuf> = (0..3).map(|i| shard(dir.path(), SCENARIO, i, 3)).collect();
    let merged = dir.path().join("merged");
    taskbench()
        .arg("merge")
        .args(&shards)
        .arg("--out")
        .arg(&merged)
        .assert()
        .success()
        .stdout(
            predicate::str::contains("throughput/s")
                .and(predicate::str::contains("merged from 3 of 3 shards")),
        );

    let m = summary(&merged);
    assert!(m["shard"].is_null(), "the merged run is a whole run");
    let parts: Vec<Value> = shards.iter().map(|s| summary(s)).collect();
    for (i, case) in m["cases"].as_array().unwrap().iter().enumerate() {
        let sum = |key: &str| -> u64 {
            parts
                .iter()
                .map(|p| p["cases"][i][key].as_u64().unwrap())
                .sum()
        };
        assert_eq!(case["publishes_ok"].as_u64().unwrap(), sum("publishes_ok"));
        assert_eq!(
            case["delivered"].as_u64().unwrap(),
            sum("delivered"),
            "delivered adds up"
        );
        assert_eq!(case["settings"]["concurrency"], 3);
        // The merged histogram is the one built from every shard's samples: decode and add them here.
        let mut all =
            decode_histogram(parts[0]["cases"][i]["histogram"].as_str().unwrap()).unwrap();
        for p in &parts[1..] {
            all.add(decode_histogram(p["cases"][i]["histogram"].as_str().unwrap()).unwrap())
                .unwrap();
        }
        let merged_h = decode_histogram(case["histogram"].as_str().unwrap()).unwrap();
        assert_eq!(merged_h.len(), sum("publishes_ok"));
        assert_eq!(merged_h, all);
        for (key, q) in [("p50", 0.5), ("p99", 0.99), ("p999", 0.999)] {
            assert_eq!(case["latency_ns"][key], all.value_at_quantile(q), "{key}");
        }
        // Stages merge the same way: counts add up.
        for (stage, s) in case["stages"].as_object().unwrap() {
            let count: u64 = parts
                .iter()
                .map(|p| p["cases"][i]["stages"][stage]["count"].as_u64().unwrap())
                .sum();
            assert_eq!(s["count"].as_u64().unwrap(), count, "{stage}");
        }
        // The window is the union of the shards' windows, so throughput is over the longest span.
        let longest = parts
            .iter()
            .map(|p| p["cases"][i]["elapsed_s"].as_f64().unwrap())
            .fold(0.0, f64::max);
        let elapsed = case["elapsed_s"].as_f64().unwrap();
        assert!(elapsed >= longest);
        let throughput = case["throughput_per_s"].as_f64().unwrap();
        assert!((throughput - sum("publishes_ok") as f64 / elapsed).abs() < 1e-6 * throughput);
        let ok: u64 = case["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["ok"].as_u64().unwrap())
            .sum();
        assert_eq!(
            ok,
            sum("publishes_ok"),
            "the aligned timeline holds every publish"
        );
        assert!(
            case["notes"][0]
                .as_str()
                .unwrap()
                .starts_with("merged from 3 of 3 shards")
        );
    }
    for file in [
        "unix.hgrm",
        "unix.wall.folded",
        "unix.wall.svg",
        "report.html",
        "scenario.toml",
    ] {
        assert!(merged.join(file).exists(), "{file}");
    }

    // The same total load from one process: the same counts, case by case.
    let scenario = dir.path().join("whole.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let whole = dir.path().join("whole");
    taskbench()
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&whole)
        .assert()
        .success();
    let w = summary(&whole);
    let pairs = w["cases"]
        .as_array()
        .unwrap()
        .iter()
        .zip(m["cases"].as_array().unwrap());
    for (single, merged) in pairs {
        for key in ["publishes_ok", "delivered"] {
            assert_eq!(single[key], merged[key], "{}: {key}", single["name"]);
        }
        for key in ["concurrency", "publishes"] {
            assert_eq!(single["settings"][key], merged["settings"][key], "{key}");
        }
    }
}

#[test]
fn merges_that_would_not_add_up_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = shard(dir.path(), SCENARIO, 0, 2);
    let b = shard(dir.path(), SCENARIO, 1, 2);
    let refuse = |runs: &[&PathBuf], says: &str| {
        taskbench()
            .arg("merge")
            .args(runs)
            .arg("--out")
            .arg(dir.path().join("never"))
            .assert()
            .code(2)
            .stderr(predicate::str::contains(says));
        assert!(!dir.path().join("never").exists(), "nothing written");
    };
    refuse(&[&a, &a], "shard 0/2 is given twice");
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let text = SCENARIO.replace("name = \"sharded\"", "name = \"other\"");
    std::fs::rename(shard(&other, &text, 1, 2), other.join("o")).unwrap();
    refuse(&[&a, &other.join("o")], "only shards of one scenario merge");
    let edited = dir.path().join("edited");
    std::fs::create_dir(&edited).unwrap();
    let text = SCENARIO.replace("path = \"fresh\"", "path = \"raw\"");
    std::fs::rename(shard(&edited, &text, 1, 2), edited.join("e")).unwrap();
    refuse(&[&a, &edited.join("e")], "ran with other settings");
    let three = shard(&other, SCENARIO, 2, 3);
    refuse(&[&a, &three], "shards of one run share a count");
    let whole = dir.path().join("whole");
    let scenario = dir.path().join("whole.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    taskbench()
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&whole)
        .assert()
        .success();
    refuse(&[&a, &whole], "is not a shard");
    // The pair that belongs together merges.
    taskbench()
        .arg("merge")
        .args([&a, &b])
        .arg("--out")
        .arg(dir.path().join("ok"))
        .assert()
        .success();
}

#[test]
fn shards_against_the_local_brokers_merge_and_each_proves_its_delivery() {
    let redis = common::redis_url();
    let amqp = common::amqp_url();
    let reach = |url: &str, default_port: u16| {
        let rest = url.split("://").nth(1).unwrap_or("");
        let host_port = rest
            .rsplit('@')
            .next()
            .unwrap_or("")
            .split('/')
            .next()
            .unwrap_or("");
        if host_port.contains(':') {
            host_port.to_string()
        } else {
            format!("{host_port}:{default_port}")
        }
    };
    for (url, port) in [(&redis, 6379), (&amqp, 5672)] {
        if !common::reachable(&reach(url, port)) {
            common::skip(
                "shards_against_the_local_brokers_merge_and_each_proves_its_delivery",
                &format!(
                    "no broker reachable at {}",
                    taskbench::backend::url::redact(url)
                ),
            );
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let queue = common::unique("tb-shards");
    let text = format!(
        "name = \"sharded-brokers\"\npublishes = 1500\nwarmup = 30\nconcurrency = 3\n\
         [task]\nqueue = \"{queue}\"\n\
         [[case]]\nname = \"redis\"\nbackend = \"redis\"\npath = \"pooled\"\nurl = \"{redis}\"\n\
         [[case]]\nname = \"amqp\"\nbackend = \"amqp\"\npath = \"pooled\"\nconfirm = \"each\"\nurl = \"{amqp}\"\n"
    );
    let shards: Vec<PathBuf> = (0..3).map(|i| shard(dir.path(), &text, i, 3)).collect();
    for (i, s) in shards.iter().enumerate() {
        let summary = summary(s);
        for case in summary["cases"].as_array().unwrap() {
            assert_eq!(case["delivered"], case["publishes_ok"], "shard {i}: {case}");
            assert_eq!(
                case["settings"]["task"]["queue"],
                format!("{queue}-shard-{i}")
            );
        }
    }
    let merged = dir.path().join("merged");
    taskbench()
        .arg("merge")
        .args(&shards)
        .arg("--out")
        .arg(&merged)
        .assert()
        .success();
    // Taskbench purged what it published; the shards' queues themselves go too.
    for i in 0..3 {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["-q", "delete_queue", &format!("{queue}-shard-{i}")])
            .output();
    }
    for case in summary(&merged)["cases"].as_array().unwrap() {
        assert_eq!(case["publishes_ok"], 1500, "{case}");
        assert_eq!(case["delivered"], 1500, "{case}");
        assert_eq!(case["warmup_ok"], 30, "{case}");
    }
}
