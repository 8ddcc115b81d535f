//! The log layout: an append-only log of length-prefixed records at
//! ever-increasing byte positions in a circular buffer.
//!
//! Writers append whole records under a robust write lock (a CAS when
//! uncontended; the kernel records a holder's death). Before a record
//! overwrites old ones, the writer moves `tail` past them, and only then
//! writes; so a reader that copies a record and then still finds
//! `tail <= position` knows the copy is intact (a seqlock on `tail`), and
//! one that finds `tail` beyond its position knows it was lapped. Every
//! record carries its sequence number, so the reader knows exactly how many
//! records it missed. Readers need no write access and never slow writers;
//! a *lossless* follower instead holds one of [`SLOTS`] robust-locked slots
//! with its position, and writers wait before overwriting what a live slot
//! holder has not read. Every header value and record header is checked
//! against the mapping before use. Version 2 records also carry their
//! append time; version 1 logs are still read, and appended to in version
//! 1 (a log's records all have one layout). Byte layout: docs/FORMAT.md.

use std::cell::Cell;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

use crate::address::Target;
use crate::error::{Kind, failure};
use crate::layout::Layout;
use crate::layout::prefix::Prefix;
use crate::lock::{self, Holder, RobustGuard};
use crate::sys::{Mapping, ROBUST_LOCK_SIZE};
use crate::wait::{self, Deadline, RECHECK};

/// The first eight bytes of a log.
pub const MAGIC: [u8; 8] = *b"SHMTLOGS";
/// The layout version new logs get: records carry their append time.
pub const VERSION: u32 = 2;
/// The first layout version, without record times: still read, and
/// appended to as it is.
pub const VERSION_1: u32 = 1;
/// Lossless follower slots in the header.
pub const SLOTS: usize = 32;
/// Bytes before the data area: fixed fields, then the slot table.
pub const HEADER_SIZE: usize = OFF_SLOTS + SLOTS * SLOT_SIZE;
/// Bytes every record header starts with: length, its complement,
/// sequence number (all of a version 1 record header).
pub const RECORD_HEADER: usize = 16;
/// Bytes a version 2 record header adds: the append time.
pub const RECORD_TIME: usize = 8;
/// Smallest data capacity: room for a few small records.
const MIN_CAPACITY: usize = 64;

const PREFIX: Prefix = Prefix {
    magic: MAGIC,
    version: VERSION,
    header_size: HEADER_SIZE,
    layout: super::Layout::Log,
};
const OFF_WRITER_PID: usize = 28;
const OFF_LOCK: usize = 32;
const OFF_NEXT_SEQ: usize = 48;
const OFF_WRITE_TIME: usize = 56;
const OFF_HEAD: usize = 64;
const OFF_HEAD_EVENT: usize = 72;
const OFF_TAIL: usize = 128;
const OFF_TAIL_EVENT: usize = 136;
const OFF_WRITER_WAITING: usize = 140;
/// The tid (as in the lock word) of the lock holder while it waits for a
/// lossless follower, else 0; and the tail it needs to move to.
const OFF_WAITING_TID: usize = 144;
const OFF_WAITING_NEEDS: usize = 152;
/// Where a POSIX log's follower locks are: slot `n` is the byte at
/// `FOLLOWER_LOCKS + n` of the object, far past its end (1 TiB).
const FOLLOWER_LOCKS: u64 = 1 << 40;
const OFF_SLOTS: usize = 256;
const SLOT_SIZE: usize = 32;
const SLOT_CURSOR: usize = ROBUST_LOCK_SIZE;

/// How long a reader retries a walk that keeps being overtaken, and a
/// writer waits for a live lock holder, before reporting it.
const PATIENCE: Duration = Duration::from_secs(10);

/// Data capacity of a log in a segment of `size` bytes: a multiple of 8
/// with room for at least one small record, or None.
#[must_use]
pub fn capacity_for(size: usize) -> Option<usize> {
    let capacity = size.checked_sub(HEADER_SIZE)? & !7;
    (capacity >= MIN_CAPACITY).then_some(capacity)
}

/// Bytes a record with `len` bytes of payload takes in the buffer, with
/// a record header of `header` bytes (see [`Log::record_header_size`]).
#[must_use]
pub fn record_size(len: usize, header: usize) -> Option<usize> {
    len.checked_add(header + 7).map(|n| n & !7)
}

/// A validated view of a log.
#[derive(Debug)]
pub struct Log<'a> {
    map: &'a Mapping,
    target: &'a Target,
    capacity: u64,
    /// `(head, next_seq)` as this process's last batch of appends left
    /// them: what the next batch checks the header against.
    verified: Cell<Option<(u64, u64)>>,
    /// The layout version, read once at open: it fixes the record layout.
    version: u32,
    /// Bytes of each record's header in this version.
    record_header: usize,
    /// The open file of a POSIX log: its follower locks prove which
    /// lossless followers live. None for System V (no descriptor).
    file: Option<BorrowedFd<'a>>,
}

/// Who holds a lossless follower slot, by the best evidence there is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// Nobody (or a holder that died).
    Free,
    /// A live follower. `proven`: the kernel holds its follower lock (a
    /// POSIX log); otherwise only its lock word names a live tid (System
    /// V, where that word is the only evidence).
    Live {
        /// The tid in the slot's lock word, in its own PID namespace.
        tid: u32,
        /// Whether the kernel's follower lock backs it.
        proven: bool,
    },
    /// The lock word names a tid, but no open file holds the slot's
    /// follower lock: forged, or left by an older shm-read. Writers do not
    /// wait for it.
    Unproven {
        /// The tid the lock word names.
        tid: u32,
    },
}

/// One lossless follower slot that is not free, for `--info`.
#[derive(Debug, Clone, Copy)]
pub struct SlotInfo {
    /// Its index, 0 to [`SLOTS`] − 1.
    pub slot: usize,
    /// Who holds it.
    pub state: SlotState,
    /// The position its follower published.
    pub position: u64,
}

/// A live lossless follower that has not read everything yet.
#[derive(Debug, Clone, Copy)]
struct Behind {
    position: u64,
    slot: usize,
    tid: u32,
    proven: bool,
}

/// What [`Cursor::next`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A record was copied into the buffer: its sequence number, and how
    /// many records the reader missed just before it (lapped by writers).
    Record {
        /// The record's sequence number (0 for the first ever appended).
        seq: u64,
        /// Records overwritten before this reader got to them.
        missed: u64,
        /// When it was appended, ns since the Unix epoch as the writer's
        /// clock said; None in a version 1 log, which keeps no times.
        time_ns: Option<u64>,
    },
    /// The reader is at the head: nothing more yet.
    Empty,
}

