//! Local raw transports (`unix`, `fifo`, `tcp`): framed Celery messages straight onto a stream, to the
//! embedded sink or to an external `taskbench sink`.
//!
//! `fresh` connects (for a FIFO: opens) for every publish and closes after it; `raw` keeps one stream per
//! publisher for the whole case and reconnects only after a failure.

use crate::catalog::{Backend, PathKind};
use crate::endpoint::Endpoint;
use crate::engine::{Publisher, Target};
use crate::error::{ErrorKind, PublishError};
use crate::message::TaskMessage;
use crate::scenario::{Case, LocalOptions};
use crate::settle::{Settle, SettleRules};
use crate::sink::Sink;
use crate::stage::{Stage, StageClock};
use std::io;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// How long to wait for the sink to read what was written: it reads asynchronously, in-process.
pub const SETTLE: SettleRules = SettleRules {
    poll: Duration::from_millis(2),
    quiet: Duration::from_millis(500),
    limit: Duration::from_secs(10),
};

/// How long a publisher waits before connecting again to a Unix socket whose listen backlog was full, at
/// first; each further try waits twice as long, up to [`BACKLOG_WAIT_MAX`].
const BACKLOG_WAIT: Duration = Duration::from_millis(1);
const BACKLOG_WAIT_MAX: Duration = Duration::from_millis(64);

/// A write to a socket whose reader has gone fails with `EPIPE` instead of raising SIGPIPE.
const NO_SIGNAL: i32 = nix::libc::MSG_NOSIGNAL;

/// The stream one local publisher writes to: a plain non-blocking descriptor, outside the runtime's epoll.
///
/// A write is one `send()`/`write()` syscall straight from the publish. The descriptor is registered with the
/// runtime only while the kernel's buffer is full ([`LocalStream::writable`]): a Unix socket registered with
/// epoll wakes the runtime's parked thread (`EPOLLOUT`) every time its reader frees room, which on the raw
/// path is a thread wake-up every few publishes (docs/benchmarks.md, "How the raw path reaches the
/// socket").
enum LocalStream {
    Unix(std::os::unix::net::UnixStream),
    Tcp(std::net::TcpStream),
    Fifo(std::fs::File),
}

impl LocalStream {
    async fn connect(endpoint: &Endpoint) -> io::Result<LocalStream> {
        Ok(match endpoint {
            Endpoint::Unix(path) => LocalStream::Unix(connect_unix(path).await?.into_std()?),
            Endpoint::Tcp(addr) => {
                let s = tokio::net::TcpStream::connect(addr).await?;
                // Every publish goes out when written, as a task publish would.
                s.set_nodelay(true)?;
                LocalStream::Tcp(s.into_std()?)
            }
            Endpoint::Fifo(path) => LocalStream::Fifo(
                tokio::net::unix::pipe::OpenOptions::new()
                    .open_sender(path)?
                    .into_nonblocking_fd()?
                    .into(),
            ),
        })
    }

