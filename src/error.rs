//! The exit codes, and the command layer's own failures.
//!
//! Contract:
//! - [`Kind`] is the documented exit code classes; every typed error of
//!   the layers below maps to one (see `cmd::explain`);
//! - [`Failure`] is a failure the command layer itself finds, with a
//!   complete one-line message (what went wrong, naming the segment, what
//!   to do); anything unclassified is exit 1.

use std::fmt;

/// Which documented exit code a failure maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Exit 1: anything else that went wrong.
    Failed,
    /// Exit 2: the command line asks for something impossible.
    Usage,
    /// Exit 3: no segment at that address.
    NotFound,
    /// Exit 124: `--timeout` ran out.
    TimedOut,
}

impl Kind {
    /// The process exit code for this kind.
    #[must_use]
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Failed => 1,
            Kind::Usage => 2,
            Kind::NotFound => 3,
            Kind::TimedOut => 124,
        }
    }
}

/// A failure with a complete, one-line message.
#[derive(Debug)]
pub struct Failure {
    /// The exit code class.
    pub kind: Kind,
    message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Builds an `anyhow::Error` of the given kind.
pub fn failure(kind: Kind, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failure {
        kind,
        message: message.into(),
    })
}

/// The [`Kind`] of the first [`Failure`] in `err`'s chain, if any.
#[must_use]
pub fn kind_of(err: &anyhow::Error) -> Option<Kind> {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<Failure>())
        .map(|f| f.kind)
}

/// How a process should end after `err`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Print nothing and exit 0: the reader of our stdout went away, as
    /// with any Unix filter that gets SIGPIPE.
    QuietBrokenPipe,
    /// Print the error and exit with this code.
    Exit(u8),
}

/// Refuses to run when stdin was closed at start (`<&-`): the runtime then
/// reads /dev/null, and an empty input would silently empty the segment.
pub fn require_stdin(program: &str) -> anyhow::Result<()> {
    if crate::sys::was_closed_at_start(0) {
        return Err(failure(
            Kind::Failed,
            format!(
                "stdin is closed; give the data on stdin (… | {program} …, or < FILE; < /dev/null for empty content)"
            ),
        ));
    }
    Ok(())
}

/// Refuses to run when stdout was closed at start (`>&-`): the content
/// would go nowhere, and a segment could be removed or a stream drained
/// for nothing. Checked before any segment is touched.
pub fn require_stdout(program: &str) -> anyhow::Result<()> {
    if crate::sys::was_closed_at_start(1) {
        return Err(failure(
            Kind::Failed,
            format!(
                "stdout is closed, so there is nowhere to put the output; nothing was read or changed: \
                 give {program} an output (> FILE, | COMMAND, or > /dev/null to discard it)"
            ),
        ));
    }
    Ok(())
}
