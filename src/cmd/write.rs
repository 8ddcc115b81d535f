//! What `shm-write` does: find or create the segment and publish stdin
//! into it, whole or line by line.

use std::io::Read;

use crate::address::{Address, Target};
use crate::cmd::explain::LockNoticeText;
use crate::cmd::grow::remapping;
use crate::error::{Kind, failure};
use crate::layout::snapshot::{self, LockNotice, Publish, Snapshot};
use crate::layout::{Layout, cstring};
use crate::segment::{Access, Create, Segment};
use crate::sys;

/// Segments are never created smaller than this, so a classic reader's
/// `shmget(key, 1024, ...)` finds them big enough.
pub const MIN_SIZE: usize = 4096;

/// Default size for `--lines`, whose input length is not known up front.
pub const LINES_SIZE: usize = crate::cmd::lines::DEFAULT_LOG_SIZE;

/// What `shm-write` is asked when it publishes a snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    /// Which segment.
    pub address: Address,
    /// Size when creating; None picks one that fits the input.
    pub size: Option<usize>,
    /// Permission bits when creating.
    pub mode: u32,
    /// Fail if the segment exists.
    pub exclusive: bool,
    /// Add to the current content instead of replacing it.
    pub append: bool,
    /// The classic C-string layout instead of ours.
    pub raw: bool,
    /// A System V segment (by key) that the input does not fit is replaced
    /// by a new one under the same key (POSIX segments grow anyway).
    pub replace: bool,
}

/// Runs `shm-write` as a snapshot write, publishing all of `input` (stdin).
pub fn write_snapshot(opts: &SnapshotOptions, input: &mut dyn Read) -> anyhow::Result<()> {
    let target = opts.address.resolve()?;
    let data = read_all(input).map_err(|e| match e.kind() {
        std::io::ErrorKind::OutOfMemory => failure(
            Kind::Failed,
            format!(
                "stdin does not fit this process's memory ({e}); nothing was written to {target}; \
                 raise the memory limit (ulimit -v) or write less"
            ),
        ),
        _ => anyhow::Error::new(e).context("cannot read stdin"),
    })?;
    let size = opts
        .size
        .unwrap_or_else(|| default_size(data.len(), opts.raw));
    Writer::start(&target, opts, size, &data)?;
    Ok(())
}

/// Reads all of `input` (stdin) into one private buffer, before any lock
/// is taken, so a slow producer never holds up other writers.
///
/// Large inputs are where the time goes, so: a regular file's remaining
/// length (from fstat) sizes the buffer once, with no doubling; the buffer
/// is never zero-filled before the reads land in it (`read_to_end` reads
/// into spare capacity); large reads go straight to the buffer, past
/// stdin's own small buffer; and buffers past a few MiB ask for huge pages,
/// one fault and one kernel clear per 2 MiB instead of per 4 KiB.
fn read_all(input: &mut dyn Read) -> std::io::Result<Vec<u8>> {
    /// Growth step for input of unknown length (a pipe).
    const STEP: usize = 1 << 20;
    let mut data = Vec::new();
    // Fallible reservations: input larger than memory (or ulimit -v) is an
    // error with a message, not an abort.
    let out_of_memory = |_| std::io::Error::from(std::io::ErrorKind::OutOfMemory);
    if let Some(len) = stdin_file_remaining() {
        // One byte more: the read that finds the end needs no new room.
        data.try_reserve_exact(len.saturating_add(1))
            .map_err(out_of_memory)?;
    }
    loop {
        if data.capacity() - data.len() < STEP / 2 {
            data.try_reserve(data.capacity().max(STEP))
                .map_err(out_of_memory)?;
        }
        sys::advise_huge_pages(data.spare_capacity_mut());
        let room = data.capacity() - data.len();
        let n = Read::take(&mut *input, room as u64).read_to_end(&mut data)?;
        if n < room {
            return Ok(data);
        }
    }
}

/// Bytes left to read when stdin is a regular file; None for a pipe,
/// terminal or socket (and when stdin cannot be asked).
fn stdin_file_remaining() -> Option<usize> {
    let stdin = std::io::stdin();
    let stat = nix::sys::stat::fstat(&stdin).ok()?;
    if stat.st_mode & nix::libc::S_IFMT != nix::libc::S_IFREG {
        return None;
    }
    let at = nix::unistd::lseek(&stdin, 0, nix::unistd::Whence::SeekCur).ok()?;
    usize::try_from(stat.st_size.checked_sub(at)?).ok()
}

