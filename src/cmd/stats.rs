//! `shm-read --stats`: how fast a segment is going, once an interval, from
//! the counters in its header.
//!
//! Contract: only header words (and, for a log, record headers) are read,
//! never content, and nothing subscribes, so the rates are exact whoever
//! reads and however fast, and the writers are not slowed (benches/compare.rs
//! measures it). What the headers count is exact: versions, records and
//! bytes appended, records overwritten, bytes read from a stream. What they
//! do not count is sampled and says so: the share of the interval a writer
//! was asleep waiting (for room in a stream, for a lossless follower of a
//! log), looked at every [`SAMPLE`]. One line per interval (a table for
//! `--list --stats`) until interrupted, `count` lines, or the segment is
//! removed.

mod render;

use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::address::{Address, PosixName, Target};
use crate::error::{Kind, failure};
use crate::layout::Layout;
use crate::layout::log::{Counters, Log};
use crate::layout::ring::Ring;
use crate::layout::snapshot::Snapshot;
use crate::segment::{Access, Segment};

use render::{Interval, Rates, StatsRow};

/// How often the writer's waiting flag is looked at within an interval.
pub const SAMPLE: Duration = Duration::from_millis(10);

/// What the header counted at one moment.
#[derive(Debug, Clone)]
enum Counted {
    Snapshot { versions: u32, length: usize },
    Log { counters: Counters, capacity: u64 },
    Ring { head: u64, tail: u64, capacity: u64 },
    Foreign,
}

fn count(segment: &Segment) -> anyhow::Result<Counted> {
    let map = segment.mapping();
    let target = segment.target();
    Ok(match Layout::detect(map) {
        Layout::Snapshot => {
            let published = Snapshot::open(map, target)?.published()?;
            Counted::Snapshot {
                versions: published.seq,
                length: published.len,
            }
        }
        Layout::Log => {
            let log = Log::open(map, target)?;
            Counted::Log {
                counters: log.counters()?,
                capacity: log.capacity(),
            }
        }
        Layout::Stream => {
            let ring = Ring::open(map, target)?;
            let (head, tail) = ring.counters()?;
            Counted::Ring {
                head,
                tail,
                capacity: ring.capacity(),
            }
        }
        Layout::Foreign => Counted::Foreign,
    })
}

/// Whether a writer of `segment` sleeps now (waiting for room or for a
/// lossless follower).
fn writer_waiting(segment: &Segment) -> bool {
    let map = segment.mapping();
    match Layout::detect(map) {
        Layout::Log => Log::open(map, segment.target()).and_then(|l| l.writer_waiting()),
        Layout::Stream => Ring::open(map, segment.target())
            .and_then(|r| r.writer_waiting())
            .map_err(Into::into),
        _ => Ok(false),
    }
    .unwrap_or(false)
}

/// One watched segment: the last counts and when they were taken, and
/// the waiting samples since.
struct Watched {
    segment: Segment,
    last: Counted,
    at: Instant,
    samples: u32,
    waiting: u32,
}

impl Watched {
    fn new(segment: Segment) -> anyhow::Result<Watched> {
        let last = count(&segment)?;
        Ok(Watched {
            segment,
            last,
            at: Instant::now(),
            samples: 0,
            waiting: 0,
        })
    }

    fn sample(&mut self) {
        self.samples += 1;
        if writer_waiting(&self.segment) {
            self.waiting += 1;
        }
    }

    /// What the interval since the last counts measured (its length
    /// measured, whatever the schedule), and starts the next.
    fn interval(&mut self) -> anyhow::Result<Interval> {
        let now = count(&self.segment)?;
        let taken = Instant::now();
        let secs = (taken - self.at).as_secs_f64();
        let (went_back, rates) = match (&self.last, &now) {
            (
                Counted::Snapshot { versions: a, .. },
                Counted::Snapshot {
                    versions: b,
                    length,
                },
            ) => snapshot_rates(*a, *b, *length, secs),
            (
                Counted::Log { counters: a, .. },
                Counted::Log {
                    counters: b,
                    capacity,
                },
            ) => log_rates(a, b, *capacity, secs),
            (
                Counted::Ring {
                    head: h0, tail: t0, ..
                },
                Counted::Ring {
                    head,
                    tail,
                    capacity,
                },
            ) => ring_rates((*h0, *t0), (*head, *tail), *capacity, secs),
            (Counted::Foreign, Counted::Foreign) => (false, Rates::Foreign),
            _ => {
                return Err(failure(
                    Kind::Failed,
                    format!(
                        "{} changed its layout while being watched",
                        self.segment.target()
                    ),
                ));
            }
        };
        let interval = Interval {
            secs,
            went_back,
            waited: fraction(u64::from(self.waiting), u64::from(self.samples)),
            rates,
        };
        self.last = now;
        self.at = taken;
        self.samples = 0;
        self.waiting = 0;
        Ok(interval)
    }
}

