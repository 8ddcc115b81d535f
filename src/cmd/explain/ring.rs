//! The messages of [`RingError`]: what stopped a stream, and what to do.

use std::fmt;

use super::Classify;
use crate::address::Target;
use crate::error::Kind;
use crate::layout::Layout;
use crate::layout::ring::{PeerEnd, RingError};
use crate::lock::Holder;

impl Classify for RingError {
    fn is_out_of_bounds(&self) -> bool {
        // The layout's own answer (an inherent method).
        RingError::is_out_of_bounds(self)
    }

    fn kind(&self) -> Kind {
        match self {
            RingError::Layout(e) => e.kind(),
            _ => Kind::Failed,
        }
    }
}

impl fmt::Display for PeerEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PeerEnd::Died => "died",
            PeerEnd::Failed => "failed",
            PeerEnd::LetGo => "let go of the stream without finishing it",
        })
    }
}

/// "a live NAME", with the holder's tid when the word names one.
fn live(who: &str, holder: Holder) -> String {
    match holder {
        Holder::Alive(tid) => format!("a live {who} (tid {tid} in its PID namespace)"),
        Holder::Free | Holder::Died => format!("a live {who}"),
    }
}

/// How to clear the way for a new stream at `target`.
fn remove_first(target: &Target) -> String {
    format!(
        "remove it first: {} > /dev/null",
        target.command("shm-read --remove")
    )
}

/// What to do with a segment that is not a ring, by what it holds: a
/// stream writer refuses any segment that is not blank.
fn not_a_stream(target: &Target, found: Layout, blank: bool) -> String {
    match found {
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
        _ if blank => format!(
            "is not a stream yet; start the writer with: producer | {}",
            target.command("shm-write --stream")
        ),
        _ => format!(
            "holds data not written by shm-tools, not a stream: read it with {}; \
             a stream needs an address of its own",
            target.command("shm-read")
        ),
    }
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::Layout(e) => e.fmt(f),
            RingError::TooSmall { target, size } => {
                write!(f, "{target} is {size} bytes, too small for a stream ring")
            }
            RingError::AlreadyWriting { target, holder } => write!(
                f,
                "{target} already has {}; only one writer per stream",
                live("stream writer", *holder)
            ),
            RingError::WriterDiedSettingUp { target } => write!(
                f,
                "{target} holds a stream whose writer died; {}",
                remove_first(target)
            ),
            RingError::HoldsData { target } => write!(
                f,
                "{target} already holds data, so it cannot become a stream; use another address, \
                 or {}",
                remove_first(target)
            ),
            RingError::ChangedWhileLooking { target } => write!(
                f,
                "{target} changed while this writer looked at it; try again"
            ),
            RingError::FinishedUnread { target } => write!(
                f,
                "{target} holds a finished stream nobody has read yet; read it with \
                 shm-read --stream, or {}",
                remove_first(target)
            ),
            RingError::ReadingWhatIsLeft {
                target,
                how,
                reader,
            } => write!(
                f,
                "{target} holds a stream whose writer {how}, and {} is reading what it left; \
                 let it finish, then start again",
                live("stream reader", *reader)
            ),
            RingError::GoneAfterReaderBegan { target, how } => write!(
                f,
                "{target} holds a stream whose writer {how} after a reader began to read it; {}",
                remove_first(target)
            ),
            RingError::NotAStream {
                target,
                found,
                blank,
            } => write!(f, "{target} {}", not_a_stream(target, *found, *blank)),
            _ => self.fmt_transfer(f),
        }
    }
}

impl RingError {
    /// The messages of what goes wrong once a side has claimed the ring.
    fn fmt_transfer(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::CorruptPositions {
                target,
                head,
                tail,
                capacity,
            } => write!(
                f,
                "{target} has a corrupt stream header (head {head}, tail {tail}, capacity \
                 {capacity}); the stream is broken, remove it and start again"
            ),
            RingError::PreviousReaderDied { target } => write!(
                f,
                "{target}'s previous reader died, so the stream is broken; remove it \
                 ({} > /dev/null) and start again",
                target.command("shm-read --remove")
            ),
            RingError::AlreadyReading { target, holder } => write!(
                f,
                "{target} already has {}; only one reader per stream",
                live("stream reader", *holder)
            ),
            RingError::TakenByAnotherReader { target, pid } => write!(
                f,
                "{target}'s stream was taken by another reader (pid {pid} in its PID \
                 namespace), which has finished or stopped; start the writer again"
            ),
            RingError::ReaderClosed { target, read, sent } => write!(
                f,
                "the reader of {target} stopped reading after {read} bytes ({sent} sent): broken pipe"
            ),
            RingError::ReaderStopped { target, read, sent } => write!(
                f,
                "the reader of {target} stopped after reading {read} of {sent} bytes: broken pipe"
            ),
            RingError::ReaderDied {
                target,
                pid,
                read,
                sent,
            } => write!(
                f,
                "the reader of {target} (pid {pid} in its PID namespace) died after reading {read} \
                 of {sent} bytes: broken pipe"
            ),
            RingError::WriterFailed { target, received } => write!(
                f,
                "the writer of {target} failed after {received} bytes; the stream is incomplete"
            ),
            RingError::WriterGone {
                target,
                pid,
                how,
                received,
            } => write!(
                f,
                "the writer of {target} (pid {pid} in its PID namespace) {how} after {received} \
                 bytes; the stream is incomplete"
            ),
            RingError::ReadInput(_) => f.write_str("cannot read stdin"),
            RingError::WriteOutput(_) => f.write_str("cannot write stdout"),
            // Display writes the claim messages and sends only the ones
            // above here; should that ever slip, show the data, never panic.
            _ => write!(f, "{self:?}"),
        }
    }
}
