//! `taskbench search`: reads the budget and the plan from the command line, refuses what cannot be
//! searched, runs the search (`run::search`) and writes its run folder (`report::search`).

use super::args::SearchArgs;
use super::{Ending, Outcome, default_python_used, print_stdout};
use crate::backend;
use crate::engine::search::{ErrorBudget, Outcome as Found, Plan, StepLengths};
use crate::report::RunWriter;
use crate::report::progress::TerminalProgress;
use crate::report::search::{SearchWriter, progress_line};
use crate::run::preflight;
use crate::run::search::{SearchOptions, case_budget, search as run_search};
use crate::scenario::threshold::Threshold;
use crate::scenario::{self, Overrides};
use anyhow::Context;
use std::num::NonZeroUsize;
use std::sync::Arc;

pub(super) fn search(args: SearchArgs) -> Outcome {
    let latency = args
        .budgets
        .iter()
        .map(|text| {
            let t = Threshold::parse_expression(text).map_err(|e| {
                anyhow::anyhow!(
                    "--budget {e}\n  hint: write METRIC OP VALUE, e.g. \"p99 < 5ms\"; metrics: p50, p90, \
                     p99, p999, max"
                )
            })?;
            if t.metric.quantile().is_none() {
                anyhow::bail!(
                    "--budget {text:?}: a budget bounds a latency (p50, p90, p99, p999, max), not `{}`",
                    t.metric
                );
            }
            Ok(t)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let errors = args
        .errors
        .as_deref()
        .map(|text| {
            ErrorBudget::parse(text).map_err(|e| {
                anyhow::anyhow!(
                    "--errors {text:?}: {e}\n  hint: write it like \"< 0.1%\" or \"== 0\""
                )
            })
        })
        .transpose()?;
    if args.start > args.max {
        anyhow::bail!(
            "--start {} is above --max {}: the search starts at --start and rises to --max",
            args.start,
            args.max
        );
    }
    let overrides = Overrides {
        warmup: args.warmup,
        concurrency: args.concurrency.map(NonZeroUsize::get),
        ..Overrides::default()
    };
    let mut scenario = scenario::load_with(&args.scenario, &overrides)?;
    scenario.select(&args.cases)?;
    let mut budgets = Vec::new();
    for case in &scenario.cases {
        budgets.push(case_budget(case, &latency, errors.as_ref()).with_context(|| {
            format!(
                "case {:?} has no latency budget: give --budget \"p99 < 5ms\", or set a latency threshold \
                 (e.g. p99 = \"< 5ms\") under [thresholds] in {}",
                case.name,
                scenario.file.display()
            )
        })?);
    }
    default_python_used(&scenario)?;
    let checked =
        backend::python::check_interpreters(&mut scenario, false).map_err(anyhow::Error::msg)?;
    for note in checked
        .routes
        .into_iter()
        .chain(preflight::check(&scenario)?)
    {
        eprintln!("note: {note}");
    }
    let plan = Plan::new(args.start, args.max, args.precision);
    let lengths = StepLengths {
        step: args.step,
        confirm: args.confirm,
    };
    let run = RunWriter::create(
        args.out.as_deref(),
        &scenario,
        std::env::args().collect(),
        args.force,
    )?;
    let mut writer = SearchWriter::new(run, plan, lengths);
    let case_budgets = budgets.clone();
    let options = SearchOptions {
        plan,
        lengths,
        budgets,
        progress: Some(Arc::new(TerminalProgress::default())),
        handle_signals: true,
        control: Default::default(),
    };
    let mut stopped = false;
    let outcome = run_search(
        &scenario,
        options,
        &mut |case, row| eprintln!("{}", progress_line(case, row)),
        &mut |_, so_far| {
            stopped |= so_far.last().is_some_and(|c| c.interrupted);
            writer.case_ended(so_far, &case_budgets[so_far.len() - 1], stopped);
        },
    )
    .context("cannot start the async runtime")?;
    print_stdout(&writer.final_output(&outcome.cases));
    let all_found = outcome
        .cases
        .iter()
        .all(|c| c.answer.outcome == Found::Found);
    Ok(if outcome.interrupted {
        Ending::Interrupted
    } else if writer.run.failed || !all_found {
        Ending::Failures
    } else {
        Ending::Ok
    })
}
