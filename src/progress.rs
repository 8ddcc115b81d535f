//! `--progress` for streams: bytes, rate and elapsed time on stderr, never
//! on stdout. On a terminal indicatif redraws one line a few times a
//! second; elsewhere (`--progress=always` into a file or a pipe) plain
//! lines are written instead, at most one a second plus a final one, with
//! no `\r` or escape codes.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use indicatif::{BinaryBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// When to show progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    /// Only when stderr is a terminal.
    Auto,
    /// Always, even when stderr is a file or a pipe.
    Always,
}

/// How often a plain progress line is written.
const PLAIN_EVERY: Duration = Duration::from_secs(1);

/// Plain-text progress for a stderr that is not a terminal.
#[derive(Debug)]
struct Plain {
    label: String,
    started: Instant,
    /// When the last line was written, and the bytes it reported.
    last: Mutex<(Instant, u64)>,
}

impl Plain {
    fn line(&self, bytes: u64) -> String {
        let elapsed = self.started.elapsed();
        let secs = elapsed.as_secs_f64();
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a rate for people: rounding is fine"
        )]
        let rate = if secs > 0.0 {
            (bytes as f64 / secs) as u64
        } else {
            0
        };
        let total = elapsed.as_secs();
        format!(
            "{} {} at {}/s, {:02}:{:02}:{:02}",
            self.label,
            BinaryBytes(bytes),
            BinaryBytes(rate),
            total / 3600,
            total / 60 % 60,
            total % 60
        )
    }

    fn print(&self, bytes: u64) {
        // A lost progress line is not worth failing the stream for.
        let _ = writeln!(std::io::stderr().lock(), "{}", self.line(bytes));
    }
}

#[derive(Debug)]
enum Shown {
    Nothing,
    Bar(ProgressBar),
    Plain(Plain),
}

/// A progress line, or nothing when not asked for (or not on a terminal).
#[derive(Debug)]
pub struct Meter(Shown);

impl Meter {
    /// A meter labelled `label` ("sent", "received").
    #[must_use]
    pub fn new(when: Option<Progress>, label: &str) -> Meter {
        let terminal = std::io::stderr().is_terminal();
        match when {
            None => Meter(Shown::Nothing),
            Some(Progress::Auto) if !terminal => Meter(Shown::Nothing),
            Some(Progress::Always) if !terminal => Meter(Shown::Plain(Plain {
                label: label.to_owned(),
                started: Instant::now(),
                last: Mutex::new((Instant::now(), 0)),
            })),
            Some(_) => {
                let target = ProgressDrawTarget::stderr_with_hz(4);
                let bar = ProgressBar::with_draw_target(None, target);
                let template = format!(
                    "{{spinner}} {label} {{bytes}} at {{binary_bytes_per_sec}}, {{elapsed_precise}}"
                );
                bar.set_style(
                    ProgressStyle::with_template(&template)
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.enable_steady_tick(Duration::from_millis(250));
                Meter(Shown::Bar(bar))
            }
        }
    }

    /// Total bytes so far. Cheap: indicatif only stores it between draws,
    /// and plain output looks at the clock.
    pub fn set(&self, bytes: u64) {
        match &self.0 {
            Shown::Nothing => {}
            Shown::Bar(bar) => bar.set_position(bytes),
            Shown::Plain(plain) => {
                let Ok(mut last) = plain.last.lock() else {
                    return;
                };
                *last = (last.0, bytes);
                if last.0.elapsed() >= PLAIN_EVERY {
                    last.0 = Instant::now();
                    plain.print(bytes);
                }
            }
        }
    }

    /// Draws the final state and leaves it on screen.
    pub fn finish(&self) {
        match &self.0 {
            Shown::Nothing => {}
            Shown::Bar(bar) => bar.finish(),
            Shown::Plain(plain) => {
                let bytes = plain.last.lock().map_or(0, |last| last.1);
                plain.print(bytes);
            }
        }
    }
}
