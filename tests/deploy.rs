//! The Kubernetes manifests in deploy/kubernetes/, checked offline: against Kubernetes' own schemas (the
//! `kubernetes-validate` package tests/run installs), for a scenario taskbench accepts, and for shard
//! counts that agree. No cluster is involved; the schema check needs the venv, so only `tests/run` runs
//! it (a plain `cargo test` lists it as ignored).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn manifests() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn read(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/kubernetes")
            .join(name),
    )
    .unwrap()
}

/// The `kubernetes-validate` next to the Celery test interpreter, if installed.
fn validator() -> Option<PathBuf> {
    let found = common::celery_python()
        .and_then(|p| p.parent().map(|bin| bin.join("kubernetes-validate")))
        .filter(|v| v.exists());
    if found.is_none() {
        common::skip_test(
            "kubernetes-validate is not installed next to TASKBENCH_PYTHON (tests/run installs it)",
        );
    }
    found
}

#[test]
#[ignore = "needs the Celery venv (kubernetes-validate); tests/run runs it"]
fn the_manifests_pass_kubernetes_schemas_and_a_broken_one_does_not() {
    let Some(validate) = validator() else {
        return;
    };
    let files = manifests();
    assert_eq!(files.len(), 4, "{files:?}");
    let out = Command::new(&validate)
        .arg("--strict")
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The check can fail: the same Job with a field of the wrong type is rejected.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        read("shards-job.yaml").replace("completions: 3", "completions: three"),
    )
    .unwrap();
    let out = Command::new(&validate)
        .arg("--strict")
        .arg(&broken)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a string completions count must be refused"
    );
}

#[test]
fn the_configmaps_scenario_is_one_taskbench_accepts() {
    let configmap = read("configmap.yaml");
    let scenario: String = configmap
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("scenario.toml: |"))
        .skip(1)
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    assert!(scenario.contains("[[case]]"), "{scenario}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scenario.toml");
    std::fs::write(&path, scenario).unwrap();
    let out = common::taskbench()
        .arg("validate")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_shard_count_agrees_everywhere() {
    let job = read("shards-job.yaml");
    let merge = read("merge-job.yaml");
    assert!(job.contains("completions: 3") && job.contains("parallelism: 3"));
    assert!(job.contains("value: \"$(SHARD_INDEX)/3\""));
    for i in 0..3 {
        assert!(
            merge.contains(&format!("- /results/shard-{i}")),
            "merge takes shard {i}"
        );
    }
    assert!(!merge.contains("/results/shard-3"));
}
