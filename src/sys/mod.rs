//! The OS layer: every System V and POSIX shared memory call, every mapping,
//! and every access to memory that another process may change.
//!
//! Contract: this is the only module with `unsafe` code. Mapped memory is
//! never handed out as `&[u8]`; callers copy in and out with bounds-checked
//! methods or use the atomics it lends. A [`Mapping`] unmaps (shmdt/munmap)
//! when dropped and is not `Clone`.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fmt;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::Duration;

use nix::errno::Errno;
use nix::libc;
use nix::sys::mman::{MapFlags, ProtFlags};

/// Set in `shm_perm.mode` once a System V segment is marked for removal.
pub const SHM_DEST: u32 = 0o1000;

/// A System V IPC key, as `ipcs` prints it in its first column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShmKey(libc::key_t);

impl ShmKey {
    /// `IPC_PRIVATE`: every `shmget` with it makes a new, unnamed segment.
    pub const PRIVATE: ShmKey = ShmKey(libc::IPC_PRIVATE);

    /// Wraps a raw `key_t`.
    #[must_use]
    pub fn from_raw(raw: libc::key_t) -> Self {
        ShmKey(raw)
    }

    /// The raw `key_t`.
    #[must_use]
    pub fn as_raw(self) -> libc::key_t {
        self.0
    }
}

impl fmt::Display for ShmKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // ipcs prints keys as unsigned 32-bit hex.
        #[allow(clippy::cast_sign_loss, reason = "key_t is a 32-bit pattern")]
        let bits = self.0 as u32;
        write!(f, "0x{bits:08x}")
    }
}

/// A System V shared memory id, as `ipcs -m` prints it in its shmid column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShmId(libc::c_int);

impl ShmId {
    /// Wraps a raw shmid.
    #[must_use]
    pub fn from_raw(raw: libc::c_int) -> Self {
        ShmId(raw)
    }

    /// The raw shmid.
    #[must_use]
    pub fn as_raw(self) -> libc::c_int {
        self.0
    }
}

impl fmt::Display for ShmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// `ftok(3)` from the C library itself, so keys match C programs exactly.
pub fn ftok(path: &Path, proj_id: u8) -> Result<ShmKey, Errno> {
    let path = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    let key = unsafe { libc::ftok(path.as_ptr(), libc::c_int::from(proj_id)) };
    Errno::result(key).map(ShmKey)
}

/// `shmget(2)`: looks up (size 0, no `IPC_CREAT`) or creates a segment.
pub fn shmget(key: ShmKey, size: usize, flags: libc::c_int) -> Result<ShmId, Errno> {
    // SAFETY: shmget takes plain integers and touches no memory of ours.
    let id = unsafe { libc::shmget(key.0, size, flags) };
    Errno::result(id).map(ShmId)
}

/// What `shmctl(IPC_STAT)` reports about a System V segment.
#[derive(Debug, Clone)]
pub struct SysvStat {
    /// The key, `IPC_PRIVATE` once the segment is marked for removal.
    pub key: ShmKey,
    /// Owner uid and gid.
    pub uid: u32,
    /// Owner group.
    pub gid: u32,
    /// Creator uid.
    pub cuid: u32,
    /// Creator gid.
    pub cgid: u32,
    /// Permission bits plus `SHM_DEST`/`SHM_LOCKED`.
    pub mode: u32,
    /// Size in bytes as requested at creation.
    pub size: usize,
    /// Last attach, last detach and last change, seconds since the epoch.
    pub atime: i64,
    /// Last detach.
    pub dtime: i64,
    /// Last change.
    pub ctime: i64,
    /// Pid of the creator.
    pub cpid: i32,
    /// Pid of the last shmat/shmdt.
    pub lpid: i32,
    /// Current number of attaches.
    pub nattch: u64,
}

/// `shmctl(IPC_STAT)`.
pub fn shm_stat(id: ShmId) -> Result<SysvStat, Errno> {
    let mut ds = std::mem::MaybeUninit::<libc::shmid_ds>::zeroed();
    // SAFETY: `ds` is a writable shmid_ds the kernel fills in.
    let ret = unsafe { libc::shmctl(id.0, libc::IPC_STAT, ds.as_mut_ptr()) };
    Errno::result(ret)?;
    // SAFETY: IPC_STAT succeeded, so the kernel initialised every field (and
    // the struct was zeroed before, so padding is initialised too).
    let ds = unsafe { ds.assume_init() };
    Ok(SysvStat {
        key: ShmKey(ds.shm_perm.__key),
        uid: ds.shm_perm.uid,
        gid: ds.shm_perm.gid,
        cuid: ds.shm_perm.cuid,
        cgid: ds.shm_perm.cgid,
        mode: u32::from(ds.shm_perm.mode),
        size: ds.shm_segsz,
        atime: ds.shm_atime,
        dtime: ds.shm_dtime,
        ctime: ds.shm_ctime,
        cpid: ds.shm_cpid,
        lpid: ds.shm_lpid,
        nattch: ds.shm_nattch,
    })
}

