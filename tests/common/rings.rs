//! Stream rings in the states that takeover, liveness and cleanup tests
//! start from, and racers released at one instant onto one ring.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{
    BOUND, Live, Output, Seg, describe, finish, read_cmd, strs, tool_path, wait_for_info, write_cmd,
};

/// A ring of `size` at `seg` whose writer sent `data` and was killed
/// (SIGKILL) before any reader came: stale, and a takeover candidate.
pub fn ring_of_a_killed_writer(seg: &Seg, size: &str, data: &[u8]) {
    let mut writer = Live::start(&mut write_cmd(&strs(&seg.with(&["--stream", "-s", size]))));
    writer.send(data);
    wait_for_info(seg, "the first writer's bytes", |i| {
        i["bytes_in_flight"] == data.len()
    });
    writer.kill();
    wait_for_info(seg, "the writer's death", |i| {
        i["stream_state"] == "writer died"
    });
}

/// A 64K ring at `seg` whose first reader was killed after it claimed the
/// ring and before any data came, so it read nothing; returns its writer,
/// alive and not yet sent anything.
pub fn ring_whose_reader_died_before_reading(seg: &Seg) -> Live {
    let writer = Live::start(&mut write_cmd(&strs(&seg.with(&["--stream", "-s", "64K"]))));
    wait_for_info(seg, "the ring", |i| i["stream_state"] == "streaming");
    let mut first = Live::start(&mut read_cmd(&strs(&seg.with(&["--stream"]))));
    wait_for_info(seg, "the first reader's claim", |i| {
        !i["reader_pid"].is_null()
    });
    first.kill();
    wait_for_info(seg, "the reader's death", |i| {
        i["stream_state"] == "reader died"
    });
    writer
}

/// A 64K ring at `seg` whose writer and reader were both killed after the
/// reader began to read (stopped first, so neither could notice the
/// other's death): the bytes it took are gone, nobody is left.
pub fn ring_whose_both_ends_died(seg: &Seg) {
    let mut writer = Live::start(&mut write_cmd(&strs(&seg.with(&["--stream", "-s", "64K"]))));
    // Less than ring and pipe hold together, so sending never blocks.
    writer.send(&vec![5u8; 100_000]);
    let mut reader = Live::start(&mut read_cmd(&strs(&seg.with(&["--stream", "--wait"]))));
    reader.wait_stdout(BOUND, "some bytes", |o| !o.is_empty());
    writer.stop();
    reader.stop();
    writer.kill();
    reader.kill();
    wait_for_info(seg, "both deaths on record", |i| {
        i["stream_state"] == "writer and reader died"
    });
}

/// Runs `child` to its end in a thread (within [`BOUND`]), feeding it
/// `stdin`; returns its output and the instant it ended.
pub fn finish_in_thread(
    child: Child,
    line: String,
    stdin: Vec<u8>,
) -> thread::JoinHandle<(Output, Instant)> {
    thread::spawn(move || {
        let out = finish(child, line, &stdin, BOUND);
        (out, Instant::now())
    })
}

/// One `tool ARGS` for each of `stdins`, released at one instant: each
/// runs as `sh -c 'read gate && exec TOOL ARGS'`, and once all are
/// waiting at the gate a newline frees them, so they start within
/// microseconds of each other. Each is then fed its input and finished in
/// a thread.
pub fn released_together(
    tool: &str,
    args: &[String],
    stdins: Vec<Vec<u8>>,
) -> Vec<thread::JoinHandle<(Output, Instant)>> {
    let mut gated: Vec<(Child, String)> = stdins
        .iter()
        .map(|_| {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", "read gate && exec \"$0\" \"$@\""])
                .arg(tool_path(tool))
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let line = describe(&cmd);
            (cmd.spawn().expect("spawn sh"), line)
        })
        .collect();
    // Time for every shell to reach its `read`.
    thread::sleep(Duration::from_millis(30));
    for (child, _) in &mut gated {
        child.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
    }
    gated
        .into_iter()
        .zip(stdins)
        .map(|((child, line), stdin)| finish_in_thread(child, line, stdin))
        .collect()
}

/// Waits (up to 10 s) until one of `racers` has ended: the race is
/// decided once the loser has given up.
pub fn until_one_ends<T>(racers: &[thread::JoinHandle<T>], what: &str) {
    let started = Instant::now();
    while !racers.iter().any(thread::JoinHandle::is_finished) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: none ended"
        );
        thread::sleep(Duration::from_millis(2));
    }
}

/// The outputs of racers that all ended.
pub fn outputs(racers: Vec<thread::JoinHandle<(Output, Instant)>>) -> Vec<Output> {
    racers.into_iter().map(|r| r.join().unwrap().0).collect()
}

/// The winner and the loser of a race of two: exactly one of `outs` must
/// have exited 0 (`context` goes into the failure message).
pub fn one_winner(outs: &[Output], context: &str) -> (usize, usize) {
    assert_eq!(outs.len(), 2, "a race of two");
    let winners: Vec<usize> = (0..2).filter(|&i| outs[i].code() == Some(0)).collect();
    assert_eq!(
        winners.len(),
        1,
        "{context}: not exactly one winner\n{}\n{}",
        outs[0],
        outs[1]
    );
    (winners[0], 1 - winners[0])
}

/// After a race of two stream writers, the reader that came next got
/// exactly the winner's stream, `expected`, and nothing of the loser's.
pub fn assert_got_the_winners_stream(reader: &Output, expected: &[u8], loser: &Output, round: u64) {
    reader.ok();
    assert!(
        reader.stdout == expected,
        "round {round}: the reader got {} bytes, not the winner's stream\nloser: {loser}",
        reader.stdout.len(),
    );
}
