//! report.html end to end: written into every run folder, redrawn by `taskbench report` (with a baseline),
//! self-contained, readable at fourteen cases (legends beside the plots, a colour per case, a throughput
//! axis that shows a 1,000/s and a 35,000/s case, a short case named in place, the notes said once and
//! folded away below the plots), and loaded in a real browser (headless Chromium from the distribution):
//! no console message at all, a screenshot that is not blank, and every case on the page. Without Chromium
//! the browser test skips (fails under TASKBENCH_REQUIRE_BROKERS=1; .ci/run installs it).

mod common;

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::svg::{attr, case_lines, plot_area, plot_svg, table_colours, texts};

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

/// Fourteen local cases as a Celery-vs-taskbench run has them: eight open-loop cases at 500 to 2,000/s
/// lasting about half a second (several points each), four closed-loop ones going as fast as they can
/// (tens of thousands a second, one or two points), two of a few dozen publishes.
const FOURTEEN: &str = r#"
name = "fourteen"
publishes = 500
warmup = 20
interval = "100ms"

[[case]]
name = "unix-fresh-1k"
backend = "unix"
path = "fresh"
rate = 1000

[[case]]
name = "tcp-fresh-1k"
backend = "tcp"
path = "fresh"
rate = 1000

[[case]]
name = "fifo-fresh-1k"
backend = "fifo"
path = "fresh"
rate = 1000

[[case]]
name = "unix-raw-1k"
backend = "unix"
path = "raw"
rate = 1000

[[case]]
name = "tcp-raw-1k"
backend = "tcp"
path = "raw"
rate = 1000

[[case]]
name = "fifo-raw-1k"
backend = "fifo"
path = "raw"
rate = 1000

[[case]]
name = "unix-fresh-2k"
backend = "unix"
path = "fresh"
rate = 2000
publishes = 1000

[[case]]
name = "tcp-fresh-500"
backend = "tcp"
path = "fresh"
rate = 500
publishes = 250

[[case]]
name = "unix-raw"
backend = "unix"
path = "raw"
publishes = 5000

[[case]]
name = "tcp-raw"
backend = "tcp"
path = "raw"
publishes = 5000

[[case]]
name = "fifo-raw"
backend = "fifo"
path = "raw"
publishes = 5000

[[case]]
name = "unix-fresh"
backend = "unix"
path = "fresh"
publishes = 2000

[[case]]
name = "tcp-raw-short"
backend = "tcp"
path = "raw"
publishes = 40

[[case]]
name = "unix-fresh-short"
backend = "unix"
path = "fresh"
publishes = 30
"#;

/// The case names of [`FOURTEEN`], in order.
fn fourteen_names() -> Vec<&'static str> {
    FOURTEEN
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .skip(1)
        .collect()
}

/// The run folder of [`FOURTEEN`] (made once).
fn fourteen() -> &'static PathBuf {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("report-fourteen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let scenario = dir.join("fourteen.toml");
        std::fs::write(&scenario, FOURTEEN).unwrap();
        let out = dir.join("run");
        taskbench()
            .arg("run")
            .arg(&scenario)
            .arg("--out")
            .arg(&out)
            .assert()
            .code(0);
        out
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

#[test]
fn at_fourteen_cases_legends_stand_beside_the_plots_and_every_case_has_its_own_colour() {
    let names = fourteen_names();
    assert_eq!(names.len(), 14);
    let html = std::fs::read_to_string(fourteen().join("report.html")).unwrap();
    let colours = table_colours(&html, &names);
    for (k, c) in colours.iter().enumerate() {
        assert!(
            !colours[..k].contains(c),
            "{} has the colour of {}: {c}",
            names[k],
            names[colours.iter().position(|o| o == c).unwrap()]
        );
    }
    for id in ["spectrum", "throughput", "p99"] {
        let svg = plot_svg(&html, id);
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let area = plot_area(&doc);
        let texts = texts(&doc);
        for (name, colour) in names.iter().zip(&colours) {
            let (at, _) = texts
                .iter()
                .find(|(_, t)| t == name)
                .unwrap_or_else(|| panic!("{name} has no legend entry in the {id} plot"));
            // Text runs rightwards from its anchor: an anchor right of the plot area keeps it out.
            assert!(
                at.0 > area.right,
                "{name}'s legend entry at {at:?} is inside the {id} plot area {area:?}"
            );
            let mark = doc.descendants().find(|n| {
                n.has_tag_name("circle")
                    && attr(*n, "cx") > area.right
                    && (attr(*n, "cy") - at.1).abs() < 2.0
            });
            let fill = mark.and_then(|n| n.attribute("fill")).unwrap_or_default();
            assert!(
                fill.eq_ignore_ascii_case(colour),
                "{name}'s legend mark in the {id} plot is {fill}, its table swatch {colour}"
            );
            assert!(
                !case_lines(&doc, area, colour).is_empty(),
                "{name} has no line in the {id} plot"
            );
        }
    }
}

