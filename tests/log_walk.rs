//! A new log writer checks the numbering of the records already there
//! without holding the write lock (other writers are not held up while it
//! walks a large log); only what was appended since is checked under it.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const LIMIT: Duration = Duration::from_secs(30);

/// The walk happens before the lock: with the lock held by a stopped
/// writer, a new writer still finds a forged sequence number at once
/// (exit 1, corrupt), instead of first waiting 10 s for the lock.
#[test]
fn a_new_writer_walks_the_log_before_it_takes_the_lock() {
    let seg = Seg::name();
    write(&strs(&seg.with(&["--lines"])), b"a\nb\nc\n").ok();
    let mut cmd = write_cmd(&strs(&seg.with(&["--lines"])));
    cmd.env("SHM_TOOLS_TEST_SLOW_APPEND_US", "3000000");
    let mut holder = Live::start(&mut cmd);
    holder.send(b"d\n");
    let started = Instant::now();
    while info(&seg)["lock_holder_pid"].is_null() {
        assert!(started.elapsed() < LIMIT, "the writer never took the lock");
        std::thread::sleep(Duration::from_millis(10));
    }
    let holder_pid = Pid::from_raw(i32::try_from(holder.pid()).unwrap());
    kill(holder_pid, Signal::SIGSTOP).unwrap();
    // The second record ("b\n", at position 32 of the data at 1280: a
    // record of 2 bytes takes a 24-byte header and 8 bytes): its sequence
    // number (8 bytes into its header) 99 instead of 1.
    let path = format!("/dev/shm/{}", seg.name_value().unwrap());
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.write_at(&99u64.to_ne_bytes(), 1280 + 32 + 8).unwrap();
    let started = Instant::now();
    let out = run_limited(
        &mut write_cmd(&strs(&seg.with(&["--lines"]))),
        b"e\n",
        LIMIT,
    );
    let took = started.elapsed();
    let _ = kill(holder_pid, Signal::SIGCONT);
    holder.kill();
    out.expect_code(1)
        .stderr_has(&["corrupt log header", "sequence number 99, expected 1"]);
    assert!(
        took < Duration::from_secs(8),
        "it waited for the lock first: {took:?}"
    );
}