/// One reader's private position in a log.
#[derive(Debug, Clone, Copy)]
pub struct Cursor {
    /// Byte position of the next record to read.
    pub position: u64,
    /// Sequence number that record must have; None before the first
    /// record (a reader that starts with history).
    expected: Option<u64>,
    /// Set when the reader was lapped; the count is settled at the next
    /// record it reads.
    lapped_from: Option<u64>,
    /// Whether a lossless slot holds this position: writers then never
    /// overwrite what is at or after it, so `tail` says nothing about it (a
    /// writer publishes a new tail before it looks at the slots, and may
    /// then find this follower and wait, the records still intact).
    held: bool,
}

/// What a log holds now, for `--info` and `--list`.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Records appended since the log was made (the next sequence number).
    pub appended: u64,
    /// Records still held.
    pub held: u64,
    /// Payload bytes still held.
    pub bytes_held: u64,
    /// Sequence number of the oldest record held.
    pub oldest: Option<u64>,
}

impl<'a> Log<'a> {
    /// Validates the header of a segment whose magic says it is a log.
    pub fn open(map: &'a Mapping, target: &'a Target) -> anyhow::Result<Log<'a>> {
        if Layout::detect(map) != Layout::Log {
            return Err(failure(
                Kind::Failed,
                format!(
                    "{target} is not a log; start one with: producer | {}",
                    target.command("shm-write --lines")
                ),
            ));
        }
        let (capacity, version) =
            PREFIX.check_versions(map, target, capacity_for(map.len()), &[VERSION_1, VERSION])?;
        let log = Log {
            map,
            target,
            capacity: capacity as u64,
            verified: Cell::new(None),
            version,
            record_header: if version == VERSION_1 {
                RECORD_HEADER
            } else {
                RECORD_HEADER + RECORD_TIME
            },
            file: None,
        };
        if !capacity.is_multiple_of(8) {
            return Err(log.corrupt(&format!("capacity {capacity} is not a multiple of 8")));
        }
        if capacity < MIN_CAPACITY {
            return Err(log.corrupt(&format!(
                "capacity {capacity} is below the smallest a log has, {MIN_CAPACITY}"
            )));
        }
        Ok(log)
    }

    /// Gives the log the open file of its POSIX object, whose follower locks
    /// prove which lossless followers live (see [`SlotState`]). Without one
    /// (System V), a slot's lock word is the only evidence.
    #[must_use]
    pub fn with_file(mut self, file: Option<BorrowedFd<'a>>) -> Self {
        self.file = file;
        self
    }

    /// The log a writer appends to: an existing log, or a blank segment
    /// made into an empty one. Anything else is refused, naming what it is.
    pub fn for_writing(map: &'a Mapping, target: &'a Target) -> anyhow::Result<Log<'a>> {
        match Layout::detect(map) {
            Layout::Log => return Log::open(map, target),
            Layout::Snapshot => {
                return Err(failure(
                    Kind::Failed,
                    format!(
                        "{target} is a snapshot (written by shm-write without --lines), not a log; \
                         --lines appends records to a log: use another address, or remove it first \
                         ({} > /dev/null)",
                        target.command("shm-read --remove")
                    ),
                ));
            }
            Layout::Stream => {
                return Err(failure(
                    Kind::Failed,
                    format!(
                        "{target} is a stream ring (shm-write --stream), not a log; use another address, \
                         or remove it first ({} > /dev/null)",
                        target.command("shm-read --remove")
                    ),
                ));
            }
            Layout::Foreign => {}
        }
        let capacity = capacity_for(map.len()).ok_or_else(|| {
            failure(
                Kind::Failed,
                format!(
                    "{target} is {} bytes, too small for a log ({} bytes of header); use a larger --size",
                    map.len(),
                    HEADER_SIZE
                ),
            )
        })?;
        // Blank but for the header fields and lock another writer may be
        // setting up right now (the magic goes in last).
        let blank =
            map.is_zero(0, MAGIC.len())? && map.is_zero(OFF_NEXT_SEQ, map.len() - OFF_NEXT_SEQ)?;
        if !blank {
            return Err(failure(
                Kind::Failed,
                format!(
                    "{target} holds data in a layout shm-tools did not write (a C program's string, for \
                     example); use another address, or remove it first ({} > /dev/null)",
                    target.command("shm-read --remove")
                ),
            ));
        }
        // Racing creators: the lock decides, the magic goes in last.
        let _guard = lock(map, target, &|| None)?;
        if !PREFIX.present(map)? {
            PREFIX.write(map, capacity)?;
        }
        Log::open(map, target)
    }

    /// Data bytes the buffer holds.
    #[must_use]
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The largest payload one record can carry.
    #[must_use]
    pub fn max_record(&self) -> usize {
        usize::try_from(self.capacity).unwrap_or(usize::MAX) - self.record_header
    }

    /// The layout version of this log (1: records without times).
    #[must_use]
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Bytes of each record's header in this log's version.
    #[must_use]
    pub fn record_header_size(&self) -> usize {
        self.record_header
    }

    /// Bytes a record with `len` bytes of payload takes in this log.
    fn record_bytes(&self, len: usize) -> u64 {
        record_size(len, self.record_header).unwrap_or(usize::MAX) as u64
    }

    /// The append time of the record at `position` (version 2), or None
    /// (version 1). Any value is possible in a hostile segment; it is
    /// only ever printed. May be torn: callers confirm with `tail`.
    fn record_time(&self, position: u64) -> anyhow::Result<Option<u64>> {
        if self.version == VERSION_1 {
            return Ok(None);
        }
        let mut raw = [0u8; RECORD_TIME];
        self.copy_out(position + RECORD_HEADER as u64, &mut raw)?;
        Ok(Some(u64::from_ne_bytes(raw)))
    }

    fn word32(&self, offset: usize) -> anyhow::Result<&'a AtomicU32> {
        Ok(self.map.atomic_u32(offset)?)
    }

    fn word64(&self, offset: usize) -> anyhow::Result<&'a AtomicU64> {
        Ok(self.map.atomic_u64(offset)?)
    }

    fn corrupt(&self, what: &str) -> anyhow::Error {
        failure(
            Kind::Failed,
            format!(
                "{} has a corrupt log header ({what}); read it with --all, or remove it and start the log again",
                self.target
            ),
        )
    }

    /// The word followers sleep on; bumped after every batch of appends.
    pub fn head_event(&self) -> anyhow::Result<&'a AtomicU32> {
        self.word32(OFF_HEAD_EVENT)
    }

    /// `(head, tail)`, checked: both 8-aligned, `tail <= head <= tail +
    /// capacity`, `head <= u64::MAX - 2 * capacity`. Head is read twice around tail, so a writer moving both
    /// cannot make a consistent header look broken.
    pub fn positions(&self) -> anyhow::Result<(u64, u64)> {
        let head_word = self.word64(OFF_HEAD)?;
        let tail_word = self.word64(OFF_TAIL)?;
        let started = Instant::now();
        loop {
            let head = head_word.load(Ordering::SeqCst);
            let tail = tail_word.load(Ordering::SeqCst);
            if head_word.load(Ordering::SeqCst) != head {
                if started.elapsed() > PATIENCE {
                    return Err(self.corrupt("head never stops moving"));
                }
                continue;
            }
            // Positions count bytes ever appended: a head this close to
            // 2^64 is forged, and position arithmetic past it would wrap.
            let highest = u64::MAX - 2 * self.capacity;
            return match head.checked_sub(tail) {
                Some(fill)
                    if fill <= self.capacity
                        && head <= highest
                        && head.is_multiple_of(8)
                        && tail.is_multiple_of(8) =>
                {
                    Ok((head, tail))
                }
                _ => Err(self.corrupt(&format!(
                    "head {head}, tail {tail}, capacity {}",
                    self.capacity
                ))),
            };
        }
    }

    fn tail(&self) -> anyhow::Result<u64> {
        Ok(self.word64(OFF_TAIL)?.load(Ordering::SeqCst))
    }

    /// Where the byte at `position` lives in the mapping.
    fn data_offset(&self, position: u64) -> usize {
        // position % capacity < capacity <= mapping length - HEADER_SIZE.
        #[allow(
            clippy::cast_possible_truncation,
            reason = "less than the mapping length"
        )]
        let within = (position % self.capacity) as usize;
        HEADER_SIZE + within
    }

    /// Copies `buf.len()` bytes from `position` on, across the wrap point.
    fn copy_out(&self, position: u64, buf: &mut [u8]) -> anyhow::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let at = position + done as u64;
            let until_wrap =
                usize::try_from(self.capacity - at % self.capacity).unwrap_or(usize::MAX);
            let n = until_wrap.min(buf.len() - done);
            self.map
                .read(self.data_offset(at), &mut buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    /// Copies `data` to `position` on, across the wrap point.
    fn copy_in(&self, position: u64, data: &[u8]) -> anyhow::Result<()> {
        let mut done = 0;
        while done < data.len() {
            let at = position + done as u64;
            let until_wrap =
                usize::try_from(self.capacity - at % self.capacity).unwrap_or(usize::MAX);
            let n = until_wrap.min(data.len() - done);
            self.map
                .write(self.data_offset(at), &data[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    /// The record header at `position`: payload length and sequence
    /// number, with the length checked against its complement and the
    /// capacity. May be torn: callers confirm with `tail` afterwards.
    fn record_header(&self, position: u64) -> anyhow::Result<Result<(usize, u64), String>> {
        let mut raw = [0u8; RECORD_HEADER];
        self.copy_out(position, &mut raw)?;
        let len = u32::from_ne_bytes(raw[0..4].try_into().expect("4 bytes"));
        let check = u32::from_ne_bytes(raw[4..8].try_into().expect("4 bytes"));
        let seq = u64::from_ne_bytes(raw[8..16].try_into().expect("8 bytes"));
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if check != !u32::try_from(len).unwrap_or(0) {
            return Ok(Err(format!(
                "record at position {position} has a damaged length"
            )));
        }
        if len > self.max_record() {
            return Ok(Err(format!(
                "record at position {position} claims {len} bytes, more than the capacity"
            )));
        }
        Ok(Ok((len, seq)))
    }

    /// A cursor at the oldest record held: a reader that wants history.
    /// It knows that record's number, so a reader lapped before it reads
    /// anything still counts what it missed.
    pub fn cursor_at_oldest(&self) -> anyhow::Result<Cursor> {
        let started = Instant::now();
        loop {
            let (head, tail) = self.positions()?;
            let expected = if head == tail {
                // Nothing published yet: the next record gets next_seq.
                self.word64(OFF_NEXT_SEQ)?.load(Ordering::SeqCst)
            } else {
                let header = self.record_header(tail)?;
                fence(Ordering::Acquire);
                if self.tail()? != tail {
                    if started.elapsed() > PATIENCE {
                        return Err(self.corrupt("tail never stops moving"));
                    }
                    continue;
                }
                header.map_err(|what| self.corrupt(&what))?.1
            };
            return Ok(Cursor {
                position: tail,
                expected: Some(expected),
                lapped_from: None,
                held: false,
            });
        }
    }

    /// A cursor `last` records before the head (at most all held), or at
    /// the head with `last == 0`: from then on the reader misses nothing
    /// without being told.
    pub fn cursor_at_last(&self, last: u64) -> anyhow::Result<Cursor> {
        let started = Instant::now();
        loop {
            if let Some(cursor) = self.try_cursor_at_last(last)? {
                return Ok(cursor);
            }
            if started.elapsed() > PATIENCE {
                return Err(failure(
                    Kind::Failed,
                    format!(
                        "writers overwrote {} faster than it could be scanned for {}s; try again, or \
                         use a larger log",
                        self.target,
                        PATIENCE.as_secs()
                    ),
                ));
            }
        }
    }

    /// One walk from tail to head, keeping the positions of the last
    /// `last` records; None if writers overtook the walk.
    fn try_cursor_at_last(&self, last: u64) -> anyhow::Result<Option<Cursor>> {
        let (head, tail) = self.positions()?;
        let keep = usize::try_from(last).unwrap_or(usize::MAX);
        let mut recent = std::collections::VecDeque::new();
        let mut position = tail;
        let mut next_seq = None;
        while position < head {
            let header = self.record_header(position)?;
            fence(Ordering::Acquire);
            if self.tail()? > position {
                return Ok(None);
            }
            let (len, seq) = header.map_err(|what| self.corrupt(&what))?;
            let size = self.record_bytes(len);
            if position.checked_add(size).is_none_or(|end| end > head) {
                return Err(
                    self.corrupt(&format!("record at position {position} runs past the head"))
                );
            }
            if keep > 0 {
                if recent.len() == keep {
                    recent.pop_front();
                }
                recent.push_back((position, seq));
            }
            next_seq = Some(seq.wrapping_add(1));
            position += size;
        }
        let cursor = match recent.front() {
            Some(&(position, seq)) => Cursor {
                position,
                expected: Some(seq),
                lapped_from: None,
                held: false,
            },
            None => Cursor {
                position: head,
                expected: next_seq.or(Some(self.word64(OFF_NEXT_SEQ)?.load(Ordering::Acquire))),
                lapped_from: None,
                held: false,
            },
        };
        Ok(Some(cursor))
    }

    /// Copies the record at the cursor into `buf` and moves past it, or
    /// says the cursor is at the head. A cursor that writers lapped jumps
    /// to the oldest record held and the count of records missed comes with
    /// the next record. `head` is a recent value of the head position.
    pub fn next(&self, cursor: &mut Cursor, head: u64, buf: &mut Vec<u8>) -> anyhow::Result<Step> {
        let started = Instant::now();
        loop {
            if cursor.position == head {
                return Ok(Step::Empty);
            }
            if cursor.position > head && cursor.position <= self.positions()?.0 {
                // Jumped to a tail past the caller's (older) head: nothing
                // is wrong, the caller just has to look at the head again.
                return Ok(Step::Empty);
            }
            if cursor.position > head || !cursor.position.is_multiple_of(8) {
                return Err(self.corrupt(&format!(
                    "head {head} went back before a reader's position {}",
                    cursor.position
                )));
            }
            let tail = self.tail()?;
            if tail > cursor.position && !cursor.held {
                cursor.lapped(tail);
                continue;
            }
            let header = self.record_header(cursor.position)?;
            fence(Ordering::Acquire);
            if self.tail()? > cursor.position && !cursor.held {
                continue;
            }
            let (len, seq) = header.map_err(|what| self.corrupt(&what))?;
            let size = self.record_bytes(len);
            if cursor
                .position
                .checked_add(size)
                .is_none_or(|end| end > head)
            {
                return Err(self.corrupt(&format!(
                    "record at position {} runs past the head {head}",
                    cursor.position
                )));
            }
            super::reserve(buf, len.saturating_sub(buf.len()), self.target)?;
            buf.resize(len, 0);
            let time_ns = self.record_time(cursor.position)?;
            self.copy_out(cursor.position + self.record_header as u64, buf)?;
            fence(Ordering::Acquire);
            if self.tail()? > cursor.position && !cursor.held {
                // Overwritten while we copied: lapped, found out next turn.
                if started.elapsed() > PATIENCE {
                    return Err(
                        self.corrupt("records are overwritten faster than they can be copied")
                    );
                }
                continue;
            }
            let missed = match (cursor.lapped_from.take(), cursor.expected) {
                (Some(from), _) => seq.checked_sub(from).ok_or_else(|| {
                    self.corrupt(&format!("sequence number {seq} went back from {from}"))
                })?,
                (None, Some(expected)) if seq != expected => {
                    return Err(self.corrupt(&format!(
                        "record at position {} has sequence number {seq}, expected {expected}",
                        cursor.position
                    )));
                }
                _ => 0,
            };
            cursor.position += size;
            cursor.expected = Some(seq.wrapping_add(1));
            return Ok(Step::Record {
                seq,
                missed,
                time_ns,
            });
        }
    }
}

impl Cursor {
    /// Writers overtook this cursor: it jumps to `tail`, and the next
    /// record read settles how many were missed. A reader that has not read
    /// anything yet only lost history, which is not counted.
    fn lapped(&mut self, tail: u64) {
        if self.lapped_from.is_none() {
            self.lapped_from = self.expected;
        }
        self.position = tail;
    }
}

impl<'a> Log<'a> {
    /// What the log holds now: a walk from tail to head over the record
    /// headers only, so a log of large records costs no copy of them.
    pub fn summary(&self) -> anyhow::Result<Summary> {
        let started = Instant::now();
        loop {
            if let Some(summary) = self.try_summary()? {
                return Ok(summary);
            }
            if started.elapsed() > PATIENCE {
                return Err(failure(
                    Kind::Failed,
                    format!(
                        "writers overwrote {} faster than it could be scanned for {}s; try again",
                        self.target,
                        PATIENCE.as_secs()
                    ),
                ));
            }
        }
    }

    /// One header walk; None if writers overtook it.
    fn try_summary(&self) -> anyhow::Result<Option<Summary>> {
        let appended = self.word64(OFF_NEXT_SEQ)?.load(Ordering::Acquire);
        let (head, tail) = self.positions()?;
        let mut summary = Summary {
            appended,
            held: 0,
            bytes_held: 0,
            oldest: None,
        };
        let mut position = tail;
        let mut expected: Option<u64> = None;
        while position < head {
            let header = self.record_header(position)?;
            fence(Ordering::Acquire);
            if self.tail()? > position {
                return Ok(None);
            }
            let (len, seq) = header.map_err(|what| self.corrupt(&what))?;
            let size = self.record_bytes(len);
            if position.checked_add(size).is_none_or(|end| end > head) {
                return Err(
                    self.corrupt(&format!("record at position {position} runs past the head"))
                );
            }
            if let Some(expected) = expected.filter(|&e| e != seq) {
                return Err(self.corrupt(&format!(
                    "record at position {position} has sequence number {seq}, expected {expected}"
                )));
            }
            summary.oldest.get_or_insert(seq);
            summary.held += 1;
            summary.bytes_held += len as u64;
            expected = Some(seq.wrapping_add(1));
            position += size;
        }
        Ok(Some(summary))
    }

    /// Every record held, concatenated: what a plain read prints.
    pub fn contents(&self) -> anyhow::Result<Vec<u8>> {
        let mut cursor = self.cursor_at_oldest()?;
        let (head, _) = self.positions()?;
        let mut buf = Vec::new();
        let mut all = Vec::new();
        while let Step::Record { .. } = self.next(&mut cursor, head, &mut buf)? {
            super::reserve(&mut all, buf.len(), self.target)?;
            all.extend_from_slice(&buf);
        }
        Ok(all)
    }

    /// The write lock's holder, and the pid of the last writer.
    pub fn writer(&self) -> anyhow::Result<(Holder, u32, u64)> {
        Ok((
            Holder::at(self.map, OFF_LOCK)?,
            self.word32(OFF_WRITER_PID)?.load(Ordering::Relaxed),
            self.word64(OFF_WRITE_TIME)?.load(Ordering::Relaxed),
        ))
    }

    /// How many live lossless followers hold a slot now.
    pub fn lossless_followers(&self) -> anyhow::Result<usize> {
        let mut live = 0;
        for slot in 0..SLOTS {
            if matches!(self.slot_state(slot)?, SlotState::Live { .. }) {
                live += 1;
            }
        }
        Ok(live)
    }

    /// Every slot that is not free: who holds it and where it is.
    pub fn slots(&self) -> anyhow::Result<Vec<SlotInfo>> {
        let mut held = Vec::new();
        for slot in 0..SLOTS {
            let state = self.slot_state(slot)?;
            if state != SlotState::Free {
                let position = self
                    .word64(slot_offset(slot) + SLOT_CURSOR)?
                    .load(Ordering::SeqCst);
                held.push(SlotInfo {
                    slot,
                    state,
                    position,
                });
            }
        }
        Ok(held)
    }

    /// Who holds `slot`. With the log's file, only the kernel's follower
    /// lock proves a live follower: a lock word is ordinary memory that
    /// anyone with write access can set to any tid.
    fn slot_state(&self, slot: usize) -> anyhow::Result<SlotState> {
        let word = Holder::at(self.map, slot_offset(slot))?;
        let Some(file) = self.file else {
            return Ok(match word {
                Holder::Alive(tid) => SlotState::Live { tid, proven: false },
                Holder::Free | Holder::Died => SlotState::Free,
            });
        };
        // A follower holds both; a free word needs no system call.
        let Holder::Alive(tid) = word else {
            return Ok(SlotState::Free);
        };
        let locked = crate::sys::ofd_locked(file, follower_lock(slot), 1).map_err(|e| {
            anyhow::Error::new(e).context(format!(
                "cannot ask the kernel about the follower locks of {}",
                self.target
            ))
        })?;
        Ok(if locked {
            SlotState::Live { tid, proven: true }
        } else {
            SlotState::Unproven { tid }
        })
    }

    /// Takes the write lock for a batch of appends. A predecessor that died
    /// holding it may have left the sequence counter one behind; the
    /// records themselves are intact, so the counter is recomputed.
    pub fn appender(&self) -> anyhow::Result<Appender<'_, 'a>> {
        if self.verified.get().is_none() {
            // The first batch of this process: walk the records without the
            // lock, so that other writers are not held up for the walk of a
            // large log; under the lock only what was appended since is
            // checked.
            self.verified.set(self.numbering_without_lock()?);
        }
        let guard = lock(self.map, self.target, &|| self.held_back().ok().flatten())?;
        let (head, tail) = self.positions()?;
        let mut next_seq = self.word64(OFF_NEXT_SEQ)?.load(Ordering::Relaxed);
        if guard.previous_owner_died() {
            let cursor = self.cursor_at_last(0)?;
            if let Some(seq) = cursor.expected {
                next_seq = seq;
            }
        } else {
            self.verify_numbering(head, tail, next_seq)?;
        }
        Ok(Appender {
            log: self,
            _guard: guard,
            head,
            tail,
            next_seq,
            appended: false,
            time_ns: super::now_ns(),
        })
    }

    /// Checks, under the write lock, that the header adds up before this
    /// writer appends: the records from where this process's last batch
    /// ended (or, the first time, from the tail) to the head are whole and
    /// numbered one after another, and `next_seq` follows the last. A log
    /// whose counter someone forged would otherwise take records that every
    /// reader then rejects. Only others' records since our last batch (or
    /// since the walk without the lock before the first) are walked, so a
    /// lone writer checks nothing twice.
    fn verify_numbering(&self, head: u64, tail: u64, next_seq: u64) -> anyhow::Result<()> {
        let (mut position, mut expected) = match self.verified.get() {
            Some((at, seq)) if (tail..=head).contains(&at) => (at, Some(seq)),
            _ => (tail, None),
        };
        while position < head {
            let header = self.record_header(position)?;
            let (end, seq) = self.numbered_step(position, head, header, expected)?;
            position = end;
            expected = Some(seq.wrapping_add(1));
        }
        match expected {
            Some(expected) if expected != next_seq => Err(self.corrupt(&format!(
                "the next sequence number is {next_seq}, but the last record held is number {}",
                expected.wrapping_sub(1)
            ))),
            _ => Ok(()),
        }
    }

    /// One step of a numbering check: the record at `position`, whose
    /// `header` was read, must carry sequence number `expected` (if known)
    /// and end at or before `head`. Returns where it ends and its number.
    fn numbered_step(
        &self,
        position: u64,
        head: u64,
        header: Result<(usize, u64), String>,
        expected: Option<u64>,
    ) -> anyhow::Result<(u64, u64)> {
        let (len, seq) = header.map_err(|what| self.corrupt(&what))?;
        if let Some(expected) = expected.filter(|&e| e != seq) {
            return Err(self.corrupt(&format!(
                "record at position {position} has sequence number {seq}, expected {expected}"
            )));
        }
        let end = position
            .checked_add(self.record_bytes(len))
            .filter(|&end| end <= head)
            .ok_or_else(|| {
                self.corrupt(&format!("record at position {position} runs past the head"))
            })?;
        Ok((end, seq))
    }

    /// Walks the record headers from tail to head without the write lock
    /// and returns `(head, next_seq)` as the records say, for
    /// [`verify_numbering`](Self::verify_numbering) to go on from. A walk
    /// overtaken by writers is tried again (as [`summary`](Self::summary)
    /// does); None if it keeps being overtaken for [`PATIENCE`] or the log
    /// is empty (the check under the lock then starts from the tail).
    fn numbering_without_lock(&self) -> anyhow::Result<Option<(u64, u64)>> {
        let started = Instant::now();
        'walk: while started.elapsed() < PATIENCE {
            let (head, tail) = self.positions()?;
            let mut position = tail;
            let mut expected: Option<u64> = None;
            while position < head {
                let header = self.record_header(position)?;
                fence(Ordering::Acquire);
                if self.tail()? > position {
                    continue 'walk;
                }
                let (end, seq) = self.numbered_step(position, head, header, expected)?;
                position = end;
                expected = Some(seq.wrapping_add(1));
            }
            return Ok(expected.map(|next| (head, next)));
        }
        Ok(None)
    }

    /// Claims a lossless follower slot for `cursor`: writers will not
    /// overwrite what it has not read while this process holds the slot
    /// (the kernel frees it when the process dies). Needs a writable
    /// mapping. None when every slot is held by a live follower.
    pub fn claim_slot(&self, cursor: &mut Cursor) -> anyhow::Result<Option<Slot<'a>>> {
        for slot in 0..SLOTS {
            let offset = slot_offset(slot);
            if let Ok(guard) = lock::try_lock_robust(self.map, offset)? {
                // Then the kernel's proof that this follower lives, taken
                // before its position is published (writers believe a
                // position only while the lock is held).
                if let Some(file) = self.file {
                    let locked =
                        crate::sys::ofd_lock(file, follower_lock(slot), 1).map_err(|e| {
                            anyhow::Error::new(e)
                                .context(format!("cannot take a follower lock on {}", self.target))
                        })?;
                    if !locked {
                        // Another open file holds it: that slot is taken.
                        continue;
                    }
                }
                let word = self.word64(offset + SLOT_CURSOR)?;
                // Publish a position, then make sure it is still held: from
                // then on writers see it before they move the tail past it.
                loop {
                    word.store(cursor.position, Ordering::SeqCst);
                    let tail = self.tail()?;
                    if tail <= cursor.position {
                        break;
                    }
                    // Writers moved on since this reader chose where to
                    // start: nothing was promised yet, so nothing is missed
                    // (the first record read sets the numbering).
                    *cursor = Cursor {
                        position: tail,
                        expected: None,
                        lapped_from: None,
                        held: false,
                    };
                }
                cursor.held = true;
                return Ok(Some(Slot {
                    proof: self.file.map(|file| (file, follower_lock(slot))),
                    _guard: guard,
                    cursor: word,
                    writer_waiting: self.word32(OFF_WRITER_WAITING)?,
                    tail_event: self.word32(OFF_TAIL_EVENT)?,
                }));
            }
        }
        Ok(None)
    }

    /// Where live lossless followers are: the one at the lowest position
    /// a live slot holder still needs, if any is within the last capacity
    /// before `head`.
    fn slowest_follower(&self, tail: u64, head: u64) -> anyhow::Result<Option<Behind>> {
        let mut slowest: Option<Behind> = None;
        for slot in 0..SLOTS {
            let SlotState::Live { tid, proven } = self.slot_state(slot)? else {
                continue;
            };
            let position = self
                .word64(slot_offset(slot) + SLOT_CURSOR)?
                .load(Ordering::SeqCst);
            // A position below `tail` but within the last capacity may be a
            // follower that joined as a writer (killed since) published a
            // tail past it before seeing it, whose records are still there;
            // anything older, or past the head, is a follower still joining
            // (it re-checks the tail and moves up).
            let oldest = head.saturating_sub(self.capacity).min(tail);
            if (oldest..=head).contains(&position) && slowest.is_none_or(|s| position < s.position)
            {
                slowest = Some(Behind {
                    position,
                    slot,
                    tid,
                    proven,
                });
            }
        }
        Ok(slowest)
    }
}

impl Log<'_> {
    /// The live lossless follower that the write lock's holder is waiting
    /// for, if it is: the holder says so in the header (its tid, and the
    /// tail it needs), and a live follower is really below that tail. A
    /// holder that is stopped, stuck, or a stale lock word is not held back
    /// by anyone, however many followers lag.
    fn held_back(&self) -> anyhow::Result<Option<Behind>> {
        let Holder::Alive(holder) = Holder::at(self.map, OFF_LOCK)? else {
            return Ok(None);
        };
        if self.word32(OFF_WAITING_TID)?.load(Ordering::SeqCst) != holder {
            return Ok(None);
        }
        let needs = self.word64(OFF_WAITING_NEEDS)?.load(Ordering::SeqCst);
        let (head, tail) = self.positions()?;
        Ok(self
            .slowest_follower(tail, head)?
            .filter(|slowest| slowest.position < needs))
    }
}

fn slot_offset(slot: usize) -> usize {
    OFF_SLOTS + slot * SLOT_SIZE
}

fn follower_lock(slot: usize) -> u64 {
    FOLLOWER_LOCKS + slot as u64
}

/// Whether this process said already that it waits for a lossless
/// follower: once per process, not once per batch or per wait.
static TOLD_WAITING: AtomicBool = AtomicBool::new(false);

/// Says, once per process, that a writer waits for a lossless follower,
/// naming its slot and thread.
fn tell_waiting(target: &Target, behind: &Behind, how: &str) {
    if TOLD_WAITING.swap(true, Ordering::Relaxed) {
        return;
    }
    let who = if behind.tid == 0 {
        format!("slot {}", behind.slot)
    } else {
        format!(
            "slot {}, thread {} in its PID namespace",
            behind.slot, behind.tid
        )
    };
    // Only a System V log's slot rests on a lock word alone, which anyone
    // with write access could have set.
    let forged = if behind.proven {
        String::new()
    } else {
        format!(
            "; if no such follower runs, the slot was forged: stop the writers, remove the log \
             ({} --remove > /dev/null) and start it again",
            target.command("shm-read")
        )
    };
    crate::notice::notice(format_args!(
        "shm-write: waiting for a lossless follower of {target} ({who}; shm-read --follow \
         --lossless) that is a whole log behind{how}; writers wait for it as long as it lives, as \
         a pipe's writer waits for its reader, and go on when it reads on, exits or is killed \
         ({} --info lists the follower slots){forged}",
        target.command("shm-read")
    ));
}

/// Takes the log's write lock. A live holder is waited for as long as a
/// live lossless follower holds it back (`held_back`: lossless means no
/// record is dropped, however slow or stopped the follower); a holder that
/// keeps it [`PATIENCE`] with nothing holding it back is reported.
fn lock<'m>(
    map: &'m Mapping,
    target: &Target,
    held_back: &dyn Fn() -> Option<Behind>,
) -> anyhow::Result<RobustGuard<'m>> {
    let mut told = false;
    loop {
        let deadline = Deadline::after(Some(PATIENCE));
        let waiting = |tid| {
            if let Some(behind) = held_back() {
                tell_waiting(
                    target,
                    &behind,
                    " (the writer holding the lock waits for it)",
                );
            } else if !told {
                crate::notice::notice(format_args!(
                    "shm-write: waiting for thread {tid} (in its PID namespace), which holds the \
                     write lock on {target}"
                ));
            }
        };
        if let Some(guard) = lock::lock_robust(map, OFF_LOCK, deadline, waiting)? {
            return Ok(guard);
        }
        told = true;
        if held_back().is_some() {
            continue;
        }
        let holder = match Holder::at(map, OFF_LOCK)? {
            Holder::Alive(tid) => format!("thread {tid} (in its PID namespace)"),
            // Let go just now: try again.
            Holder::Free | Holder::Died => continue,
        };
        return Err(failure(
            Kind::Failed,
            format!(
                "the write lock on {target} has been held by {holder} for {}s, and it is not \
                 waiting for a lossless follower; nothing was appended by this writer after that. The \
                 holder may be stopped (kill -CONT it), stuck (kill it: a dead holder's lock is \
                 taken over), or, if no such thread lives, the lock word is stale: remove the log \
                 and start it again",
                PATIENCE.as_secs()
            ),
        ));
    }
}

