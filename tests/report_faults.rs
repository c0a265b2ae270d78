//! report.html shows a case's faults: a blackhole shaded over the time it lasted and a reset marked where
//! it happened on the throughput and p99 plots, each labelled with its kind, and a faults table with each
//! fault's reconnect figures and the case's publishes of unknown fate. Drawn by `taskbench report` from a
//! real run's summary.json given a blackhole and a reset (no broker: the plots and the table read only the
//! summary).

mod common;

use common::svg::{attr, plot_area, plot_svg, table_colours, texts};
use serde_json::json;
use std::path::Path;

/// A local run of one case, its summary given ten 100 ms intervals, a blackhole from 0.3 s to 0.5 s
/// (nothing published, errors), a reset at 0.7 s, their reconnect figures and 6 publishes of unknown fate.
fn faulted_run(dir: &Path) {
    common::quickstart_run(dir, 500, &["unix-raw"]);
    let path = dir.join("summary.json");
    let mut summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let case = &mut summary["cases"][0];
    case["timeline"] = (0..10)
        .map(|i| {
            let (events, ok, failed) = match i {
                3 | 4 => (vec!["blackhole"], 0, 4),
                7 => (vec!["reset"], 80, 2),
                _ => (vec![], 100, 0),
            };
            json!({
                "start_s": i as f64 / 10.0, "length_s": 0.1, "ok": ok, "failed": failed,
                "throughput_per_s": ok as f64 * 10.0,
                "p50": (ok > 0).then_some(20_000), "p99": (ok > 0).then_some(90_000),
                "max": (ok > 0).then_some(400_000), "events": events,
            })
        })
        .collect();
    let reconnect = |again: usize, min: f64, mean: f64, max: f64| json!({"publishers": 3, "published_again": again, "min": min, "mean": mean, "max": max});
    case["events"] = json!([
        {"kind": "blackhole", "at_s": 0.3, "for_s": 0.2, "began_s": 0.3, "ended_s": 0.5,
         "published_again_s": [0.012, 0.09, 0.051], "reconnect_s": reconnect(3, 0.012, 0.051, 0.09)},
        {"kind": "reset", "at_s": 0.7, "for_s": 0.0, "began_s": 0.7, "ended_s": 0.7,
         "published_again_s": [0.002, 0.004, null], "reconnect_s": reconnect(2, 0.002, 0.003, 0.004)},
    ]);
    case["unknown_fate"] = json!({"publishes": 6, "delivered": 2});
    std::fs::write(&path, serde_json::to_string_pretty(&summary).unwrap()).unwrap();
}

#[test]
fn a_blackhole_and_a_reset_are_shaded_on_the_timelines_and_listed_with_their_reconnect_figures() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("report-faults-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    faulted_run(&dir);
    let out = common::taskbench()
        .arg("report")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let colour = &table_colours(&html, &["unix-raw"])[0];
    for id in ["throughput", "p99"] {
        let svg = plot_svg(&html, id);
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let area = plot_area(&doc);
        // The blackhole: a faint rectangle in the case's colour over the plot's height.
        let shade = doc
            .descendants()
            .find(|n| {
                n.has_tag_name("rect")
                    && n.attribute("fill")
                        .is_some_and(|f| f.eq_ignore_ascii_case(colour))
                    && n.attribute("opacity").is_some_and(|o| o != "1")
            })
            .unwrap_or_else(|| panic!("no shaded blackhole in the {id} plot: {svg}"));
        let (left, width) = (attr(shade, "x"), attr(shade, "width"));
        assert!(
            attr(shade, "height") > 0.8 * (area.bottom - area.top),
            "the {id} plot's blackhole shade is not the plot's height"
        );
        // The reset: a line across the plot in the case's colour, where x reads 0.7 s.
        let reset = doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .filter(|n| {
                n.attribute("stroke")
                    .is_some_and(|s| s.eq_ignore_ascii_case(colour))
            })
            .filter_map(|n| {
                let points: Vec<(f64, f64)> = n
                    .attribute("points")?
                    .split_whitespace()
                    .filter_map(|p| p.split_once(','))
                    .map(|(x, y)| (x.parse().unwrap(), y.parse().unwrap()))
                    .collect();
                (points.len() == 2 && points[0].0 == points[1].0).then_some(points[0].0)
            })
            .next()
            .unwrap_or_else(|| panic!("no reset line in the {id} plot"));
        // 0.3 s to 0.5 s, then 0.7 s: the reset is two of the blackhole's widths right of its start.
        let ratio = (reset - left) / width;
        assert!(
            (ratio - 2.0).abs() < 0.05,
            "in the {id} plot the blackhole spans {left}+{width} px and the reset is at {reset} px"
        );
        let texts = texts(&doc);
        for kind in ["blackhole", "reset"] {
            let (at, _) = texts
                .iter()
                .find(|(_, t)| t == kind)
                .unwrap_or_else(|| panic!("no {kind} label in the {id} plot"));
            assert!(
                area.contains(*at),
                "the {kind} label is outside the {id} plot"
            );
        }
    }
    let table = &html[html.find("<table id=\"faults\">").expect("no faults table")..];
    let table = &table[..table.find("</table>").unwrap()];
    for (kind, cells) in [
        (
            "blackhole",
            [
                "at 300ms for 200ms",
                "300ms to 500ms",
                "3 of 3",
                "12.0ms",
                "51.0ms",
                "90.0ms",
            ],
        ),
        (
            "reset",
            [
                "at 700ms", "at 700ms", "2 of 3", "2.00ms", "3.00ms", "4.00ms",
            ],
        ),
    ] {
        let row = &table[table
            .find(&format!("data-kind=\"{kind}\""))
            .unwrap_or_else(|| panic!("no {kind} row"))..];
        let row = &row[..row.find("</tr>").unwrap()];
        for cell in cells {
            assert!(
                row.contains(&format!(">{cell}</td>")),
                "the {kind} row lacks {cell}: {row}"
            );
        }
    }
    assert!(
        html.contains("unix-raw: 6 failed publishes of unknown fate")
            && html.contains("2 of them arrived"),
        "no unknown fate"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
