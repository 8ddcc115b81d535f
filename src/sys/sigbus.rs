//! Truncation guard: a POSIX object shrunk under our mapping.
//!
//! Anyone allowed to open a POSIX object can ftruncate it while we have it
//! mapped; touching a page past the new end then raises SIGBUS, which would
//! kill us. Nothing another process does to a segment may do that, so every
//! POSIX mapping is registered here, and a SIGBUS handler replaces the
//! faulting page and the rest of that mapping with private zero pages (the
//! faulting instruction then completes, reading zeros) and records that the
//! mapping was truncated. The accessors check that record after each copy
//! and fail with [`Truncated`], so zeros are never taken for content, and
//! [`truncation_report`] lets the binaries refuse to exit 0 after one.
//!
//! Contract:
//! - A truncated POSIX object never kills the process with SIGBUS while it
//!   is mapped through a registered [`Mapping`].
//! - Zeros put in place of a truncated object are never taken for content:
//!   every accessor fails with [`Truncated`] after one.
//! - The handler uses only atomics and async-signal-safe calls, and hands
//!   faults that are not ours to the previous action.
#![allow(unsafe_code)]

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, Once, OnceLock};

use nix::errno::Errno;
use nix::libc;

use super::mapping::Mapping;
use super::posix::page_size;

/// A POSIX object that another process truncated while we had it mapped,
/// as data: its message, with what to do, is written at the command layer
/// (src/cmd/explain/layout.rs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncated {
    /// How messages name the object ("POSIX name /x"), as the segment
    /// layer described it (see [`Mapping::describe`]); None when it did
    /// not, or when the truncation was never looked at.
    pub what: Option<String>,
    /// The address flags that name it on the command line ("-n x"; empty
    /// for the per-user default), when known.
    pub flag: Option<String>,
    /// How large it is now.
    pub size: ShrankTo,
}

/// How large a truncated object is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShrankTo {
    /// This many bytes (fstat of our descriptor).
    Bytes(i64),
    /// Fewer bytes than mapped: it can no longer be asked.
    Fewer,
    /// Not looked at: only the handler saw it.
    Unknown,
}

impl std::error::Error for Truncated {}

/// How many mappings can be guarded at once; a process maps a few.
const GUARD_SLOTS: usize = 128;

/// One registered mapping. `len == 0` means free or being set up.
struct GuardSlot {
    base: AtomicUsize,
    len: AtomicUsize,
    truncated: AtomicBool,
}

static GUARDED: [GuardSlot; GUARD_SLOTS] = [const {
    GuardSlot {
        base: AtomicUsize::new(0),
        len: AtomicUsize::new(0),
        truncated: AtomicBool::new(false),
    }
}; GUARD_SLOTS];

/// Truncations noticed so far, in any mapping.
static TRUNCATIONS: AtomicUsize = AtomicUsize::new(0);
/// The message for the first truncation whose object we could describe.
static FIRST_TRUNCATION: Mutex<Option<Truncated>> = Mutex::new(None);
/// The SIGBUS action before ours, handed faults that are not ours.
static PREVIOUS_SIGBUS: OnceLock<libc::sigaction> = OnceLock::new();
static INSTALL_SIGBUS: Once = Once::new();

/// What a POSIX mapping keeps to notice and explain a truncation.
#[derive(Debug)]
pub(super) struct TruncationGuard {
    /// Index in `GUARDED`, or None when every slot was taken (unguarded).
    slot: Option<usize>,
    /// A duplicate of the object's descriptor, to fstat its size later.
    source: Option<OwnedFd>,
    /// How messages name the object ("POSIX name /x"); see [`Mapping::describe`].
    what: Option<String>,
    /// The address flags that name it ("-n x"), for what to do.
    flag: Option<String>,
    /// Whether a caller took its truncation out of the process-wide report
    /// ([`Mapping::take_truncation`]).
    taken: AtomicBool,
}

