//! The side-by-side table of a run's cases, and the lines under it that explain errors and caveats.

use crate::catalog::Backend;
use crate::facts::PythonFacts;
use crate::human::{human_count, human_ns};
use crate::record::CaseResult;
use crate::summary::{CaseSummary, EventSummary, FloorSummary, UnknownFateSummary};
use comfy_table::{CellAlignment, Table, presets};

/// The comparison table's columns.
const HEADER: [&str; 12] = [
    "case",
    "backend",
    "path",
    "publishes",
    "errors",
    "throughput/s",
    "p50",
    "p90",
    "p99",
    "p99.9",
    "max",
    "failed max",
];

/// The comparison table, one row per case.
pub fn comparison(results: &[CaseResult]) -> String {
    let rows = results.iter().map(|r| {
        let q = |q: f64| (!r.latency.is_empty()).then(|| r.latency.value_at_quantile(q));
        [
            r.name.clone(),
            r.backend.to_string(),
            r.path.to_string(),
            human_count(r.publishes_ok),
            human_count(r.errors.total()),
            human_count(r.throughput().round() as u64),
            ns(q(0.5)),
            ns(q(0.9)),
            ns(q(0.99)),
            ns(q(0.999)),
            ns((!r.latency.is_empty()).then(|| r.latency.max())),
            ns((!r.failed_latency.is_empty()).then(|| r.failed_latency.max())),
        ]
    });
    let mut out = layout(rows);
    let floors: Vec<(&str, FloorSummary)> = results
        .iter()
        .filter_map(|r| Some((r.name.as_str(), FloorSummary::of(r.floor.as_ref()?, r))))
        .collect();
    out.push_str(&floors_table(floors.iter().map(|(n, f)| (*n, f))));
    out.push_str(&explanations(results));
    out
}

/// The same table from a run folder's summary (a merged run's, say), with each case's notes under it.
pub fn comparison_of(cases: &[CaseSummary]) -> String {
    let rows = cases.iter().map(|c| {
        let l = &c.latency_ns;
        [
            c.name.clone(),
            c.backend.to_string(),
            c.path.to_string(),
            human_count(c.publishes_ok),
            human_count(c.errors.values().sum()),
            human_count(c.throughput_per_s.round() as u64),
            ns(l.p50),
            ns(l.p90),
            ns(l.p99),
            ns(l.p999),
            ns(l.max),
            ns(c.failed_latency_ns.max),
        ]
    });
    let mut out = layout(rows);
    out.push_str(&floors_table(
        cases
            .iter()
            .filter_map(|c| Some((c.name.as_str(), c.floor.as_ref()?))),
    ));
    for c in cases {
        for (kind, n) in &c.errors {
            let message = c.error_messages.get(kind).map_or("", String::as_str);
            out.push_str(&format!(
                "{}: {} {kind} errors: {message}\n",
                c.name,
                human_count(*n)
            ));
        }
    }
    for c in cases {
        out.push_str(&super::faults::lines(
            &c.name,
            &c.events,
            c.unknown_fate.as_ref(),
        ));
    }
    // A summary's notes hold the harnesses' figures as sentences too; the table below shows those.
    out.push_str(&grouped_notes(cases.iter().map(|c| {
        let figures = c.facts.python.as_ref().map(PythonFacts::figures);
        let notes = c
            .notes
            .iter()
            .filter(move |n| !figures.iter().flatten().any(|f| f == *n));
        (c.name.as_str(), c.backend, notes.cloned().collect())
    })));
    out.push_str(&harnesses(
        cases
            .iter()
            .filter_map(|c| Some((c.name.as_str(), c.facts.python.as_ref()?))),
    ));
    out.push_str(&super::resources_table::resources(
        cases.iter().map(|c| (c.name.as_str(), c.resources.clone())),
    ));
    out
}

