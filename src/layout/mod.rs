//! What is on a segment: our framed snapshot layout, our stream ring, our
//! log, or anything else (a foreign layout, read as a C string).
//!
//! Contract: detection looks only at the magic; each layout then checks
//! every header value against the real mapping size before using it. The
//! byte-level layouts are documented in docs/FORMAT.md.

pub mod cstring;
mod error;
pub mod log;
mod prefix;
pub mod ring;
pub mod snapshot;

use std::time::{SystemTime, UNIX_EPOCH};

use crate::address::Target;
use crate::sys::Mapping;

pub use error::{ContentError, LayoutError};

/// Which layout a segment holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Ours: a header and two slots (see [`snapshot`]).
    Snapshot,
    /// Ours: a stream ring (see [`ring`]).
    Stream,
    /// Ours: an append-only log of records (see [`log`]).
    Log,
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
            snapshot::MAGIC => Layout::Snapshot,
            ring::MAGIC => Layout::Stream,
            log::MAGIC => Layout::Log,
            _ => Layout::Foreign,
        }
    }

    /// The name `--info` and `--json` print.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Layout::Snapshot => "framed",
            Layout::Stream => "stream",
            Layout::Log => "log",
            Layout::Foreign => "foreign",
        }
    }
}

/// Which part of a segment's content a read copies out: from byte `skip`
/// on, at most `limit` bytes (`shm-read --offset` and `-c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Bytes of the content left out first.
    pub skip: usize,
    /// Most bytes copied.
    pub limit: usize,
}

impl Span {
    /// All of the content.
    pub const WHOLE: Span = Span {
        skip: 0,
        limit: usize::MAX,
    };
}

/// What a snapshot read shows, the `span` of it: a framed segment's
/// published version, the bytes in flight in a ring (without consuming
/// them), the records a log holds (concatenated), or the C string at
/// offset 0 of anything else (always, with `raw`). Only the bytes
/// returned are copied out of a version or a C string.
pub fn snapshot_content(
    map: &Mapping,
    target: &Target,
    raw: bool,
    span: Span,
) -> Result<Vec<u8>, ContentError> {
    let Span { skip, limit } = span;
    let mut data = match Layout::detect(map) {
        Layout::Snapshot if !raw => {
            snapshot::Snapshot::open(map, target)?
                .read_span(skip, limit)?
                .data
        }
        Layout::Stream if !raw => {
            let mut held = ring::Ring::open(map, target)?.peek()?;
            held.drain(..skip.min(held.len()));
            held
        }
        Layout::Log if !raw => {
            let mut records = log::Log::open(map, target)?.contents()?;
            records.drain(..skip.min(records.len()));
            records
        }
        _ if skip > 0 => {
            // The C string's bytes from `skip` on, up to its NUL.
            let end = map.find_nul(0)?.unwrap_or(map.len());
            let start = skip.min(end);
            let mut part = zeroed((end - start).min(limit), target)?;
            map.read(start, &mut part)?;
            part
        }
        _ if limit < map.len() => {
            // The C string's first `limit` bytes: no need to find its end.
            let mut prefix = zeroed(limit, target)?;
            map.read(0, &mut prefix)?;
            if let Some(nul) = prefix.iter().position(|&b| b == 0) {
                prefix.truncate(nul);
            }
            prefix
        }
        _ => cstring::read_c_string(map, target)?,
    };
    data.truncate(limit);
    Ok(data)
}

/// Parses an untrusted segment image the way `shm-read` and `--info` do
/// (layout, header, content, ring positions), on a private read-only copy.
/// Any problem must come back as an error: the fuzz target and the image
/// tests call this to prove no input makes it panic, hang or read out of
/// bounds.
pub fn check_image(image: &[u8]) -> Result<Vec<u8>, ContentError> {
    let map = Mapping::from_bytes(image).map_err(ContentError::Image)?;
    let target = Target::Name(crate::address::PosixName::parse("image").expect("valid name"));
    match Layout::detect(&map) {
        Layout::Snapshot => {
            let framed = snapshot::Snapshot::open(&map, &target)?;
            framed.seq()?;
            framed.lock_holder()?;
        }
        Layout::Stream => {
            let ring = ring::Ring::open(&map, &target)?;
            ring.fill()?;
            ring.peers()?;
            ring.flags()?;
        }
        Layout::Log => {
            let log = log::Log::open(&map, &target)?;
            log.summary()?;
            log.writer()?;
            log.lossless_followers()?;
            log.cursor_at_last(3)?;
        }
        Layout::Foreign => {}
    }
    snapshot_content(&map, &target, false, Span::WHOLE)
}

/// Makes room for `more` bytes in `buf` without aborting. Every copy of
/// segment content out of a mapping gets its buffer here: content larger
/// than this process may allocate (`ulimit -v`, `prlimit --as`) is then a
/// one-line error naming `target`, with its content unchanged, instead of
/// an abort.
pub fn reserve(buf: &mut Vec<u8>, more: usize, target: &Target) -> Result<(), LayoutError> {
    buf.try_reserve(more).map_err(|_| LayoutError::OutOfMemory {
        target: target.clone(),
        bytes: buf.len().saturating_add(more),
    })
}

/// A buffer of `len` zero bytes to copy segment content into, reserved
/// through [`reserve`].
pub fn zeroed(len: usize, target: &Target) -> Result<Vec<u8>, LayoutError> {
    let mut buf = Vec::new();
    reserve(&mut buf, len, target)?;
    buf.resize(len, 0);
    Ok(buf)
}

/// Nanoseconds since the Unix epoch, for "time of last write" fields.
#[must_use]
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
