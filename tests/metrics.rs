//! The live metrics (`--metrics-listen`, `--metrics-file`): scraped by a real Prometheus (the
//! distribution's `prometheus`, which .ci/run installs) while a run goes, its HTTP API asked for the publish
//! counter and a histogram quantile, which must agree with summary.json; the errors a user can hit; and the
//! Grafana dashboard in deploy/grafana/, checked offline against the metrics taskbench exports.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use taskbench::report::metrics::{BOUNDS_S, METRICS};

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` from `addr`: the status line's code and the body.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    // Prometheus answers chunked: the JSON is the part between the chunk sizes.
    Some((code, body))
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One number from Prometheus's instant query `q`.
fn query(prometheus: &str, q: &str) -> Option<f64> {
    let (_, body) = get(prometheus, &format!("/api/v1/query?query={}", encode(q)))?;
    let json = &body[body.find('{')?..=body.rfind('}')?];
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// Kills the child when dropped, so a failed assert leaves no Prometheus behind.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs prometheus (apt-get install prometheus); tests/run runs it"]
fn prometheus_scrapes_a_running_case_and_agrees_with_the_summary() {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        return common::skip_test("no prometheus on PATH (apt-get install prometheus)");
    }
    let dir = tempfile::tempdir().unwrap();
    let (metrics, web) = (free_port(), free_port());
    let scenario = dir.path().join("watched.toml");
    // The first case is the one checked; the second keeps the endpoint up while Prometheus scrapes the
    // first one's final values.
    std::fs::write(
        &scenario,
        "name = \"watched\"\nwarmup = 100\ninterval = \"500ms\"\n\
         [[case]]\nname = \"measured\"\nbackend = \"unix\"\npath = \"raw\"\nrate = 2000\nduration = \"3s\"\n\
         [[case]]\nname = \"after\"\nbackend = \"unix\"\npath = \"raw\"\nrate = 50\nduration = \"5s\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: taskbench\n    static_configs:\n      - targets: ['127.0.0.1:{metrics}']\n"
        ),
    )
    .unwrap();
    let web_addr = format!("127.0.0.1:{web}");
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={web_addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ready = Instant::now();
    while get(&web_addr, "/-/ready").map(|(c, _)| c) != Some(200) {
        assert!(
            ready.elapsed() < Duration::from_secs(30),
            "prometheus not ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let out = dir.path().join("run");
    let run = common::taskbench()
        .args([
            "run",
            scenario.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .args([
            "--metrics-file",
            dir.path().join("final.prom").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let case = &summary["cases"][0];
    let ok = case["publishes_ok"].as_f64().unwrap();
    let p99_s = case["latency_ns"]["p99"].as_f64().unwrap() / 1e9;

    // The series went stale when taskbench exited: read the newest value within the last minute.
    let sel = r#"{case="measured",outcome="ok"}"#;
    let counter = query(
        &web_addr,
        &format!("max_over_time(taskbench_publishes_total{sel}[1m])"),
    );
    assert_eq!(
        counter,
        Some(ok),
        "the publish counter is summary.json's publishes_ok"
    );
    let q = query(
        &web_addr,
        r#"histogram_quantile(0.99, max_over_time(taskbench_publish_duration_seconds_bucket{case="measured"}[1m]))"#,
    )
    .expect("a p99 from the buckets");
    // Within bucket resolution: the bucket that holds summary.json's p99 (HDR's own resolution, 0.1 %,
    // allowed at its edges) holds Prometheus's interpolated one.
    let upper = BOUNDS_S
        .iter()
        .copied()
        .find(|b| *b >= p99_s * 0.999)
        .unwrap();
    let lower = BOUNDS_S
        .iter()
        .copied()
        .rev()
        .find(|b| *b < p99_s * 1.001)
        .unwrap_or(0.0);
    assert!(
        (lower * 0.999..=upper * 1.001).contains(&q),
        "prometheus p99 {q} s, summary.json p99 {p99_s} s: not in the bucket {lower}..{upper}"
    );
    // The file holds the final values too.
    let file = std::fs::read_to_string(dir.path().join("final.prom")).unwrap();
    assert!(
        file.contains(&format!(
            r#"taskbench_publishes_total{{case="measured",backend="unix",path="raw",client="taskbench",shard="",outcome="ok"}} {ok}"#
        )),
        "{file}"
    );
}

#[test]
fn a_metrics_address_that_cannot_be_listened_on_is_refused_before_the_run() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/quickstart.toml");
    for (bad, says) in [
        (addr.as_str(), "cannot listen there"),
        ("nowhere", "cannot listen there"),
    ] {
        let out = common::taskbench()
            .args(["run", scenario.to_str().unwrap(), "--metrics-listen", bad])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("--metrics-listen {bad}: {says}")),
            "{stderr}"
        );
    }
    let out = common::taskbench()
        .args([
            "run",
            scenario.to_str().unwrap(),
            "--metrics-file",
            "/nonexistent-dir/x.prom",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--metrics-file /nonexistent-dir/x.prom: cannot write it"),
        "{stderr}"
    );
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_taskbench_exports() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/taskbench.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("valid JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    let mut used = std::collections::BTreeSet::new();
    for panel in panels {
        let targets = panel["targets"]
            .as_array()
            .expect("every panel has targets");
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for t in targets {
            let expr = t["expr"].as_str().expect("every target has an expr");
            let names: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("taskbench_"))
                .collect();
            assert!(!names.is_empty(), "{expr} names no taskbench metric");
            for name in names {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(name);
                assert!(METRICS.contains(&base), "{expr}: {name} is not exported");
                used.insert(base);
            }
        }
    }
    assert_eq!(
        used.len(),
        METRICS.len(),
        "a panel for every metric: {used:?}"
    );
}
