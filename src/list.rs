//! `shm-read --list`: every System V segment (from /proc/sysvipc/shm) and
//! POSIX object (/dev/shm) this user can see, with what each holds.
//!
//! Contract: a segment that cannot be opened is listed with what the
//! kernel tables show and marked unreadable; one bad segment never fails
//! the whole listing. Each row is what `--info` reports for it: segments
//! this user may read are attached read-only for a moment to see what
//! they hold (so `ipcs -p`/`-t` then show shm-read as the last attacher);
//! the others are never attached.

use std::fmt::Write as _;
use std::io::Write;
use std::os::unix::fs::MetadataExt;

use serde_json::{Value, json};

use crate::address::{PosixName, Target};
use crate::error::{Kind, failure};
use crate::info::{self, Field, field};
use crate::segment::{Access, Segment, user_name};
use crate::usage::Scan;

/// What `--list` is asked for.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListOptions {
    /// A JSON array of `--info` objects instead of a table.
    pub json: bool,
    /// Only the stale segments ([`info::stale_because`]).
    pub stale: bool,
    /// With `stale` or `unused`: remove them, each after checking it again.
    pub remove: bool,
    /// Only the segments nobody maps or holds open ([`info::unused_because`]).
    pub unused: bool,
}

/// Writes the listing as a table, or as a JSON array of `--info` objects;
/// with `remove`, removes the stale (or unused) segments instead and says
/// which.
pub fn list(opts: ListOptions, out: &mut dyn Write) -> anyhow::Result<()> {
    let scan = crate::usage::scan();
    let mut rows = sysv_rows(&scan);
    rows.extend(posix_rows(&scan));
    if opts.stale {
        rows.retain(|(_, fields)| get(fields, "stale").is_some_and(|f| f.json == json!(true)));
    }
    if opts.unused {
        rows.retain(|(_, fields)| get(fields, "unused").is_some_and(|f| f.json == json!(true)));
    }
    if opts.remove {
        // Each is checked again right before removal, for all it was listed for.
        let recheck = |segment: &Segment| -> anyhow::Result<Option<&'static str>> {
            let mut reason = None;
            if opts.stale {
                let Some(stale) = info::stale_because(segment)? else {
                    return Ok(None);
                };
                reason = Some(stale);
            }
            if opts.unused {
                let Some(unused) = info::unused_because(segment)? else {
                    return Ok(None);
                };
                reason = reason.or(Some(unused));
            }
            Ok(reason)
        };
        return remove_stale(&rows, &recheck, out);
    }
    if opts.unused && scan.uninspectable > 0 {
        // A note, not data: stdout keeps only the listing.
        eprintln!(
            "shm-read: {} process(es) could not be inspected, so USERS may be incomplete and no POSIX \
             segment counts as unused; run as root to see every user",
            scan.uninspectable
        );
    }
    let rows: Vec<Vec<Field>> = rows.into_iter().map(|(_, fields)| fields).collect();
    if opts.json {
        let array: Vec<Value> = rows.iter().map(|r| info::to_json(r)).collect();
        writeln!(out, "{}", Value::Array(array))?;
        return Ok(());
    }
    let table: Vec<[String; 9]> = rows.iter().map(|r| columns(r)).collect();
    let header = [
        "SEGMENT", "ID", "SIZE", "RSS", "OWNER", "MODE", "NATTCH", "USERS", "HOLDS",
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

/// Removes each segment in `rows`: opened again, found stale (or unused:
/// whatever `recheck` asks) again on what was opened, and removed by
/// identity (System V by id, POSIX only
/// while the name still leads to that object), so a segment that someone
/// took up again since it was listed is left alone. What is left is the
/// moment between that last check and the removal. One line per segment
/// on `out`; any failure makes the whole run fail at the end.
fn remove_stale(
    rows: &[(Option<Target>, Vec<Field>)],
    recheck: &dyn Fn(&Segment) -> anyhow::Result<Option<&'static str>>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut failed = 0;
    for (target, fields) in rows {
        let Some(target) = target else {
            writeln!(
                out,
                "not removed: {} (no usable address)",
                text(fields, "segment")
            )?;
            failed += 1;
            continue;
        };
        let removed =
            Segment::open(target, Access::ReadOnly).and_then(|segment| match recheck(&segment)? {
                Some(reason) => segment.remove().map(|()| Some(reason)),
                None => Ok(None),
            });
        match removed {
            Ok(Some(reason)) => writeln!(out, "removed {target}: {reason}")?,
            Ok(None) => writeln!(out, "kept {target}: in use again")?,
            Err(e) => {
                writeln!(out, "not removed: {target}: {e:#}")?;
                failed += 1;
            }
        }
    }
    out.flush()?;
    if failed > 0 {
        return Err(failure(
            Kind::Failed,
            format!(
                "{failed} segment(s) could not be removed (see above); run as their owner or root"
            ),
        ));
    }
    Ok(())
}

fn get<'f>(fields: &'f [Field], name: &str) -> Option<&'f Field> {
    fields.iter().find(|f| f.name == name)
}

