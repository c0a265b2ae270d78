//! The breakdown of one publish: how its latency divides between stages, largest first. The text answer to
//! "where does the time go", the same numbers the wall flamegraph draws.

use crate::human::{human_count, human_ns};
use crate::record::CaseResult;
use comfy_table::{CellAlignment, Table, presets};

/// One line of the breakdown.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BreakdownRow {
    /// A stage name, or `(outside stages)` for the rest of the latency.
    pub stage: String,
    pub count: u64,
    pub mean_ns: u64,
    /// `None` for the time outside stages, which has no histogram.
    pub p50: Option<u64>,
    pub p99: Option<u64>,
    /// Share of the case's summed latency, 0..=1.
    pub share: f64,
}

/// The rows of `r`'s breakdown, largest share first.
pub fn rows(r: &CaseResult) -> Vec<BreakdownRow> {
    let in_stages = r.stages_total_ns();
    // In a pipelined batch each publish is charged the whole call, while its latency starts at its own
    // encode, so the stages can add up to a little more than the latency: shares are of the larger.
    let total = r.latency_total_ns.max(in_stages).max(1) as f64;
    let mut rows: Vec<BreakdownRow> = r
        .stages
        .iter()
        .map(|s| BreakdownRow {
            stage: s.stage.name().to_string(),
            count: s.histogram.len(),
            mean_ns: s.total_ns / s.histogram.len().max(1),
            p50: Some(s.histogram.value_at_quantile(0.5)),
            p99: Some(s.histogram.value_at_quantile(0.99)),
            share: s.total_ns as f64 / total,
        })
        .collect();
    let outside = r.outside_stages_ns();
    if !rows.is_empty() && outside > 0 {
        rows.push(BreakdownRow {
            stage: "(outside stages)".into(),
            count: r.publishes_ok,
            mean_ns: outside / r.publishes_ok.max(1),
            p50: None,
            p99: None,
            share: outside as f64 / total,
        });
    }
    rows.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.stage.cmp(&b.stage)));
    rows
}

/// The breakdown table of every case that timed its stages; empty if none did.
pub fn table(results: &[CaseResult]) -> String {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header(["case", "stage", "count", "mean", "p50", "p99", "share"]);
    let mut any = false;
    for r in results {
        for (i, row) in rows(r).into_iter().enumerate() {
            any = true;
            let q = |v: Option<u64>| v.map_or("-".to_string(), human_ns);
            table.add_row([
                if i == 0 {
                    r.name.clone()
                } else {
                    String::new()
                },
                row.stage,
                human_count(row.count),
                human_ns(row.mean_ns),
                q(row.p50),
                q(row.p99),
                format!("{:.1}%", row.share * 100.0),
            ]);
        }
    }
    if !any {
        return String::new();
    }
    for i in 2..7 {
        if let Some(col) = table.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    format!(
        "where the time of one publish goes (wall time per stage, share of summed latency):\n{}\n",
        table.trim_fmt()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::{FakeTarget, Script};
    use crate::engine::{RunControl, run_case};
    use crate::stage::Stage;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn breakdown_of_a_scripted_publisher() {
        let case = crate::scenario::parse(
            "name = \"t\"\nwarmup = 0\npublishes = 200\n[[case]]\nname = \"fresh-ish\"\nbackend = \"unix\"\npath = \"fresh\"\n",
            "t.toml",
        )
        .unwrap()
        .cases
        .remove(0);
        let ms = Duration::from_millis;
        let script = Script {
            stages: vec![
                (Stage::Connect, ms(6)),
                (Stage::Declare, ms(3)),
                (Stage::Send, ms(1)),
                (Stage::Close, ms(2)),
            ],
            stall: Some((100, ms(120))),
            ..Script::default()
        };
        let result = run_case(FakeTarget::new(script), &case, &RunControl::new()).await;
        insta::assert_snapshot!(table(&[result]));
    }
}
