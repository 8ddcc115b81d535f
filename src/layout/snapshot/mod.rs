//! The framed snapshot layout: a 128-byte header and two data slots.
//!
//! A writer takes the write lock (a robust lock: the kernel marks it when
//! its holder dies, so the next writer takes it over, in any PID namespace),
//! fills the slot that is *not* published, then flips `seq`; so a killed
//! writer leaves the published version intact,
//! and a reader copies the published slot and keeps the copy only if that
//! slot's generation did not move meanwhile (a seqlock per slot). Readers
//! never block writers. Every header value is checked against the mapping.
//! Byte layout: docs/FORMAT.md.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::address::Target;
use crate::layout::prefix::{OFF_CAPACITY, Prefix};
use crate::layout::{Layout, LayoutError};
use crate::lock::Holder;
use crate::sys::{Mapping, ROBUST_LOCK_SIZE};

mod error;
mod publish;
mod read;

pub use error::SnapshotError;
use publish::{take_lock, too_large};

pub use read::Published;

/// The first eight bytes of a framed segment.
pub const MAGIC: [u8; 8] = *b"SHMTFRAM";
/// The layout version this code writes and reads.
pub const VERSION: u32 = 2;
/// Bytes before slot 0.
pub const HEADER_SIZE: usize = 128;

/// Magic, version, header size and capacity, shared with the ring layout.
const PREFIX: Prefix = Prefix {
    magic: MAGIC,
    version: VERSION,
    header_size: HEADER_SIZE,
    layout: super::Layout::Snapshot,
};
const OFF_SEQ: usize = 24;
const OFF_SLOTS: usize = 32;
/// The write lock: a robust lock (list entry, then the word at 88).
const OFF_LOCK: usize = 80;
const SLOT_DESC_SIZE: usize = 24;
const SLOT_LEN: usize = 0;
const SLOT_MTIME: usize = 8;
const SLOT_GEN: usize = 16;
const SLOT_PID: usize = 20;

/// How long a reader retries a copy that keeps being overwritten before
/// reporting it, so a hostile writer cannot make it spin forever.
const READ_PATIENCE: Duration = Duration::from_secs(5);

/// How long a writer waits for a live lock holder before reporting it.
const LOCK_PATIENCE: Duration = Duration::from_secs(10);

/// Data capacity of a framed segment of `size` bytes, or None if too small.
#[must_use]
pub fn capacity_for(size: usize) -> Option<usize> {
    let cap = size.checked_sub(HEADER_SIZE)? / 2;
    (cap > 0).then_some(cap)
}

/// The smallest framed segment that holds `len` bytes.
#[must_use]
pub fn size_for(len: usize) -> Option<usize> {
    len.max(1).checked_mul(2)?.checked_add(HEADER_SIZE)
}

/// A framed segment of capacity `capacity` (the inverse of [`capacity_for`]).
#[must_use]
pub fn size_of_capacity(capacity: usize) -> Option<usize> {
    capacity.checked_mul(2)?.checked_add(HEADER_SIZE)
}

/// Whether `err` is (or wraps) a [`SnapshotError::Grown`]: the caller
/// should remap and retry. Takes any error that shows itself as a
/// `dyn Error` (a [`SnapshotError`], or one the command layer wrapped).
#[must_use]
pub fn is_grown(err: &impl AsRef<dyn std::error::Error>) -> bool {
    let mut cause = Some(err.as_ref());
    while let Some(error) = cause {
        if error
            .downcast_ref::<SnapshotError>()
            .is_some_and(SnapshotError::is_grown)
        {
            return true;
        }
        cause = error.source();
    }
    false
}

fn grown(target: &Target, capacity: u64, mapped: usize) -> SnapshotError {
    SnapshotError::Grown {
        target: target.clone(),
        capacity,
        mapped,
    }
}

/// Makes a segment of `size` bytes that needs to hold `len`: for growth.
/// Page-rounded, so repeated small appends do not grow it every time.
fn grown_size(len: usize) -> Option<usize> {
    size_for(len)?.checked_next_multiple_of(4096)
}

/// Returns a mapping of the segment's whole object after making sure the
/// object is at least the given number of bytes (growing it if it is
/// smaller, space reserved). Given by the segment layer to
/// [`Snapshot::publish_or_grow`].
pub type Grow<'g, E> = &'g dyn Fn(usize) -> Result<Mapping, E>;

/// What a writer has to tell about the header's write lock; the layout
/// never prints, so the command layer says it (or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockNotice {
    /// A live thread (its tid in its own PID namespace) has held the write
    /// lock for a second, and this writer goes on waiting for it.
    Waiting {
        /// The holder's tid.
        tid: u32,
    },
    /// The crash tests' hook holds the lock this many ms after taking it
    /// (`SHM_TOOLS_TEST_HOLD_LOCK_MS`, `test-hooks` builds only).
    Holding {
        /// How long.
        ms: u64,
    },
}

