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
}

impl Classify for Failure {
    fn kind(&self) -> Kind {
        self.kind
    }
}

/// The [`Kind`] of one cause, when it is one of the typed errors.
fn classify(cause: &(dyn std::error::Error + 'static)) -> Option<Kind> {
    // Whichever layout's error it holds decides.
    if let Some(content) = cause.downcast_ref::<crate::layout::ContentError>() {
        return classify(content.inner());
    }
    // Every typed error of the layers below is listed here once.
    macro_rules! first_of {
        ($($typed:ty),* $(,)?) => {
            $(
                if let Some(typed) = cause.downcast_ref::<$typed>() {
                    return Some(typed.kind());
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

/// Whether `err` is, first of all, an access outside the mapping, whose
/// message does not say which segment it is about: bare, or inside one
/// of the layouts' typed errors.
#[must_use]
pub fn is_unnamed_out_of_bounds(err: &anyhow::Error) -> bool {
    err.chain().find_map(out_of_bounds).unwrap_or(false)
}

/// For one cause: whether it is such an access (Some(true)), another
/// typed error that decides (Some(false)), or neither (None: look on).
fn out_of_bounds(cause: &(dyn std::error::Error + 'static)) -> Option<bool> {
    if let Some(access) = cause.downcast_ref::<crate::sys::AccessError>() {
        return Some(matches!(access, crate::sys::AccessError::OutOfBounds(_)));
    }
    if let Some(content) = cause.downcast_ref::<crate::layout::ContentError>() {
        return out_of_bounds(content.inner());
    }
    macro_rules! first_of {
        ($($typed:ty),* $(,)?) => {
            $(
                if let Some(typed) = cause.downcast_ref::<$typed>() {
                    return Some(typed.is_out_of_bounds());
                }
            )*
        };
    }
    first_of!(
        crate::layout::LayoutError,
        crate::layout::ring::RingError,
        crate::layout::snapshot::SnapshotError,
        crate::layout::log::LogError,
    );
    classify(cause).map(|_| false)
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
