//! `shm-read --list --stale/--unused --remove`: removing what was listed,
//! each segment only after checking it again.
//!
//! Contract: a segment is removed by identity (System V by id, POSIX only
//! while the name still leads to that object) and only if it is still
//! stale (or unused) when opened again; a stream ring is checked and
//! removed holding its writer's claim. One line per segment on stdout.

use std::io::Write;

use crate::address::Target;
use crate::cmd::info;
use crate::cmd::report::SegmentReport;
use crate::error::{Kind, failure};
use crate::layout::Layout;
use crate::layout::ring::Ring;
use crate::lock::Holder;
use crate::segment::{Access, Segment};

use super::ListOptions;

/// Why a segment listed for removal is still to be removed (None: keep
/// it), asked again right before the removal, for all it was listed for;
/// for a stream ring, with the holder of its writer's claim as found by
/// the remover, who holds it (`held`).
fn recheck(
    opts: &ListOptions,
    segment: &Segment,
    held: Option<Holder>,
) -> anyhow::Result<Option<&'static str>> {
    let mut reason = None;
    if opts.stale {
        let stale = match held {
            Some(writer) => {
                Ring::open(segment.mapping(), segment.target())?.stale_because(writer)?
            }
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
}

/// Removes each segment in `rows`: opened again, found stale (or unused:
/// whatever `opts` asks) again on what was opened, and removed by
/// identity (System V by id, POSIX only
/// while the name still leads to that object), so a segment that someone
/// took up again since it was listed is left alone. A stream ring is
/// checked and removed holding its writer's claim ([`remove_if_still`]),
/// so no writer takes it over in between; for other segments what is left
/// is the moment between that last check and the removal. One line per segment
/// on `out`; any failure makes the whole run fail at the end. With `only`,
/// segments that another uid owns are skipped, each with a line saying how
/// to include them.
pub(super) fn remove_listed(
    rows: &[(Option<Target>, SegmentReport)],
    only: Option<u32>,
    opts: &ListOptions,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut failed = 0;
    for (target, report) in rows {
        if let Some(me) = only
            && report.uid() != me
        {
            let user = report.user();
            writeln!(
                out,
                "skipped {}: owned by {user}, not you; give --owner {user} or --all-users to remove it",
                report.segment
            )?;
            continue;
        }
        let Some(target) = target else {
            writeln!(out, "not removed: {} (no usable address)", report.segment)?;
            failed += 1;
            continue;
        };
        let removed = open_for_removal(target)
            .and_then(|(segment, writable)| remove_if_still(&segment, writable, opts));
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
        Err(_) => Ok((Segment::open(target, Access::ReadOnly)?, false)),
    }
}

/// Removes `segment` if [`recheck`] still gives a reason (returned), or
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
    opts: &ListOptions,
) -> anyhow::Result<Option<&'static str>> {
    let map = segment.mapping();
    if Layout::detect(map) != Layout::Stream {
        return match recheck(opts, segment, None)? {
            Some(reason) => Ok(segment.remove().map(|()| Some(reason))?),
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
    let removed = match recheck(opts, segment, Some(found)) {
        Ok(Some(reason)) => segment
            .remove()
            .map(|()| Some(reason))
            .map_err(anyhow::Error::from),
        other => other,
    };
    claim.give_back();
    removed
}
