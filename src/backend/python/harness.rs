//! One harness process: the script shipped inside the binary, starting it with a channel of its own (commands
//! in on descriptor 3, answers out on 4) and its stdout and stderr in a log file, waiting for its ready line,
//! asking it to quit, and telling how it ended (its exit status and the last lines it printed).

use super::protocol::{self, Ready, ReadyLine, Stats};
use super::target::Shared;
use crate::error::{ErrorKind, PublishError};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};

/// The harness, written to a temporary file for every case that runs it.
pub const HARNESS: &str = include_str!("harness.py");
/// How long a harness may take to import Celery and build its client.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a harness may take to close its connections and exit after "q".
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How many of the last lines a harness printed an error message quotes, and at most how many characters.
const LOG_TAIL_LINES: usize = 8;
const LOG_TAIL_CHARS: usize = 600;
/// How much of the end of a log is read to find those lines.
const LOG_TAIL_READ: u64 = 16 * 1024;
/// The descriptors of the harness's channel, as the harness sees them (harness.py reads and writes these).
const COMMAND_FD: i32 = 3;
const ANSWER_FD: i32 = 4;

/// How many harnesses of a case start at once: two per core, so that a case of hundreds leaves the
/// machine responsive and each harness's [`READY_TIMEOUT`] runs from its own start, not from the case's.
pub(super) fn starting_at_once() -> usize {
    2 * std::thread::available_parallelism().map_or(1, usize::from)
}

/// One running harness process and its channel.
pub(super) struct Harness {
    pub(super) child: Child,
    /// Commands to the harness (its descriptor 3).
    pub(super) commands: pipe::Sender,
    /// The harness's answers (its descriptor 4).
    pub(super) answers: BufReader<pipe::Receiver>,
    /// What the app (and Python) printed: the harness's stdout and stderr.
    pub(super) log_path: PathBuf,
    pub(super) pid: u32,
}

/// The last lines a harness printed (its log), for error messages.
pub(super) fn log_tail(path: &Path) -> String {
    let text = read_end(path).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return "it printed nothing".into();
    }
    let mut tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join(" | ");
    if let Some((i, _)) = tail.char_indices().rev().nth(LOG_TAIL_CHARS) {
        tail = format!("...{}", &tail[i..]);
    }
    format!("its output ({}) ends: {tail}", path.display())
}

/// The end of the file at `path`: its last [`LOG_TAIL_READ`] bytes at most (an app may print on every
/// publish of a long case), from the first whole line in them.
fn read_end(path: &Path) -> std::io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let from = len.saturating_sub(LOG_TAIL_READ);
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if from > 0 {
        // The first line was cut where the read began.
        text = text
            .split_once('\n')
            .map_or(String::new(), |(_, rest)| rest.to_string());
    }
    Ok(text)
}

/// A pipe whose two ends are closed on exec, each at a descriptor of 10 or more (so that moving the child's
/// end to 3 or 4 never overwrites the other).
fn channel_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let high = |fd: OwnedFd| -> std::io::Result<OwnedFd> {
        let raw = fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(10))?;
        // SAFETY: fcntl returned a new descriptor that nothing else owns.
        Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(raw) })
    };
    Ok((high(read)?, high(write)?))
}

