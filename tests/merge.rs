//! `taskbench merge` end to end: three shards run as three processes, merged into one run folder whose
//! counts add up and whose histogram, and each timeline interval's, is exactly the shards' together; a
//! shard's missing interval log; and the merges it refuses.

mod common;

use assert_cmd::prelude::*;
use base64::Engine;
use common::taskbench;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use predicates::prelude::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use taskbench::summary::{CaseSummary, Summary, decode_histogram};

fn summary(dir: &Path) -> Summary {
    Summary::read(dir).unwrap()
}

const SCENARIO: &str = r#"
    name = "sharded"
    publishes = 3001
    warmup = 0
    concurrency = 3
    interval = "20ms"

    [[case]]
    name = "unix"
    backend = "unix"
    path = "raw"

    [[case]]
    name = "tcp"
    backend = "tcp"
    path = "fresh"
    publishes = 600
"#;

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

/// Runs the `n` shards of `text` at once, as `n` processes that wait for one `--start-at` (as the README
/// says to run shards), into `dir/shard-i`.
fn shards_together(dir: &Path, text: &str, n: u32) -> Vec<PathBuf> {
    let at =
        humantime::format_rfc3339_millis(SystemTime::now() + Duration::from_secs(5)).to_string();
    let running: Vec<(PathBuf, std::process::Child)> = (0..n)
        .map(|i| {
            let scenario = dir.join(format!("scenario-{i}.toml"));
            std::fs::write(&scenario, text).unwrap();
            let out = dir.join(format!("shard-{i}"));
            let child = taskbench()
                .arg("run")
                .arg(&scenario)
                .args(["--shard", &format!("{i}/{n}"), "--start-at", &at, "--out"])
                .arg(&out)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (out, child)
        })
        .collect();
    running
        .into_iter()
        .map(|(out, child)| {
            let done = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&done.stderr);
            assert!(done.status.success(), "{}: {stderr}", out.display());
            assert!(
                !stderr.contains("--start-at was"),
                "a shard started after --start-at: {stderr}"
            );
            out
        })
        .collect()
}

/// The intervals of the interval log `path` as (offset from its BaseTime in s, histogram), read with the
/// hdrhistogram crate's own reader (not taskbench's).
fn read_hlog(path: &Path) -> Vec<(f64, Histogram<u64>)> {
    let text = std::fs::read(path).unwrap();
    IntervalLogIterator::new(&text)
        .filter_map(|entry| match entry.unwrap() {
            LogEntry::Interval(i) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(i.encoded_histogram())
                    .unwrap();
                let h: Histogram<u64> = Deserializer::new()
                    .deserialize(&mut bytes.as_slice())
                    .unwrap();
                Some((i.start_timestamp().as_secs_f64(), h))
            }
            _ => None,
        })
        .collect()
}

/// Case `i`'s merged timeline built here from the shards: each shard interval (its histogram from the
/// shard's .hlog, where `has_hlog`) put in the slot of the merged grid its wall-clock start falls in. Per
/// slot: the sum of the histograms of the shards that have a log, and which shards contributed.
fn expected_slots(
    shards: &[PathBuf],
    parts: &[Summary],
    merged_case: &CaseSummary,
    i: usize,
    has_hlog: &dyn Fn(usize) -> bool,
) -> Vec<(Histogram<u64>, Vec<usize>)> {
    let start = merged_case.started_unix_s.unwrap();
    let length = merged_case.timeline[0].length_s;
    let name = &merged_case.name;
    let mut slots: Vec<(Histogram<u64>, Vec<usize>)> = Vec::new();
    for (k, (dir, p)) in shards.iter().zip(parts).enumerate() {
        let case = &p.cases[i];
        let timeline = &case.timeline;
        let logged = if has_hlog(k) {
            let logged = read_hlog(&dir.join(format!("{name}.hlog")));
            assert_eq!(logged.len(), timeline.len(), "shard {k}'s {name}.hlog");
            logged.into_iter().map(Some).collect()
        } else {
            vec![None; timeline.len()]
        };
        // The shard's start from the earliest first: seconds since the epoch lose sub-microseconds.
        let from_start = case.started_unix_s.unwrap() - start;
        let mut last_slot = None;
        for (t, logged) in timeline.iter().zip(logged) {
            let at = from_start + t.start_s;
            let slot = ((at / length) + 1e-6).floor().max(0.0) as usize;
            // A shard's intervals are the grid's length: each lands in the slot after its previous one's.
            if let Some(last) = last_slot {
                assert_eq!(slot, last + 1, "shard {k}'s interval at {t:?}");
            }
            last_slot = Some(slot);
            while slots.len() <= slot {
                slots.push((
                    Histogram::new_with_bounds(1, 600_000_000_000, 3).unwrap(),
                    Vec::new(),
                ));
            }
            if let Some((_, h)) = logged {
                assert_eq!(h.len(), t.ok, "shard {k}: {t:?}");
                slots[slot].0.add(&h).unwrap();
            }
            slots[slot].1.push(k);
        }
    }
    slots
}

