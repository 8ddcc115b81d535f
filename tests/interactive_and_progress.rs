//! A writer talking to a person: an interactive writer says what it reads,
//! and progress ticks every second, says what it waits for, clears its
//! line on Ctrl-C and keeps an inherited ignored SIGINT.
mod common;

use std::time::Duration;

use common::*;

/// Runs `args` with stdin a terminal (a pty from python3's pty module):
/// types `typed`, then Ctrl-D; returns the exit code and stderr, or None
/// without python3.
fn typed_into(args: &[&str], typed: &str) -> Option<(i32, String)> {
    const TYPIST: &str = r#"
import os, pty, subprocess, sys, time
master, slave = pty.openpty()
p = subprocess.Popen(sys.argv[2:], stdin=slave, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
os.close(slave)
time.sleep(0.2)
os.write(master, sys.argv[1].encode() + b"\x04")
err = p.communicate(timeout=20)[1]
sys.stdout.write(err.decode())
sys.exit(p.returncode)
"#;
    let out = python3(TYPIST, &[&[typed, tool_path("shm-write")], args].concat())?;
    Some((
        out.status.code()?,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

/// On a terminal, shm-write says on stderr what it does with what is
/// typed and that Ctrl-D finishes; from a pipe it stays silent.
#[test]
fn an_interactive_writer_says_what_it_reads() {
    let snapshot = Seg::name();
    let Some((code, note)) = typed_into(&strs(&snapshot.args), "hello\n") else {
        eprintln!("skipped: no python3 for a pty");
        return;
    };
    assert_eq!(code, 0, "{note}");
    assert!(
        note.starts_with("shm-write: reading stdin")
            && note.contains(&format!("POSIX name /{}", snapshot.name_value().unwrap()))
            && note.contains("Ctrl-D")
            && note.lines().count() == 1,
        "{note}"
    );
    assert_eq!(read(&strs(&snapshot.args)).ok().stdout, b"hello\n");

    let log = Seg::key();
    let (code, note) = typed_into(&strs(&log.with(&["--lines"])), "one\ntwo\n").unwrap();
    assert_eq!(code, 0, "{note}");
    assert!(
        note.contains("each line you type is appended to") && note.contains("Ctrl-D"),
        "{note}"
    );
    assert_eq!(read(&strs(&log.args)).ok().stdout, b"one\ntwo\n");

    let piped = Seg::name();
    let out = write(&strs(&piped.args), b"quiet\n");
    assert!(out.ok().stderr.is_empty(), "{out}");
}

/// `--progress=always` into a pipe writes a line every second even while
/// nothing moves, with the ring's fill and what the side waits for: its
/// input, then (ring full, nobody reading) a reader; the final line has
/// no status.
#[test]
fn progress_ticks_every_second_and_says_what_it_waits_for() {
    let seg = Seg::name();
    let mut writer = Live::start(&mut write_cmd(&strs(&seg.with(&[
        "--stream",
        "--size",
        "64K",
        "--progress=always",
    ]))));
    std::thread::sleep(Duration::from_millis(2300));
    writer.send(&random_bytes(100 << 10, 5));
    std::thread::sleep(Duration::from_millis(1300));
    writer.close_stdin();
    let reader = read(&strs(&seg.with(&["--stream", "--progress=always"])));
    reader.ok();
    assert_eq!(reader.stdout.len(), 100 << 10);
    let writer = writer.finish(Duration::from_secs(10));
    writer.ok();
    let lines: Vec<&str> = writer.stderr.lines().collect();
    let idle = lines
        .iter()
        .filter(|l| {
            l.starts_with("sent 0 B at 0 B/s, 00:00:0")
                && l.ends_with(", ring 0 B of 63.75 KiB (0%): waiting for input, no reader yet")
        })
        .count();
    assert!(idle >= 2, "a line a second while idle\n{writer}");
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("ring 63.75 KiB of 63.75 KiB (100%): waiting for a reader")),
        "{writer}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|l| l.starts_with("sent 100.00 KiB at ") && !l.contains("ring")),
        "{writer}"
    );
    assert!(!writer.stderr.contains('\r') && !writer.stderr.contains('\x1b'));
}

/// Runs python3 `script`, which starts `shm-write --stream --progress` on
/// a fresh name (its argv after the script) with stderr on a pty; None
/// without python3.
fn progress_writer_under(script: &str) -> Option<std::process::Output> {
    let seg = Seg::name();
    let progress = seg.with(&["--stream", "--progress"]);
    python3(
        script,
        &[vec![tool_path("shm-write")], strs(&progress)].concat(),
    )
}

/// On a terminal, the progress line is redrawn in place, and SIGINT
/// (Ctrl-C) erases it before the process dies of the signal, as it did
/// before. stderr is a pty from python3's pty module.
#[test]
fn progress_on_a_terminal_clears_its_line_on_ctrl_c() {
    const TERMINAL: &str = r#"
import os, pty, signal, subprocess, sys, time
master, slave = pty.openpty()
p = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=slave)
os.close(slave)
time.sleep(1.5)
p.send_signal(signal.SIGINT)
p.wait(timeout=10)
seen = b""
while True:
    try:
        chunk = os.read(master, 65536)
    except OSError:
        break
    if not chunk:
        break
    seen += chunk
sys.stdout.buffer.write(b"%d\n" % p.returncode + seen)
"#;
    let Some(out) = progress_writer_under(TERMINAL) else {
        eprintln!("skipped: no python3 for a pty");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (code, drawn) = text.split_once('\n').unwrap_or_default();
    assert_eq!(code, "-2", "died of SIGINT\n{text}");
    assert!(
        drawn.contains("sent 0 B") && drawn.contains("waiting for input, no reader yet"),
        "{text:?}"
    );
    assert!(drawn.ends_with("\r\x1b[2K"), "line not erased: {text:?}");
}

/// `trap '' INT` (or any launcher that ignores SIGINT) is kept: the
/// progress line's Ctrl-C handler is installed only over the default
/// action, as coreutils do.
#[test]
fn progress_keeps_an_inherited_ignored_sigint() {
    const TERMINAL: &str = r#"
import os, pty, signal, subprocess, sys, time
master, slave = pty.openpty()
signal.signal(signal.SIGINT, signal.SIG_IGN)
p = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=slave)
os.close(slave)
time.sleep(1.5)
p.send_signal(signal.SIGINT)
time.sleep(0.5)
alive = p.poll() is None
p.kill()
p.wait(timeout=10)
sys.stdout.write("alive\n" if alive else "died %d\n" % p.returncode)
"#;
    let Some(out) = progress_writer_under(TERMINAL) else {
        eprintln!("skipped: no python3 for a pty");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        text.trim(),
        "alive",
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
