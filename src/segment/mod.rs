//! How a segment is found, created, attached, grown, replaced and removed.
//!
//! Contract:
//! - [`Segment::open`] attaches an existing segment and never creates or
//!   removes one; [`Segment::open_or_create`] creates when missing;
//! - a POSIX object is prepared (mode, size, reserved space) before it gets
//!   its name, so nobody ever sees it half-made; once a segment is visible
//!   to others it is never removed on a later failure, because a racing
//!   writer may already have published into it;
//! - whatever stands behind a POSIX name is checked on the opened
//!   descriptor: a regular file, and for the per-user default one that
//!   belongs to the user and that nobody else may write;
//! - [`Segment::remove`] acts on the object this process holds, never on
//!   whatever the name means by then;
//! - every failure is a [`SegmentError`] naming the segment; dropping a
//!   `Segment` detaches it.

mod create;
mod error;
mod find;
mod grow;
mod remove;
mod replace;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::sys::stat::FileStat;

use crate::address::{PosixName, Target};
use crate::sys::{self, Mapping, ShmId, SysvStat};
use crate::wait::{self, Deadline};

pub use error::{Action, Doing, FileKind, Kept, SegmentError, SpaceNeed};

/// Where Linux keeps POSIX shared memory objects (glibc's shm_open
/// opens `/dev/shm/NAME`).
pub const SHM_DIR: &str = "/dev/shm";

/// Whether a segment is attached for reading only or also for writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// SHM_RDONLY / O_RDONLY + PROT_READ: this process cannot change it.
    ReadOnly,
    /// Read and write.
    ReadWrite,
}

/// How to create a segment that does not exist yet.
#[derive(Debug, Clone, Copy)]
pub struct Create {
    /// Total size in bytes.
    pub size: usize,
    /// Permission bits, applied exactly (the umask is not applied).
    pub mode: u32,
    /// Fail if the segment already exists.
    pub exclusive: bool,
}

#[derive(Debug)]
enum Handle {
    /// The id, and what IPC_STAT said just before we attached.
    Sysv(ShmId, Option<SysvStat>),
    Posix {
        fd: OwnedFd,
        name: PosixName,
    },
}

/// What the OS reports about a segment.
#[derive(Debug, Clone)]
pub enum Stat {
    /// From `shmctl(IPC_STAT)`.
    Sysv {
        /// The segment's id.
        id: ShmId,
        /// The kernel's record.
        stat: SysvStat,
    },
    /// From `fstat` on the POSIX object.
    Posix(FileStat),
}

/// An attached segment.
#[derive(Debug)]
pub struct Segment {
    target: Target,
    handle: Handle,
    mapping: Mapping,
    access: Access,
}

impl Segment {
    /// Attaches an existing segment.
    pub fn open(target: &Target, access: Access) -> Result<Segment, SegmentError> {
        let handle = match target {
            Target::Key { key, .. } => Handle::Sysv(find::lookup_key(target, *key)?, None),
            Target::Id(id) => Handle::Sysv(*id, None),
            Target::Name(name) => {
                let fd = find::open_posix(target, name, access)?;
                if access == Access::ReadWrite {
                    create::reserve_space(&fd, target, 0)?;
                }
                Handle::Posix {
                    fd,
                    name: name.clone(),
                }
            }
        };
        Segment::attach(target, handle, access)
    }

    /// Attaches the segment, creating it first when it does not exist.
    /// Returns whether this call created it. A segment it created is never
    /// removed again, even if attaching fails: it was visible (System V:
    /// zero-filled; POSIX: complete) from the moment it existed, so another
    /// writer may already be using it. The one exception is a key-0
    /// (IPC_PRIVATE) segment, which nobody else can find: see
    /// `create::create_or_attach_key`.
    pub fn open_or_create(
        target: &Target,
        create: &Create,
    ) -> Result<(Segment, bool), SegmentError> {
        create::refuse_shared_default(target, create.mode)?;
        let (handle, created) = match target {
            Target::Id(id) => (Handle::Sysv(*id, None), false),
            Target::Key { key, .. } => return create::create_or_attach_key(target, *key, create),
            Target::Name(name) => create::create_posix(target, name, create)?,
        };
        let segment = Segment::attach(target, handle, Access::ReadWrite)?;
        Ok((segment, created))
    }

