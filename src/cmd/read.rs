//! What `shm-read` does: find the segment (waiting for it if asked), and
//! dump its content, its metadata, or every version as it is published.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;

use crate::address::{Address, Target};
use crate::cmd::follow::Stop;
use crate::cmd::grow::remapping;
use crate::cmd::hex;
use crate::cmd::lines::LogReadOptions;
use crate::error::{Kind, failure};
use crate::layout::ring::Ring;
use crate::layout::snapshot::Snapshot;
use crate::layout::{self, Layout, Span};
use crate::segment::{Access, Segment, SegmentError, timed_out};
use crate::wait::{self, Deadline, RECHECK};

/// Where to find the segment, and whether to wait for it.
#[derive(Debug, Clone)]
pub struct Find {
    /// Which segment.
    pub address: Address,
    /// Wait until the segment exists and holds content.
    pub wait: bool,
    /// Bound on that wait (implies it).
    pub timeout: Option<Duration>,
}

impl Find {
    fn waits(&self) -> bool {
        self.wait || self.timeout.is_some()
    }
}

/// `shm-read` printing what a segment holds now.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    /// Which segment.
    pub find: Find,
    /// Read as a C string even if the segment is ours.
    pub raw: bool,
    /// Dump every byte of the segment, header included.
    pub all: bool,
    /// Output at most this many bytes.
    pub bytes: Option<u64>,
    /// Skip this many bytes of what would be output first.
    pub offset: Option<u64>,
    /// Print a hex dump instead of the bytes.
    pub hex: bool,
    /// Remove the segment after reading it.
    pub remove: bool,
    /// On a log: start this many records before the head.
    pub tail: Option<u64>,
}

/// `shm-read --follow`: every new version (snapshot) or record (log).
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// Which segment.
    pub find: Find,
    /// Output at most this many bytes (of each version).
    pub bytes: Option<u64>,
    /// One JSON object per version or record.
    pub json: bool,
    /// Skip what is there (a log's records, a snapshot's current version).
    pub new: bool,
    /// On a log: start this many records before the head.
    pub tail: Option<u64>,
    /// On a log: hold writers back instead of being lapped.
    pub lossless: bool,
    /// Exit 0 after printing this many versions or records.
    pub count: Option<u64>,
    /// Exit 0 after following this long.
    pub follow_for: Option<Duration>,
}

/// Runs `shm-read` without `--follow` (`--info` is [`crate::cmd::info::show`]), writing to `out`.
///
/// With `remove`, the segment is removed once what is to be printed has
/// been copied out of it and before it is written to `out`, so a reader of
/// our stdout that goes away early never prevents a removal asked for. An
/// option that does not fit the segment's kind is refused (exit 2) before
/// that, so a refused command line removes nothing.
pub fn dump(opts: &DumpOptions, out: &mut dyn Write) -> anyhow::Result<()> {
    let target = opts.find.address.resolve()?;
    let deadline = Deadline::after(opts.find.timeout);
    let mut segment = open(
        &target,
        &opts.find,
        deadline,
        Access::ReadOnly,
        opts.tail.is_some(),
    )?;
    if opts.find.waits() && !opts.all {
        await_content(&mut segment, &target, deadline, opts.find.timeout)?;
    }
    let layout = settled_layout(&segment, false);
    let reads_records = layout == Layout::Log && !opts.all && !opts.raw && !opts.hex;
    // A usage error changes nothing: every refusal comes before --remove.
    if reads_records && opts.offset.is_some() {
        return Err(refuse_offset_on_log(segment.target()));
    }
    if !reads_records && opts.tail.is_some() {
        return Err(refuse_log_options(segment.target(), layout));
    }
    // Removed as soon as it is found (and, with --wait, holds content):
    // everything printed comes from our own mapping, so neither a broken
    // stdout nor a header that turns out corrupt can skip a removal that was
    // asked for (the way to get rid of a broken segment is this command).
    if opts.remove {
        segment.remove()?;
    }
    if reads_records {
        let log = LogReadOptions {
            tail: opts.tail,
            bytes: opts.bytes,
            ..LogReadOptions::default()
        };
        return read_records(&segment, &target, log, out);
    }
    let content = remapping(&mut segment, |segment| content(segment, opts))
        .map_err(|e| name_segment(e, &target))?;
    // A shrink inside the last page reads as zeros without a fault: ask.
    segment.mapping().verify_size()?;
    to_stdout(&target, "the content of", out, |out| {
        if opts.hex {
            hex::dump_from(&content, skip(opts.offset), out)
        } else {
            out.write_all(&content)
        }
    })
}

