//! Log states that several test files start from: the README's chat, and
//! a log writer stopped while it holds the write lock.

use std::thread;
use std::time::Duration;

use super::{BOUND, Live, Seg, info, read, strs, until, write_cmd};

/// The README's chat on the log `seg`: a `--lines` `writer` and a
/// `follower` already started; two typed lines reach the follower one by
/// one, in order; then the writer ends, the log is removed, and the
/// follower ends, each with exit 0.
pub fn chat_two_lines(mut writer: Live, follower: Live, seg: &Seg) {
    thread::sleep(Duration::from_millis(100));
    writer.send(b"hi there\n");
    follower.wait_stdout(Duration::from_secs(10), "first line", |o| {
        o == b"hi there\n"
    });
    writer.send(b"how are you?\n");
    follower.wait_stdout(Duration::from_secs(10), "second line", |o| {
        o == b"hi there\nhow are you?\n"
    });
    writer.finish(Duration::from_secs(10)).ok();
    read(&strs(&seg.with(&["--remove"]))).ok();
    follower.finish(Duration::from_secs(10)).ok();
}

/// A `--lines` writer of `seg` stopped (SIGSTOP) in the middle of
/// appending `line`, so it holds the log's write lock (a test hook makes
/// its append take 3 s, so the stop lands inside it).
pub fn log_writer_stopped_holding_the_lock(seg: &Seg, line: &[u8]) -> Live {
    let mut cmd = write_cmd(&strs(&seg.with(&["--lines"])));
    cmd.env("SHM_TOOLS_TEST_SLOW_APPEND_US", "3000000");
    let mut holder = Live::start(&mut cmd);
    holder.send(line);
    until("the writer takes the lock", BOUND, || {
        !info(seg)["lock_holder_pid"].is_null()
    });
    holder.stop();
    holder
}
