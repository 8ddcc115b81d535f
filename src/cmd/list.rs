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

use indicatif::HumanBytes;
use serde_json::{Value, json};

use crate::address::{PosixName, Target};
use crate::cmd::info::{self, Field, field};
use crate::error::{Kind, failure};
use crate::layout::Layout;
use crate::layout::ring::Ring;
use crate::segment::{Access, Segment, Stat};
use crate::usage::Scan;
use crate::users::user_name;
use crate::wait::Holder;

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

    /// Whether a listed segment, described by `fields`, matches.
    fn matches(&self, fields: &[Field]) -> bool {
        let name = get(fields, "name").map(|f| f.text.as_str());
        let target = match &self.target {
            None => true,
            Some(Target::Key { key, .. }) => {
                get(fields, "kind").is_some_and(|f| f.text == "sysv")
                    && get(fields, "key").is_some_and(|f| f.text == key.to_string())
            }
            Some(Target::Id(id)) => get(fields, "id").is_some_and(|f| f.json == json!(id.as_raw())),
            Some(Target::Name(wanted)) => name == Some(wanted.shm_open_name().as_str()),
        };
        let prefix = self.prefix.as_ref().is_none_or(|prefix| {
            name.and_then(|n| n.strip_prefix('/'))
                .is_some_and(|n| n.starts_with(prefix.trim_start_matches('/')))
        });
        let owner = self.owner.is_none_or(|uid| owner_of(fields) == Some(uid));
        target && prefix && owner
    }
}

/// The owner's uid of a listed segment, as the kernel reports it.
fn owner_of(fields: &[Field]) -> Option<u32> {
    get(fields, "uid")
        .and_then(|f| f.json.as_u64())
        .and_then(|uid| u32::try_from(uid).ok())
}

