//! [`Mapping`]: shared memory mapped into this process, and the
//! bounds-checked copies and atomics through which it is used.
//!
//! Contract:
//! - Memory that another process can change is never handed out as
//!   `&[u8]`/`&mut [u8]`: it is copied in and out through raw pointers, or
//!   lent as atomics that borrow the mapping.
//! - Every offset and length is checked against the mapping; a bad one is
//!   [`OutOfBounds`], never an access.
//! - A mapping unmaps (shmdt/munmap) when dropped and is not `Clone`.
#![allow(unsafe_code)]

use std::fmt;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use nix::errno::Errno;
use nix::libc;
use nix::sys::mman::{MapFlags, ProtFlags};

use super::sigbus::{Truncated, TruncationGuard};
use super::sysv::ShmId;

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
    pub(super) len: usize,
    pub(super) writable: bool,
    unmap: Unmap,
    /// For POSIX objects, which can shrink under us: see [`super::sigbus`].
    pub(super) guard: Option<TruncationGuard>,
    /// Robust locks in this mapping still linked in a thread's robust list
    /// (see [`super::robust`]); while any are, the memory is never unmapped.
    pub(super) robust_held: AtomicUsize,
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

impl Mapping {
    /// Attaches System V segment `id` of `len` bytes (its `shm_segsz`).
    pub fn attach_sysv(id: ShmId, len: usize, writable: bool) -> Result<Mapping, Errno> {
        let flags = if writable { 0 } else { libc::SHM_RDONLY };
        // SAFETY: a null address lets the kernel choose where to attach.
        let addr = unsafe { libc::shmat(id.as_raw(), std::ptr::null(), flags) };
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
        if mapping.guard.as_ref().is_some_and(|g| !g.is_watched()) {
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

    pub(super) fn span(&self, offset: usize, len: usize) -> Result<*mut u8, OutOfBounds> {
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
    pub(super) fn aligned_u32(&self, offset: usize) -> Result<&AtomicU32, OutOfBounds> {
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
