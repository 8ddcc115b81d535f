//! What `shm-read` does: find the segment (waiting for it if asked), and
//! dump its content, its metadata, or every version as it is published.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;

use crate::address::{Address, Target};
use crate::cmd::explain::kind_of;
use crate::cmd::follow::{Ended, Stop};
use crate::cmd::hex;
use crate::error::{Kind, failure};
use crate::layout::ring::Ring;
use crate::layout::snapshot::{Snapshot, is_grown};
use crate::layout::{self, Layout, cstring};
use crate::segment::{Access, Segment, timed_out};
use crate::sys::AccessError;
use crate::wait::{self, Deadline, RECHECK};

/// Everything `shm-read` can be asked in snapshot mode.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Which segment.
    pub address: Address,
    /// Read as a C string even if the segment is framed.
    pub raw: bool,
    /// Dump every byte of the segment, header included.
    pub all: bool,
    /// Output at most this many bytes.
    pub bytes: Option<u64>,
    /// Skip this many bytes of what would be output first.
    pub offset: Option<u64>,
    /// Print a hex dump instead of the bytes.
    pub hex: bool,
    /// Wait until the segment exists and holds content.
    pub wait: bool,
    /// Bound on that wait (implies it).
    pub timeout: Option<Duration>,
    /// Remove the segment after reading it.
    pub remove: bool,
    /// Print every new version until the segment is removed.
    pub follow: bool,
    /// With `follow` (or on a log): one JSON object per version or record.
    pub json: bool,
    /// With `follow`: skip what is there (a log's records, a snapshot's
    /// current version).
    pub new: bool,
    /// On a log: start this many records before the head.
    pub tail: Option<u64>,
    /// On a log: hold writers back instead of being lapped.
    pub lossless: bool,
    /// With `follow`: exit 0 after printing this many versions or records.
    pub count: Option<u64>,
    /// With `follow`: exit 0 after following this long.
    pub follow_for: Option<Duration>,
}

