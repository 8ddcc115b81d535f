//! `shm-read --info`: what the OS and our header say about a segment, as
//! aligned text or one JSON object.
//!
//! Contract: metadata anyone may see (`ipcs`, `ls -l`) is shown to anyone;
//! content fields only to those who may read the segment, and a segment
//! they may not read is never attached. Only headers are read, never the
//! whole content, so describing a 1 GiB segment costs no 1 GiB copy.

use std::fmt::Write as _;
use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Map, Value, json};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{FileStat, Mode, SFlag};

use crate::address::{Address, Target};
use crate::cmd::explain::kind_of;
use crate::error::{Kind, failure};
use crate::layout::Layout;
use crate::layout::log::{self, Log};
use crate::layout::ring::{self, Ring};
use crate::layout::snapshot::{self, Snapshot};
use crate::segment::{Access, Segment, Stat, timed_out};
use crate::sys::{ShmId, SysvStat};
use crate::usage::{Identity, Scan};
use crate::users::{group_name, user_name};
use crate::wait::{self, Deadline, Holder};

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

/// How the segment was addressed: the fields every report starts with.
fn address_fields(target: &Target) -> Vec<Field> {
    let mut fields = vec![field("segment", json!(target.to_string()))];
    match target {
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
    fields
}

/// What the kernel records about System V segment `id`, as `ipcs` shows it.
#[must_use]
pub fn sysv_fields(target: &Target, id: ShmId, stat: &SysvStat) -> Vec<Field> {
    let mut fields = vec![field("kind", json!("sysv"))];
    if !matches!(target, Target::Key { .. }) {
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
        field("removed", json!(stat.mode & crate::sys::SHM_DEST != 0)),
    ]);
    fields
}

/// What the file system records about a POSIX object, as `ls -l` shows it.
#[must_use]
pub fn posix_fields(st: &FileStat) -> Vec<Field> {
    vec![
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
        field("device", json!(st.st_dev)),
        field("inode", json!(st.st_ino)),
    ]
}

/// Every fact about an attached segment: what the OS says and what its
/// header says. Reads headers only, never the whole content.
pub fn describe(segment: &Segment) -> anyhow::Result<Vec<Field>> {
    let mut fields = address_fields(segment.target());
    match segment.stat()? {
        Stat::Sysv { id, stat } => fields.extend(sysv_fields(segment.target(), id, &stat)),
        Stat::Posix(st) => fields.extend(posix_fields(&st)),
    }
    fields.extend(layout_fields(segment)?);
    let reason = stale_because(segment)?;
    fields.push(field("stale", json!(reason.is_some())));
    fields.push(field("stale_because", json!(reason)));
    Ok(fields)
}

/// Why nothing can be using `segment` any more, if so: what a crash leaves
/// behind. Only what the kernel records counts (robust lock and claim
/// words, the System V attach count), never a pid read from the header:
/// - a stream ring that can never complete (its writer died or failed, or
///   its reader died or stopped) and that no live process holds;
/// - a snapshot or log whose write lock holder died, that nobody holds now
///   and, for System V, that no process has attached (a POSIX object's
///   users cannot be counted, so there a died holder alone counts; its
///   last complete version or records are still readable until removed).
///
/// A finished stream nobody has read yet, or a snapshot whose writer
/// simply exited, is not stale: its data is waiting for a reader.
pub fn stale_because(segment: &Segment) -> anyhow::Result<Option<&'static str>> {
    let map = segment.mapping();
    let attached = match segment.stat()? {
        Stat::Sysv { stat, .. } => stat.nattch > 0,
        Stat::Posix(_) => false,
    };
    Ok(match Layout::detect(map) {
        Layout::Stream => {
            let ring = Ring::open(map, segment.target())?;
            ring.stale_because(ring.holders()?.0)?
        }
        Layout::Snapshot if !attached => (Snapshot::open(map, segment.target())?.lock_holder()?
            == Holder::Died)
            .then_some("a writer died holding its write lock and nobody has written since"),
        Layout::Log if !attached => (Log::open(map, segment.target())?.writer()?.0 == Holder::Died)
            .then_some("a writer died holding its write lock and nobody has written since"),
        _ => None,
    })
}

