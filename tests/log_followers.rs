//! Following a log with the real tools: every follower gets every line at
//! its own pace, lapped followers say exactly what they missed, and
//! lossless followers miss nothing yet stop holding the writer back once
//! they are gone.
mod common;

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::log_tests::*;
use common::*;

fn followers_each_get_every_line(count: usize) {
    let seg = Seg::name();
    empty_log(&seg, "16M");
    let followers: Vec<Live> = (0..count).map(|_| follower(&seg, &[])).collect();
    // Followers attach before the writer starts: give them a moment.
    thread::sleep(Duration::from_millis(200));
    let input = numbered("line ", 100_000);
    write(&strs(&seg.with(&["--lines"])), &input).ok();
    for f in &followers {
        f.wait_stdout(LIMIT, "every line", |o| o.len() >= input.len());
    }
    read(&strs(&seg.with(&["--remove"]))).ok();
    for f in followers {
        let out = f.finish(Duration::from_secs(10));
        out.ok();
        assert!(
            out.stdout == input,
            "follower output differs from input\n{out}"
        );
    }
}

#[test]
fn two_followers_each_get_every_line_in_order() {
    followers_each_get_every_line(2);
}

#[test]
fn four_followers_each_get_every_line_in_order() {
    followers_each_get_every_line(4);
}

/// A follower whose stdout nobody reads until the writer is done: it blocks
/// in write(2) and the writer laps it on a 64 KiB log.
fn slow_follower(lossless: bool) -> (Output, Vec<u8>) {
    let seg = Seg::name();
    empty_log(&seg, "64K");
    let mut args = seg.with(&["--follow"]);
    if lossless {
        args.push("--lossless".into());
    }
    let mut cmd = read_cmd(&strs(&args));
    let child = spawn(&mut cmd);
    thread::sleep(Duration::from_millis(200));
    let input = numbered("record number ", 50_000);
    let writer = {
        let args = seg.with(&["--lines"]);
        let input = input.clone();
        thread::spawn(move || write(&strs(&args), &input))
    };
    let mut writer = Some(writer);
    if !lossless {
        // The writer never waits for a lossy follower.
        writer.take().unwrap().join().unwrap().ok();
    }
    // Now read the follower's output (a lossless writer finishes meanwhile),
    // then remove the log so the follower ends.
    let line = describe(&cmd);
    let remover = {
        let args = seg.with(&["--remove"]);
        thread::spawn(move || {
            if let Some(writer) = writer {
                writer.join().unwrap().ok();
            }
            thread::sleep(Duration::from_millis(300));
            read(&strs(&args)).ok();
        })
    };
    let out = finish(child, line, b"", LIMIT);
    remover.join().unwrap();
    (out, input)
}

