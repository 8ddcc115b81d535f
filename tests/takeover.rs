//! Restart without ceremony: a stream writer that finds a ring whose writer
//! is gone, and that no reader has begun to read, takes it over (and says
//! how many bytes it discarded); a reader that finds a ring whose reader
//! died before it began to read takes its place. Everything else stays
//! refused, and of two racers for one dead place exactly one wins while
//! the other changes nothing. (Across PID namespaces: liveness.rs,
//! killed_stream_writer_that_was_pid_1_of_its_namespace_is_taken_over.)

mod common;

use std::io::Read;
use std::process::{Command, Stdio};

use common::*;

/// Data capacity of a 64K ring.
const RING_64K: usize = 64 * 1024 - 256;

#[test]
fn a_writer_takes_over_a_ring_whose_writer_was_killed_before_any_reader_came() {
    for seg in [Seg::name(), Seg::key()] {
        ring_of_a_killed_writer(&seg, "64K", &random_bytes(1000, 99));
        let next = write(&strs(&seg.with(&["--stream"])), b"second try\n");
        next.ok().stderr_has(&[
            "shm-write: took over",
            "from a stream writer that died (pid ",
            "discarded the 1000 unread bytes",
        ]);
        assert_eq!(next.stderr.lines().count(), 1, "one line\n{next}");
        assert_eq!(info(&seg)["stream_state"], "writer done");
        let out = read(&strs(&seg.with(&["--stream"])));
        out.ok();
        assert_eq!(out.stdout, b"second try\n", "only the new stream\n{out}");
        assert!(!seg.exists(), "the reader removes the completed ring");
    }
}

/// A ring taken over with nothing in it (the writer died before sending)
/// says 0 bytes; an empty new stream is a stream too.
#[test]
fn an_empty_dead_ring_is_taken_over_by_an_empty_stream() {
    let seg = Seg::name();
    let mut writer = Live::start(&mut write_cmd(&strs(&seg.with(&["--stream", "-s", "64K"]))));
    wait_for_info(&seg, "the ring", |i| i["stream_state"] == "streaming");
    writer.kill();
    wait_for_info(&seg, "the writer's death", |i| {
        i["stream_state"] == "writer died"
    });
    write(&strs(&seg.with(&["--stream"])), b"")
        .ok()
        .stderr_has(&["discarded the 0 unread bytes"]);
    let out = read(&strs(&seg.with(&["--stream"])));
    out.ok();
    assert!(out.stdout.is_empty(), "{out}");
}

#[test]
fn a_live_writer_keeps_its_ring() {
    let seg = Seg::name();
    let mut first = Live::start(&mut write_cmd(&strs(&seg.with(&["--stream", "-s", "64K"]))));
    first.send(b"first ");
    wait_for_info(&seg, "the first bytes", |i| i["bytes_in_flight"] == 6);
    let before = seg.image();
    let second = write(&strs(&seg.with(&["--stream"])), b"second");
    second
        .expect_code(1)
        .stderr_has(&["already has a live stream writer", "one writer"]);
    assert!(!second.stderr.contains("took over"), "{second}");
    assert_eq!(seg.image(), before, "the refused writer changed the ring");
    first.send(b"stream\n");
    first.close_stdin();
    let out = read(&strs(&seg.with(&["--stream"])));
    first.finish(BOUND).ok();
    out.ok();
    assert_eq!(out.stdout, b"first stream\n");
}

/// A dead writer's ring that a live reader is draining (it is blocked on
/// a full stdout) is not taken from under it: the new writer is refused,
/// the ring is unchanged, and the reader gets every byte the dead writer
/// sent, then its error.
#[test]
fn a_ring_a_reader_is_draining_is_not_taken_over() {
    let seg = Seg::name();
    // More than a pipe holds (64 KiB), so the reader blocks.
    let sent = 200_000;
    ring_of_a_killed_writer(&seg, "256K", &random_bytes(sent, 99));
    // Nobody reads its stdout yet: it fills the pipe and blocks.
    let mut reader = Command::new(env!("CARGO_BIN_EXE_shm-read"))
        .args(seg.with(&["--stream"]))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_info(&seg, "the reader's claim", |i| !i["reader_pid"].is_null());
    let before = seg.image();
    let refused = write(&strs(&seg.with(&["--stream"])), b"new");
    refused
        .expect_code(1)
        .stderr_has(&["whose writer died", "live stream reader", "is reading"]);
    assert!(!refused.stderr.contains("took over"), "{refused}");
    assert_eq!(seg.image(), before, "the refused writer changed the ring");

    let mut got = Vec::new();
    reader.stdout.take().unwrap().read_to_end(&mut got).unwrap();
    let mut err = String::new();
    reader
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = reader.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("died after {sent} bytes")), "{err}");
    assert!(got == random_bytes(sent, 99), "the dead writer's bytes");
}

/// Both ends killed after the reader began: the bytes it took are lost,
/// so the ring is a broken stream, not a fresh start; a new writer is
/// refused, changing nothing, and so is a new reader.
#[test]
fn a_dead_writers_ring_that_a_reader_began_to_read_is_not_taken_over() {
    let seg = Seg::name();
    ring_whose_both_ends_died(&seg);
    let before = seg.image();
    let refused = write(&strs(&seg.with(&["--stream"])), b"new");
    refused
        .expect_code(1)
        .stderr_has(&["after a reader began to read it", "shm-read --remove"]);
    assert_eq!(seg.image(), before, "the refused writer changed the ring");
    read(&strs(&seg.with(&["--stream"])))
        .expect_code(1)
        .stderr_has(&["previous reader died"]);
    assert_eq!(seg.image(), before, "the refused reader changed the ring");
}

