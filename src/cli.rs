//! The command line: parse arguments, run a scenario, a validation or a sink, and map outcomes to exit codes.

use crate::backend;
use crate::engine::RunControl;
use crate::record::CaseResult;
use crate::report::{self, RunFolder, progress::TerminalProgress, summary};
use crate::scenario::{self, Scenario};
use crate::sink::{Endpoint, Sink};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// Exit code: every case ran without errors.
pub const EXIT_OK: u8 = 0;
/// Exit code: the run finished but some publishes failed or a delivery check did not add up.
pub const EXIT_FAILURES: u8 = 1;
/// Exit code: bad usage or a bad scenario.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: interrupted (after writing what was measured).
pub const EXIT_INTERRUPTED: u8 = 130;

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
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run(args).await,
            Command::Validate { scenario } => validate(scenario),
            Command::Sink { listen } => sink(listen).await,
        }
    });
    ExitCode::from(code)
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn validate(path: PathBuf) -> u8 {
    match scenario::load(&path) {
        Ok(s) => {
            let mut out = format!(
                "{}: scenario {:?} is valid, {} case(s):\n",
                path.display(),
                s.name,
                s.cases.len()
            );
            for c in &s.cases {
                let count = c
                    .publishes
                    .map_or("until duration".to_string(), |n| format!("{n} publishes"));
                let mode = c
                    .rate
                    .map_or(format!("closed loop x{}", c.concurrency), |r| {
                        format!("open loop {r}/s x{}", c.concurrency)
                    });
                out.push_str(&format!(
                    "  {}: {} {}, {count}, {mode}, body {} B, envelope {} B\n",
                    c.name,
                    c.backend,
                    c.path,
                    c.task.body().len(),
                    c.task.frame_len() - crate::message::FRAME_PREFIX_LEN
                ));
            }
            print_stdout(&out);
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_USAGE
        }
    }
}

/// Applies `--publishes` and `--case` to a loaded scenario.
fn select_cases(scenario: &mut Scenario, args: &RunArgs) -> Result<(), String> {
    for name in &args.cases {
        if !scenario.cases.iter().any(|c| &c.name == name) {
            let names: Vec<&str> = scenario.cases.iter().map(|c| c.name.as_str()).collect();
            return Err(format!(
                "no case named {name:?} in {}; cases: {}",
                scenario.file.display(),
                names.join(", ")
            ));
        }
    }
    if !args.cases.is_empty() {
        scenario.cases.retain(|c| args.cases.contains(&c.name));
    }
    if let Some(n) = args.publishes {
        for c in &mut scenario.cases {
            c.publishes = Some(n.get());
        }
    }
    Ok(())
}

async fn run(args: RunArgs) -> u8 {
    let mut scenario = match scenario::load(&args.scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    if let Err(e) = select_cases(&mut scenario, &args) {
        eprintln!("error: {e}");
        return EXIT_USAGE;
    }
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let folder = match RunFolder::create(args.out.as_deref(), &scenario.name, &started_at) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e:#}");
            return EXIT_USAGE;
        }
    };

    let mut control = RunControl::new();
    control.progress = Some(Arc::new(TerminalProgress::default()));
    let stop = control.stop.clone();
    tokio::spawn(async move {
        interrupted().await;
        stop.store(true, Relaxed);
        eprintln!("interrupted: finishing the current case and writing what was measured");
    });

    let scenario_file = scenario.file.display().to_string();
    let mut results: Vec<CaseResult> = Vec::new();
    let mut write_failed = false;
    for case in &scenario.cases {
        if control.stopped() {
            break;
        }
        let result = backend::run_case(case, &control).await;
        if let Err(e) = folder.write_case(&result) {
            eprintln!("error: {e:#}");
            write_failed = true;
        }
        results.push(result);
        let info = summary::RunInfo {
            scenario: &scenario.name,
            scenario_file: &scenario_file,
            started_at: &started_at,
            interrupted: control.stopped(),
        };
        if let Err(e) = folder.write_summary(&summary::summary(&info, &results)) {
            eprintln!("error: {e:#}");
            write_failed = true;
        }
    }

    match args.format {
        Format::Text => {
            let mut out = report::table::comparison(&results);
            out.push_str(&format!("results: {}\n", folder.dir.display()));
            print_stdout(&out);
        }
        Format::Json => {
            let info = summary::RunInfo {
                scenario: &scenario.name,
                scenario_file: &scenario_file,
                started_at: &started_at,
                interrupted: control.stopped(),
            };
            let mut text = serde_json::to_string_pretty(&summary::summary(&info, &results))
                .expect("serialises");
            text.push('\n');
            print_stdout(&text);
        }
    }

    if control.stopped() {
        EXIT_INTERRUPTED
    } else if write_failed || results.iter().any(CaseResult::failed) {
        EXIT_FAILURES
    } else {
        EXIT_OK
    }
}

async fn sink(listen: Endpoint) -> u8 {
    let sink = match Sink::start(&listen) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    eprintln!(
        "taskbench sink listening on {} (Ctrl-C to stop)",
        sink.endpoint()
    );
    interrupted().await;
    let snapshot = sink.stop();
    print_stdout(&format!("received {snapshot}\n"));
    EXIT_OK
}

/// Resolves on Ctrl-C or SIGTERM.
async fn interrupted() {
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

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
