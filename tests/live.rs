//! Live modes: --follow, --lines and --stream, including peers that die.

mod common;

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

fn stream_writer(seg: &Seg, more: &[&str]) -> Live {
    Live::start(&mut write_cmd(&strs(
        &seg.with(&[&["--stream"], more].concat()),
    )))
}

fn stream_reader(seg: &Seg, more: &[&str]) -> Live {
    Live::start(&mut read_cmd(&strs(
        &seg.with(&[&["--stream"], more].concat()),
    )))
}

/// Feeds `data` to the child's stdin from a thread, then closes it.
fn feed(live: &mut Live, data: Vec<u8>) -> thread::JoinHandle<()> {
    let mut stdin = live.child.stdin.take().expect("stdin");
    // The child may end before taking everything; that is its answer.
    thread::spawn(move || {
        let _ = stdin.write_all(&data);
    })
}

#[test]
fn a_64_mib_stream_arrives_exactly_through_a_small_ring() {
    let seg = Seg::name();
    let data = random_bytes(64 << 20, 99);
    let mut writer = stream_writer(&seg, &["-s", "256K"]);
    let feeder = feed(&mut writer, data.clone());
    let reader = stream_reader(&seg, &["--wait"]);
    let out = reader.finish(BOUND);
    out.ok();
    assert!(
        out.stdout == data,
        "stream differs: {} bytes of {}",
        out.stdout.len(),
        data.len()
    );
    feeder.join().unwrap();
    writer.finish(BOUND).ok();
    assert!(!seg.exists(), "a completed stream removes its ring");
}

#[test]
fn reader_first_then_writer() {
    let seg = Seg::key();
    let reader = stream_reader(&seg, &["--wait", "--timeout", "20s"]);
    thread::sleep(Duration::from_millis(200));
    let data = random_bytes(3 << 20, 5);
    run(&mut write_cmd(&strs(&seg.with(&["--stream"]))), &data).ok();
    let out = reader.finish(BOUND);
    out.ok();
    assert!(out.stdout == data);
    assert!(!seg.exists());
}

#[test]
fn writer_first_then_reader_without_wait() {
    let seg = Seg::name();
    let data = random_bytes(100_000, 6);
    // Fits the ring: the writer finishes before any reader exists.
    run(&mut write_cmd(&strs(&seg.with(&["--stream"]))), &data).ok();
    assert_eq!(info(&seg)["bytes_in_flight"], 100_000);
    // A snapshot read peeks without consuming.
    assert!(read(&strs(&seg.args)).ok().stdout == data);
    let out = read(&strs(&seg.with(&["--stream"])));
    out.ok();
    assert!(out.stdout == data);
    assert!(!seg.exists());
}

#[test]
fn empty_stream_ends_cleanly() {
    let seg = Seg::name();
    run(&mut write_cmd(&strs(&seg.with(&["--stream"]))), b"").ok();
    let out = read(&strs(&seg.with(&["--stream"])));
    out.ok();
    assert!(out.stdout.is_empty());
}

#[test]
fn one_page_ring_carries_large_input() {
    let seg = Seg::key();
    let data = random_bytes(8 << 20, 8);
    let mut writer = stream_writer(&seg, &["-s", "4096"]);
    let feeder = feed(&mut writer, data.clone());
    let out = stream_reader(&seg, &["--wait"]).finish(BOUND);
    out.ok();
    assert!(out.stdout == data);
    feeder.join().unwrap();
    writer.finish(BOUND).ok();
}

#[test]
fn missing_stream_exits_3_and_times_out_with_124() {
    let seg = Seg::name();
    read(&strs(&seg.with(&["--stream"]))).expect_code(3);
    read(&strs(&seg.with(&["--stream", "-t", "200ms"])))
        .expect_code(124)
        .stderr_has(&["stream writer"]);
    // A snapshot segment is not a stream.
    write(&strs(&seg.args), b"snapshot").ok();
    read(&strs(&seg.with(&["--stream"])))
        .expect_code(1)
        .stderr_has(&["not a stream"]);
    run(&mut write_cmd(&strs(&seg.with(&["--stream"]))), b"x")
        .expect_code(1)
        .stderr_has(&["already holds data"]);
    assert_eq!(read(&strs(&seg.args)).ok().stdout, b"snapshot");
}

#[test]
fn second_writer_and_second_reader_are_refused_naming_them() {
    let seg = Seg::name();
    let mut writer = stream_writer(&seg, &["-s", "64K"]);
    writer.send(b"first bytes");
    let started = Instant::now();
    while !seg.exists() || info(&seg)["layout"] != "stream" {
        assert!(started.elapsed() < Duration::from_secs(10));
        thread::sleep(Duration::from_millis(5));
    }
    run(&mut write_cmd(&strs(&seg.with(&["--stream"]))), b"intruder")
        .expect_code(1)
        .stderr_has(&[&format!("tid {}", writer.pid()), "one writer"]);

    let reader = stream_reader(&seg, &[]);
    reader.wait_stdout(Duration::from_secs(10), "first bytes", |o| {
        o == b"first bytes"
    });
    read(&strs(&seg.with(&["--stream"])))
        .expect_code(1)
        .stderr_has(&[&format!("tid {}", reader.pid()), "one reader"]);
    writer.send(b", last bytes");
    writer.finish(BOUND).ok();
    let out = reader.finish(BOUND);
    out.ok();
    assert_eq!(out.stdout, b"first bytes, last bytes");
}

