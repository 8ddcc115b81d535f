//! Which PID namespace a stream peer's stored pid belongs to, for the
//! `--list` table.
//!
//! Contract: only the text is marked; liveness itself is the kernel's
//! record of the claims, never this look at /proc.

use crate::cmd::report::{Content, LayoutFacts, SegmentReport};
use crate::layout::Layout;
use crate::layout::ring::Ring;
use crate::lock::Holder;
use crate::segment::{Segment, Stat};

/// Marks a live stream peer's pid that is not a process of our PID
/// namespace (a writer in a container, say): the ring stores each side's
/// pid as that side sees it. A pid counts as ours only if the process it
/// names here has this very segment mapped (by device and inode, from
/// /proc/PID/maps); an unrelated process, or none, under that number means
/// the peer lives in another namespace.
pub(super) fn mark_other_namespace_pids(segment: &Segment, report: &mut SegmentReport) {
    let Content::Readable {
        layout: LayoutFacts::Stream(stream),
        ..
    } = &mut report.content
    else {
        return;
    };
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
    for (peer, holder, program) in [
        (&mut stream.writer, holders.0, "shm-write"),
        (&mut stream.reader, holders.1, "shm-read"),
    ] {
        let Some(pid) = peer.pid else {
            continue;
        };
        if matches!(holder, Holder::Alive(_)) && !is_ours(pid, &identity, program) {
            peer.elsewhere = true;
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