/// Runs `shm-read --follow` on a snapshot or a log, writing to `out`,
/// until the segment is removed or the follow ends by itself.
pub fn follow(opts: &FollowOptions, out: &mut dyn Write) -> anyhow::Result<()> {
    let target = opts.find.address.resolve()?;
    let deadline = Deadline::after(opts.find.timeout);
    // A lossless follower keeps its position in the log's header.
    let access = if opts.lossless {
        Access::ReadWrite
    } else {
        Access::ReadOnly
    };
    let mut segment = open(&target, &opts.find, deadline, access, true).map_err(|e| {
        if opts.lossless && is_permission_denied(&e) {
            failure(
                Kind::Failed,
                format!(
                    "{e:#}; --lossless needs write access to the log (a lossless follower keeps \
                     its position in the log's header), plain --follow only read access"
                ),
            )
        } else {
            e
        }
    })?;
    // A follow of what comes next does not wait for what is there.
    if opts.find.waits() && !opts.new {
        await_content(&mut segment, &target, deadline, opts.find.timeout)?;
    }
    let layout = settled_layout(&segment, true);
    if layout != Layout::Log && (opts.lossless || opts.tail.is_some()) {
        return Err(refuse_log_options(segment.target(), layout));
    }
    // --timeout keeps counting from the start; --for from now on.
    let stop = Stop::new(opts.count, opts.find.timeout, deadline, opts.follow_for);
    if layout == Layout::Log {
        let log = LogReadOptions {
            follow: true,
            new: opts.new,
            tail: opts.tail,
            lossless: opts.lossless,
            json: opts.json,
            bytes: opts.bytes,
            stop,
        };
        return read_records(&segment, &target, log, out);
    }
    if layout != Layout::Snapshot {
        return Err(refuse_follow(segment.target(), layout));
    }
    crate::cmd::versions::follow_versions(&mut segment, opts, stop, out)
        .map_err(|e| name_segment(e, &target))
}

/// Whether opening the segment failed for want of permission.
fn is_permission_denied(e: &anyhow::Error) -> bool {
    e.downcast_ref::<SegmentError>()
        .is_some_and(SegmentError::is_permission_denied)
}

/// Opens the segment at `target`, waiting for it to exist if `find` says
/// so. `reads_a_log` says the command line asks for what only a log has
/// (or, with `--follow`, what a chat's follower wants): a missing segment's
/// hint then names the log writer, not a snapshot write that `--lines`
/// would then refuse.
fn open(
    target: &Target,
    find: &Find,
    deadline: Deadline,
    access: Access,
    reads_a_log: bool,
) -> anyhow::Result<Segment> {
    let opened = if find.waits() {
        Segment::open_when(target, access, deadline, find.timeout, "to exist", |_| {
            Ok::<_, SegmentError>(true)
        })
    } else {
        Segment::open(target, access)
    };
    opened.map_err(|e| {
        if e.is_missing() && reads_a_log {
            missing_log(target, e.into())
        } else {
            e.into()
        }
    })
}

/// Waits (see [`wait_for_content`]) until the segment holds content,
/// following it when it grows.
fn await_content(
    segment: &mut Segment,
    target: &Target,
    deadline: Deadline,
    timeout: Option<Duration>,
) -> anyhow::Result<()> {
    remapping(segment, |segment| {
        wait_for_content(segment, deadline, timeout)
    })
    .map_err(|e| name_segment(e, target))
}

/// Prints a log's records (see [`crate::cmd::lines::read_log`]).
fn read_records(
    segment: &Segment,
    target: &Target,
    opts: LogReadOptions,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    crate::cmd::lines::read_log(segment, opts, out).map_err(|e| {
        // An I/O error without context can only be a write to stdout:
        // named as the snapshot and stream paths name theirs.
        if e.downcast_ref::<std::io::Error>().is_some() {
            e.context(format!("cannot write the records of {target} to stdout"))
        } else {
            name_segment(e, target)
        }
    })
}

/// The usage error for `--offset` on a log, which is read as records.
fn refuse_offset_on_log(target: &Target) -> anyhow::Error {
    failure(
        Kind::Usage,
        format!(
            "--offset counts bytes of a snapshot, a stream or a C string, and {target} is a log \
             of records: --tail N starts N records back, --all --offset N skips N bytes of \
             the segment"
        ),
    )
}

/// The usage error for `--tail` or `--lossless` on what is not read as a
/// log's records.
fn refuse_log_options(target: &Target, layout: Layout) -> anyhow::Error {
    failure(
        Kind::Usage,
        format!(
            "--tail and --lossless read a log (made by shm-write --lines); {target} is {}",
            describe_layout(layout)
        ),
    )
}

/// The "no such segment" error for a follower or `--tail`: start the log
/// (`shm-write --lines`), or wait for its writer. A segment addressed by id
/// cannot be created, so its own hint stays.
fn missing_log(target: &Target, err: anyhow::Error) -> anyhow::Error {
    if matches!(target, Target::Id(_)) {
        return err;
    }
    failure(
        Kind::NotFound,
        format!(
            "no shared memory segment with {target}; start its writer with: {} \
             (a log: each line of its input becomes a record), or add --wait to wait for it",
            target.command("shm-write --lines")
        ),
    )
}

