//! The sink for local backends: accepts length-prefixed frames on a Unix socket, FIFO or TCP port and
//! counts the whole ones, so a case can check that nothing it published was lost.
//!
//! It runs on a thread of its own (its own single-threaded runtime), embedded in a run or standalone as
//! `taskbench sink`.

use crate::endpoint::Endpoint;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

/// Largest frame the sink accepts; a longer length prefix means the stream is not taskbench's.
pub const MAX_FRAME: usize = 64 << 20;
/// Pending connections the kernel queues for the sink (clamped to `net.core.somaxconn`). A `fresh` path
/// connects faster than one thread accepts; an overflowing queue drops SYNs and costs a 1 s retransmit.
const LISTEN_BACKLOG: u32 = 65_535;
/// How a stopping `taskbench sink` drains: it stops once nothing new arrived for `DRAIN_IDLE`, or after
/// `DRAIN_MAX` whatever is still arriving.
pub const DRAIN_IDLE: Duration = Duration::from_millis(200);
pub const DRAIN_MAX: Duration = Duration::from_secs(3);
/// Read buffer per connection: large enough for many frames per read on long-lived streams.
const READ_BUFFER: usize = 16 * 1024;

/// Running totals, updated once per read (not per frame).
#[derive(Debug, Default)]
struct Counts {
    frames: AtomicU64,
    bytes: AtomicU64,
    connections: AtomicU64,
    bad_frames: AtomicU64,
    partial_frames: AtomicU64,
}

/// What a sink has received so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SinkSnapshot {
    pub frames: u64,
    pub bytes: u64,
    pub connections: u64,
    /// Streams closed because a frame was malformed.
    pub bad_frames: u64,
    /// Streams that ended in the middle of a frame.
    pub partial_frames: u64,
}

impl fmt::Display for SinkSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} frames ({} bytes) on {} connections, {} bad, {} partial",
            self.frames, self.bytes, self.connections, self.bad_frames, self.partial_frames
        )
    }
}

/// A running sink.
pub struct Sink {
    endpoint: Endpoint,
    counts: Arc<Counts>,
    /// Stops the sink, draining for that long first (`Some`), or at once.
    shutdown: Option<oneshot::Sender<Option<Drain>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sink {
    /// Starts a sink on `endpoint` (port 0 picks a free port; a missing FIFO is created).
    pub fn start(endpoint: &Endpoint) -> io::Result<Sink> {
        let counts = Arc::new(Counts::default());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<Endpoint>>();
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let thread_counts = counts.clone();
        let endpoint = endpoint.clone();
        let thread = std::thread::Builder::new()
            .name("taskbench-sink".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(serve(endpoint, thread_counts, ready_tx, shutdown_rx));
            })?;
        let bound = ready_rx
            .recv()
            .map_err(|_| io::Error::other("the sink thread ended before it was ready"))??;
        Ok(Sink {
            endpoint: bound,
            counts,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        })
    }

    /// Where the sink listens (with the real port when 0 was asked for).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Totals so far.
    pub fn snapshot(&self) -> SinkSnapshot {
        let c = &self.counts;
        SinkSnapshot {
            frames: c.frames.load(Relaxed),
            bytes: c.bytes.load(Relaxed),
            connections: c.connections.load(Relaxed),
            bad_frames: c.bad_frames.load(Relaxed),
            partial_frames: c.partial_frames.load(Relaxed),
        }
    }

    /// Stops the sink and returns its totals.
    pub fn stop(mut self) -> SinkSnapshot {
        self.shutdown_now(None);
        self.snapshot()
    }

    /// Stops the sink after draining: it accepts every connection still queued for it and reads them all
    /// until nothing new arrived for `idle` (or `max` passed), then returns its totals. What a standalone
    /// sink stopped right after a run must do, when the run's last connections were not yet accepted.
    pub fn drain_and_stop(mut self, idle: Duration, max: Duration) -> SinkSnapshot {
        self.shutdown_now(Some(Drain { idle, max }));
        self.snapshot()
    }

    fn shutdown_now(&mut self, drain: Option<Drain>) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(drain);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.shutdown_now(None);
    }
}

/// How long a stopping sink goes on reading.
#[derive(Clone, Copy, Debug)]
pub struct Drain {
    idle: Duration,
    max: Duration,
}

/// What the sink accepts connections on (a FIFO has no connections: its reader runs from the start).
enum Listener {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
    Fifo,
}

impl Listener {
    /// Waits for one connection and starts reading it on a task of its own.
    async fn accept_one(&self, counts: &Arc<Counts>) {
        match self {
            Listener::Unix(l) => {
                if let Ok((stream, _)) = l.accept().await {
                    tokio::spawn(read_frames(stream, counts.clone()));
                }
            }
            Listener::Tcp(l) => {
                if let Ok((stream, _)) = l.accept().await {
                    tokio::spawn(read_frames(stream, counts.clone()));
                }
            }
            Listener::Fifo => std::future::pending().await,
        }
    }
}

