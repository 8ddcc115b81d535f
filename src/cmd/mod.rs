//! What the two tools do, one module a command or a shared piece of one.

pub mod explain;
pub mod follow;
pub mod grow;
pub mod hex;
pub mod info;
pub mod limits;
pub mod lines;
pub mod list;
pub mod progress;
pub mod read;
pub mod record;
pub mod replay;
pub mod report;
pub mod stats;
pub mod stream;
pub mod versions;
pub mod write;

use crate::address::Target;
use crate::segment::{Create, Segment, SegmentError, Stat};
use crate::sys::ShmKey;

/// [`Segment::open_or_create`], saying the id of a segment created at key
/// 0 (IPC_PRIVATE) on stderr as ipcmk does, so scripts can pick it up:
/// nothing else can address it.
pub fn open_or_create(target: &Target, create: &Create) -> Result<(Segment, bool), SegmentError> {
    let (segment, created) = Segment::open_or_create(target, create)?;
    if created
        && matches!(target, Target::Key { key, .. } if *key == ShmKey::PRIVATE)
        && let Ok(Stat::Sysv { id, .. }) = segment.stat()
    {
        crate::notice::notice(format_args!("Shared memory id: {id}"));
    }
    Ok((segment, created))
}
