//! summary.json's tests: the whole schema pinned by a snapshot of a deterministic run, what is written
//! reads back the same, and a file that is not a summary is refused with its name.

use super::*;
use crate::engine::fake::{FakeTarget, Script};
use crate::engine::{RunControl, run_case};
use crate::record::CaseResult;
use crate::stage::Stage;
use std::time::Duration;

#[test]
fn histogram_round_trips_through_base64() {
    let mut h = crate::record::new_histogram();
    for v in [1_000u64, 2_000, 3_000_000] {
        h.record(v).unwrap();
    }
    let case = CaseSummary {
        histogram: encode_histogram(&h),
        ..scripted_summary_case()
    };
    assert_eq!(case.decode_histogram().unwrap(), h);
}

fn scripted_summary_case() -> CaseSummary {
    let case = crate::scenario::test_case("c");
    CaseSummary::new(&CaseResult::empty(&case))
}

/// A deterministic run (virtual time) of two cases, one failing every fifth publish.
async fn scripted_run() -> Summary {
    let scenario = crate::scenario::parse(
        "name = \"pinned\"\nwarmup = 2\npublishes = 40\ninterval = \"50ms\"\n\
         [thresholds]\nerrors = \"== 0\"\n\
         [[case]]\nname = \"ok\"\nbackend = \"unix\"\npath = \"fresh\"\nthresholds = { p99 = \"< 5ms\" }\n\
         [[case]]\nname = \"flaky\"\nbackend = \"tcp\"\npath = \"raw\"\nrate = 1000.0\n",
        "pinned.toml",
    )
    .unwrap();
    let ms = Duration::from_millis;
    let mut results = Vec::new();
    for (case, fail_every) in scenario.cases.iter().zip([None, Some(5)]) {
        let script = Script {
            stages: vec![(Stage::Connect, ms(2)), (Stage::Send, ms(1))],
            fail_every,
            ..Script::default()
        };
        let mut result = run_case(FakeTarget::new(script), case, &RunControl::new()).await;
        result.check_thresholds(&case.thresholds);
        results.push(result);
    }
    let info = RunInfo {
        scenario: "pinned".into(),
        scenario_file: "pinned.toml".into(),
        started_at: "2026-01-01T00:00:00Z".into(),
        environment: Environment {
            host: "pinned-host".into(),
            cores: 2,
            runtime_threads: 2,
            git_commit: "0123456789ab".into(),
            command_line: vec!["taskbench".into(), "run".into(), "pinned.toml".into()],
            os: "linux x86_64".into(),
        },
        shard: None,
    };
    Summary::new(&info, false, &results)
}

#[tokio::test(start_paused = true)]
async fn the_whole_schema_is_pinned() {
    let summary = scripted_run().await;
    let mut value = serde_json::to_value(&summary).unwrap();
    value["taskbench_version"] = "[version]".into();
    for case in value["cases"].as_array_mut().unwrap() {
        case["histogram"] = "[histogram]".into();
        case["failed_histogram"] = "[histogram]".into();
        case["started_unix_s"] = "[wall clock]".into();
        for stage in case["stages"].as_object_mut().unwrap().values_mut() {
            stage["histogram"] = "[histogram]".into();
        }
        // The envelope carries `origin` (gen<pid>@<host>), whose length varies from run to run.
        case["settings"]["task"]["envelope_bytes"] = "[envelope bytes]".into();
        // Memory and CPU are this test process's, read from /proc: the keys are pinned, not the figures.
        for process in case["resources"]["processes"].as_array_mut().unwrap() {
            for (key, v) in process.as_object_mut().unwrap() {
                if key != "name" {
                    *v = "[measured]".into();
                }
            }
        }
        // Virtual time: the readings come microseconds apart, so a busy share is not meaningful here.
        case["resources"]["saturated"] = "[measured]".into();
        case["resources"]["generator_limited"] = "[measured]".into();
        for interval in case["timeline"].as_array_mut().unwrap() {
            for figures in ["rss_bytes", "busiest_thread"] {
                for v in interval["resources"][figures]
                    .as_object_mut()
                    .unwrap()
                    .values_mut()
                {
                    *v = "[measured]".into();
                }
            }
        }
    }
    insta::assert_snapshot!(serde_json::to_string_pretty(&value).unwrap());
}

#[tokio::test(start_paused = true)]
async fn what_is_written_reads_back_the_same() {
    let summary = scripted_run().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("summary.json"), summary.to_json()).unwrap();
    let back = Summary::read(dir.path()).unwrap();
    assert_eq!(back, summary);
    let flaky = back.case("flaky").unwrap();
    assert_eq!(flaky.errors["send"], 8, "{flaky:?}");
    assert_eq!(
        flaky.decode_histogram().unwrap().len(),
        flaky.publishes_ok,
        "the histogram holds every measured publish"
    );
    let e = back.case("nope").unwrap_err();
    assert!(e.to_string().contains("cases: ok, flaky"), "{e}");
}

#[test]
fn a_summary_missing_a_key_is_refused_with_its_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("summary.json"),
        r#"{"scenario": "x", "cases": []}"#,
    )
    .unwrap();
    let e = Summary::read(dir.path()).unwrap_err().to_string();
    assert!(e.contains("summary.json"), "{e}");
    assert!(e.contains("missing field `scenario_file`"), "{e}");
    let e = Summary::read(&dir.path().join("nothing-here"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not a run folder"), "{e}");
}
