//! The command line: read the arguments, call the library, and map how each command ended to an exit code
//! (in one place, [`exit_code`]).

mod args;
mod generate;
mod init;
mod search;
mod sweep;

use crate::backend;
use crate::endpoint::Endpoint;
use crate::profile::{cpu, cpu::SpanBuffer, flame::SvgStyle, redraw};
use crate::report::compare::Comparison;
use crate::report::sweep::{SWEEP_JSON, SweepFile};
use crate::report::{self, RunWriter, progress::TerminalProgress};
use crate::run::{self, RunOptions, preflight};
use crate::scenario::{self, Overrides};
use crate::sink::Sink;
use anyhow::Context;
use args::{Cli, Command, CompareArgs, CompareFormat, FlameArgs, Format, Profile, RunArgs};
use clap::Parser;
use std::io::Write;
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Exit code: every case ran without errors.
pub const EXIT_OK: u8 = 0;
/// Exit code: the run finished but some publishes failed, a delivery check did not add up, or a result
/// file could not be written; or `compare` found a regression (a `--fail-if` held).
pub const EXIT_FAILURES: u8 = 1;
/// Exit code: bad usage or a bad scenario.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: interrupted (after writing what was measured).
pub const EXIT_INTERRUPTED: u8 = run::EXIT_INTERRUPTED;

/// How a command that did its work ended.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// Everything ran and added up.
    Ok,
    /// It ran to the end, but something failed (already reported on stderr).
    Failures,
    /// Ctrl-C or SIGTERM ended it early, after writing what was measured.
    Interrupted,
}

/// How a command ended, or why it could not do its work: bad usage, a bad scenario or run folder, or no
/// runtime (an error, with the context it gathered on the way up).
type Outcome = anyhow::Result<Ending>;

/// The one place outcomes become exit codes, and errors are printed (`error: ` and the error with its
/// causes, on stderr).
fn exit_code(outcome: Outcome) -> u8 {
    match outcome {
        Ok(Ending::Ok) => EXIT_OK,
        Ok(Ending::Failures) => EXIT_FAILURES,
        Ok(Ending::Interrupted) => EXIT_INTERRUPTED,
        Err(e) => {
            eprintln!("error: {e:#}");
            EXIT_USAGE
        }
    }
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let profiling =
        matches!(&cli.command, Command::Run(args) if args.profile == Some(Profile::Cpu));
    let log_filter = match cli.verbose {
        0 => "warn,lapin=off",
        1 => "info",
        _ => "debug",
    };
    let spans = cpu::install_tracing(log_filter, profiling);
    let outcome = match cli.command {
        Command::Run(args) => run(args, spans),
        Command::Search(args) => search::search(args),
        Command::Init(args) => init::init(args).map(|path| {
            print_stdout(&format!(
                "wrote {}; check it with `taskbench validate {0}`\n",
                path.display()
            ));
            Ending::Ok
        }),
        Command::Validate { scenario } => validate(scenario),
        Command::Flame(args) => flame(args),
        Command::Compare(args) => compare(args),
        Command::Report { run_dir, baseline } => report::rerender(&run_dir, baseline.as_deref())
            .map(|path| {
                print_stdout(&format!("wrote {}\n", path.display()));
                Ending::Ok
            }),
        Command::Merge { runs, out, force } => {
            report::merge::merge(&runs, &out, force, std::env::args().collect()).map(|summary| {
                print_stdout(&report::merge::text(&summary, &out));
                Ending::Ok
            })
        }
        Command::Sink { listen } => sink(listen),
        Command::Completions { shell } => {
            print_stdout(&generate::completions(shell));
            Ok(Ending::Ok)
        }
        Command::Man { out: None } => generate::man_page().map(|page| {
            print_stdout(&page);
            Ending::Ok
        }),
        Command::Man { out: Some(dir) } => generate::man_pages(&dir).map(|written| {
            print_stdout(
                &written
                    .iter()
                    .map(|p| format!("wrote {}\n", p.display()))
                    .collect::<String>(),
            );
            Ending::Ok
        }),
    };
    ExitCode::from(exit_code(outcome))
}

fn validate(path: PathBuf) -> Outcome {
    let mut scenario = scenario::load(&path)?;
    let notes = preflight::check(&scenario)?;
    let default = default_python_used(&scenario)?;
    let checked =
        backend::python::check_interpreters(&mut scenario, false).map_err(anyhow::Error::msg)?;
    let mut out = report::listing(&scenario);
    for line in checked.found {
        out.push_str(&format!("python {line}\n"));
    }
    if let Some(default) = default {
        out.push_str(&format!(
            "python for the cases that set no `python`: {} ({})\n",
            default.path.display(),
            default.why
        ));
    }
    for note in checked.routes.into_iter().chain(notes) {
        out.push_str(&format!("note: {note}\n"));
    }
    print_stdout(&out);
    Ok(Ending::Ok)
}

/// The default interpreter ([`scenario::default_python`]) if a celery or kombu case of `scenario` runs it;
/// an error with the one-line fix when it cannot import Celery.
pub(super) fn default_python_used(
    scenario: &scenario::Scenario,
) -> anyhow::Result<Option<&'static scenario::DefaultPython>> {
    let mut clients = scenario.cases.iter().filter_map(|c| c.options.python());
    let Some(first) = clients.next() else {
        return Ok(None);
    };
    let default = scenario::default_python();
    if !std::iter::once(first)
        .chain(clients)
        .any(|c| c.python == default.path)
    {
        return Ok(None);
    }
    if !default.has_celery {
        anyhow::bail!(
            "the cases that set no `python` run {} ({}), which cannot import Celery: {}",
            default.path.display(),
            default.why,
            default.fix()
        );
    }
    Ok(Some(default))
}

