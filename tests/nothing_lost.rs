//! Nothing another process does may fool us into losing or changing data:
//! a forged end of stream, a corrupt log header, a failed write into a
//! foreign segment; and --info/--list read headers only.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::thread;
use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(30);

/// The path of a POSIX test segment in /dev/shm.
fn path(seg: &Seg) -> String {
    format!("/dev/shm/{}", seg.name_value().unwrap())
}

fn read_u64(seg: &Seg, offset: u64) -> u64 {
    let file = std::fs::File::open(path(seg)).unwrap();
    let mut word = [0u8; 8];
    file.read_at(&mut word, offset).unwrap();
    u64::from_ne_bytes(word)
}

fn write_at(seg: &Seg, offset: u64, bytes: &[u8]) {
    let file = OpenOptions::new().write(true).open(path(seg)).unwrap();
    file.write_at(bytes, offset).unwrap();
}

#[test]
fn a_forged_end_of_stream_is_not_believed_while_the_writer_lives() {
    let seg = Seg::name();
    let mut writer = Live::start(&mut write_cmd(&strs(&seg.with(&["--stream", "-s", "64K"]))));
    writer.send(b"first part\n");
    let mut reader = Live::start(&mut read_cmd(&strs(&seg.with(&["--stream", "--wait"]))));
    reader.wait_stdout(LIMIT, "the first part", |out| out == b"first part\n");
    // The ring's flags word (offset 32): WRITER_DONE, set by someone else
    // while the ring is empty and the writer still has more to send.
    let flags = u32::try_from(read_u64(&seg, 32) & 0xffff_ffff).unwrap();
    write_at(&seg, 32, &(flags | 1).to_ne_bytes());
    thread::sleep(Duration::from_millis(500));
    assert!(
        matches!(reader.child.try_wait(), Ok(None)),
        "the reader believed a forged end: {:?}",
        String::from_utf8_lossy(&reader.stdout_now())
    );
    writer.send(b"second part\n");
    writer.finish(LIMIT).ok();
    let out = reader.finish(LIMIT);
    out.ok();
    assert_eq!(out.stdout, b"first part\nsecond part\n");
}

/// `prlimit --as=BYTES shm-read ARGS`.
fn read_limited(bytes: u64, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg(format!("--as={bytes}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_shm-read"))
        .args(args);
    run(&mut cmd, b"")
}

#[test]
fn info_and_list_of_a_log_read_its_headers_only() {
    const RECORD: usize = 60 << 20;
    let seg = Seg::name();
    let mut line = vec![b'x'; RECORD];
    line.push(b'\n');
    write(&strs(&seg.with(&["--lines", "-s", "64M"])), &line).ok();
    drop(line);
    // The 64 MiB mapping, the program, and room to spare, but not for a
    // copy of the record.
    let limit = 100_000_000;
    let out = read_limited(limit, &strs(&seg.with(&["--info", "--json"])));
    out.ok();
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["records_held"], 1, "{info}");
    assert_eq!(info["bytes_held"], RECORD + 1, "{info}");
    let out = read_limited(limit, &["--list"]);
    out.ok();
    assert!(out.stdout_str().contains("log, 1 records"), "{out}");
}

#[test]
fn a_failed_write_leaves_a_zero_filled_foreign_segment_as_it_was() {
    use shm_tools::sys::{Mapping, shm_stat, shmget};
    for (size, input) in [(130, 200), (8192, 9000)] {
        let seg = Seg::key();
        let key = seg.key_value().unwrap();
        let id = shmget(
            key,
            size,
            nix::libc::IPC_CREAT | nix::libc::IPC_EXCL | 0o600,
        )
        .unwrap();
        for args in [seg.args.clone(), vec!["-i".to_owned(), id.to_string()]] {
            let out = write(&strs(&args), &vec![b'x'; input]);
            out.expect_code(1).stderr_has(&["content is unchanged"]);
        }
        let map = Mapping::attach_sysv(id, shm_stat(id).unwrap().size, false).unwrap();
        assert!(
            map.is_zero(0, size).unwrap(),
            "the {size}-byte segment was changed"
        );
    }
}