async fn serve(
    endpoint: Endpoint,
    counts: Arc<Counts>,
    ready: std::sync::mpsc::Sender<io::Result<Endpoint>>,
    mut shutdown: oneshot::Receiver<Option<Drain>>,
) {
    let listener = match listen(&endpoint, &counts) {
        Ok((listener, bound)) => {
            let _ = ready.send(Ok(bound));
            listener
        }
        Err(e) => {
            let _ = ready.send(Err(name_error(e, &endpoint)));
            return;
        }
    };
    let drain = loop {
        tokio::select! {
            biased;
            stop = &mut shutdown => break stop.ok().flatten(),
            () = listener.accept_one(&counts) => {}
        }
    };
    if let Some(drain) = drain {
        drain_until_idle(&listener, &counts, drain).await;
    }
    if let Endpoint::Unix(path) = &endpoint {
        let _ = std::fs::remove_file(path);
    }
}

/// Starts listening on `endpoint` (for a FIFO: starts reading it); returns the listener and where it is
/// bound.
fn listen(endpoint: &Endpoint, counts: &Arc<Counts>) -> io::Result<(Listener, Endpoint)> {
    match endpoint {
        Endpoint::Unix(path) => {
            let socket = tokio::net::UnixSocket::new_stream()?;
            socket.bind(path)?;
            Ok((
                Listener::Unix(socket.listen(LISTEN_BACKLOG)?),
                endpoint.clone(),
            ))
        }
        Endpoint::Tcp(addr) => {
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()
            } else {
                tokio::net::TcpSocket::new_v6()
            }?;
            socket.set_reuseaddr(true)?;
            socket.bind(*addr)?;
            let listener = socket.listen(LISTEN_BACKLOG)?;
            let bound = listener
                .local_addr()
                .map(Endpoint::Tcp)
                .unwrap_or(endpoint.clone());
            Ok((Listener::Tcp(listener), bound))
        }
        Endpoint::Fifo(path) => {
            make_fifo(path)?;
            // Read-write keeps the pipe open between writers, so it never reads end-of-file.
            let receiver = tokio::net::unix::pipe::OpenOptions::new()
                .read_write(true)
                .open_receiver(path)?;
            tokio::spawn(read_frames(receiver, counts.clone()));
            Ok((Listener::Fifo, endpoint.clone()))
        }
    }
}

/// Accepts and reads until nothing new (no connection, no byte) arrived for `drain.idle`, or `drain.max`
/// passed.
async fn drain_until_idle(listener: &Listener, counts: &Arc<Counts>, drain: Drain) {
    let started = Instant::now();
    let activity = || (counts.connections.load(Relaxed), counts.bytes.load(Relaxed));
    let mut last = activity();
    let mut changed = started;
    let poll = (drain.idle / 10).max(Duration::from_millis(1));
    while changed.elapsed() < drain.idle && started.elapsed() < drain.max {
        // A timed-out accept (cancel-safe) yields to the readers in the meantime.
        let _ = tokio::time::timeout(poll, listener.accept_one(counts)).await;
        let now = activity();
        if now != last {
            last = now;
            changed = Instant::now();
        }
    }
}

fn name_error(e: io::Error, endpoint: &Endpoint) -> io::Error {
    io::Error::new(e.kind(), format!("cannot listen on {endpoint}: {e}"))
}

fn make_fifo(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_fifo() => Ok(()),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a FIFO",
        )),
        Err(_) => nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(io::Error::from),
    }
}

/// Reads one stream to its end, counting whole frames.
async fn read_frames<R: tokio::io::AsyncRead + Unpin>(mut stream: R, counts: Arc<Counts>) {
    counts.connections.fetch_add(1, Relaxed);
    let mut buf = vec![0u8; READ_BUFFER];
    let mut frames = FrameCounter::default();
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        counts.bytes.fetch_add(n as u64, Relaxed);
        match frames.feed(&buf[..n]) {
            Ok(whole) => {
                counts.frames.fetch_add(whole, Relaxed);
            }
            Err(whole) => {
                counts.frames.fetch_add(whole, Relaxed);
                counts.bad_frames.fetch_add(1, Relaxed);
                return;
            }
        }
    }
    if frames.mid_frame() {
        counts.partial_frames.fetch_add(1, Relaxed);
    }
}

/// Splits a byte stream into `[u32 big-endian length][payload]` frames and counts the whole ones.
#[derive(Debug, Default)]
pub struct FrameCounter {
    header: [u8; 4],
    header_len: usize,
    remaining: usize,
    check_first_byte: bool,
}

