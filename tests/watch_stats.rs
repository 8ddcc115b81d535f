//! `--stats`: rates from header counters of logs, snapshots and streams,
//! text that lines up, quiet exits, refusals, and `--list --stats` as one
//! table of every segment, even one that shrank or went back.
mod common;

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
// The `--info --json` of a segment, or None while it is missing.
use common::info_if_any as info_of;

/// The JSON lines a finished `--stats --json` printed.
fn json_lines(out: &Output) -> Vec<Value> {
    out.stdout_str()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{out}")))
        .collect()
}

fn sum(lines: &[Value], field: &str) -> u64 {
    lines.iter().map(|l| l[field].as_u64().unwrap()).sum()
}

/// `n` records of `len - 1` letters and a newline.
fn records(n: usize, len: usize) -> Vec<u8> {
    let mut line = vec![b'x'; len - 1];
    line.push(b'\n');
    line.repeat(n)
}

/// Starts `--stats --json` and waits for its first line.
fn start_stats(seg: &Seg, more: &[&str]) -> Live {
    let mut args = seg.with(&["--stats"]);
    args.extend(more.iter().map(|s| (*s).to_owned()));
    args.push("--json".into());
    let live = Live::start(&mut read_cmd(&strs(&args)));
    live.wait_stdout(Duration::from_secs(20), "a first line", |o| {
        o.contains(&b'\n')
    });
    live
}

#[test]
fn stats_counts_log_records_and_bytes_exactly() {
    let seg = Seg::name();
    write(
        &strs(&seg.with(&["--lines", "--size", "64K"])),
        &records(5, 8),
    )
    .ok();
    let stats = start_stats(&seg, &["1s", "--count", "3"]);
    // 10 records of 8 bytes: a 24-byte record header (layout version 2,
    // with the append time) + 8 bytes each.
    write(&strs(&seg.with(&["--lines"])), &records(10, 8)).ok();
    let out = stats.finish(Duration::from_secs(20));
    out.ok();
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0]["records"], 0, "{out}");
    assert_eq!(sum(&lines[1..], "records"), 10, "{out}");
    assert_eq!(sum(&lines[1..], "bytes"), 10 * 32, "{out}");
    assert_eq!(sum(&lines, "overwritten"), 0, "{out}");
    let last = &lines[2];
    assert_eq!(last["layout"], "log");
    assert_eq!(last["records_held"], 15, "{out}");
    assert_eq!(last["lossless_followers"], serde_json::json!([]));
    // Rates are per measured second between two readings.
    for line in &lines {
        let secs = line["interval_s"].as_f64().unwrap();
        assert!(secs >= 0.99, "{out}");
        let rate = line["records_per_s"].as_f64().unwrap();
        #[allow(clippy::cast_precision_loss, reason = "small counts")]
        let expected = line["records"].as_u64().unwrap() as f64 / secs;
        assert!((rate - expected).abs() < 0.1, "{out}");
    }
}

#[test]
fn stats_counts_what_a_small_log_overwrote() {
    let seg = Seg::name();
    write(
        &strs(&seg.with(&["--lines", "--size", "4K"])),
        &records(500, 8),
    )
    .ok();
    let held = info(&seg)["records_held"].as_u64().unwrap();
    assert!(held < 500);
    let stats = start_stats(&seg, &["1s", "--count", "3"]);
    write(&strs(&seg.with(&["--lines"])), &records(100, 8)).ok();
    let out = stats.finish(Duration::from_secs(20));
    let lines = json_lines(&out);
    assert_eq!(sum(&lines, "records"), 100, "{out}");
    assert_eq!(sum(&lines, "overwritten"), 100, "{out}");
    assert_eq!(lines[2]["records_held"], held, "{out}");
    assert!(lines[2]["fill"].as_f64().unwrap() > 0.9, "{out}");
}

#[test]
fn stats_shows_a_stopped_lossless_followers_lag() {
    let seg = Seg::name();
    write(&strs(&seg.with(&["--lines"])), &records(3, 4)).ok();
    let mut follower = Live::start(&mut read_cmd(&strs(&seg.with(&["-F", "--lossless"]))));
    follower.wait_stdout(Duration::from_secs(20), "the 3 records", |o| o.len() == 12);
    let pid = nix::unistd::Pid::from_raw(follower.pid().cast_signed());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    write(&strs(&seg.with(&["--lines"])), &records(5, 4)).ok();
    let out = read(&strs(
        &seg.with(&["--stats", "100ms", "--count", "1", "--json"]),
    ));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    follower.kill();
    out.ok();
    let followers = json_lines(&out)[0]["lossless_followers"].clone();
    assert_eq!(followers.as_array().unwrap().len(), 1, "{out}");
    assert_eq!(followers[0]["lag_records"], 5, "{out}");
    // 4 bytes of content (padded to 8) and a 24-byte header each.
    assert_eq!(followers[0]["lag_bytes"], 5 * 32, "{out}");
}

