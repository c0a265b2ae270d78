//! `--profile cpu` on a celery or kombu case: py-spy samples each harness process over the measured
//! publishes (from after warm-up until before the harness quits), and its folded stacks become the case's
//! CPU profile and its Python wall-clock profile (the `pywall` view), frames named as py-spy names them
//! (`Celery.send_task (celery/app/base.py:1033)`). [`Sampler`] is one py-spy process; the two views' samplers
//! take turns on a harness (the `turns` module), each pausing it for every sample.
//!
//! Why two samplers: py-spy's output (raw, speedscope, chrometrace) does not say which samples were idle, so
//! one sampler with `--idle` cannot give both views. Why in turns: two blocking samplers cannot share a
//! process at once (each ptrace-stops it for every sample and a second tracer's attach fails while the first
//! holds it: 53% and 66% of the two's samples were errors when tried here), and a `--nonblocking` one beside
//! the blocking one failed up to 58% of its reads (a read fails when the harness's stack changes under it,
//! and the other sampler's stops stretched that window). A failed read, rare now, is kept in the wall view
//! as the frame `(unreadable)`. docs/python-clients.md has the figures.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// Samples per second.
pub const RATE_HZ: u64 = 500;
/// What one sample stands for.
pub const NS_PER_SAMPLE: u64 = 1_000_000_000 / RATE_HZ;
/// The wall view's frame for the samples py-spy failed to read.
pub const UNREADABLE: &str = "(unreadable)";
/// The nice value the samplers run at when taskbench may raise their priority (root, CAP_SYS_NICE). A
/// sample keeps the harness stopped until py-spy has read its stack, so a sampler that the scheduler
/// preempts mid-read on a loaded machine stops the harness longer. (When the pywall sampler was
/// `--nonblocking`, its reads failed 4.1-7.2% at nice 0 and 0.95-1.3% at nice -15 on RabbitMQ;
/// docs/python-clients.md has the runs.)
pub const SAMPLER_NICE: i32 = -15;
/// What py-spy prints once it samples (`Sampling process 500 times a second. Press Control-C to exit.`).
const SAMPLING: &str = "Sampling process";
/// How long py-spy may take to write its output after SIGINT.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a harness has no profile: py-spy not found, not started, or it recorded nothing.
#[derive(Debug, thiserror::Error)]
pub enum SpyError {
    #[error("TASKBENCH_PY_SPY={0} is not a file; point it at py-spy, or unset it")]
    NotAFile(String),
    #[error(
        "--profile cpu samples the celery and kombu harnesses with py-spy, which was not found next to {python} nor on PATH; install it: {python} -m pip install py-spy (or set TASKBENCH_PY_SPY to its path)"
    )]
    NotFound { python: String },
    #[error("cannot create {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot run {spy}: {source}")]
    Start { spy: String, source: std::io::Error },
    /// py-spy ended without output; why, from what it printed.
    #[error("{0}")]
    RecordedNothing(String),
    /// The view has no turn that recorded something: why (the turns' own failure, or why it had none).
    #[error("{0}")]
    NoTurn(String),
}

/// The py-spy to use: `TASKBENCH_PY_SPY`, else the one next to the harness's interpreter (a venv's
/// `bin/py-spy`, where `pip install py-spy` puts it), else `py-spy` on PATH.
pub fn find(executable: Option<&Path>) -> Result<PathBuf, SpyError> {
    if let Some(p) = std::env::var_os("TASKBENCH_PY_SPY").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(SpyError::NotAFile(p.display().to_string()))
        };
    }
    if let Some(next) = executable.and_then(Path::parent).map(|d| d.join("py-spy"))
        && next.is_file()
    {
        return Ok(next);
    }
    if let Some(on_path) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("py-spy"))
            .find(|p| p.is_file())
    }) {
        return Ok(on_path);
    }
    let python = executable.map_or("python".into(), |p| p.display().to_string());
    Err(SpyError::NotFound { python })
}

