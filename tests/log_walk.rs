//! A new log writer checks the numbering of the records already there
//! without holding the write lock (other writers are not held up while it
//! walks a large log); only what was appended since is checked under it.

mod common;

use std::time::{Duration, Instant};

use common::*;

const LIMIT: Duration = Duration::from_secs(30);

/// The walk happens before the lock: with the lock held by a stopped
/// writer, a new writer still finds a forged sequence number at once
/// (exit 1, corrupt), instead of first waiting 10 s for the lock.
#[test]
fn a_new_writer_walks_the_log_before_it_takes_the_lock() {
    let seg = Seg::name();
    write(&strs(&seg.with(&["--lines"])), b"a\nb\nc\n").ok();
    let mut holder = log_writer_stopped_holding_the_lock(&seg, b"d\n");
    // The second record ("b\n", at position 32 of the data at 1280: a
    // record of 2 bytes takes a 24-byte header and 8 bytes): its sequence
    // number (8 bytes into its header) 99 instead of 1.
    seg.poke(1280 + 32 + 8, &99u64.to_ne_bytes());
    let started = Instant::now();
    let out = run_limited(
        &mut write_cmd(&strs(&seg.with(&["--lines"]))),
        b"e\n",
        LIMIT,
    );
    let took = started.elapsed();
    holder.resume();
    holder.kill();
    out.expect_code(1)
        .stderr_has(&["corrupt log header", "sequence number 99, expected 1"]);
    assert!(
        took < Duration::from_secs(8),
        "it waited for the lock first: {took:?}"
    );
}