fn run(args: RunArgs, spans: Option<SpanBuffer>) -> Outcome {
    let overrides = Overrides {
        publishes: args.publishes.map(NonZeroU64::get),
        warmup: args.warmup,
        concurrency: args.concurrency.map(NonZeroUsize::get),
        rate: args.rate,
        duration: args.duration,
        shard: args.shard,
        floor: args.floor,
    };
    let (mut scenario, sweep_plan) = match &args.sweep {
        None => {
            let mut scenario = scenario::load_with(&args.scenario, &overrides)?;
            scenario.select(&args.cases)?;
            (scenario, None)
        }
        Some(levels) => {
            let (scenario, plan) = sweep::expand(&args.scenario, &overrides, &args.cases, levels)?;
            (scenario, Some((levels.0.clone(), plan)))
        }
    };
    default_python_used(&scenario)?;
    let checked =
        backend::python::check_interpreters(&mut scenario, args.profile == Some(Profile::Cpu))
            .map_err(anyhow::Error::msg)?;
    for note in checked
        .routes
        .into_iter()
        .chain(preflight::check(&scenario)?)
    {
        eprintln!("note: {note}");
    }
    let live = (args.metrics_listen.is_some() || args.metrics_file.is_some())
        .then(|| report::metrics::LiveMetrics::new(args.shard));
    if let (Some(addr), Some(live)) = (&args.metrics_listen, &live) {
        let at = report::metrics::serve(addr, live.clone())?;
        eprintln!("metrics: http://{at}/metrics");
    }
    if let (Some(path), Some(live)) = (&args.metrics_file, &live) {
        // Refused before anything runs when the file cannot be written.
        report::metrics::write_file(path, live)?;
    }
    let mut writer = RunWriter::create(
        args.out.as_deref(),
        &scenario,
        std::env::args().collect(),
        args.force,
    )?;
    let options = RunOptions {
        spans,
        progress: Some(Arc::new(TerminalProgress::default())),
        handle_signals: true,
        start_at: args.start_at,
        live: live.clone().map(|l| l as Arc<dyn crate::engine::LiveView>),
        ..RunOptions::default()
    };
    let mut file_failed = None;
    let outcome = run::run(&scenario, options, &mut |end| {
        if let Some((levels, plan)) = &sweep_plan {
            let file = SweepFile::of(levels, plan, end.so_far, end.interrupted);
            if let Err(e) = writer.folder.write(SWEEP_JSON, file.to_json().as_bytes()) {
                eprintln!("error: {e:#}");
                writer.failed = true;
            }
        }
        writer.case_ended(end);
        if let (Some(path), Some(live)) = (&args.metrics_file, &live)
            && let Err(e) = report::metrics::write_file(path, live)
        {
            file_failed.get_or_insert(e);
        }
    })
    .context("cannot start the async runtime")?;

    let mut out = writer.final_output(&outcome, args.format == Format::Json);
    if let (Some((levels, plan)), Format::Text) = (&sweep_plan, args.format) {
        // Before the folder's line, which stays last.
        let at = out.rfind("results: ").unwrap_or(out.len());
        out.insert_str(
            at,
            &SweepFile::of(levels, plan, &outcome.results, outcome.interrupted).text(),
        );
    }
    print_stdout(&out);
    if let Some(e) = file_failed {
        // What was measured is in the run folder; the file is not.
        return Err(e.context(format!(
            "the run's results are in {}",
            writer.folder.dir.display()
        )));
    }
    Ok(if outcome.interrupted {
        Ending::Interrupted
    } else if writer.failed || outcome.failed() {
        Ending::Failures
    } else {
        Ending::Ok
    })
}

fn flame(args: FlameArgs) -> Outcome {
    let what = redraw::Redraw {
        dir: args.run_dir,
        cases: args.cases,
        diff: args.diff.map(|pair| (pair[0].clone(), pair[1].clone())),
        view: args.view,
        style: SvgStyle {
            width: args.width,
            title: args.title,
            flame_chart: args.flamechart,
        },
    };
    let written = redraw::redraw(&what)?;
    print_stdout(
        &written
            .iter()
            .map(|p| format!("wrote {}\n", p.display()))
            .collect::<String>(),
    );
    Ok(Ending::Ok)
}

fn compare(args: CompareArgs) -> Outcome {
    let comparison = Comparison::of_runs(&args.base, &args.new, &args.fail_if)?;
    print_stdout(&match args.format {
        CompareFormat::Text => comparison.text(),
        CompareFormat::Json => comparison.json(),
        CompareFormat::Markdown => comparison.markdown(),
    });
    Ok(if comparison.failed() {
        Ending::Failures
    } else {
        Ending::Ok
    })
}

fn sink(listen: Endpoint) -> Outcome {
    let runtime = run::runtime().context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Catch the signals before the socket exists: one sent as soon as it appears must stop the sink,
        // not kill it with the default action.
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let sink = Sink::start(&listen)?;
        eprintln!(
            "taskbench sink listening on {} (Ctrl-C to stop)",
            sink.endpoint()
        );
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        let received = sink.drain_and_stop(crate::sink::DRAIN_IDLE, crate::sink::DRAIN_MAX);
        print_stdout(&format!("received {received}\n"));
        Ok(Ending::Ok)
    })
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
pub(super) fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
