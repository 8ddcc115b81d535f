//! What another process, or the shell, can do to us from outside: shrink a
//! POSIX object we have mapped, close our standard streams, fill our
//! stdout's disk, or hand us absurd numbers. None of it may kill us
//! (SIGBUS is exit 135), panic (101), or end in exit 0 with the wrong result.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const LIMIT: Duration = Duration::from_secs(30);

fn dev_shm(seg: &Seg) -> PathBuf {
    PathBuf::from("/dev/shm").join(seg.name_value().expect("a POSIX test segment"))
}

/// `ftruncate` by another process, as any user allowed to open it can.
fn shrink(seg: &Seg, size: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(dev_shm(seg))
        .expect("open the object")
        .set_len(size)
        .expect("ftruncate");
}

/// Exit 1 with the one-line truncation message naming `seg`; never a
/// signal (SIGBUS: 135) and never success.
fn expect_shrank(out: &Output, seg: &Seg) {
    assert_eq!(out.status.signal(), None, "killed by a signal\n{out}");
    out.expect_code(1);
    let name = seg.name_value().unwrap();
    out.stderr_has(&[
        &format!("POSIX name /{name} shrank to"),
        "another process truncated it",
        &format!("remove it (shm-read --remove -n {name} > /dev/null) and write it again"),
    ]);
    assert_eq!(out.stderr.lines().count(), 1, "one line\n{out}");
}

/// `shm-read ARGS > /dev/full`: every write to stdout fails (ENOSPC).
fn read_into_dev_full(args: &[&str]) -> Output {
    run(
        sh(
            r#"exec "$@" > /dev/full"#,
            &[env!("CARGO_BIN_EXE_shm-read")],
        )
        .args(args),
        b"",
    )
}

fn sh(script: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).arg("sh").args(args);
    cmd
}

// ---- 4a: a POSIX object shrunk while it is mapped ----

#[test]
fn follow_reader_survives_any_shrink() {
    for size in [0, 100, 4096, 65536] {
        let seg = Seg::name();
        let payload = random_bytes(1 << 20, size);
        write(&strs(&seg.with(&["-s", "4M"])), &payload).ok();
        let follow = Live::start(&mut read_cmd(&strs(&seg.with(&["-F"]))));
        follow.wait_stdout(LIMIT, "the first version", |out| out.len() == payload.len());
        shrink(&seg, size);
        let out = follow.finish(LIMIT);
        expect_shrank(&out, &seg);
    }
}

#[test]
fn line_writer_survives_a_shrink() {
    for size in [0, 100, 8192] {
        let seg = Seg::name();
        let mut writer = Live::start(&mut write_cmd(&strs(&seg.with(&["-l", "-s", "1M"]))));
        writer.send(b"first\n");
        let started = Instant::now();
        while read(&strs(&seg.args)).stdout != b"first\n" {
            assert!(started.elapsed() < LIMIT, "the first line never arrived");
            thread::sleep(Duration::from_millis(5));
        }
        shrink(&seg, size);
        // A line as long as the slots, so it reaches past any new end.
        writer.send(&vec![b'x'; 400 << 10]);
        writer.send(b"\n");
        let out = writer.finish(LIMIT);
        expect_shrank(&out, &seg);
    }
}

#[test]
fn snapshot_reader_racing_a_shrink_never_dies_nor_lies() {
    let payload = random_bytes(32 << 20, 7);
    for round in 0..10 {
        let seg = Seg::name();
        write(&strs(&seg.args), &payload).ok();
        let reader = Live::start(&mut read_cmd(&strs(&seg.args)));
        thread::sleep(Duration::from_micros(500 * round));
        shrink(&seg, 4096);
        let out = reader.finish(LIMIT);
        assert_eq!(out.status.signal(), None, "killed by a signal\n{out}");
        if out.code() == Some(0) {
            // Copied out before the shrink: then it is the content.
            assert!(out.stdout == payload, "exit 0 with wrong content");
        } else {
            out.expect_code(1);
            out.stderr_has(&[seg.name_value().unwrap()]);
        }
    }
}

#[test]
fn stream_writer_and_reader_survive_a_shrink() {
    for size in [0, 300] {
        let seg = Seg::name();
        // The writer blocks on the full ring until the reader comes.
        let mut writer = Live::start(&mut write_cmd(&strs(&seg.with(&["--stream", "-s", "64K"]))));
        let feeder = {
            let mut stdin = writer.child.stdin.take().unwrap();
            thread::spawn(move || {
                use std::io::Write;
                let chunk = vec![b's'; 1 << 20];
                for _ in 0..64 {
                    if stdin.write_all(&chunk).is_err() {
                        break;
                    }
                    thread::sleep(Duration::from_millis(20));
                }
            })
        };
        let reader = Live::start(&mut read_cmd(&strs(&seg.with(&["--stream", "--wait"]))));
        reader.wait_stdout(LIMIT, "some of the stream", |out| out.len() > 1 << 20);
        shrink(&seg, size);
        let read = reader.finish(LIMIT);
        let written = writer.finish(LIMIT);
        let _ = feeder.join();
        expect_shrank(&read, &seg);
        expect_shrank(&written, &seg);
    }
}

