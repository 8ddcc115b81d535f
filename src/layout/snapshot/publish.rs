//! Publishing a version, growing the segment when it must, under the
//! write lock.

use std::sync::atomic::{Ordering, fence};

use crate::address::Target;
use crate::lock::{self, Holder, RobustGuard};
use crate::sys::Mapping;
use crate::wait::{self, Deadline};

use super::{
    Grow, LOCK_PATIENCE, LockNotice, OFF_CAPACITY, OFF_LOCK, OnLock, Publish, SLOT_GEN, SLOT_LEN,
    SLOT_MTIME, SLOT_PID, Snapshot, SnapshotError, capacity_for, grown_size, size_of_capacity,
    view,
};

impl Snapshot<'_> {
    /// Publishes a new version made of `data` (after the current content
    /// with [`Publish::Append`]). Fails without changing anything when the
    /// result exceeds the capacity.
    pub fn publish(&self, data: &[u8], how: Publish) -> Result<(), SnapshotError> {
        self.publish_growing::<SnapshotError>(data, how, None)
    }

    /// Like [`Snapshot::publish`], but a result that exceeds the capacity
    /// grows the segment first (through `grow`), under the write lock, by
    /// the protocol in docs/FORMAT.md ("Growing"). A segment that another
    /// writer grew since this one mapped it is written through a new
    /// mapping from `grow` too.
    /// `grow`'s own error (the segment layer's) comes back wrapped, whole,
    /// in [`SnapshotError::Grow`].
    pub fn publish_or_grow<E>(
        &self,
        data: &[u8],
        how: Publish,
        grow: Grow<'_, E>,
    ) -> Result<(), SnapshotError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.publish_growing(data, how, Some(grow))
    }

    fn publish_growing<E>(
        &self,
        data: &[u8],
        how: Publish,
        grow: Option<Grow<'_, E>>,
    ) -> Result<(), SnapshotError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let grow =
            grow.map(|grow| move |size| grow(size).map_err(|e| SnapshotError::Grow(e.into())));
        if data.len() > self.capacity && grow.is_none() {
            return Err(self.too_large(data.len()));
        }
        let _guard = take_lock(self.map, self.target, self.on_lock)?;
        test_hook_hold_lock(self.on_lock);

        // Under the lock the capacity can only be changed by us. If another
        // writer grew the segment, map it whole (our lock stays in the old
        // mapping: the same memory).
        let mut remapped: Option<Mapping> = None;
        let capacity = match self.live_capacity() {
            Ok(capacity) => capacity,
            Err(e) if e.is_grown() => match grow {
                Some(grow) => {
                    let claimed = self.map.atomic_u64(OFF_CAPACITY)?.load(Ordering::Acquire);
                    let size = usize::try_from(claimed)
                        .ok()
                        .and_then(size_of_capacity)
                        .ok_or(e)?;
                    let map = remapped.insert(grow(size)?);
                    Snapshot::open(map, self.target)?.live_capacity()?
                }
                None => return Err(e),
            },
            Err(e) => return Err(e),
        };
        let current = view(remapped.as_ref().unwrap_or(self.map), self.target, capacity);

        let seq = current.seq_word()?.load(Ordering::Acquire);
        let published = (seq & 1) as usize;
        let kept = match how {
            Publish::Replace => 0,
            Publish::Append => current
                .slot_len(published, capacity)?
                .ok_or_else(|| current.corrupt("content length exceeds the capacity"))?,
        };
        let total = kept + data.len();
        if total <= capacity {
            return current.fill_and_publish(seq, published, capacity, kept, data);
        }
        let Some(grow) = grow else {
            return Err(self.too_large(total));
        };
        let size = grown_size(total).ok_or_else(|| self.too_large(total))?;
        let new_capacity = capacity_for(size).ok_or_else(|| self.too_large(total))?;
        // (1) The object grows first; old mappings are unaffected. On
        // failure (a full /dev/shm) nothing has changed.
        let larger = grow(size)?;
        let grown = view(&larger, self.target, capacity);
        // (2) Published content in slot 1 is moved to slot 0, whose offset
        // never changes, as the same version.
        let (seq, published) = if published == 1 {
            grown.move_to_slot_0(capacity)?;
            (seq.wrapping_add(1), 0)
        } else {
            (seq, published)
        };
        // (3) The new capacity, now that no published byte depends on it.
        grown
            .map
            .atomic_u64(OFF_CAPACITY)?
            .store(new_capacity as u64, Ordering::Release);
        // (4) Publish into slot 1, at its offset for the new capacity.
        let grown = view(&larger, self.target, new_capacity);
        grown.fill_and_publish(seq, published, new_capacity, kept, data)
    }

    /// Step (2) of growing: copies the version published in slot 1 to
    /// slot 0, keeping its length, time and writer, then publishes slot 0.
    /// Followers see the same version (same time and writer) again.
    fn move_to_slot_0(&self, capacity: usize) -> Result<(), SnapshotError> {
        let seq_word = self.seq_word()?;
        let seq = seq_word.load(Ordering::Acquire);
        let len = self
            .slot_len(1, capacity)?
            .ok_or_else(|| self.corrupt("content length exceeds the capacity"))?;
        let mtime = self.slot_word64(1, SLOT_MTIME)?.load(Ordering::Relaxed);
        let pid = self.slot_word32(1, SLOT_PID)?.load(Ordering::Relaxed);
        let generation = self.slot_word32(0, SLOT_GEN)?;
        let writing = generation.load(Ordering::Relaxed) | 1;
        generation.store(writing, Ordering::Relaxed);
        fence(Ordering::Release);
        self.map.copy_within(
            Self::slot_data(1, capacity),
            Self::slot_data(0, capacity),
            len,
        )?;
        self.slot_word64(0, SLOT_LEN)?
            .store(len as u64, Ordering::Relaxed);
        self.slot_word64(0, SLOT_MTIME)?
            .store(mtime, Ordering::Relaxed);
        self.slot_word32(0, SLOT_PID)?.store(pid, Ordering::Relaxed);
        generation.store(writing.wrapping_add(1), Ordering::Release);
        seq_word.store(seq.wrapping_add(1), Ordering::Release);
        Ok(())
    }

    /// Fills the slot that is not `published` with `kept` bytes of the
    /// published content and then `data`, and publishes it. Called with
    /// the write lock held.
    fn fill_and_publish(
        &self,
        seq: u32,
        published: usize,
        capacity: usize,
        kept: usize,
        data: &[u8],
    ) -> Result<(), SnapshotError> {
        let next = published ^ 1;
        let total = kept + data.len();
        let generation = self.slot_word32(next, SLOT_GEN)?;
        // Odd while writing; a dead predecessor may have left it odd already.
        let writing = generation.load(Ordering::Relaxed) | 1;
        generation.store(writing, Ordering::Relaxed);
        fence(Ordering::Release);
        let (from, to) = (
            Self::slot_data(published, capacity),
            Self::slot_data(next, capacity),
        );
        if kept > 0 {
            self.map.copy_within(from, to, kept)?;
        }
        self.map.write(to + kept, data)?;
        self.slot_word64(next, SLOT_LEN)?
            .store(total as u64, Ordering::Relaxed);
        self.slot_word64(next, SLOT_MTIME)?
            .store(crate::layout::now_ns(), Ordering::Relaxed);
        self.slot_word32(next, SLOT_PID)?
            .store(std::process::id(), Ordering::Relaxed);
        generation.store(writing.wrapping_add(1), Ordering::Release);
        let seq_word = self.seq_word()?;
        seq_word.store(seq.wrapping_add(1), Ordering::Release);
        wait::wake_all(seq_word);
        Ok(())
    }

    fn too_large(&self, len: usize) -> SnapshotError {
        too_large(self.target, len, self.capacity, self.map.len())
    }
}