    /// Writes `frame`, timed as the `send` stage: one non-blocking write, which is all a publish costs while
    /// the kernel has room. Only when it had none (or took part of the frame) does the rest wait, in
    /// [`LocalStream::write_rest`], racing the publish's timeout and the interrupt like any wait. A publisher
    /// whose writes never wait lets the others on its thread run between publishes (the engine's
    /// `YieldTurns`).
    async fn send_frame(&mut self, frame: &[u8], clock: &mut StageClock) -> io::Result<()> {
        let first = clock.time_sync(Stage::Send, || self.write(frame));
        let rest = match first {
            Ok(n) if n == frame.len() => return Ok(()),
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => &frame[n..],
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                frame
            }
            Err(e) => return Err(e),
        };
        clock.time(Stage::Send, self.write_rest(rest)).await
    }

    /// Writes all of `bytes`, waiting whenever the kernel's buffer is full.
    #[cold]
    async fn write_rest(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// One non-blocking write: `send()` with `MSG_NOSIGNAL` on a socket (a closed peer is an error, never a
    /// SIGPIPE), `write()` on a FIFO.
    #[inline]
    fn write(&self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            LocalStream::Unix(s) => send(s.as_fd(), bytes),
            LocalStream::Tcp(s) => send(s.as_fd(), bytes),
            LocalStream::Fifo(f) => (&*f).write(bytes),
        }
    }

    /// Waits until the kernel has room for a write: the descriptor is registered with the runtime for this
    /// wait only (and deregistered when it ends, or when the publish is cancelled).
    #[cold]
    async fn writable(&self) -> io::Result<()> {
        // SAFETY: the descriptor is borrowed from `self`, so it stays open and the same for as long as the
        // AsyncFd lives (it is dropped, and deregistered, before this returns or is cancelled).
        let fd = unsafe { AsyncFd::register_with_interest(self.as_fd(), Interest::WRITABLE) }
            .map_err(io::Error::from)?;
        let _ready = fd.writable().await?;
        Ok(())
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            LocalStream::Unix(s) => s.as_fd(),
            LocalStream::Tcp(s) => s.as_fd(),
            LocalStream::Fifo(f) => f.as_fd(),
        }
    }

    /// Ends the stream: a socket is shut down for writing (the sink reads to its end), then closed.
    fn close(self) {
        match self {
            LocalStream::Unix(s) => {
                let _ = s.shutdown(std::net::Shutdown::Write);
            }
            LocalStream::Tcp(s) => {
                let _ = s.shutdown(std::net::Shutdown::Write);
            }
            LocalStream::Fifo(f) => drop(f),
        }
    }
}

/// `send()` with `MSG_NOSIGNAL`, made as the bare syscall: glibc's `send()` is a thread-cancellation point,
/// which wraps every call in two atomic operations that taskbench, which never cancels a thread, does not
/// need (measured in docs/benchmarks.md, "How the raw path reaches the socket").
#[inline]
fn send(fd: BorrowedFd<'_>, bytes: &[u8]) -> io::Result<usize> {
    use nix::libc;
    use std::os::fd::AsRawFd;
    // SAFETY: the syscall reads `bytes.len()` bytes from `bytes`, which outlives it, and writes nothing
    // of ours; the descriptor is borrowed, so open, for the call.
    let sent = unsafe {
        libc::syscall(
            libc::SYS_sendto,
            libc::c_long::from(fd.as_raw_fd()),
            bytes.as_ptr(),
            bytes.len(),
            libc::c_long::from(NO_SIGNAL),
            std::ptr::null::<libc::sockaddr>(),
            0 as libc::c_long,
        )
    };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

/// Connects to a Unix socket, waiting while its listen backlog is full: Linux refuses a non-blocking connect
/// then (EAGAIN) where a blocking one would wait for room, and a sink that does not accept for a moment is
/// pushing back, not gone. The wait ends with the publish (`publish_timeout`, an interrupt).
async fn connect_unix(path: &std::path::Path) -> io::Result<tokio::net::UnixStream> {
    let mut wait = BACKLOG_WAIT;
    loop {
        match tokio::net::UnixStream::connect(path).await {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(BACKLOG_WAIT_MAX);
            }
            connected => return connected,
        }
    }
}

/// A case on a local backend: where to write, and the embedded sink if the case has no `address`.
pub struct LocalTarget {
    endpoint: Arc<Endpoint>,
    keep_open: bool,
    sink: Option<Sink>,
    embedded: bool,
    /// The case's publishers, each holding a descriptor the embedded sink leaves them.
    publishers: usize,
    /// Holds the embedded sink's socket or FIFO; removed when the case ends.
    _dir: Option<tempfile::TempDir>,
}