/// A lossless follower's slot: its published position. Released (by the
/// kernel, if need be) when the process ends.
#[derive(Debug)]
pub struct Slot<'a> {
    /// The POSIX log's file and the byte of this slot's follower lock,
    /// released before the slot's lock word.
    proof: Option<(BorrowedFd<'a>, u64)>,
    _guard: RobustGuard<'a>,
    cursor: &'a AtomicU64,
    writer_waiting: &'a AtomicU32,
    tail_event: &'a AtomicU32,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some((file, at)) = self.proof {
            // Closing the file (at exit) would release it too.
            let _ = crate::sys::ofd_unlock(file, at, 1);
        }
    }
}

impl Slot<'_> {
    /// Says the follower no longer needs anything before `position`, and
    /// wakes a writer waiting for room.
    pub fn advance(&self, position: u64) {
        self.cursor.store(position, Ordering::SeqCst);
        if self.writer_waiting.load(Ordering::SeqCst) != 0 {
            self.writer_waiting.store(0, Ordering::SeqCst);
            self.tail_event.fetch_add(1, Ordering::SeqCst);
            wait::wake_all(self.tail_event);
        }
    }
}

/// A writer holding the log's write lock.
#[derive(Debug)]
pub struct Appender<'l, 'a> {
    log: &'l Log<'a>,
    _guard: RobustGuard<'a>,
    head: u64,
    tail: u64,
    next_seq: u64,
    appended: bool,
    /// The append time version 2 records get: taken when the lock was,
    /// once per batch (a clock read per record costs more than the rest of
    /// an append), and again after waiting for a lossless follower.
    time_ns: u64,
}

