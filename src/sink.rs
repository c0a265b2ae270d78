//! The sink for local backends: accepts length-prefixed frames on a Unix socket, FIFO or TCP port and
//! counts the whole ones, so a case can check that nothing it published was lost.
//!
//! It runs on a thread of its own (its own single-threaded runtime), embedded in a run or standalone as
//! `taskbench sink`. It holds at most a bounded number of connections open (a share of the process's
//! descriptor limit): at the bound it stops accepting, and the listen backlog pushes back on the publishers.

use crate::endpoint::Endpoint;
use std::fmt;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::io::unix::AsyncFd;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

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
/// Descriptors a sink leaves to the rest of its process (stdio, the runtime, the files a run writes): the
/// same reserve the run's preflight check counts (`run/preflight.rs`).
const RESERVED_DESCRIPTORS: u64 = 64;
/// The most connections a sink holds open, whatever the descriptor limit.
const MAX_OPEN_CAP: u64 = 1 << 20;
/// How long the sink waits before accepting again when the process or the system is out of descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(10);

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
    /// Starts a standalone sink on `endpoint` (port 0 picks a free port; a missing FIFO is created): the
    /// process's descriptors are the sink's, less a reserve.
    pub fn start(endpoint: &Endpoint) -> io::Result<Sink> {
        Sink::start_holding(endpoint, max_open(0))
    }

    /// Starts a sink embedded in a run whose `publishers` hold a descriptor each: the sink leaves them theirs,
    /// so a publisher's connect never fails for lack of one.
    pub fn start_embedded(endpoint: &Endpoint, publishers: usize) -> io::Result<Sink> {
        Sink::start_holding(endpoint, max_open(publishers as u64))
    }

    /// Starts a sink that holds at most `max_open` connections open at once (at least one).
    fn start_holding(endpoint: &Endpoint, max_open: usize) -> io::Result<Sink> {
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
                let open = Arc::new(Semaphore::new(max_open.max(1)));
                rt.block_on(serve(endpoint, thread_counts, open, ready_tx, shutdown_rx));
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

/// The most connections a sink may hold open when `others` descriptors of its process belong to someone
/// else: the soft descriptor limit less those and [`RESERVED_DESCRIPTORS`].
fn max_open(others: u64) -> usize {
    use nix::sys::resource::{Resource, getrlimit};
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
    soft.saturating_sub(RESERVED_DESCRIPTORS + others)
        .clamp(1, MAX_OPEN_CAP) as usize
}

/// What the sink accepts connections on (a FIFO has no connections: its reader runs from the start). The
/// listening sockets are plain non-blocking ones, so an accepted connection is read at once, before the
/// runtime knows of it.
enum Listener {
    Unix(AsyncFd<std::os::unix::net::UnixListener>),
    Tcp(AsyncFd<std::net::TcpListener>),
    Fifo,
}

/// An accepted connection, not yet registered with the runtime.
enum Accepted {
    Unix(std::os::unix::net::UnixStream),
    Tcp(std::net::TcpStream),
}

impl Read for Accepted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Accepted::Unix(s) => s.read(buf),
            Accepted::Tcp(s) => s.read(buf),
        }
    }
}

/// What one sink's accept loop holds.
struct Acceptor {
    listener: Listener,
    counts: Arc<Counts>,
    /// One permit per connection held open: at none left the sink stops accepting.
    open: Arc<Semaphore>,
    /// Where a just-accepted connection is read.
    buf: Vec<u8>,
}

