//! A broker case across a network: the case's `rtt`, `jitter` and `[[case.fault]]` carried out by a
//! [`WireProxy`] in front of the broker. [`through_proxy`] starts it and gives the URL publishers (and Python
//! clients) connect to; the proxy is the case's [`Companion`]: it lives as long as the case, its notes join
//! the case's and it carries out the case's wire faults.

use super::companion::Companion;
use crate::error::{ErrorKind, PublishError};
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

/// The proxy beside its case: its notes join the case's, and it carries out the case's wire faults.
impl Companion for WireProxy {
    fn notes(&self) -> Vec<String> {
        WireProxy::notes(self)
    }
}
