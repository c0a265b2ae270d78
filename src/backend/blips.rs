//! Broker blips: a case's broker-side events (`[[case.event]]`), carried out by the broker's own
//! administration ([`BrokerEvents`], e.g. [`super::redis::blips`]) on the same schedule as the wire's faults.
//! [`Blips`] wraps the case's target so both happen, and the events' notes join the case's.

use crate::engine::{BrokerProbe, CaseEvents, Target};
use crate::error::PublishError;
use crate::facts::CaseFacts;
use crate::resources::Watched;
use crate::scenario::CaseEvent;
use std::sync::Arc;

/// What carries out a case's broker-side events, and says what each did.
pub trait BrokerEvents: CaseEvents {
    /// One line per event carried out, or not (the notes of the case).
    fn notes(&self) -> Vec<String>;
}

/// A case's target with the broker's events beside whatever events it carries out itself (the wire's).
pub struct Blips<T> {
    pub inner: T,
    pub broker: Arc<dyn BrokerEvents>,
}

/// Both carry out every event; each acts on its own kinds only.
struct Both {
    wire: Option<Arc<dyn CaseEvents>>,
    broker: Arc<dyn BrokerEvents>,
}

impl CaseEvents for Both {
    fn begin(&self, event: &CaseEvent) {
        if let Some(w) = &self.wire {
            w.begin(event);
        }
        self.broker.begin(event);
    }

    fn end(&self, event: &CaseEvent) {
        if let Some(w) = &self.wire {
            w.end(event);
        }
        self.broker.end(event);
    }
}

impl<T: Target> Target for Blips<T> {
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
        notes.extend(self.broker.notes());
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
        Some(Arc::new(Both {
            wire: self.inner.events(),
            broker: self.broker.clone(),
        }))
    }
}
