//! Writing and reading log records: `shm-write --lines` appends whole
//! records even from concurrent writers, oversized lines are refused,
//! `-z` records, and snapshots, logs and streams refuse each other's
//! readers and writers by name.
mod common;

use std::thread;
use std::time::Duration;

use common::log_tests::*;
use common::*;

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
