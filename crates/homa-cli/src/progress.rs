//! A progress bar on stderr with log lines printed above it. On a
//! terminal the bar is redrawn in place; otherwise only the log lines are
//! written (so logs collected from child processes stay readable).

use std::io::{IsTerminal, Write};

/// The bar and the lines above it.
#[derive(Debug)]
pub struct Progress {
    label: String,
    tty: bool,
    bar: bool,
    drawn: bool,
}

impl Progress {
    /// A bar labelled `label`; `bar` false prints log lines only.
    pub fn new(label: &str, bar: bool) -> Progress {
        Progress {
            label: label.to_string(),
            tty: std::io::stderr().is_terminal(),
            bar,
            drawn: false,
        }
    }

    /// Prints `text` as a line above the bar.
    pub fn line(&mut self, text: &str) {
        let mut e = std::io::stderr().lock();
        if self.drawn {
            let _ = write!(e, "\r\x1b[K");
            self.drawn = false;
        }
        let _ = writeln!(e, "{text}");
    }

    /// Redraws the bar at `done` of `total` seconds, with a note.
    pub fn update(&mut self, done: f64, total: f64, note: &str) {
        if !(self.tty && self.bar) {
            return;
        }
        const WIDTH: usize = 30;
        let frac = if total > 0.0 {
            (done / total).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let full = (frac * WIDTH as f64).round() as usize;
        let mut e = std::io::stderr().lock();
        let _ = write!(
            e,
            "\r\x1b[K{} [{}{}] {:.0}/{:.0} s {}",
            self.label,
            "#".repeat(full),
            "-".repeat(WIDTH - full),
            done.min(total),
            total,
            note
        );
        let _ = e.flush();
        self.drawn = true;
    }

    /// Removes the bar.
    pub fn finish(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
            self.drawn = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
