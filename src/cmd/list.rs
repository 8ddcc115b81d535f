//! `shm-read --list`: every System V segment (from /proc/sysvipc/shm) and
//! POSIX object (/dev/shm) this user can see, with what each holds.
//!
//! Contract: a segment that cannot be opened is listed with what the
//! kernel tables show and marked unreadable; one bad segment never fails
//! the whole listing. Each row is what `--info` reports for it: segments
//! this user may read are attached read-only for a moment to see what
//! they hold (so `ipcs -p`/`-t` then show shm-read as the last attacher);
//! the others are never attached.

mod peers;
mod removal;

use std::fmt::Write as _;
use std::io::Write;
use std::os::unix::fs::MetadataExt;

use indicatif::HumanBytes;
use serde_json::Value;

use crate::address::{PosixName, Target};
use crate::cmd::info;
use crate::cmd::report::{Addressed, Content, LayoutFacts, Listed, Os, SegmentReport, Unused};
use crate::lock::Holder;
use crate::sys::ShmKey;
use crate::usage::Scan;
use crate::users::user_name;

/// What `--list` is asked for.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// A JSON array of `--info` objects instead of a table.
    pub json: bool,
    /// Only the stale segments ([`info::stale_because`]).
    pub stale: bool,
    /// With `stale` or `unused`: remove them, each after checking it again.
    pub remove: bool,
    /// Which segments to list (and remove); all when empty.
    pub filter: Filter,
    /// With `remove` and an empty filter: other users' segments too.
    pub all_users: bool,
    /// Only the segments nobody maps or holds open ([`info::unused_because`]).
    pub unused: bool,
}

/// Which segments `--list` shows, and `--list --stale --remove` may
/// remove: those that match every part given. Empty, it matches all.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// One segment: a System V key or id, or a POSIX name.
    pub target: Option<Target>,
    /// POSIX names that start with this (without the leading slash).
    pub prefix: Option<String>,
    /// Segments owned by this uid.
    pub owner: Option<u32>,
}

impl Filter {
    /// Whether nothing was asked for, so every segment matches.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.target.is_none() && self.prefix.is_none() && self.owner.is_none()
    }

    /// Whether a listed segment matches.
    fn matches(&self, report: &SegmentReport) -> bool {
        let name = report.name();
        let target = match &self.target {
            None => true,
            Some(Target::Key { key, .. }) => {
                report.sysv_id().is_some() && report.key() == Some(*key)
            }
            Some(Target::Id(id)) => report.sysv_id() == Some(*id),
            Some(Target::Name(wanted)) => name == Some(wanted.shm_open_name().as_str()),
        };
        let prefix = self.prefix.as_ref().is_none_or(|prefix| {
            name.and_then(|n| n.strip_prefix('/'))
                .is_some_and(|n| n.starts_with(prefix.trim_start_matches('/')))
        });
        let owner = self.owner.is_none_or(|uid| report.uid() == uid);
        target && prefix && owner
    }
}

/// A listed segment: how to address it again (None: no tool can), and
/// what `--info` says of it.
type Row = (Option<Target>, SegmentReport);

/// Writes the listing as a table, or as a JSON array of `--info` objects;
/// with `remove`, removes the stale (or unused) segments instead and says
/// which.
pub fn list(opts: &ListOptions, out: &mut dyn Write) -> anyhow::Result<()> {
    let scan = crate::usage::scan();
    let mut rows = sysv_rows(&scan);
    rows.extend(posix_rows(&scan));
    rows.retain(|(_, report)| opts.filter.matches(report));
    if opts.stale {
        rows.retain(|(_, report)| report.stale().is_some());
    }
    // Without a filter, --remove takes only the caller's own: root would
    // otherwise remove every user's stale segments at once.
    let only = (opts.remove && opts.filter.is_empty() && !opts.all_users)
        .then(|| nix::unistd::geteuid().as_raw());
    let mut unknown = Vec::new();
    if opts.unused {
        unknown = unused_unknown(&rows, only);
        rows.retain(|(_, report)| unused(report) == Some(&Unused::Yes));
    }
    if opts.remove {
        for line in &unknown {
            writeln!(out, "skipped {line}")?;
        }
        return removal::remove_listed(&rows, only, opts, out);
    }
    if opts.unused {
        note_unseen_processes(&scan);
    }
    if opts.json {
        let array: Vec<Value> = rows.iter().map(|(_, report)| report.to_json()).collect();
        writeln!(out, "{}", Value::Array(array))?;
        return Ok(());
    }
    write_table(&rows, out)
}

fn unused(report: &SegmentReport) -> Option<&Unused> {
    report.usage.as_ref().map(|usage| &usage.unused)
}

