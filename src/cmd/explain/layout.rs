//! The messages of [`LayoutError`]: what is wrong with a segment's content,
//! and what to do about it.

use std::fmt;

use super::Classify;
use crate::error::Kind;
use crate::layout::{Layout, LayoutError};
use crate::sys::{ShrankTo, Truncated};

impl Classify for LayoutError {
    fn is_out_of_bounds(&self) -> bool {
        // The layout's own answer (an inherent method).
        LayoutError::is_out_of_bounds(self)
    }

    fn kind(&self) -> Kind {
        Kind::Failed
    }
}

/// How to recover from a header this build cannot use, by layout.
fn remedy(layout: Layout) -> &'static str {
    match layout {
        Layout::Snapshot => "read it with --raw or --all, or remove it and write again",
        Layout::Stream => "remove it and start the stream again",
        Layout::Log => "read it with --all, or remove it and start the log again",
        Layout::Foreign => "read it with --raw",
    }
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::Access(e) => e.fmt(f),
            LayoutError::OutOfMemory { target, bytes } => write!(
                f,
                "cannot copy {bytes} bytes of {target}: this process may not have that much memory \
                 (ulimit -v); its content is unchanged"
            ),
            LayoutError::Corrupt {
                target,
                layout,
                what,
            } => write!(
                f,
                "{target} has a corrupt shm-tools header ({what}); {}",
                remedy(*layout)
            ),
            LayoutError::Version {
                target,
                layout,
                found,
                readable,
            } => {
                let versions = readable
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(" and ");
                let plural = if readable.len() > 1 { "s" } else { "" };
                write!(
                    f,
                    "{target} uses shm-tools layout version {found}, this shm-tools reads version{plural} \
                     {versions}; use a matching shm-tools, or {}",
                    remedy(*layout)
                )
            }
            LayoutError::NoRoomToAppend { target } => write!(
                f,
                "{target} is full (its C string has no terminating NUL); nothing can be appended"
            ),
            LayoutError::TooLarge {
                target,
                len,
                room,
                size,
            } => write!(
                f,
                "input is {len} bytes but {target} has room for {room} (segment of {size} bytes); \
                 write less, or remove it and write again with a larger --size"
            ),
        }
    }
}

impl fmt::Display for Truncated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = self
            .what
            .as_deref()
            .unwrap_or("a POSIX shared memory object");
        let remedy = match &self.flag {
            Some(flag) if flag.is_empty() => {
                "remove it (shm-read --remove > /dev/null) and write it again".to_owned()
            }
            Some(flag) => {
                format!("remove it (shm-read --remove {flag} > /dev/null) and write it again")
            }
            None => "remove it and write it again".to_owned(),
        };
        let shrank = match self.size {
            ShrankTo::Bytes(n) => format!("shrank to {n} bytes"),
            ShrankTo::Fewer => "shrank to fewer bytes".to_owned(),
            ShrankTo::Unknown => "shrank".to_owned(),
        };
        write!(
            f,
            "{what} {shrank} while in use (another process truncated it); \
             its content can no longer be trusted: {remedy}"
        )
    }
}
