//! What `shm-read` does: find the segment (waiting for it if asked), and
//! dump its content, its metadata, or every version as it is published.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;

use crate::address::{Address, Target};
use crate::error::{Kind, failure, kind_of};
use crate::format::framed::Framed;
use crate::format::ring::Ring;
use crate::format::{Layout, raw};
use crate::hex;
use crate::os::AccessError;
use crate::segment::{Access, Segment, timed_out};
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
}

/// Runs `shm-read` in snapshot or follow mode (`--info` is [`crate::info::show`]), writing to `out`.
///
/// With `remove`, the segment is removed once what is to be printed has
/// been copied out of it and before it is written to `out`, so a reader of
/// our stdout that goes away early never prevents a removal asked for.
pub fn read(opts: &ReadOptions, out: &mut dyn Write) -> anyhow::Result<()> {
    let target = opts.address.resolve()?;
    let deadline = Deadline::after(opts.timeout);
    let waits = opts.wait || opts.timeout.is_some();
    let segment = if waits {
        Segment::open_when(
            &target,
            Access::ReadOnly,
            deadline,
            opts.timeout,
            "to exist",
            |_| Ok(true),
        )?
    } else {
        Segment::open(&target, Access::ReadOnly)?
    };

    if waits && !opts.all {
        wait_for_content(&segment, deadline, opts.timeout).map_err(|e| name_segment(e, &target))?;
    }
    if opts.follow {
        return follow(&segment, opts, out).map_err(|e| name_segment(e, &target));
    }
    let content = content(&segment, opts).map_err(|e| name_segment(e, &target))?;
    // A shrink inside the last page reads as zeros without a fault: ask.
    segment.mapping().verify_size()?;
    if opts.remove {
        segment.remove()?;
    }
    to_stdout(&target, "the content of", out, |out| {
        if opts.hex {
            hex::dump(&content, out)
        } else {
            out.write_all(&content)
        }
    })
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

/// The bytes `shm-read` prints for the segment's current state, at most
/// `opts.bytes` of them: only that many are copied out of the segment.
fn content(segment: &Segment, opts: &ReadOptions) -> anyhow::Result<Vec<u8>> {
    let map = segment.mapping();
    let limit = limit(opts.bytes);
    if opts.all {
        let mut all = vec![0; map.len().min(limit)];
        map.read(0, &mut all)?;
        return Ok(all);
    }
    let mut data = match Layout::detect(map) {
        Layout::Framed if !opts.raw => {
            Framed::open(map, segment.target())?
                .read_at_most(limit)?
                .data
        }
        Layout::Ring if !opts.raw => Ring::open(map, segment.target())?.peek()?,
        _ if limit < map.len() => {
            // The C string's first `limit` bytes: no need to find its end.
            let mut prefix = vec![0; limit];
            map.read(0, &mut prefix)?;
            if let Some(nul) = prefix.iter().position(|&b| b == 0) {
                prefix.truncate(nul);
            }
            prefix
        }
        _ => raw::read_c_string(map)?,
    };
    data.truncate(limit);
    Ok(data)
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
            Layout::Framed => {
                let framed = Framed::open(map, segment.target())?;
                if framed.seq()? != 0 {
                    return Ok(());
                }
                wait::wait_while_equal(framed.seq_word()?, 0, deadline.slice(RECHECK));
            }
            Layout::Ring => {
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

/// Prints the current version, then each new one, until the segment is
/// removed. A version published while the previous one is being printed
/// may be skipped, but the last one is always printed.
fn follow(segment: &Segment, opts: &ReadOptions, out: &mut dyn Write) -> anyhow::Result<()> {
    let map = segment.mapping();
    if Layout::detect(map) != Layout::Framed || opts.raw || opts.all {
        return Err(failure(
            Kind::Usage,
            format!(
                "--follow needs a segment written by shm-write without --raw; {} is not one",
                segment.target()
            ),
        ));
    }
    let framed = Framed::open(map, segment.target())?;
    let seq_word = framed.seq_word()?;
    let mut shown: Option<u32> = None;
    loop {
        let seq = framed.seq()?;
        if shown != Some(seq) && seq != 0 {
            let version = framed.read_at_most(limit(opts.bytes))?;
            to_stdout(segment.target(), "the content of", out, |out| {
                out.write_all(&version.data)
            })?;
            shown = Some(version.seq);
            continue;
        }
        if segment.is_removed() {
            return Ok(());
        }
        map.verify_size()?;
        wait::wait_while_equal(seq_word, seq, RECHECK * 4);
    }
}
