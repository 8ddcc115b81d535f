//! Test support: run the real binaries with a bound on time, unique
//! segment addresses, and guards that remove segments even when a test
//! panics.
#![allow(dead_code, reason = "each test binary uses its own subset")]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use shm_tools::sys::{self, ShmId, ShmKey};

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

static COUNTER: AtomicU32 = AtomicU32::new(1);

/// A number unique to this test process and call: the pid keeps test
/// binaries running side by side apart, the counter keeps calls apart.
fn unique() -> u32 {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) & 0x3ff;
    (std::process::id() << 10) ^ n
}

/// A segment a test uses, removed when the guard drops (even in a panic).
#[derive(Debug)]
pub struct Seg {
    pub args: Vec<String>,
    what: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Key(ShmKey),
    Id(ShmId),
    Name(String),
    Ftok(PathBuf, ShmKey),
}

impl Seg {
    /// A fresh System V key; asserts no segment has it yet.
    pub fn key() -> Seg {
        let raw = (0x4000_0000 | (unique() & 0x3fff_ffff)).cast_signed();
        let key = ShmKey::from_raw(raw);
        assert!(
            sys::shmget(key, 0, 0).is_err(),
            "key {key} is already in use"
        );
        Seg {
            args: vec!["-k".into(), key.to_string()],
            what: Cleanup::Key(key),
        }
    }

    /// A fresh POSIX name.
    pub fn name() -> Seg {
        let name = format!("shm-tools-test-{}", unique());
        assert!(!PathBuf::from("/dev/shm").join(&name).exists());
        Seg {
            args: vec!["-n".into(), name.clone()],
            what: Cleanup::Name(name),
        }
    }

    /// A fresh POSIX name that starts with `prefix`.
    pub fn name_with(prefix: &str) -> Seg {
        let name = format!("{prefix}{}", unique());
        assert!(!PathBuf::from("/dev/shm").join(&name).exists());
        Seg {
            args: vec!["-n".into(), name.clone()],
            what: Cleanup::Name(name),
        }
    }

    /// A fresh file for ftok (created), in the cargo test temp dir.
    pub fn ftok_file() -> Seg {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("ftok-{}", unique()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("shmfile");
        std::fs::write(&path, b"").expect("ftok file");
        let key = sys::ftok(&path, 65).expect("ftok");
        Seg {
            args: vec!["-f".into(), path.display().to_string()],
            what: Cleanup::Ftok(path, key),
        }
    }

    /// Guards a segment under `key` that the test makes some other way.
    pub fn guard_key(key: ShmKey) -> Seg {
        Seg {
            args: vec!["-k".into(), key.to_string()],
            what: Cleanup::Key(key),
        }
    }

    /// Guards a System V segment known only by id.
    pub fn id(id: i32) -> Seg {
        Seg {
            args: vec!["-i".into(), id.to_string()],
            what: Cleanup::Id(ShmId::from_raw(id)),
        }
    }

    /// The address arguments followed by `more`.
    pub fn with(&self, more: &[&str]) -> Vec<String> {
        let mut all = self.args.clone();
        all.extend(more.iter().map(|s| (*s).to_owned()));
        all
    }

    pub fn key_value(&self) -> Option<ShmKey> {
        match &self.what {
            Cleanup::Key(k) | Cleanup::Ftok(_, k) => Some(*k),
            _ => None,
        }
    }

    pub fn name_value(&self) -> Option<&str> {
        match &self.what {
            Cleanup::Name(n) => Some(n),
            _ => None,
        }
    }

    pub fn ftok_path(&self) -> Option<&PathBuf> {
        match &self.what {
            Cleanup::Ftok(p, _) => Some(p),
            _ => None,
        }
    }

    /// Where a POSIX test segment's object is, in /dev/shm.
    pub fn dev_shm_path(&self) -> PathBuf {
        PathBuf::from("/dev/shm").join(self.name_value().expect("a POSIX test segment"))
    }

    /// The bytes of a POSIX test segment, as another process sees them.
    pub fn image(&self) -> Vec<u8> {
        std::fs::read(self.dev_shm_path()).expect("read the object")
    }

    /// Writes `bytes` at `offset` of a POSIX test segment's object, as a
    /// forger with write access could.
    pub fn poke(&self, offset: u64, bytes: &[u8]) {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(self.dev_shm_path())
            .expect("open the object");
        file.write_at(bytes, offset).expect("write the object");
    }

    /// A writable mapping of the whole of a POSIX test segment's object, for
    /// changing its words atomically while the tools run.
    pub fn map_writable(&self) -> sys::Mapping {
        use std::os::fd::AsFd;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.dev_shm_path())
            .expect("open the object");
        let size = usize::try_from(file.metadata().expect("fstat").len()).expect("size");
        sys::Mapping::map_fd(file.as_fd(), size, true).expect("map the object")
    }

