//! A progress bar on stderr with log lines printed above it, drawn by
//! [`indicatif`]. On a terminal the bar is redrawn in place with the time
//! left; otherwise only the log lines are written (so logs collected from
//! child processes stay readable).

use std::time::Duration;

use crate::out::errln;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bar and the lines above it.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar labelled `label` (hidden when `bar` is false or stderr is not
    /// a terminal); log lines are printed either way.
    pub(crate) fn new(label: &str, bar: bool) -> Progress {
        let target = if bar {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        // Milliseconds of run time; the bar shows seconds.
        let pb = ProgressBar::with_draw_target(Some(0), target);
        let style = ProgressStyle::with_template(
            "{prefix} [{bar:30}] {msg} ({elapsed} elapsed, ~{eta} left)",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("#>-");
        pb.set_style(style);
        pb.set_prefix(label.to_string());
        Progress { bar: pb }
    }

    /// Prints `text` as a line above the bar (also when there is no bar).
    pub(crate) fn line(&mut self, text: &str) {
        self.bar.suspend(|| errln!("{text}"));
    }

    /// Moves the bar to `done` of `total` seconds, with a note.
    pub(crate) fn update(&mut self, done: f64, total: f64, note: &str) {
        let total_ms = (total.max(0.0) * 1e3) as u64;
        if self.bar.length() != Some(total_ms) {
            self.bar.set_length(total_ms);
        }
        self.bar
            .set_position((done.clamp(0.0, total.max(0.0)) * 1e3) as u64);
        self.bar
            .set_message(format!("{:.0}/{:.0} s {note}", done.min(total), total));
        // Redraw at least every second even without updates.
        self.bar.enable_steady_tick(Duration::from_millis(500));
    }

    /// Removes the bar.
    pub(crate) fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