fn text(fields: &[Field], name: &str) -> String {
    get(fields, name).map_or_else(|| "-".to_owned(), |f| f.text.clone())
}

/// The USERS column: `PID/COMMAND` of each process using it, `-` for none
/// seen, and `+N?` for System V attachments by processes not visible here.
fn users_column(fields: &[Field]) -> String {
    let mut users: Vec<String> = get(fields, "users")
        .and_then(|f| f.json.as_array())
        .map(|users| {
            users
                .iter()
                .map(|u| format!("{}/{}", u["pid"], u["command"].as_str().unwrap_or("?")))
                .collect()
        })
        .unwrap_or_default();
    if let Some(unseen) = get(fields, "attach_unseen").and_then(|f| f.json.as_u64())
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

/// One table row from a segment's fields.
fn columns(fields: &[Field]) -> [String; 9] {
    let address = match (get(fields, "name"), get(fields, "key")) {
        (Some(name), _) => format!("-n {}", name.text.trim_start_matches('/')),
        (None, Some(key)) if key.text != "0x00000000" => format!("-k {}", key.text),
        _ => format!("-i {}", text(fields, "id")),
    };
    let holds = if get(fields, "readable").is_some_and(|f| f.json == json!(false)) {
        format!("? ({})", text(fields, "error"))
    } else {
        // A writer killed while writing; the next writer takes the lock over.
        let lock = match text(fields, "lock").as_str() {
            "holder died" => ", write lock holder died",
            _ => "",
        };
        match text(fields, "layout").as_str() {
            "framed" if text(fields, "versions") == "0" => {
                format!("framed, nothing published yet{lock}")
            }
            "framed" => format!(
                "framed, {} bytes, written {}{lock}",
                text(fields, "content_length"),
                text(fields, "last_write_time")
            ),
            "stream" => format!(
                "stream, {} bytes in flight, writer {}, reader {}, {}",
                text(fields, "bytes_in_flight"),
                text(fields, "writer_pid"),
                text(fields, "reader_pid"),
                text(fields, "stream_state")
            ),
            "log" => format!(
                "log, {} records ({} bytes) held of {} appended, {} lossless followers",
                text(fields, "records_held"),
                text(fields, "bytes_held"),
                text(fields, "records_appended"),
                text(fields, "lossless_followers")
            ),
            "foreign" => format!(
                "foreign, C string of {} bytes",
                text(fields, "content_length")
            ),
            other => other.to_owned(),
        }
    };
    let holds = if get(fields, "stale").is_some_and(|f| f.json == json!(true)) {
        format!("{holds}; STALE: {}", text(fields, "stale_because"))
    } else {
        holds
    };
    [
        address,
        text(fields, "id"),
        text(fields, "size"),
        text(fields, "resident"),
        text(fields, "user"),
        text(fields, "mode"),
        text(fields, "attach_count"),
        users_column(fields),
        holds,
    ]
}

/// [`info::report`] for `target`, or, when that fails (a corrupt header,
/// a segment that vanished meanwhile), `known` plus why not; then who
/// uses it, from `scan`.
fn describe_or(target: &Target, mut known: Vec<Field>, scan: &Scan) -> Vec<Field> {
    match info::report(target) {
        Ok((mut fields, segment)) => {
            if get(&fields, "readable").is_some_and(|f| f.json == json!(false)) {
                fields.push(field("error", json!("no permission")));
            }
            fields.extend(info::usage_fields(&fields, segment.as_ref(), scan));
            fields
        }
        Err(e) => {
            known.push(field("readable", json!(false)));
            known.push(field("error", json!(e.to_string())));
            known.extend(info::usage_fields(&known, None, scan));
            known
        }
    }
}

/// A listed segment: how to address it again (None: no tool can), and
/// what `--info` says of it.
type Row = (Option<Target>, Vec<Field>);

fn sysv_rows(scan: &Scan) -> Vec<Row> {
    info::sysv_table()
        .into_iter()
        .map(|(id, stat)| {
            let target = Target::Id(id);
            let mut known = vec![field("segment", json!(target.to_string()))];
            known.extend(info::sysv_fields(&target, id, &stat));
            let fields = describe_or(&target, known, scan);
            (Some(target), fields)
        })
        .collect()
}

/// A row for an object whose name no tool can address (control
/// characters, not UTF-8): what the directory says, and how to remove it.
fn unusable_name_row(shown: &str, meta: &std::fs::Metadata) -> Vec<Field> {
    vec![
        field("segment", json!(format!("POSIX name /{shown}"))),
        field("name", json!(format!("/{shown}"))),
        field("kind", json!("posix")),
        field("size", json!(meta.len())),
        field("mode", json!(format!("{:04o}", meta.mode() & 0o777))),
        field("uid", json!(meta.uid())),
        field("user", json!(user_name(meta.uid()))),
        field("device", json!(meta.dev())),
        field("inode", json!(meta.ino())),
        field("readable", json!(false)),
        field(
            "error",
            json!("its name has control characters or is not UTF-8; remove it with rm in /dev/shm"),
        ),
    ]
}

fn posix_rows(scan: &Scan) -> Vec<Row> {
    let Ok(entries) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    let mut rows: Vec<(String, Row)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            // DirEntry::metadata does not follow symlinks: only real objects.
            let meta = entry.metadata().ok().filter(std::fs::Metadata::is_file)?;
            let raw = entry.file_name();
            let Some(name) = raw.to_str().and_then(|n| PosixName::parse(n).ok()) else {
                // Listed, never hidden, and never printed raw: a name with a
                // newline or an escape sequence could forge lines or drive
                // the terminal.
                let shown = raw.to_string_lossy().escape_debug().to_string();
                let mut fields = unusable_name_row(&shown, &meta);
                fields.extend(info::usage_fields(&fields, None, scan));
                return Some((shown.clone(), (None, fields)));
            };
            let known = vec![
                field(
                    "segment",
                    json!(format!("POSIX name {}", name.shm_open_name())),
                ),
                field("name", json!(name.shm_open_name())),
                field("path", json!(name.dev_shm_path().display().to_string())),
                field("kind", json!("posix")),
                field("size", json!(meta.len())),
                field("mode", json!(format!("{:04o}", meta.mode() & 0o777))),
                field("uid", json!(meta.uid())),
                field("user", json!(user_name(meta.uid()))),
                field("device", json!(meta.dev())),
                field("inode", json!(meta.ino())),
            ];
            let key = name.as_str().to_owned();
            let target = Target::Name(name);
            let fields = describe_or(&target, known, scan);
            Some((key, (Some(target), fields)))
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows.into_iter().map(|(_, row)| row).collect()
}
