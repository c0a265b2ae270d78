//! Running a scenario in-process: every case in order on one async runtime, with the interrupt, the CPU span
//! capture, and a callback after each case. `taskbench run` is this plus a run folder and a table; tests and
//! other programs call [`run`] directly.

pub mod preflight;
pub mod search;

use crate::backend;
use crate::engine::{ProgressView, RunControl};
use crate::profile::cpu::SpanBuffer;
use crate::profile::folded::Folded;
use crate::record::CaseResult;
use crate::scenario::Scenario;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The exit code of a run ended by Ctrl-C or SIGTERM; the command line's exit codes (`cli::exit_code`) use it too.
pub const EXIT_INTERRUPTED: u8 = 130;

/// How to run, beyond what the scenario says.
#[derive(Default)]
pub struct RunOptions {
    /// Where CPU spans are collected (`--profile cpu`); `profile::cpu::flame_layer` must be installed as a
    /// tracing layer writing into it.
    pub spans: Option<SpanBuffer>,
    /// Where a running case's progress goes.
    pub progress: Option<Arc<dyn ProgressView>>,
    /// End the running case on Ctrl-C / SIGTERM and skip the rest; a second signal exits the process with
    /// 130 at once. Off for in-process callers, who can set [`RunControl::stop`] through `control`.
    pub handle_signals: bool,
    /// The run's control; a caller keeps a clone to stop the run from outside.
    pub control: RunControl,
    /// Wait until this wall-clock time before the first case (`--start-at`), so shards started by an
    /// orchestrator at different moments begin together.
    pub start_at: Option<SystemTime>,
}

/// One finished case, handed to the caller's callback before the next case starts.
pub struct CaseEnd<'a> {
    pub result: &'a CaseResult,
    /// The case's CPU profile, when spans were collected.
    pub cpu: Option<&'a Folded>,
    /// Every case finished so far, this one last.
    pub so_far: &'a [CaseResult],
    /// The run was interrupted: this case may be partial and no other follows.
    pub interrupted: bool,
}

/// What a run measured.
pub struct RunOutcome {
    pub results: Vec<CaseResult>,
    pub interrupted: bool,
}

impl RunOutcome {
    /// Whether some publish failed, a delivery check did not add up, or a threshold was not met.
    pub fn failed(&self) -> bool {
        self.results
            .iter()
            .any(|r| r.failed() || r.thresholds_failed())
    }
}

/// The current time as summary.json and run folder names write it (RFC 3339, UTC, seconds).
pub fn timestamp() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Runs every case of `scenario` in order, calling `on_case` after each. Only a failure to start the async
/// runtime is an error; failed publishes are in the results.
pub fn run(
    scenario: &Scenario,
    options: RunOptions,
    on_case: &mut dyn FnMut(CaseEnd),
) -> std::io::Result<RunOutcome> {
    runtime()?.block_on(run_cases(scenario, options, on_case))
}

async fn run_cases(
    scenario: &Scenario,
    options: RunOptions,
    on_case: &mut dyn FnMut(CaseEnd),
) -> std::io::Result<RunOutcome> {
    let mut control = options.control;
    control.progress = options.progress;
    control.trace_spans = options.spans.is_some();
    if options.handle_signals {
        handle_signals(&control.stop);
    }

    if let Some(at) = options.start_at {
        match at.duration_since(SystemTime::now()) {
            Ok(wait) => tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = control.stop.wait() => {}
            },
            Err(late) => eprintln!(
                "note: --start-at was {} ago; starting now",
                humantime::format_duration(Duration::from_secs(late.duration().as_secs()))
            ),
        }
    }
    let mut results: Vec<CaseResult> = Vec::new();
    for case in &scenario.cases {
        if control.stopped() {
            break;
        }
        if let Some(spans) = &options.spans {
            // Spans recorded between cases (setup of the last one) belong to no case.
            spans.take_folded(1.0);
        }
        let floor = if scenario.floor {
            Some(backend::floor::measure(case, &control.stop).await)
        } else {
            None
        };
        let mut result = backend::run_case(case, &control).await;
        result.floor = floor;
        result.check_thresholds(&case.thresholds);
        let spans = options
            .spans
            .as_ref()
            .map(|s| s.take_folded(case.sample_interval() as f64));
        // A Python case's profile is its harnesses' (py-spy), not the Rust side's spans.
        let cpu = match &result.cpu_folded {
            Some(text) if spans.is_some() => Folded::parse(text).ok(),
            _ => spans,
        };
        results.push(result);
        on_case(CaseEnd {
            result: results.last().expect("just pushed"),
            cpu: cpu.as_ref(),
            so_far: &results,
            interrupted: control.stopped(),
        });
    }
    Ok(RunOutcome {
        results,
        interrupted: control.stopped(),
    })
}

/// The async runtime: `TOKIO_WORKER_THREADS` worker threads, else one per core. Which is faster for one
/// publisher depends on the machine's scheduling (docs/redis.md has both measured); the variable sets it.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// On Ctrl-C or SIGTERM, requests `stop`; on a second one, exits with 130 at once.
pub fn handle_signals(stop: &crate::engine::Stop) {
    let stop = stop.clone();
    tokio::spawn(async move {
        interrupted().await;
        stop.request();
        eprintln!(
            "interrupted: ending the current case and writing what was measured (again to quit now)"
        );
        interrupted().await;
        eprintln!("interrupted twice: quitting; summary.json holds the cases finished before");
        std::process::exit(i32::from(EXIT_INTERRUPTED));
    });
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_every_case_in_process_and_reports_each_as_it_ends() {
        let scenario = crate::scenario::parse(
            "name = \"inproc\"\nwarmup = 0\npublishes = 50\n\
             [[case]]\nname = \"a\"\nbackend = \"unix\"\npath = \"raw\"\n\
             [[case]]\nname = \"b\"\nbackend = \"tcp\"\npath = \"fresh\"\n",
            "inproc.toml",
        )
        .unwrap();
        let mut seen = Vec::new();
        let outcome = run(&scenario, RunOptions::default(), &mut |end| {
            seen.push((end.result.name.clone(), end.so_far.len()));
        })
        .unwrap();
        assert_eq!(seen, [("a".to_string(), 1), ("b".to_string(), 2)]);
        assert!(!outcome.interrupted && !outcome.failed());
        for r in &outcome.results {
            assert_eq!(r.publishes_ok, 50, "{}", r.name);
            assert_eq!(r.delivered, Some(50), "{}", r.name);
        }
    }

    #[test]
    fn a_stopped_control_runs_nothing() {
        let scenario = crate::scenario::parse(
            "name = \"stopped\"\n[[case]]\nname = \"a\"\nbackend = \"unix\"\npath = \"raw\"\n",
            "stopped.toml",
        )
        .unwrap();
        let options = RunOptions::default();
        options.control.stop.request();
        let outcome = run(&scenario, options, &mut |_| panic!("no case runs")).unwrap();
        assert!(outcome.interrupted && outcome.results.is_empty());
    }
}
