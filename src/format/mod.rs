//! What is on a segment: our framed snapshot layout, our stream ring, or
//! anything else (a foreign layout, read as a C string).
//!
//! Contract: detection looks only at the magic; each layout then checks
//! every header value against the real mapping size before using it. The
//! byte-level layouts are documented in docs/FORMAT.md.

pub mod framed;
pub mod raw;
pub mod ring;

use std::time::{SystemTime, UNIX_EPOCH};

use crate::os::Mapping;

/// Which layout a segment holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Ours: a header and two slots (see [`framed`]).
    Framed,
    /// Ours: a stream ring (see [`ring`]).
    Ring,
    /// Not ours: a C program's, ipcmk's, Python's... or still all zero.
    Foreign,
}

impl Layout {
    /// Looks at the first eight bytes.
    #[must_use]
    pub fn detect(map: &Mapping) -> Layout {
        let mut magic = [0u8; 8];
        if map.read(0, &mut magic).is_err() {
            return Layout::Foreign;
        }
        match magic {
            framed::MAGIC => Layout::Framed,
            ring::MAGIC => Layout::Ring,
            _ => Layout::Foreign,
        }
    }

    /// The name `--info` and `--json` print.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Layout::Framed => "framed",
            Layout::Ring => "stream",
            Layout::Foreign => "foreign",
        }
    }
}

/// Nanoseconds since the Unix epoch, for "time of last write" fields.
#[must_use]
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
