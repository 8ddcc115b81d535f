//! Lossless followers' slots: claiming one, and finding the slowest.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::{
    Behind, Cursor, FOLLOWER_LOCKS, Log, LogError, LogResult, OFF_LOCK, OFF_SLOTS, OFF_TAIL_EVENT,
    OFF_WAITING_NEEDS, OFF_WAITING_TID, OFF_WRITER_WAITING, SLOT_CURSOR, SLOT_SIZE, SLOTS,
    SlotState,
};
use crate::lock::{self, Holder, RobustGuard};
use crate::wait;

impl<'a> Log<'a> {
    /// Claims a lossless follower slot for `cursor`: writers will not
    /// overwrite what it has not read while this process holds the slot
    /// (the kernel frees it when the process dies). Needs a writable
    /// mapping. None when every slot is held by a live follower.
    pub fn claim_slot(&self, cursor: &mut Cursor) -> LogResult<Option<Slot<'a>>> {
        for slot in 0..SLOTS {
            let offset = slot_offset(slot);
            if let Ok(guard) = lock::try_lock_robust(self.map, offset)? {
                // Then the kernel's proof that this follower lives, taken
                // before its position is published (writers believe a
                // position only while the lock is held).
                if let Some(file) = self.file {
                    let locked =
                        crate::sys::ofd_lock(file, follower_lock(slot), 1).map_err(|errno| {
                            LogError::FollowerLock {
                                target: self.target.clone(),
                                taking: true,
                                errno,
                            }
                        })?;
                    if !locked {
                        // Another open file holds it: that slot is taken.
                        continue;
                    }
                }
                let word = self.map.atomic_u64(offset + SLOT_CURSOR)?;
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
                    writer_waiting: self.map.atomic_u32(OFF_WRITER_WAITING)?,
                    tail_event: self.map.atomic_u32(OFF_TAIL_EVENT)?,
                }));
            }
        }
        Ok(None)
    }

    /// Where live lossless followers are: the one at the lowest position
    /// a live slot holder still needs, if any is within the last capacity
    /// before `head`.
    pub(super) fn slowest_follower(&self, tail: u64, head: u64) -> LogResult<Option<Behind>> {
        let mut slowest: Option<Behind> = None;
        for slot in 0..SLOTS {
            let SlotState::Live { tid, proven } = self.slot_state(slot)? else {
                continue;
            };
            let position = self
                .map
                .atomic_u64(slot_offset(slot) + SLOT_CURSOR)?
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
    pub(super) fn held_back(&self) -> LogResult<Option<Behind>> {
        let Holder::Alive(holder) = Holder::at(self.map, OFF_LOCK)? else {
            return Ok(None);
        };
        if self.map.atomic_u32(OFF_WAITING_TID)?.load(Ordering::SeqCst) != holder {
            return Ok(None);
        }
        let needs = self
            .map
            .atomic_u64(OFF_WAITING_NEEDS)?
            .load(Ordering::SeqCst);
        let (head, tail) = self.positions()?;
        Ok(self
            .slowest_follower(tail, head)?
            .filter(|slowest| slowest.position < needs))
    }
}

pub(super) fn slot_offset(slot: usize) -> usize {
    OFF_SLOTS + slot * SLOT_SIZE
}

pub(super) fn follower_lock(slot: usize) -> u64 {
    FOLLOWER_LOCKS + slot as u64
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
