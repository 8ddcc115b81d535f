//! What can go wrong finding, creating, growing, replacing or removing a
//! segment, as data.
//!
//! Contract:
//! - every function of [`crate::segment`] returns this, never `anyhow` and
//!   never a sentence about the command line;
//! - each variant names the segment (its [`Target`]) and carries the values
//!   a message needs, looked up when the error arose (who owns what stood
//!   there, which errno the kernel gave); the messages, with what to do
//!   next, are written at the command layer (src/cmd/explain/segment.rs).

use std::path::PathBuf;
use std::time::Duration;

use nix::errno::Errno;

use crate::address::Target;
use crate::sys::ShmId;

/// A failure finding, creating, attaching, growing, replacing or removing
/// a segment.
#[derive(Debug)]
pub enum SegmentError {
    /// No segment at that address (exit 3).
    NotFound {
        /// The address looked up.
        target: Target,
    },
    /// A POSIX object that exists but was never sized (exit 3: nothing has
    /// been written to it yet).
    Empty {
        /// The object.
        target: Target,
    },
    /// Key 0 (IPC_PRIVATE) names no existing segment (exit 2).
    PrivateKey,
    /// The kernel refused this user.
    PermissionDenied {
        /// The segment.
        target: Target,
        /// What was refused.
        action: Action,
        /// Its owner's uid and its mode, where anyone may read them.
        owner: Option<(u32, u32)>,
    },
    /// `--replace` must remove the segment, which only its owner, creator
    /// or root may do.
    ReplacePermission {
        /// The segment.
        target: Target,
        /// Its owner's uid and its mode, where anyone may read them.
        owner: Option<(u32, u32)>,
    },
    /// A call failed for a reason without its own variant.
    Os {
        /// The segment.
        target: Target,
        /// What was being done.
        doing: Doing,
        /// What the kernel said.
        errno: Errno,
    },
    /// fstat gave a size that is no size.
    NegativeSize {
        /// The segment.
        target: Target,
    },
    /// Reserving or growing ran into a full /dev/shm (ENOSPC) or the file
    /// size limit (EFBIG).
    NoSpace {
        /// The segment.
        target: Target,
        /// What needed the space.
        need: SpaceNeed,
        /// ENOSPC or EFBIG.
        errno: Errno,
    },
    /// Creating (or making room for a replacement) ran into a limit.
    Limit {
        /// The segment.
        target: Target,
        /// The size asked for.
        size: usize,
        /// Creating, or making room for a replacement.
        action: Action,
        /// Whether the segment was to have huge pages.
        huge: bool,
        /// What the kernel said.
        errno: Errno,
    },
    /// A snapshot that does not fit another user's POSIX object: theirs
    /// to grow.
    NotOursToGrow {
        /// The segment.
        target: Target,
        /// Its size now.
        size: usize,
        /// Its owner.
        owner: u32,
    },
    /// System V segments have a fixed size.
    SysvCannotGrow {
        /// The segment.
        target: Target,
    },
    /// `--replace` of a segment addressed by id or name (exit 2).
    NotReplaceable {
        /// The segment.
        target: Target,
    },
    /// Another user's segment appeared under the key between removing the
    /// old segment and creating its replacement.
    KeyTaken {
        /// The segment.
        target: Target,
        /// The newcomer's owner and creator uid, if /proc tells.
        who: Option<(u32, u32)>,
        /// What became of the old content.
        kept: Kept,
    },
    /// The replacement failed after the old segment was removed, and its
    /// content was put back under its key; `cause` says why.
    Restored {
        /// The segment.
        target: Target,
        /// Why the replacement failed.
        cause: Box<SegmentError>,
    },
    /// The replacement failed after the old segment was removed, and its
    /// content could not be put back (`errno`); `cause` says why.
    NotRestored {
        /// The segment.
        target: Target,
        /// Why putting it back failed.
        errno: Errno,
        /// Why the replacement failed.
        cause: Box<SegmentError>,
    },
    /// Others keep removing and creating the segment while we try.
    Churn {
        /// The segment.
        target: Target,
    },
    /// `-x`: the segment exists already.
    Exists {
        /// The segment.
        target: Target,
    },
    /// Creating the per-user default with a mode that lets others write
    /// it (exit 2).
    SharedDefault {
        /// The default segment.
        target: Target,
        /// The mode asked for.
        mode: u32,
    },
    /// The per-user default belongs to another user.
    ForeignDefault {
        /// The default segment.
        target: Target,
        /// Its owner.
        owner: u32,
        /// Its mode.
        mode: u32,
        /// Its path under /dev/shm.
        path: PathBuf,
    },
    /// Group or others may write the per-user default.
    WritableDefault {
        /// The default segment.
        target: Target,
        /// Its mode.
        mode: u32,
        /// Its path under /dev/shm.
        path: PathBuf,
    },
    /// Something other than a shared memory object stands behind a name.
    NotAnObject {
        /// The segment.
        target: Target,
        /// Its path under /dev/shm.
        path: PathBuf,
        /// What it is.
        kind: FileKind,
    },
    /// `--timeout` ran out (exit 124).
    TimedOut {
        /// The segment.
        target: Target,
        /// The timeout given.
        timeout: Option<Duration>,
        /// What was awaited, after "waiting for SEGMENT": "to exist", say.
        what: &'static str,
    },
}

/// What the kernel refused or limited, for [`SegmentError::PermissionDenied`]
/// and [`SegmentError::Limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Opening or attaching.
    Open,
    /// Removing.
    Remove,
    /// Creating.
    Create,
    /// Replacing (`--replace`).
    Replace,
}

/// What a failed call was doing, for [`SegmentError::Os`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doing {
    /// Opening, attaching or stat'ing.
    Open,
    /// Removing.
    Remove,
    /// Sizing a grown object where fallocate is missing.
    Resize,
    /// Growing to this many bytes.
    Grow(usize),
    /// Reserving the space of this many bytes.
    Reserve(usize),
    /// Removing the old segment to replace it (its content unchanged).
    RemoveToReplace,
}

/// What needed space, for [`SegmentError::NoSpace`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaceNeed {
    /// The whole of an object of this size, reserved before writing.
    Reserve(usize),
    /// Growing an object from one size to another.
    Grow {
        /// Its size now.
        from: usize,
        /// The size it needed.
        to: usize,
    },
}

/// What became of a replaced segment's old content, for
/// [`SegmentError::KeyTaken`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// Copied into a new unnamed segment.
    Copied(ShmId),
    /// Lost: copying failed; it lives on in programs still attached.
    Lost(Errno),
    /// Another writer had removed the old segment already.
    RemovedByOthers,
}

/// What stands behind a POSIX name instead of a shared memory object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A named pipe.
    Fifo,
    /// A directory.
    Directory,
    /// A symbolic link (never followed).
    Symlink,
    /// A socket.
    Socket,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// Anything else that is not a regular file.
    Other,
}

impl SegmentError {
    /// Whether the segment is missing (or was never sized): what a waiter
    /// keeps waiting through and a creator creates.
    #[must_use]
    pub fn is_missing(&self) -> bool {
        matches!(
            self,
            SegmentError::NotFound { .. } | SegmentError::Empty { .. }
        )
    }

    /// Whether the kernel refused this user.
    #[must_use]
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, SegmentError::PermissionDenied { .. })
    }
}

impl std::error::Error for SegmentError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SegmentError::Os { errno, .. } => Some(errno),
            SegmentError::Restored { cause, .. } | SegmentError::NotRestored { cause, .. } => {
                Some(cause.as_ref())
            }
            _ => None,
        }
    }
}