#[test]
fn killed_writer_ends_the_reader_non_zero_with_the_byte_count() {
    let seg = Seg::name();
    let mut writer = stream_writer(&seg, &["-s", "64K"]);
    writer.send(&vec![7u8; 100_000]);
    let reader = stream_reader(&seg, &["--wait"]);
    reader.wait_stdout(Duration::from_secs(10), "100000 bytes", |o| {
        o.len() == 100_000
    });
    writer.kill();
    let out = reader.finish_promptly(Instant::now());
    out.expect_code(1)
        .stderr_has(&["died after 100000 bytes", "incomplete"]);
    assert!(!seg.exists(), "the reader removes a broken ring");
}

#[test]
fn killed_reader_ends_the_writer_non_zero() {
    let seg = Seg::key();
    let mut writer = stream_writer(&seg, &["-s", "64K"]);
    let feeder = feed(&mut writer, vec![1u8; 16 << 20]);
    let mut reader = stream_reader(&seg, &["--wait"]);
    reader.wait_stdout(Duration::from_secs(10), "some bytes", |o| !o.is_empty());
    reader.kill();
    let out = writer.finish_promptly(Instant::now());
    out.expect_code(1).stderr_has(&["died", "broken pipe"]);
    feeder.join().unwrap();
    assert!(!seg.exists(), "the writer removes a broken ring");
}

#[test]
fn reader_whose_output_closes_exits_quietly_and_the_writer_fails() {
    let seg = Seg::name();
    let mut writer = stream_writer(&seg, &["-s", "64K"]);
    let feeder = feed(&mut writer, vec![2u8; 16 << 20]);
    // `shm-read --stream | head -c 10`, with the test as head.
    let reader = spawn(&mut read_cmd(&strs(&seg.with(&["--stream", "--wait"]))));
    let out = read_then_close(reader, "shm-read --stream", 10);
    out.ok();
    assert!(out.stderr.is_empty(), "{out}");
    writer
        .finish(BOUND)
        .expect_code(1)
        .stderr_has(&["stopped reading", "broken pipe"]);
    feeder.join().unwrap();
}

#[test]
fn follow_prints_every_version_then_ends_when_removed() {
    let seg = Seg::name();
    write(&strs(&seg.args), b"v0\n").ok();
    let follower = Live::start(&mut read_cmd(&strs(&seg.with(&["--follow"]))));
    let mut expected = b"v0\n".to_vec();
    follower.wait_stdout(Duration::from_secs(10), "v0", |o| o == expected);
    for i in 1..=5 {
        let version = format!("v{i}\n");
        write(&strs(&seg.args), version.as_bytes()).ok();
        expected.extend_from_slice(version.as_bytes());
        follower.wait_stdout(Duration::from_secs(10), &version, |o| o == expected);
    }
    read(&strs(&seg.with(&["--remove"]))).ok();
    let out = follower.finish(Duration::from_secs(10));
    out.ok();
    assert_eq!(out.stdout, expected);
}

#[test]
fn follow_ends_on_the_latest_of_a_fast_burst() {
    let seg = Seg::key();
    write(&strs(&seg.args), b"start").ok();
    let follower = Live::start(&mut read_cmd(&strs(&seg.with(&["-F"]))));
    follower.wait_stdout(Duration::from_secs(10), "start", |o| o == b"start");
    // Snapshot versions back to back (--lines now makes a log instead).
    for i in 0..200 {
        write(&strs(&seg.args), format!("line {i}\n").as_bytes()).ok();
    }
    follower.wait_stdout(Duration::from_secs(10), "line 199", |o| {
        o.ends_with(b"line 199\n")
    });
    let out = follower.stdout_now();
    // Whatever was skipped, what was printed is whole versions in order.
    let text = String::from_utf8(out[5..].to_vec()).unwrap();
    let numbers: Vec<u32> = text
        .lines()
        .map(|l| l.strip_prefix("line ").unwrap().parse().unwrap())
        .collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
}

#[test]
fn lines_publishes_each_line_as_it_arrives() {
    let seg = Seg::name();
    let mut writer = Live::start(&mut write_cmd(&strs(&seg.with(&["-l"]))));
    // A log: a plain read prints every record it holds so far.
    for (typed, line) in [
        ("hello\n", "hello\n"),
        ("how are you?\n", "hello\nhow are you?\n"),
    ] {
        writer.send(typed.as_bytes());
        let started = Instant::now();
        loop {
            let out = read(&strs(&seg.args));
            if out.code() == Some(0) && out.stdout == line.as_bytes() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{line:?} never published: {out}"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
    // A last line without a newline is published at end of input.
    writer.send(b"no newline at the end");
    writer.finish(BOUND).ok();
    assert_eq!(
        read(&strs(&seg.args)).ok().stdout,
        b"hello\nhow are you?\nno newline at the end"
    );
    assert_eq!(info(&seg)["records_appended"], 3);
}

#[test]
fn follow_refuses_segments_it_cannot_follow() {
    let seg = Seg::key();
    write(&strs(&seg.with(&["--raw"])), b"c string").ok();
    read(&strs(&seg.with(&["-F"])))
        .expect_code(2)
        .stderr_has(&["--follow"]);
}