#[test]
fn stats_counts_snapshot_versions() {
    let seg = Seg::key();
    write(&strs(&seg.args), b"v0").ok();
    let stats = start_stats(&seg, &["1s", "--count", "3"]);
    for v in 1..=4 {
        write(&strs(&seg.args), format!("version {v}").as_bytes()).ok();
    }
    let out = stats.finish(Duration::from_secs(20));
    let lines = json_lines(&out);
    assert_eq!(sum(&lines, "versions"), 4, "{out}");
    assert_eq!(lines[2]["layout"], "framed");
    assert_eq!(lines[2]["content_length"], 9);
}

#[test]
fn stats_on_a_full_stream_shows_the_writer_waiting() {
    let seg = Seg::name();
    let mut writer = Live::start(&mut write_cmd(&strs(
        &seg.with(&["--stream", "--size", "8K"]),
    )));
    writer.send(&vec![7u8; 64 * 1024]);
    let until = Instant::now() + Duration::from_secs(20);
    // Full: the writer sleeps until a reader comes.
    while info_of(&seg).is_none_or(|i| i["bytes_in_flight"] != i["capacity"]) {
        assert!(Instant::now() < until, "the ring never filled");
        thread::sleep(Duration::from_millis(10));
    }
    let out = read(&strs(
        &seg.with(&["--stats", "500ms", "--count", "1", "--json"]),
    ));
    out.ok();
    let line = &json_lines(&out)[0];
    assert_eq!(line["layout"], "stream");
    assert_eq!(line["fill"].as_f64(), Some(1.0), "{out}");
    assert_eq!(line["bytes"], 0, "{out}");
    assert!(line["writer_waited"].as_f64().unwrap() > 0.5, "{out}");
    // Now read it all: the stats watcher took nothing from it.
    writer.close_stdin();
    let drained = read(&strs(&seg.with(&["--stream"])));
    drained.ok();
    assert_eq!(drained.stdout.len(), 64 * 1024);
    writer.finish(Duration::from_secs(20)).ok();
}

#[test]
fn stats_text_lines_up_and_ends_when_the_segment_is_removed() {
    let seg = Seg::name();
    write(&strs(&seg.with(&["--lines"])), b"one\n").ok();
    let stats = Live::start(&mut read_cmd(&strs(&seg.with(&["--stats", "100ms"]))));
    stats.wait_stdout(Duration::from_secs(20), "two lines", |o| {
        String::from_utf8_lossy(o).lines().count() >= 2
    });
    read(&strs(&seg.with(&["--remove"]))).ok();
    let out = stats.finish(Duration::from_secs(20));
    out.ok();
    let text = out.stdout_str();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("TIME      RECORDS/S"), "{text}");
    let at = header.find("BYTES/S").unwrap();
    for line in lines {
        assert_eq!(line.find(" B/s").map(|i| i < at + 10), Some(true), "{text}");
        assert_eq!(&line[at - 2..at], "  ", "columns line up:\n{text}");
    }
}

#[test]
fn stats_into_a_closed_pipe_exits_quietly() {
    let seg = Seg::name();
    write(&strs(&seg.with(&["--lines"])), b"one\n").ok();
    let script = format!(
        "set -o pipefail; '{}' {} --stats 20ms | head -n 3",
        env!("CARGO_BIN_EXE_shm-read"),
        seg.args.join(" ")
    );
    let out = run(Command::new("bash").arg("-c").arg(&script), b"");
    out.ok();
    assert_eq!(out.stdout_str().lines().count(), 3);
    assert_eq!(out.stderr, "", "{out}");
}

#[test]
fn stats_refuses_what_it_cannot_watch() {
    let seg = Seg::name();
    write(&strs(&seg.with(&["--raw"])), b"c string").ok();
    read(&strs(&seg.with(&["--stats", "--count", "1"])))
        .expect_code(1)
        .stderr_has(&["no counters", "--info"]);
    let missing = Seg::name();
    read(&strs(&missing.with(&["--stats"]))).expect_code(3);
    for bad in [
        &["--stats", "1ms"][..],
        &["--stats", "--count", "0"],
        &["--count", "2"],
        &["--stats", "--info"],
    ] {
        read(&strs(&seg.with(bad))).expect_code(2);
    }
}

