//! The messages of [`SegmentError`]: what went wrong finding, creating,
//! growing, replacing or removing a segment, and what to do about it.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;

use super::Classify;
use crate::address::{Origin, Target};
use crate::error::Kind;
use crate::segment::{Action, Doing, FileKind, Kept, SHM_DIR, SegmentError, SpaceNeed};
use crate::users::user_name;

impl Classify for SegmentError {
    fn kind(&self) -> Kind {
        match self {
            SegmentError::NotFound { .. } | SegmentError::Empty { .. } => Kind::NotFound,
            SegmentError::PrivateKey
            | SegmentError::NotReplaceable { .. }
            | SegmentError::SharedDefault { .. } => Kind::Usage,
            SegmentError::TimedOut { .. } => Kind::TimedOut,
            _ => Kind::Failed,
        }
    }
}

impl fmt::Display for SegmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SegmentError::NotFound { target } => not_found(f, target),
            SegmentError::Empty { target } => write!(
                f,
                "{target} exists but is 0 bytes long: nothing has been written to it yet"
            ),
            SegmentError::PrivateKey => f.write_str(
                "key 0x00000000 is IPC_PRIVATE and names no existing segment; address it by id instead (-i, ipcs -m lists them)",
            ),
            SegmentError::PermissionDenied {
                target,
                action,
                owner,
            } => permission_denied(f, target, *action, *owner),
            SegmentError::ReplacePermission { target, owner } => {
                replace_permission(f, target, *owner)
            }
            SegmentError::Os { target, doing, .. } => os(f, target, *doing),
            SegmentError::NegativeSize { target } => write!(f, "{target} reports a negative size"),
            SegmentError::NoSpace {
                target,
                need,
                errno,
            } => no_space(f, target, *need, *errno),
            SegmentError::Limit {
                target,
                size,
                action,
                huge,
                errno,
            } => limit(f, target, *size, *action, *huge, *errno),
            SegmentError::NotOursToGrow {
                target,
                size,
                owner,
            } => not_ours_to_grow(f, target, *size, *owner),
            SegmentError::SysvCannotGrow { target } => {
                write!(f, "{target} is a System V segment, which cannot grow")
            }
            SegmentError::NotReplaceable { target } => not_replaceable(f, target),
            SegmentError::KeyTaken { target, who, kept } => key_taken(f, target, *who, *kept),
            SegmentError::Restored { target, .. } => restored(f, target, None),
            SegmentError::NotRestored { target, errno, .. } => restored(f, target, Some(*errno)),
            SegmentError::Churn { target } => churn(f, target),
            SegmentError::Exists { target } => write!(
                f,
                "{target} already exists and -x/--exclusive was given; drop -x to write into it, \
                 or remove it first with: {} > /dev/null",
                target.command("shm-read --remove")
            ),
            SegmentError::SharedDefault { target, mode } => write!(
                f,
                "-m {mode:04o} would let other users write {target}, your default segment, which must \
                 stay private; for a shared segment give it a name: -n NAME -m {mode:04o}"
            ),
            SegmentError::ForeignDefault {
                target,
                owner,
                mode,
                path,
            } => foreign_default(f, target, *owner, *mode, path),
            SegmentError::WritableDefault { target, mode, path } => write!(
                f,
                "refusing {target}: it is your default segment but group or others may write it \
                 (mode {mode:04o}); make it private (chmod 600 {}), or name a shared \
                 segment with -n NAME",
                path.display()
            ),
            SegmentError::NotAnObject { target, path, kind } => {
                not_an_object(f, target, path, *kind)
            }
            SegmentError::TimedOut {
                target,
                timeout,
                what,
            } => timed_out(f, target, *timeout, what),
        }
    }
}

