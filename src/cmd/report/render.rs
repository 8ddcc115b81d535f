//! Rendering a [`SegmentReport`]: one ordered list of fields, shown as
//! aligned `name: value` text or as one JSON object.
//!
//! Contract:
//! - the JSON keys and text labels are written only here;
//! - an unknown fact renders as JSON `null` and text `-`;
//! - text and JSON show the same facts (JSON objects sort their keys).

use std::fmt::Write as _;

use indicatif::HumanBytes;
use serde_json::{Map, Value, json};

use crate::layout::log::{self, SlotInfo, SlotState};
use crate::layout::{Layout, ring, snapshot};
use crate::lock::Holder;

use super::{Addressed, Content, LayoutFacts, Os, Peer, SegmentReport, Unused, Usage};

impl SegmentReport {
    /// Aligned `name: value` lines.
    #[must_use]
    pub fn to_text(&self) -> String {
        let fields = self.fields();
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
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.fields()
                .into_iter()
                .map(|f| (f.name.to_owned(), f.json))
                .collect::<Map<_, _>>(),
        )
    }

    /// Every fact, in the order the text shows them.
    fn fields(&self) -> Vec<Field> {
        let mut fields = vec![field("segment", json!(self.segment))];
        match &self.addressed {
            Addressed::Key(key) => fields.push(field("key", json!(key.to_string()))),
            Addressed::Name { name, path } => {
                fields.push(field("name", json!(name)));
                if let Some(path) = path {
                    fields.push(field("path", json!(path)));
                }
            }
            Addressed::Id => {}
        }
        let key_shown = matches!(self.addressed, Addressed::Key(_));
        os_fields(&self.os, key_shown, &mut fields);
        match &self.content {
            Content::Readable { layout, stale } => {
                layout_fields(layout, &mut fields);
                fields.push(field("stale", json!(stale.is_some())));
                fields.push(field("stale_because", json!(stale)));
                fields.push(field("readable", json!(true)));
            }
            Content::NoPermission => {
                fields.push(Field {
                    name: "layout",
                    json: Value::Null,
                    text: "? (no permission to read it: content not shown)".to_owned(),
                });
                fields.push(field("readable", json!(false)));
            }
            Content::Unknown => fields.push(field("readable", json!(false))),
        }
        if let Some(error) = &self.error {
            fields.push(field("error", json!(error)));
        }
        if let Some(usage) = &self.usage {
            usage_fields(usage, &mut fields);
        }
        fields
    }
}

/// One rendered fact: its JSON value and how text output shows it.
struct Field {
    name: &'static str,
    json: Value,
    text: String,
}

