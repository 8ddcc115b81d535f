//! What can go wrong with a stream ring, as data.
//!
//! Contract:
//! - every ring operation returns [`RingError`], never `anyhow` and never
//!   a sentence about the command line;
//! - each variant names the ring (its [`Target`]) and carries the values a
//!   message needs; messages and hints are written at the command layer
//!   (src/cmd/explain/ring.rs).

use nix::errno::Errno;

use crate::address::Target;
use crate::layout::ring::PeerEnd;
use crate::layout::{Layout, LayoutError};
use crate::lock::Holder;
use crate::sys::{AccessError, OutOfBounds, Truncated};

/// A failure creating, claiming or moving bytes through a ring.
#[derive(Debug)]
pub enum RingError {
    /// A mapped access or a header check failed.
    Layout(LayoutError),
    /// The segment cannot hold a header and a byte of data.
    TooSmall {
        /// The segment.
        target: Target,
        /// Its size in bytes.
        size: usize,
    },
    /// A live writer holds the writer's claim.
    AlreadyWriting {
        /// The ring.
        target: Target,
        /// Who holds the claim.
        holder: Holder,
    },
    /// A writer died setting the ring up.
    WriterDiedSettingUp {
        /// The ring.
        target: Target,
    },
    /// The segment holds someone's data, not a ring.
    HoldsData {
        /// The segment.
        target: Target,
    },
    /// The ring changed between a look and the claims; nothing was changed.
    ChangedWhileLooking {
        /// The ring.
        target: Target,
    },
    /// A finished stream waits for its reader.
    FinishedUnread {
        /// The ring.
        target: Target,
    },
    /// The writer is gone, and a live reader is reading what it left.
    ReadingWhatIsLeft {
        /// The ring.
        target: Target,
        /// How the writer ended.
        how: PeerEnd,
        /// Who holds the reader's claim.
        reader: Holder,
    },
    /// The writer is gone after a reader began to read.
    GoneAfterReaderBegan {
        /// The ring.
        target: Target,
        /// How the writer ended.
        how: PeerEnd,
    },
    /// The segment does not hold a ring.
    NotAStream {
        /// The segment.
        target: Target,
        /// What it holds.
        found: Layout,
        /// Whether its first bytes are all zero (not set up yet).
        blank: bool,
    },
    /// head and tail do not fit the capacity.
    CorruptPositions {
        /// The ring.
        target: Target,
        /// Bytes produced in total.
        head: u64,
        /// Bytes consumed in total.
        tail: u64,
        /// The ring's capacity.
        capacity: u64,
    },
    /// The previous reader died after it began to read.
    PreviousReaderDied {
        /// The ring.
        target: Target,
    },
    /// A live reader holds the reader's claim.
    AlreadyReading {
        /// The ring.
        target: Target,
        /// Who holds the claim.
        holder: Holder,
    },
    /// Another reader had the stream and let go.
    TakenByAnotherReader {
        /// The ring.
        target: Target,
        /// Its pid, in its PID namespace.
        pid: u32,
    },
    /// The reader closed its side.
    ReaderClosed {
        /// The ring.
        target: Target,
        /// Bytes it read.
        read: u64,
        /// Bytes sent.
        sent: u64,
    },
    /// The reader let its claim go without finishing or closing.
    ReaderStopped {
        /// The ring.
        target: Target,
        /// Bytes it read.
        read: u64,
        /// Bytes sent.
        sent: u64,
    },
    /// The reader died after it began to read.
    ReaderDied {
        /// The ring.
        target: Target,
        /// Its pid, in its PID namespace.
        pid: u32,
        /// Bytes it read.
        read: u64,
        /// Bytes sent.
        sent: u64,
    },
    /// The writer said it failed.
    WriterFailed {
        /// The ring.
        target: Target,
        /// Bytes received before.
        received: u64,
    },
    /// The writer died or let go without finishing.
    WriterGone {
        /// The ring.
        target: Target,
        /// Its pid, in its PID namespace.
        pid: u32,
        /// How it ended.
        how: PeerEnd,
        /// Bytes received before.
        received: u64,
    },
    /// read(2) of the writer's input failed.
    ReadInput(Errno),
    /// write(2) to the reader's output failed.
    WriteOutput(Errno),
}

impl RingError {
    /// Whether this is an access outside the mapping, which does not name
    /// the segment: the command layer adds its name.
    #[must_use]
    pub fn is_out_of_bounds(&self) -> bool {
        matches!(self, RingError::Layout(e) if e.is_out_of_bounds())
    }
}

impl From<LayoutError> for RingError {
    fn from(e: LayoutError) -> Self {
        RingError::Layout(e)
    }
}

impl From<AccessError> for RingError {
    fn from(e: AccessError) -> Self {
        RingError::Layout(e.into())
    }
}

impl From<OutOfBounds> for RingError {
    fn from(e: OutOfBounds) -> Self {
        RingError::Layout(AccessError::from(e).into())
    }
}

impl From<Truncated> for RingError {
    fn from(e: Truncated) -> Self {
        RingError::Layout(AccessError::from(e).into())
    }
}

impl std::error::Error for RingError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // The errno is the cause; every other message is whole.
            RingError::ReadInput(e) | RingError::WriteOutput(e) => Some(e),
            _ => None,
        }
    }
}
