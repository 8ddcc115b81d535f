//! Moving bytes through a claimed ring: the writer producing from a
//! descriptor, the reader consuming to one, and each side's view of the
//! other while it does.

use std::os::fd::BorrowedFd;
use std::sync::atomic::Ordering;

use nix::errno::Errno;

use crate::lock::{Holder, RobustGuard};
use crate::wait::{self, Look, RECHECK};

use super::{
    OFF_FLAGS, OFF_HEAD, OFF_HEAD_EVENT, OFF_READER_CLAIM, OFF_READER_WAITING, OFF_TAIL,
    OFF_TAIL_EVENT, OFF_WRITER_CLAIM, OFF_WRITER_WAITING, PeerEnd, READER_BEGAN, READER_CLOSED,
    Ring, RingError, Transferred, WRITER_DONE, WRITER_FAILED,
};

impl<'a> Ring<'a> {
    /// Sleeps on `event` until `ready` says go, checking `peer_gone` after
    /// every sleep, so at least every [`RECHECK`] (see
    /// [`wait::wait_on_event`]).
    fn wait_for(
        &self,
        event: usize,
        waiting_flag: usize,
        mut ready: impl FnMut() -> Result<bool, RingError>,
        mut peer_gone: impl FnMut() -> Result<(), RingError>,
    ) -> Result<(), RingError> {
        let event = self.map.atomic_u32(event)?;
        let waiting = self.map.atomic_u32(waiting_flag)?;
        wait::wait_on_event(
            event,
            Some(waiting),
            || RECHECK,
            |look| {
                if ready()? {
                    return Ok(Some(()));
                }
                if look != Look::BeforeSleep {
                    peer_gone()?;
                }
                Ok(None)
            },
        )
    }

    /// Tells the other side that `position` moved, if it sleeps.
    fn notify(&self, waiting_flag: usize, event: usize) -> Result<(), RingError> {
        if self.map.atomic_u32(waiting_flag)?.load(Ordering::SeqCst) != 0 {
            self.bump(event)?;
        }
        Ok(())
    }

    /// Writer: moves everything from `input` into the ring until end of
    /// input, blocking while the ring is full, telling `progress` the bytes
    /// sent so far. Marks the stream done (or failed, on error) so the
    /// reader can finish, and only then releases `claim` (from
    /// [`Ring::create`]): a writer's claim that is free without either flag
    /// never happens in a ring whose writer ended cleanly, so "done" and
    /// "died" stay apart.
    pub fn produce(
        &self,
        claim: RobustGuard<'a>,
        input: BorrowedFd<'_>,
        progress: &dyn Fn(u64),
    ) -> Result<Transferred, RingError> {
        let result = self.produce_inner(input, progress);
        let flagged = self.set_flag(if result.is_ok() {
            WRITER_DONE
        } else {
            WRITER_FAILED
        });
        drop(claim);
        flagged?;
        result
    }

