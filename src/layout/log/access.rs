//! Raw access to a log's words and data area, each value checked.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use super::{
    HEADER_SIZE, Log, LogError, LogResult, OFF_HEAD, OFF_HEAD_EVENT, OFF_TAIL, PATIENCE,
    RECORD_HEADER, RECORD_TIME, VERSION_1,
};
use crate::wait;

impl<'a> Log<'a> {
    /// The append time of the record at `position` (version 2), or None
    /// (version 1). Any value is possible in a hostile segment; it is
    /// only ever printed. May be torn: callers confirm with `tail`.
    pub(super) fn record_time(&self, position: u64) -> LogResult<Option<u64>> {
        if self.version == VERSION_1 {
            return Ok(None);
        }
        let mut raw = [0u8; RECORD_TIME];
        self.copy_out(position + RECORD_HEADER as u64, &mut raw)?;
        Ok(Some(u64::from_ne_bytes(raw)))
    }

    pub(super) fn corrupt(&self, what: &str) -> LogError {
        LogError::Corrupt {
            target: self.target.clone(),
            what: what.to_owned(),
        }
    }

    /// The word followers sleep on; bumped after every batch of appends.
    pub fn head_event(&self) -> LogResult<&'a AtomicU32> {
        Ok(self.map.atomic_u32(OFF_HEAD_EVENT)?)
    }

    /// `(head, tail)`, checked: both 8-aligned, `tail <= head <= tail +
    /// capacity`, `head <= u64::MAX - 2 * capacity`. Head is read twice around tail, so a writer moving both
    /// cannot make a consistent header look broken.
    pub fn positions(&self) -> LogResult<(u64, u64)> {
        let head_word = self.map.atomic_u64(OFF_HEAD)?;
        let tail_word = self.map.atomic_u64(OFF_TAIL)?;
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

    pub(super) fn tail(&self) -> LogResult<u64> {
        Ok(self.map.atomic_u64(OFF_TAIL)?.load(Ordering::SeqCst))
    }

    /// Where the byte at `position` lives in the mapping.
    pub(super) fn data_offset(&self, position: u64) -> usize {
        // position % capacity < capacity <= mapping length - HEADER_SIZE.
        #[allow(
            clippy::cast_possible_truncation,
            reason = "less than the mapping length"
        )]
        let within = (position % self.capacity) as usize;
        HEADER_SIZE + within
    }

    /// Copies `buf.len()` bytes from `position` on, across the wrap point.
    pub(super) fn copy_out(&self, position: u64, buf: &mut [u8]) -> LogResult<()> {
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
    pub(super) fn copy_in(&self, position: u64, data: &[u8]) -> LogResult<()> {
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
    pub(super) fn record_header(&self, position: u64) -> LogResult<Result<(usize, u64), String>> {
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
}

impl Log<'_> {
    /// Bumps the head event and wakes every sleeping follower.
    pub fn wake_followers(&self) -> LogResult<()> {
        let event = self.head_event()?;
        event.fetch_add(1, Ordering::SeqCst);
        wait::wake_all(event);
        Ok(())
    }
}
