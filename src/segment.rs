//! How a segment is found, created, attached and removed.
//!
//! Contract: [`Segment::open`] attaches an existing segment and never
//! creates or removes one; [`Segment::open_or_create`] creates when missing
//! and removes what it created if it fails before handing it over. Every
//! error names the segment and says what to do. Dropping a `Segment`
//! detaches it; only [`Segment::remove`] destroys it.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc;
use nix::sys::stat::{FileStat, Mode, fchmod, fstat};

use crate::address::{PosixName, Target};
use crate::error::{Kind, failure, kind_of};
use crate::os::{self, Mapping, ShmId, ShmKey, SysvStat};
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

/// What removes a half-made segment.
enum Undo {
    Sysv(ShmId),
    Posix(String),
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
}

impl Segment {
    /// Attaches an existing segment.
    pub fn open(target: &Target, access: Access) -> anyhow::Result<Segment> {
        let handle = match target {
            Target::Key { key, .. } => Handle::Sysv(lookup_key(target, *key)?, None),
            Target::Id(id) => Handle::Sysv(*id, None),
            Target::Name(name) => {
                let flags = match access {
                    Access::ReadOnly => OFlag::O_RDONLY,
                    Access::ReadWrite => OFlag::O_RDWR,
                };
                let fd =
                    nix::sys::mman::shm_open(name.shm_open_name().as_str(), flags, Mode::empty())
                        .map_err(|e| open_error(target, e))?;
                Handle::Posix {
                    fd,
                    name: name.clone(),
                }
            }
        };
        Segment::attach(target, handle, access)
    }

    /// Attaches the segment, creating it first when it does not exist.
    /// Returns whether this call created it.
    pub fn open_or_create(target: &Target, create: &Create) -> anyhow::Result<(Segment, bool)> {
        let mode = libc::c_int::try_from(create.mode & 0o777).unwrap_or(0o600);
        let (handle, created) = match target {
            Target::Id(id) => (Handle::Sysv(*id, None), false),
            Target::Key { key, .. } => {
                let flags = libc::IPC_CREAT | libc::IPC_EXCL | mode;
                match os::shmget(*key, create.size, flags) {
                    Ok(id) => {
                        if *key == ShmKey::PRIVATE {
                            // What ipcmk prints, so scripts can pick the id up.
                            eprintln!("Shared memory id: {id}");
                        }
                        (Handle::Sysv(id, None), true)
                    }
                    Err(Errno::EEXIST) if create.exclusive => return Err(exists_error(target)),
                    Err(Errno::EEXIST) => (Handle::Sysv(lookup_key(target, *key)?, None), false),
                    Err(e) => return Err(create_error(target, create.size, e)),
                }
            }
            Target::Name(name) => create_posix(target, name, create)?,
        };
        let undo = match &handle {
            Handle::Sysv(id, _) => Undo::Sysv(*id),
            Handle::Posix { name, .. } => Undo::Posix(name.shm_open_name()),
        };
        match Segment::attach(target, handle, Access::ReadWrite) {
            Ok(segment) => Ok((segment, created)),
            Err(e) => {
                if created {
                    // Half-made and ours: remove it. A failure here only adds
                    // a leftover to the original error, which says more.
                    let _ = match undo {
                        Undo::Sysv(id) => os::shm_remove(id),
                        Undo::Posix(name) => nix::sys::mman::shm_unlink(name.as_str()),
                    };
                }
                Err(e)
            }
        }
    }

