//! Copying a published version out, never a torn one.

use std::sync::atomic::{AtomicU32, Ordering, fence};
use std::time::Instant;

use crate::sys::{self};

use super::{
    OFF_CAPACITY, READ_PATIENCE, SLOT_GEN, SLOT_MTIME, SLOT_PID, Snapshot, SnapshotError, Version,
};

/// What a published version is, without its bytes: for `--info` and
/// `--list`, which must not copy a 1 GiB content to report its length.
#[derive(Debug, Clone, Copy, Default)]
pub struct Published {
    /// Content length in bytes.
    pub len: usize,
    /// As [`Version::seq`].
    pub seq: u32,
    /// As [`Version::writer_pid`].
    pub writer_pid: u32,
    /// As [`Version::mtime_ns`].
    pub mtime_ns: u64,
}

impl Snapshot<'_> {
    /// Copies out the published version, never a torn one.
    pub fn read(&self) -> Result<Version, SnapshotError> {
        self.read_at_most(usize::MAX)
    }

    /// Like [`Snapshot::read`], but copies only the first `limit` bytes of
    /// the content (still checked against the slot's generation).
    pub fn read_at_most(&self, limit: usize) -> Result<Version, SnapshotError> {
        self.read_span(0, limit)
    }

    /// Like [`Snapshot::read_at_most`], for the content from byte `skip` on:
    /// only the bytes returned are copied. Past the end it is empty.
    pub fn read_span(&self, skip: usize, limit: usize) -> Result<Version, SnapshotError> {
        self.read_span_unless(skip, limit, &|| false)?
            .ok_or_else(|| self.corrupt("a read gave up without a reason"))
    }

    /// Like [`Snapshot::read_at_most`], but a copy that keeps being
    /// overwritten is retried only while `give_up` says false (a follower's
    /// stop conditions), within the usual patience: None when it gave up.
    pub fn read_at_most_unless(
        &self,
        limit: usize,
        give_up: &dyn Fn() -> bool,
    ) -> Result<Option<Version>, SnapshotError> {
        self.read_span_unless(0, limit, give_up)
    }

    fn read_span_unless(
        &self,
        skip: usize,
        limit: usize,
        give_up: &dyn Fn() -> bool,
    ) -> Result<Option<Version>, SnapshotError> {
        let started = Instant::now();
        let seq_word = self.seq_word()?;
        let mut data = Vec::new();
        loop {
            let seq = seq_word.load(Ordering::Acquire);
            let slot = (seq & 1) as usize;
            let generation = self.slot_word32(slot, SLOT_GEN)?;
            let before = generation.load(Ordering::Acquire);
            if before & 1 == 1 {
                // Writers only fill the unpublished slot; if the published one
                // is mid-write and seq did not move, the header is lying.
                if seq_word.load(Ordering::Acquire) == seq {
                    return Err(self.corrupt("the published slot is marked as being written"));
                }
            } else {
                // Read after seq, re-checked after the copy: see "Growing" in docs/FORMAT.md.
                let capacity = self.live_capacity()?;
                let len = self.slot_len(slot, capacity)?;
                let skip = skip.min(len.unwrap_or(0));
                let whole = self.copy_slot(
                    Self::slot_data(slot, capacity) + skip,
                    (len.unwrap_or(0) - skip).min(limit),
                    generation,
                    before,
                    &mut data,
                )?;
                let writer_pid = self.slot_word32(slot, SLOT_PID)?.load(Ordering::Relaxed);
                let mtime_ns = self.slot_word64(slot, SLOT_MTIME)?.load(Ordering::Relaxed);
                fence(Ordering::Acquire);
                if whole
                    && generation.load(Ordering::Relaxed) == before
                    && self.unmoved(seq, capacity)?
                {
                    if len.is_none() {
                        return Err(self.corrupt("content length exceeds the capacity"));
                    }
                    return Ok(Some(Version {
                        data,
                        seq,
                        writer_pid,
                        mtime_ns,
                    }));
                }
            }
            if give_up() {
                return Ok(None);
            }
            if started.elapsed() > READ_PATIENCE {
                return Err(SnapshotError::KeptChanging {
                    target: self.target.clone(),
                    patience: READ_PATIENCE,
                });
            }
            std::thread::yield_now();
        }
    }

    /// Replaces `data` with the first `len` bytes of slot data at `start`, without
    /// zero-filling the buffer first. Large contents go in chunks, each
    /// followed by a look at the slot's generation, so a copy that is being
    /// overwritten is abandoned early (false) instead of finished; and the
    /// segment's pages are released as they are copied, so the reader holds
    /// the content once (its private copy), not twice. The caller still
    /// checks the generation once more after the copy.
    fn copy_slot(
        &self,
        start: usize,
        len: usize,
        generation: &AtomicU32,
        before: u32,
        data: &mut Vec<u8>,
    ) -> Result<bool, SnapshotError> {
        /// How much is copied between two looks at the generation.
        const COPY_CHUNK: usize = 4 << 20;
        data.clear();
        if data.capacity() < len {
            // Fallible: content larger than this process's memory is an
            // error with a message, not an abort.
            data.try_reserve_exact(len)
                .map_err(|_| SnapshotError::OutOfMemory {
                    target: self.target.clone(),
                    bytes: len,
                })?;
            sys::advise_huge_pages(data.spare_capacity_mut());
        }
        let large = len >= sys::LARGE_COPY;
        let mut copied = 0;
        while copied < len {
            let n = (len - copied).min(COPY_CHUNK);
            self.map.read_append(start + copied, n, data)?;
            if large {
                self.map.release_pages(start + copied, n);
            }
            copied += n;
            fence(Ordering::Acquire);
            if generation.load(Ordering::Relaxed) != before {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// After a copy made at `seq` with `capacity`: whether neither moved.
    /// A reader that copied slot 1 at a capacity a growth has replaced
    /// sees seq moved (the growth moved the content to slot 0 first).
    fn unmoved(&self, seq: u32, capacity: usize) -> Result<bool, SnapshotError> {
        Ok(self.seq_word()?.load(Ordering::Relaxed) == seq
            && self.map.atomic_u64(OFF_CAPACITY)?.load(Ordering::Relaxed) == capacity as u64)
    }

    /// The published version's length and metadata, read under the same
    /// generation check as [`Snapshot::read`] but without copying the data.
    pub fn published(&self) -> Result<Published, SnapshotError> {
        self.published_unless(&|| false)?
            .ok_or_else(|| self.corrupt("a read gave up without a reason"))
    }

    /// Like [`Snapshot::published`], retried only while `give_up` says false:
    /// None when it gave up.
    pub fn published_unless(
        &self,
        give_up: &dyn Fn() -> bool,
    ) -> Result<Option<Published>, SnapshotError> {
        let started = Instant::now();
        let seq_word = self.seq_word()?;
        loop {
            let seq = seq_word.load(Ordering::Acquire);
            let slot = (seq & 1) as usize;
            let generation = self.slot_word32(slot, SLOT_GEN)?;
            let before = generation.load(Ordering::Acquire);
            if before & 1 == 0 {
                let capacity = self.live_capacity()?;
                let len = self.slot_len(slot, capacity)?;
                let writer_pid = self.slot_word32(slot, SLOT_PID)?.load(Ordering::Relaxed);
                let mtime_ns = self.slot_word64(slot, SLOT_MTIME)?.load(Ordering::Relaxed);
                fence(Ordering::Acquire);
                if generation.load(Ordering::Relaxed) == before && self.unmoved(seq, capacity)? {
                    let len =
                        len.ok_or_else(|| self.corrupt("content length exceeds the capacity"))?;
                    return Ok(Some(Published {
                        len,
                        seq,
                        writer_pid,
                        mtime_ns,
                    }));
                }
            } else if seq_word.load(Ordering::Acquire) == seq {
                return Err(self.corrupt("the published slot is marked as being written"));
            }
            if give_up() {
                return Ok(None);
            }
            if started.elapsed() > READ_PATIENCE {
                return Err(self.corrupt("the published slot never stopped changing"));
            }
            std::thread::yield_now();
        }
    }
}