/// Writes and flushes with `write`; a failure names the segment ("cannot
/// write the content of ... to stdout: No space left on device"). A broken
/// pipe stays recognisable in the chain, so it still ends quietly.
pub(crate) fn to_stdout(
    target: &Target,
    what: &str,
    out: &mut dyn Write,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    write(out)
        .and_then(|()| out.flush())
        .with_context(|| format!("cannot write {what} {target} to stdout"))
}

/// Gives an error that does not yet say which segment it is about (an
/// access outside the mapping, found by the OS layer) the segment's name.
fn name_segment(err: anyhow::Error, target: &Target) -> anyhow::Error {
    if crate::cmd::explain::is_unnamed_out_of_bounds(&err) {
        err.context(format!(
            "cannot read {target}: its header does not match its size"
        ))
    } else {
        err
    }
}

/// The segment's layout; for a follower, a blank segment that a writer
/// has just created is given a moment to get its header.
fn settled_layout(segment: &Segment, follow: bool) -> Layout {
    let map = segment.mapping();
    let mut layout = Layout::detect(map);
    let deadline = Deadline::after(Some(Duration::from_secs(1)));
    while follow
        && layout == Layout::Foreign
        && map.is_zero(0, map.len().min(64)).unwrap_or(false)
        && !deadline.expired()
    {
        std::thread::sleep(Duration::from_millis(2));
        layout = Layout::detect(map);
    }
    layout
}

fn describe_layout(layout: Layout) -> &'static str {
    match layout {
        Layout::Snapshot => "a snapshot (written by shm-write without --lines)",
        Layout::Stream => "a stream (shm-write --stream): read it with shm-read --stream",
        Layout::Log => "a log",
        Layout::Foreign => "not written by shm-tools",
    }
}

/// The bytes `shm-read` prints for the segment's current state, from
/// `opts.offset` on, at most `opts.bytes` of them: only that many are
/// copied out of the segment (from a stream's ring, all it holds).
fn content(segment: &Segment, opts: &DumpOptions) -> anyhow::Result<Vec<u8>> {
    let map = segment.mapping();
    let span = Span {
        skip: skip(opts.offset),
        limit: limit(opts.bytes),
    };
    if opts.all {
        let start = span.skip.min(map.len());
        let mut all = layout::zeroed((map.len() - start).min(span.limit), segment.target())?;
        map.read(start, &mut all)?;
        return Ok(all);
    }
    // A log's records are printed by `read_records`; what comes here of a
    // log (`--hex`) is its bytes as a C string, like any layout not ours.
    let raw = opts.raw || Layout::detect(map) == Layout::Log;
    Ok(layout::snapshot_content(map, segment.target(), raw, span)?)
}

/// `--offset N` as a length; none is 0.
fn skip(offset: Option<u64>) -> usize {
    offset.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// `-c N` as a length; no limit is `usize::MAX`.
pub(crate) fn limit(bytes: Option<u64>) -> usize {
    bytes.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// Waits until a framed segment has had a version published, or a foreign
/// one holds a non-empty C string.
fn wait_for_content(
    segment: &Segment,
    deadline: Deadline,
    timeout: Option<Duration>,
) -> anyhow::Result<()> {
    let map = segment.mapping();
    loop {
        match Layout::detect(map) {
            Layout::Snapshot => {
                let framed = Snapshot::open(map, segment.target())?;
                if framed.seq()? != 0 {
                    return Ok(());
                }
                wait::wait_while_equal(framed.seq_word()?, 0, deadline.slice(RECHECK));
            }
            // A log is there to be followed, from its first record on.
            Layout::Log => return Ok(()),
            Layout::Stream => {
                if !Ring::open(map, segment.target())?.peek()?.is_empty() {
                    return Ok(());
                }
                std::thread::sleep(deadline.slice(Duration::from_millis(10)));
            }
            Layout::Foreign => {
                let mut first = [0u8];
                map.read(0, &mut first)?;
                if first[0] != 0 {
                    return Ok(());
                }
                std::thread::sleep(deadline.slice(Duration::from_millis(10)));
            }
        }
        map.verify_size()?;
        if deadline.expired() {
            return Err(timed_out(segment.target(), timeout, "to hold content").into());
        }
    }
}

/// The usage error for `--follow` on what is neither a snapshot nor a log.
fn refuse_follow(target: &Target, layout: Layout) -> anyhow::Error {
    let what = match layout {
        Layout::Stream => {
            "a stream (shm-write --stream); drain it with shm-read --stream instead".to_owned()
        }
        _ => format!(
            "{}; --follow reads snapshots and logs",
            describe_layout(layout)
        ),
    };
    failure(Kind::Usage, format!("{target} is {what}"))
}
