//! The search state machine on plain pass/fail answers, the step judge on observations, and whole searches
//! on virtual time with the fake target, one of known capacity.

use super::*;
use crate::engine::fake::{FakeTarget, Script};
use crate::engine::{RunControl, run_case};
use crate::scenario::threshold::{Metric, Threshold};
use crate::stage::Stage;
use std::time::Duration;

/// Runs a search to its end against `passes(rate)`; returns the rates tried with their phase, and the answer.
fn search_against(plan: Plan, passes: impl Fn(f64, Phase) -> bool) -> (Vec<(f64, Phase)>, Answer) {
    let mut s = Search::new(plan);
    let mut tried = Vec::new();
    while let Some(p) = s.next() {
        tried.push((p.rate, p.phase));
        s.observe(passes(p.rate, p.phase));
        assert!(tried.len() < 100, "the search ends");
    }
    (tried, s.answer())
}

#[test]
fn ramps_geometrically_then_bisects_to_the_precision_then_confirms() {
    let (tried, answer) = search_against(Plan::new(100.0, 1e6, 0.02), |r, _| r <= 1000.0);
    let ramp: Vec<f64> = tried
        .iter()
        .filter(|t| t.1 == Phase::Ramp)
        .map(|t| t.0)
        .collect();
    assert_eq!(ramp, [100.0, 200.0, 400.0, 800.0, 1600.0]);
    assert_eq!(
        tried[5],
        (1200.0, Phase::Bisect),
        "halfway between 800 and 1600"
    );
    assert_eq!(tried.last().unwrap().1, Phase::Confirm);
    assert_eq!(answer.outcome, Outcome::Found);
    assert_eq!(answer.confirmed, Some(true));
    let (pass, fail) = (answer.highest_pass.unwrap(), answer.lowest_fail.unwrap());
    assert!(pass <= 1000.0 && fail > 1000.0, "{pass} {fail}");
    assert!(answer.precision.unwrap() <= 0.02);
    assert!(
        (1000.0 - pass) / 1000.0 <= 0.02,
        "within the precision of the truth"
    );
}

#[test]
fn even_the_start_failing_ends_the_search_at_once() {
    let (tried, answer) = search_against(Plan::new(100.0, 1e6, 0.02), |_, _| false);
    assert_eq!(tried, [(100.0, Phase::Ramp)]);
    assert_eq!(answer.outcome, Outcome::StartFailed);
    assert_eq!(
        (answer.highest_pass, answer.lowest_fail),
        (None, Some(100.0))
    );
}

#[test]
fn reaching_the_max_without_failing_confirms_the_max() {
    let (tried, answer) = search_against(Plan::new(100.0, 500.0, 0.02), |_, _| true);
    assert_eq!(
        tried,
        [
            (100.0, Phase::Ramp),
            (200.0, Phase::Ramp),
            (400.0, Phase::Ramp),
            (500.0, Phase::Ramp),
            (500.0, Phase::Confirm)
        ]
    );
    assert_eq!(answer.outcome, Outcome::Found);
    assert_eq!(
        (answer.highest_pass, answer.lowest_fail),
        (Some(500.0), None)
    );
}

#[test]
fn a_failing_confirmation_steps_down_until_one_passes() {
    // Short steps pass up to 1000/s, but a confirmation (longer) only up to 965/s.
    let (tried, answer) = search_against(Plan::new(100.0, 1e6, 0.02), |r, phase| match phase {
        Phase::Confirm => r <= 965.0,
        _ => r <= 1000.0,
    });
    let confirms: Vec<f64> = tried
        .iter()
        .filter(|t| t.1 == Phase::Confirm)
        .map(|t| t.0)
        .collect();
    assert_eq!(confirms.len(), 3, "{confirms:?}");
    assert!(confirms.windows(2).all(|w| w[1] < w[0]), "{confirms:?}");
    assert_eq!(answer.outcome, Outcome::Found);
    assert!(answer.highest_pass.unwrap() <= 965.0);
    assert_eq!(answer.lowest_fail, Some(confirms[1]));
}

#[test]
fn confirmations_that_never_pass_leave_no_answer() {
    let (_, answer) = search_against(Plan::new(100.0, 1e6, 0.02), |r, phase| {
        phase != Phase::Confirm && r <= 1000.0
    });
    assert_eq!(answer.outcome, Outcome::NotConfirmed);
    assert_eq!((answer.highest_pass, answer.confirmed), (None, Some(false)));
}

