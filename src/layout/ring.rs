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

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use nix::errno::Errno;

use crate::address::Target;
use crate::error::{Kind, failure};
use crate::layout::Layout;
use crate::layout::prefix::Prefix;
use crate::lock::{self, Holder, RobustGuard};
use crate::sys::{Mapping, ROBUST_LOCK_SIZE};
use crate::wait::{self, Deadline, RECHECK};

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

/// How long a reader waits for a reader's claim held by someone else
/// before refusing: a writer taking over a ring holds it for the few
/// stores of its reset, and a reader arriving then must not be refused.
const TAKEOVER_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

/// "a live NAME", with the holder's tid when the word names one.
fn live(who: &str, holder: Holder) -> String {
    match holder {
        Holder::Alive(tid) => format!("a live {who} (tid {tid} in its PID namespace)"),
        Holder::Free | Holder::Died => format!("a live {who}"),
    }
}

fn already_writing(target: &Target, holder: Holder) -> anyhow::Error {
    failure(
        Kind::Failed,
        format!(
            "{target} already has {}; only one writer per stream",
            live("stream writer", holder)
        ),
    )
}

/// How a writer whose claim is not held by a live thread ended, when it
/// did not finish: its place can be taken over. None for a live or
/// finished writer.
fn writer_gone(claim: Holder, flags: u32) -> Option<&'static str> {
    match claim {
        Holder::Alive(_) => None,
        _ if flags & WRITER_DONE != 0 => None,
        Holder::Died => Some("died"),
        Holder::Free if flags & WRITER_FAILED != 0 => Some("failed"),
        Holder::Free => Some("let go of the stream without finishing it"),
    }
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

