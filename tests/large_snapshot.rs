//! Snapshots of several MiB, which take the chunked copy: the reader copies
//! them out in pieces, checking the slot's generation after each, and the
//! writer reads stdin into one buffer sized from fstat when it is a file.
//! Exact bytes through files and pipes, prefixes, appends, and versions that
//! are never torn while a writer keeps overwriting them.

mod common;

use std::fs::File;
use std::io::Write;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use shm_tools::address::{PosixName, Target};
use shm_tools::layout::snapshot::{Publish, Snapshot};
use shm_tools::segment::{Access, Segment};

/// More than two 4 MiB chunks and not a multiple of the page size.
const LARGE: usize = (9 << 20) + 12_345;

/// `shm-write ARGS < file` holding `data`: stdin is a regular file, so the
/// writer sizes its buffer from fstat.
fn write_from_file(args: &[&str], data: &[u8], tag: &str) -> Output {
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("large-{tag}-{}", std::process::id()));
    File::create(&path).unwrap().write_all(data).unwrap();
    let mut cmd = write_cmd(args);
    cmd.stdin(File::open(&path).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = cmd.output().unwrap();
    let _ = std::fs::remove_file(&path);
    Output {
        line: describe(&cmd),
        status: out.status,
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn large_contents_round_trip_from_files_and_pipes() {
    let data = random_bytes(LARGE, 7);
    for seg in [Seg::key(), Seg::name()] {
        write_from_file(&strs(&seg.args), &data, "file").ok();
        let out = read(&strs(&seg.args));
        out.ok();
        assert!(out.stdout == data, "content from a file differs\n{out}");

        let other = random_bytes(LARGE - 1000, 8);
        write(&strs(&seg.args), &other).ok();
        let out = read(&strs(&seg.args));
        out.ok();
        assert!(out.stdout == other, "content from a pipe differs\n{out}");
    }
}

#[test]
fn a_file_stdin_is_read_from_its_current_offset() {
    let seg = Seg::name();
    let data = random_bytes(LARGE, 9);
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("large-offset-{}", std::process::id()));
    File::create(&path).unwrap().write_all(&data).unwrap();
    // The shell's `{ head -c N >/dev/null; shm-write; } < file` in Rust:
    // stdin is the file, already read up to `skip`.
    let skip = 5_000_001;
    let mut file = File::open(&path).unwrap();
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(skip as u64)).unwrap();
    let status = write_cmd(&strs(&seg.args)).stdin(file).status().unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(status.success());
    let out = read(&strs(&seg.args));
    out.ok();
    assert!(
        out.stdout == data[skip..],
        "content differs from the rest of the file"
    );
}

#[test]
fn large_prefixes_and_appends_are_exact() {
    let seg = Seg::key();
    let data = random_bytes(LARGE, 10);
    write(&strs(&seg.with(&["-s", "64M"])), &data).ok();
    for n in [1, 4 << 20, (4 << 20) + 1, LARGE - 1, LARGE, LARGE + 1] {
        let out = read(&strs(&seg.with(&["-c", &n.to_string()])));
        out.ok();
        assert!(out.stdout == data[..n.min(LARGE)], "-c {n} differs");
    }
    let more = random_bytes(LARGE, 11);
    write(&strs(&seg.with(&["--append"])), &more).ok();
    let out = read(&strs(&seg.args));
    out.ok();
    assert!(out.stdout.len() == 2 * LARGE, "appended length differs");
    assert!(out.stdout[..LARGE] == data[..] && out.stdout[LARGE..] == more[..]);
}

#[test]
fn large_versions_are_never_torn_while_being_overwritten() {
    // Each version is LEN copies of one byte, so a torn copy shows as two
    // different bytes. The publisher never stops while readers run, so
    // slots are overwritten mid-copy all the time.
    const LEN: usize = 6 << 20;
    const READS: usize = 40;
    let seg = Seg::name();
    write(&strs(&seg.with(&["-s", "16M"])), &vec![0u8; LEN]).ok();
    let target = Target::Name(PosixName::parse(seg.name_value().unwrap()).unwrap());
    let segment = Segment::open(&target, Access::ReadWrite).unwrap();
    let framed = Snapshot::open(segment.mapping(), &target).unwrap();
    let done = AtomicBool::new(false);
    let started = Instant::now();
    // Nothing asserts inside the scope: a failed assertion there would
    // leave the publisher running and the scope waiting for it.
    let outcomes: Vec<Output> = thread::scope(|s| {
        s.spawn(|| {
            let mut version = vec![0u8; LEN];
            let mut i = 0u8;
            while !done.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(100) {
                i = i.wrapping_add(1);
                version.fill(i);
                framed.publish(&version, Publish::Replace).unwrap();
                thread::sleep(Duration::from_micros(200));
            }
        });
        let outcomes = (0..READS)
            .map(|_| {
                run_limited(
                    &mut read_cmd(&strs(&seg.args)),
                    b"",
                    Duration::from_secs(20),
                )
            })
            .collect();
        done.store(true, Ordering::Relaxed);
        outcomes
    });
    let mut whole = 0;
    let mut gave_up = 0;
    for (n, out) in outcomes.iter().enumerate() {
        if out.code() == Some(0) {
            assert_eq!(out.stdout.len(), LEN, "read {n}: wrong length");
            let first = out.stdout[0];
            assert!(
                out.stdout.iter().all(|&b| b == first),
                "read {n}: a torn version was printed"
            );
            whole += 1;
        } else {
            // Allowed: a reader lapped for 5 s says so and prints nothing.
            out.expect_code(1)
                .stderr_has(&["changed under every read attempt"]);
            assert!(out.stdout.is_empty());
            gave_up += 1;
        }
    }
    assert!(whole > 0, "no read succeeded ({gave_up} gave up)");
    assert!(started.elapsed() < Duration::from_secs(120));
}
