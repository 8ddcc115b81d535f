//! A follow that ends by itself, on snapshots and logs alike: `--count N`
//! after N versions or records (exit 0), `--next` after the next one,
//! `--for` after a while (exit 0), `--timeout` over the whole follow
//! (exit 124, as timeout(1)); and the combinations that mean nothing are
//! usage errors. Times are asserted only from below: a loaded machine is
//! slow, never early.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;

const LIMIT: Duration = Duration::from_secs(30);

fn log_with(seg: &Seg, lines: &[u8]) {
    write(&strs(&seg.with(&["--lines"])), lines).ok();
}

fn follow(seg: &Seg, more: &[&str]) -> Live {
    Live::start(&mut read_cmd(&strs(&seg.with(more))))
}

/// Adds something new to `seg` (a record, or a version) every 50 ms until
/// `reader` prints: a follower of what comes next cannot say when it has
/// started, so anything added just before would be "what is there".
fn add_until_printed(seg: &Seg, lines: bool, reader: &Live) {
    let started = Instant::now();
    let mut n = 0;
    while reader.stdout_len() == 0 {
        assert!(
            started.elapsed() < LIMIT,
            "{}: nothing printed",
            reader.line
        );
        let args = if lines {
            seg.with(&["--lines"])
        } else {
            seg.args.clone()
        };
        write(&strs(&args), format!("new {n}\n").as_bytes()).ok();
        n += 1;
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn count_ends_a_log_follow_after_n_records() {
    let seg = Seg::name();
    log_with(&seg, b"a\nb\nc\nd\ne\n");
    let out = read(&strs(&seg.with(&["-F", "--count", "3"])));
    out.ok();
    assert_eq!(out.stdout, b"a\nb\nc\n");

    // Records still to come count too, and the follow ends at the Nth
    // even when more arrive in the same batch.
    let f = follow(&seg, &["-F", "--new", "--count", "2"]);
    add_until_printed(&seg, true, &f);
    log_with(&seg, b"x\ny\nz\n");
    let out = f.finish(LIMIT);
    out.ok();
    let printed = out.stdout_str();
    assert_eq!(printed.lines().count(), 2, "{out}");
    assert!(printed.starts_with("new "), "{out}");
}

#[test]
fn count_ends_a_snapshot_follow_after_n_versions() {
    let seg = Seg::name();
    write(&strs(&seg.args), b"v1\n").ok();
    let f = follow(&seg, &["-F", "--count", "2"]);
    f.wait_stdout(LIMIT, "the first version", |o| o == b"v1\n");
    write(&strs(&seg.args), b"v2\n").ok();
    let out = f.finish(LIMIT);
    out.ok();
    assert_eq!(out.stdout, b"v1\nv2\n");
}

#[test]
fn next_prints_only_what_comes_next_on_a_log() {
    let seg = Seg::name();
    log_with(&seg, b"old 1\nold 2\n");
    let f = follow(&seg, &["--next"]);
    add_until_printed(&seg, true, &f);
    let out = f.finish(LIMIT);
    out.ok();
    let printed = out.stdout_str();
    assert!(
        printed.starts_with("new ") && printed.lines().count() == 1,
        "{out}"
    );
}

#[test]
fn next_prints_only_the_next_version_of_a_snapshot() {
    let seg = Seg::name();
    write(&strs(&seg.args), b"current\n").ok();
    let f = follow(&seg, &["--next", "--json"]);
    add_until_printed(&seg, false, &f);
    let out = f.finish(LIMIT);
    out.ok();
    let printed = out.stdout_str();
    assert_eq!(printed.lines().count(), 1, "{out}");
    let version: serde_json::Value = serde_json::from_str(printed.trim_end()).unwrap();
    assert!(
        version["content"].as_str().unwrap().starts_with("new "),
        "{out}"
    );
    assert!(version["seq"].as_u64().unwrap() >= 2);
}

#[test]
fn timeout_ends_a_follow_short_of_its_count_with_124() {
    // A log with two records, asked for five; a snapshot asked for two.
    let log = Seg::name();
    log_with(&log, b"a\nb\n");
    let snapshot = Seg::name();
    write(&strs(&snapshot.args), b"only\n").ok();
    for (seg, more, printed, says) in [
        (
            &log,
            &["-F", "--count", "5"][..],
            &b"a\nb\n"[..],
            "printed 2 of 5 records",
        ),
        (
            &snapshot,
            &["-F", "--count", "2"][..],
            b"only\n",
            "printed 1 of 2 versions",
        ),
        (&log, &["--next"][..], b"", "printed 0 of 1 records"),
        (&snapshot, &["--next"][..], b"", "printed 0 of 1 versions"),
    ] {
        let mut args = seg.with(more);
        args.extend(["--timeout".to_owned(), "300ms".to_owned()]);
        let started = Instant::now();
        let out = read(&strs(&args));
        assert!(started.elapsed() >= Duration::from_millis(300), "{out}");
        out.expect_code(124)
            .stderr_has(&["timed out after 300ms following", says]);
        assert_eq!(out.stdout, printed, "{out}");
    }
}

#[test]
fn timeout_without_count_still_means_124_and_points_to_for() {
    let log = Seg::name();
    log_with(&log, b"a\n");
    let snapshot = Seg::name();
    write(&strs(&snapshot.args), b"s\n").ok();
    for seg in [&log, &snapshot] {
        let out = read(&strs(&seg.with(&["-F", "--timeout", "200ms"])));
        out.expect_code(124).stderr_has(&["timed out", "--for"]);
        assert!(!out.stdout.is_empty(), "{out}");
    }
}

#[test]
fn for_ends_a_follow_with_0_after_that_long() {
    let log = Seg::name();
    log_with(&log, b"a\nb\n");
    let snapshot = Seg::name();
    write(&strs(&snapshot.args), b"s\n").ok();
    for (seg, expected) in [(&log, &b"a\nb\n"[..]), (&snapshot, b"s\n")] {
        let started = Instant::now();
        let out = read(&strs(&seg.with(&["-F", "--for", "300ms"])));
        assert!(started.elapsed() >= Duration::from_millis(300), "{out}");
        out.ok();
        assert_eq!(out.stdout, expected);
        // With --count too, whichever comes first: here the window.
        let out = read(&strs(&seg.with(&["-F", "--for", "200ms", "--count", "9"])));
        out.ok();
        assert_eq!(out.stdout, expected);
    }
}

#[test]
fn for_counts_from_the_start_of_the_follow_timeout_from_the_start() {
    // The segment appears 500 ms after the reader starts waiting: a --for
    // of 300 ms still follows (its window starts with the follow), and a
    // --timeout of 1s counts the wait as well.
    for (kind, lines) in [("log", true), ("snapshot", false)] {
        let seg = Seg::name();
        let started = Instant::now();
        let windowed = follow(&seg, &["-F", "--wait", "--for", "300ms"]);
        let bounded = follow(&seg, &["-F", "--wait", "--timeout", "1s"]);
        thread::sleep(Duration::from_millis(500));
        let args = if lines {
            seg.with(&["--lines"])
        } else {
            seg.args.clone()
        };
        write(&strs(&args), b"late\n").ok();
        let out = windowed.finish(LIMIT);
        out.ok();
        assert_eq!(out.stdout, b"late\n", "{kind}: {out}");
        let out = bounded.finish(LIMIT);
        assert!(started.elapsed() >= Duration::from_secs(1), "{kind}: {out}");
        out.expect_code(124).stderr_has(&["timed out after 1s"]);
        assert_eq!(out.stdout, b"late\n", "{kind}: {out}");
    }
}

#[test]
fn a_busy_log_cannot_keep_a_follow_past_its_time() {
    // The writer appends as fast as it can; the lossless follower is never
    // idle, so only the check between records can end it. (It may join
    // after the first lines were overwritten: that is history, not loss.)
    let seg = Seg::name();
    write(&strs(&seg.with(&["--lines", "-s", "64K"])), b"").ok();
    let mut writer = Live::start(&mut write_cmd(&strs(&seg.with(&["--lines"]))));
    let mut follower = follow(&seg, &["-F", "--lossless", "--for", "300ms"]);
    let batch: Vec<u8> = (0..2000)
        .flat_map(|n| format!("busy line {n}\n").into_bytes())
        .collect();
    let started = Instant::now();
    while follower.child.try_wait().expect("wait").is_none() {
        assert!(started.elapsed() < LIMIT, "the follow did not end");
        writer.send(&batch);
    }
    let out = follower.finish(LIMIT);
    out.ok();
    assert!(started.elapsed() >= Duration::from_millis(300), "{out}");
    assert!(out.stdout.starts_with(b"busy line "), "{out}");
    writer.kill();
}

#[test]
fn a_removed_segment_ends_a_counted_follow_with_0() {
    let seg = Seg::name();
    log_with(&seg, b"a\nb\n");
    let f = follow(&seg, &["-F", "--count", "10"]);
    f.wait_stdout(LIMIT, "history", |o| o == b"a\nb\n");
    read(&strs(&seg.with(&["--remove"]))).ok();
    f.finish(LIMIT).ok();
}

#[test]
fn meaningless_combinations_are_usage_errors() {
    let seg = Seg::name();
    log_with(&seg, b"a\n");
    for (more, says) in [
        (&["--count", "3"][..], "--count N ends a follow"),
        (&["--for", "1s"][..], "--for DURATION ends a follow"),
        (&["-F", "--count", "0"][..], "give 1 or more"),
        (&["-F", "--count", "many"][..], "not a count"),
        (&["--next", "--count", "2"][..], "cannot be used with"),
        (&["--next", "--tail", "1"][..], "cannot be used with"),
        (&["--next", "--remove"][..], "cannot be used with"),
        (&["--new"][..], "--follow|--next"),
        (&["--stream", "--count", "1"][..], "--count N ends a follow"),
        (&["-F", "--for", "soon"][..], "not a duration"),
    ] {
        let out = read(&strs(&seg.with(more)));
        out.expect_code(2).stderr_has(&[says]);
    }
    read(&["--list", "--count", "1"])
        .expect_code(2)
        .stderr_has(&["--count N ends a follow"]);
    read(&["--list", "--next"])
        .expect_code(2)
        .stderr_has(&["cannot be used with"]);
    // Nothing was read or removed by any of them.
    assert_eq!(read(&strs(&seg.args)).stdout, b"a\n");
}

/// Keeps adding 2 to the published slot's generation word of the snapshot
/// behind `seg` (a POSIX name) until `stop`: every copy of it is overwritten.
/// Sets `started` once it has begun.
fn scribble_generation(
    seg: &Seg,
    started: &std::sync::atomic::AtomicBool,
    stop: &std::sync::atomic::AtomicBool,
) {
    use std::sync::atomic::Ordering;
    let map = seg.map_writable();
    let seq = map.atomic_u32(24).unwrap().load(Ordering::SeqCst);
    let generation = map.atomic_u32(32 + 24 * (seq as usize & 1) + 16).unwrap();
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..10_000 {
            generation.fetch_add(2, Ordering::SeqCst);
        }
        started.store(true, Ordering::Relaxed);
    }
}

#[test]
fn timeout_and_for_end_a_follow_of_a_snapshot_that_never_holds_still() {
    use std::sync::atomic::{AtomicBool, Ordering};
    for (stop_flag, code) in [("--timeout", 124), ("--for", 0)] {
        let seg = Seg::name();
        // Large enough that no copy finishes between two scribbles.
        write(&strs(&seg.args), &vec![b'x'; 64 << 20]).ok();
        let (started, stop) = (AtomicBool::new(false), AtomicBool::new(false));
        let out = thread::scope(|s| {
            s.spawn(|| scribble_generation(&seg, &started, &stop));
            while !started.load(Ordering::Relaxed) {
                thread::yield_now();
            }
            let out = run_limited(
                &mut read_cmd(&strs(&seg.with(&["-F", stop_flag, "1s"]))),
                b"",
                LIMIT,
            );
            stop.store(true, Ordering::Relaxed);
            out
        });
        // Not a "changed under every read attempt" error after the read's
        // own patience: the follow's end decides.
        out.expect_code(code);
    }
}
