//! `--stream` on both tools: a segment as a pipe between two unrelated
//! pipelines, `producer | shm-write --stream` and `shm-read --stream | consumer`.
//!
//! Contract: the writer claims and creates the ring (a second writer is
//! refused, and never removes anything: a lost claim means another process
//! uses the segment), the reader claims it (a second reader is refused) and
//! removes it once the stream completes. A ring whose writer is gone
//! unfinished and that no reader has begun to read is taken over by the
//! next writer, and one whose reader died before it began to read by the
//! next reader, each saying so in one line on stderr (docs/FORMAT.md,
//! Taking over). Both claims are robust locks, so
//! a peer's death is the kernel's record, valid across PID namespaces. A
//! side that finds its peer dead or gone ends non-zero, says how many bytes
//! got through, and removes the broken ring; only if both die does the
//! segment remain (README: finding leftovers).

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use indicatif::HumanBytes;
use nix::errno::Errno;

use crate::address::{Address, Target};
use crate::cmd::explain::outcome;
use crate::cmd::progress::{Meter, Progress};
use crate::error::{Kind, Outcome, failure};
use crate::layout::Layout;
use crate::layout::ring::{self, Ring, RingError, Side};
use crate::lock::Holder;
use crate::notice::notice;
use crate::segment::{Access, Create, Segment};
use crate::wait::Deadline;

/// Ring size when `--size` is not given (see the benchmark in README).
pub const DEFAULT_RING_SIZE: usize = 4 << 20;

/// `producer | shm-write --stream`: creates the ring and fills it from stdin.
pub fn write_stream(
    address: &Address,
    size: Option<usize>,
    mode: u32,
    progress: Option<Progress>,
) -> anyhow::Result<()> {
    let target = address.resolve()?;
    let size = size.unwrap_or(DEFAULT_RING_SIZE);
    // Refused before anything exists, so that every later refusal is one
    // where another process has used the segment and it is not ours to remove.
    if ring::capacity_for(size).is_none() {
        return Err(failure(
            Kind::Usage,
            format!(
                "--size {size} is too small for a stream ring ({} bytes of header and at least \
                 one of data); use --size 4K or more",
                ring::HEADER_SIZE
            ),
        ));
    }
    let create = Create {
        size,
        mode,
        exclusive: false,
    };
    // A ring removed after we opened it and before we claimed it (by
    // `--list --stale --remove`, which holds the claim across its unlink)
    // would take our stream where no reader can find it: start again on
    // what the address leads to now.
    for _ in 0..3 {
        // Whether we created the segment does not matter: Ring::create refuses
        // only when another process claimed or filled it, and then it is theirs.
        let (segment, _created) = super::open_or_create(&target, &create)?;
        if let Some(written) = write_ring(&segment, &target, progress) {
            return written;
        }
    }
    Err(failure(
        Kind::Failed,
        format!("{target} was removed each time this writer set it up; try again"),
    ))
}

/// [`write_stream`] on an opened segment; None if the ring turned out to
/// be removed once claimed (nothing was read from stdin then).
fn write_ring(
    segment: &Segment,
    target: &Target,
    progress: Option<Progress>,
) -> Option<anyhow::Result<()>> {
    let (ring, claim, takeover) = match Ring::create(segment.mapping(), target) {
        Ok(created) => created,
        Err(e) => return Some(Err(e.into())),
    };
    // Checked holding the claim: a remover unlinks only while it holds it.
    if segment.is_removed() {
        claim.give_back();
        return None;
    }
    if let Some(taken) = takeover {
        notice(format_args!(
            "shm-write: took over {target} from a stream writer that {}{}; discarded the {} \
             unread bytes it had written",
            taken.how,
            pid_note(taken.pid),
            taken.discarded
        ));
    }
    let stdin = io::stdin();
    let meter = Meter::new(progress, "sent");
    let result = meter.ticking(
        || ring_status(&ring, Side::Writer),
        || ring.produce(claim, stdin.as_fd(), &|bytes| meter.set(bytes)),
    );
    meter.finish();
    // Records a truncation by another process, which the binary reports.
    let _ = segment.mapping().verify_size();
    if result.is_err() && ring.reader_gone() {
        // Nobody will drain or remove the ring now; a failure to remove it
        // matters less than the error that says what happened.
        let _ = segment.remove();
    }
    Some(result.map(drop).map_err(|e| stream_error(e, target)))
}

/// `shm-read --stream | consumer`: drains the ring to stdout until the
/// writer is done, then removes it.
pub fn read_stream(
    address: &Address,
    wait_for_writer: bool,
    timeout: Option<Duration>,
    progress: Option<Progress>,
) -> anyhow::Result<()> {
    let target = address.resolve()?;
    let mut meter = None;
    let segment = open_stream(&target, wait_for_writer, timeout, progress, &mut meter)?;
    let meter = meter.unwrap_or_else(|| Meter::new(progress, "received"));
    let ring = Ring::open(segment.mapping(), &target).inspect_err(|_| meter.clear())?;
    // Held until the ring is removed (or the error below is returned).
    let (claim, takeover) = ring.claim_reader().inspect_err(|_| meter.clear())?;
    if let Some(taken) = takeover {
        notice(format_args!(
            "shm-read: took over {target} from a stream reader that {}{} before reading any of it",
            taken.how,
            pid_note(taken.pid)
        ));
    }
    let stdout = io::stdout();
    let result = meter
        .ticking(
            || ring_status(&ring, Side::Reader),
            || ring.consume(&claim, stdout.as_fd(), &|bytes| meter.set(bytes)),
        )
        .map_err(|e| stream_error(e, &target));
    meter.finish();
    // Records a truncation by another process, which the binary reports.
    let _ = segment.mapping().verify_size();
    match &result {
        Ok(_) => segment.remove()?,
        // Our consumer went away: the writer sees that and removes the ring.
        Err(e) if outcome(e) == Outcome::QuietBrokenPipe => {}
        // The writer failed or died: nothing more will come. The error says
        // more than a failure to remove would.
        Err(_) => {
            let _ = segment.remove();
        }
    }
    result.map(drop)
}