/// The kernel refused this user `action`; who owns it, and what to do.
fn permission_denied(
    f: &mut fmt::Formatter<'_>,
    target: &Target,
    action: Action,
    owner: Option<(u32, u32)>,
) -> fmt::Result {
    let owner = owner.map_or_else(String::new, |(uid, mode)| {
        format!(" (owner {}, mode {mode:04o})", user_name(uid))
    });
    write!(
        f,
        "permission denied: cannot {action} {target}{owner}; run as its owner or have them widen its mode"
    )
}

/// Removing a System V segment needs its owner, its creator or root;
/// its mode does not matter.
fn replace_permission(
    f: &mut fmt::Formatter<'_>,
    target: &Target,
    owner: Option<(u32, u32)>,
) -> fmt::Result {
    let owner = owner.map_or_else(String::new, |(uid, mode)| {
        format!(", owner {}, mode {mode:04o}", user_name(uid))
    });
    write!(
        f,
        "permission denied: --replace must remove {target}{owner}, which only its owner, its \
         creator or root may do, whatever its mode; its content is unchanged. Ask its owner to \
         replace it, or write without --replace"
    )
}

/// What failed, before the errno that says why.
fn os(f: &mut fmt::Formatter<'_>, target: &Target, doing: Doing) -> fmt::Result {
    match doing {
        Doing::Open => write!(f, "cannot open {target}"),
        Doing::Remove => write!(f, "cannot remove {target}"),
        Doing::Resize => write!(f, "cannot grow {target}"),
        Doing::Grow(size) => write!(f, "cannot grow {target} to {size} bytes"),
        Doing::Reserve(size) => write!(f, "cannot reserve space for the {size} bytes of {target}"),
        Doing::RemoveToReplace => write!(
            f,
            "cannot remove {target} to replace it; its content is unchanged"
        ),
    }
}

/// Others keep removing and creating the segment.
fn churn(f: &mut fmt::Formatter<'_>, target: &Target) -> fmt::Result {
    match target {
        Target::Name(_) => write!(
            f,
            "{target} keeps appearing and disappearing: another program is creating and removing it; \
             try again, or use another name"
        ),
        _ => write!(
            f,
            "{target} keeps being removed and created again by others; try again"
        ),
    }
}

/// The per-user default belongs to another user: who may remove it.
fn foreign_default(
    f: &mut fmt::Formatter<'_>,
    target: &Target,
    owner: u32,
    mode: u32,
    path: &Path,
) -> fmt::Result {
    let name = user_name(owner);
    let remover = if owner == 0 {
        "root".to_owned()
    } else {
        format!("{name} or root")
    };
    write!(
        f,
        "refusing {target}: it is your default segment but belongs to user {name} \
         (mode {mode:04o}), who would control what you write and read there; \
         have {remover} remove it (rm {}), or name a segment with -n NAME",
        path.display()
    )
}

/// Something else stands behind the name: what, and how to remove it.
fn not_an_object(
    f: &mut fmt::Formatter<'_>,
    target: &Target,
    path: &Path,
    kind: FileKind,
) -> fmt::Result {
    let remove = if kind == FileKind::Directory {
        "rmdir"
    } else {
        "rm"
    };
    write!(
        f,
        "{target} is not a shared memory object: {} is {}; remove it ({remove} {}) \
         or use another name",
        path.display(),
        file_kind(kind),
        path.display()
    )
}

/// The exit-124 message: what was awaited, and for how long.
fn timed_out(
    f: &mut fmt::Formatter<'_>,
    target: &Target,
    timeout: Option<Duration>,
    what: &str,
) -> fmt::Result {
    // "1m 30s", "0s": as a person writes it, not Debug's "90s" or "0ns".
    let after = timeout.map_or_else(String::new, |t| {
        format!(" after {}", humantime::format_duration(t))
    });
    write!(f, "timed out{after} waiting for {target} {what}")
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Open => "open",
            Action::Remove => "remove",
            Action::Create => "create",
            Action::Replace => "replace",
        })
    }
}