impl TruncationGuard {
    pub(super) fn register(fd: BorrowedFd<'_>, base: usize, len: usize) -> TruncationGuard {
        INSTALL_SIGBUS.call_once(install_sigbus_handler);
        let slot = GUARDED.iter().position(|slot| {
            slot.base
                .compare_exchange(0, base, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        });
        if let Some(i) = slot {
            GUARDED[i].truncated.store(false, Ordering::Relaxed);
            GUARDED[i].len.store(len, Ordering::Release);
        }
        TruncationGuard {
            slot,
            source: fd.try_clone_to_owned().ok(),
            what: None,
            flag: None,
            taken: AtomicBool::new(false),
        }
    }

    /// False when every slot was taken: then a shrink would raise a
    /// SIGBUS that nothing catches.
    pub(super) fn is_watched(&self) -> bool {
        self.slot.is_some()
    }

    fn is_truncated(&self) -> bool {
        self.slot
            .is_some_and(|i| GUARDED[i].truncated.load(Ordering::Acquire))
    }

    fn mark_truncated(&self) {
        let first = self
            .slot
            .is_none_or(|i| !GUARDED[i].truncated.swap(true, Ordering::AcqRel));
        if first {
            TRUNCATIONS.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The object's size now, if it can still be asked.
    fn current_size(&self) -> Option<i64> {
        let source = self.source.as_ref()?;
        nix::sys::stat::fstat(source).ok().map(|s| s.st_size)
    }

    /// The error, recorded as the process's first truncation if it is one.
    fn error(&self) -> Truncated {
        let truncated = Truncated {
            what: self.what.clone(),
            flag: self.flag.clone(),
            size: self.current_size().map_or(ShrankTo::Fewer, ShrankTo::Bytes),
        };
        let mut first = FIRST_TRUNCATION
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        first.get_or_insert_with(|| truncated.clone());
        truncated
    }

    pub(super) fn release(self) {
        if self.is_truncated() {
            // Describe it while the descriptor is still open.
            self.error();
        }
        if let Some(i) = self.slot {
            GUARDED[i].len.store(0, Ordering::Release);
            GUARDED[i].truncated.store(false, Ordering::Relaxed);
            GUARDED[i].base.store(0, Ordering::Release);
        }
    }
}

impl Mapping {
    /// Sets how a truncation of this mapping's object is reported: `what`
    /// names it ("POSIX name /x") and `flag` is the address flags that name
    /// it on the command line ("-n x"). The OS layer cannot know the name
    /// the user gave (a descriptor's /proc path is not it), so the segment
    /// layer tells it.
    pub fn describe(&mut self, what: String, flag: String) {
        if let Some(guard) = &mut self.guard {
            guard.what = Some(what);
            guard.flag = Some(flag);
        }
    }

    /// Fails with [`Truncated`] once the object was found shrunk under this
    /// mapping. Callers that work through the lent atomics check this before
    /// trusting what they loaded (the atomic accessors also check it).
    pub fn check_intact(&self) -> Result<(), Truncated> {
        match &self.guard {
            Some(guard) if guard.is_truncated() => Err(guard.error()),
            _ => Ok(()),
        }
    }

    /// Asks the OS for the object's size now (one fstat) and fails with
    /// [`Truncated`] if it is smaller than the mapping. Shrinking within
    /// the last page raises no SIGBUS (the rest of that page reads as
    /// zeros), so callers that wait or loop call this to notice.
    pub fn verify_size(&self) -> Result<(), Truncated> {
        if let Some(guard) = &self.guard
            && guard
                .current_size()
                .is_some_and(|size| usize::try_from(size).map_or(true, |size| size < self.len))
        {
            guard.mark_truncated();
            return Err(guard.error());
        }
        self.check_intact()
    }

    /// Like [`Mapping::verify_size`], but a truncation found is taken out
    /// of the process-wide [`truncation_report`]: for a caller that reports
    /// it itself as the outcome of this one segment among many (`--list
    /// --stats`), so that one segment's truncation does not fail the rest.
    pub fn take_truncation(&self) -> Option<Truncated> {
        let truncated = self.verify_size().err()?;
        if let Some(guard) = &self.guard {
            // Guarded, it was counted once; unguarded, once per finding.
            let counted = guard.slot.is_none() || !guard.taken.swap(true, Ordering::AcqRel);
            if counted && TRUNCATIONS.fetch_sub(1, Ordering::AcqRel) == 1 {
                *FIRST_TRUNCATION
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            }
        }
        Some(truncated)
    }

    /// After read(2)/write(2) on the mapping: EFAULT there (the kernel does
    /// not raise SIGBUS for its own copies) means the object shrank when it
    /// is now shorter than `end`.
    pub(super) fn note_efault(&self, ret: isize, end: usize) {
        if ret != -1 || Errno::last() != Errno::EFAULT {
            return;
        }
        if let Some(guard) = &self.guard
            && guard
                .current_size()
                .is_some_and(|size| usize::try_from(size).map_or(true, |size| size < end))
        {
            guard.mark_truncated();
        }
    }
}

/// The first truncation this process noticed, if any. The binaries call
/// this before exiting so that nothing exits 0 after reading or writing
/// zeros in place of a segment's content.
#[must_use]
pub fn truncation_report() -> Option<Truncated> {
    if TRUNCATIONS.load(Ordering::Acquire) == 0 {
        return None;
    }
    let first = FIRST_TRUNCATION
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    Some(first.unwrap_or(Truncated {
        what: None,
        flag: None,
        size: ShrankTo::Unknown,
    }))
}

fn install_sigbus_handler() {
    // Cached now, so that the handler's call is one atomic load (sysconf
    // is not async-signal-safe).
    let _ = page_size();
    let mut action = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    let mut previous = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    {
        // SAFETY: zeroed is a valid sigaction (no flags, empty mask); only
        // plain fields are set.
        let action = unsafe { &mut *action.as_mut_ptr() };
        action.sa_sigaction = on_sigbus as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
    }
    // SAFETY: both pointers point to live sigaction structs; the handler
    // only makes async-signal-safe calls (mmap, sigaction, raise) and atomics.
    let ret = unsafe { libc::sigaction(libc::SIGBUS, action.as_ptr(), previous.as_mut_ptr()) };
    if ret == 0 {
        // SAFETY: sigaction succeeded and filled in the previous action.
        let _ = PREVIOUS_SIGBUS.set(unsafe { previous.assume_init() });
    }
}

/// The SIGBUS handler: see the module doc. Runs in signal context, so
/// it only uses atomics and async-signal-safe calls.
extern "C" fn on_sigbus(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // si_code > 0: raised by a fault, not sent with kill(2).
    if code > 0 {
        for slot in &GUARDED {
            let base = slot.base.load(Ordering::Acquire);
            let len = slot.len.load(Ordering::Acquire);
            if len == 0 || addr < base || addr - base >= len {
                continue;
            }
            let start = addr & !(page_size() - 1);
            // SAFETY: start..base+len lies inside a mapping of ours that is
            // registered (so not yet unmapped); MAP_FIXED replaces exactly
            // those pages, which nothing in Rust borrows as a slice.
            let replaced = unsafe {
                libc::mmap(
                    start as *mut libc::c_void,
                    base + len - start,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if replaced != libc::MAP_FAILED {
                if !slot.truncated.swap(true, Ordering::AcqRel) {
                    TRUNCATIONS.fetch_add(1, Ordering::AcqRel);
                }
                return;
            }
            break;
        }
    }
    // Not ours: let whoever handled SIGBUS before handle it (the fault
    // repeats on return), or die of it if it was sent with kill.
    let mut default = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    let restore = match PREVIOUS_SIGBUS.get() {
        Some(previous) if code > 0 => std::ptr::from_ref(previous),
        _ => {
            // SAFETY: zeroed is SIG_DFL with no flags and an empty mask.
            unsafe { (*default.as_mut_ptr()).sa_sigaction = libc::SIG_DFL };
            default.as_ptr()
        }
    };
    // SAFETY: `restore` points to a valid sigaction for the call.
    unsafe { libc::sigaction(libc::SIGBUS, restore, std::ptr::null_mut()) };
    if code <= 0 {
        // SAFETY: raise is async-signal-safe; SIGBUS stays blocked until we
        // return, then the default action ends the process.
        unsafe { libc::raise(libc::SIGBUS) };
    }
}