/// What a sampler records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// On-CPU samples only (py-spy's default: a thread the OS shows sleeping is left out), pausing the
    /// harness for each sample so that stacks are whole: the CPU view.
    Cpu,
    /// Every sample, idle ones included (`--idle`), pausing the harness for each sample like the CPU
    /// sampler, in turns with it: the pywall view, where the publish's wall-clock time goes, waiting on the
    /// broker's socket included.
    Wall,
}

impl Sampling {
    /// py-spy's arguments for it, after `record`'s common ones.
    fn args(self) -> &'static [&'static str] {
        match self {
            Sampling::Cpu => &[],
            Sampling::Wall => &["--idle"],
        }
    }

    /// The flamegraph view its samples are drawn in (`taskbench flame --view`).
    pub fn view_name(self) -> &'static str {
        match self {
            Sampling::Cpu => "cpu",
            Sampling::Wall => "pywall",
        }
    }

    /// What the notes call its profile.
    pub fn profile_name(self) -> &'static str {
        match self {
            Sampling::Cpu => "Python CPU profile",
            Sampling::Wall => "Python wall-clock (pywall) profile",
        }
    }
}

/// What a sampler recorded: folded stacks in ns, and py-spy's own count of samples and failed ones.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Recorded {
    pub folded: String,
    pub samples: u64,
    pub errors: u64,
    /// How long it sampled: from py-spy's first sample to the SIGINT (0: not known).
    pub sampled_ns: u64,
    /// The harness's measured time the samples stand for, once scaled to it ([`Recorded::scaled_to`]; 0:
    /// not scaled).
    pub phase_ns: u64,
}

impl Recorded {
    /// The samples scaled from the time they were taken in to the harness's measured `phase_ns`, so that
    /// the view's ns read as the whole measured phase's (a view samples only its turns, about half of it).
    pub fn scaled_to(mut self, phase_ns: u64) -> Recorded {
        if self.sampled_ns > 0 && phase_ns > 0 {
            self.folded = scale(&self.folded, phase_ns as f64 / self.sampled_ns as f64);
            self.phase_ns = phase_ns;
        }
        self
    }
}

/// Folded text with every count multiplied by `factor` (rounded).
pub fn scale(folded: &str, factor: f64) -> String {
    folded
        .lines()
        .filter_map(|line| {
            let (stack, n) = line.rsplit_once(' ')?;
            let n: u64 = n.parse().ok()?;
            Some(format!("{stack} {}\n", (n as f64 * factor).round() as u64))
        })
        .collect()
}

/// A py-spy process recording one harness.
pub struct Sampler {
    child: Child,
    out: PathBuf,
    /// Its stderr: why it failed.
    log: PathBuf,
    /// Its stdout, read as it comes: that it began sampling, then its closing count of samples and errors.
    stdout: Option<BufReader<ChildStdout>>,
    /// What it printed on stdout so far.
    said: String,
    /// When it said that it samples.
    sampling_since: Option<std::time::Instant>,
    pid: u32,
    sampling: Sampling,
}