/// Runs `shm-read` in snapshot or follow mode (`--info` is [`crate::cmd::info::show`]), writing to `out`.
///
/// With `remove`, the segment is removed once what is to be printed has
/// been copied out of it and before it is written to `out`, so a reader of
/// our stdout that goes away early never prevents a removal asked for. An
/// option that does not fit the segment's kind is refused (exit 2) before
/// that, so a refused command line removes nothing.
pub fn read(opts: &ReadOptions, out: &mut dyn Write) -> anyhow::Result<()> {
    let target = opts.address.resolve()?;
    let deadline = Deadline::after(opts.timeout);
    let waits = opts.wait || opts.timeout.is_some();
    // A lossless follower keeps its position in the log's header.
    let access = if opts.lossless {
        Access::ReadWrite
    } else {
        Access::ReadOnly
    };
    let opened = if waits {
        Segment::open_when(&target, access, deadline, opts.timeout, "to exist", |_| {
            Ok(true)
        })
    } else {
        Segment::open(&target, access)
    };
    let mut segment = opened.map_err(|e| {
        if kind_of(&e) == Some(Kind::NotFound) && reads_a_log(opts) {
            missing_log(&target, e)
        } else if opts.lossless && e.to_string().starts_with("permission denied") {
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
    if waits && !opts.all && !(opts.follow && opts.new) {
        remapping(&mut segment, |segment| {
            wait_for_content(segment, deadline, opts.timeout)
        })
        .map_err(|e| name_segment(e, &target))?;
    }
    let layout = settled_layout(&segment, opts.follow);
    let reads_records = layout == Layout::Log && !opts.all && !opts.raw && !opts.hex;
    // A usage error changes nothing: every refusal comes before --remove.
    if let Some(refusal) = refusal(opts, layout, reads_records, &segment) {
        return Err(refusal);
    }
    // Removed as soon as it is found (and, with --wait, holds content):
    // everything printed comes from our own mapping, so neither a broken
    // stdout nor a header that turns out corrupt can skip a removal that was
    // asked for (the way to get rid of a broken segment is this command).
    if opts.remove {
        segment.remove()?;
    }
    // --timeout keeps counting from the start; --for from now on.
    let stop = if opts.follow {
        Stop::new(opts.count, opts.timeout, deadline, opts.follow_for)
    } else {
        Stop::never()
    };
    if reads_records {
        return crate::cmd::lines::read_log(&segment, log_options(opts, stop), out).map_err(|e| {
            // An I/O error without context can only be a write to stdout:
            // named as the snapshot and stream paths name theirs.
            if e.downcast_ref::<std::io::Error>().is_some() {
                e.context(format!("cannot write the records of {target} to stdout"))
            } else {
                name_segment(e, &target)
            }
        });
    }
    if opts.follow {
        return follow(&mut segment, opts, stop, out).map_err(|e| name_segment(e, &target));
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

/// The usage error for options that do not fit the segment's `layout`,
/// if any; `reads_records` says the segment is read as a log's records.
/// Looked at before anything is changed (`--remove`), so a refused command
/// line leaves the segment as it was.
fn refusal(
    opts: &ReadOptions,
    layout: Layout,
    reads_records: bool,
    segment: &Segment,
) -> Option<anyhow::Error> {
    if reads_records {
        return opts.offset.is_some().then(|| {
            failure(
                Kind::Usage,
                format!(
                    "--offset counts bytes of a snapshot, a stream or a C string, and {} is a log \
                     of records: --tail N starts N records back, --all --offset N skips N bytes of \
                     the segment",
                    segment.target()
                ),
            )
        });
    }
    if opts.lossless || opts.tail.is_some() {
        return Some(failure(
            Kind::Usage,
            format!(
                "--tail and --lossless read a log (made by shm-write --lines); {} is {}",
                segment.target(),
                describe_layout(layout)
            ),
        ));
    }
    None
}

/// Whether the command line asks for what only a log has (or, with
/// `--follow`, what a chat's follower wants): its hint names the log
/// writer, not a snapshot write that `--lines` would then refuse.
fn reads_a_log(opts: &ReadOptions) -> bool {
    opts.follow || opts.new || opts.lossless || opts.tail.is_some()
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

/// Runs `f`, and again on a fresh mapping when it found that the segment
/// grew since it was mapped (see "Growing" in docs/FORMAT.md). A header
/// that claims more than the object holds stays an error.
fn remapping<T>(
    segment: &mut Segment,
    mut f: impl FnMut(&Segment) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    loop {
        match f(segment) {
            Err(e) if is_grown(&e) => {
                if !segment.remap_if_grown()? {
                    return Err(e);
                }
            }
            other => return other,
        }
    }
}

/// Writes and flushes with `write`; a failure names the segment ("cannot
/// write the content of ... to stdout: No space left on device"). A broken
/// pipe stays recognisable in the chain, so it still ends quietly.
fn to_stdout(
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
    let unnamed = err
        .chain()
        .any(|cause| matches!(cause.downcast_ref(), Some(AccessError::OutOfBounds(_))));
    if unnamed && kind_of(&err).is_none() {
        err.context(format!(
            "cannot read {target}: its header does not match its size"
        ))
    } else {
        err
    }
}

fn log_options(opts: &ReadOptions, stop: Stop) -> crate::cmd::lines::LogReadOptions {
    crate::cmd::lines::LogReadOptions {
        follow: opts.follow,
        new: opts.new,
        tail: opts.tail,
        lossless: opts.lossless,
        json: opts.json,
        bytes: opts.bytes,
        stop,
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
fn content(segment: &Segment, opts: &ReadOptions) -> anyhow::Result<Vec<u8>> {
    let map = segment.mapping();
    let limit = limit(opts.bytes);
    let skip = skip(opts.offset);
    if opts.all {
        let start = skip.min(map.len());
        let mut all = layout::zeroed((map.len() - start).min(limit), segment.target())?;
        map.read(start, &mut all)?;
        return Ok(all);
    }
    let mut data = match Layout::detect(map) {
        Layout::Snapshot if !opts.raw => {
            Snapshot::open(map, segment.target())?
                .read_span(skip, limit)?
                .data
        }
        Layout::Stream if !opts.raw => {
            let mut held = Ring::open(map, segment.target())?.peek()?;
            held.drain(..skip.min(held.len()));
            held
        }
        _ if skip > 0 => {
            // The C string's bytes from `skip` on, up to its NUL.
            let end = map.find_nul(0)?.unwrap_or(map.len());
            let start = skip.min(end);
            let mut part = layout::zeroed((end - start).min(limit), segment.target())?;
            map.read(start, &mut part)?;
            part
        }
        _ if limit < map.len() => {
            // The C string's first `limit` bytes: no need to find its end.
            let mut prefix = layout::zeroed(limit, segment.target())?;
            map.read(0, &mut prefix)?;
            if let Some(nul) = prefix.iter().position(|&b| b == 0) {
                prefix.truncate(nul);
            }
            prefix
        }
        _ => cstring::read_c_string(map, segment.target())?,
    };
    data.truncate(limit);
    Ok(data)
}

/// `--offset N` as a length; none is 0.
fn skip(offset: Option<u64>) -> usize {
    offset.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// `-c N` as a length; no limit is `usize::MAX`.
fn limit(bytes: Option<u64>) -> usize {
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
            return Err(timed_out(segment.target(), timeout, "to hold content"));
        }
    }
}

/// Prints the current version (unless `opts.new`), then each new one,
/// until the segment is removed or `stop` says so. A version published
/// while the previous one is being printed
/// may be skipped, but the last one is always printed: a snapshot is state,
/// and the latest state is what matters. With `json`, each version is one
/// JSON object on its own line, so versions stay apart. A segment that
/// grows is mapped again; the version that grew it is printed, and the
/// old content that growing moved (same time and writer) is not again.
fn follow(
    segment: &mut Segment,
    opts: &ReadOptions,
    mut stop: Stop,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let map = segment.mapping();
    let layout = Layout::detect(map);
    if layout != Layout::Snapshot || opts.raw || opts.all {
        let what = match layout {
            Layout::Stream => {
                "a stream (shm-write --stream); drain it with shm-read --stream instead".to_owned()
            }
            _ => format!(
                "{}; --follow reads snapshots and logs",
                describe_layout(layout)
            ),
        };
        return Err(failure(
            Kind::Usage,
            format!("{} is {what}", segment.target()),
        ));
    }
    let mut shown = None;
    let mut skip_current = opts.new;
    remapping(segment, |segment| {
        follow_mapped(segment, opts, out, &mut shown, &mut skip_current, &mut stop)
    })
}

/// [`follow`] until the segment is removed, has grown beyond this
/// mapping, or `stop` ends it. `shown` is the last version printed (or
/// skipped): seq, time and writer.
fn follow_mapped(
    segment: &Segment,
    opts: &ReadOptions,
    out: &mut dyn Write,
    shown: &mut Option<(u32, u64, u32)>,
    skip_current: &mut bool,
    stop: &mut Stop,
) -> anyhow::Result<()> {
    let map = segment.mapping();
    let framed = Snapshot::open(map, segment.target())?;
    let seq_word = framed.seq_word()?;
    // A version that keeps changing under the copy is retried only until
    // the follow's end: the stop check at the top of the loop then decides.
    // (Its time limits do not change as versions are printed.)
    let ends = *stop;
    let give_up = move || ends.check().is_some();
    if *skip_current && let Some(current) = framed.published_unless(&give_up)? {
        *skip_current = false;
        if current.seq != 0 {
            *shown = Some((current.seq, current.mtime_ns, current.writer_pid));
        }
    }
    loop {
        match stop.check() {
            Some(Ended::Done) => return Ok(()),
            Some(Ended::TimedOut) => return Err(stop.timed_out(segment.target(), "versions")),
            None => {}
        }
        let seq = framed.seq()?;
        if shown.is_none_or(|(s, ..)| s != seq) && seq != 0 {
            let Some(version) = framed.read_at_most_unless(limit(opts.bytes), &give_up)? else {
                continue;
            };
            let moved = shown.is_some_and(|(_, mtime_ns, pid)| {
                (mtime_ns, pid) == (version.mtime_ns, version.writer_pid)
            });
            *shown = Some((version.seq, version.mtime_ns, version.writer_pid));
            if moved {
                continue;
            }
            to_stdout(segment.target(), "the content of", out, |out| {
                if opts.json {
                    let line = crate::cmd::record::to_json_line(
                        u64::from(version.seq),
                        Some(version.mtime_ns),
                        &version.data,
                    );
                    out.write_all(line.as_bytes())
                } else {
                    out.write_all(&version.data)
                }
            })?;
            if stop.printed() {
                return Ok(());
            }
            continue;
        }
        if segment.is_removed() {
            return Ok(());
        }
        map.verify_size()?;
        wait::wait_while_equal(seq_word, seq, stop.slice(RECHECK * 4));
    }
}
