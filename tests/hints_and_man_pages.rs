//! Hints that fit what was asked for (a missing log's follower is told to
//! start the log writer, a stream read of a log or snapshot what works),
//! and the generated man pages and completions.
mod common;

use std::process::Command;

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

/// The man pages' synopses show each option's value, and the completion
/// files carry the names their shells look for, so they are copied as
/// generated: bash loads `completions/shm-write` for `shm-write`.
#[test]
fn man_synopses_have_values_and_completions_their_names() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("assets2-{}", std::process::id()));
    shm_tools::cli::assets::generate(&dir).expect("generate");
    let man = std::fs::read_to_string(dir.join("shm-read.1")).unwrap();
    let synopsis = man
        .split(".SH SYNOPSIS\n")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap()
        .to_owned();
    for part in [
        "\\fB\\-k\\fR|\\fB\\-\\-key\\fR \\fIKEY\\fR",
        "\\fB\\-t\\fR|\\fB\\-\\-timeout\\fR \\fIDURATION\\fR",
        "\\fB\\-\\-progress\\fR[=\\fIWHEN\\fR]",
        "[\\fB\\-\\-stale\\fR]",
    ] {
        assert!(synopsis.contains(part), "{part} not in {synopsis}");
    }
    let write_man = std::fs::read_to_string(dir.join("shm-write.1")).unwrap();
    assert!(write_man.contains("\\fB\\-\\-size\\fR \\fISIZE\\fR"));
    for tool in ["shm-write", "shm-read"] {
        let script = format!(". {}/bash/{tool} && complete -p {tool}", dir.display());
        let out = run(Command::new("bash").args(["-c", &script]), b"");
        assert!(out.ok().stdout_str().contains(tool), "{out}");
        assert!(dir.join(format!("zsh/_{tool}")).is_file());
        assert!(dir.join(format!("fish/{tool}.fish")).is_file());
    }
    std::fs::remove_dir_all(&dir).unwrap();
    let help = read(&["--help"]);
    assert!(
        help.ok()
            .stdout_str()
            .contains("with --list --remove: remove them")
    );
}
