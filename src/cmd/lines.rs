//! Logs from the command line: `shm-write --lines` appends each input line
//! (or NUL-terminated record, with -z) as one record; `shm-read` prints the
//! records a log holds, and with `--follow` every new one, each reader from
//! its own position.
//!
//! Contract: the writer makes the log before it reads any input, so
//! followers can attach first; a record that can never fit is refused with
//! one stderr line and the rest still go in (exit 1 at the end). A reader
//! that writers lapped says on stderr exactly how many records it missed,
//! carries on, and exits 1 at its end: never silent loss. A `--lossless`
//! follower holds writers back instead, until it ends or dies. A follow
//! also ends at its [`Stop`] conditions (`--count`, `--for`, `--timeout`).

use std::io::{BufWriter, ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::address::Target;
use crate::cmd::explain::WaitNotice;
use crate::cmd::follow::{Ended, Stop};
use crate::error::{Kind, failure};
use crate::layout::log::{Appender, Cursor, Log, Slot, Step, WriterWait};
use crate::segment::{Create, Segment};
use crate::wait::{self, Look, RECHECK};

/// Log size when `--size` is not given.
pub const DEFAULT_LOG_SIZE: usize = 1 << 20;

/// Input read per read(2): records of one read go in under one lock, with
/// one wake-up for followers.
const INPUT_CHUNK: usize = 64 * 1024;

/// Reports of missed records are gathered for this long, so a reader that
/// is lapped again and again does not flood stderr.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// What `shm-write --lines` was asked.
#[derive(Debug, Clone, Copy)]
pub struct LinesOptions {
    /// Size when creating.
    pub size: Option<usize>,
    /// Permission bits when creating.
    pub mode: u32,
    /// Fail if the segment exists.
    pub exclusive: bool,
    /// The byte that ends a record: `\n`, or NUL with -z.
    pub delimiter: u8,
}

/// `producer | shm-write --lines`: creates (or opens) the log, then appends
/// each record of `input` as it arrives.
pub fn write_lines(
    target: &Target,
    opts: LinesOptions,
    input: &mut dyn Read,
) -> anyhow::Result<()> {
    let segment = open_log(target, &opts)?;
    let log = Log::open(segment.mapping(), target)?.with_file(segment.file());
    let mut splitter = Splitter {
        log: &log,
        target,
        delimiter: opts.delimiter,
        carry: Vec::new(),
        skipping: None,
        records: 0,
        refused: 0,
    };
    let mut chunk = vec![0u8; INPUT_CHUNK];
    loop {
        let n = match input.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(anyhow::Error::new(e).context("cannot read stdin")),
        };
        splitter.feed(&chunk[..n])?;
    }
    splitter.finish()?;
    if splitter.refused > 0 {
        return Err(failure(
            Kind::Failed,
            format!(
                "{} of {} records were larger than {target} can hold ({} bytes each) and were skipped; \
                 the others were appended. Remove the log and start it with a larger --size",
                splitter.refused,
                splitter.records,
                log.max_record()
            ),
        ));
    }
    Ok(())
}

/// Opens the log at `target` for appending, creating it (and its header)
/// when missing; a segment that is something else is refused, and never
/// removed, even when this call created it.
pub fn open_log(target: &Target, opts: &LinesOptions) -> anyhow::Result<Segment> {
    let create = Create {
        size: opts.size.unwrap_or(DEFAULT_LOG_SIZE),
        mode: opts.mode,
        exclusive: opts.exclusive,
    };
    // A segment we created stays even when it cannot hold a log: once its
    // name is visible, a racing writer may already have opened it, and
    // removing it would pull it from under them (segment's contract).
    let (segment, created) = super::open_or_create(target, &create)?;
    Log::for_writing(segment.mapping(), target, created, &|wait| {
        tell_writer_wait(target, wait);
    })?;
    Ok(segment)
}

/// Whether this process said already that it waits for a lossless
/// follower: once per process, not once per batch or per wait.
static TOLD_FOLLOWER_WAIT: AtomicBool = AtomicBool::new(false);

/// Tells stderr why a writer of `target` waits: for a lossless follower
/// once per process, for a lock holder each time the layout reports it
/// (once per lock taken).
pub(crate) fn tell_writer_wait(target: &Target, wait: WriterWait) {
    if matches!(wait, WriterWait::Follower { .. })
        && TOLD_FOLLOWER_WAIT.swap(true, Ordering::Relaxed)
    {
        return;
    }
    crate::notice::notice(format_args!("{}", WaitNotice { target, wait }));
}

/// Cuts input into records and appends them, one lock per input chunk.
struct Splitter<'l, 'a> {
    log: &'l Log<'a>,
    target: &'l Target,
    delimiter: u8,
    /// The start of a record whose end has not arrived yet.
    carry: Vec<u8>,
    /// Bytes of a record too large to keep, being skipped.
    skipping: Option<usize>,
    records: u64,
    refused: u64,
}

