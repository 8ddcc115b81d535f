//! The rough edges of issue #18: hints that fit what was asked for, an
//! interactive writer that says what it does, scoped `--list` filters and
//! removal, `--offset`, what `--list` shows, progress that ticks, Python's
//! SharedMemory, and the generated man pages and completions.

mod common;

use common::*;

/// Every way of asking for a log's records that finds no segment names
/// the log writer (which then works) and `--wait`, never a snapshot write
/// that `--lines` would refuse.
#[test]
fn a_follower_of_a_missing_log_is_told_to_start_the_log_writer() {
    for seg in [Seg::name(), Seg::key()] {
        let flag = seg.args.join(" ");
        for ask in [
            &["-F"][..],
            &["--follow", "--new"],
            &["--tail", "3"],
            &["-F", "--lossless"],
        ] {
            let out = read(&strs(&seg.with(ask)));
            out.expect_code(3)
                .stderr_has(&[&format!("shm-write --lines {flag}"), "--wait"]);
            assert!(!out.stderr.contains("echo hello"), "{out}");
        }
        // The hint, followed, works.
        write(&strs(&seg.with(&["--lines"])), b"one\ntwo\n").ok();
        let tail = read(&strs(&seg.with(&["--tail", "1"])));
        assert_eq!(tail.ok().stdout, b"two\n");
    }
    // A plain read still suggests a snapshot write.
    let seg = Seg::name();
    read(&strs(&seg.args))
        .expect_code(3)
        .stderr_has(&["echo hello | shm-write"]);
}

/// `--stream` on a log or a snapshot suggests reading it as what it is,
/// not starting a stream writer there (which would be refused).
#[test]
fn stream_on_a_log_or_snapshot_suggests_what_works() {
    let log = Seg::name();
    write(&strs(&log.with(&["--lines"])), b"line\n").ok();
    let snapshot = Seg::key();
    write(&strs(&snapshot.args), b"state").ok();
    for (seg, what, content) in [
        (&log, "is a log", &b"line\n"[..]),
        (&snapshot, "is a snapshot", b"state"),
    ] {
        let flag = seg.args.join(" ");
        let out = read(&strs(&seg.with(&["--stream"])));
        out.expect_code(1)
            .stderr_has(&[what, &format!("read it with shm-read {flag}")]);
        assert!(!out.stderr.contains("shm-write --stream"), "{out}");
        // The stream writer the old hint named is refused there.
        write(&strs(&seg.with(&["--stream"])), b"x").expect_code(1);
        assert_eq!(read(&strs(&seg.args)).ok().stdout, content);
    }
}