/// Notes, each said once with the cases it applies to ([`which_cases`]); `cases` are each case's name,
/// backend and notes.
fn grouped_notes<'a>(cases: impl Iterator<Item = (&'a str, Backend, Vec<String>)>) -> String {
    let mut all: Vec<(&str, Backend)> = Vec::new();
    let mut notes: Vec<(String, Vec<usize>)> = Vec::new();
    for (k, (name, backend, case_notes)) in cases.enumerate() {
        all.push((name, backend));
        for note in case_notes {
            match notes.iter_mut().find(|(n, _)| *n == note) {
                Some((_, members)) => members.push(k),
                None => notes.push((note, vec![k])),
            }
        }
    }
    let mut out = String::new();
    for (note, members) in notes {
        out.push_str(&format!("note ({}): {note}\n", which_cases(&members, &all)));
    }
    out
}

/// Each case's name and backend, for [`which_cases`].
pub fn named(cases: &[CaseSummary]) -> Vec<(&str, Backend)> {
    cases.iter().map(|c| (c.name.as_str(), c.backend)).collect()
}

/// Which cases `members` (indices into `cases`: each case's name and backend; at least one) are, in
/// words: `all cases`, `all redis cases` (every case of one backend, and only those), `all cases but a, b`
/// when that is shorter, else the names.
pub fn which_cases(members: &[usize], cases: &[(&str, Backend)]) -> String {
    let names = |pick: &dyn Fn(usize) -> bool| {
        (0..cases.len())
            .filter(|&k| pick(k))
            .map(|k| cases[k].0)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let backend = cases[members[0]].1;
    let of_backend = |k: usize| cases[k].1 == backend;
    if members.len() == cases.len() && cases.len() > 1 {
        "all cases".into()
    } else if members.len() > 1 && (0..cases.len()).all(|k| of_backend(k) == members.contains(&k)) {
        format!("all {backend} cases")
    } else if members.len() > 2 && cases.len() - members.len() < members.len() / 2 {
        format!("all cases but {}", names(&|k| !members.contains(&k)))
    } else {
        names(&|k| members.contains(&k))
    }
}

/// The Python harnesses' own figures, one row per `celery` or `kombu` case; empty without such cases.
fn harnesses<'a>(cases: impl Iterator<Item = (&'a str, &'a PythonFacts)>) -> String {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header([
        "case",
        "harness pids",
        "busy",
        "timed calls/publish",
        "py-spy samples (failed), share of the run sampled",
    ]);
    let mut any = false;
    for (name, p) in cases {
        any = true;
        let pids: Vec<String> = p.pids.iter().map(u32::to_string).collect();
        let samples: Vec<String> = p
            .profilers
            .iter()
            .map(|s| {
                let share = s
                    .sampled_share
                    .map_or(String::new(), |x| format!(" {:.0}%", 100.0 * x));
                format!(
                    "{} {} ({}){share}",
                    s.view,
                    human_count(s.samples),
                    human_count(s.failed)
                )
            })
            .collect();
        table.add_row([
            name.to_string(),
            pids.join(" "),
            p.busy_share
                .map_or("-".into(), |b| format!("{:.0}%", 100.0 * b)),
            p.timed_calls_per_publish
                .map_or("-".into(), |c| format!("{c:.1}")),
            if samples.is_empty() {
                "-".into()
            } else {
                samples.join(", ")
            },
        ]);
    }
    if !any {
        return String::new();
    }
    for i in 2..4 {
        if let Some(col) = table.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    format!(
        "Python harnesses (busy: the share of the time from their first publish to their last spent inside the publish call, warm-up included; the rest waited for the next command):\n{}\n",
        table.trim_fmt()
    )
}