impl LocalTarget {
    pub fn new(case: &Case, o: &LocalOptions) -> io::Result<Self> {
        let keep_open = case.path == PathKind::Raw;
        if let Some(endpoint) = &o.address {
            return Ok(LocalTarget {
                endpoint: Arc::new(endpoint.clone()),
                keep_open,
                sink: None,
                embedded: false,
                publishers: case.concurrency,
                _dir: None,
            });
        }
        let dir = tempfile::Builder::new().prefix("taskbench-").tempdir()?;
        let endpoint = match case.backend {
            Backend::Unix => Endpoint::Unix(dir.path().join("sink.sock")),
            Backend::Fifo => Endpoint::Fifo(dir.path().join("sink.fifo")),
            _ => Endpoint::Tcp(([127, 0, 0, 1], 0).into()),
        };
        Ok(LocalTarget {
            endpoint: Arc::new(endpoint),
            keep_open,
            sink: None,
            embedded: true,
            publishers: case.concurrency,
            _dir: Some(dir),
        })
    }
}

impl Target for LocalTarget {
    type Publisher = LocalPublisher;

    async fn prepare(&mut self) -> Result<(), PublishError> {
        if self.embedded {
            let sink = Sink::start_embedded(&self.endpoint, self.publishers).map_err(|e| {
                PublishError::new(
                    ErrorKind::Setup,
                    format!("the embedded sink did not start: {e}"),
                )
            })?;
            self.endpoint = Arc::new(sink.endpoint().clone());
            self.sink = Some(sink);
        }
        Ok(())
    }

    fn publisher(&self, _worker: usize) -> LocalPublisher {
        LocalPublisher {
            endpoint: self.endpoint.clone(),
            keep_open: self.keep_open,
            stream: None,
            dirty: false,
        }
    }

    async fn delivered(&mut self, expected: u64) -> Result<Option<u64>, PublishError> {
        let Some(sink) = &self.sink else {
            return Ok(None);
        };
        let mut settle = Settle::new(SETTLE);
        loop {
            let frames = sink.snapshot().frames;
            if settle.done(frames, expected) {
                return Ok(Some(frames));
            }
            tokio::time::sleep(settle.rules.poll).await;
        }
    }

    async fn finish(&mut self) {
        if let Some(sink) = self.sink.take() {
            let snapshot = sink.stop();
            if snapshot.bad_frames + snapshot.partial_frames > 0 {
                tracing::warn!("sink saw {snapshot}");
            }
        }
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = vec![
            "latency is time-to-socket: the write returned; the sink reads asynchronously"
                .to_string(),
        ];
        if !self.embedded {
            notes.push(format!(
                "external sink at {}: delivery is not verified here; the sink prints what it received when stopped",
                self.endpoint
            ));
        }
        notes
    }
}

/// One publisher on a local stream.
pub struct LocalPublisher {
    endpoint: Arc<Endpoint>,
    keep_open: bool,
    stream: Option<LocalStream>,
    /// A write was cancelled part-way (timeout): the stream may hold half a frame and must not be reused.
    dirty: bool,
}

impl Publisher for LocalPublisher {
    async fn publish(
        &mut self,
        batch: &[TaskMessage],
        clock: &mut StageClock,
    ) -> Result<(), PublishError> {
        for message in batch {
            if std::mem::take(&mut self.dirty) {
                self.stream = None;
            }
            if self.stream.is_none() {
                let stream = clock
                    .time(Stage::Connect, LocalStream::connect(&self.endpoint))
                    .await
                    .map_err(|e| connect_error(&self.endpoint, e))?;
                self.stream = Some(stream);
            }
            self.dirty = true;
            let stream = self.stream.as_mut().expect("connected above");
            let written = stream.send_frame(message.frame(), clock).await;
            self.dirty = false;
            if let Err(e) = written {
                self.stream = None;
                return Err(PublishError::new(
                    ErrorKind::Send,
                    format!("write to {} failed: {e}", self.endpoint),
                ));
            }
            if !self.keep_open {
                let stream = self.stream.take().expect("connected above");
                clock.time_sync(Stage::Close, || stream.close());
            }
        }
        Ok(())
    }

