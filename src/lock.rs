//! Robust locks in shared memory: whose holder's death the kernel records,
//! so lock ownership holds across PID namespaces (no pid read from shared
//! memory is ever probed).
//!
//! Contract:
//! - [`try_lock_robust`] never waits; [`lock_robust`] waits at most until
//!   its deadline, re-checking at least every [`RECHECK`];
//! - a [`RobustGuard`] releases its lock on drop, even while unwinding, and
//!   only on the thread that took it;
//! - [`Holder`] is what the kernel keeps in the word: free, a live tid (in
//!   its own PID namespace, for messages only), or died.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::sys::{self, Mapping, RobustTry};
use crate::wait::{Deadline, RECHECK, wait_while_equal};

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
                "lock::tests::child_dies_holding_the_lock",
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
