//! Readers' cursors: where a reader starts, and each record it copies.

use std::collections::VecDeque;
use std::sync::atomic::{Ordering, fence};
use std::time::Instant;

use super::{Cursor, Log, LogError, LogResult, OFF_NEXT_SEQ, PATIENCE, Step};

impl Log<'_> {
    /// A cursor at the oldest record held: a reader that wants history.
    /// It knows that record's number, so a reader lapped before it reads
    /// anything still counts what it missed.
    pub fn cursor_at_oldest(&self) -> LogResult<Cursor> {
        let started = Instant::now();
        loop {
            let (head, tail) = self.positions()?;
            let expected = if head == tail {
                // Nothing published yet: the next record gets next_seq.
                self.map.atomic_u64(OFF_NEXT_SEQ)?.load(Ordering::SeqCst)
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
    pub fn cursor_at_last(&self, last: u64) -> LogResult<Cursor> {
        let started = Instant::now();
        loop {
            if let Some(cursor) = self.try_cursor_at_last(last)? {
                return Ok(cursor);
            }
            if started.elapsed() > PATIENCE {
                return Err(LogError::Overtaken {
                    target: self.target.clone(),
                    secs: PATIENCE.as_secs(),
                    larger_log_helps: true,
                });
            }
        }
    }

    /// One walk from tail to head, keeping the positions of the last
    /// `last` records; None if writers overtook the walk.
    pub(super) fn try_cursor_at_last(&self, last: u64) -> LogResult<Option<Cursor>> {
        let (head, tail) = self.positions()?;
        let keep = usize::try_from(last).unwrap_or(usize::MAX);
        let mut recent = VecDeque::new();
        let mut next_seq = None;
        let whole = self.walk_records(tail, head, &mut |position, _, seq| {
            if keep > 0 {
                if recent.len() == keep {
                    recent.pop_front();
                }
                recent.push_back((position, seq));
            }
            next_seq = Some(seq.wrapping_add(1));
            Ok(())
        })?;
        if !whole {
            return Ok(None);
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
                expected: next_seq.or(Some(
                    self.map.atomic_u64(OFF_NEXT_SEQ)?.load(Ordering::Acquire),
                )),
                lapped_from: None,
                held: false,
            },
        };
        Ok(Some(cursor))
    }

    /// Walks the record headers from `tail` to `head` without the write
    /// lock, giving `visit` each record's position, payload length and
    /// sequence number, each checked to end at or before `head`. False if
    /// writers overtook the walk: what was visited then says nothing.
    pub(super) fn walk_records(
        &self,
        tail: u64,
        head: u64,
        visit: &mut dyn FnMut(u64, usize, u64) -> LogResult<()>,
    ) -> LogResult<bool> {
        let mut position = tail;
        while position < head {
            let header = self.record_header(position)?;
            fence(Ordering::Acquire);
            if self.tail()? > position {
                return Ok(false);
            }
            let (len, seq) = header.map_err(|what| self.corrupt(&what))?;
            let size = self.record_bytes(len);
            if position.checked_add(size).is_none_or(|end| end > head) {
                return Err(
                    self.corrupt(&format!("record at position {position} runs past the head"))
                );
            }
            visit(position, len, seq)?;
            position += size;
        }
        Ok(true)
    }

    /// Copies the record at the cursor into `buf` and moves past it, or
    /// says the cursor is at the head. A cursor that writers lapped jumps
    /// to the oldest record held and the count of records missed comes with
    /// the next record. `head` is a recent value of the head position.
    pub fn next(&self, cursor: &mut Cursor, head: u64, buf: &mut Vec<u8>) -> LogResult<Step> {
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
            crate::layout::reserve(buf, len.saturating_sub(buf.len()), self.target)?;
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
    pub(super) fn lapped(&mut self, tail: u64) {
        if self.lapped_from.is_none() {
            self.lapped_from = self.expected;
        }
        self.position = tail;
    }
}

impl Log<'_> {
    /// Every record held, concatenated: what a plain read prints.
    pub fn contents(&self) -> LogResult<Vec<u8>> {
        let mut cursor = self.cursor_at_oldest()?;
        let (head, _) = self.positions()?;
        let mut buf = Vec::new();
        let mut all = Vec::new();
        while let Step::Record { .. } = self.next(&mut cursor, head, &mut buf)? {
            crate::layout::reserve(&mut all, buf.len(), self.target)?;
            all.extend_from_slice(&buf);
        }
        Ok(all)
    }
}