    fn attach(
        target: &Target,
        mut handle: Handle,
        access: Access,
    ) -> Result<Segment, SegmentError> {
        let writable = access == Access::ReadWrite;
        let mapping = match &mut handle {
            Handle::Sysv(id, before) => {
                let stat = sys::shm_stat(*id).map_err(|e| find::open_error(target, e))?;
                let mapping = Mapping::attach_sysv(*id, stat.size, writable)
                    .map_err(|e| find::open_error(target, e))?;
                *before = Some(stat);
                mapping
            }
            Handle::Posix { fd, .. } => {
                let size = grow::posix_size(fd, target)?;
                if size == 0 {
                    return Err(SegmentError::Empty {
                        target: target.clone(),
                    });
                }
                grow::map_posix(fd, target, size, writable)?
            }
        };
        Ok(Segment {
            target: target.clone(),
            handle,
            mapping,
            access,
        })
    }

    /// Opens the segment once it exists and `ready` accepts it, polling
    /// until `deadline`. Running out is [`SegmentError::TimedOut`] (exit
    /// 124), saying what was awaited (`what`, after "waiting for SEGMENT")
    /// and for how long (`timeout`).
    pub fn open_when<E: From<SegmentError>>(
        target: &Target,
        access: Access,
        deadline: Deadline,
        timeout: Option<Duration>,
        what: &'static str,
        ready: impl Fn(&Segment) -> Result<bool, E>,
    ) -> Result<Segment, E> {
        let found = wait::poll_until(deadline, || match Segment::open(target, access) {
            Ok(segment) => Ok(ready(&segment)?.then_some(segment)),
            Err(e) if e.is_missing() => Ok(None),
            Err(e) => Err(E::from(e)),
        })?;
        found.ok_or_else(|| E::from(timed_out(target, timeout, what)))
    }

    /// How this segment is addressed, for messages.
    #[must_use]
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The attached memory.
    #[must_use]
    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// The open file behind a POSIX segment (for its follower locks); None
    /// for a System V one, which has no descriptor.
    #[must_use]
    pub fn file(&self) -> Option<BorrowedFd<'_>> {
        match &self.handle {
            Handle::Posix { fd, .. } => Some(fd.as_fd()),
            Handle::Sysv(..) => None,
        }
    }

    /// What the OS reports about the segment: for System V as it was just
    /// before we attached (our own shmat changes the attach count, last pid
    /// and attach time), for POSIX as it is now.
    pub fn stat(&self) -> Result<Stat, SegmentError> {
        let failed = |e| find::open_error(&self.target, e);
        match &self.handle {
            Handle::Sysv(id, before) => Ok(Stat::Sysv {
                id: *id,
                stat: match before {
                    Some(stat) => stat.clone(),
                    None => sys::shm_stat(*id).map_err(failed)?,
                },
            }),
            Handle::Posix { fd, .. } => Ok(Stat::Posix(sys::fstat(fd.as_fd()).map_err(failed)?)),
        }
    }

    /// Whether someone removed the segment since we attached it (it stays
    /// mapped for us until we detach).
    #[must_use]
    pub fn is_removed(&self) -> bool {
        match &self.handle {
            Handle::Sysv(id, _) => sys::shm_stat(*id).map_or(true, |s| s.mode & sys::SHM_DEST != 0),
            Handle::Posix { fd, .. } => sys::fstat(fd.as_fd()).map_or(true, |s| s.st_nlink == 0),
        }
    }
}

/// The exit-124 error: what `target` was awaited for, and how long.
#[must_use]
pub fn timed_out(target: &Target, timeout: Option<Duration>, what: &'static str) -> SegmentError {
    SegmentError::TimedOut {
        target: target.clone(),
        timeout,
        what,
    }
}

/// Who owns a segment and with which mode, when we can find out without
/// permission on it: /proc/sysvipc/shm and /dev/shm are world-readable.
fn owner_and_mode(target: &Target) -> Option<(u32, u32)> {
    let row = match target {
        Target::Name(name) => {
            let stat = sys::lstat(&name.dev_shm_path()).ok()?;
            return Some((stat.st_uid, stat.st_mode & 0o7777));
        }
        Target::Key { key, .. } => crate::sysvipc::by_key(*key),
        Target::Id(id) => crate::sysvipc::by_id(*id),
    };
    row.map(|row| (row.stat.uid, row.stat.mode & 0o7777))
}
