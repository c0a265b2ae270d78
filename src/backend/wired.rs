//! A broker case across a network: the case's `rtt`, `jitter` and `[[case.fault]]` carried out by a
//! [`WireProxy`] in front of the broker. [`through_proxy`] starts it and gives the URL publishers (and Python
//! clients) connect to; [`Wired`] wraps the case's target so the proxy lives as long as the case, its notes
//! join the case's and it carries out the case's timed events.

use crate::engine::{BrokerProbe, CaseEvents, Target};
use crate::error::{ErrorKind, PublishError};
use crate::facts::CaseFacts;
use crate::resources::Watched;
use crate::scenario::Wire;
use crate::wire::{WireProxy, through};
use std::sync::Arc;

/// Starts a proxy in front of the broker `url` names; returns it with the URL that goes through it. The
/// error names the URL with its password hidden.
pub fn through_proxy(url: &str, wire: Wire) -> Result<(Arc<WireProxy>, String), PublishError> {
    let mut proxy = None;
    let rewritten = through(url, |upstream| {
        let p = WireProxy::start(upstream, wire)?;
        let port = p.addr().port();
        proxy = Some(p);
        Ok(port)
    })
    .map_err(|why| {
        PublishError::new(
            ErrorKind::Config,
            format!(
                "cannot put the case's network (rtt, faults) in front of {}: {why}",
                super::url::redact(url)
            ),
        )
    })?;
    let proxy = proxy.expect("through() called the start closure before returning Ok");
    Ok((Arc::new(proxy), rewritten.url))
}

/// A case's target, with the proxy its publishers go through.
pub struct Wired<T> {
    pub inner: T,
    pub proxy: Arc<WireProxy>,
}

impl<T: Target> Target for Wired<T> {
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
        notes.extend(self.proxy.notes());
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
        Some(self.proxy.clone())
    }
}
