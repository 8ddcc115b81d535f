//! What can go wrong with a snapshot segment, as data.
//!
//! Contract:
//! - every snapshot operation returns [`SnapshotError`] (a failure to grow
//!   the segment wraps the segment layer's error), never `anyhow` and never
//!   a sentence about the command line;
//! - each variant names the segment (its [`Target`]) and carries the values
//!   a message needs; messages and hints are written at the command layer
//!   (src/cmd/explain/snapshot.rs).

use std::time::Duration;

use crate::address::Target;
use crate::layout::{Layout, LayoutError};
use crate::lock::Holder;
use crate::sys::{AccessError, OutOfBounds, Truncated};

/// A failure reading or publishing a snapshot.
#[derive(Debug)]
pub enum SnapshotError {
    /// A mapped access or a header check failed (a corrupt header too).
    Layout(LayoutError),
    /// The header claims more capacity than this mapping holds: the
    /// segment grew since it was mapped (remap it:
    /// `Segment::remap_if_grown`) or, if the object is not larger, the
    /// header is corrupt.
    Grown {
        /// The segment.
        target: Target,
        /// The capacity the header claims.
        capacity: u64,
        /// Bytes mapped here.
        mapped: usize,
    },
    /// A writer would overwrite content that is not a snapshot.
    NotASnapshot {
        /// The segment.
        target: Target,
        /// What it holds.
        found: Layout,
        /// Whether a foreign content looks like a C string.
        c_string: bool,
    },
    /// The segment cannot hold the header and two slots.
    TooSmall {
        /// The segment.
        target: Target,
        /// Its size in bytes.
        size: usize,
    },
    /// Every copy was overwritten while it was made, for `patience`.
    KeptChanging {
        /// The segment.
        target: Target,
        /// How long copies were tried.
        patience: Duration,
    },
    /// Copying the content needs more memory than this process may have.
    OutOfMemory {
        /// The segment.
        target: Target,
        /// Bytes of content.
        bytes: usize,
    },
    /// The new content does not fit, and the segment cannot grow here.
    TooLarge {
        /// The segment.
        target: Target,
        /// Bytes the new content has.
        len: usize,
        /// Bytes one version may hold.
        capacity: usize,
        /// The segment's size.
        size: usize,
    },
    /// The segment layer could not grow the segment (its own error, whole).
    Grow(Box<dyn std::error::Error + Send + Sync>),
    /// A live holder kept the write lock for `patience`.
    LockHeld {
        /// The segment.
        target: Target,
        /// Who holds it, as the kernel keeps it.
        holder: Holder,
        /// How long this writer waited.
        patience: Duration,
    },
}

impl SnapshotError {
    /// Whether the caller should remap the segment and retry.
    #[must_use]
    pub fn is_grown(&self) -> bool {
        matches!(self, SnapshotError::Grown { .. })
    }

    /// Whether this is an access outside the mapping, which does not name
    /// the segment: the command layer adds its name.
    #[must_use]
    pub fn is_out_of_bounds(&self) -> bool {
        matches!(self, SnapshotError::Layout(e) if e.is_out_of_bounds())
    }
}

impl From<LayoutError> for SnapshotError {
    fn from(e: LayoutError) -> Self {
        SnapshotError::Layout(e)
    }
}

impl From<AccessError> for SnapshotError {
    fn from(e: AccessError) -> Self {
        SnapshotError::Layout(e.into())
    }
}

impl From<OutOfBounds> for SnapshotError {
    fn from(e: OutOfBounds) -> Self {
        SnapshotError::Layout(AccessError::from(e).into())
    }
}

impl From<Truncated> for SnapshotError {
    fn from(e: Truncated) -> Self {
        SnapshotError::Layout(AccessError::from(e).into())
    }
}

impl AsRef<dyn std::error::Error> for SnapshotError {
    fn as_ref(&self) -> &(dyn std::error::Error + 'static) {
        self
    }
}

impl std::error::Error for SnapshotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // The grower's error shows as itself, its causes after it.
            SnapshotError::Grow(e) => e.source(),
            // No source: every other message is whole.
            _ => None,
        }
    }
}