impl Splitter<'_, '_> {
    fn feed(&mut self, chunk: &[u8]) -> anyhow::Result<()> {
        let log = self.log;
        let target = self.target;
        let on_wait = move |wait| tell_writer_wait(target, wait);
        let mut appender: Option<Appender<'_, '_>> = None;
        let mut start = 0;
        while let Some(at) = chunk[start..].iter().position(|&b| b == self.delimiter) {
            let piece = &chunk[start..=start + at];
            start += at + 1;
            self.records += 1;
            if let Some(skipped) = self.skipping.take() {
                self.refuse(skipped + piece.len());
                continue;
            }
            let record: &[u8] = if self.carry.is_empty() {
                piece
            } else {
                carry_more(&mut self.carry, piece, self.target)?;
                &self.carry
            };
            if record.len() > log.max_record() {
                let len = record.len();
                self.carry.clear();
                self.refuse(len);
                continue;
            }
            if appender.is_none() {
                appender = Some(log.appender(&on_wait)?);
            }
            if let Some(a) = appender.as_mut() {
                a.append(record)?;
            }
            self.carry.clear();
        }
        // Publish what this chunk completed (and wake followers) before
        // waiting for more input.
        drop(appender);
        let rest = &chunk[start..];
        if let Some(skipped) = self.skipping.as_mut() {
            *skipped += rest.len();
        } else if self.carry.len() + rest.len() > log.max_record() {
            self.skipping = Some(self.carry.len() + rest.len());
            self.carry = Vec::new();
        } else {
            carry_more(&mut self.carry, rest, self.target)?;
        }
        Ok(())
    }

    /// The last record, when input does not end with the delimiter.
    fn finish(&mut self) -> anyhow::Result<()> {
        if let Some(skipped) = self.skipping.take() {
            self.records += 1;
            self.refuse(skipped);
        } else if !self.carry.is_empty() {
            self.records += 1;
            let target = self.target;
            self.log
                .appender(&|wait| tell_writer_wait(target, wait))?
                .append(&self.carry)?;
            self.carry.clear();
        }
        Ok(())
    }

    fn refuse(&mut self, len: usize) {
        self.refused += 1;
        crate::notice::notice(format_args!(
            "shm-write: record {} is {len} bytes but {} holds records of at most {} bytes; skipped it, going on",
            self.records,
            self.target,
            self.log.max_record()
        ));
    }
}

/// Adds `more` to the start of a record kept across input chunks, without
/// aborting when the record is larger than this process may allocate.
fn carry_more(carry: &mut Vec<u8>, more: &[u8], target: &Target) -> anyhow::Result<()> {
    carry.try_reserve(more.len()).map_err(|_| {
        failure(
            Kind::Failed,
            format!(
                "cannot hold more than {} bytes of one record of input for {target}: this process may not have \
                 that much memory (ulimit -v); the records before it were appended, it and the rest \
                 were not",
                carry.len().saturating_add(more.len())
            ),
        )
    })?;
    carry.extend_from_slice(more);
    Ok(())
}

/// What `shm-read` was asked about a log.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogReadOptions {
    /// Keep printing new records until the log is removed.
    pub follow: bool,
    /// Start at the head: no history.
    pub new: bool,
    /// Start this many records before the head.
    pub tail: Option<u64>,
    /// Hold writers back instead of being lapped (needs write access).
    pub lossless: bool,
    /// One JSON object per record.
    pub json: bool,
    /// Stop after printing this many bytes.
    pub bytes: Option<u64>,
    /// When a follow ends by itself.
    pub stop: Stop,
}

/// Prints a log's records (plain read), or follows it.
pub fn read_log(
    segment: &Segment,
    opts: LogReadOptions,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let target = segment.target();
    let log = Log::open(segment.mapping(), target)?.with_file(segment.file());
    let (mut cursor, slot) = start_reading(&log, target, &opts)?;
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    let mut printer = Printer {
        budget: opts.bytes,
        json: opts.json,
        missed: 0,
        unreported: 0,
        last_missed: 0,
        reported: Instant::now(),
    };
    let mut buf = Vec::new();
    let mut stop = opts.stop;
    let mut ended: Option<Ended>;
    let (mut head, _) = log.positions()?;
    loop {
        // Between records too: a busy log never lets the follow wait.
        ended = stop.check();
        if ended.is_some() {
            break;
        }
        match log.next(&mut cursor, head, &mut buf)? {
            Step::Record {
                seq,
                missed,
                time_ns,
            } => {
                if missed > 0 {
                    printer.missed += missed;
                    printer.unreported += missed;
                    printer.last_missed = seq - 1;
                }
                if printer.unreported > 0 && printer.reported.elapsed() >= REPORT_EVERY {
                    printer.report(target, &mut out)?;
                }
                if let Some(slot) = &slot {
                    slot.advance(cursor.position);
                }
                if !printer.print(seq, time_ns, &buf, &mut out)? || stop.printed() {
                    break;
                }
            }
            Step::Empty => {
                if !opts.follow {
                    break;
                }
                printer.report(target, &mut out)?;
                out.flush()?;
                match wait_for_records(&log, segment, head, &stop)? {
                    Waited::Moved(moved) => head = moved,
                    Waited::Removed => break,
                    Waited::Ended(why) => {
                        ended = Some(why);
                        break;
                    }
                }
            }
        }
    }
    printer.report(target, &mut out)?;
    out.flush()?;
    ended_with(&printer, ended, &stop, target)
}