/// A gone peer's place that this process took over (see [`Ring::create`]
/// and [`Ring::claim_reader`]), for the one line that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Takeover {
    /// How the previous holder of the place ended: "died", "failed" or
    /// "let go of the stream without finishing it".
    pub how: &'static str,
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
    /// Makes a blank segment into a ring owned by this writer, returning
    /// the writer's claim, which [`Ring::produce`] releases. The claim is
    /// taken first, with one compare-and-swap, and decides: a live writer's
    /// claim refuses us before we look at or change anything, so of two
    /// writers racing for one new segment exactly one goes on. An existing
    /// ring whose writer is gone unfinished, and that no reader has begun
    /// to read, is taken over ([`Ring::take_over`]: the [`Takeover`] says
    /// what was discarded), and so is a blank segment whose writer died
    /// holding the claim before it stored anything (nothing discarded). Anything else (a ring being written, read or
    /// waiting finished for its reader; other content) is refused. On
    /// refusal this changes nothing and the caller must not remove the
    /// segment: another process has used it.
    pub fn create(
        map: &'a Mapping,
        target: &'a Target,
    ) -> anyhow::Result<(Ring<'a>, RobustGuard<'a>, Option<Takeover>)> {
        let capacity = capacity_for(map.len()).ok_or_else(|| {
            failure(
                Kind::Failed,
                format!(
                    "{target} is {} bytes, too small for a stream ring",
                    map.len()
                ),
            )
        })?;
        let remove_first = format!(
            "remove it first: {} > /dev/null",
            target.command("shm-read --remove")
        );
        let writer_died = || {
            failure(
                Kind::Failed,
                format!("{target} holds a stream whose writer died; {remove_first}"),
            )
        };
        let already_writing = |holder| already_writing(target, holder);
        // Everything is looked at before anything is written: the claim's
        // bytes of a segment that is not ours (a snapshot, a C program's
        // data) are that segment's content, and a refused writer must leave
        // them exactly as they were.
        if Layout::detect(map) == Layout::Stream {
            return Ring::take_over(map, target, &remove_first);
        }
        // Zero but for the writer's claim: blank, or a ring being set up
        // right now (its claim held) or whose writer died doing so.
        let claim_end = OFF_WRITER_CLAIM + ROBUST_LOCK_SIZE;
        let blank = || -> anyhow::Result<bool> {
            Ok(map.is_zero(0, OFF_WRITER_CLAIM)?
                && map.is_zero(claim_end, map.len() - claim_end)?)
        };
        let holds_data = || {
            failure(
                Kind::Failed,
                format!(
                    "{target} already holds data, so it cannot become a stream; use another address, \
                     or {remove_first}"
                ),
            )
        };
        if !blank()? {
            // The magic is stored last and never cleared: a ring finished
            // since we looked is a ring.
            if Layout::detect(map) == Layout::Stream {
                return Ring::take_over(map, target, &remove_first);
            }
            // A ring another writer is setting up right now (it holds the
            // claim and fills the prefix and its pid, magic last): zero but
            // for those. Anything else is someone's data.
            let setting_up = map.is_zero(OFF_FLAGS, OFF_WRITER_CLAIM - OFF_FLAGS)?
                && map.is_zero(claim_end, map.len() - claim_end)?;
            // Its data may have come after the look above: the magic is
            // stored before the first byte of data, so a ring seen holding
            // data shows its magic when looked at again.
            if !setting_up && Layout::detect(map) == Layout::Stream {
                return Ring::take_over(map, target, &remove_first);
            }
            return Err(match Holder::at(map, OFF_WRITER_CLAIM)? {
                holder @ Holder::Alive(_) if setting_up => already_writing(holder),
                Holder::Died if setting_up => writer_died(),
                _ => holds_data(),
            });
        }
        // A claim marked died on a blank segment is a writer killed before
        // it stored anything (not even its pid): it left nothing to lose,
        // and its place is taken like any dead writer's.
        let claim = match lock::try_lock_robust(map, OFF_WRITER_CLAIM)? {
            Ok(claim) => claim,
            Err(holder) => return Err(already_writing(holder)),
        };
        // Someone may have started writing something else into it between
        // the look and the claim (a snapshot writer adopting the same blank
        // segment): then it is theirs, its claim bytes as they were.
        if !blank()? || Layout::detect(map) != Layout::Foreign {
            claim.give_back();
            return Err(holds_data());
        }
        let takeover = claim.previous_owner_died().then_some(Takeover {
            how: "died",
            pid: 0,
            discarded: 0,
        });
        map.atomic_u32(OFF_WRITER_PID)?
            .store(std::process::id(), Ordering::Relaxed);
        PREFIX.write(map, capacity)?;
        Ok((Ring::open(map, target)?, claim, takeover))
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
    fn take_over(
        map: &'a Mapping,
        target: &'a Target,
        remove_first: &str,
    ) -> anyhow::Result<(Ring<'a>, RobustGuard<'a>, Option<Takeover>)> {
        let ring = Ring::open(map, target)?;
        let refused = |ring: &Ring<'a>| -> anyhow::Result<anyhow::Error> {
            Ok(ring.takeover_refusal(remove_first)?.unwrap_or_else(|| {
                failure(
                    Kind::Failed,
                    format!("{target} changed while this writer looked at it; try again"),
                )
            }))
        };
        if let Some(refusal) = ring.takeover_refusal(remove_first)? {
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
        let verdict = (|| -> anyhow::Result<Option<&'static str>> {
            let flags = ring.flags()?;
            if flags & WRITER_DONE != 0 || ring.reader_began()? {
                return Ok(None);
            }
            Ok(if claim.previous_owner_died() {
                Some("died")
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
        ring.word64(OFF_TAIL)?.store(0, Ordering::SeqCst);
        ring.word64(OFF_HEAD)?.store(0, Ordering::SeqCst);
        for word in [
            OFF_FLAGS,
            OFF_READER_PID,
            OFF_READER_WAITING,
            OFF_WRITER_WAITING,
        ] {
            ring.word32(word)?.store(0, Ordering::SeqCst);
        }
        ring.word32(OFF_WRITER_PID)?
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
    fn takeover_refusal(&self, remove_first: &str) -> anyhow::Result<Option<anyhow::Error>> {
        let target = self.target;
        let flags = self.flags()?;
        let (writer, reader) = self.holders()?;
        let refusal = |why: String| Ok(Some(failure(Kind::Failed, why)));
        if let Holder::Alive(_) = writer {
            return Ok(Some(already_writing(target, writer)));
        }
        let Some(how) = writer_gone(writer, flags) else {
            return refusal(format!(
                "{target} holds a finished stream nobody has read yet; read it with \
                 shm-read --stream, or {remove_first}"
            ));
        };
        if let Holder::Alive(_) = reader {
            return refusal(format!(
                "{target} holds a stream whose writer {how}, and {} is reading what it left; \
                 let it finish, then start again",
                live("stream reader", reader)
            ));
        }
        if self.reader_began()? {
            return refusal(format!(
                "{target} holds a stream whose writer {how} after a reader began to read it; \
                 {remove_first}"
            ));
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
    pub fn stale_because(&self, writer: Holder) -> anyhow::Result<Option<&'static str>> {
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
    pub fn hold_writer_claim(&self) -> anyhow::Result<Option<RobustGuard<'a>>> {
        Ok(lock::try_lock_robust(self.map, OFF_WRITER_CLAIM)?.ok())
    }

    /// Whether a reader ever began to read this ring: READER_BEGAN, or
    /// `tail` moved (by a reader that does not set the flag).
    pub fn reader_began(&self) -> anyhow::Result<bool> {
        let (_, tail) = self.positions()?;
        Ok(tail != 0 || self.flags()? & READER_BEGAN != 0)
    }

    /// Validates the header of a segment whose magic says it is a ring.
    pub fn open(map: &'a Mapping, target: &'a Target) -> anyhow::Result<Ring<'a>> {
        let layout = Layout::detect(map);
        if layout != Layout::Stream {
            // Suggest what works on what is there: a stream writer refuses
            // any segment that is not blank.
            let what = match layout {
                Layout::Log => format!(
                    "is a log (made by shm-write --lines), not a stream: read it with {}, \
                     or follow it with {}",
                    target.command("shm-read"),
                    target.command("shm-read -F")
                ),
                Layout::Snapshot => format!(
                    "is a snapshot (made by shm-write), not a stream: read it with {}",
                    target.command("shm-read")
                ),
                _ if map.is_zero(0, map.len().min(64)).unwrap_or(false) => format!(
                    "is not a stream yet; start the writer with: producer | {}",
                    target.command("shm-write --stream")
                ),
                _ => format!(
                    "holds data not written by shm-tools, not a stream: read it with {}; \
                     a stream needs an address of its own",
                    target.command("shm-read")
                ),
            };
            return Err(failure(Kind::Failed, format!("{target} {what}")));
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

    fn word32(&self, offset: usize) -> anyhow::Result<&'a AtomicU32> {
        Ok(self.map.atomic_u32(offset)?)
    }

    fn word64(&self, offset: usize) -> anyhow::Result<&'a AtomicU64> {
        Ok(self.map.atomic_u64(offset)?)
    }

    /// The pids the writer and the reader stored (each in its own PID
    /// namespace), 0 where none: for messages only.
    pub fn peers(&self) -> anyhow::Result<(u32, u32)> {
        Ok((
            self.word32(OFF_WRITER_PID)?.load(Ordering::Acquire),
            self.word32(OFF_READER_PID)?.load(Ordering::Acquire),
        ))
    }

    /// Who holds the writer's and the reader's claims, as the kernel keeps
    /// them: the liveness of both sides.
    pub fn holders(&self) -> anyhow::Result<(Holder, Holder)> {
        Ok((
            Holder::at(self.map, OFF_WRITER_CLAIM)?,
            Holder::at(self.map, OFF_READER_CLAIM)?,
        ))
    }

    /// Bytes written and not yet read, and bytes read so far.
    pub fn fill(&self) -> anyhow::Result<(u64, u64)> {
        let (head, tail) = self.positions()?;
        Ok((head - tail, tail))
    }

    /// The state flags.
    pub fn flags(&self) -> anyhow::Result<u32> {
        Ok(self.word32(OFF_FLAGS)?.load(Ordering::Acquire))
    }

    fn set_flag(&self, flag: u32) -> anyhow::Result<()> {
        self.word32(OFF_FLAGS)?.fetch_or(flag, Ordering::AcqRel);
        // Whoever sleeps must look at the flags now.
        self.bump(OFF_HEAD_EVENT)?;
        self.bump(OFF_TAIL_EVENT)?;
        Ok(())
    }

    fn bump(&self, event: usize) -> anyhow::Result<()> {
        let word = self.word32(event)?;
        word.fetch_add(1, Ordering::SeqCst);
        wait::wake_all(word);
        Ok(())
    }

    /// head and tail, checked: tail <= head <= tail + capacity.
    fn positions(&self) -> anyhow::Result<(u64, u64)> {
        let head = self.word64(OFF_HEAD)?.load(Ordering::SeqCst);
        let tail = self.word64(OFF_TAIL)?.load(Ordering::SeqCst);
        match head.checked_sub(tail) {
            Some(fill) if fill <= self.capacity => Ok((head, tail)),
            _ => Err(failure(
                Kind::Failed,
                format!(
                    "{} has a corrupt stream header (head {head}, tail {tail}, capacity {}); \
                     the stream is broken, remove it and start again",
                    self.target, self.capacity
                ),
            )),
        }
    }

    /// Claims the reader's place for as long as the returned claim lives.
    /// Refuses a second live reader, naming it, and a ring whose previous
    /// reader died after it began to read (it took bytes nobody will see
    /// again), leaving the kernel's mark of that death in place. A
    /// previous reader that died before it began is taken over: its claim
    /// is taken with one compare-and-swap (of two racing readers one gets
    /// it) and under it, where nobody else moves the reader's fields,
    /// READER_BEGAN and `tail` are checked again.
    pub fn claim_reader(&self) -> anyhow::Result<(RobustGuard<'a>, Option<Takeover>)> {
        let died = || {
            failure(
                Kind::Failed,
                format!(
                    "{}'s previous reader died, so the stream is broken; remove it \
                     ({} > /dev/null) and start again",
                    self.target,
                    self.target.command("shm-read --remove")
                ),
            )
        };
        if Holder::at(self.map, OFF_READER_CLAIM)? == Holder::Died && self.reader_began()? {
            return Err(died());
        }
        let deadline = Deadline::after(Some(TAKEOVER_GRACE));
        let Some(claim) = lock::lock_robust(self.map, OFF_READER_CLAIM, deadline, |_| {})? else {
            return Err(failure(
                Kind::Failed,
                format!(
                    "{} already has {}; only one reader per stream",
                    self.target,
                    live("stream reader", Holder::at(self.map, OFF_READER_CLAIM)?)
                ),
            ));
        };
        let takeover = if claim.previous_owner_died() {
            if self.reader_began()? {
                claim.give_back();
                return Err(died());
            }
            let (_, pid) = self.peers()?;
            self.word32(OFF_READER_WAITING)?.store(0, Ordering::SeqCst);
            Some(Takeover {
                how: "died",
                pid,
                discarded: 0,
            })
        } else {
            // A free claim with a reader's pid: a reader had the stream and
            // let go (finished or stopped); what it took is not ours to get.
            let (_, pid) = self.peers()?;
            if pid != 0 {
                drop(claim);
                return Err(failure(
                    Kind::Failed,
                    format!(
                        "{}'s stream was taken by another reader (pid {pid} in its PID \
                         namespace), which has finished or stopped; start the writer again",
                        self.target
                    ),
                ));
            }
            None
        };
        self.word32(OFF_READER_PID)?
            .store(std::process::id(), Ordering::Release);
        Ok((claim, takeover))
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

    /// Sleeps on `event` until `ready` says go, checking `peer_gone` at
    /// least every [`RECHECK`]. No spinning first: on two busy cores a spin
    /// burns the CPU the copying peer needs, and measured against a ring
    /// without it (docs/BENCHMARKS.md) no spin we tried paid.
    fn wait_for(
        &self,
        event: usize,
        waiting_flag: usize,
        mut ready: impl FnMut() -> anyhow::Result<bool>,
        mut peer_gone: impl FnMut() -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let event = self.word32(event)?;
        let waiting = self.word32(waiting_flag)?;
        loop {
            let seen = event.load(Ordering::SeqCst);
            waiting.store(1, Ordering::SeqCst);
            if ready()? {
                waiting.store(0, Ordering::SeqCst);
                return Ok(());
            }
            wait::wait_while_equal(event, seen, RECHECK);
            waiting.store(0, Ordering::SeqCst);
            if ready()? {
                return Ok(());
            }
            peer_gone()?;
        }
    }

    /// Tells the other side that `position` moved, if it sleeps.
    fn notify(&self, waiting_flag: usize, event: usize) -> anyhow::Result<()> {
        if self.word32(waiting_flag)?.load(Ordering::SeqCst) != 0 {
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
    ) -> anyhow::Result<Transferred> {
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
    ) -> anyhow::Result<Transferred> {
        let head_word = self.word64(OFF_HEAD)?;
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
                Err(e) => return Err(anyhow::Error::new(e).context("cannot read stdin")),
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

    fn check_reader_closed(&self, sent: u64) -> anyhow::Result<()> {
        if self.flags()? & READER_CLOSED != 0 {
            let (_, tail) = self.positions()?;
            return Err(failure(
                Kind::Failed,
                format!(
                    "the reader of {} stopped reading after {tail} bytes ({sent} sent): broken pipe",
                    self.target
                ),
            ));
        }
        Ok(())
    }

    /// The writer's view of the reader: gone (died, as the kernel marked
    /// its claim, or stopped) is an error like a pipe's EPIPE; not there
    /// yet is fine. A load, no system call: cheap enough for every chunk.
    fn check_reader(&self, sent: u64) -> anyhow::Result<()> {
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
            return Err(failure(
                Kind::Failed,
                format!(
                    "the reader of {} stopped after reading {tail} of {sent} bytes: broken pipe",
                    self.target
                ),
            ));
        }
        // A reader that died before it began to read took nothing: as if
        // no reader had come yet, and the next one takes its place.
        if holder == Holder::Died && self.reader_began()? {
            let (_, tail) = self.positions()?;
            let (_, pid) = self.peers()?;
            return Err(failure(
                Kind::Failed,
                format!(
                    "the reader of {} (pid {pid} in its PID namespace) died after reading {tail} of \
                     {sent} bytes: broken pipe",
                    self.target
                ),
            ));
        }
        Ok(())
    }

    /// Copies the bytes in flight without consuming them. Bytes a running
    /// reader consumed during the copy (and a writer may have reused) are
    /// dropped from the front, so what is returned was never overwritten.
    pub fn peek(&self) -> anyhow::Result<Vec<u8>> {
        let (head, tail) = self.positions()?;
        #[allow(
            clippy::cast_possible_truncation,
            reason = "fill <= capacity < mapping length"
        )]
        let mut data = super::zeroed((head - tail) as usize, self.target)?;
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
    ) -> anyhow::Result<Transferred> {
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
    ) -> anyhow::Result<Transferred> {
        let tail_word = self.word64(OFF_TAIL)?;
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
                self.word32(OFF_FLAGS)?
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
                Err(e) => return Err(anyhow::Error::new(e).context("cannot write stdout")),
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
    fn writer_finished(&self, received: u64) -> anyhow::Result<bool> {
        // The claim first: a writer sets its flag before it lets go, so a
        // free claim read here means the flags read next are final.
        let holder = Holder::at(self.map, OFF_WRITER_CLAIM)?;
        let flags = self.flags()?;
        if flags & WRITER_FAILED != 0 {
            return Err(failure(
                Kind::Failed,
                format!(
                    "the writer of {} failed after {received} bytes; the stream is incomplete",
                    self.target
                ),
            ));
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
            Holder::Died => "died",
            Holder::Free => "let go of the stream without finishing it",
        };
        Err(failure(
            Kind::Failed,
            format!(
                "the writer of {} (pid {pid} in its PID namespace) {how} after {received} bytes; \
                 the stream is incomplete",
                self.target
            ),
        ))
    }
}

/// Counters for `shm-read --stats`: read-only loads, nothing copied.
impl Ring<'_> {
    /// `(head, tail)`: bytes written and read since the stream began, checked.
    pub fn counters(&self) -> anyhow::Result<(u64, u64)> {
        self.positions()
    }

    /// Whether the writer is asleep now, waiting for room in a full ring.
    /// The ring counts no time waited, so `--stats` samples this.
    pub fn writer_waiting(&self) -> anyhow::Result<bool> {
        Ok(self.word32(OFF_WRITER_WAITING)?.load(Ordering::Relaxed) != 0)
    }
}

impl Ring<'_> {
    /// A DONE flag with the writer's claim still held: a writer that ended
    /// lets go within microseconds, so look a few times, yielding, before
    /// leaving it to the usual sleep. Ok(false): still held, not done yet.
    fn claim_released_soon(&self) -> anyhow::Result<bool> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_what_follows_the_header() {
        assert_eq!(capacity_for(HEADER_SIZE), None);
        assert_eq!(capacity_for(4096), Some(4096 - HEADER_SIZE));
    }
}
