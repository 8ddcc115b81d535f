//! Open-file-description locks (`F_OFD_SETLK`, `F_OFD_GETLK`) on byte ranges.
//!
//! Contract:
//! - Locks never block: a conflicting lock is `Ok(false)`, not a wait.
//! - The kernel drops a lock when the last descriptor of its open file
//!   closes, so a dead holder never leaves one behind.
//! - Ranges are absolute offsets and may lie past the end of the file.
#![allow(unsafe_code)]

use std::os::fd::BorrowedFd;

use nix::errno::Errno;
use nix::libc;

/// A `struct flock` for the `len` bytes from `start` (absolute offsets).
fn flock_range(kind: libc::c_int, start: u64, len: u64) -> libc::flock {
    // SAFETY: flock is plain old data (integers only, padding on some
    // architectures), for which all zeros is a valid value.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    // F_RDLCK, F_WRLCK, F_UNLCK and SEEK_SET are 0 to 2: they fit a short.
    lock.l_type = libc::c_short::try_from(kind).unwrap_or_default();
    lock.l_whence = libc::c_short::try_from(libc::SEEK_SET).unwrap_or_default();
    lock.l_start = libc::off_t::try_from(start).unwrap_or(libc::off_t::MAX);
    lock.l_len = libc::off_t::try_from(len).unwrap_or(libc::off_t::MAX);
    lock
}

/// Takes an exclusive open-file-description lock (`F_OFD_SETLK`, never
/// blocking) on `len` bytes from `start` of the file behind `fd`; the range
/// may lie past the end of the file. The kernel drops it when the last
/// descriptor of that open file is closed, so when the process dies.
/// Ok(false) when another open file holds a conflicting lock. Needs `fd`
/// open for writing.
pub fn ofd_lock(fd: BorrowedFd<'_>, start: u64, len: u64) -> Result<bool, Errno> {
    let lock = flock_range(libc::F_WRLCK, start, len);
    match nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_OFD_SETLK(&lock)) {
        Ok(_) => Ok(true),
        Err(Errno::EAGAIN | Errno::EACCES) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Releases what [`ofd_lock`] took on the same open file.
pub fn ofd_unlock(fd: BorrowedFd<'_>, start: u64, len: u64) -> Result<(), Errno> {
    let lock = flock_range(libc::F_UNLCK, start, len);
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_OFD_SETLK(&lock)).map(drop)
}

/// Whether another open file description holds a lock on any of the `len`
/// bytes from `start` of the file behind `fd` (`F_OFD_GETLK`): evidence
/// from the kernel, which a process can only produce by holding the lock.
pub fn ofd_locked(fd: BorrowedFd<'_>, start: u64, len: u64) -> Result<bool, Errno> {
    let mut lock = flock_range(libc::F_WRLCK, start, len);
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_OFD_GETLK(&mut lock))?;
    Ok(libc::c_int::from(lock.l_type) != libc::F_UNLCK)
}
