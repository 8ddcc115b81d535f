//! How peers wait for each other: deadlines, futex waits on shared words
//! (with a polling fallback), and robust locks whose holder's death the
//! kernel records, so liveness and lock ownership hold across PID
//! namespaces (no pid read from shared memory is ever probed).
//!
//! Contract: every wait here is bounded by a deadline or re-checks its
//! condition at least every [`RECHECK`], so a dead peer or a corrupt word is
//! noticed instead of waited on forever.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::sys::{self, Mapping, RobustTry};

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

/// Wakes every process sleeping on `word`.
pub fn wake_all(word: &AtomicU32) {
    // No futex means the waiters poll; nothing to do.
    let _ = sys::futex_wake(word, i32::MAX);
}

/// Who holds a robust lock, as the kernel keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// Nobody.
    Free,
    /// A live thread: its tid in *its own* PID namespace, for messages only
    /// (it may name another process, or none, in ours).
    Alive(u32),
    /// Its holder died holding it (the kernel set FUTEX_OWNER_DIED).
    Died,
}

impl Holder {
    /// Reads a robust lock word.
    #[must_use]
    pub fn of(word: u32) -> Holder {
        if word & sys::FUTEX_OWNER_DIED != 0 {
            Holder::Died
        } else if word & sys::FUTEX_TID_MASK == 0 {
            Holder::Free
        } else {
            Holder::Alive(word & sys::FUTEX_TID_MASK)
        }
    }

    /// The holder of the robust lock at `offset` in `map` now.
    pub fn at(map: &Mapping, offset: usize) -> Result<Holder, sys::OutOfBounds> {
        Ok(Holder::of(map.robust_word(offset)?.load(Ordering::Acquire)))
    }
}

/// A robust lock this thread holds; released on drop, even while
/// unwinding. If this process dies instead, the kernel marks it
/// FUTEX_OWNER_DIED, so the next taker knows (see [`crate::sys`]'s robust locks).
#[derive(Debug)]
pub struct RobustGuard<'a> {
    map: &'a Mapping,
    offset: usize,
    owner_died: bool,
    /// Not Send: the lock is linked in this thread's robust list, so only
    /// this thread can release it.
    _thread_bound: std::marker::PhantomData<*const ()>,
}

impl RobustGuard<'_> {
    /// Whether the previous holder died holding the lock, leaving whatever
    /// it protected half-done.
    #[must_use]
    pub fn previous_owner_died(&self) -> bool {
        self.owner_died
    }
}

impl RobustGuard<'_> {
    /// Lets go of a lock taken only to look under it, leaving its word as
    /// it was found: marked died again if the previous holder died (see
    /// [`Mapping::robust_unlock_as_died`]), free otherwise.
    pub fn give_back(self) {
        if self.owner_died {
            // As in drop: the offset was valid when the lock was taken.
            let _ = self.map.robust_unlock_as_died(self.offset);
            std::mem::forget(self);
        }
    }
}

impl Drop for RobustGuard<'_> {
    fn drop(&mut self) {
        // The offset was valid when the lock was taken and the mapping is
        // borrowed, so this cannot fail; nothing useful to do if it did.
        let _ = self.map.robust_unlock(self.offset);
    }
}

/// One attempt at the robust lock at `offset` (8-aligned, in a writable
/// mapping): the guard, or who holds it (never [`Holder::Died`] or
/// [`Holder::Free`]: those are taken).
pub fn try_lock_robust(
    map: &Mapping,
    offset: usize,
) -> Result<Result<RobustGuard<'_>, Holder>, sys::OutOfBounds> {
    Ok(match map.robust_try_lock(offset)? {
        RobustTry::Taken { owner_died } => Ok(RobustGuard {
            map,
            offset,
            owner_died,
            _thread_bound: std::marker::PhantomData,
        }),
        RobustTry::Held(word) => Err(Holder::of(word)),
    })
}

/// Takes the robust lock at `offset`, sleeping while a live thread holds
/// it. `waiting` is called once if it is still held after a second, with
/// the holder's tid (in its own namespace). Returns None if `deadline`
/// passes first.
pub fn lock_robust(
    map: &Mapping,
    offset: usize,
    deadline: Deadline,
    mut waiting: impl FnMut(u32),
) -> Result<Option<RobustGuard<'_>>, sys::OutOfBounds> {
    let word = map.robust_word(offset)?;
    let started = Instant::now();
    let mut told = false;
    loop {
        let held = match try_lock_robust(map, offset)? {
            Ok(guard) => return Ok(Some(guard)),
            Err(_) => word.load(Ordering::Relaxed),
        };
        if deadline.expired() {
            return Ok(None);
        }
        if !told && started.elapsed() >= Duration::from_secs(1) {
            told = true;
            waiting(held & sys::FUTEX_TID_MASK);
        }
        // Ask the holder (or the kernel, if it dies) to wake us.
        let flagged = held | sys::FUTEX_WAITERS;
        if held == flagged
            || word
                .compare_exchange(held, flagged, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            wait_while_equal(word, flagged, deadline.slice(RECHECK));
        }
    }
}

