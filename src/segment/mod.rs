//! How a segment is found, created, attached and removed.
//!
//! Contract: [`Segment::open`] attaches an existing segment and never
//! creates or removes one; [`Segment::open_or_create`] creates when missing.
//! A POSIX object is prepared (mode, size, reserved space) before it gets
//! its name, so nobody ever sees it half-made; once a segment is visible to
//! others it is never removed on a later failure, because a racing writer
//! may already have published into it. Whatever stands behind a POSIX name
//! is checked on the opened descriptor: it must be a regular file, and the
//! per-user default must belong to the user and be writable by nobody
//! else. [`Segment::remove`] acts on the object this process holds, never
//! on whatever the name means by then. Every error names the segment and
//! says what to do. Dropping a `Segment` detaches it.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, FallocateFlags, OFlag, RenameFlags};
use nix::libc;
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, lstat};

use crate::address::{Origin, PosixName, Target};
use crate::error::{Kind, failure, kind_of};
use crate::sys::{self, Mapping, ShmId, ShmKey, SysvStat};
use crate::wait::{self, Deadline};

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

/// Where Linux keeps POSIX shared memory objects (glibc's shm_open
/// opens `/dev/shm/NAME`).
const SHM_DIR: &str = "/dev/shm";

/// How often a name that vanishes between "it exists" and opening it is
/// tried again before giving up.
const CREATE_ATTEMPTS: usize = 8;

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
    pub fn open(target: &Target, access: Access) -> anyhow::Result<Segment> {
        let handle = match target {
            Target::Key { key, .. } => Handle::Sysv(lookup_key(target, *key)?, None),
            Target::Id(id) => Handle::Sysv(*id, None),
            Target::Name(name) => {
                let fd = open_posix(target, name, access)?;
                if access == Access::ReadWrite {
                    reserve_space(&fd, target, 0)?;
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
    /// writer may already be using it.
    pub fn open_or_create(target: &Target, create: &Create) -> anyhow::Result<(Segment, bool)> {
        refuse_shared_default(target, create.mode)?;
        let mode = libc::c_int::try_from(create.mode & 0o777).unwrap_or(0o600);
        let (handle, created) = match target {
            Target::Id(id) => (Handle::Sysv(*id, None), false),
            Target::Key { key, .. } => {
                let flags = libc::IPC_CREAT | libc::IPC_EXCL | mode;
                return create_or_attach_key(target, *key, create.size, flags, create.exclusive);
            }
            Target::Name(name) => create_posix(target, name, create)?,
        };
        let segment = Segment::attach(target, handle, Access::ReadWrite)?;
        Ok((segment, created))
    }

    fn attach(target: &Target, mut handle: Handle, access: Access) -> anyhow::Result<Segment> {
        let writable = access == Access::ReadWrite;
        let mapping = match &mut handle {
            Handle::Sysv(id, before) => {
                let stat = sys::shm_stat(*id).map_err(|e| open_error(target, e))?;
                let mapping = Mapping::attach_sysv(*id, stat.size, writable)
                    .map_err(|e| open_error(target, e))?;
                *before = Some(stat);
                mapping
            }
            Handle::Posix { fd, .. } => {
                let size = posix_size(fd, target)?;
                if size == 0 {
                    return Err(failure(
                        Kind::NotFound,
                        format!(
                            "{target} exists but is 0 bytes long: nothing has been written to it yet"
                        ),
                    ));
                }
                map_posix(fd, target, size, writable)?
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
    /// until `deadline`. Running out is exit 124, with a message that says
    /// what was awaited (`what`, after "waiting for SEGMENT") and for how
    /// long (`timeout`).
    pub fn open_when(
        target: &Target,
        access: Access,
        deadline: Deadline,
        timeout: Option<Duration>,
        what: &str,
        ready: impl Fn(&Segment) -> anyhow::Result<bool>,
    ) -> anyhow::Result<Segment> {
        let found = wait::poll_until(deadline, || match Segment::open(target, access) {
            Ok(segment) => Ok(ready(&segment)?.then_some(segment)),
            Err(e) if kind_of(&e) == Some(Kind::NotFound) => Ok(None),
            Err(e) => Err(e),
        })?;
        found.ok_or_else(|| timed_out(target, timeout, what))
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

    /// What the OS reports about the segment: for System V as it was just
    /// before we attached (our own shmat changes the attach count, last pid
    /// and attach time), for POSIX as it is now.
    pub fn stat(&self) -> anyhow::Result<Stat> {
        match &self.handle {
            Handle::Sysv(id, before) => Ok(Stat::Sysv {
                id: *id,
                stat: match before {
                    Some(stat) => stat.clone(),
                    None => sys::shm_stat(*id).map_err(|e| open_error(&self.target, e))?,
                },
            }),
            Handle::Posix { fd, .. } => Ok(Stat::Posix(
                fstat(fd).map_err(|e| open_error(&self.target, e))?,
            )),
        }
    }

    /// Whether someone removed the segment since we attached it (it stays
    /// mapped for us until we detach).
    #[must_use]
    pub fn is_removed(&self) -> bool {
        match &self.handle {
            Handle::Sysv(id, _) => sys::shm_stat(*id).map_or(true, |s| s.mode & sys::SHM_DEST != 0),
            Handle::Posix { fd, .. } => fstat(fd).map_or(true, |s| s.st_nlink == 0),
        }
    }

    /// Removes the segment this process holds: IPC_RMID by id (it
    /// disappears when the last process detaches), or shm_unlink of the
    /// name only while the name still leads to our object. A name that is
    /// gone, or now leads to another object, means ours is unreachable
    /// already: that is success, and the other object is left alone.
    ///
    /// What remains for POSIX: between comparing the name's device and
    /// inode with ours and unlinking it, someone could replace the object
    /// behind the name, and that newcomer would be unlinked (it stays
    /// usable by whoever has it open, but loses its name). Linux has no
    /// "unlink if it is this inode" call; the window is a few microseconds.
    pub fn remove(&self) -> anyhow::Result<()> {
        let result = match &self.handle {
            Handle::Sysv(id, _) => sys::shm_remove(*id),
            Handle::Posix { fd, name } => remove_posix(fd, name),
        };
        result.map_err(|e| match e {
            Errno::EPERM | Errno::EACCES => permission_error(&self.target, "remove"),
            e => anyhow::Error::new(e).context(format!("cannot remove {}", self.target)),
        })
    }
}

/// Growing and replacing: what a snapshot that does not fit needs.
impl Segment {
    /// A POSIX segment's whole object, mapped anew after making sure it is
    /// at least `size` bytes: a smaller object is grown, its space reserved
    /// first (a full /dev/shm is an error that leaves it as it was). Only
    /// an object that belongs to us is grown: another user's object that
    /// we may write is theirs to size (their memory, their limits). The
    /// caller holds the segment's write lock, so no writer of ours races.
    /// System V segments cannot grow.
    pub fn grow_to(&self, size: usize) -> anyhow::Result<Mapping> {
        let Handle::Posix { fd, .. } = &self.handle else {
            return Err(failure(
                Kind::Failed,
                format!("{} is a System V segment, which cannot grow", self.target),
            ));
        };
        let target = &self.target;
        let now = posix_size(fd, target)?;
        if now < size {
            let stat = fstat(fd).map_err(|e| open_error(target, e))?;
            if stat.st_uid != nix::unistd::geteuid().as_raw() {
                return Err(failure(
                    Kind::Failed,
                    format!(
                        "the input does not fit {target} ({now} bytes), and it belongs to user {}, so it is not ours to grow; its content is unchanged. Ask its owner to write it, or write less",
                        user_name(stat.st_uid)
                    ),
                ));
            }
            let len = libc::off_t::try_from(size)
                .map_err(|_| grow_space_error(target, now, size, Errno::EFBIG))?;
            match nix::fcntl::fallocate(fd, FallocateFlags::empty(), 0, len) {
                Ok(()) => {}
                // A file system without fallocate: sized, if not reserved.
                Err(Errno::EOPNOTSUPP) => nix::unistd::ftruncate(fd, len)
                    .map_err(|e| anyhow::Error::new(e).context(format!("cannot grow {target}")))?,
                Err(e @ (Errno::ENOSPC | Errno::EFBIG)) => {
                    return Err(grow_space_error(target, now, size, e));
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("cannot grow {target} to {size} bytes")));
                }
            }
        }
        let size = posix_size(fd, target)?;
        map_posix(fd, target, size, self.access == Access::ReadWrite)
    }

    /// The open file behind a POSIX segment (for its follower locks); None
    /// for a System V one, which has no descriptor.
    #[must_use]
    pub fn file(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        match &self.handle {
            Handle::Posix { fd, .. } => Some(fd.as_fd()),
            Handle::Sysv(..) => None,
        }
    }

    /// Maps a POSIX segment again when its object grew since it was
    /// mapped (see "Growing" in docs/FORMAT.md); returns whether it did.
    /// A System V segment never grows: false.
    pub fn remap_if_grown(&mut self) -> anyhow::Result<bool> {
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
    /// unnamed segment whose id the message gives. If the creation fails
    /// for a limit instead, the old content is put back under the key. A
    /// segment addressed by id (-i) keeps its identity, and a POSIX one
    /// grows instead: both are refused.
    pub fn replace(&self, size: usize, mode: u32) -> anyhow::Result<(Segment, bool)> {
        let (Target::Key { key, .. }, Handle::Sysv(id, _)) = (&self.target, &self.handle) else {
            return Err(failure(
                Kind::Usage,
                format!(
                    "--replace replaces a System V segment addressed by key (-k or -f); {} {}",
                    self.target,
                    match self.target {
                        Target::Id(_) =>
                            "is addressed by id, and keeps its identity: it is never replaced",
                        _ => "is a POSIX segment, which grows in place instead",
                    }
                ),
            ));
        };
        let target = &self.target;
        let huge = if self.mapping.is_hugetlb() {
            sys::SHM_HUGETLB
        } else {
            0
        };
        let flags = libc::IPC_CREAT
            | libc::IPC_EXCL
            | huge
            | libc::c_int::try_from(mode & 0o777).unwrap_or(0o600);
        // The room the new segment needs, taken while the old one stands.
        let room = sys::shmget(ShmKey::PRIVATE, size, flags)
            .map_err(|e| replace_error(target, size, huge != 0, e))?;
        let removed = sys::shm_remove(*id);
        // Never attached, so IPC_RMID frees it at once; it cannot fail for
        // the segment we just made (and a leftover would only hold memory).
        let _ = sys::shm_remove(room);
        match removed {
            // Removed already (by a racing replacement): its key is free.
            Ok(()) | Err(Errno::EINVAL | Errno::EIDRM) => {}
            Err(Errno::EPERM | Errno::EACCES) => return Err(replace_permission_error(target)),
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot remove {target} to replace it; its content is unchanged"
                )));
            }
        }
        let we_removed = removed.is_ok();
        test_hook_replace_gap();
        for _ in 0..16 {
            let id = match sys::shmget(*key, size, flags) {
                Ok(id) => id,
                Err(Errno::EEXIST) => match Self::racing_replacement(*key, mode) {
                    Some(id) => {
                        match Segment::attach(target, Handle::Sysv(id, None), Access::ReadWrite) {
                            Ok(segment) => return Ok((segment, false)),
                            Err(e) if kind_of(&e) == Some(Kind::NotFound) => continue,
                            Err(e) => return Err(e),
                        }
                    }
                    None => return Err(self.key_taken(*key, flags, we_removed)),
                },
                Err(e) => {
                    let cause = create_error(target, size, e);
                    return Err(if we_removed {
                        self.restore(*key, flags, cause)
                    } else {
                        cause
                    });
                }
            };
            // Gone before we attached (a racing --replace of the same user
            // removes what it found under the key): try again.
            match Segment::attach(target, Handle::Sysv(id, None), Access::ReadWrite) {
                Ok(segment) => return Ok((segment, true)),
                Err(e) if kind_of(&e) == Some(Kind::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Err(failure(
            Kind::Failed,
            format!("{target} keeps being removed and created again by others; try again"),
        ))
    }

    /// The segment now under `key`, if it is a racing replacement by our
    /// own user: created and owned by our effective uid, with exactly
    /// `mode`. Anything else at the key is someone else's.
    fn racing_replacement(key: ShmKey, mode: u32) -> Option<ShmId> {
        let id = sys::shmget(key, 0, 0).ok()?;
        let stat = sys::shm_stat(id).ok()?;
        let me = nix::unistd::geteuid().as_raw();
        (stat.key == key && stat.uid == me && stat.cuid == me && stat.mode & 0o777 == mode & 0o777)
            .then_some(id)
    }

    /// The error when another user's segment appeared under `key` between
    /// removing the old segment and creating its replacement. Their segment
    /// is left alone and nothing is written to it; the old content, if we
    /// removed it, goes to a new unnamed segment.
    fn key_taken(&self, key: ShmKey, flags: libc::c_int, we_removed: bool) -> anyhow::Error {
        let target = &self.target;
        let who = sysv_creator(key).map_or_else(
            || "another program".to_owned(),
            |(uid, cuid)| {
                let name = user_name(cuid);
                let named = if name == cuid.to_string() {
                    String::new()
                } else {
                    format!(" ({name})")
                };
                if uid == cuid {
                    format!("uid {cuid}{named}")
                } else {
                    format!("uid {cuid}{named}, now owned by uid {uid},")
                }
            },
        );
        let kept = if we_removed {
            match self.copy_content(ShmKey::PRIVATE, flags) {
                Ok(id) => format!(
                    "its old content is kept in a new unnamed segment, id {id} (read it with \
                     shm-read -i {id}; remove it with shm-read -i {id} --remove > /dev/null)"
                ),
                Err(e) => format!(
                    "its old content could not be kept ({}): it lives on only in programs still \
                     attached to it",
                    e.desc()
                ),
            }
        } else {
            "another writer had removed the old segment already".to_owned()
        };
        failure(
            Kind::Failed,
            format!(
                "{target} was taken by {who} in the moment between removing the old segment and \
                 creating its replacement (a System V replacement cannot be atomic); nothing was \
                 written and their segment was left alone; {kept}"
            ),
        )
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
    fn restore(&self, key: ShmKey, flags: libc::c_int, cause: anyhow::Error) -> anyhow::Error {
        let target = &self.target;
        match self.copy_content(key, flags) {
            Ok(_) => cause.context(format!(
                "{target} could not be replaced, so its old content was put back under its key"
            )),
            Err(Errno::EEXIST) => self.key_taken(key, flags, true),
            Err(e) => cause.context(format!(
                "{target} was removed to be replaced and its old content could not be put back \
                 ({}): it lives on only in programs still attached to it",
                e.desc()
            )),
        }
    }
}

/// Creates the System V segment under `key` exclusively (`flags` hold
/// IPC_CREAT|IPC_EXCL and the mode), or attaches the one already there.
/// One that vanishes between the two (removed by `--remove` or replaced
/// by a racing `--replace`) is tried again, so a writer that would have
/// created the segment is never told it is missing.
fn create_or_attach_key(
    target: &Target,
    key: ShmKey,
    size: usize,
    flags: libc::c_int,
    exclusive: bool,
) -> anyhow::Result<(Segment, bool)> {
    for _ in 0..16 {
        let (id, created) = match sys::shmget(key, size, flags) {
            Ok(id) => {
                if key == ShmKey::PRIVATE {
                    // What ipcmk prints, so scripts can pick the id up.
                    crate::notice::notice(format_args!("Shared memory id: {id}"));
                }
                (id, true)
            }
            Err(Errno::EEXIST) if exclusive => return Err(exists_error(target)),
            Err(Errno::EEXIST) => match lookup_key(target, key) {
                Ok(id) => (id, false),
                Err(e) if kind_of(&e) == Some(Kind::NotFound) => continue,
                Err(e) => return Err(e),
            },
            Err(e) => return Err(create_error(target, size, e)),
        };
        // Gone before we attached, even one we had just created (a racing
        // --replace removes whatever it finds): try again.
        match Segment::attach(target, Handle::Sysv(id, None), Access::ReadWrite) {
            Ok(segment) => return Ok((segment, created)),
            Err(e) if kind_of(&e) == Some(Kind::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Err(failure(
        Kind::Failed,
        format!("{target} keeps being removed and created again by others; try again"),
    ))
}

/// Maps `size` bytes of a POSIX object, with messages naming `target`.
fn map_posix(
    fd: &OwnedFd,
    target: &Target,
    size: usize,
    writable: bool,
) -> anyhow::Result<Mapping> {
    let mut mapping =
        Mapping::map_fd(fd.as_fd(), size, writable).map_err(|e| open_error(target, e))?;
    mapping.describe(
        target.to_string(),
        format!(
            "remove it ({} > /dev/null) and write it again",
            target.command("shm-read --remove")
        ),
    );
    Ok(mapping)
}

/// Why reserving space failed: the file size limit (EFBIG) or a full
/// /dev/shm, each with its value.
fn no_space_because(e: Errno) -> String {
    if e == Errno::EFBIG {
        format!(
            "larger than this process may make a file ({})",
            file_size_limit()
        )
    } else {
        format!(
            "not enough space in /dev/shm ({}; its size is a tmpfs mount option)",
            dev_shm_space()
        )
    }
}

fn grow_space_error(target: &Target, now: usize, size: usize, e: Errno) -> anyhow::Error {
    let why = no_space_because(e);
    failure(
        Kind::Failed,
        format!(
            "cannot grow {target} from {now} to {size} bytes: {why}; free space or raise the limit and try again — its content is unchanged"
        ),
    )
}

/// The exit-124 error: what `target` was awaited for, and how long.
pub fn timed_out(target: &Target, timeout: Option<Duration>, what: &str) -> anyhow::Error {
    // "1m 30s", "0s": as a person writes it, not Debug's "90s" or "0ns".
    let after = timeout.map_or_else(String::new, |t| {
        format!(" after {}", humantime::format_duration(t))
    });
    failure(
        Kind::TimedOut,
        format!("timed out{after} waiting for {target} {what}"),
    )
}

fn lookup_key(target: &Target, key: ShmKey) -> anyhow::Result<ShmId> {
    if key == ShmKey::PRIVATE {
        return Err(failure(
            Kind::Usage,
            "key 0x00000000 is IPC_PRIVATE and names no existing segment; address it by id instead (-i, ipcs -m lists them)",
        ));
    }
    sys::shmget(key, 0, 0).map_err(|e| open_error(target, e))
}

/// Refuses, before anything exists, to create the per-user default with a
/// mode that lets others write it: such a default would be refused by every
/// later read and write (see [`verify_posix`]).
fn refuse_shared_default(target: &Target, mode: u32) -> anyhow::Result<()> {
    match target {
        Target::Name(name) if name.is_default() && mode & 0o022 != 0 => Err(failure(
            Kind::Usage,
            format!(
                "-m {mode:04o} would let other users write {target}, your default segment, which must \
                 stay private; for a shared segment give it a name: -n NAME -m {mode:04o}"
            ),
        )),
        _ => Ok(()),
    }
}

/// Opens an existing POSIX object without following a symlink (glibc adds
/// O_NOFOLLOW) and without blocking (a FIFO would block forever), then
/// checks on the descriptor what it is.
fn open_posix(target: &Target, name: &PosixName, access: Access) -> anyhow::Result<OwnedFd> {
    let flags = match access {
        Access::ReadOnly => OFlag::O_RDONLY,
        Access::ReadWrite => OFlag::O_RDWR,
    } | OFlag::O_NONBLOCK;
    let fd = nix::sys::mman::shm_open(name.shm_open_name().as_str(), flags, Mode::empty())
        .map_err(|e| open_posix_error(target, name, e))?;
    verify_posix(&fd, target, name)?;
    Ok(fd)
}

/// Checks what the descriptor leads to: a regular file (what shm_open
/// makes), and, for the per-user default, one that belongs to the
/// effective user and that group and others cannot write (the rule for
/// XDG_RUNTIME_DIR and OpenSSH's StrictModes). Done on the descriptor, so
/// nothing can be swapped in between the check and the use.
fn verify_posix(fd: &OwnedFd, target: &Target, name: &PosixName) -> anyhow::Result<()> {
    let stat = fstat(fd).map_err(|e| open_error(target, e))?;
    let kind = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
    if kind != SFlag::S_IFREG {
        return Err(not_an_object(target, name, file_kind(kind)));
    }
    if name.is_default() {
        let me = nix::unistd::geteuid().as_raw();
        let mode = stat.st_mode & 0o7777;
        let path = name.dev_shm_path();
        let path = path.display();
        if stat.st_uid != me {
            let owner = user_name(stat.st_uid);
            let remover = if stat.st_uid == 0 {
                "root".to_owned()
            } else {
                format!("{owner} or root")
            };
            return Err(failure(
                Kind::Failed,
                format!(
                    "refusing {target}: it is your default segment but belongs to user {owner} \
                     (mode {mode:04o}), who would control what you write and read there; \
                     have {remover} remove it (rm {path}), or name a segment with -n NAME"
                ),
            ));
        }
        if mode & 0o022 != 0 {
            return Err(failure(
                Kind::Failed,
                format!(
                    "refusing {target}: it is your default segment but group or others may write it \
                     (mode {mode:04o}); make it private (chmod 600 {path}), or name a shared \
                     segment with -n NAME"
                ),
            ));
        }
    }
    Ok(())
}

/// "a FIFO", "a directory", ...: what stands behind a name instead of a
/// shared memory object.
fn file_kind(kind: SFlag) -> &'static str {
    match kind {
        SFlag::S_IFIFO => "a FIFO (named pipe)",
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFLNK => "a symbolic link (not followed: it could lead anywhere)",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFCHR => "a character device",
        SFlag::S_IFBLK => "a block device",
        _ => "something other than a regular file",
    }
}

fn not_an_object(target: &Target, name: &PosixName, what: &str) -> anyhow::Error {
    let path = name.dev_shm_path();
    let remove = if what == "a directory" { "rmdir" } else { "rm" };
    failure(
        Kind::Failed,
        format!(
            "{target} is not a shared memory object: {} is {what}; remove it ({remove} {}) \
             or use another name",
            path.display(),
            path.display()
        ),
    )
}

/// Explains a failed shm_open of an existing POSIX name. What the other
/// errors mean (a directory is EINVAL from glibc, a socket ENXIO, ...) is
/// told apart with lstat, for the message only: the kernel decided.
fn open_posix_error(target: &Target, name: &PosixName, e: Errno) -> anyhow::Error {
    match e {
        // O_NOFOLLOW's answer for a symlink.
        Errno::ELOOP => not_an_object(target, name, file_kind(SFlag::S_IFLNK)),
        Errno::ENOENT | Errno::EACCES | Errno::EPERM => open_error(target, e),
        e => match lstat(&name.dev_shm_path()) {
            Ok(stat) if stat.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFREG.bits() => {
                let kind = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
                not_an_object(target, name, file_kind(kind))
            }
            _ => open_error(target, e),
        },
    }
}

/// Opens the object behind `name` for writing, creating it when missing,
/// and makes sure its space is reserved.
fn create_posix(
    target: &Target,
    name: &PosixName,
    create: &Create,
) -> anyhow::Result<(Handle, bool)> {
    let handle = |fd| Handle::Posix {
        fd,
        name: name.clone(),
    };
    for _ in 0..CREATE_ATTEMPTS {
        if !create.exclusive {
            match open_posix(target, name, Access::ReadWrite) {
                Ok(fd) => {
                    // One that someone created but never sized gets our size.
                    reserve_space(&fd, target, create.size)?;
                    return Ok((handle(fd), false));
                }
                Err(e) if kind_of(&e) == Some(Kind::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        match create_named(name, create) {
            Ok(Some(fd)) => return Ok((handle(fd), true)),
            Ok(None) if create.exclusive => return Err(exists_error(target)),
            // Someone else's came first: open that one.
            Ok(None) => {}
            Err(e) => return Err(create_error(target, create.size, e)),
        }
    }
    Err(failure(
        Kind::Failed,
        format!(
            "{target} keeps appearing and disappearing: another program is creating and removing it; \
             try again, or use another name"
        ),
    ))
}

/// Creates a POSIX object under `name` atomically: made unnamed (O_TMPFILE
/// in /dev/shm), given its exact mode, size and reserved space, and only
/// then linked under the name, which fails if the name exists. So nobody
/// ever sees it half-made, and there is never anything to undo. Returns
/// None when the name exists already.
fn create_named(name: &PosixName, create: &Create) -> Result<Option<OwnedFd>, Errno> {
    let mode = Mode::from_bits_truncate(create.mode & 0o777);
    let len = libc::off_t::try_from(create.size).map_err(|_| Errno::EFBIG)?;
    let path = name.dev_shm_path();
    let fd = match nix::fcntl::open(
        SHM_DIR,
        OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC,
        mode,
    ) {
        Ok(fd) => fd,
        // No O_TMPFILE here (old kernel, or not a tmpfs).
        Err(Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL) => {
            return create_by_rename(&path, mode, len);
        }
        Err(e) => return Err(e),
    };
    prepare_new(&fd, mode, len)?;
    let by_proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
    match nix::unistd::linkat(
        AT_FDCWD,
        by_proc.as_str(),
        AT_FDCWD,
        &path,
        AtFlags::AT_SYMLINK_FOLLOW,
    ) {
        Ok(()) => Ok(Some(fd)),
        Err(Errno::EEXIST) => Ok(None),
        // No /proc to link from.
        Err(Errno::ENOENT) if !std::path::Path::new("/proc/self/fd").exists() => {
            create_by_rename(&path, mode, len)
        }
        Err(e) => Err(e),
    }
}

/// The fallback without O_TMPFILE: prepare the object under a unique
/// temporary name, then rename it to `path` without replacing anything.
/// The temporary name is removed on every failure.
fn create_by_rename(
    path: &std::path::Path,
    mode: Mode,
    len: libc::off_t,
) -> Result<Option<OwnedFd>, Errno> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let temp = format!(
        "{SHM_DIR}/.shm-tools-new-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        crate::layout::now_ns()
    );
    let flags =
        OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::open(temp.as_str(), flags, mode)?;
    let named = prepare_new(&fd, mode, len).and_then(|()| {
        nix::fcntl::renameat2(
            AT_FDCWD,
            temp.as_str(),
            AT_FDCWD,
            path,
            RenameFlags::RENAME_NOREPLACE,
        )
    });
    match named {
        Ok(()) => Ok(Some(fd)),
        Err(e) => {
            // Ours alone: nobody else knows the temporary name. A failure
            // to remove it matters less than the error that explains.
            let _ = nix::unistd::unlink(temp.as_str());
            if e == Errno::EEXIST { Ok(None) } else { Err(e) }
        }
    }
}

/// Gives a new, still private object its exact mode (the umask is not
/// applied, as shmget does it) and its size, with the space reserved.
fn prepare_new(fd: &OwnedFd, mode: Mode, len: libc::off_t) -> Result<(), Errno> {
    fchmod(fd, mode)?;
    match nix::fcntl::fallocate(fd, FallocateFlags::empty(), 0, len) {
        // A file system without fallocate: sized, if not reserved.
        Err(Errno::EOPNOTSUPP) => nix::unistd::ftruncate(fd, len),
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
fn reserve_space(fd: &OwnedFd, target: &Target, size_if_empty: usize) -> anyhow::Result<()> {
    let size = match posix_size(fd, target)? {
        0 => size_if_empty,
        size => size,
    };
    if size == 0 {
        return Ok(());
    }
    let len = libc::off_t::try_from(size).map_err(|_| space_error(target, size, Errno::EFBIG))?;
    match nix::fcntl::fallocate(fd, FallocateFlags::empty(), 0, len) {
        Ok(()) | Err(Errno::EOPNOTSUPP) => Ok(()),
        Err(e @ (Errno::ENOSPC | Errno::EFBIG)) => Err(space_error(target, size, e)),
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "cannot reserve space for the {size} bytes of {target}"
        ))),
    }
}

fn space_error(target: &Target, size: usize, e: Errno) -> anyhow::Error {
    let why = no_space_because(e);
    failure(
        Kind::Failed,
        format!(
            "cannot reserve the {size} bytes of {target}: {why}; free space or raise the limit and try again \
             — nothing was written"
        ),
    )
}

/// shm_unlink of `name`, but only while it still leads to the object `fd`
/// holds (same device and inode). See [`Segment::remove`] for what remains.
fn remove_posix(fd: &OwnedFd, name: &PosixName) -> Result<(), Errno> {
    let ours = fstat(fd)?;
    match lstat(&name.dev_shm_path()) {
        Ok(there) if there.st_dev == ours.st_dev && there.st_ino == ours.st_ino => {}
        // Gone, or another object now: ours cannot be reached by name any more.
        Ok(_) | Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    }
    match nix::sys::mman::shm_unlink(name.shm_open_name().as_str()) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

fn posix_size(fd: &OwnedFd, target: &Target) -> anyhow::Result<usize> {
    let stat = fstat(fd).map_err(|e| open_error(target, e))?;
    usize::try_from(stat.st_size)
        .map_err(|_| failure(Kind::Failed, format!("{target} reports a negative size")))
}

/// Who owns a segment and with which mode, when we can find out without
/// permission on it: /proc/sysvipc/shm and /dev/shm are world-readable.
fn owner_and_mode(target: &Target) -> Option<(u32, u32)> {
    match target {
        Target::Name(name) => {
            use std::os::unix::fs::MetadataExt;
            let meta = std::fs::symlink_metadata(name.dev_shm_path()).ok()?;
            Some((meta.uid(), meta.mode() & 0o7777))
        }
        Target::Key { key, .. } => owner_and_mode_of(crate::sysvipc::by_key(*key)),
        Target::Id(id) => owner_and_mode_of(crate::sysvipc::by_id(*id)),
    }
}

fn owner_and_mode_of(row: Option<crate::sysvipc::Row>) -> Option<(u32, u32)> {
    row.map(|row| (row.stat.uid, row.stat.mode & 0o7777))
}

use crate::users::user_name;

/// Lets tests widen the moment in which a System V key is free during
/// `--replace`: with `SHM_TOOLS_TEST_REPLACE_GAP_US` set, the replacement
/// sleeps that long after removing the old segment and before creating
/// the new one. Only with the `test-hooks` feature, which `cargo test` enables.
#[cfg(feature = "test-hooks")]
fn test_hook_replace_gap() {
    if let Some(us) = std::env::var_os("SHM_TOOLS_TEST_REPLACE_GAP_US")
        .and_then(|v| v.to_str().and_then(|s| s.parse::<u64>().ok()))
    {
        std::thread::sleep(Duration::from_micros(us));
    }
}

/// Without the `test-hooks` feature (every build users make) there is no
/// hook at all.
#[cfg(not(feature = "test-hooks"))]
fn test_hook_replace_gap() {}

/// Owner and creator uid of the segment under `key`, from the
/// world-readable /proc/sysvipc/shm (no permission on it needed).
fn sysv_creator(key: ShmKey) -> Option<(u32, u32)> {
    crate::sysvipc::by_key(key).map(|row| (row.stat.uid, row.stat.cuid))
}

fn permission_error(target: &Target, action: &str) -> anyhow::Error {
    let owner = owner_and_mode(target).map_or_else(String::new, |(uid, mode)| {
        format!(" (owner {}, mode {mode:04o})", user_name(uid))
    });
    failure(
        Kind::Failed,
        format!(
            "permission denied: cannot {action} {target}{owner}; run as its owner or have them widen its mode"
        ),
    )
}

fn open_error(target: &Target, e: Errno) -> anyhow::Error {
    match e {
        Errno::EACCES | Errno::EPERM => permission_error(target, "open"),
        // A bad id is EINVAL (never existed) or EIDRM (removed).
        Errno::ENOENT | Errno::EINVAL | Errno::EIDRM => {
            let hint = match target {
                Target::Id(_) => "ipcs -m lists the ids that exist".to_owned(),
                Target::Name(name) if name.origin() == Origin::DefaultStream => {
                    "start a stream with: producer | shm-write --stream".to_owned()
                }
                _ => format!(
                    "create it with: echo hello | {}",
                    target.command("shm-write")
                ),
            };
            failure(
                Kind::NotFound,
                format!("no shared memory segment with {target}; {hint}"),
            )
        }
        e => anyhow::Error::new(e).context(format!("cannot open {target}")),
    }
}

fn exists_error(target: &Target) -> anyhow::Error {
    failure(
        Kind::Failed,
        format!(
            "{target} already exists and -x/--exclusive was given; drop -x to write into it, \
             or remove it first with: {} > /dev/null",
            target.command("shm-read --remove")
        ),
    )
}

/// A failed `--replace` before anything was removed: which limit the new
/// size runs into, with its value.
fn replace_error(target: &Target, size: usize, huge: bool, e: Errno) -> anyhow::Error {
    let unchanged = "; its content is unchanged";
    if huge && e == Errno::ENOMEM {
        return failure(
            Kind::Failed,
            format!(
                "cannot replace {target} with a {size}-byte segment of huge pages: not enough free \
                 huge pages (vm.nr_hugepages is {}){unchanged}; raise it with sysctl vm.nr_hugepages",
                proc_value("/proc/sys/vm/nr_hugepages")
            ),
        );
    }
    limit_error(target, size, e, "replace", "; its content is unchanged")
}

/// Removing a System V segment needs its owner, its creator or root;
/// its mode does not matter.
fn replace_permission_error(target: &Target) -> anyhow::Error {
    let owner = owner_and_mode(target).map_or_else(String::new, |(uid, mode)| {
        format!(", owner {}, mode {mode:04o}", user_name(uid))
    });
    failure(
        Kind::Failed,
        format!(
            "permission denied: --replace must remove {target}{owner}, which only its owner, its \
             creator or root may do, whatever its mode; its content is unchanged. Ask its owner to \
             replace it, or write without --replace"
        ),
    )
}

/// The trimmed content of a /proc file, or "?" when it cannot be read.
fn proc_value(path: &str) -> String {
    std::fs::read_to_string(path).map_or_else(|_| "?".into(), |s| s.trim().to_owned())
}

/// Explains a failed creation with the limit behind it.
fn create_error(target: &Target, size: usize, e: Errno) -> anyhow::Error {
    limit_error(target, size, e, "create", "")
}

/// Explains a failed creation (by `action`, "create" or "replace") with the
/// limit behind it and its value; `unchanged` ends the first clause.
fn limit_error(
    target: &Target,
    size: usize,
    e: Errno,
    action: &str,
    unchanged: &str,
) -> anyhow::Error {
    let limit = |file: &str| proc_value(&format!("/proc/sys/kernel/{file}"));
    let message = match (target, e) {
        (Target::Name(_), Errno::ENOSPC) => format!(
            "cannot {action} {target} with {size} bytes: not enough space in /dev/shm ({}){unchanged}; \
             choose a smaller --size or free space (its size is a tmpfs mount option)",
            dev_shm_space()
        ),
        (Target::Name(_), Errno::EFBIG) => format!(
            "cannot {action} {target} with {size} bytes: larger than this process may make a file \
             ({}){unchanged}; raise it (ulimit -f) or choose a smaller --size",
            file_size_limit()
        ),
        (Target::Name(_), Errno::ENOENT) => format!(
            "cannot {action} {target}: {SHM_DIR} does not exist, and POSIX shared memory lives there; \
             mount a tmpfs on it (mount -t tmpfs tmpfs {SHM_DIR}) or use a System V key (-k KEY)"
        ),
        (_, Errno::EINVAL) => format!(
            "cannot {action} {target} with {size} bytes: larger than the kernel's segment size limit \
             (kernel.shmmax is {}){unchanged}; choose a smaller --size or raise it with sysctl kernel.shmmax",
            limit("shmmax")
        ),
        (_, Errno::ENOSPC) => format!(
            "cannot {action} {target} with {size} bytes: the system-wide shared memory limit is reached \
             (kernel.shmall is {} pages, kernel.shmmni is {} segments){unchanged}; remove unused segments \
             (ipcs -m, ipcrm) or raise the limits with sysctl",
            limit("shmall"),
            limit("shmmni")
        ),
        (_, Errno::ENOMEM) => {
            format!("cannot {action} {target} with {size} bytes: not enough memory{unchanged}")
        }
        (_, Errno::EACCES | Errno::EPERM) => return permission_error(target, action),
        (_, e) => format!(
            "cannot {action} {target} with {size} bytes: {}{unchanged}",
            e.desc()
        ),
    };
    failure(Kind::Failed, message)
}

/// "1 MiB, 12 KiB free": /dev/shm's size and free space, for messages.
fn dev_shm_space() -> String {
    match nix::sys::statvfs::statvfs(SHM_DIR) {
        Ok(vfs) => {
            let block = vfs.fragment_size();
            format!(
                "{SHM_DIR} is {}, {} free",
                indicatif::HumanBytes(vfs.blocks().saturating_mul(block)),
                indicatif::HumanBytes(vfs.blocks_available().saturating_mul(block))
            )
        }
        Err(_) => format!("df -h {SHM_DIR}"),
    }
}

/// "the file size limit (ulimit -f) is 0 bytes": RLIMIT_FSIZE, for messages.
#[must_use]
pub fn file_size_limit() -> String {
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_FSIZE) {
        Ok((soft, _)) if soft != nix::libc::RLIM_INFINITY => {
            format!("the file size limit (ulimit -f) is {soft} bytes")
        }
        _ => "the file size limit, ulimit -f".to_owned(),
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
        let mode = Mode::from_bits_truncate(0o640);
        for by_rename in [false, true] {
            let first = if by_rename {
                create_by_rename(&path, mode, 8192)
            } else {
                create_named(&name, &create)
            };
            let fd = first.unwrap().expect("the name was free");
            let stat = fstat(&fd).unwrap();
            assert_eq!(stat.st_size, 8192);
            assert_eq!(stat.st_mode & 0o777, 0o640, "umask not applied");
            assert!(stat.st_blocks * 512 >= 8192, "space is reserved");
            let again = if by_rename {
                create_by_rename(&path, mode, 8192)
            } else {
                create_named(&name, &create)
            };
            assert!(
                again.unwrap().is_none(),
                "an existing name is never replaced"
            );
            assert_eq!(leftovers(), 0, "the temporary name is gone");
            nix::unistd::unlink(&path).unwrap();
        }
    }
}