    async fn close(&mut self) {
        if let Some(stream) = self.stream.take() {
            stream.close();
        }
    }
}

fn connect_error(endpoint: &Endpoint, e: io::Error) -> PublishError {
    use nix::errno::Errno;
    let errno = e.raw_os_error().map(Errno::from_raw);
    let hint = match (endpoint, errno) {
        (Endpoint::Fifo(_), Some(Errno::ENXIO)) => {
            "; no sink has the FIFO open: start `taskbench sink --listen fifo:PATH`"
        }
        (_, Some(Errno::EMFILE)) => {
            "; this process has no file descriptor left: raise `ulimit -n` or lower `concurrency`"
        }
        (_, Some(Errno::ENFILE)) => "; the system has no file descriptor left (fs.file-max)",
        (Endpoint::Tcp(_), Some(Errno::EADDRNOTAVAIL)) => {
            "; no local port is free (each closed connection holds one in TIME_WAIT for a while)"
        }
        (_, Some(Errno::ENOENT | Errno::ECONNREFUSED)) => {
            "; is a `taskbench sink` listening there?"
        }
        _ => "",
    };
    PublishError::new(
        ErrorKind::Unreachable,
        format!("cannot connect to {endpoint}: {e}{hint}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_unix_connect_waits_while_the_backlog_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let socket = tokio::net::UnixSocket::new_stream().unwrap();
        socket.bind(&path).unwrap();
        let listener = socket.listen(1).unwrap();
        // Nothing accepted yet: connect until a plain non-blocking connect is refused.
        let mut queued = Vec::new();
        let refused = loop {
            match tokio::net::UnixStream::connect(&path).await {
                Ok(s) => queued.push(s),
                Err(e) => break e,
            }
            assert!(queued.len() < 100, "the backlog never filled");
        };
        assert_eq!(refused.kind(), io::ErrorKind::WouldBlock, "{refused}");
        let waiting = tokio::spawn({
            let path = path.clone();
            async move { connect_unix(&path).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "it waits for room");
        let _accepted = listener.accept().await.unwrap();
        waiting
            .await
            .unwrap()
            .expect("connected once there was room");
    }

    #[tokio::test]
    async fn a_write_to_a_full_socket_waits_for_room_and_writes_everything() {
        use std::io::Read;
        let (writer, mut reader) = std::os::unix::net::UnixStream::pair().unwrap();
        writer.set_nonblocking(true).unwrap();
        // Far more than the socket's buffer holds: the write has to wait for the reader.
        let bytes: Vec<u8> = (0..4 << 20).map(|i| i as u8).collect();
        let expected = bytes.clone();
        let writing = tokio::spawn(async move {
            let mut stream = LocalStream::Unix(writer);
            let mut clock = StageClock::new(true);
            let out = stream.send_frame(&bytes, &mut clock).await;
            stream.close();
            out
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!writing.is_finished(), "it waits while nothing reads");
        let read = std::thread::spawn(move || {
            let mut got = Vec::new();
            reader.read_to_end(&mut got).unwrap();
            got
        });
        writing.await.unwrap().expect("written once there was room");
        assert!(read.join().unwrap() == expected, "every byte, in order");
    }

    #[test]
    fn a_failed_connect_says_what_ran_out() {
        let unix = Endpoint::Unix("/tmp/s.sock".into());
        let message = |errno: nix::errno::Errno| {
            connect_error(&unix, io::Error::from_raw_os_error(errno as i32)).message
        };
        let emfile = message(nix::errno::Errno::EMFILE);
        assert!(
            emfile.contains("this process has no file descriptor left"),
            "{emfile}"
        );
        assert!(!emfile.contains("listening"), "{emfile}");
        let refused = message(nix::errno::Errno::ECONNREFUSED);
        assert!(
            refused.ends_with("is a `taskbench sink` listening there?"),
            "{refused}"
        );
    }
}
