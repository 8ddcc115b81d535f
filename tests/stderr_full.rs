//! A notice that cannot be written never decides the outcome: with stderr
//! on /dev/full (every write fails with ENOSPC), a stream writer or reader
//! that takes over a dead peer's place, and a writer reading a terminal,
//! do their work and exit 0 instead of panicking (exit 101) on the notice
//! that says so.

mod common;

use std::fs::File;
use std::process::{Command, Stdio};
use std::thread;

use common::*;

fn dev_full() -> File {
    File::options()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full")
}

/// Runs `cmd` fed `stdin`, with stderr on /dev/full.
fn with_stderr_full(cmd: &mut Command, stdin: &[u8]) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(dev_full());
    let line = format!("{} 2>/dev/full", describe(cmd));
    let child = cmd.spawn().expect("spawn");
    finish(child, line, stdin, BOUND)
}

#[test]
fn a_writer_taking_over_a_dead_writers_ring_with_stderr_full_streams() {
    let seg = Seg::name();
    ring_of_a_killed_writer(&seg, "64K", b"OLD");
    let taker = with_stderr_full(&mut write_cmd(&strs(&seg.with(&["--stream"]))), b"NEW\n");
    assert_eq!(taker.code(), Some(0), "{taker}");
    let out = read(&strs(&seg.with(&["--stream"])));
    assert_eq!(out.ok().stdout, b"NEW\n", "{out}");
    assert!(!seg.exists());
}

#[test]
fn a_reader_taking_over_a_dead_readers_place_with_stderr_full_drains_the_stream() {
    let seg = Seg::name();
    let mut writer = ring_whose_reader_died_before_reading(&seg);
    let data = random_bytes(100_000, 16);
    let mut cmd = read_cmd(&strs(&seg.with(&["--stream"])));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(dev_full());
    let line = format!("{} 2>/dev/full", describe(&cmd));
    let reader = cmd.spawn().expect("spawn the reader");
    let reading = thread::spawn(move || finish(reader, line, b"", BOUND));
    writer.send(&data);
    writer.close_stdin();
    let wrote = writer.finish(BOUND);
    let out = reading.join().expect("the reader's thread");
    assert_eq!(out.code(), Some(0), "{out}");
    wrote.ok();
    assert!(
        out.stdout == data,
        "{} of {} bytes",
        out.stdout.len(),
        data.len()
    );
    assert!(!seg.exists());
}

/// A writer whose stdin is a terminal (a pty from python3) says what it
/// reads on stderr; with that on /dev/full it writes the segment anyway.
#[test]
fn an_interactive_writer_with_stderr_full_writes_what_was_typed() {
    const TYPIST: &str = r#"
import os, pty, subprocess, sys, time
master, slave = pty.openpty()
p = subprocess.Popen(sys.argv[1:], stdin=slave, stdout=subprocess.DEVNULL,
                     stderr=open("/dev/full", "w"))
os.close(slave)
time.sleep(0.2)
os.write(master, b"typed\n\x04")
sys.exit(p.wait(timeout=20))
"#;
    let seg = Seg::name();
    let args = [vec![tool_path("shm-write")], strs(&seg.args)].concat();
    let Some(out) = python3(TYPIST, &args) else {
        eprintln!("skipped: no python3 for a pty");
        return;
    };
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read(&strs(&seg.args)).ok().stdout, b"typed\n");
}

/// A log writer that skips a record too large for the log says so on
/// stderr; with stderr on /dev/full it still skips it, appends the rest and
/// exits 1 for the skipped record, without a panic (exit 101).
#[test]
fn a_skipped_record_with_stderr_full_is_still_exit_1_and_the_rest_lands() {
    let seg = Seg::name();
    write(&strs(&seg.with(&["--lines", "-s", "8K"])), b"").ok();
    let mut input = vec![b'x'; 20_000];
    input.extend_from_slice(b"\nafter\n");
    let out = with_stderr_full(&mut write_cmd(&strs(&seg.with(&["--lines"]))), &input);
    out.expect_code(1);
    assert_eq!(read(&strs(&seg.args)).ok().stdout, b"after\n");
}
