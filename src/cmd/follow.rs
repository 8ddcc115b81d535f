//! When a follow (`shm-read --follow`, of a snapshot or a log) ends by
//! itself, besides the segment's removal: after `--count N` versions or
//! records printed (exit 0), at the end of `--for DURATION` (exit 0), or
//! when `--timeout` runs out first (exit 124, as timeout(1) reports a
//! command it had to stop).
//!
//! Contract: the `--timeout` deadline is the command's, set when it
//! started (it also bounds the wait for the segment); the `--for` window
//! starts when the follow does. Every sleep of a follower is cut to what
//! is left of both ([`Stop::slice`]), so it ends on time, and time is also
//! checked between records, so a busy log cannot keep it going.

use std::time::Duration;

use crate::address::Target;
use crate::error::{Kind, failure};
use crate::wait::Deadline;

/// A follow's stop conditions, and how far it has got.
#[derive(Debug, Clone, Copy)]
pub struct Stop {
    count: Option<u64>,
    printed: u64,
    timeout: Option<Duration>,
    deadline: Deadline,
    window: Deadline,
}

impl Default for Stop {
    fn default() -> Stop {
        Stop::never()
    }
}

/// Why [`Stop::check`] says to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// `--count` versions or records were printed, or the `--for` window
    /// is over: a success.
    Done,
    /// `--timeout` ran out first.
    TimedOut,
}

impl Stop {
    /// Stops after `count` printed, at `deadline` (the command's
    /// `--timeout` of `timeout`) or after `window` from now (`--for`).
    #[must_use]
    pub fn new(
        count: Option<u64>,
        timeout: Option<Duration>,
        deadline: Deadline,
        window: Option<Duration>,
    ) -> Stop {
        Stop {
            count,
            printed: 0,
            timeout,
            deadline,
            window: Deadline::after(window),
        }
    }

    /// A follow that only the segment's removal ends.
    #[must_use]
    pub fn never() -> Stop {
        Stop::new(None, None, Deadline::after(None), None)
    }

    /// Counts one version or record printed; true when that was the last
    /// one `--count` asked for.
    pub fn printed(&mut self) -> bool {
        self.printed += 1;
        self.count.is_some_and(|n| self.printed >= n)
    }

    /// Whether time is up, and how: `--timeout` wins over a `--for`
    /// window that ends at the same moment (it is the stricter promise).
    #[must_use]
    pub fn check(&self) -> Option<Ended> {
        if self.deadline.expired() {
            Some(Ended::TimedOut)
        } else if self.window.expired() {
            Some(Ended::Done)
        } else {
            None
        }
    }

    /// How long one sleep may last: at most `cap`, never past either end.
    #[must_use]
    pub fn slice(&self, cap: Duration) -> Duration {
        self.window.slice(self.deadline.slice(cap))
    }

    /// The exit-124 error for a follow of `target` that `--timeout` ended;
    /// `items` names what it prints ("versions", "records").
    #[must_use]
    pub fn timed_out(&self, target: &Target, items: &str) -> anyhow::Error {
        let after = self.timeout.map_or_else(String::new, |t| {
            format!(" after {}", humantime::format_duration(t))
        });
        let progress = match self.count {
            Some(n) => format!("printed {} of {n} {items}", self.printed),
            None => format!(
                "printed {} {items}; --for ends a follow after a while with exit 0",
                self.printed
            ),
        };
        failure(
            Kind::TimedOut,
            format!("timed out{after} following {target}: {progress}"),
        )
    }
}
