//! Segments that lie, peers that die, users without permission, and many
//! writers and readers at once.

mod common;

use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use shm_tools::sys::{self, Mapping};

/// Attaches `seg` (by key) writable, for scribbling on its header.
fn attach(seg: &Seg) -> Mapping {
    let id = sys::shmget(seg.key_value().unwrap(), 0, 0).expect("segment exists");
    let size = sys::shm_stat(id).expect("stat").size;
    Mapping::attach_sysv(id, size, true).expect("attach")
}

type Scribble = Box<dyn Fn(&Mapping)>;

/// Stores `value` in the 64-bit header word at `offset`.
fn put64(offset: usize, value: u64) -> Scribble {
    Box::new(move |m| m.atomic_u64(offset).unwrap().store(value, Ordering::SeqCst))
}

/// Stores `value` in the 32-bit header word at `offset`.
fn put32(offset: usize, value: u32) -> Scribble {
    Box::new(move |m| m.atomic_u32(offset).unwrap().store(value, Ordering::SeqCst))
}

fn framed_segment(content: &[u8]) -> Seg {
    let seg = Seg::key();
    write(&strs(&seg.with(&["-s", "8K"])), content).ok();
    seg
}

#[test]
fn corrupt_header_fields_are_clear_errors() {
    let cases: [(&str, Scribble, &str); 8] = [
        ("capacity max", put64(16, u64::MAX), "capacity"),
        ("capacity zero", put64(16, 0), "capacity"),
        ("capacity past the end", put64(16, 8192), "capacity"),
        ("version", put32(8, 99), "version 99"),
        ("header size", put32(12, 0), "header size"),
        ("length max, slot 1", put64(56, u64::MAX), "length"),
        ("length past capacity", put64(56, 5000), "length"),
        ("published slot mid-write", put32(72, 7), "being written"),
    ];
    for (what, scribble, expected) in cases {
        let seg = framed_segment(b"intact");
        // One publish: slot 1 is the published one.
        scribble(&attach(&seg));
        let out = read(&strs(&seg.args));
        assert_eq!(out.code(), Some(1), "{what}\n{out}");
        out.stderr_has(&[expected, &seg.args[1]]);
        let info = read(&strs(&seg.with(&["--info"])));
        assert_ne!(
            info.code(),
            Some(0),
            "{what}: --info must not trust it either\n{info}"
        );
        assert!(!info.stderr.contains("panicked"), "{info}");
    }
}

#[test]
fn wrong_magic_reads_as_a_c_string_and_is_not_overwritten() {
    let seg = framed_segment(b"intact");
    attach(&seg).write(0, b"XX").unwrap();
    let out = read(&strs(&seg.args));
    out.ok();
    assert!(out.stdout.starts_with(b"XXMTFRAM"), "{out}");
    write(&strs(&seg.args), b"new")
        .expect_code(1)
        .stderr_has(&["--raw"]);
}

#[test]
fn any_seq_and_lock_values_are_survivable() {
    let seg = framed_segment(b"first");
    let map = attach(&seg);
    map.atomic_u32(24)
        .unwrap()
        .store(u32::MAX, Ordering::SeqCst);
    // The write lock's word (a robust lock at 80, word at 88) with every
    // bit set, FUTEX_OWNER_DIED included: a dead holder, taken over.
    map.atomic_u32(88)
        .unwrap()
        .store(u32::MAX, Ordering::SeqCst);
    drop(map);
    // seq is odd: slot 1 is still the published one.
    assert_eq!(read(&strs(&seg.args)).ok().stdout, b"first");
    run_limited(
        &mut write_cmd(&strs(&seg.args)),
        b"second",
        Duration::from_secs(5),
    )
    .ok();
    assert_eq!(read(&strs(&seg.args)).ok().stdout, b"second");
}

#[test]
fn writer_killed_holding_the_lock_loses_nothing() {
    let seg = framed_segment(b"old content");
    let mut cmd = write_cmd(&strs(&seg.args));
    cmd.env("SHM_TOOLS_TEST_HOLD_LOCK_MS", "30000");
    let mut child = spawn(&mut cmd);
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"never published").unwrap();
    }
    let pid = child.id();
    let started = Instant::now();
    while info(&seg)["lock_holder_pid"] != pid {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "writer never took the lock"
        );
        thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    assert_eq!(read(&strs(&seg.args)).ok().stdout, b"old content");
    let started = Instant::now();
    run_limited(
        &mut write_cmd(&strs(&seg.args)),
        b"next",
        Duration::from_secs(5),
    )
    .ok();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(read(&strs(&seg.args)).ok().stdout, b"next");
}

#[test]
fn readers_never_see_a_torn_or_mixed_version() {
    const WRITERS: usize = 3;
    const WRITES: usize = 25;
    const READERS: usize = 2;
    const READS: usize = 40;
    let seg = Seg::name();
    // Every version is one byte repeated; its length is tied to the byte.
    let payload = |byte: u8| vec![byte; 1000 + usize::from(byte) * 37];
    write(&strs(&seg.with(&["-s", "64K"])), &payload(b'a')).ok();
    thread::scope(|s| {
        for w in 0..WRITERS {
            let seg = &seg;
            s.spawn(move || {
                for i in 0..WRITES {
                    let byte = b'a' + u8::try_from((w * WRITES + i) % 26).unwrap();
                    write(&strs(&seg.args), &payload(byte)).ok();
                }
            });
        }
        for _ in 0..READERS {
            let seg = &seg;
            s.spawn(move || {
                for _ in 0..READS {
                    let out = read(&strs(&seg.args));
                    out.ok();
                    let first = out.stdout[0];
                    assert_eq!(out.stdout, payload(first), "torn or mixed read");
                }
            });
        }
    });
}

