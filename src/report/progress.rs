//! A progress bar per case on stderr (indicatif); hidden when stderr is not a terminal. It shows successes,
//! their rate over the last second, the p99 of the newest closed interval of the timeline and errors apart
//! (a dead broker's fast failures must not look like speed, and a stall shows at once) and, for a case
//! bounded by time, the time elapsed of the total.

use crate::engine::{IntervalLatency, ProgressView};
use crate::human::{human_count, human_ns};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the rate on the bar is measured over.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// An interval's p99 is "the last" one until it ended more than its own length and this much ago; then the
/// bar says how long ago it ended. The slack covers the interval's turn, when threads that publish slowly
/// have not closed the interval yet; past it, nothing newer closed: a stall.
const STALE_AFTER: Duration = Duration::from_secs(1);

/// The bar of the running case.
struct Running {
    bar: ProgressBar,
    /// Bounded by time: the bar's length is the duration in ms, its position the time elapsed.
    duration: Option<Duration>,
    started: Instant,
    /// The last second's start and the successes then: the rate shown is the current one, not the
    /// average since the start, so a stall shows at once.
    window: (Instant, u64),
    rate: u64,
}

/// Shows the running case as a bar (bounded by count or by time) or a spinner (neither).
#[derive(Default)]
pub struct TerminalProgress {
    running: Mutex<Option<Running>>,
}

impl ProgressView for TerminalProgress {
    fn start(&self, case: &str, total: Option<u64>, duration: Option<Duration>) {
        let (length, template) = match (total, duration) {
            (Some(total), _) => (
                Some(total),
                "{prefix:>16} [{bar:30}] {human_pos}/{human_len} {msg} {elapsed}",
            ),
            (None, Some(d)) => (Some(d.as_millis() as u64), "{prefix:>16} [{bar:30}] {msg}"),
            (None, None) => (None, "{prefix:>16} {spinner} {msg} {elapsed}"),
        };
        let style = ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> ");
        let bar =
            ProgressBar::with_draw_target(length, ProgressDrawTarget::stderr()).with_style(style);
        bar.set_prefix(case.to_string());
        *self.running.lock().expect("progress lock") = Some(Running {
            bar,
            duration: total.is_none().then_some(duration).flatten(),
            started: Instant::now(),
            window: (Instant::now(), 0),
            rate: 0,
        });
    }

    fn update(&self, ok: u64, failed: u64, latest: Option<IntervalLatency>) {
        if let Some(r) = &mut *self.running.lock().expect("progress lock") {
            let elapsed = r.started.elapsed();
            match r.duration {
                Some(d) => r.bar.set_position(elapsed.min(d).as_millis() as u64),
                None => r.bar.set_position(ok + failed),
            }
            let (since, ok_then) = r.window;
            let span = since.elapsed();
            if span >= RATE_WINDOW {
                r.rate = (ok.saturating_sub(ok_then) as f64 / span.as_secs_f64()).round() as u64;
                r.window = (Instant::now(), ok);
            }
            let counts = status(ok, failed, r.rate, latest.as_ref());
            r.bar.set_message(match r.duration {
                Some(d) => format!("{}s/{}s {counts}", elapsed.min(d).as_secs(), d.as_secs()),
                None => counts,
            });
        }
    }

    fn finish(&self) {
        if let Some(r) = self.running.lock().expect("progress lock").take() {
            r.bar.finish_and_clear();
        }
    }
}

/// `1,234 ok 5,678/s, p99 1.23ms (last 1s), 3 errors`: what the bar says besides its position. The p99 is
/// the newest closed interval's; when that interval ended long ago (a stall) it reads `(12s ago)`.
fn status(ok: u64, failed: u64, ok_per_sec: u64, latest: Option<&IntervalLatency>) -> String {
    let latency = match latest {
        None => String::new(),
        Some(l) if l.ended_ago < l.length + STALE_AFTER => format!(
            ", p99 {} (last {})",
            human_ns(l.p99),
            humantime::format_duration(l.length)
        ),
        Some(l) => format!(", p99 {} ({}s ago)", human_ns(l.p99), l.ended_ago.as_secs()),
    };
    let errors = match failed {
        0 => String::new(),
        1 => ", 1 error".to_string(),
        n => format!(", {} errors", human_count(n)),
    };
    format!(
        "{} ok {}/s{latency}{errors}",
        human_count(ok),
        human_count(ok_per_sec)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_shown_apart_from_successes() {
        assert_eq!(status(1234, 0, 5678, None), "1,234 ok 5,678/s");
        assert_eq!(status(10, 1, 3, None), "10 ok 3/s, 1 error");
        assert_eq!(status(0, 22_111, 0, None), "0 ok 0/s, 22,111 errors");
    }

    fn latest(p99: u64, length_ms: u64, ended_ago_ms: u64) -> IntervalLatency {
        IntervalLatency {
            index: 7,
            length: Duration::from_millis(length_ms),
            p99,
            ended_ago: Duration::from_millis(ended_ago_ms),
        }
    }

    #[test]
    fn the_last_intervals_p99_is_shown_between_the_rate_and_the_errors() {
        assert_eq!(
            status(12_345, 3, 5678, Some(&latest(1_234_000, 1000, 400))),
            "12,345 ok 5,678/s, p99 1.23ms (last 1s), 3 errors"
        );
        assert_eq!(
            status(10, 0, 40, Some(&latest(850, 250, 100))),
            "10 ok 40/s, p99 850ns (last 250ms)"
        );
        // At the interval's turn, before every thread has closed the newer one, it is still the last.
        assert_eq!(
            status(10, 0, 40, Some(&latest(850, 1000, 1900))),
            "10 ok 40/s, p99 850ns (last 1s)"
        );
    }

    #[test]
    fn a_p99_nothing_newer_followed_says_how_old_it_is() {
        // A stall: the newest closed interval ended 2 s ago (1 s long), then 12.7 s ago.
        assert_eq!(
            status(500, 0, 0, Some(&latest(2_000_000, 1000, 2000))),
            "500 ok 0/s, p99 2.00ms (2s ago)"
        );
        assert_eq!(
            status(500, 9, 0, Some(&latest(2_000_000, 250, 12_700))),
            "500 ok 0/s, p99 2.00ms (12s ago), 9 errors"
        );
    }
}