/// The `q` quantile of `h`, or `None` for an empty histogram (as summary.json has it).
fn quantile(h: &Histogram<u64>, q: f64) -> Option<u64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q))
}

#[test]
fn three_shards_merge_into_one_run_that_adds_up_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let shards = shards_together(dir.path(), SCENARIO, 3);
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
    assert!(m.shard.is_none(), "the merged run is a whole run");
    let parts: Vec<Summary> = shards.iter().map(|s| summary(s)).collect();
    for (i, case) in m.cases.iter().enumerate() {
        let shard_cases = || parts.iter().map(|p| &p.cases[i]);
        let publishes_ok: u64 = shard_cases().map(|c| c.publishes_ok).sum();
        assert_eq!(case.publishes_ok, publishes_ok);
        let delivered: u64 = shard_cases().map(|c| c.delivered.unwrap()).sum();
        assert_eq!(case.delivered, Some(delivered), "delivered adds up");
        assert_eq!(case.settings.concurrency, 3);
        // The merged histogram is the one built from every shard's samples: decode and add them here.
        let mut all = decode_histogram(&parts[0].cases[i].histogram).unwrap();
        for c in shard_cases().skip(1) {
            all.add(decode_histogram(&c.histogram).unwrap()).unwrap();
        }
        let merged_h = decode_histogram(&case.histogram).unwrap();
        assert_eq!(merged_h.len(), publishes_ok);
        assert_eq!(merged_h, all);
        let lat = &case.latency_ns;
        for (key, got, q) in [
            ("p50", lat.p50, 0.5),
            ("p99", lat.p99, 0.99),
            ("p999", lat.p999, 0.999),
        ] {
            assert_eq!(got, Some(all.value_at_quantile(q)), "{key}");
        }
        // Stages merge the same way: counts add up.
        for (stage, s) in &case.stages {
            let count: u64 = shard_cases().map(|c| c.stages[stage].count).sum();
            assert_eq!(s.count, count, "{stage}");
        }
        // The window is the union of the shards' windows, so throughput is over the longest span.
        let longest = shard_cases().map(|c| c.elapsed_s).fold(0.0, f64::max);
        assert!(case.elapsed_s >= longest);
        let throughput = case.throughput_per_s;
        assert!((throughput - publishes_ok as f64 / case.elapsed_s).abs() < 1e-6 * throughput);
        let ok: u64 = case.timeline.iter().map(|t| t.ok).sum();
        assert_eq!(ok, publishes_ok, "the aligned timeline holds every publish");
        assert!(case.notes[0].starts_with("merged from 3 of 3 shards"));

        // Each interval of the merged timeline is the sum of the shards' intervals in it, read from their
        // .hlog files here: p50, p99 and max are the sum's, where several shards contributed too.
        let timeline = &case.timeline;
        let slots = expected_slots(&shards, &parts, case, i, &|_| true);
        assert_eq!(timeline.len(), slots.len(), "{case:?}");
        for (n, (t, (h, from))) in timeline.iter().zip(&slots).enumerate() {
            assert_eq!(t.ok, h.len(), "interval {n}");
            assert_eq!(
                t.p99,
                quantile(h, 0.99),
                "interval {n} from shards {from:?}"
            );
            assert_eq!(t.p50, quantile(h, 0.5), "interval {n} from shards {from:?}");
            assert_eq!(t.max, (!h.is_empty()).then(|| h.max()), "interval {n}");
        }
        if i == 0 {
            // The shards started together, so their first case's intervals overlap: the merge had to add.
            assert!(
                slots.iter().any(|(_, from)| from.len() > 1),
                "no interval of {} has more than one shard: {slots:?}",
                case.name
            );
        }

        // The merged .hlog holds the merged intervals: every publish, interval by interval.
        let name = &case.name;
        let hlog = merged.join(format!("{name}.hlog"));
        let logged = read_hlog(&hlog);
        assert_eq!(logged.len(), timeline.len(), "{name}.hlog");
        let logged_ok: u64 = logged.iter().map(|(_, h)| h.len()).sum();
        assert_eq!(logged_ok, case.publishes_ok, "{name}.hlog");
        for (n, ((at, h), t)) in logged.iter().zip(timeline).enumerate() {
            assert_eq!(h.len(), t.ok, "{name}.hlog interval {n}");
            assert_eq!(quantile(h, 0.99), t.p99, "{name}.hlog interval {n}");
            assert!((at - t.start_s).abs() < 0.0015, "{at} vs {t:?}");
        }
    }
    for file in [
        "unix.hgrm",
        "unix.hlog",
        "tcp.hlog",
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
    for (single, merged) in w.cases.iter().zip(&m.cases) {
        let name = &single.name;
        assert_eq!(single.publishes_ok, merged.publishes_ok, "{name}");
        assert_eq!(single.delivered, merged.delivered, "{name}");
        let (s, m) = (&single.settings, &merged.settings);
        assert_eq!(s.concurrency, m.concurrency, "{name}");
        assert_eq!(s.publishes, m.publishes, "{name}");
    }
}