/// `SHM_HUGETLB`: a System V segment backed by huge pages (a creation
/// flag; IPC_STAT does not report it, see [`Mapping::is_hugetlb`]).
pub const SHM_HUGETLB: libc::c_int = libc::SHM_HUGETLB;

/// Makes SIGXFSZ ignored, so that going past `RLIMIT_FSIZE` (`ulimit -f`)
/// fails the call with EFBIG, which is reported in one line, instead of
/// the kernel killing the process with no word in the middle of a write.
pub fn ignore_file_size_signal() {
    // SAFETY: SIG_IGN installs no handler code, and nothing in this program
    // relies on SIGXFSZ's default action.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGXFSZ,
            nix::sys::signal::SigHandler::SigIgn,
        )
    };
}

/// The calling thread's tid as a robust lock word holds it.
#[must_use]
pub fn current_tid() -> u32 {
    nix::unistd::gettid().as_raw().cast_unsigned() & FUTEX_TID_MASK
}

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

/// `shmctl(IPC_RMID)`: the segment goes away once the last process detaches.
pub fn shm_remove(id: ShmId) -> Result<(), Errno> {
    // SAFETY: IPC_RMID ignores the buffer argument, so null is allowed.
    let ret = unsafe { libc::shmctl(id.0, libc::IPC_RMID, std::ptr::null_mut()) };
    Errno::result(ret).map(drop)
}

/// How a mapping is undone.
#[derive(Debug)]
enum Unmap {
    Shmdt,
    Munmap,
}

/// Shared memory mapped into this process. Readable always, writable when
/// attached for writing. Unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    base: NonNull<u8>,
    len: usize,
    writable: bool,
    unmap: Unmap,
    /// For POSIX objects, which can shrink under us: see "Truncation guard".
    guard: Option<TruncationGuard>,
    /// Robust locks in this mapping still linked in a thread's robust list
    /// (see "Robust locks"); while any are, the memory is never unmapped.
    robust_held: AtomicUsize,
}

/// Returned by the accessors when an offset or length leaves the mapping;
/// callers validate first, so this means a bug, reported rather than trusted.
#[derive(Debug)]
pub struct OutOfBounds;

impl fmt::Display for OutOfBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("access outside the mapped segment")
    }
}

impl std::error::Error for OutOfBounds {}

impl Mapping {
    /// Attaches System V segment `id` of `len` bytes (its `shm_segsz`).
    pub fn attach_sysv(id: ShmId, len: usize, writable: bool) -> Result<Mapping, Errno> {
        let flags = if writable { 0 } else { libc::SHM_RDONLY };
        // SAFETY: a null address lets the kernel choose where to attach.
        let addr = unsafe { libc::shmat(id.0, std::ptr::null(), flags) };
        // Errno::result treats shmat's (void*)-1 as failure.
        let addr = Errno::result(addr)?;
        let base = NonNull::new(addr.cast::<u8>()).ok_or(Errno::EFAULT)?;
        Ok(Mapping {
            base,
            len,
            writable,
            unmap: Unmap::Shmdt,
            guard: None,
            robust_held: AtomicUsize::new(0),
        })
    }

    /// Maps the first `len` bytes of a POSIX shared memory object shared.
    pub fn map_fd(fd: BorrowedFd<'_>, len: usize, writable: bool) -> Result<Mapping, Errno> {
        let length = NonZeroUsize::new(len).ok_or(Errno::EINVAL)?;
        let prot = if writable {
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE
        } else {
            ProtFlags::PROT_READ
        };
        // SAFETY: a fresh shared mapping chosen by the kernel aliases no Rust
        // object; all access goes through this type's raw-pointer methods.
        let addr =
            unsafe { nix::sys::mman::mmap(None, length, prot, MapFlags::MAP_SHARED, fd, 0) }?;
        let guard = TruncationGuard::register(fd, addr.as_ptr() as usize, len);
        let mapping = Mapping {
            base: addr.cast::<u8>(),
            len,
            writable,
            unmap: Unmap::Munmap,
            guard: Some(guard),
            robust_held: AtomicUsize::new(0),
        };
        if mapping.guard.as_ref().is_some_and(|g| g.slot.is_none()) {
            // No room to watch it for truncation: a shrink would kill us
            // with SIGBUS, so refuse rather than map it unguarded (dropping
            // `mapping` unmaps it).
            return Err(Errno::EMFILE);
        }
        Ok(mapping)
    }

