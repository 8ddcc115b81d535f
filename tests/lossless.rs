//! Lossless means lossless: writers held back by a live `--lossless`
//! follower wait as long as it lives, however slow or stopped it is (as a
//! pipe's writer waits for its reader), say so once, and go on when it
//! reads on; every line of every writer arrives, in order.

mod common;

use std::io::Read;
use std::os::fd::AsFd;
use std::thread;
use std::time::Duration;

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The lines of `out` that start with `prefix`, which must be exactly
/// `{prefix}0` to `{prefix}{count - 1}` in order.
fn assert_all_in_order(out: &str, prefix: &str, count: usize) {
    let got: Vec<&str> = out.lines().filter(|l| l.starts_with(prefix)).collect();
    assert_eq!(
        got.len(),
        count,
        "lines of {prefix}: {} of {count}",
        got.len()
    );
    for (n, line) in got.iter().enumerate() {
        assert_eq!(*line, format!("{prefix}{n}"), "out of order at {n}");
    }
}

#[test]
fn writers_wait_for_a_stopped_then_slow_lossless_follower_and_lose_nothing() {
    const LINES: usize = 5000;
    let seg = Seg::name();
    write(&strs(&seg.with(&["--lines", "-s", "8K"])), b"").ok();
    let mut cmd = read_cmd(&strs(&seg.with(&["--follow", "--lossless"])));
    let mut follower = spawn(&mut cmd);
    let stdout = follower.stdout.take().unwrap();
    // A small pipe, so the follower feels how slowly its output is read.
    nix::fcntl::fcntl(stdout.as_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(4096)).unwrap();
    until("the follower takes a slot", Duration::from_secs(10), || {
        info(&seg)["lossless_followers"] == 1
    });
    let pid = Pid::from_raw(i32::try_from(follower.id()).unwrap());
    kill(pid, Signal::SIGSTOP).unwrap();
    let writers: Vec<_> = ["a-", "b-"]
        .into_iter()
        .map(|prefix| {
            let mut cmd = write_cmd(&strs(&seg.with(&["--lines"])));
            let child = spawn(&mut cmd);
            let line = describe(&cmd);
            let input = numbered(prefix, LINES);
            thread::spawn(move || finish(child, line, &input, Duration::from_secs(120)))
        })
        .collect();
    // Longer than any patience the writers had before: a stopped follower
    // is alive, and they must wait for it.
    thread::sleep(Duration::from_secs(11));
    assert!(
        writers.iter().all(|w| !w.is_finished()),
        "a writer did not wait for the stopped follower"
    );
    kill(pid, Signal::SIGCONT).unwrap();
    // Now a slow follower: its output is read 64 bytes a millisecond.
    let reader = thread::spawn(move || {
        let mut stdout = stdout;
        let mut all = Vec::new();
        let mut buf = [0u8; 64];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            thread::sleep(Duration::from_millis(1));
        }
        all
    });
    for writer in writers {
        let out = writer.join().unwrap();
        out.ok();
        assert!(
            out.stderr.contains("waiting for a lossless follower of"),
            "{out}"
        );
        assert_eq!(out.stderr.lines().count(), 1, "said more than once\n{out}");
    }
    let info = info(&seg);
    assert_eq!(info["records_appended"], 2 * LINES, "{info}");
    // Removing the log ends the follower once it has read everything.
    until(
        "the follower reads everything",
        Duration::from_secs(60),
        || info_of_slot_at_head(&seg),
    );
    read(&strs(&seg.with(&["--remove"]))).ok();
    let status = follower.wait().unwrap();
    let out = String::from_utf8(reader.join().unwrap()).unwrap();
    assert!(status.success(), "follower: {status}");
    assert_eq!(out.lines().count(), 2 * LINES);
    assert_all_in_order(&out, "a-", LINES);
    assert_all_in_order(&out, "b-", LINES);
}

/// Whether the log's only lossless follower has read up to the head.
fn info_of_slot_at_head(seg: &Seg) -> bool {
    use std::os::unix::fs::FileExt;
    let path = format!("/dev/shm/{}", seg.name_value().unwrap());
    let file = std::fs::File::open(path).unwrap();
    let mut head = [0u8; 8];
    let mut slot = [0u8; 8];
    file.read_at(&mut head, 64).unwrap();
    file.read_at(&mut slot, 256 + 16).unwrap();
    head == slot
}

/// The log header's `writer_waiting` word (FORMAT.md), read from the object.
fn writer_waiting_word(seg: &Seg) -> u32 {
    let path = format!("/dev/shm/{}", seg.name_value().unwrap());
    let bytes = std::fs::read(path).unwrap();
    u32::from_ne_bytes(bytes[140..144].try_into().unwrap())
}

/// A writer that waited for a lossless follower which then died clears its
/// waiting flag itself: nobody else would, and --stats would report a
/// writer waiting 100% of the time from then on.
#[test]
fn a_writer_released_by_a_dead_follower_stops_saying_it_waits() {
    let seg = Seg::name();
    write(&strs(&seg.with(&["--lines", "-s", "8K"])), b"").ok();
    let mut follower = spawn(&mut read_cmd(&strs(&seg.with(&["--follow", "--lossless"]))));
    until("the follower takes a slot", Duration::from_secs(10), || {
        info(&seg)["lossless_followers"] == 1
    });
    let pid = Pid::from_raw(i32::try_from(follower.id()).unwrap());
    kill(pid, Signal::SIGSTOP).unwrap();
    let mut cmd = write_cmd(&strs(&seg.with(&["--lines"])));
    let writer = spawn(&mut cmd);
    let line = describe(&cmd);
    let input = numbered("w-", 2000);
    let writer = thread::spawn(move || finish(writer, line, &input, Duration::from_secs(60)));
    until("the writer waits", Duration::from_secs(20), || {
        writer_waiting_word(&seg) == 1
    });
    follower.kill().unwrap();
    follower.wait().unwrap();
    writer.join().unwrap().ok();
    assert_eq!(writer_waiting_word(&seg), 0, "the flag stayed set");
    assert_eq!(info(&seg)["records_appended"], 2000);
}
