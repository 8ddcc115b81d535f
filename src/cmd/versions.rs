//! `shm-read --follow` on a snapshot: each new version as it is published.
//!
//! Contract:
//! - Versions that come faster than they are printed are skipped, never
//!   the latest: a snapshot is state, not messages.
//! - A segment that grows is mapped again, and the version that moved in
//!   growing is not printed twice.

use std::io::Write;

use crate::cmd::follow::{Ended, Stop};
use crate::cmd::grow::remapping;
use crate::cmd::read::{FollowOptions, limit, to_stdout};
use crate::layout::snapshot::Snapshot;
use crate::segment::Segment;
use crate::wait::{self, RECHECK};

/// Prints the current version (unless `opts.new`), then each new one,
/// until the segment is removed or `stop` says so. A version published
/// while the previous one is being printed
/// may be skipped, but the last one is always printed: a snapshot is state,
/// and the latest state is what matters. With `json`, each version is one
/// JSON object on its own line, so versions stay apart. A segment that
/// grows is mapped again; the version that grew it is printed, and the
/// old content that growing moved (same time and writer) is not again.
pub fn follow_versions(
    segment: &mut Segment,
    opts: &FollowOptions,
    mut stop: Stop,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut shown = None;
    let mut skip_current = opts.new;
    remapping(segment, |segment| {
        follow_mapped(segment, opts, out, &mut shown, &mut skip_current, &mut stop)
    })
}

/// [`follow_versions`] until the segment is removed, has grown beyond this
/// mapping, or `stop` ends it. `shown` is the last version printed (or
/// skipped): seq, time and writer.
fn follow_mapped(
    segment: &Segment,
    opts: &FollowOptions,
    out: &mut dyn Write,
    shown: &mut Option<(u32, u64, u32)>,
    skip_current: &mut bool,
    stop: &mut Stop,
) -> anyhow::Result<()> {
    let map = segment.mapping();
    let framed = Snapshot::open(map, segment.target())?;
    let seq_word = framed.seq_word()?;
    // A version that keeps changing under the copy is retried only until
    // the follow's end: the stop check at the top of the loop then decides.
    // (Its time limits do not change as versions are printed.)
    let ends = *stop;
    let give_up = move || ends.check().is_some();
    if *skip_current && let Some(current) = framed.published_unless(&give_up)? {
        *skip_current = false;
        if current.seq != 0 {
            *shown = Some((current.seq, current.mtime_ns, current.writer_pid));
        }
    }
    loop {
        // A version not shown yet, or None once there will be none.
        let next = wait::wait_on_event(
            seq_word,
            None,
            || stop.slice(RECHECK * 4),
            |_| {
                match stop.check() {
                    Some(Ended::Done) => return Ok(Some(None)),
                    Some(Ended::TimedOut) => {
                        return Err(stop.timed_out(segment.target(), "versions"));
                    }
                    None => {}
                }
                let seq = framed.seq()?;
                if shown.is_none_or(|(s, ..)| s != seq) && seq != 0 {
                    return Ok(Some(Some(seq)));
                }
                if segment.is_removed() {
                    return Ok(Some(None));
                }
                map.verify_size()?;
                Ok(None)
            },
        )?;
        if next.is_none() {
            return Ok(());
        }
        {
            let Some(version) = framed.read_at_most_unless(limit(opts.bytes), &give_up)? else {
                continue;
            };
            let moved = shown.is_some_and(|(_, mtime_ns, pid)| {
                (mtime_ns, pid) == (version.mtime_ns, version.writer_pid)
            });
            *shown = Some((version.seq, version.mtime_ns, version.writer_pid));
            if moved {
                continue;
            }
            to_stdout(segment.target(), "the content of", out, |out| {
                if opts.json {
                    let line = crate::cmd::record::to_json_line(
                        u64::from(version.seq),
                        Some(version.mtime_ns),
                        &version.data,
                    );
                    out.write_all(line.as_bytes())
                } else {
                    out.write_all(&version.data)
                }
            })?;
            if stop.printed() {
                return Ok(());
            }
        }
    }
}