/// What `--info` shows, and `--list` for each segment: everything
/// [`describe`] finds when this user may read the segment (plus
/// `readable: true`); when they may not, what `ipcs` and `ls -l` would
/// show (from /proc/sysvipc/shm or an lstat of /dev/shm/NAME) with
/// `readable: false` and `layout: null` instead of the content fields.
/// An unreadable segment is never attached, so what `ipcs -p`/`ipcs -t`
/// show about it is not disturbed.
pub fn report(target: &Target) -> anyhow::Result<(Vec<Field>, Option<Segment>)> {
    // Opening checks permission before shmat/mmap: an unreadable segment
    // fails here without being attached.
    match Segment::open(target, Access::ReadOnly) {
        Ok(segment) => {
            let mut fields = describe(&segment)?;
            fields.push(field("readable", json!(true)));
            Ok((fields, Some(segment)))
        }
        Err(e) if kind_of(&e) == Some(Kind::NotFound) => Err(e),
        Err(e) => unreadable(target).map(|fields| (fields, None)).ok_or(e),
    }
}

/// The OS metadata of a segment that exists but that this user may not
/// read; None when it is readable after all, or gone.
fn unreadable(target: &Target) -> Option<Vec<Field>> {
    let mut fields = address_fields(target);
    match target {
        Target::Name(name) => {
            // Non-blocking: a FIFO planted at the name must not hang us.
            let denied = nix::sys::mman::shm_open(
                name.shm_open_name().as_str(),
                OFlag::O_RDONLY | OFlag::O_NONBLOCK,
                Mode::empty(),
            );
            if !matches!(denied, Err(Errno::EACCES | Errno::EPERM)) {
                return None;
            }
            // lstat: a symlink planted in /dev/shm is not the object.
            let st = nix::sys::stat::lstat(&name.dev_shm_path()).ok()?;
            if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
                return None;
            }
            fields.extend(posix_fields(&st));
        }
        Target::Key { key, .. } => {
            let row = crate::sysvipc::by_key(*key)?;
            if !matches!(
                crate::sys::shm_stat(row.id),
                Err(Errno::EACCES | Errno::EPERM)
            ) {
                return None;
            }
            fields.extend(sysv_fields(target, row.id, &row.stat));
        }
        Target::Id(want) => {
            let row = crate::sysvipc::by_id(*want)?;
            if !matches!(
                crate::sys::shm_stat(row.id),
                Err(Errno::EACCES | Errno::EPERM)
            ) {
                return None;
            }
            fields.extend(sysv_fields(target, row.id, &row.stat));
        }
    }
    fields.push(Field {
        name: "layout",
        json: Value::Null,
        text: "? (no permission to read it: content not shown)".to_owned(),
    });
    fields.push(field("readable", json!(false)));
    Some(fields)
}

