//! Whole pages: large private copies out of (or read in for) a segment,
//! page hints, and residency.
//!
//! A snapshot is copied whole into private memory before it is printed (so a
//! torn version is never printed) or published (so a slow producer never
//! holds the write lock). Fresh private memory costs a page fault and a
//! kernel zero-fill per 4 KiB page; at hundreds of MiB that is most of the
//! work. So the copy goes into a Vec's spare capacity without being zeroed
//! first, large buffers ask for transparent huge pages (one fault and one
//! clear per 2 MiB), and the reader drops its page-table entries for the
//! segment's pages once they are copied: the pages stay in the segment, but
//! the reader's resident set holds the content once, not twice.
//!
//! Residency is how much of a mapping sits in RAM (mincore), for `--info`
//! and `--list`.
//!
//! Contract:
//! - Page hints (madvise) never change what memory holds; a kernel that
//!   refuses one leaves the work the same, only slower.
//! - A private copy is written before it is counted: no byte of a Vec is
//!   exposed uninitialised.
#![allow(unsafe_code)]

use nix::errno::Errno;
use nix::libc;

use super::mapping::{AccessError, Mapping};
use super::posix::page_size;

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
