//! A progress bar per case on stderr (indicatif); hidden when stderr is not a terminal.

use crate::engine::ProgressView;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use std::sync::Mutex;

/// Publishes per second so far, as a whole number.
fn rate(state: &ProgressState, w: &mut dyn std::fmt::Write) {
    let _ = write!(
        w,
        "{}/s",
        crate::human::human_count(state.per_sec().round() as u64)
    );
}

/// Shows the running case as a bar (bounded by count) or a spinner (bounded by time).
#[derive(Default)]
pub struct TerminalProgress {
    bar: Mutex<Option<ProgressBar>>,
}

impl ProgressView for TerminalProgress {
    fn start(&self, case: &str, total: Option<u64>) {
        let (length, template) = match total {
            Some(_) => (
                total,
                "{prefix:>16} [{bar:30}] {human_pos}/{human_len} {rate:>12} {elapsed}",
            ),
            None => (
                None,
                "{prefix:>16} {spinner} {human_pos} published {rate:>12} {elapsed}",
            ),
        };
        let style = ProgressStyle::with_template(template)
            .expect("valid template")
            .with_key("rate", rate)
            .progress_chars("=> ");
        let bar =
            ProgressBar::with_draw_target(length, ProgressDrawTarget::stderr()).with_style(style);
        bar.set_prefix(case.to_string());
        *self.bar.lock().expect("progress lock") = Some(bar);
    }

    fn update(&self, done: u64) {
        if let Some(bar) = &*self.bar.lock().expect("progress lock") {
            bar.set_position(done);
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.lock().expect("progress lock").take() {
            bar.finish_and_clear();
        }
    }
}