impl Appender<'_, '_> {
    /// Appends one record, whole, after moving the tail past as many old
    /// records as it needs room for (waiting while a live lossless
    /// follower still needs them). A record larger than [`Log::max_record`]
    /// is refused before anything changes.
    pub fn append(&mut self, record: &[u8]) -> anyhow::Result<()> {
        let log = self.log;
        if record.len() > log.max_record() {
            return Err(failure(
                Kind::Failed,
                format!(
                    "a record of {} bytes does not fit {}, whose records hold at most {} bytes",
                    record.len(),
                    log.target,
                    log.max_record()
                ),
            ));
        }
        let size = log.record_bytes(record.len());
        let end = self
            .head
            .checked_add(size)
            .filter(|&end| end <= u64::MAX - 2 * log.capacity)
            .ok_or_else(|| log.corrupt(&format!("head {} is near 2^64", self.head)))?;
        // Followers bump tail_event only to wake a writer that waits.
        let tail_event = log.word32(OFF_TAIL_EVENT)?;
        let woken = tail_event.load(Ordering::Relaxed);
        self.make_room(size)?;
        if tail_event.load(Ordering::Relaxed) != woken {
            self.time_ns = super::now_ns();
        }
        let mut header = [0u8; RECORD_HEADER + RECORD_TIME];
        let len = u32::try_from(record.len()).expect("fits the capacity");
        header[0..4].copy_from_slice(&len.to_ne_bytes());
        header[4..8].copy_from_slice(&(!len).to_ne_bytes());
        header[8..16].copy_from_slice(&self.next_seq.to_ne_bytes());
        header[16..24].copy_from_slice(&self.time_ns.to_ne_bytes());
        log.copy_in(self.head, &header[..log.record_header])?;
        log.copy_in(self.head + log.record_header as u64, record)?;
        test_hook_slow_append();
        self.head = end;
        self.next_seq = self.next_seq.wrapping_add(1);
        log.word64(OFF_HEAD)?.store(self.head, Ordering::SeqCst);
        // Kept current on every append, not just at the end of a batch:
        // the next append may move the tail up to the head, and a writer
        // killed then leaves no record to recount the sequence from.
        log.word64(OFF_NEXT_SEQ)?
            .store(self.next_seq, Ordering::SeqCst);
        self.appended = true;
        Ok(())
    }

