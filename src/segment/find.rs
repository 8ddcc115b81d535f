//! Finding an existing segment: a System V key looked up, a POSIX name
//! opened and what stands behind it checked on the descriptor.
//!
//! Contract:
//! - a POSIX name is opened without following a symlink and without
//!   blocking (a FIFO would block forever), then judged on the descriptor,
//!   so nothing can be swapped in between the check and the use;
//! - the per-user default must belong to the effective user and be
//!   writable by nobody else;
//! - an errno becomes the [`SegmentError`] that says what it means here.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::stat::SFlag;

use super::{Access, SegmentError};
use crate::address::{PosixName, Target};
use crate::segment::{Action, FileKind};
use crate::sys::{self, ShmId, ShmKey};

pub(super) fn lookup_key(target: &Target, key: ShmKey) -> Result<ShmId, SegmentError> {
    if key == ShmKey::PRIVATE {
        return Err(SegmentError::PrivateKey);
    }
    sys::shmget(key, 0, 0).map_err(|e| open_error(target, e))
}

/// Opens an existing POSIX object without following a symlink (glibc adds
/// O_NOFOLLOW) and without blocking (a FIFO would block forever), then
/// checks on the descriptor what it is.
pub(super) fn open_posix(
    target: &Target,
    name: &PosixName,
    access: Access,
) -> Result<OwnedFd, SegmentError> {
    let fd = sys::shm_open_existing(name.shm_open_name().as_str(), access == Access::ReadWrite)
        .map_err(|e| open_posix_error(target, name, e))?;
    verify_posix(&fd, target, name)?;
    Ok(fd)
}

/// Checks what the descriptor leads to: a regular file (what shm_open
/// makes), and, for the per-user default, one that belongs to the
/// effective user and that group and others cannot write (the rule for
/// XDG_RUNTIME_DIR and OpenSSH's StrictModes).
fn verify_posix(fd: &OwnedFd, target: &Target, name: &PosixName) -> Result<(), SegmentError> {
    let stat = sys::fstat(fd.as_fd()).map_err(|e| open_error(target, e))?;
    if let Some(kind) = not_regular(stat.st_mode) {
        return Err(not_an_object(target, name, kind));
    }
    if name.is_default() {
        let mode = stat.st_mode & 0o7777;
        let path = name.dev_shm_path();
        if stat.st_uid != sys::effective_uid() {
            return Err(SegmentError::ForeignDefault {
                target: target.clone(),
                owner: stat.st_uid,
                mode,
                path,
            });
        }
        if mode & 0o022 != 0 {
            return Err(SegmentError::WritableDefault {
                target: target.clone(),
                mode,
                path,
            });
        }
    }
    Ok(())
}

/// What a file of `st_mode` is, when it is not a regular file.
fn not_regular(st_mode: u32) -> Option<FileKind> {
    let kind = SFlag::from_bits_truncate(st_mode & SFlag::S_IFMT.bits());
    Some(match kind {
        SFlag::S_IFREG => return None,
        SFlag::S_IFIFO => FileKind::Fifo,
        SFlag::S_IFDIR => FileKind::Directory,
        SFlag::S_IFLNK => FileKind::Symlink,
        SFlag::S_IFSOCK => FileKind::Socket,
        SFlag::S_IFCHR => FileKind::CharDevice,
        SFlag::S_IFBLK => FileKind::BlockDevice,
        _ => FileKind::Other,
    })
}

fn not_an_object(target: &Target, name: &PosixName, kind: FileKind) -> SegmentError {
    SegmentError::NotAnObject {
        target: target.clone(),
        path: name.dev_shm_path(),
        kind,
    }
}

/// Explains a failed shm_open of an existing POSIX name. What the other
/// errors mean (a directory is EINVAL from glibc, a socket ENXIO, ...) is
/// told apart with lstat, for the message only: the kernel decided.
fn open_posix_error(target: &Target, name: &PosixName, e: Errno) -> SegmentError {
    match e {
        // O_NOFOLLOW's answer for a symlink.
        Errno::ELOOP => not_an_object(target, name, FileKind::Symlink),
        Errno::ENOENT | Errno::EACCES | Errno::EPERM => open_error(target, e),
        e => match sys::lstat(&name.dev_shm_path())
            .ok()
            .and_then(|stat| not_regular(stat.st_mode))
        {
            Some(kind) => not_an_object(target, name, kind),
            None => open_error(target, e),
        },
    }
}

/// What a failed open, attach or stat of `target` means.
pub(super) fn open_error(target: &Target, e: Errno) -> SegmentError {
    match e {
        Errno::EACCES | Errno::EPERM => permission_error(target, Action::Open),
        // A bad id is EINVAL (never existed) or EIDRM (removed).
        Errno::ENOENT | Errno::EINVAL | Errno::EIDRM => SegmentError::NotFound {
            target: target.clone(),
        },
        errno => SegmentError::Os {
            target: target.clone(),
            doing: super::Doing::Open,
            errno,
        },
    }
}

/// The kernel refused `action` on `target`; who owns it, for the message.
pub(super) fn permission_error(target: &Target, action: Action) -> SegmentError {
    SegmentError::PermissionDenied {
        target: target.clone(),
        action,
        owner: super::owner_and_mode(target),
    }
}