/// Two writers released at once onto one dead ring, each with more input
/// than the ring holds (so the winner is still streaming when the loser
/// decides). Exactly one takes it over; the other is refused, and the
/// reader gets exactly the winner's stream.
#[test]
fn two_writers_racing_to_take_over_one_dead_ring_one_wins_and_nothing_is_lost() {
    for round in 0..30_u64 {
        let seg = if round % 2 == 0 {
            Seg::name()
        } else {
            Seg::key()
        };
        ring_of_a_killed_writer(&seg, "64K", &random_bytes(500, 99));
        let data = [
            random_bytes(200_000, 2 * round + 1),
            random_bytes(200_000, 2 * round + 2),
        ];
        let writers = released_together("shm-write", &seg.with(&["--stream"]), data.to_vec());
        // The reader comes once the race is decided (the loser has ended).
        until_one_ends(&writers, &format!("round {round}: the writers"));
        let reader = run_limited(&mut read_cmd(&strs(&seg.with(&["--stream"]))), b"", BOUND);
        let outs = outputs(writers);
        let (winner, loser) = one_winner(&outs, &format!("round {round} (reader: {reader})"));
        assert_got_the_winners_stream(&reader, &data[winner], &outs[loser], round);
        outs[winner].stderr_has(&["took over", "discarded the 500 unread bytes"]);
        outs[loser]
            .expect_code(1)
            .stderr_has(&["already has a live stream writer"]);
        assert!(!outs[loser].stderr.contains("took over"), "{}", outs[loser]);
        assert!(!seg.exists(), "round {round}: the completed ring remains");
    }
}

/// A live writer's ring whose reader was killed before any data came (so
/// it read nothing): the writer is not failed by that death, and the
/// next reader takes the dead one's place and gets the whole stream.
#[test]
fn a_reader_takes_over_from_a_reader_killed_before_it_read_anything() {
    let seg = Seg::key();
    let mut writer = ring_whose_reader_died_before_reading(&seg);
    // The writer sees the dead reader's claim before this chunk, and goes on.
    let data = random_bytes(150_000, 5);
    writer.send(&data[..1000]);
    wait_for_info(&seg, "the first chunk", |i| i["bytes_in_flight"] == 1000);
    assert!(
        writer.child.try_wait().unwrap().is_none(),
        "the writer gave up on a reader that had read nothing"
    );
    let second = Live::start(&mut read_cmd(&strs(&seg.with(&["--stream"]))));
    writer.send(&data[1000..]);
    let wrote = writer.finish(BOUND);
    let out = second.finish(BOUND);
    wrote.ok();
    out.ok().stderr_has(&[
        "shm-read: took over",
        "from a stream reader that died (pid ",
        "before reading any of it",
    ]);
    assert_eq!(out.stderr.lines().count(), 1, "one line\n{out}");
    assert!(
        out.stdout == data,
        "the whole stream, {} bytes",
        out.stdout.len()
    );
    assert!(!seg.exists());
}

/// Two readers released at once onto a ring whose reader died before
/// reading: exactly one takes its place and gets the whole stream; the
/// other is refused.
#[test]
fn two_readers_racing_to_take_over_one_dead_readers_place_one_wins() {
    for round in 0..30_u64 {
        let seg = if round % 2 == 0 {
            Seg::name()
        } else {
            Seg::key()
        };
        let mut writer = ring_whose_reader_died_before_reading(&seg);
        let readers = released_together("shm-read", &seg.with(&["--stream"]), vec![Vec::new(); 2]);
        // More than the ring holds; the stream stays open until the loser
        // has decided, so the winner is still reading then.
        let data = random_bytes(RING_64K * 3, round);
        writer.send(&data);
        until_one_ends(&readers, &format!("round {round}: the readers"));
        let wrote = writer.finish(BOUND);
        let outs = outputs(readers);
        wrote.ok();
        let (winner, loser) = one_winner(&outs, &format!("round {round}"));
        assert!(
            outs[winner].stdout == data,
            "round {round}: the winner got {} bytes",
            outs[winner].stdout.len()
        );
        outs[winner].stderr_has(&["took over"]);
        outs[loser].expect_code(1);
        assert!(outs[loser].stdout.is_empty(), "{}", outs[loser]);
        assert!(!outs[loser].stderr.contains("took over"), "{}", outs[loser]);
        assert!(!seg.exists(), "round {round}: the completed ring remains");
    }
}

/// The writer finishes while the only reader so far lies dead, having read
/// nothing: the writer ends with exit 0 (its bytes wait in the ring, as for
/// a reader not come yet), --list does not call the ring stale, and the
/// next reader takes over and gets all of it.
#[test]
fn a_finished_stream_whose_reader_died_before_reading_waits_for_the_next() {
    let seg = Seg::name();
    let mut writer = ring_whose_reader_died_before_reading(&seg);
    writer.send(b"all of it\n");
    writer.finish(BOUND).ok();
    let listed = info(&seg);
    assert_eq!(listed["stale"], false, "{listed}");
    let out = read(&strs(&seg.with(&["--stream"])));
    out.ok().stderr_has(&["took over"]);
    assert_eq!(out.stdout, b"all of it\n");
    assert!(!seg.exists());
}