/// Longest pause between two looks of [`poll_until`]: what appears (a
/// stream's writer, say) is found within this, which matters when a fast
/// peer is blocked until we find it; a failed look costs a few µs.
pub const POLL_CAP: Duration = Duration::from_millis(4);

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
        pause = (pause * 2).min(POLL_CAP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> Mapping {
        let fd = nix::sys::memfd::memfd_create("robust-test", nix::sys::memfd::MFdFlags::empty())
            .expect("memfd");
        nix::unistd::ftruncate(&fd, 4096).expect("size");
        Mapping::map_fd(std::os::fd::AsFd::as_fd(&fd), 4096, true).expect("map")
    }

    /// A shared object both this test and its child process map.
    fn shared(name: &str) -> Mapping {
        use nix::fcntl::OFlag;
        let fd = nix::sys::mman::shm_open(
            name,
            OFlag::O_RDWR | OFlag::O_CREAT,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .expect("shm_open");
        nix::unistd::ftruncate(&fd, 4096).expect("size");
        Mapping::map_fd(std::os::fd::AsFd::as_fd(&fd), 4096, true).expect("map")
    }

    /// Run by `the_kernel_records_a_holder_that_died` as a child process:
    /// takes the lock and aborts holding it, as a killed process would.
    #[test]
    #[ignore = "a child process of another test"]
    fn child_dies_holding_the_lock() {
        let Ok(name) = std::env::var("SHM_TOOLS_ROBUST_CHILD") else {
            return;
        };
        let map = shared(&name);
        let guard = try_lock_robust(&map, 64).unwrap().expect("free");
        std::mem::forget(guard);
        std::process::abort();
    }

    #[test]
    fn the_kernel_records_a_holder_that_died() {
        let name = format!("/shm-tools-unit-{}", std::process::id());
        let map = shared(&name);
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "wait::tests::child_dies_holding_the_lock",
                "--ignored",
            ])
            .env("SHM_TOOLS_ROBUST_CHILD", &name)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        let _ = nix::sys::mman::shm_unlink(name.as_str());
        assert!(!status.success(), "the child was meant to abort");
        assert_eq!(Holder::at(&map, 64).unwrap(), Holder::Died);
        // Taken only to look under it and given back: still marked died.
        let looked = try_lock_robust(&map, 64).unwrap().expect("free");
        assert!(looked.previous_owner_died());
        looked.give_back();
        assert_eq!(Holder::at(&map, 64).unwrap(), Holder::Died);
        let guard = try_lock_robust(&map, 64)
            .unwrap()
            .expect("a dead holder's lock is free");
        assert!(guard.previous_owner_died());
        drop(guard);
        assert_eq!(Holder::at(&map, 64).unwrap(), Holder::Free);
    }

    #[test]
    fn a_leaked_guard_never_lets_the_list_write_into_other_memory() {
        let first = scratch();
        std::mem::forget(try_lock_robust(&first, 0).unwrap().expect("free"));
        drop(first);
        // Whatever now lives where `first` was must not be written by the
        // robust list: `first` stays mapped while its lock is linked.
        let second = scratch();
        second.write(0, b"VICTIMDA").unwrap();
        let guard = try_lock_robust(&second, 64).unwrap().expect("free");
        let mut head = [0u8; 8];
        second.read(0, &mut head).unwrap();
        assert_eq!(&head, b"VICTIMDA");
        drop(guard);
    }

    #[test]
    fn a_released_lock_leaves_no_pointer_in_the_segment() {
        let map = scratch();
        let first = try_lock_robust(&map, 0).unwrap().expect("free");
        let second = try_lock_robust(&map, 16).unwrap().expect("free");
        assert!(!map.is_zero(0, 8).unwrap(), "a held entry is linked");
        drop(first);
        drop(second);
        assert!(map.is_zero(0, 32).unwrap(), "entries and words cleared");
    }

    #[test]
    fn a_live_holder_is_waited_for_and_several_locks_nest() {
        let map = scratch();
        let first = try_lock_robust(&map, 0).unwrap().expect("free");
        let second = try_lock_robust(&map, 32).unwrap().expect("free");
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(matches!(
                    try_lock_robust(&map, 0).unwrap(),
                    Err(Holder::Alive(_))
                ));
                let deadline = Deadline::after(Some(Duration::from_secs(10)));
                let guard = lock_robust(&map, 0, deadline, |_| {}).unwrap();
                assert!(guard.is_some_and(|g| !g.previous_owner_died()));
            });
            std::thread::sleep(Duration::from_millis(50));
            drop(first);
        });
        assert_eq!(Holder::at(&map, 0).unwrap(), Holder::Free);
        assert!(matches!(Holder::at(&map, 32).unwrap(), Holder::Alive(_)));
        drop(second);
        let deadline = Deadline::after(Some(Duration::from_millis(1)));
        assert!(deadline.slice(RECHECK) <= Duration::from_millis(1));
        assert!(!Deadline::after(Some(Duration::MAX)).expired());
    }
}
