//! The sink for local backends: accepts length-prefixed frames on a Unix socket, FIFO or TCP port and
//! counts the whole ones, so a case can check that nothing it published was lost.
//!
//! It runs on a thread of its own (its own single-threaded runtime), embedded in a run or standalone as
//! `taskbench sink`. It holds at most a bounded number of connections open (a share of the process's
//! descriptor limit): at the bound it stops accepting, and the listen backlog pushes back on the publishers.
//!
//! `accept.rs` holds the listening side and the bound on open connections, `frames.rs` the reading and
//! counting of frames, `threads.rs` the threads a long-lived connection is read on.

mod accept;
mod frames;
mod threads;

use crate::endpoint::Endpoint;
use accept::{Acceptor, listen, max_open, name_error};
use frames::READ_BUFFER;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, oneshot};

/// Largest frame the sink accepts; a longer length prefix means the stream is not taskbench's.
pub const MAX_FRAME: usize = 64 << 20;
/// How a stopping `taskbench sink` drains: it stops once nothing new arrived for `DRAIN_IDLE`, or after
/// `DRAIN_MAX` whatever is still arriving.
pub const DRAIN_IDLE: Duration = Duration::from_millis(200);
pub const DRAIN_MAX: Duration = Duration::from_secs(3);

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
    /// The threads its long-lived connections are read on.
    #[cfg(test)]
    reader_threads: Arc<threads::ReaderThreads>,
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
        let reader_threads = Arc::new(threads::ReaderThreads::default());
        let serve_threads = reader_threads.clone();
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
                rt.block_on(serve(
                    endpoint,
                    thread_counts,
                    open,
                    serve_threads,
                    ready_tx,
                    shutdown_rx,
                ));
            })?;
        let bound = ready_rx
            .recv()
            .map_err(|_| io::Error::other("the sink thread ended before it was ready"))??;
        Ok(Sink {
            endpoint: bound,
            counts,
            shutdown: Some(shutdown_tx),
            #[cfg(test)]
            reader_threads,
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

async fn serve(
    endpoint: Endpoint,
    counts: Arc<Counts>,
    open: Arc<Semaphore>,
    threads: Arc<threads::ReaderThreads>,
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
        threads,
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
    acceptor.threads.stop_all();
    if let Endpoint::Unix(path) = &endpoint {
        let _ = std::fs::remove_file(path);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use frames::tests::frame;

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

    /// Stops `sink` on another thread and returns its totals, failing the test with `stuck` if the stop
    /// takes over 10 s.
    fn stop_within_10s(sink: Sink, stuck: &str) -> SinkSnapshot {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(sink.stop()));
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{stuck}"))
    }

    /// A plain blocking client of a socket sink.
    fn connect(sink: &Sink) -> Box<dyn std::io::Write + Send> {
        match sink.endpoint() {
            Endpoint::Unix(p) => Box::new(std::os::unix::net::UnixStream::connect(p).unwrap()),
            Endpoint::Tcp(a) => Box::new(std::net::TcpStream::connect(a).unwrap()),
            Endpoint::Fifo(_) => unreachable!("a FIFO has no connections"),
        }
    }

    #[test]
    fn a_long_lived_connection_is_read_on_a_thread_that_a_stop_ends() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        for ep in [
            Endpoint::Unix(dir.path().join("s.sock")),
            Endpoint::Tcp("127.0.0.1:0".parse().unwrap()),
        ] {
            let sink = Sink::start(&ep).unwrap();
            let mut client = connect(&sink);
            // One frame at a time, each read before the next is written: one read each.
            let sent = u64::from(threads::LONG_LIVED_READS) + 4;
            for n in 1..=sent {
                client.write_all(&frame("{\"n\": 1}")).unwrap();
                let mut settle = crate::settle::Settle::new(crate::backend::local::SETTLE);
                while !settle.done(sink.snapshot().frames, n) {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            assert_eq!(sink.reader_threads.running(), 1, "{ep}: moved to a thread");
            // The client stays connected: stopping the sink still ends the thread (`stop` waits for it),
            // and nothing is lost.
            let seen = stop_within_10s(
                sink,
                &format!("{ep}: the stop still waits for its reader thread"),
            );
            assert_eq!(seen.frames, sent, "{ep}: {seen}");
            drop(client);
        }
    }

    #[test]
    fn a_stop_ends_a_reader_thread_whose_writer_keeps_sending() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        for ep in [
            Endpoint::Unix(dir.path().join("s.sock")),
            Endpoint::Tcp("127.0.0.1:0".parse().unwrap()),
        ] {
            let sink = Sink::start(&ep).unwrap();
            let mut client = connect(&sink);
            // Writes until the sink is gone (a TCP peer may go on sending after a shutdown for reading).
            // Many frames per write, so the reader (16 KiB a read) never finds the socket empty.
            let writer = std::thread::spawn(move || {
                let frames = frame("{\"n\": 1}").repeat(64 * 1024);
                while client.write_all(&frames).is_ok() {}
            });
            let moved = Instant::now();
            while sink.reader_threads.running() == 0 && moved.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(2));
            }
            assert_eq!(sink.reader_threads.running(), 1, "{ep}: moved to a thread");
            let seen = stop_within_10s(
                sink,
                &format!("{ep}: the stop waits for a writer that keeps sending"),
            );
            assert!(seen.frames > 16, "{ep}: {seen}");
            writer.join().unwrap();
        }
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
