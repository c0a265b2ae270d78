//! `--profile cpu` on a celery or kombu case: py-spy samples each harness process over the measured
//! publishes (attached after warm-up, stopped before the harness quits) and its folded stacks become the
//! case's CPU profile, frames named as py-spy names them (`Celery.send_task (celery/app/base.py:1033)`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// Samples per second.
pub const RATE_HZ: u64 = 500;
/// How long py-spy may take to write its output after SIGINT.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The py-spy to use: `TASKBENCH_PY_SPY`, else the one next to the harness's interpreter (a venv's
/// `bin/py-spy`, where `pip install py-spy` puts it), else `py-spy` on PATH.
pub fn find(executable: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("TASKBENCH_PY_SPY").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "TASKBENCH_PY_SPY={} is not a file; point it at py-spy, or unset it",
                p.display()
            ))
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
    Err(format!(
        "--profile cpu samples the celery and kombu harnesses with py-spy, which was not found next to {python} nor on PATH; install it: {python} -m pip install py-spy (or set TASKBENCH_PY_SPY to its path)"
    ))
}

/// A py-spy process recording one harness.
pub struct Sampler {
    child: Child,
    out: PathBuf,
    log: PathBuf,
    pid: u32,
}

impl Sampler {
    /// Starts `py-spy record` on process `pid`, writing folded stacks to `out`.
    pub fn attach(spy: &Path, pid: u32, out: PathBuf) -> Result<Sampler, String> {
        let log = out.with_extension("log");
        let log_file = std::fs::File::create(&log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let child = Command::new(spy)
            .args(["record", "--format", "raw", "--function", "--rate"])
            .arg(RATE_HZ.to_string())
            .arg("--pid")
            .arg(pid.to_string())
            .arg("--output")
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", spy.display()))?;
        Ok(Sampler {
            pid: child.id().unwrap_or(0),
            child,
            out,
            log,
        })
    }

    /// Stops the sampler (SIGINT to its own pid, then it writes its output) and returns its folded stacks in
    /// ns, or why there are none (ptrace not permitted, the harness gone).
    pub async fn stop(mut self) -> Result<String, String> {
        if let Ok(None) = self.child.try_wait() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid as i32),
                nix::sys::signal::Signal::SIGINT,
            );
        }
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        match std::fs::read_to_string(&self.out) {
            Ok(text) if !text.trim().is_empty() => Ok(to_ns(&text)),
            _ => Err(explain(&log)),
        }
    }
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
    let per_sample = 1_000_000_000 / RATE_HZ;
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
    fn a_ptrace_refusal_says_how_to_allow_it() {
        let why = explain("Error: Permission denied (os error 13)\n");
        assert!(
            why.contains("ptrace is not permitted") && why.contains("CAP_SYS_PTRACE"),
            "{why}"
        );
    }
}
