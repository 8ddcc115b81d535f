//! Liveness and lock ownership that the kernel tracks (robust locks), not
//! pids: two stream writers racing for one new ring, and peers on both
//! sides of a PID-namespace boundary (`unshare --pid --fork`), as with
//! containers that share /dev/shm or the IPC namespace.

mod common;

use std::io::Write;
use std::process::Command;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Whether `unshare --pid --fork` works here (it needs root or user
/// namespaces); tests that need it skip with this reason otherwise.
fn unshare_unavailable() -> Option<&'static str> {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    let available = *AVAILABLE.get_or_init(|| {
        Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child", "true"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    (!available).then_some("skipped: `unshare --pid --fork --kill-child` is not permitted here")
}

/// `unshare --pid --fork --kill-child TOOL ARGS`: the tool runs as pid 1 of
/// a new PID namespace (sharing /dev/shm and System V IPC with us), and is
/// SIGKILLed when the unshare process is.
fn in_new_pid_namespace(tool: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--kill-child", "--"]);
    cmd.arg(tool_path(tool));
    cmd.args(args);
    cmd
}

/// SIGKILLs the tool that `unshare` (a [`Live`] made from
/// [`in_new_pid_namespace`]) runs, then unshare itself. The tool is killed
/// directly: killing unshare first would close the tool's stdin before
/// --kill-child reaches it, and it could end cleanly at end of input.
fn kill_in_namespace(live: &mut Live) {
    let pid = live.pid();
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .expect("unshare's children");
    let tools: Vec<i32> = children
        .split_whitespace()
        .map(|c| c.parse().unwrap())
        .collect();
    assert_eq!(tools.len(), 1, "unshare runs one tool: {children:?}");
    for tool in tools {
        let tool = nix::unistd::Pid::from_raw(tool);
        nix::sys::signal::kill(tool, nix::sys::signal::Signal::SIGKILL).unwrap();
    }
    live.kill();
}

/// Two `--stream` writers start at once on an address nobody uses, each
/// with more input than the ring holds; then a reader comes. Exactly one
/// writer may win; the loser must change nothing (it used to remove the
/// ring under the winner, losing the stream in about one race in three).
fn two_writers_race_for_one_new_ring(make: fn() -> Seg) {
    for round in 0..20_u64 {
        let seg = make();
        let data = [
            random_bytes(200_000, 2 * round + 1),
            random_bytes(200_000, 2 * round + 2),
        ];
        let args = seg.with(&["--stream", "-s", "64K"]);
        let writers = released_together("shm-write", &args, data.to_vec());
        // The reader comes once the race is decided (the loser has ended),
        // so a loser that removed the ring would leave it nothing to find.
        until_one_ends(&writers, &format!("round {round}: the writers"));
        let reader = run_limited(
            &mut read_cmd(&strs(&seg.with(&["--stream", "--timeout", "10s"]))),
            b"",
            BOUND,
        );
        let outs = outputs(writers);
        let (winner, loser) = one_winner(&outs, &format!("round {round} (reader: {reader})"));
        assert_got_the_winners_stream(&reader, &data[winner], &outs[loser], round);
        assert!(!seg.exists(), "round {round}: the completed ring remains");
        outs[loser]
            .expect_code(1)
            .stderr_has(&["already has a", "stream writer", "one writer"]);
    }
}

#[test]
fn two_stream_writers_racing_for_a_new_posix_ring_one_wins_and_nothing_is_lost() {
    two_writers_race_for_one_new_ring(Seg::name);
}

#[test]
fn two_stream_writers_racing_for_a_new_sysv_ring_one_wins_and_nothing_is_lost() {
    two_writers_race_for_one_new_ring(Seg::key);
}

