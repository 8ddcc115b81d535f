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

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

use crate::address::Target;
use crate::error::{Kind, failure};
use crate::layout::Layout;
use crate::layout::prefix::Prefix;
use crate::lock::{self, Holder, RobustGuard};
use crate::sys::{self, Mapping, ROBUST_LOCK_SIZE};
use crate::wait::{self, Deadline};

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
/// The capacity (u64), part of the prefix; it changes when a segment grows.
const OFF_CAPACITY: usize = 16;
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

/// The header claims more capacity than this process's mapping holds:
/// the segment grew since it was mapped (remap it: `Segment::remap_if_grown`)
/// or, if the object is not larger, the header is corrupt.
#[derive(Debug)]
pub struct Grown {
    message: String,
}

impl std::fmt::Display for Grown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Grown {}

/// Whether `err` is (or wraps) a [`Grown`]: the caller should remap and retry.
#[must_use]
pub fn is_grown(err: &anyhow::Error) -> bool {
    err.chain().any(<dyn std::error::Error>::is::<Grown>)
}

fn grown(target: &Target, capacity: u64, map_len: usize) -> anyhow::Error {
    anyhow::Error::new(Grown {
        message: format!(
            "{target} has a shm-tools header claiming capacity {capacity}, more than the {map_len} bytes mapped here hold: it grew while being read (try again), or the header is corrupt (read it with --raw or --all, or remove it and write again)"
        ),
    })
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
pub type Grow<'g> = &'g dyn Fn(usize) -> anyhow::Result<Mapping>;

/// A view of `map` at a capacity the caller has checked against it.
fn view<'m>(map: &'m Mapping, target: &'m Target, capacity: usize) -> Snapshot<'m> {
    Snapshot {
        map,
        target,
        capacity,
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
#[derive(Debug)]
pub struct Snapshot<'a> {
    map: &'a Mapping,
    target: &'a Target,
    capacity: usize,
}

impl<'a> Snapshot<'a> {
    /// Validates the header of a segment whose magic says it is framed.
    /// A header whose capacity exceeds the mapping is a [`Grown`] error.
    pub fn open(map: &'a Mapping, target: &'a Target) -> anyhow::Result<Snapshot<'a>> {
        let capacity = PREFIX.check(map, target, Some(usize::MAX))?;
        if capacity_for(map.len()).is_none_or(|max| capacity > max) {
            return Err(grown(target, capacity as u64, map.len()));
        }
        Ok(Snapshot {
            map,
            target,
            capacity,
        })
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
    pub fn for_writing(map: &'a Mapping, target: &'a Target) -> anyhow::Result<Snapshot<'a>> {
        if Layout::detect(map) == Layout::Snapshot {
            return Snapshot::open(map, target);
        }
        let blank = map.is_zero(0, MAGIC.len().min(map.len()))? && zero_but_for_the_lock(map)?;
        if blank {
            return Snapshot::initialize(map, target);
        }
        match Layout::detect(map) {
            Layout::Snapshot => Snapshot::open(map, target),
            Layout::Stream => Err(failure(
                Kind::Failed,
                format!(
                    "{target} is the ring of a `shm-write --stream`, not a snapshot segment; read the \
                     stream with: {}, or remove it first: {} > /dev/null",
                    target.command("shm-read --stream"),
                    target.command("shm-read --remove")
                ),
            )),
            Layout::Log => Err(failure(
                Kind::Failed,
                format!(
                    "{target} is a log (made by shm-write --lines), not a snapshot segment; append \
                     to it with: {}, or remove it first: {} > /dev/null",
                    target.command("shm-write --lines"),
                    target.command("shm-read --remove")
                ),
            )),
            Layout::Foreign => {
                let what = if holds_c_string(map)? {
                    "a C string (written with --raw, or by a C program)"
                } else {
                    "data in a layout shm-tools did not write (another program's)"
                };
                Err(failure(
                    Kind::Failed,
                    format!(
                        "{target} holds {what}, which the shm-tools header would overwrite; write a \
                         C string instead with: {} --raw, or remove it first: {} > /dev/null",
                        target.command("shm-write"),
                        target.command("shm-read --remove")
                    ),
                ))
            }
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
    ) -> anyhow::Result<Snapshot<'a>> {
        if Layout::detect(map) == Layout::Foreign
            && let Some(capacity) = capacity_for(map.len())
            && capacity < len
        {
            return Err(too_large(target, len, capacity, map.len()));
        }
        Snapshot::for_writing(map, target)
    }

    /// Turns an all-zero segment into an empty framed one. Safe against
    /// racing writers: the zero lock word is taken first, and the magic is
    /// stored last, so nobody sees a half-made header as framed.
    fn initialize(map: &'a Mapping, target: &'a Target) -> anyhow::Result<Snapshot<'a>> {
        let capacity = capacity_for(map.len()).ok_or_else(|| {
            failure(
                Kind::Failed,
                format!(
                    "{target} is {} bytes, too small for the shm-tools header ({HEADER_SIZE} bytes and two \
                     slots); write a C string into it with --raw, or remove it and write again with a \
                     larger --size",
                    map.len()
                ),
            )
        })?;
        let _guard = take_lock(map, target)?;
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
    fn live_capacity(&self) -> anyhow::Result<usize> {
        let capacity = self.map.atomic_u64(OFF_CAPACITY)?.load(Ordering::Acquire);
        match usize::try_from(capacity) {
            Ok(c) if c > 0 && capacity_for(self.map.len()).is_some_and(|max| c <= max) => Ok(c),
            _ => Err(grown(self.target, capacity, self.map.len())),
        }
    }

    /// The word that changes with every publish; followers sleep on it.
    pub fn seq_word(&self) -> anyhow::Result<&'a AtomicU32> {
        Ok(self.map.atomic_u32(OFF_SEQ)?)
    }

    /// Versions published so far (mod 2^32); 0 means never written.
    pub fn seq(&self) -> anyhow::Result<u32> {
        Ok(self.seq_word()?.load(Ordering::Acquire))
    }

    /// Who holds the write lock now, as the kernel keeps it.
    pub fn lock_holder(&self) -> anyhow::Result<Holder> {
        Ok(Holder::at(self.map, OFF_LOCK)?)
    }

    fn slot_word32(&self, slot: usize, field: usize) -> anyhow::Result<&'a AtomicU32> {
        Ok(self
            .map
            .atomic_u32(OFF_SLOTS + slot * SLOT_DESC_SIZE + field)?)
    }

    fn slot_word64(&self, slot: usize, field: usize) -> anyhow::Result<&'a AtomicU64> {
        Ok(self
            .map
            .atomic_u64(OFF_SLOTS + slot * SLOT_DESC_SIZE + field)?)
    }

    /// Where a slot's data starts, at a capacity read from the header.
    fn slot_data(slot: usize, capacity: usize) -> usize {
        HEADER_SIZE + slot * capacity
    }

    fn slot_len(&self, slot: usize, capacity: usize) -> anyhow::Result<Option<usize>> {
        let len = self.slot_word64(slot, SLOT_LEN)?.load(Ordering::Relaxed);
        Ok(usize::try_from(len).ok().filter(|&l| l <= capacity))
    }

    fn corrupt(&self, what: &str) -> anyhow::Error {
        failure(
            Kind::Failed,
            format!(
                "{} has a corrupt shm-tools header ({what}); read it with --raw or --all, or remove it and write again",
                self.target
            ),
        )
    }

    /// Copies out the published version, never a torn one.
    pub fn read(&self) -> anyhow::Result<Version> {
        self.read_at_most(usize::MAX)
    }

    /// Like [`Snapshot::read`], but copies only the first `limit` bytes of
    /// the content (still checked against the slot's generation).
    pub fn read_at_most(&self, limit: usize) -> anyhow::Result<Version> {
        self.read_span(0, limit)
    }

    /// Like [`Snapshot::read_at_most`], for the content from byte `skip` on:
    /// only the bytes returned are copied. Past the end it is empty.
    pub fn read_span(&self, skip: usize, limit: usize) -> anyhow::Result<Version> {
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
    ) -> anyhow::Result<Option<Version>> {
        self.read_span_unless(0, limit, give_up)
    }

    fn read_span_unless(
        &self,
        skip: usize,
        limit: usize,
        give_up: &dyn Fn() -> bool,
    ) -> anyhow::Result<Option<Version>> {
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
                return Err(failure(
                    Kind::Failed,
                    format!(
                        "{} changed under every read attempt for {}s; a writer is publishing faster than \
                         it can be copied, or the header is being scribbled on",
                        self.target,
                        READ_PATIENCE.as_secs()
                    ),
                ));
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
    ) -> anyhow::Result<bool> {
        /// How much is copied between two looks at the generation.
        const COPY_CHUNK: usize = 4 << 20;
        data.clear();
        if data.capacity() < len {
            // Fallible: content larger than this process's memory is an
            // error with a message, not an abort.
            data.try_reserve_exact(len).map_err(|_| {
                failure(
                    Kind::Failed,
                    format!(
                        "cannot copy the {len} bytes of {}: this process may not have that much \
                         memory (ulimit -v); its content is unchanged",
                        self.target
                    ),
                )
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
    fn unmoved(&self, seq: u32, capacity: usize) -> anyhow::Result<bool> {
        Ok(self.seq_word()?.load(Ordering::Relaxed) == seq
            && self.map.atomic_u64(OFF_CAPACITY)?.load(Ordering::Relaxed) == capacity as u64)
    }

    /// Publishes a new version made of `data` (after the current content
    /// with [`Publish::Append`]). Fails without changing anything when the
    /// result exceeds the capacity.
    pub fn publish(&self, data: &[u8], how: Publish) -> anyhow::Result<()> {
        self.publish_growing(data, how, None)
    }

    /// Like [`Snapshot::publish`], but a result that exceeds the capacity
    /// grows the segment first (through `grow`), under the write lock, by
    /// the protocol in docs/FORMAT.md ("Growing"). A segment that another
    /// writer grew since this one mapped it is written through a new
    /// mapping from `grow` too.
    pub fn publish_or_grow(&self, data: &[u8], how: Publish, grow: Grow<'_>) -> anyhow::Result<()> {
        self.publish_growing(data, how, Some(grow))
    }

    fn publish_growing(
        &self,
        data: &[u8],
        how: Publish,
        grow: Option<Grow<'_>>,
    ) -> anyhow::Result<()> {
        if data.len() > self.capacity && grow.is_none() {
            return Err(self.too_large(data.len()));
        }
        let _guard = take_lock(self.map, self.target)?;
        test_hook_hold_lock();

        // Under the lock the capacity can only be changed by us. If another
        // writer grew the segment, map it whole (our lock stays in the old
        // mapping: the same memory).
        let mut remapped: Option<Mapping> = None;
        let capacity = match self.live_capacity() {
            Ok(capacity) => capacity,
            Err(e) if is_grown(&e) => match grow {
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
    fn move_to_slot_0(&self, capacity: usize) -> anyhow::Result<()> {
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
    ) -> anyhow::Result<()> {
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
            .store(super::now_ns(), Ordering::Relaxed);
        self.slot_word32(next, SLOT_PID)?
            .store(std::process::id(), Ordering::Relaxed);
        generation.store(writing.wrapping_add(1), Ordering::Release);
        let seq_word = self.seq_word()?;
        seq_word.store(seq.wrapping_add(1), Ordering::Release);
        wait::wake_all(seq_word);
        Ok(())
    }

    fn too_large(&self, len: usize) -> anyhow::Error {
        too_large(self.target, len, self.capacity, self.map.len())
    }
}

/// Input of `len` bytes that a segment of `size` bytes, holding at most
/// `capacity`, cannot take: what to do instead, by how it is addressed.
fn too_large(target: &Target, len: usize, capacity: usize, size: usize) -> anyhow::Error {
    let holds = format!(
        "input is {len} bytes but {target} holds at most {capacity} (segment of {size} bytes); \
             its content is unchanged"
    );
    let next = match target {
        Target::Key { .. } => format!(
            "a System V segment cannot grow: replace it by one that fits, under the same key, with \
                 {} (programs attached to the old one keep it until they re-attach)",
            target.command("shm-write --replace")
        ),
        Target::Id(_) => "a segment addressed by id (-i) keeps its identity, so it cannot grow \
                 or be replaced: write less, or address it by key with --replace"
            .to_owned(),
        Target::Name(_) => {
            let size = size_for(len).map_or_else(|| "a larger size".to_owned(), suggest_size);
            format!(
                "remove it ({} > /dev/null) and write again with --size {size}",
                target.command("shm-read --remove")
            )
        }
    };
    failure(Kind::Failed, format!("{holds}; {next}"))
}

/// Whether the segment starts with text ended by a NUL, as a C string:
/// only for naming what a refused segment holds.
fn holds_c_string(map: &Mapping) -> anyhow::Result<bool> {
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
fn zero_but_for_the_lock(map: &Mapping) -> anyhow::Result<bool> {
    let zero = |from: usize, to: usize| -> anyhow::Result<bool> {
        let to = to.min(map.len());
        Ok(from >= to || map.is_zero(from, to - from)?)
    };
    Ok(zero(OFF_SLOTS, OFF_LOCK)? && zero(OFF_LOCK + ROBUST_LOCK_SIZE, map.len())?)
}

/// Takes the header's write lock; a holder that died (however, in any PID
/// namespace) is taken over, its unpublished slot rewritten from scratch.
/// Legitimate holders keep it only for a copy, so a live holder that keeps
/// it for [`LOCK_PATIENCE`] is reported instead of waited on forever.
fn take_lock<'m>(map: &'m Mapping, target: &Target) -> anyhow::Result<RobustGuard<'m>> {
    let deadline = Deadline::after(Some(LOCK_PATIENCE));
    let waiting = |tid| {
        crate::notice::notice(format_args!(
            "shm-write: waiting for a live process (tid {tid} in its PID namespace), which holds \
             the write lock on {target}"
        ));
    };
    if let Some(guard) = lock::lock_robust(map, OFF_LOCK, deadline, waiting)? {
        return Ok(guard);
    }
    let holder = match Holder::at(map, OFF_LOCK)? {
        Holder::Alive(tid) => format!("thread {tid} (in its PID namespace)"),
        // It let go just now; rare enough that the caller may simply retry.
        Holder::Free | Holder::Died => "another writer".to_owned(),
    };
    // The kernel frees the lock of a holder that dies only if the holder
    // had it on its robust list: a word written any other way (by hand, or
    // by a program that is not shm-tools) stays "held" for good.
    Err(failure(
        Kind::Failed,
        format!(
            "the write lock on {target} has been held by {holder} for {}s; nothing was written. \
             The holder may be stopped (kill -CONT it) or stuck (kill it: a dead holder's lock is \
             taken over); if no such thread lives, the lock word is stale: remove the segment and \
             write it again",
            LOCK_PATIENCE.as_secs()
        ),
    ))
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
    /// The published version's length and metadata, read under the same
    /// generation check as [`Snapshot::read`] but without copying the data.
    pub fn published(&self) -> anyhow::Result<Published> {
        self.published_unless(&|| false)?
            .ok_or_else(|| self.corrupt("a read gave up without a reason"))
    }

    /// Like [`Snapshot::published`], retried only while `give_up` says false:
    /// None when it gave up.
    pub fn published_unless(
        &self,
        give_up: &dyn Fn() -> bool,
    ) -> anyhow::Result<Option<Published>> {
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

impl Snapshot<'_> {
    /// The span of the segment that publishing `len` more bytes `how` is
    /// expected to write: the first bytes of the slot that is not published
    /// now. A hint for prefaulting only; a racing writer may publish first
    /// and make it the other slot.
    pub fn next_write_span(&self, len: usize, how: Publish) -> anyhow::Result<(usize, usize)> {
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
fn test_hook_hold_lock() {
    if let Some(ms) = std::env::var_os("SHM_TOOLS_TEST_HOLD_LOCK_MS")
        .and_then(|v| v.to_str().and_then(|s| s.parse::<u64>().ok()))
    {
        crate::notice::notice(format_args!(
            "shm-write: holding the write lock for {ms} ms (SHM_TOOLS_TEST_HOLD_LOCK_MS)"
        ));
        std::thread::sleep(Duration::from_millis(ms));
    }
}

/// Without the `test-hooks` feature (every build users make) there is no
/// hook at all.
#[cfg(not(feature = "test-hooks"))]
fn test_hook_hold_lock() {}

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
