//! The messages of [`LogError`]: what is wrong with a log or its writers,
//! and what to do about it.

use std::fmt;

use super::Classify;
use crate::address::Target;
use crate::error::Kind;
use crate::layout::Layout;
use crate::layout::log::{LogError, WriterWait};

impl Classify for LogError {
    fn is_out_of_bounds(&self) -> bool {
        // The layout's own answer (an inherent method).
        LogError::is_out_of_bounds(self)
    }

    fn kind(&self) -> Kind {
        match self {
            LogError::Layout(e) => e.kind(),
            _ => Kind::Failed,
        }
    }
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::Layout(e) => e.fmt(f),
            LogError::Access(e) => e.fmt(f),
            LogError::NotALog { target } => write!(
                f,
                "{target} is not a log; start one with: producer | {}",
                target.command("shm-write --lines")
            ),
            LogError::OtherLayout { target, found } => other_layout(f, target, *found),
            LogError::TooSmall {
                target,
                size,
                header,
                created,
            } => too_small(f, target, *size, *header, *created),
            LogError::Corrupt { target, what } => write!(
                f,
                "{target} has a corrupt log header ({what}); read it with --all, or remove it and start \
                 the log again"
            ),
            LogError::Overtaken {
                target,
                secs,
                larger_log_helps,
            } => {
                write!(
                    f,
                    "writers overwrote {target} faster than it could be scanned for {secs}s; try again"
                )?;
                if *larger_log_helps {
                    write!(f, ", or use a larger log")?;
                }
                Ok(())
            }
            LogError::FollowerLock {
                target,
                taking: true,
                ..
            } => write!(f, "cannot take a follower lock on {target}"),
            LogError::FollowerLock { target, .. } => write!(
                f,
                "cannot ask the kernel about the follower locks of {target}"
            ),
            LogError::LockHeld { target, tid, secs } => write!(
                f,
                "the write lock on {target} has been held by thread {tid} (in its PID namespace) for \
                 {secs}s, and it is not waiting for a lossless follower; nothing was appended by this \
                 writer after that. The holder may be stopped (kill -CONT it), stuck (kill it: a dead \
                 holder's lock is taken over), or, if no such thread lives, the lock word is stale: \
                 remove the log and start it again"
            ),
            LogError::RecordTooLarge { target, len, max } => write!(
                f,
                "a record of {len} bytes does not fit {target}, whose records hold at most {max} bytes"
            ),
        }
    }
}

/// A `--lines` writer found another layout where it would make a log.
fn other_layout(f: &mut fmt::Formatter<'_>, target: &Target, found: Layout) -> fmt::Result {
    let remove = target.command("shm-read --remove");
    match found {
        Layout::Snapshot => write!(
            f,
            "{target} is a snapshot (written by shm-write without --lines), not a log; \
             --lines appends records to a log: use another address, or remove it first \
             ({remove} > /dev/null)"
        ),
        Layout::Stream => write!(
            f,
            "{target} is a stream ring (shm-write --stream), not a log; use another address, \
             or remove it first ({remove} > /dev/null)"
        ),
        Layout::Log | Layout::Foreign => write!(
            f,
            "{target} holds data in a layout shm-tools did not write (a C program's string, for \
             example); use another address, or remove it first ({remove} > /dev/null)"
        ),
    }
}

/// A blank segment too small for a log: one this process just created
/// only needs a larger `--size` next time; one that existed before would
/// be opened again as it is, so it has to be removed first.
fn too_small(
    f: &mut fmt::Formatter<'_>,
    target: &Target,
    size: usize,
    header: usize,
    created: bool,
) -> fmt::Result {
    write!(
        f,
        "{target} is {size} bytes, too small for a log ({header} bytes of header); "
    )?;
    if created {
        write!(f, "use a larger --size")
    } else {
        write!(
            f,
            "remove it first ({} > /dev/null), then write again with a larger --size",
            target.command("shm-read --remove")
        )
    }
}

/// The notice a writer gives on stderr when it waits a while: for a
/// lossless follower, or for the holder of the write lock.
pub struct WaitNotice<'a> {
    /// The log.
    pub target: &'a Target,
    /// Why the writer waits.
    pub wait: WriterWait,
}

impl fmt::Display for WaitNotice<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = self.target;
        let (slot, tid, proven, for_holder) = match self.wait {
            WriterWait::LockHolder { tid } => {
                return write!(
                    f,
                    "shm-write: waiting for thread {tid} (in its PID namespace), which holds the \
                     write lock on {target}"
                );
            }
            WriterWait::Follower {
                slot,
                tid,
                proven,
                for_holder,
            } => (slot, tid, proven, for_holder),
        };
        let who = if tid == 0 {
            format!("slot {slot}")
        } else {
            format!("slot {slot}, thread {tid} in its PID namespace")
        };
        let how = if for_holder {
            " (the writer holding the lock waits for it)"
        } else {
            ""
        };
        write!(
            f,
            "shm-write: waiting for a lossless follower of {target} ({who}; shm-read --follow \
             --lossless) that is a whole log behind{how}; writers wait for it as long as it \
             lives, as a pipe's writer waits for its reader, and go on when it reads on, exits \
             or is killed ({} --info lists the follower slots)",
            target.command("shm-read")
        )?;
        // Only a System V log's slot rests on a lock word alone, which
        // anyone with write access could have set.
        if !proven {
            write!(
                f,
                "; if no such follower runs, the slot was forged: stop the writers, remove the \
                 log ({} --remove > /dev/null) and start it again",
                target.command("shm-read")
            )?;
        }
        Ok(())
    }
}