impl Acceptor {
    /// Waits for a free slot and one connection, and reads it: at once what it already holds (a `fresh`
    /// publisher's frame and end of stream often arrive before the sink accepts), the rest on a task of
    /// its own. Cancel-safe.
    async fn accept_one(&mut self) {
        if let Listener::Fifo = self.listener {
            return std::future::pending().await;
        }
        let Ok(slot) = self.open.clone().acquire_owned().await else {
            return std::future::pending().await;
        };
        let mut stream = match self.listener.accept().await {
            Ok(stream) => stream,
            Err(e) if out_of_descriptors(&e) => {
                // Someone else in the process holds them: try again later rather than spin.
                tokio::time::sleep(ACCEPT_PAUSE).await;
                return;
            }
            Err(_) => return,
        };
        self.counts.connections.fetch_add(1, Relaxed);
        let mut frames = FrameCounter::default();
        if read_ready(&mut stream, &mut frames, &mut self.buf, &self.counts) == Reading::Ended {
            return; // closed here, with its slot
        }
        let spawned = match stream {
            Accepted::Unix(s) => tokio::net::UnixStream::from_std(s).map(|s| {
                tokio::spawn(read_frames(s, frames, self.counts.clone(), Some(slot)));
            }),
            Accepted::Tcp(s) => tokio::net::TcpStream::from_std(s).map(|s| {
                tokio::spawn(read_frames(s, frames, self.counts.clone(), Some(slot)));
            }),
        };
        if spawned.is_ok() {
            // Let the readers run before the next accept: the open connections are the readers' to close.
            tokio::task::yield_now().await;
        }
    }
}

impl Listener {
    /// Waits for one connection; returns it non-blocking.
    async fn accept(&self) -> io::Result<Accepted> {
        let accepted = match self {
            Listener::Unix(l) => {
                let (s, _) = l
                    .async_io(tokio::io::Interest::READABLE, |l| l.accept())
                    .await?;
                Accepted::Unix(s)
            }
            Listener::Tcp(l) => {
                let (s, _) = l
                    .async_io(tokio::io::Interest::READABLE, |l| l.accept())
                    .await?;
                Accepted::Tcp(s)
            }
            Listener::Fifo => return std::future::pending().await,
        };
        match &accepted {
            Accepted::Unix(s) => s.set_nonblocking(true)?,
            Accepted::Tcp(s) => s.set_nonblocking(true)?,
        }
        Ok(accepted)
    }
}

/// Whether `e` says the process or the system has no descriptor left.
fn out_of_descriptors(e: &io::Error) -> bool {
    use nix::errno::Errno;
    [Errno::EMFILE, Errno::ENFILE, Errno::ENOBUFS, Errno::ENOMEM]
        .iter()
        .any(|&errno| e.raw_os_error() == Some(errno as i32))
}

async fn serve(
    endpoint: Endpoint,
    counts: Arc<Counts>,
    open: Arc<Semaphore>,
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
    let mut acceptor = Acceptor {
        listener,
        counts,
        open,
        buf: vec![0u8; READ_BUFFER],
    };
    let drain = loop {
        tokio::select! {
            biased;
            stop = &mut shutdown => break stop.ok().flatten(),
            () = acceptor.accept_one() => {}
        }
    };
    if let Some(drain) = drain {
        drain_until_idle(&mut acceptor, drain).await;
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
            // Non-blocking, as tokio left it.
            let listener = socket.listen(LISTEN_BACKLOG)?.into_std()?;
            Ok((Listener::Unix(watch(listener)?), endpoint.clone()))
        }
        Endpoint::Tcp(addr) => {
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()
            } else {
                tokio::net::TcpSocket::new_v6()
            }?;
            socket.set_reuseaddr(true)?;
            socket.bind(*addr)?;
            let listener = socket.listen(LISTEN_BACKLOG)?.into_std()?;
            let bound = listener
                .local_addr()
                .map(Endpoint::Tcp)
                .unwrap_or(endpoint.clone());
            Ok((Listener::Tcp(watch(listener)?), bound))
        }
        Endpoint::Fifo(path) => {
            make_fifo(path)?;
            // Read-write keeps the pipe open between writers, so it never reads end-of-file.
            let receiver = tokio::net::unix::pipe::OpenOptions::new()
                .read_write(true)
                .open_receiver(path)?;
            counts.connections.fetch_add(1, Relaxed);
            let frames = FrameCounter::default();
            tokio::spawn(read_frames(receiver, frames, counts.clone(), None));
            Ok((Listener::Fifo, endpoint.clone()))
        }
    }
}

/// Registers a listening socket with the runtime, which then tells when it has connections to accept.
fn watch<L: std::os::fd::AsRawFd>(listener: L) -> io::Result<AsyncFd<L>> {
    // SAFETY: the AsyncFd owns `listener`, a std socket that owns its descriptor: it stays open, and
    // `as_raw_fd` returns the same one, until the AsyncFd drops it.
    unsafe { AsyncFd::register(listener) }.map_err(io::Error::from)
}

