//! The command line's shape: every subcommand and flag (clap), and the parsers of the values that need one.

use crate::endpoint::Endpoint;
use crate::profile::View;
use crate::scenario::Shard;
use clap::builder::PossibleValue;
use clap::{Parser, Subcommand, ValueEnum};
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// `taskbench --version`: the crate's version and the commit it was built from (build.rs sets
/// TASKBENCH_GIT_COMMIT, empty outside a git checkout: then "unknown").
const VERSION: &str = if env!("TASKBENCH_GIT_COMMIT").is_empty() {
    concat!(env!("CARGO_PKG_VERSION"), " (commit unknown)")
} else {
    concat!(
        env!("CARGO_PKG_VERSION"),
        " (commit ",
        env!("TASKBENCH_GIT_COMMIT"),
        ")"
    )
};

#[derive(Parser)]
#[command(
    name = "taskbench",
    version = VERSION,
    about = "Measure how fast Celery tasks can be published, path by path"
)]
pub(super) struct Cli {
    #[command(subcommand)]
    pub(super) command: Command,
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(super) verbose: u8,
}

#[derive(Subcommand)]
pub(super) enum Command {
    /// Run a scenario's cases and compare them side by side.
    Run(RunArgs),
    /// Find the highest open-loop rate each case sustains within a latency budget: ramp, bisect, confirm.
    Search(SearchArgs),
    /// Write a scenario for your Celery app's publish path: its broker, tasks, routes and settings.
    Init(InitArgs),
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
    /// Print a shell completion script, e.g. `taskbench completions bash > ~/.local/share/bash-completion/completions/taskbench`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff: `taskbench man | man -l -`), or write every command's page into a folder.
    Man {
        /// Write taskbench.1 and one page per command (taskbench-run.1, ...) into this folder instead.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
pub(super) struct RunArgs {
    /// Scenario file (TOML).
    pub(super) scenario: PathBuf,
    /// Run folder to write (default: results/<scenario name>/<UTC timestamp>/).
    #[arg(long)]
    pub(super) out: Option<PathBuf>,
    /// Reuse a non-empty --out folder: remove the files taskbench wrote there first (summary.json, *.hgrm,
    /// *.folded, *.svg), leaving everything else.
    #[arg(long)]
    pub(super) force: bool,
    /// Measured publishes per case, overriding the scenario.
    #[arg(long)]
    pub(super) publishes: Option<NonZeroU64>,
    /// Publishers per case, overriding the scenario.
    #[arg(short = 'c', long)]
    pub(super) concurrency: Option<NonZeroUsize>,
    /// Open loop at this many publishes per second per case, overriding the scenario.
    #[arg(long, value_parser = parse_rate)]
    pub(super) rate: Option<f64>,
    /// Run each case this long ("30s", "2m"); unbounded by count unless --publishes or the file sets one.
    #[arg(long, value_parser = parse_duration)]
    pub(super) duration: Option<Duration>,
    /// Unrecorded publishes per case before measuring, overriding the scenario.
    #[arg(long)]
    pub(super) warmup: Option<u64>,
    /// Run shard INDEX of COUNT (from 0): this process's share of every case's load, on its own queue.
    #[arg(long, env = "TASKBENCH_SHARD", value_name = "INDEX/COUNT")]
    pub(super) shard: Option<Shard>,
    /// Wait until this UTC time (RFC 3339, e.g. 2026-12-01T10:00:00Z) before the first case, so shards line up.
    #[arg(long, env = "TASKBENCH_START_AT", value_parser = parse_start_at)]
    pub(super) start_at: Option<SystemTime>,
    /// Run only this case (repeatable).
    #[arg(long = "case", value_name = "NAME")]
    pub(super) cases: Vec<String>,
    /// Run each closed-loop case once per level, e.g. concurrency=1,2,4,8,16 (as `<case>-c<N>`), and fit
    /// the Universal Scalability Law to the throughputs (sweep.json, a table).
    #[arg(long, value_name = "concurrency=LEVELS", value_parser = super::sweep::parse_sweep,
          conflicts_with_all = ["concurrency", "rate"])]
    pub(super) sweep: Option<super::sweep::SweepLevels>,
    /// Measure each case's floor right before it (the simplest client of its backend doing the same work)
    /// and show its p50 and throughput as ratios to it, as the scenario's `floor = true` does.
    #[arg(long)]
    pub(super) floor: bool,
    /// What to print on stdout: the table, or summary.json.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub(super) format: Format,
    /// Also record a CPU-time profile per case (<case>.cpu.folded / .svg): from tracing spans, or on a
    /// celery/kombu case from py-spy samples of its Python harnesses (Python frames), which also get a
    /// wall-clock profile, waiting included (<case>.pywall.folded / .svg).
    #[arg(long, value_enum)]
    pub(super) profile: Option<Profile>,
    /// Serve live metrics (OpenMetrics text) at http://ADDR/metrics while the run goes, e.g.
    /// 127.0.0.1:9464 (port 0 picks a free one); no listener unless given.
    #[arg(long, value_name = "ADDR")]
    pub(super) metrics_listen: Option<String>,
    /// Write the final metrics to PATH (Prometheus text, for node-exporter's textfile collector), after
    /// every case.
    #[arg(long, value_name = "PATH")]
    pub(super) metrics_file: Option<PathBuf>,
}

