//! Logs that others damaged: hostile headers and random images give a
//! clear error (never a hang, panic or torn record), killed writers leave
//! a readable log, and positions near 2^64 are refused, not wrapped.
mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::thread;
use std::time::Duration;

use common::log_tests::*;
use common::*;

/// Scribbles `bytes` at `offset` of a log made with three records.
fn scribbled(offset: u64, bytes: &[u8]) -> (Seg, Output, Output) {
    let seg = Seg::name();
    write(
        &strs(&seg.with(&["--lines", "-s", "8K"])),
        b"one\ntwo\nthree\n",
    )
    .ok();
    let file = OpenOptions::new().write(true).open(path(&seg)).unwrap();
    file.write_all_at(bytes, offset).unwrap();
    let plain = run_limited(
        &mut read_cmd(&strs(&seg.args)),
        b"",
        Duration::from_secs(20),
    );
    let follow = run_limited(
        &mut read_cmd(&strs(&seg.with(&["--follow"]))),
        b"",
        Duration::from_secs(20),
    );
    (seg, plain, follow)
}

#[test]
fn hostile_log_headers_give_a_clear_error() {
    let data = shm_tools::layout::log::HEADER_SIZE as u64;
    let cases: Vec<(&str, u64, Vec<u8>)> = vec![
        (
            "head past the capacity",
            64,
            (1u64 << 40).to_ne_bytes().to_vec(),
        ),
        ("head not aligned", 64, 13u64.to_ne_bytes().to_vec()),
        ("tail past the head", 128, 4096u64.to_ne_bytes().to_vec()),
        (
            "capacity larger than the segment",
            16,
            (1u64 << 30).to_ne_bytes().to_vec(),
        ),
        ("capacity not aligned", 16, 1001u64.to_ne_bytes().to_vec()),
        ("damaged record length", data, 7u32.to_ne_bytes().to_vec()),
        (
            "record longer than the log",
            data,
            [0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0xf0].to_vec(),
        ),
        (
            "wrong sequence number",
            // The second record ("two\n": 24-byte header, 8 bytes) starts
            // 32 bytes in; its seq is 8 bytes into it.
            data + 32 + 8,
            99u64.to_ne_bytes().to_vec(),
        ),
        ("wrong version", 8, 77u32.to_ne_bytes().to_vec()),
        (
            "head and tail near 2^64",
            64,
            [u64::MAX - 7; 9]
                .iter()
                .flat_map(|w| w.to_ne_bytes())
                .collect(),
        ),
    ];
    for (what, offset, bytes) in cases {
        let (_seg, plain, follow) = scribbled(offset, &bytes);
        for out in [&plain, &follow] {
            assert_eq!(out.code(), Some(1), "{what}: {out}");
            out.stderr_has(&["log"]);
            assert!(!out.stderr.contains("panicked"), "{what}: {out}");
        }
    }
}

#[test]
fn random_log_images_never_panic() {
    // A valid image, then mutations of every header byte and some data.
    let seg = Seg::name();
    write(
        &strs(&seg.with(&["--lines", "-s", "4K"])),
        &numbered("r", 300),
    )
    .ok();
    let image = std::fs::read(path(&seg)).unwrap();
    shm_tools::layout::check_image(&image).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..3000 {
        let mut copy = image.clone();
        for _ in 0..=(round % 4) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let span = if round % 2 == 0 { 256 } else { copy.len() };
            let at = usize::try_from(x % span as u64).unwrap();
            copy[at] = (x >> 32).to_le_bytes()[0];
        }
        let _ = shm_tools::layout::check_image(&copy);
    }
}

