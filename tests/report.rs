//! report.html end to end: written into every run folder, redrawn by `taskbench report` (with a baseline),
//! self-contained, and loaded in a real browser (headless Chromium from the distribution): no console
//! message at all, a screenshot that is not blank, and every case on the page. Without Chromium the browser
//! test skips (fails under TASKBENCH_REQUIRE_BROKERS=1; .ci/run installs it).

mod common;

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn taskbench() -> Command {
    Command::cargo_bin("taskbench").unwrap()
}

const CASES: [&str; 4] = ["unix-raw", "tcp-raw", "unix-fresh", "tcp-fresh"];

/// One quickstart run of four cases (made once), and a second of two of them, under cargo's target tmp.
fn runs() -> &'static (PathBuf, PathBuf) {
    static RUNS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    RUNS.get_or_init(|| {
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("report-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let run = |name: &str, cases: &[&str]| {
            let out = dir.join(name);
            common::quickstart_run(&out, 3000, cases);
            out
        };
        (run("a", &CASES), run("b", &CASES[..2]))
    })
}

#[test]
fn every_run_folder_has_a_self_contained_report() {
    let (a, _) = runs();
    let html = std::fs::read_to_string(a.join("report.html")).unwrap();
    for case in CASES {
        assert!(
            html.contains(&format!("data-case=\"{case}\"")),
            "{case} not in the table"
        );
    }
    for id in ["spectrum", "throughput", "p99", "stages"] {
        assert!(html.contains(&format!("id=\"{id}\"><svg")), "no {id} plot");
    }
    assert!(html.contains("Latency by percentile") && html.contains("99.9%"));
    assert!(
        html.contains("svg+xml;base64,PD94bWwg"),
        "flamegraphs embedded"
    );
    // Nothing is fetched: no URL but the SVG namespaces and data: URIs.
    for needle in [
        "src=\"http",
        "href=\"http",
        "<link",
        "<script src",
        "url(http",
        "@import",
    ] {
        assert!(
            !html.contains(needle),
            "report.html refers outside itself: {needle}"
        );
    }
}

#[test]
fn report_redraws_a_run_and_compares_it_with_a_baseline() {
    let (a, b) = runs();
    std::fs::remove_file(b.join("report.html")).unwrap();
    taskbench()
        .arg("report")
        .arg(b)
        .args(["--baseline"])
        .arg(a)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("report.html"));
    let html = std::fs::read_to_string(b.join("report.html")).unwrap();
    assert!(html.contains("Against the baseline"), "no comparison");
    assert!(html.contains("<td>unix-raw</td><td>p99</td>"), "no p99 row");
    assert!(html.contains("only in the baseline: unix-fresh, tcp-fresh"));
    taskbench()
        .arg("report")
        .arg(a.join("nothing"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not a run folder"));
}

/// The distribution's Chromium, if installed.
fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
    })
}

/// Loads `page` in headless Chromium with console logging on stderr and takes a screenshot; returns the
/// console lines and the PNG's path.
fn load(browser: &Path, page: &Path, dir: &Path) -> (Vec<String>, PathBuf) {
    let shot = dir.join("shot.png");
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1400,2000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let console = stderr
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .map(str::to_string)
        .collect();
    (console, shot)
}

/// Share of the screenshot's pixels that are not (near) white.
fn ink(png_path: &Path) -> f64 {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    let inked = pixels
        .chunks(channels)
        .filter(|p| p.iter().take(3).any(|&c| c < 230))
        .count();
    inked as f64 / (pixels.len() / channels) as f64
}

#[test]
fn the_report_loads_in_a_browser_without_a_console_message() {
    let test = "the_report_loads_in_a_browser_without_a_console_message";
    let Some(browser) = chromium() else {
        common::skip(test, "no chromium on PATH (apt-get install chromium)");
        return;
    };
    let (a, _) = runs();
    let dir = tempfile::tempdir().unwrap();

    // The check sees a console error: a page that logs one is caught.
    let bad = dir.path().join("bad.html");
    std::fs::write(
        &bad,
        "<html><body>x<script>console.error('planted')</script></body></html>",
    )
    .unwrap();
    let (console, _) = load(&browser, &bad, dir.path());
    assert!(
        console.iter().any(|l| l.contains("planted")),
        "the console check sees nothing: {console:?}"
    );

    let (console, shot) = load(&browser, &a.join("report.html"), dir.path());
    assert!(console.is_empty(), "console messages: {console:#?}");
    let share = ink(&shot);
    assert!(
        share > 0.03,
        "the screenshot is blank ({:.1}% ink)",
        share * 100.0
    );

    // Every case is on the rendered page (the DOM after load).
    let profile = tempfile::tempdir().unwrap();
    let dom = std::process::Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("file://{}", a.join("report.html").display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    for case in CASES {
        assert!(
            dom.contains(&format!("data-case=\"{case}\"")),
            "{case} not in the page"
        );
        assert!(
            dom.contains(&format!("\n{case}\n</text>")),
            "{case} not in a plot legend"
        );
    }
    if let Ok(keep) = std::env::var("TASKBENCH_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}
