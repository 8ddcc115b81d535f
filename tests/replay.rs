//! Record and replay: `shm-read -F --json` is an exact recording (binary
//! records in base64), and `shm-write --replay` plays it back into a log
//! byte for byte, in order, with the recorded pauses (scaled by --speed).
//! Malformed recordings are refused with the line number, and a regular
//! file is checked before anything goes in. Timing is asserted only from
//! below.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;

const LIMIT: Duration = Duration::from_secs(30);

/// A scratch file for a recording, removed at the end of the test.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str, text: &str) -> Scratch {
        let seg = Seg::name();
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{tag}-{}.jsonl", seg.name_value().unwrap()));
        std::fs::write(&path, text).unwrap();
        Scratch(path)
    }

    fn arg(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Every record the log holds, as `shm-read -F --json` prints it.
fn recording_of(seg: &Seg) -> String {
    let out = read(&strs(&seg.with(&["-F", "--json", "--for", "100ms"])));
    out.ok();
    out.stdout_str()
}

fn parsed(recording: &str) -> Vec<shm_tools::cmd::record::Record> {
    recording
        .lines()
        .map(|l| shm_tools::cmd::record::parse(l.as_bytes()).unwrap())
        .collect()
}

fn replay(seg: &Seg, file: &Scratch, more: &[&str]) -> Output {
    let mut args = seg.with(&["--lines", "--replay", &file.arg()]);
    args.extend(more.iter().map(|s| (*s).to_owned()));
    run_limited(&mut write_cmd(&strs(&args)), b"", LIMIT)
}

/// A recording by hand: each record's content in base64 and its time.
fn recording(records: &[(&[u8], Option<u64>)]) -> String {
    use base64::Engine as _;
    use std::fmt::Write as _;
    let mut text = String::new();
    for (content, time) in records {
        let time = time.map_or("null".to_owned(), |t| t.to_string());
        let _ = writeln!(
            text,
            "{{\"time_ns\":{time},\"encoding\":\"base64\",\"content\":\"{}\"}}",
            base64::engine::general_purpose::STANDARD.encode(content)
        );
    }
    text
}

#[test]
fn binary_records_round_trip_byte_exact() {
    // Records no --lines input could make: every byte value, newlines and
    // NULs inside, invalid UTF-8, an empty record, valid UTF-8 text.
    let every_byte: Vec<u8> = (0..=255).collect();
    let random = random_bytes(20_000, 7);
    let contents: Vec<&[u8]> = vec![
        &every_byte,
        b"line one\nline two\n\0after a NUL",
        b"",
        b"\xff\xfe\xfd",
        "caf\u{e9} \u{1f600}\n".as_bytes(),
        &random,
    ];
    let records: Vec<(&[u8], Option<u64>)> = contents.iter().map(|c| (*c, None)).collect();
    let file = Scratch::new("binary", &recording(&records));
    let first = Seg::name();
    replay(&first, &file, &[]).ok();
    assert_eq!(read(&strs(&first.args)).ok().stdout, contents.concat());

    // Recorded from the log and replayed again: the same records, exactly,
    // each one whole and in order.
    let recorded = recording_of(&first);
    let again = parsed(&recorded);
    assert_eq!(again.len(), contents.len(), "{recorded}");
    for (record, content) in again.iter().zip(&contents) {
        assert_eq!(&record.content, content);
    }
    assert!(recorded.contains("\"encoding\":\"base64\""));
    assert!(recorded.contains("\"encoding\":\"utf-8\""));
    let file = Scratch::new("again", &recorded);
    let second = Seg::name();
    replay(&second, &file, &["--speed", "max"]).ok();
    let replayed = parsed(&recording_of(&second));
    let got: Vec<&[u8]> = replayed.iter().map(|r| &r.content[..]).collect();
    assert_eq!(got, contents);
    // The log gave them its own numbers and times.
    assert_eq!(replayed[0].seq, Some(0));
    assert!(replayed.iter().all(|r| r.time_ns.is_some()));
}

#[test]
fn lines_with_invalid_utf8_survive_the_round_trip() {
    let original = Seg::name();
    let input = b"plain\n\xc3\x28 broken\n\x00\x01\x02\n";
    write(&strs(&original.with(&["--lines"])), input).ok();
    let file = Scratch::new("lines", &recording_of(&original));
    let copy = Seg::name();
    replay(&copy, &file, &["--speed", "max"]).ok();
    assert_eq!(read(&strs(&copy.args)).ok().stdout, input);
}

#[test]
fn the_recorded_spacing_is_kept_and_scaled() {
    let t = 1_800_000_000_000_000_000u64;
    let ms = 1_000_000u64;
    let records: Vec<(&[u8], Option<u64>)> = vec![
        (b"a\n", Some(t)),
        (b"b\n", Some(t + 300 * ms)),
        (b"c\n", Some(t + 600 * ms)),
    ];
    let file = Scratch::new("spacing", &recording(&records));
    for (speed, pause_ms) in [("1", 300u64), ("2", 150)] {
        let seg = Seg::name();
        let started = Instant::now();
        replay(&seg, &file, &["--speed", speed]).ok();
        assert!(
            started.elapsed() >= Duration::from_millis(2 * pause_ms - 20),
            "speed {speed}: {:?}",
            started.elapsed()
        );
        let replayed = parsed(&recording_of(&seg));
        let contents: Vec<&[u8]> = replayed.iter().map(|r| &r.content[..]).collect();
        assert_eq!(contents, [&b"a\n"[..], b"b\n", b"c\n"]);
        // No record went in before its recorded offset from the first
        // (less a little: the first record's own append takes time).
        let first = replayed[0].time_ns.unwrap();
        for (n, record) in replayed.iter().enumerate().skip(1) {
            let offset = record.time_ns.unwrap() - first;
            let due = n as u64 * pause_ms * ms;
            assert!(
                offset + 50 * ms >= due,
                "speed {speed}: record {n} {offset} ns after the first, due {due}"
            );
        }
    }
    let seg = Seg::name();
    replay(&seg, &file, &["--speed", "max"]).ok();
    assert_eq!(read(&strs(&seg.args)).stdout, b"a\nb\nc\n");
}

#[test]
fn times_missing_or_going_back_mean_no_pause() {
    let t = 1_800_000_000_000_000_000u64;
    let records: Vec<(&[u8], Option<u64>)> = vec![
        (b"1\n", Some(t)),
        (b"2\n", None),
        (b"3\n", Some(t - 3_600_000_000_000)),
        (b"4\n", Some(0)),
        (b"5\n", Some(1)),
    ];
    let mut text = recording(&records);
    text.push_str("{\"content\":\"6\\n\"}\n\n   \n");
    let file = Scratch::new("back", &text);
    let seg = Seg::name();
    // Runs within LIMIT (an hour back, or a jump to 1970, is no pause);
    // blank lines are passed over.
    replay(&seg, &file, &[]).ok();
    assert_eq!(read(&strs(&seg.args)).stdout, b"1\n2\n3\n4\n5\n6\n");
}

#[test]
fn a_long_recorded_pause_is_announced_not_silent() {
    let records: Vec<(&[u8], Option<u64>)> =
        vec![(b"now\n", Some(0)), (b"later\n", Some(u64::MAX))];
    let file = Scratch::new("long", &recording(&records));
    let seg = Seg::name();
    let mut writer = Live::start(&mut write_cmd(&strs(&seg.with(&["--replay", &file.arg()]))));
    let started = Instant::now();
    while read(&strs(&seg.args)).stdout != b"now\n" {
        assert!(started.elapsed() < LIMIT, "the first record never came");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    writer.kill();
    let out = writer.finish(LIMIT);
    assert!(out.stderr.contains("line 2: waiting"), "{out}");
    assert!(out.stderr.contains("--speed max"), "{out}");
    assert!(!out.stderr.contains("panicked"), "{out}");
}

#[test]
fn malformed_lines_are_refused_with_their_number() {
    let good = "{\"content\":\"good\\n\"}\n";
    let cases: Vec<(String, &str)> = vec![
        ("not json at all".into(), "not JSON"),
        ("[\"an array\"]".into(), "not a JSON object"),
        ("{\"seq\":1}".into(), "no \"content\""),
        (
            "{\"content\":\"!!!\",\"encoding\":\"base64\"}".into(),
            "not valid base64",
        ),
        (
            "{\"content\":\"x\",\"encoding\":\"latin1\"}".into(),
            "\"encoding\"",
        ),
        ("{\"content\":\"x\",\"time_ns\":-5}".into(), "\"time_ns\""),
        (
            "{\"content\":\"x\",\"time_ns\":\"noon\"}".into(),
            "\"time_ns\"",
        ),
        (
            format!("{{\"content\":\"{}\"}}", "x".repeat(5000)),
            "does not fit",
        ),
        ("x".repeat(100_000), "longer than any record"),
    ];
    for (bad, says) in &cases {
        // A regular file: checked whole first, so nothing goes in.
        let file = Scratch::new("bad", &format!("{good}{good}{bad}\n{good}"));
        let seg = Seg::name();
        let out = replay(&seg, &file, &["-s", "4K", "--speed", "max"]);
        out.expect_code(1)
            .stderr_has(&["bad-", ", line 3: ", says, "nothing was replayed"]);
        // Checked before the log is made: none is left behind.
        assert!(!seg.exists(), "{bad}");

        // From a pipe: the records before it are in, and it says so.
        let seg = Seg::name();
        let out = run_limited(
            &mut write_cmd(&strs(
                &seg.with(&["--replay", "-", "-s", "4K", "--speed", "max"]),
            )),
            format!("{good}{good}{bad}\n{good}").as_bytes(),
            LIMIT,
        );
        out.expect_code(1).stderr_has(&[
            "stdin, line 3: ",
            says,
            "the 2 records before it were replayed",
        ]);
        assert_eq!(read(&strs(&seg.args)).ok().stdout, b"good\ngood\n");
    }
}

#[test]
fn replay_usage_and_missing_files() {
    let seg = Seg::name();
    for (more, says) in [
        (&["--replay", "x", "--speed", "0"][..], "not a speed"),
        (&["--replay", "x", "--speed=-2"][..], "not a speed"),
        (&["--replay", "x", "--speed", "fast"][..], "not a speed"),
        (&["--replay", "x", "--speed", "inf"][..], "not a speed"),
        (&["--speed", "2"][..], "--replay"),
        (&["--replay", "x", "--stream"][..], "cannot be used with"),
        (&["--replay", "x", "-z"][..], "cannot be used with"),
        (&["--replay", "x", "--append"][..], "cannot be used with"),
    ] {
        write(&strs(&seg.with(more)), b"")
            .expect_code(2)
            .stderr_has(&[says]);
    }
    write(
        &strs(&seg.with(&["--replay", "/nonexistent/rec.jsonl"])),
        b"",
    )
    .expect_code(1)
    .stderr_has(&["cannot open the recording /nonexistent/rec.jsonl"]);
    assert!(!seg.exists(), "a missing recording made a log");
    write(
        &strs(&seg.with(&["--replay", env!("CARGO_TARGET_TMPDIR")])),
        b"",
    )
    .expect_code(1)
    .stderr_has(&["cannot open the recording", "it is a directory"]);
    assert!(!seg.exists(), "a directory made a log");
}

#[test]
fn replay_from_a_file_needs_no_stdin() {
    let file = Scratch::new("nostdin", "{\"content\":\"in\\n\"}\n");
    let seg = Seg::name();
    let script = format!(
        "\"$SHM_WRITE\" {} --replay '{}' <&-",
        seg.args.join(" "),
        file.arg()
    );
    run(
        std::process::Command::new("sh")
            .args(["-c", &script])
            .env("SHM_WRITE", env!("CARGO_BIN_EXE_shm-write")),
        b"",
    )
    .ok();
    assert_eq!(read(&strs(&seg.args)).stdout, b"in\n");
}

#[test]
fn snapshot_versions_replay_into_a_log() {
    let snapshot = Seg::name();
    write(&strs(&snapshot.args), b"\x00state 1").ok();
    let f = Live::start(&mut read_cmd(&strs(
        &snapshot.with(&["-F", "--json", "--count", "2"]),
    )));
    f.wait_stdout(LIMIT, "first version", |o| o.ends_with(b"\n"));
    write(&strs(&snapshot.args), b"state 2").ok();
    let out = f.finish(LIMIT);
    out.ok();
    let file = Scratch::new("snap", &out.stdout_str());
    let log = Seg::name();
    replay(&log, &file, &["--speed", "max"]).ok();
    assert_eq!(read(&strs(&log.args)).stdout, b"\x00state 1state 2");
}

#[test]
fn a_bad_recording_leaves_no_log_and_an_existing_log_untouched() {
    let big = format!("{{\"content\":\"{}\"}}\n", "x".repeat(5000));
    let file = Scratch::new("big", &big);
    // Too big for the log it would create: no log is left behind, so a
    // retry with a larger --size gets that size, not a leftover.
    let seg = Seg::name();
    replay(&seg, &file, &["-s", "4K", "--speed", "max"])
        .expect_code(1)
        .stderr_has(&["does not fit", "nothing was replayed"]);
    assert!(!seg.exists());
    replay(&seg, &file, &["-s", "16K", "--speed", "max"]).ok();
    assert_eq!(info(&seg)["size"], 16384);
    assert_eq!(read(&strs(&seg.args)).ok().stdout.len(), 5000);

    // An existing log decides what fits, whatever --size says, and it
    // stays as it was.
    let small = Seg::name();
    write(&strs(&small.with(&["--lines", "-s", "4K"])), b"kept\n").ok();
    replay(&small, &file, &["-s", "16K", "--speed", "max"])
        .expect_code(1)
        .stderr_has(&["does not fit", "nothing was replayed"]);
    assert_eq!(read(&strs(&small.args)).ok().stdout, b"kept\n");
}
