//! What can go wrong with what is on a segment, as data.
//!
//! Contract:
//! - every layout returns these (or its own enum that wraps them), never
//!   `anyhow` and never a sentence about the command line;
//! - each variant names the segment (its [`Target`]) and carries the values
//!   a message needs; the messages and the "what to do" hints are written at
//!   the command layer (src/cmd/explain/layout.rs).

use crate::address::Target;
use crate::layout::Layout;
use nix::errno::Errno;

use crate::sys::AccessError;

/// A failure reading or writing one of the layouts.
#[derive(Debug)]
pub enum LayoutError {
    /// A mapped access failed: outside the mapping (a bug, reported rather
    /// than trusted), or the object shrank under us.
    Access(AccessError),
    /// Copying `bytes` bytes of content needs more memory than this process
    /// may have (`ulimit -v`); the content is unchanged.
    OutOfMemory {
        /// The segment whose content was being copied.
        target: Target,
        /// How many bytes the copy needed.
        bytes: usize,
    },
    /// Our magic, with header values that do not add up.
    Corrupt {
        /// The segment.
        target: Target,
        /// Whose header it is.
        layout: Layout,
        /// Which value is wrong, and how.
        what: String,
    },
    /// Our layout, in a version this build does not read.
    Version {
        /// The segment.
        target: Target,
        /// Whose header it is.
        layout: Layout,
        /// The version found.
        found: u32,
        /// The versions this build reads.
        readable: Vec<u32>,
    },
    /// A C string with no NUL left: nothing can be appended.
    NoRoomToAppend {
        /// The segment.
        target: Target,
    },
    /// Input that does not fit a C-string segment.
    TooLarge {
        /// The segment.
        target: Target,
        /// Bytes of input.
        len: usize,
        /// Bytes of room from where the input would start.
        room: usize,
        /// The whole segment's size.
        size: usize,
    },
}

impl LayoutError {
    /// Whether this is an access outside the mapping, which does not name
    /// the segment: the command layer adds its name.
    #[must_use]
    pub fn is_out_of_bounds(&self) -> bool {
        matches!(self, LayoutError::Access(AccessError::OutOfBounds(_)))
    }
}

impl From<AccessError> for LayoutError {
    fn from(e: AccessError) -> Self {
        LayoutError::Access(e)
    }
}

// No source: the message of an access error is the whole message.
impl std::error::Error for LayoutError {}

/// A failure of [`crate::layout::snapshot_content`] or
/// [`crate::layout::check_image`], which read whichever layout a segment
/// holds: that layout's own error, shown and classified as itself.
#[derive(Debug)]
pub enum ContentError {
    /// The C string, or a failure every layout shares.
    Layout(LayoutError),
    /// A snapshot's.
    Snapshot(crate::layout::snapshot::SnapshotError),
    /// A stream ring's.
    Ring(crate::layout::ring::RingError),
    /// A log's.
    Log(crate::layout::log::LogError),
    /// The private copy of an image could not be made.
    Image(Errno),
}

impl ContentError {
    /// The layout's error inside, as `dyn Error`, for messages and classes.
    #[must_use]
    pub fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        match self {
            ContentError::Layout(e) => e,
            ContentError::Snapshot(e) => e,
            ContentError::Ring(e) => e,
            ContentError::Log(e) => e,
            ContentError::Image(e) => e,
        }
    }
}

impl std::fmt::Display for ContentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self.inner(), f)
    }
}

// The inner error shows as this one; its causes follow.
impl std::error::Error for ContentError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner().source()
    }
}

impl From<AccessError> for ContentError {
    fn from(e: AccessError) -> Self {
        ContentError::Layout(e.into())
    }
}

impl From<LayoutError> for ContentError {
    fn from(e: LayoutError) -> Self {
        ContentError::Layout(e)
    }
}

impl From<crate::layout::snapshot::SnapshotError> for ContentError {
    fn from(e: crate::layout::snapshot::SnapshotError) -> Self {
        ContentError::Snapshot(e)
    }
}

impl From<crate::layout::ring::RingError> for ContentError {
    fn from(e: crate::layout::ring::RingError) -> Self {
        ContentError::Ring(e)
    }
}

impl From<crate::layout::log::LogError> for ContentError {
    fn from(e: crate::layout::log::LogError) -> Self {
        ContentError::Log(e)
    }
}
