//! What `shm-write` does: find or create the segment and publish stdin
//! into it, whole or line by line.

use std::io::Read;

use anyhow::Context;

use crate::address::{Address, Target};
use crate::format::Layout;
use crate::format::framed::{self, Framed, Publish};
use crate::format::raw;
use crate::log::LinesOptions;
use crate::segment::{Create, Segment};

/// Segments are never created smaller than this, so a classic reader's
/// `shmget(key, 1024, ...)` finds them big enough.
pub const MIN_SIZE: usize = 4096;

/// Default size for `--lines`, whose input length is not known up front.
pub const LINES_SIZE: usize = crate::log::DEFAULT_LOG_SIZE;

/// Everything `shm-write` can be asked in snapshot and lines mode.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Which segment.
    pub address: Address,
    /// Size when creating; None picks one that fits the input.
    pub size: Option<usize>,
    /// Permission bits when creating.
    pub mode: u32,
    /// Fail if the segment exists.
    pub exclusive: bool,
    /// Add to the current content instead of replacing it.
    pub append: bool,
    /// The classic C-string layout instead of ours.
    pub raw: bool,
    /// Append each input line to a log as one record.
    pub lines: bool,
    /// With `lines`: records end at NUL instead of newline.
    pub zero_terminated: bool,
}

/// Runs `shm-write`, reading `input` (stdin).
pub fn write(opts: &WriteOptions, input: &mut dyn Read) -> anyhow::Result<()> {
    let target = opts.address.resolve()?;
    if opts.lines || opts.zero_terminated {
        let lines = LinesOptions {
            size: opts.size,
            mode: opts.mode,
            exclusive: opts.exclusive,
            delimiter: if opts.zero_terminated { 0 } else { b'\n' },
        };
        return crate::log::write_lines(&target, lines, input);
    }
    let mut data = Vec::new();
    input.read_to_end(&mut data).context("cannot read stdin")?;
    let size = opts
        .size
        .unwrap_or_else(|| default_size(data.len(), opts.raw));
    Writer::start(&target, opts, size, &data)?;
    Ok(())
}

/// The smallest page-rounded size, at least [`MIN_SIZE`], holding `len`
/// bytes in the chosen layout.
#[must_use]
pub fn default_size(len: usize, raw: bool) -> usize {
    let needed = if raw {
        len.saturating_add(1)
    } else {
        framed::size_for(len).unwrap_or(usize::MAX)
    };
    needed.max(MIN_SIZE).div_ceil(4096).saturating_mul(4096)
}

/// An open segment being published to.
struct Writer<'o> {
    segment: Segment,
    opts: &'o WriteOptions,
}

impl<'o> Writer<'o> {
    /// Opens or creates the segment and publishes the first version. A
    /// segment this call created is removed again if that first publish
    /// fails, so a failed write leaves nothing behind.
    fn start(
        target: &Target,
        opts: &'o WriteOptions,
        size: usize,
        first: &[u8],
    ) -> anyhow::Result<Writer<'o>> {
        let create = Create {
            size,
            mode: opts.mode,
            exclusive: opts.exclusive,
        };
        let (segment, created) = Segment::open_or_create(target, &create)?;
        let writer = Writer { segment, opts };
        if let Err(e) = writer.publish(first) {
            if created {
                // The segment is ours and holds nothing; a failure to remove
                // it matters less than the error that explains why.
                let _ = writer.segment.remove();
            }
            return Err(e);
        }
        Ok(writer)
    }

    fn publish(&self, data: &[u8]) -> anyhow::Result<()> {
        let map = self.segment.mapping();
        let target = self.segment.target();
        if Layout::detect(map) == Layout::Log {
            return Err(refuse_log(target));
        }
        if self.opts.raw {
            return raw::write_c_string(map, target, data, self.opts.append);
        }
        let how = if self.opts.append {
            Publish::Append
        } else {
            Publish::Replace
        };
        Framed::for_writing(map, target)?.publish(data, how)
    }
}

/// A snapshot write would destroy a log's records: say what to do instead.
fn refuse_log(target: &Target) -> anyhow::Error {
    crate::error::failure(
        crate::error::Kind::Failed,
        format!(
            "{target} is a log (made by shm-write --lines): append records to it with \
             shm-write --lines {}, or remove it first (shm-read --remove {} > /dev/null)",
            target.flag(),
            target.flag()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_sizes_fit_and_round_to_pages() {
        assert_eq!(default_size(0, false), 4096);
        assert_eq!(default_size(5, true), 4096);
        assert_eq!(default_size(4096, true), 8192);
        let size = default_size(1 << 20, false);
        assert_eq!(size % 4096, 0);
        assert!(framed::capacity_for(size).unwrap() >= 1 << 20);
    }
}
