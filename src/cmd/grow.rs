//! Retrying an operation on a segment that another process grew.
//!
//! Contract:
//! - A POSIX snapshot grows in place (docs/FORMAT.md, "Growing"): an
//!   operation that finds a header claiming more than its mapping holds
//!   maps the segment again and is retried, as often as the segment grows.
//! - A header that claims more than the object holds stays an error.

use crate::layout::snapshot::is_grown;
use crate::segment::Segment;

/// Runs `operation`, and again on a fresh mapping each time it found
/// that the segment grew since it was mapped.
pub fn remapping<T>(
    segment: &mut Segment,
    mut operation: impl FnMut(&Segment) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    loop {
        match operation(segment) {
            Err(e) if is_grown(&e) => {
                if !segment.remap_if_grown()? {
                    return Err(e);
                }
            }
            other => return other,
        }
    }
}
