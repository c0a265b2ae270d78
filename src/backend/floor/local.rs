//! The local backends' floor: the case's frame written back to back with one `write()` each, to a reader
//! thread that reads and drops it, over the case's transport. Nothing else runs: no ids renewed, no sink
//! counting frames.

use super::{Measured, Plan};
use crate::catalog::Backend;
use std::io::{self, Read, Write};
use std::thread::JoinHandle;

pub const CLIENT: &str = "a bare loop on a plain thread: one write() of the frame, to a reader thread over the same transport";

/// The size of the reader's buffer: what taskbench's sink reads with.
const READ_BUFFER: usize = 16 * 1024;

pub(super) fn measure(backend: Backend, frame: &[u8], plan: Plan) -> io::Result<Measured> {
    match backend {
        Backend::Unix => {
            let (writer, reader) = std::os::unix::net::UnixStream::pair()?;
            bare_loop(writer, reader, frame, plan)
        }
        Backend::Tcp => {
            let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
            let writer = std::net::TcpStream::connect(listener.local_addr()?)?;
            writer.set_nodelay(true)?;
            let (reader, _) = listener.accept()?;
            bare_loop(writer, reader, frame, plan)
        }
        Backend::Fifo => {
            let dir = tempfile::Builder::new()
                .prefix("taskbench-floor-")
                .tempdir()?;
            let path = dir.path().join("floor.fifo");
            nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(io::Error::from)?;
            // Opening either end blocks until the other is opened: the reader opens on its thread.
            let reader_path = path.clone();
            let opened = std::thread::spawn(move || std::fs::File::open(reader_path));
            let writer = std::fs::OpenOptions::new().write(true).open(&path)?;
            let reader = opened
                .join()
                .map_err(|_| io::Error::other("the FIFO's reader thread panicked"))??;
            bare_loop(writer, reader, frame, plan)
        }
        other => Err(io::Error::other(format!("{other} is not a local backend"))),
    }
}

/// Writes `frame` per unit to `writer` while a thread drains `reader`; closes the writer and joins the
/// reader before returning.
fn bare_loop(
    mut writer: impl Write,
    reader: impl Read + Send + 'static,
    frame: &[u8],
    plan: Plan,
) -> io::Result<Measured> {
    let drain = drain(reader);
    let measured = plan.run(|| writer.write_all(frame));
    drop(writer);
    let _ = drain.join();
    measured
}

/// Reads `reader` to its end on a thread of its own.
fn drain(mut reader: impl Read + Send + 'static) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; READ_BUFFER];
        while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
    })
}
