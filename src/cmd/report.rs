//! The typed report of one segment: what `--info` prints and what each
//! `--list` row shows. [`crate::cmd::info`] builds it once; `render`
//! shows it as aligned `name: value` text ([`SegmentReport::to_text`]) or
//! as one JSON object ([`SegmentReport::to_json`]).
//!
//! Contract:
//! - facts are typed fields, never looked up by name; commands read them
//!   from the types, and only `render` names them;
//! - a fact that is not known is `None` here.

mod render;

use nix::sys::stat::FileStat;

use crate::layout::log::{SlotInfo, Summary};
use crate::lock::Holder;
use crate::sys::{ShmId, ShmKey, SysvStat};
use crate::usage::{Identity, User};

pub use render::format_utc;

/// Everything known about one segment.
#[derive(Debug, Clone)]
pub struct SegmentReport {
    /// How the segment is named in messages (`key 0x…`, `id 7`, `POSIX name /x`).
    pub segment: String,
    /// How it was addressed.
    pub addressed: Addressed,
    /// What the OS records about it.
    pub os: Os,
    /// What its header says, if this user may read it.
    pub content: Content,
    /// Why its content is not shown (`--list` only).
    pub error: Option<String>,
    /// Who uses it, when looked for.
    pub usage: Option<Usage>,
}

/// How a reported segment was addressed.
#[derive(Debug, Clone)]
pub enum Addressed {
    /// By System V key.
    Key(ShmKey),
    /// By POSIX name (`/x`), with its path in /dev/shm when it has a usable one.
    Name {
        /// As shm_open takes it, with the leading slash.
        name: String,
        /// Its path under /dev/shm.
        path: Option<String>,
    },
    /// By System V id.
    Id,
}

/// What the OS records about a segment.
#[derive(Debug, Clone)]
pub enum Os {
    /// IPC_STAT of a System V segment (or its /proc/sysvipc/shm row).
    Sysv {
        /// Its id.
        id: ShmId,
        /// What the kernel records.
        stat: SysvStat,
        /// Owner's user name.
        user: String,
        /// Owner's group name.
        group: String,
    },
    /// fstat (or lstat) of a POSIX object.
    Posix {
        /// What the file system records.
        stat: FileStat,
        /// Owner's user name.
        user: String,
        /// Owner's group name.
        group: String,
    },
    /// What a /dev/shm directory listing shows of a POSIX object.
    Listed(Listed),
}

/// A POSIX object as its directory entry shows it.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Size in bytes.
    pub size: u64,
    /// Mode bits.
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner's user name.
    pub user: String,
    /// Device of its file system.
    pub device: u64,
    /// Inode.
    pub inode: u64,
}

/// What a segment's header says.
#[derive(Debug, Clone)]
pub enum Content {
    /// This user may read it: its layout and, if so, why it is stale.
    Readable {
        /// What the header says, by layout.
        layout: LayoutFacts,
        /// Why nothing can use it any more, if so.
        stale: Option<&'static str>,
    },
    /// It exists, but this user may not read it; it was not attached.
    NoPermission,
    /// It could not be described (see [`SegmentReport::error`]).
    Unknown,
}

/// What a header says, by layout.
#[derive(Debug, Clone)]
pub enum LayoutFacts {
    /// A snapshot (`framed`).
    Snapshot(SnapshotFacts),
    /// A stream ring.
    Stream(StreamFacts),
    /// A record log.
    Log(LogFacts),
    /// No header of ours: a C string of this many bytes.
    Foreign {
        /// Bytes before the first NUL (or the whole segment).
        content_length: usize,
    },
}

/// A snapshot's header.
#[derive(Debug, Clone)]
pub struct SnapshotFacts {
    /// Content room of each of its two slots.
    pub capacity: usize,
    /// Length of the published version.
    pub content_length: usize,
    /// Versions published (mod 2^32).
    pub versions: u32,
    /// Pid of the last writer (none before the first version).
    pub last_writer_pid: Option<u32>,
    /// When the last version was written, seconds since the epoch.
    pub last_write_secs: i64,
    /// The write lock.
    pub lock: Holder,
}