    /// Moves the tail until `size` more bytes fit, then publishes it before
    /// any byte of the old records is overwritten.
    fn make_room(&mut self, size: u64) -> anyhow::Result<()> {
        let log = self.log;
        let mut tail = self.tail;
        // The caller checked that head + size does not come near 2^64.
        while self.head + size - tail > log.capacity {
            let (len, _) = log
                .record_header(tail)?
                .map_err(|what| log.corrupt(&what))?;
            tail = tail.saturating_add(log.record_bytes(len));
            if tail > self.head {
                return Err(log.corrupt(&format!("record at position {tail} runs past the head")));
            }
        }
        if tail == self.tail {
            return Ok(());
        }
        self.wait_for_followers(tail)?;
        log.word64(OFF_TAIL)?.store(tail, Ordering::SeqCst);
        // Readers that see any new byte must see the new tail too.
        fence(Ordering::SeqCst);
        // A lossless follower joining now stores its position, then loads
        // the tail; this writer stored the tail, and now loads the slots.
        // One of the two sees the other: the follower moves up to the new
        // tail, or it is seen (and waited for) here.
        self.wait_for_followers(tail)?;
        self.tail = tail;
        Ok(())
    }

    /// Waits until no live lossless follower needs anything before
    /// `new_tail`, like a pipe's writer waits for its reader. A follower
    /// that dies is seen within [`RECHECK`] (the kernel marks its slot).
    fn wait_for_followers(&self, new_tail: u64) -> anyhow::Result<()> {
        let log = self.log;
        let event = log.word32(OFF_TAIL_EVENT)?;
        let waiting = log.word32(OFF_WRITER_WAITING)?;
        let mut spins = 0u32;
        let started = Instant::now();
        let mut published: Option<WaitingSign<'_>> = None;
        // The flag is this writer's: a follower clears it when it moves,
        // but one that died or left never does, and --stats would go on
        // reporting a writer that waits.
        let done = || {
            waiting.store(0, Ordering::SeqCst);
            Ok(())
        };
        loop {
            let behind = match log.slowest_follower(self.tail, self.head)? {
                Some(slowest) if slowest.position < new_tail => slowest,
                _ => return done(),
            };
            if published.is_none() {
                // Writers queued on the lock wait as long as this does.
                published = Some(WaitingSign::publish(log, new_tail)?);
            }
            // Waiting is the point, as a pipe's writer waits for its
            // reader; but a follower that is stopped (Ctrl-Z), or a slot
            // someone scribbled on, would hold us silently: say so once.
            if started.elapsed() >= Duration::from_secs(1) {
                tell_waiting(log.target, &behind, "");
            }
            if spins < 200 {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            // Publish what we have so the follower can make progress.
            log.wake_followers()?;
            let seen = event.load(Ordering::SeqCst);
            waiting.store(1, Ordering::SeqCst);
            match log.slowest_follower(self.tail, self.head)? {
                Some(slowest) if slowest.position < new_tail => {}
                _ => return done(),
            }
            wait::wait_while_equal(event, seen, RECHECK);
        }
    }
}

/// The lock holder's sign in the header that it waits for a lossless
/// follower: the tail it needs, then its tid; the tid is cleared again when
/// it stops waiting (dropped), and a holder that dies leaves a tid that no
/// longer names the lock's holder.
struct WaitingSign<'w> {
    tid: &'w AtomicU32,
}