/// Where a writer's [`LockNotice`]s go.
pub type OnLock<'a> = &'a (dyn Fn(LockNotice) + Sync);

/// Tells nobody: for views that take no lock, and for callers that say
/// nothing while they wait.
pub fn silent(_: LockNotice) {}

/// A view of `map` at a capacity the caller has checked against it.
fn view<'m>(map: &'m Mapping, target: &'m Target, capacity: usize) -> Snapshot<'m> {
    Snapshot {
        map,
        target,
        capacity,
        on_lock: &silent,
    }
}

/// One published version, copied out of the segment.
#[derive(Debug, Clone, Default)]
pub struct Version {
    /// The content, exactly as published.
    pub data: Vec<u8>,
    /// How many versions had been published (mod 2^32) when this one was.
    pub seq: u32,
    /// Pid of the process that published it.
    pub writer_pid: u32,
    /// When it was published, ns since the Unix epoch.
    pub mtime_ns: u64,
}

/// Replace the content, or add to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    /// The new content is the input.
    Replace,
    /// The new content is the current content followed by the input.
    Append,
}

/// A validated view of a framed segment.
pub struct Snapshot<'a> {
    map: &'a Mapping,
    target: &'a Target,
    capacity: usize,
    /// Told while this writer waits for the write lock (or holds it).
    on_lock: OnLock<'a>,
}

impl std::fmt::Debug for Snapshot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("map", self.map)
            .field("target", self.target)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl<'a> Snapshot<'a> {
    /// Validates the header of a segment whose magic says it is framed.
    /// A header whose capacity exceeds the mapping is a [`SnapshotError::Grown`] error.
    pub fn open(map: &'a Mapping, target: &'a Target) -> Result<Snapshot<'a>, SnapshotError> {
        let capacity = PREFIX.check(map, target, Some(usize::MAX))?;
        if capacity_for(map.len()).is_none_or(|max| capacity > max) {
            return Err(grown(target, capacity as u64, map.len()));
        }
        Ok(view(map, target, capacity))
    }

    /// The framed view a writer publishes through. A blank segment (all
    /// zero, or zero but for the header fields another writer is setting up
    /// right now) becomes an empty framed one; anything else is refused, so
    /// a foreign layout is never silently overwritten.
    ///
    /// Racing writers: the magic is stored last and never cleared, so a
    /// segment that was not framed at the first look but is no longer blank
    /// may have been initialised (and published into) by another writer
    /// meanwhile. It is looked at again, and refused only if it is still
    /// not framed.
    ///
    /// `on_lock` is told when this writer waits for the write lock.
    pub fn for_writing(
        map: &'a Mapping,
        target: &'a Target,
        on_lock: OnLock<'a>,
    ) -> Result<Snapshot<'a>, SnapshotError> {
        let writer = |snapshot: Snapshot<'a>| Snapshot {
            on_lock,
            ..snapshot
        };
        if Layout::detect(map) == Layout::Snapshot {
            return Snapshot::open(map, target).map(writer);
        }
        let blank = map.is_zero(0, MAGIC.len().min(map.len()))? && zero_but_for_the_lock(map)?;
        if blank {
            return Snapshot::initialize(map, target, on_lock).map(writer);
        }
        match Layout::detect(map) {
            Layout::Snapshot => Snapshot::open(map, target).map(writer),
            found => Err(SnapshotError::NotASnapshot {
                target: target.clone(),
                found,
                c_string: found == Layout::Foreign && holds_c_string(map)?,
            }),
        }
    }

    /// [`Snapshot::for_writing`] for a publish of `len` bytes into a segment
    /// that cannot grow: a blank (all-zero) segment that could not hold
    /// them is refused before our header goes in, so a failed write leaves
    /// a foreign segment byte for byte as it was.
    pub fn for_publishing(
        map: &'a Mapping,
        target: &'a Target,
        len: usize,
        on_lock: OnLock<'a>,
    ) -> Result<Snapshot<'a>, SnapshotError> {
        if Layout::detect(map) == Layout::Foreign
            && let Some(capacity) = capacity_for(map.len())
            && capacity < len
        {
            return Err(too_large(target, len, capacity, map.len()));
        }
        Snapshot::for_writing(map, target, on_lock)
    }

    /// Turns an all-zero segment into an empty framed one. Safe against
    /// racing writers: the zero lock word is taken first, and the magic is
    /// stored last, so nobody sees a half-made header as framed.
    fn initialize(
        map: &'a Mapping,
        target: &'a Target,
        on_lock: OnLock<'a>,
    ) -> Result<Snapshot<'a>, SnapshotError> {
        let capacity = capacity_for(map.len()).ok_or_else(|| SnapshotError::TooSmall {
            target: target.clone(),
            size: map.len(),
        })?;
        let _guard = take_lock(map, target, on_lock)?;
        if !PREFIX.present(map)? {
            PREFIX.write(map, capacity)?;
        }
        Snapshot::open(map, target)
    }

    /// Bytes one version could hold when this view was opened (a
    /// segment may grow later; readers and writers re-read it).
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The capacity in the header now, checked against this mapping: one
    /// larger than the mapping can hold is a [`Grown`] error.
    fn live_capacity(&self) -> Result<usize, SnapshotError> {
        let capacity = self.map.atomic_u64(OFF_CAPACITY)?.load(Ordering::Acquire);
        match usize::try_from(capacity) {
            Ok(c) if c > 0 && capacity_for(self.map.len()).is_some_and(|max| c <= max) => Ok(c),
            _ => Err(grown(self.target, capacity, self.map.len())),
        }
    }

    /// The word that changes with every publish; followers sleep on it.
    pub fn seq_word(&self) -> Result<&'a AtomicU32, SnapshotError> {
        Ok(self.map.atomic_u32(OFF_SEQ)?)
    }

    /// Versions published so far (mod 2^32); 0 means never written.
    pub fn seq(&self) -> Result<u32, SnapshotError> {
        Ok(self.seq_word()?.load(Ordering::Acquire))
    }

    /// Who holds the write lock now, as the kernel keeps it.
    pub fn lock_holder(&self) -> Result<Holder, SnapshotError> {
        Ok(Holder::at(self.map, OFF_LOCK)?)
    }

    fn slot_word32(&self, slot: usize, field: usize) -> Result<&'a AtomicU32, SnapshotError> {
        Ok(self
            .map
            .atomic_u32(OFF_SLOTS + slot * SLOT_DESC_SIZE + field)?)
    }

    fn slot_word64(&self, slot: usize, field: usize) -> Result<&'a AtomicU64, SnapshotError> {
        Ok(self
            .map
            .atomic_u64(OFF_SLOTS + slot * SLOT_DESC_SIZE + field)?)
    }

    /// Where a slot's data starts, at a capacity read from the header.
    fn slot_data(slot: usize, capacity: usize) -> usize {
        HEADER_SIZE + slot * capacity
    }

    fn slot_len(&self, slot: usize, capacity: usize) -> Result<Option<usize>, SnapshotError> {
        let len = self.slot_word64(slot, SLOT_LEN)?.load(Ordering::Relaxed);
        Ok(usize::try_from(len).ok().filter(|&l| l <= capacity))
    }

    fn corrupt(&self, what: &str) -> SnapshotError {
        SnapshotError::Layout(LayoutError::Corrupt {
            target: self.target.clone(),
            layout: Layout::Snapshot,
            what: what.to_owned(),
        })
    }
}

