//! `--progress` for streams: bytes, rate and elapsed time on stderr, drawn
//! by indicatif a few times a second, never on stdout.

use std::time::Duration;

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// When to show progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    /// Only when stderr is a terminal.
    Auto,
    /// Always, even when stderr is a file or a pipe.
    Always,
}

/// A progress line, or nothing when not asked for (or not on a terminal).
#[derive(Debug)]
pub struct Meter(Option<ProgressBar>);

impl Meter {
    /// A meter labelled `label` ("sent", "received").
    #[must_use]
    pub fn new(when: Option<Progress>, label: &str) -> Meter {
        let target = match when {
            None => return Meter(None),
            Some(Progress::Auto) => ProgressDrawTarget::stderr_with_hz(4),
            Some(Progress::Always) => {
                ProgressDrawTarget::term_like_with_hz(Box::new(console::Term::stderr()), 4)
            }
        };
        let bar = ProgressBar::with_draw_target(None, target);
        let template = format!(
            "{{spinner}} {label} {{bytes}} at {{binary_bytes_per_sec}}, {{elapsed_precise}}"
        );
        bar.set_style(
            ProgressStyle::with_template(&template)
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(250));
        Meter(Some(bar))
    }

    /// Total bytes so far. Cheap: indicatif only stores it between draws.
    pub fn set(&self, bytes: u64) {
        if let Some(bar) = &self.0 {
            bar.set_position(bytes);
        }
    }

    /// Draws the final state and leaves it on screen.
    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish();
        }
    }
}
