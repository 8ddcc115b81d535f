//! Hints and filters: hints that fit what was asked for, an
//! interactive writer that says what it does, scoped `--list` filters and
//! removal, `--offset`, what `--list` shows, progress that ticks, Python's
//! SharedMemory, and the generated man pages and completions.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// Every way of asking for a log's records that finds no segment names
/// the log writer (which then works) and `--wait`, never a snapshot write
/// that `--lines` would refuse.
#[test]
fn a_follower_of_a_missing_log_is_told_to_start_the_log_writer() {
    for seg in [Seg::name(), Seg::key()] {
        let flag = seg.args.join(" ");
        for ask in [
            &["-F"][..],
            &["--follow", "--new"],
            &["--tail", "3"],
            &["-F", "--lossless"],
        ] {
            let out = read(&strs(&seg.with(ask)));
            out.expect_code(3)
                .stderr_has(&[&format!("shm-write --lines {flag}"), "--wait"]);
            assert!(!out.stderr.contains("echo hello"), "{out}");
        }
        // The hint, followed, works.
        write(&strs(&seg.with(&["--lines"])), b"one\ntwo\n").ok();
        let tail = read(&strs(&seg.with(&["--tail", "1"])));
        assert_eq!(tail.ok().stdout, b"two\n");
    }
    // A plain read still suggests a snapshot write.
    let seg = Seg::name();
    read(&strs(&seg.args))
        .expect_code(3)
        .stderr_has(&["echo hello | shm-write"]);
}

/// `--stream` on a log or a snapshot suggests reading it as what it is,
/// not starting a stream writer there (which would be refused).
#[test]
fn stream_on_a_log_or_snapshot_suggests_what_works() {
    let log = Seg::name();
    write(&strs(&log.with(&["--lines"])), b"line\n").ok();
    let snapshot = Seg::key();
    write(&strs(&snapshot.args), b"state").ok();
    for (seg, what, content) in [
        (&log, "is a log", &b"line\n"[..]),
        (&snapshot, "is a snapshot", b"state"),
    ] {
        let flag = seg.args.join(" ");
        let out = read(&strs(&seg.with(&["--stream"])));
        out.expect_code(1)
            .stderr_has(&[what, &format!("read it with shm-read {flag}")]);
        assert!(!out.stderr.contains("shm-write --stream"), "{out}");
        // The stream writer the old hint named is refused there.
        write(&strs(&seg.with(&["--stream"])), b"x").expect_code(1);
        assert_eq!(read(&strs(&seg.args)).ok().stdout, content);
    }
}

/// The man pages' synopses show each option's value, and the completion
/// files carry the names their shells look for, so they are copied as
/// generated: bash loads `completions/shm-write` for `shm-write`.
#[test]
fn man_synopses_have_values_and_completions_their_names() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("assets2-{}", std::process::id()));
    shm_tools::cli::assets::generate(&dir).expect("generate");
    let man = std::fs::read_to_string(dir.join("shm-read.1")).unwrap();
    let synopsis = man
        .split(".SH SYNOPSIS\n")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap()
        .to_owned();
    for part in [
        "\\fB\\-k\\fR|\\fB\\-\\-key\\fR \\fIKEY\\fR",
        "\\fB\\-t\\fR|\\fB\\-\\-timeout\\fR \\fIDURATION\\fR",
        "\\fB\\-\\-progress\\fR[=\\fIWHEN\\fR]",
        "[\\fB\\-\\-stale\\fR]",
    ] {
        assert!(synopsis.contains(part), "{part} not in {synopsis}");
    }
    let write_man = std::fs::read_to_string(dir.join("shm-write.1")).unwrap();
    assert!(write_man.contains("\\fB\\-\\-size\\fR \\fISIZE\\fR"));
    for tool in ["shm-write", "shm-read"] {
        let script = format!(". {}/bash/{tool} && complete -p {tool}", dir.display());
        let out = run(Command::new("bash").args(["-c", &script]), b"");
        assert!(out.ok().stdout_str().contains(tool), "{out}");
        assert!(dir.join(format!("zsh/_{tool}")).is_file());
        assert!(dir.join(format!("fish/{tool}.fish")).is_file());
    }
    std::fs::remove_dir_all(&dir).unwrap();
    let help = read(&["--help"]);
    assert!(
        help.ok()
            .stdout_str()
            .contains("with --list --remove: remove them")
    );
}

