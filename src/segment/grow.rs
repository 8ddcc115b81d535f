//! Growing a POSIX segment for a snapshot that does not fit, and mapping
//! it again when another writer grew it.
//!
//! Contract:
//! - only an object that belongs to us is grown, its space reserved first:
//!   a full /dev/shm is an error that leaves it as it was;
//! - a System V segment never grows;
//! - every mapping of a POSIX object covers its size at the time of the
//!   fstat just before it.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;

use super::{Access, Handle, Segment, SegmentError, find};
use crate::address::Target;
use crate::segment::{Doing, SpaceNeed};
use crate::sys::{self, Mapping};

impl Segment {
    /// A POSIX segment's whole object, mapped anew after making sure it is
    /// at least `size` bytes: a smaller object is grown, its space reserved
    /// first (a full /dev/shm is an error that leaves it as it was). Only
    /// an object that belongs to us is grown: another user's object that
    /// we may write is theirs to size (their memory, their limits). The
    /// caller holds the segment's write lock, so no writer of ours races.
    /// System V segments cannot grow.
    pub fn grow_to(&self, size: usize) -> Result<Mapping, SegmentError> {
        let Handle::Posix { fd, .. } = &self.handle else {
            return Err(SegmentError::SysvCannotGrow {
                target: self.target.clone(),
            });
        };
        let target = &self.target;
        let now = posix_size(fd, target)?;
        if now < size {
            let stat = sys::fstat(fd.as_fd()).map_err(|e| find::open_error(target, e))?;
            if stat.st_uid != sys::effective_uid() {
                return Err(SegmentError::NotOursToGrow {
                    target: target.clone(),
                    size: now,
                    owner: stat.st_uid,
                });
            }
            grow(fd, target, now, size)?;
        }
        let size = posix_size(fd, target)?;
        map_posix(fd, target, size, self.access == Access::ReadWrite)
    }

    /// Maps a POSIX segment again when its object grew since it was
    /// mapped (see "Growing" in docs/FORMAT.md); returns whether it did.
    /// A System V segment never grows: false.
    pub fn remap_if_grown(&mut self) -> Result<bool, SegmentError> {
        let Handle::Posix { fd, .. } = &self.handle else {
            return Ok(false);
        };
        let size = posix_size(fd, &self.target)?;
        if size <= self.mapping.len() {
            return Ok(false);
        }
        self.mapping = map_posix(fd, &self.target, size, self.access == Access::ReadWrite)?;
        Ok(true)
    }
}

/// Grows the object from `now` to `size` bytes, reserving the space.
fn grow(fd: &OwnedFd, target: &Target, now: usize, size: usize) -> Result<(), SegmentError> {
    let failed = |doing, errno| SegmentError::Os {
        target: target.clone(),
        doing,
        errno,
    };
    match sys::reserve(fd.as_fd(), size) {
        Ok(()) => Ok(()),
        // A file system without fallocate: sized, if not reserved.
        Err(Errno::EOPNOTSUPP) => {
            sys::set_len(fd.as_fd(), size).map_err(|e| failed(Doing::Resize, e))
        }
        Err(errno @ (Errno::ENOSPC | Errno::EFBIG)) => Err(SegmentError::NoSpace {
            target: target.clone(),
            need: SpaceNeed::Grow {
                from: now,
                to: size,
            },
            errno,
        }),
        Err(e) => Err(failed(Doing::Grow(size), e)),
    }
}

/// Maps `size` bytes of a POSIX object, with messages naming `target`.
pub(super) fn map_posix(
    fd: &OwnedFd,
    target: &Target,
    size: usize,
    writable: bool,
) -> Result<Mapping, SegmentError> {
    let mut mapping =
        Mapping::map_fd(fd.as_fd(), size, writable).map_err(|e| find::open_error(target, e))?;
    mapping.describe(target.to_string(), target.flag());
    Ok(mapping)
}

/// The object's size now.
pub(super) fn posix_size(fd: &OwnedFd, target: &Target) -> Result<usize, SegmentError> {
    let stat = sys::fstat(fd.as_fd()).map_err(|e| find::open_error(target, e))?;
    usize::try_from(stat.st_size).map_err(|_| SegmentError::NegativeSize {
        target: target.clone(),
    })
}
