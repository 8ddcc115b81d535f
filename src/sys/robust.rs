//! Robust locks: lock words whose holder's death the kernel records.
//!
//! A robust lock occupies ROBUST_LOCK_SIZE bytes of a layout: an 8-byte list
//! entry, then the 32-bit lock word. The word holds the holder's thread id
//! (in the holder's own PID namespace) or 0. Each thread registers a list
//! head with set_robust_list(2); a lock taken is linked into that list, and
//! when the thread dies holding it, however it dies, the kernel sets
//! FUTEX_OWNER_DIED in the word and wakes a waiter
//! (Documentation/locking/robust-futex-ABI.rst). Liveness is therefore the
//! kernel's record, valid across PID namespaces; tids are never compared
//! with our own or probed with kill(2).
//!
//! Hold robust locks only on threads that live as long as the process (here:
//! the main thread). A process that dies or exits holding one is recorded;
//! a thread that merely returns is not, because glibc resets the thread's
//! list on its way out. A forked child (without exec) starts with no list.
//!
//! The list entries live in shared memory, where another process could
//! scribble on them; we only ever write them (the authoritative list is
//! private to this thread), so a scribble can mislead only the kernel's walk
//! at our exit, which is bounded and fault-safe.
//!
//! Contract:
//! - Whether a holder is alive is the kernel's record (FUTEX_OWNER_DIED),
//!   never a tid compared with ours or probed with kill(2).
//! - Lock entries in shared memory are only written, never read back.
//! - A mapping with a lock still linked is never unmapped (see
//!   [`Mapping`]'s Drop).
#![allow(unsafe_code)]

use std::sync::Once;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use nix::errno::Errno;
use nix::libc;

use super::futex::futex_wake;
use super::mapping::{Mapping, OutOfBounds};

/// Set by the kernel in a robust lock word whose holder died holding it.
pub const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
/// Set by a waiter, so whoever releases the lock wakes the waiters.
pub const FUTEX_WAITERS: u32 = 0x8000_0000;
/// The holder's thread id, in the holder's PID namespace.
pub const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
/// Bytes one robust lock takes in a layout: list entry (8), word (4), reserved (4).
pub const ROBUST_LOCK_SIZE: usize = 16;
/// Where the word sits after the start of the lock's list entry.
const ROBUST_WORD_OFFSET: usize = 8;

/// The calling thread's tid as a robust lock word holds it.
#[must_use]
pub fn current_tid() -> u32 {
    nix::unistd::gettid().as_raw().cast_unsigned() & FUTEX_TID_MASK
}

/// `struct robust_list_head` of the kernel ABI.
#[repr(C)]
struct RobustListHead {
    /// `list.next`: the first held entry, or the head itself when none.
    next: *mut u8,
    /// Word address minus entry address, the same for every entry.
    futex_offset: libc::c_long,
    /// An entry being locked or unlocked right now, or null.
    list_op_pending: *mut u8,
}

/// This thread's registered head and the entries it holds, in order.
struct RobustThread {
    head: RobustListHead,
    held: Vec<*mut u8>,
    /// [`FORKS`] when the head was registered: a forked child starts with
    /// no kernel list and must not relink its parent's entries.
    forks: u64,
}

/// Forks this process went through, counted in the child (pthread_atfork).
static FORKS: AtomicU64 = AtomicU64::new(0);
static COUNT_FORKS: Once = Once::new();

extern "C" fn count_fork_in_child() {
    // Async-signal-safe: one atomic add.
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// This thread's robust state, registered with the kernel, anew in a
/// forked child (which inherits our memory but not the kernel's list).
fn robust_thread(thread: *mut RobustThread) -> *mut RobustThread {
    let forks = FORKS.load(Ordering::Relaxed);
    // SAFETY: the leaked state belongs to this thread alone and nothing
    // else borrows it now.
    let state = unsafe { &mut *thread };
    if state.forks != forks {
        // The parent's locks are the parent's: forget them, unwritten.
        state.held.clear();
        state.forks = forks;
        state.head.next = std::ptr::from_mut(&mut state.head).cast();
        state.head.list_op_pending = std::ptr::null_mut();
        set_robust_list(&mut state.head);
    }
    thread
}

fn set_robust_list(head: &mut RobustListHead) {
    // SAFETY: the head is leaked, so it outlives the thread as the kernel
    // requires; the size is that of the ABI struct. This replaces glibc's
    // head for this thread, which only glibc's robust pthread mutexes use
    // (this program has none).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_set_robust_list,
            std::ptr::from_mut(head),
            std::mem::size_of::<RobustListHead>(),
        )
    };
    // Without a registered list a lock still works; only a holder's death
    // would go unrecorded, which lock waiters bound with their patience.
    let _ = Errno::result(ret);
}