    fn attach(target: &Target, mut handle: Handle, access: Access) -> anyhow::Result<Segment> {
        let writable = access == Access::ReadWrite;
        let mapping = match &mut handle {
            Handle::Sysv(id, before) => {
                let stat = os::shm_stat(*id).map_err(|e| open_error(target, e))?;
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
                Mapping::map_fd(fd.as_fd(), size, writable).map_err(|e| open_error(target, e))?
            }
        };
        Ok(Segment {
            target: target.clone(),
            handle,
            mapping,
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
                    None => os::shm_stat(*id).map_err(|e| open_error(&self.target, e))?,
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
            Handle::Sysv(id, _) => os::shm_stat(*id).map_or(true, |s| s.mode & os::SHM_DEST != 0),
            Handle::Posix { fd, .. } => fstat(fd).map_or(true, |s| s.st_nlink == 0),
        }
    }

    /// Removes the segment: IPC_RMID (it disappears when the last process
    /// detaches) or shm_unlink.
    pub fn remove(&self) -> anyhow::Result<()> {
        let result = match &self.handle {
            Handle::Sysv(id, _) => os::shm_remove(*id),
            Handle::Posix { name, .. } => nix::sys::mman::shm_unlink(name.shm_open_name().as_str()),
        };
        result.map_err(|e| match e {
            Errno::EPERM | Errno::EACCES => permission_error(&self.target, "remove"),
            e => anyhow::Error::new(e).context(format!("cannot remove {}", self.target)),
        })
    }
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
    os::shmget(key, 0, 0).map_err(|e| open_error(target, e))
}

fn create_posix(
    target: &Target,
    name: &PosixName,
    create: &Create,
) -> anyhow::Result<(Handle, bool)> {
    let mode = Mode::from_bits_truncate(create.mode & 0o777);
    let open_name = name.shm_open_name();
    let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL;
    let (fd, created) = match nix::sys::mman::shm_open(open_name.as_str(), flags, mode) {
        Ok(fd) => (fd, true),
        Err(Errno::EEXIST) if create.exclusive => return Err(exists_error(target)),
        Err(Errno::EEXIST) => {
            let fd = nix::sys::mman::shm_open(open_name.as_str(), OFlag::O_RDWR, Mode::empty())
                .map_err(|e| open_error(target, e))?;
            (fd, false)
        }
        Err(e) => return Err(create_error(target, create.size, e)),
    };
    // A new object, or one someone created but never sized, gets its size
    // now; the space is reserved so a full /dev/shm fails here, not as a
    // SIGBUS in the middle of a write.
    if created || posix_size(&fd, target)? == 0 {
        let sized = (|| {
            if created {
                // shm_open applied the umask; -m is meant exactly, as shmget does it.
                fchmod(&fd, mode)?;
            }
            let len = libc::off_t::try_from(create.size).map_err(|_| Errno::EFBIG)?;
            nix::unistd::ftruncate(&fd, len)?;
            nix::fcntl::posix_fallocate(&fd, 0, len)
        })();
        if let Err(e) = sized {
            if created {
                // Half-made: ours to remove. Failing to is harmless to report
                // less than the original error.
                let _ = nix::sys::mman::shm_unlink(open_name.as_str());
            }
            return Err(create_error(target, create.size, e));
        }
    }
    Ok((
        Handle::Posix {
            fd,
            name: name.clone(),
        },
        created,
    ))
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
            let meta = std::fs::metadata(name.dev_shm_path()).ok()?;
            Some((meta.uid(), meta.mode() & 0o7777))
        }
        Target::Key { key, .. } => sysvipc_row(|k, _| k == key.as_raw()),
        Target::Id(id) => sysvipc_row(|_, i| i == id.as_raw()),
    }
}

fn sysvipc_row(matches: impl Fn(i32, i32) -> bool) -> Option<(u32, u32)> {
    let table = std::fs::read_to_string("/proc/sysvipc/shm").ok()?;
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let key: i32 = cols.first()?.parse().ok()?;
        let id: i32 = cols.get(1)?.parse().ok()?;
        let perms = u32::from_str_radix(cols.get(2)?, 8).ok()?;
        let uid: u32 = cols.get(7)?.parse().ok()?;
        matches(key, id).then_some((uid, perms & 0o7777))
    })
}

/// The user name for `uid`, or the number when it has none.
#[must_use]
pub fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name)
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
                _ => format!("create it with: echo hello | shm-write {}", target.flag()),
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
             or remove it first with: shm-read --remove {} > /dev/null",
            target.flag()
        ),
    )
}

/// Explains a failed creation with the limit behind it.
fn create_error(target: &Target, size: usize, e: Errno) -> anyhow::Error {
    let limit = |file: &str| {
        std::fs::read_to_string(format!("/proc/sys/kernel/{file}"))
            .map_or_else(|_| "?".into(), |s| s.trim().to_owned())
    };
    let message = match (target, e) {
        (Target::Name(_), Errno::ENOSPC | Errno::EFBIG) => format!(
            "cannot create {target} with {size} bytes: not enough space in /dev/shm (df -h /dev/shm; \
             its size is a tmpfs mount option); choose a smaller --size or free space"
        ),
        (_, Errno::EINVAL) => format!(
            "cannot create {target} with {size} bytes: outside the kernel's segment size limits \
             (kernel.shmmax = {}); choose another --size or raise it with sysctl kernel.shmmax",
            limit("shmmax")
        ),
        (_, Errno::ENOSPC) => format!(
            "cannot create {target} with {size} bytes: the system-wide shared memory limit is reached \
             (kernel.shmall = {} pages, kernel.shmmni = {} segments); remove unused segments (ipcs -m, ipcrm) \
             or raise the limits with sysctl",
            limit("shmall"),
            limit("shmmni")
        ),
        (_, Errno::EACCES | Errno::EPERM) => return permission_error(target, "create"),
        (_, e) => format!("cannot create {target} with {size} bytes: {}", e.desc()),
    };
    failure(Kind::Failed, message)
}
