//! Creating a segment: a System V key created exclusively or attached, a
//! POSIX object prepared unnamed and only then given its name.
//!
//! Contract:
//! - a POSIX object is given its exact mode (no umask), size and reserved
//!   space before anyone can see it, and its name never replaces another;
//! - a segment that vanishes between "it exists" and attaching it is tried
//!   again a bounded number of times, then [`SegmentError::Churn`];
//! - the space of an object opened for writing is reserved, so a full
//!   /dev/shm is an error now and not a SIGBUS halfway through a write.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::errno::Errno;
use nix::libc;

use super::{Access, Create, Handle, SHM_DIR, Segment, SegmentError, find};
use crate::address::{PosixName, Target};
use crate::segment::{Action, Doing, SpaceNeed};
use crate::sys::{self, ShmKey};

/// How often a name that vanishes between "it exists" and opening it is
/// tried again before giving up.
const CREATE_ATTEMPTS: usize = 8;

/// How often a key whose segment vanishes before we attach it is tried
/// again.
pub(super) const KEY_ATTEMPTS: usize = 16;

/// Refuses, before anything exists, to create the per-user default with a
/// mode that lets others write it: such a default would be refused by every
/// later read and write (see the checks in `find`).
pub(super) fn refuse_shared_default(target: &Target, mode: u32) -> Result<(), SegmentError> {
    match target {
        Target::Name(name) if name.is_default() && mode & 0o022 != 0 => {
            Err(SegmentError::SharedDefault {
                target: target.clone(),
                mode,
            })
        }
        _ => Ok(()),
    }
}

/// The shmget flags that create a segment exclusively with `mode`.
pub(super) fn exclusive_flags(mode: u32) -> libc::c_int {
    libc::IPC_CREAT | libc::IPC_EXCL | libc::c_int::try_from(mode & 0o777).unwrap_or(0o600)
}

/// Creates the System V segment under `key` exclusively, or attaches the
/// one already there. One that vanishes between the two (removed by
/// `--remove` or replaced by a racing `--replace`) is tried again, so a
/// writer that would have created the segment is never told it is missing.
pub(super) fn create_or_attach_key(
    target: &Target,
    key: ShmKey,
    create: &Create,
) -> Result<(Segment, bool), SegmentError> {
    let flags = exclusive_flags(create.mode);
    for _ in 0..KEY_ATTEMPTS {
        let (id, created) = match sys::shmget(key, create.size, flags) {
            Ok(id) => (id, true),
            Err(Errno::EEXIST) if create.exclusive => {
                return Err(SegmentError::Exists {
                    target: target.clone(),
                });
            }
            Err(Errno::EEXIST) => match find::lookup_key(target, key) {
                Ok(id) => (id, false),
                Err(e) if e.is_missing() => continue,
                Err(e) => return Err(e),
            },
            Err(e) => return Err(create_error(target, create.size, e)),
        };
        // Gone before we attached, even one we had just created (a racing
        // --replace removes whatever it finds): try again.
        match Segment::attach(target, Handle::Sysv(id, None), Access::ReadWrite) {
            Ok(segment) => return Ok((segment, created)),
            Err(e) if e.is_missing() => {}
            Err(e) => {
                if created && key == ShmKey::PRIVATE {
                    // Nobody else can find an unnamed segment by key, and
                    // its id is never reported: left, it would only leak.
                    let _ = sys::shm_remove(id);
                }
                return Err(e);
            }
        }
    }
    Err(SegmentError::Churn {
        target: target.clone(),
    })
}

/// Opens the object behind `name` for writing, creating it when missing,
/// and makes sure its space is reserved.
pub(super) fn create_posix(
    target: &Target,
    name: &PosixName,
    create: &Create,
) -> Result<(Handle, bool), SegmentError> {
    let handle = |fd| Handle::Posix {
        fd,
        name: name.clone(),
    };
    for _ in 0..CREATE_ATTEMPTS {
        if !create.exclusive {
            match find::open_posix(target, name, Access::ReadWrite) {
                Ok(fd) => {
                    // One that someone created but never sized gets our size.
                    reserve_space(&fd, target, create.size)?;
                    return Ok((handle(fd), false));
                }
                Err(e) if e.is_missing() => {}
                Err(e) => return Err(e),
            }
        }
        match create_named(name, create) {
            Ok(Some(fd)) => return Ok((handle(fd), true)),
            Ok(None) if create.exclusive => {
                return Err(SegmentError::Exists {
                    target: target.clone(),
                });
            }
            // Someone else's came first: open that one.
            Ok(None) => {}
            Err(e) => return Err(create_error(target, create.size, e)),
        }
    }
    Err(SegmentError::Churn {
        target: target.clone(),
    })
}

/// Creates a POSIX object under `name` atomically: made unnamed (O_TMPFILE
/// in /dev/shm), given its exact mode, size and reserved space, and only
/// then linked under the name, which fails if the name exists. So nobody
/// ever sees it half-made, and there is never anything to undo. Returns
/// None when the name exists already.
fn create_named(name: &PosixName, create: &Create) -> Result<Option<OwnedFd>, Errno> {
    let mode = create.mode & 0o777;
    let path = name.dev_shm_path();
    let fd = match sys::create_unnamed(SHM_DIR, mode) {
        Ok(fd) => fd,
        // No O_TMPFILE here (old kernel, or not a tmpfs).
        Err(Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL) => {
            return create_by_rename(&path, mode, create.size);
        }
        Err(e) => return Err(e),
    };
    prepare_new(&fd, mode, create.size)?;
    match sys::link_unnamed(fd.as_fd(), &path) {
        Ok(()) => Ok(Some(fd)),
        Err(Errno::EEXIST) => Ok(None),
        // No /proc to link from.
        Err(Errno::ENOENT) if !std::path::Path::new("/proc/self/fd").exists() => {
            create_by_rename(&path, mode, create.size)
        }
        Err(e) => Err(e),
    }
}