/// A stream whose writer and reader sit in different PID namespaces: each
/// side's pid means nothing to the other, yet both must end with exit 0.
/// The input pauses halfway, so the reader waits on an empty ring and
/// looks at the writer's liveness meanwhile.
fn stream_across_a_pid_namespace(writer_inside: bool) {
    if let Some(why) = unshare_unavailable() {
        eprintln!("{why}");
        return;
    }
    let seg = Seg::name();
    let data = random_bytes(50 << 20, if writer_inside { 11 } else { 12 });
    let write_args = seg.with(&["--stream"]);
    let read_args = seg.with(&["--stream", "--wait", "--timeout", "20s"]);
    let mut writer_cmd = if writer_inside {
        in_new_pid_namespace("shm-write", &strs(&write_args))
    } else {
        write_cmd(&strs(&write_args))
    };
    let mut reader_cmd = if writer_inside {
        read_cmd(&strs(&read_args))
    } else {
        in_new_pid_namespace("shm-read", &strs(&read_args))
    };
    let reader = Live::start(&mut reader_cmd);
    let mut writer = Live::start(&mut writer_cmd);
    let mut stdin = writer.child.stdin.take().expect("stdin");
    let input = data.clone();
    // A thread, so a writer that stops reading cannot block the test.
    let feeder = thread::spawn(move || {
        let (first, second) = input.split_at(input.len() / 2);
        let _ = stdin.write_all(first);
        thread::sleep(Duration::from_millis(500));
        let _ = stdin.write_all(second);
    });
    let writer = writer.finish(BOUND);
    let reader = reader.finish(BOUND);
    feeder.join().unwrap();
    writer.ok();
    reader.ok();
    assert!(
        reader.stdout == data,
        "stream differs: {} bytes of {}",
        reader.stdout.len(),
        data.len()
    );
    assert!(!seg.exists(), "a completed stream removes its ring");
}

#[test]
fn stream_from_a_writer_in_a_child_pid_namespace_arrives_and_both_exit_0() {
    stream_across_a_pid_namespace(true);
}

#[test]
fn stream_to_a_reader_in_a_child_pid_namespace_arrives_and_both_exit_0() {
    stream_across_a_pid_namespace(false);
}

/// A stream writer that is pid 1 of its namespace, killed mid-stream
/// before any reader came: --info and --list outside say it died, and the
/// next writer, outside, is not told it is alive but takes its ring over
/// (no reader had begun to read it); a reader then gets the new stream.
#[test]
fn killed_stream_writer_that_was_pid_1_of_its_namespace_is_taken_over() {
    if let Some(why) = unshare_unavailable() {
        eprintln!("{why}");
        return;
    }
    let seg = Seg::key();
    let mut writer = Live::start(&mut in_new_pid_namespace(
        "shm-write",
        &strs(&seg.with(&["--stream", "-s", "64K"])),
    ));
    // More than the ring holds: it blocks, full, until killed.
    writer.send(&vec![9u8; 100_000]);
    let full = 64 * 1024 - 256;
    wait_for_info(&seg, "a full ring", |i| i["bytes_in_flight"] == full);
    kill_in_namespace(&mut writer);
    wait_for_info(&seg, "the writer's death", |i| {
        i["stream_state"] == "writer died"
    });
    let list = read(&["--list"]);
    list.ok();
    assert!(
        list.stdout_str()
            .lines()
            .any(|row| row.contains(&seg.args[1]) && row.contains(", writer died; STALE")),
        "{list}"
    );

    let next = run_limited(
        &mut write_cmd(&strs(&seg.with(&["--stream"]))),
        b"next",
        Duration::from_secs(10),
    );
    next.ok().stderr_has(&[
        "took over",
        "writer that died",
        &format!("discarded the {full} unread bytes"),
    ]);
    assert!(!next.stderr.contains("live"), "{next}");
    let out = run_limited(
        &mut read_cmd(&strs(&seg.with(&["--stream"]))),
        b"",
        Duration::from_secs(10),
    );
    out.ok();
    assert_eq!(out.stdout, b"next", "only the new stream");
    assert!(!seg.exists(), "the reader removes the completed ring");
}

