//! `--list --stale --remove` against a writer taking the same dead ring
//! over: no stream is lost while everyone exits 0. The remover holds the
//! ring's writer claim from its last look to the unlink, so a taker that
//! comes in that window is refused having changed nothing; a taker that
//! opened the ring before the unlink and claims it after sees it removed
//! and starts a new ring at the address.
//!
//! The window is a few microseconds, so gdb stops one side inside it
//! (a breakpoint at the system call that ends it) while the other runs:
//! deterministic, and nothing in the tools waits for a test. Skipped
//! without gdb.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

const READ: &str = env!("CARGO_BIN_EXE_shm-read");
const WRITE: &str = env!("CARGO_BIN_EXE_shm-write");

/// A scratch directory for the files the stopped side's helpers write.
struct Scratch(PathBuf);

impl Scratch {
    fn new(seg: &Seg) -> Scratch {
        let dir = std::env::temp_dir().join(format!("shm-tools-{}", seg.name_value().unwrap()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }

    fn text(&self, name: &str) -> String {
        std::fs::read_to_string(self.0.join(name)).unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `program ARGS` (plain words) under gdb (stdin from `stdin`), stopped at the first
/// hit of `breakpoint`, where `/bin/sh -c while_stopped` runs; then lets it
/// finish without breakpoints. None without gdb.
fn stopped_at(
    breakpoint: &str,
    while_stopped: &str,
    stdin: &str,
    program: &str,
    args: &[&str],
) -> Option<String> {
    let mut cmd = Command::new("gdb");
    cmd.args(["-q", "-batch", "-nx", "-ex", "set pagination off"])
        .args(["-ex", "set breakpoint pending on"])
        .args(["-ex", &format!("break {breakpoint}")])
        // run's own arguments replace --args: the program's go there.
        .args(["-ex", &format!("run {} < {stdin}", args.join(" "))])
        .args(["-ex", &format!("shell {while_stopped}")])
        .args(["-ex", "delete", "-ex", "continue", program]);
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    let out = finish(child, describe(&cmd), b"", BOUND);
    Some(format!("{}{}", out.stdout_str(), out.stderr))
}

/// The remover stopped at shm_unlink, after its last look: the ring's
/// writer claim is held (the ring shows a live writer), so a writer that
/// tries to take it over then is refused and nothing it sends is lost.
#[test]
fn a_writer_that_comes_between_the_last_stale_check_and_the_unlink_is_refused() {
    let seg = Seg::name();
    let name = seg.name_value().unwrap().to_owned();
    ring_of_a_killed_writer(&seg, "64K", b"OLD");
    let scratch = Scratch::new(&seg);
    let script = format!(
        "{READ} --info --json -n {name} > {info}; \
         echo NEW | {WRITE} --stream -n {name} 2> {err}; echo $? > {rc}",
        info = scratch.path("info"),
        err = scratch.path("err"),
        rc = scratch.path("rc"),
    );
    let Some(gdb) = stopped_at(
        "shm_unlink",
        &script,
        "/dev/null",
        READ,
        &["--list", "--stale", "--remove", "-n", &name],
    ) else {
        eprintln!("skipped: no gdb");
        return;
    };
    let info: serde_json::Value = serde_json::from_str(&scratch.text("info"))
        .unwrap_or_else(|e| panic!("no --info at the unlink ({e})\n{gdb}"));
    assert_eq!(
        info["stream_state"], "streaming",
        "the writer's claim is not held at the unlink\n{info}\n{gdb}"
    );
    let (rc, err) = (scratch.text("rc"), scratch.text("err"));
    assert_eq!(rc.trim(), "1", "the taker was not refused: {err}\n{gdb}");
    assert!(err.contains("already has a live stream writer"), "{err}");
    assert!(
        gdb.contains(&format!("removed POSIX name /{name}")),
        "{gdb}"
    );
    assert!(!seg.exists(), "{gdb}");
}

/// The taker stopped after opening the dead ring and before claiming it
/// (at the mmap of its 68K object) while the remover removes it: once
/// claimed, the ring is found removed, and the stream goes into a new ring
/// at the same address, where the reader gets it.
#[cfg(target_arch = "x86_64")]
#[test]
fn a_writer_that_opened_a_ring_before_its_removal_streams_into_a_new_one() {
    let seg = Seg::name();
    let name = seg.name_value().unwrap().to_owned();
    ring_of_a_killed_writer(&seg, "68K", b"OLD");
    let scratch = Scratch::new(&seg);
    std::fs::write(scratch.path("input"), "NEW\n").unwrap();
    let script = format!(
        "{READ} --list --stale --remove -n {name} > {removed} 2>&1",
        removed = scratch.path("removed"),
    );
    // mmap(addr, len, ...): len, in rsi, is the object's 69632 bytes.
    let Some(gdb) = stopped_at(
        "mmap if $rsi == 69632",
        &script,
        &scratch.path("input"),
        WRITE,
        &["--stream", "-n", &name],
    ) else {
        eprintln!("skipped: no gdb");
        return;
    };
    assert!(
        scratch
            .text("removed")
            .contains(&format!("removed POSIX name /{name}")),
        "the remover did not run while the taker was stopped: {}\n{gdb}",
        scratch.text("removed")
    );
    assert!(
        gdb.contains("exited normally"),
        "the taker did not exit 0\n{gdb}"
    );
    let out = read(&strs(&seg.with(&["--stream"])));
    assert_eq!(
        out.ok().stdout,
        b"NEW\n",
        "the stream was lost\n{out}\n{gdb}"
    );
}
