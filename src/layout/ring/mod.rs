//! The stream layout: a single-producer single-consumer ring buffer.
//!
//! The writer owns `head` (bytes produced in total), the reader owns `tail`
//! (bytes consumed); each sits on its own cache line. Each side holds a
//! claim for the whole transfer: a robust lock, so the kernel records a
//! side that dies (in any PID namespace) and the other side reads that
//! record instead of probing a pid. The writer takes its claim with one
//! compare-and-swap before it decides anything else, so of two racing
//! writers exactly one goes on, and the other changes nothing. Data moves
//! between the ring and file descriptors with read(2)/write(2) straight on
//! the mapping, without an intermediate buffer, each call as large as the
//! free (or filled) span up to the wrap, so a small ring costs no more
//! system calls than it must. Either side sleeps on a futex event word,
//! without spinning, when it cannot proceed, and re-checks the other
//! side's claim while it sleeps. Every index is checked
//! against the capacity before use. Byte layout: docs/FORMAT.md.

use std::sync::atomic::Ordering;

use crate::address::Target;
use crate::layout::Layout;
use crate::layout::prefix::Prefix;
use crate::lock::Holder;
use crate::sys::Mapping;
use crate::wait::{self};

mod claim;
mod error;
mod transfer;

pub use claim::Created;
pub use error::RingError;

/// The first eight bytes of a stream ring.
pub const MAGIC: [u8; 8] = *b"SHMTRING";
/// The layout version this code writes and reads.
pub const VERSION: u32 = 2;
/// Bytes before the data area.
pub const HEADER_SIZE: usize = 256;

/// Magic, version, header size and capacity, shared with the framed layout.
const PREFIX: Prefix = Prefix {
    magic: MAGIC,
    version: VERSION,
    header_size: HEADER_SIZE,
    layout: super::Layout::Stream,
};
const OFF_WRITER_PID: usize = 24;
const OFF_READER_PID: usize = 28;
const OFF_FLAGS: usize = 32;
const OFF_HEAD: usize = 64;
const OFF_HEAD_EVENT: usize = 72;
const OFF_READER_WAITING: usize = 76;
const OFF_TAIL: usize = 128;
const OFF_TAIL_EVENT: usize = 136;
const OFF_WRITER_WAITING: usize = 140;
/// The writer's claim: a robust lock held from creation until `flags` say
/// how the stream ended.
const OFF_WRITER_CLAIM: usize = 192;
/// The reader's claim: a robust lock held from claiming to the end.
const OFF_READER_CLAIM: usize = 208;

/// `flags`: the writer reached end of input; `head` is final.
pub const WRITER_DONE: u32 = 1;
/// `flags`: the writer failed; the stream is incomplete.
pub const WRITER_FAILED: u32 = 2;
/// `flags`: the reader stopped (its output was closed).
pub const READER_CLOSED: u32 = 4;
/// `flags`: a reader began to read: set before its first write(2) of ring
/// bytes, so a reader killed inside that call has begun even though `tail`
/// never moved. Until it is set (and while `tail` is 0), no byte of the
/// stream has left the ring, and a gone writer's or reader's place may be
/// taken over.
pub const READER_BEGAN: u32 = 8;

/// Which end of the ring this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Produces into `head`.
    Writer,
    /// Consumes from `tail`.
    Reader,
}

/// Data capacity of a ring in a segment of `size` bytes.
#[must_use]
pub fn capacity_for(size: usize) -> Option<usize> {
    size.checked_sub(HEADER_SIZE).filter(|&c| c > 0)
}

/// A validated view of a stream ring.
#[derive(Debug)]
pub struct Ring<'a> {
    map: &'a Mapping,
    target: &'a Target,
    capacity: u64,
}

/// How a peer that is gone ended, as the kernel and the flags tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerEnd {
    /// It died holding its claim (the kernel marked it).
    Died,
    /// The writer set the failed flag and let go.
    Failed,
    /// It let go of its claim without finishing the stream.
    LetGo,
}

/// A gone peer's place that this process took over (see [`Ring::create`]
/// and [`Ring::claim_reader`]), for the one line that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Takeover {
    /// How the previous holder of the place ended.
    pub how: PeerEnd,
    /// Its pid, in its own PID namespace (0 if it never stored one).
    pub pid: u32,
    /// Bytes of its stream that are gone: the writer's bytes that no
    /// reader will see; always 0 for a reader's place.
    pub discarded: u64,
}

/// What a finished transfer moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transferred {
    /// Bytes that went through the ring.
    pub bytes: u64,
}

