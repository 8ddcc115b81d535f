//! What can go wrong with a log, as data.
//!
//! Contract:
//! - every fallible function of the log layout returns [`LogError`];
//! - each variant names the segment and carries the values a message
//!   needs; the sentences and "what to do" hints are written at the
//!   command layer (src/cmd/explain/log.rs).

use nix::errno::Errno;

use crate::address::Target;
use crate::layout::LayoutError;
use crate::sys::{AccessError, OutOfBounds};

/// A result of the log layout.
pub type LogResult<T> = Result<T, LogError>;

/// A failure reading, following or appending to a log.
#[derive(Debug)]
pub enum LogError {
    /// A failure every layout shares (header prefix, memory, version).
    Layout(LayoutError),
    /// A mapped access failed (outside the mapping, or the object shrank).
    Access(AccessError),
    /// A reader was pointed at a segment that is not a log.
    NotALog {
        /// The segment.
        target: Target,
    },
    /// A writer of `--lines` found another layout (or foreign data) there.
    OtherLayout {
        /// The segment.
        target: Target,
        /// What it holds instead: a snapshot, a stream ring, or foreign data.
        found: crate::layout::Layout,
    },
    /// A blank segment too small to hold a log's header and data.
    TooSmall {
        /// The segment.
        target: Target,
        /// Its size in bytes.
        size: usize,
        /// Bytes a log's header takes.
        header: usize,
        /// Whether this process just created it (else it must be removed
        /// before a larger one can be made).
        created: bool,
    },
    /// Our magic, with header values or records that do not add up.
    Corrupt {
        /// The segment.
        target: Target,
        /// Which value is wrong, and how.
        what: String,
    },
    /// Writers kept overwriting records while they were being walked.
    Overtaken {
        /// The segment.
        target: Target,
        /// Seconds the walk was retried.
        secs: u64,
        /// Whether a larger log would help (a cursor's walk, not a summary).
        larger_log_helps: bool,
    },
    /// The kernel refused a question about (or a take of) a follower lock.
    FollowerLock {
        /// The segment.
        target: Target,
        /// Whether a lock was being taken (else asked about).
        taking: bool,
        /// What the kernel said.
        errno: Errno,
    },
    /// The write lock stays held by a live thread that waits for nobody.
    LockHeld {
        /// The segment.
        target: Target,
        /// The holder's tid, in its own PID namespace.
        tid: u32,
        /// Seconds this writer waited.
        secs: u64,
    },
    /// A record larger than any the log can hold.
    RecordTooLarge {
        /// The segment.
        target: Target,
        /// Bytes of the record.
        len: usize,
        /// The largest record the log holds.
        max: usize,
    },
}

impl From<LayoutError> for LogError {
    fn from(e: LayoutError) -> Self {
        LogError::Layout(e)
    }
}

impl LogError {
    /// Whether this is an access outside the mapping, which does not say
    /// which segment it is about.
    #[must_use]
    pub fn is_out_of_bounds(&self) -> bool {
        match self {
            LogError::Layout(e) => e.is_out_of_bounds(),
            LogError::Access(e) => matches!(e, AccessError::OutOfBounds(_)),
            _ => false,
        }
    }
}

impl From<AccessError> for LogError {
    fn from(e: AccessError) -> Self {
        LogError::Access(e)
    }
}

impl From<OutOfBounds> for LogError {
    fn from(e: OutOfBounds) -> Self {
        LogError::Access(e.into())
    }
}

impl std::error::Error for LogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // The kernel's word follows the context, as `anyhow` chains do.
            LogError::FollowerLock { errno, .. } => Some(errno),
            _ => None,
        }
    }
}