#[derive(clap::Args)]
pub(super) struct SearchArgs {
    /// Scenario file (TOML).
    pub(super) scenario: PathBuf,
    /// Search only this case (repeatable).
    #[arg(long = "case", value_name = "NAME")]
    pub(super) cases: Vec<String>,
    /// A latency budget every step must meet, e.g. "p99 < 5ms" (repeatable; p50, p90, p99, p999, max);
    /// default: the scenario's latency thresholds.
    #[arg(long = "budget", value_name = "EXPR")]
    pub(super) budgets: Vec<String>,
    /// The error budget: a share of a step's publishes ("< 0.1%") or a count ("== 0", the default unless
    /// the scenario sets an `errors` threshold).
    #[arg(long, value_name = "EXPR")]
    pub(super) errors: Option<String>,
    /// Stop bisecting when the lowest failing rate is within this much above the highest passing one.
    #[arg(long, value_parser = parse_precision, default_value = "2%")]
    pub(super) precision: f64,
    /// How long each step publishes at its rate (after its warm-up).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub(super) step: Duration,
    /// How long the confirmation at the answer publishes.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub(super) confirm: Duration,
    /// The first step's rate, publishes per second.
    #[arg(long, value_parser = parse_rate, default_value = "100")]
    pub(super) start: f64,
    /// The highest rate tried, publishes per second.
    #[arg(long, value_parser = parse_rate, default_value = "10000000")]
    pub(super) max: f64,
    /// Publishers per case, overriding the scenario.
    #[arg(short = 'c', long)]
    pub(super) concurrency: Option<NonZeroUsize>,
    /// Unrecorded publishes before each step, overriding the scenario.
    #[arg(long)]
    pub(super) warmup: Option<u64>,
    /// Run folder to write (default: results/<scenario name>/<UTC timestamp>/).
    #[arg(long)]
    pub(super) out: Option<PathBuf>,
    /// Reuse a non-empty --out folder (as `run --force` does).
    #[arg(long)]
    pub(super) force: bool,
}

#[derive(clap::Args)]
pub(super) struct InitArgs {
    /// Your Celery app, MODULE:ATTRIBUTE (e.g. shop.celery:app), loaded as its worker loads it.
    #[arg(long, value_name = "MODULE:APP")]
    pub(super) celery_app: String,
    /// The directory the app's package is in (put first on sys.path).
    #[arg(long, value_name = "DIR")]
    pub(super) pythonpath: Option<PathBuf>,
    /// Only this task of the app (repeatable; default: all its tasks, not `celery.*`).
    #[arg(long = "task", value_name = "NAME")]
    pub(super) tasks: Vec<String>,
    /// The interpreter that has your app's dependencies and Celery (default: as for a scenario).
    #[arg(long, value_name = "PY")]
    pub(super) python: Option<PathBuf>,
    /// The scenario file to write (default: <package>.toml).
    #[arg(short, long, value_name = "FILE")]
    pub(super) out: Option<PathBuf>,
    /// Replace the file if it exists.
    #[arg(long)]
    pub(super) force: bool,
}

#[derive(clap::Args)]
pub(super) struct CompareArgs {
    /// The base run folder (what was before).
    pub(super) base: PathBuf,
    /// The new run folder (what is measured now).
    pub(super) new: PathBuf,
    /// What to print: a table, JSON, or a markdown table for a pull request.
    #[arg(long, value_enum, default_value_t = CompareFormat::Text)]
    pub(super) format: CompareFormat,
    /// Exit 1 when a case's change matches, e.g. "p99 > +10%", "throughput < -5%" (repeatable).
    #[arg(long = "fail-if", value_name = "EXPR")]
    pub(super) fail_if: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum CompareFormat {
    Text,
    Json,
    Markdown,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Profile {
    /// Busy time inside spans, on `profile_sample` of the publishes.
    Cpu,
}

#[derive(clap::Args)]
pub(super) struct FlameArgs {
    /// A run folder written by `taskbench run`.
    pub(super) run_dir: PathBuf,
    /// Only this case (repeatable; default: every case with a profile).
    #[arg(long = "case", value_name = "NAME")]
    pub(super) cases: Vec<String>,
    /// Draw diff-<BASE>-<CASE>.svg: which frames grew (red) or shrank (blue) per publish from BASE to CASE.
    #[arg(long, num_args = 2, value_names = ["BASE", "CASE"])]
    pub(super) diff: Option<Vec<String>>,
    /// Which profile: wall time per stage, CPU time per span (Python frames on a celery or kombu case), or
    /// pywall: wall-clock time per Python frame, waiting included (celery and kombu cases).
    #[arg(long, value_enum, default_value_t = View::Wall)]
    pub(super) view: View,
    /// Image width in pixels (16 to 100000).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(16..=100_000))]
    pub(super) width: Option<usize>,
    /// Title to use instead of the default.
    #[arg(long)]
    pub(super) title: Option<String>,
    /// Draw a flame chart (stacks as recorded) instead of a flame graph.
    #[arg(long)]
    pub(super) flamechart: bool,
}

/// `--view` takes the views' own names, so a view added to [`View`] is on the command line too.
impl ValueEnum for View {
    fn value_variants<'a>() -> &'a [Self] {
        &View::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Format {
    Text,
    Json,
}

pub(super) fn parse_start_at(s: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("{s:?} is not a time ({e}); write it like 2026-12-01T10:00:00Z"))
}

pub(super) fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "{s:?} is not a rate: give publishes per second, more than 0"
        )),
    }
}

pub(super) fn parse_precision(s: &str) -> Result<f64, String> {
    let number = s.trim().strip_suffix('%').unwrap_or(s.trim());
    match number.trim().parse::<f64>() {
        Ok(p) if p > 0.0 && p < 100.0 => Ok(p / 100.0),
        _ => Err(format!(
            "{s:?} is not a precision: give a percentage above 0 and below 100, e.g. 2%"
        )),
    }
}

pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("the duration must be longer than zero".into()),
        Err(e) => Err(format!(
            "{s:?} is not a duration ({e}); write it like 30s, 500ms or 2m"
        )),
    }
}
