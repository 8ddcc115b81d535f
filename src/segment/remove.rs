//! Removing the segment this process holds.
//!
//! Contract: System V is removed by id (it disappears when the last
//! process detaches); a POSIX name is unlinked only while it still leads to
//! our object, so another object planted at the name since is left alone.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;

use super::{Action, Doing, Handle, Segment, SegmentError, find};
use crate::address::PosixName;
use crate::sys;

impl Segment {
    /// Removes the segment this process holds: IPC_RMID by id, or
    /// shm_unlink of the name only while the name still leads to our
    /// object. A name that is gone, or now leads to another object, means
    /// ours is unreachable already: that is success, and the other object
    /// is left alone.
    ///
    /// What remains for POSIX: between comparing the name's device and
    /// inode with ours and unlinking it, someone could replace the object
    /// behind the name, and that newcomer would be unlinked (it stays
    /// usable by whoever has it open, but loses its name). Linux has no
    /// "unlink if it is this inode" call; the window is a few microseconds.
    pub fn remove(&self) -> Result<(), SegmentError> {
        let result = match &self.handle {
            Handle::Sysv(id, _) => sys::shm_remove(*id),
            Handle::Posix { fd, name } => remove_posix(fd, name),
        };
        result.map_err(|errno| match errno {
            Errno::EPERM | Errno::EACCES => find::permission_error(&self.target, Action::Remove),
            errno => SegmentError::Os {
                target: self.target.clone(),
                doing: Doing::Remove,
                errno,
            },
        })
    }
}

/// shm_unlink of `name`, but only while it still leads to the object `fd`
/// holds (same device and inode). See [`Segment::remove`] for what remains.
fn remove_posix(fd: &OwnedFd, name: &PosixName) -> Result<(), Errno> {
    let ours = sys::fstat(fd.as_fd())?;
    match sys::lstat(&name.dev_shm_path()) {
        Ok(there) if there.st_dev == ours.st_dev && there.st_ino == ours.st_ino => {}
        // Gone, or another object now: ours cannot be reached by name any more.
        Ok(_) | Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    }
    match sys::shm_unlink(name.shm_open_name().as_str()) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}