/// "no shared memory segment with …", with how to make one.
fn not_found(f: &mut fmt::Formatter<'_>, target: &Target) -> fmt::Result {
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
    write!(f, "no shared memory segment with {target}; {hint}")
}

/// "a FIFO", "a directory", ...: what stands behind a name instead of a
/// shared memory object.
fn file_kind(kind: FileKind) -> &'static str {
    match kind {
        FileKind::Fifo => "a FIFO (named pipe)",
        FileKind::Directory => "a directory",
        FileKind::Symlink => "a symbolic link (not followed: it could lead anywhere)",
        FileKind::Socket => "a socket",
        FileKind::CharDevice => "a character device",
        FileKind::BlockDevice => "a block device",
        FileKind::Other => "something other than a regular file",
    }
}

/// Reserving or growing failed for the file size limit (EFBIG) or a full
/// /dev/shm, each with its value.
fn no_space(
    f: &mut fmt::Formatter<'_>,
    target: &Target,
    need: SpaceNeed,
    errno: Errno,
) -> fmt::Result {
    let why = if errno == Errno::EFBIG {
        format!(
            "larger than this process may make a file ({})",
            file_size_limit()
        )
    } else {
        format!(
            "not enough space in /dev/shm ({}; its size is a tmpfs mount option)",
            dev_shm_space()
        )
    };
    match need {
        SpaceNeed::Grow { from, to } => write!(
            f,
            "cannot grow {target} from {from} to {to} bytes: {why}; free space or raise the limit and try again — its content is unchanged"
        ),
        SpaceNeed::Reserve(size) => write!(
            f,
            "cannot reserve the {size} bytes of {target}: {why}; free space or raise the limit and try again \
             — nothing was written"
        ),
    }
}

/// A failed creation (to create, or to replace) with the limit
/// behind it and its value.
fn limit(
    f: &mut fmt::Formatter<'_>,
    target: &Target,
    size: usize,
    action: Action,
    huge: bool,
    errno: Errno,
) -> fmt::Result {
    let unchanged = if action == Action::Replace {
        "; its content is unchanged"
    } else {
        ""
    };
    if huge && errno == Errno::ENOMEM {
        return write!(
            f,
            "cannot {action} {target} with a {size}-byte segment of huge pages: not enough free \
             huge pages (vm.nr_hugepages is {}){unchanged}; raise it with sysctl vm.nr_hugepages",
            proc_value("/proc/sys/vm/nr_hugepages")
        );
    }
    let kernel = |file: &str| proc_value(&format!("/proc/sys/kernel/{file}"));
    match (target, errno) {
        (Target::Name(_), Errno::ENOSPC) => write!(
            f,
            "cannot {action} {target} with {size} bytes: not enough space in /dev/shm ({}){unchanged}; \
             choose a smaller --size or free space (its size is a tmpfs mount option)",
            dev_shm_space()
        ),
        (Target::Name(_), Errno::EFBIG) => write!(
            f,
            "cannot {action} {target} with {size} bytes: larger than this process may make a file \
             ({}){unchanged}; raise it (ulimit -f) or choose a smaller --size",
            file_size_limit()
        ),
        (Target::Name(_), Errno::ENOENT) => write!(
            f,
            "cannot {action} {target}: {SHM_DIR} does not exist, and POSIX shared memory lives there; \
             mount a tmpfs on it (mount -t tmpfs tmpfs {SHM_DIR}) or use a System V key (-k KEY)"
        ),
        (_, Errno::EINVAL) => write!(
            f,
            "cannot {action} {target} with {size} bytes: larger than the kernel's segment size limit \
             (kernel.shmmax is {}){unchanged}; choose a smaller --size or raise it with sysctl kernel.shmmax",
            kernel("shmmax")
        ),
        (_, Errno::ENOSPC) => write!(
            f,
            "cannot {action} {target} with {size} bytes: the system-wide shared memory limit is reached \
             (kernel.shmall is {} pages, kernel.shmmni is {} segments){unchanged}; remove unused segments \
             (ipcs -m, ipcrm) or raise the limits with sysctl",
            kernel("shmall"),
            kernel("shmmni")
        ),
        (_, Errno::ENOMEM) => write!(
            f,
            "cannot {action} {target} with {size} bytes: not enough memory{unchanged}"
        ),
        (_, e) => write!(
            f,
            "cannot {action} {target} with {size} bytes: {}{unchanged}",
            e.desc()
        ),
    }
}

