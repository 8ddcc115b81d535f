//! The writer's side: the write lock, the numbering check, and appends
//! that wait for lossless followers.

use std::sync::atomic::{AtomicU32, Ordering, fence};
use std::time::{Duration, Instant};

use super::{
    Behind, Log, LogError, LogResult, OFF_HEAD, OFF_LOCK, OFF_NEXT_SEQ, OFF_TAIL, OFF_TAIL_EVENT,
    OFF_WAITING_NEEDS, OFF_WAITING_TID, OFF_WRITE_TIME, OFF_WRITER_PID, OFF_WRITER_WAITING,
    PATIENCE, RECORD_HEADER, RECORD_TIME,
};
use crate::address::Target;
use crate::lock::{self, Holder, RobustGuard};
use crate::sys::Mapping;
use crate::wait::{self, Deadline, Look, RECHECK};

impl<'a> Log<'a> {
    /// Takes the write lock for a batch of appends. A predecessor that died
    /// holding it may have left the sequence counter one behind; the
    /// records themselves are intact, so the counter is recomputed.
    ///
    /// `on_wait` hears why this writer waits, when it waits a while.
    pub fn appender<'l>(&'l self, on_wait: &'l dyn Fn(WriterWait)) -> LogResult<Appender<'l, 'a>> {
        if self.verified.get().is_none() {
            // The first batch of this process: walk the records without the
            // lock, so that other writers are not held up for the walk of a
            // large log; under the lock only what was appended since is
            // checked.
            self.verified.set(self.numbering_without_lock()?);
        }
        let guard = lock(
            self.map,
            self.target,
            &|| self.held_back().ok().flatten(),
            on_wait,
        )?;
        let (head, tail) = self.positions()?;
        let mut next_seq = self.map.atomic_u64(OFF_NEXT_SEQ)?.load(Ordering::Relaxed);
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
            on_wait,
            _guard: guard,
            head,
            tail,
            next_seq,
            appended: false,
            time_ns: crate::layout::now_ns(),
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
    pub(super) fn verify_numbering(&self, head: u64, tail: u64, next_seq: u64) -> LogResult<()> {
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
    pub(super) fn numbered_step(
        &self,
        position: u64,
        head: u64,
        header: Result<(usize, u64), String>,
        expected: Option<u64>,
    ) -> LogResult<(u64, u64)> {
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
    pub(super) fn numbering_without_lock(&self) -> LogResult<Option<(u64, u64)>> {
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
}

/// Why a writer is waiting, for the command layer to tell the user: the
/// layout never prints. Reported again each time the writer still waits;
/// the observer decides how often to say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterWait {
    /// A live lossless follower is a whole log behind.
    Follower {
        /// Its slot.
        slot: usize,
        /// The tid in its slot's lock word (0 if unknown).
        tid: u32,
        /// Whether the kernel's follower lock backs it (else only a lock
        /// word, which anyone with write access could have forged).
        proven: bool,
        /// Whether it is the lock's holder that waits for it (this writer
        /// waits for the lock).
        for_holder: bool,
    },
    /// Another thread holds the write lock, waiting for no follower.
    LockHolder {
        /// Its tid, in its own PID namespace.
        tid: u32,
    },
}

impl WriterWait {
    fn follower(behind: &Behind, for_holder: bool) -> WriterWait {
        WriterWait::Follower {
            slot: behind.slot,
            tid: behind.tid,
            proven: behind.proven,
            for_holder,
        }
    }
}

/// Takes the log's write lock. A live holder is waited for as long as a
/// live lossless follower holds it back (`held_back`: lossless means no
/// record is dropped, however slow or stopped the follower); a holder that
/// keeps it [`PATIENCE`] with nothing holding it back is reported.
pub(super) fn lock<'m>(
    map: &'m Mapping,
    target: &Target,
    held_back: &dyn Fn() -> Option<Behind>,
    on_wait: &dyn Fn(WriterWait),
) -> LogResult<RobustGuard<'m>> {
    let mut told = false;
    loop {
        let deadline = Deadline::after(Some(PATIENCE));
        let waiting = |tid| {
            if let Some(behind) = held_back() {
                on_wait(WriterWait::follower(&behind, true));
            } else if !told {
                on_wait(WriterWait::LockHolder { tid });
            }
        };
        if let Some(guard) = lock::lock_robust(map, OFF_LOCK, deadline, waiting)? {
            return Ok(guard);
        }
        told = true;
        if held_back().is_some() {
            continue;
        }
        let tid = match Holder::at(map, OFF_LOCK)? {
            Holder::Alive(tid) => tid,
            // Let go just now: try again.
            Holder::Free | Holder::Died => continue,
        };
        return Err(LogError::LockHeld {
            target: target.clone(),
            tid,
            secs: PATIENCE.as_secs(),
        });
    }
}

