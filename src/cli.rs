//! The command line: read the arguments, call the library, and map how each command ended to an exit code
//! (in one place, [`exit_code`]).

use crate::backend;
use crate::endpoint::Endpoint;
use crate::profile::{self, cpu, cpu::SpanBuffer, flame::SvgStyle, redraw};
use crate::report::compare::{Comparison, FailIf};
use crate::report::{self, RunWriter, progress::TerminalProgress};
use crate::run::{self, RunOptions, preflight};
use crate::scenario::{self, Overrides, Shard};
use crate::sink::Sink;
use crate::summary::Summary;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Exit code: every case ran without errors.
pub const EXIT_OK: u8 = 0;
/// Exit code: the run finished but some publishes failed, a delivery check did not add up, or a result
/// file could not be written; or `compare` found a regression (a `--fail-if` held).
pub const EXIT_FAILURES: u8 = 1;
/// Exit code: bad usage or a bad scenario.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: interrupted (after writing what was measured).
pub const EXIT_INTERRUPTED: u8 = 130;

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

/// Why a command could not do its work: bad usage, a bad scenario or run folder, or no runtime.
#[derive(Debug)]
struct UsageError(String);

impl<E: std::fmt::Display> From<E> for UsageError {
    fn from(e: E) -> Self {
        UsageError(e.to_string())
    }
}

/// The one place outcomes become exit codes; an error is printed on stderr first.
fn exit_code(outcome: Result<Ending, UsageError>) -> u8 {
    match outcome {
        Ok(Ending::Ok) => EXIT_OK,
        Ok(Ending::Failures) => EXIT_FAILURES,
        Ok(Ending::Interrupted) => EXIT_INTERRUPTED,
        Err(UsageError(message)) => {
            eprintln!("error: {message}");
            EXIT_USAGE
        }
    }
}

#[derive(Parser)]
#[command(
    name = "taskbench",
    version,
    about = "Measure how fast Celery tasks can be published, path by path"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario's cases and compare them side by side.
    Run(RunArgs),
    /// Parse and check a scenario without running it.
    Validate {
        /// Scenario file (TOML).
        scenario: PathBuf,
    },
    /// Re-render a run's flamegraphs, or draw a differential flamegraph between two of its cases.
    Flame(FlameArgs),
    /// Compare two runs case by case; --fail-if makes a regression exit 1.
    Compare(CompareArgs),
    /// Render a run folder's report.html again, optionally against a baseline run.
    Report {
        /// A run folder written by `taskbench run`.
        run_dir: PathBuf,
        /// A run to compare with (the comparison of `taskbench compare`).
        #[arg(long, value_name = "RUN_DIR")]
        baseline: Option<PathBuf>,
    },
    /// Merge the run folders of a scenario's shards (`run --shard I/N`) into one, as if one machine ran it.
    Merge {
        /// The shards' run folders.
        #[arg(required = true, value_name = "RUN_DIR")]
        runs: Vec<PathBuf>,
        /// Where to write the merged run folder (must not exist or be empty).
        #[arg(long)]
        out: PathBuf,
        /// Replace the files taskbench wrote in `--out` before (as `run --force` does).
        #[arg(long)]
        force: bool,
    },
    /// Receive and count frames for local backends with an `address`, until interrupted.
    Sink {
        /// Where to listen: unix:PATH, fifo:PATH or tcp:IP:PORT.
        #[arg(long)]
        listen: Endpoint,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Scenario file (TOML).
    scenario: PathBuf,
    /// Run folder to write (default: results/<scenario name>/<UTC timestamp>/).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Reuse a non-empty --out folder: remove the files taskbench wrote there first (summary.json, *.hgrm,
    /// *.folded, *.svg), leaving everything else.
    #[arg(long)]
    force: bool,
    /// Measured publishes per case, overriding the scenario.
    #[arg(long)]
    publishes: Option<NonZeroU64>,
    /// Publishers per case, overriding the scenario.
    #[arg(short = 'c', long)]
    concurrency: Option<NonZeroUsize>,
    /// Open loop at this many publishes per second per case, overriding the scenario.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// Run each case this long ("30s", "2m"); unbounded by count unless --publishes or the file sets one.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Unrecorded publishes per case before measuring, overriding the scenario.
    #[arg(long)]
    warmup: Option<u64>,
    /// Run shard INDEX of COUNT (from 0): this process's share of every case's load, on its own queue.
    #[arg(long, env = "TASKBENCH_SHARD", value_name = "INDEX/COUNT")]
    shard: Option<Shard>,
    /// Wait until this UTC time (RFC 3339, e.g. 2026-12-01T10:00:00Z) before the first case, so shards line up.
    #[arg(long, env = "TASKBENCH_START_AT", value_parser = parse_start_at)]
    start_at: Option<SystemTime>,
    /// Run only this case (repeatable).
    #[arg(long = "case", value_name = "NAME")]
    cases: Vec<String>,
    /// What to print on stdout: the table, or summary.json.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Also record a CPU-time profile per case (<case>.cpu.folded / .svg) from tracing spans.
    #[arg(long, value_enum)]
    profile: Option<Profile>,
}

