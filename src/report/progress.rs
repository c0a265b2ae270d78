//! A progress bar per case on stderr (indicatif); hidden when stderr is not a terminal.

use crate::engine::ProgressView;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::Mutex;

/// Shows the running case as a bar (bounded by count) or a spinner (bounded by time).
#[derive(Default)]
pub struct TerminalProgress {
    bar: Mutex<Option<ProgressBar>>,
}

impl ProgressView for TerminalProgress {
    fn start(&self, case: &str, total: Option<u64>) {
        let bar = match total {
            Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr())
                .with_style(
                    ProgressStyle::with_template(
                        "{prefix:>16} [{bar:30}] {human_pos}/{human_len} {per_sec:>12} {elapsed}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                ),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template(
                    "{prefix:>16} {spinner} {human_pos} published {per_sec:>12} {elapsed}",
                )
                .expect("valid template"),
            ),
        };
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