#[test]
#[ignore = "needs the Celery venv (Python hdrhistogram); tests/run runs it"]
fn hdrhistograms_python_reader_reads_a_merged_hlog() {
    let dir = tempfile::tempdir().unwrap();
    let shards: Vec<PathBuf> = (0..3).map(|i| shard(dir.path(), SCENARIO, i, 3)).collect();
    let merged = dir.path().join("merged");
    taskbench()
        .arg("merge")
        .args(&shards)
        .arg("--out")
        .arg(&merged)
        .assert()
        .success();
    for case in summary(&merged).cases {
        let name = &case.name;
        let Some(read) = common::read_hlog_with_python(&merged.join(format!("{name}.hlog"))) else {
            return;
        };
        let intervals = read["intervals"].as_array().unwrap();
        assert_eq!(intervals.len(), case.timeline.len(), "{read}");
        let start_ms = read["start_time_sec"].as_f64().unwrap() * 1000.0;
        assert!(
            (start_ms - case.started_unix_s.unwrap() * 1000.0).abs() < 1.5,
            "{read}"
        );
        for (py, t) in intervals.iter().zip(&case.timeline) {
            assert_eq!(py["tag"], name.as_str());
            assert_eq!(py["count"].as_u64(), Some(t.ok), "{py} vs {t:?}");
            assert_eq!(py["max"].as_u64(), t.max, "{py} vs {t:?}");
        }
    }
}