impl<'w> WaitingSign<'w> {
    fn publish(log: &Log<'w>, needs: u64) -> anyhow::Result<WaitingSign<'w>> {
        let tid = log.word32(OFF_WAITING_TID)?;
        log.word64(OFF_WAITING_NEEDS)?
            .store(needs, Ordering::SeqCst);
        tid.store(crate::sys::current_tid(), Ordering::SeqCst);
        Ok(WaitingSign { tid })
    }
}

impl Drop for WaitingSign<'_> {
    fn drop(&mut self) {
        self.tid.store(0, Ordering::SeqCst);
    }
}

impl Log<'_> {
    /// Bumps the head event and wakes every sleeping follower.
    pub fn wake_followers(&self) -> anyhow::Result<()> {
        let event = self.head_event()?;
        event.fetch_add(1, Ordering::SeqCst);
        wait::wake_all(event);
        Ok(())
    }
}

impl Drop for Appender<'_, '_> {
    fn drop(&mut self) {
        // Still under the lock: what the next batch checks the header against.
        self.log.verified.set(Some((self.head, self.next_seq)));
        if !self.appended {
            return;
        }
        // Bookkeeping and the wake-up; the records themselves are already
        // published through head, so failures here lose nothing.
        if let Ok(word) = self.log.word64(OFF_NEXT_SEQ) {
            word.store(self.next_seq, Ordering::Release);
        }
        if let Ok(word) = self.log.word64(OFF_WRITE_TIME) {
            word.store(super::now_ns(), Ordering::Relaxed);
        }
        if let Ok(word) = self.log.word32(OFF_WRITER_PID) {
            word.store(std::process::id(), Ordering::Relaxed);
        }
        let _ = self.log.wake_followers();
    }
}