/// A snapshot's versions between counts `a` and `b`, and whether the
/// count went back.
fn snapshot_rates(a: u32, b: u32, length: usize, secs: f64) -> (bool, Rates) {
    // The 32-bit count wraps; a step of more than half its
    // range is a count that went back (forged or reset): 0.
    let step = b.wrapping_sub(a);
    let went_back = step > u32::MAX / 2;
    let versions = if went_back { 0 } else { u64::from(step) };
    let rates = Rates::Snapshot {
        versions,
        versions_per_s: per_second(versions, secs),
        content_length: length,
    };
    (went_back, rates)
}

/// A log's records and bytes between counters `a` and `b`.
fn log_rates(a: &Counters, b: &Counters, capacity: u64, secs: f64) -> (bool, Rates) {
    let went_back = b.appended < a.appended || b.head < a.head || b.oldest < a.oldest;
    let records = b.appended.saturating_sub(a.appended);
    let bytes = b.head.saturating_sub(a.head);
    let overwritten = b.oldest.saturating_sub(a.oldest);
    let rates = Rates::Log {
        records,
        records_per_s: per_second(records, secs),
        bytes,
        bytes_per_s: per_second(bytes, secs),
        records_held: b.appended.saturating_sub(b.oldest),
        fill: fraction(b.head - b.tail, capacity),
        overwritten,
        overwritten_per_s: per_second(overwritten, secs),
        followers: b.followers.clone(),
    };
    (went_back, rates)
}

/// A stream's bytes written and read between positions `(h0, t0)` and
/// `(head, tail)`.
fn ring_rates(
    (h0, t0): (u64, u64),
    (head, tail): (u64, u64),
    capacity: u64,
    secs: f64,
) -> (bool, Rates) {
    let written = head.saturating_sub(h0);
    let read = tail.saturating_sub(t0);
    let rates = Rates::Stream {
        bytes: written,
        bytes_per_s: per_second(written, secs),
        read_per_s: per_second(read, secs),
        in_flight: head - tail,
        fill: fraction(head - tail, capacity),
    };
    (head < h0 || tail < t0, rates)
}

/// `n` per second over `secs`, to a tenth.
fn per_second(n: u64, secs: f64) -> f64 {
    #[allow(clippy::cast_precision_loss, reason = "a rate to print")]
    let n = n as f64;
    (n / secs * 10.0).round() / 10.0
}

/// `part / whole` to a thousandth (0 for nothing of nothing).
fn fraction(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss, reason = "a fraction to print")]
    let f = part as f64 / whole as f64;
    (f * 1000.0).round() / 1000.0
}

fn layout_name(counted: &Counted) -> &'static str {
    match counted {
        Counted::Snapshot { .. } => Layout::Snapshot.name(),
        Counted::Log { .. } => Layout::Log.name(),
        Counted::Ring { .. } => Layout::Stream.name(),
        Counted::Foreign => Layout::Foreign.name(),
    }
}

/// Sleeps until `until`, sampling every watched segment's waiting flag
/// every [`SAMPLE`] on the way.
fn sample_until(watched: &mut [&mut Watched], until: Instant) {
    loop {
        for w in watched.iter_mut() {
            w.sample();
        }
        let now = Instant::now();
        if now >= until {
            return;
        }
        std::thread::sleep(SAMPLE.min(until - now));
    }
}

fn clock() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let secs = i64::try_from(secs).unwrap_or(0);
    crate::cmd::info::format_utc(secs)[11..19].to_owned()
}

/// How `--stats` runs.
#[derive(Debug, Clone, Copy)]
pub struct StatsOptions {
    /// Time between lines.
    pub interval: Duration,
    /// Stop after this many lines (or tables), exit 0.
    pub count: Option<u64>,
    /// One JSON object per line (an array per table) instead of text.
    pub json: bool,
}

