//! A case's floor: what the simplest client of its backend (a bare write loop, a blocking socket) measured
//! doing the same unit of work right before the case, so the case's figures read as a share of the
//! physical limit of the machine at that moment.

use hdrhistogram::Histogram;
use std::time::Duration;

/// What the floor client measured, or why it could not.
#[derive(Debug, Clone)]
pub struct Floor {
    /// What the floor client did, as a sentence (e.g. "a blocking socket on a plain thread: LPUSH, read
    /// the reply").
    pub client: String,
    /// Units of work measured (after the warm-up).
    pub units: u64,
    pub elapsed: Duration,
    /// Each unit's latency, in ns.
    pub latency: Histogram<u64>,
    /// Why there is no floor (no such client for this backend, or it failed); the figures are empty then.
    pub unavailable: Option<String>,
}

impl Floor {
    /// No floor for this case, and why.
    pub fn unavailable(client: impl Into<String>, why: impl Into<String>) -> Floor {
        Floor {
            client: client.into(),
            units: 0,
            elapsed: Duration::ZERO,
            latency: super::new_histogram(),
            unavailable: Some(why.into()),
        }
    }

    /// Units per second; 0 when nothing was measured.
    pub fn throughput(&self) -> f64 {
        if self.elapsed.is_zero() {
            0.0
        } else {
            self.units as f64 / self.elapsed.as_secs_f64()
        }
    }
}