thread_local! {
    /// Leaked on purpose: the kernel reads the head when the thread exits,
    /// after thread-local destructors have run.
    static ROBUST: *mut RobustThread = register_robust_list();
}

fn register_robust_list() -> *mut RobustThread {
    COUNT_FORKS.call_once(|| {
        // SAFETY: the handler is a plain extern "C" fn that only adds to an
        // atomic; registration itself touches no memory of ours.
        let _ = unsafe { libc::pthread_atfork(None, None, Some(count_fork_in_child)) };
    });
    let thread = Box::leak(Box::new(RobustThread {
        head: RobustListHead {
            next: std::ptr::null_mut(),
            #[allow(clippy::cast_possible_wrap, reason = "the offset is 8")]
            futex_offset: ROBUST_WORD_OFFSET as libc::c_long,
            list_op_pending: std::ptr::null_mut(),
        },
        held: Vec::new(),
        forks: FORKS.load(Ordering::Relaxed),
    }));
    thread.head.next = std::ptr::from_mut(&mut thread.head).cast();
    set_robust_list(&mut thread.head);
    thread
}

/// Rewrites the kernel-visible chain from the private list: head → held[0]
/// → … → head. Entries are only written, never read back.
fn relink(thread: &mut RobustThread) {
    let head: *mut u8 = std::ptr::from_mut(&mut thread.head).cast();
    let mut next = head;
    for &entry in thread.held.iter().rev() {
        #[allow(
            clippy::cast_ptr_alignment,
            reason = "robust_entry checked the 8-byte alignment"
        )]
        let slot = entry.cast::<usize>();
        // SAFETY: every held entry is an 8-aligned, in-bounds, writable
        // 8-byte span of a mapping that outlives the lock (the guard borrows
        // it); a volatile write publishes the pointer to the kernel.
        unsafe { std::ptr::write_volatile(slot, next as usize) };
        next = entry;
    }
    thread.head.next = next;
}

/// The result of one attempt at a robust lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RobustTry {
    /// Taken; `owner_died` says the previous holder died holding it.
    Taken {
        /// The kernel had marked the word FUTEX_OWNER_DIED.
        owner_died: bool,
    },
    /// Held by a live thread: the word's value.
    Held(u32),
}

/// Whether a robust lock word is held by a live thread.
#[must_use]
pub fn robust_held(word: u32) -> bool {
    word & FUTEX_TID_MASK != 0 && word & FUTEX_OWNER_DIED == 0
}

impl Mapping {
    fn robust_entry(&self, offset: usize) -> Result<(*mut u8, &AtomicU32), OutOfBounds> {
        let entry = self.span(offset, ROBUST_LOCK_SIZE)?;
        if !self.writable || entry.align_offset(8) != 0 {
            return Err(OutOfBounds);
        }
        Ok((entry, self.aligned_u32(offset + ROBUST_WORD_OFFSET)?))
    }

    /// The word of the robust lock at `offset` (any mapping, to look at it).
    pub fn robust_word(&self, offset: usize) -> Result<&AtomicU32, OutOfBounds> {
        self.span(offset, ROBUST_LOCK_SIZE)?;
        self.aligned_u32(offset + ROBUST_WORD_OFFSET)
    }