    /// A read-only mapping of a private copy of `image` (a memfd), so an
    /// untrusted segment image can be parsed exactly like a live segment:
    /// the fuzz target and the tests use it.
    pub fn from_bytes(image: &[u8]) -> Result<Mapping, Errno> {
        use std::io::Write;
        let fd = nix::sys::memfd::memfd_create(
            "shm-tools-image",
            nix::sys::memfd::MFdFlags::MFD_CLOEXEC,
        )?;
        let mut file = std::fs::File::from(fd);
        file.write_all(image)
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
        Mapping::map_fd(std::os::fd::AsFd::as_fd(&file), image.len(), false)
    }

    /// Size of the mapping in bytes: the real bound for every header value.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the kernel backs this mapping with huge pages (a System V
    /// segment made with SHM_HUGETLB): its /proc/self/smaps entry reports a
    /// kernel page size above 4 kB. False when that cannot be read.
    #[must_use]
    pub fn is_hugetlb(&self) -> bool {
        let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
            return false;
        };
        let start = format!("{:x}-", self.base.as_ptr() as usize);
        // Every entry has a KernelPageSize line: the first after our
        // entry's first line is ours.
        smaps
            .lines()
            .skip_while(|line| !line.starts_with(&start))
            .find_map(|line| line.strip_prefix("KernelPageSize:"))
            .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .is_some_and(|kb| kb > 4)
    }

    /// True for a zero-length mapping (never produced; kept for clippy).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn span(&self, offset: usize, len: usize) -> Result<*mut u8, OutOfBounds> {
        let end = offset.checked_add(len).ok_or(OutOfBounds)?;
        if end > self.len {
            return Err(OutOfBounds);
        }
        // SAFETY: offset <= end <= self.len, so the result stays in the mapping.
        Ok(unsafe { self.base.as_ptr().add(offset) })
    }

    /// Copies `buf.len()` bytes starting at `offset` out of the segment.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), AccessError> {
        let src = self.span(offset, buf.len())?;
        // SAFETY: `src..src+len` lies in the mapping (checked by span) and
        // cannot overlap `buf`, which is process-private memory.
        unsafe { std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) };
        Ok(self.check_intact()?)
    }

    /// Copies `data` into the segment at `offset`.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<(), AccessError> {
        if !self.writable {
            return Err(OutOfBounds.into());
        }
        let dst = self.span(offset, data.len())?;
        // SAFETY: the span is inside a writable mapping and `data` is private
        // memory, so the two cannot overlap.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        Ok(self.check_intact()?)
    }

    /// Copies `len` bytes inside the segment from `from` to `to`.
    pub fn copy_within(&self, from: usize, to: usize, len: usize) -> Result<(), AccessError> {
        if !self.writable {
            return Err(OutOfBounds.into());
        }
        let src = self.span(from, len)?;
        let dst = self.span(to, len)?;
        // SAFETY: both spans are inside the writable mapping; `copy` allows overlap.
        unsafe { std::ptr::copy(src, dst, len) };
        Ok(self.check_intact()?)
    }

    /// Finds the first NUL byte at or after `offset`, or None.
    pub fn find_nul(&self, offset: usize) -> Result<Option<usize>, AccessError> {
        let mut chunk = [0u8; 4096];
        let mut at = offset;
        while at < self.len {
            let n = chunk.len().min(self.len - at);
            self.read(at, &mut chunk[..n])?;
            if let Some(i) = chunk[..n].iter().position(|&b| b == 0) {
                return Ok(Some(at + i));
            }
            at += n;
        }
        Ok(None)
    }

    /// Whether every byte in `offset..offset + len` is zero.
    pub fn is_zero(&self, offset: usize, len: usize) -> Result<bool, AccessError> {
        self.span(offset, len)?;
        let mut chunk = [0u8; 8192];
        let end = offset + len;
        let mut at = offset;
        while at < end {
            let n = chunk.len().min(end - at);
            self.read(at, &mut chunk[..n])?;
            if chunk[..n].iter().any(|&b| b != 0) {
                return Ok(false);
            }
            at += n;
        }
        Ok(true)
    }

    /// `write(2)` of `len` bytes at `offset` straight from the segment to `fd`.
    /// Returns how many bytes the kernel took.
    pub fn write_to_fd(
        &self,
        fd: BorrowedFd<'_>,
        offset: usize,
        len: usize,
    ) -> Result<usize, Errno> {
        let src = self.span(offset, len).map_err(|_| Errno::EFAULT)?;
        // Pages replaced after a truncation hold zeros, not the content.
        self.check_intact().map_err(|_| Errno::EFAULT)?;
        // SAFETY: the kernel reads `len` bytes from a span inside the mapping.
        let n = unsafe { libc::write(fd.as_raw_fd(), src.cast(), len) };
        self.note_efault(n, offset + len);
        #[allow(
            clippy::cast_sign_loss,
            reason = "Errno::result removed the negative case"
        )]
        Errno::result(n).map(|n| n as usize)
    }

    /// `read(2)` of up to `len` bytes from `fd` straight into the segment.
    /// Returns how many bytes arrived (0 at end of input).
    pub fn read_from_fd(
        &self,
        fd: BorrowedFd<'_>,
        offset: usize,
        len: usize,
    ) -> Result<usize, Errno> {
        if !self.writable {
            return Err(Errno::EBADF);
        }
        let dst = self.span(offset, len).map_err(|_| Errno::EFAULT)?;
        self.check_intact().map_err(|_| Errno::EFAULT)?;
        // SAFETY: the kernel writes at most `len` bytes into a span inside a
        // writable mapping.
        let n = unsafe { libc::read(fd.as_raw_fd(), dst.cast(), len) };
        self.note_efault(n, offset + len);
        #[allow(
            clippy::cast_sign_loss,
            reason = "Errno::result removed the negative case"
        )]
        Errno::result(n).map(|n| n as usize)
    }

    /// A 32-bit atomic at `offset` (4-byte aligned) shared with other
    /// processes; fails once the mapping is known to be truncated.
    pub fn atomic_u32(&self, offset: usize) -> Result<&AtomicU32, AccessError> {
        self.check_intact()?;
        Ok(self.aligned_u32(offset)?)
    }

    /// [`Mapping::atomic_u32`] without the truncation check.
    fn aligned_u32(&self, offset: usize) -> Result<&AtomicU32, OutOfBounds> {
        let ptr = self.span(offset, 4)?;
        if ptr.align_offset(4) != 0 {
            return Err(OutOfBounds);
        }
        // SAFETY: in bounds and aligned; AtomicU32 has interior mutability, so
        // changes by other processes are sound to observe, like other threads'.
        // The reference cannot outlive the mapping (it borrows self).
        Ok(unsafe { AtomicU32::from_ptr(ptr.cast()) })
    }

    /// A 64-bit atomic at `offset` (8-byte aligned) shared with other processes.
    pub fn atomic_u64(&self, offset: usize) -> Result<&AtomicU64, AccessError> {
        self.check_intact()?;
        let ptr = self.span(offset, 8)?;
        if ptr.align_offset(8) != 0 {
            return Err(OutOfBounds.into());
        }
        // SAFETY: as for atomic_u32, with 8-byte alignment checked.
        Ok(unsafe { AtomicU64::from_ptr(ptr.cast()) })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take() {
            guard.release();
        }
        if self.robust_held.load(Ordering::Acquire) != 0 {
            // A lock here is still linked in a robust list (its guard was
            // leaked): later relinks, and the kernel's walk when we exit,
            // write through that entry. Keeping the memory mapped keeps those
            // writes inside this segment, and at exit the kernel records
            // the lock's holder as dead, which is the truth.
            return;
        }
        // Errors are ignored: the only failure modes (EINVAL for an address
        // that is not mapped) cannot happen for a mapping we made, and the
        // kernel detaches everything at exit anyway.
        match self.unmap {
            // SAFETY: base is the address shmat returned; nothing borrows it
            // past self (atomics borrow self).
            Unmap::Shmdt => unsafe {
                libc::shmdt(self.base.as_ptr().cast());
            },
            Unmap::Munmap => {
                // SAFETY: base/len describe the mapping mmap returned.
                let _ = unsafe { nix::sys::mman::munmap(self.base.cast(), self.len) };
            }
        }
    }
}

