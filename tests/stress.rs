//! Many writers, readers and followers at once, and writers killed at
//! arbitrary moments. Every payload checks itself, so a torn or mixed read
//! is caught whatever the interleaving; counts and time are bounded.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;

const WRITERS: usize = 4;
const WRITES_EACH: usize = 40;
const READERS: usize = 3;
const READS_EACH: usize = 50;

/// `R` + 8-digit length + that many copies of one letter + `\n`.
fn record(letter: u8, len: usize) -> Vec<u8> {
    let mut r = format!("R{len:08}").into_bytes();
    r.extend(std::iter::repeat_n(letter, len));
    r.push(b'\n');
    r
}

/// The record for writer `w`'s `i`-th write: length tied to the letter.
fn payload(w: usize, i: usize) -> Vec<u8> {
    let letter = b'a' + u8::try_from((w * WRITES_EACH + i) % 26).unwrap();
    record(letter, 500 + usize::from(letter - b'a') * 41 + w)
}

/// Splits `data` into records, panicking at the first malformed one.
fn records(data: &[u8], context: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        assert!(
            rest.len() >= 10 && rest[0] == b'R',
            "{context}: no record header in {:?}",
            preview(rest)
        );
        let len: usize = std::str::from_utf8(&rest[1..9])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                panic!("{context}: bad length in {:?}", preview(rest));
            });
        assert!(rest.len() > len + 9, "{context}: record cut short");
        let letter = rest[9];
        assert!(
            letter.is_ascii_lowercase(),
            "{context}: bad letter {:?}",
            preview(rest)
        );
        let body = &rest[9..9 + len];
        assert!(
            body.iter().all(|&b| b == letter),
            "{context}: mixed record {:?}",
            preview(body)
        );
        assert_eq!(rest[9 + len], b'\n', "{context}: record not terminated");
        out.push(rest[..len + 10].to_vec());
        rest = &rest[len + 10..];
    }
    out
}

fn preview(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(40)]).into_owned()
}

#[test]
fn replace_readers_and_followers_never_see_a_torn_version() {
    let seg = Seg::name();
    write(&strs(&seg.with(&["-s", "64K"])), &payload(0, 0)).ok();
    let followers: Vec<Live> = (0..2)
        .map(|_| Live::start(&mut read_cmd(&strs(&seg.with(&["--follow"])))))
        .collect();
    let started = Instant::now();
    thread::scope(|s| {
        for w in 0..WRITERS {
            let seg = &seg;
            s.spawn(move || {
                for i in 0..WRITES_EACH {
                    write(&strs(&seg.args), &payload(w, i)).ok();
                }
            });
        }
        for r in 0..READERS {
            let seg = &seg;
            s.spawn(move || {
                for n in 0..READS_EACH {
                    let out = read(&strs(&seg.args));
                    out.ok();
                    assert_eq!(
                        records(&out.stdout, &format!("reader {r} read {n}")).len(),
                        1
                    );
                }
            });
        }
    });
    let last = read(&strs(&seg.args)).ok().stdout.clone();
    // Each follower ends on the latest version, then exits when it is removed.
    for f in &followers {
        f.wait_stdout(Duration::from_secs(10), "the last version", |o| {
            o.ends_with(&last)
        });
    }
    read(&strs(&seg.with(&["--remove"]))).ok();
    for (n, f) in followers.into_iter().enumerate() {
        let out = f.finish(Duration::from_secs(10));
        out.ok();
        let seen = records(&out.stdout, &format!("follower {n}"));
        assert!(!seen.is_empty());
    }
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn concurrent_appends_keep_every_record_whole() {
    let seg = Seg::key();
    write(&strs(&seg.with(&["-s", "2M"])), &record(b'z', 3)).ok();
    thread::scope(|s| {
        for w in 0..WRITERS {
            let seg = &seg;
            s.spawn(move || {
                for i in 0..WRITES_EACH {
                    write(&strs(&seg.with(&["--append"])), &payload(w, i)).ok();
                }
            });
        }
        for r in 0..READERS {
            let seg = &seg;
            s.spawn(move || {
                let mut last = 0;
                for n in 0..READS_EACH {
                    let out = read(&strs(&seg.args));
                    out.ok();
                    let count = records(&out.stdout, &format!("reader {r} read {n}")).len();
                    assert!(
                        count >= last,
                        "content shrank from {last} to {count} records"
                    );
                    last = count;
                }
            });
        }
    });
    let mut got = records(&read(&strs(&seg.args)).ok().stdout, "final content");
    let mut expected = vec![record(b'z', 3)];
    for w in 0..WRITERS {
        for i in 0..WRITES_EACH {
            expected.push(payload(w, i));
        }
    }
    got.sort();
    expected.sort();
    assert_eq!(got.len(), expected.len(), "appends were lost or duplicated");
    assert!(got == expected, "appended records differ");
}

#[test]
fn writers_killed_mid_publish_never_leave_a_torn_version() {
    let seg = Seg::name();
    let big = |letter: u8| record(letter, 6 << 20);
    write(&strs(&seg.with(&["-s", "16M"])), &big(b'a')).ok();
    let mut published = vec![big(b'a')];
    for round in 0..12u8 {
        let letter = b'b' + round;
        let mut writer = Live::start(&mut write_cmd(&strs(&seg.args)));
        let data = big(letter);
        let mut stdin = writer.child.stdin.take().unwrap();
        let feeder = thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&data);
        });
        // Kill at a different moment each round: while reading stdin, while
        // copying into the segment, or after publishing.
        thread::sleep(Duration::from_millis(u64::from(round) * 3));
        writer.kill();
        feeder.join().unwrap();
        let out = read(&strs(&seg.args));
        out.ok();
        let seen = records(&out.stdout, &format!("after kill {round}"));
        assert_eq!(seen.len(), 1);
        if seen[0] != *published.last().unwrap() {
            assert_eq!(
                seen[0],
                big(letter),
                "round {round}: neither the old nor the new version"
            );
            published.push(seen[0].clone());
        }
    }
    // The next writer is never wedged by a killed one.
    run_limited(
        &mut write_cmd(&strs(&seg.args)),
        &record(b'q', 10),
        Duration::from_secs(5),
    )
    .ok();
    assert_eq!(read(&strs(&seg.args)).ok().stdout, record(b'q', 10));
}

#[test]
fn a_killed_follower_disturbs_nobody() {
    let seg = Seg::key();
    write(&strs(&seg.args), b"one\n").ok();
    let mut follower = Live::start(&mut read_cmd(&strs(&seg.with(&["-F"]))));
    follower.wait_stdout(Duration::from_secs(10), "one", |o| o == b"one\n");
    // Killed while it sleeps on the futex.
    follower.kill();
    run_limited(
        &mut write_cmd(&strs(&seg.args)),
        b"two\n",
        Duration::from_secs(5),
    )
    .ok();
    let next = Live::start(&mut read_cmd(&strs(&seg.with(&["-F"]))));
    next.wait_stdout(Duration::from_secs(10), "two", |o| o == b"two\n");
    write(&strs(&seg.args), b"three\n").ok();
    next.wait_stdout(Duration::from_secs(10), "three", |o| o == b"two\nthree\n");
    read(&strs(&seg.with(&["--remove"]))).ok();
    next.finish(Duration::from_secs(10)).ok();
}
