//! The command line: parse arguments, run a scenario, a validation or a sink, and map outcomes to exit codes.

use crate::backend;
use crate::endpoint::Endpoint;
use crate::engine::RunControl;
use crate::profile::{self, cpu, cpu::SpanBuffer, flame::SvgStyle, folded::Folded};
use crate::record::CaseResult;
use crate::report::{self, RunFolder, progress::TerminalProgress, summary};
use crate::scenario::{self, Scenario};
use crate::sink::Sink;
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
    /// Also record a CPU-time profile per case (<case>.cpu.folded / .svg) from tracing spans.
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

impl View {
    fn name(self) -> &'static str {
        match self {
            View::Wall => "wall",
            View::Cpu => "cpu",
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
    let spans = init_tracing(cli.verbose, profiling);
    let code = match cli.command {
        Command::Run(args) => run(args, spans),
        Command::Validate { scenario } => validate(scenario),
        Command::Flame(args) => flame(args),
        Command::Sink { listen } => match runtime() {
            Ok(rt) => rt.block_on(sink(listen)),
            Err(code) => code,
        },
    };
    ExitCode::from(code)
}

/// The async runtime: `TOKIO_WORKER_THREADS` worker threads, else one per core. Which is faster for one
/// publisher depends on the machine's scheduling (docs/redis.md has both measured); the variable sets it.
fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            EXIT_USAGE
        })
}

