//! Who holds log writers back, by the kernel's evidence: a lossless
//! follower of a POSIX log holds a kernel (OFD) lock besides its slot's
//! lock word, so a forged slot holds nobody back; and writers queued on the
//! write lock wait without limit only while its holder says it waits for a
//! live follower, not whenever a follower lags.

mod common;

use std::time::{Duration, Instant};

use common::*;

const LIMIT: Duration = Duration::from_secs(30);

/// Slot 0's lock word (256 + 8) naming tid 999999, its position (256 + 16)
/// at the tail: a follower that has read nothing, if lock words were
/// believed.
fn forge_slot(seg: &Seg) {
    seg.poke(256 + 8, &999_999u32.to_ne_bytes());
    seg.poke(256 + 16, &0u64.to_ne_bytes());
}

#[test]
fn a_forged_slot_of_a_posix_log_holds_no_writer_and_info_says_it_is_not_live() {
    let seg = Seg::name();
    write(&strs(&seg.with(&["--lines", "-s", "8K"])), b"first\n").ok();
    forge_slot(&seg);
    let info = info(&seg);
    assert_eq!(info["lossless_followers"], 0, "{info}");
    let slots = info["follower_slots"].as_array().unwrap();
    assert_eq!(slots.len(), 1, "{info}");
    assert_eq!(slots[0]["slot"], 0);
    assert_eq!(slots[0]["tid"], 999_999);
    assert_eq!(slots[0]["live"], false);
    let text = read(&strs(&seg.with(&["--info"]))).ok().stdout_str();
    assert!(
        text.contains("0: tid 999999, not live (no follower lock)"),
        "{text}"
    );
    // Enough to wrap the log many times over: not held back at all.
    let out = run_limited(
        &mut write_cmd(&strs(&seg.with(&["--lines"]))),
        &numbered("line ", 2000),
        Duration::from_secs(10),
    );
    out.ok();
    assert!(out.stderr.is_empty(), "{out}");
}

#[test]
fn a_real_lossless_follower_shows_as_live_by_its_lock_and_holds_writers() {
    let seg = Seg::name();
    write(&strs(&seg.with(&["--lines", "-s", "8K"])), b"").ok();
    let mut follower = Live::start(&mut read_cmd(&strs(&seg.with(&["--follow", "--lossless"]))));
    let started = Instant::now();
    while info(&seg)["lossless_followers"] != 1 {
        assert!(started.elapsed() < LIMIT, "the follower never took a slot");
        std::thread::sleep(Duration::from_millis(20));
    }
    let info = info(&seg);
    let slots = info["follower_slots"].as_array().unwrap();
    assert_eq!(slots.len(), 1, "{info}");
    assert_eq!(slots[0]["live"], true, "{info}");
    assert_eq!(slots[0]["evidence"], "follower lock held", "{info}");
    let lines = numbered("line ", 3000);
    write(&strs(&seg.with(&["--lines"])), &lines).ok();
    follower.wait_stdout(LIMIT, "every line", |out| out.len() == lines.len());
    assert_eq!(follower.stdout_now(), lines);
    follower.kill();
}

/// A lossless follower of the log `seg` (holding "first"), stopped after
/// reading it; then "second" is appended, so it is one record behind.
fn stopped_follower_one_record_behind(seg: &Seg) -> Live {
    let follower = Live::start(&mut read_cmd(&strs(&seg.with(&["--follow", "--lossless"]))));
    follower.wait_stdout(LIMIT, "the first line", |out| out == b"first\n");
    follower.stop();
    write(&strs(&seg.with(&["--lines"])), b"second\n").ok();
    follower
}

/// A follower stopped one record behind, then a lock word naming a tid
/// that holds nothing (no robust list: the kernel never frees it): the
/// writer is not held back by the follower, since the holder is not
/// waiting for it; it gives up after 10 s with one line, exit 1.
#[test]
fn a_stale_write_lock_is_reported_even_with_a_stopped_follower_behind() {
    let seg = Seg::name();
    write(&strs(&seg.with(&["--lines"])), b"first\n").ok();
    let mut follower = stopped_follower_one_record_behind(&seg);
    // The write lock's word (offset 40): tid 999999.
    seg.poke(40, &999_999u32.to_ne_bytes());
    let started = Instant::now();
    let out = run_limited(
        &mut write_cmd(&strs(&seg.with(&["--lines"]))),
        b"third\n",
        LIMIT,
    );
    follower.resume();
    follower.kill();
    out.expect_code(1);
    assert!(
        out.stderr.contains("held by thread 999999")
            && out
                .stderr
                .contains("it is not waiting for a lossless follower"),
        "{out}"
    );
    assert!(started.elapsed() < Duration::from_secs(25), "{out}");
}

/// A writer stopped (Ctrl-Z) in the middle of an append, holding the lock,
/// with a stopped lossless follower one record behind: the next writer
/// says the holder may be stopped after 10 s, instead of waiting forever.
#[test]
fn a_writer_stopped_holding_the_lock_is_reported_despite_a_follower_behind() {
    let seg = Seg::name();
    write(&strs(&seg.with(&["--lines"])), b"first\n").ok();
    let mut follower = stopped_follower_one_record_behind(&seg);
    let mut holder = log_writer_stopped_holding_the_lock(&seg, b"third\n");
    let started = Instant::now();
    let out = run_limited(
        &mut write_cmd(&strs(&seg.with(&["--lines"]))),
        b"fourth\n",
        LIMIT,
    );
    holder.resume();
    follower.resume();
    holder.kill();
    follower.kill();
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("it is not waiting for a lossless follower")
            && out.stderr.contains("kill -CONT"),
        "{out}"
    );
    assert!(started.elapsed() < Duration::from_secs(25), "{out}");
}