const SCOPED_REMOVAL: &str = r#"
        set -u
        mount --make-rprivate / && mount -t tmpfs -o mode=1777 tmpfs /dev/shm || exit 77
        as_nobody() { exec setpriv --reuid nobody --regid nogroup --clear-groups "$@"; }
        pids=
        for n in mine-a mine-b; do
            echo x | SHM_TOOLS_TEST_HOLD_LOCK_MS=30000 "$W" -n $n 2>/dev/null & pids="$pids $!"
        done
        echo x | SHM_TOOLS_TEST_HOLD_LOCK_MS=30000 "$W" -k 0x7701 2>/dev/null & pids="$pids $!"
        for n in theirs-1 theirs-2; do
            echo x | SHM_TOOLS_TEST_HOLD_LOCK_MS=30000 as_nobody "$W" -n $n 2>/dev/null & pids="$pids $!"
        done
        echo x | SHM_TOOLS_TEST_HOLD_LOCK_MS=30000 as_nobody "$W" -k 0x7702 2>/dev/null & pids="$pids $!"
        echo ok | "$W" -n mine-healthy
        i=0
        until [ "$("$R" --list --json | grep -o '"lock":"held"' | wc -l)" = 6 ]; do
            i=$((i+1)); [ $i -lt 500 ] || { echo "setup timed out"; exit 1; }; sleep 0.01
        done
        kill -9 $pids; wait 2>/dev/null
        echo "== name"; "$R" --list -n mine-a
        echo "== key"; "$R" --list -k 0x7702
        echo "== prefix"; "$R" --list --prefix mine-
        echo "== owner"; "$R" --list --owner nobody --stale
        echo "== remove one"; "$R" --list --stale --remove -n mine-a; echo "exit $?"
        echo "== remove unfiltered"; "$R" --list --stale --remove; echo "exit $?"
        echo "== remove theirs by prefix"; "$R" --list --stale --remove --owner nobody --prefix theirs-1; echo "exit $?"
        echo "== remove all users"; "$R" --list --stale --remove --all-users; echo "exit $?"
        echo "== after"; "$R" --list
    "#;

