//! Content larger than the memory this process may allocate (`prlimit
//! --as`): every command that copies segment content out says so in one
//! line and exits 1, instead of aborting (SIGABRT, exit 134), and the
//! content stays as it was.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// Bytes of content: large against the limit below.
const BIG: usize = 40 << 20;
/// The address-space limit: room for the program and a mapping of the
/// segment (48 MiB), not for a copy of the content besides.
const LIMIT: u64 = 80_000_000;

/// `prlimit --as=LIMIT BIN ARGS` fed `stdin`.
fn limited(bin: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--as={LIMIT}"))
        .arg("--")
        .arg(bin)
        .args(args);
    run(&mut cmd, stdin)
}

fn shm_read(args: &[&str]) -> Output {
    limited(env!("CARGO_BIN_EXE_shm-read"), args, b"")
}

/// Exit 1 with one line on stderr that names `seg` and the memory limit.
fn refused(out: &Output, seg: &Seg) {
    out.expect_code(1);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line\n{out}");
    assert!(lines[0].contains("ulimit -v"), "{out}");
    assert!(
        lines[0].contains(&seg.args[1]),
        "does not name the segment\n{out}"
    );
}

fn big_c_string() -> Vec<u8> {
    vec![b'a'; BIG]
}

#[test]
fn raw_and_all_reads_of_a_large_segment_say_so() {
    let seg = Seg::key();
    write(&strs(&seg.with(&["--raw", "-s", "48M"])), &big_c_string()).ok();
    refused(&shm_read(&strs(&seg.with(&["--raw"]))), &seg);
    refused(&shm_read(&strs(&seg.with(&["--all"]))), &seg);
    refused(
        &shm_read(&strs(&seg.with(&["--raw", "--offset", "1"]))),
        &seg,
    );
    assert_eq!(
        read(&strs(&seg.with(&["--raw"]))).ok().stdout,
        big_c_string()
    );
}

#[test]
fn raw_append_with_replace_of_a_large_segment_says_so() {
    let seg = Seg::key();
    write(&strs(&seg.with(&["--raw", "-s", "48M"])), &big_c_string()).ok();
    let more = vec![b'b'; 9 << 20];
    let out = limited(
        env!("CARGO_BIN_EXE_shm-write"),
        &strs(&seg.with(&["--raw", "--append", "--replace"])),
        &more,
    );
    refused(&out, &seg);
    assert_eq!(
        read(&strs(&seg.with(&["--raw"]))).ok().stdout,
        big_c_string()
    );
}

#[test]
fn reading_and_following_a_large_log_record_says_so() {
    let seg = Seg::name();
    let mut line = big_c_string();
    line.push(b'\n');
    write(&strs(&seg.with(&["--lines", "-s", "48M"])), &line).ok();
    refused(&shm_read(&strs(&seg.args)), &seg);
    refused(
        &shm_read(&strs(&seg.with(&["--follow", "--timeout", "5"]))),
        &seg,
    );
    assert_eq!(read(&strs(&seg.args)).ok().stdout, line);
}

#[test]
fn writing_a_record_larger_than_memory_says_so() {
    let seg = Seg::name();
    write(&strs(&seg.with(&["--lines", "-s", "48M"])), b"first\n").ok();
    let mut line = big_c_string();
    line.push(b'\n');
    let out = limited(
        env!("CARGO_BIN_EXE_shm-write"),
        &strs(&seg.with(&["--lines"])),
        &line,
    );
    refused(&out, &seg);
    assert_eq!(read(&strs(&seg.args)).ok().stdout, b"first\n");
}

#[test]
fn a_snapshot_read_of_a_full_stream_ring_says_so() {
    let seg = Seg::name();
    let mut writer = Live::start(&mut write_cmd(&strs(&seg.with(&["--stream", "-s", "48M"]))));
    writer.send(&big_c_string());
    // The ring holds it all once shm-read --info counts it.
    let started = std::time::Instant::now();
    while info(&seg)["bytes_in_flight"].as_u64().unwrap_or(0) < BIG as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            info(&seg)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    refused(&shm_read(&strs(&seg.args)), &seg);
    writer.kill();
}