fn budget(p99: &str, errors: &str) -> Budget {
    Budget {
        latency: vec![Threshold::parse(Metric::P99, p99).unwrap()],
        errors: ErrorBudget::parse(errors).unwrap(),
    }
}

/// A step at 1000/s that kept up, with a p99 of 1 ms.
fn steady() -> Observation {
    Observation {
        offered: 1000.0,
        achieved: 999.0,
        elapsed: Duration::from_secs(1),
        p50: Some(500_000),
        p99: Some(1_000_000),
        max: Some(2_000_000),
        publishes_ok: 1000,
        delivered: Some(1000),
        ..Observation::default()
    }
}

#[test]
fn a_step_fails_for_each_reason_and_says_which() {
    let b = budget("< 5ms", "< 0.1%");
    assert!(steady().judge(&b).passed());
    assert_eq!(steady().judge(&b).to_string(), "pass");

    let slow = Observation {
        p99: Some(7_200_000),
        ..steady()
    };
    assert_eq!(slow.judge(&b).to_string(), "p99 7.20ms over budget < 5ms");

    let short = Observation {
        achieved: 900.0,
        ..steady()
    };
    assert_eq!(
        short.judge(&b).to_string(),
        "achieved 900/s of 1,000/s offered"
    );
    let within = Observation {
        achieved: 960.0,
        ..steady()
    };
    assert!(
        within.judge(&b).passed(),
        "a 4% shortfall is within tolerance"
    );

    let errors = Observation {
        errors: 2,
        publishes_ok: 998,
        ..steady()
    };
    assert_eq!(
        errors.judge(&b).reasons[0].kind(),
        "errors",
        "2 of 1000 is over 0.1%"
    );
    let one = Observation {
        errors: 1,
        publishes_ok: 9999,
        ..steady()
    };
    assert!(one.judge(&b).passed(), "1 of 10,000 is under 0.1%");
    assert!(!one.judge(&budget("< 5ms", "== 0")).passed());

    let lost = Observation {
        errors: 3,
        undelivered: 3,
        ..steady()
    };
    assert_eq!(
        lost.judge(&b).to_string(),
        "delivery check: 3 publishes unaccounted for"
    );

    let generator = Observation {
        generator_limited: true,
        ..steady()
    };
    assert_eq!(
        generator.judge(&b).reasons,
        [FailReason::GeneratorLimited],
        "a saturated generator fails the step even when the figures pass"
    );
    assert_eq!(generator.judge(&b).reasons[0].kind(), "generator_limited");

    let nothing = Observation {
        p99: None,
        publishes_ok: 0,
        achieved: 0.0,
        ..steady()
    };
    let v = nothing.judge(&b).to_string();
    assert!(v.starts_with("p99: no publish succeeded; "), "{v}");
}

#[test]
fn a_backlog_that_grows_through_the_step_is_one_and_a_steady_one_is_not() {
    // 1000/s offered, done at 1000/s: the backlog stays at the publishes in flight.
    let steady: Vec<(f64, f64)> = (1..=10).map(|i| (i as f64 * 0.1, 5.0)).collect();
    assert!(!backlog_growing(&steady, 1000.0));
    // Done at 800/s: 200 more due every second.
    let growing: Vec<(f64, f64)> = (1..=10)
        .map(|i| (i as f64 * 0.1, 200.0 * i as f64 * 0.1))
        .collect();
    assert!(backlog_growing(&growing, 1000.0));
    // A backlog that built early and is draining is not growing.
    let draining: Vec<(f64, f64)> = (1..=10)
        .map(|i| (i as f64 * 0.1, 100.0 - 5.0 * i as f64))
        .collect();
    assert!(!backlog_growing(&draining, 1000.0));
    assert!(!backlog_growing(&growing[..3], 1000.0), "too few samples");
}

#[test]
fn error_budgets_read_shares_and_counts() {
    assert!(ErrorBudget::parse("< 0.1%").unwrap().passes(0, 10));
    assert!(!ErrorBudget::parse("< 0.1%").unwrap().passes(1, 10));
    assert!(ErrorBudget::parse("<= 5").unwrap().passes(5, 10));
    assert!(ErrorBudget::parse("0.1%").is_err());
    assert!(ErrorBudget::parse("< lots%").is_err());
    assert_eq!(ErrorBudget::default().text(), "== 0");
}