/// `--list` narrowed by an address, `--prefix` and `--owner`, and
/// `--list --stale --remove` limited the same way. Without a filter, root
/// removes only its own stale segments and names the others with what
/// would include them; `--all-users` does. Other users' segments are made
/// by writers run as nobody (setpriv), all killed while holding the write
/// lock; in private IPC and mount namespaces, so that only this test's
/// segments are there to remove.
#[test]
fn list_filters_and_scoped_stale_removal() {
    if !setpriv_available() {
        eprintln!("skipped: needs root and setpriv");
        return;
    }
    let Some(out) = in_private_ipc_and_mount(SCOPED_REMOVAL) else {
        return;
    };
    let text = out.stdout_str();
    let section =
        |name: &str| -> Vec<String> { section(&text, name).lines().map(str::to_owned).collect() };
    let rows = |name: &str| -> Vec<String> {
        section(name)
            .iter()
            .skip(1)
            .map(|l| l.split("  ").next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(rows("name"), ["-n mine-a"], "{out}");
    assert_eq!(rows("key"), ["-k 0x00007702"], "{out}");
    assert_eq!(
        rows("prefix"),
        ["-n mine-a", "-n mine-b", "-n mine-healthy"],
        "{out}"
    );
    assert_eq!(
        rows("owner"),
        ["-k 0x00007702", "-n theirs-1", "-n theirs-2"],
        "{out}"
    );
    let one = section("remove one");
    assert_eq!(one.len(), 2, "{out}");
    assert!(one[0].starts_with("removed POSIX name /mine-a: "), "{out}");
    let unfiltered = section("remove unfiltered").join("\n");
    assert_eq!(unfiltered.matches("removed ").count(), 2, "{out}");
    assert!(unfiltered.contains("removed POSIX name /mine-b"), "{out}");
    assert_eq!(unfiltered.matches("skipped ").count(), 3, "{out}");
    assert!(
        unfiltered.contains("skipped POSIX name /theirs-1: owned by nobody")
            && unfiltered.contains("--owner nobody or --all-users")
            && unfiltered.ends_with("exit 0"),
        "{out}"
    );
    let theirs = section("remove theirs by prefix");
    assert_eq!(theirs.len(), 2, "{out}");
    assert!(
        theirs[0].starts_with("removed POSIX name /theirs-1"),
        "{out}"
    );
    let all = section("remove all users").join("\n");
    assert_eq!(all.matches("removed ").count(), 2, "{out}");
    assert!(all.ends_with("exit 0"), "{out}");
    assert_eq!(rows("after"), ["-n mine-healthy"], "{out}");

    read(&["--list", "--all-users"])
        .expect_code(2)
        .stderr_has(&["--stale --remove"]);
    read(&["--list", "--owner", "no-such-user-h18"])
        .expect_code(2)
        .stderr_has(&["no-such-user-h18"]);
}

/// `--offset N` beside `-c` on every kind of segment: a snapshot's
/// content, a foreign C string, a struct's bytes with `--all` (NULs
/// included), a stream's bytes in flight; the hex dump counts from the
/// offset, as `xxd -s` does; past the end it prints nothing; a log points
/// to `--tail`.
#[test]
fn offset_beside_count_peeks_into_any_segment() {
    for seg in [Seg::name(), Seg::key()] {
        write(&strs(&seg.args), b"hello world").ok();
        let peek = read(&strs(&seg.with(&["--offset", "6", "-c", "3"])));
        assert_eq!(peek.ok().stdout, b"wor");
        let rest = read(&strs(&seg.with(&["--skip", "6"])));
        assert_eq!(rest.ok().stdout, b"world");
        let past = read(&strs(&seg.with(&["--offset", "100"])));
        assert!(past.ok().stdout.is_empty());
        let hex = read(&strs(&seg.with(&["--offset", "6", "--hex"])));
        assert_eq!(
            hex.ok().stdout_str(),
            "00000006: 776f 726c 64                             world\n"
        );
    }
    // A C program's struct: a string, then binary fields with NULs.
    let raw = Seg::key();
    let record = b"abc\0\x01\x00\x00\x00\xff\xfe\x00\x07";
    write(&strs(&raw.with(&["--raw"])), record).ok();
    let string = read(&strs(&raw.with(&["--offset", "1"])));
    assert_eq!(string.ok().stdout, b"bc");
    let field = read(&strs(&raw.with(&["--all", "--offset", "8", "-c", "4"])));
    assert_eq!(field.ok().stdout, &record[8..12]);
    // A stream's bytes in flight, peeked at without draining them.
    let stream = Seg::name();
    write(&strs(&stream.with(&["--stream"])), b"0123456789").ok();
    let peek = read(&strs(&stream.with(&["--offset", "4", "-c", "2"])));
    assert_eq!(peek.ok().stdout, b"45");
    let drained = read(&strs(&stream.with(&["--stream"])));
    assert_eq!(drained.ok().stdout, b"0123456789");
    // A log counts records, not bytes.
    let log = Seg::name();
    write(&strs(&log.with(&["--lines"])), b"one\n").ok();
    read(&strs(&log.with(&["--offset", "1"])))
        .expect_code(2)
        .stderr_has(&["is a log", "--tail"]);
    read(&strs(&log.with(&["--offset", "1", "-F"]))).expect_code(2);
}

/// The `--list` row of `seg`, from a fresh listing.
fn list_row(seg: &Seg) -> String {
    let listing = read(&["--list"]);
    let wanted = format!("{} ", seg.args.join(" "));
    listing
        .ok()
        .stdout_str()
        .lines()
        .find(|l| l.starts_with(&wanted))
        .unwrap_or_else(|| panic!("{wanted} not listed\n{listing}"))
        .to_owned()
}

/// `--list` text shows sizes for people, and a snapshot's size as its two
/// slots (a 48.83 KiB content in a 100 KiB segment); JSON keeps bytes.
#[test]
fn list_sizes_are_human_and_a_snapshot_shows_its_two_slots() {
    let snapshot = Seg::key();
    write(&strs(&snapshot.args), &random_bytes(50_000, 7)).ok();
    let row = list_row(&snapshot);
    assert!(
        row.contains(" 100.00 KiB ")
            && row.contains("framed, 48.83 KiB in one of two 49.94 KiB slots, written 20"),
        "{row}"
    );
    let meta = info(&snapshot);
    assert_eq!(
        (meta["size"].as_u64(), meta["capacity"].as_u64()),
        (Some(102_400), Some(51_136))
    );
    let json: serde_json::Value =
        serde_json::from_slice(&read(&["--list", "--json"]).ok().stdout).unwrap();
    let listed = json
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == snapshot.args[1])
        .expect("listed");
    assert_eq!(listed["size"], 102_400);
    let log = Seg::name();
    write(&strs(&log.with(&["--lines"])), b"a line\n").ok();
    assert!(list_row(&log).contains(" 1.00 MiB ") && list_row(&log).contains("(7 B) held"));
}

/// A stream writer in another PID namespace is listed with its pid
/// marked, as error messages qualify it; one of ours is not.
#[test]
fn list_marks_pids_from_another_pid_namespace() {
    let probe = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "true"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: `unshare --pid --fork` is not permitted here");
        return;
    }
    let (theirs, ours) = (Seg::name(), Seg::name());
    let mut contained = Command::new("unshare");
    contained
        .args(["--pid", "--fork", "--kill-child", "--"])
        .arg(env!("CARGO_BIN_EXE_shm-write"))
        .args(theirs.with(&["--stream"]));
    let mut in_container = Live::start(&mut contained);
    let mut local = Live::start(&mut write_cmd(&strs(&ours.with(&["--stream"]))));
    let streaming = |seg: &Seg| {
        let started = std::time::Instant::now();
        while !read(&strs(&seg.with(&["--info", "--json"])))
            .stdout_str()
            .contains("\"streaming\"")
        {
            assert!(started.elapsed() < Duration::from_secs(10), "no stream");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    streaming(&theirs);
    streaming(&ours);
    let row = list_row(&theirs);
    assert!(
        row.contains("writer 1 (in another PID namespace), reader -"),
        "{row}"
    );
    let row = list_row(&ours);
    assert!(
        row.contains(&format!("writer {}, reader -", local.pid())),
        "{row}"
    );
    in_container.close_stdin();
    local.close_stdin();
    in_container.finish(Duration::from_secs(10)).ok();
    local.finish(Duration::from_secs(10)).ok();
}

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