#[test]
fn list_stats_is_one_table_of_every_segment() {
    let log = Seg::name();
    write(&strs(&log.with(&["--lines"])), b"a\nb\n").ok();
    let snapshot = Seg::key();
    write(&strs(&snapshot.args), b"state").ok();
    let out = read(&["--list", "--stats", "200ms", "--count", "1", "--json"]);
    out.ok();
    let tables = json_lines(&out);
    assert_eq!(tables.len(), 1);
    let rows = tables[0].as_array().unwrap();
    let row = |address: String| {
        rows.iter()
            .find(|r| r["segment"] == address)
            .unwrap_or_else(|| panic!("{address} missing: {out}"))
    };
    assert_eq!(row(format!("-n {}", log.args[1]))["layout"], "log");
    assert_eq!(row(format!("-n {}", log.args[1]))["records"], 0);
    assert_eq!(row(format!("-k {}", snapshot.args[1]))["layout"], "framed");

    let text = read(&["--list", "--stats", "100ms", "--count", "2"])
        .ok()
        .stdout_str();
    let tables: Vec<&str> = text.split("\n\n").collect();
    assert_eq!(tables.len(), 2, "{text}");
    for table in tables {
        let mut lines = table.lines();
        let header = lines.next().unwrap();
        assert!(header.starts_with("SEGMENT"), "{table}");
        let at = header.find("LAYOUT").unwrap();
        for line in lines {
            assert_eq!(&line[at - 2..at], "  ", "{table}");
        }
    }
}

#[test]
fn list_stats_names_a_segment_that_shrank_and_goes_on() {
    let mine = Seg::name();
    write(&strs(&mine.args), b"mine").ok();
    let theirs = Seg::name();
    write(&strs(&theirs.args), b"theirs").ok();
    let live = Live::start(&mut read_cmd(&[
        "--list", "--stats", "300ms", "--count", "3", "--json",
    ]));
    live.wait_stdout(Duration::from_secs(20), "a first table", |o| {
        o.contains(&b'\n')
    });
    // Another user truncates their own segment: not a failure of this run.
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/{}", theirs.name_value().unwrap()))
        .unwrap()
        .set_len(0)
        .unwrap();
    let out = live.finish(Duration::from_secs(30));
    out.ok();
    let tables = json_lines(&out);
    assert_eq!(tables.len(), 3, "{out}");
    let row = |table: &Value, seg: &Seg| {
        let address = format!("-n {}", seg.name_value().unwrap());
        table
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["segment"] == address)
            .cloned()
            .unwrap_or_else(|| panic!("{address} missing: {out}"))
    };
    let last = &tables[2];
    assert!(
        row(last, &theirs)["error"]
            .as_str()
            .is_some_and(|e| e.contains("shrank")),
        "{out}"
    );
    assert_eq!(row(last, &mine)["layout"], "framed", "{out}");
}

/// Stores `value` in the 32-bit header word at `offset` of the POSIX
/// object behind `seg`, as a forger with write access could.
fn poke32(seg: &Seg, offset: usize, value: u32) {
    seg.map_writable()
        .atomic_u32(offset)
        .unwrap()
        .store(value, std::sync::atomic::Ordering::SeqCst);
}

#[test]
fn stats_shows_a_version_counter_that_went_back_as_zero_and_says_so() {
    for json in [true, false] {
        let seg = Seg::name();
        for v in 1..=5 {
            write(&strs(&seg.args), format!("v{v}").as_bytes()).ok();
        }
        let mut args = seg.with(&["--stats", "300ms", "--count", "2"]);
        if json {
            args.push("--json".into());
        }
        let live = Live::start(&mut read_cmd(&strs(&args)));
        live.wait_stdout(Duration::from_secs(20), "a first line", |o| {
            o.contains(&b'\n')
        });
        // The version counter (at 24), one step back.
        poke32(&seg, 24, 3);
        let out = live.finish(Duration::from_secs(20));
        out.ok();
        if json {
            let lines = json_lines(&out);
            assert!(sum(&lines, "versions") == 0, "{out}");
            assert!(
                lines.iter().any(|l| l["counter_went_back"] == true),
                "{out}"
            );
        } else {
            assert!(out.stdout_str().contains("0 (counter went back)"), "{out}");
        }
    }
}
