//! What the tools say when a segment is not what a command needs, and what
//! `shm-write --lines` leaves when a segment cannot be a log:
//! hints name the segment as the user would address it again (nothing at
//! all for the per-user default, so no doubled space), and a segment this
//! call created is never removed again, since a racing writer may already
//! have opened it.

mod common;

use common::*;

/// `shm-write`/`shm-read` on the per-user default, which `seg` names.
fn on_default(tool: &str, seg: &Seg, args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = bin(tool);
    cmd.args(args)
        .env("SHM_TOOLS_NAME", seg.name_value().unwrap());
    run(&mut cmd, stdin)
}

#[test]
fn hints_for_the_default_target_have_no_doubled_space() {
    let seg = Seg::name();
    on_default("shm-write", &seg, &[], b"a snapshot\n").ok();
    let out = on_default("shm-write", &seg, &["--lines"], b"one\n");
    out.expect_code(1)
        .stderr_has(&["not a log", "(shm-read --remove > /dev/null)"]);
    assert!(!out.stderr.contains("  "), "doubled space\n{out}");

    // The same refusal with an explicit name keeps naming it.
    let out = write(&strs(&seg.with(&["--lines"])), b"one\n");
    let again = format!(
        "(shm-read --remove -n {} > /dev/null)",
        seg.name_value().unwrap()
    );
    out.expect_code(1).stderr_has(&[&again]);
}

#[test]
fn a_hint_with_the_tool_before_its_flag_has_no_doubled_space() {
    let seg = Seg::name();
    on_default("shm-write", &seg, &["--raw"], b"a C string\n").ok();
    let out = on_default("shm-read", &seg, &["--stats", "--count", "1"], b"");
    out.expect_code(1).stderr_has(&[
        "no counters to watch",
        "see who uses it with: shm-read --info",
    ]);
    assert!(!out.stderr.contains("  "), "doubled space\n{out}");
}

#[test]
fn a_created_segment_too_small_for_a_log_stays() {
    for _ in 0..3 {
        let seg = Seg::name();
        let out = write(&strs(&seg.with(&["--lines", "--size", "16"])), b"one\n");
        out.expect_code(1).stderr_has(&["too small for a log"]);
        assert!(
            seg.exists(),
            "the segment this call created was removed\n{out}"
        );
        assert_eq!(std::fs::metadata(seg.dev_shm_path()).unwrap().len(), 16);
    }
}

#[test]
fn an_existing_segment_too_small_for_a_log_is_to_be_removed_first() {
    let seg = Seg::name();
    let owned = seg.with(&["--lines", "--size", "16"]);
    let args = strs(&owned);
    // This call creates it: a larger --size is all it takes next time.
    let out = write(&args, b"one\n");
    out.expect_code(1)
        .stderr_has(&["too small for a log", "; use a larger --size"]);
    // Now it exists: a larger --size alone would open the same segment.
    let out = write(&args, b"one\n");
    let remove = format!(
        "too small for a log ({} bytes of header); remove it first (shm-read --remove -n {} > \
         /dev/null), then write again with a larger --size",
        shm_tools::layout::log::HEADER_SIZE,
        seg.name_value().unwrap()
    );
    out.expect_code(1).stderr_has(&[&remove]);
    assert!(!out.stderr.contains("; use a larger --size"), "{out}");
}