/// Installs logging to stderr and, when profiling, the span recorder; returns where spans are recorded.
fn init_tracing(verbose: u8, profiling: bool) -> Option<SpanBuffer> {
    use tracing_subscriber::{Layer, filter, layer::SubscriberExt, util::SubscriberInitExt};
    let default = match verbose {
        0 => "warn,lapin=off",
        1 => "info",
        _ => "debug",
    };
    let env = filter::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| filter::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(env);
    let (flame, buffer) = match profiling {
        true => {
            let (layer, buffer) = cpu::flame_layer();
            (
                Some(layer.with_filter(filter::filter_fn(|m| m.is_span()))),
                Some(buffer),
            )
        }
        false => (None, None),
    };
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(flame)
        .try_init();
    buffer
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

fn run(args: RunArgs, spans: Option<SpanBuffer>) -> u8 {
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
    match runtime() {
        Ok(rt) => rt.block_on(run_cases(scenario, args, spans)),
        Err(code) => code,
    }
}

async fn run_cases(scenario: Scenario, args: RunArgs, spans: Option<SpanBuffer>) -> u8 {
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
    control.trace_spans = spans.is_some();
    let stop = control.stop.clone();
    tokio::spawn(async move {
        interrupted().await;
        stop.store(true, Relaxed);
        eprintln!(
            "interrupted: ending the current case and writing what was measured (again to quit now)"
        );
        interrupted().await;
        eprintln!("interrupted twice: quitting; summary.json holds the cases finished before");
        std::process::exit(i32::from(EXIT_INTERRUPTED));
    });

    let scenario_file = scenario.file.display().to_string();
    let mut results: Vec<CaseResult> = Vec::new();
    let mut write_failed = false;
    for case in &scenario.cases {
        if control.stopped() {
            break;
        }
        if let Some(spans) = &spans {
            spans.take_folded(1.0);
        }
        let result = backend::run_case(case, &control).await;
        let cpu = spans
            .as_ref()
            .map(|s| s.take_folded(case.sample_interval() as f64));
        if let Err(e) = folder.write_case(&result, cpu.as_ref()) {
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
            out.push_str(&report::breakdown::table(&results));
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

fn flame(args: FlameArgs) -> u8 {
    match render_flames(&args) {
        Ok(written) => {
            print_stdout(
                &written
                    .iter()
                    .map(|p| format!("wrote {}\n", p.display()))
                    .collect::<String>(),
            );
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_USAGE
        }
    }
}

/// What `taskbench flame` needs to know of each case of a run.
struct RunCase {
    name: String,
    subtitle: String,
    publishes: u64,
}

fn render_flames(args: &FlameArgs) -> Result<Vec<PathBuf>, String> {
    let dir = &args.run_dir;
    let summary_path = dir.join("summary.json");
    let text = std::fs::read_to_string(&summary_path).map_err(|e| {
        format!(
            "{} is not a run folder ({}: {e}); pass a folder `taskbench run` wrote",
            dir.display(),
            summary_path.display()
        )
    })?;
    let summary: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a taskbench summary: {e}", summary_path.display()))?;
    let cases: Vec<RunCase> = summary["cases"]
        .as_array()
        .map(|cases| {
            cases
                .iter()
                .map(|c| RunCase {
                    name: c["name"].as_str().unwrap_or_default().to_string(),
                    subtitle: format!(
                        "{} {}",
                        c["backend"].as_str().unwrap_or("?"),
                        c["path"].as_str().unwrap_or("?")
                    ),
                    publishes: c["publishes_ok"].as_u64().unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default();
    let find = |name: &str| {
        cases.iter().find(|c| c.name == name).ok_or_else(|| {
            let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
            format!(
                "no case named {name:?} in {}; cases: {}",
                summary_path.display(),
                names.join(", ")
            )
        })
    };
    let view = args.view.name();
    let load = |case: &RunCase| -> Result<Folded, String> {
        let path = dir.join(format!("{}.{view}.folded", case.name));
        let text = std::fs::read_to_string(&path).map_err(|e| {
            let why = if view == "cpu" {
                "run with --profile cpu"
            } else {
                "its stage timing was off"
            };
            format!(
                "no {view} profile for case {:?} ({}: {e}); {why}",
                case.name,
                path.display()
            )
        })?;
        Folded::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    };
    let style = SvgStyle {
        width: args.width,
        title: args.title.clone(),
        flame_chart: args.flamechart,
    };
    let folder = RunFolder { dir: dir.clone() };
    let mut written = Vec::new();

    if let Some(pair) = &args.diff {
        let (base, case) = (find(&pair[0])?, find(&pair[1])?);
        if base.publishes == 0 || case.publishes == 0 {
            return Err(format!(
                "case {:?} or {:?} has no successful publishes to compare",
                base.name, case.name
            ));
        }
        // Per publish, so cases of different lengths compare.
        let before = load(base)?.scaled(1.0 / base.publishes as f64);
        let after = load(case)?.scaled(1.0 / case.publishes as f64);
        let title = format!(
            "{} vs {}: ns of {view} time per publish (red grew, blue shrank)",
            case.name, base.name
        );
        let subtitle = format!(
            "{} ({}) against {} ({})",
            case.name, case.subtitle, base.name, base.subtitle
        );
        let svg = profile::flame::render_diff(&before, &after, &title, &subtitle, &style)
            .map_err(|e| e.to_string())?;
        let suffix = if view == "cpu" { ".cpu" } else { "" };
        let name = format!("diff-{}-{}{suffix}.svg", base.name, case.name);
        folder.write(&name, &svg).map_err(|e| format!("{e:#}"))?;
        written.push(dir.join(name));
        return Ok(written);
    }

    let selected: Vec<&RunCase> = if args.cases.is_empty() {
        cases
            .iter()
            .filter(|c| dir.join(format!("{}.{view}.folded", c.name)).exists())
            .collect()
    } else {
        args.cases
            .iter()
            .map(|n| find(n))
            .collect::<Result<_, _>>()?
    };
    if selected.is_empty() {
        return Err(format!(
            "{} has no {view} profiles to render",
            dir.display()
        ));
    }
    for case in selected {
        let folded = load(case)?;
        let title = report::flame_title(view, &case.name, case.publishes);
        let subtitle = format!(
            "{}, {} publishes",
            case.subtitle,
            crate::human::human_count(case.publishes)
        );
        folder
            .write_profile(&case.name, view, &folded, &title, &subtitle, &style)
            .map_err(|e| format!("{e:#}"))?;
        written.push(dir.join(format!("{}.{view}.svg", case.name)));
    }
    Ok(written)
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
