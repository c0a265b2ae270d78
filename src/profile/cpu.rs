//! CPU-time profiles (`--profile cpu`): tracing-flame records the busy time of every span of a sampled publish
//! (the time its future was being polled), including spans the client libraries emit inside it.

use super::folded::Folded;
use std::io::Write;
use std::sync::{Arc, Mutex};
use tracing_flame::FlameLayer;

/// Where tracing-flame writes; taken once per case.
#[derive(Clone, Default)]
pub struct SpanBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for SpanBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("span buffer lock")
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SpanBuffer {
    /// Everything recorded since the last call, as folded stacks scaled by `factor` (1 / share traced).
    pub fn take_folded(&self, factor: f64) -> Folded {
        let bytes = std::mem::take(&mut *self.0.lock().expect("span buffer lock"));
        Folded::from_tracing_flame(&String::from_utf8_lossy(&bytes)).scaled(factor)
    }
}

/// A tracing-flame layer writing into a fresh [`SpanBuffer`].
pub fn flame_layer<S>() -> (FlameLayer<S, SpanBuffer>, SpanBuffer)
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let buffer = SpanBuffer::default();
    let layer = FlameLayer::new(buffer.clone())
        .with_threads_collapsed(true)
        .with_module_path(false)
        .with_file_and_line(false)
        .with_empty_samples(false);
    (layer, buffer)
}

/// Installs the process's tracing subscriber: logs on stderr filtered by `RUST_LOG`, else `log_filter`, and,
/// when `profiling`, the span recorder. Returns where spans are recorded.
pub fn install_tracing(log_filter: &str, profiling: bool) -> Option<SpanBuffer> {
    use tracing_subscriber::{Layer, filter, layer::SubscriberExt, util::SubscriberInitExt};
    let env = filter::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| filter::EnvFilter::new(log_filter));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(env);
    let (flame, buffer) = match profiling {
        true => {
            let (layer, buffer) = flame_layer();
            (
                Some(layer.with_filter(filter::filter_fn(|m| m.is_span()))),
                Some(buffer),
            )
        }
        false => (None, None),
    };
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(flame)
        .try_init();
    buffer
}