/// Each case's floor, measured right before it, and the case's p50 and throughput as ratios to it; empty
/// when no case has one.
fn floors_table<'a>(cases: impl Iterator<Item = (&'a str, &'a FloorSummary)>) -> String {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header([
        "case",
        "floor p50",
        "floor/s",
        "p50 / floor",
        "throughput / floor",
    ]);
    let mut any = false;
    let mut clients: Vec<String> = Vec::new();
    let mut unavailable = String::new();
    for (name, f) in cases {
        any = true;
        if let Some(why) = &f.unavailable {
            unavailable.push_str(&format!("{name}: no floor: {why}\n"));
        } else if !clients.contains(&f.client) {
            clients.push(f.client.clone());
        }
        let ratio = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.2}x"));
        table.add_row([
            name.to_string(),
            ns(f.latency_ns.p50),
            if f.unavailable.is_some() {
                "-".into()
            } else {
                human_count(f.throughput_per_s.round() as u64)
            },
            ratio(f.p50_ratio),
            ratio(f.throughput_ratio),
        ]);
    }
    if !any {
        return String::new();
    }
    for i in 1..5 {
        if let Some(col) = table.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    let clients = match clients.is_empty() {
        true => String::new(),
        false => format!(": {}", clients.join("; ")),
    };
    format!(
        "Floors (measured right before each case, one client, closed loop{clients}):\n{}\n{unavailable}",
        table.trim_fmt()
    )
}

/// A latency in ns for a cell, `-` when there is none.
fn ns(v: Option<u64>) -> String {
    v.map_or("-".to_string(), human_ns)
}