/// The same writer killed while a reader outside its namespace is waiting
/// for more: the reader ends promptly with exit 1, not never.
#[test]
fn reader_outside_ends_promptly_when_a_pid_1_writer_is_killed_mid_stream() {
    if let Some(why) = unshare_unavailable() {
        eprintln!("{why}");
        return;
    }
    let seg = Seg::name();
    let mut writer = Live::start(&mut in_new_pid_namespace(
        "shm-write",
        &strs(&seg.with(&["--stream", "-s", "64K"])),
    ));
    writer.send(&vec![3u8; 10_000]);
    let reader = Live::start(&mut read_cmd(&strs(&seg.with(&[
        "--stream",
        "--wait",
        "--timeout",
        "20s",
    ]))));
    reader.wait_stdout(BOUND, "10000 bytes", |o| o.len() == 10_000);
    kill_in_namespace(&mut writer);
    let out = reader.finish_promptly(Instant::now());
    out.expect_code(1)
        .stderr_has(&["died after 10000 bytes", "incomplete"]);
    assert!(!seg.exists(), "the reader removes a broken ring");
}

/// Both ends of a stream killed at once (stopped first, so neither can
/// notice the other): the ring remains, and --info says both died.
#[test]
fn a_stream_whose_both_ends_died_shows_both_dead() {
    let seg = Seg::name();
    ring_whose_both_ends_died(&seg);
    read(&strs(&seg.with(&["--stream"])))
        .expect_code(1)
        .stderr_has(&["previous reader died"]);
    assert!(seg.exists(), "nobody is left to remove it");
}

/// Snapshot writers on both sides of a PID-namespace boundary: the second
/// must wait for the first's write lock (it used to take a live holder's
/// lock as dead), and every read meanwhile is one whole version.
fn snapshot_writers_across_a_pid_namespace(holder_inside: bool) {
    if let Some(why) = unshare_unavailable() {
        eprintln!("{why}");
        return;
    }
    let seg = Seg::name();
    // Every version is one byte repeated; its length is tied to the byte.
    let payload = |byte: u8| vec![byte; 100_000 + usize::from(byte) * 1000];
    write(&strs(&seg.with(&["-s", "1M"])), &payload(b'a')).ok();
    let mut holder_cmd = if holder_inside {
        in_new_pid_namespace("shm-write", &strs(&seg.args))
    } else {
        write_cmd(&strs(&seg.args))
    };
    holder_cmd.env("SHM_TOOLS_TEST_HOLD_LOCK_MS", "2500");
    let holder = finish_in_thread(spawn(&mut holder_cmd), describe(&holder_cmd), payload(b'b'));
    wait_for_info(&seg, "the first writer holding the lock", |i| {
        !i["lock_holder_pid"].is_null()
    });
    let mut second_cmd = if holder_inside {
        write_cmd(&strs(&seg.args))
    } else {
        in_new_pid_namespace("shm-write", &strs(&seg.args))
    };
    // Held briefly too, so two writers that both believed they held the
    // lock would be copying at the same time.
    second_cmd.env("SHM_TOOLS_TEST_HOLD_LOCK_MS", "200");
    let second = finish_in_thread(spawn(&mut second_cmd), describe(&second_cmd), payload(b'c'));
    let mut reads = 0;
    while !second.is_finished() {
        let out = read(&strs(&seg.args));
        out.ok();
        let first = out.stdout[0];
        assert!(out.stdout == payload(first), "torn or mixed read: {first}");
        reads += 1;
    }
    let (holder, holder_done) = holder.join().unwrap();
    let (second, second_done) = second.join().unwrap();
    holder.ok();
    second.ok();
    assert!(
        second_done + Duration::from_millis(100) >= holder_done,
        "the second writer finished before the lock holder did: it took a live holder's lock\n{second}"
    );
    assert!(
        second.stderr.contains("waiting for a live process"),
        "{second}"
    );
    assert_eq!(read(&strs(&seg.args)).ok().stdout, payload(b'c'));
    assert!(reads > 0);
}

#[test]
fn snapshot_writer_outside_waits_for_a_lock_holder_in_a_child_pid_namespace() {
    snapshot_writers_across_a_pid_namespace(true);
}

#[test]
fn snapshot_writer_in_a_child_pid_namespace_waits_for_a_lock_holder_outside() {
    snapshot_writers_across_a_pid_namespace(false);
}

