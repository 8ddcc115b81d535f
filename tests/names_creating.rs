//! Making a segment at a name: writers racing onto a fresh name, key or
//! ipcmk segment all succeed; sparse objects on a full /dev/shm, too-small
//! sizes, raw over our layouts and control characters are refused.
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::names_tests::LIMIT;
use common::{
    Live, Seg, finish, in_small_dev_shm, info, read, read_cmd, spawn, strs, write, write_cmd,
};

/// `writers` shm-writes started together on `seg`, each with its own
/// input; every one must succeed, and the content must be one input whole.
/// The segments are large (RACE_SIZE) so that a writer's scan for "blank"
/// takes long enough for another to publish meanwhile, as happens on a
/// loaded machine.
fn race_writers(seg: &Seg, writers: usize, round: usize) {
    let inputs: Vec<Vec<u8>> = (0..writers)
        .map(|w| {
            format!("writer {w} of round {round}\n")
                .repeat(w + 1)
                .into_bytes()
        })
        .collect();
    let children: Vec<_> = inputs
        .iter()
        .map(|_| {
            let mut cmd = write_cmd(&strs(&seg.with(&["-s", RACE_SIZE])));
            let line = common::describe(&cmd);
            (spawn(&mut cmd), line)
        })
        .collect();
    let finished: Vec<_> = children
        .into_iter()
        .zip(inputs.clone())
        .map(|((child, line), input)| thread::spawn(move || finish(child, line, &input, LIMIT)))
        .collect();
    for handle in finished {
        handle.join().expect("writer thread").ok();
    }
    let content = read(&strs(&seg.args)).ok().stdout.clone();
    assert!(
        inputs.contains(&content),
        "round {round}: content is no writer's input: {:?}",
        String::from_utf8_lossy(&content)
    );
}

const RACE_ROUNDS: usize = 25;
const RACE_WRITERS: usize = 4;
const RACE_SIZE: &str = "4M";

#[test]
fn writers_racing_onto_a_fresh_name_all_succeed() {
    for round in 0..RACE_ROUNDS {
        let seg = Seg::name();
        race_writers(&seg, RACE_WRITERS, round);
    }
}

#[test]
fn writers_racing_onto_a_fresh_key_all_succeed() {
    for round in 0..RACE_ROUNDS {
        let seg = Seg::key();
        race_writers(&seg, RACE_WRITERS, round);
    }
}

