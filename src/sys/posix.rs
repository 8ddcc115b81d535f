//! POSIX shared memory objects and the file calls made on them: open by
//! name, create unnamed or exclusively, link, rename, unlink, mode, size,
//! reserved space and stat; plus the page size, a file system's space and
//! the file size limit.
//!
//! Contract:
//! - Thin: each wrapper makes one call with fixed flags and returns its
//!   Errno untouched; what an error means is the caller's to say.
//! - Opening never follows a symlink and never blocks (glibc's shm_open
//!   adds O_NOFOLLOW, we add O_NONBLOCK): what stands behind a name is
//!   judged on the descriptor, never waited on.
//! - Every descriptor is an [`OwnedFd`], close-on-exec.
//! - Sizes are `usize`; one that does not fit `off_t` is EFBIG, as the
//!   kernel says of a file too large.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, FallocateFlags, OFlag, RenameFlags};
use nix::libc;
use nix::sys::stat::{FileStat, Mode};

/// `shm_open(3)` of an existing object, `name` as shm_open takes it
/// ("/x"): read-only or read-write, never created, never blocking (a FIFO
/// planted at the name would block an open forever).
pub fn shm_open_existing(name: &str, writable: bool) -> Result<OwnedFd, Errno> {
    let access = if writable {
        OFlag::O_RDWR
    } else {
        OFlag::O_RDONLY
    };
    nix::sys::mman::shm_open(name, access | OFlag::O_NONBLOCK, Mode::empty())
}

/// `shm_unlink(3)`: removes the name; the object lives on while mapped or open.
pub fn shm_unlink(name: &str) -> Result<(), Errno> {
    nix::sys::mman::shm_unlink(name)
}

/// A new, unnamed, read-write file in directory `dir` (`O_TMPFILE`), for
/// [`link_unnamed`] to name once it is complete. `mode` is the permission
/// bits, to which the umask applies (see [`set_mode`]). EOPNOTSUPP, EISDIR
/// or EINVAL: no O_TMPFILE there (an old kernel, or not a tmpfs).
pub fn create_unnamed(dir: &str, mode: u32) -> Result<OwnedFd, Errno> {
    nix::fcntl::open(
        dir,
        OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(mode),
    )
}

/// A new read-write file at `path`, failing with EEXIST if anything is
/// there already (a symlink included: it is not followed).
pub fn create_exclusive(path: &str, mode: u32) -> Result<OwnedFd, Errno> {
    let flags =
        OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    nix::fcntl::open(path, flags, Mode::from_bits_truncate(mode))
}

/// Gives the unnamed file `fd` (from [`create_unnamed`]) the name `path`
/// (`linkat` through /proc/self/fd), failing with EEXIST if the name
/// exists: nothing is ever replaced. ENOENT where /proc is not mounted.
pub fn link_unnamed(fd: BorrowedFd<'_>, path: &Path) -> Result<(), Errno> {
    let by_proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
    nix::unistd::linkat(
        AT_FDCWD,
        by_proc.as_str(),
        AT_FDCWD,
        path,
        AtFlags::AT_SYMLINK_FOLLOW,
    )
}

/// `renameat2(RENAME_NOREPLACE)`: moves `from` to `to`, failing with
/// EEXIST if `to` exists.
pub fn rename_no_replace(from: &str, to: &Path) -> Result<(), Errno> {
    nix::fcntl::renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE)
}

/// `unlink(2)` of a path.
pub fn unlink(path: &str) -> Result<(), Errno> {
    nix::unistd::unlink(path)
}

/// `fchmod(2)`: exactly these permission bits, the umask not applied (as
/// shmget gives a System V segment its mode).
pub fn set_mode(fd: BorrowedFd<'_>, mode: u32) -> Result<(), Errno> {
    nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(mode))
}

/// `fallocate(2)` of the first `len` bytes, growing the file to `len` if
/// it is smaller: the space is reserved now, so a full file system fails
/// here (ENOSPC, or EFBIG past `ulimit -f`) and not as a SIGBUS later.
/// EOPNOTSUPP on a file system without it. fallocate(2) itself, not
/// posix_fallocate(3), whose fallback writes into the file.
pub fn reserve(fd: BorrowedFd<'_>, len: usize) -> Result<(), Errno> {
    nix::fcntl::fallocate(fd, FallocateFlags::empty(), 0, to_off_t(len)?)
}

/// `ftruncate(2)`: sets the size, reserving nothing (see [`reserve`]).
pub fn set_len(fd: BorrowedFd<'_>, len: usize) -> Result<(), Errno> {
    nix::unistd::ftruncate(fd, to_off_t(len)?)
}

fn to_off_t(len: usize) -> Result<libc::off_t, Errno> {
    libc::off_t::try_from(len).map_err(|_| Errno::EFBIG)
}

/// `fstat(2)`: what the descriptor leads to, whatever its name leads to now.
pub fn fstat(fd: BorrowedFd<'_>) -> Result<FileStat, Errno> {
    nix::sys::stat::fstat(fd)
}

/// `lstat(2)`: what is at `path` itself, a symlink not followed.
pub fn lstat(path: &Path) -> Result<FileStat, Errno> {
    nix::sys::stat::lstat(path)
}

/// The effective uid, which owns what this process creates.
#[must_use]
pub fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// The page size, read once. After the first call this is one atomic load,
/// so a signal handler may call it once it has been called before.
#[must_use]
pub fn page_size() -> usize {
    static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);
    let cached = PAGE_SIZE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: sysconf only reads a constant of the system.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page = usize::try_from(page)
        .ok()
        .filter(|p| p.is_power_of_two())
        .unwrap_or(4096);
    PAGE_SIZE.store(page, Ordering::Relaxed);
    page
}

/// A file system's size and free space in bytes, as `df` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsSpace {
    /// Total size.
    pub size: u64,
    /// Free, including what only root may use.
    pub free: u64,
    /// Free for an unprivileged user.
    pub available: u64,
}

/// `statvfs(3)` of the file system holding `path`.
pub fn fs_space(path: &str) -> Result<FsSpace, Errno> {
    let vfs = nix::sys::statvfs::statvfs(path)?;
    let fragment = vfs.fragment_size();
    let bytes = |blocks: libc::fsblkcnt_t| blocks.saturating_mul(fragment);
    Ok(FsSpace {
        size: bytes(vfs.blocks()),
        free: bytes(vfs.blocks_free()),
        available: bytes(vfs.blocks_available()),
    })
}

/// The soft `RLIMIT_FSIZE` (`ulimit -f`) in bytes; None when unlimited or
/// unknown.
#[must_use]
pub fn file_size_limit() -> Option<u64> {
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_FSIZE) {
        Ok((soft, _)) if soft != libc::RLIM_INFINITY => Some(soft),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn page_size_is_cached_and_a_power_of_two() {
        let page = page_size();
        assert!(page.is_power_of_two());
        assert_eq!(page_size(), page);
    }

    #[test]
    fn sizes_past_off_t_are_efbig() {
        let fd = nix::sys::memfd::memfd_create("posix-test", nix::sys::memfd::MFdFlags::empty())
            .expect("memfd");
        assert_eq!(set_len(fd.as_fd(), usize::MAX), Err(Errno::EFBIG));
        assert_eq!(reserve(fd.as_fd(), usize::MAX), Err(Errno::EFBIG));
        set_len(fd.as_fd(), 4096).expect("size");
        assert_eq!(fstat(fd.as_fd()).expect("stat").st_size, 4096);
    }
}