/// Accepts and reads until nothing new (no connection, no byte) arrived for `drain.idle`, or `drain.max`
/// passed.
async fn drain_until_idle(acceptor: &mut Acceptor, drain: Drain) {
    let started = Instant::now();
    let counts = acceptor.counts.clone();
    let activity = || (counts.connections.load(Relaxed), counts.bytes.load(Relaxed));
    let mut last = activity();
    let mut changed = started;
    let poll = (drain.idle / 10).max(Duration::from_millis(1));
    while changed.elapsed() < drain.idle && started.elapsed() < drain.max {
        // A timed-out accept (cancel-safe) yields to the readers in the meantime.
        let _ = tokio::time::timeout(poll, acceptor.accept_one()).await;
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

/// Whether a stream may have more to read.
#[derive(Debug, PartialEq, Eq)]
enum Reading {
    Open,
    Ended,
}

/// Reads what a non-blocking `stream` holds now, without waiting, counting whole frames.
fn read_ready(
    stream: &mut impl Read,
    frames: &mut FrameCounter,
    buf: &mut [u8],
    counts: &Counts,
) -> Reading {
    loop {
        match stream.read(buf) {
            Ok(0) => return ended(frames, counts),
            Ok(n) => {
                if count(&buf[..n], frames, counts) == Reading::Ended {
                    return Reading::Ended;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Reading::Open,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return ended(frames, counts),
        }
    }
}

/// Reads one stream to its end, counting whole frames (`frames` holds where an earlier read left off);
/// holds its `slot` until then.
async fn read_frames<R: tokio::io::AsyncRead + Unpin>(
    mut stream: R,
    mut frames: FrameCounter,
    counts: Arc<Counts>,
    _slot: Option<OwnedSemaphorePermit>,
) {
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if count(&buf[..n], &mut frames, &counts) == Reading::Ended {
                    return;
                }
            }
        }
    }
    ended(&frames, &counts);
}

/// Counts `data`, just read from a stream: `Ended` at a malformed frame (the stream is dropped).
fn count(data: &[u8], frames: &mut FrameCounter, counts: &Counts) -> Reading {
    counts.bytes.fetch_add(data.len() as u64, Relaxed);
    match frames.feed(data) {
        Ok(whole) => {
            counts.frames.fetch_add(whole, Relaxed);
            Reading::Open
        }
        Err(whole) => {
            counts.frames.fetch_add(whole, Relaxed);
            counts.bad_frames.fetch_add(1, Relaxed);
            Reading::Ended
        }
    }
}

/// A stream reached its end: counts the frame it cut short, if any.
fn ended(frames: &FrameCounter, counts: &Counts) -> Reading {
    if frames.mid_frame() {
        counts.partial_frames.fetch_add(1, Relaxed);
    }
    Reading::Ended
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

    #[test]
    fn a_sink_at_its_bound_accepts_again_only_when_a_connection_closes() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::start_holding(&Endpoint::Unix(dir.path().join("s.sock")), 2).unwrap();
        let Endpoint::Unix(path) = sink.endpoint().clone() else {
            unreachable!()
        };
        let wait_for = |connections: u64| {
            let mut settle = crate::settle::Settle::new(crate::backend::local::SETTLE);
            while !settle.done(sink.snapshot().connections, connections) {
                std::thread::sleep(settle.rules.poll);
            }
            sink.snapshot().connections
        };
        // Four clients connect and stay open: the sink holds two, the others wait in the backlog.
        let mut clients: Vec<_> = (0..4)
            .map(|_| std::os::unix::net::UnixStream::connect(&path).unwrap())
            .collect();
        assert_eq!(wait_for(4), 2, "held at the bound");
        // One of the held ones closes: one more is accepted.
        let first = clients.remove(0);
        drop(first);
        assert_eq!(wait_for(4), 3);
        // The waiting ones still deliver what they wrote.
        for c in &mut clients {
            c.write_all(&frame("{}")).unwrap();
        }
        drop(clients);
        let mut settle = crate::settle::Settle::new(crate::backend::local::SETTLE);
        while !settle.done(sink.snapshot().frames, 3) {
            std::thread::sleep(settle.rules.poll);
        }
        let seen = sink.stop();
        assert_eq!((seen.connections, seen.frames), (4, 3), "{seen}");
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
