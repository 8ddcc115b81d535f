//! One-line notices on stderr that are not the command's error: a stream
//! taken over, a hint to someone typing, a note beside a listing.
//!
//! Contract: a notice never decides the outcome. It is written with a
//! plain write, not `eprintln!` (which panics when stderr cannot be
//! written: `2>/dev/full`, a file past `ulimit -f`), and one that cannot
//! be shown is dropped.

use std::fmt;
use std::io::Write;

/// Writes `message` and a newline to stderr, ignoring any failure.
pub fn notice(message: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{message}");
}
