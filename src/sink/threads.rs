//! Long-lived connections read on threads of their own: a stream that has gone on sending past its first
//! reads (a `raw` publisher's) leaves the sink's runtime for a thread that blocks in `read()`, as the bare
//! loop's reader does (bench/bare_write.c), instead of waking the runtime's epoll for every read.
//!
//! A `fresh` connection carries one frame and never gets here. The threads are bounded
//! ([`MAX_READER_THREADS`]); past the bound a stream stays on the runtime. Stopping the sink ends every
//! thread after the read it is in (shutting its socket down for reading wakes one that waits) and waits for
//! the threads.

use super::Counts;
use super::frames::{FrameCounter, READ_BUFFER, Reading, count, ended};
use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::OwnedSemaphorePermit;

/// Reads with data a stream must have had, without ending and with more than one whole frame, before it
/// moves to a thread of its own.
pub(super) const LONG_LIVED_READS: u32 = 16;
/// The most reader threads one sink runs at once.
pub(super) const MAX_READER_THREADS: usize = 64;

/// A socket a reader thread may take over: a runtime stream turned back into a blocking std one.
pub(super) trait Handover: tokio::io::AsyncRead + Unpin + Sized {
    type Blocking: Read + AsRawFd + Send + 'static;
    fn into_blocking(self) -> io::Result<Self::Blocking>;
}

impl Handover for tokio::net::UnixStream {
    type Blocking = std::os::unix::net::UnixStream;
    fn into_blocking(self) -> io::Result<Self::Blocking> {
        let s = self.into_std()?;
        s.set_nonblocking(false)?;
        Ok(s)
    }
}

impl Handover for tokio::net::TcpStream {
    type Blocking = std::net::TcpStream;
    fn into_blocking(self) -> io::Result<Self::Blocking> {
        let s = self.into_std()?;
        s.set_nonblocking(false)?;
        Ok(s)
    }
}

/// One running reader thread: its socket (to shut it down at stop) and its handle.
struct Running {
    fd: RawFd,
    handle: Option<JoinHandle<()>>,
}

/// The sink's reader threads, by id.
#[derive(Default)]
pub(super) struct ReaderThreads {
    running: Mutex<HashMap<u64, Running>>,
    next_id: AtomicU64,
    /// Set by [`ReaderThreads::stop_all`]: every thread ends after its current read.
    stopping: AtomicBool,
}

impl ReaderThreads {
    /// Reads `stream` to its end on a thread of its own (`frames` holds where the runtime's reads left off),
    /// holding its `slot` until then; gives everything back, the stream still the runtime's, when no thread
    /// may or could start.
    pub(super) fn start<S: Handover>(
        self: &Arc<Self>,
        stream: S,
        frames: FrameCounter,
        counts: &Arc<Counts>,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<(), (S, FrameCounter, Option<OwnedSemaphorePermit>)> {
        let Ok(mut running) = self.running.lock() else {
            return Err((stream, frames, slot));
        };
        if running.len() >= MAX_READER_THREADS {
            return Err((stream, frames, slot));
        }
        let id = self.next_id.fetch_add(1, Relaxed);
        // The thread waits for its stream and slot: a spawn that fails leaves both with the runtime.
        let (give, take) = std::sync::mpsc::sync_channel::<Handed<S::Blocking>>(1);
        let threads = self.clone();
        let thread_counts = counts.clone();
        let spawned = std::thread::Builder::new()
            .name("tb-sink-reader".into())
            .spawn(move || {
                if let Ok((stream, frames, slot)) = take.recv() {
                    let mut stream = stream;
                    // Dropped before the stream (declared after it), even on a panic: the entry goes before
                    // the descriptor closes, so a stop never shuts a reused descriptor down; the slot last.
                    let registered = Registered { threads, id };
                    read_until_stopped(&mut stream, frames, &thread_counts, &registered.threads);
                    drop(registered);
                    drop(stream);
                    drop(slot);
                }
            });
        let Ok(handle) = spawned else {
            return Err((stream, frames, slot));
        };
        match stream.into_blocking() {
            Ok(blocking) => {
                let fd = blocking.as_raw_fd();
                if give.send((blocking, frames, slot)).is_ok() {
                    let handle = Some(handle);
                    running.insert(id, Running { fd, handle });
                }
            }
            // The runtime would not let go of it (it never fails in practice): the stream is lost, as if
            // it had ended here; the thread, given nothing, ends.
            Err(_) => {
                ended(&frames, counts);
            }
        }
        Ok(())
    }

    /// Reader threads running now.
    #[cfg(test)]
    pub(super) fn running(&self) -> usize {
        self.running.lock().map_or(0, |r| r.len())
    }

    /// Ends every reader thread and waits for it: each ends after the read it is in (a reader blocked on an
    /// idle socket is woken by shutting the socket down for reading; one whose writer goes on sending, as
    /// a TCP peer may after that shutdown, ends at its next read's return).
    pub(super) fn stop_all(&self) {
        self.stopping.store(true, Relaxed);
        let handles: Vec<JoinHandle<()>> = match self.running.lock() {
            Ok(mut running) => running
                .values_mut()
                .filter_map(|Running { fd, handle }| {
                    // SAFETY: a plain syscall on a descriptor that stays open while its entry is here (the
                    // thread removes the entry, under this lock, before it closes the stream).
                    unsafe { nix::libc::shutdown(*fd, nix::libc::SHUT_RD) };
                    handle.take()
                })
                .collect(),
            Err(_) => return,
        };
        for handle in handles {
            let _ = handle.join();
        }
    }
}

/// What a reader thread is handed: its stream, where its frames stand, and its slot.
type Handed<S> = (S, FrameCounter, Option<OwnedSemaphorePermit>);

/// A reader thread's entry in [`ReaderThreads`], removed when dropped.
struct Registered {
    threads: Arc<ReaderThreads>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut running) = self.threads.running.lock() {
            running.remove(&self.id);
        }
    }
}

/// Reads one blocking stream to its end, or until the sink stops, counting whole frames.
fn read_until_stopped(
    stream: &mut impl Read,
    mut frames: FrameCounter,
    counts: &Counts,
    threads: &ReaderThreads,
) {
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if count(&buf[..n], &mut frames, counts) == Reading::Ended {
                    return;
                }
                if threads.stopping.load(Relaxed) {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    ended(&frames, counts);
}
