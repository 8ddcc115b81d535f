//! `shm-read --list`: every System V segment (from /proc/sysvipc/shm) and
//! POSIX object (/dev/shm) this user can see, with what each holds.
//!
//! Contract: a segment that cannot be opened is listed with what the
//! kernel tables show and marked unreadable; one bad segment never fails
//! the whole listing.

use std::fmt::Write as _;
use std::io::Write;
use std::os::unix::fs::MetadataExt;

use serde_json::{Value, json};

use crate::address::{PosixName, Target};
use crate::info::{self, Field, field};
use crate::os::ShmId;
use crate::segment::{Access, Segment, user_name};

/// Writes the listing as a table, or as a JSON array of `--info` objects.
pub fn list(as_json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut rows = sysv_rows();
    rows.extend(posix_rows());
    if as_json {
        let array: Vec<Value> = rows.iter().map(|r| info::to_json(r)).collect();
        writeln!(out, "{}", Value::Array(array))?;
        return Ok(());
    }
    let table: Vec<[String; 7]> = rows.iter().map(|r| columns(r)).collect();
    let header = ["SEGMENT", "ID", "SIZE", "OWNER", "MODE", "NATTCH", "HOLDS"].map(String::from);
    let mut widths = [0; 7];
    for row in std::iter::once(&header).chain(&table) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&table) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i == 6 {
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

fn get<'f>(fields: &'f [Field], name: &str) -> Option<&'f Field> {
    fields.iter().find(|f| f.name == name)
}

fn text(fields: &[Field], name: &str) -> String {
    get(fields, name).map_or_else(|| "-".to_owned(), |f| f.text.clone())
}

/// One table row from a segment's fields.
fn columns(fields: &[Field]) -> [String; 7] {
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
            "foreign" => format!(
                "foreign, C string of {} bytes",
                text(fields, "content_length")
            ),
            other => other.to_owned(),
        }
    };
    [
        address,
        text(fields, "id"),
        text(fields, "size"),
        text(fields, "user"),
        text(fields, "mode"),
        text(fields, "attach_count"),
        holds,
    ]
}

/// Full `--info` fields when the segment can be opened and parsed; else
/// `known` plus why not.
fn describe_or(target: &Target, mut known: Vec<Field>) -> Vec<Field> {
    let described = Segment::open(target, Access::ReadOnly).and_then(|s| info::describe(&s));
    match described {
        Ok(mut fields) => {
            fields.push(field("readable", json!(true)));
            fields
        }
        Err(e) => {
            let why = e.to_string();
            let why = if why.starts_with("permission denied") {
                "no permission".to_owned()
            } else {
                why
            };
            known.push(field("readable", json!(false)));
            known.push(field("error", json!(why)));
            known
        }
    }
}

fn sysv_rows() -> Vec<Vec<Field>> {
    let Ok(table) = std::fs::read_to_string("/proc/sysvipc/shm") else {
        return Vec::new();
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let key: i32 = cols.first()?.parse().ok()?;
            let id: i32 = cols.get(1)?.parse().ok()?;
            let perms = u32::from_str_radix(cols.get(2)?, 8).ok()?;
            let size: u64 = cols.get(3)?.parse().ok()?;
            let nattch: u64 = cols.get(6)?.parse().ok()?;
            let uid: u32 = cols.get(7)?.parse().ok()?;
            let key = crate::os::ShmKey::from_raw(key);
            let known = vec![
                field("segment", json!(format!("id {id}"))),
                field("kind", json!("sysv")),
                field("key", json!(key.to_string())),
                field("id", json!(id)),
                field("size", json!(size)),
                field("mode", json!(format!("{:04o}", perms & 0o777))),
                field("uid", json!(uid)),
                field("user", json!(user_name(uid))),
                field("attach_count", json!(nattch)),
            ];
            Some(describe_or(&Target::Id(ShmId::from_raw(id)), known))
        })
        .collect()
}

fn posix_rows() -> Vec<Vec<Field>> {
    let Ok(entries) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    let mut rows: Vec<(String, Vec<Field>)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let meta = entry.metadata().ok().filter(std::fs::Metadata::is_file)?;
            let name = PosixName::parse(entry.file_name().to_str()?).ok()?;
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
            ];
            let key = name.as_str().to_owned();
            Some((key, describe_or(&Target::Name(name), known)))
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows.into_iter().map(|(_, fields)| fields).collect()
}
