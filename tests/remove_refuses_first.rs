//! A usage error changes nothing: `shm-read --remove` with an option that
//! does not fit the segment's kind (`--offset` on a log's records, `--tail`
//! on a snapshot) is refused with exit 2 and leaves the segment, content
//! and all. Options that fit still read and remove.

mod common;

use common::*;

#[test]
fn remove_with_an_option_that_does_not_fit_the_segment_removes_nothing() {
    let log = Seg::name();
    write(&strs(&log.with(&["--lines"])), b"a\nb\n").ok();
    let snapshot = Seg::name();
    write(&strs(&snapshot.args), b"hello world").ok();
    for (seg, extra, says) in [
        (&log, &["--offset", "3"][..], "--offset counts bytes"),
        (
            &snapshot,
            &["--tail", "1"][..],
            "--tail and --lossless read a log",
        ),
    ] {
        let mut args = vec!["--remove"];
        args.extend_from_slice(extra);
        let out = read(&strs(&seg.with(&args)));
        out.expect_code(2).stderr_has(&[says]);
        assert!(out.stdout.is_empty(), "{out}");
        assert!(seg.exists(), "a refused --remove removed it\n{out}");
    }
    assert_eq!(read(&strs(&log.args)).ok().stdout, b"a\nb\n");
    assert_eq!(read(&strs(&snapshot.args)).ok().stdout, b"hello world");
}

#[test]
fn remove_with_options_that_fit_still_reads_and_removes() {
    let log = Seg::name();
    write(&strs(&log.with(&["--lines"])), b"a\nb\n").ok();
    let out = read(&strs(&log.with(&["--remove", "--tail", "1"])));
    assert_eq!(out.ok().stdout, b"b\n");
    assert!(!log.exists(), "{out}");
    let snapshot = Seg::name();
    write(&strs(&snapshot.args), b"hello world").ok();
    let out = read(&strs(&snapshot.with(&["--remove", "--offset", "6"])));
    assert_eq!(out.ok().stdout, b"world");
    assert!(!snapshot.exists(), "{out}");
}