/// `tool ARGS` as user nobody, fed `stdin`.
fn run_as_nobody(tool: &str, args: &[&str], stdin: &[u8]) -> Output {
    run(&mut as_nobody(tool, args), stdin)
}

#[test]
fn permission_denied_names_owner_and_mode() {
    if !setpriv_available() {
        eprintln!("skipped: needs root and setpriv to drop to nobody");
        return;
    }
    for seg in [Seg::key(), Seg::name()] {
        write(&strs(&seg.args), b"private").ok();
        run_as_nobody("shm-read", &strs(&seg.args), b"")
            .expect_code(1)
            .stderr_has(&["permission denied", "owner root", "mode 0600", &seg.args[1]]);
        run_as_nobody("shm-write", &strs(&seg.args), b"intruder")
            .expect_code(1)
            .stderr_has(&["permission denied", "owner root"]);
        assert_eq!(read(&strs(&seg.args)).ok().stdout, b"private");
    }
    // Readable by others: nobody reads it, through a read-only attach.
    let shared = Seg::key();
    write(&strs(&shared.with(&["-m", "0644"])), b"for everyone").ok();
    assert_eq!(
        run_as_nobody("shm-read", &strs(&shared.args), b"")
            .ok()
            .stdout,
        b"for everyone"
    );
    run_as_nobody("shm-write", &strs(&shared.args), b"no")
        .expect_code(1)
        .stderr_has(&["permission denied"]);
}

/// A finished stream holding 1000 bytes that nobody has read yet.
fn ring_segment() -> Seg {
    let seg = Seg::key();
    run(
        &mut write_cmd(&strs(&seg.with(&["--stream", "-s", "64K"]))),
        &[b'r'; 1000],
    )
    .ok();
    seg
}

#[test]
fn corrupt_ring_headers_are_clear_errors() {
    // The reader's claim word as the kernel leaves a dead holder's, in a
    // ring it had begun to read (flags: WRITER_DONE | READER_BEGAN); one
    // that had not begun would be taken over (tests/takeover.rs).
    let dead_reader: Scribble = Box::new(|m| {
        put32(32, 1 | 8)(m);
        put32(216, sys::FUTEX_OWNER_DIED | 0x1234)(m);
    });
    let cases: [(&str, Scribble, &str); 7] = [
        ("tail past head", put64(128, 2000), "corrupt"),
        ("head past the ring", put64(64, 1 << 40), "corrupt"),
        ("capacity zero", put64(16, 0), "capacity"),
        ("capacity max", put64(16, u64::MAX), "capacity"),
        ("version", put32(8, 7), "version 7"),
        ("header size", put32(12, 4096), "header size"),
        ("dead reader in place", dead_reader, "died"),
    ];
    for (what, scribble, expected) in cases {
        let seg = ring_segment();
        scribble(&attach(&seg));
        let out = run_limited(
            &mut read_cmd(&strs(&seg.with(&["--stream"]))),
            b"",
            Duration::from_secs(10),
        );
        assert_eq!(out.code(), Some(1), "{what}\n{out}");
        out.stderr_has(&[expected]);
        for args in [&[][..], &["--info"][..]] {
            let out = run_limited(
                &mut read_cmd(&strs(&seg.with(args))),
                b"",
                Duration::from_secs(10),
            );
            assert!(!out.stderr.contains("panicked"), "{what}\n{out}");
        }
    }
}

#[test]
fn ring_whose_writer_vanished_without_finishing_ends_the_reader() {
    let seg = ring_segment();
    let map = attach(&seg);
    map.atomic_u32(32).unwrap().store(0, Ordering::SeqCst);
    // The writer's claim word, as the kernel leaves it for a writer that
    // died holding it.
    map.atomic_u32(200)
        .unwrap()
        .store(sys::FUTEX_OWNER_DIED | 0x1234, Ordering::SeqCst);
    drop(map);
    let out = run_limited(
        &mut read_cmd(&strs(&seg.with(&["--stream"]))),
        b"",
        Duration::from_secs(10),
    );
    out.expect_code(1).stderr_has(&["died after 1000 bytes"]);
    assert_eq!(out.stdout, vec![b'r'; 1000], "what did arrive is delivered");
}

#[test]
fn shm_read_into_a_closed_pipe_exits_quietly() {
    let seg = Seg::name();
    write(&strs(&seg.args), &random_bytes(8 << 20, 1)).ok();
    let reader = spawn(&mut read_cmd(&strs(&seg.args)));
    let out = read_then_close(reader, "shm-read", 10);
    out.ok();
    assert!(out.stderr.is_empty(), "{out}");
}

#[test]
fn sizes_beyond_dev_shm_name_the_limit() {
    let Ok(stat) = nix::sys::statvfs::statvfs("/dev/shm") else {
        return;
    };
    let total = stat.fragment_size() * stat.blocks();
    if total == 0 || total >= 1 << 40 {
        eprintln!("skipped: /dev/shm is unlimited or larger than the 1T --size limit");
        return;
    }
    let seg = Seg::name();
    let size = format!("{}M", (total >> 20) + 64);
    write(&strs(&seg.with(&["-s", &size])), b"x")
        .expect_code(1)
        .stderr_has(&["/dev/shm", "--size"]);
    assert!(
        !seg.exists(),
        "a segment that could not be sized is removed"
    );
}