    /// Whether the segment exists now.
    pub fn exists(&self) -> bool {
        match &self.what {
            Cleanup::Key(k) | Cleanup::Ftok(_, k) => sys::shmget(*k, 0, 0).is_ok(),
            Cleanup::Id(id) => sys::shm_stat(*id).is_ok_and(|s| s.mode & sys::SHM_DEST == 0),
            Cleanup::Name(n) => PathBuf::from("/dev/shm").join(n).exists(),
        }
    }
}

impl Drop for Seg {
    fn drop(&mut self) {
        // Cleanup never panics: "not found" just means the test removed it.
        match &self.what {
            Cleanup::Key(key) => {
                if let Ok(id) = sys::shmget(*key, 0, 0) {
                    let _ = sys::shm_remove(id);
                }
            }
            Cleanup::Ftok(path, key) => {
                if let Ok(id) = sys::shmget(*key, 0, 0) {
                    let _ = sys::shm_remove(id);
                }
                if let Some(dir) = path.parent() {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
            Cleanup::Id(id) => {
                let _ = sys::shm_remove(*id);
            }
            Cleanup::Name(name) => {
                let _ = nix::sys::mman::shm_unlink(format!("/{name}").as_str());
            }
        }
        // The leak guard's own check: a segment that survived its removal
        // fails the test (unless it is failing already).
        assert!(
            thread::panicking() || !self.exists(),
            "segment {:?} was left behind after its guard removed it",
            self.args
        );
    }
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

/// `shm-read --info --json` for the segment, parsed.
pub fn info(seg: &Seg) -> serde_json::Value {
    let out = read(&strs(&seg.with(&["--info", "--json"])));
    out.ok();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("bad JSON: {e}\n{out}"))
}

/// `shm-read --info --json` for the segment, parsed, or None where that
/// fails (the segment is not there yet, or is being made).
pub fn info_if_any(seg: &Seg) -> Option<serde_json::Value> {
    let out = read(&strs(&seg.with(&["--info", "--json"])));
    (out.code() == Some(0))
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
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

/// Waits (up to [`BOUND`]) until `--info --json` of `seg` satisfies
/// `ready`: how a test sees a peer's claim, death or progress on record.
pub fn wait_for_info(seg: &Seg, what: &str, ready: impl Fn(&serde_json::Value) -> bool) {
    until(what, BOUND, || {
        seg.exists() && info_if_any(seg).is_some_and(|info| ready(&info))
    });
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

/// A running tool whose stdout and stderr are collected as they arrive,
/// and whose stdin the test writes to when it likes.
pub struct Live {
    pub child: Child,
    pub line: String,
    stdout: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    readers: Vec<thread::JoinHandle<()>>,
}

impl Live {
    pub fn start(cmd: &mut Command) -> Live {
        let line = describe(cmd);
        let mut child = spawn(cmd);
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for (pipe, sink) in [
            (
                child
                    .stdout
                    .take()
                    .map(|p| Box::new(p) as Box<dyn Read + Send>),
                stdout.clone(),
            ),
            (
                child
                    .stderr
                    .take()
                    .map(|p| Box::new(p) as Box<dyn Read + Send>),
                stderr.clone(),
            ),
        ] {
            readers.push(thread::spawn(move || {
                let Some(mut pipe) = pipe else { return };
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            }));
        }
        Live {
            child,
            line,
            stdout,
            stderr,
            readers,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn send(&mut self, data: &[u8]) {
        self.child
            .stdin
            .as_mut()
            .expect("stdin open")
            .write_all(data)
            .expect("write to child");
    }

    pub fn close_stdin(&mut self) {
        self.child.stdin.take();
    }

    pub fn stdout_len(&self) -> usize {
        self.stdout.lock().unwrap().len()
    }

    pub fn stdout_now(&self) -> Vec<u8> {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits until stdout satisfies `done`, panicking after `limit`.
    pub fn wait_stdout(&self, limit: Duration, what: &str, done: impl Fn(&[u8]) -> bool) {
        let started = Instant::now();
        while !done(&self.stdout.lock().unwrap()) {
            assert!(
                started.elapsed() < limit,
                "{}: {what} did not happen within {limit:?}; stdout so far: {:?}, stderr: {}",
                self.line,
                String::from_utf8_lossy(&self.stdout_now()),
                String::from_utf8_lossy(&self.stderr.lock().unwrap())
            );
            thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the tool with SIGSTOP (Ctrl-Z), so it holds what it holds.
    pub fn stop(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Lets a stopped tool go on (SIGCONT).
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid()).expect("pid"));
        nix::sys::signal::kill(pid, signal)
            .unwrap_or_else(|e| panic!("{signal} to {}: {e}", self.line));
    }

    /// Finishes a tool whose peer died at `since`: it must end within 3 s
    /// of that (a dead peer is noticed promptly, never waited out).
    pub fn finish_promptly(self, since: Instant) -> Output {
        let line = self.line.clone();
        let out = self.finish(Duration::from_secs(10));
        assert!(
            since.elapsed() < Duration::from_secs(3),
            "{line} took {:?}",
            since.elapsed()
        );
        out
    }

    /// Waits for exit within `limit` (killing and panicking after it).
    pub fn finish(mut self, limit: Duration) -> Output {
        self.close_stdin();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if started.elapsed() > limit {
                self.kill();
                panic!("{} did not finish within {limit:?}", self.line);
            }
            thread::sleep(Duration::from_millis(2));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        Output {
            line: self.line.clone(),
            status,
            stdout: self.stdout_now(),
            stderr: String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned(),
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        // A test that panicked must not leave a tool running.
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

/// The classic writer.c (with fgets: gets() is gone from C11).
const WRITER_C: &str = include_str!("../classic/writer.c");

/// The classic reader.c: prints the string, then removes the segment.
const READER_C: &str = include_str!("../classic/reader.c");

/// Compiles the classic pair into `dir`, or None where there is no C compiler.
pub fn compile_classic(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let mut built = Vec::new();
    for (name, source) in [("writer", WRITER_C), ("reader", READER_C)] {
        let src = dir.join(format!("{name}.c"));
        std::fs::write(&src, source).expect("write C source");
        let exe = dir.join(name);
        match Command::new("cc")
            .arg("-O2")
            .arg("-o")
            .arg(&exe)
            .arg(&src)
            .status()
        {
            Ok(status) if status.success() => built.push(exe),
            Ok(status) => panic!("cc failed on {name}.c: {status}"),
            Err(_) => return None,
        }
    }
    let reader = built.pop()?;
    let writer = built.pop()?;
    Some((writer, reader))
}

mod rings;
mod scopes;

#[allow(unused_imports, reason = "each test binary uses its own subset")]
pub use rings::*;
#[allow(unused_imports, reason = "each test binary uses its own subset")]
pub use scopes::*;

/// The README's chat on the log `seg`: a `--lines` `writer` and a
/// `follower` already started; two typed lines reach the follower one by
/// one, in order; then the writer ends, the log is removed, and the
/// follower ends, each with exit 0.
pub fn chat_two_lines(mut writer: Live, follower: Live, seg: &Seg) {
    thread::sleep(Duration::from_millis(100));
    writer.send(b"hi there\n");
    follower.wait_stdout(Duration::from_secs(10), "first line", |o| {
        o == b"hi there\n"
    });
    writer.send(b"how are you?\n");
    follower.wait_stdout(Duration::from_secs(10), "second line", |o| {
        o == b"hi there\nhow are you?\n"
    });
    writer.finish(Duration::from_secs(10)).ok();
    read(&strs(&seg.with(&["--remove"]))).ok();
    follower.finish(Duration::from_secs(10)).ok();
}

/// A `--lines` writer of `seg` stopped (SIGSTOP) in the middle of
/// appending `line`, so it holds the log's write lock (a test hook makes
/// its append take 3 s, so the stop lands inside it).
pub fn log_writer_stopped_holding_the_lock(seg: &Seg, line: &[u8]) -> Live {
    let mut cmd = write_cmd(&strs(&seg.with(&["--lines"])));
    cmd.env("SHM_TOOLS_TEST_SLOW_APPEND_US", "3000000");
    let mut holder = Live::start(&mut cmd);
    holder.send(line);
    until("the writer takes the lock", BOUND, || {
        !info(seg)["lock_holder_pid"].is_null()
    });
    holder.stop();
    holder
}