#[derive(clap::Args)]
struct CompareArgs {
    /// The base run folder (what was before).
    base: PathBuf,
    /// The new run folder (what is measured now).
    new: PathBuf,
    /// What to print: a table, JSON, or a markdown table for a pull request.
    #[arg(long, value_enum, default_value_t = CompareFormat::Text)]
    format: CompareFormat,
    /// Exit 1 when a case's change matches, e.g. "p99 > +10%", "throughput < -5%" (repeatable).
    #[arg(long = "fail-if", value_name = "EXPR")]
    fail_if: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CompareFormat {
    Text,
    Json,
    Markdown,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Profile {
    /// Busy time inside spans, on `profile_sample` of the publishes.
    Cpu,
}

#[derive(clap::Args)]
struct FlameArgs {
    /// A run folder written by `taskbench run`.
    run_dir: PathBuf,
    /// Only this case (repeatable; default: every case with a profile).
    #[arg(long = "case", value_name = "NAME")]
    cases: Vec<String>,
    /// Draw diff-<BASE>-<CASE>.svg: which frames grew (red) or shrank (blue) per publish from BASE to CASE.
    #[arg(long, num_args = 2, value_names = ["BASE", "CASE"])]
    diff: Option<Vec<String>>,
    /// Which profile: wall time per stage, or CPU time per span.
    #[arg(long, value_enum, default_value_t = View::Wall)]
    view: View,
    /// Image width in pixels (16 to 100000).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(16..=100_000))]
    width: Option<usize>,
    /// Title to use instead of the default.
    #[arg(long)]
    title: Option<String>,
    /// Draw a flame chart (stacks as recorded) instead of a flame graph.
    #[arg(long)]
    flamechart: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum View {
    Wall,
    Cpu,
}

impl From<View> for profile::View {
    fn from(view: View) -> Self {
        match view {
            View::Wall => profile::View::Wall,
            View::Cpu => profile::View::Cpu,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
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
        Command::Validate { scenario } => validate(scenario),
        Command::Flame(args) => flame(args),
        Command::Compare(args) => compare(args),
        Command::Report { run_dir, baseline } => report::rerender(&run_dir, baseline.as_deref())
            .map(|path| {
                print_stdout(&format!("wrote {}\n", path.display()));
                Ending::Ok
            })
            .map_err(UsageError),
        Command::Merge { runs, out, force } => {
            report::merge::merge(&runs, &out, force, std::env::args().collect())
                .map(|summary| {
                    print_stdout(&report::merge::text(&summary, &out));
                    Ending::Ok
                })
                .map_err(UsageError)
        }
        Command::Sink { listen } => sink(listen),
    };
    ExitCode::from(exit_code(outcome))
}

fn validate(path: PathBuf) -> Result<Ending, UsageError> {
    let scenario = scenario::load(&path)?;
    let notes = preflight::check(&scenario).map_err(UsageError)?;
    let found = check_python(&scenario, false)?;
    let mut out = report::listing(&scenario);
    for line in found {
        out.push_str(&format!("python {line}\n"));
    }
    for note in notes {
        out.push_str(&format!("note: {note}\n"));
    }
    print_stdout(&out);
    Ok(Ending::Ok)
}

/// Runs every distinct interpreter (and `celery_app`) of the scenario's celery and kombu cases once;
/// returns what each has, or the first problem (a usage error: nothing runs). `profiling` (`--profile
/// cpu`) also needs py-spy for each.
fn check_python(scenario: &scenario::Scenario, profiling: bool) -> Result<Vec<String>, UsageError> {
    let mut seen: Vec<&scenario::PythonClient> = Vec::new();
    let mut found = Vec::new();
    for case in &scenario.cases {
        let Some(client) = case.options.python() else {
            continue;
        };
        if seen.iter().any(|c| {
            c.python == client.python
                && c.celery_app == client.celery_app
                && c.pythonpath == client.pythonpath
        }) {
            continue;
        }
        seen.push(client);
        let f = backend::python::probe::probe(client)
            .map_err(|e| UsageError(format!("case {:?}: {e}", case.name)))?;
        if profiling {
            backend::python::spy::find(Some(f.executable.as_ref()))
                .map_err(|e| UsageError(format!("case {:?}: {e}", case.name)))?;
        }
        found.push(f.describe());
    }
    found.dedup();
    Ok(found)
}

fn run(args: RunArgs, spans: Option<SpanBuffer>) -> Result<Ending, UsageError> {
    let overrides = Overrides {
        publishes: args.publishes.map(NonZeroU64::get),
        warmup: args.warmup,
        concurrency: args.concurrency.map(NonZeroUsize::get),
        rate: args.rate,
        duration: args.duration,
        shard: args.shard,
    };
    let mut scenario = scenario::load_with(&args.scenario, &overrides)?;
    scenario.select(&args.cases)?;
    check_python(&scenario, args.profile == Some(Profile::Cpu))?;
    for note in preflight::check(&scenario).map_err(UsageError)? {
        eprintln!("note: {note}");
    }
    let mut writer = RunWriter::create(
        args.out.as_deref(),
        &scenario,
        std::env::args().collect(),
        args.force,
    )
    .map_err(|e| UsageError(format!("{e:#}")))?;
    let options = RunOptions {
        spans,
        progress: Some(Arc::new(TerminalProgress::default())),
        handle_signals: true,
        start_at: args.start_at,
        ..RunOptions::default()
    };
    let outcome = run::run(&scenario, options, &mut |end| writer.case_ended(end))
        .map_err(|e| UsageError(format!("cannot start the async runtime: {e}")))?;

    print_stdout(&writer.final_output(&outcome, args.format == Format::Json));
    Ok(if outcome.interrupted {
        Ending::Interrupted
    } else if writer.failed || outcome.failed() {
        Ending::Failures
    } else {
        Ending::Ok
    })
}

fn flame(args: FlameArgs) -> Result<Ending, UsageError> {
    let what = redraw::Redraw {
        dir: args.run_dir,
        cases: args.cases,
        diff: args.diff.map(|pair| (pair[0].clone(), pair[1].clone())),
        view: args.view.into(),
        style: SvgStyle {
            width: args.width,
            title: args.title,
            flame_chart: args.flamechart,
        },
    };
    let written = redraw::redraw(&what).map_err(UsageError)?;
    print_stdout(
        &written
            .iter()
            .map(|p| format!("wrote {}\n", p.display()))
            .collect::<String>(),
    );
    Ok(Ending::Ok)
}

fn compare(args: CompareArgs) -> Result<Ending, UsageError> {
    let fail_if = args
        .fail_if
        .iter()
        .map(|e| FailIf::parse(e))
        .collect::<Result<Vec<_>, _>>()?;
    let base = Summary::read(&args.base)?;
    let new = Summary::read(&args.new)?;
    let comparison = Comparison::new(
        &args.base.display().to_string(),
        &base,
        &args.new.display().to_string(),
        &new,
        &fail_if,
    );
    if comparison.cases.is_empty() {
        return Err(UsageError(format!(
            "no case is in both runs ({} has {}; {} has {})",
            args.base.display(),
            names(&base),
            args.new.display(),
            names(&new)
        )));
    }
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

/// A run's case names, for an error message.
fn names(summary: &Summary) -> String {
    let names: Vec<&str> = summary.cases.iter().map(|c| c.name.as_str()).collect();
    if names.is_empty() {
        "no cases".into()
    } else {
        names.join(", ")
    }
}

fn sink(listen: Endpoint) -> Result<Ending, UsageError> {
    let runtime =
        run::runtime().map_err(|e| UsageError(format!("cannot start the async runtime: {e}")))?;
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

fn parse_start_at(s: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("{s:?} is not a time ({e}); write it like 2026-12-01T10:00:00Z"))
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "{s:?} is not a rate: give publishes per second, more than 0"
        )),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("the duration must be longer than zero".into()),
        Err(e) => Err(format!(
            "{s:?} is not a duration ({e}); write it like 30s, 500ms or 2m"
        )),
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
