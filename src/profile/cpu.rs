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
    let colour = log_colour(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour)
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

/// Whether log lines are coloured: only on a terminal, and never when `NO_COLOR` is set to anything but
/// the empty string (<https://no-color.org>).
pub fn log_colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::log_colour;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(log_colour(true, None));
        assert!(
            log_colour(true, Some(OsStr::new(""))),
            "an empty NO_COLOR is unset"
        );
        assert!(!log_colour(true, Some(OsStr::new("1"))));
        assert!(
            !log_colour(false, None),
            "a redirected stderr gets no colour"
        );
        assert!(!log_colour(false, Some(OsStr::new("1"))));
    }
}