#[test]
fn writers_racing_onto_a_fresh_ipcmk_segment_all_succeed() {
    for round in 0..RACE_ROUNDS {
        let Ok(out) = Command::new("ipcmk")
            .args(["-M", &(4 << 20).to_string(), "-p", "0600"])
            .output()
        else {
            eprintln!("skipped: no ipcmk");
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let id: i32 = text.trim().rsplit(' ').next().unwrap().parse().unwrap();
        let seg = Seg::id(id);
        race_writers(&seg, RACE_WRITERS, round);
    }
}

#[test]
fn a_sparse_object_on_a_full_dev_shm_is_refused_not_a_sigbus() {
    // Sparse, as Python's SharedMemory(create=True) makes them: ftruncate
    // only. 4 MiB on a 1 MiB tmpfs: the pages cannot all exist.
    let script = r#"
        for flags in "" "--raw" "--append" "--lines"; do
            truncate -s 4M /dev/shm/sparse
            head -c 2000000 /dev/zero | tr '\0' x | "$SHM_WRITE" -n sparse $flags
            echo "exit=$? flags=$flags"
            stat -c 'size=%s blocks=%b' /dev/shm/sparse
            rm /dev/shm/sparse
        done
    "#;
    let Some(report) = in_small_dev_shm(script) else {
        return;
    };
    for flags in ["", "--raw", "--append", "--lines"] {
        assert!(
            report.contains(&format!("exit=1 flags={flags}\n")),
            "{flags}: not a clean exit 1 (135 is SIGBUS):\n{report}"
        );
    }
    assert_eq!(
        report.matches("size=4194304 blocks=0").count(),
        4,
        "the object changed:\n{report}"
    );
    assert!(
        report.contains("/dev/shm") && report.contains("sparse") && !report.contains("Bus"),
        "{report}"
    );
    assert_eq!(report.matches("shm-write:").count(), 4, "{report}");
}

#[test]
fn a_too_small_size_is_refused_before_anything_exists() {
    let seg = Seg::name();
    write(&strs(&seg.with(&["-s", "100"])), b"hello")
        .expect_code(1)
        .stderr_has(&["--size 100", "was not created", "--size of 4K"]);
    assert!(!seg.exists());
    let seg = Seg::key();
    write(&strs(&seg.with(&["-s", "100", "--raw"])), &[b'x'; 101])
        .expect_code(1)
        .stderr_has(&["was not created"]);
    assert!(!seg.exists());
    // An existing segment has its own size: -s does not matter then.
    write(&strs(&seg.with(&["-s", "8K"])), b"made").ok();
    write(&strs(&seg.with(&["-s", "100"])), b"fits the 8K one").ok();
    assert_eq!(read(&strs(&seg.args)).ok().stdout, b"fits the 8K one");
}

#[test]
fn raw_over_our_layouts_is_refused_and_snapshots_over_others_say_what_they_are() {
    let seg = Seg::name();
    write(&strs(&seg.args), b"framed").ok();
    write(&strs(&seg.with(&["--raw"])), b"raw")
        .expect_code(1)
        .stderr_has(&["shm-tools snapshot", "without --raw", "--remove"]);
    assert_eq!(read(&strs(&seg.args)).ok().stdout, b"framed");
    assert_eq!(info(&seg)["layout"], "framed");

    let c_string = Seg::name();
    write(&strs(&c_string.with(&["--raw"])), b"hello from C").ok();
    write(&strs(&c_string.args), b"framed")
        .expect_code(1)
        .stderr_has(&["a C string", "--raw", "--remove"]);

    let ring = Seg::name();
    let mut writer = Live::start(&mut write_cmd(&strs(&ring.with(&["--stream"]))));
    writer.send(b"in flight\n");
    while !ring.exists() || info(&ring)["layout"] != "stream" {
        thread::sleep(Duration::from_millis(5));
    }
    write(&strs(&ring.args), b"snapshot")
        .expect_code(1)
        .stderr_has(&["shm-write --stream", "shm-read --stream -n"]);
    write(&strs(&ring.with(&["--raw"])), b"raw")
        .expect_code(1)
        .stderr_has(&["shm-write --stream", "without --raw"]);
    let reader = Live::start(&mut read_cmd(&strs(&ring.with(&["--stream"]))));
    writer.close_stdin();
    writer.finish(LIMIT).ok();
    assert_eq!(reader.finish(LIMIT).ok().stdout, b"in flight\n");
}

/// Another user's object whose name holds a newline or an escape sequence
/// is listed escaped, never raw (a forged line, a terminal escape), and
/// such names are refused as addresses.
#[test]
fn names_with_control_characters_are_escaped_and_refused() {
    let raw = format!(
        "shm-tools-test-{}-evil\nshm-read: fine\x1b[31m",
        std::process::id()
    );
    let path = PathBuf::from("/dev/shm").join(&raw);
    std::fs::write(&path, b"planted").unwrap();
    let listed = read(&["--list"]);
    let _ = std::fs::remove_file(&path);
    listed.ok();
    let text = listed.stdout_str();
    assert!(
        !text.contains('\x1b'),
        "escape sequence printed raw\n{listed}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("shm-read: fine")),
        "forged line\n{listed}"
    );
    assert!(
        text.contains("-evil\\nshm-read: fine"),
        "object hidden from --list\n{listed}"
    );
    let refused = read(&["-n", "bad\nname"]);
    refused.expect_code(2);
    assert_eq!(refused.stderr.trim_end().lines().count(), 1, "{refused}");
}