/// Lets crash tests kill a writer mid-append: with
/// `SHM_TOOLS_TEST_SLOW_APPEND_US` set, each append sleeps that long while
/// holding the lock, after moving the tail and writing the record but
/// before publishing it through head. Only with the `test-hooks` feature, which `cargo test` enables.
#[cfg(feature = "test-hooks")]
fn test_hook_slow_append() {
    static DELAY: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let delay = DELAY.get_or_init(|| {
        std::env::var_os("SHM_TOOLS_TEST_SLOW_APPEND_US")
            .and_then(|v| v.to_str().and_then(|s| s.parse::<u64>().ok()))
    });
    if let Some(us) = delay {
        std::thread::sleep(Duration::from_micros(*us));
    }
}

/// Without the `test-hooks` feature (every build users make) there is no
/// hook at all.
#[cfg(not(feature = "test-hooks"))]
fn test_hook_slow_append() {}

/// What `shm-read --stats` reads of a log: header words and record
/// headers only, never a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters {
    /// Records appended since the log was made (`next_seq`).
    pub appended: u64,
    /// Position after the last record: log bytes appended, framing included.
    pub head: u64,
    /// Position of the oldest record held.
    pub tail: u64,
    /// Sequence number of the oldest record held (`appended` when empty):
    /// every record before it has been overwritten.
    pub oldest: u64,
    /// Live lossless followers: slot holder's tid (in its own PID
    /// namespace) and how many records and bytes it is behind the head.
    pub followers: Vec<FollowerLag>,
}

