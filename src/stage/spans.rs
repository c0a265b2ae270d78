//! The `tracing` spans of a publish: one `publish` span, and inside it one span per stage, with stable names
//! (the stage names), so flamegraphs from different runs line up.

use super::Stage;
use tracing::{Level, Span, span};

/// The span around one publish.
pub fn publish_span() -> Span {
    span!(Level::TRACE, "publish")
}

/// The span of one stage (span names are static, hence one call site per stage).
pub fn stage_span(stage: Stage) -> Span {
    match stage {
        Stage::Connect => span!(Level::TRACE, "connect"),
        Stage::Tls => span!(Level::TRACE, "tls"),
        Stage::Handshake => span!(Level::TRACE, "handshake"),
        Stage::Channel => span!(Level::TRACE, "channel"),
        Stage::Declare => span!(Level::TRACE, "declare"),
        Stage::Bind => span!(Level::TRACE, "bind"),
        Stage::Acquire => span!(Level::TRACE, "acquire"),
        Stage::Options => span!(Level::TRACE, "options"),
        Stage::Route => span!(Level::TRACE, "route"),
        Stage::Encode => span!(Level::TRACE, "encode"),
        Stage::Argsrepr => span!(Level::TRACE, "argsrepr"),
        Stage::Signals => span!(Level::TRACE, "signals"),
        Stage::Send => span!(Level::TRACE, "send"),
        Stage::Confirm => span!(Level::TRACE, "confirm"),
        Stage::Release => span!(Level::TRACE, "release"),
        Stage::Close => span!(Level::TRACE, "close"),
        Stage::Result => span!(Level::TRACE, "result"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_spans_are_named_after_their_stage() {
        // Span metadata is only kept when a subscriber is interested; record the names with one.
        let names = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = names.clone();
        let subscriber = tracing_subscriber::registry().with(FnLayer(move |n: &str| {
            seen.lock().unwrap().push(n.to_string())
        }));
        tracing::subscriber::with_default(subscriber, || {
            for stage in Stage::ALL {
                let _ = stage_span(stage);
            }
            let _ = publish_span();
        });
        let mut expected: Vec<String> = Stage::ALL.iter().map(|s| s.name().to_string()).collect();
        expected.push("publish".into());
        assert_eq!(*names.lock().unwrap(), expected);
    }

    use tracing_subscriber::layer::SubscriberExt;

    struct FnLayer<F>(F);

    impl<S: tracing::Subscriber, F: Fn(&str) + 'static> tracing_subscriber::Layer<S> for FnLayer<F> {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            (self.0)(attrs.metadata().name());
        }
    }
}