#[test]
fn a_shard_without_its_interval_log_merges_with_a_note_and_null_percentiles_where_it_overlaps() {
    let dir = tempfile::tempdir().unwrap();
    let shards = shards_together(dir.path(), SCENARIO, 3);
    // Shard 1's unix.hlog is gone and shard 2's tcp.hlog is not an interval log.
    std::fs::remove_file(shards[1].join("unix.hlog")).unwrap();
    std::fs::write(shards[2].join("tcp.hlog"), "not,an interval log\n").unwrap();
    let merged = dir.path().join("merged");
    taskbench()
        .arg("merge")
        .args(&shards)
        .arg("--out")
        .arg(&merged)
        .assert()
        .success();
    let m = summary(&merged);
    let parts: Vec<Summary> = shards.iter().map(|s| summary(s)).collect();
    for (i, (name, lost, says)) in [
        ("unix", 1, "shard 1/3's unix.hlog is missing"),
        ("tcp", 2, "shard 2/3's tcp.hlog cannot be read"),
    ]
    .into_iter()
    .enumerate()
    {
        let case = &m.cases[i];
        assert_eq!(case.name, name);
        let notes = &case.notes;
        let note = notes
            .iter()
            .find(|n| n.contains(says))
            .unwrap_or_else(|| panic!("no note that {says}: {notes:?}"));
        assert!(
            note.contains(
                &shards[lost]
                    .join(format!("{name}.hlog"))
                    .display()
                    .to_string()
            ),
            "{note}"
        );
        assert!(
            !merged.join(format!("{name}.hlog")).exists(),
            "no merged {name}.hlog without every shard's"
        );
        // Counts still add up; p50 and p99 are null where the shard without a log shares an interval, and
        // exact (the other shards' sum) where it does not.
        let timeline = &case.timeline;
        let ok: u64 = timeline.iter().map(|t| t.ok).sum();
        assert_eq!(ok, case.publishes_ok);
        let slots = expected_slots(&shards, &parts, case, i, &|k| k != lost);
        assert_eq!(timeline.len(), slots.len());
        let mut nulled = 0;
        for (n, (t, (h, from))) in timeline.iter().zip(&slots).enumerate() {
            if from.contains(&lost) && from.len() > 1 {
                assert!(t.p50.is_none() && t.p99.is_none(), "interval {n}: {t:?}");
                // (On a loaded machine a 20 ms interval may hold no publish at all.)
                assert_eq!(t.max.is_some(), t.ok > 0, "the max stays: {t:?}");
                nulled += 1;
            } else if !from.contains(&lost) {
                assert_eq!(t.p99, quantile(h, 0.99), "interval {n} from {from:?}");
            }
        }
        if i == 0 {
            assert!(nulled > 0, "shard {lost} overlapped no other: {slots:?}");
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
    let text = SCENARIO.replace(r#"name = "sharded""#, r#"name = "other""#);
    std::fs::rename(shard(&other, &text, 1, 2), other.join("o")).unwrap();
    refuse(&[&a, &other.join("o")], "only shards of one scenario merge");
    let edited = dir.path().join("edited");
    std::fs::create_dir(&edited).unwrap();
    let text = SCENARIO.replace(r#"path = "fresh""#, r#"path = "raw""#);
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
#[ignore = "needs RabbitMQ and Redis; tests/run runs it"]
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
            common::skip_test(&format!(
                "no broker reachable at {}",
                taskbench::backend::url::redact(url)
            ));
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let queue = common::unique("tb-shards");
    let text = format!(
        r#"
            name = "sharded-brokers"
            publishes = 1500
            warmup = 30
            concurrency = 3

            [task]
            queue = "{queue}"

            [[case]]
            name = "redis"
            backend = "redis"
            path = "pooled"
            url = "{redis}"

            [[case]]
            name = "amqp"
            backend = "amqp"
            path = "pooled"
            confirm = "each"
            url = "{amqp}"
        "#
    );
    let shards: Vec<PathBuf> = (0..3).map(|i| shard(dir.path(), &text, i, 3)).collect();
    for (i, s) in shards.iter().enumerate() {
        for case in summary(s).cases {
            let name = &case.name;
            assert_eq!(case.delivered, Some(case.publishes_ok), "shard {i}: {name}");
            assert_eq!(case.settings.task.queue, format!("{queue}-shard-{i}"));
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
    for case in summary(&merged).cases {
        let name = &case.name;
        assert_eq!(case.publishes_ok, 1500, "{name}");
        assert_eq!(case.delivered, Some(1500), "{name}");
        assert_eq!(case.warmup_ok, 30, "{name}");
    }
}
