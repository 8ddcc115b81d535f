//! `--list`: scoped filters and stale removal, human sizes, a snapshot's
//! two slots, pids from another PID namespace; and `--offset` beside
//! `--count` peeking into any segment.
mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

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