/// The rows under [`HEADER`], numbers right-aligned.
fn layout(rows: impl Iterator<Item = [String; 12]>) -> String {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header(HEADER);
    for row in rows {
        table.add_row(row);
    }
    for i in 3..HEADER.len() {
        if let Some(col) = table.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut out = table.trim_fmt();
    out.push('\n');
    out
}

/// Errors, delivery checks, open-loop lag and notes, under the table.
fn explanations(results: &[CaseResult]) -> String {
    let mut out = String::new();
    for r in results {
        if r.interrupted {
            out.push_str(&format!(
                "{}: interrupted; the numbers cover what ran\n",
                r.name
            ));
        }
        for (kind, n, message) in r.errors.by_kind() {
            out.push_str(&format!(
                "{}: {} {kind} error{}: {message}\n",
                r.name,
                human_count(n),
                if n == 1 { "" } else { "s" }
            ));
        }
        if let Some(lag) = r.schedule_lag.as_ref().filter(|l| !l.is_empty()) {
            out.push_str(&format!(
                    "{}: open loop at {}/s: started late by p50 {}, p99 {}, max {}; latency includes queueing behind slow publishes, not the timer's lateness\n",
                    r.name,
                    human_count(r.rate.unwrap_or(0.0).round() as u64),
                    human_ns(lag.value_at_quantile(0.5)),
                    human_ns(lag.value_at_quantile(0.99)),
                    human_ns(lag.max()),
                ));
        }
    }
    for r in results {
        let events: Vec<EventSummary> = r.events.iter().map(EventSummary::of).collect();
        let unknown = r.unknown_fate.as_ref().map(UnknownFateSummary::of);
        out.push_str(&super::faults::lines(&r.name, &events, unknown.as_ref()));
    }
    out.push_str(&grouped_notes(results.iter().map(|r| {
        let notes = r.notes.iter().cloned().chain(r.facts.described());
        (r.name.as_str(), r.backend, notes.collect())
    })));
    out.push_str(&harnesses(
        results
            .iter()
            .filter_map(|r| Some((r.name.as_str(), r.facts.python.as_ref()?))),
    ));
    out.push_str(&super::resources_table::resources(results.iter().map(
        |r| {
            (
                r.name.as_str(),
                crate::summary::ResourcesSummary::of(&r.resources),
            )
        },
    )));
    out.push_str(&thresholds(results));
    out
}

/// One line per threshold of each case: `pass` or `FAIL`, with the case's figure.
pub fn thresholds(results: &[CaseResult]) -> String {
    let mut out = String::new();
    for r in results {
        for t in &r.thresholds {
            let metric = t.threshold.metric;
            let actual = t
                .actual
                .map_or("nothing measured".to_string(), |a| metric.show(a));
            out.push_str(&format!(
                "threshold {}: {} {}: {} (is {actual})\n",
                r.name,
                metric.name(),
                t.threshold.text,
                if t.passed { "pass" } else { "FAIL" }
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{ProfilerFacts, PythonFacts};

    fn notes(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn each_note_is_said_once_naming_its_cases_in_the_fewest_words() {
        let cases = [
            (
                "a1",
                Backend::Amqp,
                notes(&["where: rabbit", "shared", "celery"]),
            ),
            ("a2", Backend::Amqp, notes(&["where: rabbit", "shared"])),
            (
                "r1",
                Backend::Redis,
                notes(&["where: redis", "shared", "celery"]),
            ),
            ("r2", Backend::Redis, notes(&["where: redis", "shared"])),
            ("r3", Backend::Redis, notes(&["where: redis", "shared"])),
        ];
        let out = grouped_notes(cases.into_iter());
        assert_eq!(
            out,
            "note (all amqp cases): where: rabbit\n\
             note (all cases): shared\n\
             note (a1, r1): celery\n\
             note (all redis cases): where: redis\n"
        );
    }

    #[test]
    fn a_faulted_cases_events_and_unknown_fate_are_lines_under_the_table() {
        use crate::record::{EventResult, UnknownFate};
        use crate::scenario::{CaseEvent, EventKind};
        use std::time::Duration;
        let planned = crate::scenario::test_case("faulted");
        let mut r = CaseResult::empty(&planned);
        r.events = vec![EventResult {
            event: CaseEvent {
                at: Duration::from_secs(1),
                length: Duration::from_secs(2),
                kind: EventKind::Blackhole,
            },
            began: Some(Duration::from_secs(1)),
            ended: Some(Duration::from_secs(3)),
            published_again: vec![Some(Duration::from_millis(20)), None],
        }];
        r.unknown_fate = Some(UnknownFate {
            publishes: 5,
            delivered: Some(1),
        });
        let line = "faulted: blackhole at 1.00s for 2.00s, ran 1.00s to 3.00s: 1 of 2 publishers \
                    published again after it, min 20.0ms, mean 20.0ms, max 20.0ms\n";
        let fate = "faulted: 5 failed publishes of unknown fate";
        // After a run, and from a run folder's summary (`taskbench merge`) alike.
        let after_run = comparison(std::slice::from_ref(&r));
        let from_summary = comparison_of(&[CaseSummary::new(&r)]);
        for out in [after_run, from_summary] {
            assert!(out.contains(line) && out.contains(fate), "{out}");
        }
    }

    #[test]
    fn the_harnesses_figures_are_a_table_with_a_row_per_python_case() {
        let p = |pid, busy: u64| {
            PythonFacts {
                client: "celery".into(),
                pids: vec![pid],
                published: 10,
                timed_calls: 90,
                busy_ns: busy,
                span_ns: 100,
                ..PythonFacts::default()
            }
            .with_shares(false)
        };
        let (mut a, b) = (p(41, 96), p(42, 62));
        a.profilers = vec![ProfilerFacts {
            view: "pywall".into(),
            samples: 1234,
            failed: 0,
            sampled_share: Some(0.426),
            ..ProfilerFacts::default()
        }];
        let out = harnesses([("amqp-celery", &a), ("redis-celery", &b)].into_iter());
        let rows: Vec<&str> = out.lines().collect();
        assert!(rows[0].starts_with("Python harnesses (busy:"), "{out}");
        assert!(
            rows[2].contains("amqp-celery") && rows[2].contains("41") && rows[2].contains("96%")
        );
        assert!(
            rows[2].contains("pywall 1,234 (0) 43%"),
            "the samples, the failed ones and the share of the run the view sampled: {out}"
        );
        assert!(
            rows[3].contains("redis-celery") && rows[3].contains("62%") && rows[3].contains("9.0")
        );
        assert_eq!(
            harnesses(std::iter::empty()),
            "",
            "no table without Python cases"
        );
    }
}