// ---- 6: closed or failing standard streams ----

#[test]
fn closed_stdin_is_refused_and_changes_nothing() {
    let seg = Seg::name();
    write(&strs(&seg.args), b"keep me").ok();
    for extra in [&[][..], &["--append"], &["--lines"], &["--raw"]] {
        let mut args = strs(&seg.args);
        args.extend_from_slice(extra);
        let out = run(
            sh(r#"exec "$@" <&-"#, &[env!("CARGO_BIN_EXE_shm-write")]).args(&args),
            b"",
        );
        out.expect_code(1)
            .stderr_has(&["stdin is closed", "| shm-write"]);
        assert_eq!(read(&strs(&seg.args)).ok().stdout, b"keep me");
    }
    // Nothing is created either, not even a stream.
    let fresh = Seg::name();
    for extra in [&[][..], &["--stream"]] {
        let mut args = strs(&fresh.args);
        args.extend_from_slice(extra);
        let out = run(
            sh(r#"exec "$@" <&-"#, &[env!("CARGO_BIN_EXE_shm-write")]).args(&args),
            b"",
        );
        out.expect_code(1).stderr_has(&["stdin is closed"]);
        assert!(!fresh.exists(), "created a segment");
    }
    // An empty stdin that is open still means empty content.
    let out = run(
        sh(
            r#"exec "$@" < /dev/null"#,
            &[env!("CARGO_BIN_EXE_shm-write")],
        )
        .args(strs(&seg.args)),
        b"",
    );
    out.ok();
    assert_eq!(read(&strs(&seg.args)).ok().stdout, b"");
}

#[test]
fn closed_stdout_is_refused_and_changes_nothing() {
    let seg = Seg::name();
    write(&strs(&seg.args), b"still here").ok();
    for extra in [
        &[][..],
        &["--remove"],
        &["--hex"],
        &["--info", "--remove"],
        &["--all"],
    ] {
        let mut args = strs(&seg.args);
        args.extend_from_slice(extra);
        let out = run(
            sh(r#"exec "$@" >&-"#, &[env!("CARGO_BIN_EXE_shm-read")]).args(&args),
            b"",
        );
        out.expect_code(1).stderr_has(&["stdout is closed"]);
        assert_eq!(read(&strs(&seg.args)).ok().stdout, b"still here");
    }
}

#[test]
fn stream_reader_with_closed_stdout_does_not_claim_the_ring() {
    let seg = Seg::name();
    let mut writer = Live::start(&mut write_cmd(&strs(&seg.with(&["--stream", "-s", "1M"]))));
    let feeder = {
        let mut stdin = writer.child.stdin.take().unwrap();
        thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&vec![b'z'; 20 << 20]);
        })
    };
    let started = Instant::now();
    while !(seg.exists() && info(&seg)["bytes_in_flight"].as_u64() > Some(0)) {
        assert!(started.elapsed() < LIMIT, "the stream never started");
        thread::sleep(Duration::from_millis(5));
    }
    let mut args = strs(&seg.args);
    args.push("--stream");
    let out = run(
        sh(r#"exec "$@" >&-"#, &[env!("CARGO_BIN_EXE_shm-read")]).args(&args),
        b"",
    );
    out.expect_code(1).stderr_has(&["stdout is closed"]);
    let state = info(&seg);
    assert_eq!(state["bytes_read"], 0, "the ring was drained: {state}");
    assert!(
        state["reader_pid"].is_null() || state["reader_pid"] == 0,
        "claimed: {state}"
    );
    // The writer is still waiting for a reader: it has not seen success.
    assert!(
        matches!(writer.child.try_wait(), Ok(None)),
        "the writer ended"
    );
    writer.kill();
    let _ = feeder.join();
}

#[test]
fn a_full_stdout_names_the_segment() {
    let seg = Seg::name();
    write(&strs(&seg.args), &random_bytes(256 << 10, 3)).ok();
    for extra in [&[][..], &["--hex"], &["--info"]] {
        let mut args = strs(&seg.args);
        args.extend_from_slice(extra);
        let out = read_into_dev_full(&args);
        out.expect_code(1).stderr_has(&[
            "to stdout",
            &format!("POSIX name /{}", seg.name_value().unwrap()),
            "No space left on device",
        ]);
    }
    // A stream too; its writer hears that the reader stopped.
    let stream = Seg::name();
    let writer = Live::start(&mut write_cmd(&strs(&stream.with(&["--stream"]))));
    let mut args = strs(&stream.args);
    args.extend(["--stream", "--wait"]);
    let mut writer = writer;
    writer.send(&vec![b'q'; 1 << 20]);
    let out = read_into_dev_full(&args);
    out.expect_code(1).stderr_has(&[
        &format!(
            "cannot write the content of POSIX name /{} to stdout",
            stream.name_value().unwrap()
        ),
        "No space left on device",
    ]);
    writer.finish(LIMIT).expect_code(1);
}

// ---- 7: numbers and early exits ----

#[test]
fn huge_timeouts_do_not_panic() {
    let seg = Seg::name();
    write(&strs(&seg.args), b"here").ok();
    for timeout in [
        "10000000000000000000",
        "18446744073709551615s",
        "99999999999h",
    ] {
        let out = read(&strs(&seg.with(&["--timeout", timeout])));
        assert_ne!(out.code(), Some(101), "panicked\n{out}");
        assert!(matches!(out.code(), Some(0 | 2)), "{out}");
        if out.code() == Some(0) {
            assert_eq!(out.stdout, b"here");
        }
    }
}

#[test]
fn remove_happens_even_when_stdout_closes_early() {
    for len in [10, 4 << 20] {
        let seg = Seg::name();
        write(&strs(&seg.args), &vec![b'r'; len]).ok();
        let mut cmd = read_cmd(&strs(&seg.with(&["--remove"])));
        let out = read_then_close(spawn(&mut cmd), &describe(&cmd), 1);
        out.ok();
        assert!(
            !seg.exists(),
            "--remove skipped with {len} bytes of content"
        );
    }
}

#[test]
fn byte_limit_applies_to_every_layout() {
    let seg = Seg::name();
    write(&strs(&seg.args), b"hello world").ok();
    assert_eq!(read(&strs(&seg.with(&["-c", "5"]))).ok().stdout, b"hello");
    assert_eq!(read(&strs(&seg.with(&["-c", "0"]))).ok().stdout, b"");
    assert_eq!(
        read(&strs(&seg.with(&["-c", "100"]))).ok().stdout,
        b"hello world"
    );
    assert_eq!(
        read(&strs(&seg.with(&["-c", "8", "--all"]))).ok().stdout,
        b"SHMTFRAM"
    );
    let raw = Seg::name();
    write(&strs(&raw.with(&["--raw"])), b"abc").ok();
    assert_eq!(read(&strs(&raw.with(&["-c", "2"]))).ok().stdout, b"ab");
    assert_eq!(read(&strs(&raw.with(&["-c", "9"]))).ok().stdout, b"abc");
    let follow = Live::start(&mut read_cmd(&strs(&seg.with(&["-F", "-c", "3"]))));
    follow.wait_stdout(LIMIT, "the first version", |out| out == b"hel");
    write(&strs(&seg.args), b"second").ok();
    follow.wait_stdout(LIMIT, "the second version", |out| out == b"helsec");
}

#[test]
fn a_short_object_with_our_magic_is_a_named_corrupt_header() {
    for magic in [&b"SHMTFRAM"[..], b"SHMTRING"] {
        for size in [8, 12, 16, 23] {
            let seg = Seg::name();
            let mut image = magic.to_vec();
            image.resize(size, 0);
            std::fs::write(dev_shm(&seg), &image).expect("make the object");
            let out = read(&strs(&seg.args));
            out.expect_code(1).stderr_has(&[
                &format!("POSIX name /{}", seg.name_value().unwrap()),
                "corrupt shm-tools header",
            ]);
        }
    }
}

/// `shm-read --remove` is how the tools' messages say to get rid of a
/// broken segment, so it removes one whose header turns out corrupt too
/// (exiting 1 for the read), instead of leaving it behind.
#[test]
fn remove_gets_rid_of_a_corrupt_segment() {
    let seg = Seg::name();
    let path = std::path::PathBuf::from("/dev/shm").join(seg.name_value().unwrap());
    let mut image = b"SHMTFRAM".to_vec();
    image.extend_from_slice(&7u32.to_ne_bytes());
    image.resize(4096, 0xee);
    std::fs::write(&path, &image).unwrap();
    let out = read(&strs(&seg.with(&["--remove"])));
    out.expect_code(1);
    assert!(!seg.exists(), "the corrupt segment was left behind\n{out}");
}