/// A unix/raw case at `concurrency` with no warm-up.
fn case(concurrency: usize) -> crate::scenario::Case {
    crate::scenario::parse(
        &format!(
            "name = \"s\"\nwarmup = 0\nconcurrency = {concurrency}\n\
             [[case]]\nname = \"c\"\nbackend = \"unix\"\npath = \"raw\"\n"
        ),
        "s.toml",
    )
    .unwrap()
    .cases
    .remove(0)
}

/// Four publishers taking 10 ms each: capacity 400 publishes/s.
fn capacity_400() -> Script {
    Script {
        stages: vec![(Stage::Send, Duration::from_millis(10))],
        ..Script::default()
    }
}

const LENGTHS: StepLengths = StepLengths {
    step: Duration::from_secs(1),
    confirm: Duration::from_secs(2),
};

#[tokio::test(start_paused = true)]
async fn the_answer_on_a_target_of_known_capacity_is_within_the_precision_of_it() {
    let control = RunControl::new();
    let mut rows = Vec::new();
    let found =
        search_case(
            &case(4),
            Plan::new(50.0, 1e6, 0.02),
            &budget("< 15ms", "== 0"),
            LENGTHS,
            &control,
            |step, control| async move {
                run_case(FakeTarget::new(capacity_400()), &step, &control).await
            },
            &mut |row| rows.push((row.probe, row.verdict.passed())),
        )
        .await;
    let answer = found.answer;
    assert_eq!(answer.outcome, Outcome::Found, "{rows:?}");
    let rate = answer.highest_pass.unwrap();
    assert!(
        (rate - 400.0).abs() / 400.0 <= 0.02,
        "answer {rate}/s against a capacity of 400/s: {rows:?}"
    );
    assert_eq!(rows.len(), found.steps.len());
    assert_eq!(rows.last().unwrap().0.phase, Phase::Confirm);
    let at = found.at_answer.as_ref().unwrap();
    assert_eq!(at.rate, Some(rate));
    assert!(found.first_failing.is_some());
    // The first failing step is the ramp's 800/s, twice the capacity.
    let first_fail = found.steps.iter().find(|s| !s.verdict.passed()).unwrap();
    assert_eq!(first_fail.probe.rate, 800.0);
}

#[tokio::test(start_paused = true)]
async fn a_growing_backlog_ends_the_step_early() {
    let control = RunControl::new();
    let mut rows = Vec::new();
    let found =
        search_case(
            &case(4),
            Plan::new(800.0, 1e6, 0.02),
            &budget("< 10s", "== 0"),
            StepLengths {
                step: Duration::from_secs(4),
                confirm: Duration::from_secs(4),
            },
            &control,
            |step, control| async move {
                run_case(FakeTarget::new(capacity_400()), &step, &control).await
            },
            &mut |row| rows.push(row.clone()),
        )
        .await;
    assert_eq!(found.answer.outcome, Outcome::StartFailed);
    let step = &rows[0];
    assert!(step.observation.stopped_early, "{step:?}");
    assert!(
        step.verdict.reasons.contains(&FailReason::Backlog {
            stopped_early: true
        }),
        "{}",
        step.verdict
    );
    assert!(
        step.observation.elapsed < Duration::from_secs(3),
        "stopped well before its 4 s: {:?}",
        step.observation.elapsed
    );
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_ends_the_search_with_what_is_known() {
    let control = RunControl::new();
    let stop = control.stop.clone();
    let mut steps = 0;
    let found =
        search_case(
            &case(4),
            Plan::new(50.0, 1e6, 0.02),
            &budget("< 15ms", "== 0"),
            LENGTHS,
            &control,
            |step, control| async move {
                run_case(FakeTarget::new(capacity_400()), &step, &control).await
            },
            &mut |_| {
                steps += 1;
                if steps == 2 {
                    stop.request();
                }
            },
        )
        .await;
    assert!(found.interrupted);
    assert_eq!(found.steps.len(), 2);
    assert_eq!(found.answer.highest_pass, Some(100.0));
}