/// Opens the segment a stream reader drains: with `--wait` or a timeout,
/// once a writer made it a ring (showing the wait in `meter`, which it
/// then leaves in place); else at once, with a hint to start the writer
/// when there is none.
fn open_stream(
    target: &Target,
    wait_for_writer: bool,
    timeout: Option<Duration>,
    progress: Option<Progress>,
    meter: &mut Option<Meter>,
) -> anyhow::Result<Segment> {
    if wait_for_writer || timeout.is_some() {
        let deadline = Deadline::after(timeout);
        let waiting = meter.insert(Meter::new(progress, "received"));
        let opened = waiting.ticking(
            || "waiting for the writer to start".to_owned(),
            || {
                Segment::open_when(
                    target,
                    Access::ReadWrite,
                    deadline,
                    timeout,
                    "to get a stream writer",
                    |segment| {
                        let map = segment.mapping();
                        match Layout::detect(map) {
                            Layout::Stream => Ok(true),
                            // Blank: a writer is still setting it up.
                            _ if map.is_zero(0, map.len().min(64))? => Ok(false),
                            // Anything else is not going to become a stream: say so.
                            _ => Ring::open(map, target).map(|_| false).map_err(Into::into),
                        }
                    },
                )
            },
        );
        opened.inspect_err(|_| waiting.clear())
    } else {
        Segment::open(target, Access::ReadWrite).map_err(|e| match (e.is_missing(), target) {
            // The generic hint would suggest a snapshot write.
            (true, Target::Key { .. } | Target::Name(_)) => failure(
                Kind::NotFound,
                format!(
                    "no stream at {target}; start its writer with: producer | {}, \
                     or add --wait to wait for it",
                    target.command("shm-write --stream")
                ),
            ),
            _ => e.into(),
        })
    }
}

/// What `--progress` says after the numbers: how full the ring is, and
/// what `side` waits for (mbuffer-like, so the slow side shows): the
/// writer for its input, or for a reader (none yet) or the reader (the
/// ring is full); the reader for the writer (the ring is empty) or for
/// its output (the ring is full).
fn ring_status(ring: &Ring<'_>, side: Side) -> String {
    let Ok((in_flight, _)) = ring.fill() else {
        return String::new();
    };
    let capacity = ring.capacity();
    let (writer, reader) = ring.holders().unwrap_or((Holder::Free, Holder::Free));
    let done = ring.flags().is_ok_and(|f| f & ring::WRITER_DONE != 0);
    let ring_full = in_flight >= capacity;
    let waits = match side {
        Side::Writer if ring_full && reader == Holder::Free => "waiting for a reader",
        Side::Writer if ring_full => "waiting for the reader",
        Side::Writer if reader == Holder::Free && in_flight == 0 => {
            "waiting for input, no reader yet"
        }
        Side::Writer if reader == Holder::Free => "no reader yet",
        Side::Writer if in_flight == 0 => "waiting for input",
        Side::Reader if in_flight == 0 && !done && writer != Holder::Died => {
            "waiting for the writer"
        }
        Side::Reader if ring_full => "waiting for output",
        Side::Writer | Side::Reader => "",
    };
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a percentage for people"
    )]
    let percent = (in_flight as f64 * 100.0 / capacity.max(1) as f64).round() as u64;
    let fill = format!(
        "ring {} of {} ({percent}%)",
        HumanBytes(in_flight),
        HumanBytes(capacity)
    );
    if waits.is_empty() {
        fill
    } else {
        format!("{fill}: {waits}")
    }
}

/// " (pid N in its PID namespace)", or nothing if it never stored one.
fn pid_note(pid: u32) -> String {
    if pid == 0 {
        String::new()
    } else {
        format!(" (pid {pid} in its PID namespace)")
    }
}

/// A ring's error as this command reports it. A failed read of stdin or
/// write of stdout keeps its errno as the cause, so a broken pipe ends
/// quietly; a failed write to stdout (other than a broken pipe) names the
/// stream: "cannot write the content of ... to stdout: No space left on
/// device".
fn stream_error(err: RingError, target: &Target) -> anyhow::Error {
    match err {
        RingError::ReadInput(e) => anyhow::Error::new(e).context("cannot read stdin"),
        RingError::WriteOutput(Errno::EPIPE) => {
            anyhow::Error::new(Errno::EPIPE).context("cannot write stdout")
        }
        RingError::WriteOutput(e) => {
            anyhow::Error::new(e).context(format!("cannot write the content of {target} to stdout"))
        }
        other => other.into(),
    }
}
