//! What `--info`, `--list` and `--stats` show of a log: counts, slots and
//! counters, from header words and record headers only.

use std::sync::atomic::{Ordering, fence};
use std::time::Instant;

use super::followers::{follower_lock, slot_offset};
use super::{
    Log, LogError, LogResult, OFF_LOCK, OFF_NEXT_SEQ, OFF_WRITE_TIME, OFF_WRITER_PID,
    OFF_WRITER_WAITING, PATIENCE, SLOT_CURSOR, SLOTS, SlotInfo, SlotState, Summary,
};
use crate::lock::Holder;

impl Log<'_> {
    /// What the log holds now: a walk from tail to head over the record
    /// headers only, so a log of large records costs no copy of them.
    pub fn summary(&self) -> LogResult<Summary> {
        let started = Instant::now();
        loop {
            if let Some(summary) = self.try_summary()? {
                return Ok(summary);
            }
            if started.elapsed() > PATIENCE {
                return Err(LogError::Overtaken {
                    target: self.target.clone(),
                    secs: PATIENCE.as_secs(),
                    larger_log_helps: false,
                });
            }
        }
    }

    /// One header walk; None if writers overtook it.
    pub(super) fn try_summary(&self) -> LogResult<Option<Summary>> {
        let appended = self.map.atomic_u64(OFF_NEXT_SEQ)?.load(Ordering::Acquire);
        let (head, tail) = self.positions()?;
        let mut summary = Summary {
            appended,
            held: 0,
            bytes_held: 0,
            oldest: None,
        };
        let mut expected: Option<u64> = None;
        let whole = self.walk_records(tail, head, &mut |position, len, seq| {
            if let Some(expected) = expected.filter(|&e| e != seq) {
                return Err(self.corrupt(&format!(
                    "record at position {position} has sequence number {seq}, expected {expected}"
                )));
            }
            summary.oldest.get_or_insert(seq);
            summary.held += 1;
            summary.bytes_held += len as u64;
            expected = Some(seq.wrapping_add(1));
            Ok(())
        })?;
        if !whole {
            return Ok(None);
        }
        Ok(Some(summary))
    }
}

impl Log<'_> {
    /// The write lock's holder, and the pid of the last writer.
    pub fn writer(&self) -> LogResult<(Holder, u32, u64)> {
        Ok((
            Holder::at(self.map, OFF_LOCK)?,
            self.map.atomic_u32(OFF_WRITER_PID)?.load(Ordering::Relaxed),
            self.map.atomic_u64(OFF_WRITE_TIME)?.load(Ordering::Relaxed),
        ))
    }

    /// How many live lossless followers hold a slot now.
    pub fn lossless_followers(&self) -> LogResult<usize> {
        let mut live = 0;
        for slot in 0..SLOTS {
            if matches!(self.slot_state(slot)?, SlotState::Live { .. }) {
                live += 1;
            }
        }
        Ok(live)
    }

    /// Every slot that is not free: who holds it and where it is.
    pub fn slots(&self) -> LogResult<Vec<SlotInfo>> {
        let mut held = Vec::new();
        for slot in 0..SLOTS {
            let state = self.slot_state(slot)?;
            if state != SlotState::Free {
                let position = self
                    .map
                    .atomic_u64(slot_offset(slot) + SLOT_CURSOR)?
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
    pub(super) fn slot_state(&self, slot: usize) -> LogResult<SlotState> {
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
        let locked = crate::sys::ofd_locked(file, follower_lock(slot), 1).map_err(|errno| {
            LogError::FollowerLock {
                target: self.target.clone(),
                taking: false,
                errno,
            }
        })?;
        Ok(if locked {
            SlotState::Live { tid, proven: true }
        } else {
            SlotState::Unproven { tid }
        })
    }
}

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
    pub(super) fn seq_at(&self, position: u64) -> LogResult<Option<u64>> {
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
    pub fn counters(&self) -> LogResult<Counters> {
        let started = Instant::now();
        let (head, tail, oldest) = loop {
            let (head, tail) = self.positions()?;
            if head == tail {
                let appended = self.map.atomic_u64(OFF_NEXT_SEQ)?.load(Ordering::SeqCst);
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
        let appended = self.map.atomic_u64(OFF_NEXT_SEQ)?.load(Ordering::SeqCst);
        let mut followers = Vec::new();
        for slot in 0..SLOTS {
            let offset = slot_offset(slot);
            let Holder::Alive(tid) = Holder::at(self.map, offset)? else {
                continue;
            };
            let position = self
                .map
                .atomic_u64(offset + SLOT_CURSOR)?
                .load(Ordering::SeqCst);
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
    pub fn writer_waiting(&self) -> LogResult<bool> {
        Ok(self
            .map
            .atomic_u32(OFF_WRITER_WAITING)?
            .load(Ordering::Relaxed)
            != 0)
    }
}
