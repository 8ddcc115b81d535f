//! `shm-write --replay FILE`: appends the records of a recording (the JSON
//! lines `shm-read --follow --json` prints, see [`crate::cmd::record`]) to a
//! log, as far apart in time as they were recorded, scaled by `--speed`.
//!
//! Contract: each record goes in exactly (binary content included), as one
//! record, under the log's own numbering and append time. A malformed line
//! stops the replay with one error naming its line number. A regular file
//! is checked whole before its first record goes in, and before the log is
//! created (against the record size it will have), so a bad file appends
//! nothing and leaves no new log behind; from a pipe, the records before the bad line are in, and the
//! error says how many. The pause before a record is the difference of its
//! recorded time and the previous one's; a record without a time, or with
//! a time before the previous one's (a clock set back), has none.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::address::Target;
use crate::cli::MAX_DURATION;
use crate::cmd::lines::{DEFAULT_LOG_SIZE, LinesOptions, open_log};
use crate::cmd::record::{self, Record};
use crate::error::{Kind, failure};
use crate::layout::log::{Log, RECORD_HEADER, RECORD_TIME};
use crate::segment::{Access, Segment};

/// How fast a replay goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// The recorded pauses divided by this factor (2: twice as fast).
    Factor(f64),
    /// No pauses at all.
    Max,
}

/// Replays the recording at `source` (`-`: stdin) into the log at
/// `target`, creating the log as `--lines` would.
pub fn replay(
    target: &Target,
    opts: &LinesOptions,
    source: &Path,
    speed: Speed,
) -> anyhow::Result<()> {
    let (file, name) = open_source(source)?;
    // A pipe can be read only once; a regular file is checked first.
    let checkable = file.metadata().is_ok_and(|m| m.is_file());
    let start = if checkable {
        (&file).stream_position().unwrap_or(0)
    } else {
        0
    };
    let mut input = Recording::new(BufReader::with_capacity(1 << 16, file), &name, target);
    // Checked before the log is created, against the record size it will
    // have, so a bad file leaves nothing behind (a log that others may
    // already see is never removed again).
    let expected = if checkable {
        let expected = max_record_ahead(target, opts);
        if let Some(max_record) = expected {
            input.check(start, max_record)?;
        }
        expected
    } else {
        None
    };
    let segment = open_log(target, opts)?;
    let log = Log::open(segment.mapping(), target)?.with_file(segment.file());
    // Not foreseen (or another process made the log meanwhile): checked
    // against the log itself, which this run did not create empty.
    if checkable && expected != Some(log.max_record()) {
        input.check(start, log.max_record())?;
    }
    input.set_max_record(log.max_record());
    let mut clock = Pacer::new(speed);
    let mut replayed = 0u64;
    loop {
        let record = match input.next()? {
            Ok(Some(record)) => record,
            Ok(None) => return Ok(()),
            Err(why) => {
                return Err(input.bad(
                    &why,
                    &format!(
                        "the {replayed} records before it were replayed into {target}, none after"
                    ),
                ));
            }
        };
        if let Some(pause) = clock.schedule(record.time_ns)
            && pause >= LONG_PAUSE
        {
            crate::notice::notice(format_args!(
                "shm-write: {name}, line {}: waiting {} before this record, as recorded \
                 (--speed max replays without pauses)",
                input.number,
                humantime::format_duration(round_to_seconds(pause))
            ));
        }
        clock.sleep();
        log.appender(&|wait| crate::cmd::lines::tell_writer_wait(target, wait))?
            .append(&record.content)?;
        replayed += 1;
    }
}

/// The largest record the log at `target` holds, or will hold once
/// `open_log` creates it with `opts`; None where that is not known before
/// opening it for writing (open_log then says what is wrong).
fn max_record_ahead(target: &Target, opts: &LinesOptions) -> Option<usize> {
    match Segment::open(target, Access::ReadOnly) {
        Ok(segment) => Log::open(segment.mapping(), target)
            .ok()
            .map(|log| log.max_record()),
        Err(e) if e.is_missing() => {
            // A new log is of the current version: records with times.
            let size = opts.size.unwrap_or(DEFAULT_LOG_SIZE);
            crate::layout::log::capacity_for(size)
                .and_then(|capacity| capacity.checked_sub(RECORD_HEADER + RECORD_TIME))
        }
        Err(_) => None,
    }
}

/// Opens the recording; stdin for `-`.
fn open_source(source: &Path) -> anyhow::Result<(File, String)> {
    if source == Path::new("-") {
        let fd = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .context("cannot read stdin")?;
        return Ok((File::from(fd), "stdin".to_owned()));
    }
    let name = source.display().to_string();
    let cannot = |why: &dyn std::fmt::Display| {
        failure(
            Kind::Failed,
            format!(
                "cannot open the recording {name}: {why}; record one with shm-read --follow --json"
            ),
        )
    };
    let file = File::open(source).map_err(|e| cannot(&e))?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(cannot(&"it is a directory"));
    }
    Ok((file, name))
}

/// The lines of a recording, parsed and checked against the log.
struct Recording<'a, R> {
    input: BufReader<R>,
    name: &'a str,
    target: String,
    max_record: usize,
    /// Longest line any record that fits can take (JSON escapes a byte in
    /// at most six characters), so a hostile file cannot exhaust memory.
    max_line: usize,
    number: u64,
    line: Vec<u8>,
}

