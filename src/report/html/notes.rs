//! What report.html says besides the figures: what went wrong (interruptions, errors, failed thresholds),
//! shown under the table, and every other note said once with the cases it applies to, for the notes
//! section folded away below the plots.

use super::figures::{self, Piece};
use crate::human::{human_count, human_ns};
use crate::report::table::{named, which_cases};
use crate::scenario::threshold::Metric;
use crate::summary::CaseSummary;
use serde::Serialize;

/// Notes that apply to the same cases, under one heading.
#[derive(Serialize, Debug, PartialEq)]
pub struct NoteGroup {
    /// `all cases`, `all cases but …`, or the cases' names.
    pub cases: String,
    pub notes: Vec<Note>,
}

/// One note, said once for every case it applies to.
#[derive(Serialize, Debug, PartialEq)]
pub struct Note {
    /// Its words, with numbered slots (from 1) where the cases' figures differ.
    pub parts: Vec<Part>,
    /// How many slots it has.
    pub slots: usize,
    /// Each case's figures for the slots (none without slots).
    pub rows: Vec<FigureRow>,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct Part {
    pub text: String,
    pub slot: Option<usize>,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct FigureRow {
    pub case: String,
    pub figures: Vec<String>,
}

fn ns(v: Option<u64>) -> String {
    v.map_or("-".into(), human_ns)
}

/// What went wrong in each case: interrupted, errors by kind with their first message.
pub fn problems(cases: &[CaseSummary]) -> Vec<String> {
    let mut out = Vec::new();
    for c in cases {
        if c.interrupted {
            out.push(format!(
                "{}: interrupted; the numbers cover what ran",
                c.name
            ));
        }
        for (kind, n) in &c.errors {
            let message = c.error_messages.get(kind).map_or("", String::as_str);
            out.push(format!(
                "{}: {} {kind} error{}: {message}",
                c.name,
                human_count(*n),
                if *n == 1 { "" } else { "s" }
            ));
        }
    }
    out
}

/// A case's thresholds in a word when all passed (`all 3 pass`), else each failed one with the figure.
pub fn thresholds(c: &CaseSummary) -> (String, bool) {
    if c.thresholds.is_empty() {
        return (String::new(), false);
    }
    let failed: Vec<String> = c
        .thresholds
        .iter()
        .filter(|t| !t.passed)
        .map(|t| {
            let actual = match (t.actual, Metric::from_name(&t.metric)) {
                (None, _) => "nothing measured".to_string(),
                (Some(a), Some(m)) => m.show(a),
                (Some(a), None) => a.to_string(),
            };
            format!("{} {} (is {actual})", t.metric, t.expression)
        })
        .collect();
    match (failed.is_empty(), c.thresholds.len()) {
        (true, 1) => ("passes".into(), false),
        (true, n) => (format!("all {n} pass"), false),
        (false, _) => (format!("FAIL {}", failed.join("; ")), true),
    }
}

/// A case's notes, its open-loop lag first.
fn notes_of(c: &CaseSummary) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(lag) = &c.schedule_lag_ns
        && lag.max.is_some()
    {
        out.push(format!(
            "open loop at {}/s: started late by p50 {}, p99 {}, max {}",
            human_count(c.rate.unwrap_or(0.0).round() as u64),
            ns(lag.p50),
            ns(lag.p99),
            ns(lag.max)
        ));
    }
    out.extend(c.notes.iter().cloned());
    out
}

/// A case's note worded like others: the case's index and the note's pieces.
type Worded = (usize, Vec<Piece>);

/// The notes worded alike (`entries`: each case's index and its note's pieces, at least one) as one note,
/// with a slot where their figures differ and each case's figures for the slots.
fn merge(entries: &[Worded], cases: &[CaseSummary]) -> Note {
    let all: Vec<Vec<&str>> = entries.iter().map(|(_, p)| figures::figures(p)).collect();
    let varies: Vec<bool> = (0..all[0].len())
        .map(|i| all.iter().any(|f| f[i] != all[0][i]))
        .collect();
    let mut parts: Vec<Part> = Vec::new();
    let mut figure = 0;
    let mut slots = 0;
    for piece in &entries[0].1 {
        let text = match piece {
            Piece::Words(w) => w.clone(),
            Piece::Figure(f) => {
                figure += 1;
                if varies[figure - 1] {
                    slots += 1;
                    parts.push(Part {
                        text: String::new(),
                        slot: Some(slots),
                    });
                    continue;
                }
                f.clone()
            }
        };
        match parts.last_mut() {
            Some(Part {
                text: last,
                slot: None,
            }) => last.push_str(&text),
            _ => parts.push(Part { text, slot: None }),
        }
    }
    let rows = if slots == 0 {
        Vec::new()
    } else {
        entries
            .iter()
            .zip(&all)
            .map(|((k, _), f)| FigureRow {
                case: cases[*k].name.clone(),
                figures: f
                    .iter()
                    .zip(&varies)
                    .filter(|(_, v)| **v)
                    .map(|(f, _)| f.to_string())
                    .collect(),
            })
            .collect()
    };
    Note { parts, slots, rows }
}

/// Every note of every case said once, grouped by the cases it applies to: the notes of all cases first,
/// then those shared by more cases before those shared by fewer, then each case's own, in case order.
/// Notes worded alike whose figures differ (a harness's busy share, a pid) are one note with each case's
/// figures beside it.
pub fn grouped(cases: &[CaseSummary]) -> Vec<NoteGroup> {
    // The notes by wording, in the order first seen: each case that has one, and its pieces.
    let mut worded: Vec<(String, Vec<Worded>)> = Vec::new();
    for (k, c) in cases.iter().enumerate() {
        for note in notes_of(c) {
            let pieces = figures::pieces(&note);
            let key = figures::wording(&pieces);
            match worded.iter_mut().find(|(w, _)| *w == key) {
                Some((_, entries)) if entries.iter().any(|(j, p)| *j == k && *p == pieces) => {}
                Some((_, entries)) => entries.push((k, pieces)),
                None => worded.push((key, vec![(k, pieces)])),
            }
        }
    }
    let mut groups: Vec<(Vec<usize>, Vec<Note>)> = Vec::new();
    for (_, entries) in worded {
        let mut members: Vec<usize> = entries.iter().map(|(k, _)| *k).collect();
        members.dedup();
        let note = merge(&entries, cases);
        match groups.iter_mut().find(|(m, _)| *m == members) {
            Some((_, notes)) => notes.push(note),
            None => groups.push((members, vec![note])),
        }
    }
    groups.sort_by_key(|(members, _)| (std::cmp::Reverse(members.len()), members[0]));
    groups
        .into_iter()
        .map(|(members, notes)| NoteGroup {
            cases: which_cases(&members, &named(cases)),
            notes,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::CaseResult;

    fn case(name: &str, notes: &[&str]) -> CaseSummary {
        let planned = crate::scenario::test_case(name);
        let mut c = CaseSummary::new(&CaseResult::empty(&planned));
        c.notes = notes.iter().map(|n| n.to_string()).collect();
        c
    }

    /// A note as text, a slot as `[n]`, and its rows as `case: figures`.
    fn text(n: &Note) -> String {
        let mut out: String = n
            .parts
            .iter()
            .map(|p| p.slot.map_or(p.text.clone(), |s| format!("[{s}]")))
            .collect();
        for r in &n.rows {
            out.push_str(&format!("; {}: {}", r.case, r.figures.join(" ")));
        }
        out
    }

    #[test]
    fn a_note_shared_by_cases_is_said_once_under_the_cases_it_applies_to() {
        let cases = [
            case("a", &["socket", "python 3.11", "pid 1, 50% busy", "only a"]),
            case("b", &["socket", "python 3.11", "pid 2, 50% busy"]),
            case("c", &["socket", "python 3.11"]),
            case("d", &["socket", "pid 3, 7% busy"]),
            case("e", &["socket"]),
        ];
        let shown: Vec<(String, Vec<String>)> = grouped(&cases)
            .iter()
            .map(|g| (g.cases.clone(), g.notes.iter().map(text).collect()))
            .collect();
        let expected = [
            ("all cases", vec!["socket"]),
            ("a, b, c", vec!["python 3.11"]),
            (
                "a, b, d",
                vec!["pid [1], [2] busy; a: 1 50%; b: 2 50%; d: 3 7%"],
            ),
            ("a", vec!["only a"]),
        ];
        assert_eq!(
            shown,
            expected.map(|(c, n)| (c.to_string(), n.into_iter().map(String::from).collect()))
        );
        let mut many: Vec<CaseSummary> = (0..9).map(|k| case(&format!("p{k}"), &["py"])).collect();
        many.push(case("rust", &[]));
        assert_eq!(grouped(&many)[0].cases, "all cases but rust");
        let mut tcp = case("t", &["over tcp"]);
        tcp.backend = crate::catalog::Backend::Tcp;
        let two = [tcp.clone(), case("u", &[]), tcp];
        assert_eq!(grouped(&two)[0].cases, "all tcp cases");
    }

    #[test]
    fn errors_and_failed_thresholds_are_problems_and_lag_is_a_note() {
        let mut c = case("a", &[]);
        c.errors.insert("send".into(), 3);
        c.error_messages.insert("send".into(), "broken pipe".into());
        c.rate = Some(1000.0);
        c.schedule_lag_ns = Some(crate::summary::LatencySummary {
            max: Some(2_000_000),
            ..c.failed_latency_ns
        });
        assert_eq!(problems(&[c.clone()]), ["a: 3 send errors: broken pipe"]);
        let notes = &grouped(&[c.clone()])[0];
        assert_eq!(notes.cases, "a");
        assert!(text(&notes.notes[0]).starts_with("open loop at 1,000/s: started late by"));
        assert_eq!(thresholds(&c), (String::new(), false));
        let check = |metric: &str, passed: bool, actual: f64| crate::summary::ThresholdSummary {
            metric: metric.into(),
            expression: "< 2ms".into(),
            op: crate::scenario::threshold::Op::Lt,
            limit: 2e6,
            actual: Some(actual),
            passed,
        };
        c.thresholds = vec![check("p50", true, 1e6), check("p99", true, 1.5e6)];
        assert_eq!(thresholds(&c), ("all 2 pass".into(), false));
        c.thresholds.push(check("max", false, 3.1e6));
        assert_eq!(thresholds(&c), ("FAIL max < 2ms (is 3.10ms)".into(), true));
    }
}