#[test]
fn killed_writers_leave_a_readable_log() {
    let seg = Seg::name();
    empty_log(&seg, "16K");
    for round in 0..12u64 {
        let mut cmd = write_cmd(&strs(&seg.with(&["--lines"])));
        cmd.env("SHM_TOOLS_TEST_SLOW_APPEND_US", "300");
        let mut writer = Live::start(&mut cmd);
        writer.send(&numbered(&format!("round {round} line "), 2_000));
        thread::sleep(Duration::from_millis(20 + round * 7));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(writer.pid().cast_signed()),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        writer.kill();
        let out = read(&strs(&seg.args));
        out.ok();
        for line in out.stdout_str().lines() {
            assert!(
                line.starts_with("round ") && line.contains(" line "),
                "torn {line:?}"
            );
        }
    }
    // The next writer takes over the lock and numbers on without a gap.
    write(&strs(&seg.with(&["--lines"])), b"after the crashes\n").ok();
    let out = read(&strs(&seg.with(&["--tail", "1"])));
    out.ok();
    assert_eq!(out.stdout, b"after the crashes\n");
    let info = info(&seg);
    assert_eq!(info["lock"], "free", "{info}");
    assert_eq!(info["lock_holder_pid"], serde_json::Value::Null, "{info}");
}

/// Lines of `len` bytes (newline included), `{prefix}{n} ` padded with x.
fn padded(prefix: &str, count: usize, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for n in 0..count {
        let mut line = format!("{prefix}{n} ").into_bytes();
        line.resize(len - 1, b'x');
        line.push(b'\n');
        out.extend_from_slice(&line);
    }
    out
}

/// The log's tail position, read from its file.
fn tail_of(seg: &Seg) -> u64 {
    let file = std::fs::File::open(path(seg)).unwrap();
    let mut word = [0u8; 8];
    file.read_exact_at(&mut word, 128).unwrap();
    u64::from_ne_bytes(word)
}

#[test]
fn a_writer_killed_after_emptying_the_log_leaves_the_numbering_intact() {
    // Each record takes more than half the log, so every append first moves
    // the tail up to the head; the test hook sleeps right after that. A
    // writer killed there leaves no record to recount the numbers from, so
    // the counter in the header must already be current.
    let seg = Seg::name();
    write(&strs(&seg.with(&["--lines", "-s", "4K"])), b"first\n").ok();
    let record = 1520; // 1500 bytes of payload, 16 of header
    for round in 0..3u64 {
        let start = tail_of(&seg);
        let mut cmd = write_cmd(&strs(&seg.with(&["--lines"])));
        cmd.env("SHM_TOOLS_TEST_SLOW_APPEND_US", "3000");
        let mut writer = Live::start(&mut cmd);
        writer.send(&padded(&format!("round {round} "), 20, 1500));
        // Three appends have moved the tail: two records are complete.
        until("three appends", LIMIT, || {
            tail_of(&seg) >= start + 3 * record
        });
        writer.kill();
    }
    write(&strs(&seg.with(&["--lines"])), b"after the crashes\n").ok();
    let info = info(&seg);
    let appended = info["records_appended"].as_u64().unwrap();
    // "first", two complete records a round, "after the crashes".
    assert!(appended >= 8, "numbers were reused: {info}");
    assert_eq!(info["oldest_record"], appended - 1, "{info}");
}

#[test]
fn positions_near_two_to_the_64_are_refused_not_wrapped() {
    // head (64) = tail (128) = 2^64 - 8: appending would wrap around zero.
    let seg = Seg::name();
    write(&strs(&seg.with(&["--lines", "-s", "8K"])), b"one\n").ok();
    let file = OpenOptions::new().write(true).open(path(&seg)).unwrap();
    let near = (u64::MAX - 7).to_ne_bytes();
    file.write_all_at(&near, 64).unwrap();
    file.write_all_at(&near, 128).unwrap();
    write(&strs(&seg.with(&["--lines"])), b"x\ny\n")
        .expect_code(1)
        .stderr_has(&["corrupt log header"]);
    // A record straddling 2^64: head just past it, tail just before.
    file.write_all_at(&(u64::MAX - 15).to_ne_bytes(), 128)
        .unwrap();
    for extra in [&[][..], &["--tail", "1"][..], &["--follow"][..]] {
        let out = run_limited(
            &mut read_cmd(&strs(&seg.with(extra))),
            b"",
            Duration::from_secs(5),
        );
        out.expect_code(1).stderr_has(&["corrupt log header"]);
        assert!(out.stdout.is_empty(), "{out}");
    }
}
