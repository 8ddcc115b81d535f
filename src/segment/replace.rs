//! Replacing a System V segment with a larger one under the same key
//! (`shm-write --replace`).
//!
//! Contract:
//! - the old segment is removed only once the new size is known to fit
//!   every limit (the kernel checks them on an unnamed segment first);
//! - a segment planted under the key in the moment it is free is never
//!   adopted or written; only a racing replacement of our own user, with
//!   exactly our mode, is attached;
//! - whatever fails after the removal, the old content is put back under
//!   the key, or kept in a new unnamed segment whose id the error gives.

use nix::errno::Errno;
use nix::libc;

use super::create::{KEY_ATTEMPTS, create_error, exclusive_flags, limit_error};
use super::{Access, Action, Doing, Handle, Kept, Segment, SegmentError};
use crate::address::Target;
use crate::sys::{self, Mapping, ShmId, ShmKey};

impl Segment {
    /// Replaces a System V segment addressed by key with a new one of
    /// `size` bytes and permission bits `mode`, under the same key, keeping
    /// SHM_HUGETLB if the old one has huge pages. The old one is removed
    /// only once the new one is known to fit every limit: the new size is
    /// first created unnamed (IPC_PRIVATE) while the old one still stands,
    /// so shmmax, shmall, shmmni and the huge page pool are all checked by
    /// the kernel itself; then the old one is removed by its id (programs
    /// attached to it keep it until they detach), the unnamed one freed,
    /// and the new one created exclusively under the key.
    ///
    /// A key cannot move from one segment to another, so between the
    /// removal and the creation the key is free, and anyone may create a
    /// segment there. Such a segment is never adopted: the victim's data
    /// would go to whoever planted it. Only a segment that our own user
    /// created and owns with exactly `mode` (a racing `--replace` of the
    /// same user) is attached instead, and the flag returned is false. Any
    /// other one fails the replacement, naming its owner, and the old
    /// content, which this process still has mapped, is copied into a new
    /// unnamed segment whose id the error gives. If the creation fails
    /// for a limit instead, the old content is put back under the key. A
    /// segment addressed by id (-i) keeps its identity, and a POSIX one
    /// grows instead: both are refused.
    pub fn replace(&self, size: usize, mode: u32) -> Result<(Segment, bool), SegmentError> {
        let (Target::Key { key, .. }, Handle::Sysv(id, _)) = (&self.target, &self.handle) else {
            return Err(SegmentError::NotReplaceable {
                target: self.target.clone(),
            });
        };
        let target = &self.target;
        let huge = if self.mapping.is_hugetlb() {
            sys::SHM_HUGETLB
        } else {
            0
        };
        let flags = exclusive_flags(mode) | huge;
        // The room the new segment needs, taken while the old one stands.
        let room = sys::shmget(ShmKey::PRIVATE, size, flags)
            .map_err(|e| limit_error(target, size, e, Action::Replace, huge != 0))?;
        let removed = sys::shm_remove(*id);
        // Never attached, so IPC_RMID frees it at once; it cannot fail for
        // the segment we just made (and a leftover would only hold memory).
        let _ = sys::shm_remove(room);
        match removed {
            // Removed already (by a racing replacement): its key is free.
            Ok(()) | Err(Errno::EINVAL | Errno::EIDRM) => {}
            Err(Errno::EPERM | Errno::EACCES) => {
                return Err(SegmentError::ReplacePermission {
                    target: target.clone(),
                    owner: super::owner_and_mode(target),
                });
            }
            Err(errno) => {
                return Err(SegmentError::Os {
                    target: target.clone(),
                    doing: Doing::RemoveToReplace,
                    errno,
                });
            }
        }
        test_hook_replace_gap();
        self.create_replacement(*key, size, mode, flags, removed.is_ok())
    }

    /// The creation half of [`Segment::replace`], once the old segment is
    /// gone (`we_removed`: by us).
    fn create_replacement(
        &self,
        key: ShmKey,
        size: usize,
        mode: u32,
        flags: libc::c_int,
        we_removed: bool,
    ) -> Result<(Segment, bool), SegmentError> {
        let target = &self.target;
        for _ in 0..KEY_ATTEMPTS {
            let (id, created) = match sys::shmget(key, size, flags) {
                Ok(id) => (id, true),
                Err(Errno::EEXIST) => match Self::racing_replacement(key, mode) {
                    Some(id) => (id, false),
                    None => return Err(self.key_taken(key, flags, we_removed)),
                },
                Err(e) => {
                    let cause = create_error(target, size, e);
                    return Err(if we_removed {
                        self.restore(key, flags, cause)
                    } else {
                        cause
                    });
                }
            };
            // Gone before we attached (a racing --replace of the same user
            // removes what it found under the key): try again.
            match Segment::attach(target, Handle::Sysv(id, None), Access::ReadWrite) {
                Ok(segment) => return Ok((segment, created)),
                Err(e) if e.is_missing() => {}
                Err(e) => return Err(e),
            }
        }
        Err(SegmentError::Churn {
            target: target.clone(),
        })
    }