    fn produce_inner(
        &self,
        input: BorrowedFd<'_>,
        progress: &dyn Fn(u64),
    ) -> Result<Transferred, RingError> {
        let head_word = self.map.atomic_u64(OFF_HEAD)?;
        loop {
            let (head, tail) = self.positions()?;
            self.check_reader(head)?;
            let free = self.capacity - (head - tail);
            if free == 0 {
                self.wait_for(
                    OFF_TAIL_EVENT,
                    OFF_WRITER_WAITING,
                    || self.positions().map(|(h, t)| h - t < self.capacity),
                    || self.check_reader(head),
                )?;
                continue;
            }
            let until_wrap = self.capacity - head % self.capacity;
            let len = free.min(until_wrap);
            #[allow(
                clippy::cast_possible_truncation,
                reason = "len <= capacity < mapping length"
            )]
            let n = match self
                .map
                .read_from_fd(input, self.data_offset(head), len as usize)
            {
                Ok(n) => n as u64,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(RingError::ReadInput(e)),
            };
            if n == 0 {
                // Like a pipe, data left for a reader that is gone is an error.
                self.check_reader(head)?;
                return Ok(Transferred { bytes: head });
            }
            head_word.store(head + n, Ordering::SeqCst);
            self.notify(OFF_READER_WAITING, OFF_HEAD_EVENT)?;
            progress(head + n);
        }
    }

    fn check_reader_closed(&self, sent: u64) -> Result<(), RingError> {
        if self.flags()? & READER_CLOSED != 0 {
            let (_, tail) = self.positions()?;
            return Err(RingError::ReaderClosed {
                target: self.target.clone(),
                read: tail,
                sent,
            });
        }
        Ok(())
    }

    /// The writer's view of the reader: gone (died, as the kernel marked
    /// its claim, or stopped) is an error like a pipe's EPIPE; not there
    /// yet is fine. A load, no system call: cheap enough for every chunk.
    fn check_reader(&self, sent: u64) -> Result<(), RingError> {
        self.check_reader_closed(sent)?;
        // While blocked, also notice an object shrunk under us (a shrink
        // that spares the header page raises no SIGBUS here).
        self.map.verify_size()?;
        let (_, reader_pid) = self.peers()?;
        // A reader that claimed and let go without finishing or closing
        // (it could not set READER_CLOSED, say) is gone as surely as one
        // that died: no one else may take its place.
        let holder = Holder::at(self.map, OFF_READER_CLAIM)?;
        if holder == Holder::Free && reader_pid != 0 {
            let (_, tail) = self.positions()?;
            return Err(RingError::ReaderStopped {
                target: self.target.clone(),
                read: tail,
                sent,
            });
        }
        // A reader that died before it began to read took nothing: as if
        // no reader had come yet, and the next one takes its place.
        if holder == Holder::Died && self.reader_began()? {
            let (_, tail) = self.positions()?;
            let (_, pid) = self.peers()?;
            return Err(RingError::ReaderDied {
                target: self.target.clone(),
                pid,
                read: tail,
                sent,
            });
        }
        Ok(())
    }

    /// Copies the bytes in flight without consuming them. Bytes a running
    /// reader consumed during the copy (and a writer may have reused) are
    /// dropped from the front, so what is returned was never overwritten.
    pub fn peek(&self) -> Result<Vec<u8>, RingError> {
        let (head, tail) = self.positions()?;
        #[allow(
            clippy::cast_possible_truncation,
            reason = "fill <= capacity < mapping length"
        )]
        let mut data = crate::layout::zeroed((head - tail) as usize, self.target)?;
        let mut copied = 0;
        while copied < data.len() {
            let position = tail + copied as u64;
            let until_wrap =
                usize::try_from(self.capacity - position % self.capacity).unwrap_or(usize::MAX);
            let n = until_wrap.min(data.len() - copied);
            self.map
                .read(self.data_offset(position), &mut data[copied..copied + n])?;
            copied += n;
        }
        std::sync::atomic::fence(Ordering::Acquire);
        let (_, tail_now) = self.positions()?;
        #[allow(clippy::cast_possible_truncation, reason = "bounded by data.len()")]
        let consumed = (tail_now.saturating_sub(tail) as usize).min(data.len());
        data.drain(..consumed);
        Ok(data)
    }

    /// Whether the reader closed the stream or died after claiming it.
    #[must_use]
    pub fn reader_gone(&self) -> bool {
        self.check_reader(0).is_err()
    }

    /// Reader: moves everything from the ring to `output` until the writer
    /// is done and the ring is drained, telling `progress` the bytes
    /// delivered so far. `_claim` (from [`Ring::claim_reader`]) proves this
    /// is the one reader. A reader that stops early for any reason says so
    /// in `flags`, so a waiting writer fails like a pipe's writer.
    pub fn consume(
        &self,
        _claim: &RobustGuard<'a>,
        output: BorrowedFd<'_>,
        progress: &dyn Fn(u64),
    ) -> Result<Transferred, RingError> {
        let result = self.consume_inner(output, progress);
        if result.is_err() {
            // The error in hand says more than a failure to flag it.
            let _ = self.set_flag(READER_CLOSED);
        }
        result
    }

    fn consume_inner(
        &self,
        output: BorrowedFd<'_>,
        progress: &dyn Fn(u64),
    ) -> Result<Transferred, RingError> {
        let tail_word = self.map.atomic_u64(OFF_TAIL)?;
        let mut began = false;
        loop {
            let (head, tail) = self.positions()?;
            let available = head - tail;
            if available == 0 {
                if self.writer_finished(tail)? {
                    return Ok(Transferred { bytes: tail });
                }
                self.wait_for(
                    OFF_HEAD_EVENT,
                    OFF_READER_WAITING,
                    || {
                        Ok(self.positions().map(|(h, t)| h > t)?
                            || self.flags()? & WRITER_FAILED != 0
                            || self.flags()? & WRITER_DONE != 0
                                && !matches!(
                                    Holder::at(self.map, OFF_WRITER_CLAIM)?,
                                    Holder::Alive(_)
                                ))
                    },
                    || self.writer_finished(tail).map(drop),
                )?;
                continue;
            }
            if !began {
                // Before the first byte can leave the ring: from here on
                // nobody may take over the writer's or this reader's place.
                self.map
                    .atomic_u32(OFF_FLAGS)?
                    .fetch_or(READER_BEGAN, Ordering::SeqCst);
                began = true;
            }
            let until_wrap = self.capacity - tail % self.capacity;
            let len = available.min(until_wrap);
            #[allow(
                clippy::cast_possible_truncation,
                reason = "len <= capacity < mapping length"
            )]
            let n = match self
                .map
                .write_to_fd(output, self.data_offset(tail), len as usize)
            {
                Ok(n) => n as u64,
                Err(Errno::EINTR) => continue,
                // consume tells the writer, as a closed pipe would.
                Err(e) => return Err(RingError::WriteOutput(e)),
            };
            tail_word.store(tail + n, Ordering::SeqCst);
            self.notify(OFF_WRITER_WAITING, OFF_TAIL_EVENT)?;
            progress(tail + n);
        }
    }

    /// The reader's view of the writer at an empty ring: Ok(true) when it
    /// finished cleanly, Ok(false) while it may still send, an error when
    /// it failed, died (the kernel marked its claim) or let its claim go
    /// without finishing — never a silent clean end. Loads only, no
    /// system call.
    fn writer_finished(&self, received: u64) -> Result<bool, RingError> {
        // The claim first: a writer sets its flag before it lets go, so a
        // free claim read here means the flags read next are final.
        let holder = Holder::at(self.map, OFF_WRITER_CLAIM)?;
        let flags = self.flags()?;
        if flags & WRITER_FAILED != 0 {
            return Err(RingError::WriterFailed {
                target: self.target.clone(),
                received,
            });
        }
        if flags & WRITER_DONE != 0 {
            // DONE is believed only with the claim let go: anyone who may
            // write the ring can set a flag, only the writer (or the kernel,
            // at its death) releases its claim, which it does right after
            // setting DONE. So a DONE with a live claim is waited out.
            if matches!(holder, Holder::Alive(_)) {
                return self.claim_released_soon();
            }
            // head is final once DONE is set; done only if all of it arrived.
            let (head, tail) = self.positions()?;
            return Ok(head == tail);
        }
        let (pid, _) = self.peers()?;
        let how = match holder {
            Holder::Alive(_) => return Ok(false),
            Holder::Died => PeerEnd::Died,
            Holder::Free => PeerEnd::LetGo,
        };
        Err(RingError::WriterGone {
            target: self.target.clone(),
            pid,
            how,
            received,
        })
    }
}

impl Ring<'_> {
    /// A DONE flag with the writer's claim still held: a writer that ended
    /// lets go within microseconds, so look a few times, yielding, before
    /// leaving it to the usual sleep. Ok(false): still held, not done yet.
    fn claim_released_soon(&self) -> Result<bool, RingError> {
        for _ in 0..100 {
            std::thread::yield_now();
            if !matches!(Holder::at(self.map, OFF_WRITER_CLAIM)?, Holder::Alive(_)) {
                let (head, tail) = self.positions()?;
                return Ok(head == tail);
            }
        }
        Ok(false)
    }
}