/// The smallest page-rounded size, at least [`MIN_SIZE`], holding `len`
/// bytes in the chosen layout.
#[must_use]
pub fn default_size(len: usize, raw: bool) -> usize {
    let needed = if raw {
        len.saturating_add(1)
    } else {
        snapshot::size_for(len).unwrap_or(usize::MAX)
    };
    needed.max(MIN_SIZE).div_ceil(4096).saturating_mul(4096)
}

/// An open segment being published to.
struct Writer<'o> {
    segment: Segment,
    opts: &'o SnapshotOptions,
}

impl<'o> Writer<'o> {
    /// Opens or creates the segment and publishes the first version.
    ///
    /// A segment, once created, is never removed again when that publish
    /// fails: others can see it from the moment it exists, and a racing
    /// writer may already have published into it. So what can be known to
    /// fail is refused before anything is created: a `--size` too small
    /// for the first input (an existing segment has its own size, so it is
    /// tried).
    fn start(
        target: &Target,
        opts: &'o SnapshotOptions,
        size: usize,
        first: &[u8],
    ) -> anyhow::Result<Writer<'o>> {
        let segment = if fits(size, first.len(), opts.raw) {
            let create = Create {
                size,
                mode: opts.mode,
                exclusive: opts.exclusive,
            };
            super::open_or_create(target, &create)?.0
        } else {
            match Segment::open(target, Access::ReadWrite) {
                Ok(segment) if !opts.exclusive => segment,
                Err(e) if !e.is_missing() => return Err(e.into()),
                _ => return Err(size_too_small(target, size, first.len(), opts.raw)),
            }
        };
        let mut writer = Writer { segment, opts };
        if opts.replace {
            writer.replace_unless_fits(first)?;
        }
        // Another writer may grow it between our mapping it and looking.
        remapping(&mut writer.segment, |segment| publish(segment, opts, first))?;
        Ok(writer)
    }

    /// With --replace: while the segment cannot hold what the publish of
    /// `data` makes (with --append, the current content too), remove it by
    /// id and create a new one that can under the same key. Racing
    /// replacements: each creates exclusively; one that finds another's new
    /// segment under the key uses it if it fits, and replaces it otherwise
    /// (the larger input wins the key, as the later publish would anyway).
    fn replace_unless_fits(&mut self, data: &[u8]) -> anyhow::Result<()> {
        const ATTEMPTS: usize = 8;
        match self.segment.target() {
            // Grows in place when publishing.
            Target::Name(_) => return Ok(()),
            Target::Id(_) => {
                return Err(failure(
                    Kind::Usage,
                    format!(
                        "--replace needs a System V key (-k or -f): {} keeps its identity, so it is never replaced",
                        self.segment.target()
                    ),
                ));
            }
            Target::Key { .. } => {}
        }
        for _ in 0..ATTEMPTS {
            let map = self.segment.mapping();
            let target = self.segment.target();
            let kept = match (self.opts.append, Layout::detect(map)) {
                (false, _) => Vec::new(),
                (true, Layout::Snapshot) if !self.opts.raw => {
                    Snapshot::open(map, target)?.read()?.data
                }
                (true, Layout::Foreign) if self.opts.raw => cstring::read_c_string(map, target)?,
                // Refused with its own message by the publish.
                (true, _) => return Ok(()),
            };
            let len = kept.len().saturating_add(data.len());
            if fits(map.len(), len, self.opts.raw) {
                return Ok(());
            }
            let size = self
                .opts
                .size
                .filter(|&size| fits(size, len, self.opts.raw))
                .unwrap_or_else(|| default_size(len, self.opts.raw));
            let mode = match self.segment.stat()? {
                crate::segment::Stat::Sysv { stat, .. } => stat.mode & 0o777,
                crate::segment::Stat::Posix(stat) => stat.st_mode & 0o777,
            };
            let (segment, created) = self.segment.replace(size, mode)?;
            self.segment = segment;
            if created {
                if !kept.is_empty() {
                    // What --append adds to comes along into the new segment.
                    let map = self.segment.mapping();
                    let target = self.segment.target();
                    if self.opts.raw {
                        cstring::write_c_string(map, target, &kept, false)?;
                    } else {
                        let tell = |notice| tell_lock(target, notice);
                        Snapshot::for_writing(map, target, &tell)?
                            .publish(&kept, Publish::Replace)?;
                    }
                }
                return Ok(());
            }
        }
        Err(failure(
            Kind::Failed,
            format!(
                "{} keeps being replaced by other writers; try again",
                self.segment.target()
            ),
        ))
    }
}