/// A stream ring's header.
#[derive(Debug, Clone)]
pub struct StreamFacts {
    /// Ring bytes.
    pub capacity: u64,
    /// Bytes written and not read yet.
    pub in_flight: u64,
    /// Bytes read so far.
    pub read: u64,
    /// The writer.
    pub writer: Peer,
    /// The reader.
    pub reader: Peer,
    /// `streaming`, `writer done`, `writer died` and so on.
    pub state: &'static str,
}

/// One side of a stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peer {
    /// Its pid as it sees itself, if one was stored.
    pub pid: Option<u32>,
    /// Whether that pid is known to be of another PID namespace.
    pub elsewhere: bool,
}

/// A log's header.
#[derive(Debug, Clone)]
pub struct LogFacts {
    /// Layout version.
    pub version: u32,
    /// Data bytes.
    pub capacity: u64,
    /// Largest payload of one record.
    pub max_record: usize,
    /// What it holds.
    pub summary: Summary,
    /// Pid of the last writer, if any.
    pub last_writer_pid: Option<u32>,
    /// When the last record was written, seconds since the epoch.
    pub last_write_secs: i64,
    /// The write lock.
    pub lock: Holder,
    /// Live lossless followers.
    pub lossless_followers: usize,
    /// The follower slots that are not free.
    pub slots: Vec<SlotInfo>,
}

/// Who uses a segment.
#[derive(Debug, Clone)]
pub struct Usage {
    /// Processes seen mapping it or holding it open.
    pub users: Vec<User>,
    /// Processes that could not be inspected.
    pub uninspectable: usize,
    /// System V attachments by processes not seen (System V only).
    pub attach_unseen: Option<u64>,
    /// Whether nothing uses it.
    pub unused: Unused,
    /// Resident bytes, if known.
    pub resident: Option<u64>,
}

/// Whether a segment is unused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unused {
    /// Nothing uses it.
    Yes,
    /// Something uses it.
    No,
    /// Nothing seen uses it, but not every process could be seen: why.
    Unknown(String),
}

impl SegmentReport {
    /// Owner uid.
    #[must_use]
    pub fn uid(&self) -> u32 {
        match &self.os {
            Os::Sysv { stat, .. } => stat.uid,
            Os::Posix { stat, .. } => stat.st_uid,
            Os::Listed(listed) => listed.uid,
        }
    }

    /// Owner's user name.
    #[must_use]
    pub fn user(&self) -> &str {
        match &self.os {
            Os::Sysv { user, .. } | Os::Posix { user, .. } | Os::Listed(Listed { user, .. }) => {
                user
            }
        }
    }

    /// The POSIX name (`/x`), if addressed by one.
    #[must_use]
    pub fn name(&self) -> Option<&str> {
        match &self.addressed {
            Addressed::Name { name, .. } => Some(name),
            Addressed::Key(_) | Addressed::Id => None,
        }
    }

    /// The System V key: as addressed, or as the kernel records it.
    #[must_use]
    pub fn key(&self) -> Option<ShmKey> {
        match (&self.addressed, &self.os) {
            (Addressed::Key(key), _) => Some(*key),
            (_, Os::Sysv { stat, .. }) => Some(stat.key),
            _ => None,
        }
    }

    /// The System V id.
    #[must_use]
    pub fn sysv_id(&self) -> Option<ShmId> {
        match &self.os {
            Os::Sysv { id, .. } => Some(*id),
            Os::Posix { .. } | Os::Listed(_) => None,
        }
    }

    /// The kernel's identity of the segment.
    #[must_use]
    pub fn identity(&self) -> Identity {
        match &self.os {
            Os::Sysv { id, .. } => Identity::Sysv(*id),
            Os::Posix { stat, .. } => Identity::Posix {
                dev: stat.st_dev,
                ino: stat.st_ino,
            },
            Os::Listed(listed) => Identity::Posix {
                dev: listed.device,
                ino: listed.inode,
            },
        }
    }

    /// Why it is stale, if it is.
    #[must_use]
    pub fn stale(&self) -> Option<&'static str> {
        match &self.content {
            Content::Readable { stale, .. } => *stale,
            Content::NoPermission | Content::Unknown => None,
        }
    }
}