/// A snapshot writer killed with SIGKILL while it holds the write lock, as
/// pid 1 of its own namespace: the next writer, outside, takes the lock
/// over at once (not after the 10 s patience for live holders), and the
/// old content is intact until then.
#[test]
fn killed_lock_holder_in_another_pid_namespace_is_taken_over_promptly() {
    if let Some(why) = unshare_unavailable() {
        eprintln!("{why}");
        return;
    }
    let seg = Seg::key();
    write(&strs(&seg.args), b"old content").ok();
    let mut cmd = in_new_pid_namespace("shm-write", &strs(&seg.args));
    cmd.env("SHM_TOOLS_TEST_HOLD_LOCK_MS", "30000");
    let mut holder = Live::start(&mut cmd);
    holder.send(b"never published");
    holder.close_stdin();
    wait_for_info(&seg, "the writer holding the lock", |i| {
        !i["lock_holder_pid"].is_null()
    });
    kill_in_namespace(&mut holder);
    assert_eq!(read(&strs(&seg.args)).ok().stdout, b"old content");
    let started = Instant::now();
    let next = run_limited(&mut write_cmd(&strs(&seg.args)), b"next", BOUND);
    next.ok();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}\n{next}",
        started.elapsed()
    );
    assert_eq!(read(&strs(&seg.args)).ok().stdout, b"next");
}

/// --info and --list show a write lock whose holder was killed as such
/// (not as held by a pid), until the next writer takes it over.
#[test]
fn killed_lock_holder_shows_as_dead_in_info_and_list() {
    let seg = Seg::name();
    write(&strs(&seg.args), b"old content").ok();
    let mut cmd = write_cmd(&strs(&seg.args));
    cmd.env("SHM_TOOLS_TEST_HOLD_LOCK_MS", "30000");
    let mut holder = Live::start(&mut cmd);
    holder.send(b"never published");
    holder.close_stdin();
    wait_for_info(&seg, "the writer holding the lock", |i| {
        i["lock"] == "held" && i["lock_holder_pid"] == holder.pid()
    });
    holder.kill();
    wait_for_info(&seg, "the holder's death on record", |i| {
        i["lock"] == "holder died" && i["lock_holder_pid"].is_null()
    });
    let list = read(&["--list"]);
    list.ok();
    let name = seg.name_value().unwrap();
    assert!(
        list.stdout_str()
            .lines()
            .any(|row| row.contains(name) && row.contains(", write lock holder died; STALE")),
        "{list}"
    );
    write(&strs(&seg.args), b"next").ok();
    assert_eq!(info(&seg)["lock"], "free");
    assert_eq!(read(&strs(&seg.args)).ok().stdout, b"next");
}

/// A `shm-write --stream` refused because the segment holds something
/// else (a snapshot, a C program's bytes) leaves every byte of it as it
/// was, and its message says what is there instead of advising to remove
/// a "stream whose writer died".
#[test]
fn a_refused_stream_writer_changes_nothing() {
    // A snapshot whose content spans the ring's claim bytes (192..208).
    let seg = Seg::name();
    let content: Vec<u8> = (0..400u32).map(|i| b'A' + (i % 26) as u8).collect();
    write(&strs(&seg.with(&["-s", "4096"])), &content).ok();
    write(&strs(&seg.args), &content).ok();
    let before = seg.image();
    let refused = write(&strs(&seg.with(&["--stream"])), b"hi\n");
    refused.expect_code(1).stderr_has(&["already holds data"]);
    assert!(!refused.stderr.contains("died"), "{refused}");
    assert_eq!(
        seg.image(),
        before,
        "the refused writer changed the segment"
    );
    assert_eq!(read(&strs(&seg.args)).ok().stdout, content);

    // Foreign bytes whose would-be claim word reads as free.
    let foreign = Seg::name();
    let path = foreign.dev_shm_path();
    let mut image = vec![0xaa_u8; 4096];
    image[200..204].fill(0);
    std::fs::write(&path, &image).unwrap();
    write(&strs(&foreign.with(&["--stream"])), b"hi\n").expect_code(1);
    assert_eq!(
        foreign.image(),
        image,
        "the refused writer changed foreign bytes"
    );
}
