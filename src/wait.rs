//! How peers wait for each other: deadlines, and futex waits on shared
//! words (with a polling fallback). The locks they hold are in the lock
//! module, one layer up.
//!
//! Contract: every wait here is bounded by a deadline or re-checks its
//! condition at least every [`RECHECK`], so a dead peer or a corrupt word is
//! noticed instead of waited on forever.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::sys;

/// Longest single sleep before a waiter re-checks what it waits for.
pub const RECHECK: Duration = Duration::from_millis(50);

/// An optional point in time after which waiting stops.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// Expires `timeout` from now, or never.
    #[must_use]
    pub fn after(timeout: Option<Duration>) -> Deadline {
        // A timeout too far away to represent is no deadline at all.
        Deadline(timeout.and_then(|t| Instant::now().checked_add(t)))
    }

    /// Whether the deadline has passed.
    #[must_use]
    pub fn expired(&self) -> bool {
        self.0.is_some_and(|at| Instant::now() >= at)
    }

    /// How long one sleep may last: at most `cap`, never past the deadline.
    #[must_use]
    pub fn slice(&self, cap: Duration) -> Duration {
        match self.0 {
            Some(at) => at.saturating_duration_since(Instant::now()).min(cap),
            None => cap,
        }
    }
}

/// Sleeps while `word` still holds `seen`, for at most `max`: a futex wait,
/// or a short poll where futexes are missing. May return early.
pub fn wait_while_equal(word: &AtomicU32, seen: u32, max: Duration) {
    if word.load(Ordering::Acquire) != seen || max.is_zero() {
        return;
    }
    if sys::futex_wait(word, seen, Some(max)).is_err() {
        std::thread::sleep(max.min(Duration::from_millis(1)));
    }
}

/// When a look of [`wait_on_event`] happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// Just before sleeping, the waiting flag raised: a last look for
    /// what is waited for, and the moment for any periodic duty.
    BeforeSleep,
    /// Just after a sleep in which the event word moved: a peer acted.
    Woken,
    /// Just after a sleep that ended with the event word unchanged (the
    /// slice ran out, or a spurious wake): the moment to ask whether the
    /// peer is still there.
    Quiet,
}

/// The one way a peer waits for another: look, and if what it waits for
/// is not there yet, sleep on `event` (a word the other side bumps when
/// something changes) until it moves or `slice()` passes, look again,
/// and so on.
///
/// `look` returns the value waited for, or None to go on waiting; an
/// error (a dead peer, a deadline) ends the wait. With `waiting`, a flag
/// in the same segment, the waiter raises it before the look that
/// precedes each sleep and lowers it once awake, so the other side bumps
/// and wakes only while someone may sleep (see docs/FORMAT.md). The
/// event is read before the flag is raised and before that look, so a
/// bump between the look and the sleep is never missed.
///
/// No spinning first: on two busy cores a spin burns the CPU the peer
/// needs to make progress, and against a ring without one
/// (docs/BENCHMARKS.md) no spin we measured paid.
pub fn wait_on_event<T, E>(
    event: &AtomicU32,
    waiting: Option<&AtomicU32>,
    mut slice: impl FnMut() -> Duration,
    mut look: impl FnMut(Look) -> Result<Option<T>, E>,
) -> Result<T, E> {
    let flag = |raised: bool| {
        if let Some(flag) = waiting {
            flag.store(u32::from(raised), Ordering::SeqCst);
        }
    };
    loop {
        let seen = event.load(Ordering::SeqCst);
        flag(true);
        let before = look(Look::BeforeSleep);
        if !matches!(before, Ok(None)) {
            flag(false);
        }
        if let Some(found) = before? {
            return Ok(found);
        }
        wait_while_equal(event, seen, slice());
        // Awake: the other side need not wake us until we sleep again.
        flag(false);
        let after = if event.load(Ordering::SeqCst) == seen {
            Look::Quiet
        } else {
            Look::Woken
        };
        if let Some(found) = look(after)? {
            return Ok(found);
        }
    }
}

/// Wakes every process sleeping on `word`.
pub fn wake_all(word: &AtomicU32) {
    // No futex means the waiters poll; nothing to do.
    let _ = sys::futex_wake(word, i32::MAX);
}

/// Longest pause between two looks of [`poll_until`]: what appears (a
/// stream's writer, say) is found within this, which matters when a fast
/// peer is blocked until we find it; a failed look costs a few µs.
pub const POLL_CAP: Duration = Duration::from_millis(4);

/// Polls `attempt` until it yields a value or the deadline passes (None).
pub fn poll_until<T, E>(
    deadline: Deadline,
    mut attempt: impl FnMut() -> Result<Option<T>, E>,
) -> Result<Option<T>, E> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(value) = attempt()? {
            return Ok(Some(value));
        }
        if deadline.expired() {
            return Ok(None);
        }
        std::thread::sleep(deadline.slice(pause));
        pause = (pause * 2).min(POLL_CAP);
    }
}
