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
use std::time::Duration;

use crate::address::Target;
use crate::layout::Layout;
use crate::layout::prefix::Prefix;
use crate::sys::{Mapping, ROBUST_LOCK_SIZE};

mod access;
mod append;
mod error;
mod followers;
mod summary;
mod walk;

pub use append::{Appender, WriterWait};
pub use error::{LogError, LogResult};
pub use followers::Slot;
pub use summary::{Counters, FollowerLag};

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

/// What [`Log::next`] found.
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
    pub fn open(map: &'a Mapping, target: &'a Target) -> LogResult<Log<'a>> {
        if Layout::detect(map) != Layout::Log {
            return Err(LogError::NotALog {
                target: target.clone(),
            });
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
    /// `created`: whether the caller just made the segment (what a segment
    /// too small for a log needs done). `on_wait` hears why it waits for
    /// the write lock (racing creators), when it waits a while.
    pub fn for_writing(
        map: &'a Mapping,
        target: &'a Target,
        created: bool,
        on_wait: &dyn Fn(WriterWait),
    ) -> LogResult<Log<'a>> {
        let found = Layout::detect(map);
        match found {
            Layout::Log => return Log::open(map, target),
            Layout::Snapshot | Layout::Stream => {
                return Err(LogError::OtherLayout {
                    target: target.clone(),
                    found,
                });
            }
            Layout::Foreign => {}
        }
        let capacity = capacity_for(map.len()).ok_or_else(|| LogError::TooSmall {
            target: target.clone(),
            size: map.len(),
            header: HEADER_SIZE,
            created,
        })?;
        // Blank but for the header fields and lock another writer may be
        // setting up right now (the magic goes in last).
        let blank =
            map.is_zero(0, MAGIC.len())? && map.is_zero(OFF_NEXT_SEQ, map.len() - OFF_NEXT_SEQ)?;
        if !blank {
            return Err(LogError::OtherLayout {
                target: target.clone(),
                found,
            });
        }
        // Racing creators: the lock decides, the magic goes in last.
        let _guard = append::lock(map, target, &|| None, on_wait)?;
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