/// `shm-read --stats` on one segment: a header line, then one line per
/// interval; ends when the segment is removed (exit 0), or after `count`.
pub fn watch(address: &Address, opts: StatsOptions, out: &mut dyn Write) -> anyhow::Result<()> {
    let target = address.resolve()?;
    let segment = Segment::open(&target, Access::ReadOnly)?;
    if Layout::detect(segment.mapping()) == Layout::Foreign {
        return Err(failure(
            Kind::Failed,
            format!(
                "{target} has no counters to watch: it is not a shm-write segment (no header); \
                 see who uses it with: {} --info",
                target.command("shm-read")
            ),
        ));
    }
    let mut watched = Watched::new(segment)?;
    let layout = layout_name(&watched.last);
    let columns = render::text_columns(layout);
    if !opts.json {
        let header = std::iter::once(("TIME".to_owned(), 8))
            .chain(columns.iter().map(|(h, w, _)| ((*h).to_owned(), *w)));
        writeln!(out, "{}", render::text_line(header))?;
        out.flush()?;
    }
    let mut lines = 0;
    // Lines are due on a fixed schedule; a late one is not made up for.
    let mut due = Instant::now();
    while opts.count.is_none_or(|c| lines < c) {
        due = (due + opts.interval).max(Instant::now());
        sample_until(&mut [&mut watched], due);
        if watched.segment.is_removed() {
            return Ok(());
        }
        let interval = watched.interval()?;
        if opts.json {
            let mut object = serde_json::Map::new();
            object.insert("time".into(), json!(clock()));
            object.insert("segment".into(), json!(target.to_string()));
            object.extend(
                interval
                    .json_fields()
                    .into_iter()
                    .map(|(n, v)| (n.to_owned(), v)),
            );
            writeln!(out, "{}", Value::Object(object))?;
        } else {
            let cells = std::iter::once((clock(), 8))
                .chain(columns.iter().map(|(_, w, cell)| (cell(&interval), *w)));
            writeln!(out, "{}", render::text_line(cells))?;
        }
        out.flush()?;
        lines += 1;
    }
    Ok(())
}

/// Every segment `--list` would show, with its address as `--list` shows
/// it (`-k KEY`, `-i ID` for a private key, `-n NAME`).
fn all_targets() -> Vec<(String, Target)> {
    let mut targets: Vec<(String, Target)> = crate::sysvipc::table()
        .into_iter()
        .map(|crate::sysvipc::Row { id, stat, .. }| {
            let shown = if stat.key == crate::sys::ShmKey::PRIVATE {
                format!("-i {id}")
            } else {
                format!("-k {}", stat.key)
            };
            (shown, Target::Id(id))
        })
        .collect();
    let mut names: Vec<PosixName> = std::fs::read_dir("/dev/shm")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter_map(|e| PosixName::parse(e.file_name().to_str()?).ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    targets.extend(
        names
            .into_iter()
            .map(|name| (format!("-n {}", name.as_str()), Target::Name(name))),
    );
    targets
}

/// `shm-read --list --stats`: one table per interval, a row for each
/// segment (segments that appear are picked up at the next interval,
/// removed ones dropped); `count` tables.
pub fn watch_all(opts: StatsOptions, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut watched: Vec<(String, Result<Watched, String>)> = Vec::new();
    let mut tables = 0;
    let mut due = Instant::now();
    while opts.count.is_none_or(|c| tables < c) {
        // Keep what is still there, open what is new.
        watched.retain(|(_, w)| w.as_ref().is_ok_and(|w| !w.segment.is_removed()));
        for (shown, target) in all_targets() {
            if watched.iter().any(|(t, _)| *t == shown) {
                continue;
            }
            let opened = Segment::open(&target, Access::ReadOnly)
                .and_then(Watched::new)
                .map_err(|e| format!("{e:#}"));
            watched.push((shown, opened));
        }
        let mut live: Vec<&mut Watched> = watched
            .iter_mut()
            .filter_map(|(_, w)| w.as_mut().ok())
            .collect();
        due = (due + opts.interval).max(Instant::now());
        sample_until(&mut live, due);
        let rows: Vec<StatsRow> = watched
            .iter_mut()
            .map(|(shown, w)| (shown.clone(), measure(w)))
            .collect();
        if opts.json {
            writeln!(out, "{}", render::table_json(rows, clock))?;
        } else {
            if tables > 0 {
                writeln!(out)?;
            }
            render::write_table(&rows, out)?;
        }
        out.flush()?;
        tables += 1;
    }
    Ok(())
}

/// One `--list --stats` row's interval, or why there is none. Another
/// process truncating one segment is that row's outcome ("shrank ..."),
/// not a failure of the whole run.
fn measure(watched: &mut Result<Watched, String>) -> Result<Interval, String> {
    match watched {
        Ok(w) => match w.interval() {
            Ok(interval) => w
                .segment
                .mapping()
                .take_truncation()
                .map_or(Ok(interval), |t| Err(t.to_string())),
            Err(e) => Err(w
                .segment
                .mapping()
                .take_truncation()
                .map_or_else(|| format!("{e:#}"), |t| t.to_string())),
        },
        Err(e) => Err(e.clone()),
    }
}