/// Another user's object that a snapshot does not fit.
fn not_ours_to_grow(
    f: &mut fmt::Formatter<'_>,
    target: &Target,
    size: usize,
    owner: u32,
) -> fmt::Result {
    write!(
        f,
        "the input does not fit {target} ({size} bytes), and it belongs to user {}, so it is not ours to grow; its content is unchanged. Ask its owner to write it, or write less",
        user_name(owner)
    )
}

/// `--replace` of a segment that keeps its identity or grows instead.
fn not_replaceable(f: &mut fmt::Formatter<'_>, target: &Target) -> fmt::Result {
    let why = match target {
        Target::Id(_) => "is addressed by id, and keeps its identity: it is never replaced",
        _ => "is a POSIX segment, which grows in place instead",
    };
    write!(
        f,
        "--replace replaces a System V segment addressed by key (-k or -f); {target} {why}"
    )
}

/// A replacement that failed after the removal: whether the old content
/// went back under its key, or why it could not (`lost`).
fn restored(f: &mut fmt::Formatter<'_>, target: &Target, lost: Option<Errno>) -> fmt::Result {
    match lost {
        None => write!(
            f,
            "{target} could not be replaced, so its old content was put back under its key"
        ),
        Some(errno) => write!(
            f,
            "{target} was removed to be replaced and its old content could not be put back \
             ({}): it lives on only in programs still attached to it",
            errno.desc()
        ),
    }
}

/// Another user's segment took the key during a replacement.
fn key_taken(
    f: &mut fmt::Formatter<'_>,
    target: &Target,
    who: Option<(u32, u32)>,
    kept: Kept,
) -> fmt::Result {
    let who = who.map_or_else(
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
    let kept = match kept {
        Kept::Copied(id) => format!(
            "its old content is kept in a new unnamed segment, id {id} (read it with \
             shm-read -i {id}; remove it with shm-read -i {id} --remove > /dev/null)"
        ),
        Kept::Lost(e) => format!(
            "its old content could not be kept ({}): it lives on only in programs still \
             attached to it",
            e.desc()
        ),
        Kept::RemovedByOthers => "another writer had removed the old segment already".to_owned(),
    };
    write!(
        f,
        "{target} was taken by {who} in the moment between removing the old segment and \
         creating its replacement (a System V replacement cannot be atomic); nothing was \
         written and their segment was left alone; {kept}"
    )
}

/// The trimmed content of a /proc file, or "?" when it cannot be read.
fn proc_value(path: &str) -> String {
    std::fs::read_to_string(path).map_or_else(|_| "?".into(), |s| s.trim().to_owned())
}

/// "/dev/shm is 1 MiB, 12 KiB free": /dev/shm's size and free space.
fn dev_shm_space() -> String {
    match crate::sys::fs_space(SHM_DIR) {
        Ok(space) => format!(
            "{SHM_DIR} is {}, {} free",
            indicatif::HumanBytes(space.size),
            indicatif::HumanBytes(space.available)
        ),
        Err(_) => format!("df -h {SHM_DIR}"),
    }
}

/// "the file size limit (ulimit -f) is 0 bytes": RLIMIT_FSIZE, for messages.
fn file_size_limit() -> String {
    match crate::sys::file_size_limit() {
        Some(soft) => format!("the file size limit (ulimit -f) is {soft} bytes"),
        None => "the file size limit, ulimit -f".to_owned(),
    }
}
