//! `--progress` for streams: bytes, rate, elapsed time, the ring's fill
//! and what this side waits for, on stderr, never on stdout. On a terminal
//! indicatif redraws one line a few times a second and erases it on
//! Ctrl-C; elsewhere (`--progress=always` into a file or a pipe) a plain
//! line is written every second whether or not data moves, plus a final
//! one, with no `\r` or escape codes.

use std::io::{IsTerminal, Write};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

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

/// How often the status (fill, what is awaited) is looked at again.
const STATUS_EVERY: Duration = Duration::from_millis(250);

/// Plain-text progress for a stderr that is not a terminal.
#[derive(Debug)]
struct Plain {
    label: String,
    started: Instant,
    /// The bytes so far and the last status.
    state: Mutex<(u64, String)>,
}

impl Plain {
    fn line(&self) -> String {
        let (bytes, status) = self.state.lock().map(|s| s.clone()).unwrap_or_default();
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
            "{} {} at {}/s, {:02}:{:02}:{:02}{}",
            self.label,
            HumanBytes(bytes),
            HumanBytes(rate),
            total / 3600,
            total / 60 % 60,
            total % 60,
            separated(&status)
        )
    }

    fn print(&self) {
        // A lost progress line is not worth failing the stream for.
        let _ = writeln!(std::io::stderr().lock(), "{}", self.line());
    }
}

/// `, STATUS`, or nothing for an empty status.
fn separated(status: &str) -> String {
    if status.is_empty() {
        String::new()
    } else {
        format!(", {status}")
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
                state: Mutex::new((0, String::new())),
            })),
            Some(_) => {
                let target = ProgressDrawTarget::stderr_with_hz(4);
                let bar = ProgressBar::with_draw_target(None, target);
                let template = format!(
                    "{{spinner}} {label} {{bytes}} at {{binary_bytes_per_sec}}, {{elapsed_precise}}{{msg}}"
                );
                bar.set_style(
                    ProgressStyle::with_template(&template)
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.enable_steady_tick(STATUS_EVERY);
                // Killed by Ctrl-C, the line would stay on screen.
                crate::sys::clear_stderr_line_on_interrupt();
                Meter(Shown::Bar(bar))
            }
        }
    }

    /// Total bytes so far. Cheap: indicatif only stores it between draws,
    /// and plain output is written by [`Meter::ticking`]'s thread.
    pub fn set(&self, bytes: u64) {
        match &self.0 {
            Shown::Nothing => {}
            Shown::Bar(bar) => bar.set_position(bytes),
            Shown::Plain(plain) => {
                if let Ok(mut state) = plain.state.lock() {
                    state.0 = bytes;
                }
            }
        }
    }

    /// What the line says after the numbers: the ring's fill and what this
    /// side waits for.
    pub fn status(&self, status: &str) {
        match &self.0 {
            Shown::Nothing => {}
            Shown::Bar(bar) => bar.set_message(separated(status)),
            Shown::Plain(plain) => {
                if let Ok(mut state) = plain.state.lock() {
                    status.clone_into(&mut state.1);
                }
            }
        }
    }

    /// Runs `work` while a thread asks `status` every quarter second and
    /// shows it, and, for plain output, writes a line every second whether
    /// or not `work` moves any data. Without a meter, just runs `work`.
    pub fn ticking<T>(&self, status: impl Fn() -> String + Sync, work: impl FnOnce() -> T) -> T {
        if matches!(self.0, Shown::Nothing) {
            return work();
        }
        let done = Mutex::new(false);
        let wake = Condvar::new();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let mut printed = 0;
                let Ok(mut finished) = done.lock() else {
                    return;
                };
                while !*finished {
                    self.status(&status());
                    if let Shown::Plain(plain) = &self.0 {
                        let due = plain.started.elapsed().as_millis() / PLAIN_EVERY.as_millis();
                        if due > printed {
                            printed = due;
                            plain.print();
                        }
                    }
                    finished = match wake.wait_timeout(finished, STATUS_EVERY) {
                        Ok((guard, _)) => guard,
                        Err(_) => return,
                    };
                }
            });
            let result = work();
            if let Ok(mut finished) = done.lock() {
                *finished = true;
            }
            wake.notify_all();
            result
        })
    }

    /// Draws the final state, without the status (nothing is awaited any
    /// more), and leaves it on screen.
    pub fn finish(&self) {
        self.status("");
        match &self.0 {
            Shown::Nothing => {}
            Shown::Bar(bar) => bar.finish(),
            Shown::Plain(plain) => plain.print(),
        }
    }

    /// Erases a terminal line, for an error that ends the run before any
    /// data moved (the error message then stands alone).
    pub fn clear(&self) {
        if let Shown::Bar(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
