//! One direction of one proxied connection: bytes read from one end, each read stamped with when it is due
//! at the other (half the `rtt`, jittered, never before the bytes ahead of it), and written there then;
//! the [`Gate`] a blackhole closes; and the proxy's counters.

use crate::scenario::Wire;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Bytes read at once.
const CHUNK: usize = 64 * 1024;

/// What the proxy counted, for the case's notes.
#[derive(Default)]
pub(super) struct Stats {
    pub(super) connections: AtomicU64,
    /// Writes released after a delay, and how late against their due time.
    pub(super) delayed: AtomicU64,
    pub(super) late_total_ns: AtomicU64,
    pub(super) late_max_ns: AtomicU64,
    /// Connections dropped by a reset.
    pub(super) reset: AtomicU64,
}

/// Closed while a blackhole lasts; [`Gate::pass`] waits until it opens.
#[derive(Default)]
pub(super) struct Gate {
    closed: AtomicBool,
    lock: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    pub(super) fn close(&self) {
        *self.lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.closed.store(true, Ordering::SeqCst);
    }

    pub(super) fn open(&self) {
        *self.lock.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.closed.store(false, Ordering::SeqCst);
        self.opened.notify_all();
    }

    /// Returns at once while open; else waits for it to open.
    pub(super) fn pass(&self) {
        if !self.closed.load(Ordering::SeqCst) {
            return;
        }
        let mut closed = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        while *closed {
            closed = self.opened.wait(closed).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Pipes `from` to `to` until either ends: straight through when `wire` adds nothing, else through a
/// delaying writer thread. `to_broker` is the direction that pays the handshake's round trip.
pub(super) fn run(
    from: TcpStream,
    to: TcpStream,
    wire: &Wire,
    to_broker: bool,
    gate: &Gate,
    stats: &Stats,
) {
    if wire.rtt.is_zero() && wire.jitter.is_zero() {
        straight(from, to, gate);
    } else {
        delayed(from, to, wire, to_broker, gate, stats);
    }
}

/// Copies as read, holding at the gate.
fn straight(mut from: TcpStream, mut to: TcpStream, gate: &Gate) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        gate.pass();
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// One direction's delay: half the rtt, ± half the jitter.
fn one_way(wire: &Wire) -> Duration {
    let half = wire.rtt / 2;
    let spread = (wire.jitter / 2).as_nanos() as i64;
    if spread == 0 {
        return half;
    }
    let offset = fastrand::i64(-spread..=spread);
    Duration::from_nanos((half.as_nanos() as i64 + offset).max(0) as u64)
}

/// Reads on this thread, stamping each read with its due time; writes on another that sleeps until then.
fn delayed(
    mut from: TcpStream,
    mut to: TcpStream,
    wire: &Wire,
    to_broker: bool,
    gate: &Gate,
    stats: &Stats,
) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || {
            set_fine_timer_slack();
            while let Ok((due, bytes)) = rx.recv() {
                wait_until(due);
                let late = Instant::now().saturating_duration_since(due).as_nanos() as u64;
                stats.delayed.fetch_add(1, Ordering::Relaxed);
                stats.late_total_ns.fetch_add(late, Ordering::Relaxed);
                stats.late_max_ns.fetch_max(late, Ordering::Relaxed);
                gate.pass();
                if to.write_all(&bytes).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        });
        let mut last = Instant::now();
        let mut first = to_broker;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut delay = one_way(wire);
            if first {
                // The handshake's round trip, which the proxy answered at once on loopback.
                delay += wire.rtt;
                first = false;
            }
            // Never before the bytes ahead: jitter must not reorder the stream.
            last = last.max(Instant::now() + delay);
            if tx.send((last, buf[..n].to_vec())).is_err() {
                break;
            }
        }
        drop(tx);
        let _ = writer.join();
    });
}

/// How much of a wait is spun rather than slept: a loaded machine wakes a sleeper tens of microseconds late.
const SPIN: Duration = Duration::from_micros(50);

/// Sleeps until `SPIN` before `due`, then spins to it.
fn wait_until(due: Instant) {
    let now = Instant::now();
    if due > now + SPIN {
        std::thread::sleep(due - now - SPIN);
    }
    while Instant::now() < due {
        std::hint::spin_loop();
    }
}

/// Asks the kernel to wake this thread within 1 ns of its sleep's end instead of the default 50 µs, which
/// would be a tenth of a 0.5 ms round trip.
fn set_fine_timer_slack() {
    let _ = nix::sys::prctl::set_timerslack(1);
}
