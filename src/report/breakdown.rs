//! The breakdown table: how one publish's latency divides between stages, largest first, per case (the rows
//! are [`crate::summary::breakdown`]'s, the same numbers summary.json and the wall flamegraph hold).

use crate::human::{human_count, human_ns};
use crate::record::CaseResult;
use crate::summary::breakdown;
use comfy_table::{CellAlignment, Table, presets};

/// The breakdown table of every case that timed its stages; empty if none did.
pub fn table(results: &[CaseResult]) -> String {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header(["case", "stage", "count", "mean", "p50", "p99", "share"]);
    let mut any = false;
    for r in results {
        for (i, row) in breakdown(r).into_iter().enumerate() {
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
