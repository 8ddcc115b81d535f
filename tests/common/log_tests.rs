//! Shared by the tests/log_*.rs files: how long a log test may take, a
//! follower, an empty log for followers to attach to, and a POSIX log's
//! path in /dev/shm.

use std::time::Duration;

use super::{Live, Seg, read_cmd, strs, write};

pub const LIMIT: Duration = Duration::from_secs(60);

pub fn follower(seg: &Seg, more: &[&str]) -> Live {
    let mut args = seg.with(&["--follow"]);
    args.extend(more.iter().map(|s| (*s).to_owned()));
    Live::start(&mut read_cmd(&strs(&args)))
}

/// Makes an empty log of `size`, so followers can attach before any line.
pub fn empty_log(seg: &Seg, size: &str) {
    write(&strs(&seg.with(&["--lines", "-s", size])), b"").ok();
}

/// The path of a POSIX test segment in /dev/shm.
pub fn path(seg: &Seg) -> String {
    format!("/dev/shm/{}", seg.name_value().unwrap())
}
