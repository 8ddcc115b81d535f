//! `shm-read --info`: what the OS and our header say about a segment, as
//! aligned text or one JSON object (a [`SegmentReport`], built here).
//!
//! Contract: metadata anyone may see (`ipcs`, `ls -l`) is shown to anyone;
//! content fields only to those who may read the segment, and a segment
//! they may not read is never attached. Only headers are read, never the
//! whole content, so describing a 1 GiB segment costs no 1 GiB copy.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;

use nix::errno::Errno;
use nix::sys::stat::{FileStat, SFlag};

use crate::address::{Address, Target};
use crate::cmd::explain::kind_of;
use crate::cmd::report::{
    Addressed, Content, LayoutFacts, LogFacts, Os, Peer, SegmentReport, SnapshotFacts, StreamFacts,
    Unused, Usage,
};
use crate::error::{Kind, failure};
use crate::layout::Layout;
use crate::layout::log::Log;
use crate::layout::ring::{self, Ring};
use crate::layout::snapshot::Snapshot;
use crate::lock::Holder;
use crate::segment::{Access, Segment, Stat, timed_out};
use crate::sys::{ShmId, SysvStat};
use crate::usage::{Identity, Scan};
use crate::users::{group_name, user_name};
use crate::wait::{self, Deadline};

pub use crate::cmd::report::format_utc;

/// How `target` was addressed, as a report shows it.
fn addressed(target: &Target) -> Addressed {
    match target {
        Target::Key { key, .. } => Addressed::Key(*key),
        Target::Name(name) => Addressed::Name {
            name: name.shm_open_name(),
            path: Some(name.dev_shm_path().display().to_string()),
        },
        Target::Id(_) => Addressed::Id,
    }
}

/// What the kernel records about System V segment `id`, as `ipcs` shows it.
#[must_use]
pub fn sysv_os(id: ShmId, stat: SysvStat) -> Os {
    Os::Sysv {
        id,
        user: user_name(stat.uid),
        group: group_name(stat.gid),
        stat,
    }
}

/// What the file system records about a POSIX object, as `ls -l` shows it.
#[must_use]
pub fn posix_os(stat: FileStat) -> Os {
    Os::Posix {
        user: user_name(stat.st_uid),
        group: group_name(stat.st_gid),
        stat,
    }
}

/// A report of `target` with what the OS says and no content yet.
fn bare(target: &Target, os: Os, content: Content) -> SegmentReport {
    SegmentReport {
        segment: target.to_string(),
        addressed: addressed(target),
        os,
        content,
        error: None,
        usage: None,
    }
}

/// Every fact about an attached segment: what the OS says and what its
/// header says. Reads headers only, never the whole content.
fn describe(segment: &Segment) -> anyhow::Result<SegmentReport> {
    let os = match segment.stat()? {
        Stat::Sysv { id, stat } => sysv_os(id, stat),
        Stat::Posix(st) => posix_os(st),
    };
    let content = Content::Readable {
        layout: layout_facts(segment)?,
        stale: stale_because(segment)?,
    };
    Ok(bare(segment.target(), os, content))
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
/// `describe` finds when this user may read the segment (readable);
/// when they may not, what `ipcs` and `ls -l` would show (from
/// /proc/sysvipc/shm or an lstat of /dev/shm/NAME) and
/// [`Content::NoPermission`]. An unreadable segment is never attached, so
/// what `ipcs -p`/`ipcs -t` show about it is not disturbed.
pub fn report(target: &Target) -> anyhow::Result<(SegmentReport, Option<Segment>)> {
    // Opening checks permission before shmat/mmap: an unreadable segment
    // fails here without being attached.
    match Segment::open(target, Access::ReadOnly) {
        Ok(segment) => Ok((describe(&segment)?, Some(segment))),
        Err(e) if e.is_missing() => Err(e.into()),
        Err(e) => unreadable(target)
            .map(|report| (report, None))
            .ok_or_else(|| e.into()),
    }
}

/// The OS metadata of a segment that exists but that this user may not
/// read; None when it is readable after all, or gone.
fn unreadable(target: &Target) -> Option<SegmentReport> {
    let denied = |result: Result<SysvStat, Errno>| {
        matches!(result, Err(Errno::EACCES | Errno::EPERM)).then_some(())
    };
    let os = match target {
        Target::Name(name) => {
            // Non-blocking: a FIFO planted at the name must not hang us.
            let opened = crate::sys::shm_open_existing(name.shm_open_name().as_str(), false);
            if !matches!(opened, Err(Errno::EACCES | Errno::EPERM)) {
                return None;
            }
            // lstat: a symlink planted in /dev/shm is not the object.
            let st = crate::sys::lstat(&name.dev_shm_path()).ok()?;
            if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
                return None;
            }
            posix_os(st)
        }
        Target::Key { key, .. } => {
            let row = crate::sysvipc::by_key(*key)?;
            denied(crate::sys::shm_stat(row.id))?;
            sysv_os(row.id, row.stat)
        }
        Target::Id(want) => {
            let row = crate::sysvipc::by_id(*want)?;
            denied(crate::sys::shm_stat(row.id))?;
            sysv_os(row.id, row.stat)
        }
    };
    Some(bare(target, os, Content::NoPermission))
}