impl<'a> Ring<'a> {
    /// Whether a reader ever began to read this ring: READER_BEGAN, or
    /// `tail` moved (by a reader that does not set the flag).
    pub fn reader_began(&self) -> Result<bool, RingError> {
        let (_, tail) = self.positions()?;
        Ok(tail != 0 || self.flags()? & READER_BEGAN != 0)
    }

    /// Validates the header of a segment whose magic says it is a ring.
    pub fn open(map: &'a Mapping, target: &'a Target) -> Result<Ring<'a>, RingError> {
        let layout = Layout::detect(map);
        if layout != Layout::Stream {
            return Err(RingError::NotAStream {
                target: target.clone(),
                found: layout,
                blank: map.is_zero(0, map.len().min(64)).unwrap_or(false),
            });
        }
        let capacity = PREFIX.check(map, target, capacity_for(map.len()))? as u64;
        Ok(Ring {
            map,
            target,
            capacity,
        })
    }

    /// Bytes the ring holds at most.
    #[must_use]
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The pids the writer and the reader stored (each in its own PID
    /// namespace), 0 where none: for messages only.
    pub fn peers(&self) -> Result<(u32, u32), RingError> {
        Ok((
            self.map.atomic_u32(OFF_WRITER_PID)?.load(Ordering::Acquire),
            self.map.atomic_u32(OFF_READER_PID)?.load(Ordering::Acquire),
        ))
    }

    /// Who holds the writer's and the reader's claims, as the kernel keeps
    /// them: the liveness of both sides.
    pub fn holders(&self) -> Result<(Holder, Holder), RingError> {
        Ok((
            Holder::at(self.map, OFF_WRITER_CLAIM)?,
            Holder::at(self.map, OFF_READER_CLAIM)?,
        ))
    }

    /// Bytes written and not yet read, and bytes read so far.
    pub fn fill(&self) -> Result<(u64, u64), RingError> {
        let (head, tail) = self.positions()?;
        Ok((head - tail, tail))
    }

    /// The state flags.
    pub fn flags(&self) -> Result<u32, RingError> {
        Ok(self.map.atomic_u32(OFF_FLAGS)?.load(Ordering::Acquire))
    }

    fn set_flag(&self, flag: u32) -> Result<(), RingError> {
        self.map
            .atomic_u32(OFF_FLAGS)?
            .fetch_or(flag, Ordering::AcqRel);
        // Whoever sleeps must look at the flags now.
        self.bump(OFF_HEAD_EVENT)?;
        self.bump(OFF_TAIL_EVENT)?;
        Ok(())
    }

    fn bump(&self, event: usize) -> Result<(), RingError> {
        let word = self.map.atomic_u32(event)?;
        word.fetch_add(1, Ordering::SeqCst);
        wait::wake_all(word);
        Ok(())
    }

    /// head and tail, checked: tail <= head <= tail + capacity.
    fn positions(&self) -> Result<(u64, u64), RingError> {
        let head = self.map.atomic_u64(OFF_HEAD)?.load(Ordering::SeqCst);
        let tail = self.map.atomic_u64(OFF_TAIL)?.load(Ordering::SeqCst);
        match head.checked_sub(tail) {
            Some(fill) if fill <= self.capacity => Ok((head, tail)),
            _ => Err(RingError::CorruptPositions {
                target: self.target.clone(),
                head,
                tail,
                capacity: self.capacity,
            }),
        }
    }

    fn data_offset(&self, position: u64) -> usize {
        // position % capacity < capacity <= mapping length - HEADER_SIZE.
        #[allow(
            clippy::cast_possible_truncation,
            reason = "less than the mapping length"
        )]
        let within = (position % self.capacity) as usize;
        HEADER_SIZE + within
    }
}

/// Counters for `shm-read --stats`: read-only loads, nothing copied.
impl Ring<'_> {
    /// `(head, tail)`: bytes written and read since the stream began, checked.
    pub fn counters(&self) -> Result<(u64, u64), RingError> {
        self.positions()
    }

    /// Whether the writer is asleep now, waiting for room in a full ring.
    /// The ring counts no time waited, so `--stats` samples this.
    pub fn writer_waiting(&self) -> Result<bool, RingError> {
        Ok(self
            .map
            .atomic_u32(OFF_WRITER_WAITING)?
            .load(Ordering::Relaxed)
            != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_what_follows_the_header() {
        assert_eq!(capacity_for(HEADER_SIZE), None);
        assert_eq!(capacity_for(4096), Some(4096 - HEADER_SIZE));
    }
}
