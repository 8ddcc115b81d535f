//! Claiming a ring: the writer creating it or taking over a gone
//! writer's place, and the reader claiming its side.

use std::sync::atomic::Ordering;

use crate::address::Target;
use crate::layout::Layout;
use crate::lock::{self, Holder, RobustGuard};
use crate::sys::{Mapping, ROBUST_LOCK_SIZE};
use crate::wait::Deadline;

use super::{
    OFF_FLAGS, OFF_HEAD, OFF_READER_CLAIM, OFF_READER_PID, OFF_READER_WAITING, OFF_TAIL,
    OFF_WRITER_CLAIM, OFF_WRITER_PID, OFF_WRITER_WAITING, PREFIX, PeerEnd, READER_CLOSED, Ring,
    RingError, Takeover, WRITER_DONE, WRITER_FAILED, capacity_for,
};

/// How long a reader waits for a reader's claim held by someone else
/// before refusing: a writer taking over a ring holds it for the few
/// stores of its reset, and a reader arriving then must not be refused.
const TAKEOVER_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

fn already_writing(target: &Target, holder: Holder) -> RingError {
    RingError::AlreadyWriting {
        target: target.clone(),
        holder,
    }
}

/// How a writer whose claim is not held by a live thread ended, when it
/// did not finish: its place can be taken over. None for a live or
/// finished writer.
fn writer_gone(claim: Holder, flags: u32) -> Option<PeerEnd> {
    match claim {
        Holder::Alive(_) => None,
        _ if flags & WRITER_DONE != 0 => None,
        Holder::Died => Some(PeerEnd::Died),
        Holder::Free if flags & WRITER_FAILED != 0 => Some(PeerEnd::Failed),
        Holder::Free => Some(PeerEnd::LetGo),
    }
}

/// What [`Ring::create`] gives a writer: the ring, its claim, and the
/// place it took over, if any.
pub type Created<'a> = (Ring<'a>, RobustGuard<'a>, Option<Takeover>);

/// Zero but for the writer's claim: blank, or a ring being set up right
/// now (its claim held) or whose writer died doing so.
fn blank_but_for_the_writer_claim(map: &Mapping) -> Result<bool, RingError> {
    let claim_end = OFF_WRITER_CLAIM + ROBUST_LOCK_SIZE;
    Ok(map.is_zero(0, OFF_WRITER_CLAIM)? && map.is_zero(claim_end, map.len() - claim_end)?)
}

fn holds_data(target: &Target) -> RingError {
    RingError::HoldsData {
        target: target.clone(),
    }
}