/// POSIX objects nobody here uses, but that processes not seen may use:
/// a line for each (of `only`'s, if given).
fn unused_unknown(rows: &[Row], only: Option<u32>) -> Vec<String> {
    rows.iter()
        .filter(|(_, report)| only.is_none_or(|me| report.uid() == me))
        .filter_map(|(_, report)| match unused(report) {
            Some(Unused::Unknown(why)) => {
                Some(format!("{}: unused unknown ({why})", report.segment))
            }
            _ => None,
        })
        .collect()
}

/// For `--unused`: says on stderr why no POSIX segment counts as unused,
/// when not every process could be seen.
fn note_unseen_processes(scan: &Scan) {
    if !scan.every_namespace {
        // A note, not data: stdout keeps only the listing.
        crate::notice::notice(format_args!(
            "shm-read: processes of other PID namespaces are not visible here, so no POSIX segment \
             counts as unused; run it in the initial PID namespace (on the host) to find them"
        ));
    } else if scan.uninspectable > 0 {
        // A note, not data: stdout keeps only the listing.
        crate::notice::notice(format_args!(
            "shm-read: {} process(es) could not be inspected, so USERS may be incomplete and no POSIX \
             segment counts as unused; run as root to see every user",
            scan.uninspectable
        ));
    }
}

