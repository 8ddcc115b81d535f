//! How peers wait for each other: deadlines, futex waits on shared words
//! (with a polling fallback), peer liveness, and a write lock that a dead
//! holder cannot wedge.
//!
//! Contract: every wait here is bounded by a deadline or re-checks its
//! condition at least every [`RECHECK`], so a dead peer or a corrupt word is
//! noticed instead of waited on forever.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::os;

/// Longest single sleep before a waiter re-checks what it waits for.
pub const RECHECK: Duration = Duration::from_millis(50);

/// An optional point in time after which waiting stops.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// Expires `timeout` from now, or never.
    #[must_use]
    pub fn after(timeout: Option<Duration>) -> Deadline {
        Deadline(timeout.map(|t| Instant::now() + t))
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
    if os::futex_wait(word, seen, Some(max)).is_err() {
        std::thread::sleep(max.min(Duration::from_millis(1)));
    }
}

/// Wakes every process sleeping on `word`.
pub fn wake_all(word: &AtomicU32) {
    // No futex means the waiters poll; nothing to do.
    let _ = os::futex_wake(word, i32::MAX);
}

/// Wakes one process sleeping on `word`.
pub fn wake_one(word: &AtomicU32) {
    // No futex means the waiters poll; nothing to do.
    let _ = os::futex_wake(word, 1);
}

/// Whether `pid` (as stored in a shared header) is a live process. Values
/// that are not a positive pid count as dead, so a scribbled word can never
/// make us signal a process group; a zombie counts as dead too.
#[must_use]
pub fn process_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    match kill(Pid::from_raw(raw), None) {
        Ok(()) | Err(Errno::EPERM) => !is_zombie(raw),
        Err(_) => false,
    }
}

fn is_zombie(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may hold spaces.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state == "Z" || state == "X")
}

/// This process's pid as stored in shared headers.
#[must_use]
pub fn my_pid() -> u32 {
    nix::unistd::getpid().as_raw().cast_unsigned()
}

/// Holds a pid lock; releases it on drop, even while unwinding.
#[derive(Debug)]
pub struct PidLockGuard<'a> {
    word: &'a AtomicU32,
    me: u32,
}

impl Drop for PidLockGuard<'_> {
    fn drop(&mut self) {
        // If the word no longer holds our pid, someone took the lock from us
        // believing us dead; it is theirs now and must not be cleared.
        if self
            .word
            .compare_exchange(self.me, 0, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            wake_one(self.word);
        }
    }
}

/// Takes the lock in `word` (0 = free, else the holder's pid). A holder
/// that died is replaced. `waiting` is called once if the lock is still
/// busy after a second, with the holder's pid, so the caller can say why it
/// is waiting. Returns None if `deadline` passes first.
pub fn lock_pid(
    word: &AtomicU32,
    deadline: Deadline,
    mut waiting: impl FnMut(u32),
) -> Option<PidLockGuard<'_>> {
    let me = my_pid();
    let started = Instant::now();
    let mut told = false;
    loop {
        match word.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => return Some(PidLockGuard { word, me }),
            // Our own pid in the word is a predecessor that died with it.
            Err(holder) if holder == me || !process_alive(holder) => {
                if word
                    .compare_exchange(holder, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Some(PidLockGuard { word, me });
                }
            }
            Err(holder) => {
                if deadline.expired() {
                    return None;
                }
                if !told && started.elapsed() >= Duration::from_secs(1) {
                    told = true;
                    waiting(holder);
                }
                wait_while_equal(word, holder, deadline.slice(RECHECK));
            }
        }
    }
}

/// Polls `attempt` until it yields a value or the deadline passes (None).
pub fn poll_until<T>(
    deadline: Deadline,
    mut attempt: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<Option<T>> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(value) = attempt()? {
            return Ok(Some(value));
        }
        if deadline.expired() {
            return Ok(None);
        }
        std::thread::sleep(deadline.slice(pause));
        pause = (pause * 2).min(RECHECK);
    }
}
