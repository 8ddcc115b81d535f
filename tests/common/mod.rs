//! Test support: run the real binaries with a bound on time, unique
//! segment addresses, and guards that remove segments even when a test
//! panics.
#![allow(dead_code, reason = "each test binary uses its own subset")]

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// What a finished command left.
#[derive(Debug)]
pub struct Output {
    pub line: String,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Panics with the command and both streams unless it exited `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), Some(code), "unexpected exit status\n{self}");
        assert!(!self.stderr.contains("panicked"), "panic\n{self}");
        self
    }

    pub fn ok(&self) -> &Self {
        self.expect_code(0)
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panics unless stderr contains every one of `parts`.
    pub fn stderr_has(&self, parts: &[&str]) -> &Self {
        for part in parts {
            assert!(self.stderr.contains(part), "stderr lacks {part:?}\n{self}");
        }
        assert_eq!(
            self.stderr.trim_end().lines().count(),
            1,
            "error is not one line\n{self}"
        );
        self
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = &self.stdout[..self.stdout.len().min(2000)];
        write!(
            f,
            "command: {}\nstatus: {}\nstdout ({} bytes): {}\nstderr: {}",
            self.line,
            self.status,
            self.stdout.len(),
            String::from_utf8_lossy(shown),
            self.stderr
        )
    }
}

/// The path of the binary built for this test (`shm-write`, `shm-read`),
/// or `name` itself for any other program.
pub fn tool_path(name: &str) -> &str {
    match name {
        "shm-write" => env!("CARGO_BIN_EXE_shm-write"),
        "shm-read" => env!("CARGO_BIN_EXE_shm-read"),
        other => other,
    }
}

pub fn bin(name: &str) -> Command {
    Command::new(tool_path(name))
}

pub fn write_cmd(args: &[&str]) -> Command {
    let mut cmd = bin("shm-write");
    cmd.args(args);
    cmd
}

pub fn read_cmd(args: &[&str]) -> Command {
    let mut cmd = bin("shm-read");
    cmd.args(args);
    cmd
}

/// Runs `cmd` with `stdin`, killing it (and failing) after `limit`.
pub fn run_limited(cmd: &mut Command, stdin: &[u8], limit: Duration) -> Output {
    let child = spawn(cmd);
    finish(child, describe(cmd), stdin, limit)
}

/// Runs `cmd` with `stdin` within 30 seconds.
pub fn run(cmd: &mut Command, stdin: &[u8]) -> Output {
    run_limited(cmd, stdin, Duration::from_secs(30))
}

/// `shm-write ARGS` fed `stdin`.
pub fn write(args: &[&str], stdin: &[u8]) -> Output {
    run(&mut write_cmd(args), stdin)
}

/// `shm-read ARGS`.
pub fn read(args: &[&str]) -> Output {
    run(&mut read_cmd(args), b"")
}

pub fn describe(cmd: &Command) -> String {
    let mut line = cmd
        .get_program()
        .to_string_lossy()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

pub fn spawn(cmd: &mut Command) -> Child {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", describe(cmd)))
}

/// Plays `head -c N` on a running tool: reads `n` bytes of its stdout,
/// closes the pipe, and waits for it to end.
pub fn read_then_close(mut child: Child, line: &str, n: usize) -> Output {
    let mut first = vec![0u8; n];
    child
        .stdout
        .as_mut()
        .expect("stdout piped")
        .read_exact(&mut first)
        .expect("first bytes");
    drop(child.stdout.take());
    finish(
        child,
        format!("{line} | head -c {n}"),
        b"",
        Duration::from_secs(30),
    )
}

/// Feeds `stdin` from a thread (so a full pipe cannot deadlock us), collects
/// both outputs, and waits at most `limit`.
pub fn finish(mut child: Child, line: String, stdin: &[u8], limit: Duration) -> Output {
    let feeder = child.stdin.take().map(|mut pipe| {
        let data = stdin.to_vec();
        // A child that exits without reading makes this fail; that is its answer.
        thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{line} did not finish within {limit:?}");
        }
        thread::sleep(Duration::from_millis(2));
    };
    if let Some(f) = feeder {
        let _ = f.join();
    }
    Output {
        line,
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: String::from_utf8_lossy(&err.join().expect("stderr reader")).into_owned(),
    }
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// Refs for `&[String]` → `&[&str]`.
pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Deterministic pseudo-random bytes (xorshift), NULs included.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24).to_le_bytes()[0]
        })
        .collect()
}

/// Whether this process is root (for permission tests that drop to nobody).
pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// How long a test waits for a state that its own steps bring about.
pub const BOUND: Duration = Duration::from_secs(30);

/// Polls `done` every 5 ms, panicking if it is not true within `limit`:
/// tests wait for states, never for guessed times.
pub fn until(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// `count` numbered lines, `{prefix}{n}` each, newline-terminated: input
/// whose every line says where it belongs.
pub fn numbered(prefix: &str, count: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for n in 0..count {
        out.extend_from_slice(format!("{prefix}{n}\n").as_bytes());
    }
    out
}

mod classic;
mod live;
pub mod log_tests;
mod logs;
pub mod names_tests;
mod rings;
pub mod scene;
mod scopes;
mod seg;

#[allow(unused_imports, reason = "each test binary uses its own subset")]
pub use classic::*;
#[allow(unused_imports, reason = "each test binary uses its own subset")]
pub use live::*;
#[allow(unused_imports, reason = "each test binary uses its own subset")]
pub use logs::*;
#[allow(unused_imports, reason = "each test binary uses its own subset")]
pub use rings::*;
#[allow(unused_imports, reason = "each test binary uses its own subset")]
pub use scopes::*;
#[allow(unused_imports, reason = "each test binary uses its own subset")]
pub use seg::*;