#[test]
fn a_slow_follower_reports_exactly_what_it_missed() {
    let (out, _) = slow_follower(false);
    out.expect_code(1);
    let total: u64 = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("shm-read: missed "))
        .and_then(|rest| rest.split(" records of ").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary of what was missed\n{out}"));
    let summary = out.stderr.lines().last().unwrap_or_default();
    assert!(summary.contains(" in all"), "no final count\n{out}");
    let in_all: u64 = summary
        .strip_prefix("shm-read: missed ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(total > 0 && in_all > 0);
    // What arrived is a subsequence of the input, in order, whole lines,
    // and arrived + missed is every line.
    let text = out.stdout_str();
    let mut last: Option<usize> = None;
    let mut received = 0u64;
    for line in text.lines() {
        let n: usize = line
            .strip_prefix("record number ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("torn line {line:?}"));
        assert!(last.is_none_or(|l| n > l), "out of order at {n}");
        last = Some(n);
        received += 1;
    }
    assert_eq!(
        received + in_all,
        50_000,
        "received {received} + missed {in_all} is not every line\n{}",
        out.stderr
    );
    // The per-report counts add up to the total.
    let reported: u64 = out
        .stderr
        .lines()
        .filter(|l| l.contains("overwrote them"))
        .filter_map(|l| l.strip_prefix("shm-read: missed "))
        .filter_map(|r| r.split(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(reported, in_all, "{}", out.stderr);
}

#[test]
fn a_slow_lossless_follower_receives_everything() {
    let (out, input) = slow_follower(true);
    out.ok();
    assert!(out.stdout == input, "lossless follower lost lines\n{out}");
}

#[test]
fn new_and_tail_choose_where_to_start() {
    let seg = Seg::name();
    write(&strs(&seg.with(&["--lines"])), b"a\nb\nc\nd\n").ok();
    let out = read(&strs(&seg.with(&["--tail", "2"])));
    out.ok();
    assert_eq!(out.stdout, b"c\nd\n");
    let out = read(&strs(&seg.with(&["--tail", "10"])));
    assert_eq!(out.stdout, b"a\nb\nc\nd\n");
    let fresh = follower(&seg, &["--new"]);
    thread::sleep(Duration::from_millis(200));
    write(&strs(&seg.with(&["--lines"])), b"e\n").ok();
    fresh.wait_stdout(Duration::from_secs(10), "the new line", |o| o == b"e\n");
    read(&strs(&seg.with(&["--remove"]))).ok();
    fresh.finish(Duration::from_secs(10)).ok();
}

/// A writer blocked by a lossless follower that then goes away.
fn lossless_follower_gone(gone: impl FnOnce(&mut std::process::Child)) {
    let seg = Seg::name();
    empty_log(&seg, "64K");
    let mut cmd = read_cmd(&strs(&seg.with(&["--follow", "--lossless"])));
    let mut follower = spawn(&mut cmd);
    until("the follower takes a slot", Duration::from_secs(10), || {
        info(&seg)["lossless_followers"] == 1
    });
    let mut cmd = write_cmd(&strs(&seg.with(&["--lines"])));
    let mut writer = spawn(&mut cmd);
    // Fed from a thread: a held-back writer stops reading its stdin.
    let mut stdin = writer.stdin.take().unwrap();
    let feeder = thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(&numbered("held back ", 20_000));
    });
    // The follower's stdout is never read: the writer must be blocked.
    thread::sleep(Duration::from_millis(500));
    assert!(
        matches!(writer.try_wait(), Ok(None)),
        "writer was not held back"
    );
    let released = Instant::now();
    gone(&mut follower);
    let out = finish(writer, describe(&cmd), b"", Duration::from_secs(10));
    out.ok();
    feeder.join().unwrap();
    assert!(
        released.elapsed() < Duration::from_secs(1),
        "writer held back for {:?} after its follower went",
        released.elapsed()
    );
    let _ = follower.kill();
    let _ = follower.wait();
}

#[test]
fn a_killed_lossless_follower_stops_holding_the_writer_back() {
    for _ in 0..3 {
        lossless_follower_gone(|f| {
            f.kill().unwrap();
        });
    }
}

#[test]
fn a_lossless_follower_whose_output_closes_stops_holding_the_writer_back() {
    lossless_follower_gone(|f| {
        drop(f.stdout.take());
    });
}

#[test]
fn lossless_followers_need_a_free_slot_and_write_access() {
    let seg = Seg::name();
    empty_log(&seg, "64K");
    let followers: Vec<Live> = (0..shm_tools::layout::log::SLOTS)
        .map(|_| follower(&seg, &["--lossless"]))
        .collect();
    until("every slot is taken", Duration::from_secs(20), || {
        info(&seg)["lossless_followers"] == shm_tools::layout::log::SLOTS
    });
    run_limited(
        &mut read_cmd(&strs(&seg.with(&["--follow", "--lossless"]))),
        b"",
        Duration::from_secs(10),
    )
    .expect_code(1)
    .stderr_has(&["lossless follower slots", "without --lossless"]);
    read(&strs(&seg.with(&["--remove"]))).ok();
    for f in followers {
        f.finish(Duration::from_secs(10)).ok();
    }
    if is_root() {
        let seg = Seg::name();
        write(&strs(&seg.with(&["--lines", "-m", "0644"])), b"hello\n").ok();
        let mut cmd = as_nobody("shm-read", &strs(&seg.args));
        let plain = run(&mut cmd, b"");
        if plain.code() == Some(0) {
            assert_eq!(plain.stdout, b"hello\n");
            cmd.args(["--follow", "--lossless"]);
            run(&mut cmd, b"")
                .expect_code(1)
                .stderr_has(&["permission", "--lossless needs write access"]);
        }
    }
}

/// Kills its processes even when the test panics.
struct Running(Vec<std::process::Child>);
impl Drop for Running {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn a_lossless_follower_joining_a_busy_log_misses_nothing() {
    // Writers move the tail while the follower claims its slot: what they
    // overwrote then was never promised to it, so it is not a loss.
    let seg = Seg::name();
    empty_log(&seg, "4K");
    let mut yes = Command::new("yes")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut cmd = write_cmd(&strs(&seg.with(&["--lines"])));
    cmd.stdin(yes.stdout.take().unwrap())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let writer = cmd.spawn().unwrap();
    let _running = Running(vec![yes, writer]);
    until("the writer appends", LIMIT, || {
        info(&seg)["records_appended"].as_u64().unwrap_or(0) > 1000
    });
    for _ in 0..80 {
        let out = run_limited(
            &mut read_cmd(&strs(&seg.with(&["--follow", "--lossless", "-c", "20000"]))),
            b"",
            Duration::from_secs(20),
        );
        out.ok();
        assert_eq!(out.stdout.len(), 20000, "{out}");
    }
}

/// A lossless slot that never moves (a follower stopped with Ctrl-Z, or a
/// word scribbled by anyone who may write the log) holds writers back as a
/// stopped reader holds a pipe's writer, but not silently: the writer says
/// on stderr, within a couple of seconds, what it is waiting for.
#[test]
fn a_writer_held_back_by_a_lossless_slot_says_so() {
    use shm_tools::sys::{Mapping, shm_stat, shmget};
    // System V: a slot's lock word is all the evidence there is (a POSIX
    // log's followers also hold a kernel lock, tests/follower_evidence.rs).
    let seg = Seg::key();
    empty_log(&seg, "4096");
    // Slot 0: its lock word (8 bytes into the slot) held by "tid 1", its
    // position (16 bytes in) at 0: a live follower that has read nothing.
    let id = shmget(seg.key_value().unwrap(), 0, 0).unwrap();
    let map = Mapping::attach_sysv(id, shm_stat(id).unwrap().size, true).unwrap();
    map.write(256 + 8, &1u32.to_ne_bytes()).unwrap();
    map.write(256 + 16, &0u64.to_ne_bytes()).unwrap();
    drop(map);
    let mut writer = Live::start(&mut write_cmd(&strs(&seg.with(&["--lines"]))));
    writer.send(&numbered("held back ", 2000));
    thread::sleep(Duration::from_millis(2500));
    writer.kill();
    let out = writer.finish(LIMIT);
    assert!(
        out.stderr.contains("waiting for a lossless follower of")
            && out.stderr.contains("slot 0, thread 1 ")
            && out.stderr.contains("the slot was forged"),
        "the writer waited silently, or without naming the slot\n{out}"
    );
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "{out}");
}
