//! The messages of [`SnapshotError`]: what stopped a snapshot read or
//! write, and what to do.

use std::fmt;

use super::Classify;
use crate::address::Target;
use crate::error::Kind;
use crate::layout::Layout;
use crate::layout::snapshot::{LockNotice, SnapshotError, size_for, suggest_size};
use crate::lock::Holder;

impl Classify for SnapshotError {
    fn is_out_of_bounds(&self) -> bool {
        // The layout's own answer (an inherent method).
        SnapshotError::is_out_of_bounds(self)
    }

    fn kind(&self) -> Kind {
        match self {
            SnapshotError::Layout(e) => e.kind(),
            // The segment layer's error decides, as it would unwrapped.
            SnapshotError::Grow(e) => {
                let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e.as_ref());
                while let Some(error) = cause {
                    if let Some(kind) = super::classify(error) {
                        return kind;
                    }
                    cause = error.source();
                }
                Kind::Failed
            }
            _ => Kind::Failed,
        }
    }
}

/// Why a writer refuses content that is not a snapshot, and what works
/// on it instead.
fn not_a_snapshot(target: &Target, found: Layout, c_string: bool) -> String {
    let remove = target.command("shm-read --remove");
    match found {
        Layout::Stream => format!(
            "{target} is the ring of a `shm-write --stream`, not a snapshot segment; read the \
             stream with: {}, or remove it first: {remove} > /dev/null",
            target.command("shm-read --stream"),
        ),
        Layout::Log => format!(
            "{target} is a log (made by shm-write --lines), not a snapshot segment; append \
             to it with: {}, or remove it first: {remove} > /dev/null",
            target.command("shm-write --lines"),
        ),
        Layout::Snapshot | Layout::Foreign => {
            let what = if c_string {
                "a C string (written with --raw, or by a C program)"
            } else {
                "data in a layout shm-tools did not write (another program's)"
            };
            format!(
                "{target} holds {what}, which the shm-tools header would overwrite; write a \
                 C string instead with: {} --raw, or remove it first: {remove} > /dev/null",
                target.command("shm-write"),
            )
        }
    }
}

/// Input of `len` bytes that a segment of `size` bytes, holding at most
/// `capacity`, cannot take: what to do instead, by how it is addressed.
fn too_large(target: &Target, len: usize, capacity: usize, size: usize) -> String {
    let holds = format!(
        "input is {len} bytes but {target} holds at most {capacity} (segment of {size} bytes); \
             its content is unchanged"
    );
    let next = match target {
        Target::Key { .. } => format!(
            "a System V segment cannot grow: replace it by one that fits, under the same key, with \
                 {} (programs attached to the old one keep it until they re-attach)",
            target.command("shm-write --replace")
        ),
        Target::Id(_) => "a segment addressed by id (-i) keeps its identity, so it cannot grow \
                 or be replaced: write less, or address it by key with --replace"
            .to_owned(),
        Target::Name(_) => {
            let size = size_for(len).map_or_else(|| "a larger size".to_owned(), suggest_size);
            format!(
                "remove it ({} > /dev/null) and write again with --size {size}",
                target.command("shm-read --remove")
            )
        }
    };
    format!("{holds}; {next}")
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Layout(e) => e.fmt(f),
            SnapshotError::Grow(e) => e.fmt(f),
            SnapshotError::Grown {
                target,
                capacity,
                mapped,
            } => write!(
                f,
                "{target} has a shm-tools header claiming capacity {capacity}, more than the \
                 {mapped} bytes mapped here hold: it grew while being read (try again), or the \
                 header is corrupt (read it with --raw or --all, or remove it and write again)"
            ),
            SnapshotError::NotASnapshot {
                target,
                found,
                c_string,
            } => f.write_str(&not_a_snapshot(target, *found, *c_string)),
            SnapshotError::TooSmall { target, size } => write!(
                f,
                "{target} is {size} bytes, too small for the shm-tools header ({} bytes and two \
                 slots); write a C string into it with --raw, or remove it and write again with a \
                 larger --size",
                crate::layout::snapshot::HEADER_SIZE
            ),
            SnapshotError::KeptChanging { target, patience } => write!(
                f,
                "{target} changed under every read attempt for {}s; a writer is publishing faster \
                 than it can be copied, or the header is being scribbled on",
                patience.as_secs()
            ),
            SnapshotError::OutOfMemory { target, bytes } => write!(
                f,
                "cannot copy the {bytes} bytes of {target}: this process may not have that much \
                 memory (ulimit -v); its content is unchanged"
            ),
            SnapshotError::TooLarge {
                target,
                len,
                capacity,
                size,
            } => f.write_str(&too_large(target, *len, *capacity, *size)),
            SnapshotError::LockHeld {
                target,
                holder,
                patience,
            } => {
                let holder = match holder {
                    Holder::Alive(tid) => format!("thread {tid} (in its PID namespace)"),
                    // It let go just now; rare enough that the caller may simply retry.
                    Holder::Free | Holder::Died => "another writer".to_owned(),
                };
                // The kernel frees the lock of a holder that dies only if the
                // holder had it on its robust list: a word written any other
                // way (by hand, or by a program that is not shm-tools) stays
                // "held" for good.
                write!(
                    f,
                    "the write lock on {target} has been held by {holder} for {}s; nothing was \
                     written. The holder may be stopped (kill -CONT it) or stuck (kill it: a dead \
                     holder's lock is taken over); if no such thread lives, the lock word is \
                     stale: remove the segment and write it again",
                    patience.as_secs()
                )
            }
        }
    }
}

/// What a snapshot writer says about the write lock, on `target`.
pub struct LockNoticeText<'a> {
    /// The segment.
    pub target: &'a Target,
    /// What to say.
    pub notice: LockNotice,
}

impl fmt::Display for LockNoticeText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = self.target;
        match self.notice {
            LockNotice::Waiting { tid } => write!(
                f,
                "shm-write: waiting for a live process (tid {tid} in its PID namespace), which holds \
                 the write lock on {target}"
            ),
            LockNotice::Holding { ms } => write!(
                f,
                "shm-write: holding the write lock for {ms} ms (SHM_TOOLS_TEST_HOLD_LOCK_MS)"
            ),
        }
    }
}