/// Writes the listing as a table, or as a JSON array of `--info` objects;
/// with `remove`, removes the stale (or unused) segments instead and says
/// which.
pub fn list(opts: &ListOptions, out: &mut dyn Write) -> anyhow::Result<()> {
    let scan = crate::usage::scan();
    let mut rows = sysv_rows(&scan);
    rows.extend(posix_rows(&scan));
    rows.retain(|(_, fields)| opts.filter.matches(fields));
    if opts.stale {
        rows.retain(|(_, fields)| get(fields, "stale").is_some_and(|f| f.json == json!(true)));
    }
    // Without a filter, --remove takes only the caller's own: root would
    // otherwise remove every user's stale segments at once.
    let only = (opts.remove && opts.filter.is_empty() && !opts.all_users)
        .then(|| nix::unistd::geteuid().as_raw());
    // POSIX objects nobody here uses, but that processes not seen may use.
    let mut unknown = Vec::new();
    if opts.unused {
        for (_, fields) in &rows {
            if let Some(unused) = get(fields, "unused")
                && unused.text.starts_with("unknown (")
                && only.is_none_or(|me| owner_of(fields) == Some(me))
            {
                unknown.push(format!(
                    "{}: unused {}",
                    text(fields, "segment"),
                    unused.text
                ));
            }
        }
        rows.retain(|(_, fields)| get(fields, "unused").is_some_and(|f| f.json == json!(true)));
    }
    if opts.remove {
        // Each is checked again right before removal, for all it was listed for.
        // A stream ring is checked holding its writer's claim: `held` is
        // that claim as it was found (see remove_if_still).
        let recheck =
            |segment: &Segment, held: Option<Holder>| -> anyhow::Result<Option<&'static str>> {
                let mut reason = None;
                if opts.stale {
                    let stale = match held {
                        Some(writer) => Ring::open(segment.mapping(), segment.target())?
                            .stale_because(writer)?,
                        None => info::stale_because(segment)?,
                    };
                    let Some(stale) = stale else {
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
        for line in &unknown {
            writeln!(out, "skipped {line}")?;
        }
        return remove_stale(&rows, only, &recheck, out);
    }
    if opts.unused && !scan.every_namespace {
        // A note, not data: stdout keeps only the listing.
        crate::notice::notice(format_args!(
            "shm-read: processes of other PID namespaces are not visible here, so no POSIX segment \
             counts as unused; run it in the initial PID namespace (on the host) to find them"
        ));
    } else if opts.unused && scan.uninspectable > 0 {
        // A note, not data: stdout keeps only the listing.
        crate::notice::notice(format_args!(
            "shm-read: {} process(es) could not be inspected, so USERS may be incomplete and no POSIX \
             segment counts as unused; run as root to see every user",
            scan.uninspectable
        ));
    }
    let rows: Vec<Vec<Field>> = rows.into_iter().map(|(_, fields)| fields).collect();
    if opts.json {
        let array: Vec<Value> = rows.iter().map(|r| info::to_json(r)).collect();
        writeln!(out, "{}", Value::Array(array))?;
        return Ok(());
    }
    let table: Vec<[String; 9]> = rows.iter().map(|r| columns(r)).collect();
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

/// Why a segment listed for removal is still to be removed (None: keep
/// it), asked again right before the removal; for a stream ring, with the
/// holder of its writer's claim as found by the remover, who holds it.
type Recheck<'r> = dyn Fn(&Segment, Option<Holder>) -> anyhow::Result<Option<&'static str>> + 'r;

/// Removes each segment in `rows`: opened again, found stale (or unused:
/// whatever `recheck` asks) again on what was opened, and removed by
/// identity (System V by id, POSIX only
/// while the name still leads to that object), so a segment that someone
/// took up again since it was listed is left alone. A stream ring is
/// checked and removed holding its writer's claim ([`remove_if_still`]),
/// so no writer takes it over in between; for other segments what is left
/// is the moment between that last check and the removal. One line per segment
/// on `out`; any failure makes the whole run fail at the end. With `only`,
/// segments that another uid owns are skipped, each with a line saying how
/// to include them.
fn remove_stale(
    rows: &[(Option<Target>, Vec<Field>)],
    only: Option<u32>,
    recheck: &Recheck<'_>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut failed = 0;
    for (target, fields) in rows {
        if let Some(me) = only
            && owner_of(fields) != Some(me)
        {
            let user = text(fields, "user");
            writeln!(
                out,
                "skipped {}: owned by {user}, not you; give --owner {user} or --all-users to remove it",
                text(fields, "segment")
            )?;
            continue;
        }
        let Some(target) = target else {
            writeln!(
                out,
                "not removed: {} (no usable address)",
                text(fields, "segment")
            )?;
            failed += 1;
            continue;
        };
        let removed = open_for_removal(target)
            .and_then(|(segment, writable)| remove_if_still(&segment, writable, recheck));
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

/// A segment opened again for [`remove_if_still`]: writable where this
/// user may write it (a stream ring's writer claim is taken before its
/// removal), read-only otherwise; and which of the two.
fn open_for_removal(target: &Target) -> anyhow::Result<(Segment, bool)> {
    match Segment::open(target, Access::ReadWrite) {
        Ok(segment) => Ok((segment, true)),
        Err(_) => Segment::open(target, Access::ReadOnly).map(|segment| (segment, false)),
    }
}

/// Removes `segment` if `recheck` still gives a reason (returned), or
/// keeps it (None). A stream ring is rechecked and removed holding its
/// writer's claim, taken with one compare-and-swap as a taking-over writer
/// takes it: a writer that comes meanwhile is refused and changes nothing,
/// and one that took it first (a live claim) keeps it. The claim is given
/// back as it was found, died mark included, whether or not the ring was
/// removed; a writer that opened the ring before the removal and claims
/// it after sees it removed (see stream.rs) and starts a new one.
fn remove_if_still(
    segment: &Segment,
    writable: bool,
    recheck: &Recheck<'_>,
) -> anyhow::Result<Option<&'static str>> {
    let map = segment.mapping();
    if Layout::detect(map) != Layout::Stream {
        return match recheck(segment, None)? {
            Some(reason) => segment.remove().map(|()| Some(reason)),
            None => Ok(None),
        };
    }
    if !writable {
        return Err(failure(
            Kind::Failed,
            format!(
                "cannot remove {}: a stream is removed holding its writer's claim, which needs \
                 write access to it",
                segment.target()
            ),
        ));
    }
    let ring = Ring::open(map, segment.target())?;
    let Some(claim) = ring.hold_writer_claim()? else {
        return Ok(None);
    };
    let found = if claim.previous_owner_died() {
        Holder::Died
    } else {
        Holder::Free
    };
    let removed = match recheck(segment, Some(found)) {
        Ok(Some(reason)) => segment.remove().map(|()| Some(reason)),
        other => other,
    };
    claim.give_back();
    removed
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

/// A size field for people (`4.00 KiB`); JSON keeps the bytes.
fn bytes(fields: &[Field], name: &str) -> String {
    get(fields, name)
        .and_then(|f| f.json.as_u64())
        .map_or_else(|| text(fields, name), |n| HumanBytes(n).to_string())
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
            // The size is about twice the content room: say why.
            "framed" => format!(
                "framed, {} in one of two {} slots, written {}{lock}",
                bytes(fields, "content_length"),
                bytes(fields, "capacity"),
                text(fields, "last_write_time")
            ),
            "stream" => format!(
                "stream, {} in flight, writer {}, reader {}, {}",
                bytes(fields, "bytes_in_flight"),
                text(fields, "writer_pid"),
                text(fields, "reader_pid"),
                text(fields, "stream_state")
            ),
            "log" => format!(
                "log, {} records ({}) held of {} appended, {} lossless followers",
                text(fields, "records_held"),
                bytes(fields, "bytes_held"),
                text(fields, "records_appended"),
                text(fields, "lossless_followers")
            ),
            "foreign" => format!("foreign, C string of {}", bytes(fields, "content_length")),
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
        bytes(fields, "size"),
        text(fields, "user"),
        text(fields, "mode"),
        text(fields, "attach_count"),
        text(fields, "resident"),
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
            if let Some(segment) = &segment {
                mark_other_namespace_pids(segment, &mut fields);
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

/// Marks, in the text only, a live stream peer's pid that is not a
/// process of our PID namespace (a writer in a container, say): the ring
/// stores each side's pid as that side sees it. A pid counts as ours only
/// if the process it names here has this very segment mapped (by device
/// and inode, from /proc/PID/maps); an unrelated process, or none, under
/// that number means the peer lives in another namespace. Liveness itself
/// is the kernel's record of the claims, not this look.
fn mark_other_namespace_pids(segment: &Segment, fields: &mut [Field]) {
    let map = segment.mapping();
    if Layout::detect(map) != Layout::Stream {
        return;
    }
    let Ok(holders) = Ring::open(map, segment.target()).and_then(|ring| ring.holders()) else {
        return;
    };
    let Some(identity) = mapping_identity(segment) else {
        return;
    };
    for (name, holder, program) in [
        ("writer_pid", holders.0, "shm-write"),
        ("reader_pid", holders.1, "shm-read"),
    ] {
        let Some(f) = fields.iter_mut().find(|f| f.name == name) else {
            continue;
        };
        let Some(pid) = f.json.as_u64().and_then(|p| u32::try_from(p).ok()) else {
            continue;
        };
        if matches!(holder, Holder::Alive(_)) && !is_ours(pid, &identity, program) {
            f.text = format!("{pid} (in another PID namespace)");
        }
    }
}

/// How /proc/PID/maps names a mapping of this segment: the device (POSIX:
/// its tmpfs; System V: any) and inode (System V: the shmid).
fn mapping_identity(segment: &Segment) -> Option<(Option<(u64, u64)>, u64)> {
    match segment.stat().ok()? {
        Stat::Sysv { id, .. } => Some((None, u64::try_from(id.as_raw()).ok()?)),
        Stat::Posix(st) => Some((
            Some((
                nix::sys::stat::major(st.st_dev),
                nix::sys::stat::minor(st.st_dev),
            )),
            st.st_ino,
        )),
    }
}

/// Whether process `pid` of our PID namespace is the peer: it has the
/// segment mapped. Where its maps are not ours to read (another user's
/// process, without CAP_SYS_PTRACE), whether it runs `program` (its comm,
/// which anyone may read) decides: pid 1 or a kernel thread under the
/// number is not a shm-write.
fn is_ours(pid: u32, (device, inode): &(Option<(u64, u64)>, u64), program: &str) -> bool {
    if pid == std::process::id() {
        // We are neither side; the number is someone else's elsewhere.
        return false;
    }
    let maps = match std::fs::read_to_string(format!("/proc/{pid}/maps")) {
        Ok(maps) => maps,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
        Err(_) => {
            return std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == program);
        }
    };
    maps.lines().any(|line| {
        // address perms offset dev inode path
        let mut cols = line.split_whitespace().skip(3);
        let (Some(dev), Some(ino)) = (cols.next(), cols.next()) else {
            return false;
        };
        let path = cols.next().unwrap_or_default();
        if ino.parse::<u64>().ok() != Some(*inode) {
            return false;
        }
        match device {
            None => path.starts_with("/SYSV"),
            Some((major, minor)) => dev.split_once(':').is_some_and(|(ma, mi)| {
                u64::from_str_radix(ma, 16).ok() == Some(*major)
                    && u64::from_str_radix(mi, 16).ok() == Some(*minor)
            }),
        }
    })
}

/// A listed segment: how to address it again (None: no tool can), and
/// what `--info` says of it.
type Row = (Option<Target>, Vec<Field>);

fn sysv_rows(scan: &Scan) -> Vec<Row> {
    crate::sysvipc::table()
        .into_iter()
        .map(|crate::sysvipc::Row { id, stat, .. }| {
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
