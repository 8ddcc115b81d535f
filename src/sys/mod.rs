//! The OS layer: every System V and POSIX shared memory call, every mapping,
//! and every access to memory that another process may change. One concept
//! a file; everything is re-exported here, so callers name `sys::X`.
//!
//! Contract:
//! - The only module with `unsafe` code; each block is one OS call or one
//!   pointer step, with a `// SAFETY:` line saying which invariant holds.
//! - Memory that another process can change is never read or written
//!   through `&[u8]`: callers copy in and out with bounds-checked methods
//!   of [`Mapping`] or use the atomics it lends.
//! - A [`Mapping`] unmaps (shmdt/munmap) when dropped and is not `Clone`.
//! - Nothing here prints or decides what an error means: calls return
//!   `Errno` (or a small typed error) for the layers above to explain.

mod futex;
mod mapping;
mod ofd;
mod pages;
mod posix;
mod robust;
mod sigbus;
mod stdio;
mod sysv;

pub use futex::{futex_wait, futex_wake};
pub use mapping::{AccessError, Mapping, OutOfBounds};
pub use ofd::{ofd_lock, ofd_locked, ofd_unlock};
pub use pages::{LARGE_COPY, advise_huge_pages};
pub use posix::{
    FsSpace, create_exclusive, create_unnamed, effective_uid, file_size_limit, fs_space, fstat,
    link_unnamed, lstat, page_size, rename_no_replace, reserve, set_len, set_mode,
    shm_open_existing, shm_unlink, unlink,
};
pub use robust::{
    FUTEX_OWNER_DIED, FUTEX_TID_MASK, FUTEX_WAITERS, ROBUST_LOCK_SIZE, RobustTry, current_tid,
    robust_held,
};
pub use sigbus::{ShrankTo, Truncated, truncation_report};
pub use stdio::{clear_stderr_line_on_interrupt, ignore_file_size_signal, was_closed_at_start};
pub use sysv::{
    SHM_DEST, SHM_HUGETLB, ShmId, ShmKey, SysvStat, ftok, shm_remove, shm_stat, shmget,
};
