//! README's log examples run as documented: following until a condition,
//! recording and replaying a log, and the recorded line being a record.
mod common;

use std::thread;
use std::time::Duration;

use common::scene::Scene;
use common::*;

/// Publishes a new version of `seg` every 50 ms until `reader` prints
/// something: a reader of the next version cannot say when it has
/// started, so a version published just before would be missed.
fn publish_until_printed(seg: &Seg, reader: &Live) {
    let started = std::time::Instant::now();
    let mut n = 2;
    while reader.stdout_len() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nothing printed"
        );
        write(&strs(&seg.args), format!("v{n}\n").as_bytes()).ok();
        n += 1;
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn following_until_a_condition() {
    let scene = Scene::new();
    let events = scene.name("events");
    let numbered = |n: usize| {
        (0..n)
            .map(|n| format!("event {n}"))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    };
    let lines = numbered(150);
    write(&strs(&events.with(&["--lines"])), lines.as_bytes()).ok();

    scene.run("shm-read -F --count 100 -n events > first-100.txt", b"");
    let first = std::fs::read_to_string(scene.dir.join("first-100.txt")).unwrap();
    assert_eq!(first, numbered(100));

    let three = scene.run("shm-read -F --count 3 --timeout 10s -n events", b"");
    assert_eq!(three.stdout_str(), "event 0\nevent 1\nevent 2\n");

    let started = std::time::Instant::now();
    scene.run("shm-read -F --for 1m -n events > last-minute.txt", b"");
    assert!(started.elapsed() >= Duration::from_secs(1));
    let all = std::fs::read_to_string(scene.dir.join("last-minute.txt")).unwrap();
    assert_eq!(all, lines);

    let config = scene.name("config");
    for doc in [
        "shm-read --next -n config",
        "shm-read --next --timeout 10s -n config || echo 'no new config within 10s'",
    ] {
        write(&strs(&config.args), b"v1\n").ok();
        let reader = scene.start(doc);
        publish_until_printed(config, &reader);
        let out = reader.finish(Duration::from_secs(10));
        out.ok();
        let printed = out.stdout_str();
        assert!(
            printed.starts_with('v') && printed != "v1\n" && printed.lines().count() == 1,
            "{out}"
        );
    }
}

#[test]
fn recording_and_replaying_a_log() {
    let scene = Scene::new();
    let events = scene.name("events");
    write(&strs(&events.with(&["--lines"])), b"first\n").ok();
    thread::sleep(Duration::from_millis(300));
    write(&strs(&events.with(&["--lines"])), b"\xff\x00 binary\n").ok();
    let recorded = read(&strs(&events.args)).stdout.clone();

    scene.run("shm-read -F --json --for 1m -n events > events.jsonl", b"");
    let recording = std::fs::read_to_string(scene.dir.join("events.jsonl")).unwrap();
    let objects: Vec<serde_json::Value> = recording
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects.len(), 2, "{recording}");
    assert_eq!(objects[0]["encoding"], "utf-8");
    assert_eq!(objects[1]["encoding"], "base64");

    let again = scene.name("events-again");
    let started = std::time::Instant::now();
    scene.run(
        "shm-write --lines --replay events.jsonl -n events-again",
        b"",
    );
    // The recorded pause was at least 300 ms; only a lower bound is safe.
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(read(&strs(&again.args)).stdout, recorded);
    scene.run(
        "shm-write --lines --replay events.jsonl --speed 10 -n events-again",
        b"",
    );
    scene.run(
        "shm-write --lines --replay events.jsonl --speed max -n events-again",
        b"",
    );
    assert_eq!(read(&strs(&again.args)).stdout, recorded.repeat(3));

    let mirror = scene.name("mirror");
    let copy = scene
        .start("shm-read -F --json -n events | shm-write --lines --replay - --speed max -n mirror");
    until(
        "the mirror has the history",
        Duration::from_secs(10),
        || read(&strs(&mirror.args)).stdout == recorded,
    );
    write(&strs(&events.with(&["--lines"])), b"live\n").ok();
    until(
        "the mirror has the new record",
        Duration::from_secs(10),
        || {
            read(&strs(&mirror.args))
                .stdout
                .ends_with(b"binary\nlive\n")
        },
    );
    // The copy ends when the log it follows is removed.
    read(&strs(&events.with(&["--remove"]))).ok();
    copy.finish(Duration::from_secs(10)).ok();
}

#[test]
fn the_recorded_line_in_the_readme_is_a_record() {
    let readme = include_str!("../README.md");
    let start = readme.find("```json\n").expect("a json block") + "```json\n".len();
    let line = readme[start..].lines().next().unwrap();
    let record = shm_tools::cmd::record::parse(line.as_bytes()).unwrap();
    assert_eq!(record.content, b"\xff\x00bin\n");
}