/// The fallback without O_TMPFILE: prepare the object under a unique
/// temporary name, then rename it to `path` without replacing anything.
/// The temporary name is removed on every failure.
fn create_by_rename(
    path: &std::path::Path,
    mode: u32,
    len: usize,
) -> Result<Option<OwnedFd>, Errno> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let temp = format!(
        "{SHM_DIR}/.shm-tools-new-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        crate::layout::now_ns()
    );
    let fd = sys::create_exclusive(&temp, mode)?;
    let named = prepare_new(&fd, mode, len).and_then(|()| sys::rename_no_replace(&temp, path));
    match named {
        Ok(()) => Ok(Some(fd)),
        Err(e) => {
            // Ours alone: nobody else knows the temporary name. A failure
            // to remove it matters less than the error that explains.
            let _ = sys::unlink(&temp);
            if e == Errno::EEXIST { Ok(None) } else { Err(e) }
        }
    }
}

/// Gives a new, still private object its exact mode (the umask is not
/// applied, as shmget does it) and its size, with the space reserved.
fn prepare_new(fd: &OwnedFd, mode: u32, len: usize) -> Result<(), Errno> {
    sys::set_mode(fd.as_fd(), mode)?;
    match sys::reserve(fd.as_fd(), len) {
        // A file system without fallocate: sized, if not reserved.
        Err(Errno::EOPNOTSUPP) => sys::set_len(fd.as_fd(), len),
        other => other,
    }
}

/// Reserves the whole of an existing object opened for writing, so a full
/// /dev/shm fails here, with a message, instead of as a SIGBUS halfway
/// through a write: another program (Python's SharedMemory, for one) may
/// have sized it with ftruncate alone, leaving it sparse. A 0-byte object
/// is grown to `size_if_empty` (0: left as it is). fallocate(2) itself, not
/// posix_fallocate(3): glibc's fallback for file systems without it writes
/// into the object, which must not race the writers using it.
pub(super) fn reserve_space(
    fd: &OwnedFd,
    target: &Target,
    size_if_empty: usize,
) -> Result<(), SegmentError> {
    let size = match super::grow::posix_size(fd, target)? {
        0 => size_if_empty,
        size => size,
    };
    if size == 0 {
        return Ok(());
    }
    match sys::reserve(fd.as_fd(), size) {
        Ok(()) | Err(Errno::EOPNOTSUPP) => Ok(()),
        Err(errno @ (Errno::ENOSPC | Errno::EFBIG)) => Err(SegmentError::NoSpace {
            target: target.clone(),
            need: SpaceNeed::Reserve(size),
            errno,
        }),
        Err(errno) => Err(SegmentError::Os {
            target: target.clone(),
            doing: Doing::Reserve(size),
            errno,
        }),
    }
}

/// Explains a failed creation of `size` bytes with the limit behind it.
pub(super) fn create_error(target: &Target, size: usize, e: Errno) -> SegmentError {
    limit_error(target, size, e, Action::Create, false)
}

/// A failed creation (to create, or to replace): a refusal of
/// this user, or the limit behind it.
pub(super) fn limit_error(
    target: &Target,
    size: usize,
    errno: Errno,
    action: Action,
    huge: bool,
) -> SegmentError {
    match errno {
        Errno::EACCES | Errno::EPERM => find::permission_error(target, action),
        errno => SegmentError::Limit {
            target: target.clone(),
            size,
            action,
            huge,
            errno,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers() -> usize {
        let ours = format!(".shm-tools-new-{}-", std::process::id());
        std::fs::read_dir(SHM_DIR).map_or(0, |dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(&ours))
                .count()
        })
    }

    #[test]
    fn creation_is_complete_exact_and_never_replaces() {
        let name = PosixName::parse(&format!("shm-tools-unit-{}", std::process::id())).unwrap();
        let path = name.dev_shm_path();
        let create = Create {
            size: 8192,
            mode: 0o640,
            exclusive: true,
        };
        for by_rename in [false, true] {
            let first = if by_rename {
                create_by_rename(&path, 0o640, 8192)
            } else {
                create_named(&name, &create)
            };
            let fd = first.unwrap().expect("the name was free");
            let stat = sys::fstat(fd.as_fd()).unwrap();
            assert_eq!(stat.st_size, 8192);
            assert_eq!(stat.st_mode & 0o777, 0o640, "umask not applied");
            assert!(stat.st_blocks * 512 >= 8192, "space is reserved");
            let again = if by_rename {
                create_by_rename(&path, 0o640, 8192)
            } else {
                create_named(&name, &create)
            };
            assert!(
                again.unwrap().is_none(),
                "an existing name is never replaced"
            );
            assert_eq!(leftovers(), 0, "the temporary name is gone");
            sys::unlink(path.to_str().unwrap()).unwrap();
        }
    }
}
