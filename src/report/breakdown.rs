//! The breakdown table: how one publish's latency divides between stages, largest first, per case (the rows
//! are [`crate::summary::breakdown`]'s, the same numbers summary.json and the wall flamegraph hold), and for
//! celery and kombu cases profiled with `--profile cpu`, the Python functions that hold the most of a publish.

use crate::human::{human_count, human_ns};
use crate::profile::folded::Folded;
use crate::profile::top::top_frames;
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
        "where the time of one publish goes (wall time per stage, share of summed latency):\n{}\n{}",
        table.trim_fmt(),
        outside_stages(results)
    )
}

/// What `(outside stages)` holds in a celery or kombu case, said once under the breakdown when one ran:
/// what is left once the client's own code is timed as stages (`options`, the outermost, holds what its
/// publish call does between the others). Empty without such a case.
fn outside_stages(results: &[CaseResult]) -> String {
    let clients: Vec<&str> = ["celery", "kombu"]
        .into_iter()
        .filter(|c| {
            results
                .iter()
                .any(|r| r.facts.python.as_ref().is_some_and(|p| p.client == *c))
        })
        .collect();
    let mut out = String::new();
    if clients.contains(&"celery") {
        out.push_str(
            "(outside stages) of a celery case: what no timed function holds: the harness's call into apply_async, \
             the timing's own cost, an apply_async your task class overrides, and code a Celery version moved \
             out of the functions timed as stages (the notes list them); --profile cpu names it\n",
        );
    }
    if clients.contains(&"kombu") {
        out.push_str(
            "(outside stages) of a kombu case: what no timed function holds: the harness's call into \
             Producer.publish (on acquire, the pool's context manager), the timing's own cost, and code a kombu \
             version moved out of the functions timed as stages; --profile cpu names it\n",
        );
    }
    out
}

/// How many functions [`python_frames`] names per case.
const TOP_FRAMES: usize = 5;

/// For every case with a Python CPU profile (a celery or kombu case run with `--profile cpu`), the functions
/// with the largest inclusive share of its publishes ([`top_frames`]); empty if no case has one.
pub fn python_frames(results: &[CaseResult]) -> String {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header(["case", "share", "function"]);
    let mut any = false;
    for r in results {
        let Some(folded) = r.cpu_folded.as_deref().and_then(|t| Folded::parse(t).ok()) else {
            continue;
        };
        for (i, frame) in top_frames(&folded, TOP_FRAMES).into_iter().enumerate() {
            any = true;
            table.add_row([
                if i == 0 {
                    r.name.clone()
                } else {
                    String::new()
                },
                format!("{:.1}%", frame.share * 100.0),
                frame.function,
            ]);
        }
    }
    if !any {
        return String::new();
    }
    if let Some(col) = table.column_mut(1) {
        col.set_cell_alignment(CellAlignment::Right);
    }
    format!(
        "Python functions holding the most of a publish (share of the cpu view's samples inside the publish \
         call with the function on the stack; one that hands 80% or more of it to one callee is left out for \
         it; <case>.cpu.svg has the rest):\n{}\n",
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
        assert_eq!(
            python_frames(std::slice::from_ref(&result)),
            "",
            "no Python profile"
        );
        insta::assert_snapshot!(table(&[result]));
    }

    #[tokio::test(start_paused = true)]
    async fn python_frames_of_a_case_with_a_python_cpu_profile() {
        let case = crate::scenario::parse(
            "name = \"t\"\nwarmup = 0\npublishes = 2\n[[case]]\nname = \"celery-acquire\"\nbackend = \"unix\"\npath = \"raw\"\n",
            "t.toml",
        )
        .unwrap()
        .cases
        .remove(0);
        let mut result = run_case(
            FakeTarget::new(Script::default()),
            &case,
            &RunControl::new(),
        )
        .await;
        result.cpu_folded = Some(
            "(harness) 900\n\
             publish (taskbench_harness.py:222);Task.apply_async (celery/app/task.py:587);Celery.send_task (celery/app/base.py:1033) 50\n\
             publish (taskbench_harness.py:222);Task.apply_async (celery/app/task.py:587);Celery.send_task (celery/app/base.py:1033);Signal.send (celery/utils/dispatch/signal.py:276);shop_tracing_before_publish (shop/celery.py:25) 25\n\
             publish (taskbench_harness.py:222);Task.apply_async (celery/app/task.py:587);Celery.send_task (celery/app/base.py:1033);Producer.publish (kombu/messaging.py:284) 25\n"
                .into(),
        );
        insta::assert_snapshot!(python_frames(&[result]), @r"
        Python functions holding the most of a publish (share of the cpu view's samples inside the publish call with the function on the stack; one that hands 80% or more of it to one callee is left out for it; <case>.cpu.svg has the rest):
         case             share  function
         celery-acquire  100.0%  Celery.send_task (celery/app/base.py:1033)
                          25.0%  Producer.publish (kombu/messaging.py:284)
                          25.0%  shop_tracing_before_publish (shop/celery.py:25)
        ");
    }

    #[test]
    fn what_outside_stages_holds_is_said_once_per_client_that_ran() {
        let case = crate::scenario::test_case("c");
        let with = |client: Option<&str>| {
            let mut r = CaseResult::empty(&case);
            r.facts.python = client.map(|c| crate::facts::PythonFacts {
                client: c.into(),
                ..Default::default()
            });
            r
        };
        let celery_twice = [with(Some("celery")), with(Some("celery")), with(None)];
        let said = outside_stages(&celery_twice);
        assert_eq!(said.lines().count(), 1, "{said}");
        assert!(
            said.starts_with("(outside stages) of a celery case:"),
            "{said}"
        );
        assert!(
            said.contains("apply_async your task class overrides"),
            "{said}"
        );
        let both = outside_stages(&[with(Some("kombu")), with(Some("celery"))]);
        assert_eq!(both.lines().count(), 2, "{both}");
        assert_eq!(
            outside_stages(&[with(None)]),
            "",
            "nothing to say without a Python case"
        );
    }
}