/// Says on stderr what the snapshot writer does with the write lock.
fn tell_lock(target: &Target, notice: LockNotice) {
    crate::notice::notice(format_args!("{}", LockNoticeText { target, notice }));
}

/// Publishes `data` into `segment` as `opts` ask: a C string with `--raw`,
/// else a new version of the snapshot (a POSIX one grows to fit).
fn publish(segment: &Segment, opts: &SnapshotOptions, data: &[u8]) -> anyhow::Result<()> {
    let map = segment.mapping();
    let target = segment.target();
    if Layout::detect(map) == Layout::Log {
        return Err(refuse_log(target));
    }
    if opts.raw {
        refuse_raw_over_ours(map, target)?;
        return Ok(cstring::write_c_string(map, target, data, opts.append)?);
    }
    let how = if opts.append {
        Publish::Append
    } else {
        Publish::Replace
    };
    let tell = |notice| tell_lock(target, notice);
    let framed = match target {
        Target::Name(_) => Snapshot::for_writing(map, target, &tell)?,
        Target::Key { .. } | Target::Id(_) => {
            Snapshot::for_publishing(map, target, data.len(), &tell)?
        }
    };
    // Faulting in the slot's pages one by one under the lock costs more
    // than the copy; done beforehand, in one call, it does not hold the
    // lock at all. Only a hint: a segment about to grow has no such span.
    if let Ok((offset, len)) = framed.next_write_span(data.len(), how) {
        map.prefault_for_writing(offset, len);
    }
    Ok(match target {
        // A POSIX segment grows to fit (see "Growing" in docs/FORMAT.md).
        Target::Name(_) => framed.publish_or_grow(data, how, &|size| segment.grow_to(size)),
        Target::Key { .. } | Target::Id(_) => framed.publish(data, how),
    }?)
}

/// Whether a new segment of `size` bytes holds `len` bytes of input.
fn fits(size: usize, len: usize, raw: bool) -> bool {
    if raw {
        len <= size
    } else {
        snapshot::capacity_for(size).is_some_and(|capacity| capacity >= len)
    }
}

/// The up-front refusal of a `--size` that cannot hold the input.
fn size_too_small(target: &Target, size: usize, len: usize, raw: bool) -> anyhow::Error {
    let (holds, needed) = if raw {
        (size, len)
    } else {
        (
            snapshot::capacity_for(size).unwrap_or(0),
            snapshot::size_for(len).unwrap_or(usize::MAX),
        )
    };
    let layout = if raw {
        "as a C string"
    } else {
        "with the shm-tools header (128 bytes, then two slots)"
    };
    failure(
        Kind::Failed,
        format!(
            "--size {size} holds at most {holds} bytes {layout}, but the input is {len} bytes; \
             {target} was not created; give a --size of {} or more",
            snapshot::suggest_size(needed)
        ),
    )
}

/// A snapshot write would destroy a log's records: say what to do instead.
fn refuse_log(target: &Target) -> anyhow::Error {
    failure(
        Kind::Failed,
        format!(
            "{target} is a log (made by shm-write --lines): append records to it with \
             {}, or remove it first ({} > /dev/null)",
            target.command("shm-write --lines"),
            target.command("shm-read --remove")
        ),
    )
}

/// `--raw` writes from offset 0 with no header: over one of our layouts it
/// would destroy the header and leave a foreign segment, so it is refused.
fn refuse_raw_over_ours(map: &crate::sys::Mapping, target: &Target) -> anyhow::Result<()> {
    let what = match Layout::detect(map) {
        Layout::Foreign => return Ok(()),
        Layout::Snapshot => "a shm-tools snapshot (written by shm-write without --raw)",
        Layout::Stream => "the ring of a `shm-write --stream`",
        Layout::Log => "a log (written by shm-write --lines)",
    };
    Err(failure(
        Kind::Failed,
        format!(
            "{target} holds {what}; --raw would overwrite its header and leave it unreadable as \
             such. Write without --raw, or remove it first: {} > /dev/null",
            target.command("shm-read --remove")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_sizes_fit_and_round_to_pages() {
        assert_eq!(default_size(0, false), 4096);
        assert_eq!(default_size(5, true), 4096);
        assert_eq!(default_size(4096, true), 8192);
        let size = default_size(1 << 20, false);
        assert_eq!(size % 4096, 0);
        assert!(snapshot::capacity_for(size).unwrap() >= 1 << 20);
    }
}