/// The table: a header, then one aligned row per segment (the last
/// column, HOLDS, unpadded).
fn write_table(rows: &[Row], out: &mut dyn Write) -> anyhow::Result<()> {
    let table: Vec<[String; 9]> = rows.iter().map(|(_, report)| columns(report)).collect();
    let header = [
        "SEGMENT", "ID", "SIZE", "OWNER", "MODE", "NATTCH", "RSS", "USERS", "HOLDS",
    ]
    .map(String::from);
    let mut widths = [0; 9];
    for row in std::iter::once(&header).chain(&table) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&table) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i == 8 {
                line.push_str(cell);
            } else {
                // Writing to a String cannot fail.
                let _ = write!(line, "{cell:w$}  ");
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// The USERS column: `PID/COMMAND` of each process using it, `-` for none
/// seen, and `+N?` for System V attachments by processes not visible here.
fn users_column(report: &SegmentReport) -> String {
    let Some(usage) = &report.usage else {
        return "-".to_owned();
    };
    let mut users: Vec<String> = usage
        .users
        .iter()
        .map(|u| format!("{}/{}", u.pid, u.command))
        .collect();
    if let Some(unseen) = usage.attach_unseen
        && unseen > 0
    {
        users.push(format!("+{unseen}?"));
    }
    if users.is_empty() {
        "-".to_owned()
    } else {
        users.join(",")
    }
}

/// A size for people (`4.00 KiB`).
fn bytes(n: impl TryInto<u64>) -> String {
    n.try_into()
        .map_or_else(|_| "-".to_owned(), |n| HumanBytes(n).to_string())
}

/// A time column: `-` when unset.
fn time(secs: i64) -> String {
    if secs <= 0 {
        "-".to_owned()
    } else {
        info::format_utc(secs)
    }
}

/// A stream peer's pid as the table shows it.
fn peer(peer: crate::cmd::report::Peer) -> String {
    match (peer.pid, peer.elsewhere) {
        (None, _) => "-".to_owned(),
        (Some(pid), true) => format!("{pid} (in another PID namespace)"),
        (Some(pid), false) => pid.to_string(),
    }
}

/// The HOLDS column: what the header says, by layout, and why it is stale.
fn holds(report: &SegmentReport) -> String {
    let holds = match &report.content {
        Content::Readable { layout, .. } => layout_holds(layout),
        Content::NoPermission | Content::Unknown => {
            format!("? ({})", report.error.as_deref().unwrap_or("-"))
        }
    };
    match report.stale() {
        Some(why) => format!("{holds}; STALE: {why}"),
        None => holds,
    }
}

fn layout_holds(layout: &LayoutFacts) -> String {
    // A writer killed while writing; the next writer takes the lock over.
    let lock = |holder: Holder| {
        if holder == Holder::Died {
            ", write lock holder died"
        } else {
            ""
        }
    };
    match layout {
        LayoutFacts::Snapshot(s) if s.versions == 0 => {
            format!("framed, nothing published yet{}", lock(s.lock))
        }
        // The size is about twice the content room: say why.
        LayoutFacts::Snapshot(s) => format!(
            "framed, {} in one of two {} slots, written {}{}",
            bytes(s.content_length),
            bytes(s.capacity),
            time(s.last_write_secs),
            lock(s.lock)
        ),
        LayoutFacts::Stream(s) => format!(
            "stream, {} in flight, writer {}, reader {}, {}",
            bytes(s.in_flight),
            peer(s.writer),
            peer(s.reader),
            s.state
        ),
        LayoutFacts::Log(l) => format!(
            "log, {} records ({}) held of {} appended, {} lossless followers",
            l.summary.held,
            bytes(l.summary.bytes_held),
            l.summary.appended,
            l.lossless_followers
        ),
        LayoutFacts::Foreign { content_length } => {
            format!("foreign, C string of {}", bytes(*content_length))
        }
    }
}

/// One table row from a segment's report.
fn columns(report: &SegmentReport) -> [String; 9] {
    let id = report
        .sysv_id()
        .map_or_else(|| "-".to_owned(), |id| id.to_string());
    let address = match (report.name(), report.key()) {
        (Some(name), _) => format!("-n {}", name.trim_start_matches('/')),
        (None, Some(key)) if key != ShmKey::PRIVATE => format!("-k {key}"),
        _ => format!("-i {id}"),
    };
    let (size, mode) = match &report.os {
        Os::Sysv { stat, .. } => (bytes(stat.size), stat.mode),
        Os::Posix { stat, .. } => (bytes(stat.st_size), stat.st_mode),
        Os::Listed(listed) => (bytes(listed.size), listed.mode),
    };
    let nattch = match &report.os {
        Os::Sysv { stat, .. } => stat.nattch.to_string(),
        Os::Posix { .. } | Os::Listed(_) => "-".to_owned(),
    };
    let resident = report
        .usage
        .as_ref()
        .and_then(|usage| usage.resident)
        .map_or_else(|| "-".to_owned(), |b| HumanBytes(b).to_string());
    [
        address,
        id,
        size,
        report.user().to_owned(),
        format!("{:04o}", mode & 0o777),
        nattch,
        resident,
        users_column(report),
        holds(report),
    ]
}

/// [`info::report`] for `target`, or, when that fails (a corrupt header,
/// a segment that vanished meanwhile), `known` plus why not; then who
/// uses it, from `scan`.
fn describe_or(target: &Target, known: SegmentReport, scan: &Scan) -> SegmentReport {
    let (mut report, segment) = match info::report(target) {
        Ok((mut report, segment)) => {
            if matches!(report.content, Content::NoPermission) {
                report.error = Some("no permission".to_owned());
            }
            if let Some(segment) = &segment {
                peers::mark_other_namespace_pids(segment, &mut report);
            }
            (report, segment)
        }
        Err(e) => {
            let mut known = known;
            known.error = Some(e.to_string());
            (known, None)
        }
    };
    report.usage = Some(info::usage(&report, segment.as_ref(), scan));
    report
}

fn sysv_rows(scan: &Scan) -> Vec<Row> {
    crate::sysvipc::table()
        .into_iter()
        .map(|row| {
            let target = Target::Id(row.id);
            let known = SegmentReport {
                segment: target.to_string(),
                addressed: Addressed::Id,
                os: info::sysv_os(row.id, row.stat),
                content: Content::Unknown,
                error: None,
                usage: None,
            };
            let report = describe_or(&target, known, scan);
            (Some(target), report)
        })
        .collect()
}

/// What the directory entry of a POSIX object says, named `name` (`/x`)
/// with `path` under /dev/shm if it has a usable one.
fn listed(name: String, path: Option<String>, meta: &std::fs::Metadata) -> SegmentReport {
    SegmentReport {
        segment: format!("POSIX name {name}"),
        addressed: Addressed::Name { name, path },
        os: Os::Listed(Listed {
            size: meta.len(),
            mode: meta.mode(),
            uid: meta.uid(),
            user: user_name(meta.uid()),
            device: meta.dev(),
            inode: meta.ino(),
        }),
        content: Content::Unknown,
        error: None,
        usage: None,
    }
}

fn posix_rows(scan: &Scan) -> Vec<Row> {
    let Ok(entries) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    // Read whole first: the directory's descriptor is closed before any
    // object is opened, so a low descriptor limit (ulimit -n) leaves room
    // to open them and to look up their owners' names.
    let entries: Vec<std::fs::DirEntry> = entries.filter_map(Result::ok).collect();
    let mut rows: Vec<(String, Row)> = entries
        .into_iter()
        .filter_map(|entry| {
            // DirEntry::metadata does not follow symlinks: only real objects.
            let meta = entry.metadata().ok().filter(std::fs::Metadata::is_file)?;
            let raw = entry.file_name();
            let Some(name) = raw.to_str().and_then(|n| PosixName::parse(n).ok()) else {
                // Listed, never hidden, and never printed raw: a name with a
                // newline or an escape sequence could forge lines or drive
                // the terminal.
                let shown = raw.to_string_lossy().escape_debug().to_string();
                let mut report = listed(format!("/{shown}"), None, &meta);
                report.error = Some(
                    "its name has control characters or is not UTF-8; remove it with rm in /dev/shm"
                        .to_owned(),
                );
                report.usage = Some(info::usage(&report, None, scan));
                return Some((shown, (None, report)));
            };
            let known = listed(
                name.shm_open_name(),
                Some(name.dev_shm_path().display().to_string()),
                &meta,
            );
            let key = name.as_str().to_owned();
            let target = Target::Name(name);
            let report = describe_or(&target, known, scan);
            Some((key, (Some(target), report)))
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows.into_iter().map(|(_, row)| row).collect()
}