/// A field whose text is its JSON value (strings unquoted, null as `-`).
fn field(name: &'static str, json: Value) -> Field {
    let text = match &json {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    Field { name, json, text }
}

/// A time in seconds since the epoch; unset (0) is null.
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

/// A pid that 0 means none of.
fn pid_json(pid: Option<u32>) -> Value {
    pid.map_or(Value::Null, |p| json!(p))
}

/// Mode, owner and group, as both kinds show them.
fn owner_fields(mode: u32, (uid, user): (u32, &str), (gid, group): (u32, &str)) -> [Field; 5] {
    [
        field("mode", json!(format!("{:04o}", mode & 0o777))),
        field("uid", json!(uid)),
        field("user", json!(user)),
        field("gid", json!(gid)),
        field("group", json!(group)),
    ]
}

fn os_fields(os: &Os, key_shown: bool, fields: &mut Vec<Field>) {
    match os {
        Os::Sysv {
            id,
            stat,
            user,
            group,
        } => {
            fields.push(field("kind", json!("sysv")));
            if !key_shown {
                fields.push(field("key", json!(stat.key.to_string())));
            }
            fields.push(field("id", json!(id.as_raw())));
            fields.push(field("size", json!(stat.size)));
            fields.extend(owner_fields(stat.mode, (stat.uid, user), (stat.gid, group)));
            fields.extend([
                field("creator_uid", json!(stat.cuid)),
                field("creator_gid", json!(stat.cgid)),
                field("creator_pid", json!(stat.cpid)),
                field("last_pid", json!(stat.lpid)),
                field("attach_count", json!(stat.nattch)),
                time_field("attach_time", stat.atime),
                time_field("detach_time", stat.dtime),
                time_field("change_time", stat.ctime),
                field("removed", json!(stat.mode & crate::sys::SHM_DEST != 0)),
            ]);
        }
        Os::Posix { stat, user, group } => {
            fields.push(field("kind", json!("posix")));
            fields.push(field("size", json!(stat.st_size)));
            fields.extend(owner_fields(
                stat.st_mode,
                (stat.st_uid, user),
                (stat.st_gid, group),
            ));
            fields.extend([
                time_field("access_time", stat.st_atime),
                time_field("modify_time", stat.st_mtime),
                time_field("change_time", stat.st_ctime),
                field("removed", json!(stat.st_nlink == 0)),
                field("device", json!(stat.st_dev)),
                field("inode", json!(stat.st_ino)),
            ]);
        }
        Os::Listed(listed) => fields.extend([
            field("kind", json!("posix")),
            field("size", json!(listed.size)),
            field("mode", json!(format!("{:04o}", listed.mode & 0o777))),
            field("uid", json!(listed.uid)),
            field("user", json!(listed.user)),
            field("device", json!(listed.device)),
            field("inode", json!(listed.inode)),
        ]),
    }
}

fn layout_fields(layout: &LayoutFacts, fields: &mut Vec<Field>) {
    match layout {
        LayoutFacts::Snapshot(s) => fields.extend([
            field("layout", json!(Layout::Snapshot.name())),
            field("format_version", json!(snapshot::VERSION)),
            field("capacity", json!(s.capacity)),
            field("content_length", json!(s.content_length)),
            field("versions", json!(s.versions)),
            field("last_writer_pid", pid_json(s.last_writer_pid)),
            time_field("last_write_time", s.last_write_secs),
            lock_holder_pid(s.lock),
            field("lock", json!(lock_state(s.lock))),
        ]),
        LayoutFacts::Stream(s) => fields.extend([
            field("layout", json!(Layout::Stream.name())),
            field("format_version", json!(ring::VERSION)),
            field("capacity", json!(s.capacity)),
            field("bytes_in_flight", json!(s.in_flight)),
            field("bytes_read", json!(s.read)),
            peer_field("writer_pid", s.writer),
            peer_field("reader_pid", s.reader),
            field("stream_state", json!(s.state)),
        ]),
        LayoutFacts::Log(l) => fields.extend([
            field("layout", json!(Layout::Log.name())),
            field("format_version", json!(l.version)),
            field("capacity", json!(l.capacity)),
            field("max_record", json!(l.max_record)),
            field("records_appended", json!(l.summary.appended)),
            field("records_held", json!(l.summary.held)),
            field("bytes_held", json!(l.summary.bytes_held)),
            field("oldest_record", json!(l.summary.oldest)),
            field("last_writer_pid", pid_json(l.last_writer_pid)),
            time_field("last_write_time", l.last_write_secs),
            lock_holder_pid(l.lock),
            field("lock", json!(lock_state(l.lock))),
            field("lossless_followers", json!(l.lossless_followers)),
            field("lossless_slots", json!(log::SLOTS)),
            follower_slots(&l.slots),
        ]),
        LayoutFacts::Foreign { content_length } => fields.extend([
            field("layout", json!(Layout::Foreign.name())),
            field("content_length", json!(content_length)),
        ]),
    }
}

/// A stream peer's pid, marked in the text when it lives in another PID
/// namespace (it stored the pid as it sees itself).
fn peer_field(name: &'static str, peer: Peer) -> Field {
    let mut f = field(name, pid_json(peer.pid));
    if let (Some(pid), true) = (peer.pid, peer.elsewhere) {
        f.text = format!("{pid} (in another PID namespace)");
    }
    f
}

/// The follower slots that are not free: slot, tid (in its own PID
/// namespace), position, and whether its follower lives by the kernel's
/// evidence (its follower lock, for a POSIX log), by its lock word alone
/// (System V), or not at all (a lock word with no lock behind it).
fn follower_slots(slots: &[SlotInfo]) -> Field {
    let (json, text): (Vec<Value>, Vec<String>) = slots
        .iter()
        .map(|info| {
            let (tid, live, evidence) = match info.state {
                SlotState::Live { tid, proven: true } => (tid, true, "follower lock held"),
                SlotState::Live { tid, proven: false } => (tid, true, "lock word only"),
                SlotState::Unproven { tid } => (tid, false, "no follower lock"),
                SlotState::Free => (0, false, "free"),
            };
            let tid_json = if tid == 0 { Value::Null } else { json!(tid) };
            let shown = format!(
                "{}: tid {}, {} ({evidence}), at {}",
                info.slot,
                if tid == 0 { "?".to_owned() } else { tid.to_string() },
                if live { "live" } else { "not live" },
                info.position
            );
            (
                json!({"slot": info.slot, "tid": tid_json, "live": live, "evidence": evidence, "position": info.position}),
                shown,
            )
        })
        .unzip();
    Field {
        name: "follower_slots",
        json: Value::Array(json),
        text: if text.is_empty() {
            "-".to_owned()
        } else {
            text.join("; ")
        },
    }
}

/// The write lock holder's pid (tid, in its own PID namespace) while alive.
fn lock_holder_pid(holder: Holder) -> Field {
    match holder {
        Holder::Alive(tid) => field("lock_holder_pid", json!(tid)),
        Holder::Free | Holder::Died => field("lock_holder_pid", Value::Null),
    }
}

/// The write lock as the kernel keeps it: free, held, or its holder died.
#[must_use]
pub fn lock_state(holder: Holder) -> &'static str {
    match holder {
        Holder::Free => "free",
        Holder::Alive(_) => "held",
        Holder::Died => "holder died",
    }
}

