//! Long-lived connections read on threads of their own: a stream that has gone on sending past its first
//! reads (a `raw` publisher's) leaves the sink's runtime for a thread that blocks in `read()`, as the bare
//! loop's reader does (bench/bare_write.c), instead of waking the runtime's epoll for every read.
//!
//! A `fresh` connection ends within its first reads and never gets here. The threads are bounded
//! ([`MAX_READER_THREADS`]); past the bound a stream stays on the runtime. Stopping the sink shuts every
//! thread's socket down for reading (what is queued is still read) and waits for the threads.

use super::Counts;
use super::frames::{FrameCounter, READ_BUFFER, Reading, count, ended};
use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::OwnedSemaphorePermit;

/// Reads with data a stream must have had, without ending, before it moves to a thread of its own.
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
}

impl ReaderThreads {
    /// Reads `stream` to its end on a thread of its own (`frames` holds where the runtime's reads left off);
    /// gives everything back, the stream still the runtime's, when no thread may or could start.
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
        // The thread waits for its stream: a spawn that fails leaves the stream on the runtime.
        let (give, take) = std::sync::mpsc::sync_channel::<(S::Blocking, FrameCounter)>(1);
        let threads = self.clone();
        let thread_counts = counts.clone();
        let spawned = std::thread::Builder::new()
            .name("tb-sink-reader".into())
            .spawn(move || {
                let _slot = slot;
                let stream = take.recv().ok().map(|(mut stream, frames)| {
                    read_blocking(&mut stream, frames, &thread_counts);
                    stream
                });
                // Deregistered before the stream closes, so a stop never shuts a reused descriptor down.
                threads.finished(id);
                drop(stream);
            });
        let handle = match spawned {
            Ok(handle) => handle,
            // `slot` went with the closure that never ran: this stream's slot is given back early.
            Err(_) => return Err((stream, frames, None)),
        };
        match stream.into_blocking() {
            Ok(blocking) => {
                running.insert(
                    id,
                    Running {
                        fd: blocking.as_raw_fd(),
                        handle: Some(handle),
                    },
                );
                // The thread is alive and waiting on this channel: the send cannot fail.
                let _ = give.send((blocking, frames));
            }
            // The runtime would not let go of it (it never fails in practice): the stream is lost, as if
            // it had ended here.
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

    fn finished(&self, id: u64) {
        if let Ok(mut running) = self.running.lock() {
            running.remove(&id);
        }
    }

    /// Ends every reader thread: its socket is shut down for reading (it reads what is queued, then its
    /// end), and the thread waited for.
    pub(super) fn stop_all(&self) {
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

/// Reads one blocking stream to its end, counting whole frames.
fn read_blocking<S>(mut stream: S, mut frames: FrameCounter, counts: &Counts)
where
    S: Read,
{
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if count(&buf[..n], &mut frames, counts) == Reading::Ended {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    ended(&frames, counts);
}
