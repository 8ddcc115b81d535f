//! `shm-read --info`: what the OS and our header say about a segment, as
//! aligned text or one JSON object.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use crate::address::Target;
use crate::format::Layout;
use crate::format::framed::{self, Framed};
use crate::format::raw;
use crate::format::ring::{self, Ring};
use crate::segment::{Segment, Stat, user_name};
use crate::wait::Holder;

/// One reported fact: its JSON value and how text output shows it.
#[derive(Debug, Clone)]
pub struct Field {
    /// Key in the JSON object and label in the text.
    pub name: &'static str,
    /// Machine-readable value.
    pub json: Value,
    /// Human-readable value.
    pub text: String,
}

/// A field whose text is its JSON value (strings unquoted, null as `-`).
#[must_use]
pub fn field(name: &'static str, json: Value) -> Field {
    let text = match &json {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    Field { name, json, text }
}

fn time_field(name: &'static str, secs: i64) -> Field {
    if secs <= 0 {
        return field(name, Value::Null);
    }
    Field {
        name,
        json: json!(secs),
        text: format_utc(secs),
    }
}

/// Every fact about the segment we can find.
pub fn describe(segment: &Segment) -> anyhow::Result<Vec<Field>> {
    let mut fields = vec![field("segment", json!(segment.target().to_string()))];
    match segment.target() {
        Target::Key { key, .. } => fields.push(field("key", json!(key.to_string()))),
        Target::Name(name) => {
            fields.push(field("name", json!(name.shm_open_name())));
            fields.push(field(
                "path",
                json!(name.dev_shm_path().display().to_string()),
            ));
        }
        Target::Id(_) => {}
    }
    match segment.stat()? {
        Stat::Sysv { id, stat } => {
            fields.push(field("kind", json!("sysv")));
            if !matches!(segment.target(), Target::Key { .. }) {
                fields.push(field("key", json!(stat.key.to_string())));
            }
            fields.extend([
                field("id", json!(id.as_raw())),
                field("size", json!(stat.size)),
                field("mode", json!(format!("{:04o}", stat.mode & 0o777))),
                field("uid", json!(stat.uid)),
                field("user", json!(user_name(stat.uid))),
                field("gid", json!(stat.gid)),
                field("group", json!(group_name(stat.gid))),
                field("creator_uid", json!(stat.cuid)),
                field("creator_gid", json!(stat.cgid)),
                field("creator_pid", json!(stat.cpid)),
                field("last_pid", json!(stat.lpid)),
                field("attach_count", json!(stat.nattch)),
                time_field("attach_time", stat.atime),
                time_field("detach_time", stat.dtime),
                time_field("change_time", stat.ctime),
                field("removed", json!(stat.mode & crate::os::SHM_DEST != 0)),
            ]);
        }
        Stat::Posix(st) => fields.extend([
            field("kind", json!("posix")),
            field("size", json!(st.st_size)),
            field("mode", json!(format!("{:04o}", st.st_mode & 0o777))),
            field("uid", json!(st.st_uid)),
            field("user", json!(user_name(st.st_uid))),
            field("gid", json!(st.st_gid)),
            field("group", json!(group_name(st.st_gid))),
            time_field("access_time", st.st_atime),
            time_field("modify_time", st.st_mtime),
            time_field("change_time", st.st_ctime),
            field("removed", json!(st.st_nlink == 0)),
        ]),
    }
    fields.extend(layout_fields(segment)?);
    Ok(fields)
}

/// What our header says, by layout.
fn layout_fields(segment: &Segment) -> anyhow::Result<Vec<Field>> {
    let map = segment.mapping();
    let layout = Layout::detect(map);
    let mut fields = vec![field("layout", json!(layout.name()))];
    match layout {
        Layout::Framed => {
            let framed = Framed::open(map, segment.target())?;
            let version = framed.read()?;
            #[allow(
                clippy::cast_possible_wrap,
                reason = "ns since 1970 fit i64 until 2262"
            )]
            let written = (version.mtime_ns / 1_000_000_000) as i64;
            fields.extend([
                field("format_version", json!(framed::VERSION)),
                field("capacity", json!(framed.capacity())),
                field("content_length", json!(version.data.len())),
                field("versions", json!(version.seq)),
                field(
                    "last_writer_pid",
                    if version.seq == 0 {
                        Value::Null
                    } else {
                        json!(version.writer_pid)
                    },
                ),
                time_field("last_write_time", written),
                lock_holder_pid(framed.lock_holder()?),
                field("lock", json!(lock_state(framed.lock_holder()?))),
            ]);
        }
        Layout::Ring => {
            let ring = Ring::open(map, segment.target())?;
            let (in_flight, consumed) = ring.fill()?;
            let (writer, reader) = ring.peers()?;
            let flags = ring.flags()?;
            // As the kernel marked the claims; a writer that finished first is not dead.
            let (writer_claim, reader_claim) = ring.holders()?;
            let writer_died = writer_claim == Holder::Died && flags & ring::WRITER_DONE == 0;
            let state = if flags & ring::WRITER_FAILED != 0 {
                "writer failed"
            } else if flags & ring::READER_CLOSED != 0 {
                "reader closed"
            } else if writer_died && reader_claim == Holder::Died {
                "writer and reader died"
            } else if writer_died {
                "writer died"
            } else if reader_claim == Holder::Died {
                "reader died"
            } else if flags & ring::WRITER_DONE != 0 {
                "writer done"
            } else {
                "streaming"
            };
            let pid = |p: u32| if p == 0 { Value::Null } else { json!(p) };
            fields.extend([
                field("format_version", json!(ring::VERSION)),
                field("capacity", json!(ring.capacity())),
                field("bytes_in_flight", json!(in_flight)),
                field("bytes_read", json!(consumed)),
                field("writer_pid", pid(writer)),
                field("reader_pid", pid(reader)),
                field("stream_state", json!(state)),
            ]);
        }
        Layout::Foreign => {
            fields.push(field(
                "content_length",
                json!(raw::read_c_string(map)?.len()),
            ));
        }
    }
    Ok(fields)
}

/// The write lock holder's pid (tid, in its own PID namespace) while alive.
fn lock_holder_pid(holder: Holder) -> Field {
    match holder {
        Holder::Alive(tid) => field("lock_holder_pid", json!(tid)),
        Holder::Free | Holder::Died => field("lock_holder_pid", Value::Null),
    }
}

/// The write lock as the kernel keeps it: free, held, or its holder died.
fn lock_state(holder: Holder) -> &'static str {
    match holder {
        Holder::Free => "free",
        Holder::Alive(_) => "held",
        Holder::Died => "holder died",
    }
}

/// Aligned `name: value` lines.
#[must_use]
pub fn to_text(fields: &[Field]) -> String {
    let width = fields.iter().map(|f| f.name.len()).max().unwrap_or(0) + 1;
    let mut text = String::new();
    for f in fields {
        // Writing to a String cannot fail.
        let _ = writeln!(text, "{:width$} {}", format!("{}:", f.name), f.text);
    }
    text
}

/// One JSON object.
#[must_use]
pub fn to_json(fields: &[Field]) -> Value {
    Value::Object(
        fields
            .iter()
            .map(|f| (f.name.to_owned(), f.json.clone()))
            .collect::<Map<_, _>>(),
    )
}

fn group_name(gid: u32) -> String {
    nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
        .ok()
        .flatten()
        .map_or_else(|| gid.to_string(), |g| g.name)
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
#[must_use]
pub fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting_matches_known_dates() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_795_789_075), "2026-11-27T14:17:55Z");
    }
}