/// Nanoseconds since 1970 as whole seconds.
fn whole_secs(ns: u64) -> i64 {
    i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX)
}

/// What our header says, by layout. Headers only: the content of a
/// framed version is not copied, and a foreign C string is measured by
/// scanning for its NUL in small chunks.
fn layout_facts(segment: &Segment) -> anyhow::Result<LayoutFacts> {
    let map = segment.mapping();
    Ok(match Layout::detect(map) {
        Layout::Snapshot => {
            let framed = Snapshot::open(map, segment.target())?;
            let version = framed.published()?;
            LayoutFacts::Snapshot(SnapshotFacts {
                capacity: framed.capacity(),
                content_length: version.len,
                versions: version.seq,
                last_writer_pid: (version.seq != 0).then_some(version.writer_pid),
                last_write_secs: whole_secs(version.mtime_ns),
                lock: framed.lock_holder()?,
            })
        }
        Layout::Stream => LayoutFacts::Stream(stream_facts(&Ring::open(map, segment.target())?)?),
        Layout::Log => LayoutFacts::Log(log_facts(
            &Log::open(map, segment.target())?.with_file(segment.file()),
        )?),
        Layout::Foreign => LayoutFacts::Foreign {
            content_length: map.find_nul(0)?.unwrap_or(map.len()),
        },
    })
}

/// What a stream ring's header says: fill, peers and how the stream stands.
fn stream_facts(ring: &Ring<'_>) -> anyhow::Result<StreamFacts> {
    let (in_flight, read) = ring.fill()?;
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
    let peer = |pid: u32| Peer {
        pid: (pid != 0).then_some(pid),
        elsewhere: false,
    };
    Ok(StreamFacts {
        capacity: ring.capacity(),
        in_flight,
        read,
        writer: peer(writer),
        reader: peer(reader),
        state,
    })
}

/// What a log's header says: how much it holds, who writes, who follows
/// losslessly.
fn log_facts(log: &Log<'_>) -> anyhow::Result<LogFacts> {
    let (lock, writer_pid, write_ns) = log.writer()?;
    Ok(LogFacts {
        version: log.version(),
        capacity: log.capacity(),
        max_record: log.max_record(),
        summary: log.summary()?,
        last_writer_pid: (writer_pid != 0).then_some(writer_pid),
        last_write_secs: whole_secs(write_ns),
        lock,
        lossless_followers: log.lossless_followers()?,
        slots: log.slots()?,
    })
}

/// Who uses the segment that `report` describes (from `scan`), whether
/// anyone does, and how much of it is resident in memory: System V from
/// the kernel's table, POSIX with mincore on `segment`'s mapping (unknown
/// when this user could not open it).
#[must_use]
pub fn usage(report: &SegmentReport, segment: Option<&Segment>, scan: &Scan) -> Usage {
    let identity = report.identity();
    let users: Vec<_> = scan.users(&identity).into_iter().cloned().collect();
    let nattch = match &report.os {
        Os::Sysv { stat, .. } => stat.nattch,
        Os::Posix { .. } | Os::Listed(_) => 0,
    };
    let (attach_unseen, resident) = match identity {
        Identity::Sysv(id) => {
            let seen: usize = users.iter().map(|u| u.mappings).sum();
            (
                Some(nattch.saturating_sub(seen as u64)),
                crate::sysvipc::by_id(id).and_then(|row| row.rss),
            )
        }
        Identity::Posix { .. } => (
            None,
            segment.and_then(|s| s.mapping().resident_bytes().ok()),
        ),
    };
    // System V: the kernel's attach count covers every process, in any
    // namespace. POSIX: only the scan, which must have seen every process.
    let unused = match identity {
        Identity::Sysv(_) if nattch == 0 => Unused::Yes,
        Identity::Sysv(_) => Unused::No,
        Identity::Posix { .. } if !users.is_empty() => Unused::No,
        Identity::Posix { .. } => posix_unused_unknown(scan).map_or(Unused::Yes, Unused::Unknown),
    };
    Usage {
        users,
        uninspectable: scan.uninspectable,
        attach_unseen,
        unused,
        resident,
    }
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
    let (mut report, segment) = if wait || timeout.is_some() {
        let found = wait::poll_until(Deadline::after(timeout), || match report(&target) {
            Ok(found) => Ok(Some(found)),
            Err(e) if kind_of(&e) == Some(Kind::NotFound) => Ok(None),
            Err(e) => Err(e),
        })?;
        found.ok_or_else(|| timed_out(&target, timeout, "to exist"))?
    } else {
        report(&target)?
    };
    report.usage = Some(usage(&report, segment.as_ref(), &crate::usage::scan()));
    let text = if as_json {
        format!("{}\n", report.to_json())
    } else {
        report.to_text()
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