impl Sampler {
    /// Starts `py-spy record` on process `pid`, writing folded stacks to `out`.
    pub fn attach(
        spy: &Path,
        pid: u32,
        out: PathBuf,
        sampling: Sampling,
    ) -> Result<Sampler, SpyError> {
        let log = out.with_extension("log");
        let create = |path: &Path| {
            std::fs::File::create(path).map_err(|source| SpyError::Create {
                path: path.display().to_string(),
                source,
            })
        };
        let log_file = create(&log)?;
        let mut child = Command::new(spy)
            .args(["record", "--format", "raw", "--function"])
            .args(sampling.args())
            .arg("--rate")
            .arg(RATE_HZ.to_string())
            .arg("--pid")
            .arg(pid.to_string())
            .arg("--output")
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| SpyError::Start {
                spy: spy.display().to_string(),
                source,
            })?;
        let pid = child.id().unwrap_or(0);
        let stdout = child.stdout.take().map(BufReader::new);
        if let Err(why) = raise_priority(pid) {
            tracing::warn!(
                "py-spy (pid {pid}) runs at its default priority, not nice {SAMPLER_NICE}: {why}; on a loaded machine more of the {} sampler's reads may fail",
                sampling.view_name()
            );
        }
        Ok(Sampler {
            pid,
            child,
            out,
            log,
            stdout,
            said: String::new(),
            sampling_since: None,
            sampling,
        })
    }

    /// What it records.
    pub fn sampling(&self) -> Sampling {
        self.sampling
    }

    /// Waits until py-spy says that it samples (true), or ends without saying so (false: [`Sampler::stop`]
    /// says why). Until then a SIGINT would end it before it installed its handler, without output.
    pub async fn started(&mut self) -> bool {
        let Some(stdout) = self.stdout.as_mut() else {
            return false;
        };
        loop {
            let from = self.said.len();
            match stdout.read_line(&mut self.said).await {
                Ok(0) | Err(_) => return false,
                Ok(_) if self.said[from..].contains(SAMPLING) => {
                    self.sampling_since = Some(std::time::Instant::now());
                    return true;
                }
                Ok(_) => continue,
            }
        }
    }

    /// Stops the sampler (SIGINT to its own pid, then it writes its output) and returns its folded stacks in
    /// ns, or why there are none (ptrace not permitted, the harness gone).
    pub async fn stop(mut self) -> Result<Recorded, SpyError> {
        let sampled_ns = self
            .sampling_since
            .map_or(0, |since| since.elapsed().as_nanos() as u64);
        if let Ok(None) = self.child.try_wait() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid as i32),
                nix::sys::signal::Signal::SIGINT,
            );
        }
        let mut stdout = self.stdout.take();
        let said = &mut self.said;
        let child = &mut self.child;
        let ended = async move {
            if let Some(stdout) = stdout.as_mut() {
                let _ = stdout.read_to_string(said).await;
            }
            child.wait().await
        };
        if tokio::time::timeout(STOP_TIMEOUT, ended).await.is_err() {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let output = std::fs::read_to_string(&self.out).ok();
        outcome(self.sampling, output.as_deref(), &self.said, &log)
            .map(|r| Recorded { sampled_ns, ..r })
    }
}

/// What a stopped sampler recorded, from its output file's text (`None`: none written), what it printed on
/// stdout and its stderr. An empty output with py-spy's closing count is a turn in which the CPU sampler
/// never found the harness on a CPU (it waited on the broker or slept throughout): no samples, not a
/// failure, so the turns go on (taking it for a failure once ended them, and the pywall view was never
/// sampled). An empty output without that count means py-spy never sampled: why, from its stderr.
fn outcome(
    sampling: Sampling,
    output: Option<&str>,
    said: &str,
    log: &str,
) -> Result<Recorded, SpyError> {
    match output {
        Some(text) if !text.trim().is_empty() || counts(said).is_some() => {
            Ok(recorded(sampling, text, said))
        }
        _ => Err(SpyError::RecordedNothing(explain(log))),
    }
}

