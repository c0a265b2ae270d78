//! Accepting for the sink: its listening socket (or FIFO), the bound on the connections it holds open, and
//! the read of each connection at the moment it is accepted.

use super::Counts;
use super::frames::{FrameCounter, Reading, read_frames, read_ready, read_socket};
use super::threads::ReaderThreads;
use crate::endpoint::Endpoint;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::Semaphore;

/// Pending connections the kernel queues for the sink (clamped to `net.core.somaxconn`). A `fresh` path
/// connects faster than one thread accepts; an overflowing queue drops SYNs and costs a 1 s retransmit.
const LISTEN_BACKLOG: u32 = 65_535;
/// Descriptors a sink leaves to the rest of its process: the reserve the run's preflight check counts too.
const RESERVED_DESCRIPTORS: u64 = crate::host::BASE_DESCRIPTORS;
/// The most connections a sink holds open, whatever the descriptor limit.
const MAX_OPEN_CAP: u64 = 1 << 20;
/// How long the sink waits before accepting again when the process or the system is out of descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(10);

/// The most connections a sink may hold open when `others` descriptors of its process belong to someone
/// else: the soft descriptor limit less those and [`RESERVED_DESCRIPTORS`].
pub(super) fn max_open(others: u64) -> usize {
    use nix::sys::resource::{Resource, getrlimit};
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
    soft.saturating_sub(RESERVED_DESCRIPTORS + others)
        .clamp(1, MAX_OPEN_CAP) as usize
}

/// What the sink accepts connections on (a FIFO has no connections: its reader runs from the start). The
/// listening sockets are plain non-blocking ones, so an accepted connection is read at once, before the
/// runtime knows of it.
pub(super) enum Listener {
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
pub(super) struct Acceptor {
    pub(super) listener: Listener,
    pub(super) counts: Arc<Counts>,
    /// One permit per connection held open: at none left the sink stops accepting.
    pub(super) open: Arc<Semaphore>,
    /// Where a just-accepted connection is read.
    pub(super) buf: Vec<u8>,
    /// The threads long-lived connections move to.
    pub(super) threads: Arc<ReaderThreads>,
}

impl Acceptor {
    /// Waits for a free slot and one connection, and reads it: at once what it already holds (a `fresh`
    /// publisher's frame and end of stream often arrive before the sink accepts), the rest on a task of
    /// its own. Cancel-safe.
    pub(super) async fn accept_one(&mut self) {
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
        let (counts, threads) = (self.counts.clone(), self.threads.clone());
        let spawned = match stream {
            Accepted::Unix(s) => tokio::net::UnixStream::from_std(s).map(|s| {
                tokio::spawn(read_socket(s, frames, counts, Some(slot), threads));
            }),
            Accepted::Tcp(s) => tokio::net::TcpStream::from_std(s).map(|s| {
                tokio::spawn(read_socket(s, frames, counts, Some(slot), threads));
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

/// Starts listening on `endpoint` (for a FIFO: starts reading it); returns the listener and where it is
/// bound.
pub(super) fn listen(
    endpoint: &Endpoint,
    counts: &Arc<Counts>,
) -> io::Result<(Listener, Endpoint)> {
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

pub(super) fn name_error(e: io::Error, endpoint: &Endpoint) -> io::Error {
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
