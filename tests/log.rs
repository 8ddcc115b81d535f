//! The log layout through the real tools: `shm-write --lines` appends
//! records, `shm-read` prints them and `--follow` follows them, each reader
//! at its own pace; lapped readers say exactly what they missed, lossless
//! followers miss nothing, and neither killed writers nor hostile headers
//! make a reader hang, panic or print a torn record.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const LIMIT: Duration = Duration::from_secs(60);

fn follower(seg: &Seg, more: &[&str]) -> Live {
    let mut args = seg.with(&["--follow"]);
    args.extend(more.iter().map(|s| (*s).to_owned()));
    Live::start(&mut read_cmd(&strs(&args)))
}

/// Makes an empty log of `size`, so followers can attach before any line.
fn empty_log(seg: &Seg, size: &str) {
    write(&strs(&seg.with(&["--lines", "-s", size])), b"").ok();
}

/// The path of a POSIX test segment in /dev/shm.
fn path(seg: &Seg) -> String {
    format!("/dev/shm/{}", seg.name_value().unwrap())
}

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
fn concurrent_writers_never_interleave_inside_a_record() {
    let seg = Seg::name();
    empty_log(&seg, "32M");
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let args = seg.with(&["--lines"]);
            thread::spawn(move || {
                let mut input = Vec::new();
                for n in 0..5_000 {
                    // Long lines, so chunks of stdin split them.
                    let pad = "x".repeat((n * 37 + w * 11) % 700);
                    input.extend_from_slice(format!("w{w} n{n} {pad} end\n").as_bytes());
                }
                write(&strs(&args), &input).ok();
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let out = read(&strs(&seg.args));
    out.ok();
    let mut next = [0usize; 4];
    for line in out.stdout_str().lines() {
        let mut words = line.split(' ');
        let w: usize = words.next().unwrap()[1..].parse().unwrap();
        let n: usize = words.next().unwrap()[1..].parse().unwrap();
        let pad = words.next().unwrap_or_default();
        assert_eq!(words.next(), Some("end"), "torn line {line:?}");
        assert_eq!(pad.len(), (n * 37 + w * 11) % 700, "torn line {line:?}");
        assert_eq!(n, next[w], "writer {w} out of order");
        next[w] += 1;
    }
    assert_eq!(next, [5_000; 4]);
}

#[test]
fn one_shot_writers_interleave_whole_lines() {
    let seg = Seg::name();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let args = seg.with(&["--lines"]);
            thread::spawn(move || {
                write(&strs(&args), format!("event {i}\n").as_bytes())
                    .ok()
                    .code()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), Some(0));
    }
    let mut lines: Vec<String> = read(&strs(&seg.args))
        .stdout_str()
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    let expected: Vec<String> = (0..8).map(|i| format!("event {i}")).collect();
    assert_eq!(lines, expected);
}

#[test]
fn an_oversized_line_is_refused_and_later_lines_still_arrive() {
    let seg = Seg::name();
    let mut input = b"before\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 200_000));
    input.extend_from_slice(b"\nafter\n");
    input.extend(std::iter::repeat_n(b'y', 9_000));
    input.extend_from_slice(b"\nlast without newline");
    let out = write(&strs(&seg.with(&["--lines", "-s", "8K"])), &input);
    out.expect_code(1);
    let refusals = out
        .stderr
        .lines()
        .filter(|l| l.contains("skipped it"))
        .count();
    assert_eq!(refusals, 2, "{out}");
    assert!(out.stderr.contains("2 of 5 records"), "{out}");
    let read_out = read(&strs(&seg.args));
    read_out.ok();
    assert_eq!(read_out.stdout, b"before\nafter\nlast without newline");
}

#[test]
fn nul_terminated_records_with_z() {
    let seg = Seg::name();
    write(&strs(&seg.with(&["-z"])), b"one\0two\nstill two\0").ok();
    let out = read(&strs(&seg.args));
    out.ok();
    assert_eq!(out.stdout, b"one\0two\nstill two\0");
}

#[test]
fn the_chat_order_from_the_readme_works() {
    let seg = Seg::name();
    // Terminal 1: the writer waits for typed lines; the log exists already.
    let writer = Live::start(&mut write_cmd(&strs(&seg.with(&["--lines"]))));
    until(
        "the writer creates the log",
        Duration::from_secs(10),
        || read(&strs(&seg.args)).code() == Some(0),
    );
    // Terminal 2, before any line is typed.
    let follower = follower(&seg, &[]);
    chat_two_lines(writer, follower, &seg);
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

#[test]
fn snapshots_and_logs_refuse_each_others_writes() {
    let log = Seg::name();
    write(&strs(&log.with(&["--lines"])), b"a\n").ok();
    write(&strs(&log.args), b"snapshot")
        .expect_code(1)
        .stderr_has(&["is a log", "--lines"]);
    assert_eq!(read(&strs(&log.args)).stdout, b"a\n");

    let snapshot = Seg::name();
    write(&strs(&snapshot.args), b"state").ok();
    write(&strs(&snapshot.with(&["--lines"])), b"x\n")
        .expect_code(1)
        .stderr_has(&["is a snapshot", "not a log"]);
    assert_eq!(read(&strs(&snapshot.args)).stdout, b"state");
    read(&strs(&snapshot.with(&["--tail", "3"])))
        .expect_code(2)
        .stderr_has(&["read a log"]);
}

#[test]
fn follow_on_a_snapshot_can_print_one_json_object_per_version() {
    let seg = Seg::name();
    write(&strs(&seg.args), b"v1").ok();
    let f = follower(&seg, &["--json"]);
    f.wait_stdout(Duration::from_secs(10), "first version", |o| {
        o.ends_with(b"\n")
    });
    write(&strs(&seg.with(&["--append"])), b" v2").ok();
    f.wait_stdout(Duration::from_secs(10), "second version", |o| {
        o.split(|&b| b == b'\n').count() == 3
    });
    read(&strs(&seg.with(&["--remove"]))).ok();
    let out = f.finish(Duration::from_secs(10));
    out.ok();
    let versions: Vec<serde_json::Value> = out
        .stdout_str()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(versions[0]["content"], "v1");
    assert_eq!(versions[1]["content"], "v1 v2");
    assert_eq!(versions[1]["seq"], 2);
    assert!(versions[1]["time"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn follow_on_a_stream_names_it() {
    let seg = Seg::name();
    let mut writer = Live::start(&mut write_cmd(&strs(&seg.with(&["--stream", "-s", "64K"]))));
    until("the ring exists", Duration::from_secs(10), || seg.exists());
    thread::sleep(Duration::from_millis(100));
    read(&strs(&seg.with(&["--follow"])))
        .expect_code(2)
        .stderr_has(&["is a stream", "shm-read --stream"]);
    writer.kill();
}

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