/// A writer holding the log's write lock.
pub struct Appender<'l, 'a> {
    log: &'l Log<'a>,
    /// Hears why this writer waits for a lossless follower.
    on_wait: &'l dyn Fn(WriterWait),
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

impl std::fmt::Debug for Appender<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appender")
            .field("head", &self.head)
            .field("tail", &self.tail)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl Appender<'_, '_> {
    /// Appends one record, whole, after moving the tail past as many old
    /// records as it needs room for (waiting while a live lossless
    /// follower still needs them). A record larger than [`Log::max_record`]
    /// is refused before anything changes.
    pub fn append(&mut self, record: &[u8]) -> LogResult<()> {
        let log = self.log;
        if record.len() > log.max_record() {
            return Err(LogError::RecordTooLarge {
                target: log.target.clone(),
                len: record.len(),
                max: log.max_record(),
            });
        }
        let size = log.record_bytes(record.len());
        let end = self
            .head
            .checked_add(size)
            .filter(|&end| end <= u64::MAX - 2 * log.capacity)
            .ok_or_else(|| log.corrupt(&format!("head {} is near 2^64", self.head)))?;
        // Followers bump tail_event only to wake a writer that waits.
        let tail_event = log.map.atomic_u32(OFF_TAIL_EVENT)?;
        let woken = tail_event.load(Ordering::Relaxed);
        self.make_room(size)?;
        if tail_event.load(Ordering::Relaxed) != woken {
            self.time_ns = crate::layout::now_ns();
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
        log.map
            .atomic_u64(OFF_HEAD)?
            .store(self.head, Ordering::SeqCst);
        // Kept current on every append, not just at the end of a batch:
        // the next append may move the tail up to the head, and a writer
        // killed then leaves no record to recount the sequence from.
        log.map
            .atomic_u64(OFF_NEXT_SEQ)?
            .store(self.next_seq, Ordering::SeqCst);
        self.appended = true;
        Ok(())
    }

    /// Moves the tail until `size` more bytes fit, then publishes it before
    /// any byte of the old records is overwritten.
    pub(super) fn make_room(&mut self, size: u64) -> LogResult<()> {
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
        log.map.atomic_u64(OFF_TAIL)?.store(tail, Ordering::SeqCst);
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
    pub(super) fn wait_for_followers(&self, new_tail: u64) -> LogResult<()> {
        let log = self.log;
        let event = log.map.atomic_u32(OFF_TAIL_EVENT)?;
        let waiting = log.map.atomic_u32(OFF_WRITER_WAITING)?;
        // Nobody behind, the common case: no flag raised (a raised flag
        // would cost a follower a wake and skew --stats' waited share).
        match log.slowest_follower(self.tail, self.head)? {
            Some(slowest) if slowest.position < new_tail => {}
            _ => {
                waiting.store(0, Ordering::SeqCst);
                return Ok(());
            }
        }
        let started = Instant::now();
        let mut published: Option<WaitingSign<'_>> = None;
        // The flag is this writer's: a follower clears it when it moves,
        // but one that died or left never does, and --stats would go on
        // reporting a writer that waits; wait_on_event lowers it on return.
        wait::wait_on_event(
            event,
            Some(waiting),
            || RECHECK,
            |look| {
                let behind = match log.slowest_follower(self.tail, self.head)? {
                    Some(slowest) if slowest.position < new_tail => slowest,
                    _ => return Ok(Some(())),
                };
                if look == Look::BeforeSleep {
                    if published.is_none() {
                        // Writers queued on the lock wait as long as this does.
                        published = Some(WaitingSign::publish(log, new_tail)?);
                    }
                    // Waiting is the point, as a pipe's writer waits for its
                    // reader; but a follower that is stopped (Ctrl-Z), or a
                    // slot someone scribbled on, would hold us silently: say so.
                    if started.elapsed() >= Duration::from_secs(1) {
                        (self.on_wait)(WriterWait::follower(&behind, false));
                    }
                    // Publish what we have so the follower can make progress.
                    log.wake_followers()?;
                }
                Ok(None)
            },
        )
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
    pub(super) fn publish(log: &Log<'w>, needs: u64) -> LogResult<WaitingSign<'w>> {
        let tid = log.map.atomic_u32(OFF_WAITING_TID)?;
        log.map
            .atomic_u64(OFF_WAITING_NEEDS)?
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

impl Drop for Appender<'_, '_> {
    fn drop(&mut self) {
        // Still under the lock: what the next batch checks the header against.
        self.log.verified.set(Some((self.head, self.next_seq)));
        if !self.appended {
            return;
        }
        // Bookkeeping and the wake-up; the records themselves are already
        // published through head, so failures here lose nothing.
        if let Ok(word) = self.log.map.atomic_u64(OFF_NEXT_SEQ) {
            word.store(self.next_seq, Ordering::Release);
        }
        if let Ok(word) = self.log.map.atomic_u64(OFF_WRITE_TIME) {
            word.store(crate::layout::now_ns(), Ordering::Relaxed);
        }
        if let Ok(word) = self.log.map.atomic_u32(OFF_WRITER_PID) {
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
