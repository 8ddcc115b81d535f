//! How every failure ends the process: its exit class and its message.
//!
//! Contract:
//! - the layers below return typed errors that carry data (what went
//!   wrong, on which segment) and never a sentence about the command line;
//! - this module's files give each of those types its one-line message,
//!   with what to do next, and its [`Kind`], so every "what to do" sentence
//!   lives here, at the command layer;
//! - the exit code comes from a typed kind found in the error's chain,
//!   never from the text of a message.

mod layout;
mod log;
mod ring;
mod segment;
mod snapshot;

pub use log::WaitNotice;
pub use snapshot::LockNoticeText;

use nix::errno::Errno;

use crate::error::{Failure, Kind, Outcome};

/// A typed error from a layer below, classified for the exit code.
pub trait Classify {
    /// The exit class of this error.
    fn kind(&self) -> Kind;

    /// Whether it is an access outside the mapping, whose message does
    /// not say which segment it is about.
    fn is_out_of_bounds(&self) -> bool {
        false
    }
}

impl Classify for Failure {
    fn kind(&self) -> Kind {
        self.kind
    }
}

/// One cause as the typed error it is, if it is one; a [`ContentError`]
/// (crate::layout) as the layout's error it holds.
fn typed<'e>(cause: &'e (dyn std::error::Error + 'static)) -> Option<&'e dyn Classify> {
    if let Some(content) = cause.downcast_ref::<crate::layout::ContentError>() {
        return typed(content.inner());
    }
    // Every typed error of the layers below is listed here once.
    macro_rules! first_of {
        ($($typed:ty),* $(,)?) => {
            $(
                if let Some(typed) = cause.downcast_ref::<$typed>() {
                    return Some(typed);
                }
            )*
        };
    }
    first_of!(
        Failure,
        crate::layout::LayoutError,
        crate::segment::SegmentError,
        crate::layout::log::LogError,
        crate::layout::ring::RingError,
        crate::layout::snapshot::SnapshotError,
    );
    None
}

/// The [`Kind`] of one cause, when it is one of the typed errors.
fn classify(cause: &(dyn std::error::Error + 'static)) -> Option<Kind> {
    typed(cause).map(Classify::kind)
}

/// Whether `err` is, first of all, an access outside the mapping, whose
/// message does not say which segment it is about: bare, or inside one
/// of the layouts' typed errors (the first typed error decides).
#[must_use]
pub fn is_unnamed_out_of_bounds(err: &anyhow::Error) -> bool {
    err.chain()
        .find_map(
            |cause| match cause.downcast_ref::<crate::sys::AccessError>() {
                Some(access) => Some(matches!(access, crate::sys::AccessError::OutOfBounds(_))),
                None => typed(cause).map(Classify::is_out_of_bounds),
            },
        )
        .unwrap_or(false)
}

/// The [`Kind`] of the first typed error in `err`'s chain, if any.
#[must_use]
pub fn kind_of(err: &anyhow::Error) -> Option<Kind> {
    err.chain().find_map(classify)
}

/// How a process should end after `err`: the first typed error decides,
/// and a broken pipe before any of them ends it quietly.
#[must_use]
pub fn outcome(err: &anyhow::Error) -> Outcome {
    for cause in err.chain() {
        if let Some(kind) = classify(cause) {
            return Outcome::Exit(kind.exit_code());
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::BrokenPipe
        {
            return Outcome::QuietBrokenPipe;
        }
        if let Some(&e) = cause.downcast_ref::<Errno>() {
            return match e {
                Errno::EPIPE => Outcome::QuietBrokenPipe,
                _ => Outcome::Exit(Kind::Failed.exit_code()),
            };
        }
    }
    Outcome::Exit(Kind::Failed.exit_code())
}