// SAFETY: the mapping is plain shared memory; all access is via atomics or
// raw copies, which are as safe from another thread as from another process.
unsafe impl Send for Mapping {}
// SAFETY: as above; &Mapping only offers copies and atomics.
unsafe impl Sync for Mapping {}

// ---------------------------------------------------------------------------
// Truncation guard: a POSIX object shrunk under our mapping.
//
// Anyone allowed to open a POSIX object can ftruncate it while we have it
// mapped; touching a page past the new end then raises SIGBUS, which would
// kill us. Nothing another process does to a segment may do that, so every
// POSIX mapping is registered here, and a SIGBUS handler replaces the
// faulting page and the rest of that mapping with private zero pages (the
// faulting instruction then completes, reading zeros) and records that the
// mapping was truncated. The accessors check that record after each copy
// and fail with [`Truncated`], so zeros are never taken for content, and
// [`truncation_report`] lets the binaries refuse to exit 0 after one.
// ---------------------------------------------------------------------------

/// Why an access to a mapping failed.
#[derive(Debug)]
pub enum AccessError {
    /// An offset or length outside the mapping: a bug, or an unchecked header.
    OutOfBounds(OutOfBounds),
    /// The object shrank under the mapping; what was read is not its content.
    Truncated(Truncated),
}