impl<'a, R: Read + Seek> Recording<'a, R> {
    fn new(input: BufReader<R>, name: &'a str, target: &Target) -> Recording<'a, R> {
        // What fits is set once known ([`Recording::set_max_record`]).
        Recording {
            input,
            name,
            target: target.to_string(),
            max_record: 0,
            max_line: 0,
            number: 0,
            line: Vec::new(),
        }
    }

    /// Checks records against `max_record` bytes each from now on.
    fn set_max_record(&mut self, max_record: usize) {
        self.max_record = max_record;
        self.max_line = max_record.saturating_mul(6).saturating_add(1 << 16);
    }

    /// Reads the whole file from `start`, checking each line against
    /// `max_record`, and goes back to `start`.
    fn check(&mut self, start: u64, max_record: usize) -> anyhow::Result<()> {
        self.set_max_record(max_record);
        while self
            .next()?
            .map_err(|why| self.bad(&why, "nothing was replayed"))?
            .is_some()
        {}
        self.rewind(start)
    }

    fn rewind(&mut self, start: u64) -> anyhow::Result<()> {
        self.input
            .seek(SeekFrom::Start(start))
            .with_context(|| format!("cannot read the recording {} again", self.name))?;
        self.number = 0;
        Ok(())
    }

    /// The error for the line just read: what is wrong with it, and
    /// `outcome`, what the replay did.
    fn bad(&self, why: &str, outcome: &str) -> anyhow::Error {
        failure(
            Kind::Failed,
            format!(
                "{}, line {}: {why}; {outcome} (a recording has one JSON object per line, as \
                 shm-read --follow --json prints them)",
                self.name, self.number
            ),
        )
    }

    /// The next record, None at the end, or what is wrong with the line
    /// (number `self.number`). Blank lines carry nothing and are passed
    /// over.
    fn next(&mut self) -> anyhow::Result<Result<Option<Record>, String>> {
        loop {
            self.line.clear();
            let limit = self.max_line as u64 + 1;
            let n = (&mut self.input)
                .take(limit)
                .read_until(b'\n', &mut self.line)
                .with_context(|| format!("cannot read the recording {}", self.name))?;
            if n == 0 {
                return Ok(Ok(None));
            }
            self.number += 1;
            if self.line.len() > self.max_line {
                return Ok(Err(format!(
                    "the line is longer than any record of {} can be ({} bytes each)",
                    self.target, self.max_record
                )));
            }
            if self.line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let record = match record::parse(&self.line) {
                Ok(record) => record,
                Err(why) => return Ok(Err(why)),
            };
            if record.content.len() > self.max_record {
                return Ok(Err(format!(
                    "a record of {} bytes does not fit {}, whose records hold at most {} bytes \
                     (replay into a log made with a larger --size)",
                    record.content.len(),
                    self.target,
                    self.max_record
                )));
            }
            return Ok(Ok(Some(record)));
        }
    }
}

/// When each record is due: the recorded pauses, scaled, added up from
/// the first record with a time (so sleeping late never adds up to drift,
/// and no record goes in before its recorded offset from that one).
struct Pacer {
    speed: Speed,
    started: Instant,
    due: Duration,
    last_time: Option<u64>,
}

impl Pacer {
    fn new(speed: Speed) -> Pacer {
        Pacer {
            speed,
            started: Instant::now(),
            due: Duration::ZERO,
            last_time: None,
        }
    }

    /// Moves the schedule on to a record recorded at `time_ns`; the
    /// pause that puts before it, if any.
    fn schedule(&mut self, time_ns: Option<u64>) -> Option<Duration> {
        let Speed::Factor(factor) = self.speed else {
            return None;
        };
        let Some(last) = self.last_time.replace(time_ns?) else {
            // The first record with a time: the schedule counts from now.
            self.started = Instant::now();
            return None;
        };
        let pause = scaled(time_ns?.saturating_sub(last), factor);
        self.due = self.due.saturating_add(pause).min(MAX_DURATION);
        Some(pause)
    }

    /// Sleeps until the record scheduled last is due.
    fn sleep(&self) {
        if self.speed == Speed::Max {
            return;
        }
        if let Some(at) = self.started.checked_add(self.due) {
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
        }
    }
}

/// A pause this long is announced on stderr, so a replay that waits as
/// recorded (a night without records, say) does not look hung.
const LONG_PAUSE: Duration = Duration::from_secs(60);

fn round_to_seconds(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

/// `ns` nanoseconds divided by `factor`, at most [`MAX_DURATION`].
fn scaled(ns: u64, factor: f64) -> Duration {
    #[allow(
        clippy::cast_precision_loss,
        reason = "a pause needs no nanosecond precision past 2^53 ns (104 days)"
    )]
    let secs = ns as f64 / 1e9 / factor;
    Duration::try_from_secs_f64(secs).map_or(MAX_DURATION, |d| d.min(MAX_DURATION))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_scale_and_stay_bounded() {
        assert_eq!(scaled(2_000_000_000, 1.0), Duration::from_secs(2));
        assert_eq!(scaled(2_000_000_000, 2.0), Duration::from_secs(1));
        assert_eq!(scaled(1_000_000_000, 0.5), Duration::from_secs(2));
        assert_eq!(scaled(u64::MAX, 1e-300), MAX_DURATION);
        assert_eq!(scaled(0, 1.0), Duration::ZERO);
    }
}