/// A command that runs the harness with `commands` (the read end of a pipe) as its descriptor 3 and
/// `answers` (the write end of another) as its descriptor 4; every other descriptor of taskbench's is closed
/// on exec, so a harness's channel is held by it alone and its death is seen as the end of its answers.
fn with_channel(command: &mut Command, commands: &OwnedFd, answers: &OwnedFd) {
    let (commands, answers) = (commands.as_raw_fd(), answers.as_raw_fd());
    // SAFETY: between fork and exec the closure only calls dup2, which is async-signal-safe, on descriptors
    // that stay open in the parent until spawn returns; dup2 clears close-on-exec on the copies.
    unsafe {
        command.pre_exec(move || {
            for (from, to) in [(commands, COMMAND_FD), (answers, ANSWER_FD)] {
                if nix::libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Starts one harness, its output going to `log_path`, and waits for its ready line. `concurrency`: how
/// many harnesses the case starts (a readiness timeout names it: many harnesses slow each other's start).
pub(super) async fn start(
    script: &Path,
    log_path: PathBuf,
    shared: &Shared,
    config: &str,
    concurrency: usize,
) -> Result<(Harness, Ready), PublishError> {
    let setup = |message: String| PublishError::new(ErrorKind::Setup, shared.clean(&message));
    let log = std::fs::File::create(&log_path)
        .map_err(|e| setup(format!("cannot create {}: {e}", log_path.display())))?;
    let log_too = log
        .try_clone()
        .map_err(|e| setup(format!("cannot share {}: {e}", log_path.display())))?;
    let channel = || -> std::io::Result<_> { Ok((channel_pipe()?, channel_pipe()?)) };
    let ((their_commands, commands), (answers, their_answers)) =
        channel().map_err(|e| setup(format!("cannot make the harness's pipes: {e}")))?;
    let mut command = Command::new(&shared.python);
    command
        .arg("-u")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_too)
        .kill_on_drop(true);
    with_channel(&mut command, &their_commands, &their_answers);
    let spawned = command.spawn();
    // The child's ends are the child's alone: once they are closed here, its death ends the answers.
    drop((their_commands, their_answers));
    let mut child = spawned.map_err(|e| {
        setup(format!(
            "cannot run python {:?}: {e}; set `python` in the scenario, or TASKBENCH_PYTHON, to an interpreter with Celery installed (tests/run makes target/celery-venv/bin/python)",
            shared.python.display().to_string()
        ))
    })?;
    let pid = child.id().unwrap_or(0);
    let ends = pipe::Sender::from_owned_fd(commands)
        .and_then(|c| Ok((c, pipe::Receiver::from_owned_fd(answers)?)));
    let (commands, answers) = match ends {
        Ok(ends) => ends,
        Err(e) => {
            let _ = child.start_kill();
            return Err(setup(format!("cannot use the harness's pipes: {e}")));
        }
    };
    let mut harness = Harness {
        child,
        commands,
        answers: BufReader::new(answers),
        log_path,
        pid,
    };
    let handshake = async {
        harness.commands.write_all(config.as_bytes()).await.ok();
        let mut line = Vec::new();
        harness.answers.read_until(b'\n', &mut line).await.ok();
        line
    };
    let line = tokio::time::timeout(READY_TIMEOUT, handshake)
        .await
        .map_err(|_| {
            setup(format!(
                "{} (pid {pid}) was not ready within {}, one of the case's {concurrency} harnesses \
                 (concurrency {concurrency}: one Python process per publisher, {} starting at once; \
                 a lower concurrency needs fewer); {}",
                shared.label(),
                humantime::format_duration(READY_TIMEOUT),
                starting_at_once(),
                log_tail(&harness.log_path)
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
        log_tail(&harness.log_path)
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
            self.commands.write_all(protocol::QUIT).await.ok()?;
            let mut line = Vec::new();
            loop {
                line.clear();
                if self.answers.read_until(b'\n', &mut line).await.ok()? == 0 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_tail_quotes_the_last_lines_and_reads_only_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("harness-0.log");
        std::fs::write(&path, "").unwrap();
        assert_eq!(log_tail(&path), "it printed nothing");
        let mut text = "x".repeat(3 * LOG_TAIL_READ as usize);
        for i in 0..20 {
            text.push_str(&format!("\nline {i}"));
        }
        text.push_str("\n\n");
        std::fs::write(&path, text).unwrap();
        let tail = log_tail(&path);
        assert_eq!(
            tail,
            format!(
                "its output ({}) ends: line 12 | line 13 | line 14 | line 15 | line 16 | line 17 | line 18 | line 19",
                path.display()
            )
        );
        assert!(log_tail(&dir.path().join("none")).ends_with("it printed nothing"));
    }
}
