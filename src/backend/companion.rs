//! What runs beside a case's target for the case's length (the wire proxy of `rtt` and `[[case.fault]]`,
//! the broker's own `[[case.event]]`s): a [`Companion`] whose notes join the case's and whose timed events
//! happen with the target's own. [`Accompanied`] is the one wrapper, so every other part of [`Target`]
//! passes through in one place.

use crate::engine::{BrokerProbe, CaseEvents, Target};
use crate::error::PublishError;
use crate::facts::CaseFacts;
use crate::resources::Watched;
use crate::scenario::CaseEvent;
use std::sync::Arc;

/// What runs beside a case: it carries out the case's events of its own kinds, and says what it did.
pub trait Companion: CaseEvents {
    /// Sentences for the case's notes.
    fn notes(&self) -> Vec<String>;
}

/// Runs `f`, a blocking call (a broker's administration command), without stalling the other tasks of a
/// multi-threaded runtime.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// What a companion did, said as it happened (from the event schedule's thread) and read at the case's end.
#[derive(Default)]
pub struct Notes(std::sync::Mutex<Vec<String>>);

impl Notes {
    pub fn push(&self, line: String) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }

    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A case's target with a companion beside it.
pub struct Accompanied<T> {
    pub inner: T,
    pub companion: Arc<dyn Companion>,
}

/// Two carry out every event; each acts on its own kinds only.
struct Both {
    first: Arc<dyn CaseEvents>,
    second: Arc<dyn CaseEvents>,
}

impl CaseEvents for Both {
    fn begin(&self, event: &CaseEvent) {
        self.first.begin(event);
        self.second.begin(event);
    }

    fn end(&self, event: &CaseEvent) {
        self.first.end(event);
        self.second.end(event);
    }
}

impl<T: Target> Target for Accompanied<T> {
    type Publisher = T::Publisher;

    async fn prepare(&mut self) -> Result<(), PublishError> {
        self.inner.prepare().await
    }

    fn publisher(&self, worker: usize) -> Self::Publisher {
        self.inner.publisher(worker)
    }

    async fn delivered(&mut self, expected: u64) -> Result<Option<u64>, PublishError> {
        self.inner.delivered(expected).await
    }

    async fn finish(&mut self) {
        self.inner.finish().await
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = self.inner.notes();
        notes.extend(self.companion.notes());
        notes
    }

    fn facts(&self) -> CaseFacts {
        self.inner.facts()
    }

    fn cpu_profile(&mut self) -> Option<String> {
        self.inner.cpu_profile()
    }

    fn pywall_profile(&mut self) -> Option<String> {
        self.inner.pywall_profile()
    }

    fn processes(&self) -> Vec<Watched> {
        self.inner.processes()
    }

    fn broker_memory(&self) -> Result<Option<BrokerProbe>, String> {
        self.inner.broker_memory()
    }

    fn events(&self) -> Option<Arc<dyn CaseEvents>> {
        let own: Arc<dyn CaseEvents> = self.companion.clone();
        Some(match self.inner.events() {
            Some(first) => Arc::new(Both { first, second: own }),
            None => own,
        })
    }
}
