//! Who uses a segment: the processes that have it mapped or open, found in
//! /proc, for any segment (ours or a foreign program's).
//!
//! Contract: a segment is matched by what the kernel reports, never by a
//! name: a System V segment by its shmid (the inode of its `/SYSV<key>
//! (deleted)` line in /proc/PID/maps), a POSIX object by the device and
//! inode of its file in /dev/shm (in maps, and behind /proc/PID/fd links).
//! Processes whose maps or fds this user may not read are counted, never
//! guessed. This process is left out: it attaches segments only to look.
//! /proc shows the PID namespace it was mounted for; processes of other
//! PID namespaces (containers sharing /dev/shm or an IPC namespace) are not
//! in it, which for System V shows as attachments nobody here accounts for,
//! and for POSIX means that only the initial PID namespace's /proc can show
//! that nobody uses an object ([`Scan::every_namespace`]).

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;

use crate::sys::ShmId;

/// What a segment is, as the kernel identifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A System V segment.
    Sysv(ShmId),
    /// A POSIX object: its file's device and inode.
    Posix {
        /// `st_dev` of the object.
        dev: u64,
        /// `st_ino` of the object.
        ino: u64,
    },
}

/// A process that uses a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Its pid, as this /proc shows it.
    pub pid: i32,
    /// Its command name (/proc/PID/comm), control characters escaped.
    pub command: String,
    /// How many of its mappings cover the segment (System V: attachments).
    pub mappings: usize,
    /// How many of its file descriptors lead to the segment (POSIX only).
    pub fds: usize,
}

/// One pass over /proc: every use of a shared memory segment it shows.
#[derive(Debug, Default)]
pub struct Scan {
    users: HashMap<Identity, BTreeMap<i32, User>>,
    /// Processes whose maps or fds could not be read (another user's, without
    /// privilege): they may use any segment.
    pub uninspectable: usize,
    /// Whether this /proc shows every process on the machine: only the
    /// initial PID namespace sees the processes of all the others.
    pub every_namespace: bool,
}

/// The inode of the initial PID namespace (the kernel's `PROC_PID_INIT_INO`,
/// fixed since Linux 3.8).
const INITIAL_PID_NAMESPACE: u64 = 0xEFFF_FFFC;

/// Whether this process, and the /proc it sees, belong to the initial PID
/// namespace. /proc/self exists only if /proc shows this process, and its
/// ns/pid link is this process's own namespace.
fn in_initial_pid_namespace() -> bool {
    std::fs::metadata("/proc/self/ns/pid").is_ok_and(|m| m.ino() == INITIAL_PID_NAMESPACE)
}

impl Scan {
    /// The processes that use `identity`, by pid.
    #[must_use]
    pub fn users(&self, identity: &Identity) -> Vec<&User> {
        self.users
            .get(identity)
            .map(|users| users.values().collect())
            .unwrap_or_default()
    }

    fn record(&mut self, identity: Identity, pid: i32, command: &str, mapping: bool) {
        let user = self
            .users
            .entry(identity)
            .or_default()
            .entry(pid)
            .or_insert_with(|| User {
                pid,
                command: command.to_owned(),
                mappings: 0,
                fds: 0,
            });
        if mapping {
            user.mappings += 1;
        } else {
            user.fds += 1;
        }
    }
}

/// Scans every process in /proc except this one.
#[must_use]
pub fn scan() -> Scan {
    let mut scan = Scan {
        every_namespace: in_initial_pid_namespace(),
        ..Scan::default()
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return scan;
    };
    // The device of /dev/shm: a POSIX object is a file on it.
    let shm_dev = std::fs::metadata("/dev/shm").ok().map(|m| m.dev());
    let me = std::process::id();
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(pid) = i32::try_from(pid) else {
            continue;
        };
        scan_process(&mut scan, pid, shm_dev);
    }
    scan
}

/// Whether a failed read of /proc/PID/... means the process (or the fd)
/// is gone meanwhile; any other failure leaves the process uninspected.
fn gone(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error().map(nix::errno::Errno::from_raw),
        Some(nix::errno::Errno::ENOENT | nix::errno::Errno::ESRCH)
    )
}

/// Whether an fd link names something that is not a file at all.
fn not_a_file(target: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let bytes = target.as_os_str().as_bytes();
    [&b"socket:"[..], b"pipe:", b"anon_inode:"]
        .iter()
        .any(|prefix| bytes.starts_with(prefix))
}