/// Whether the segment starts with text ended by a NUL, as a C string:
/// only for naming what a refused segment holds.
fn holds_c_string(map: &Mapping) -> Result<bool, SnapshotError> {
    let mut head = [0u8; 4096];
    let len = head.len().min(map.len());
    map.read(0, &mut head[..len])?;
    let head = &head[..len];
    Ok(match head.iter().position(|&b| b == 0) {
        Some(end) => {
            end > 0
                && head[..end]
                    .iter()
                    .all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace() || b >= 0x80)
        }
        None => false,
    })
}

/// Whether a segment that is not framed yet is zero from the slot
/// descriptors on, but for the write lock: a writer setting the header up
/// holds it, and one that died doing so left it marked.
fn zero_but_for_the_lock(map: &Mapping) -> Result<bool, SnapshotError> {
    let zero = |from: usize, to: usize| -> Result<bool, SnapshotError> {
        let to = to.min(map.len());
        Ok(from >= to || map.is_zero(from, to - from)?)
    };
    Ok(zero(OFF_SLOTS, OFF_LOCK)? && zero(OFF_LOCK + ROBUST_LOCK_SIZE, map.len())?)
}

/// A round size (power of two, in K/M/G) at least `bytes`, for hints.
#[must_use]
pub fn suggest_size(bytes: usize) -> String {
    let size = bytes.max(4096).next_power_of_two();
    match size {
        s if s >= 1 << 30 => format!("{}G", s >> 30),
        s if s >= 1 << 20 => format!("{}M", s >> 20),
        s => format!("{}K", s >> 10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_and_size_are_inverse() {
        assert_eq!(capacity_for(HEADER_SIZE), None);
        assert_eq!(capacity_for(4096), Some((4096 - HEADER_SIZE) / 2));
        let size = size_for(1000).unwrap();
        assert_eq!(capacity_for(size), Some(1000));
        assert_eq!(size_for(usize::MAX), None);
    }

    #[test]
    fn suggested_sizes_are_round() {
        assert_eq!(suggest_size(5000), "8K");
        assert_eq!(suggest_size(3 << 20), "4M");
        assert_eq!(suggest_size(1), "4K");
    }
}
