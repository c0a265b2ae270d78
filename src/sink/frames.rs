//! The sink's reading: a stream split into `[u32 big-endian length][payload]` frames and the whole ones
//! counted, read at once where the data is already there, then on a task of its own until the stream ends
//! (or, once it proves long-lived, on a thread of its own: threads.rs).

use super::threads::{Handover, LONG_LIVED_READS, ReaderThreads};
use super::{Counts, MAX_FRAME};
use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tokio::io::AsyncReadExt;
use tokio::sync::OwnedSemaphorePermit;

/// Read buffer per connection: large enough for many frames per read on long-lived streams.
pub(super) const READ_BUFFER: usize = 16 * 1024;

/// Whether a stream may have more to read.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Reading {
    Open,
    Ended,
}

/// Reads at most this many times from a connection at the moment it is accepted: enough for a `fresh`
/// publisher's frame and its end; a writer that keeps the connection full goes on on a task of its own
/// rather than hold up the accepting of the others.
const READS_AT_ACCEPT: u32 = 4;

/// Reads what a non-blocking `stream` holds now, without waiting, counting whole frames; stops after
/// [`READS_AT_ACCEPT`] reads, the stream still `Open`.
pub(super) fn read_ready(
    stream: &mut impl Read,
    frames: &mut FrameCounter,
    buf: &mut [u8],
    counts: &Counts,
) -> Reading {
    for _ in 0..READS_AT_ACCEPT {
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
    Reading::Open
}

/// Reads one stream to its end, counting whole frames (`frames` holds where an earlier read left off);
/// holds its `slot` until then.
pub(super) async fn read_frames<R: tokio::io::AsyncRead + Unpin>(
    mut stream: R,
    mut frames: FrameCounter,
    counts: Arc<Counts>,
    _slot: Option<OwnedSemaphorePermit>,
) {
    let mut buf = vec![0u8; READ_BUFFER];
    while read_once(&mut stream, &mut buf, &mut frames, &counts).await == Reading::Open {}
}

/// Reads one accepted socket to its end like [`read_frames`], moving it to a reader thread of its own once
/// it has had [`LONG_LIVED_READS`] reads and more than one whole frame without ending, if `threads` has room.
pub(super) async fn read_socket<S: Handover>(
    mut stream: S,
    mut frames: FrameCounter,
    counts: Arc<Counts>,
    slot: Option<OwnedSemaphorePermit>,
    threads: Arc<ReaderThreads>,
) {
    let mut buf = vec![0u8; READ_BUFFER];
    let mut reads = 0;
    // A `fresh` connection carries one frame, however many reads it takes.
    while reads < LONG_LIVED_READS || frames.whole < 2 {
        if read_once(&mut stream, &mut buf, &mut frames, &counts).await == Reading::Ended {
            return;
        }
        reads += 1;
    }
    if let Err((stream, frames, slot)) = threads.start(stream, frames, &counts, slot) {
        read_frames(stream, frames, counts, slot).await;
    }
}

/// One read of `stream`, its whole frames counted: `Ended` at its end, an error or a malformed frame.
async fn read_once<R: tokio::io::AsyncRead + Unpin>(
    stream: &mut R,
    buf: &mut [u8],
    frames: &mut FrameCounter,
    counts: &Counts,
) -> Reading {
    match stream.read(buf).await {
        Ok(0) | Err(_) => ended(frames, counts),
        Ok(n) => count(&buf[..n], frames, counts),
    }
}

/// Counts `data`, just read from a stream: `Ended` at a malformed frame (the stream is dropped).
pub(super) fn count(data: &[u8], frames: &mut FrameCounter, counts: &Counts) -> Reading {
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
pub(super) fn ended(frames: &FrameCounter, counts: &Counts) -> Reading {
    if frames.mid_frame() {
        counts.partial_frames.fetch_add(1, Relaxed);
    }
    Reading::Ended
}

/// Splits a byte stream into `[u32 big-endian length][payload]` frames and counts the whole ones.
#[derive(Debug, Default)]
pub struct FrameCounter {
    /// Whole frames so far.
    pub(super) whole: u64,
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
                    self.whole += 1;
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
pub(super) mod tests {
    use super::*;

    pub(crate) fn frame(payload: &str) -> Vec<u8> {
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
}