    /// The segment now under `key`, if it is a racing replacement by our
    /// own user: created and owned by our effective uid, with exactly
    /// `mode`. Anything else at the key is someone else's.
    fn racing_replacement(key: ShmKey, mode: u32) -> Option<ShmId> {
        let id = sys::shmget(key, 0, 0).ok()?;
        let stat = sys::shm_stat(id).ok()?;
        let me = sys::effective_uid();
        (stat.key == key && stat.uid == me && stat.cuid == me && stat.mode & 0o777 == mode & 0o777)
            .then_some(id)
    }

    /// The error when another user's segment appeared under `key` between
    /// removing the old segment and creating its replacement. Their segment
    /// is left alone and nothing is written to it; the old content, if we
    /// removed it, goes to a new unnamed segment.
    fn key_taken(&self, key: ShmKey, flags: libc::c_int, we_removed: bool) -> SegmentError {
        let kept = if we_removed {
            match self.copy_content(ShmKey::PRIVATE, flags) {
                Ok(id) => Kept::Copied(id),
                Err(e) => Kept::Lost(e),
            }
        } else {
            Kept::RemovedByOthers
        };
        SegmentError::KeyTaken {
            target: self.target.clone(),
            // From the world-readable /proc/sysvipc/shm: no permission needed.
            who: crate::sysvipc::by_key(key).map(|row| (row.stat.uid, row.stat.cuid)),
            kept,
        }
    }

    /// Copies this segment's bytes into a new segment created with `flags`
    /// (exclusive) under `key`, in chunks so no buffer of its size is
    /// needed. Returns the new segment's id; on failure nothing is left.
    fn copy_content(&self, key: ShmKey, flags: libc::c_int) -> Result<ShmId, Errno> {
        const CHUNK: usize = 1 << 20;
        let len = self.mapping.len();
        let id = sys::shmget(key, len, flags)?;
        let copied = Mapping::attach_sysv(id, len, true).and_then(|copy| {
            let mut chunk = vec![0u8; CHUNK.min(len)];
            let mut at = 0;
            while at < len {
                let n = CHUNK.min(len - at);
                self.mapping
                    .read(at, &mut chunk[..n])
                    .map_err(|_| Errno::EFAULT)?;
                copy.write(at, &chunk[..n]).map_err(|_| Errno::EFAULT)?;
                at += n;
            }
            Ok(())
        });
        if let Err(e) = copied {
            let _ = sys::shm_remove(id);
            return Err(e);
        }
        Ok(id)
    }

    /// After a replacement failed past removing this (old) segment: puts
    /// its bytes back under `key` in a segment of its own size, so the key
    /// still leads to the old content; if someone took the key meanwhile,
    /// into an unnamed segment instead. Returns the error to report.
    fn restore(&self, key: ShmKey, flags: libc::c_int, cause: SegmentError) -> SegmentError {
        let target = self.target.clone();
        match self.copy_content(key, flags) {
            Ok(_) => SegmentError::Restored {
                target,
                cause: Box::new(cause),
            },
            Err(Errno::EEXIST) => self.key_taken(key, flags, true),
            Err(errno) => SegmentError::NotRestored {
                target,
                errno,
                cause: Box::new(cause),
            },
        }
    }
}

/// Lets tests widen the moment in which a System V key is free during
/// `--replace`: with `SHM_TOOLS_TEST_REPLACE_GAP_US` set, the replacement
/// sleeps that long after removing the old segment and before creating
/// the new one. Only with the `test-hooks` feature, which `cargo test` enables.
#[cfg(feature = "test-hooks")]
fn test_hook_replace_gap() {
    if let Some(us) = std::env::var_os("SHM_TOOLS_TEST_REPLACE_GAP_US")
        .and_then(|v| v.to_str().and_then(|s| s.parse::<u64>().ok()))
    {
        std::thread::sleep(std::time::Duration::from_micros(us));
    }
}

/// Without the `test-hooks` feature (every build users make) there is no
/// hook at all.
#[cfg(not(feature = "test-hooks"))]
fn test_hook_replace_gap() {}