/// Sets process `pid`'s nice value to [`SAMPLER_NICE`] (refused without root or CAP_SYS_NICE).
fn raise_priority(pid: u32) -> Result<(), nix::errno::Errno> {
    // SAFETY: setpriority only reads its arguments; `pid` is our own child's.
    let rc = unsafe {
        nix::libc::setpriority(
            nix::libc::PRIO_PROCESS,
            pid as nix::libc::id_t,
            SAMPLER_NICE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(nix::errno::Errno::last())
    }
}

/// A sampler's result from py-spy's raw output and what it printed on stdout.
fn recorded(sampling: Sampling, raw: &str, said: &str) -> Recorded {
    let (samples, errors) = counts(said).unwrap_or_default();
    let mut folded = to_ns(raw);
    if sampling == Sampling::Wall && errors > 0 {
        // Each sampling interval gives one sample of the harness's one thread or one error, so the wall
        // view keeps the failed ones as a frame of their own: its total stays the wall clock of its turn,
        // and what py-spy could not read shows instead of vanishing.
        folded.push_str(&format!("{UNREADABLE} {}\n", errors * NS_PER_SAMPLE));
    }
    Recorded {
        folded,
        samples,
        errors,
        ..Recorded::default()
    }
}

/// py-spy's closing count, `Wrote raw flamegraph data to '...'. Samples: N Errors: M`: (N, M).
fn counts(log: &str) -> Option<(u64, u64)> {
    let line = log.lines().rev().find(|l| l.contains("Samples: "))?;
    let after = |word: &str| -> Option<u64> {
        let rest = &line[line.find(word)? + word.len()..];
        rest.split_whitespace().next()?.parse().ok()
    };
    Some((after("Samples: ")?, after("Errors: ").unwrap_or(0)))
}

/// Why py-spy recorded nothing, from what it printed, with the fix when it is ptrace.
fn explain(log: &str) -> String {
    let said: String = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let lower = said.to_lowercase();
    if lower.contains("permission denied")
        || lower.contains("operation not permitted")
        || lower.contains("ptrace")
    {
        format!(
            "py-spy may not attach to the harness: ptrace is not permitted ({said}); run taskbench as root, or give it CAP_SYS_PTRACE (docker run --cap-add SYS_PTRACE), or allow it with sysctl kernel.yama.ptrace_scope=0"
        )
    } else if said.is_empty() {
        "py-spy recorded no samples".into()
    } else {
        format!("py-spy recorded no samples: {said}")
    }
}

/// py-spy's folded lines (counts are samples) as taskbench's: frames from the harness's `publish` down
/// (what runs outside a publish is one frame, `(harness)`), counts in ns.
pub fn to_ns(text: &str) -> String {
    let per_sample = NS_PER_SAMPLE;
    let mut out = String::new();
    for line in text.lines() {
        let Some((stack, count)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(count) = count.parse::<u64>() else {
            continue;
        };
        let frames: Vec<&str> = stack.split(';').collect();
        // The harness's `publish` closure: `celery_publisher.<locals>.publish (taskbench_harness.py:N)`.
        let from = frames.iter().position(|f| {
            f.split(" (")
                .next()
                .is_some_and(|name| name == "publish" || name.ends_with(".<locals>.publish"))
        });
        // Outside a publish: `(harness)` and what it was doing below its loop (reading the next command,
        // writing an answer).
        let serve = frames
            .iter()
            .position(|f| f.starts_with("serve ("))
            .map_or(frames.len(), |i| i + 1);
        let stack = match from {
            Some(i) => frames[i..].join(";"),
            None => std::iter::once("(harness)")
                .chain(frames[serve.min(frames.len())..].iter().copied())
                .collect::<Vec<_>>()
                .join(";"),
        };
        out.push_str(&format!("{stack} {}\n", count * per_sample));
    }
    out
}

/// Every harness's folded text, summed.
pub fn merge(texts: &[String]) -> String {
    let mut sums: std::collections::BTreeMap<&str, u64> = Default::default();
    for text in texts {
        for line in text.lines() {
            if let Some((stack, count)) = line.rsplit_once(' ')
                && let Ok(n) = count.parse::<u64>()
            {
                *sums.entry(stack).or_default() += n;
            }
        }
    }
    sums.iter().map(|(s, n)| format!("{s} {n}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_start_at_the_publish_and_count_nanoseconds() {
        let raw = "<module> (h.py:1);main (h.py:9);serve (h.py:20);publish (h.py:30);Task.apply_async (celery/app/task.py:500);Celery.send_task (celery/app/base.py:1033) 3\n\
                   <module> (h.py:1);main (h.py:9);serve (h.py:20) 1\n";
        assert_eq!(
            to_ns(raw),
            "publish (h.py:30);Task.apply_async (celery/app/task.py:500);Celery.send_task (celery/app/base.py:1033) 6000000\n(harness) 2000000\n"
        );
        assert_eq!(merge(&["a 1\nb 2\n".into(), "a 3\n".into()]), "a 4\nb 2\n");
    }

    #[test]
    fn a_view_sampled_over_part_of_the_phase_is_scaled_to_all_of_it() {
        let r = Recorded {
            folded: "a 2000000\nb 4000000\n".into(),
            samples: 3,
            sampled_ns: 400_000_000,
            ..Recorded::default()
        };
        let scaled = r.clone().scaled_to(1_000_000_000);
        assert_eq!(scaled.folded, "a 5000000\nb 10000000\n");
        assert_eq!(
            (scaled.samples, scaled.phase_ns),
            (3, 1_000_000_000),
            "the counts stay py-spy's"
        );
        let unknown = Recorded { sampled_ns: 0, ..r };
        assert_eq!(
            unknown.clone().scaled_to(1_000_000_000),
            unknown,
            "nothing to scale by"
        );
    }

    #[test]
    fn reads_py_spys_count_of_samples_and_errors() {
        let log = "py-spy> Sampling process 500 times a second. Press Control-C to exit.\n\n\
                   py-spy> Stopped sampling because Control-C pressed\n\
                   py-spy> Wrote raw flamegraph data to '/tmp/x/py-spy-0.txt'. Samples: 1867 Errors: 46\n\
                   py-spy> You can use the flamegraph.pl script from https://github.com/brendangregg/flamegraph to generate a SVG\n";
        assert_eq!(counts(log), Some((1867, 46)));
        assert_eq!(counts("Error: Permission denied (os error 13)\n"), None);
    }

    #[test]
    fn the_wall_view_keeps_its_failed_samples_as_a_frame_and_the_cpu_view_does_not() {
        let raw = "<module> (h.py:1);main (h.py:9);serve (h.py:20);publish (h.py:30) 3\n";
        let said = "py-spy> Wrote raw flamegraph data to 'x'. Samples: 3 Errors: 2\n";
        let wall = recorded(Sampling::Wall, raw, said);
        assert_eq!(
            wall.folded,
            "publish (h.py:30) 6000000\n(unreadable) 4000000\n"
        );
        assert_eq!((wall.samples, wall.errors), (3, 2));
        let cpu = recorded(Sampling::Cpu, raw, said);
        assert_eq!(cpu.folded, "publish (h.py:30) 6000000\n");
        assert_eq!(
            recorded(Sampling::Wall, raw, "").folded,
            "publish (h.py:30) 6000000\n",
            "no count printed: nothing added"
        );
    }

    #[test]
    fn only_the_wall_sampler_includes_idle_samples_and_both_pause_the_harness() {
        assert!(
            Sampling::Cpu.args().is_empty(),
            "the CPU sampler is py-spy's default: blocking, on-CPU only"
        );
        assert_eq!(
            Sampling::Wall.args(),
            ["--idle"],
            "blocking too: a --nonblocking read fails when the stack changes under it"
        );
    }

    #[test]
    fn a_turn_that_never_found_the_harness_on_a_cpu_recorded_no_samples_and_did_not_fail() {
        // What py-spy 0.4.3 printed after 150 ms on a Python process sleeping in time.sleep, with an
        // empty output file.
        let said = "py-spy> Sampling process 500 times a second. Press Control-C to exit.\n\
                    py-spy> Wrote raw flamegraph data to '/tmp/x.txt'. Samples: 0 Errors: 0\n";
        let idle = outcome(Sampling::Cpu, Some(""), said, "").expect("not a failure");
        assert_eq!(
            (idle.folded.as_str(), idle.samples, idle.errors),
            ("", 0, 0)
        );
        // No closing count: py-spy never sampled, and says why on stderr.
        let log = "Error: Failed to find python version from target process\n";
        for output in [Some(""), None] {
            let why = outcome(Sampling::Cpu, output, "", log)
                .unwrap_err()
                .to_string();
            assert_eq!(
                why,
                "py-spy recorded no samples: Error: Failed to find python version from target process"
            );
        }
    }

    #[test]
    fn a_ptrace_refusal_says_how_to_allow_it() {
        let why = explain("Error: Permission denied (os error 13)\n");
        assert!(
            why.contains("ptrace is not permitted") && why.contains("CAP_SYS_PTRACE"),
            "{why}"
        );
    }
}