/// Records what process `pid` maps and holds open. Fails closed: a process
/// any part of which cannot be read (but is not gone) counts as
/// uninspectable, since it may use any segment.
fn scan_process(scan: &mut Scan, pid: i32, shm_dev: Option<u64>) {
    if let Err(e) = scan_readable(scan, pid, shm_dev)
        && !gone(&e)
    {
        scan.uninspectable += 1;
    }
}

fn scan_readable(scan: &mut Scan, pid: i32, shm_dev: Option<u64>) -> std::io::Result<()> {
    let dir = format!("/proc/{pid}");
    // Bytes: a command name or a mapped file's path need not be UTF-8.
    let command = match std::fs::read(format!("{dir}/comm")) {
        Ok(comm) => String::from_utf8_lossy(comm.strip_suffix(b"\n").unwrap_or(&comm))
            .escape_debug()
            .to_string(),
        Err(e) if gone(&e) => return Err(e),
        Err(_) => String::new(),
    };
    let maps = std::fs::read(format!("{dir}/maps"))?;
    for line in maps.split(|&b| b == b'\n') {
        if let Some(identity) = mapped_segment(line, shm_dev) {
            scan.record(identity, pid, &command, true);
        }
    }
    let Some(shm_dev) = shm_dev else {
        return Ok(());
    };
    for fd in std::fs::read_dir(format!("{dir}/fd"))? {
        let path = fd?.path();
        // The object behind the link decides, by device and inode, never
        // the link's path: another mount of the same tmpfs (a bind mount,
        // a chroot, a container) shows another path for the same object.
        match std::fs::read_link(&path) {
            Ok(target) if not_a_file(&target) => continue,
            Ok(_) => {}
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(e),
        }
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(e),
        };
        if meta.dev() == shm_dev && meta.is_file() {
            let identity = Identity::Posix {
                dev: meta.dev(),
                ino: meta.ino(),
            };
            scan.record(identity, pid, &command, false);
        }
    }
    Ok(())
}

/// The segment a /proc/PID/maps line maps, if any:
/// `start-end perms offset major:minor inode path`.
fn mapped_segment(line: &[u8], shm_dev: Option<u64>) -> Option<Identity> {
    let mut fields = line
        .split(u8::is_ascii_whitespace)
        .filter(|field| !field.is_empty());
    let _range = fields.next()?;
    let _perms = fields.next()?;
    let _offset = fields.next()?;
    let device = std::str::from_utf8(fields.next()?).ok()?;
    let inode: u64 = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
    let path = fields.next()?;
    // System V segments are files of the kernel's internal shm mount, named
    // after their key, whose inode is the shmid.
    if path.starts_with(b"/SYSV") && path.len() == 13 {
        return Some(Identity::Sysv(ShmId::from_raw(i32::try_from(inode).ok()?)));
    }
    let (major, minor) = device.split_once(':')?;
    let dev = nix::sys::stat::makedev(
        u64::from_str_radix(major, 16).ok()?,
        u64::from_str_radix(minor, 16).ok()?,
    );
    (Some(dev) == shm_dev).then_some(Identity::Posix { dev, ino: inode })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_name_segments_by_identity() {
        let sysv = b"7f1c2a000000-7f1c2a001000 rw-s 00000000 00:01 32789   /SYSV00001234 (deleted)";
        assert_eq!(
            mapped_segment(sysv, None),
            Some(Identity::Sysv(ShmId::from_raw(32789)))
        );
        let shm_dev = nix::sys::stat::makedev(0, 0x1a);
        let posix = b"7f1c2a000000-7f1c2a001000 rw-s 00000000 00:1a 77  /dev/shm/my name";
        assert_eq!(
            mapped_segment(posix, Some(shm_dev)),
            Some(Identity::Posix {
                dev: shm_dev,
                ino: 77
            })
        );
        // Another file system's file, whatever its path says.
        let other = b"7f1c2a000000-7f1c2a001000 r--s 00000000 08:01 77  /dev/shm/fake";
        assert_eq!(mapped_segment(other, Some(shm_dev)), None);
        // A path that is not UTF-8 is still a path.
        let latin1 = b"7f1c2a000000-7f1c2a001000 rw-s 00000000 00:1a 78  /dev/shm/caf\xe9";
        assert_eq!(
            mapped_segment(latin1, Some(shm_dev)),
            Some(Identity::Posix {
                dev: shm_dev,
                ino: 78
            })
        );
        assert_eq!(
            mapped_segment(b"55d0-55d1 r-xp 00000000 00:00 0 ", Some(shm_dev)),
            None
        );
    }
}
