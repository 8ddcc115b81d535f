//! Log layout version 2: every record carries its append time, byte for
//! byte as docs/FORMAT.md says; version 1 logs (made by earlier
//! shm-tools) are still read and appended to as version 1; and times a
//! hostile writer put there are printed, never trusted, never a crash.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use common::*;
use shm_tools::layout::check_image;
use shm_tools::layout::log::HEADER_SIZE;

/// A log image that shm-tools before version 2 made (fuzz/seeds/log):
/// the records "one\n", "two\n", "three\n", 4096 bytes.
const VERSION_1_IMAGE: &[u8] = include_bytes!("../fuzz/seeds/log");
/// The same records and one binary one, made by this version.
const VERSION_2_IMAGE: &[u8] = include_bytes!("../fuzz/seeds/log-v2");

fn path(seg: &Seg) -> String {
    format!("/dev/shm/{}", seg.name_value().unwrap())
}

/// `shm-read -F --json` of everything the log holds, parsed.
fn records(seg: &Seg) -> Vec<serde_json::Value> {
    let out = read(&strs(&seg.with(&["-F", "--json", "--for", "100ms"])));
    out.ok();
    out.stdout_str()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn u32_at(image: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(image[at..at + 4].try_into().unwrap())
}

fn u64_at(image: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(image[at..at + 8].try_into().unwrap())
}

#[test]
fn a_version_1_log_is_still_read_and_appended_to_as_version_1() {
    assert_eq!(u32_at(VERSION_1_IMAGE, 8), 1, "the seed is a version 1 log");
    let seg = Seg::name();
    std::fs::write(path(&seg), VERSION_1_IMAGE).unwrap();
    assert_eq!(read(&strs(&seg.args)).ok().stdout, b"one\ntwo\nthree\n");
    assert_eq!(info(&seg)["format_version"], 1);
    let old = records(&seg);
    assert_eq!(old.len(), 3);
    assert!(
        old.iter()
            .all(|r| r["time_ns"].is_null() && r["time"].is_null())
    );
    assert_eq!(old[2]["content"], "three\n");

    write(&strs(&seg.with(&["--lines"])), b"four\n").ok();
    assert_eq!(
        read(&strs(&seg.args)).ok().stdout,
        b"one\ntwo\nthree\nfour\n"
    );
    assert_eq!(info(&seg)["format_version"], 1);
    // The new record is a version 1 record: a 16-byte header after the
    // three 24-byte records (16 + "one\n" padded to 8).
    let image = std::fs::read(path(&seg)).unwrap();
    let at = HEADER_SIZE + 3 * 24;
    assert_eq!(u32_at(&image, at), 5);
    assert_eq!(u32_at(&image, at + 4), !5);
    assert_eq!(u64_at(&image, at + 8), 3);
    assert_eq!(&image[at + 16..at + 21], b"four\n");
    assert_eq!(records(&seg)[3]["time_ns"], serde_json::Value::Null);
}

#[test]
fn version_2_records_carry_their_append_time_as_documented() {
    let seg = Seg::name();
    let before = shm_tools::layout::now_ns();
    write(&strs(&seg.with(&["--lines", "-s", "8K"])), b"one\ntwo\n").ok();
    let after = shm_tools::layout::now_ns();
    assert_eq!(info(&seg)["format_version"], 2);
    let printed = records(&seg);
    let image = std::fs::read(path(&seg)).unwrap();
    assert_eq!(u32_at(&image, 8), 2);
    // Record 0 at the data start, record 1 after its 24 + 8 bytes.
    for (n, at) in [(0u64, HEADER_SIZE), (1, HEADER_SIZE + 32)] {
        assert_eq!(u32_at(&image, at), 4);
        assert_eq!(u32_at(&image, at + 4), !4);
        assert_eq!(u64_at(&image, at + 8), n);
        let time = u64_at(&image, at + 16);
        assert!(
            (before..=after).contains(&time),
            "{time} not in {before}..={after}"
        );
        assert_eq!(printed[usize::try_from(n).unwrap()]["time_ns"], time);
        assert!(printed[0]["time"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(&image[HEADER_SIZE + 24..HEADER_SIZE + 28], b"one\n");
    let first = printed[0]["time_ns"].as_u64().unwrap();
    let second = printed[1]["time_ns"].as_u64().unwrap();
    assert!(first <= second);
}

#[test]
fn hostile_record_times_are_printed_not_trusted() {
    let seg = Seg::name();
    write(&strs(&seg.with(&["--lines", "-s", "8K"])), b"a\nb\nc\nd\n").ok();
    let file = OpenOptions::new().write(true).open(path(&seg)).unwrap();
    // Each record is 24 + 8 bytes; its time sits 16 bytes in.
    let times = [u64::MAX, 0, i64::MAX as u64 + 1, 1];
    for (n, time) in times.iter().enumerate() {
        file.write_all_at(&time.to_ne_bytes(), (HEADER_SIZE + n * 32 + 16) as u64)
            .unwrap();
    }
    assert_eq!(read(&strs(&seg.args)).ok().stdout, b"a\nb\nc\nd\n");
    let printed = records(&seg);
    for (record, time) in printed.iter().zip(times) {
        assert_eq!(record["time_ns"], time);
        assert!(record["time"].as_str().unwrap().ends_with('Z'));
    }
    info(&seg);
    // Replaying them (as fast as possible: the recorded pause before "c"
    // would be 292 years) gives the records back exactly.
    let recording = printed
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    let copy = Seg::name();
    run_limited(
        &mut write_cmd(&strs(&copy.with(&["--replay", "-", "--speed", "max"]))),
        recording.as_bytes(),
        Duration::from_secs(30),
    )
    .ok();
    assert_eq!(read(&strs(&copy.args)).ok().stdout, b"a\nb\nc\nd\n");
}

#[test]
fn version_2_images_parse_and_their_corruptions_never_panic() {
    assert_eq!(u32_at(VERSION_2_IMAGE, 8), 2);
    assert_eq!(
        check_image(VERSION_2_IMAGE).unwrap(),
        b"one\ntwo\nthree\n\xff\x00bin\n"
    );
    assert_eq!(check_image(VERSION_1_IMAGE).unwrap(), b"one\ntwo\nthree\n");
    // Every byte of the fixed header fields and the first records set to
    // hostile values, the version word to every other version, and random
    // scribbles over the whole image.
    let records_end = HEADER_SIZE + 4 * 32;
    let spans = (0..256).chain(HEADER_SIZE..records_end);
    for at in spans {
        for byte in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut image = VERSION_2_IMAGE.to_vec();
            image[at] = byte;
            let _ = check_image(&image);
        }
    }
    for version in [0u32, 1, 3, u32::MAX] {
        let mut image = VERSION_2_IMAGE.to_vec();
        image[8..12].copy_from_slice(&version.to_ne_bytes());
        let _ = check_image(&image);
    }
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    for round in 0..3000 {
        let mut image = VERSION_2_IMAGE.to_vec();
        for _ in 0..=(round % 4) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let span = if round % 2 == 0 {
                records_end
            } else {
                image.len()
            };
            let at = usize::try_from(x % span as u64).unwrap();
            image[at] = (x >> 32).to_le_bytes()[0];
        }
        let _ = check_image(&image);
    }
}
