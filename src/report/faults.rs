//! What a case's faults did, in words: one line per timed event (`[[case.fault]]`) with its publishers'
//! reconnect figures, and the publishes of unknown fate; for the terminal under the table and report.html's
//! faults table alike.

use crate::human::{human_count, human_ns};
use crate::summary::{EventSummary, UnknownFateSummary};
use serde::Serialize;

/// One event as shown: every figure already in words.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRow {
    pub case: String,
    pub kind: String,
    /// As scheduled: `at 1.00s for 2.00s`, or `at 1.00s` for an instant.
    pub scheduled: String,
    /// When it ran: `1.00s to 3.00s`, `from 5.00s, the case ended during it`, or `never: the case ended
    /// first`.
    pub ran: String,
    /// Whether it began and ended within the case (so its reconnect figures mean something).
    pub finished: bool,
    /// `4 of 4`.
    pub published_again: String,
    pub min: String,
    pub mean: String,
    pub max: String,
}

fn seconds(s: f64) -> String {
    human_ns((s.max(0.0) * 1e9).round() as u64)
}

fn or_dash(s: Option<f64>) -> String {
    s.map_or("-".into(), seconds)
}

impl EventRow {
    pub fn of(case: &str, e: &EventSummary) -> EventRow {
        let r = &e.reconnect_s;
        EventRow {
            case: case.to_string(),
            kind: e.kind.clone(),
            scheduled: if e.for_s > 0.0 {
                format!("at {} for {}", seconds(e.at_s), seconds(e.for_s))
            } else {
                format!("at {}", seconds(e.at_s))
            },
            ran: match (e.began_s, e.ended_s) {
                // An instant (a reset without `for`) ends a few microseconds after it began.
                (Some(b), Some(x)) if e.for_s == 0.0 || seconds(b) == seconds(x) => {
                    format!("at {}", seconds(b))
                }
                (Some(b), Some(x)) => format!("{} to {}", seconds(b), seconds(x)),
                (Some(b), None) => format!("from {}, the case ended during it", seconds(b)),
                (None, _) => "never: the case ended first".into(),
            },
            finished: e.began_s.is_some() && e.ended_s.is_some(),
            published_again: format!("{} of {}", r.published_again, r.publishers),
            min: or_dash(r.min),
            mean: or_dash(r.mean),
            max: or_dash(r.max),
        }
    }

    /// The terminal's line: `c: blackhole at 1.00s for 2.00s, ran 1.00s to 3.00s: 4 of 4 publishers
    /// published again after it, min 12.0ms, mean 40.0ms, max 90.0ms`.
    pub fn line(&self) -> String {
        let mut out = format!(
            "{}: {} {}, ran {}",
            self.case, self.kind, self.scheduled, self.ran
        );
        if self.finished {
            out.push_str(&format!(
                ": {} publishers published again after it",
                self.published_again
            ));
            if self.min != "-" {
                out.push_str(&format!(
                    ", min {}, mean {}, max {}",
                    self.min, self.mean, self.max
                ));
            }
        }
        out
    }
}

/// The sentence on a case's publishes of unknown fate: `12 failed publishes of unknown fate (sent, never
/// confirmed), 3 of them arrived`.
pub fn unknown_fate(u: &UnknownFateSummary) -> String {
    let arrived = match u.delivered {
        Some(n) => format!("{} of them arrived", human_count(n)),
        None => "the backend cannot tell how many arrived".into(),
    };
    format!(
        "{} failed publish{} of unknown fate (sent, never confirmed, counted neither as delivered nor as \
         lost): {arrived}",
        human_count(u.publishes),
        if u.publishes == 1 { "" } else { "es" },
    )
}

/// The lines under the terminal's table for one case: each event, then its publishes of unknown fate.
pub fn lines(case: &str, events: &[EventSummary], unknown: Option<&UnknownFateSummary>) -> String {
    let mut out = String::new();
    for e in events {
        out.push_str(&EventRow::of(case, e).line());
        out.push('\n');
    }
    if let Some(u) = unknown {
        out.push_str(&format!("{case}: {}\n", unknown_fate(u)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::ReconnectSummary;

    fn blackhole() -> EventSummary {
        EventSummary {
            kind: "blackhole".into(),
            at_s: 1.0,
            for_s: 2.0,
            began_s: Some(1.0),
            ended_s: Some(3.0),
            published_again_s: vec![Some(0.012), Some(0.09), None],
            reconnect_s: ReconnectSummary {
                publishers: 3,
                published_again: 2,
                min: Some(0.012),
                mean: Some(0.051),
                max: Some(0.09),
            },
        }
    }

    #[test]
    fn each_event_is_a_line_with_its_reconnect_figures_then_the_unknown_fate() {
        let reset = EventSummary {
            kind: "reset".into(),
            at_s: 4.0,
            for_s: 0.0,
            began_s: Some(4.0),
            ended_s: Some(4.000_003),
            published_again_s: vec![None],
            reconnect_s: ReconnectSummary {
                publishers: 1,
                published_again: 0,
                min: None,
                mean: None,
                max: None,
            },
        };
        let late = EventSummary {
            began_s: None,
            ended_s: None,
            ..blackhole()
        };
        let unknown = UnknownFateSummary {
            publishes: 12,
            delivered: Some(3),
        };
        let out = lines("c", &[blackhole(), reset, late], Some(&unknown));
        assert_eq!(
            out,
            "c: blackhole at 1.00s for 2.00s, ran 1.00s to 3.00s: 2 of 3 publishers published again \
             after it, min 12.0ms, mean 51.0ms, max 90.0ms\n\
             c: reset at 4.00s, ran at 4.00s: 0 of 1 publishers published again after it\n\
             c: blackhole at 1.00s for 2.00s, ran never: the case ended first\n\
             c: 12 failed publishes of unknown fate (sent, never confirmed, counted neither as delivered \
             nor as lost): 3 of them arrived\n"
        );
        assert_eq!(lines("c", &[], None), "", "nothing without faults");
    }
}