/// What our header says, by layout. Headers only: the content of a
/// framed version is not copied, and a foreign C string is measured by
/// scanning for its NUL in small chunks.
fn layout_fields(segment: &Segment) -> anyhow::Result<Vec<Field>> {
    let map = segment.mapping();
    let layout = Layout::detect(map);
    let mut fields = vec![field("layout", json!(layout.name()))];
    match layout {
        Layout::Snapshot => {
            let framed = Snapshot::open(map, segment.target())?;
            let version = framed.published()?;
            #[allow(
                clippy::cast_possible_wrap,
                reason = "ns since 1970 fit i64 until 2262"
            )]
            let written = (version.mtime_ns / 1_000_000_000) as i64;
            fields.extend([
                field("format_version", json!(snapshot::VERSION)),
                field("capacity", json!(framed.capacity())),
                field("content_length", json!(version.len)),
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
        Layout::Stream => {
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
        Layout::Log => fields.extend(log_fields(
            &Log::open(map, segment.target())?.with_file(segment.file()),
        )?),
        Layout::Foreign => {
            let length = map.find_nul(0)?.unwrap_or(map.len());
            fields.push(field("content_length", json!(length)));
        }
    }
    Ok(fields)
}

/// The kernel's identity of a reported segment, from its `kind` and `id`
/// (System V) or `device` and `inode` (POSIX) fields.
#[must_use]
pub fn identity(fields: &[Field]) -> Option<Identity> {
    let get = |name| fields.iter().find(|f| f.name == name).map(|f| &f.json);
    match get("kind")?.as_str()? {
        "sysv" => Some(Identity::Sysv(ShmId::from_raw(
            i32::try_from(get("id")?.as_i64()?).ok()?,
        ))),
        "posix" => Some(Identity::Posix {
            dev: get("device")?.as_u64()?,
            ino: get("inode")?.as_u64()?,
        }),
        _ => None,
    }
}

/// Who uses the segment that `fields` describe (from `scan`), whether
/// anyone does, and how much of it is resident in memory: System V from
/// the kernel's table, POSIX with mincore on `segment`'s mapping (unknown
/// when this user could not open it).
#[must_use]
pub fn usage_fields(fields: &[Field], segment: Option<&Segment>, scan: &Scan) -> Vec<Field> {
    let Some(identity) = identity(fields) else {
        return Vec::new();
    };
    let users = scan.users(&identity);
    let users_json: Vec<Value> = users
        .iter()
        .map(|u| json!({"pid": u.pid, "command": u.command, "mappings": u.mappings, "fds": u.fds}))
        .collect();
    let users_text = if users.is_empty() {
        "none seen".to_owned()
    } else {
        users
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
    let mut out = vec![
        Field {
            name: "users",
            json: Value::Array(users_json),
            text: users_text,
        },
        field("uninspectable", json!(scan.uninspectable)),
    ];
    let nattch = fields
        .iter()
        .find(|f| f.name == "attach_count")
        .and_then(|f| f.json.as_u64())
        .unwrap_or(0);
    let resident = match identity {
        Identity::Sysv(id) => {
            let seen: usize = users.iter().map(|u| u.mappings).sum();
            let unseen = nattch.saturating_sub(seen as u64);
            out.push(field("attach_unseen", json!(unseen)));
            crate::sysvipc::by_id(id).and_then(|row| row.rss)
        }
        Identity::Posix { .. } => segment.and_then(|s| s.mapping().resident_bytes().ok()),
    };
    // System V: the kernel's attach count covers every process, in any
    // namespace. POSIX: only the scan, which must have seen every process.
    out.push(match identity {
        Identity::Sysv(_) => field("unused", json!(nattch == 0)),
        Identity::Posix { .. } if !users.is_empty() => field("unused", json!(false)),
        Identity::Posix { .. } => match posix_unused_unknown(scan) {
            Some(why) => Field {
                name: "unused",
                json: json!(false),
                text: format!("unknown ({why})"),
            },
            None => field("unused", json!(true)),
        },
    });
    out.push(match resident {
        Some(bytes) => Field {
            name: "resident",
            json: json!(bytes),
            text: indicatif::HumanBytes(bytes).to_string(),
        },
        None => field("resident", Value::Null),
    });
    out
}

/// Why a POSIX object that no process here uses may still be in use, if
/// `scan` did not see every process on the machine.
fn posix_unused_unknown(scan: &Scan) -> Option<String> {
    if !scan.every_namespace {
        Some("processes of other PID namespaces are not visible here".to_owned())
    } else if scan.uninspectable > 0 {
        Some(format!(
            "{} process(es) could not be inspected",
            scan.uninspectable
        ))
    } else {
        None
    }
}

/// Why `segment` counts as unused, if it does, checked afresh (for
/// `--unused --remove`): a System V segment that the kernel counts no
/// attachment of (in any namespace: nothing else can hold one), a POSIX
/// object that no process maps or holds open, when every process on the
/// machine could be inspected (from the initial PID namespace).
pub fn unused_because(segment: &Segment) -> anyhow::Result<Option<&'static str>> {
    Ok(match segment.stat()? {
        Stat::Sysv { stat, .. } => (stat.nattch == 0).then_some("no process has it attached"),
        Stat::Posix(st) => {
            let scan = crate::usage::scan();
            let identity = Identity::Posix {
                dev: st.st_dev,
                ino: st.st_ino,
            };
            (posix_unused_unknown(&scan).is_none() && scan.users(&identity).is_empty())
                .then_some("no process maps it or holds it open")
        }
    })
}

/// `shm-read --info`: prints [`report`] for `address` as text or JSON,
/// first waiting for the segment to exist when `wait` (up to `timeout`),
/// and removes the segment afterwards when `remove`.
pub fn show(
    address: &Address,
    wait: bool,
    timeout: Option<Duration>,
    as_json: bool,
    remove: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let target = address.resolve()?;
    let (fields, segment) = if wait || timeout.is_some() {
        let found = wait::poll_until(Deadline::after(timeout), || match report(&target) {
            Ok(found) => Ok(Some(found)),
            Err(e) if kind_of(&e) == Some(Kind::NotFound) => Ok(None),
            Err(e) => Err(e),
        })?;
        found.ok_or_else(|| timed_out(&target, timeout, "to exist"))?
    } else {
        report(&target)?
    };
    let mut fields = fields;
    fields.extend(usage_fields(
        &fields,
        segment.as_ref(),
        &crate::usage::scan(),
    ));
    let text = if as_json {
        format!("{}\n", to_json(&fields))
    } else {
        to_text(&fields)
    };
    // As for content: the segment described, never whatever the name leads
    // to by now, is removed before printing, so a closed stdout cannot skip it.
    if remove {
        match &segment {
            Some(segment) => segment.remove()?,
            None => {
                return Err(failure(
                    Kind::Failed,
                    format!(
                        "cannot remove {target}: you may not open it; run as its owner (or root)"
                    ),
                ));
            }
        }
    }
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .with_context(|| format!("cannot write the metadata of {target} to stdout"))
}

/// What a log's header says: how much it holds, who writes, who follows
/// losslessly.
fn log_fields(log: &Log<'_>) -> anyhow::Result<Vec<Field>> {
    let summary = log.summary()?;
    let (holder, writer_pid, write_ns) = log.writer()?;
    #[allow(
        clippy::cast_possible_wrap,
        reason = "ns since 1970 fit i64 until 2262"
    )]
    let written = (write_ns / 1_000_000_000) as i64;
    Ok(vec![
        field("format_version", json!(log.version())),
        field("capacity", json!(log.capacity())),
        field("max_record", json!(log.max_record())),
        field("records_appended", json!(summary.appended)),
        field("records_held", json!(summary.held)),
        field("bytes_held", json!(summary.bytes_held)),
        field("oldest_record", json!(summary.oldest)),
        field(
            "last_writer_pid",
            if writer_pid == 0 {
                Value::Null
            } else {
                json!(writer_pid)
            },
        ),
        time_field("last_write_time", written),
        lock_holder_pid(holder),
        field("lock", json!(lock_state(holder))),
        field("lossless_followers", json!(log.lossless_followers()?)),
        field("lossless_slots", json!(log::SLOTS)),
        follower_slots(log)?,
    ])
}

/// The follower slots that are not free: slot, tid (in its own PID
/// namespace), position, and whether its follower lives by the kernel's
/// evidence (its follower lock, for a POSIX log), by its lock word alone
/// (System V), or not at all (a lock word with no lock behind it).
fn follower_slots(log: &Log<'_>) -> anyhow::Result<Field> {
    let slots = log.slots()?;
    let (json, text): (Vec<Value>, Vec<String>) = slots
        .iter()
        .map(|info| {
            let (tid, live, evidence) = match info.state {
                log::SlotState::Live { tid, proven: true } => (tid, true, "follower lock held"),
                log::SlotState::Live { tid, proven: false } => (tid, true, "lock word only"),
                log::SlotState::Unproven { tid } => (tid, false, "no follower lock"),
                log::SlotState::Free => (0, false, "free"),
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
    Ok(Field {
        name: "follower_slots",
        json: Value::Array(json),
        text: if text.is_empty() {
            "-".to_owned()
        } else {
            text.join("; ")
        },
    })
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
