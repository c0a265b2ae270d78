//! Run control shared by every case of a run: the interrupt ([`Stop`]) with the grace it gives the work in
//! flight, and [`RunControl`] (the interrupt, where progress goes, whether to trace spans).

use super::traits::{LiveView, ProgressView};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;
use tokio::sync::Notify;

/// The interrupt: a flag the publish loops read between publishes, and a wake-up for the few places that
/// wait on it (one waiter per case, never one per publish).
#[derive(Clone, Default)]
pub struct Stop(Arc<StopInner>);

#[derive(Default)]
struct StopInner {
    flag: AtomicBool,
    wake: Notify,
}

impl Stop {
    /// Asks the run to stop: the running case ends within [`STOP_GRACE`] and no other starts.
    pub fn request(&self) {
        self.0.flag.store(true, Relaxed);
        self.0.wake.notify_waiters();
    }

    /// Whether a stop was asked for.
    #[inline]
    pub fn requested(&self) -> bool {
        self.0.flag.load(Relaxed)
    }

    /// Resolves once a stop is asked for (at once if it already was).
    pub async fn wait(&self) {
        let woken = self.0.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if self.requested() {
            return;
        }
        woken.await;
    }

    /// Runs `work` to its end, unless a stop comes first: then `work` gets `grace` more to finish (its
    /// output is `None` if it did not).
    pub async fn or_grace<F: Future>(&self, grace: Duration, work: F) -> Option<F::Output> {
        tokio::pin!(work);
        tokio::select! {
            biased;
            out = &mut work => Some(out),
            () = self.wait() => tokio::time::timeout(grace, work).await.ok(),
        }
    }
}

/// How long the work in flight (publishes, a delivery check, cleanup) may go on after an interrupt before it
/// is abandoned: the run ends well within a second of Ctrl-C, whatever a stalled broker does.
pub const STOP_GRACE: Duration = Duration::from_millis(300);

/// Shared by every case of a run: the interrupt and where progress goes.
#[derive(Clone)]
pub struct RunControl {
    pub stop: Stop,
    pub progress: Option<Arc<dyn ProgressView>>,
    /// Where a running case's figures go once per interval (`--metrics-listen`, `--metrics-file`).
    pub live: Option<Arc<dyn LiveView>>,
    /// Trace sampled publishes with spans (`--profile cpu`); a subscriber must be collecting them.
    pub trace_spans: bool,
}

impl RunControl {
    pub fn new() -> Self {
        RunControl {
            stop: Stop::default(),
            progress: None,
            live: None,
            trace_spans: false,
        }
    }

    pub fn stopped(&self) -> bool {
        self.stop.requested()
    }
}

impl Default for RunControl {
    fn default() -> Self {
        Self::new()
    }
}