impl<'a> Ring<'a> {
    /// Makes a blank segment into a ring owned by this writer, returning
    /// the writer's claim, which [`Ring::produce`] releases. The claim is
    /// taken first, with one compare-and-swap, and decides: a live writer's
    /// claim refuses us before we look at or change anything, so of two
    /// writers racing for one new segment exactly one goes on. An existing
    /// ring whose writer is gone unfinished, and that no reader has begun
    /// to read, is taken over (`Ring::take_over`: the [`Takeover`] says
    /// what was discarded), and so is a blank segment whose writer died
    /// holding the claim before it stored anything (nothing discarded). Anything else (a ring being written, read or
    /// waiting finished for its reader; other content) is refused. On
    /// refusal this changes nothing and the caller must not remove the
    /// segment: another process has used it.
    pub fn create(map: &'a Mapping, target: &'a Target) -> Result<Created<'a>, RingError> {
        let capacity = capacity_for(map.len()).ok_or_else(|| RingError::TooSmall {
            target: target.clone(),
            size: map.len(),
        })?;
        // Everything is looked at before anything is written: the claim's
        // bytes of a segment that is not ours (a snapshot, a C program's
        // data) are that segment's content, and a refused writer must leave
        // them exactly as they were.
        if Layout::detect(map) == Layout::Stream {
            return Ring::take_over(map, target);
        }
        if !blank_but_for_the_writer_claim(map)? {
            return Ring::create_on_content(map, target);
        }
        // A claim marked died on a blank segment is a writer killed before
        // it stored anything (not even its pid): it left nothing to lose,
        // and its place is taken like any dead writer's.
        let claim = match lock::try_lock_robust(map, OFF_WRITER_CLAIM)? {
            Ok(claim) => claim,
            Err(holder) => return Err(already_writing(target, holder)),
        };
        // Someone may have started writing something else into it between
        // the look and the claim (a snapshot writer adopting the same blank
        // segment): then it is theirs, its claim bytes as they were.
        if !blank_but_for_the_writer_claim(map)? || Layout::detect(map) != Layout::Foreign {
            claim.give_back();
            return Err(holds_data(target));
        }
        let takeover = claim.previous_owner_died().then_some(Takeover {
            how: PeerEnd::Died,
            pid: 0,
            discarded: 0,
        });
        map.atomic_u32(OFF_WRITER_PID)?
            .store(std::process::id(), Ordering::Relaxed);
        PREFIX.write(map, capacity)?;
        Ok((Ring::open(map, target)?, claim, takeover))
    }

    /// [`Ring::create`] on a segment that is not blank: a ring (finished
    /// since the first look) is taken over if it may be; one another writer
    /// is setting up right now, or whose writer died doing so, is refused
    /// as such; anything else is someone's data.
    fn create_on_content(map: &'a Mapping, target: &'a Target) -> Result<Created<'a>, RingError> {
        // The magic is stored last and never cleared: a ring finished
        // since we looked is a ring.
        if Layout::detect(map) == Layout::Stream {
            return Ring::take_over(map, target);
        }
        // A ring another writer is setting up right now (it holds the
        // claim and fills the prefix and its pid, magic last): zero but
        // for those. Anything else is someone's data.
        let claim_end = OFF_WRITER_CLAIM + ROBUST_LOCK_SIZE;
        let setting_up = map.is_zero(OFF_FLAGS, OFF_WRITER_CLAIM - OFF_FLAGS)?
            && map.is_zero(claim_end, map.len() - claim_end)?;
        // Its data may have come after the look above: the magic is
        // stored before the first byte of data, so a ring seen holding
        // data shows its magic when looked at again.
        if !setting_up && Layout::detect(map) == Layout::Stream {
            return Ring::take_over(map, target);
        }
        Err(match Holder::at(map, OFF_WRITER_CLAIM)? {
            holder @ Holder::Alive(_) if setting_up => already_writing(target, holder),
            Holder::Died if setting_up => RingError::WriterDiedSettingUp {
                target: target.clone(),
            },
            _ => holds_data(target),
        })
    }

    /// Takes over an existing ring whose writer is gone without finishing
    /// and that no reader has begun to read ([`Ring::reader_began`]):
    /// resets it to an empty stream of this writer's, discarding what the
    /// gone writer left. The decision is made holding both claims: the
    /// writer's, taken with one compare-and-swap (of two writers racing for
    /// the same dead ring exactly one gets it, and the other is refused
    /// having changed nothing), and then the reader's, as a gate: no reader
    /// can claim the ring, so none can begin to read it, between the check
    /// and the reset. A ring that cannot be taken over is refused after a
    /// look that takes nothing; one that turns out not to be takeable only
    /// under the claims (a race) gets them back as they were, died marks
    /// included.
    fn take_over(map: &'a Mapping, target: &'a Target) -> Result<Created<'a>, RingError> {
        let ring = Ring::open(map, target)?;
        let refused = |ring: &Ring<'a>| -> Result<RingError, RingError> {
            Ok(ring
                .takeover_refusal()?
                .unwrap_or_else(|| RingError::ChangedWhileLooking {
                    target: target.clone(),
                }))
        };
        if let Some(refusal) = ring.takeover_refusal()? {
            return Err(refusal);
        }
        let claim = match lock::try_lock_robust(map, OFF_WRITER_CLAIM)? {
            Ok(claim) => claim,
            Err(holder) => return Err(already_writing(target, holder)),
        };
        let Ok(gate) = lock::try_lock_robust(map, OFF_READER_CLAIM)? else {
            claim.give_back();
            return Err(refused(&ring)?);
        };
        // Only claim holders change what follows, and we hold both.
        let verdict = (|| -> Result<Option<PeerEnd>, RingError> {
            let flags = ring.flags()?;
            if flags & WRITER_DONE != 0 || ring.reader_began()? {
                return Ok(None);
            }
            Ok(if claim.previous_owner_died() {
                Some(PeerEnd::Died)
            } else {
                writer_gone(Holder::Free, flags)
            })
        })();
        let how = match verdict {
            Ok(Some(how)) => how,
            other => {
                gate.give_back();
                claim.give_back();
                return Err(other.err().map_or_else(|| refused(&ring), Ok)?);
            }
        };
        let (head, tail) = ring.positions()?;
        let (pid, _) = ring.peers()?;
        // tail is 0 (the reader never began); head goes back to it, then
        // everything else a stream starts with.
        ring.map.atomic_u64(OFF_TAIL)?.store(0, Ordering::SeqCst);
        ring.map.atomic_u64(OFF_HEAD)?.store(0, Ordering::SeqCst);
        for word in [
            OFF_FLAGS,
            OFF_READER_PID,
            OFF_READER_WAITING,
            OFF_WRITER_WAITING,
        ] {
            ring.map.atomic_u32(word)?.store(0, Ordering::SeqCst);
        }
        ring.map
            .atomic_u32(OFF_WRITER_PID)?
            .store(std::process::id(), Ordering::SeqCst);
        // Released plainly: a reader that died before reading went with
        // the old stream.
        drop(gate);
        Ok((
            ring,
            claim,
            Some(Takeover {
                how,
                pid,
                discarded: head - tail,
            }),
        ))
    }

    /// Why a writer may not take this ring over, looking without taking;
    /// None when it may.
    fn takeover_refusal(&self) -> Result<Option<RingError>, RingError> {
        let target = self.target.clone();
        let flags = self.flags()?;
        let (writer, reader) = self.holders()?;
        if let Holder::Alive(_) = writer {
            return Ok(Some(RingError::AlreadyWriting {
                target,
                holder: writer,
            }));
        }
        let Some(how) = writer_gone(writer, flags) else {
            return Ok(Some(RingError::FinishedUnread { target }));
        };
        if let Holder::Alive(_) = reader {
            return Ok(Some(RingError::ReadingWhatIsLeft {
                target,
                how,
                reader,
            }));
        }
        if self.reader_began()? {
            return Ok(Some(RingError::GoneAfterReaderBegan { target, how }));
        }
        Ok(None)
    }

    /// Why this ring can never complete, if so, with `writer` the holder
    /// of the writer's claim (as [`Ring::holders`] reads it, or, for one
    /// who holds it now, as it was found: see [`Ring::hold_writer_claim`]):
    /// its writer died or failed, or its reader died after it began to
    /// read or stopped, and no live process holds either claim. A reader
    /// that died before it began is taken over by the next, and a finished
    /// stream nobody has read yet waits for its reader: neither is stale.
    pub fn stale_because(&self, writer: Holder) -> Result<Option<&'static str>, RingError> {
        let flags = self.flags()?;
        let reader = Holder::at(self.map, OFF_READER_CLAIM)?;
        let live = matches!(writer, Holder::Alive(_)) || matches!(reader, Holder::Alive(_));
        let writer_died = writer == Holder::Died && flags & WRITER_DONE == 0;
        Ok(if live {
            None
        } else if writer_died || flags & WRITER_FAILED != 0 {
            Some("its stream writer died or failed, so the stream can never complete")
        } else if (reader == Holder::Died && self.reader_began()?) || flags & READER_CLOSED != 0 {
            Some("its stream reader died or stopped, so the stream can never be read")
        } else {
            None
        })
    }

    /// Takes the writer's claim without being a writer, for a removal
    /// (`--list --stale --remove`): held from the last look to the unlink,
    /// it makes a writer that comes to take the ring over meanwhile fail
    /// its compare-and-swap and change nothing, instead of streaming into a
    /// ring about to lose its name. None when a live writer holds it. The
    /// claim as it was found is [`RobustGuard::previous_owner_died`] (died)
    /// or not (free); give it back with [`RobustGuard::give_back`], which
    /// leaves it so, removed or not. Needs a writable mapping.
    pub fn hold_writer_claim(&self) -> Result<Option<RobustGuard<'a>>, RingError> {
        Ok(lock::try_lock_robust(self.map, OFF_WRITER_CLAIM)?.ok())
    }

    /// Claims the reader's place for as long as the returned claim lives.
    /// Refuses a second live reader, naming it, and a ring whose previous
    /// reader died after it began to read (it took bytes nobody will see
    /// again), leaving the kernel's mark of that death in place. A
    /// previous reader that died before it began is taken over: its claim
    /// is taken with one compare-and-swap (of two racing readers one gets
    /// it) and under it, where nobody else moves the reader's fields,
    /// READER_BEGAN and `tail` are checked again.
    pub fn claim_reader(&self) -> Result<(RobustGuard<'a>, Option<Takeover>), RingError> {
        let died = || RingError::PreviousReaderDied {
            target: self.target.clone(),
        };
        if Holder::at(self.map, OFF_READER_CLAIM)? == Holder::Died && self.reader_began()? {
            return Err(died());
        }
        let deadline = Deadline::after(Some(TAKEOVER_GRACE));
        let Some(claim) = lock::lock_robust(self.map, OFF_READER_CLAIM, deadline, |_| {})? else {
            return Err(RingError::AlreadyReading {
                target: self.target.clone(),
                holder: Holder::at(self.map, OFF_READER_CLAIM)?,
            });
        };
        let takeover = if claim.previous_owner_died() {
            if self.reader_began()? {
                claim.give_back();
                return Err(died());
            }
            let (_, pid) = self.peers()?;
            self.map
                .atomic_u32(OFF_READER_WAITING)?
                .store(0, Ordering::SeqCst);
            Some(Takeover {
                how: PeerEnd::Died,
                pid,
                discarded: 0,
            })
        } else {
            // A free claim with a reader's pid: a reader had the stream and
            // let go (finished or stopped); what it took is not ours to get.
            let (_, pid) = self.peers()?;
            if pid != 0 {
                drop(claim);
                return Err(RingError::TakenByAnotherReader {
                    target: self.target.clone(),
                    pid,
                });
            }
            None
        };
        self.map
            .atomic_u32(OFF_READER_PID)?
            .store(std::process::id(), Ordering::Release);
        Ok((claim, takeover))
    }
}