impl From<OutOfBounds> for AccessError {
    fn from(e: OutOfBounds) -> Self {
        AccessError::OutOfBounds(e)
    }
}

impl From<Truncated> for AccessError {
    fn from(e: Truncated) -> Self {
        AccessError::Truncated(e)
    }
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccessError::OutOfBounds(e) => e.fmt(f),
            AccessError::Truncated(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for AccessError {}

/// A POSIX object that another process truncated while we had it mapped.
/// Its message is complete: it names the object and says what to do.
#[derive(Debug, Clone)]
pub struct Truncated {
    message: String,
}

impl fmt::Display for Truncated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
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

/// Page size, read once before the handler is installed (sysconf is not
/// async-signal-safe).
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(4096);
/// Truncations noticed so far, in any mapping.
static TRUNCATIONS: AtomicUsize = AtomicUsize::new(0);
/// The message for the first truncation whose object we could describe.
static FIRST_TRUNCATION: Mutex<Option<String>> = Mutex::new(None);
/// The SIGBUS action before ours, handed faults that are not ours.
static PREVIOUS_SIGBUS: OnceLock<libc::sigaction> = OnceLock::new();
static INSTALL_SIGBUS: Once = Once::new();

/// What a POSIX mapping keeps to notice and explain a truncation.
#[derive(Debug)]
struct TruncationGuard {
    /// Index in `GUARDED`, or None when every slot was taken (unguarded).
    slot: Option<usize>,
    /// A duplicate of the object's descriptor, to fstat its size later.
    source: Option<OwnedFd>,
    /// How messages name the object ("POSIX name /x"); see [`Mapping::describe`].
    what: String,
    /// What to do about it, for the message.
    remedy: String,
    /// Whether a caller took its truncation out of the process-wide report
    /// ([`Mapping::take_truncation`]).
    taken: AtomicBool,
}

impl TruncationGuard {
    fn register(fd: BorrowedFd<'_>, base: usize, len: usize) -> TruncationGuard {
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
            what: "a POSIX shared memory object".to_owned(),
            remedy: "remove it and write it again".to_owned(),
            taken: AtomicBool::new(false),
        }
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
        let size = self
            .current_size()
            .map_or_else(|| "fewer".to_owned(), |n| n.to_string());
        let message = format!(
            "{} shrank to {size} bytes while in use (another process truncated it); \
             its content can no longer be trusted: {}",
            self.what, self.remedy
        );
        let mut first = FIRST_TRUNCATION
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        first.get_or_insert_with(|| message.clone());
        Truncated { message }
    }

    fn release(self) {
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
    /// names it ("POSIX name /x") and `remedy` says what to do. The OS layer
    /// cannot know the name the user gave (a descriptor's /proc path is not
    /// it), so the segment layer tells it.
    pub fn describe(&mut self, what: String, remedy: String) {
        if let Some(guard) = &mut self.guard {
            guard.what = what;
            guard.remedy = remedy;
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
    fn note_efault(&self, ret: isize, end: usize) {
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

/// The message for the first truncation this process noticed, if any. The
/// binaries call this before exiting so that nothing exits 0 after reading
/// or writing zeros in place of a segment's content.
#[must_use]
pub fn truncation_report() -> Option<String> {
    if TRUNCATIONS.load(Ordering::Acquire) == 0 {
        return None;
    }
    let first = FIRST_TRUNCATION
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    Some(first.unwrap_or_else(|| {
        "a POSIX shared memory object shrank while in use (another process truncated it); \
         its content can no longer be trusted: remove it and write it again"
            .to_owned()
    }))
}

fn install_sigbus_handler() {
    // SAFETY: sysconf only reads a constant of the system.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if let Ok(page) = usize::try_from(page)
        && page.is_power_of_two()
    {
        PAGE_SIZE.store(page, Ordering::Relaxed);
    }
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

/// The SIGBUS handler: see the section comment. Runs in signal context, so
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
            let start = addr & !(PAGE_SIZE.load(Ordering::Relaxed) - 1);
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

// ---------------------------------------------------------------------------
// A progress line cleared on Ctrl-C.
//
// A terminal progress line is redrawn in place; killed by SIGINT, the
// process would leave its last frame on screen for the shell's prompt to
// follow. This handler erases the line (one write(2) of "\r" and "erase
// line"), restores the default action and raises SIGINT again, so the
// process still dies of it, with the same status as before.
// ---------------------------------------------------------------------------

/// Erases the current terminal line on stderr when SIGINT arrives, then
/// lets SIGINT end the process as it would have. For progress lines only.
pub fn clear_stderr_line_on_interrupt() {
    let mut action = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    {
        // SAFETY: zeroed is a valid sigaction (no flags, empty mask); only
        // plain fields are set.
        let action = unsafe { &mut *action.as_mut_ptr() };
        action.sa_sigaction = on_interrupt as *const () as usize;
        action.sa_flags = libc::SA_RESETHAND;
    }
    let mut old = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only reads the current one into `old`,
    // a live buffer of the right type.
    let read = unsafe { libc::sigaction(libc::SIGINT, std::ptr::null(), old.as_mut_ptr()) };
    // SAFETY: sigaction filled `old` (or it stays zeroed, SIG_DFL).
    let ignored = read == 0 && unsafe { old.assume_init_ref() }.sa_sigaction == libc::SIG_IGN;
    // An inherited SIG_IGN (`trap '' INT`, nohup-like launchers) is kept,
    // as coreutils do: the caller chose that Ctrl-C must not end us.
    if ignored {
        return;
    }
    // SAFETY: `action` is a live, valid sigaction; the handler only makes
    // async-signal-safe calls (write, raise).
    unsafe { libc::sigaction(libc::SIGINT, action.as_ptr(), std::ptr::null_mut()) };
}

/// The SIGINT handler: erases the line, then re-raises with the default
/// action (SA_RESETHAND restored it on entry). Async-signal-safe calls only.
extern "C" fn on_interrupt(_: libc::c_int) {
    const ERASE: &[u8] = b"\r\x1b[2K";
    // SAFETY: ERASE is a valid buffer of that length; write is
    // async-signal-safe, and a failed write leaves nothing to do.
    unsafe { libc::write(libc::STDERR_FILENO, ERASE.as_ptr().cast(), ERASE.len()) };
    // SAFETY: raise is async-signal-safe; SIGINT stays blocked until the
    // handler returns, then the default action ends the process.
    unsafe { libc::raise(libc::SIGINT) };
}

// ---------------------------------------------------------------------------
// Standard streams closed at start.
//
// The Rust runtime reopens closed descriptors 0-2 as /dev/null before main,
// so `shm-write <&-` would read an empty stdin and `shm-read >&-` would write
// into nothing, both "successfully". This records which were closed before
// the runtime runs: a function in .init_array, which the C runtime calls
// before main (and before Rust's own start-up code).
// ---------------------------------------------------------------------------

/// Bit `fd` is set when descriptor `fd` (0, 1 or 2) was closed at exec.
static CLOSED_AT_START: AtomicU8 = AtomicU8::new(0);

#[cfg(target_os = "linux")]
extern "C" fn record_closed_std_fds() {
    for fd in 0..=2 {
        // SAFETY: F_GETFD only queries the descriptor table.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            CLOSED_AT_START.fetch_or(1 << fd, Ordering::Relaxed);
        }
    }
}

// SAFETY: .init_array holds pointers to `extern "C" fn()` that the C runtime
// calls once before main; this one only makes fcntl calls and stores an atomic.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static RECORD_CLOSED_STD_FDS: extern "C" fn() = record_closed_std_fds;

/// Whether standard descriptor `fd` (0, 1 or 2) was closed when the process
/// started, before the Rust runtime replaced it with /dev/null.
#[must_use]
pub fn was_closed_at_start(fd: i32) -> bool {
    // Referencing the .init_array entry keeps it linked into every binary
    // that asks, whatever the linker and LTO do with unreferenced statics.
    #[cfg(target_os = "linux")]
    std::hint::black_box(&RECORD_CLOSED_STD_FDS);
    (0..=2).contains(&fd) && CLOSED_AT_START.load(Ordering::Relaxed) & (1 << fd) != 0
}

/// Sleeps until `word` no longer holds `expected`, a wake-up, or `timeout`.
/// Shared (not FUTEX_PRIVATE) so it works across processes. Spurious
/// returns are allowed; callers re-check their condition.
#[cfg(target_os = "linux")]
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Result<(), Errno> {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(t.subsec_nanos().cast_signed()),
    });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), std::ptr::from_ref);
    // SAFETY: `word` is a valid aligned u32 for the call; ts_ptr is null or
    // points to a timespec that lives until the call returns.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    match Errno::result(ret) {
        Ok(_) | Err(Errno::EAGAIN | Errno::EINTR | Errno::ETIMEDOUT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Wakes up to `count` waiters on `word`.
#[cfg(target_os = "linux")]
pub fn futex_wake(word: &AtomicU32, count: i32) -> Result<(), Errno> {
    // SAFETY: `word` is a valid aligned u32; FUTEX_WAKE only uses its address.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            count,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    Errno::result(ret).map(drop)
}

/// Portable fallback: no futex, so waiters poll (see `wait`).
#[cfg(not(target_os = "linux"))]
pub fn futex_wait(_: &AtomicU32, _: u32, _: Option<Duration>) -> Result<(), Errno> {
    Err(Errno::ENOSYS)
}

/// Portable fallback: no futex, so nothing to wake.
#[cfg(not(target_os = "linux"))]
pub fn futex_wake(_: &AtomicU32, _: i32) -> Result<(), Errno> {
    Err(Errno::ENOSYS)
}

// ---------------------------------------------------------------------------
// Robust locks: lock words whose holder's death the kernel records.
//
// A robust lock occupies ROBUST_LOCK_SIZE bytes of a layout: an 8-byte list
// entry, then the 32-bit lock word. The word holds the holder's thread id
// (in the holder's own PID namespace) or 0. Each thread registers a list
// head with set_robust_list(2); a lock taken is linked into that list, and
// when the thread dies holding it, however it dies, the kernel sets
// FUTEX_OWNER_DIED in the word and wakes a waiter
// (Documentation/locking/robust-futex-ABI.rst). Liveness is therefore the
// kernel's record, valid across PID namespaces; tids are never compared
// with our own or probed with kill(2).
//
// Hold robust locks only on threads that live as long as the process (here:
// the main thread). A process that dies or exits holding one is recorded;
// a thread that merely returns is not, because glibc resets the thread's
// list on its way out. A forked child (without exec) starts with no list.
//
// The list entries live in shared memory, where another process could
// scribble on them; we only ever write them (the authoritative list is
// private to this thread), so a scribble can mislead only the kernel's walk
// at our exit, which is bounded and fault-safe.
// ---------------------------------------------------------------------------

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
        let tid = nix::unistd::gettid().as_raw().cast_unsigned() & FUTEX_TID_MASK;
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
        let tid = nix::unistd::gettid().as_raw().cast_unsigned() & FUTEX_TID_MASK;
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

// ---------------------------------------------------------------------------
// Large private copies: a whole content copied out of (or read in for) a
// segment.
//
// A snapshot is copied whole into private memory before it is printed (so a
// torn version is never printed) or published (so a slow producer never
// holds the write lock). Fresh private memory costs a page fault and a
// kernel zero-fill per 4 KiB page; at hundreds of MiB that is most of the
// work. So the copy goes into a Vec's spare capacity without being zeroed
// first, large buffers ask for transparent huge pages (one fault and one
// clear per 2 MiB), and the reader drops its page-table entries for the
// segment's pages once they are copied: the pages stay in the segment, but
// the reader's resident set holds the content once, not twice.
// ---------------------------------------------------------------------------

/// Buffers smaller than this are left to the allocator as they are.
pub const LARGE_COPY: usize = 4 << 20;

/// Asks the kernel to back `buf` (a private allocation, typically a Vec's
/// spare capacity) with transparent huge pages where it can; a hint that
/// does nothing on small buffers or where THP is off.
pub fn advise_huge_pages(buf: &mut [std::mem::MaybeUninit<u8>]) {
    if buf.len() < LARGE_COPY {
        return;
    }
    let page = page_size();
    // Rounded outward to whole pages: a large allocation is a mapping of
    // its own, and advising all of it keeps it one VMA, so realloc can
    // still grow it with mremap instead of copying.
    let start = buf.as_mut_ptr() as usize & !(page - 1);
    let end = (buf.as_mut_ptr() as usize + buf.len()).next_multiple_of(page);
    // SAFETY: MADV_HUGEPAGE changes no memory contents, only how the kernel
    // may back the pages; the range is pages of this process's own heap.
    let ret =
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    // EINVAL: a kernel without THP. The copy works the same, only slower.
    let _ = Errno::result(ret);
}

fn page_size() -> usize {
    // SAFETY: sysconf only reads a constant of the system.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page)
        .ok()
        .filter(|p| p.is_power_of_two())
        .unwrap_or(4096)
}

impl Mapping {
    /// Appends `len` bytes from `offset` of the segment to `out`, copied
    /// straight into its spare capacity (reserved as needed, never zeroed).
    pub fn read_append(
        &self,
        offset: usize,
        len: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), AccessError> {
        let src = self.span(offset, len)?;
        out.reserve(len);
        let spare = out.spare_capacity_mut();
        // SAFETY: `src..src+len` lies in the mapping (checked by span); the
        // spare capacity holds at least `len` bytes (reserved above) of
        // private memory, which cannot overlap the mapping.
        unsafe { std::ptr::copy_nonoverlapping(src, spare.as_mut_ptr().cast::<u8>(), len) };
        // SAFETY: the first `len` bytes of the spare capacity were just
        // written, so the new length covers initialised bytes only.
        unsafe { out.set_len(out.len() + len) };
        Ok(self.check_intact()?)
    }

    /// Maps the pages of `offset..offset + len` for writing ahead of a large
    /// copy into them (MADV_POPULATE_WRITE, Linux 5.14): one call instead of
    /// a page fault per 4 KiB. Contents do not change; a hint that does
    /// nothing on a read-only mapping or an older kernel.
    pub fn prefault_for_writing(&self, offset: usize, len: usize) {
        if !self.writable || len < LARGE_COPY {
            return;
        }
        let Ok(start) = self.span(offset, len) else {
            return;
        };
        let page = page_size();
        let first = start as usize & !(page - 1);
        let end = (start as usize + len).next_multiple_of(page);
        // SAFETY: the pages lie inside this writable shared mapping (span
        // checked the bytes, and whole pages of a mapping are mapped);
        // populating them faults them in without changing their contents.
        let ret = unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                end - first,
                libc::MADV_POPULATE_WRITE,
            )
        };
        // EINVAL before Linux 5.14, EFAULT past a truncated end: the copy
        // then faults the pages in (or meets the truncation) by itself.
        let _ = Errno::result(ret);
    }

    /// Drops this process's page-table entries for the whole pages inside
    /// `offset..offset + len` (MADV_DONTNEED). The segment keeps its
    /// content: this is shared memory, so a later access maps the same pages
    /// again. A reader calls it on what it has copied out, so the segment's
    /// pages do not count in its resident set next to its private copy.
    pub fn release_pages(&self, offset: usize, len: usize) {
        let Ok(start) = self.span(offset, len) else {
            return;
        };
        let page = page_size();
        let first = (start as usize).next_multiple_of(page);
        let end = (start as usize + len) & !(page - 1);
        if end <= first {
            return;
        }
        // SAFETY: the pages lie inside this shared mapping, which nothing
        // borrows as a slice; on a shared mapping MADV_DONTNEED only unmaps
        // them, and the next access maps the segment's same content again.
        let ret =
            unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_DONTNEED) };
        // EINVAL on a locked mapping: the pages just stay mapped.
        let _ = Errno::result(ret);
    }
}

