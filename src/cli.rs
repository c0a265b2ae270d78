//! The command line: read the arguments, call the library, and map how each command ended to an exit code
//! (in one place, [`exit_code`]).

use crate::backend;
use crate::endpoint::Endpoint;
use crate::profile::{self, cpu, cpu::SpanBuffer, flame::SvgStyle, redraw};
use crate::report::{self, RunWriter, progress::TerminalProgress};
use crate::run::{self, RunOptions};
use crate::scenario;
use crate::sink::Sink;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Exit code: every case ran without errors.
pub const EXIT_OK: u8 = 0;
/// Exit code: the run finished but some publishes failed, a delivery check did not add up, or a result
/// file could not be written.
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
    /// Measured publishes per case, overriding the scenario.
    #[arg(long)]
    publishes: Option<NonZeroU64>,
    /// Run only this case (repeatable).
    #[arg(long = "case", value_name = "NAME")]
    cases: Vec<String>,
    /// What to print on stdout: the table, or summary.json.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Also record a CPU-time profile per case (<case>.cpu.folded / .svg): from tracing spans, or on a
    /// celery/kombu case from py-spy samples of its Python harnesses (Python frames).
    #[arg(long, value_enum)]
    profile: Option<Profile>,
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
    /// Image width in pixels.
    #[arg(long)]
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
        Command::Sink { listen } => sink(listen),
    };
    ExitCode::from(exit_code(outcome))
}

fn validate(path: PathBuf) -> Result<Ending, UsageError> {
    let scenario = scenario::load(&path)?;
    let found = check_python(&scenario, false)?;
    let mut text = report::listing(&scenario);
    for line in found {
        text.push_str(&format!("python {line}\n"));
    }
    print_stdout(&text);
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
    let mut scenario = scenario::load(&args.scenario)?;
    scenario.select(&args.cases)?;
    check_python(&scenario, args.profile == Some(Profile::Cpu))?;
    if let Some(n) = args.publishes {
        scenario.set_publishes(n.get());
    }
    let mut writer = RunWriter::create(args.out.as_deref(), &scenario)
        .map_err(|e| UsageError(format!("{e:#}")))?;
    let options = RunOptions {
        spans,
        progress: Some(Arc::new(TerminalProgress::default())),
        handle_signals: true,
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

fn sink(listen: Endpoint) -> Result<Ending, UsageError> {
    let runtime =
        run::runtime().map_err(|e| UsageError(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        let sink = Sink::start(&listen)?;
        eprintln!(
            "taskbench sink listening on {} (Ctrl-C to stop)",
            sink.endpoint()
        );
        run::interrupted().await;
        print_stdout(&format!("received {}\n", sink.stop()));
        Ok(Ending::Ok)
    })
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