impl FrameCounter {
    /// Consumes `data`; returns the frames it completed, or `Err(completed)` at a malformed frame (a zero or
    /// oversized length, or a payload that is not a JSON object).
    pub fn feed(&mut self, mut data: &[u8]) -> Result<u64, u64> {
        let mut whole = 0;
        while !data.is_empty() {
            if self.remaining == 0 {
                let take = (4 - self.header_len).min(data.len());
                self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
                self.header_len += take;
                data = &data[take..];
                if self.header_len == 4 {
                    let len = u32::from_be_bytes(self.header) as usize;
                    if len == 0 || len > MAX_FRAME {
                        return Err(whole);
                    }
                    self.remaining = len;
                    self.header_len = 0;
                    self.check_first_byte = true;
                }
            } else {
                if self.check_first_byte {
                    if data[0] != b'{' {
                        return Err(whole);
                    }
                    self.check_first_byte = false;
                }
                let take = self.remaining.min(data.len());
                self.remaining -= take;
                data = &data[take..];
                if self.remaining == 0 {
                    whole += 1;
                }
            }
        }
        Ok(whole)
    }

    /// Whether the stream stopped inside a frame.
    pub fn mid_frame(&self) -> bool {
        self.header_len > 0 || self.remaining > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &str) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(payload.as_bytes());
        f
    }

    #[test]
    fn counts_frames_split_anywhere() {
        let mut stream = Vec::new();
        for _ in 0..5 {
            stream.extend(frame("{\"body\": 1}"));
        }
        for chunk in [1, 3, 7, 64] {
            let mut c = FrameCounter::default();
            let total: u64 = stream.chunks(chunk).map(|p| c.feed(p).unwrap()).sum();
            assert_eq!(total, 5, "chunk {chunk}");
            assert!(!c.mid_frame());
        }
        let mut c = FrameCounter::default();
        assert_eq!(c.feed(&stream[..stream.len() - 2]), Ok(4));
        assert!(c.mid_frame(), "a cut frame is not counted");
    }

    #[test]
    fn rejects_streams_that_are_not_frames() {
        let mut c = FrameCounter::default();
        let mut s = frame("{}");
        s.extend(frame("GET / HTTP/1.1"));
        assert_eq!(c.feed(&s), Err(1));
        assert_eq!(FrameCounter::default().feed(&[0, 0, 0, 0]), Err(0));
        assert_eq!(
            FrameCounter::default().feed(&[0xff, 0xff, 0xff, 0xff]),
            Err(0)
        );
    }

    #[test]
    fn endpoints_parse_and_print() {
        for s in ["unix:/tmp/a.sock", "fifo:/tmp/f", "tcp:127.0.0.1:7000"] {
            assert_eq!(s.parse::<Endpoint>().unwrap().to_string(), s);
        }
        assert_eq!(
            "tcp:localhost".parse::<Endpoint>().unwrap_err(),
            "\"tcp:localhost\": invalid socket address syntax; expected unix:PATH, fifo:PATH or tcp:IP:PORT"
        );
        assert!("udp:1".parse::<Endpoint>().is_err());
    }

    #[tokio::test]
    async fn sink_counts_what_a_client_sends() {
        use tokio::io::AsyncWriteExt;
        let dir = tempfile::tempdir().unwrap();
        for ep in [
            Endpoint::Unix(dir.path().join("s.sock")),
            Endpoint::Fifo(dir.path().join("s.fifo")),
            Endpoint::Tcp("127.0.0.1:0".parse().unwrap()),
        ] {
            let sink = Sink::start(&ep).unwrap();
            let data = [frame("{\"a\": 1}"), frame("{\"b\": 2}")].concat();
            match sink.endpoint() {
                Endpoint::Unix(p) => tokio::net::UnixStream::connect(p)
                    .await
                    .unwrap()
                    .write_all(&data)
                    .await
                    .unwrap(),
                Endpoint::Tcp(a) => tokio::net::TcpStream::connect(a)
                    .await
                    .unwrap()
                    .write_all(&data)
                    .await
                    .unwrap(),
                Endpoint::Fifo(p) => tokio::net::unix::pipe::OpenOptions::new()
                    .open_sender(p)
                    .unwrap()
                    .write_all(&data)
                    .await
                    .unwrap(),
            }
            let mut settle = crate::settle::Settle::new(crate::backend::local::SETTLE);
            while !settle.done(sink.snapshot().frames, 2) {
                tokio::time::sleep(settle.rules.poll).await;
            }
            assert_eq!(sink.snapshot().frames, 2, "{ep}");
            assert_eq!(sink.stop().frames, 2);
        }
    }
}