fn usage_fields(usage: &Usage, fields: &mut Vec<Field>) {
    let users_json: Vec<Value> = usage
        .users
        .iter()
        .map(|u| json!({"pid": u.pid, "command": u.command, "mappings": u.mappings, "fds": u.fds}))
        .collect();
    let users_text = if usage.users.is_empty() {
        "none seen".to_owned()
    } else {
        usage
            .users
            .iter()
            .map(|u| {
                let how = match (u.mappings > 0, u.fds > 0) {
                    (true, true) => "mapped, open",
                    (true, false) => "mapped",
                    _ => "open",
                };
                format!("{} {} ({how})", u.pid, u.command)
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    fields.push(Field {
        name: "users",
        json: Value::Array(users_json),
        text: users_text,
    });
    fields.push(field("uninspectable", json!(usage.uninspectable)));
    if let Some(unseen) = usage.attach_unseen {
        fields.push(field("attach_unseen", json!(unseen)));
    }
    fields.push(match &usage.unused {
        Unused::Yes => field("unused", json!(true)),
        Unused::No => field("unused", json!(false)),
        Unused::Unknown(why) => Field {
            name: "unused",
            json: json!(false),
            text: format!("unknown ({why})"),
        },
    });
    fields.push(match usage.resident {
        Some(bytes) => Field {
            name: "resident",
            json: json!(bytes),
            text: HumanBytes(bytes).to_string(),
        },
        None => field("resident", Value::Null),
    });
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
    use crate::cmd::report::Listed;

    #[test]
    fn utc_formatting_matches_known_dates() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_795_789_075), "2026-11-27T14:17:55Z");
    }

    fn listed_report() -> SegmentReport {
        SegmentReport {
            segment: "POSIX name /x".to_owned(),
            addressed: Addressed::Name {
                name: "/x".to_owned(),
                path: Some("/dev/shm/x".to_owned()),
            },
            os: Os::Listed(Listed {
                size: 4096,
                mode: 0o100_600,
                uid: 1000,
                user: "alice".to_owned(),
                device: 5,
                inode: 9,
            }),
            content: Content::Unknown,
            error: Some("gone".to_owned()),
            usage: None,
        }
    }

    #[test]
    fn text_aligns_every_fact_in_order_and_json_holds_the_same() {
        let report = listed_report();
        let text = report.to_text();
        let first: Vec<&str> = text.lines().take(3).collect();
        assert_eq!(
            first,
            [
                "segment:  POSIX name /x",
                "name:     /x",
                "path:     /dev/shm/x"
            ]
        );
        assert!(text.contains("mode:     0600\n"));
        assert!(text.ends_with("readable: false\nerror:    gone\n"));
        let json = report.to_json();
        assert_eq!(json["size"], json!(4096));
        assert_eq!(json["readable"], json!(false));
        assert_eq!(json.as_object().map(Map::len), Some(text.lines().count()));
    }
}