#[test]
fn a_throughput_axis_shows_a_1000_per_s_case_and_a_35000_per_s_one_and_a_short_case_is_named() {
    let names = fourteen_names();
    let html = std::fs::read_to_string(fourteen().join("report.html")).unwrap();
    let colours = table_colours(&html, &names);
    let colour = |name: &str| &colours[names.iter().position(|n| *n == name).unwrap()];
    let svg = plot_svg(&html, "throughput");
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let area = plot_area(&doc);
    let texts = texts(&doc);
    for label in ["1,000", "10,000"] {
        assert!(
            texts.iter().any(|(_, t)| t == label),
            "the throughput axis has no {label} label"
        );
    }
    // 1,000/s and 2,000/s lie apart, not both flat at the bottom of an axis made for 35,000/s.
    let mean_y = |name: &str| {
        let points: Vec<(f64, f64)> = case_lines(&doc, area, colour(name)).concat();
        points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64
    };
    let (one, two) = (mean_y("unix-fresh-1k"), mean_y("unix-fresh-2k"));
    assert!(
        one - two > 15.0,
        "1,000/s at y {one:.0} and 2,000/s at y {two:.0} are drawn too close (plot {area:?})"
    );
    // A case of a few dozen publishes is named (with how long it ran) where it is drawn, in the plot.
    let (at, _) = texts
        .iter()
        .find(|(_, t)| t.starts_with("tcp-raw-short ("))
        .expect("the short case has no label");
    assert!(
        area.contains(*at),
        "the short case's label at {at:?} is outside the plot {area:?}"
    );
    let dots = doc.descendants().filter(|n| {
        n.has_tag_name("circle")
            && n.attribute("fill")
                .is_some_and(|f| f.eq_ignore_ascii_case(colour("tcp-raw-short")))
            && area.contains((attr(*n, "cx"), attr(*n, "cy")))
    });
    assert!(
        dots.map(|n| attr(n, "r")).any(|r| r >= 4.0),
        "the short case has no visible marker"
    );
}

#[test]
fn notes_are_said_once_and_folded_away_below_the_plots() {
    let html = std::fs::read_to_string(fourteen().join("report.html")).unwrap();
    // Every case's sink note is the same: said once, for all cases, inside the closed notes.
    let note = "the sink reads asynchronously";
    assert_eq!(html.matches(note).count(), 1, "said more than once");
    let details = html
        .find("<details id=\"notes\">")
        .expect("no closed notes");
    let last_plot = html.find("id=\"p99\"").unwrap();
    let at = html.find(note).unwrap();
    assert!(
        last_plot < details && details < at,
        "the notes are not below the plots, folded"
    );
    let heading = html[details..at]
        .rfind("<h3>")
        .map(|h| &html[details + h..at]);
    assert!(
        heading.is_some_and(|h| h.starts_with("<h3>all cases</h3>")),
        "not under 'all cases': {heading:?}"
    );
    // The eight open-loop cases' lag is one note, with each case's figures in its table.
    assert_eq!(html.matches("open loop at ").count(), 1);
    let figures = &html[at..];
    for case in ["unix-fresh-1k", "tcp-fresh-500", "unix-fresh-2k"] {
        assert!(
            figures.contains(&format!("<tr><td>{case}</td>")),
            "{case} has no lag row"
        );
    }
    // Between the table and the first plot: no note.
    let table_end = html.find("</table>").unwrap();
    let first_plot = html.find("id=\"spectrum\"").unwrap();
    assert!(
        !html[table_end..first_plot].contains("<li>"),
        "a note under the table"
    );
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
    let page = fourteen().join("report.html");
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

    let (console, shot) = load(&browser, &page, dir.path());
    assert!(console.is_empty(), "console messages: {console:#?}");
    let share = ink(&shot);
    assert!(
        share > 0.03,
        "the screenshot is blank ({:.1}% ink)",
        share * 100.0
    );

    // Every case is on the rendered page (the DOM after load), and the notes are folded: closed.
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
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("<details id=\"notes\"><summary>"),
        "the notes are not in a closed <details>"
    );
    for case in fourteen_names() {
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