/// A lossless follower's distance from the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerLag {
    /// The slot holder's thread id, in its own PID namespace.
    pub tid: u32,
    /// Records it has not read yet (None if its position is not a record
    /// boundary inside the log: a follower still joining).
    pub records: Option<u64>,
    /// Log bytes it has not read yet.
    pub bytes: u64,
}

impl Log<'_> {
    /// The sequence number of the record at `position` (inside
    /// `[tail, head)`), if it was not overwritten while being read.
    fn seq_at(&self, position: u64) -> anyhow::Result<Option<u64>> {
        let header = self.record_header(position)?;
        fence(Ordering::Acquire);
        if self.tail()? > position {
            return Ok(None);
        }
        Ok(Some(header.map_err(|what| self.corrupt(&what))?.1))
    }

    /// The counters, as consistent as the writers allow: positions are
    /// checked together, and a record header read while overwritten is
    /// read again.
    pub fn counters(&self) -> anyhow::Result<Counters> {
        let started = Instant::now();
        let (head, tail, oldest) = loop {
            let (head, tail) = self.positions()?;
            if head == tail {
                let appended = self.word64(OFF_NEXT_SEQ)?.load(Ordering::SeqCst);
                break (head, tail, appended);
            }
            if let Some(seq) = self.seq_at(tail)? {
                break (head, tail, seq);
            }
            if started.elapsed() > PATIENCE {
                return Err(self.corrupt("tail never stops moving"));
            }
        };
        // Stored after head on every append: at least the records up to head.
        let appended = self.word64(OFF_NEXT_SEQ)?.load(Ordering::SeqCst);
        let mut followers = Vec::new();
        for slot in 0..SLOTS {
            let offset = slot_offset(slot);
            let Holder::Alive(tid) = Holder::at(self.map, offset)? else {
                continue;
            };
            let position = self.word64(offset + SLOT_CURSOR)?.load(Ordering::SeqCst);
            let records = if position == head {
                Some(0)
            } else if (tail..head).contains(&position) && position.is_multiple_of(8) {
                self.seq_at(position)
                    .ok()
                    .flatten()
                    .map(|seq| appended.saturating_sub(seq))
            } else {
                None
            };
            followers.push(FollowerLag {
                tid,
                records,
                bytes: head.saturating_sub(position),
            });
        }
        Ok(Counters {
            appended: appended.max(oldest),
            head,
            tail,
            oldest,
            followers,
        })
    }

    /// Whether a writer is asleep now, waiting for a lossless follower.
    /// The log counts no time waited, so `--stats` samples this.
    pub fn writer_waiting(&self) -> anyhow::Result<bool> {
        Ok(self.word32(OFF_WRITER_WAITING)?.load(Ordering::Relaxed) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_aligned() {
        assert_eq!(record_size(0, RECORD_HEADER), Some(16));
        assert_eq!(record_size(1, RECORD_HEADER), Some(24));
        assert_eq!(record_size(8, RECORD_HEADER), Some(24));
        assert_eq!(record_size(0, RECORD_HEADER + RECORD_TIME), Some(24));
        assert_eq!(record_size(1, RECORD_HEADER + RECORD_TIME), Some(32));
        assert_eq!(capacity_for(HEADER_SIZE), None);
        assert_eq!(capacity_for(4096), Some((4096 - HEADER_SIZE) & !7));
        assert_eq!(HEADER_SIZE % 8, 0);
    }
}