#[test]
fn a_writer_refuses_a_log_whose_next_sequence_number_was_forged() {
    let seg = Seg::name();
    write(
        &strs(&seg.with(&["--lines", "-s", "8K"])),
        b"one\ntwo\nthree\n",
    )
    .ok();
    // next_seq, at offset 48: three records were appended, it says 1000.
    write_at(&seg, 48, &1000u64.to_ne_bytes());
    let out = write(&strs(&seg.with(&["--lines"])), b"four\n");
    out.expect_code(1).stderr_has(&[
        "corrupt log header",
        "next sequence number is 1000",
        "number 2",
    ]);
    // Nothing was appended: the log still reads as it was.
    assert_eq!(read_u64(&seg, 48), 1000);
    let out = read(&strs(&seg.with(&["--tail", "1"])));
    out.ok();
    assert_eq!(out.stdout, b"three\n");
}

#[test]
fn a_log_capacity_below_the_minimum_is_called_that() {
    let seg = Seg::name();
    write(&strs(&seg.with(&["--lines", "-s", "8K"])), b"one\n").ok();
    write_at(&seg, 16, &56u64.to_ne_bytes());
    let out = read(&strs(&seg.args));
    out.expect_code(1)
        .stderr_has(&["capacity 56 is below the smallest a log has, 64"]);
    assert!(!out.stderr.contains("multiple of 8"), "{out}");
}

#[test]
fn list_under_a_low_descriptor_limit_still_names_owners() {
    let seg = Seg::name();
    write(&strs(&seg.args), b"x").ok();
    let mut cmd = std::process::Command::new("prlimit");
    cmd.args(["--nofile=5", "--", env!("CARGO_BIN_EXE_shm-read"), "--list"]);
    let out = run(&mut cmd, b"");
    out.ok();
    let name = seg.name_value().unwrap();
    let listing = out.stdout_str();
    let row = listing
        .lines()
        .find(|l| l.starts_with(&format!("-n {name} ")))
        .map_or_else(|| panic!("no row for {name}\n{out}"), str::to_owned);
    // The OWNER column, wherever it starts (sizes like "4.00 KiB" hold a space).
    let at = listing.lines().next().unwrap().find("OWNER").unwrap();
    let owner = row[at..].split_whitespace().next().unwrap().to_owned();
    assert_eq!(owner, "root", "{row}");
}

/// A lock word naming a thread that holds no robust list (written by
/// hand, or left by a program that is not shm-tools): the kernel never
/// frees it, so a writer gives up after its patience, and must say what
/// that may mean instead of blaming a live process or a follower.
fn a_stale_lock_word_is_called_possibly_stale(lines: bool, lock_word_at: u64) {
    let seg = Seg::name();
    let mut args = seg.args.clone();
    if lines {
        args.push("--lines".into());
    }
    write(&strs(&args), b"first\n").ok();
    write_at(&seg, lock_word_at, &999_999u32.to_ne_bytes());
    let out = run_limited(&mut write_cmd(&strs(&args)), b"second\n", LIMIT);
    out.expect_code(1);
    let last = out.stderr.lines().last().unwrap_or_default();
    for part in ["held by thread 999999", "no such thread lives", "stale"] {
        assert!(last.contains(part), "lacks {part:?}\n{out}");
    }
    for wrong in ["a live process", "lossless follower that stopped"] {
        assert!(!last.contains(wrong), "says {wrong:?}\n{out}");
    }
}

#[test]
fn a_stale_snapshot_lock_word_is_called_possibly_stale() {
    a_stale_lock_word_is_called_possibly_stale(false, 80 + 8);
}

#[test]
fn a_stale_log_lock_word_is_called_possibly_stale() {
    a_stale_lock_word_is_called_possibly_stale(true, 32 + 8);
}
