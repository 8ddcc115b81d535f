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