/// Residency: how much of a segment sits in RAM (for `--info` and `--list`).
impl Mapping {
    /// Bytes of this mapping's pages that are resident in memory now
    /// (mincore(2)), whether or not this process has touched them: for a
    /// shared mapping it reports the object's page cache, so swapped-out
    /// pages do not count. Asks in chunks, so a huge segment needs no huge
    /// vector.
    pub fn resident_bytes(&self) -> Result<u64, Errno> {
        const CHUNK_PAGES: usize = 1 << 16;
        let page = page_size();
        let pages = self.len.div_ceil(page);
        let mut vec = vec![0u8; CHUNK_PAGES.min(pages)];
        let mut resident = 0u64;
        let mut first = 0;
        while first < pages {
            let count = CHUNK_PAGES.min(pages - first);
            let len = (count * page).min(self.len - first * page);
            let start = self.span(first * page, len).map_err(|_| Errno::EFAULT)?;
            // SAFETY: start is page-aligned (shmat/mmap return page-aligned
            // addresses, plus whole pages), the range lies inside this
            // mapping (span checked it), and mincore writes only one byte
            // per page, `count` bytes, into `vec`.
            let ret = unsafe { libc::mincore(start.cast::<libc::c_void>(), len, vec.as_mut_ptr()) };
            Errno::result(ret)?;
            resident += vec[..count].iter().filter(|b| *b & 1 != 0).count() as u64;
            first += count;
        }
        Ok((resident * page as u64).min(self.len as u64))
    }
}
