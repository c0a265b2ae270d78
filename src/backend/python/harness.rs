//! One harness process: the script shipped inside the binary, starting it and waiting for its ready line,
//! asking it to quit, and telling how it ended (its exit status and the tail of its stderr).

use super::protocol::{self, Ready, ReadyLine, Stats};
use super::target::Shared;
use crate::error::{ErrorKind, PublishError};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The harness, written to a temporary file for every case that runs it.
pub const HARNESS: &str = include_str!("harness.py");
/// How long a harness may take to import Celery and build its client.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a harness may take to close its connections and exit after "q".
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of a dead harness's stderr an error message quotes.
const STDERR_TAIL: usize = 600;

/// One running harness process and its pipes.
pub(super) struct Harness {
    pub(super) child: Child,
    pub(super) stdin: ChildStdin,
    pub(super) stdout: BufReader<ChildStdout>,
    pub(super) stderr_path: PathBuf,
    pub(super) pid: u32,
}

/// The tail of a harness's stderr, for error messages.
pub(super) fn stderr_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let text = text.trim();
    if text.is_empty() {
        return "nothing on stderr".into();
    }
    let start = text
        .char_indices()
        .rev()
        .nth(STDERR_TAIL)
        .map_or(0, |(i, _)| i);
    let tail: String = text[start..]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    format!("stderr ends: {tail}")
}

/// Starts one harness and waits for its ready line.
pub(super) async fn start(
    script: &Path,
    stderr_path: PathBuf,
    shared: &Shared,
    config: &str,
) -> Result<(Harness, Ready), PublishError> {
    let setup = |message: String| PublishError::new(ErrorKind::Setup, shared.clean(&message));
    let stderr = std::fs::File::create(&stderr_path)
        .map_err(|e| setup(format!("cannot create {}: {e}", stderr_path.display())))?;
    let mut command = Command::new(&shared.python);
    command
        .arg("-u")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| {
        setup(format!(
            "cannot run python {:?}: {e}; set `python` in the scenario, or TASKBENCH_PYTHON, to an interpreter with Celery installed (tests/run makes target/celery-venv/bin/python)",
            shared.python.display().to_string()
        ))
    })?;
    let pid = child.id().unwrap_or(0);
    let stdin = child.stdin.take().expect("stdin is piped");
    let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut harness = Harness {
        child,
        stdin,
        stdout,
        stderr_path,
        pid,
    };
    let handshake = async {
        harness.stdin.write_all(config.as_bytes()).await.ok();
        let mut line = Vec::new();
        harness.stdout.read_until(b'\n', &mut line).await.ok();
        line
    };
    let line = tokio::time::timeout(READY_TIMEOUT, handshake)
        .await
        .map_err(|_| {
            setup(format!(
                "{} (pid {pid}) was not ready within {}; {}",
                shared.label(),
                humantime::format_duration(READY_TIMEOUT),
                stderr_tail(&harness.stderr_path)
            ))
        })?;
    let text = String::from_utf8_lossy(&line);
    let text = text.trim_end();
    match protocol::ready_line(text) {
        ReadyLine::Ready(ready) => return Ok((harness, ready)),
        ReadyLine::Unreadable(e) => {
            return Err(setup(format!(
                "{} sent a ready line taskbench cannot read: {e}",
                shared.label()
            )));
        }
        ReadyLine::Failed { kind, message } => {
            return Err(PublishError::new(
                kind.unwrap_or(ErrorKind::Setup),
                shared.clean(&format!("{}: {message}", shared.label())),
            ));
        }
        ReadyLine::Other => {}
    }
    let status = exit_status(&mut harness.child).await;
    Err(setup(format!(
        "{} (pid {pid}) {status} before it was ready; {}",
        shared.label(),
        stderr_tail(&harness.stderr_path)
    )))
}

/// "exited with status 1", "was killed by signal 9", or "is still running", after waiting up to a second.
pub(super) async fn exit_status(child: &mut Child) -> String {
    match tokio::time::timeout(Duration::from_secs(1), child.wait()).await {
        Ok(Ok(status)) => {
            use std::os::unix::process::ExitStatusExt;
            match (status.code(), status.signal()) {
                (Some(code), _) => format!("exited with status {code}"),
                (None, Some(signal)) => format!("was killed by signal {signal}"),
                _ => format!("ended ({status})"),
            }
        }
        Ok(Err(e)) => format!("could not be waited for ({e})"),
        Err(_) => "stopped answering".into(),
    }
}

impl Harness {
    /// Asks the harness to quit ("q"); returns the counters it sent before exiting, if it sent them within
    /// [`QUIT_TIMEOUT`].
    pub(super) async fn quit(&mut self) -> Option<Stats> {
        let quit = async {
            self.stdin.write_all(protocol::QUIT).await.ok()?;
            let mut line = Vec::new();
            loop {
                line.clear();
                if self.stdout.read_until(b'\n', &mut line).await.ok()? == 0 {
                    return None;
                }
                if let Some(stats) = protocol::stats_line(&line) {
                    return stats.ok();
                }
            }
        };
        tokio::time::timeout(QUIT_TIMEOUT, quit)
            .await
            .ok()
            .flatten()
    }

    /// Waits up to [`QUIT_TIMEOUT`] for the harness to exit, then kills it.
    pub(super) async fn reap(mut self) {
        if tokio::time::timeout(QUIT_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}