    /// One attempt to take the robust lock at `offset` (8-aligned, in a
    /// writable mapping) for the calling thread. A word marked
    /// FUTEX_OWNER_DIED counts as free.
    pub fn robust_try_lock(&self, offset: usize) -> Result<RobustTry, OutOfBounds> {
        let (entry, word) = self.robust_entry(offset)?;
        let tid = current_tid();
        ROBUST.with(|&thread| {
            let thread = robust_thread(thread);
            // SAFETY: the leaked state belongs to this thread alone, and no
            // other reference to it is alive during this closure.
            let thread = unsafe { &mut *thread };
            // A held word is refused without ever naming the entry as
            // pending: a pending entry is how the kernel, if we died now,
            // would judge the word by our tid, and a live holder in another
            // PID namespace may have the same tid as we have.
            let mut current = word.load(std::sync::atomic::Ordering::Relaxed);
            if robust_held(current) {
                return Ok(RobustTry::Held(current));
            }
            // Pending before the swap: if we die between the swap and the
            // link, the kernel still finds the entry.
            thread.head.list_op_pending = entry;
            std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
            let result = loop {
                if robust_held(current) {
                    break RobustTry::Held(current);
                }
                let new = tid | (current & FUTEX_WAITERS);
                match word.compare_exchange(
                    current,
                    new,
                    std::sync::atomic::Ordering::Acquire,
                    std::sync::atomic::Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        thread.held.push(entry);
                        self.robust_held.fetch_add(1, Ordering::AcqRel);
                        relink(thread);
                        break RobustTry::Taken {
                            owner_died: current & FUTEX_OWNER_DIED != 0,
                        };
                    }
                    Err(seen) => current = seen,
                }
            };
            std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
            thread.head.list_op_pending = std::ptr::null_mut();
            Ok(result)
        })
    }

    /// Releases the robust lock at `offset` that this thread took, waking
    /// waiters. A word that no longer holds our tid is left alone: it is
    /// not ours any more.
    pub fn robust_unlock(&self, offset: usize) -> Result<(), OutOfBounds> {
        self.robust_release(offset, 0)
    }

    /// Releases the robust lock at `offset` that this thread took from a
    /// holder that died, putting back the kernel's mark (FUTEX_OWNER_DIED,
    /// no tid, as the kernel leaves it): for a taker that looked under the
    /// lock and decided not to go on, so everyone still sees the death.
    pub fn robust_unlock_as_died(&self, offset: usize) -> Result<(), OutOfBounds> {
        self.robust_release(offset, FUTEX_OWNER_DIED)
    }

    fn robust_release(&self, offset: usize, left: u32) -> Result<(), OutOfBounds> {
        let (entry, word) = self.robust_entry(offset)?;
        let tid = current_tid();
        ROBUST.with(|&thread| {
            let thread = robust_thread(thread);
            // SAFETY: as in robust_try_lock.
            let thread = unsafe { &mut *thread };
            thread.head.list_op_pending = entry;
            std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
            if let Some(at) = thread.held.iter().position(|&e| e == entry) {
                thread.held.remove(at);
                self.robust_held.fetch_sub(1, Ordering::AcqRel);
                relink(thread);
                // Unlinked now: clear the pointer it held, so a released
                // lock shows no address of ours to whoever maps the segment.
                #[allow(
                    clippy::cast_ptr_alignment,
                    reason = "robust_entry checked the 8-byte alignment"
                )]
                let slot = entry.cast::<usize>();
                // SAFETY: as in relink: an 8-aligned, in-bounds, writable
                // 8-byte span of a mapping the caller borrows.
                unsafe { std::ptr::write_volatile(slot, 0) };
            }
            let mut current = word.load(std::sync::atomic::Ordering::Relaxed);
            while current & FUTEX_TID_MASK == tid && current & FUTEX_OWNER_DIED == 0 {
                match word.compare_exchange(
                    current,
                    left,
                    std::sync::atomic::Ordering::Release,
                    std::sync::atomic::Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        if current & FUTEX_WAITERS != 0 {
                            // No futex means waiters poll; nothing to do.
                            let _ = futex_wake(word, i32::MAX);
                        }
                        break;
                    }
                    Err(seen) => current = seen,
                }
            }
            std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
            thread.head.list_op_pending = std::ptr::null_mut();
        });
        Ok(())
    }
}