/// Input of `len` bytes that a segment of `size` bytes, holding at most
/// `capacity`, cannot take.
pub(super) fn too_large(
    target: &Target,
    len: usize,
    capacity: usize,
    size: usize,
) -> SnapshotError {
    SnapshotError::TooLarge {
        target: target.clone(),
        len,
        capacity,
        size,
    }
}

/// Takes the header's write lock; a holder that died (however, in any PID
/// namespace) is taken over, its unpublished slot rewritten from scratch.
/// Legitimate holders keep it only for a copy, so a live holder that keeps
/// it for [`LOCK_PATIENCE`] is reported instead of waited on forever.
pub(super) fn take_lock<'m>(
    map: &'m Mapping,
    target: &Target,
    on_lock: OnLock<'_>,
) -> Result<RobustGuard<'m>, SnapshotError> {
    let deadline = Deadline::after(Some(LOCK_PATIENCE));
    let waiting = |tid| on_lock(LockNotice::Waiting { tid });
    if let Some(guard) = lock::lock_robust(map, OFF_LOCK, deadline, waiting)? {
        return Ok(guard);
    }
    Err(SnapshotError::LockHeld {
        target: target.clone(),
        holder: Holder::at(map, OFF_LOCK)?,
        patience: LOCK_PATIENCE,
    })
}

impl Snapshot<'_> {
    /// The span of the segment that publishing `len` more bytes `how` is
    /// expected to write: the first bytes of the slot that is not published
    /// now. A hint for prefaulting only; a racing writer may publish first
    /// and make it the other slot.
    pub fn next_write_span(
        &self,
        len: usize,
        how: Publish,
    ) -> Result<(usize, usize), SnapshotError> {
        let kept = match how {
            Publish::Replace => 0,
            Publish::Append => self.published()?.len,
        };
        let next = (self.seq()? & 1) as usize ^ 1;
        let capacity = self.live_capacity()?;
        Ok((
            Self::slot_data(next, capacity),
            kept.saturating_add(len).min(capacity),
        ))
    }
}

/// Lets crash tests kill a writer while it holds the lock: with
/// `SHM_TOOLS_TEST_HOLD_LOCK_MS` set, the writer sleeps that long after
/// taking it. Only with the `test-hooks` feature, which `cargo test` enables.
#[cfg(feature = "test-hooks")]
fn test_hook_hold_lock(on_lock: OnLock<'_>) {
    if let Some(ms) = std::env::var_os("SHM_TOOLS_TEST_HOLD_LOCK_MS")
        .and_then(|v| v.to_str().and_then(|s| s.parse::<u64>().ok()))
    {
        on_lock(LockNotice::Holding { ms });
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Without the `test-hooks` feature (every build users make) there is no
/// hook at all.
#[cfg(not(feature = "test-hooks"))]
fn test_hook_hold_lock(_: OnLock<'_>) {}