/// Where a reader starts, as asked, and for `--lossless` its claimed
/// slot.
fn start_reading<'a>(
    log: &Log<'a>,
    target: &Target,
    opts: &LogReadOptions,
) -> anyhow::Result<(Cursor, Option<Slot<'a>>)> {
    let mut cursor = if opts.new {
        log.cursor_at_last(0)?
    } else if let Some(last) = opts.tail {
        log.cursor_at_last(last)?
    } else {
        log.cursor_at_oldest()?
    };
    let slot = if opts.lossless {
        Some(log.claim_slot(&mut cursor)?.ok_or_else(|| {
            failure(
                Kind::Failed,
                format!(
                    "all {} lossless follower slots of {target} are held by live followers; wait for \
                     one to end, or follow without --lossless (a lapped follower reports what it missed)",
                    crate::layout::log::SLOTS
                ),
            )
        })?)
    } else {
        None
    };
    Ok((cursor, slot))
}

/// How a read ends after its last record: an error if records were
/// missed, or if `--timeout` ended it.
fn ended_with(
    printer: &Printer,
    ended: Option<Ended>,
    stop: &Stop,
    target: &Target,
) -> anyhow::Result<()> {
    if printer.missed > 0 {
        return Err(failure(
            Kind::Failed,
            format!(
                "missed {} records of {target} in all, because writers were faster than this reader; \
                 use a larger log (--size when creating it) or follow with --lossless",
                printer.missed
            ),
        ));
    }
    if ended == Some(Ended::TimedOut) {
        return Err(stop.timed_out(target, "records"));
    }
    Ok(())
}

/// What a follower waiting at the head saw.
enum Waited {
    /// The head moved to here.
    Moved(u64),
    /// The log was removed.
    Removed,
    /// A stop condition's time came.
    Ended(Ended),
}

/// Waits at the head for it to move: sleeps on the head event, never
/// past the stop conditions' time (see [`wait::wait_on_event`]).
fn wait_for_records(
    log: &Log<'_>,
    segment: &Segment,
    head: u64,
    stop: &Stop,
) -> anyhow::Result<Waited> {
    let event = log.head_event()?;
    wait::wait_on_event(
        event,
        None,
        || stop.slice(RECHECK),
        |look| {
            let (now, _) = log.positions()?;
            if now != head {
                return Ok(Some(Waited::Moved(now)));
            }
            Ok(match look {
                Look::BeforeSleep => stop.check().map(Waited::Ended),
                // Nothing new, and nobody bumped: removed, or just quiet?
                Look::Quiet if segment.is_removed() => Some(Waited::Removed),
                Look::Quiet | Look::Woken => None,
            })
        },
    )
}

/// Writes records as they are, or one JSON object each, within `--bytes`.
struct Printer {
    budget: Option<u64>,
    json: bool,
    /// Records missed in all.
    missed: u64,
    /// Missed since the last stderr report, up to number `last_missed`.
    unreported: u64,
    last_missed: u64,
    reported: Instant,
}

impl Printer {
    /// Says on stderr how many records were missed since the last report,
    /// after what was printed before them.
    fn report(&mut self, target: &Target, out: &mut dyn Write) -> anyhow::Result<()> {
        if self.unreported == 0 {
            return Ok(());
        }
        out.flush()?;
        crate::notice::notice(format_args!(
            "shm-read: missed {} records of {target} (the last was number {}): writers overwrote \
             them before this reader got to them",
            self.unreported, self.last_missed
        ));
        self.unreported = 0;
        self.reported = Instant::now();
        Ok(())
    }

    /// False once the byte budget is spent.
    fn print(
        &mut self,
        seq: u64,
        time_ns: Option<u64>,
        record: &[u8],
        out: &mut dyn Write,
    ) -> anyhow::Result<bool> {
        let line;
        let bytes: &[u8] = if self.json {
            line = crate::cmd::record::to_json_line(seq, time_ns, record);
            line.as_bytes()
        } else {
            record
        };
        match self.budget.as_mut() {
            None => out.write_all(bytes)?,
            Some(left) => {
                let n = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                out.write_all(&bytes[..n])?;
                *left -= n as u64;
                if *left == 0 {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}
